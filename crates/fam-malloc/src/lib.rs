//! The C ABI of fam-alloc: `malloc`, `free` and the rest of the family, built as a shared
//! library (`libfam_malloc.so`, for `LD_PRELOAD`) and a static library (`libfam_malloc.a`, to
//! link into a program). The C declarations are in `include/fam_malloc.h`.
//!
//! Every function is a thin layer over [`fam_alloc::raw`], which allocates by size and alignment
//! and frees, measures and resizes from the pointer alone. This layer adds what C expects on top:
//!
//! - **Alignment.** `malloc`, `calloc` and `realloc` align a request to what an object of that
//!   size needs: the largest power of two dividing the size rounded up to 8, at most 16 (what
//!   `max_align_t` needs), so 24, 40 and 56 bytes get blocks of exactly that size, as mimalloc
//!   gives them. `posix_memalign`, `aligned_alloc`, `memalign`,
//!   `valloc` and `pvalloc` check and adjust the alignment the way glibc does (see each one).
//! - **Errors.** A request that cannot be met returns null with `errno` set to `ENOMEM`; sizes
//!   are never wrapped (`calloc` and `reallocarray` check their products, and a request near
//!   `SIZE_MAX` fails instead of getting a small block). `posix_memalign` returns its error
//!   instead.
//! - **Zero sizes.** `malloc(0)` returns a unique minimal block; `realloc(p, 0)` frees `p` and
//!   returns null, as glibc does; `realloc(NULL, 0)` is `malloc(0)`.
//! - **Hardening.** A free, `realloc` or `malloc_usable_size` of a pointer the allocator does not
//!   own, of a pointer into the middle of a block, or of a block that is already free prints
//!   `fam-alloc: OP(0xADDR): WHAT` on stderr and aborts (the checks are [`fam_alloc::raw`]'s).
//!
//! - **C++.** `operator new` and `operator delete`, every replaceable form, go to the same paths
//!   (see the `cxx` module): C++ programs do not reach the allocator through their runtime's
//!   `operator new` and `malloc`.
//!
//! Rust code inside the library allocates from the same heap: the crate sets [`FamAlloc`] as the
//! global allocator, so the library never calls the C library's allocator.
//!
//! Thread exit and `fork()` need little here: the facade flushes an exiting thread's heap from a
//! pthread key destructor, and its slab pools need no locks around `fork()`. The one thing this
//! layer does is create that key at load time ([`fam_alloc::raw::init`], from `.init_array`),
//! before the program's own constructors can take the 32 keys glibc stores inline.
//!
//! [`FamAlloc`]: fam_alloc::FamAlloc

mod cxx;
mod errno;
mod family;
mod info;
mod shared;

pub use family::{
    aligned_alloc, calloc, free, malloc, malloc_usable_size, memalign, posix_memalign, pvalloc,
    realloc, reallocarray, valloc,
};
pub use info::{
    fam_option_get, fam_option_set, fam_trim, fam_version, mallinfo, mallinfo2, malloc_trim,
    mallopt, MallInfo, MallInfo2, M_ARENA_MAX, M_ARENA_TEST, M_CHECK_ACTION, M_MMAP_MAX,
    M_MMAP_THRESHOLD, M_MXFAST, M_PERTURB, M_TOP_PAD, M_TRIM_THRESHOLD,
};
pub use shared::{
    fam_alloc, fam_init_global_allocator, fam_print_stats, fam_release, fam_resize, fam_write_stats,
};

/// Runs when the library is loaded, before the program's constructors: a preloaded or linked
/// shared library is initialised before the program that uses it, and in a static link the
/// priority 100 sorts before every priority a program may give its own (101 and up).
extern "C" fn at_load() {
    fam_alloc::raw::init();
}

#[used]
#[link_section = ".init_array.00100"]
static AT_LOAD: extern "C" fn() = at_load;

/// Every Rust allocation made inside the library comes from the same heap as `malloc`.
#[global_allocator]
static GLOBAL: fam_alloc::FamAlloc = fam_alloc::FamAlloc::new();
