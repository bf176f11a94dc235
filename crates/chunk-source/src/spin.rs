//! A minimal spin lock around a value: the workspace's one spin lock.
//!
//! Used where a few words of bookkeeping change at a time and nothing may allocate or depend on
//! the OS: here the `sbrk` free list and break growth and the bitmap of a
//! [`RegionSource`](crate::RegionSource); in fam-alloc the statistics' list of live threads. The critical sections are short; a waiting thread spins with
//! [`core::hint::spin_loop`] on a plain load, so the cache line is not hammered by failed CAS.
//!
//! Like every lock, it is not fork safe by itself: a child forked while another thread holds it
//! inherits it locked. Its users free it in the child instead
//! ([`SpinMutex::take_over_in_child`]), discarding what the holder may have left half written.

use core::cell::UnsafeCell;
use core::hint;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A value guarded by a spin lock.
///
/// Invariant: `value` is accessed only through a [`SpinGuard`], and at most one guard exists at a
/// time (`locked` is true exactly while it lives).
pub struct SpinMutex<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands `value` to one thread at a time (see the invariant), so sharing the
// mutex only ever moves `T` between threads, which `T: Send` allows.
unsafe impl<T: Send> Sync for SpinMutex<T> {}

impl<T> SpinMutex<T> {
    /// An unlocked mutex holding `value`.
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Spins until the lock is free, then takes it.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            // Acquire: the new holder sees every write the previous holder made before its
            // Release store in `SpinGuard::drop`.
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return SpinGuard { mutex: self };
            }
            // Relaxed: only a hint that the lock looks free; the CAS above does the ordering.
            while self.locked.load(Ordering::Relaxed) {
                hint::spin_loop();
            }
        }
    }
}

impl<T> SpinMutex<T> {
    /// In a forked child: if the lock was held at the fork (by a thread that does not exist in
    /// the child, or by the forking thread's interrupted code), frees it and lets `repair`
    /// replace the value, which the holder may have left half updated. Does nothing if it was
    /// free.
    ///
    /// # Safety
    /// The caller is the only thread of a forked child, and holds no guard of this mutex.
    pub unsafe fn take_over_in_child(&self, repair: impl FnOnce(&mut T)) {
        // Relaxed: the child has one thread; nothing to order against.
        if self.locked.swap(false, Ordering::Relaxed) {
            // SAFETY: the only thread of the process holds no guard (contract), so nothing else
            // refers to the value.
            repair(unsafe { &mut *self.value.get() });
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
        self.mutex.locked.store(false, Ordering::Release);
    }
}
