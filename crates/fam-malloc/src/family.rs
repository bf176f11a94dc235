//! The malloc family itself.
//!
//! Each function maps a C request onto [`fam_alloc::raw`]: a size and a power-of-two alignment
//! for allocation, the pointer alone for the rest. The C rules live here: the alignment each
//! function guarantees, overflow checks, what a size of zero means, and `errno`.
//!
//! The facade refuses any size whose block would pass `isize::MAX` bytes (it returns null), so a
//! request near `SIZE_MAX` can never wrap into a small block; these functions only have to check
//! the products they compute themselves (`calloc`, `reallocarray`) and the roundings (`pvalloc`,
//! `memalign`).

use core::ffi::{c_int, c_void};
use core::mem::size_of;
use core::ptr;

use fam_alloc::raw;

use crate::errno::{invalid, out_of_memory, page_size};

/// The alignment `malloc` gives a request of `size` bytes: 16 when the size rounded up to 8 is
/// a multiple of 16 (what `max_align_t` needs on x86-64 and AArch64), else 8. An object's size is
/// a multiple of its alignment, so a 24-byte request is for objects aligned to 8 at most (three
/// pointers, say), and gets a block of the 24-byte class instead of one of 32; this is what
/// mimalloc gives too. (`malloc(0)` counts as 16.) Bit 3 of `size + 7` is clear exactly when the
/// rounded size is a multiple of 16: three instructions, no branch.
#[inline(always)]
pub(crate) const fn malloc_align(size: usize) -> usize {
    8 << (((size.wrapping_add(7) >> 3) & 1) ^ 1)
}

static_assertions::const_assert_eq!(malloc_align(0), 16);
static_assertions::const_assert_eq!(malloc_align(1), 8);
static_assertions::const_assert_eq!(malloc_align(8), size_of::<*mut c_void>());
static_assertions::const_assert_eq!(malloc_align(9), 16);
static_assertions::const_assert_eq!(malloc_align(17), 8);
static_assertions::const_assert_eq!(malloc_align(33), 8);
static_assertions::const_assert_eq!(malloc_align(16), 16);
static_assertions::const_assert_eq!(malloc_align(24), 8);
static_assertions::const_assert_eq!(malloc_align(40), 8);
static_assertions::const_assert_eq!(malloc_align(48), 16);
static_assertions::const_assert_eq!(malloc_align(4096), 16);

/// Allocates `size` bytes aligned to at least `align` and to what `malloc` gives that size.
#[inline(always)]
fn alloc_aligned(size: usize, align: usize) -> *mut c_void {
    let p = raw::alloc(size, align.max(malloc_align(size)));
    if p.is_null() {
        return out_of_memory();
    }
    p.cast()
}

/// Requests up to this many bytes find their class in [`MALLOC_CLASS`].
const TABLE_MAX: usize = 1024;

/// Requests above [`TABLE_MAX`] and up to this many bytes find their class in
/// [`MEDIUM_CLASS`]: the sizes of programs' buffers and strings (the suite's `mixed` and
/// `glibc-thread` go up to 32 KiB), which otherwise paid for the class rule's arithmetic.
const MEDIUM_MAX: usize = 32 * 1024;

/// The step of [`MEDIUM_CLASS`]: every class above [`TABLE_MAX`] is a multiple of it (above
/// 1 KiB the classes are a quarter of a power of two apart, at least 256 bytes), so all sizes
/// of a group `256k - 255 ..= 256k` share the class of `256k`.
const MEDIUM_STEP: usize = 256;

/// The slab class `malloc` uses for a request of `step * k - step + 1 ..= step * k` bytes, at
/// index `k` (and for 0 bytes at index 0): the class of the size with [`malloc_align`]'s
/// alignment, which is the same for every size of such a group (for the step 8, the alignment
/// depends only on `k`; classes above 64 bytes are multiples of 16; above 1 KiB, of 256).
/// Checked for every size by a test.
const fn class_table<const N: usize>(step: usize) -> [u8; N] {
    let mut t = [0u8; N];
    let mut k = 0;
    while k < N {
        let size = k * step;
        t[k] = match raw::small_class(size, malloc_align(size)) {
            // `malloc` relies on this (see there).
            Some(c) if c < raw::NUM_CLASSES => c as u8,
            Some(_) => panic!("a class out of range"),
            None => panic!("every size of the tables is a slab size"),
        };
        k += 1;
    }
    t
}

/// The classes of requests up to [`TABLE_MAX`] bytes, by steps of 8 (see [`class_table`]).
static MALLOC_CLASS: [u8; TABLE_MAX / 8 + 1] = class_table(8);

/// The classes of requests up to [`MEDIUM_MAX`] bytes, by steps of [`MEDIUM_STEP`] (see
/// [`class_table`]); `malloc` uses it above [`TABLE_MAX`].
static MEDIUM_CLASS: [u8; MEDIUM_MAX / MEDIUM_STEP + 1] = class_table(MEDIUM_STEP);

/// The class [`malloc`] gives `size` bytes through its tables, for tests.
#[cfg(test)]
fn table_class(size: usize) -> usize {
    if size <= TABLE_MAX {
        MALLOC_CLASS[size.div_ceil(8)] as usize
    } else {
        MEDIUM_CLASS[size.div_ceil(MEDIUM_STEP)] as usize
    }
}

/// A block of `class` from the thread's bucket, or null (see [`malloc`]).
#[inline(always)]
fn pop_class(class: u8) -> *mut c_void {
    let class = usize::from(class);
    // SAFETY: every entry of the tables is below NUM_CLASSES (checked when they are built, at
    // compile time). Told so, the compiler indexes the bucket with no mask.
    unsafe { core::hint::assert_unchecked(class < raw::NUM_CLASSES) };
    raw::pop_small(class).cast()
}

/// Allocates `size` bytes, aligned as `malloc_align` says: 16 for sizes that round up (to 8) to
/// a multiple of 16, else 8.
///
/// `malloc(0)` returns a unique minimal block (to be freed like any other). Returns null with
/// `errno = ENOMEM` when memory is exhausted or `size` cannot be met (near `SIZE_MAX`).
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    if size <= TABLE_MAX {
        let p = pop_class(MALLOC_CLASS[size.div_ceil(8)]);
        if !p.is_null() {
            return p;
        }
    } else if size <= MEDIUM_MAX {
        let p = pop_class(MEDIUM_CLASS[size.div_ceil(MEDIUM_STEP)]);
        if !p.is_null() {
            return p;
        }
    }
    malloc_slow(size)
}

/// The rest of [`malloc`]: an empty bucket, a large block, or out of memory (`errno`). Out of
/// line and `extern "C"` (it cannot unwind, so no landing pad), so `malloc` leaves through one
/// tail call and its fast path needs no stack frame.
#[cold]
#[inline(never)]
extern "C" fn malloc_slow(size: usize) -> *mut c_void {
    alloc_aligned(size, 8)
}

/// Frees a block of this allocator; null is ignored.
///
/// A pointer the allocator does not own, a pointer into the middle of a block, or a block that
/// is already free is reported on stderr (`fam-alloc: free(0x...): ...`) and the process aborts.
///
/// # Safety
/// If `ptr` is a live block, nobody uses it after the call.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: per this function's contract; `raw::free` checks the pointer before it obeys.
    unsafe { raw::free("free", ptr.cast()) }
}

/// Allocates a zeroed array of `n` elements of `size` bytes, aligned like `malloc(n * size)`.
///
/// Returns null with `errno = ENOMEM` when `n * size` overflows or memory is exhausted. Memory
/// fresh from the OS is known to be zero and is not cleared again.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        return out_of_memory();
    };
    let p = raw::alloc_zeroed(total, malloc_align(total));
    if p.is_null() {
        return out_of_memory();
    }
    p.cast()
}

/// Resizes the block at `ptr` to `size` bytes, keeping its content up to the smaller size.
///
/// - `ptr` null: `malloc(size)`.
/// - `size` 0 and `ptr` not null: frees `ptr` and returns null (glibc's behaviour; `errno` is
///   not changed).
/// - Otherwise returns the resized block, which stays in place when the new size fits the same
///   block, and is aligned like `malloc(size)`. On failure returns null with `errno = ENOMEM`
///   and leaves the old block as it was.
///
/// # Safety
/// `ptr` is null or a live block of this allocator (checked: anything else aborts with a
/// message); after a non-null return the old pointer is not used again.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: per the contract `ptr` is a live block, and the caller gives it up.
        unsafe { raw::free("realloc", ptr.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: `ptr` is a live block (checked by `raw::realloc`). Its alignment was at least
    // `malloc_align` of its own size, and the new block only has to be aligned like
    // `malloc(size)`: `raw::realloc` keeps a block in place only when its class satisfies the
    // alignment asked for.
    let p = unsafe { raw::realloc(ptr.cast(), size, malloc_align(size)) };
    if p.is_null() {
        return out_of_memory();
    }
    p.cast()
}

/// `realloc(ptr, n * size)`, except that an overflowing product fails (null, `errno = ENOMEM`,
/// the old block untouched).
///
/// # Safety
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        return out_of_memory();
    };
    // SAFETY: forwarded under the same contract.
    unsafe { realloc(ptr, total) }
}

/// Stores in `*memptr` a block of `size` bytes aligned to `align`, and returns 0.
///
/// Returns `EINVAL` (without touching `errno` or `*memptr`) unless `align` is a power of two
/// and a multiple of `sizeof(void *)`, and `ENOMEM` (leaving `*memptr` alone) when memory is
/// exhausted. A `size` of 0 gets a unique minimal block.
///
/// # Safety
/// `memptr` is valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let p = raw::alloc(size, align.max(malloc_align(size)));
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller guarantees `memptr` is writable.
    unsafe { memptr.write(p.cast()) };
    0
}

/// Allocates `size` bytes aligned to `align`, which must be a power of two (glibc 2.38's rule):
/// any other alignment, zero included, returns null with `errno = EINVAL`. `size` need not be a
/// multiple of `align`. Null with `errno = ENOMEM` when memory is exhausted.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        return invalid();
    }
    alloc_aligned(size, align)
}

/// Allocates `size` bytes aligned to `align`, rounded up to the next power of two when it is not
/// one (as glibc does); an alignment of 0 or 1 gives `malloc`'s. Null with `errno = EINVAL` when
/// no power of two is that large, with `errno = ENOMEM` when memory is exhausted.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.max(1).checked_next_power_of_two() else {
        return invalid();
    };
    alloc_aligned(size, align)
}

/// `memalign(page size, size)`.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc_aligned(size, page_size())
}

/// Allocates `size` rounded up to a whole number of pages (at least one), page aligned. Null with
/// `errno = ENOMEM` when the rounding overflows or memory is exhausted.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    let Some(rounded) = size.max(1).checked_next_multiple_of(page) else {
        return out_of_memory();
    };
    alloc_aligned(rounded, page)
}

/// The number of bytes the block at `ptr` can hold (at least what was asked for); 0 for null.
///
/// # Safety
/// `ptr` is null or a live block of this allocator (checked: anything else aborts with a
/// message).
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: per the contract; `raw::usable_size` checks the pointer.
    unsafe { raw::usable_size(ptr.cast()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_malloc_tables_give_what_the_class_rule_gives() {
        for size in 0..=MEDIUM_MAX {
            let want = raw::small_class(size, malloc_align(size)).unwrap();
            assert_eq!(table_class(size), want, "size {size}");
        }
    }
}
