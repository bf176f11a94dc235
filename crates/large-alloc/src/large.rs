//! The allocator: runs from a source (or the cache), headers, reallocation.
//!
//! - `alloc(size, align)`: `chunks_for(size, align)` chunks are taken from the cache (the
//!   shortest run long enough), or gathered from shorter cached runs into a fresh run of the
//!   source, or else taken fresh from the source; when the source is out of memory the cache
//!   is emptied into it and the source asked once more. The header is written and the payload
//!   returned.
//! - `dealloc(ptr)`: the header is found and checked, its magic turned from live to freed by
//!   one compare-exchange (so of two frees of one block exactly one gets through), and only
//!   then is the run put in the cache or given back to the source.
//! - `realloc(ptr, new_size)`: when the new size needs as many chunks as the run has, only the
//!   header's size changes. Otherwise a source with `RESIZABLE` grows or shrinks the run with
//!   `ChunkSource::resize` (for alignments up to `CHUNK_SIZE`, whose payload offset does not
//!   depend on where the run lies). When that is not possible or fails, a new block is
//!   allocated, the content copied and the old block freed; a shrink that cannot get a new
//!   block stays where it is.

use core::ptr::NonNull;

use chunk_source::{ChunkError, ChunkSource, SourceProps, CHUNK_SIZE};

use crate::cache::RunCache;
use crate::header::{chunks_for, chunks_used, payload_offset, LargeHeader, HEADER_SIZE};
use crate::LargeError;

/// A block handed out by [`LargeAlloc::alloc`] or moved by [`LargeAlloc::realloc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LargeBlock {
    /// The payload: aligned as asked (and to at least 64), [`LargeHeader`] right before it.
    pub ptr: NonNull<u8>,
    /// The first byte of the block's run of chunks (`CHUNK_SIZE`-aligned).
    pub base: NonNull<u8>,
    /// Chunks in the run.
    pub nchunks: usize,
    /// Whether the payload is known to read as zero: it came straight from a source with
    /// [`SourceProps::ZEROED`]. False for a run reused or gathered from the cache and for
    /// `realloc`.
    pub zeroed: bool,
}

impl LargeBlock {
    /// Bytes of the run (`nchunks * CHUNK_SIZE`).
    #[inline]
    pub fn run_len(&self) -> usize {
        self.nchunks * CHUNK_SIZE
    }
}

// SAFETY: a `LargeBlock` only describes addresses; nothing is read or written through it, so
// moving or sharing it between threads cannot race.
unsafe impl Send for LargeBlock {}
// SAFETY: as for `Send`: no access to memory goes through a shared `LargeBlock`.
unsafe impl Sync for LargeBlock {}

/// The result of [`LargeAlloc::realloc`]: the block now, and the run it had before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Realloc {
    /// The block after the call (`zeroed` is always false).
    pub block: LargeBlock,
    /// Whether the payload moved: the old pointer is no longer valid.
    pub moved: bool,
    /// The base of the run before the call.
    pub old_base: NonNull<u8>,
    /// The chunk count of the run before the call.
    pub old_nchunks: usize,
}

// SAFETY: as for `LargeBlock`: only addresses, nothing accessed through them.
unsafe impl Send for Realloc {}
// SAFETY: as for `LargeBlock`.
unsafe impl Sync for Realloc {}

impl Realloc {
    /// Whether the run changed (moved, grew or shrank): a registry of runs must forget
    /// `(old_base, old_nchunks)` and record `(block.base, block.nchunks)`.
    #[inline]
    pub fn run_changed(&self) -> bool {
        self.block.base != self.old_base || self.block.nchunks != self.old_nchunks
    }
}

/// Large blocks, each its own run of chunks from `S`, with a small cache of freed runs.
///
/// See the crate documentation for the layout, the checks and the cache policy. All methods
/// take `&self` and may be called from any number of threads at once; no method allocates or
/// blocks (the cache is lock-free; the only system calls are the source's).
///
/// Dropping the allocator gives the cached runs back to the source; blocks still live are left
/// alone (they stay valid as long as the source does).
pub struct LargeAlloc<S: ChunkSource> {
    source: S,
    cache: RunCache,
}

impl<S: ChunkSource> LargeAlloc<S> {
    /// A large-block allocator over `source`, with an empty cache. Usable in a `static`.
    pub const fn new(source: S) -> Self {
        LargeAlloc {
            source,
            cache: RunCache::new(),
        }
    }

    /// The chunk source.
    #[inline]
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Allocates a block of `size` bytes aligned to `align` (any power of two).
    ///
    /// The block is one run of chunks; its payload is at `base + max(64, align)` (for
    /// alignments above `CHUNK_SIZE`, at the first aligned address at or after `base + 64`).
    /// `zeroed` says whether the payload is known to read as zero.
    ///
    /// # Errors
    /// [`LargeError::InvalidAlign`] for an alignment that is not a power of two,
    /// [`LargeError::Overflow`] when the run would pass `isize::MAX` bytes,
    /// [`LargeError::OutOfMemory`] when the source has no room, [`LargeError::Source`] for
    /// other failures of the source.
    pub fn alloc(&self, size: usize, align: usize) -> Result<LargeBlock, LargeError> {
        self.alloc_in(size, align, true)
    }

    /// Allocates a block as [`alloc`](Self::alloc) does and clears what may not read as zero
    /// (nothing of a fresh run), for `calloc`. Shorter cached runs are not gathered for it:
    /// clearing them would write every page they hold, and fault in the ones their blocks never
    /// touched, where a fresh run reads as zero for free and a program that touches only part
    /// of a large zeroed block (a sparse table) never pays for the rest.
    ///
    /// # Errors
    /// As for [`alloc`](Self::alloc).
    pub fn alloc_zeroed(&self, size: usize, align: usize) -> Result<LargeBlock, LargeError> {
        let mut block = self.alloc_in(size, align, false)?;
        if !block.zeroed {
            // SAFETY: the payload holds at least `size` writable bytes, ours alone.
            unsafe { core::ptr::write_bytes(block.ptr.as_ptr(), 0, size) };
            block.zeroed = true;
        }
        Ok(block)
    }

    /// [`alloc`](Self::alloc), gathering shorter cached runs when `gather` says so.
    fn alloc_in(&self, size: usize, align: usize, gather: bool) -> Result<LargeBlock, LargeError> {
        if !align.is_power_of_two() {
            return Err(LargeError::InvalidAlign { align });
        }
        let (base, nchunks, zeroed) = self.get_run(chunks_for(size, align)?, gather)?;
        let (base, nchunks) = if align > CHUNK_SIZE {
            self.shed_unused_chunks(base, nchunks, size, align)
        } else {
            (base, nchunks)
        };
        // SAFETY: the run is CHUNK_SIZE-aligned, `nchunks` chunks long and ours alone (fresh
        // from the source or taken out of the cache, and at most trimmed of unused chunks);
        // `payload_offset + max(size, 1)` fits in it (`chunks_for` counts the largest offset, and
        // `shed_unused_chunks` keeps every chunk the block touches).
        Ok(unsafe { Self::block_in(base, nchunks, size, align, zeroed) })
    }

    /// Writes the header of a block of `size` bytes aligned to `align` into the run of
    /// `nchunks` chunks at `base`, and describes the block.
    ///
    /// # Safety
    /// As for [`LargeHeader::write`]: the run is CHUNK_SIZE-aligned, ours alone, and holds the
    /// payload at its offset.
    unsafe fn block_in(
        base: NonNull<u8>,
        nchunks: usize,
        size: usize,
        align: usize,
        zeroed: bool,
    ) -> LargeBlock {
        // SAFETY: per the contract.
        let ptr = unsafe { LargeHeader::write(base, nchunks, size, align) };
        LargeBlock {
            ptr,
            base,
            nchunks,
            zeroed,
        }
    }

    /// Frees the block whose payload is `ptr`.
    ///
    /// The header is checked first (magic, recorded payload address, guard); its magic is
    /// turned from live to freed before the run goes to the cache or back to the source, so a
    /// second free is reported as [`LargeError::DoubleFree`] while the run sits in the cache.
    ///
    /// What this crate alone cannot tell: once the run has gone back to the source, the 64
    /// bytes before `ptr` may be unmapped (mmap), zeroed (shm) or reused (sbrk keeps its free
    /// list in freed runs), so a second free of it cannot be told from a foreign pointer here,
    /// and with an unmapping source the read itself would fault: a caller that must survive
    /// such frees keeps a registry of its runs and refuses the pointer before calling this.
    /// A second free after the run was handed out again for a block with the same payload
    /// address frees that new block.
    ///
    /// # Safety
    /// The 64 bytes before `ptr` are readable (true for a block of this allocator whose run
    /// is still mapped, and for any pointer at least 64 bytes into memory the caller owns), and
    /// no other thread reads or writes the block while it is freed.
    ///
    /// # Errors
    /// [`LargeError::BadPointer`] for a pointer that is not the payload of a block (interior,
    /// foreign, misaligned, or with a corrupted header), [`LargeError::DoubleFree`] for a block
    /// already freed, [`LargeError::Source`] when the source refuses the run back.
    pub unsafe fn dealloc(&self, ptr: NonNull<u8>) -> Result<(), LargeError> {
        // SAFETY: the caller guarantees the 64 bytes before `ptr` are readable and not written
        // concurrently.
        let header = unsafe { LargeHeader::find(ptr) }?;
        let (base, nchunks) = (header.base(), header.nchunks());
        let addr = ptr.as_ptr() as usize;
        // `find` checked the base is not null; a failure here is a bad pointer all the same.
        let base = NonNull::new(base).ok_or(LargeError::BadPointer { addr })?;
        header.mark_freed(addr)?;
        // SAFETY: the run `base .. base + nchunks` belongs to the block we just marked freed,
        // and that compare-exchange made us its only owner.
        unsafe { self.put_run(base, nchunks) }
    }

    /// Changes the size of the block whose payload is `ptr` to `new_size`, keeping its
    /// alignment and its content up to the smaller of the two sizes.
    ///
    /// In place (only the header's size changes) when the new size needs as many chunks as the
    /// run has. Otherwise, for alignments up to `CHUNK_SIZE` on a source with
    /// [`SourceProps::RESIZABLE`], the run is grown or shrunk by the source (mremap for the
    /// mmap source), which may move it. Otherwise a new block is allocated, the content copied
    /// and the old block freed; a shrink that cannot get a new block keeps its run.
    ///
    /// The result tells where the block is now, whether the payload moved, and the run it had
    /// before, for a registry of runs to update.
    ///
    /// # Safety
    /// `ptr` is as for [`dealloc`](Self::dealloc), and the caller has exclusive access to the
    /// block for the call. When the result says `moved`, `ptr` is no longer valid.
    ///
    /// # Errors
    /// [`LargeError::BadPointer`] and [`LargeError::DoubleFree`] as for `dealloc`,
    /// [`LargeError::Overflow`] for a size past `isize::MAX`, [`LargeError::OutOfMemory`] when
    /// the block must grow and there is no room. On error the block is unchanged.
    pub unsafe fn realloc(&self, ptr: NonNull<u8>, new_size: usize) -> Result<Realloc, LargeError> {
        // SAFETY: the caller guarantees the 64 bytes before `ptr` are readable, and exclusive
        // access to the block.
        let header = unsafe { LargeHeader::find(ptr) }?;
        let addr = ptr.as_ptr() as usize;
        let (align, nchunks, usable) = (header.align(), header.nchunks(), header.usable_size());
        let base = NonNull::new(header.base()).ok_or(LargeError::BadPointer { addr })?;
        // Overflow is judged as for a fresh block; the chunks needed in place depend on where
        // the payload actually lies (for `align <= CHUNK_SIZE` the two are the same).
        chunks_for(new_size, align)?;
        let offset = ptr.as_ptr() as usize - base.as_ptr() as usize;
        let new_nchunks = chunks_used(offset, new_size);
        let same = |block: LargeBlock| Realloc {
            block,
            moved: block.ptr != ptr,
            old_base: base,
            old_nchunks: nchunks,
        };
        let in_place = LargeBlock {
            ptr,
            base,
            nchunks,
            zeroed: false,
        };

        // In place when the run has the chunks `new_size` needs and at most twice as many (the
        // waste a cached run may bring to a fresh block too).
        if new_nchunks <= nchunks && 2 * new_nchunks >= nchunks {
            // `new_size` fits: the run has at least `chunks_used(offset, new_size)` chunks.
            debug_assert!(new_size <= usable);
            // SAFETY: exclusive access (caller); `new_size <= usable` (above); `header` is not
            // used after this.
            unsafe { LargeHeader::set_size(ptr, new_size) };
            return Ok(same(in_place));
        }

        // Growing: a cached run long enough is taken before the source grows this one, since its
        // pages are already there (a resize would fault in every new page of the longer run).
        let cached = if new_nchunks > nchunks {
            self.alloc_cached(new_size, align)
        } else {
            None
        };
        let props = self.source.props();
        if cached.is_none() && align <= CHUNK_SIZE && props.contains(SourceProps::RESIZABLE) {
            // SAFETY: the run `base .. base + nchunks` is this live block's, which the caller
            // gives us exclusive access to; on error the source leaves it as it was.
            if let Ok(new_base) = unsafe { self.source.resize(base, nchunks, new_nchunks) } {
                // SAFETY: the source returned a CHUNK_SIZE-aligned run of `new_nchunks` chunks
                // holding the old content, ours alone. Up to CHUNK_SIZE the payload offset
                // depends only on `align`, so the header is rewritten where it was relative to
                // the base, and `offset + new_size` fits in `chunks_used(offset, new_size)`.
                let new_ptr = unsafe { LargeHeader::write(new_base, new_nchunks, new_size, align) };
                return Ok(same(LargeBlock {
                    ptr: new_ptr,
                    base: new_base,
                    nchunks: new_nchunks,
                    zeroed: false,
                }));
            }
        }

        match cached.map_or_else(|| self.alloc(new_size, align), Ok) {
            Ok(mut block) => {
                // The caller may have used the whole usable size of the old block.
                let keep = usable.min(new_size);
                // SAFETY: both ranges are inside their runs (`keep <= usable` of the old block,
                // `keep <= new_size` of the new one), and the runs are distinct (the new one
                // came from the source or the cache while the old one is live).
                unsafe { core::ptr::copy_nonoverlapping(ptr.as_ptr(), block.ptr.as_ptr(), keep) };
                block.zeroed = false;
                // The caller has exclusive access, so nobody else can have freed the block since
                // `find` saw it live.
                let freed = header.mark_freed(addr);
                debug_assert!(freed.is_ok());
                // SAFETY: the old run is the freed block's and we are its only owner.
                let put = unsafe { self.put_run(base, nchunks) };
                // The new block is in use either way; a source that refuses its own run back
                // has lost track of it, and the run is simply not reused.
                debug_assert!(put.is_ok(), "source refused a run back: {put:?}");
                Ok(same(block))
            }
            Err(_) if new_nchunks < nchunks => {
                // The run has more chunks than `new_size` needs, so it fits.
                debug_assert!(new_size <= usable);
                // SAFETY: exclusive access (caller); `new_size` fits the run; `header` is not
                // used after this.
                unsafe { LargeHeader::set_size(ptr, new_size) };
                Ok(same(in_place))
            }
            Err(e) => Err(e),
        }
    }

    /// The checked header of the live block whose payload is `ptr` (for a C layer's `free`,
    /// to learn the size and the run before calling [`dealloc`](Self::dealloc)).
    ///
    /// # Safety
    /// The 64 bytes before `ptr` are readable for `'a` and not written concurrently (see
    /// [`dealloc`](Self::dealloc)).
    ///
    /// # Errors
    /// [`LargeError::BadPointer`] for a pointer that is not a payload, and
    /// [`LargeError::DoubleFree`] for a block already freed.
    pub unsafe fn header<'a>(ptr: NonNull<u8>) -> Result<&'a LargeHeader, LargeError> {
        // SAFETY: forwarded from the caller.
        unsafe { LargeHeader::find(ptr) }
    }

    /// Bytes usable from `ptr` to the end of its run (for `malloc_usable_size`); at least the
    /// size asked for.
    ///
    /// # Safety
    /// As for [`header`](Self::header).
    ///
    /// # Errors
    /// As for [`header`](Self::header).
    pub unsafe fn usable_size(ptr: NonNull<u8>) -> Result<usize, LargeError> {
        // SAFETY: forwarded from the caller.
        unsafe { LargeHeader::find(ptr) }.map(LargeHeader::usable_size)
    }

    /// Gives every cached run back to the source; returns how many chunks went back.
    pub fn trim(&self) -> usize {
        let mut released = 0;
        self.cache.drain(|base, n| {
            released += n;
            // SAFETY: the run came out of the cache, so it is ours and was the source's.
            let _ = unsafe { self.give_back(base, n) };
        });
        released
    }

    /// The cache's clock: it advances with every large allocation and free that looks at the
    /// cache, so a caller that sees it unchanged for a while knows the cache sat idle.
    #[inline]
    pub fn clock(&self) -> usize {
        self.cache.now()
    }

    /// Chunks held in the cache of freed runs now.
    #[inline]
    pub fn cached_chunks(&self) -> usize {
        self.cache.cached_chunks()
    }

    /// Whether runs are cached for this source: not for a [`SourceProps::SHARED`] one, whose
    /// runs another process may also be caching after a fork.
    #[inline]
    fn caches(props: SourceProps) -> bool {
        !props.contains(SourceProps::SHARED)
    }

    /// A cached run of `n` to `2n` chunks and its length, if the cache holds one at least `n`
    /// long (sweeping out stale runs on the way): a run longer than `2n` is split, and the
    /// chunks past its first `n` go back to the cache, or to the source when the cache will not
    /// take them (see the cache's module docs).
    fn take_cached(&self, n: usize) -> Option<(NonNull<u8>, usize)> {
        if !Self::caches(self.source.props()) || !RunCache::fits(n) {
            return None;
        }
        let now = self.cache.tick();
        let hit = self.cache.take(n).map(|(base, len)| {
            if len <= 2 * n {
                return (base, len);
            }
            // SAFETY: `n < len`, so the tail starts inside the run, which is ours now.
            let tail = unsafe { base.add(n * CHUNK_SIZE) };
            // SAFETY: whole chunks of a run the source handed out, which nobody uses.
            let _ = unsafe { self.put_run(tail, len - n) };
            (base, n)
        });
        self.evict_stale(now);
        hit
    }

    /// A fresh run of `n` chunks into which cached runs shorter than `n` are moved with their
    /// pages, the longest that fits in what is left first, until it is full or no cached run
    /// fits (see the cache's module docs). `None` when the cache holds no such run, the source
    /// cannot move chunks, or a move fails (then every chunk goes back where it can).
    fn gather_cached(&self, n: usize) -> Option<NonNull<u8>> {
        let props = self.source.props();
        if !Self::caches(props) || !props.contains(SourceProps::RESIZABLE) || n < 2 {
            return None;
        }
        let first = self.cache.take_longest_at_most(n - 1)?;
        let base = match self.source.alloc(n) {
            Ok(base) => base,
            Err(_) => {
                // SAFETY: the run came out of the cache: the source's, and ours.
                let _ = unsafe { self.put_run(first.0, first.1) };
                return None;
            }
        };
        let mut filled = 0;
        let mut piece = Some(first);
        while let Some((src, len)) = piece {
            for i in 0..len {
                // SAFETY: `i < len` and `filled + i < n`: chunks of the piece and of the fresh
                // run, both taken by this call alone, so they are ours and distinct.
                let (from, to) =
                    unsafe { (src.add(i * CHUNK_SIZE), base.add((filled + i) * CHUNK_SIZE)) };
                // SAFETY: as just said; nothing uses either chunk but this call.
                if let Err(e) = unsafe { self.source.move_chunk(from, to) } {
                    // The chunk that stayed and the rest of the piece are still ours.
                    // SAFETY: whole chunks of a run the source handed out, which nobody uses.
                    let _ = unsafe { self.put_run(from, len - i) };
                    let lost = !matches!(e, ChunkError::Unsupported | ChunkError::InvalidArgument);
                    // SAFETY: the fresh run is ours but for its chunk `filled + i` when the
                    // source says it may have lost it.
                    unsafe { self.abandon(base, n, filled + i, lost) };
                    return None;
                }
            }
            filled += len;
            piece = if filled < n {
                self.cache.take_longest_at_most(n - filled)
            } else {
                None
            };
        }
        Some(base)
    }

    /// Gives up a run of `n` chunks at `base` that a failed move left half gathered: the chunks
    /// before `at` hold moved pages and go to the cache, the rest back to the source, except
    /// chunk `at` itself when `lost` (a failed move may have unmapped it, and the address range
    /// may be someone else's by now: it is left alone).
    ///
    /// # Safety
    /// The run is the caller's, which gives it up; `at < n`.
    unsafe fn abandon(&self, base: NonNull<u8>, n: usize, at: usize, lost: bool) {
        debug_assert!(at < n);
        if at > 0 {
            // SAFETY: the run's first `at` chunks, ours (contract).
            let _ = unsafe { self.put_run(base, at) };
        }
        let rest = if lost { at + 1 } else { at };
        if rest < n {
            // SAFETY: the run's chunks from `rest` on, ours (contract).
            let _ = unsafe { self.give_back(base.add(rest * CHUNK_SIZE), n - rest) };
        }
    }

    /// A block of `size` bytes aligned to `align` (at most `CHUNK_SIZE`) in a cached run, if
    /// the cache holds one long enough.
    fn alloc_cached(&self, size: usize, align: usize) -> Option<LargeBlock> {
        if align > CHUNK_SIZE {
            return None;
        }
        let (base, nchunks) = self.take_cached(chunks_for(size, align).ok()?)?;
        // SAFETY: as in `alloc`: a CHUNK_SIZE-aligned run of `nchunks` chunks, ours alone, at
        // least `chunks_for(size, align)` long.
        Some(unsafe { Self::block_in(base, nchunks, size, align, false) })
    }

    /// A run of at least `n` chunks (a cached one may be up to twice as long), its length,
    /// and whether it reads as zero; with `gather`, shorter cached runs may be gathered into it.
    fn get_run(&self, n: usize, gather: bool) -> Result<(NonNull<u8>, usize, bool), LargeError> {
        let props = self.source.props();
        if let Some((base, len)) = self.take_cached(n) {
            return Ok((base, len, false));
        }
        if gather {
            if let Some(base) = self.gather_cached(n) {
                return Ok((base, n, false));
            }
        }
        let base = match self.source.alloc(n) {
            Ok(base) => base,
            Err(ChunkError::OutOfMemory) if self.cache.cached_chunks() > 0 => {
                self.trim();
                self.source.alloc(n)?
            }
            Err(e) => return Err(e.into()),
        };
        debug_assert_eq!(base.as_ptr() as usize % CHUNK_SIZE, 0);
        Ok((base, n, props.contains(SourceProps::ZEROED)))
    }

    /// Gives back the chunks of a fresh run of `n` chunks at `base` that a block of `size`
    /// bytes aligned to `align` (more than `CHUNK_SIZE`) does not touch: those before the
    /// chunk of its header and those past its payload. Returns the run that is left. A part the
    /// source will not take back is kept.
    fn shed_unused_chunks(
        &self,
        base: NonNull<u8>,
        n: usize,
        size: usize,
        align: usize,
    ) -> (NonNull<u8>, usize) {
        let offset = payload_offset(base.as_ptr() as usize, align);
        let payload = base.as_ptr() as usize + offset;
        let first = (offset - HEADER_SIZE) / CHUNK_SIZE;
        let end = chunks_used(offset, size);
        debug_assert!(first < end && end <= n);
        let (mut base, mut n) = (base, n);
        if end < n {
            // SAFETY: `end < n`, so the chunk is inside the run.
            let tail = unsafe { base.add(end * CHUNK_SIZE) };
            // SAFETY: whole chunks of a run the source handed out and nobody uses.
            if unsafe { self.source.dealloc(tail, n - end) }.is_ok() {
                n = end;
            }
        }
        if first > 0 {
            // SAFETY: whole chunks of a run the source handed out and nobody uses.
            if unsafe { self.source.dealloc(base, first) }.is_ok() {
                // SAFETY: `first < end <= n`, so the chunk is inside the run.
                base = unsafe { base.add(first * CHUNK_SIZE) };
                n -= first;
            }
        }
        // The payload stays where it was: no aligned address lies between the new base + 64
        // and the old payload (the one before it is below the old base + 64).
        debug_assert_eq!(
            base.as_ptr() as usize + payload_offset(base.as_ptr() as usize, align),
            payload
        );
        (base, n)
    }

    /// Puts a freed run in the cache, or gives it back to the source.
    ///
    /// # Safety
    /// The run is one the source handed out (`n` chunks at `base`), owned by the caller, which
    /// gives it up.
    unsafe fn put_run(&self, base: NonNull<u8>, n: usize) -> Result<(), LargeError> {
        if Self::caches(self.source.props()) && RunCache::fits(n) {
            let now = self.cache.tick();
            let cached = self.cache.put(base, n, now);
            self.evict_stale(now);
            if cached {
                return Ok(());
            }
        }
        // SAFETY: the caller gives up the run, which the source handed out.
        unsafe { self.give_back(base, n) }.map_err(LargeError::from)
    }

    /// Returns a run of `n` chunks at `base` to the source. When the source refuses (the OS at
    /// its limit of mappings, say), the run stays mapped and unused, and its pages go back at
    /// least; the error then says the address space was kept, not that the free was wrong.
    ///
    /// # Safety
    /// The run is one the source handed out, owned by the caller, which gives it up.
    unsafe fn give_back(&self, base: NonNull<u8>, n: usize) -> Result<(), ChunkError> {
        // SAFETY: per the contract.
        let r = unsafe { self.source.dealloc(base, n) };
        if r.is_err() {
            // SAFETY: the run is ours and nothing uses it any more.
            let _ = unsafe { self.source.decommit(base, n * CHUNK_SIZE) };
        }
        r
    }

    /// Gives back to the source the cached runs unused for more than `CACHE_MAX_AGE` ticks.
    fn evict_stale(&self, now: usize) {
        self.cache.evict_stale(now, |base, n| {
            // SAFETY: the run came out of the cache, so it is ours and was the source's.
            let _ = unsafe { self.give_back(base, n) };
        });
    }
}

impl<S: ChunkSource> Drop for LargeAlloc<S> {
    fn drop(&mut self) {
        self.trim();
    }
}

// The header fits before the smallest payload offset.
static_assertions::const_assert!(HEADER_SIZE <= crate::header::max_offset(1));
