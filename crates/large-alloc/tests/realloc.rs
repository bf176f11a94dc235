//! Reallocation keeps the content: in place, through `resize`, and by copying.

#![cfg(feature = "mmap")]

mod common;

use std::sync::atomic::Ordering;

use chunk_source::{MmapSource, RegionSource};
use common::{check, fill, Probe, MIB};
use large_alloc::{ChunkSource, LargeAlloc, LargeError, SourceProps, CHUNK_SIZE};

/// Fills a block of `from` bytes, reallocates it to each size in turn, and checks after every
/// step that the bytes kept are intact; then fills the whole new size for the next step.
fn walk<S: ChunkSource>(large: &LargeAlloc<S>, align: usize, sizes: &[usize]) -> Vec<bool> {
    let mut size = sizes[0];
    let b = large.alloc(size, align).unwrap();
    let mut ptr = b.ptr;
    let mut moves = Vec::new();
    // SAFETY: `ptr` is always the live block of `size` bytes.
    unsafe { fill(ptr, size, 7) };
    for (step, &new) in sizes[1..].iter().enumerate() {
        // SAFETY: a live block of `large`, used by nobody else.
        let r = unsafe { large.realloc(ptr, new) }.unwrap();
        assert_eq!(r.moved, r.block.ptr != ptr);
        assert_eq!(r.block.ptr.as_ptr() as usize % align.max(64), 0);
        assert!(!r.block.zeroed);
        ptr = r.block.ptr;
        let kept = size.min(new);
        // SAFETY: the block has at least `new >= kept` bytes.
        unsafe {
            check(ptr, kept, 7 + step as u64).unwrap_or_else(|at| {
                panic!(
                    "step {step}: {size} -> {new} (moved {}): bad byte {at}",
                    r.moved
                )
            });
            let h = LargeAlloc::<S>::header(ptr).unwrap();
            assert_eq!(h.size(), new);
            assert_eq!(h.nchunks(), r.block.nchunks);
            assert_eq!(h.base(), r.block.base.as_ptr());
            fill(ptr, new, 8 + step as u64);
        }
        moves.push(r.moved);
        size = new;
    }
    // SAFETY: the live block.
    unsafe { large.dealloc(ptr) }.unwrap();
    moves
}

#[test]
fn in_place_when_the_chunk_count_stays() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    let b = large.alloc(MIB, 64).unwrap();
    // SAFETY: a live block of `large`.
    unsafe {
        fill(b.ptr, MIB, 1);
        let r = large.realloc(b.ptr, CHUNK_SIZE - 64).unwrap();
        assert!(!r.moved && !r.run_changed());
        assert_eq!(r.block.ptr, b.ptr);
        assert_eq!((r.old_base, r.old_nchunks), (b.base, 1));
        check(b.ptr, MIB, 1).unwrap();
        let r = large.realloc(b.ptr, 100).unwrap();
        assert!(!r.moved && !r.run_changed());
        check(b.ptr, 100, 1).unwrap();
        assert_eq!(
            LargeAlloc::<Probe<MmapSource>>::header(b.ptr)
                .unwrap()
                .size(),
            100
        );
        large.dealloc(b.ptr).unwrap();
    }
    assert_eq!(large.source().resizes(), 0);
    assert_eq!(large.source().allocs(), 1);
}

#[test]
fn grow_and_shrink_through_resize() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    let sizes = [
        3 * MIB,
        20 * MIB,
        9 * MIB,
        33 * MIB,
        5 * MIB,
        2 * MIB,
        17 * MIB,
    ];
    walk(&large, 64, &sizes);
    walk(&large, 4096, &sizes);
    walk(&large, CHUNK_SIZE, &sizes);
    assert!(large.source().resizes() > 0, "mremap used");
    large.trim();
    assert_eq!(large.source().live_chunks(), 0);
}

#[test]
fn resize_reports_the_old_run() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    let b = large.alloc(3 * MIB, 64).unwrap();
    // SAFETY: a live block of `large`.
    let r = unsafe { large.realloc(b.ptr, 30 * MIB) }.unwrap();
    assert!(r.run_changed());
    assert_eq!((r.old_base, r.old_nchunks), (b.base, 1));
    assert_eq!(r.block.nchunks, 8);
    // The payload offset is kept wherever the run went.
    assert_eq!(
        r.block.ptr.as_ptr() as usize - r.block.base.as_ptr() as usize,
        64
    );
    // SAFETY: the live block.
    let r2 = unsafe { large.realloc(r.block.ptr, 5 * MIB) }.unwrap();
    assert_eq!((r2.old_base, r2.old_nchunks), (r.block.base, 8));
    assert_eq!(r2.block.nchunks, 2);
    assert_eq!(r2.block.base, r.block.base, "a shrink stays in place");
    // SAFETY: the live block.
    unsafe { large.dealloc(r2.block.ptr) }.unwrap();
}

#[test]
fn copy_when_the_source_cannot_resize() {
    let source = Probe::with_props(
        MmapSource::new(),
        SourceProps::empty(),
        SourceProps::RESIZABLE,
    );
    let large = LargeAlloc::new(source);
    let moves = walk(&large, 64, &[3 * MIB, 20 * MIB, 9 * MIB, 9 * MIB + 1, MIB]);
    // 20 MiB -> 9 MiB keeps its 6 chunks (it needs 3, and a run at most twice what a block
    // needs is kept); down to 1 MiB it moves.
    assert_eq!(moves, [true, false, false, true]);
    assert_eq!(large.source().resizes(), 0);
    large.trim();
    assert_eq!(large.source().live_chunks(), 0);
}

#[test]
fn copy_when_resize_fails() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    large.source().fail_resize.store(true, Ordering::SeqCst);
    let moves = walk(&large, 256, &[MIB, 13 * MIB, 2 * MIB]);
    assert_eq!(moves, [true, true]);
    large.trim();
    assert_eq!(large.source().live_chunks(), 0);
}

#[test]
fn large_alignment_is_kept() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    for align in [8 * MIB, 64 * MIB] {
        walk(
            &large,
            align,
            &[MIB, 3 * MIB, 21 * MIB, 2 * MIB, 2 * MIB + 7],
        );
    }
    large.trim();
    assert_eq!(large.source().live_chunks(), 0);
}

#[test]
fn copies_the_usable_tail_too() {
    // Bytes written past the size asked for, within the usable size, survive a moving grow.
    let source = Probe::with_props(
        MmapSource::new(),
        SourceProps::empty(),
        SourceProps::RESIZABLE,
    );
    let large = LargeAlloc::new(source);
    let b = large.alloc(MIB, 64).unwrap();
    // SAFETY: a live block; `usable` bytes are inside its run.
    unsafe {
        let usable = LargeAlloc::<Probe<MmapSource>>::usable_size(b.ptr).unwrap();
        assert_eq!(usable, CHUNK_SIZE - 64);
        fill(b.ptr, usable, 3);
        let r = large.realloc(b.ptr, 10 * MIB).unwrap();
        assert!(r.moved);
        check(r.block.ptr, usable, 3).unwrap();
        large.dealloc(r.block.ptr).unwrap();
    }
}

#[test]
fn shrink_stays_put_when_no_new_block_can_be_had() {
    // A region of 4 chunks, all taken by one block: a shrink cannot get a new block (no
    // resize, no room), so it keeps its run.
    let mut mem = vec![0u8; 5 * CHUNK_SIZE];
    // SAFETY: `mem` outlives the allocator and nothing else uses it.
    let region = unsafe { RegionSource::new(mem.as_mut_ptr(), mem.len()) }.unwrap();
    assert_eq!(region.num_chunks(), 4);
    let large = LargeAlloc::new(region);
    let b = large.alloc(4 * CHUNK_SIZE - 64, 1).unwrap();
    // SAFETY: a live block of `large`.
    unsafe {
        fill(b.ptr, 4 * CHUNK_SIZE - 64, 9);
        let r = large.realloc(b.ptr, 2 * MIB).unwrap();
        assert!(!r.moved && !r.run_changed());
        check(b.ptr, 2 * MIB, 9).unwrap();
        assert_eq!(
            LargeAlloc::<RegionSource>::header(b.ptr).unwrap().size(),
            2 * MIB
        );
        // Growing back within the run: in place again.
        let r = large.realloc(b.ptr, 4 * CHUNK_SIZE - 64).unwrap();
        assert!(!r.moved);
        // Growing past it: no room, and the block is unchanged.
        assert_eq!(
            large.realloc(b.ptr, 4 * CHUNK_SIZE),
            Err(LargeError::OutOfMemory)
        );
        check(b.ptr, 2 * MIB, 9).unwrap();
        large.dealloc(b.ptr).unwrap();
    }
    drop(large);
    drop(mem);
}

#[test]
fn overflow_leaves_the_block_alone() {
    let large = LargeAlloc::new(MmapSource::new());
    let b = large.alloc(5 * MIB, 64).unwrap();
    // SAFETY: a live block of `large`.
    unsafe {
        fill(b.ptr, 5 * MIB, 4);
        for size in [usize::MAX, usize::MAX - 63, isize::MAX as usize] {
            assert_eq!(large.realloc(b.ptr, size), Err(LargeError::Overflow));
        }
        assert_eq!(large.realloc(b.ptr, 1 << 60), Err(LargeError::OutOfMemory));
        check(b.ptr, 5 * MIB, 4).unwrap();
        let h = LargeAlloc::<MmapSource>::header(b.ptr).unwrap();
        assert_eq!((h.size(), h.nchunks()), (5 * MIB, 2));
        large.dealloc(b.ptr).unwrap();
    }
}

#[test]
fn growth_takes_a_cached_run_before_resizing() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    // The 1-chunk block first, so that it does not take the 4-chunk run cached below.
    let b = large.alloc(3 * MIB, 64).unwrap();
    let old = large.alloc(13 * MIB, 64).unwrap();
    assert_eq!(old.nchunks, 4);
    // SAFETY: a live block of `large`, freed once.
    unsafe { large.dealloc(old.ptr) }.unwrap();
    // SAFETY: the live block; its content survives the move.
    let r = unsafe {
        b.ptr.as_ptr().write_bytes(0x5a, 3 * MIB);
        large.realloc(b.ptr, 10 * MIB)
    }
    .unwrap();
    assert_eq!(
        r.block.base, old.base,
        "the cached run, whose pages are there"
    );
    assert_eq!(r.block.nchunks, 4);
    assert_eq!(large.source().resizes(), 0);
    // SAFETY: the live block holds at least 3 MiB of the old content.
    let kept = unsafe { core::slice::from_raw_parts(r.block.ptr.as_ptr(), 3 * MIB) };
    assert!(kept.iter().all(|&x| x == 0x5a));
    // SAFETY: the live block.
    unsafe { large.dealloc(r.block.ptr) }.unwrap();
    large.trim();
    assert_eq!(large.source().live_chunks(), 0);
}
