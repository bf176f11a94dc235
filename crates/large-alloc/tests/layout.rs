//! Where blocks lie: payload alignment, header fields, run sizes.

#![cfg(feature = "mmap")]

mod common;

use chunk_source::{MmapSource, RegionSource};
use common::{check, fill, Probe, MIB};
use large_alloc::{LargeAlloc, LargeError, CHUNK_SIZE, HEADER_SIZE};

#[test]
fn every_power_of_two_alignment_up_to_64_mib() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    for shift in 0..=26 {
        let align = 1usize << shift;
        for size in [0, 1, 3 * MIB + 5, CHUNK_SIZE] {
            let b = large.alloc(size, align).unwrap();
            let (ptr, base) = (b.ptr.as_ptr() as usize, b.base.as_ptr() as usize);
            assert_eq!(ptr % align, 0, "align {align} size {size}");
            assert_eq!(ptr % 64, 0);
            assert_eq!(base % CHUNK_SIZE, 0);
            if align <= CHUNK_SIZE {
                assert_eq!(ptr - base, align.max(64), "align {align}");
            } else {
                // The first aligned address at or after base + 64, and the run trimmed to the
                // chunks the block touches.
                assert!(ptr >= base + 64 && ptr - align < base + 64);
                assert_eq!(b.nchunks, (ptr - base + size.max(1)).div_ceil(CHUNK_SIZE));
                assert_eq!(
                    (ptr - 64 - base) / CHUNK_SIZE,
                    0,
                    "header in the first chunk"
                );
            }
            assert!(
                ptr + size.max(1) <= base + b.run_len(),
                "the payload is inside the run"
            );
            // SAFETY: a live block of `large`.
            let h = unsafe { LargeAlloc::<Probe<MmapSource>>::header(b.ptr) }.unwrap();
            assert_eq!(h.size(), size);
            assert_eq!(h.align(), align);
            assert_eq!(h.base(), b.base.as_ptr());
            assert_eq!(h.nchunks(), b.nchunks);
            assert_eq!(h.payload(), b.ptr.as_ptr());
            assert!(h.is_live());
            assert_eq!(h as *const _ as usize + HEADER_SIZE, ptr);
            // SAFETY: as above.
            let usable = unsafe { LargeAlloc::<Probe<MmapSource>>::usable_size(b.ptr) }.unwrap();
            assert_eq!(usable, base + b.run_len() - ptr);
            assert!(usable >= size);
            // The whole usable range is writable and keeps what is written.
            // SAFETY: `usable` bytes from the payload are inside the run.
            unsafe {
                b.ptr.as_ptr().write(0xa5);
                b.ptr.as_ptr().add(usable - 1).write(0x5a);
                assert_eq!(b.ptr.as_ptr().read(), 0xa5);
                assert_eq!(b.ptr.as_ptr().add(usable - 1).read(), 0x5a);
                large.dealloc(b.ptr).unwrap();
            }
        }
    }
    large.trim();
    assert_eq!(large.source().live_chunks(), 0, "every chunk went back");
}

#[test]
fn chunk_counts_follow_the_offset() {
    let large = LargeAlloc::new(MmapSource::new());
    let cases = [
        (CHUNK_SIZE - 64, 1, 1),
        (CHUNK_SIZE - 63, 1, 2),
        (CHUNK_SIZE - 4096, 4096, 1),
        (CHUNK_SIZE - 4095, 4096, 2),
        (1, CHUNK_SIZE, 2),
        (10 * MIB, 64, 3),
    ];
    for (size, align, n) in cases {
        let b = large.alloc(size, align).unwrap();
        assert_eq!(b.nchunks, n, "size {size} align {align}");
        // SAFETY: a live block of `large`.
        unsafe { large.dealloc(b.ptr) }.unwrap();
        // A cached run would serve the next case whole (a run may be longer than its block).
        large.trim();
    }
}

#[test]
fn large_alignment_gives_unused_chunks_back() {
    // A region of 40 chunks: a 32 MiB-aligned block takes 8 more chunks than it needs while it
    // is placed, then keeps only the ones it touches.
    let mut mem = vec![0u8; 41 * CHUNK_SIZE];
    // SAFETY: `mem` outlives the source and nothing else uses it.
    let region = unsafe { RegionSource::new(mem.as_mut_ptr(), mem.len()) }.unwrap();
    let total = region.num_chunks();
    let large = LargeAlloc::new(region);
    let align = 32 * MIB;
    let b = large.alloc(5 * MIB, align).unwrap();
    assert_eq!(b.ptr.as_ptr() as usize % align, 0);
    // The payload starts a chunk, so the header fills the end of the chunk before it.
    assert_eq!(b.nchunks, 3, "the header's chunk and two for the payload");
    assert_eq!(
        b.ptr.as_ptr() as usize - b.base.as_ptr() as usize,
        CHUNK_SIZE
    );
    assert_eq!(large.source().chunks_free(), total - 3);
    // SAFETY: a live block of `large`.
    unsafe {
        fill(b.ptr, 5 * MIB, 1);
        check(b.ptr, 5 * MIB, 1).unwrap();
        large.dealloc(b.ptr).unwrap();
    }
    large.trim();
    assert_eq!(large.source().chunks_free(), total);
    drop(large);
    drop(mem);
}

#[test]
fn bad_alignments_are_refused() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    for align in [0, 3, 6, 48, 100, usize::MAX, (1 << 20) + 1] {
        assert_eq!(
            large.alloc(MIB, align),
            Err(LargeError::InvalidAlign { align })
        );
    }
    assert_eq!(large.source().allocs(), 0);
}

#[test]
fn blocks_and_allocator_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<large_alloc::LargeBlock>();
    send_sync::<large_alloc::Realloc>();
    send_sync::<LargeAlloc<MmapSource>>();
}
