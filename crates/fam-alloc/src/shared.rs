//! The shared global heap: `init_global_allocator(n)`, then `alloc` / `release` / `resize`.
//!
//! For programs that want their whole working heap preallocated in one shared region, the way
//! the classic design this crate grew from did it: after `fork()`, a block allocated by any
//! process can be read, written and released by any other.
//!
//! **Warning: with it, a child's writes to inherited heap objects reach the parent.** That is the
//! point of sharing, and also why it is not how the global allocator works by default: a program
//! that forks and keeps using its heap (a shell's subshell, a pre-fork server that mutates
//! inherited objects) expects copy-on-write and would corrupt itself if its `#[global_allocator]`
//! were shared. So `FamAlloc` stays private; this heap is separate, used only through these
//! functions, and the recommended way to share is a [`Arena::shared`] holding only the data meant
//! to be shared.
//!
//! `release` and `resize` find a block's size from the block itself, like `free` and `realloc`:
//! a pointer that is not a live block of the shared heap is reported and aborts.
//!
//! Each process caches a few freed blocks of the shared heap for reuse. A process that exits
//! normally gives them back (an `atexit` handler); one that leaves with `_exit` must call
//! [`crate::flush_thread_cache`] first, or those blocks stay unusable.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::arena::{Arena, ArenaError};

static SHARED: AtomicPtr<Arena> = AtomicPtr::new(ptr::null_mut());

/// Alignment of blocks from [`alloc`] (as C's `malloc` guarantees).
pub const SHARED_ALIGN: usize = 16;

/// Maps the shared global heap: `num_chunks` chunks of 4 MiB, all preallocated in one
/// `MAP_SHARED` region that forked children inherit. Call it once, before forking; a second
/// call fails with [`ArenaError::AlreadyInitialized`].
pub fn init_global_allocator(num_chunks: usize) -> Result<(), ArenaError> {
    if !SHARED.load(Ordering::Acquire).is_null() {
        return Err(ArenaError::AlreadyInitialized);
    }
    let arena = Box::into_raw(Box::new(Arena::shared(num_chunks)?));
    // AcqRel: publish the arena to every thread that later loads it.
    match SHARED.compare_exchange(ptr::null_mut(), arena, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // A process that exits normally gives back what its buckets of the shared heap hold
            // (a child that leaves with `_exit` must call `flush_thread_cache` first).
            // SAFETY: the handler is an `extern "C"` fn that lives for the whole program.
            unsafe { libc::atexit(flush_shared_at_exit) };
            Ok(())
        }
        Err(_) => {
            // SAFETY: our arena lost the race and was never published.
            drop(unsafe { Box::from_raw(arena) });
            Err(ArenaError::AlreadyInitialized)
        }
    }
}

extern "C" fn flush_shared_at_exit() {
    flush_shared();
}

/// Gives the blocks the calling thread caches from the shared global heap back to it (if it
/// owns the heap's buckets in this process). Called by [`crate::flush_thread_cache`].
pub(crate) fn flush_shared() {
    if let Some(a) = shared() {
        a.flush_thread_cache();
    }
}

fn shared() -> Option<&'static Arena> {
    // SAFETY: once published, the arena is never freed.
    unsafe { SHARED.load(Ordering::Acquire).as_ref() }
}

/// Allocates `size` bytes (aligned to [`SHARED_ALIGN`]) from the shared global heap. Null when
/// the heap is full or was not initialised.
pub fn alloc(size: usize) -> *mut u8 {
    match shared() {
        Some(a) => a.alloc_raw(size, SHARED_ALIGN),
        None => ptr::null_mut(),
    }
}

/// Releases a block of the shared global heap (null is ignored).
///
/// # Safety
/// `ptr` is null or a live block from [`alloc`] or [`resize`], not used after the call (by this
/// or any other process).
pub unsafe fn release(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    match shared() {
        // SAFETY: forwarded from the caller.
        Some(a) => unsafe { a.release_raw("release", ptr) },
        None => crate::report::bad_free(
            "release",
            ptr as usize,
            "the shared global heap is not initialised",
        ),
    }
}

/// Resizes a block of the shared global heap, keeping its content up to the smaller size; null
/// `ptr` allocates. Returns null, leaving the block as it was, when the heap is full.
///
/// # Safety
/// `ptr` is null or a live block from [`alloc`] or [`resize`]; after a successful call only the
/// returned pointer is used.
pub unsafe fn resize(ptr: *mut u8, new_size: usize) -> *mut u8 {
    if ptr.is_null() {
        return alloc(new_size);
    }
    let Some(a) = shared() else {
        crate::report::bad_free(
            "resize",
            ptr as usize,
            "the shared global heap is not initialised",
        );
    };
    // SAFETY: forwarded from the caller.
    let old = unsafe { a.usable_raw("resize", ptr) };
    if crate::class::small_class(new_size, SHARED_ALIGN).is_some()
        && crate::class::small_class(new_size, SHARED_ALIGN)
            == crate::class::small_class(old, SHARED_ALIGN)
        && new_size <= old
    {
        return ptr;
    }
    let p = alloc(new_size);
    if !p.is_null() {
        // SAFETY: both blocks hold at least the smaller size and are distinct.
        unsafe { ptr::copy_nonoverlapping(ptr, p, old.min(new_size)) };
        // SAFETY: the old block is live and given up now.
        unsafe { a.release_raw("resize", ptr) };
    }
    p
}

/// What the shared global heap holds, or `None` before [`init_global_allocator`].
pub fn shared_usage() -> Option<crate::ArenaUsage> {
    shared().map(Arena::usage)
}
