//! `Arena`: an owned heap for allocator-api2 collections, private or shared with forked children.
//!
//! An arena is built from the same parts as the global heap: a [`SlabPool`] of 4 MiB chunks with
//! slot bitmaps, a [`LargeAlloc`] for big blocks, and a [`ThreadHeap`] of bounded buckets in front.
//! What differs is who owns them:
//!
//! - **Private** ([`Arena::new`]): chunks come from private anonymous mappings and are recorded in
//!   the arena's own chunk registry, so dropping the arena unmaps every one of them at once.
//! - **Shared** ([`Arena::shared`]): all memory is one `MAP_SHARED` region of a fixed number of
//!   chunks, preallocated; the pool's own state lives in the region's first chunk, so after
//!   `fork()` parent and children allocate from the same pool and see each other's data. Large
//!   blocks take contiguous chunks of the region. When the region is full, allocation fails.
//!
//! # The owner's fast path
//!
//! One thread at a time *owns* the arena's bucket heap: the first thread to allocate takes it,
//! and from then on its allocations and frees are bucket pops and pushes with no atomic
//! instruction (the thread's identity, a per-process number, compared with the owner, and the fork
//! generation checked).
//! The owner also owns the pool chunks its buckets refill from (an [`Owner`] beside the heap), so
//! blocks it frees into them cost no atomic. Other threads are served straight from the pool,
//! lock-free: a chunk owned just for one claim to allocate, a release to free. So the arena is `Send + Sync` and fast for the common case of one
//! thread doing most of the work.
//!
//! # Fork
//!
//! A forked child gets a copy of the owner's buckets. The first use in the child sees that the
//! fork generation changed. For a private arena whose owner was the forking thread, the copy is
//! the child's own (copy-on-write) and consistent, and stays. Otherwise the child *forgets* the
//! buckets and the owned chunks (never flushes or gives them back): a shared arena's cached blocks are the parent's too, and an
//! owner other than the forking thread may have been halfway through a push when memory was
//! copied. A child that exits
//! should drop its `Arena` (or call [`Arena::flush_thread_cache`]) to give back what its own
//! buckets hold.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use chunk_source::{fork, ChunkError, ChunkSource, MmapSource, SourceProps, CHUNK_SIZE};
use large_alloc::LargeAlloc;
use thread_heap::{Block, CentralStore};

use slab_pool::{ChunkHeader, Owner, SlabPool};

use crate::class::{small_class, ArenaHeap, CAPS, CLASSES, MAX_SMALL_ALIGN, NUM_CLASSES};
use crate::local::{prepare_for_fork, thread_id};
use crate::registry::{resize_large, Kind, Registry, RegistryPtr};
use crate::report;

/// Why an arena could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArenaError {
    /// The OS refused the memory (mapping the shared region, or the arena's own state).
    OutOfMemory,
    /// A shared arena needs at least one chunk of room.
    NoChunks,
    /// The shared global heap was already set up.
    AlreadyInitialized,
    /// The chunk source failed otherwise.
    Source(ChunkError),
    /// A shared arena cannot be reset: other processes may hold its blocks.
    Shared,
}

impl core::fmt::Display for ArenaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory => f.write_str("out of memory"),
            Self::NoChunks => f.write_str("a shared arena needs at least one chunk"),
            Self::AlreadyInitialized => {
                f.write_str("the shared global heap is already initialised")
            }
            Self::Source(e) => write!(f, "chunk source: {e}"),
            Self::Shared => f.write_str("a shared arena cannot be reset"),
        }
    }
}

impl std::error::Error for ArenaError {}

/// What an arena holds and hands out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaUsage {
    /// Bytes of the blocks handed out and not yet freed (block sizes, as seen by this process).
    pub bytes_in_use: usize,
    /// Blocks handed out and not yet freed (as seen by this process).
    pub blocks_in_use: usize,
    /// Chunks the arena holds: slab chunks ever taken plus chunks of live large blocks.
    pub chunks_held: usize,
    /// For a shared arena, the chunks of its region still free; for a private one, `None`.
    pub chunks_free: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// Sources

/// Chunk kinds recorded in a shared region's table (one byte per chunk).
const SHM_NONE: u8 = 0;
const SHM_SLAB: u8 = 1;
const SHM_LARGE: u8 = 2;

/// The chunk source of an arena's pool or large allocator.
#[derive(Clone, Copy)]
enum Source {
    /// Private anonymous mappings.
    Mmap,
    /// A shared region, recording each run's kind in the region's table.
    Shm {
        region: *const chunk_source::ShmSource,
        kinds: *const AtomicU8,
        kind: u8,
    },
}

// SAFETY: the pointers name the region's source and kind table, which live as long as the arena
// that owns this value and are only used through thread-safe methods and atomics.
unsafe impl Send for Source {}
// SAFETY: as above.
unsafe impl Sync for Source {}

impl Source {
    fn mark(&self, ptr: NonNull<u8>, n: usize, value: u8) {
        if let Source::Shm { region, kinds, .. } = *self {
            // SAFETY: the region outlives the arena's use of it.
            let base = unsafe { (*region).base() }.as_ptr() as usize;
            let first = (ptr.as_ptr() as usize - base) >> chunk_source::CHUNK_SHIFT;
            for i in first..first + n {
                // SAFETY: the table has one entry per chunk of the region; `i` is inside it.
                unsafe { (*kinds.add(i)).store(value, Ordering::Release) };
            }
        }
    }
}

// SAFETY: forwards to a real source; every property and promise is that source's.
unsafe impl ChunkSource for Source {
    fn props(&self) -> SourceProps {
        match *self {
            Source::Mmap => MmapSource::new().props(),
            // SAFETY: the region outlives the arena's use of it.
            Source::Shm { region, .. } => unsafe { (*region).props() },
        }
    }

    fn alloc(&self, n: usize) -> Result<NonNull<u8>, ChunkError> {
        let p = match *self {
            Source::Mmap => MmapSource::new().alloc(n)?,
            Source::Shm { region, kind, .. } => {
                // SAFETY: the region outlives the arena's use of it.
                let p = unsafe { (*region).alloc(n)? };
                self.mark(p, n, kind);
                p
            }
        };
        Ok(p)
    }

    unsafe fn dealloc(&self, ptr: NonNull<u8>, n: usize) -> Result<(), ChunkError> {
        match *self {
            // SAFETY: forwarded from the caller.
            Source::Mmap => unsafe { MmapSource::new().dealloc(ptr, n) },
            Source::Shm { region, .. } => {
                self.mark(ptr, n, SHM_NONE);
                // SAFETY: forwarded from the caller; the region outlives the arena.
                unsafe { (*region).dealloc(ptr, n) }
            }
        }
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ChunkError> {
        match *self {
            // SAFETY: forwarded from the caller.
            Source::Mmap => unsafe { MmapSource::new().decommit(ptr, len) },
            // SAFETY: forwarded from the caller; the region outlives the arena.
            Source::Shm { region, .. } => unsafe { (*region).decommit(ptr, len) },
        }
    }

    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old_n: usize,
        new_n: usize,
    ) -> Result<NonNull<u8>, ChunkError> {
        match *self {
            // SAFETY: forwarded from the caller.
            Source::Mmap => unsafe { MmapSource::new().resize(ptr, old_n, new_n) },
            Source::Shm { .. } => Err(ChunkError::Unsupported),
        }
    }

    unsafe fn move_chunk(&self, src: NonNull<u8>, dest: NonNull<u8>) -> Result<(), ChunkError> {
        match *self {
            // SAFETY: forwarded from the caller.
            Source::Mmap => unsafe { MmapSource::new().move_chunk(src, dest) },
            Source::Shm { .. } => Err(ChunkError::Unsupported),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State

/// The state every user of the arena shares: in the arena's box (private) or in the first
/// chunk of the region (shared, so every process sees the same pool).
struct Core {
    pool: ArenaPool,
    large: LargeAlloc<Source>,
    /// Chunks in live large blocks.
    large_chunks: AtomicUsize,
}

/// What only this process (and, for the buckets, only the owner thread) uses.
struct Local {
    /// The owning thread's identity (`local::thread_id`), [`NO_OWNER`], or [`ADOPTING`] while a thread takes over.
    owner: AtomicUsize,
    /// The fork generation when the owner took the heap.
    fork_gen: AtomicU64,
    heap: UnsafeCell<ArenaHeap>,
    /// The pool chunks the owner's heap refills from; touched only with the heap.
    chunks: UnsafeCell<Owner>,
    /// Blocks handed out by the owner's path, per class (written by the owner alone, one
    /// relaxed load and store per operation; bytes are derived when asked).
    owner_blocks: [AtomicI64; NUM_CLASSES],
    /// Blocks and bytes handed out by the other paths (shared atomics, on slower paths anyway).
    other_blocks: AtomicI64,
    other_bytes: AtomicI64,
}

const NO_OWNER: usize = 0;
const ADOPTING: usize = 1;

/// A private arena's box: the registry its pool records chunks in, and the core.
struct PrivateParts {
    registry: Registry,
    core: Core,
}

enum Backing {
    Private(Box<PrivateParts>),
    Shared {
        region: Box<chunk_source::ShmSource>,
        core: NonNull<Core>,
        kinds: *const AtomicU8,
    },
}

/// An owned heap that implements allocator-api2's `Allocator`.
///
/// ```
/// use allocator_api2::vec::Vec;
/// use fam_alloc::Arena;
///
/// let arena = Arena::new();
/// let mut v = Vec::new_in(&arena);
/// v.extend(0..1000u32);
/// assert_eq!(v.iter().sum::<u32>(), 499_500);
/// assert!(arena.usage().bytes_in_use >= 4000);
/// drop(v);
/// assert_eq!(arena.usage().bytes_in_use, 0);
/// ```
pub struct Arena {
    backing: Backing,
    local: Box<Local>,
}

// SAFETY: the bucket heap is only touched by the owner thread (checked on every use), the pool
// and large allocator are thread-safe, and the rest is atomics.
unsafe impl Send for Arena {}
// SAFETY: as above.
unsafe impl Sync for Arena {}

/// An arena's slab pool: chunks recorded in the arena's registry (private) or nowhere (shared).
type ArenaPool = SlabPool<Source, RegistryPtr>;

impl Core {
    /// Builds a core in place (its pool is too big for a temporary on a small stack).
    ///
    /// # Safety
    /// `this` is valid for writes of a `Core` and aligned.
    unsafe fn init(this: *mut Core, slab: Source, large: Source, registry: RegistryPtr) {
        // SAFETY: `this` is valid for writes (contract); each field is written once.
        unsafe {
            SlabPool::init(ptr::addr_of_mut!((*this).pool), slab, registry);
            ptr::addr_of_mut!((*this).large).write(LargeAlloc::new(large));
            ptr::addr_of_mut!((*this).large_chunks).write(AtomicUsize::new(0));
        }
    }
}

/// A private arena's parts, built in place on the heap.
fn new_private_parts() -> Box<PrivateParts> {
    let b: Box<core::mem::MaybeUninit<PrivateParts>> = Box::new_uninit();
    let p = Box::into_raw(b).cast::<PrivateParts>();
    // SAFETY: `p` comes from a box of this layout, so it is valid for writes and aligned. The
    // registry is atomics whose all-zero pattern is the empty registry; the core is built in
    // place; then the box takes back a whole value. The pool's registry is set by the caller.
    unsafe {
        ptr::addr_of_mut!((*p).registry).write_bytes(0, 1);
        Core::init(
            ptr::addr_of_mut!((*p).core),
            Source::Mmap,
            Source::Mmap,
            RegistryPtr(ptr::null()),
        );
        Box::from_raw(p)
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl Arena {
    /// A private arena over anonymous mappings. Memory is taken lazily, a chunk at a time.
    pub fn new() -> Self {
        prepare_for_fork();
        let mut parts = new_private_parts();
        // The registry lives in the same box as the pool and is dropped after it.
        let registry = RegistryPtr(&parts.registry);
        parts.core.pool.set_registry(registry);
        Self {
            backing: Backing::Private(parts),
            local: Box::new(Local::new()),
        }
    }

    /// A private arena with room for `bytes` of small blocks (up to 1 MiB each) mapped now: the
    /// allocations that fill it ask the OS for nothing. Room is taken in 4 MiB chunks, each of
    /// which serves one size class once used, so mixed sizes fill it less tightly than one size
    /// does; large blocks always map their own runs. If the OS refuses part of it, the arena
    /// holds what it got and maps the rest when needed.
    ///
    /// ```
    /// use allocator_api2::vec::Vec;
    /// use fam_alloc::Arena;
    ///
    /// let arena = Arena::with_capacity(16 << 20);
    /// assert_eq!(arena.allocated_bytes(), 16 << 20);
    /// let mut v: Vec<u64, _> = Vec::with_capacity_in(1000, &arena);
    /// v.extend(0..1000);
    /// assert_eq!(arena.allocated_bytes(), 16 << 20, "served from the room taken up front");
    /// ```
    pub fn with_capacity(bytes: usize) -> Self {
        let arena = Self::new();
        arena.core().pool.add_empty(bytes.div_ceil(CHUNK_SIZE));
        arena
    }

    /// Bytes of memory the arena holds from the OS: its slab chunks (in use, cached or empty)
    /// and the runs of its live large blocks, 4 MiB per chunk. What bumpalo's
    /// `allocated_bytes` tells; the bytes of live blocks are [`usage`](Self::usage)`().bytes_in_use`.
    pub fn allocated_bytes(&self) -> usize {
        self.usage().chunks_held * CHUNK_SIZE
    }

    /// Frees every block at once and keeps the memory for what comes next: each slab chunk
    /// becomes empty and stays mapped, large blocks go back to the OS, and the counts start
    /// again from zero. `&mut self` proves that nothing still borrows the arena (a collection
    /// allocated in it holds `&Arena`), so no block of it can be used after.
    ///
    /// A shared arena cannot be reset ([`ArenaError::Shared`]): other processes may hold its
    /// blocks.
    ///
    /// ```
    /// use allocator_api2::vec::Vec;
    /// use fam_alloc::Arena;
    ///
    /// let mut arena = Arena::new();
    /// for round in 0..3u64 {
    ///     let mut v = Vec::new_in(&arena);
    ///     v.extend((0..10_000).map(|i| i * round));
    ///     core::mem::forget(v); // dropped by the reset below, not one by one
    ///     let held = arena.allocated_bytes();
    ///     arena.reset().unwrap();
    ///     assert_eq!(arena.usage().bytes_in_use, 0);
    ///     assert_eq!(arena.allocated_bytes(), held, "the chunks are kept");
    /// }
    /// ```
    pub fn reset(&mut self) -> Result<(), ArenaError> {
        let Backing::Private(parts) = &mut self.backing else {
            return Err(ArenaError::Shared);
        };
        let local = &mut *self.local;
        // The owner's buckets and owned chunks name blocks of the old incarnation: dropped.
        local.heap.get_mut().forget_all();
        local.chunks.get_mut().forget();
        // Large blocks: every run the registry names goes back to the OS (cached runs are not in
        // the registry, and `trim` unmaps them).
        parts.core.large.trim();
        let source = *parts.core.pool.source();
        let registry = &parts.registry;
        registry.for_each_run(|base, n, kind| {
            if kind == Kind::Large {
                registry.remove(base, n);
                // SAFETY: the run came from this source for a large block, which `&mut self`
                // proves nobody uses any more.
                let _ = unsafe { source.dealloc(NonNull::new_unchecked(base as *mut u8), n) };
            }
        });
        *parts.core.large_chunks.get_mut() = 0;
        parts.core.pool.reset();
        for c in &mut local.owner_blocks {
            *c.get_mut() = 0;
        }
        *local.other_blocks.get_mut() = 0;
        *local.other_bytes.get_mut() = 0;
        Ok(())
    }

    /// A shared arena: `num_chunks` chunks of 4 MiB in one `MAP_SHARED` region, mapped now, plus
    /// one more chunk for the arena's own shared state. After `fork()` the parent and its
    /// children allocate from it concurrently and see each other's data; blocks are plain memory
    /// at the same address in every process.
    pub fn shared(num_chunks: usize) -> Result<Self, ArenaError> {
        if num_chunks == 0 {
            return Err(ArenaError::NoChunks);
        }
        prepare_for_fork();
        let total = num_chunks.checked_add(1).ok_or(ArenaError::OutOfMemory)?;
        let region = Box::new(chunk_source::ShmSource::new(total).map_err(|e| match e {
            ChunkError::OutOfMemory => ArenaError::OutOfMemory,
            e => ArenaError::Source(e),
        })?);
        let meta = region.alloc(1).map_err(|_| ArenaError::OutOfMemory)?;
        let core = meta.as_ptr().cast::<Core>();
        // The kind table follows the core in the metadata chunk.
        let kinds_off = core::mem::size_of::<Core>().next_multiple_of(64);
        if kinds_off + total > CHUNK_SIZE {
            return Err(ArenaError::OutOfMemory);
        }
        // SAFETY: the metadata chunk is ours, zeroed (a fresh shared chunk), and big enough.
        let kinds = unsafe { meta.as_ptr().add(kinds_off) }.cast::<AtomicU8>();
        let region_ptr: *const chunk_source::ShmSource = &*region;
        let slab = Source::Shm {
            region: region_ptr,
            kinds,
            kind: SHM_SLAB,
        };
        let large = Source::Shm {
            region: region_ptr,
            kinds,
            kind: SHM_LARGE,
        };
        // SAFETY: `core` points at the start of a chunk we own, aligned to 4 MiB, big enough for a
        // `Core` (checked above); the pool registers nothing (null registry).
        unsafe { Core::init(core, slab, large, RegistryPtr(ptr::null())) };
        Ok(Self {
            backing: Backing::Shared {
                region,
                // SAFETY: just written, non-null.
                core: unsafe { NonNull::new_unchecked(core) },
                kinds,
            },
            local: Box::new(Local::new()),
        })
    }

    #[inline(always)]
    fn core(&self) -> &Core {
        match &self.backing {
            Backing::Private(parts) => &parts.core,
            // SAFETY: the core lives in the region, which this arena keeps mapped.
            Backing::Shared { core, .. } => unsafe { core.as_ref() },
        }
    }

    fn is_shared(&self) -> bool {
        matches!(self.backing, Backing::Shared { .. })
    }

    /// The bucket heap, if the calling thread owns it (taking it if nobody does).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    fn local_heap(&self) -> Option<&mut ArenaHeap> {
        let me = thread_id();
        let l = &*self.local;
        if l.owner.load(Ordering::Relaxed) == me
            && l.fork_gen.load(Ordering::Relaxed) == fork::generation()
        {
            // SAFETY: only the owner thread gets here, and it does not re-enter the arena while
            // using the heap, so this is the only reference.
            return Some(unsafe { &mut *l.heap.get() });
        }
        self.adopt_heap(me)
    }

    /// Slow part of [`local_heap`](Self::local_heap): takes the heap when it has no owner, or
    /// when a fork happened since its owner took it (the owner may not exist in this process).
    #[cold]
    #[allow(clippy::mut_from_ref)]
    fn adopt_heap(&self, me: usize) -> Option<&mut ArenaHeap> {
        let l = &*self.local;
        let generation = fork::generation();
        let owner = l.owner.load(Ordering::Acquire);
        let stale = l.fork_gen.load(Ordering::Relaxed) != generation;
        if owner == ADOPTING || !(owner == NO_OWNER || stale) {
            return None;
        }
        // Acquire: see the heap as the previous owner left it.
        if l.owner
            .compare_exchange(owner, ADOPTING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // SAFETY: ADOPTING excludes every other thread from the heap.
        let heap = unsafe { &mut *l.heap.get() };
        // After a fork, the inherited buckets can be kept only if this thread owned them in the
        // parent (it was in `fork()`, not halfway through a push or pop) and the arena is
        // private. A shared arena's cached blocks belong to the parent as much as to us, and
        // another owner may have been mid-operation when the fork copied the heap: drop them.
        if stale && owner != NO_OWNER && (self.is_shared() || owner != me) {
            heap.forget_all();
            // SAFETY: ADOPTING excludes every other thread from the owned chunks too.
            unsafe { &mut *l.chunks.get() }.forget();
            for c in &l.owner_blocks {
                c.store(0, Ordering::Relaxed);
            }
        }
        l.fork_gen.store(generation, Ordering::Relaxed);
        // Release: the next owner check (even on another thread) sees the heap as we leave it.
        l.owner.store(me, Ordering::Release);
        Some(heap)
    }

    /// Allocates `size` bytes aligned to `align`, or returns null (for the untyped entry points).
    pub(crate) fn alloc_raw(&self, size: usize, align: usize) -> *mut u8 {
        self.alloc_block(size, align)
            .map_or(ptr::null_mut(), |(p, _)| p.as_ptr())
    }

    /// Allocates a block for `layout`; returns it and its usable size.
    #[inline]
    fn alloc_block(&self, size: usize, align: usize) -> Option<(NonNull<u8>, usize)> {
        match small_class(size, align) {
            Some(class) => {
                let core = self.core();
                let block = match self.local_heap() {
                    Some(heap) => {
                        let p = heap.alloc(class, &self.store())?;
                        self.local.count_owner(class, 1);
                        p
                    }
                    None => {
                        let mut one = [ptr::null_mut(); 1];
                        if core.pool.refill_once(class, &mut one) == 0 {
                            return None;
                        }
                        let p = NonNull::new(one[0])?.cast();
                        self.local.count_other(1, CLASSES[class].size as i64);
                        p
                    }
                };
                Some((block, CLASSES[class].size as usize))
            }
            None => self.alloc_large(size, align),
        }
    }

    #[cold]
    fn alloc_large(&self, size: usize, align: usize) -> Option<(NonNull<u8>, usize)> {
        if size > isize::MAX as usize - MAX_SMALL_ALIGN {
            return None;
        }
        let core = self.core();
        let block = core.large.alloc(size, align).ok()?;
        if let Backing::Private(parts) = &self.backing {
            if !parts.registry.insert_large(&block) {
                // SAFETY: the block was just allocated and never published.
                let _ = unsafe { core.large.dealloc(block.ptr) };
                return None;
            }
        }
        core.large_chunks
            .fetch_add(block.nchunks, Ordering::Relaxed);
        self.local.count_other(1, size as i64);
        Some((block.ptr, size))
    }

    /// Frees a block allocated by this arena with a layout of `size` and `align`.
    ///
    /// # Safety
    /// `ptr` is a live block of this arena, allocated with a size that maps to the same class.
    #[inline]
    unsafe fn free_block(&self, ptr: NonNull<u8>, size: usize, align: usize) {
        match small_class(size, align) {
            Some(class) => {
                let core = self.core();
                match self.local_heap() {
                    Some(heap) => {
                        // SAFETY: `ptr` is a live block of `class` from this arena's pool.
                        unsafe { heap.dealloc(class, ptr, &self.store()) };
                        self.local.count_owner(class, -1);
                    }
                    None => {
                        // SAFETY: as above.
                        unsafe { core.pool.flush(None, class, &[ptr.cast()]) };
                        self.local.count_other(-1, -(CLASSES[class].size as i64));
                    }
                }
            }
            // SAFETY: a large layout was allocated as a large block of this arena.
            None => unsafe { self.free_large(ptr) },
        }
    }

    #[cold]
    unsafe fn free_large(&self, ptr: NonNull<u8>) {
        let core = self.core();
        // SAFETY: per the caller, `ptr` is a live large block of this arena.
        let (base, n, size) = match unsafe { LargeAlloc::<Source>::header(ptr) } {
            Ok(h) => (h.base() as usize, h.nchunks(), h.size()),
            Err(_) => report::bad_free(
                "Arena::deallocate",
                ptr.as_ptr() as usize,
                "not a large block of this arena",
            ),
        };
        if let Backing::Private(parts) = &self.backing {
            parts.registry.remove(base, n);
        }
        // SAFETY: as above.
        if unsafe { core.large.dealloc(ptr) }.is_err_and(|e| e.is_misuse()) {
            report::bad_free(
                "Arena::deallocate",
                ptr.as_ptr() as usize,
                "double free of a large block",
            );
        }
        core.large_chunks.fetch_sub(n, Ordering::Relaxed);
        self.local.count_other(-1, -(size as i64));
    }

    /// Moves a block to a new size, in place when the class does not change (or a large block
    /// can be resized in place).
    ///
    /// # Safety
    /// `ptr` is a live block of this arena for `old`; `new.align() == old.align()`.
    unsafe fn resize_block(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zero_tail: bool,
    ) -> Option<(NonNull<u8>, usize)> {
        let old_class = small_class(old.size(), old.align());
        let new_class = small_class(new.size(), new.align());
        if let (Some(a), Some(b)) = (old_class, new_class) {
            if a == b {
                if zero_tail && new.size() > old.size() {
                    // SAFETY: the block holds the class size, at least `new.size()` bytes.
                    unsafe {
                        ptr::write_bytes(ptr.as_ptr().add(old.size()), 0, new.size() - old.size())
                    };
                }
                return Some((ptr, CLASSES[a].size as usize));
            }
        }
        if old_class.is_none() && new_class.is_none() && old.align() <= CHUNK_SIZE {
            // SAFETY: forwarded from the caller: a live large block of this arena.
            return unsafe { self.resize_large(ptr, old.size(), new.size(), zero_tail) };
        }
        let (p, usable) = self.alloc_block(new.size(), new.align())?;
        let keep = old.size().min(new.size());
        // SAFETY: both blocks hold at least `keep` bytes and are distinct.
        unsafe { ptr::copy_nonoverlapping(ptr.as_ptr(), p.as_ptr(), keep) };
        if zero_tail && new.size() > keep {
            // SAFETY: the new block holds `new.size()` bytes.
            unsafe { ptr::write_bytes(p.as_ptr().add(keep), 0, new.size() - keep) };
        }
        // SAFETY: the old block is live and given up now.
        unsafe { self.free_block(ptr, old.size(), old.align()) };
        Some((p, usable))
    }

    /// Resizes a large block: in place when its chunk count holds, by `mremap` for a private
    /// arena otherwise, by copying as a last resort.
    ///
    /// # Safety
    /// `ptr` is a live large block of this arena of `old_size` bytes.
    #[cold]
    unsafe fn resize_large(
        &self,
        ptr: NonNull<u8>,
        old_size: usize,
        new_size: usize,
        zero_tail: bool,
    ) -> Option<(NonNull<u8>, usize)> {
        if new_size > isize::MAX as usize - MAX_SMALL_ALIGN {
            return None;
        }
        let core = self.core();
        let registry = match &self.backing {
            Backing::Private(parts) => Some(&parts.registry),
            Backing::Shared { .. } => None,
        };
        // SAFETY: forwarded from the caller: a live large block of this arena's large
        // allocator, whose runs its registry (if private) records.
        let r = unsafe { resize_large(registry, &core.large, ptr, new_size) }?;
        if r.run_changed() {
            core.large_chunks
                .fetch_add(r.block.nchunks, Ordering::Relaxed);
            core.large_chunks
                .fetch_sub(r.old_nchunks, Ordering::Relaxed);
        }
        self.local.count_other(0, new_size as i64 - old_size as i64);
        if zero_tail && new_size > old_size {
            // SAFETY: the block now holds `new_size` bytes.
            unsafe { ptr::write_bytes(r.block.ptr.as_ptr().add(old_size), 0, new_size - old_size) };
        }
        Some((r.block.ptr, new_size))
    }

    /// What the arena holds and hands out (blocks as seen by this process).
    pub fn usage(&self) -> ArenaUsage {
        let l = &*self.local;
        let mut blocks = l.other_blocks.load(Ordering::Relaxed);
        let mut bytes = l.other_bytes.load(Ordering::Relaxed);
        for (class, c) in l.owner_blocks.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            blocks += n;
            bytes += n * CLASSES[class].size as i64;
        }
        let core = self.core();
        ArenaUsage {
            bytes_in_use: bytes.max(0) as usize,
            blocks_in_use: blocks.max(0) as usize,
            chunks_held: core.pool.mapped() + core.large_chunks.load(Ordering::Relaxed),
            chunks_free: match &self.backing {
                Backing::Private(_) => None,
                Backing::Shared { region, .. } => Some(region.chunks_free()),
            },
        }
    }

    /// Gives the blocks cached in the owner's buckets back to the arena's pool, if the calling
    /// thread owns them. A forked child of a shared arena should call this (or drop the arena)
    /// before it exits.
    pub fn flush_thread_cache(&self) {
        if let Some(heap) = self.local_heap() {
            heap.flush_all(&self.store());
        }
    }

    /// Decommits the arena's empty chunks now (after giving back what the calling thread caches
    /// and the chunks it refills from, if it owns the arena's heap).
    pub fn trim(&self) -> usize {
        let pool = &self.core().pool;
        let n = match self.local_heap() {
            Some(heap) => {
                heap.flush_all(&self.store());
                // SAFETY: the calling thread owns the heap, hence the owned chunks beside it.
                pool.trim(Some(unsafe { &mut *self.local.chunks.get() }))
            }
            None => pool.trim(None),
        };
        n + self.core().large.trim()
    }

    /// The pool as the owner heap's central store. Only for the thread that owns the heap.
    ///
    /// A shared arena's heap owns no chunks between refills: processes share its fixed set of
    /// chunks, and a chunk owned by one process would be out of reach of the others (and of a
    /// child, which must forget what its parent owned).
    #[inline(always)]
    fn store(&self) -> PoolStore<'_> {
        PoolStore {
            pool: &self.core().pool,
            chunks: (!self.is_shared()).then_some(&self.local.chunks),
        }
    }

    /// Whether `ptr` lies in this arena's shared region (always false for a private arena).
    pub fn contains(&self, ptr: *const u8) -> bool {
        match &self.backing {
            Backing::Private(_) => false,
            Backing::Shared { region, .. } => region.contains(ptr),
        }
    }

    /// Frees a block of a shared arena from its pointer alone (the classic `release`).
    ///
    /// # Safety
    /// `ptr` is null or a live block of this arena, not used after the call.
    pub(crate) unsafe fn release_raw(&self, op: &str, ptr: *mut u8) {
        let Some(nn) = NonNull::new(ptr) else { return };
        let (class, large) = self.classify_raw(op, ptr);
        if large {
            // SAFETY: `classify_raw` checked it is the start of a large run of this arena.
            unsafe { self.free_large(nn) };
        } else {
            // SAFETY: `classify_raw` checked it is a claimed block of `class`; any size of the
            // class routes to it.
            unsafe { self.free_block(nn, CLASSES[class].size as usize, 1) };
        }
    }

    /// The usable size of a block of a shared arena, from its pointer alone.
    ///
    /// # Safety
    /// `ptr` is a live block of this arena.
    pub(crate) unsafe fn usable_raw(&self, op: &str, ptr: *mut u8) -> usize {
        match self.classify_raw(op, ptr) {
            (class, false) => CLASSES[class].size as usize,
            // SAFETY: checked by `classify_raw`.
            (_, true) => unsafe { LargeAlloc::<Source>::usable_size(NonNull::new_unchecked(ptr)) }
                .unwrap_or(0),
        }
    }

    /// `(class, is_large)` of a pointer into a shared arena's region, checked; reports and
    /// aborts when it is not a live block's start.
    fn classify_raw(&self, op: &str, ptr: *mut u8) -> (usize, bool) {
        let addr = ptr as usize;
        let Backing::Shared { region, kinds, .. } = &self.backing else {
            report::bad_free(op, addr, "not a shared arena");
        };
        if !region.contains(ptr) {
            report::bad_free(op, addr, "pointer not allocated by this shared heap");
        }
        let index = (addr - region.base().as_ptr() as usize) >> chunk_source::CHUNK_SHIFT;
        // SAFETY: `index` is a chunk of the region, and the table has an entry per chunk.
        match unsafe { (*kinds.add(index)).load(Ordering::Acquire) } {
            SHM_SLAB => {
                // SAFETY: slab chunks keep their header mapped for the region's life.
                match unsafe { &*ChunkHeader::of(addr) }.block_class(addr) {
                    Ok(class) => (class, false),
                    Err(bad) => report::bad_free(op, addr, bad.message()),
                }
            }
            SHM_LARGE => {
                // SAFETY: the chunk is part of a live large run of the region, so readable.
                match unsafe { LargeAlloc::<Source>::header(NonNull::new_unchecked(ptr)) } {
                    Ok(_) => (0, true),
                    Err(_) => report::bad_free(op, addr, "not the start of a large block"),
                }
            }
            _ => report::bad_free(op, addr, "pointer into free memory of the shared heap"),
        }
    }
}

impl Local {
    fn new() -> Self {
        Self {
            owner: AtomicUsize::new(NO_OWNER),
            fork_gen: AtomicU64::new(0),
            heap: UnsafeCell::new(ArenaHeap::lazy(CAPS)),
            chunks: UnsafeCell::new(Owner::new()),
            owner_blocks: [const { AtomicI64::new(0) }; NUM_CLASSES],
            other_blocks: AtomicI64::new(0),
            other_bytes: AtomicI64::new(0),
        }
    }

    /// Counts on the owner's path: only the owner writes these, so a relaxed load and store do.
    #[inline(always)]
    fn count_owner(&self, class: usize, blocks: i64) {
        let c = &self.owner_blocks[class];
        c.store(c.load(Ordering::Relaxed) + blocks, Ordering::Relaxed);
    }

    fn count_other(&self, blocks: i64, bytes: i64) {
        self.other_blocks.fetch_add(blocks, Ordering::Relaxed);
        self.other_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The arena's pool as the owner heap's central store, with the owner's chunks.
struct PoolStore<'a> {
    pool: &'a ArenaPool,
    /// The owner's chunks; none for a shared arena (see [`Arena::store`]).
    chunks: Option<&'a UnsafeCell<Owner>>,
}

// SAFETY: forwards to the pool, which hands out free blocks of the requested class only.
unsafe impl CentralStore for PoolStore<'_> {
    #[inline]
    fn refill(&self, class: usize, out: &mut [*mut Block]) -> usize {
        match self.chunks {
            // SAFETY: a store is made only for the heap's owner, whose pool calls do not nest.
            Some(c) => self.pool.refill(unsafe { &mut *c.get() }, class, out),
            None => self.pool.refill_once(class, out),
        }
    }

    #[inline]
    unsafe fn flush(&self, class: usize, blocks: &[NonNull<Block>]) {
        // SAFETY: the heap flushes only blocks of `class` that came from this pool; the owned
        // chunks are the owner's, as above.
        unsafe {
            self.pool
                .flush(self.chunks.map(|c| &mut *c.get()), class, blocks)
        }
    }

    fn cap(&self, class: usize) -> u32 {
        CLASSES[class].cap
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        match &mut self.backing {
            Backing::Private(parts) => {
                // Every chunk the arena holds is in its registry: give them all back at once.
                parts.core.large.trim();
                let source = *parts.core.pool.source();
                parts.registry.for_each_run(|base, n, _| {
                    // SAFETY: the run came from this source and nothing uses it any more (the
                    // arena is being dropped, so no block of it is alive).
                    let _ = unsafe { source.dealloc(NonNull::new_unchecked(base as *mut u8), n) };
                });
            }
            Backing::Shared { core, .. } => {
                // This process's buckets go back to the shared pool (if they are this process's:
                // a child that never used the arena holds the parent's, which it must not flush).
                let l = &*self.local;
                if l.fork_gen.load(Ordering::Relaxed) == fork::generation()
                    && l.owner.load(Ordering::Relaxed) > ADOPTING
                {
                    // SAFETY: `&mut self`: no other thread uses the arena now.
                    let heap = unsafe { &mut *l.heap.get() };
                    // SAFETY: the core lives in the region, still mapped until `region` drops.
                    let pool = &unsafe { core.as_ref() }.pool;
                    // A shared arena's heap owns no chunks between refills (see `store`).
                    heap.flush_all(&PoolStore { pool, chunks: None });
                }
                // The region is unmapped from this process when `region` drops; other processes
                // keep their mappings and the shared state in them.
            }
        }
    }
}

macro_rules! impl_allocator {
    ($api:ident) => {
        // SAFETY: blocks come from the arena's pool or large allocator, are at least as large
        // and as aligned as asked, and stay valid until freed or the arena drops; `&Arena`
        // shares one heap, so memory from one reference can be freed through another.
        unsafe impl $api::alloc::Allocator for Arena {
            #[inline]
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, $api::alloc::AllocError> {
                match self.alloc_block(layout.size(), layout.align()) {
                    Some((p, len)) => Ok(NonNull::slice_from_raw_parts(p, len)),
                    None => Err($api::alloc::AllocError),
                }
            }

            fn allocate_zeroed(
                &self,
                layout: Layout,
            ) -> Result<NonNull<[u8]>, $api::alloc::AllocError> {
                let block = self.allocate(layout)?;
                // SAFETY: the block holds at least `layout.size()` writable bytes.
                unsafe { ptr::write_bytes(block.cast::<u8>().as_ptr(), 0, layout.size()) };
                Ok(block)
            }

            #[inline]
            unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
                // SAFETY: the caller passes a block of this arena with a layout that fits it.
                unsafe { self.free_block(ptr, layout.size(), layout.align()) }
            }

            unsafe fn grow(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, $api::alloc::AllocError> {
                // SAFETY: forwarded from the caller (a live block for `old`).
                unsafe { self.resize_to(ptr, old, new, false) }.ok_or($api::alloc::AllocError)
            }

            unsafe fn grow_zeroed(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, $api::alloc::AllocError> {
                // SAFETY: forwarded from the caller.
                unsafe { self.resize_to(ptr, old, new, true) }.ok_or($api::alloc::AllocError)
            }

            unsafe fn shrink(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, $api::alloc::AllocError> {
                // SAFETY: forwarded from the caller.
                unsafe { self.resize_to(ptr, old, new, false) }.ok_or($api::alloc::AllocError)
            }
        }
    };
}

impl Arena {
    /// Common body of grow and shrink.
    ///
    /// # Safety
    /// `ptr` is a live block of this arena that fits `old`.
    unsafe fn resize_to(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zero: bool,
    ) -> Option<NonNull<[u8]>> {
        if new.align() != old.align() {
            let (p, len) = self.alloc_block(new.size(), new.align())?;
            // SAFETY: both blocks hold at least the smaller size and are distinct.
            unsafe {
                ptr::copy_nonoverlapping(ptr.as_ptr(), p.as_ptr(), old.size().min(new.size()))
            };
            if zero && new.size() > old.size() {
                // SAFETY: the new block holds `new.size()` bytes.
                unsafe { ptr::write_bytes(p.as_ptr().add(old.size()), 0, new.size() - old.size()) };
            }
            // SAFETY: the old block is live and given up now.
            unsafe { self.free_block(ptr, old.size(), old.align()) };
            return Some(NonNull::slice_from_raw_parts(p, len));
        }
        // SAFETY: forwarded from the caller; same alignment.
        let (p, len) = unsafe { self.resize_block(ptr, old, new, zero) }?;
        Some(NonNull::slice_from_raw_parts(p, len))
    }
}

impl_allocator!(allocator_api2);
#[cfg(feature = "allocator-api2-04")]
impl_allocator!(allocator_api2_04);
