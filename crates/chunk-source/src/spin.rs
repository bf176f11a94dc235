//! A minimal spin lock around a value: the workspace's one spin lock.
//!
//! Used where a few words of bookkeeping change at a time and nothing may allocate or depend on
//! the OS: here the `sbrk` free list and break growth and the bitmap of a
//! [`RegionSource`](crate::RegionSource); in fam-alloc the statistics' list of live threads. The
//! critical sections are short and make no system call; a waiting thread spins with
//! [`core::hint::spin_loop`] on a plain load, so the cache line is not hammered by failed CAS.
//!
//! # Fork
//!
//! The lock word is 0 when the lock is free and otherwise the [fork generation](crate::fork)
//! its holder took it in. In a forked child the generation is newer than any lock held at the
//! fork, so such a lock is known to have a holder that does not exist in the child (or that is
//! the forking thread's own interrupted code, when a signal handler forked): the first thread
//! that wants it takes it over with one CAS from the stale word to its own, and runs the
//! mutex's `repair` (if it has one) on the value the holder may have left half written. In the
//! parent the generation never changes, so a held lock is never taken over there. No lock needs
//! registering anywhere, and none is ever taken by a fork handler.
//!
//! A takeover in a child whose forking thread was interrupted while holding the lock (a fork
//! from a signal handler) leaves that thread, once its handler returns, finishing a critical
//! section it no longer owns: what it writes after the takeover may be lost or mixed in. Code
//! that runs in a child forked from a signal handler may only call async-signal-safe functions
//! anyway; the takeover only guarantees that it does not hang.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

#[cfg(not(loom))]
use core::{
    hint,
    sync::atomic::{AtomicU64, Ordering},
};
#[cfg(loom)]
use loom::{
    hint,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::fork;

/// A value guarded by a spin lock.
///
/// Invariant: `value` is accessed only through a [`SpinGuard`], and at most one guard exists at a
/// time in a process (`word` is non-zero exactly while it lives, or, in a forked child, until
/// the lock is taken over).
pub struct SpinMutex<T> {
    /// 0 when free, else the fork generation the holder took the lock in.
    word: AtomicU64,
    /// Fixes the value after a takeover in a forked child (see the module comment).
    repair: Option<fn(&mut T)>,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands `value` to one thread at a time (see the invariant), so sharing the
// mutex only ever moves `T` between threads, which `T: Send` allows.
unsafe impl<T: Send> Sync for SpinMutex<T> {}

impl<T> SpinMutex<T> {
    /// An unlocked mutex holding `value`; a takeover in a forked child keeps the value as the
    /// holder left it.
    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        Self::with_repair_fn(value, None)
    }

    /// An unlocked mutex holding `value`; a takeover in a forked child calls `repair` on it.
    #[cfg(not(loom))]
    pub const fn with_repair(value: T, repair: fn(&mut T)) -> Self {
        Self::with_repair_fn(value, Some(repair))
    }

    #[cfg(not(loom))]
    const fn with_repair_fn(value: T, repair: Option<fn(&mut T)>) -> Self {
        Self {
            word: AtomicU64::new(0),
            repair,
            value: UnsafeCell::new(value),
        }
    }

    /// Under loom (whose atomics cannot be made in a `const fn`).
    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        Self::with_repair_fn(value, None)
    }

    /// Under loom (whose atomics cannot be made in a `const fn`).
    #[cfg(loom)]
    pub fn with_repair(value: T, repair: fn(&mut T)) -> Self {
        Self::with_repair_fn(value, Some(repair))
    }

    #[cfg(loom)]
    fn with_repair_fn(value: T, repair: Option<fn(&mut T)>) -> Self {
        Self {
            word: AtomicU64::new(0),
            repair,
            value: UnsafeCell::new(value),
        }
    }

    /// Spins until the lock is free, then takes it; in a forked child, takes over a lock held
    /// at the fork instead of waiting for it.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.lock_in(fork::generation())
    }

    /// [`lock`](Self::lock) as a thread of fork generation `now` (a parameter so that the
    /// models can play parent and child in one process).
    fn lock_in(&self, now: u64) -> SpinGuard<'_, T> {
        loop {
            // Acquire: the new holder sees every write the previous holder made before its
            // Release store in `SpinGuard::drop`.
            match self
                .word
                .compare_exchange_weak(0, now, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return SpinGuard { mutex: self },
                Err(held) if held != 0 && held != now => {
                    // Held in an older generation: by a thread of the parent. Acquire, as
                    // above, for what the holder wrote before the fork (the child's copy).
                    if self
                        .word
                        .compare_exchange(held, now, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        if let Some(repair) = self.repair {
                            // SAFETY: the CAS made this thread the holder; the stale holder
                            // does not run in this process (see the module comment), so this
                            // is the only reference.
                            repair(unsafe { &mut *self.value.get() });
                        }
                        return SpinGuard { mutex: self };
                    }
                }
                Err(_) => {}
            }
            // Relaxed: only a hint that the lock looks free (or stale); the CAS above does the
            // ordering.
            while self.word.load(Ordering::Relaxed) == now {
                hint::spin_loop();
            }
        }
    }
}

/// Proof of holding a [`SpinMutex`]; gives access to its value and unlocks when dropped.
pub struct SpinGuard<'a, T> {
    mutex: &'a SpinMutex<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock, so no other reference to the value exists.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock and is borrowed mutably, so this is the only reference.
        unsafe { &mut *self.mutex.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Release: publishes the holder's writes to the next thread that takes the lock.
        self.mutex.word.store(0, Ordering::Release);
    }
}

/// Models of the lock and its takeover, checked by loom over every interleaving
/// (`RUSTFLAGS="--cfg loom" cargo test -p chunk-source --lib --release`).
#[cfg(all(test, loom))]
mod models {
    use super::SpinMutex;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;
    use loom::thread;
    use std::vec::Vec;

    /// Count of takeovers, and a value the holders add to.
    type Repaired = (u32, u32);

    fn count_repair(v: &mut Repaired) {
        v.0 += 1;
    }

    #[test]
    fn holders_exclude_each_other() {
        loom::model(|| {
            let m = Arc::new(SpinMutex::new(()));
            let inside = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (m, inside) = (m.clone(), inside.clone());
                    thread::spawn(move || {
                        let g = m.lock_in(1);
                        assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                        inside.fetch_sub(1, Ordering::Relaxed);
                        drop(g);
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(m.word.load(Ordering::Relaxed), 0);
        });
    }

    /// A lock held when the process forked (generation 1) and wanted by two threads of the
    /// child (generation 2): one takes it over, the other waits for it; the repair runs once.
    #[test]
    fn a_stale_lock_is_taken_over_once_by_racing_child_threads() {
        loom::model(|| {
            let m = Arc::new(SpinMutex::with_repair((0, 0), count_repair));
            // The parent's holder, which does not exist in the child: its guard never drops.
            core::mem::forget(m.lock_in(1));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let m = m.clone();
                    thread::spawn(move || m.lock_in(2).1 += 1)
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let g = m.lock_in(2);
            assert_eq!(*g, (1, 2), "one repair, both holders' writes");
        });
    }

    /// A free lock is taken normally in a new generation: no repair.
    #[test]
    fn a_free_lock_needs_no_repair_after_a_fork() {
        loom::model(|| {
            let m = SpinMutex::with_repair((0, 0), count_repair);
            m.lock_in(1).1 += 1;
            m.lock_in(2).1 += 1;
            assert_eq!(*m.lock_in(2), (0, 2));
        });
    }
}
