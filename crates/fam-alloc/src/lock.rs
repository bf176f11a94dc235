//! A small spin lock, for the one list that still has one: the statistics' list of live threads
//! (see [`crate::counters`]). The slab pools have no locks. It is held for a handful of pointer
//! updates or a walk of the list, never across a system call that can block for long, and it does
//! not allocate, so it is safe inside the allocator.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A spin lock around a `T`.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time, so sharing it is as safe as
// sending the `T` between threads.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: as above; the lock owns its value.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        self.raw_lock();
        SpinGuard { lock: self }
    }

    /// Takes the lock without a guard.
    fn raw_lock(&self) {
        let mut spins = 0u32;
        // Acquire: the holder's writes made before its Release unlock are visible to us.
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 64 {
                    core::hint::spin_loop();
                } else {
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                }
            }
        }
    }

    /// Releases a lock taken with [`raw_lock`](Self::raw_lock).
    ///
    /// # Safety
    /// The caller took the lock with `raw_lock` and holds no guard on it.
    unsafe fn raw_unlock(&self) {
        // Release: publishes the holder's writes to the next holder.
        self.locked.store(false, Ordering::Release);
    }
}

impl<T> SpinLock<T> {
    /// Frees the lock whoever holds it: for a forked child, where the holder may be a thread
    /// that does not exist.
    ///
    /// # Safety
    /// No thread of this process holds the lock or a guard of it (the child's only thread is
    /// the one that forked, and it held no guard across `fork()`); the value may be mid-update
    /// and is the caller's to repair.
    pub(crate) unsafe fn reset_in_child(&self) {
        // Release: as an unlock.
        self.locked.store(false, Ordering::Release);
    }
}

/// Holds a [`SpinLock`] until dropped.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held, so no other reference exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard was created by `lock`, which took the lock.
        unsafe { self.lock.raw_unlock() };
    }
}
