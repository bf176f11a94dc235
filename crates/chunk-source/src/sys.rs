//! Thin wrappers over the Linux calls the OS backends share: aligned mappings, unmapping,
//! `madvise`, and reading `errno`.
//!
//! Aligned mappings: `mmap` only promises page alignment. [`map_aligned`] first maps exactly the
//! length asked for and keeps it if it happens to be aligned (the kernel tends to place a new
//! mapping right below the previous one, so after one aligned chunk the next is often aligned
//! too). Otherwise it unmaps it, maps `len + CHUNK_SIZE - page` bytes, which must contain an
//! aligned range of `len` bytes, and unmaps the excess before and after that range.

use core::ptr;
use core::ptr::NonNull;

use crate::ChunkError;
use crate::{align_up, page_size, CHUNK_SIZE};

/// The calling thread's `errno`.
#[inline]
pub(crate) fn errno() -> i32 {
    // SAFETY: `__errno_location` returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// The current `errno` as a [`ChunkError`]: `ENOMEM` is [`ChunkError::OutOfMemory`].
#[cold]
pub(crate) fn last_error() -> ChunkError {
    match errno() {
        libc::ENOMEM => ChunkError::OutOfMemory,
        e => ChunkError::Os(e),
    }
}

/// Maps `len` bytes readable and writable with `flags` (`MAP_PRIVATE` or `MAP_SHARED`, plus
/// `MAP_ANONYMOUS`), placed so that `base + lead` is a multiple of [`CHUNK_SIZE`].
///
/// `len` and `lead` are multiples of the page size, `lead < len`.
pub(crate) fn map_aligned(len: usize, lead: usize, flags: i32) -> Result<NonNull<u8>, ChunkError> {
    let page = page_size();
    debug_assert!(len.is_multiple_of(page) && lead.is_multiple_of(page) && lead < len);
    if len > isize::MAX as usize {
        return Err(ChunkError::OutOfMemory);
    }
    // First try: exactly `len` bytes, kept if already aligned.
    let base = map(len, flags)?;
    if (base as usize + lead).is_multiple_of(CHUNK_SIZE) {
        return non_null(base);
    }
    // SAFETY: [base, base + len) is the mapping made just above, not yet handed to anyone.
    unsafe { unmap(base, len) }?;

    // Second try: over-map so that an aligned range of `len` bytes must lie inside, then trim.
    let over = len
        .checked_add(CHUNK_SIZE - page)
        .filter(|&l| l <= isize::MAX as usize)
        .ok_or(ChunkError::OutOfMemory)?;
    let raw = map(over, flags)?;
    let raw_addr = raw as usize;
    // The mapping ends at raw_addr + over, above the aligned start, so this cannot overflow.
    let start_addr = align_up(raw_addr + lead, CHUNK_SIZE).ok_or(ChunkError::OutOfMemory)? - lead;
    let head = start_addr - raw_addr;
    let tail = over - head - len;
    debug_assert!(head.is_multiple_of(page) && tail.is_multiple_of(page));
    let start = raw.wrapping_add(head);
    if head != 0 {
        // SAFETY: [raw, raw + head) is the part of our fresh mapping before the aligned range.
        unsafe { unmap(raw, head) }?;
    }
    if tail != 0 {
        // SAFETY: [start + len, start + len + tail) is the part of our fresh mapping after it.
        unsafe { unmap(start.wrapping_add(len), tail) }?;
    }
    non_null(start)
}

/// One anonymous mapping of `len` bytes, readable and writable.
fn map(len: usize, flags: i32) -> Result<*mut u8, ChunkError> {
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choice touches no
    // existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(last_error())
    } else {
        Ok(p.cast())
    }
}

fn non_null(p: *mut u8) -> Result<NonNull<u8>, ChunkError> {
    // mmap never returns address 0 for a mapping it chose itself; be safe anyway.
    NonNull::new(p).ok_or(ChunkError::OutOfMemory)
}

/// Unmaps `[ptr, ptr + len)`.
///
/// # Safety
///
/// The range is mapped memory that this crate owns and nothing uses any more.
pub(crate) unsafe fn unmap(ptr: *mut u8, len: usize) -> Result<(), ChunkError> {
    // SAFETY: the caller owns the range and no longer uses it.
    if unsafe { libc::munmap(ptr.cast(), len) } == 0 {
        Ok(())
    } else {
        Err(last_error())
    }
}

/// `madvise(ptr, len, advice)`. `ENOMEM` from `madvise` means part of the range is not mapped,
/// so it is reported as [`ChunkError::NotOwned`].
///
/// # Safety
///
/// The range is mapped memory that this crate owns; for advice that drops the content
/// (`MADV_DONTNEED`, `MADV_REMOVE`) nothing may need its bytes any more.
pub(crate) unsafe fn advise(ptr: *mut u8, len: usize, advice: i32) -> Result<(), ChunkError> {
    // SAFETY: the caller owns the range and accepts the effect of `advice` on it.
    if unsafe { libc::madvise(ptr.cast(), len, advice) } == 0 {
        Ok(())
    } else {
        match last_error() {
            ChunkError::OutOfMemory => Err(ChunkError::NotOwned),
            other => Err(other),
        }
    }
}

/// Drops the content of `[ptr, ptr + len)` so that it reads as zero, returning the pages to the
/// OS with `advice` where it can and writing zeros where it cannot (for example on locked
/// pages, where `madvise` fails with `EINVAL`).
///
/// # Safety
///
/// The range is mapped, writable memory that this crate owns and nothing else uses.
#[cfg(any(feature = "sbrk", feature = "shm"))]
pub(crate) unsafe fn discard(ptr: *mut u8, len: usize, advice: i32) {
    // SAFETY: the caller owns the range and no longer needs its content.
    if unsafe { advise(ptr, len, advice) }.is_err() {
        // SAFETY: the range is writable memory we own (see above).
        unsafe { ptr::write_bytes(ptr, 0, len) };
    }
}
