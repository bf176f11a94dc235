//! Tuning and reporting: `mallopt`, `malloc_trim`, `mallinfo`, `mallinfo2`, and the library's
//! own `fam_trim` and `fam_version`.
//!
//! The allocator has no knob that glibc's `mallopt` parameters would map onto (its thresholds are
//! its size classes and bucket capacities), so `mallopt` accepts the common parameters and
//! ignores them, which is harmless: a program that sets them tunes glibc's heuristics, not its
//! own correctness.
//!
//! `mallinfo` fills glibc's structure from the allocator's statistics (`fam_alloc::stats`): bytes
//! in use, cached in thread buckets, held in chunks and in large blocks. Each field's meaning here
//! is in [`MallInfo2`].

use core::ffi::{c_char, c_int, c_long};

use fam_alloc::CHUNK_SIZE as CHUNK_BYTES;

/// `mallopt` parameter: the largest "fast bin" request (glibc). Accepted and ignored.
pub const M_MXFAST: c_int = 1;
/// `mallopt` parameter: free memory at the top of the heap that triggers a trim. Accepted and
/// ignored (empty chunks are decommitted after a delay on their own).
pub const M_TRIM_THRESHOLD: c_int = -1;
/// `mallopt` parameter: extra memory to ask the OS for on growth. Accepted and ignored.
pub const M_TOP_PAD: c_int = -2;
/// `mallopt` parameter: the request size served by its own mapping. Accepted and ignored (the
/// boundary is the largest size class, 1 MiB).
pub const M_MMAP_THRESHOLD: c_int = -3;
/// `mallopt` parameter: the most mappings for large requests. Accepted and ignored.
pub const M_MMAP_MAX: c_int = -4;
/// `mallopt` parameter: what to do on detected heap corruption. Accepted and ignored: misuse is
/// always reported and aborts.
pub const M_CHECK_ACTION: c_int = -5;
/// `mallopt` parameter: a byte to fill allocated and freed memory with. Accepted and ignored.
pub const M_PERTURB: c_int = -6;
/// `mallopt` parameter: arenas to create before checking the arena limit. Accepted and ignored
/// (every thread has its own heap).
pub const M_ARENA_TEST: c_int = -7;
/// `mallopt` parameter: the most arenas. Accepted and ignored (as above).
pub const M_ARENA_MAX: c_int = -8;

/// Sets an allocator parameter. Returns 1 for the parameters glibc defines (`M_MXFAST`,
/// `M_TRIM_THRESHOLD`, `M_TOP_PAD`, `M_MMAP_THRESHOLD`, `M_MMAP_MAX`, `M_CHECK_ACTION`,
/// `M_PERTURB`, `M_ARENA_TEST`, `M_ARENA_MAX`), which are accepted and ignored, and 0 for any
/// other.
#[no_mangle]
pub extern "C" fn mallopt(param: c_int, _value: c_int) -> c_int {
    match param {
        M_MXFAST | M_TRIM_THRESHOLD | M_TOP_PAD | M_MMAP_THRESHOLD | M_MMAP_MAX
        | M_CHECK_ACTION | M_PERTURB | M_ARENA_TEST | M_ARENA_MAX => 1,
        _ => 0,
    }
}

/// Gives memory back to the OS: the calling thread's cached blocks return to the central pool,
/// then empty chunks are decommitted and cached large runs unmapped. `pad` is ignored. Returns 1
/// when some memory was given back, 0 otherwise (glibc's convention).
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    c_int::from(fam_trim() > 0)
}

/// What `malloc_trim` does, returning the number of 4 MiB chunks given back to the OS
/// (decommitted or unmapped).
#[no_mangle]
pub extern "C" fn fam_trim() -> usize {
    fam_alloc::flush_thread_cache();
    fam_alloc::trim()
}

/// Sets the allocator option called `name` (`"purge_delay"` in milliseconds, -1 for never;
/// `"retain_empty"` in chunks; `"background_purge"` 0 or 1; see `fam_alloc::options`) to
/// `value`. Returns 0, or -1 with `errno` set to `EINVAL` for an unknown name or a value out of
/// range (nothing changes then).
///
/// # Safety
/// `name` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fam_option_set(name: *const c_char, value: c_long) -> c_int {
    // SAFETY: per the contract.
    match unsafe { option_name(name) } {
        Some(n) if fam_alloc::options::set(n, value) => 0,
        _ => einval(),
    }
}

/// Stores the value of the option called `name` (as for `fam_option_set`) in `*value`. Returns
/// 0, or -1 with `errno` set to `EINVAL` for an unknown name or a null `value`.
///
/// # Safety
/// `name` is null or a NUL-terminated string; `value` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn fam_option_get(name: *const c_char, value: *mut c_long) -> c_int {
    // SAFETY: per the contract.
    let got = unsafe { option_name(name) }.and_then(fam_alloc::options::get);
    match (got, value.is_null()) {
        (Some(v), false) => {
            // SAFETY: `value` is valid for a write (contract).
            unsafe { value.write(v) };
            0
        }
        _ => einval(),
    }
}

// The options are `i64`s, passed as C `long`s (64 bits on the LP64 targets this library is for).
static_assertions::assert_eq_size!(c_long, i64);

/// `name` as a string, if it is a non-null, valid UTF-8 C string.
///
/// # Safety
/// As for `fam_option_set`.
unsafe fn option_name<'a>(name: *const c_char) -> Option<&'a str> {
    if name.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string (contract).
    unsafe { core::ffi::CStr::from_ptr(name) }.to_str().ok()
}

fn einval() -> c_int {
    crate::errno::set_errno(libc::EINVAL);
    -1
}

/// The library's version, e.g. `"0.1.0"`: a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn fam_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// glibc's `struct mallinfo2`, with this allocator's figures. All sizes in bytes; exact when no
/// other thread is allocating.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallInfo2 {
    /// Bytes of slab chunks obtained from the OS (4 MiB each): the "main arena" of small blocks.
    pub arena: usize,
    /// Empty slab chunks waiting for reuse (with or without their pages).
    pub ordblks: usize,
    /// Free blocks cached in thread buckets, all threads.
    pub smblks: usize,
    /// Large blocks in use (each its own run of chunks).
    pub hblks: usize,
    /// Bytes of the chunks those large blocks occupy.
    pub hblkhd: usize,
    /// 0, as in glibc.
    pub usmblks: usize,
    /// Bytes of the free blocks cached in thread buckets (the analogue of glibc's fast bins).
    pub fsmblks: usize,
    /// Bytes of small blocks in use (block sizes).
    pub uordblks: usize,
    /// Bytes of slab chunks not in use by the program: `arena - uordblks`.
    pub fordblks: usize,
    /// Bytes `malloc_trim` would give back now: empty chunks still holding their pages and
    /// cached large runs.
    pub keepcost: usize,
}

/// glibc's `struct mallinfo`: [`MallInfo2`] with `int` fields (values saturate at `INT_MAX`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallInfo {
    /// See [`MallInfo2::arena`].
    pub arena: c_int,
    /// See [`MallInfo2::ordblks`].
    pub ordblks: c_int,
    /// See [`MallInfo2::smblks`].
    pub smblks: c_int,
    /// See [`MallInfo2::hblks`].
    pub hblks: c_int,
    /// See [`MallInfo2::hblkhd`].
    pub hblkhd: c_int,
    /// See [`MallInfo2::usmblks`].
    pub usmblks: c_int,
    /// See [`MallInfo2::fsmblks`].
    pub fsmblks: c_int,
    /// See [`MallInfo2::uordblks`].
    pub uordblks: c_int,
    /// See [`MallInfo2::fordblks`].
    pub fordblks: c_int,
    /// See [`MallInfo2::keepcost`].
    pub keepcost: c_int,
}

static_assertions::assert_eq_size!(MallInfo2, [usize; 10]);
static_assertions::assert_eq_size!(MallInfo, [c_int; 10]);

/// The allocator's figures in glibc's `struct mallinfo2` (see [`MallInfo2`] for each field).
#[no_mangle]
pub extern "C" fn mallinfo2() -> MallInfo2 {
    let snap = fam_alloc::stats();
    let arena = (snap.chunks.mapped as usize).saturating_mul(CHUNK_BYTES);
    let in_use = snap.small_in_use_bytes().max(0) as usize;
    let cached_blocks: u64 = snap.classes[..snap.num_classes]
        .iter()
        .map(|c| c.cached)
        .sum();
    MallInfo2 {
        arena,
        ordblks: (snap.chunks.empty_committed + snap.chunks.empty_decommitted) as usize,
        smblks: cached_blocks as usize,
        hblks: snap.large.allocs.saturating_sub(snap.large.frees) as usize,
        hblkhd: (snap.chunks.large as usize).saturating_mul(CHUNK_BYTES),
        usmblks: 0,
        fsmblks: snap.cached_bytes() as usize,
        uordblks: in_use,
        fordblks: arena.saturating_sub(in_use),
        keepcost: ((snap.chunks.empty_committed + snap.large.cached_chunks) as usize)
            .saturating_mul(CHUNK_BYTES),
    }
}

/// The figures of [`mallinfo2`] as `int`s, saturated at `INT_MAX` (glibc's older interface).
#[no_mangle]
pub extern "C" fn mallinfo() -> MallInfo {
    let m = mallinfo2();
    let int = |v: usize| c_int::try_from(v).unwrap_or(c_int::MAX);
    MallInfo {
        arena: int(m.arena),
        ordblks: int(m.ordblks),
        smblks: int(m.smblks),
        hblks: int(m.hblks),
        hblkhd: int(m.hblkhd),
        usmblks: int(m.usmblks),
        fsmblks: int(m.fsmblks),
        uordblks: int(m.uordblks),
        fordblks: int(m.fordblks),
        keepcost: int(m.keepcost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_nul_terminated() {
        assert!(VERSION.ends_with('\0'));
        assert_eq!(VERSION.matches('\0').count(), 1);
    }
}
