//! Tests of `RegionSource` (always built: it needs no feature and makes no OS call).

mod common;

use std::ptr::NonNull;
use std::thread;

use chunk_source::{
    page_size, ChunkError, ChunkSource, RegionSource, SourceProps, CHUNK_SIZE, REGION_MAX_CHUNKS,
};
use common::Run;

/// Memory for a region: an anonymous mapping made by the test, unmapped on drop.
struct Backing {
    ptr: *mut u8,
    len: usize,
}

impl Backing {
    /// `len` bytes, reserved without committing memory (pages appear when touched).
    fn new(len: usize) -> Self {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "test mapping of {len} bytes");
        Self { ptr: p.cast(), len }
    }

    /// The first chunk-aligned address inside.
    fn aligned(&self) -> *mut u8 {
        let addr = self.ptr as usize;
        let off = addr.next_multiple_of(CHUNK_SIZE) - addr;
        self.ptr.wrapping_add(off)
    }

    /// A source over `len` bytes starting `off` bytes past the first aligned address.
    fn source(&self, off: usize, len: usize) -> Result<RegionSource, ChunkError> {
        let start = self.aligned().wrapping_add(off);
        assert!(start as usize + len <= self.ptr as usize + self.len);
        // SAFETY: the range lies inside this mapping, which outlives every source in these
        // tests (each test drops its source before its backing).
        unsafe { RegionSource::new(start, len) }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[test]
fn new_counts_whole_aligned_chunks() {
    let mem = Backing::new(8 * CHUNK_SIZE);
    let source = mem.source(0, 4 * CHUNK_SIZE).unwrap();
    assert_eq!(source.num_chunks(), 4);
    assert_eq!(source.base().as_ptr(), mem.aligned());
    assert_eq!(source.props(), SourceProps::FIXED);
    assert_eq!(source.chunks_free(), 4);

    // A region starting past a boundary loses the partial first chunk and the partial last.
    let source = mem.source(page_size(), 4 * CHUNK_SIZE).unwrap();
    assert_eq!(source.num_chunks(), 3);
    assert_eq!(
        source.base().as_ptr() as usize,
        mem.aligned() as usize + CHUNK_SIZE
    );
    assert!(source.contains(source.base().as_ptr()));
    assert!(source.contains(source.base().as_ptr().wrapping_add(3 * CHUNK_SIZE - 1)));
    assert!(!source.contains(source.base().as_ptr().wrapping_add(3 * CHUNK_SIZE)));
    assert!(!source.contains(mem.aligned()));
}

#[test]
fn new_rejects_bad_regions() {
    let mem = Backing::new(4 * CHUNK_SIZE);
    // SAFETY: null and wrapping regions are refused before anything is touched.
    unsafe {
        assert_eq!(
            RegionSource::new(std::ptr::null_mut(), CHUNK_SIZE).err(),
            Some(ChunkError::InvalidArgument)
        );
        assert_eq!(
            RegionSource::new(mem.aligned(), usize::MAX).err(),
            Some(ChunkError::InvalidArgument)
        );
    }
    // Too small for one whole aligned chunk.
    assert_eq!(
        mem.source(0, CHUNK_SIZE - 1).err(),
        Some(ChunkError::InvalidArgument)
    );
    assert_eq!(
        mem.source(page_size(), CHUNK_SIZE).err(),
        Some(ChunkError::InvalidArgument)
    );
    assert_eq!(mem.source(0, 0).err(), Some(ChunkError::InvalidArgument));
}

#[test]
fn capacity_is_capped() {
    let mem = Backing::new((REGION_MAX_CHUNKS + 8) * CHUNK_SIZE);
    let source = mem.source(0, (REGION_MAX_CHUNKS + 4) * CHUNK_SIZE).unwrap();
    assert_eq!(source.num_chunks(), REGION_MAX_CHUNKS);
    assert_eq!(source.chunks_free(), REGION_MAX_CHUNKS);
    // One run of every chunk, then nothing is left.
    let all = Run::alloc(&source, REGION_MAX_CHUNKS).expect("every chunk at once");
    assert_eq!(source.alloc(1), Err(ChunkError::OutOfMemory));
    drop(all);
    assert_eq!(source.chunks_free(), REGION_MAX_CHUNKS);
}

#[test]
fn hands_out_every_chunk_once_then_reuses() {
    let mem = Backing::new(12 * CHUNK_SIZE);
    let source = mem.source(0, 10 * CHUNK_SIZE).unwrap();
    let mut runs: Vec<Run<'_, RegionSource>> = (0..10)
        .map(|i| {
            let mut run = Run::alloc(&source, 1).expect("alloc");
            assert!(source.contains(run.ptr().as_ptr()));
            run.stamp(i);
            run
        })
        .collect();
    assert_eq!(source.chunks_free(), 0);
    assert_eq!(source.alloc(1), Err(ChunkError::OutOfMemory));
    let spans: Vec<_> = runs.iter().map(|r| (r.addr(), r.len())).collect();
    common::assert_disjoint(&spans);
    for (i, run) in runs.iter().enumerate() {
        assert!(run.stamped(i as u64));
    }

    // Give back chunk 3: the next alloc reuses exactly it.
    let freed = runs.remove(3);
    let at = freed.addr();
    freed.free().unwrap();
    assert_eq!(source.chunks_free(), 1);
    let again = Run::alloc(&source, 1).unwrap();
    assert_eq!(again.addr(), at);
    // Content is not cleared (the source is not ZEROED): the old stamp is still there.
    assert!(again.stamped(3));
}

#[test]
fn runs_are_first_fit_and_cross_words() {
    let mem = Backing::new(202 * CHUNK_SIZE);
    let source = mem.source(0, 200 * CHUNK_SIZE).unwrap();
    let base = source.base().as_ptr() as usize;
    let index = |run: &Run<'_, RegionSource>| (run.addr() - base) / CHUNK_SIZE;

    let a = Run::alloc(&source, 60).unwrap();
    let b = Run::alloc(&source, 10).unwrap(); // chunks 60..70: crosses the first word
    let c = Run::alloc(&source, 100).unwrap(); // 70..170
    assert_eq!((index(&a), index(&b), index(&c)), (0, 60, 70));
    assert_eq!(
        source.alloc(31),
        Err(ChunkError::OutOfMemory),
        "only 30 chunks are left"
    );
    drop(b);
    // The hole of 10 at 60 takes a run of 10 but not one of 11.
    let d = Run::alloc(&source, 11).unwrap();
    assert_eq!(index(&d), 170);
    let e = Run::alloc(&source, 10).unwrap();
    assert_eq!(index(&e), 60);
    drop((a, c, d, e));
    assert_eq!(source.chunks_free(), 200);
    let whole = Run::alloc(&source, 200).unwrap();
    assert_eq!(index(&whole), 0);
}

#[test]
fn matches_a_first_fit_model() {
    const CHUNKS: usize = 150;
    let mem = Backing::new((CHUNKS + 2) * CHUNK_SIZE);
    let source = mem.source(0, CHUNKS * CHUNK_SIZE).unwrap();
    let base = source.base().as_ptr() as usize;
    let mut model = [false; CHUNKS]; // true = handed out
    let mut held: Vec<(usize, usize)> = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..3000 {
        if held.is_empty() || next() % 3 != 0 {
            let n = 1 + (next() % 40) as usize;
            let want = (0..=CHUNKS - n).find(|&i| model[i..i + n].iter().all(|&x| !x));
            match (source.alloc(n), want) {
                (Ok(p), Some(i)) => {
                    assert_eq!(
                        (p.as_ptr() as usize - base) / CHUNK_SIZE,
                        i,
                        "not first fit"
                    );
                    model[i..i + n].iter_mut().for_each(|x| *x = true);
                    held.push((i, n));
                }
                (Err(ChunkError::OutOfMemory), None) => {}
                (got, want) => panic!("alloc({n}): got {got:?}, model says {want:?}"),
            }
        } else {
            let (i, n) = held.swap_remove((next() % held.len() as u64) as usize);
            let p = NonNull::new((base + i * CHUNK_SIZE) as *mut u8).unwrap();
            // SAFETY: the run was handed out above and is given back once.
            unsafe { source.dealloc(p, n) }.unwrap();
            model[i..i + n].iter_mut().for_each(|x| *x = false);
        }
        assert_eq!(source.chunks_free(), model.iter().filter(|&&x| !x).count());
    }
}

#[test]
fn dealloc_errors() {
    let mem = Backing::new(6 * CHUNK_SIZE);
    let source = mem.source(0, 4 * CHUNK_SIZE).unwrap();
    common::argument_errors(&source);
    let run = Run::alloc(&source, 2).unwrap();
    let base = source.base().as_ptr();
    // SAFETY: every call below is refused before anything changes.
    unsafe {
        // Outside the region.
        let outside = NonNull::new(base.wrapping_add(4 * CHUNK_SIZE)).unwrap();
        assert_eq!(source.dealloc(outside, 1), Err(ChunkError::NotOwned));
        assert_eq!(
            source.decommit(outside, page_size()),
            Err(ChunkError::NotOwned)
        );
        // Past the end of the region.
        let last = NonNull::new(base.wrapping_add(3 * CHUNK_SIZE)).unwrap();
        assert_eq!(source.dealloc(last, 2), Err(ChunkError::NotOwned));
        // Not handed out.
        assert_eq!(source.dealloc(last, 1), Err(ChunkError::NotOwned));
        // Partly handed out: chunks 1 and 2.
        let mid = NonNull::new(base.wrapping_add(CHUNK_SIZE)).unwrap();
        assert_eq!(source.dealloc(mid, 2), Err(ChunkError::NotOwned));
    }
    assert_eq!(source.chunks_free(), 2);
    let (addr, n) = run.leak();
    let p = NonNull::new(addr as *mut u8).unwrap();
    // SAFETY: the run was handed out; the second give-back is a double free and is refused.
    unsafe {
        assert_eq!(source.dealloc(p, n), Ok(()));
        assert_eq!(source.dealloc(p, n), Err(ChunkError::NotOwned));
    }
}

#[test]
fn decommit_is_a_no_op() {
    let mem = Backing::new(3 * CHUNK_SIZE);
    let source = mem.source(0, 2 * CHUNK_SIZE).unwrap();
    let mut run = Run::alloc(&source, 1).unwrap();
    run.stamp(42);
    run.decommit(0, CHUNK_SIZE).unwrap();
    assert!(run.stamped(42), "no OS call, so the content stays");
    assert_eq!(run.resize(2), Err(ChunkError::Unsupported));
}

#[test]
fn concurrent_alloc_from_four_threads() {
    let mem = Backing::new(26 * CHUNK_SIZE);
    let source = mem.source(0, 24 * CHUNK_SIZE).unwrap();
    common::concurrent_alloc(&source, 32, 4);
    assert_eq!(source.chunks_free(), 24);

    // Exhaustion under contention: every chunk handed out exactly once.
    let got: Vec<Vec<usize>> = thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while let Ok(p) = source.alloc(1) {
                        mine.push(p.as_ptr() as usize);
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut all: Vec<usize> = got.into_iter().flatten().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 24);
}

#[test]
fn page_size_is_the_os_page_size() {
    // SAFETY: sysconf only reads a setting.
    let os = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    assert_eq!(page_size(), os);
    assert!(page_size().is_power_of_two());
    assert_eq!(page_size(), page_size());
}

#[test]
fn errors_display() {
    assert_eq!(ChunkError::OutOfMemory.to_string(), "out of memory");
    assert!(ChunkError::Os(12).to_string().contains("12"));
    #[cfg(feature = "std")]
    {
        let e: Box<dyn std::error::Error> = Box::new(ChunkError::NotOwned);
        assert!(e.to_string().contains("not handed out"));
    }
}
