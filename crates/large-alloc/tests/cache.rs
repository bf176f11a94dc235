//! The cache of freed runs, and the honesty of `zeroed`.

#![cfg(feature = "mmap")]

mod common;

use chunk_source::{MmapSource, RegionSource};
use common::{fill, is_zero, Probe, MIB};
use large_alloc::{
    LargeAlloc, SourceProps, CACHE_MAX_AGE, CACHE_MAX_CHUNKS, CACHE_MAX_RUN_CHUNKS, CACHE_SLOTS,
    CHUNK_SIZE,
};

#[test]
fn a_freed_run_is_reused() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
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
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    let old = large.alloc(13 * MIB, 64).unwrap();
    // SAFETY: live blocks of `large`, each freed once.
    unsafe { large.dealloc(old.ptr) }.unwrap();
    assert_eq!(large.cached_chunks(), 4);
    // Other sizes come and go; the 4-chunk run is too long for them (more than twice).
    for i in 0..=CACHE_MAX_AGE {
        let b = large.alloc(MIB, 64).unwrap();
        // SAFETY: as above.
        unsafe { large.dealloc(b.ptr) }.unwrap();
        if large.cached_chunks() == 1 {
            assert!(i * 2 >= CACHE_MAX_AGE - 2, "aged out after {i} rounds only");
            break;
        }
    }
    assert_eq!(large.cached_chunks(), 1, "the old run went back");
    assert_eq!(large.source().deallocs(), 1);
    assert_eq!(large.source().live_chunks(), 1);
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
