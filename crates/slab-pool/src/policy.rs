//! The purge policy every pool of the process follows: how long freed memory keeps its pages,
//! and how many empty chunks stay committed.
//!
//! One process-wide [`POLICY`], read by every pool at each purge decision, so that a setting made
//! at any time (from the environment at start-up, or from the program during use) takes effect
//! at the next pool operation. Each value is independent of the others and of any memory they
//! guard, so every access is Relaxed: a thread that reads the previous value acts on the previous
//! policy once, which is all a policy change can promise anyway.

use core::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};

/// Default purge delay: memory freed and not reused for this long gives its pages back.
pub const DEFAULT_PURGE_DELAY_MS: i64 = 100;
/// Default number of empty chunks kept with their pages within the purge delay (at most 256 MiB,
/// the pages their last incarnations touched), so that a program which frees a large batch and
/// allocates it again, or whose threads come and go, does not fault every page back in. With
/// 16 (64 MiB) and no class preference in the empty pool, mimalloc's stress shape at 4 threads
/// on two CPUs faulted 4.5 times the pages mimalloc 2 does; with 64 and empty chunks going back
/// to their last class first, 2 times, in 14 % less time and with a lower peak.
pub const DEFAULT_RETAIN_EMPTY: usize = 64;

/// Net bytes a thread gives back (flushed less refilled) between two pressure checks.
pub const PRESSURE_STEP: usize = 4 << 20;
/// Free memory the pool keeps committed past a pressure check without further action: beyond
/// it (and beyond half the committed block area) the thread gives its chunks up and its next
/// allocation after the delay runs a pass (see the pool's module comment).
pub const PRESSURE_FREE: usize = 8 << 20;

/// The purge policy. See [`POLICY`].
#[derive(Debug)]
pub struct Policy {
    purge_delay_ms: AtomicI64,
    retain_empty: AtomicUsize,
}

/// The policy of every pool in the process.
pub static POLICY: Policy = Policy::new();

impl Policy {
    /// The defaults.
    pub const fn new() -> Self {
        Self {
            purge_delay_ms: AtomicI64::new(DEFAULT_PURGE_DELAY_MS),
            retain_empty: AtomicUsize::new(DEFAULT_RETAIN_EMPTY),
        }
    }

    /// How long, in milliseconds, free pages and empty chunks keep their memory before it goes
    /// back to the OS: 0 gives it back at the next pool operation, a negative value never (only
    /// an explicit trim does).
    #[inline]
    pub fn purge_delay_ms(&self) -> i64 {
        self.purge_delay_ms.load(Relaxed)
    }

    /// Sets [`purge_delay_ms`](Self::purge_delay_ms); any negative value means never.
    pub fn set_purge_delay_ms(&self, ms: i64) {
        self.purge_delay_ms.store(ms.max(-1), Relaxed);
    }

    /// Empty chunks kept committed at most; beyond them the oldest is decommitted at once.
    #[inline]
    pub fn retain_empty(&self) -> usize {
        self.retain_empty.load(Relaxed)
    }

    /// Sets [`retain_empty`](Self::retain_empty).
    pub fn set_retain_empty(&self, n: usize) {
        self.retain_empty.store(n, Relaxed);
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::new()
    }
}
