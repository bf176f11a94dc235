//! Helpers shared by the backend tests.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::{Barrier, Mutex, MutexGuard};
use std::thread;

use chunk_source::{page_size, ChunkError, ChunkSource, SourceProps, CHUNK_SIZE};

/// Tests of one binary that measure RSS or depend on process-wide state run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A field of `/proc/self/status` given in kB (`RssAnon`, `RssShmem`, `VmSize`...), in bytes.
pub fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kib: usize = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .expect("a number of kB");
            return kib * 1024;
        }
    }
    panic!("no {field} in /proc/self/status");
}

/// Whether `addr` is a multiple of the chunk size.
pub fn is_chunk_aligned(addr: usize) -> bool {
    addr.is_multiple_of(CHUNK_SIZE)
}

/// A run of chunks owned by a test: given back when dropped.
///
/// Invariant: `[ptr, ptr + n * CHUNK_SIZE)` was handed out by `source` and not given back.
pub struct Run<'s, S: ChunkSource> {
    source: &'s S,
    ptr: NonNull<u8>,
    n: usize,
}

impl<'s, S: ChunkSource> Run<'s, S> {
    /// `source.alloc(n)`, checked to be chunk aligned.
    pub fn alloc(source: &'s S, n: usize) -> Result<Self, ChunkError> {
        let ptr = source.alloc(n)?;
        assert!(
            is_chunk_aligned(ptr.as_ptr() as usize),
            "{ptr:p} not chunk aligned"
        );
        Ok(Self { source, ptr, n })
    }

    /// Takes ownership of a run handed out earlier.
    ///
    /// # Safety
    /// `addr` and `n` name a run handed out by `source`, not given back and owned by nobody else.
    pub unsafe fn from_raw(source: &'s S, addr: usize, n: usize) -> Self {
        Self {
            source,
            ptr: NonNull::new(addr as *mut u8).expect("non-null run"),
            n,
        }
    }

    pub fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    pub fn chunks(&self) -> usize {
        self.n
    }

    pub fn len(&self) -> usize {
        self.n * CHUNK_SIZE
    }

    fn words(&self) -> &[u64] {
        // SAFETY: the run is readable memory owned by `self` (type invariant), chunk aligned.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u64>(), self.len() / 8) }
    }

    fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: the run is writable memory owned by `self` (type invariant), chunk aligned,
        // and `&mut self` makes this the only view of it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u64>(), self.len() / 8) }
    }

    /// Writes `tag ^ page index` into the first word of every page.
    pub fn stamp(&mut self, tag: u64) {
        let step = page_size() / 8;
        for (i, w) in self.words_mut().iter_mut().step_by(step).enumerate() {
            *w = tag ^ i as u64;
        }
    }

    /// Whether every page still carries the stamp of `tag`.
    pub fn stamped(&self, tag: u64) -> bool {
        let step = page_size() / 8;
        self.words()
            .iter()
            .step_by(step)
            .enumerate()
            .all(|(i, &w)| w == tag ^ i as u64)
    }

    /// Whether every byte is zero.
    pub fn is_zero(&self) -> bool {
        self.words().iter().all(|&w| w == 0)
    }

    /// Writes a nonzero byte into every page, so each page becomes resident.
    pub fn touch(&mut self) {
        let step = page_size() / 8;
        for w in self.words_mut().iter_mut().step_by(step) {
            // Volatile: the write must happen even though nothing reads it.
            // SAFETY: `w` is a valid, aligned, exclusive reference into the run.
            unsafe { std::ptr::write_volatile(w, 0xA5) };
        }
    }

    /// Decommits `len` bytes from offset `off`.
    pub fn decommit(&mut self, off: usize, len: usize) -> Result<(), ChunkError> {
        assert!(off + len <= self.len());
        // SAFETY: the range lies in the run, which `self` owns and lets go of the content of.
        unsafe {
            self.source
                .decommit(NonNull::new(self.ptr.as_ptr().add(off)).unwrap(), len)
        }
    }

    /// Resizes the run to `new_n` chunks (it may move).
    pub fn resize(&mut self, new_n: usize) -> Result<(), ChunkError> {
        // SAFETY: the run is owned by `self`; on success the old run is replaced by the result.
        let ptr = unsafe { self.source.resize(self.ptr, self.n, new_n) }?;
        assert!(is_chunk_aligned(ptr.as_ptr() as usize));
        self.ptr = ptr;
        self.n = new_n;
        Ok(())
    }

    /// Gives the run back, returning the result of `dealloc`.
    pub fn free(self) -> Result<(), ChunkError> {
        let (source, ptr, n) = (self.source, self.ptr, self.n);
        std::mem::forget(self);
        // SAFETY: the run was handed out by `source` and is owned by the value just forgotten.
        unsafe { source.dealloc(ptr, n) }
    }

    /// Lets go of the run without giving it back; returns `(addr, chunks)`.
    pub fn leak(self) -> (usize, usize) {
        let out = (self.addr(), self.n);
        std::mem::forget(self);
        out
    }
}

impl<S: ChunkSource> Drop for Run<'_, S> {
    fn drop(&mut self) {
        // SAFETY: the run was handed out by `source` and is owned by `self`.
        let result = unsafe { self.source.dealloc(self.ptr, self.n) };
        if !thread::panicking() {
            result.expect("dealloc");
        }
    }
}

/// Panics unless the runs `(start, len)` are pairwise disjoint.
pub fn assert_disjoint(runs: &[(usize, usize)]) {
    let mut sorted = runs.to_vec();
    sorted.sort_unstable();
    for pair in sorted.windows(2) {
        let (a, alen) = pair[0];
        let (b, _) = pair[1];
        assert!(a + alen <= b, "runs {a:#x}+{alen:#x} and {b:#x} overlap");
    }
    let starts: HashSet<usize> = runs.iter().map(|r| r.0).collect();
    assert_eq!(starts.len(), runs.len(), "a run was handed out twice");
}

/// Four threads churn through alloc / stamp / check / dealloc, then each holds `hold` runs at
/// once while the others do the same; every run must be aligned, keep its stamp, and not
/// overlap any other. Everything is given back at the end.
pub fn concurrent_alloc<S: ChunkSource>(source: &S, churn: usize, hold: usize) {
    const THREADS: usize = 4;
    let barrier = Barrier::new(THREADS);
    let held: Vec<Vec<(usize, usize)>> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    for r in 0..churn {
                        let mut run = Run::alloc(source, 1 + r % 2).expect("alloc while churning");
                        let tag = (t as u64) << 48 | (r as u64) << 24;
                        run.stamp(tag);
                        thread::yield_now();
                        assert!(run.stamped(tag), "a write collided");
                        run.free().expect("dealloc while churning");
                    }
                    let mut mine = Vec::new();
                    for r in 0..hold {
                        let mut run = Run::alloc(source, 1 + r % 2).expect("alloc to hold");
                        let tag = (t as u64) << 48 | 0xFFFF << 24 | r as u64;
                        run.stamp(tag);
                        mine.push((run, tag));
                    }
                    // Everyone holds their runs now; then each checks its own stamps.
                    barrier.wait();
                    for (run, tag) in &mine {
                        assert!(run.stamped(*tag), "a write collided");
                    }
                    mine.into_iter()
                        .map(|(run, _)| run.leak())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let all: Vec<(usize, usize)> = held.iter().flatten().copied().collect();
    assert_eq!(all.len(), THREADS * hold);
    let spans: Vec<(usize, usize)> = all.iter().map(|&(a, n)| (a, n * CHUNK_SIZE)).collect();
    assert_disjoint(&spans);
    for &(addr, n) in &all {
        // SAFETY: the threads leaked these runs to us; each is given back once.
        unsafe { Run::from_raw(source, addr, n) }
            .free()
            .expect("dealloc");
    }
}

/// Allocates 4 chunks, touches all their pages, decommits them, and checks that the RSS
/// counter `field` rose by most of 16 MiB and fell back by most of it, and that the range
/// reads as zero afterwards when the source says ZEROED.
pub fn decommit_lowers_rss<S: ChunkSource>(source: &S, field: &str) {
    const N: usize = 4;
    let mut run = Run::alloc(source, N).expect("alloc 16 MiB");
    let len = run.len();
    let most = len * 3 / 4;
    let before = status_bytes(field);
    run.touch();
    let touched = status_bytes(field);
    assert!(
        touched >= before + most,
        "{field} rose only from {before} to {touched} after touching {len} bytes"
    );
    run.decommit(0, len).expect("decommit");
    let after = status_bytes(field);
    assert!(
        after + most <= touched,
        "{field} fell only from {touched} to {after} after decommitting {len} bytes"
    );
    if source.props().contains(SourceProps::ZEROED) {
        assert!(run.is_zero(), "decommitted range does not read as zero");
    }
    // Still usable after a decommit.
    run.stamp(7);
    assert!(run.stamped(7));
}

/// The argument errors every source must report as values.
pub fn argument_errors<S: ChunkSource>(source: &S) {
    assert_eq!(source.alloc(0), Err(ChunkError::InvalidArgument));
    for absurd in [
        usize::MAX,
        usize::MAX / CHUNK_SIZE,
        1 << 30,
        isize::MAX as usize,
    ] {
        let err = source.alloc(absurd).expect_err("absurd alloc");
        assert!(
            matches!(err, ChunkError::OutOfMemory | ChunkError::InvalidArgument),
            "alloc({absurd}) gave {err:?}"
        );
    }
    let run = Run::alloc(source, 1).expect("alloc");
    let page = page_size();
    // SAFETY: each call names the run with a malformed argument, which must be refused before
    // anything is touched.
    unsafe {
        assert_eq!(
            source.dealloc(run.ptr(), 0),
            Err(ChunkError::InvalidArgument)
        );
        let inside = NonNull::new(run.ptr().as_ptr().add(page)).unwrap();
        assert_eq!(source.dealloc(inside, 1), Err(ChunkError::InvalidArgument));
        let odd = NonNull::new(run.ptr().as_ptr().add(1)).unwrap();
        assert_eq!(source.decommit(odd, page), Err(ChunkError::InvalidArgument));
        assert_eq!(
            source.decommit(run.ptr(), page + 1),
            Err(ChunkError::InvalidArgument)
        );
        assert_eq!(source.decommit(run.ptr(), 0), Ok(()));
    }
    run.free().expect("dealloc");
}
