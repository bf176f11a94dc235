//! `errno` and the page size, without allocating.

use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Sets the calling thread's `errno`.
#[inline]
pub(crate) fn set_errno(code: c_int) {
    // SAFETY: `__errno_location` returns the address of the calling thread's `errno`, valid and
    // writable for as long as the thread lives.
    unsafe { *libc::__errno_location() = code };
}

/// Sets `errno` to `ENOMEM` and returns null: the failure result of the allocating functions.
#[cold]
pub(crate) fn out_of_memory() -> *mut c_void {
    set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// Sets `errno` to `EINVAL` and returns null: an alignment the function refuses.
#[cold]
pub(crate) fn invalid() -> *mut c_void {
    set_errno(libc::EINVAL);
    ptr::null_mut()
}

/// The page size, read from `sysconf` once (0 until then).
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The system's page size: a power of two.
#[inline]
pub(crate) fn page_size() -> usize {
    // Relaxed: the value is the same whichever thread stores it, and nothing else is published.
    match PAGE_SIZE.load(Ordering::Relaxed) {
        0 => read_page_size(),
        p => p,
    }
}

#[cold]
fn read_page_size() -> usize {
    // SAFETY: sysconf has no preconditions and does not allocate.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = match usize::try_from(p) {
        Ok(p) if p.is_power_of_two() => p,
        _ => 4096,
    };
    // Relaxed: see `page_size`.
    PAGE_SIZE.store(p, Ordering::Relaxed);
    p
}
