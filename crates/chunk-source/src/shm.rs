//! Chunks from one shared anonymous mapping, made up front and inherited by forked children.
//!
//! Layout of the mapping (`MAP_SHARED | MAP_ANONYMOUS`), placed so that the chunks are aligned:
//!
//! ```text
//! | metadata: SlotSet (hint word + one bit per chunk), page rounded | chunk 0 | chunk 1 | ... |
//! ^ map                                                             ^ chunks (CHUNK_SIZE aligned)
//! ```
//!
//! Which chunks are handed out is a [`slab_bitmap::SlotSet`] whose words live inside the
//! mapping, in the metadata pages before the first chunk. A process forked after [`ShmSource::new`]
//! shares those pages, so parent and children claim from the same set with atomic operations,
//! without locks, and never hand out the same chunk twice. A run of `n` chunks is `n`
//! consecutive free slots of one 64-bit word (`claim_run`), so `alloc(n)` serves `n <= 64`.
//!
//! Giving back: pages of a shared mapping are not freed by `MADV_DONTNEED` (that only drops this
//! process's view of them; the shared memory object keeps them), so `dealloc` and `decommit` use
//! `MADV_REMOVE`, which frees them for every process and makes them read as zero. `dealloc`
//! does it before releasing the slots, so a chunk is zero again whenever it is handed out.

use core::ptr::NonNull;

use slab_bitmap::SlotSet;

use crate::{
    align_up, check_chunk_aligned, check_page_range, chunk_bytes, page_size, sys, ChunkError,
    ChunkSource, SourceProps, CHUNK_SIZE, MAX_CHUNKS,
};

/// Longest run `alloc` serves: one word of the slot set.
const MAX_RUN: usize = 64;

/// Chunks handed out from one `MAP_SHARED` region made when the source is created.
///
/// Properties: [`ZEROED`](SourceProps::ZEROED) | [`SHARED`](SourceProps::SHARED) |
/// [`FIXED`](SourceProps::FIXED). A child forked after [`ShmSource::new`] sees the same bytes in
/// every chunk and allocates from the same set of chunks as its parent, lock-free. `alloc(n)`
/// serves runs of at most 64 chunks (longer runs are [`ChunkError::OutOfMemory`]). Dropping the
/// source unmaps the whole region in this process; other processes keep their view.
///
/// Invariant: `map` is a live shared mapping of `map_len` bytes owned by this value; its first
/// [`SlotSet::bytes_for`]`(num_chunks)` bytes hold an initialised slot set of `num_chunks` slots,
/// accessed only atomically; `chunks = map + (map_len - num_chunks * CHUNK_SIZE)` is
/// [`CHUNK_SIZE`] aligned; slot `i` is claimed iff chunk `i` is handed out (by any process that
/// shares the mapping).
pub struct ShmSource {
    /// Start of the mapping (the metadata).
    map: NonNull<u8>,
    /// Bytes in the mapping.
    map_len: usize,
    /// The first chunk.
    chunks: NonNull<u8>,
    /// Chunks in the region.
    num_chunks: usize,
}

// SAFETY: the pointers name a mapping owned by this value; all shared state in it is accessed
// through atomics (the slot set), and chunks go to one owner at a time through the slot set.
unsafe impl Send for ShmSource {}
// SAFETY: see `Send`.
unsafe impl Sync for ShmSource {}

impl ShmSource {
    /// Maps a shared region of `num_chunks` chunks (plus a few pages of metadata) and marks them
    /// all free. Pages are only used once touched.
    ///
    /// # Errors
    ///
    /// [`ChunkError::InvalidArgument`] for `num_chunks == 0`; [`ChunkError::OutOfMemory`] when
    /// the region cannot be mapped; [`ChunkError::Os`] for another refusal of the OS.
    pub fn new(num_chunks: usize) -> Result<Self, ChunkError> {
        if num_chunks == 0 {
            return Err(ChunkError::InvalidArgument);
        }
        if num_chunks > MAX_CHUNKS {
            return Err(ChunkError::OutOfMemory);
        }
        let meta_len =
            align_up(SlotSet::bytes_for(num_chunks), page_size()).ok_or(ChunkError::OutOfMemory)?;
        let map_len = chunk_bytes(num_chunks)?
            .checked_add(meta_len)
            .ok_or(ChunkError::OutOfMemory)?;
        let map = sys::map_aligned(map_len, meta_len, libc::MAP_SHARED)?;
        // SAFETY: the mapping is fresh, page (so 8) aligned, at least `bytes_for(num_chunks)`
        // bytes of metadata long, and lives as long as `self`; its metadata is only ever touched
        // through the slot set, atomically.
        unsafe { SlotSet::init_raw(map.as_ptr(), num_chunks) };
        let chunks = map.as_ptr().wrapping_add(meta_len);
        debug_assert_eq!(chunks as usize % CHUNK_SIZE, 0);
        Ok(Self {
            map,
            map_len,
            // The mapping does not wrap to address 0, so neither does a pointer inside it.
            chunks: NonNull::new(chunks).ok_or(ChunkError::OutOfMemory)?,
            num_chunks,
        })
    }

    /// Number of chunks in the region.
    #[inline]
    pub fn num_chunks(&self) -> usize {
        self.num_chunks
    }

    /// The first chunk of the region.
    #[inline]
    pub fn base(&self) -> NonNull<u8> {
        self.chunks
    }

    /// Whether `p` points into one of the region's chunks.
    #[inline]
    pub fn contains(&self, p: *const u8) -> bool {
        (p as usize)
            .checked_sub(self.chunks.as_ptr() as usize)
            .is_some_and(|off| off < self.num_chunks * CHUNK_SIZE)
    }

    /// Number of chunks not handed out now, by any process sharing the region (a snapshot).
    pub fn chunks_free(&self) -> usize {
        self.set().count_free()
    }

    /// The slot set in the metadata pages.
    #[inline]
    fn set(&self) -> SlotSet<'_> {
        // SAFETY: by the type invariant the mapping holds an initialised set of `num_chunks`
        // slots at its (page aligned) start, accessed only atomically, alive as long as `self`.
        unsafe { SlotSet::from_raw(self.map.as_ptr(), self.num_chunks) }
    }

    /// Index of the chunk at `ptr`, checking that `n` chunks from it lie in the region.
    fn index_of(&self, ptr: NonNull<u8>, n: usize) -> Result<usize, ChunkError> {
        if n == 0 {
            return Err(ChunkError::InvalidArgument);
        }
        check_chunk_aligned(ptr)?;
        if !self.contains(ptr.as_ptr()) {
            return Err(ChunkError::NotOwned);
        }
        let index = (ptr.as_ptr() as usize - self.chunks.as_ptr() as usize) / CHUNK_SIZE;
        if n > self.num_chunks - index {
            return Err(ChunkError::NotOwned);
        }
        Ok(index)
    }
}

impl Drop for ShmSource {
    fn drop(&mut self) {
        // SAFETY: the mapping is owned by `self` (type invariant) and dies with it; chunks still
        // in use by the caller are the caller's problem only in this process, which is exactly
        // the documented effect of dropping the source.
        let _ = unsafe { sys::unmap(self.map.as_ptr(), self.map_len) };
    }
}

impl core::fmt::Debug for ShmSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShmSource")
            .field("base", &self.chunks)
            .field("num_chunks", &self.num_chunks)
            .field("free", &self.chunks_free())
            .finish()
    }
}

// SAFETY: chunk `i` is handed out only after its slot was claimed in the shared slot set, which
// no process hands out again until the slot is released by `dealloc`; chunks are CHUNK_SIZE
// aligned (type invariant), readable and writable, and read as zero when handed out (fresh
// shared memory, or removed with MADV_REMOVE before its slot was released).
unsafe impl ChunkSource for ShmSource {
    #[inline]
    fn props(&self) -> SourceProps {
        SourceProps::ZEROED | SourceProps::SHARED | SourceProps::FIXED
    }

    fn alloc(&self, n: usize) -> Result<NonNull<u8>, ChunkError> {
        let index = match n {
            0 => return Err(ChunkError::InvalidArgument),
            1 => self.set().claim(),
            2..=MAX_RUN => self.set().claim_run(n),
            _ => None,
        }
        .ok_or(ChunkError::OutOfMemory)?;
        debug_assert!(index + n <= self.num_chunks);
        let ptr = self.chunks.as_ptr().wrapping_add(index * CHUNK_SIZE);
        NonNull::new(ptr).ok_or(ChunkError::OutOfMemory)
    }

    unsafe fn dealloc(&self, ptr: NonNull<u8>, n: usize) -> Result<(), ChunkError> {
        let index = self.index_of(ptr, n)?;
        let set = self.set();
        if !(index..index + n).all(|slot| set.is_claimed(slot)) {
            return Err(ChunkError::NotOwned);
        }
        // Free the pages (for every process) before the slots can be claimed again, so the
        // next owner finds them zero.
        // SAFETY: the caller gives the run back and no longer uses it; it lies in our mapping.
        unsafe { sys::discard(ptr.as_ptr(), n * CHUNK_SIZE, libc::MADV_REMOVE) };
        let mut result = Ok(());
        let mut slot = index;
        while slot < index + n {
            let word = slot / 64;
            let bits = (index + n - slot).min(64 - slot % 64);
            let mask = (u64::MAX >> (64 - bits)) << (slot % 64);
            if set.release_mask(word, mask).is_err() {
                // Some slot was freed by a racing give-back of the same run.
                result = Err(ChunkError::NotOwned);
            }
            slot += bits;
        }
        result
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ChunkError> {
        check_page_range(ptr, len)?;
        if len == 0 {
            return Ok(());
        }
        let last = (ptr.as_ptr() as usize + len - 1) as *const u8;
        if !self.contains(ptr.as_ptr()) || !self.contains(last) {
            return Err(ChunkError::NotOwned);
        }
        // SAFETY: the range lies in our mapping, in chunks the caller holds and whose content
        // it gives up; MADV_REMOVE frees the shared pages, which then read as zero.
        unsafe { sys::advise(ptr.as_ptr(), len, libc::MADV_REMOVE) }
    }
}
