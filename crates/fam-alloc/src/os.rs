//! Anonymous memory for the allocator's own tables (registry leaves, thread `Local`s), mapped
//! straight from the OS: it must not come from the allocator it serves.

use core::ptr::{self, NonNull};

/// `len` bytes of fresh zero-filled, private, read-write memory, page-aligned; `None` when the
/// OS refuses. `MAP_NORESERVE`: the pages cost nothing until touched.
pub(crate) fn map(len: usize) -> Option<NonNull<u8>> {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; the result
    // is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast())
    }
}

/// Gives back `len` bytes at `p`.
///
/// # Safety
/// [`map`] returned `p` with that length, and nothing reaches the memory any more.
pub(crate) unsafe fn unmap(p: *mut u8, len: usize) {
    // SAFETY: per the contract the range is a mapping of ours that nobody uses; `munmap` of it
    // affects nothing else.
    unsafe { libc::munmap(p.cast(), len) };
}
