//! The C functions called as Rust functions: alignment, sizes, zeroing, `realloc`'s rules,
//! overflow, and `errno` on every failure.
//!
//! Linking the library also makes its `malloc` family the process's (it interposes the C
//! library's), so this test binary, its harness and the C library's own allocations all run on
//! it while the checks run.

use core::ffi::c_void;
use core::ptr;

use fam_malloc as fm;

/// Whether an allocation call returned null. The result escapes through `black_box`: an
/// allocation nobody uses may otherwise be removed by the optimiser (which knows `malloc` and
/// its family by name) and taken to have succeeded.
fn failed<T>(p: *mut T) -> bool {
    std::hint::black_box(p).is_null()
}

fn errno() -> i32 {
    // SAFETY: the calling thread's errno is always readable.
    unsafe { *libc::__errno_location() }
}

fn set_errno(v: i32) {
    // SAFETY: the calling thread's errno is always writable.
    unsafe { *libc::__errno_location() = v };
}

/// Fills `len` bytes at `p` with a pattern derived from `seed`.
///
/// # Safety
/// `p` is valid for writing `len` bytes.
unsafe fn fill(p: *mut c_void, len: usize, seed: u8) {
    let p = p.cast::<u8>();
    for i in 0..len {
        // SAFETY: `i < len`.
        unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

/// Whether the `len` bytes at `p` hold the pattern of `fill(.., seed)`.
///
/// # Safety
/// `p` is valid for reading `len` bytes.
unsafe fn holds(p: *const c_void, len: usize, seed: u8) -> bool {
    let p = p.cast::<u8>();
    // SAFETY: `i < len`.
    (0..len).all(|i| unsafe { p.add(i).read() } == seed.wrapping_add(i as u8))
}

fn addr(p: *const c_void) -> usize {
    p as usize
}

/// Sizes around every interesting boundary: tiny, the 8/16 alignment switch, class steps, the
/// largest slab class (1 MiB) and the large path.
fn sizes() -> Vec<usize> {
    let mut v: Vec<usize> = (0..=80).collect();
    for s in [
        96,
        100,
        127,
        128,
        129,
        255,
        256,
        1000,
        1024,
        4095,
        4096,
        4097,
        10_000,
        65_536,
        100_000,
        (1 << 20) - 1,
        1 << 20,
        (1 << 20) + 1,
        3 << 20,
        (4 << 20) + 17,
    ] {
        v.push(s);
    }
    v
}

/// The alignment an object of `size` bytes needs (its size is a multiple of it): the largest power of two dividing
/// the size rounded up to 8, at most 16 (an object's size is a multiple of its alignment).
fn c_align(size: usize) -> usize {
    let rounded = size.max(1).next_multiple_of(8);
    (1 << rounded.trailing_zeros()).min(16)
}

#[test]
fn malloc_aligns_and_gives_at_least_the_size() {
    for size in sizes() {
        let p = fm::malloc(size);
        assert!(!p.is_null(), "malloc({size})");
        assert_eq!(addr(p) % c_align(size), 0, "malloc({size}) = {p:?}");
        // SAFETY: `p` is a live block.
        let usable = unsafe { fm::malloc_usable_size(p) };
        assert!(usable >= size.max(1), "usable {usable} < {size}");
        // SAFETY: the block holds `usable` bytes.
        unsafe {
            fill(p, usable, size as u8);
            assert!(holds(p, usable, size as u8));
            fm::free(p);
        }
    }
}

#[test]
fn small_odd_multiples_of_8_use_their_own_classes() {
    // 24, 40 and 56 bytes are served from blocks of exactly that size, not rounded to 16.
    for size in [24usize, 40, 56] {
        let p = fm::malloc(size);
        assert!(!p.is_null());
        // SAFETY: a live block.
        assert_eq!(unsafe { fm::malloc_usable_size(p) }, size, "malloc({size})");
        // SAFETY: freed once.
        unsafe { fm::free(p) };
    }
}

#[test]
fn malloc_zero_gives_unique_blocks() {
    let blocks: Vec<*mut c_void> = (0..100).map(|_| fm::malloc(0)).collect();
    for (i, &p) in blocks.iter().enumerate() {
        assert!(!p.is_null());
        assert!(!blocks[..i].contains(&p), "malloc(0) returned {p:?} twice");
    }
    for p in blocks {
        // SAFETY: live blocks, freed once.
        unsafe { fm::free(p) };
    }
}

#[test]
fn free_null_is_a_no_op() {
    // SAFETY: null is always accepted.
    unsafe { fm::free(ptr::null_mut()) };
    // SAFETY: as above.
    assert_eq!(unsafe { fm::malloc_usable_size(ptr::null_mut()) }, 0);
}

/// The free mark lives in a free block's first word, so a live block whose first word holds
/// what programs put there (a pointer to itself, as an empty circular list head does, a pointer
/// to its neighbour, the next block's address plus one) must still be freed like any other, in
/// every class from C.
#[test]
fn first_words_programs_write_are_not_taken_for_the_free_mark() {
    for size in [8usize, 16, 24, 48, 64, 256, 1024, 4096, 65536] {
        let blocks: Vec<*mut usize> = (0..8).map(|_| fm::malloc(size).cast()).collect();
        for (i, &p) in blocks.iter().enumerate() {
            assert!(!p.is_null());
            let word = match i % 4 {
                0 => p as usize,
                1 => p as usize + size,
                2 => p as usize + 1,
                _ => blocks[(i + 1) % blocks.len()] as usize,
            };
            // SAFETY: a live block of at least 8 bytes, aligned for a word.
            unsafe { p.write(word) };
        }
        for p in blocks {
            // SAFETY: live blocks, freed once; a refusal would abort the test.
            unsafe { fm::free(p.cast()) };
        }
    }
}

const HUGE: [usize; 6] = [
    usize::MAX,
    usize::MAX - 4096,
    usize::MAX / 2,
    isize::MAX as usize + 1,
    isize::MAX as usize - 100,
    1 << 62,
];

#[test]
fn huge_requests_fail_with_enomem() {
    for size in HUGE {
        set_errno(0);
        assert!(failed(fm::malloc(size)), "malloc({size:#x})");
        assert_eq!(errno(), libc::ENOMEM, "malloc({size:#x})");
        for (name, p) in [
            ("aligned_alloc", fm::aligned_alloc(64, size)),
            ("memalign", fm::memalign(4096, size)),
            ("valloc", fm::valloc(size)),
            ("pvalloc", fm::pvalloc(size)),
        ] {
            assert!(failed(p), "{name}({size:#x})");
        }
        set_errno(0);
        assert!(failed(fm::pvalloc(size)));
        assert_eq!(errno(), libc::ENOMEM, "pvalloc({size:#x})");
    }
}

#[test]
fn calloc_zeroes_reused_memory() {
    for size in sizes() {
        // Dirty a block, free it, and ask for the same size again: it is likely the same block.
        let p = fm::malloc(size);
        // SAFETY: a live block of at least `size` bytes, freed once.
        unsafe {
            fill(p, size, 0xa5);
            fm::free(p);
        }
        let q = fm::calloc(1, size);
        assert!(!q.is_null(), "calloc(1, {size})");
        assert_eq!(addr(q) % if size > 8 { 16 } else { 8 }, 0);
        // SAFETY: the block holds `size` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(q.cast::<u8>(), size) };
        assert!(
            bytes.iter().all(|&b| b == 0),
            "calloc(1, {size}) not zeroed"
        );
        // SAFETY: live block, freed once.
        unsafe { fm::free(q) };
    }
    let q = fm::calloc(1000, 24);
    // SAFETY: 24000 readable bytes.
    let bytes = unsafe { core::slice::from_raw_parts(q.cast::<u8>(), 24_000) };
    assert!(bytes.iter().all(|&b| b == 0));
    // SAFETY: live block, freed once.
    unsafe { fm::free(q) };
}

#[test]
fn calloc_overflow_fails_with_enomem() {
    for (n, size) in [
        (usize::MAX, 2),
        (2, usize::MAX),
        (1 << 33, 1 << 33),
        (usize::MAX, usize::MAX),
        (1 << 32, 1 << 32),
        (usize::MAX / 2, 1),
    ] {
        set_errno(0);
        assert!(failed(fm::calloc(n, size)), "calloc({n:#x}, {size:#x})");
        assert_eq!(errno(), libc::ENOMEM);
    }
    for (n, size) in [(0, 0), (0, usize::MAX), (usize::MAX, 0)] {
        let p = fm::calloc(n, size);
        assert!(!p.is_null(), "calloc({n}, {size}) is a minimal block");
        // SAFETY: live block, freed once.
        unsafe { fm::free(p) };
    }
}

#[test]
fn realloc_keeps_content_across_every_size() {
    let steps = sizes();
    // Grow through every size, then shrink back through them.
    let mut p = fm::malloc(1);
    // SAFETY: one writable byte.
    unsafe { fill(p, 1, 7) };
    let mut len = 1;
    for &size in steps.iter().skip(2).chain(steps.iter().rev()) {
        let size = size.max(1);
        // SAFETY: `p` is live; the old pointer is not used after a successful move.
        let q = unsafe { fm::realloc(p, size) };
        assert!(!q.is_null(), "realloc to {size}");
        assert_eq!(addr(q) % c_align(size), 0, "realloc to {size}");
        let kept = len.min(size);
        // SAFETY: `q` holds at least `size >= kept` bytes.
        unsafe {
            assert!(holds(q, kept, 7), "realloc to {size} lost content");
            assert!(fm::malloc_usable_size(q) >= size);
            fill(q, size, 7);
        }
        p = q;
        len = size;
    }
    // SAFETY: live block, freed once.
    unsafe { fm::free(p) };
}

#[test]
fn realloc_null_and_zero() {
    // realloc(NULL, n) is malloc(n); realloc(NULL, 0) a minimal block.
    // SAFETY: null is a valid argument.
    let p = unsafe { fm::realloc(ptr::null_mut(), 100) };
    assert!(!p.is_null());
    // SAFETY: as above.
    let z = unsafe { fm::realloc(ptr::null_mut(), 0) };
    assert!(!z.is_null());
    // realloc(p, 0) frees p, returns NULL and leaves errno alone.
    set_errno(1234);
    // SAFETY: live blocks, given up.
    unsafe {
        assert!(failed(fm::realloc(p, 0)));
        assert!(failed(fm::realloc(z, 0)));
    }
    assert_eq!(errno(), 1234);
    // The freed blocks are reused: this would abort if they were still considered live twice.
    let again = fm::malloc(100);
    // SAFETY: live block, freed once.
    unsafe { fm::free(again) };
}

#[test]
fn realloc_in_place_when_the_block_fits() {
    let p = fm::malloc(100);
    // SAFETY: live block.
    let usable = unsafe { fm::malloc_usable_size(p) };
    // SAFETY: `p` is live; it stays the same block.
    let q = unsafe { fm::realloc(p, usable) };
    assert_eq!(p, q, "growing within the usable size keeps the block");
    // SAFETY: live block, freed once.
    unsafe { fm::free(q) };
}

/// A slab block shrunk to half its size or more stays where it is, and one shrunk below half
/// moves to a smaller block; a growth past the block moves to one at least a quarter larger
/// than the old block, so that small steps do not move it at every class.
#[test]
fn realloc_keeps_a_block_down_to_half_and_grows_by_a_quarter_at_least() {
    for size in [64, 100, 1000, 5000, 100_000] {
        let p = fm::malloc(size);
        assert!(!failed(p));
        // SAFETY: live block.
        let usable = unsafe { fm::malloc_usable_size(p) };
        // SAFETY: `p` is live and given up to each call that may move it.
        unsafe {
            fill(p, usable, 3);
            let q = fm::realloc(p, usable.div_ceil(2));
            assert_eq!(q, p, "{size}: a shrink to half stays");
            let r = fm::realloc(q, usable / 2 - 8);
            assert_ne!(r, q, "{size}: a shrink below half moves");
            let smaller = fm::malloc_usable_size(r);
            assert!(smaller < usable, "{size}: {smaller} < {usable}");
            assert!(holds(r, usable / 2 - 8, 3), "{size}: content kept");
            let g = fm::realloc(r, smaller + 1);
            assert_ne!(g, r, "{size}: a growth past the block moves");
            let grown = fm::malloc_usable_size(g);
            assert!(
                grown >= smaller + smaller / 4,
                "{size}: {grown} vs {smaller}"
            );
            assert!(holds(g, usable / 2 - 8, 3), "{size}: content kept");
            fm::free(g);
        }
    }
}

#[test]
fn failed_realloc_leaves_the_block() {
    for start in [10, 1000, 2 << 20] {
        let p = fm::malloc(start);
        // SAFETY: `start` writable bytes.
        unsafe { fill(p, start, 3) };
        for size in HUGE {
            set_errno(0);
            // SAFETY: `p` is live; on failure it stays ours.
            let q = unsafe { fm::realloc(p, size) };
            assert!(failed(q), "realloc {size:#x}");
            assert_eq!(errno(), libc::ENOMEM);
            // SAFETY: as above.
            assert!(unsafe { holds(p, start, 3) });
        }
        // SAFETY: live block, freed once.
        unsafe { fm::free(p) };
    }
}

#[test]
fn reallocarray_checks_the_product() {
    let p = fm::malloc(16);
    // SAFETY: 16 writable bytes.
    unsafe { fill(p, 16, 9) };
    for (n, size) in [
        (usize::MAX, 2),
        (1 << 33, 1 << 33),
        (usize::MAX, usize::MAX),
    ] {
        set_errno(0);
        // SAFETY: `p` is live and stays ours on failure.
        assert!(failed(unsafe { fm::reallocarray(p, n, size) }));
        assert_eq!(errno(), libc::ENOMEM);
        // SAFETY: as above.
        assert!(unsafe { holds(p, 16, 9) });
    }
    // SAFETY: `p` is live and replaced by the result.
    let q = unsafe { fm::reallocarray(p, 100, 8) };
    assert!(!q.is_null());
    // SAFETY: the block holds 800 bytes, 16 of them kept.
    unsafe {
        assert!(holds(q, 16, 9));
        assert!(fm::malloc_usable_size(q) >= 800);
        // A zero product frees, as realloc(q, 0) does.
        assert!(failed(fm::reallocarray(q, 0, 8)));
    }
}

#[test]
fn posix_memalign_checks_the_alignment_without_touching_errno() {
    let sentinel = 0x1234 as *mut c_void;
    for align in [0, 1, 2, 3, 4, 5, 12, 24, 48, 100, 4097, usize::MAX] {
        let mut out = sentinel;
        set_errno(777);
        // SAFETY: `out` is writable.
        let rc = unsafe { fm::posix_memalign(&mut out, align, 64) };
        assert_eq!(rc, libc::EINVAL, "posix_memalign(align {align})");
        assert_eq!(errno(), 777, "errno untouched");
        assert_eq!(out, sentinel, "*memptr untouched");
    }
    let mut align = 8;
    while align <= 16 << 20 {
        for size in [0, 1, 8, 100, align, 3 * align / 2] {
            let mut out = ptr::null_mut();
            // SAFETY: `out` is writable.
            let rc = unsafe { fm::posix_memalign(&mut out, align, size) };
            assert_eq!(rc, 0, "posix_memalign({align}, {size})");
            assert!(!out.is_null());
            assert_eq!(addr(out) % align, 0, "posix_memalign({align}, {size})");
            // SAFETY: a live block of at least `size` bytes, freed once.
            unsafe {
                assert!(fm::malloc_usable_size(out) >= size);
                fill(out, size, 1);
                fm::free(out);
            }
        }
        align *= 2;
    }
    let mut out = sentinel;
    // SAFETY: `out` is writable.
    let rc = unsafe { fm::posix_memalign(&mut out, 64, usize::MAX - 10) };
    assert_eq!(rc, libc::ENOMEM);
    assert_eq!(out, sentinel);
    // SAFETY: as above.
    let rc = unsafe { fm::posix_memalign(&mut out, 1 << 62, 16) };
    assert_eq!(rc, libc::ENOMEM);
    assert_eq!(out, sentinel);
}

#[test]
fn aligned_alloc_wants_a_power_of_two() {
    for align in [0, 3, 6, 24, 100, 4097, usize::MAX] {
        set_errno(0);
        assert!(failed(fm::aligned_alloc(align, 64)), "align {align}");
        assert_eq!(errno(), libc::EINVAL, "align {align}");
    }
    for align in [1, 2, 4, 8, 16, 64, 4096, 1 << 16, 1 << 21, 1 << 23] {
        for size in [0, 1, 7, 100, 5000] {
            let p = fm::aligned_alloc(align, size);
            assert!(!p.is_null());
            assert_eq!(addr(p) % align, 0);
            // Never less aligned than malloc.
            assert_eq!(addr(p) % if size > 8 { 16 } else { 8 }, 0);
            // SAFETY: live block, freed once.
            unsafe { fm::free(p) };
        }
    }
}

#[test]
fn memalign_rounds_the_alignment_up() {
    for (align, want) in [
        (0, 8),
        (1, 8),
        (3, 8),
        (24, 32),
        (100, 128),
        (4000, 4096),
        (4097, 8192),
        (3 << 20, 4 << 20),
        (5 << 20, 8 << 20),
    ] {
        let p = fm::memalign(align, 200);
        assert!(!p.is_null(), "memalign({align})");
        assert_eq!(addr(p) % want, 0, "memalign({align}) = {p:?}");
        // SAFETY: a live block of at least 200 bytes, freed once.
        unsafe {
            fill(p, 200, 4);
            fm::free(p);
        }
    }
    for align in [usize::MAX, (1 << 63) + 1] {
        set_errno(0);
        assert!(failed(fm::memalign(align, 10)));
        assert_eq!(errno(), libc::EINVAL);
    }
}

#[test]
fn valloc_and_pvalloc_use_pages() {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    for size in [0, 1, 100, page - 1, page, page + 1, 3 * page + 5, 2 << 20] {
        let v = fm::valloc(size);
        assert_eq!(addr(v) % page, 0, "valloc({size})");
        let p = fm::pvalloc(size);
        assert_eq!(addr(p) % page, 0, "pvalloc({size})");
        let rounded = size.max(1).next_multiple_of(page);
        // SAFETY: live blocks, freed once.
        unsafe {
            assert!(fm::malloc_usable_size(v) >= size);
            assert!(fm::malloc_usable_size(p) >= rounded, "pvalloc({size})");
            fill(p, rounded, 5);
            fm::free(v);
            fm::free(p);
        }
    }
    set_errno(0);
    assert!(failed(fm::pvalloc(usize::MAX - page + 2)));
    assert_eq!(errno(), libc::ENOMEM);
}

#[test]
fn mallopt_accepts_the_common_parameters() {
    for param in [
        fm::M_MXFAST,
        fm::M_TRIM_THRESHOLD,
        fm::M_TOP_PAD,
        fm::M_MMAP_THRESHOLD,
        fm::M_MMAP_MAX,
        fm::M_CHECK_ACTION,
        fm::M_PERTURB,
        fm::M_ARENA_TEST,
        fm::M_ARENA_MAX,
    ] {
        assert_eq!(fm::mallopt(param, 0), 1, "mallopt({param})");
        assert_eq!(fm::mallopt(param, 1 << 20), 1, "mallopt({param})");
    }
    // The constants are glibc's.
    assert_eq!(fm::M_MXFAST, 1);
    assert_eq!(fm::M_MMAP_THRESHOLD, -3);
    assert_eq!(fm::M_ARENA_MAX, -8);
    for param in [0, 2, 3, 4, 5, -9, 1000, i32::MIN, i32::MAX] {
        assert_eq!(fm::mallopt(param, 0), 0, "mallopt({param})");
    }
}

#[test]
fn blocks_are_distinct_and_keep_their_content() {
    // Many live blocks of mixed sizes at once: none overlaps another.
    let mut live: Vec<(*mut c_void, usize, u8)> = Vec::new();
    for i in 0..3000usize {
        let size = [1, 8, 9, 24, 100, 500, 4000, 70_000][i % 8] + i % 13;
        let p = fm::malloc(size);
        // SAFETY: `size` writable bytes.
        unsafe { fill(p, size, i as u8) };
        live.push((p, size, i as u8));
    }
    let mut ranges: Vec<(usize, usize)> = live.iter().map(|&(p, s, _)| (addr(p), s)).collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "blocks overlap: {w:?}");
    }
    for (p, size, seed) in live {
        // SAFETY: live block of `size` bytes, freed once.
        unsafe {
            assert!(holds(p, size, seed));
            fm::free(p);
        }
    }
}
