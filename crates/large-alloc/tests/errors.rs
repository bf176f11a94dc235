//! Bad input gets an error, never a crash or a wrong block.

#![cfg(feature = "mmap")]

mod common;

use std::ptr::NonNull;

use chunk_source::MmapSource;
use common::{Probe, MIB};
use large_alloc::{LargeAlloc, LargeError, CHUNK_SIZE, HEADER_SIZE};

type Large = LargeAlloc<Probe<MmapSource>>;

fn addr(p: NonNull<u8>) -> usize {
    p.as_ptr() as usize
}

#[test]
fn double_free_is_caught() {
    let large = Large::new(Probe::new(MmapSource::new()));
    let b = large.alloc(MIB, 64).unwrap();
    // SAFETY: a block of `large`; after the first free its run stays mapped in the cache.
    unsafe {
        large.dealloc(b.ptr).unwrap();
        assert_eq!(
            large.cached_chunks(),
            1,
            "the run is cached, so still mapped"
        );
        let twice = Err(LargeError::DoubleFree { addr: addr(b.ptr) });
        assert_eq!(large.dealloc(b.ptr), twice);
        assert_eq!(large.dealloc(b.ptr), twice);
        assert_eq!(Large::header(b.ptr).map(|_| ()), twice);
        assert_eq!(Large::usable_size(b.ptr).map(|_| ()), twice);
        assert_eq!(large.realloc(b.ptr, 2 * MIB).map(|_| ()), twice);
    }
    // Nothing was given back twice, and the run is still cached once.
    assert_eq!(large.cached_chunks(), 1);
    assert_eq!(large.trim(), 1);
    assert_eq!(large.source().live_chunks(), 0);
}

#[test]
fn concurrent_double_free_lets_one_through() {
    let large = Large::new(Probe::new(MmapSource::new()));
    for _ in 0..50 {
        let b = large.alloc(2 * MIB, 64).unwrap();
        let p = addr(b.ptr);
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let large = &large;
                    s.spawn(move || {
                        let ptr = NonNull::new(p as *mut u8).unwrap();
                        // SAFETY: the run stays mapped: it goes to the cache, which is trimmed
                        // only after every thread is done.
                        unsafe { large.dealloc(ptr) }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(results
            .iter()
            .all(|r| r.is_ok() || *r == Err(LargeError::DoubleFree { addr: p })));
    }
    large.trim();
    assert_eq!(large.source().live_chunks(), 0);
}

#[test]
fn interior_pointers_are_refused() {
    let large = Large::new(Probe::new(MmapSource::new()));
    let b = large.alloc(3 * MIB, 4096).unwrap();
    // SAFETY: every pointer below lies at least 64 bytes into the live run; the block is
    // zeroed (fresh from mmap) except where written.
    unsafe {
        b.ptr.as_ptr().write_bytes(0x11, 3 * MIB);
        for off in [1, 8, 63, 64, 128, 4096, MIB, 3 * MIB - 64] {
            let p = NonNull::new(b.ptr.as_ptr().add(off)).unwrap();
            let bad = Err(LargeError::BadPointer { addr: addr(p) });
            assert_eq!(large.dealloc(p), bad, "offset {off}");
            assert_eq!(Large::usable_size(p).map(|_| ()), bad);
            assert_eq!(large.realloc(p, MIB).map(|_| ()), bad);
        }
        // Just past the base of the run (the header is not there for align 4096), and just
        // below the payload.
        for p in [
            NonNull::new(b.base.as_ptr().add(64)).unwrap(),
            NonNull::new(b.ptr.as_ptr().sub(64)).unwrap(),
        ] {
            assert_eq!(
                large.dealloc(p),
                Err(LargeError::BadPointer { addr: addr(p) })
            );
        }
        // The block is still live and whole.
        assert!(Large::header(b.ptr).unwrap().is_live());
        large.dealloc(b.ptr).unwrap();
    }
}

#[test]
fn foreign_pointers_are_refused() {
    let large = Large::new(Probe::new(MmapSource::new()));
    let mut buf = vec![0u64; 4096];
    let start = buf.as_mut_ptr().cast::<u8>();
    let first = (start as usize + HEADER_SIZE).next_multiple_of(HEADER_SIZE) - start as usize;
    for off in (first..8 * 4096 - 64).step_by(64 * 37) {
        // SAFETY: `off < len`, inside `buf`.
        let p = NonNull::new(unsafe { start.add(off) }).unwrap();
        let bad = Err(LargeError::BadPointer { addr: addr(p) });
        // SAFETY: `p` lies at least 64 bytes into `buf`, so the header read is of memory we
        // own, and nothing else touches `buf`.
        unsafe {
            assert_eq!(large.dealloc(p), bad);
            assert_eq!(Large::usable_size(p).map(|_| ()), bad);
            assert_eq!(large.realloc(p, MIB).map(|_| ()), bad);
        }
    }
    // Misaligned and tiny addresses are refused without reading anything.
    for a in [1usize, 8, 63, 65, 4097, 4096 + 32] {
        let p = NonNull::new(a as *mut u8).unwrap();
        let bad = Err(LargeError::BadPointer { addr: a });
        // SAFETY: such pointers are refused before any read.
        assert_eq!(unsafe { large.dealloc(p) }, bad);
        // SAFETY: as above.
        assert_eq!(unsafe { Large::usable_size(p) }.map(|_| ()), bad);
    }
    assert_eq!(large.source().deallocs(), 0);
}

#[test]
fn a_copied_header_is_refused() {
    // A perfect copy of a live header, placed before another address, does not make that
    // address a block: the header names its own payload.
    let large = Large::new(Probe::new(MmapSource::new()));
    let b = large.alloc(MIB, 64).unwrap();
    let mut buf = vec![0u64; 1024];
    let start = buf.as_mut_ptr() as usize;
    let fake = (start + 2 * HEADER_SIZE).next_multiple_of(HEADER_SIZE);
    // SAFETY: the header of a live block is readable; `fake - 64 .. fake` lies inside `buf`.
    unsafe {
        std::ptr::copy_nonoverlapping(
            b.ptr.as_ptr().sub(HEADER_SIZE),
            (fake - HEADER_SIZE) as *mut u8,
            HEADER_SIZE,
        );
        let p = NonNull::new(fake as *mut u8).unwrap();
        assert_eq!(large.dealloc(p), Err(LargeError::BadPointer { addr: fake }));
        large.dealloc(b.ptr).unwrap();
    }
    drop(buf);
}

#[test]
fn a_corrupted_header_is_refused() {
    let large = Large::new(Probe::new(MmapSource::new()));
    let b = large.alloc(6 * MIB, 64).unwrap();
    // SAFETY: the header of a live block, written and restored while nobody else uses it.
    unsafe {
        let header = b.ptr.as_ptr().sub(HEADER_SIZE).cast::<usize>();
        // Every word but the magic (word 0); on 64-bit targets the header is 7 words long.
        for word in 1..HEADER_SIZE / size_of::<usize>() {
            let saved = header.add(word).read();
            if word < 7 {
                header.add(word).write(saved ^ (CHUNK_SIZE << 2));
                assert_eq!(
                    large.dealloc(b.ptr),
                    Err(LargeError::BadPointer { addr: addr(b.ptr) }),
                    "word {word}"
                );
                assert_eq!(
                    Large::usable_size(b.ptr),
                    Err(LargeError::BadPointer { addr: addr(b.ptr) })
                );
            }
            header.add(word).write(saved);
        }
        // The magic smashed: refused as well.
        let saved = header.read();
        header.write(0);
        assert_eq!(
            large.dealloc(b.ptr),
            Err(LargeError::BadPointer { addr: addr(b.ptr) })
        );
        header.write(saved);
        // Nothing was freed meanwhile.
        assert_eq!(large.source().deallocs(), 0);
        assert_eq!(Large::usable_size(b.ptr), Ok(2 * CHUNK_SIZE - 64));
        large.dealloc(b.ptr).unwrap();
    }
}

#[test]
fn overflowing_sizes_are_errors() {
    let large = Large::new(Probe::new(MmapSource::new()));
    let over = [
        usize::MAX,
        usize::MAX - 63,
        usize::MAX - CHUNK_SIZE,
        isize::MAX as usize,
        isize::MAX as usize - 64,
        isize::MAX as usize - CHUNK_SIZE + 1,
        isize::MAX as usize + 1,
    ];
    for size in over {
        for align in [1, 64, 4096, CHUNK_SIZE, 64 * MIB] {
            assert_eq!(
                large.alloc(size, align),
                Err(LargeError::Overflow),
                "size {size:#x} align {align}"
            );
        }
    }
    // Alignments so large that the padding alone overflows.
    assert_eq!(
        large.alloc(0, 1 << (usize::BITS - 1)),
        Err(LargeError::Overflow)
    );
    assert!(large.alloc(1, 1 << (usize::BITS - 2)).is_err());
    assert_eq!(large.source().allocs(), 0);
}

#[test]
fn absurd_sizes_are_out_of_memory() {
    let large = Large::new(Probe::new(MmapSource::new()));
    for size in [
        1usize << 60,
        1 << 62,
        (isize::MAX as usize) - 2 * CHUNK_SIZE,
    ] {
        assert_eq!(
            large.alloc(size, 64),
            Err(LargeError::OutOfMemory),
            "{size:#x}"
        );
    }
    assert_eq!(large.alloc(1, 1 << 61), Err(LargeError::OutOfMemory));
    // The allocator still works afterwards.
    let b = large.alloc(MIB, 64).unwrap();
    // SAFETY: a live block of `large`.
    unsafe { large.dealloc(b.ptr) }.unwrap();
    assert_eq!(large.source().allocs(), 1);
}

#[test]
fn errors_display() {
    let e = LargeError::DoubleFree { addr: 0x1000 };
    assert_eq!(e.to_string(), "large block at 0x1000 was already freed");
    let e = LargeError::Source(large_alloc::ChunkError::NotOwned);
    assert!(e.to_string().contains("chunk source failed"));
    assert_eq!(
        LargeError::from(large_alloc::ChunkError::OutOfMemory),
        LargeError::OutOfMemory
    );
}

/// Linux's `ENOMEM`, what `munmap` fails with when splitting a mapping would pass the limit.
const ENOMEM: i32 = 12;

/// A source whose `dealloc` always fails, as `munmap` does at the process's limit of mappings;
/// it counts what it was asked to decommit.
struct Unmappable {
    inner: MmapSource,
    decommitted: std::sync::atomic::AtomicUsize,
}

// SAFETY: forwards to `MmapSource`; refusing to give memory back is allowed by the contract.
unsafe impl chunk_source::ChunkSource for Unmappable {
    fn props(&self) -> chunk_source::SourceProps {
        self.inner.props()
    }
    fn alloc(&self, n: usize) -> Result<NonNull<u8>, chunk_source::ChunkError> {
        self.inner.alloc(n)
    }
    unsafe fn dealloc(&self, _ptr: NonNull<u8>, _n: usize) -> Result<(), chunk_source::ChunkError> {
        Err(chunk_source::ChunkError::Os(ENOMEM))
    }
    unsafe fn decommit(
        &self,
        ptr: NonNull<u8>,
        len: usize,
    ) -> Result<(), chunk_source::ChunkError> {
        self.decommitted
            .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { self.inner.decommit(ptr, len) }
    }
}

#[test]
fn a_run_the_os_will_not_unmap_is_kept_and_its_pages_given_back() {
    let large = LargeAlloc::new(Unmappable {
        inner: MmapSource::new(),
        decommitted: std::sync::atomic::AtomicUsize::new(0),
    });
    // Longer than the cache of freed runs keeps, so the free goes to the source.
    let b = large
        .alloc(large_alloc::CACHE_MAX_RUN_CHUNKS * CHUNK_SIZE, 64)
        .unwrap();
    // SAFETY: a live block of `large`, freed once.
    let r = unsafe { large.dealloc(b.ptr) };
    assert!(
        matches!(
            r,
            Err(LargeError::Source(chunk_source::ChunkError::Os(ENOMEM)))
        ),
        "{r:?}: a source error, not a misuse"
    );
    let run = b.nchunks * CHUNK_SIZE;
    assert_eq!(
        large
            .source()
            .decommitted
            .load(std::sync::atomic::Ordering::Relaxed),
        run,
        "the kept run's pages went back"
    );
}
