//! `FamAlloc`: the process-wide allocator, for `#[global_allocator]`.
//!
//! Small requests (up to 1 MiB, alignment up to 128 KiB) go through the calling thread's heap; the
//! rest are large blocks, each its own run of chunks. Which path a request takes depends only on
//! its `Layout`, and `dealloc`/`realloc` receive the same layout, so a free never has to look at
//! the block to know where it belongs.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use large_alloc::{LargeAlloc, LargeBlock, LargeError};

use crate::class::{small_class, CLASSES};
use crate::local::{
    alloc_counted, dealloc_counted, pop_counted, push_counted, with_heap, GlobalStore,
};
use crate::registry::{resize_large, ClassIndex, GlobalRegistry, Kind, Registry};
use crate::{counters, report};
use slab_pool::{ChunkCounts, SlabPool};

/// The chunk source the global heap uses: the program break with the `sbrk` feature, otherwise
/// private anonymous mappings.
#[cfg(feature = "sbrk")]
pub(crate) type OsSource = chunk_source::SbrkSource;
/// The chunk source the global heap uses: the program break with the `sbrk` feature, otherwise
/// private anonymous mappings.
#[cfg(not(feature = "sbrk"))]
pub(crate) type OsSource = chunk_source::MmapSource;

pub(crate) type GlobalPool = SlabPool<OsSource, GlobalRegistry>;

static REGISTRY: Registry = Registry::new();
static CLASS_INDEX: ClassIndex = ClassIndex::new();
static POOL: GlobalPool = SlabPool::new(OsSource::new(), GlobalRegistry);
static LARGE: LargeAlloc<OsSource> = LargeAlloc::new(OsSource::new());

pub(crate) fn registry() -> &'static Registry {
    &REGISTRY
}

#[inline(always)]
pub(crate) fn class_index() -> &'static ClassIndex {
    &CLASS_INDEX
}

#[inline(always)]
pub(crate) fn pool() -> &'static GlobalPool {
    &POOL
}

/// The fam-alloc global allocator.
///
/// ```
/// use fam_alloc::FamAlloc;
///
/// #[global_allocator]
/// static GLOBAL: FamAlloc = FamAlloc::new();
///
/// let v: Vec<u64> = (0..1000).collect();
/// assert_eq!(v.iter().sum::<u64>(), 499_500);
/// ```
///
/// Every `FamAlloc` value shares the one process-wide heap; the type carries no state.
#[derive(Clone, Copy, Debug, Default)]
pub struct FamAlloc {
    _private: (),
}

impl FamAlloc {
    /// The allocator. `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

/// [`FamAlloc`]'s allocation when the bucket is empty: a refill (or the end of a diversion).
/// Out of line, and it finds the thread's heap itself, so that the inlined fast path keeps no
/// heap address live for it in its caller (the caller's own loops keep their registers).
#[cold]
#[inline(never)]
fn alloc_slow(class: usize) -> *mut u8 {
    alloc_counted(class, &GlobalStore).map_or(ptr::null_mut(), NonNull::as_ptr)
}

/// [`FamAlloc`]'s free when the bucket is full: a flush, then the push. Out of line for the
/// reason `alloc_slow` is.
///
/// # Safety
/// `ptr` is a block of `class` this allocator handed out, given up by the caller.
#[cold]
#[inline(never)]
unsafe fn dealloc_slow(class: usize, ptr: *mut u8) {
    // SAFETY: per the contract.
    unsafe { dealloc_counted(class, NonNull::new_unchecked(ptr), &GlobalStore) };
}

// SAFETY: small blocks come from slab chunks of a class at least as large and as aligned as the
// layout asks (see `small_class`), handed out to one thread heap at a time; large blocks come from
// `LargeAlloc`, which honours size and any power-of-two alignment. Frees take the same path as
// the allocation because it is chosen from the same layout.
unsafe impl GlobalAlloc for FamAlloc {
    // `alloc` and `dealloc` are forced inline: they are a class computation and a bucket pop or
    // push, and a caller generic over its allocator (a collection, a benchmark) that got a call
    // instead would pay more for the call than for the work. Their slow paths are calls that
    // take the class (and block) alone and find the heap themselves: when the heap's address
    // was their argument, the compiler computed it on the fast path and kept it on the stack
    // across the caller's loops (criterion `hashmap_churn_10k`'s key-copy loop lost registers
    // to it and ran about 2 % slower).
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match small_class(layout.size(), layout.align()) {
            Some(class) => match pop_counted(class) {
                Some(p) => p.as_ptr(),
                None => alloc_slow(class),
            },
            None => large_alloc(layout.size(), layout.align()),
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match small_class(layout.size(), layout.align()) {
            Some(class) => {
                // SAFETY: the caller passes a block this allocator returned for `layout`, so it
                // is a non-null block of `class`, and gives it up.
                if !unsafe { push_counted(class, NonNull::new_unchecked(ptr)) } {
                    // SAFETY: as above.
                    unsafe { dealloc_slow(class, ptr) };
                }
            }
            // SAFETY: a layout above the small limit was allocated as a large block.
            None => unsafe { large_free(ptr) },
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match small_class(layout.size(), layout.align()) {
            Some(_) => {
                // SAFETY: forwarded; the layout is the caller's.
                let p = unsafe { self.alloc(layout) };
                if !p.is_null() {
                    // SAFETY: `p` holds at least `layout.size()` writable bytes.
                    unsafe { ptr::write_bytes(p, 0, layout.size()) };
                }
                p
            }
            None => large_alloc_zeroed(layout.size(), layout.align()),
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        let old = small_class(layout.size(), align);
        let new = small_class(new_size, align);
        if old.is_some() && old == new {
            return ptr;
        }
        if old.is_none() && new.is_none() {
            // SAFETY: both sizes are large, so `ptr` is a live large block.
            return unsafe { large_realloc(ptr, new_size) };
        }
        // SAFETY: `new_size` with the old alignment is a valid layout (the caller guarantees it
        // does not overflow isize when rounded up).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
        // SAFETY: forwarded.
        let p = unsafe { self.alloc(new_layout) };
        if !p.is_null() {
            // SAFETY: both blocks hold at least the smaller size and do not overlap.
            unsafe { ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated with `layout` and is not used after this.
            unsafe { self.dealloc(ptr, layout) };
        }
        p
    }
}

/// A large block, or null when memory is exhausted.
#[cold]
pub(crate) fn large_alloc(size: usize, align: usize) -> *mut u8 {
    publish_large(LARGE.alloc(size, align), size)
}

/// A large block that reads as zero, or null when memory is exhausted: cleared only where it
/// holds what earlier blocks left (see `LargeAlloc::alloc_zeroed`).
#[cold]
pub(crate) fn large_alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    publish_large(LARGE.alloc_zeroed(size, align), size)
}

/// Records a new large block of `size` bytes in the registry and the statistics and returns
/// its payload; null when there was none or the registry has no room for it. Starts the
/// background purge first when it is wanted and not running (this is outside any thread heap).
fn publish_large(block: Result<LargeBlock, LargeError>, size: usize) -> *mut u8 {
    crate::background::ensure();
    let Ok(block) = block else {
        return ptr::null_mut();
    };
    if !REGISTRY.insert_large(&block) {
        // SAFETY: the block was just allocated and never published.
        let _ = unsafe { LARGE.dealloc(block.ptr) };
        return ptr::null_mut();
    }
    counters::large_changed(size, block.nchunks, 1);
    block.ptr.as_ptr()
}

/// Frees a large block, refusing pointers that are not one.
///
/// # Safety
/// `ptr` is not in use by anyone else after the call.
#[cold]
pub(crate) unsafe fn large_free(ptr: *mut u8) {
    crate::background::ensure();
    let addr = ptr as usize;
    let Some(entry) = REGISTRY.lookup(addr).filter(|e| e.kind == Kind::Large) else {
        report::bad_free(
            "free",
            addr,
            "not a live block of this allocator (foreign pointer or double free)",
        );
    };
    if addr != entry.payload {
        report::bad_free("free", addr, "not the start of a large block");
    }
    // SAFETY: the registry says `ptr` is the payload of the live large block of this run, so
    // its header, the 64 bytes before it, is mapped.
    let header = match unsafe { LargeAlloc::<OsSource>::header(NonNull::new_unchecked(ptr)) } {
        Ok(h) if h.base() as usize == entry.base => h,
        _ => report::bad_free("free", addr, "not the start of a large block"),
    };
    let (base, n, size) = (header.base() as usize, header.nchunks(), header.size());
    REGISTRY.remove(base, n);
    counters::large_changed(size, n, -1);
    // A free the OS cannot complete (an `munmap` refused at the mapping limit, say) keeps the
    // run mapped and decommitted, and must not change `errno` for the program.
    // SAFETY: `__errno_location` has no preconditions and returns this thread's errno.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: `ptr` is a live large block (checked above) that the caller gives up.
    if let Err(e) = unsafe { LARGE.dealloc(NonNull::new_unchecked(ptr)) } {
        if e.is_misuse() {
            report::bad_free("free", addr, "double free of a large block");
        }
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }
}

/// Resizes a large block, keeping the registry in step with its run.
///
/// # Safety
/// `ptr` is a live large block.
#[cold]
pub(crate) unsafe fn large_realloc(ptr: *mut u8, new_size: usize) -> *mut u8 {
    // SAFETY: per the contract `ptr` is a live large block, so its header is mapped.
    let old_size = unsafe { LargeAlloc::<OsSource>::header(NonNull::new_unchecked(ptr)) }
        .map_or(0, |h| h.size());
    // SAFETY: per the contract `ptr` is a live large block of LARGE, recorded in REGISTRY.
    let Some(r) = (unsafe {
        resize_large(
            Some(&REGISTRY),
            &LARGE,
            NonNull::new_unchecked(ptr),
            new_size,
        )
    }) else {
        return ptr::null_mut();
    };
    counters::large_resized(old_size, new_size, r.old_nchunks, r.block.nchunks);
    r.block.ptr.as_ptr()
}

/// Gives memory the allocator holds but does not use back to the OS now: the calling thread's
/// cached blocks go back, the chunks it refills from are given up (and retired if empty), empty
/// slab chunks are decommitted and cached large runs unmapped. Returns the number of chunks
/// affected. Chunks that other threads refill from stay theirs until they give them up.
///
/// The allocator does this by itself after a delay; call `trim` to do it at once (for instance
/// after freeing a large data structure, before a long idle period).
pub fn trim() -> usize {
    crate::local::flush_current();
    crate::local::with_owner(|o| POOL.trim(o)) + LARGE.trim()
}

/// Chunks held in the large-block cache.
pub(crate) fn large_cached_chunks() -> usize {
    LARGE.cached_chunks()
}

/// The large cache's clock (see `LargeAlloc::clock`) when [`large_idle_check`] last looked.
static LARGE_SEEN: AtomicUsize = AtomicUsize::new(0);
/// When [`large_idle_check`] last saw that clock move (or last trimmed), in `now_ms` time.
static LARGE_STILL_SINCE: AtomicU64 = AtomicU64::new(0);

/// Gives the cached large runs back once no large block was allocated or freed for a purge
/// delay (never with a negative delay). Every refill and flush of a thread heap calls it, and
/// the background purge every half delay, so a program that goes on with small blocks only
/// gives back the large runs it stopped using, as one that stops altogether does with the
/// background purge on. Without it the runs stayed cached until the next large operation aged
/// them out (up to 256 MiB, `large_alloc`'s cache budget).
///
/// Concurrent callers race benignly: each field is read and written on its own (Relaxed: they
/// only steer when a trim happens, and `LargeAlloc::trim` is safe at any time), the compare-
/// exchange on the stamp lets one caller of a period trim, and the worst a stale read does is
/// move a trim by one check.
///
/// With nothing cached there is nothing to give back, and the check ends before it reads the
/// clock: the common case of a program with no large blocks, or with all of them in use. (It
/// read the clock first, and that and the check were 1.6 % of the `mixed` workload's samples,
/// which has no large blocks.) A clock that moved meanwhile is seen at the next check that finds
/// runs cached, which starts the delay then.
pub(crate) fn large_idle_check() {
    if LARGE.cached_chunks() == 0 {
        return;
    }
    let delay = slab_pool::POLICY.purge_delay_ms();
    if delay < 0 {
        return;
    }
    let now = slab_pool::now_ms();
    let clock = LARGE.clock();
    if LARGE_SEEN.load(Ordering::Relaxed) != clock {
        LARGE_SEEN.store(clock, Ordering::Relaxed);
        LARGE_STILL_SINCE.store(now, Ordering::Relaxed);
        return;
    }
    let since = LARGE_STILL_SINCE.load(Ordering::Relaxed);
    if now.saturating_sub(since) >= delay as u64
        && LARGE_STILL_SINCE
            .compare_exchange(since, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        LARGE.trim();
    }
}

/// Where the global heap's chunks are.
pub fn chunk_counts() -> ChunkCounts {
    POOL.chunk_counts()
}

/// Bytes the calling thread's buckets hold (blocks freed and kept for reuse).
pub fn thread_cached_bytes() -> usize {
    with_heap(|h| h.cached_total_bytes(|c| CLASSES[c].size as usize)).unwrap_or(0)
}

/// Gives the calling thread's cached blocks back: those of the global heap to its central pool,
/// and those of the shared global heap (see [`crate::init_global_allocator`]) to it. A forked
/// child that leaves with `_exit` should call this first.
pub fn flush_thread_cache() {
    crate::local::flush_current();
    crate::shared::flush_shared();
}

/// Whether `ptr` points into memory this allocator manages (a slab chunk or a large run).
/// Reads only the allocator's own tables, so any address may be asked about.
pub fn owns(ptr: *const u8) -> bool {
    REGISTRY.lookup(ptr as usize).is_some()
}
