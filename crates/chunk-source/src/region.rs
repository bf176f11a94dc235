//! Chunks carved out of memory the caller provides; no OS call at all.
//!
//! `new` rounds the start of the region up to a chunk boundary and counts the whole chunks that
//! fit, at most [`REGION_MAX_CHUNKS`]. Which of them are handed out is kept in a fixed bitmap
//! inside the [`RegionSource`] itself (one bit per chunk, set = handed out), so the source needs
//! no memory of its own and takes none from the region. `alloc(n)` takes the first `n`
//! consecutive clear bits (first fit, across word boundaries, so a run may be as long as the
//! region); `dealloc` clears them again after checking they were set. The bitmap is guarded by a
//! spin lock: a run of several chunks must be claimed as one step, and with at most
//! [`REGION_MAX_CHUNKS`] bits a scan is short.
//!
//! There is no OS to give pages back to, so `decommit` checks its arguments and changes nothing.

use core::ptr::NonNull;

use static_assertions::const_assert;

use crate::spin::SpinMutex;
use crate::{
    align_up, check_chunk_aligned, check_page_range, ChunkError, ChunkSource, SourceProps,
    CHUNK_SIZE,
};

/// The most chunks one [`RegionSource`] manages (4 GiB of chunks); a longer region is used only
/// up to this many chunks.
pub const REGION_MAX_CHUNKS: usize = 1024;

/// Words in the bitmap.
const WORDS: usize = REGION_MAX_CHUNKS / 64;

const_assert!(REGION_MAX_CHUNKS.is_multiple_of(64));

/// Chunks handed out from a region of memory the caller provides, with no OS call.
///
/// Properties: [`FIXED`](SourceProps::FIXED) (the region's chunks are all there is). The bytes
/// are whatever the region held: not [`ZEROED`](SourceProps::ZEROED), and `dealloc` does not
/// clear them. At most [`REGION_MAX_CHUNKS`] chunks are managed.
///
/// The bookkeeping lives in this value, not in the region: if the region is memory shared with
/// other processes, each process still has its own idea of which chunks are free.
///
/// Invariant: bit `i` of `map` is set iff chunk `i` (at `base + i * CHUNK_SIZE`) is handed out,
/// for `i < chunks`; bits from `chunks` up are always set, so they are never handed out.
pub struct RegionSource {
    /// The first chunk: the region's start rounded up to [`CHUNK_SIZE`].
    base: NonNull<u8>,
    /// Whole chunks managed, `1..=REGION_MAX_CHUNKS`.
    chunks: usize,
    /// One bit per chunk, set = handed out.
    map: SpinMutex<[u64; WORDS]>,
}

// SAFETY: `base` is only used to compute the addresses of chunks, which the bitmap hands to one
// owner at a time under its lock; the region itself is the caller's memory, promised valid for
// as long as the source is used, from any thread (see `new`).
unsafe impl Send for RegionSource {}
// SAFETY: see `Send`; all shared state is behind the spin lock.
unsafe impl Sync for RegionSource {}

impl RegionSource {
    /// A source over the `len` bytes at `base`.
    ///
    /// The chunks are the whole [`CHUNK_SIZE`]-aligned chunks inside the region, at most
    /// [`REGION_MAX_CHUNKS`] of them; the bytes before the first and after the last are not
    /// used.
    ///
    /// # Errors
    ///
    /// [`ChunkError::InvalidArgument`] if `base` is null, the region wraps around the address
    /// space, or it holds no whole aligned chunk.
    ///
    /// # Safety
    ///
    /// `[base, base + len)` is valid for reads and writes, from any thread, for as long as the
    /// source and any chunk it handed out are used, and nothing else uses it meanwhile.
    pub unsafe fn new(base: *mut u8, len: usize) -> Result<Self, ChunkError> {
        if base.is_null() {
            return Err(ChunkError::InvalidArgument);
        }
        let start = base as usize;
        let end = start.checked_add(len).ok_or(ChunkError::InvalidArgument)?;
        let first = align_up(start, CHUNK_SIZE).ok_or(ChunkError::InvalidArgument)?;
        if first >= end {
            return Err(ChunkError::InvalidArgument);
        }
        let chunks = ((end - first) / CHUNK_SIZE).min(REGION_MAX_CHUNKS);
        if chunks == 0 {
            return Err(ChunkError::InvalidArgument);
        }
        // In bounds: first - start < len, so this stays inside the caller's region.
        let base =
            NonNull::new(base.wrapping_add(first - start)).ok_or(ChunkError::InvalidArgument)?;

        let mut map = [0u64; WORDS];
        for (w, word) in map.iter_mut().enumerate() {
            let lo = w * 64;
            if lo >= chunks {
                *word = !0;
            } else if chunks - lo < 64 {
                *word = !0 << (chunks - lo);
            }
        }
        Ok(Self {
            base,
            chunks,
            map: SpinMutex::new(map),
        })
    }

    /// Number of chunks this source manages.
    #[inline]
    pub fn num_chunks(&self) -> usize {
        self.chunks
    }

    /// The first chunk (the region's start rounded up to [`CHUNK_SIZE`]).
    #[inline]
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Whether `p` points into one of the chunks this source manages.
    #[inline]
    pub fn contains(&self, p: *const u8) -> bool {
        (p as usize)
            .checked_sub(self.base.as_ptr() as usize)
            .is_some_and(|off| off < self.chunks * CHUNK_SIZE)
    }

    /// Number of chunks not handed out now (a snapshot when other threads are allocating).
    pub fn chunks_free(&self) -> usize {
        let map = self.map.lock();
        map.iter().map(|w| w.count_zeros() as usize).sum()
    }

    /// Index of the chunk at `ptr` and checks that `n` chunks from it lie in the region.
    fn index_of(&self, ptr: NonNull<u8>, n: usize) -> Result<usize, ChunkError> {
        if n == 0 {
            return Err(ChunkError::InvalidArgument);
        }
        check_chunk_aligned(ptr)?;
        if !self.contains(ptr.as_ptr()) {
            return Err(ChunkError::NotOwned);
        }
        let index = (ptr.as_ptr() as usize - self.base.as_ptr() as usize) / CHUNK_SIZE;
        if n > self.chunks - index {
            return Err(ChunkError::NotOwned);
        }
        Ok(index)
    }
}

impl core::fmt::Debug for RegionSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RegionSource")
            .field("base", &self.base)
            .field("chunks", &self.chunks)
            .field("free", &self.chunks_free())
            .finish()
    }
}

// SAFETY: a run is handed out only after its bits were found clear and set under the lock, so
// no chunk is handed out twice until `dealloc` clears its bits; its address is
// base + index * CHUNK_SIZE with `base` chunk aligned, and it lies in the caller's region, which
// `new`'s contract makes readable and writable.
unsafe impl ChunkSource for RegionSource {
    #[inline]
    fn props(&self) -> SourceProps {
        SourceProps::FIXED
    }

    fn alloc(&self, n: usize) -> Result<NonNull<u8>, ChunkError> {
        if n == 0 {
            return Err(ChunkError::InvalidArgument);
        }
        if n > self.chunks {
            return Err(ChunkError::OutOfMemory);
        }
        let mut map = self.map.lock();
        let index = find_run(&map, self.chunks, n).ok_or(ChunkError::OutOfMemory)?;
        set_bits(&mut map, index, n, true);
        drop(map);
        let ptr = self.base.as_ptr().wrapping_add(index * CHUNK_SIZE);
        NonNull::new(ptr).ok_or(ChunkError::OutOfMemory)
    }

    unsafe fn dealloc(&self, ptr: NonNull<u8>, n: usize) -> Result<(), ChunkError> {
        let index = self.index_of(ptr, n)?;
        let mut map = self.map.lock();
        if !all_bits(&map, index, n, true) {
            return Err(ChunkError::NotOwned);
        }
        set_bits(&mut map, index, n, false);
        Ok(())
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ChunkError> {
        check_page_range(ptr, len)?;
        if len == 0 {
            return Ok(());
        }
        let addr = ptr.as_ptr() as usize;
        let end = addr + len - 1;
        if !self.contains(ptr.as_ptr()) || !self.contains(end as *const u8) {
            return Err(ChunkError::NotOwned);
        }
        // No OS to give the pages to: the range stays as it is.
        Ok(())
    }
}

/// The first index of `n` consecutive clear bits below `limit`, scanning whole set words fast.
fn find_run(map: &[u64; WORDS], limit: usize, n: usize) -> Option<usize> {
    let mut run = 0; // clear bits seen in a row, ending just before `i`
    let mut i = 0;
    while i < limit {
        let word = map[i / 64];
        let bit = i % 64;
        if bit == 0 && word == !0 {
            run = 0;
            i += 64;
        } else if bit == 0 && word == 0 {
            // A whole clear word (bits past `limit` are set, so it lies below `limit`).
            if run + 64 >= n {
                return Some(i - run);
            }
            run += 64;
            i += 64;
        } else if word >> bit & 1 == 1 {
            run = 0;
            i += 1;
        } else {
            run += 1;
            i += 1;
            if run == n {
                return Some(i - n);
            }
        }
    }
    None
}

/// Sets (or clears) bits `[index, index + n)`.
fn set_bits(map: &mut [u64; WORDS], index: usize, n: usize, value: bool) {
    for i in index..index + n {
        let mask = 1u64 << (i % 64);
        if value {
            debug_assert!(map[i / 64] & mask == 0, "chunk {i} handed out twice");
            map[i / 64] |= mask;
        } else {
            map[i / 64] &= !mask;
        }
    }
}

/// Whether every bit of `[index, index + n)` equals `value`.
fn all_bits(map: &[u64; WORDS], index: usize, n: usize, value: bool) -> bool {
    (index..index + n).all(|i| (map[i / 64] >> (i % 64) & 1 == 1) == value)
}
