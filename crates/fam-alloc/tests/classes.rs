//! Every size class and every alignment, at and around each class boundary; zero-sized
//! layouts; `realloc` across classes and into and out of large blocks; `alloc_zeroed` on reused
//! memory.
//!
//! The class sizes below are those of the default policy (8 to 64 bytes in steps of 8, then four
//! classes per doubling up to `MAX_SMALL_SIZE`). Nothing here depends on them being exact: they
//! only choose the sizes to test, which then sit right at the boundaries.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;

use common::{
    check, check_prefix, exclusive, fill, is_zero, mib, rss_anon, scaled, shared, XorShift,
};
use fam_alloc::{FamAlloc, MAX_SMALL_ALIGN, MAX_SMALL_SIZE};

#[global_allocator]
static A: FamAlloc = FamAlloc::new();

/// The block sizes of the small classes.
fn class_sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = (1..=8).map(|i| i * 8).collect();
    let mut base = 64;
    while base < MAX_SMALL_SIZE {
        sizes.extend((1..=4).map(|j| base + j * base / 4));
        base *= 2;
    }
    assert_eq!(sizes.last(), Some(&MAX_SMALL_SIZE));
    sizes
}

/// Every class size, one less and one more, and 1.
fn boundary_sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = class_sizes()
        .into_iter()
        .flat_map(|s| [s - 1, s, s + 1])
        .chain([1])
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Every power of two from 1 to 1 MiB.
fn alignments() -> impl Iterator<Item = usize> {
    (0..=20).map(|k| 1usize << k)
}

/// Live blocks by address, to check that none overlaps another.
#[derive(Default)]
struct Live {
    blocks: BTreeMap<usize, (Layout, u64)>,
}

impl Live {
    /// Allocates `layout`, checks alignment and ownership, fills it and records it.
    fn alloc(&mut self, layout: Layout, seed: u64) -> *mut u8 {
        // SAFETY: every layout used with `Live` has a non-zero size.
        let p = unsafe { A.alloc(layout) };
        assert!(!p.is_null(), "out of memory for {layout:?}");
        assert_eq!(p as usize % layout.align(), 0, "{layout:?} got {p:p}");
        assert!(
            fam_alloc::owns(p),
            "{layout:?} got {p:p}, not the allocator's"
        );
        // SAFETY: the block holds `layout.size()` bytes, ours alone.
        unsafe {
            p.write(0x5a);
            p.add(layout.size() - 1).write(0xa5);
            fill(p, layout.size(), seed);
        }
        self.insert(p, layout, seed);
        p
    }

    /// Records a live block, asserting that it overlaps no other.
    fn insert(&mut self, p: *mut u8, layout: Layout, seed: u64) {
        let (start, end) = (p as usize, p as usize + layout.size().max(1));
        if let Some((&s, &(l, _))) = self.blocks.range(..end).next_back() {
            assert!(
                s + l.size().max(1) <= start,
                "{layout:?} at {start:#x} overlaps {l:?} at {s:#x}"
            );
        }
        self.blocks.insert(start, (layout, seed));
    }

    /// Checks the pattern of the block at `p`, forgets it and frees it.
    fn free(&mut self, p: *mut u8) {
        let (layout, seed) = self.blocks.remove(&(p as usize)).expect("a live block");
        // SAFETY: the block is live and holds `layout.size()` bytes.
        let bad = unsafe { check(p, layout.size(), seed) };
        assert_eq!(bad, None, "{layout:?} at {p:p} corrupted at offset {bad:?}");
        // SAFETY: allocated with `layout` and freed once.
        unsafe { A.dealloc(p, layout) };
    }

    fn check_all(&self) {
        for (&p, &(layout, seed)) in &self.blocks {
            // SAFETY: the block is live and holds `layout.size()` bytes.
            let bad = unsafe { check(p as *const u8, layout.size(), seed) };
            assert_eq!(
                bad, None,
                "{layout:?} at {p:#x} corrupted at offset {bad:?}"
            );
        }
    }

    fn free_all(&mut self) {
        self.check_all();
        let all: Vec<usize> = self.blocks.keys().copied().collect();
        for p in all {
            self.free(p as *mut u8);
        }
    }
}

#[test]
fn every_size_around_every_class_at_every_alignment() {
    let _g = shared();
    let window = 48;
    let mut live = Live::default();
    let mut order = std::collections::VecDeque::new();
    let mut seed = 0;
    for align in alignments() {
        for size in boundary_sizes() {
            let layout = Layout::from_size_align(size, align).unwrap();
            seed += 1;
            order.push_back(live.alloc(layout, seed));
            if order.len() > window {
                live.free(order.pop_front().unwrap());
            }
        }
        // Just past the small limits: large blocks.
        for size in [MAX_SMALL_SIZE + 1, MAX_SMALL_SIZE + 4096, 3 << 20] {
            seed += 1;
            order.push_back(live.alloc(Layout::from_size_align(size, align).unwrap(), seed));
        }
        live.check_all();
    }
    live.free_all();
}

#[test]
fn many_blocks_of_every_class_alive_at_once() {
    let _g = shared();
    let per_class = scaled(1 << 20, 512 << 10);
    let mut live = Live::default();
    let mut seed = 1 << 32;
    for size in class_sizes() {
        let count = (per_class / size).clamp(4, 512);
        for _ in 0..count {
            seed += 1;
            live.alloc(Layout::from_size_align(size, 8).unwrap(), seed);
        }
    }
    // Page-aligned blocks of every size too (slab blocks up to 4 KiB alignment).
    for size in class_sizes().into_iter().step_by(3) {
        seed += 1;
        live.alloc(
            Layout::from_size_align(size, MAX_SMALL_ALIGN).unwrap(),
            seed,
        );
    }
    live.free_all();
}

#[test]
fn zero_sized_layouts() {
    let _g = shared();
    // `GlobalAlloc` leaves zero-sized requests to the implementation; this one serves them
    // (the C `malloc(0)` relies on it) with distinct, aligned, freeable blocks.
    let mut blocks = Vec::new();
    for align in alignments().take(14) {
        let layout = Layout::from_size_align(0, align).unwrap();
        for _ in 0..3 {
            // SAFETY: a zero-sized layout, which this allocator accepts.
            let p = unsafe { A.alloc(layout) };
            assert!(!p.is_null(), "{layout:?}");
            assert_eq!(p as usize % align, 0, "{layout:?} got {p:p}");
            assert!(fam_alloc::owns(p));
            blocks.push((p, layout));
        }
        // SAFETY: as above.
        let z = unsafe { A.alloc_zeroed(layout) };
        assert!(!z.is_null() && (z as usize).is_multiple_of(align));
        blocks.push((z, layout));
    }
    let mut addrs: Vec<usize> = blocks.iter().map(|&(p, _)| p as usize).collect();
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(
        addrs.len(),
        blocks.len(),
        "live zero-sized blocks are distinct"
    );
    for (p, layout) in blocks {
        // SAFETY: allocated with `layout`, freed once.
        unsafe { A.dealloc(p, layout) };
    }
    // Grow a zero-sized block to a real one.
    let layout = Layout::from_size_align(0, 16).unwrap();
    // SAFETY: a zero-sized layout, then a realloc to 100 bytes of the same block.
    unsafe {
        let p = A.alloc(layout);
        assert!(!p.is_null());
        let q = A.realloc(p, layout, 100);
        assert!(!q.is_null() && (q as usize).is_multiple_of(16));
        fill(q, 100, 3);
        assert_eq!(check(q, 100, 3), None);
        A.dealloc(q, Layout::from_size_align(100, 16).unwrap());
    }
}

/// Reallocates the block at `p` (of `layout`, filled with `seed`) to `new_size`, checks that the
/// common prefix survived, refills it with `seed + 1`; the new pointer and layout.
fn realloc_checked(p: *mut u8, layout: Layout, seed: u64, new_size: usize) -> (*mut u8, Layout) {
    // SAFETY: `p` is live with `layout`; `new_size` is non-zero and fits the alignment.
    let q = unsafe { A.realloc(p, layout, new_size) };
    assert!(!q.is_null(), "realloc {layout:?} -> {new_size}");
    assert_eq!(
        q as usize % layout.align(),
        0,
        "realloc {layout:?} -> {new_size} at {q:p}"
    );
    // SAFETY: `q` holds `new_size` bytes, the first `min` of them the old content.
    let bad = unsafe { check_prefix(q, layout.size(), new_size, seed) };
    assert_eq!(
        bad, None,
        "realloc {layout:?} -> {new_size} lost content at {bad:?}"
    );
    // SAFETY: `q` holds `new_size` bytes, ours alone.
    unsafe { fill(q, new_size, seed + 1) };
    (
        q,
        Layout::from_size_align(new_size, layout.align()).unwrap(),
    )
}

#[test]
fn realloc_across_classes_keeps_content() {
    let _g = shared();
    const M: usize = 1 << 20;
    // small -> small (growing and shrinking), small -> large, large -> large (growing, in
    // place, shrinking), large -> small, and back.
    let path = [
        24,
        100,
        5000,
        40,
        4096,
        200_000,
        M,
        M + 1,
        3 * M,
        3 * M + 4096,
        9 * M,
        17 * M,
        5 * M,
        2 * M,
        M,
        200,
        12,
        6 * M,
        1,
    ];
    for align in [1, 8, 64, 4096, 8192, M] {
        let layout = Layout::from_size_align(path[0], align).unwrap();
        // SAFETY: a non-zero layout.
        let mut p = unsafe { A.alloc(layout) };
        assert!(!p.is_null());
        let mut layout = layout;
        let mut seed = align as u64 * 1000;
        // SAFETY: `p` holds `layout.size()` bytes.
        unsafe { fill(p, layout.size(), seed) };
        for &size in &path[1..] {
            (p, layout) = realloc_checked(p, layout, seed, size);
            seed += 1;
        }
        // SAFETY: `p` is live with `layout`.
        assert_eq!(unsafe { check(p, layout.size(), seed) }, None);
        // SAFETY: allocated (last reallocated) with `layout`, freed once.
        unsafe { A.dealloc(p, layout) };
    }
}

#[test]
fn realloc_random_walk() {
    let _g = shared();
    let mut rng = XorShift::new(77);
    let steps = scaled(3000, 600);
    let mut blocks: Vec<(*mut u8, Layout, u64)> = Vec::new();
    for k in 0..8u64 {
        let align = 1 << rng.below(14);
        let layout = Layout::from_size_align(1 + rng.below_usize(1000), align).unwrap();
        // SAFETY: a non-zero layout.
        let p = unsafe { A.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: `p` holds `layout.size()` bytes.
        unsafe { fill(p, layout.size(), k << 40) };
        blocks.push((p, layout, k << 40));
    }
    for _ in 0..steps {
        let i = rng.below_usize(blocks.len());
        let (p, layout, seed) = blocks[i];
        let new_size = match rng.below(10) {
            0 => 1 + rng.below_usize(4 << 20),
            1..=3 => 1 + rng.below_usize(64 << 10),
            _ => 1 + rng.below_usize(2048),
        };
        let (q, l) = realloc_checked(p, layout, seed, new_size);
        blocks[i] = (q, l, seed + 1);
    }
    for (p, layout, seed) in blocks {
        // SAFETY: `p` is live with `layout`; freed once.
        unsafe {
            assert_eq!(check(p, layout.size(), seed), None);
            A.dealloc(p, layout);
        }
    }
}

/// Allocates, dirties and frees `layout`, then asks for zeroed memory of the same layout (most
/// likely the same block back), `rounds` times.
fn zeroed_after_reuse(layout: Layout, rounds: usize) {
    for _ in 0..rounds {
        // SAFETY: a non-zero layout; each block is freed once.
        unsafe {
            let p = A.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(0xab, layout.size());
            A.dealloc(p, layout);
            let z = A.alloc_zeroed(layout);
            assert!(!z.is_null());
            assert_eq!(z as usize % layout.align(), 0);
            assert!(
                is_zero(z, layout.size()),
                "alloc_zeroed({layout:?}) gave dirty memory"
            );
            z.write_bytes(0xcd, layout.size());
            A.dealloc(z, layout);
        }
    }
}

#[test]
fn alloc_zeroed_after_reuse_small() {
    let _g = shared();
    for size in boundary_sizes() {
        for align in [1, 16, 4096] {
            zeroed_after_reuse(Layout::from_size_align(size, align).unwrap(), 20);
        }
    }
}

#[test]
fn alloc_zeroed_after_reuse_large() {
    let _g = shared();
    const M: usize = 1 << 20;
    for size in [M + 1, 2 * M + 3, 6 * M, 12 * M + 5] {
        for align in [8, 8192] {
            zeroed_after_reuse(Layout::from_size_align(size, align).unwrap(), 6);
        }
    }
}

#[test]
fn huge_alloc_zeroed_is_not_touched() {
    let _g = exclusive();
    const SIZE: usize = 256 << 20;
    let layout = Layout::from_size_align(SIZE, 4096).unwrap();
    let before = rss_anon();
    // SAFETY: a non-zero layout; freed below.
    let p = unsafe { A.alloc_zeroed(layout) };
    assert!(!p.is_null());
    let after = rss_anon();
    assert!(
        after < before + (8 << 20),
        "alloc_zeroed of 256 MiB raised resident memory by {:.1} MiB",
        mib(after.saturating_sub(before))
    );
    // Reading it back zero (one byte per 64 KiB) does not need to commit pages either.
    for off in (0..SIZE).step_by(64 << 10) {
        // SAFETY: inside the block.
        assert_eq!(unsafe { p.add(off).read() }, 0);
    }
    // SAFETY: as above.
    assert_eq!(unsafe { p.add(SIZE - 1).read() }, 0);
    // SAFETY: allocated with `layout`, freed once.
    unsafe { A.dealloc(p, layout) };
}
