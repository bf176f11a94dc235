//! `fork()` handling.
//!
//! The slab pools have no locks (see [`slab_pool`]), so `fork()` needs none of their state held:
//! a thread that the fork caught in a pool operation leaves, in the child, at worst a chunk on no
//! set, which the child never hands out. The forking thread's own heap and owned chunks are
//! copied with the process and stay valid; those of threads that do not exist in the child are
//! never used there (a bounded loss: one bucket per class and one chunk per class per thread).
//!
//! The one handler that remains runs in the child, and takes no lock: it advances the fork
//! generation, which arenas compare against to notice that their owner may not exist any more,
//! repairs the statistics' list of live threads, whose lock another thread may have held at the
//! fork ([`crate::counters`]), and, with the `sbrk` backend, frees that backend's lock the same
//! way (dropping its free list if the lock was held). Nothing is taken in a prepare handler, so nothing can invert
//! against the locks libc takes around `fork()` (stdio's, for one), and a signal handler that
//! forks while its thread is inside the allocator waits for nothing.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Forks survived by this process's lineage: the child handler increments its copy, so a value
/// recorded before a fork differs from the current one in the child.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The current fork generation.
#[inline(always)]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

thread_local! {
    static TOKEN: u8 = const { 0 };
}

/// A number that identifies the calling thread among the live threads of this process (the
/// address of one of its thread-locals). Never 0 or 1.
#[inline(always)]
pub(crate) fn thread_token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

/// Installs the handlers once per process.
pub(crate) fn install_handlers() {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are `extern "C"` functions that live for the whole program.
    unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

extern "C" fn child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::counters::after_fork_in_child();
    #[cfg(feature = "sbrk")]
    // SAFETY: a child handler runs on the child's only thread, outside any call into the source.
    unsafe {
        chunk_source::SbrkSource::after_fork_in_child();
    }
}
