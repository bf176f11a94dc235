//! The cache of freed runs, and the honesty of `zeroed`.

#![cfg(feature = "mmap")]

mod common;

use std::sync::atomic::Ordering;

use chunk_source::{MmapSource, RegionSource};
use common::{check, fill, is_zero, Probe, MIB};
use large_alloc::{
    LargeAlloc, SourceProps, CACHE_MAX_AGE, CACHE_MAX_CHUNKS, CACHE_MAX_RUN_CHUNKS, CACHE_SLOTS,
    CHUNK_SIZE,
};

/// A source whose runs cannot be resized: a cached run serves only blocks it is long enough for.
fn fixed_runs() -> Probe<MmapSource> {
    Probe::with_props(
        MmapSource::new(),
        SourceProps::empty(),
        SourceProps::RESIZABLE,
    )
}

#[test]
fn a_freed_run_is_reused() {
    let large = LargeAlloc::new(fixed_runs());
    for size in [MIB, 5 * MIB, 13 * MIB] {
        let a = large.alloc(size, 64).unwrap();
        // SAFETY: a live block of `large`.
        unsafe { large.dealloc(a.ptr) }.unwrap();
        let b = large.alloc(size, 64).unwrap();
        assert_eq!(b.base, a.base, "size {size}");
        assert_eq!(b.ptr, a.ptr);
        assert!(!b.zeroed);
        // SAFETY: as above.
        unsafe { large.dealloc(b.ptr) }.unwrap();
    }
    // One source allocation per size, and a loop of alloc/free costs none (kept short enough
    // that the other two runs do not age out meanwhile).
    assert_eq!(large.source().allocs(), 3);
    for _ in 0..CACHE_MAX_AGE / 4 {
        let b = large.alloc(3 * MIB, 4096).unwrap();
        // SAFETY: as above.
        unsafe { large.dealloc(b.ptr) }.unwrap();
    }
    assert_eq!(large.source().allocs(), 3);
    assert_eq!(large.source().deallocs(), 0);
    let cached = large.cached_chunks();
    assert_eq!(cached, 1 + 2 + 4);
    assert_eq!(large.trim(), cached);
    assert_eq!(large.cached_chunks(), 0);
    assert_eq!(large.source().live_chunks(), 0);
}

#[test]
fn a_longer_cached_run_serves_whole_up_to_twice_the_need_and_is_split_past_it_keeping_the_tail() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    let big = large.alloc(6 * CHUNK_SIZE - 4096, 64).unwrap();
    assert_eq!(big.nchunks, 6);
    // SAFETY: a live block of `large`, freed once.
    unsafe { large.dealloc(big.ptr) }.unwrap();
    // A 3-chunk block takes the 6-chunk run whole (at most 2 x 3), and gives it back whole.
    let a = large.alloc(3 * CHUNK_SIZE - 4096, 64).unwrap();
    assert_eq!((a.base, a.nchunks), (big.base, 6));
    assert_eq!(large.cached_chunks(), 0);
    // SAFETY: as above.
    unsafe {
        fill(a.ptr, 3 * CHUNK_SIZE - 4096, 1);
        large.dealloc(a.ptr).unwrap();
    }
    assert_eq!(large.cached_chunks(), 6);
    // A 2-chunk block would waste four: it takes the head, and the tail stays cached.
    let b = large.alloc(2 * CHUNK_SIZE - 4096, 64).unwrap();
    assert_eq!((b.base, b.nchunks), (big.base, 2));
    assert_eq!(large.cached_chunks(), 4);
    assert_eq!(
        large.source().live_chunks(),
        6,
        "nothing went back to the source"
    );
    // The tail serves the next block that needs four chunks, with its pages and content.
    let c = large.alloc(4 * CHUNK_SIZE - 4096, 64).unwrap();
    // SAFETY: the third chunk of the 6-chunk run, the tail's first.
    let tail = unsafe { big.base.add(2 * CHUNK_SIZE) };
    assert_eq!((c.base, c.nchunks), (tail, 4));
    assert_eq!(large.cached_chunks(), 0);
    assert_eq!(large.source().allocs(), 1, "one mapping served all four");
    // SAFETY: as above.
    unsafe {
        large.dealloc(b.ptr).unwrap();
        large.dealloc(c.ptr).unwrap();
    }
    assert_eq!(large.trim(), 6);
    assert_eq!(large.source().live_chunks(), 0);
}

/// Frees a 2-chunk block filled with pattern 7 and then a 1-chunk block filled with pattern 8,
/// so that the cache holds runs of 2 and 1 chunks, and returns their bases.
fn cache_runs_of_two_and_one(large: &LargeAlloc<Probe<MmapSource>>) -> (usize, usize) {
    let two = large.alloc(2 * CHUNK_SIZE - 4096, 64).unwrap();
    let one = large.alloc(CHUNK_SIZE / 2, 64).unwrap();
    assert_eq!((two.nchunks, one.nchunks), (2, 1));
    // SAFETY: live blocks of `large`, each filled within its size and freed once.
    unsafe {
        fill(two.ptr, 2 * CHUNK_SIZE - 4096, 7);
        fill(one.ptr, CHUNK_SIZE / 2, 8);
        large.dealloc(two.ptr).unwrap();
        large.dealloc(one.ptr).unwrap();
    }
    assert_eq!(large.cached_chunks(), 3);
    (two.base.as_ptr() as usize, one.base.as_ptr() as usize)
}

/// With no cached run long enough, shorter cached runs are moved into a fresh run, the longest
/// that fits first, and their pages and content come along: only the chunk no cached run
/// covered is fresh.
#[test]
fn shorter_cached_runs_are_gathered_into_a_longer_one_with_their_pages() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    cache_runs_of_two_and_one(&large);
    let (allocs, moves) = (large.source().allocs(), large.source().moves());
    let size = 4 * CHUNK_SIZE - 4096;
    let g = large.alloc(size, 64).unwrap();
    assert_eq!(g.nchunks, 4);
    assert!(!g.zeroed, "a gathered run holds what its blocks left");
    assert_eq!(
        large.source().allocs(),
        allocs + 1,
        "one fresh run to gather into"
    );
    assert_eq!(
        large.source().moves(),
        moves + 3,
        "both cached runs moved in"
    );
    assert_eq!(large.cached_chunks(), 0);
    assert_eq!(large.source().live_chunks(), 4);
    // SAFETY: the block's run is ours and readable for its four chunks; the payloads of the
    // old blocks were at offset 64 of their runs, as the new one's is.
    unsafe {
        assert_eq!(
            check(g.ptr, 2 * CHUNK_SIZE - 4096, 7),
            Ok(()),
            "the 2-chunk run"
        );
        let third = g.ptr.add(2 * CHUNK_SIZE);
        assert_eq!(check(third, CHUNK_SIZE / 2, 8), Ok(()), "the 1-chunk run");
        assert!(
            is_zero(g.base.add(3 * CHUNK_SIZE), CHUNK_SIZE),
            "the fresh chunk"
        );
        large.dealloc(g.ptr).unwrap();
    }
    assert_eq!(large.trim(), 4);
    assert_eq!(large.source().live_chunks(), 0);
}

/// A block to be cleared is not gathered (clearing would write every page of the moved runs):
/// it gets a fresh run, which reads as zero, and the cached runs stay; a cached run long
/// enough is taken and cleared.
#[test]
fn a_zeroed_block_is_not_gathered_and_a_reused_one_is_cleared() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    cache_runs_of_two_and_one(&large);
    let (allocs, moves) = (large.source().allocs(), large.source().moves());
    let size = 4 * CHUNK_SIZE - 4096;
    let z = large.alloc_zeroed(size, 64).unwrap();
    assert!(z.zeroed);
    assert_eq!(large.source().allocs(), allocs + 1);
    assert_eq!(large.source().moves(), moves, "nothing gathered");
    assert_eq!(large.cached_chunks(), 3);
    // SAFETY: a live block of `size` bytes.
    unsafe { assert!(is_zero(z.ptr, size)) };
    // The 2-chunk run serves a 2-chunk zeroed block, cleared of what its block left.
    let r = large.alloc_zeroed(2 * CHUNK_SIZE - 4096, 64).unwrap();
    assert_eq!(r.nchunks, 2);
    assert_eq!(large.source().allocs(), allocs + 1, "the cached run");
    // SAFETY: as above.
    unsafe {
        assert!(is_zero(r.ptr, 2 * CHUNK_SIZE - 4096));
        large.dealloc(z.ptr).unwrap();
        large.dealloc(r.ptr).unwrap();
    }
    assert_eq!(large.trim(), 4 + 2 + 1);
    assert_eq!(large.source().live_chunks(), 0);
}

/// A move that fails loses nothing: the chunk gathered so far and the rest of the run being
/// moved stay cached, the chunk the failure may have unmapped is not touched, and the block
/// gets a fresh run.
#[test]
fn a_failed_move_loses_nothing() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    let (_, one) = cache_runs_of_two_and_one(&large);
    large.source().moves_left.store(1, Ordering::SeqCst);
    let allocs = large.source().allocs();
    let b = large.alloc(4 * CHUNK_SIZE - 4096, 64).unwrap();
    assert_eq!(b.nchunks, 4);
    assert!(b.zeroed, "a fresh run");
    assert_eq!(
        large.source().allocs(),
        allocs + 2,
        "the run to gather into, then a fresh one"
    );
    assert_eq!(large.source().moves(), 1);
    assert_eq!(large.cached_chunks(), 3, "three 1-chunk runs");
    assert_eq!(
        large.source().live_chunks(),
        4 + 3,
        "no chunk leaked or given back twice"
    );
    // The 1-chunk run was never taken and holds what its block left.
    let one = std::ptr::NonNull::new((one + 64) as *mut u8).unwrap();
    // SAFETY: a cached run, mapped and written by nobody; its old payload was at offset 64.
    assert_eq!(unsafe { check(one, CHUNK_SIZE / 2, 8) }, Ok(()));
    // SAFETY: a live block of `large`, freed once.
    unsafe { large.dealloc(b.ptr) }.unwrap();
    assert_eq!(large.trim(), 3 + 4);
    assert_eq!(large.source().live_chunks(), 0);
}

#[test]
fn the_cache_is_bounded() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    // Runs longer than the limit are never cached.
    let long = large.alloc(CACHE_MAX_RUN_CHUNKS * CHUNK_SIZE, 64).unwrap();
    assert!(long.nchunks > CACHE_MAX_RUN_CHUNKS);
    // SAFETY: a live block of `large`.
    unsafe { large.dealloc(long.ptr) }.unwrap();
    assert_eq!(large.cached_chunks(), 0);
    assert_eq!(large.source().deallocs(), 1);
    // Many runs freed at once: at most CACHE_SLOTS of them and CACHE_MAX_CHUNKS chunks stay.
    for n in [1, CACHE_MAX_RUN_CHUNKS] {
        let blocks: Vec<_> = (0..2 * CACHE_SLOTS)
            .map(|_| large.alloc(n * CHUNK_SIZE - 64, 1).unwrap())
            .collect();
        for b in &blocks {
            assert_eq!(b.nchunks, n);
            // SAFETY: live blocks of `large`, each freed once.
            unsafe { large.dealloc(b.ptr) }.unwrap();
        }
        let cached = large.cached_chunks();
        assert!(cached <= CACHE_MAX_CHUNKS && cached <= CACHE_SLOTS * n);
        assert!(cached >= n, "something was cached");
        assert_eq!(large.source().live_chunks(), cached);
        large.trim();
    }
    assert_eq!(large.source().live_chunks(), 0);
}

#[test]
fn runs_of_a_shared_source_are_not_cached() {
    let source = Probe::with_props(MmapSource::new(), SourceProps::SHARED, SourceProps::empty());
    let large = LargeAlloc::new(source);
    for _ in 0..3 {
        let b = large.alloc(MIB, 64).unwrap();
        assert!(b.zeroed);
        // SAFETY: a live block of `large`.
        unsafe { large.dealloc(b.ptr) }.unwrap();
        assert_eq!(large.cached_chunks(), 0);
        assert_eq!(large.source().live_chunks(), 0);
    }
    assert_eq!(large.source().allocs(), 3);
}

#[test]
fn unused_runs_age_out() {
    let large = LargeAlloc::new(fixed_runs());
    let old = large.alloc(MIB, 64).unwrap();
    // SAFETY: live blocks of `large`, each freed once.
    unsafe { large.dealloc(old.ptr) }.unwrap();
    assert_eq!(large.cached_chunks(), 1);
    // Larger blocks come and go; the 1-chunk run is too short for them.
    for i in 0..=CACHE_MAX_AGE {
        let b = large.alloc(13 * MIB, 64).unwrap();
        // SAFETY: as above.
        unsafe { large.dealloc(b.ptr) }.unwrap();
        if large.cached_chunks() == 4 {
            assert!(i * 2 >= CACHE_MAX_AGE - 2, "aged out after {i} rounds only");
            break;
        }
    }
    assert_eq!(large.cached_chunks(), 4, "the old run went back");
    assert_eq!(large.source().deallocs(), 1);
    assert_eq!(large.source().live_chunks(), 4);
}

#[test]
fn dropping_gives_cached_runs_back() {
    let source = Probe::new(MmapSource::new());
    {
        let large = LargeAlloc::new(&source);
        let b = large.alloc(9 * MIB, 64).unwrap();
        // SAFETY: a live block of `large`.
        unsafe { large.dealloc(b.ptr) }.unwrap();
        assert_eq!(source.live_chunks(), 3);
    }
    assert_eq!(source.live_chunks(), 0);
}

#[test]
fn out_of_memory_empties_the_cache_first() {
    // A region of 4 chunks: cached runs of 2 and 1 chunks leave too little for a 4-chunk block
    // (and neither is long enough to serve it) unless the cache gives them back.
    let mut mem = vec![0u8; 5 * CHUNK_SIZE];
    // SAFETY: `mem` outlives the allocator and nothing else uses it.
    let region = unsafe { RegionSource::new(mem.as_mut_ptr(), mem.len()) }.unwrap();
    let large = LargeAlloc::new(region);
    let a = large.alloc(2 * CHUNK_SIZE - 64, 1).unwrap();
    let c = large.alloc(CHUNK_SIZE - 64, 1).unwrap();
    // SAFETY: live blocks of `large`, each freed once.
    unsafe { large.dealloc(a.ptr) }.unwrap();
    // SAFETY: as above.
    unsafe { large.dealloc(c.ptr) }.unwrap();
    assert_eq!(large.cached_chunks(), 3);
    let b = large.alloc(4 * CHUNK_SIZE - 64, 1).unwrap();
    assert_eq!(b.nchunks, 4);
    assert_eq!(large.cached_chunks(), 0);
    assert!(!b.zeroed, "a region source is not ZEROED");
    // SAFETY: as above.
    unsafe { large.dealloc(b.ptr) }.unwrap();
    drop(large);
    drop(mem);
}

#[test]
fn zeroed_is_honest() {
    let large = LargeAlloc::new(MmapSource::new());
    let mut seen_fresh = 0;
    let mut seen_reused = 0;
    for round in 0..12u64 {
        let (size, align) = [(MIB, 64), (5 * MIB, 4096), (3 * MIB, 8 * MIB)][round as usize % 3];
        let b = large.alloc(size, align).unwrap();
        // SAFETY: a live block: `size` bytes at the payload, then its usable tail.
        unsafe {
            let usable = LargeAlloc::<MmapSource>::usable_size(b.ptr).unwrap();
            if b.zeroed {
                seen_fresh += 1;
                assert!(is_zero(b.ptr, usable), "round {round}: zeroed but not zero");
            } else {
                seen_reused += 1;
            }
            fill(b.ptr, usable, round + 1);
            large.dealloc(b.ptr).unwrap();
        }
    }
    assert!(seen_fresh > 0 && seen_reused > 0);
}
