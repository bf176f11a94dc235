//! The library's own functions: the shared global heap and statistics.
//!
//! `fam_init_global_allocator(n)` maps a heap of `n` preallocated 4 MiB chunks in one shared
//! region; `fam_alloc`, `fam_release` and `fam_resize` (malloc, free and realloc semantics) use
//! it, and after `fork()` parent and children see each other's blocks. It is separate from
//! `malloc`, which stays private: with a shared heap, a child's writes to inherited objects reach
//! the parent, which is what sharing is for and what ordinary heap objects must never do.
//!
//! `fam_print_stats` and `fam_write_stats` write the allocator's report (the one `FAM_STATS`
//! writes at exit) on demand.

use core::ffi::{c_char, c_int, c_void, CStr};

use fam_alloc::{ArenaError, Format};

use crate::errno::set_errno;

/// Maps the shared global heap with `num_chunks` chunks of 4 MiB. Returns 0 on success,
/// `EEXIST` if it was already mapped, `EINVAL` for 0 chunks, `ENOMEM` when the OS refuses.
#[no_mangle]
pub extern "C" fn fam_init_global_allocator(num_chunks: usize) -> c_int {
    match fam_alloc::init_global_allocator(num_chunks) {
        Ok(()) => 0,
        Err(ArenaError::AlreadyInitialized) => libc::EEXIST,
        Err(ArenaError::NoChunks) => libc::EINVAL,
        Err(_) => libc::ENOMEM,
    }
}

/// Allocates `size` bytes (16-byte aligned) from the shared global heap; NULL with errno ENOMEM
/// when it is full or not mapped.
#[no_mangle]
pub extern "C" fn fam_alloc(size: usize) -> *mut c_void {
    let p = fam_alloc::alloc(size);
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// Releases a block of the shared global heap (NULL is ignored). A pointer that is not a live
/// block of it is reported and aborts.
///
/// # Safety
/// `ptr` is NULL or a live block from `fam_alloc`/`fam_resize`, not used afterwards by any process.
#[no_mangle]
pub unsafe extern "C" fn fam_release(ptr: *mut c_void) {
    // SAFETY: forwarded from the caller.
    unsafe { fam_alloc::release(ptr.cast()) }
}

/// Resizes a block of the shared global heap (realloc semantics; NULL allocates). Returns NULL
/// with errno ENOMEM, leaving the block as it was, when the heap is full.
///
/// # Safety
/// `ptr` is NULL or a live block from `fam_alloc`/`fam_resize`.
#[no_mangle]
pub unsafe extern "C" fn fam_resize(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded from the caller.
    let p = unsafe { fam_alloc::resize(ptr.cast(), size) };
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

fn format_of(format: *const c_char) -> Option<Format> {
    if format.is_null() {
        return Some(Format::Table);
    }
    // SAFETY: a non-null `format` is a NUL-terminated string (the C contract).
    let s = unsafe { CStr::from_ptr(format) }.to_str().ok()?;
    Format::from_env(s)
}

/// Writes the statistics report to file descriptor `fd` in `format` (`"table"` or NULL,
/// `"bmalloc"`, `"json"`). Returns 0, or `EINVAL` for an unknown format. Allocates nothing.
///
/// # Safety
/// `format` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fam_write_stats(fd: c_int, format: *const c_char) -> c_int {
    match format_of(format) {
        Some(f) => {
            fam_alloc::print_stats_to_fd(fd, f);
            0
        }
        None => libc::EINVAL,
    }
}

/// Writes the statistics report to stderr; see [`fam_write_stats`].
///
/// # Safety
/// As for [`fam_write_stats`].
#[no_mangle]
pub unsafe extern "C" fn fam_print_stats(format: *const c_char) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { fam_write_stats(2, format) }
}
