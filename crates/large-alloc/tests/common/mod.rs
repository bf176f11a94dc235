//! Helpers shared by the integration tests: content patterns and a probing chunk source.

#![allow(dead_code)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use large_alloc::{ChunkError, ChunkSource, SourceProps, CHUNK_SIZE};

pub const MIB: usize = 1 << 20;

/// The word written at word index `i` for `seed`: differs between neighbours and seeds, so a
/// shifted, truncated or foreign copy is caught.
fn word(seed: u64, i: usize) -> u64 {
    (i as u64 ^ seed.rotate_left(32))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(seed)
}

/// Byte `j` of the pattern (the same whatever length is filled, so a prefix checks).
fn byte(seed: u64, j: usize) -> u8 {
    word(seed, j / 8).to_ne_bytes()[j % 8]
}

/// Fills `len` bytes at `ptr` (8-aligned) with the pattern of `seed`.
///
/// # Safety
/// `ptr .. ptr + len` is writable.
pub unsafe fn fill(ptr: NonNull<u8>, len: usize, seed: u64) {
    let words = len / 8;
    let p = ptr.as_ptr().cast::<u64>();
    for i in 0..words {
        // SAFETY: word `i` lies inside `ptr .. ptr + len` (caller); `ptr` is 8-aligned.
        unsafe { p.add(i).write(word(seed, i)) };
    }
    for j in words * 8..len {
        // SAFETY: byte `j < len` lies inside the range (caller).
        unsafe { ptr.as_ptr().add(j).write(byte(seed, j)) };
    }
}

/// Whether `len` bytes at `ptr` hold the pattern of `seed`; the index of the first bad word
/// (or byte, past the words) otherwise.
///
/// # Safety
/// `ptr .. ptr + len` is readable.
pub unsafe fn check(ptr: NonNull<u8>, len: usize, seed: u64) -> Result<(), usize> {
    let words = len / 8;
    let p = ptr.as_ptr().cast::<u64>();
    for i in 0..words {
        // SAFETY: word `i` lies inside the readable range (caller); `ptr` is 8-aligned.
        if unsafe { p.add(i).read() } != word(seed, i) {
            return Err(i * 8);
        }
    }
    for j in words * 8..len {
        // SAFETY: byte `j < len` lies inside the readable range (caller).
        if unsafe { ptr.as_ptr().add(j).read() } != byte(seed, j) {
            return Err(j);
        }
    }
    Ok(())
}

/// Like [`check`], but only one word in every 4 KiB and the last bytes: cheap enough to run
/// often over many blocks, and still sure to see a block handed out twice.
///
/// # Safety
/// `ptr .. ptr + len` is readable.
pub unsafe fn spot_check(ptr: NonNull<u8>, len: usize, seed: u64) -> Result<(), usize> {
    let words = len / 8;
    let p = ptr.as_ptr().cast::<u64>();
    for i in (0..words).step_by(512).chain(words.checked_sub(1)) {
        // SAFETY: word `i` lies inside the readable range (caller); `ptr` is 8-aligned.
        if unsafe { p.add(i).read() } != word(seed, i) {
            return Err(i * 8);
        }
    }
    for j in words * 8..len {
        // SAFETY: byte `j < len` lies inside the readable range (caller).
        if unsafe { ptr.as_ptr().add(j).read() } != byte(seed, j) {
            return Err(j);
        }
    }
    Ok(())
}

/// Whether `len` bytes at `ptr` (8-aligned) all read as zero.
///
/// # Safety
/// `ptr .. ptr + len` is readable.
pub unsafe fn is_zero(ptr: NonNull<u8>, len: usize) -> bool {
    // SAFETY: the range is readable (caller) and not written while we look.
    let slice = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) };
    // SAFETY: every bit pattern is a valid u64.
    let (head, words, tail) = unsafe { slice.align_to::<u64>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// A source that forwards to `inner` and counts calls, with properties that can be added or
/// taken away and a `resize` that can be made to fail.
pub struct Probe<S> {
    pub inner: S,
    pub add: SourceProps,
    pub remove: SourceProps,
    pub fail_resize: AtomicBool,
    /// Moves of `move_chunk` that still succeed; the next one fails as the kernel's can, with
    /// the destination chunk unmapped.
    pub moves_left: AtomicUsize,
    pub moves: AtomicUsize,
    pub allocs: AtomicUsize,
    pub deallocs: AtomicUsize,
    pub resizes: AtomicUsize,
    /// Chunks handed out and not given back.
    pub live_chunks: AtomicUsize,
}

impl<S> Probe<S> {
    pub fn new(inner: S) -> Self {
        Self::with_props(inner, SourceProps::empty(), SourceProps::empty())
    }

    pub fn with_props(inner: S, add: SourceProps, remove: SourceProps) -> Self {
        Probe {
            inner,
            add,
            remove,
            fail_resize: AtomicBool::new(false),
            moves_left: AtomicUsize::new(usize::MAX),
            moves: AtomicUsize::new(0),
            allocs: AtomicUsize::new(0),
            deallocs: AtomicUsize::new(0),
            resizes: AtomicUsize::new(0),
            live_chunks: AtomicUsize::new(0),
        }
    }

    pub fn allocs(&self) -> usize {
        self.allocs.load(Ordering::SeqCst)
    }

    pub fn deallocs(&self) -> usize {
        self.deallocs.load(Ordering::SeqCst)
    }

    pub fn resizes(&self) -> usize {
        self.resizes.load(Ordering::SeqCst)
    }

    pub fn moves(&self) -> usize {
        self.moves.load(Ordering::SeqCst)
    }

    pub fn live_chunks(&self) -> usize {
        self.live_chunks.load(Ordering::SeqCst)
    }
}

// SAFETY: every call is forwarded to `inner`, which keeps the promises; only properties the
// tests choose are changed (SHARED added only to see that nothing is cached, RESIZABLE taken
// away together with `resize` answering Unsupported).
unsafe impl<S: ChunkSource> ChunkSource for Probe<S> {
    fn props(&self) -> SourceProps {
        (self.inner.props() | self.add) - self.remove
    }

    fn alloc(&self, n: usize) -> Result<NonNull<u8>, ChunkError> {
        let r = self.inner.alloc(n);
        if r.is_ok() {
            self.allocs.fetch_add(1, Ordering::SeqCst);
            self.live_chunks.fetch_add(n, Ordering::SeqCst);
        }
        r
    }

    unsafe fn dealloc(&self, ptr: NonNull<u8>, n: usize) -> Result<(), ChunkError> {
        assert_eq!(ptr.as_ptr() as usize % CHUNK_SIZE, 0);
        // SAFETY: forwarded from our caller, who keeps the contract of `dealloc`.
        let r = unsafe { self.inner.dealloc(ptr, n) };
        if r.is_ok() {
            self.deallocs.fetch_add(1, Ordering::SeqCst);
            self.live_chunks.fetch_sub(n, Ordering::SeqCst);
        }
        r
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ChunkError> {
        // SAFETY: forwarded from our caller, who keeps the contract of `decommit`.
        unsafe { self.inner.decommit(ptr, len) }
    }

    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old_n: usize,
        new_n: usize,
    ) -> Result<NonNull<u8>, ChunkError> {
        if self.remove.contains(SourceProps::RESIZABLE) {
            return Err(ChunkError::Unsupported);
        }
        if self.fail_resize.load(Ordering::SeqCst) {
            return Err(ChunkError::OutOfMemory);
        }
        // SAFETY: forwarded from our caller, who keeps the contract of `resize`.
        let r = unsafe { self.inner.resize(ptr, old_n, new_n) };
        if r.is_ok() {
            self.resizes.fetch_add(1, Ordering::SeqCst);
            self.live_chunks.fetch_add(new_n, Ordering::SeqCst);
            self.live_chunks.fetch_sub(old_n, Ordering::SeqCst);
        }
        r
    }

    unsafe fn move_chunk(&self, src: NonNull<u8>, dest: NonNull<u8>) -> Result<(), ChunkError> {
        if self.remove.contains(SourceProps::RESIZABLE) {
            return Err(ChunkError::Unsupported);
        }
        let fail = self
            .moves_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err();
        if fail {
            // What a failed `mremap` may leave: the source chunk as it was, the destination
            // unmapped. The caller must not touch the destination again.
            // SAFETY: the destination is the caller's chunk, which it gives up.
            unsafe { self.dealloc(dest, 1) }.unwrap();
            return Err(ChunkError::OutOfMemory);
        }
        // SAFETY: forwarded from our caller, who keeps the contract of `move_chunk`.
        let r = unsafe { self.inner.move_chunk(src, dest) };
        if r.is_ok() {
            // The source chunk is given back; the destination holds its pages now.
            self.moves.fetch_add(1, Ordering::SeqCst);
            self.live_chunks.fetch_sub(1, Ordering::SeqCst);
        }
        r
    }
}
