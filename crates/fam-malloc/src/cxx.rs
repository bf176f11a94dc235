//! C++ `operator new` and `operator delete`, every replaceable form, routed straight to the
//! allocator's paths instead of through the C++ runtime's `operator new`, which calls `malloc`.
//!
//! The forms are the Itanium C++ ABI's (GCC and Clang on Linux), by mangled name: `new` and
//! `new[]`, each plain, `nothrow`, aligned (`std::align_val_t`) and aligned `nothrow`; `delete`
//! and `delete[]`, each plain, sized, `nothrow`, aligned, sized aligned and aligned `nothrow`.
//!
//! - **Alignment.** The plain forms align as `malloc` does (what an object of the size needs, at
//!   most 16: `__STDCPP_DEFAULT_NEW_ALIGNMENT__`); the aligned forms to the larger of that and the
//!   alignment asked for, which the compiler passes only when it is a power of two.
//! - **Failure.** The throwing forms call the program's `std::new_handler` and try again while
//!   there is one, as the standard asks; with none they throw `std::bad_alloc`. The library links
//!   no C++ runtime: the handler and the throw are looked up in the program's own (`dlsym`, on
//!   the failure path only). A program that calls `operator new` has one; if none is found the
//!   process is told why on stderr and aborts. The `nothrow` forms call the handler too while
//!   there is one, and return null without one.
//! - **Delete.** Every form frees as `free` does, with the same checks (a pointer not ours, an
//!   interior pointer, a double free are reported and abort). The sized forms do not use the
//!   size: the class index load that proves the pointer ours gives its class in the same load,
//!   so a size would save no lookup, and a wrong one (a program bug) is not trusted.

use core::ffi::{c_char, c_void};
use core::mem::size_of;

use fam_alloc::raw;

use crate::family::malloc_align;

/// `std::new_handler`: what the program installed with `std::set_new_handler`.
type NewHandler = unsafe extern "C-unwind" fn();

/// Looks `name` (a NUL-terminated symbol) up in the program and the libraries it loaded.
fn find(name: &[u8]) -> *mut c_void {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the global scope.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast::<c_char>()) }
}

/// The program's current `std::new_handler`, if the C++ runtime is loaded and one is set.
fn new_handler() -> Option<NewHandler> {
    // `std::get_new_handler()`, the same name in libstdc++ and libc++.
    let get = find(b"_ZSt15get_new_handlerv\0");
    if get.is_null() {
        return None;
    }
    // SAFETY: the symbol is `std::new_handler std::get_new_handler() noexcept`.
    let get: unsafe extern "C" fn() -> Option<NewHandler> = unsafe { core::mem::transmute(get) };
    // SAFETY: it takes nothing and only reads the runtime's handler.
    unsafe { get() }
}

/// Throws `std::bad_alloc` through the program's C++ runtime, or aborts with a message when
/// there is none to throw with.
#[cold]
fn throw_bad_alloc(size: usize) -> ! {
    // libstdc++'s `std::__throw_bad_alloc()`, then libc++'s `std::__1::__throw_bad_alloc()`.
    for name in [
        &b"_ZSt17__throw_bad_allocv\0"[..],
        &b"_ZNSt3__117__throw_bad_allocEv\0"[..],
    ] {
        let throw = find(name);
        if !throw.is_null() {
            // SAFETY: both symbols are `[[noreturn]] void f()`, which throw `std::bad_alloc`.
            let throw: unsafe extern "C-unwind" fn() -> ! = unsafe { core::mem::transmute(throw) };
            // SAFETY: as above; the exception unwinds through this `C-unwind` frame to the
            // program's handler.
            unsafe { throw() }
        }
    }
    raw::fail(
        "operator new",
        size,
        "out of memory, and no C++ runtime to throw std::bad_alloc with",
    )
}

/// The throwing forms: a block, or `std::bad_alloc` once the new handler has nothing more to give.
#[inline(always)]
fn new_or_throw(size: usize, align: usize) -> *mut c_void {
    let p = raw::alloc(size, align);
    if !p.is_null() {
        return p.cast();
    }
    retry(size, align, true)
}

/// The `nothrow` forms: a block, or null once the new handler has nothing more to give.
#[inline(always)]
fn new_or_null(size: usize, align: usize) -> *mut c_void {
    let p = raw::alloc(size, align);
    if !p.is_null() {
        return p.cast();
    }
    retry(size, align, false)
}

/// Calls the new handler and tries again while there is one; then throws or returns null.
#[cold]
#[inline(never)]
fn retry(size: usize, align: usize, throw: bool) -> *mut c_void {
    loop {
        let Some(handler) = new_handler() else {
            if throw {
                throw_bad_alloc(size);
            }
            return core::ptr::null_mut();
        };
        // SAFETY: the handler the program installed; it frees memory, installs another handler,
        // throws `std::bad_alloc` (unwinding through these `C-unwind` frames) or ends the process.
        unsafe { handler() };
        let p = raw::alloc(size, align);
        if !p.is_null() {
            return p.cast();
        }
    }
}

/// The alignment of an aligned form: at least `malloc`'s for the size.
#[inline(always)]
fn aligned(size: usize, align: usize) -> usize {
    // The compiler passes only powers of two; anything else gets the next one, as memalign does
    // (and one no request can meet when there is none, so the allocation fails).
    let align = align.max(malloc_align(size));
    align
        .checked_next_power_of_two()
        .unwrap_or(1 << (usize::BITS - 1))
}

/// Frees like `free`: every `operator delete` form.
///
/// # Safety
/// `ptr` is null or a live block of this allocator that nobody uses after the call (checked).
#[inline(always)]
unsafe fn free_checked(ptr: *mut c_void) {
    // SAFETY: per the contract; `raw::free` checks the pointer before it obeys.
    unsafe { raw::free("operator delete", ptr.cast()) }
}

/// `std::nothrow_t`, `std::align_val_t`: the types of the extra parameters, by their ABI.
type Nothrow = *const c_void;
type AlignVal = usize;

static_assertions::const_assert_eq!(size_of::<AlignVal>(), size_of::<usize>());

/// `operator new(size_t)`.
#[export_name = "_Znwm"]
pub extern "C-unwind" fn operator_new(size: usize) -> *mut c_void {
    new_or_throw(size, malloc_align(size))
}

/// `operator new[](size_t)`.
#[export_name = "_Znam"]
pub extern "C-unwind" fn operator_new_array(size: usize) -> *mut c_void {
    new_or_throw(size, malloc_align(size))
}

/// `operator new(size_t, const std::nothrow_t&)`.
#[export_name = "_ZnwmRKSt9nothrow_t"]
pub extern "C-unwind" fn operator_new_nothrow(size: usize, _: Nothrow) -> *mut c_void {
    new_or_null(size, malloc_align(size))
}

/// `operator new[](size_t, const std::nothrow_t&)`.
#[export_name = "_ZnamRKSt9nothrow_t"]
pub extern "C-unwind" fn operator_new_array_nothrow(size: usize, _: Nothrow) -> *mut c_void {
    new_or_null(size, malloc_align(size))
}

/// `operator new(size_t, std::align_val_t)`.
#[export_name = "_ZnwmSt11align_val_t"]
pub extern "C-unwind" fn operator_new_aligned(size: usize, align: AlignVal) -> *mut c_void {
    new_or_throw(size, aligned(size, align))
}

/// `operator new[](size_t, std::align_val_t)`.
#[export_name = "_ZnamSt11align_val_t"]
pub extern "C-unwind" fn operator_new_array_aligned(size: usize, align: AlignVal) -> *mut c_void {
    new_or_throw(size, aligned(size, align))
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
#[export_name = "_ZnwmSt11align_val_tRKSt9nothrow_t"]
pub extern "C-unwind" fn operator_new_aligned_nothrow(
    size: usize,
    align: AlignVal,
    _: Nothrow,
) -> *mut c_void {
    new_or_null(size, aligned(size, align))
}

/// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
#[export_name = "_ZnamSt11align_val_tRKSt9nothrow_t"]
pub extern "C-unwind" fn operator_new_array_aligned_nothrow(
    size: usize,
    align: AlignVal,
    _: Nothrow,
) -> *mut c_void {
    new_or_null(size, aligned(size, align))
}

/// `operator delete(void*)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdlPv"]
pub unsafe extern "C" fn operator_delete(ptr: *mut c_void) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete[](void*)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdaPv"]
pub unsafe extern "C" fn operator_delete_array(ptr: *mut c_void) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete(void*, size_t)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdlPvm"]
pub unsafe extern "C" fn operator_delete_sized(ptr: *mut c_void, _: usize) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete[](void*, size_t)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdaPvm"]
pub unsafe extern "C" fn operator_delete_array_sized(ptr: *mut c_void, _: usize) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete(void*, const std::nothrow_t&)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdlPvRKSt9nothrow_t"]
pub unsafe extern "C" fn operator_delete_nothrow(ptr: *mut c_void, _: Nothrow) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete[](void*, const std::nothrow_t&)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdaPvRKSt9nothrow_t"]
pub unsafe extern "C" fn operator_delete_array_nothrow(ptr: *mut c_void, _: Nothrow) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete(void*, std::align_val_t)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdlPvSt11align_val_t"]
pub unsafe extern "C" fn operator_delete_aligned(ptr: *mut c_void, _: AlignVal) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete[](void*, std::align_val_t)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdaPvSt11align_val_t"]
pub unsafe extern "C" fn operator_delete_array_aligned(ptr: *mut c_void, _: AlignVal) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete(void*, size_t, std::align_val_t)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdlPvmSt11align_val_t"]
pub unsafe extern "C" fn operator_delete_sized_aligned(ptr: *mut c_void, _: usize, _: AlignVal) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete[](void*, size_t, std::align_val_t)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdaPvmSt11align_val_t"]
pub unsafe extern "C" fn operator_delete_array_sized_aligned(
    ptr: *mut c_void,
    _: usize,
    _: AlignVal,
) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdlPvSt11align_val_tRKSt9nothrow_t"]
pub unsafe extern "C" fn operator_delete_aligned_nothrow(
    ptr: *mut c_void,
    _: AlignVal,
    _: Nothrow,
) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}

/// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
/// As for `free`.
#[export_name = "_ZdaPvSt11align_val_tRKSt9nothrow_t"]
pub unsafe extern "C" fn operator_delete_array_aligned_nothrow(
    ptr: *mut c_void,
    _: AlignVal,
    _: Nothrow,
) {
    // SAFETY: forwarded under the same contract.
    unsafe { free_checked(ptr) }
}
