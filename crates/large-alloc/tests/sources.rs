//! The other chunk sources: a shared region (`shm`), the program break (`sbrk`).

mod common;

#[cfg(feature = "shm")]
mod shm {
    use chunk_source::ShmSource;
    use large_alloc::{LargeAlloc, LargeError, CHUNK_SIZE};

    use crate::common::{check, fill, is_zero, MIB};

    #[test]
    fn shared_runs_go_straight_back() {
        let large = LargeAlloc::new(ShmSource::new(8).unwrap());
        let total = large.source().chunks_free();
        for round in 0..4u64 {
            let b = large.alloc(5 * MIB, 4096).unwrap();
            assert!(b.zeroed, "fresh shared chunks read as zero");
            assert!(large.source().contains(b.ptr.as_ptr()));
            // SAFETY: a live block of `large`.
            unsafe {
                assert!(is_zero(b.ptr, 5 * MIB));
                fill(b.ptr, 5 * MIB, round);
                check(b.ptr, 5 * MIB, round).unwrap();
                large.dealloc(b.ptr).unwrap();
            }
            // Never cached: a forked child could otherwise cache the same run.
            assert_eq!(large.cached_chunks(), 0);
            assert_eq!(large.source().chunks_free(), total);
        }
    }

    #[test]
    fn a_full_region_is_out_of_memory() {
        let large = LargeAlloc::new(ShmSource::new(4).unwrap());
        assert_eq!(
            large.alloc(4 * CHUNK_SIZE, 64),
            Err(LargeError::OutOfMemory)
        );
        let b = large.alloc(4 * CHUNK_SIZE - 64, 64).unwrap();
        assert_eq!(large.alloc(1, 64), Err(LargeError::OutOfMemory));
        // Copying realloc: the source cannot resize, so a grow needs room it does not have,
        // and a shrink that cannot get a new block stays in place.
        // SAFETY: a live block of `large`.
        unsafe {
            fill(b.ptr, 4 * CHUNK_SIZE - 64, 3);
            assert_eq!(
                large.realloc(b.ptr, 4 * CHUNK_SIZE),
                Err(LargeError::OutOfMemory)
            );
            let r = large.realloc(b.ptr, MIB).unwrap();
            assert!(!r.moved);
            check(b.ptr, MIB, 3).unwrap();
            large.dealloc(b.ptr).unwrap();
        }
        assert_eq!(large.source().chunks_free(), 4);
    }
}

#[cfg(feature = "sbrk")]
mod sbrk {
    use chunk_source::SbrkSource;
    use large_alloc::LargeAlloc;

    use crate::common::{check, fill, is_zero, MIB};

    #[test]
    fn blocks_from_the_break() {
        let large = LargeAlloc::new(SbrkSource::new());
        let b = large.alloc(3 * MIB, 64).unwrap();
        // SAFETY: live blocks of `large`, each freed once.
        unsafe {
            if b.zeroed {
                assert!(is_zero(b.ptr, 3 * MIB));
            }
            fill(b.ptr, 3 * MIB, 1);
            // No resize on this source: the block is copied.
            let r = large.realloc(b.ptr, 9 * MIB).unwrap();
            assert!(r.moved);
            check(r.block.ptr, 3 * MIB, 1).unwrap();
            large.dealloc(r.block.ptr).unwrap();
        }
        large.trim();
    }
}
