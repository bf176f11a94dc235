//! The slab pool: per class, the chunks holding blocks of that class; one pool of empty chunks
//! shared by every class; no locks.
//!
//! # Thread-owned refill
//!
//! Each thread heap brings an [`Owner`]: per class, a cursor on the one chunk it *owns*, the
//! only chunk it refills from and the only one anybody refills from while it is owned. A refill
//! takes blocks from the owner's local bitmap first (blocks that came back to their owner, plain
//! loads and stores), then claims a word's free bits from the chunk's shared bitmap (one
//! uncontended RMW). When both are exhausted the owner gives the chunk up and takes another: the
//! lowest-numbered chunk of its class's partial set, else an empty chunk (a committed one that
//! served the class last, then a decommitted one, then any committed one), else a fresh one
//! from the chunk source. Threads thus never claim from the same chunk, and a
//! refill's only shared writes are the membership changes of a chunk changing hands.
//!
//! # Flush
//!
//! Frees still go to the freeing thread's bucket (ownership transfer). When a bucket overflows,
//! its surplus comes here. A block of the chunk the flushing thread owns goes straight into that
//! chunk's local bitmap, one plain read-modify-write of one word (a random-order free of a
//! thread's own blocks costs no atomic, and no gathering either: there is nothing to batch).
//! The others are gathered by chunk and bitmap word and released with one `fetch_and` per word
//! and one decrement of the chunk's count per chunk. A chunk that is not owned is then settled by
//! the membership protocol ([`crate::membership`]): listed in the partial set when it has free
//! blocks, retired to the empty pool when it has none out.
//!
//! # No locks
//!
//! Class lists and the empty pool are [`ChunkSet`]s, bitmaps of chunk numbers changed by single
//! RMWs, so no pool operation waits for another thread and none is held across a system call.
//! `fork()` needs nothing of the pool locked: a thread that the fork interrupted in a pool
//! operation leaves, in the child, at worst a chunk that is on no set (lost to the child, never
//! handed out twice), and a signal handler that allocates cannot wait on its own thread.
//!
//! # Giving memory back
//!
//! Freed memory keeps its pages for the purge delay ([`POLICY`]; 100 ms by default), then goes
//! back to the OS, in two ways:
//!
//! - **Free pages of active chunks.** A page of a chunk's block area in which no block is out is
//!   decommitted once no block has come back to the chunk for the delay. A *purge pass* does it:
//!   it takes each quiet listed chunk off its partial set (the bit is the token of exclusive
//!   access), becomes its owner for the moment (so nothing is claimed from it meanwhile; frees
//!   from other threads only clear bits, which can only add free pages), reads the bitmap,
//!   decommits the runs of free pages in one call each, and gives the chunk up again through the
//!   membership protocol, exactly as a refill's owner would. A pass triggered by a thread also
//!   purges the quiet chunks that thread owns, after merging their local bitmaps into the
//!   shared ones: a block in the local bitmap is "out" in the shared one, and only the free
//!   mark in its memory tells the C path's double-free check that it is free, so its page could
//!   not go while it stayed local; once merged, its bit says so. A chunk is purged
//!   once per quiet spell: its `purged_at` after its `released_at` means nothing came back since.
//!   A page comes back by itself when a refill writes to a block in it (a fault, zero-filled).
//!   Blocks cached in thread buckets are out of their chunks, so each pins its own page, never
//!   its whole chunk.
//! - **Empty chunks** keep their pages in the empty pool for the delay, then are decommitted
//!   whole; beyond [`Policy::retain_empty`](crate::Policy::retain_empty) of them the oldest is
//!   decommitted at once. The committed ones are kept by the class they served last
//!   ([`ClassSets`](crate::set::ClassSets)), and a chunk goes back to that class first: its
//!   blocks then lie where the old ones did, so the pages it touches are the ones still
//!   resident, where a chunk taken for another class would touch new pages and keep the old.
//!
//! - **Past the pressure bound, at the next allocation after the delay.** The delay guards
//!   memory about to be reused; a pass only runs when a pool operation comes, and a program
//!   that has stopped using its memory may make none but fast-path calls. Each [`Owner`]
//!   counts the bytes its flushes gave back less the bytes its refills took (never below minus
//!   one step); every [`PRESSURE_STEP`] of that, the flush estimates the free memory the pool
//!   keeps committed (free blocks of listed chunks less their purged pages, the owner's local
//!   blocks, committed empty chunks: what this thread may read without a handshake). When that
//!   is over [`PRESSURE_FREE`] and over half of all the committed block area (so a program that
//!   keeps most of its memory in use, fragmented or churning, is left to the passes its flushes
//!   run), the owner gives up every chunk it owns (their local blocks merged into the shared
//!   bitmaps), so that what it frees next goes to listed chunks, which every pass reaches, a
//!   background one too, and sets its [`recheck_wanted`](Owner::recheck_wanted). A scrambled
//!   free makes most pages whole only with its last frees, which no flush follows; so the
//!   heap's next allocations (thread-heap's `CentralStore::divert` sends them to the slow path,
//!   with nothing tested on the fast paths) call [`SlabPool::pressure_recheck`], and the first
//!   of them a delay after the check runs the pass (not rate-limited, and with the owner's
//!   chunks: what stayed may be only the ones its refills took since). Just before, the heap
//!   gives back every block it caches (`CentralStore::shed`, [`Owner::recheck_due`]): after a
//!   scrambled free each cached block keeps a page of its chunk resident, which the pass could
//!   not give back. Purging sooner than the
//!   delay was measured and dropped: a tenth of it made mimalloc's stress test about 1.15x slower
//!   (freed pages faulted back in), none 1.3x.
//!
//! Passes run at most once per half delay (at least 1 ms apart), triggered by the start of a flush
//! (a pool operation that is slow anyway, and one that has the flushing thread's owner), by
//! [`SlabPool::maintain`] (a background thread's call) and, ignoring the delay, by
//! [`SlabPool::trim`]. Nothing is purged on a fast path, and a negative delay turns passes off.
//! Chunks are never unmapped while the pool lives, and their headers and bitmaps are never
//! decommitted, so a pointer to a chunk header is always valid.

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use chunk_source::{ChunkSource, SourceProps, CHUNK_SIZE};
use slab_bitmap::ReleaseError;
use thread_heap::Block;

use crate::chunk::{tag_class, tag_state, ChunkHeader, STATE_ACTIVE, STATE_EMPTY};
use crate::class::{CLASSES, NUM_CLASSES, SLOT_OFFSET};
use crate::groups::WordGroups;
use crate::membership::{Listing, LISTED, OWNED};
use crate::policy::{POLICY, PRESSURE_FREE, PRESSURE_STEP};
use crate::report::bad_free;
use crate::set::{ChunkSet, ClassSets, Directory};

/// Where a pool records its chunks, so that frees can be checked before they touch memory.
pub trait ChunkRegistry {
    /// Records the chunk at `base` as a slab chunk. False when that is impossible (out of memory):
    /// the pool then gives the chunk back and reports out of memory.
    fn register(&self, base: usize) -> bool;
    /// The registered chunk at `base` now serves `class` (called before any of its blocks of
    /// that class is handed out, so a reader that learns of such a block sees the class).
    fn activated(&self, base: usize, class: usize);
    /// The chunk at `base` holds no class any more: its blocks all came back and it goes to the
    /// empty pool (called before it is published there).
    fn retired(&self, base: usize);
    /// Whether `addr` lies in the registered slab chunk at `base`.
    fn is_slab(&self, addr: usize, base: usize) -> bool;
}

/// No registry: the pool's caller vouches for every pointer it flushes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRegistry;

impl ChunkRegistry for NoRegistry {
    fn register(&self, _base: usize) -> bool {
        true
    }
    fn activated(&self, _base: usize, _class: usize) {}
    fn retired(&self, _base: usize) {}
    fn is_slab(&self, _addr: usize, _base: usize) -> bool {
        true
    }
}

/// One class's owned chunk, as its owner sees it.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    /// The owned chunk, or null.
    chunk: *mut ChunkHeader,
    /// Blocks in the chunk's local bitmap.
    local: u32,
    /// While `local` is not 0: local words below `lo` and at or past `hi` are zero.
    lo: u32,
    hi: u32,
}

impl Cursor {
    /// All zeros, so that an [`Owner`] is too (a thread-local holding one costs a new thread
    /// nothing until used); `lo` and `hi` mean nothing while `local` is 0.
    const NONE: Cursor = Cursor {
        chunk: ptr::null_mut(),
        local: 0,
        lo: 0,
        hi: 0,
    };
}

/// The chunks one thread heap owns, one per class at most. Keep it next to the heap, with the
/// same lifetime; give it back with [`SlabPool::release_owner`] when the heap goes away.
#[derive(Debug)]
pub struct Owner {
    cursors: [Cursor; NUM_CLASSES],
    /// Bytes this heap's flushes gave back, less the bytes its refills took, since its last
    /// pressure check (never below minus one step, so that a heap that allocated much before it
    /// frees reaches the check as soon as one that did not): how far the thread is into freeing
    /// more than it allocates.
    returned: isize,
    /// Set by a flush whose pressure check found the pool over its bound, 0 otherwise: when the
    /// recheck is due (monotonic milliseconds, the check's time plus the pressure delay), and
    /// that the heap's allocations should call [`SlabPool::pressure_recheck`] first.
    recheck_at: u64,
}

impl Owner {
    /// Owns nothing.
    pub const fn new() -> Self {
        Self {
            cursors: [Cursor::NONE; NUM_CLASSES],
            returned: 0,
            recheck_at: 0,
        }
    }

    /// Whether the heap's next allocation should call [`SlabPool::pressure_recheck`] first (a
    /// flush of this heap found the pool over its pressure bound since the last recheck).
    #[inline(always)]
    pub fn recheck_wanted(&self) -> bool {
        self.recheck_at != 0
    }

    /// Whether [`SlabPool::pressure_recheck`] would run its pass at `now` (in `now_ms` time):
    /// wanted, and the delay since the check that asked for it has passed. The heap gives its
    /// cached blocks back first then, so that the pass returns their pages too.
    #[inline]
    pub fn recheck_due(&self, now: u64) -> bool {
        self.recheck_wanted() && now >= self.recheck_at
    }

    /// Forgets every owned chunk without giving it back. For a forked child whose copy of the
    /// owner must not touch chunks another process owns (a shared pool), or that another thread
    /// was using when the fork happened.
    pub fn forget(&mut self) {
        *self = Self::new();
    }

    /// Whether it owns a chunk of `class`.
    pub fn owns(&self, class: usize) -> bool {
        !self.cursors[class].chunk.is_null()
    }
}

impl Default for Owner {
    fn default() -> Self {
        Self::new()
    }
}

/// The central store behind thread heaps: slab chunks per class over a chunk source.
pub struct SlabPool<S: ChunkSource, R: ChunkRegistry = NoRegistry> {
    source: S,
    registry: R,
    dir: Directory,
    /// Per class, the chunks that are LISTED (not owned, with free blocks).
    partial: [ChunkSet; NUM_CLASSES],
    /// Empty chunks whose pages are committed, by the class they served last (see
    /// [`ClassSets`]), and those whose block pages were given back.
    committed: ClassSets,
    decommitted: ChunkSet,
    /// Chunks obtained from the source, and those holding a class now.
    mapped: AtomicUsize,
    active: AtomicUsize,
    /// When the next purge pass is due (monotonic milliseconds); the thread that moves it on
    /// runs the pass.
    next_pass_at: AtomicU64,
    /// Pages of active chunks given back by purges and not taken again since.
    purged_pages: AtomicUsize,
}

// SAFETY: everything in the pool is atomics, and chunk headers are themselves all atomics; the
// source and registry are shared as the bounds allow.
unsafe impl<S: ChunkSource + Send, R: ChunkRegistry + Send> Send for SlabPool<S, R> {}
// SAFETY: as above; `S: ChunkSource` is `Sync` by the trait's bound.
unsafe impl<S: ChunkSource, R: ChunkRegistry + Sync> Sync for SlabPool<S, R> {}

/// Counts of the chunks a pool holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    /// Empty chunks whose pages are still committed.
    pub empty_committed: usize,
    /// Empty chunks whose block pages were given back to the OS.
    pub empty_decommitted: usize,
    /// Chunks on the partial sets of their classes.
    pub partial: usize,
    /// Pages of active chunks that purges gave back and no new owner has taken again.
    pub purged_pages: usize,
}

/// A chunk's bit in its class's partial set, for the membership protocol.
struct Bit<'a> {
    set: &'a ChunkSet,
    number: usize,
}

impl Listing for Bit<'_> {
    fn insert(&self) {
        self.set.insert(self.number);
    }
    fn remove(&self) -> bool {
        self.set.remove(self.number)
    }
}

impl<S: ChunkSource, R: ChunkRegistry> SlabPool<S, R> {
    /// A pool over `source`, registering its chunks in `registry`.
    pub const fn new(source: S, registry: R) -> Self {
        Self {
            source,
            registry,
            dir: Directory::new(),
            partial: [const { ChunkSet::new() }; NUM_CLASSES],
            committed: ClassSets::new(),
            decommitted: ChunkSet::new(),
            mapped: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            next_pass_at: AtomicU64::new(0),
            purged_pages: AtomicUsize::new(0),
        }
    }

    /// Builds a pool in place at `this`, without a pool-sized temporary (the pool is half a
    /// megabyte: too big for a small thread stack in an unoptimised build).
    ///
    /// # Safety
    /// `this` is valid for writes of a pool and suitably aligned; afterwards it holds a pool as
    /// [`new`](Self::new) builds it.
    pub unsafe fn init(this: *mut Self, source: S, registry: R) {
        // SAFETY: `this` is valid for writes (contract). Every field but the source and the
        // registry is made of atomics (and arrays of them) whose all-zero bit pattern is the
        // value `new` gives them: null pointers, empty sets, zero counts.
        unsafe {
            ptr::addr_of_mut!((*this).source).write(source);
            ptr::addr_of_mut!((*this).registry).write(registry);
            ptr::addr_of_mut!((*this).dir).write_bytes(0, 1);
            ptr::addr_of_mut!((*this).partial).write_bytes(0, 1);
            ptr::addr_of_mut!((*this).committed).write_bytes(0, 1);
            ptr::addr_of_mut!((*this).decommitted).write_bytes(0, 1);
            ptr::addr_of_mut!((*this).mapped).write_bytes(0, 1);
            ptr::addr_of_mut!((*this).active).write_bytes(0, 1);
            ptr::addr_of_mut!((*this).next_pass_at).write_bytes(0, 1);
            ptr::addr_of_mut!((*this).purged_pages).write_bytes(0, 1);
        }
    }

    /// Replaces the registry (for a pool built before its registry's address was known).
    pub fn set_registry(&mut self, registry: R) {
        debug_assert_eq!(self.mapped(), 0, "the pool already registered chunks");
        self.registry = registry;
    }

    fn bit(&self, class: usize, h: &ChunkHeader) -> Bit<'_> {
        Bit {
            set: &self.partial[class],
            number: h.number(),
        }
    }

    /// Up to `out.len()` (at most 64 are taken) free blocks of `class` for the heap that `owner`
    /// belongs to: their addresses go into `out`, lowest first, and the count is returned (0 when
    /// memory is exhausted). The blocks themselves are not touched.
    #[inline]
    pub fn refill(&self, owner: &mut Owner, class: usize, out: &mut [*mut Block]) -> usize {
        let n = self.refill_cursor(&mut owner.cursors[class], class, out);
        owner.returned = (owner.returned - (n * CLASSES[class].size as usize) as isize)
            .max(-(PRESSURE_STEP as isize));
        n
    }

    /// A refill through cursor `c`: local blocks, then the owned chunk, then another chunk.
    #[inline(always)]
    fn refill_cursor(&self, c: &mut Cursor, class: usize, out: &mut [*mut Block]) -> usize {
        let max = out.len().min(64);
        if max == 0 {
            return 0;
        }
        let out = &mut out[..max];
        if c.local != 0 {
            // SAFETY: a cursor with local blocks owns its chunk, and they lie in `lo..hi`.
            let n = unsafe { (*c.chunk).take_local(class, &mut c.lo, c.hi, out) };
            debug_assert!(n as u32 <= c.local);
            c.local -= n as u32;
            return n;
        }
        if !c.chunk.is_null() {
            // SAFETY: chunk headers stay valid for the pool's life.
            let n = unsafe { &*c.chunk }.claim(class, out);
            if n != 0 {
                return n;
            }
        }
        self.refill_slow(c, class, out)
    }

    /// The owned chunk ran out: give it up and own another.
    #[cold]
    fn refill_slow(&self, c: &mut Cursor, class: usize, out: &mut [*mut Block]) -> usize {
        self.leave(c, class, false);
        let slots = CLASSES[class].slots as usize;
        // A listed chunk has free blocks; one whose claim fails anyway (corruption by a racing
        // misuse) is given up again and the next one tried.
        while let Some(i) = self.partial[class].pop(self.dir.len()) {
            let h = self.dir.get(i);
            // SAFETY: popped numbers name formatted chunks, valid for the pool's life.
            let chunk = unsafe { &*h };
            chunk.membership().own();
            self.forget_purged(chunk);
            // Changing hands counts as activity: the new owner's first delay is not quiet.
            chunk.set_released_at(now_ms());
            let n = chunk.claim(class, out);
            if n != 0 {
                *c = Cursor {
                    chunk: h,
                    ..Cursor::NONE
                };
                return n;
            }
            debug_assert!(false, "a listed chunk had no free block");
            if chunk
                .membership()
                .give_up(slots, &self.bit(class, chunk), false)
            {
                self.retire(class, chunk);
            }
        }
        let Some(h) = self.take_empty(class) else {
            return 0;
        };
        // SAFETY: `take_empty` hands out an EMPTY chunk that the caller holds exclusively.
        let chunk = unsafe { &*h };
        // SAFETY: as above; every block of its last incarnation came back before it was retired.
        unsafe { chunk.activate(class) };
        self.registry.activated(chunk.base(), class);
        // Relaxed: a statistic.
        self.active.fetch_add(1, Ordering::Relaxed);
        chunk.membership().own();
        chunk.set_released_at(now_ms());
        *c = Cursor {
            chunk: h,
            ..Cursor::NONE
        };
        let n = chunk.claim(class, out);
        debug_assert!(n != 0, "a fresh chunk has free blocks");
        n
    }

    /// Up to `out.len()` free blocks of `class`, as [`refill`](Self::refill) gives them, for a
    /// caller without an owner (a thread that already exited, or not an arena's owner): owns a
    /// chunk just for this claim.
    pub fn refill_once(&self, class: usize, out: &mut [*mut Block]) -> usize {
        let mut c = Cursor::NONE;
        let n = self.refill_cursor(&mut c, class, out);
        self.leave(&mut c, class, true);
        n
    }

    /// The owner leaves the chunk of cursor `c`: its local blocks go back to the shared bitmap,
    /// then the chunk is listed, retired or left floating as its count says (an empty one is
    /// listed with `keep_empty`, see [`Membership::give_up`]).
    fn leave(&self, c: &mut Cursor, class: usize, keep_empty: bool) {
        if c.chunk.is_null() {
            return;
        }
        // SAFETY: chunk headers stay valid for the pool's life.
        let chunk = unsafe { &*c.chunk };
        if c.local != 0 {
            // SAFETY: the cursor owns the chunk; its local blocks lie in `lo..hi`.
            let n = unsafe { chunk.merge_local(class, c.lo, c.hi) };
            debug_assert_eq!(n, c.local as usize);
            chunk.membership().unclaimed(n);
            chunk.set_released_at(now_ms());
        }
        *c = Cursor::NONE;
        let slots = CLASSES[class].slots as usize;
        if chunk
            .membership()
            .give_up(slots, &self.bit(class, chunk), keep_empty)
        {
            self.retire(class, chunk);
        }
    }

    /// Gives up every chunk `owner` owns (a heap going away). Empty ones stay listed for the
    /// heaps that follow; [`trim`](Self::trim) retires them. The owner is as new afterwards,
    /// pressure state included, so a later heap may use it again: one that kept the recheck
    /// its last heap was owed ran a purge pass at its first allocation (mstress, with thread
    /// heaps reused, took 1.05-1.13x the time).
    pub fn release_owner(&self, owner: &mut Owner) {
        for (class, c) in owner.cursors.iter_mut().enumerate() {
            self.leave(c, class, true);
        }
        *owner = Owner::new();
    }

    /// Retires every listed chunk that has no block out.
    fn retire_listed_empty(&self) {
        let len = self.dir.len();
        for (class, set) in self.partial.iter().enumerate() {
            set.for_each(len, |i| {
                // SAFETY: set members are formatted chunks, valid for the pool's life.
                let chunk = unsafe { &*self.dir.get(i) };
                if chunk.membership().retire_if_empty(&self.bit(class, chunk)) {
                    self.retire(class, chunk);
                }
            });
        }
    }

    /// Gives `blocks` (all of class `class`) back to their chunks. Blocks of the
    /// chunk `owner` owns go to its local bitmap; the others are released to their shared ones.
    /// Every block is checked first: a pointer this pool did not hand out, or a block that is
    /// already free, is reported and the process aborts.
    ///
    /// # Safety
    /// Every block was handed out by this pool as a block of class `class` and is
    /// not in use, or is a bad pointer that the checks catch (pointers into registered chunks,
    /// when the pool has a registry; any pointer the caller vouches for, when it has none).
    pub unsafe fn flush(&self, owner: Option<&mut Owner>, class: usize, blocks: &[NonNull<Block>]) {
        let now = now_ms();
        let mut owner = owner;
        // The pass goes first: the blocks this flush brings back mark their chunks as just
        // released, which would keep those chunks out of the pass (a bucket's blocks, freed long
        // ago, come from as many chunks as there are blocks); their own pages stay either way.
        self.maybe_pass(owner.as_deref_mut(), now);
        let cursor = owner.as_deref_mut().map(|o| &mut o.cursors[class]);
        let mine = cursor.as_ref().map_or(0, |c| c.chunk as usize);
        let mut groups = WordGroups::new();
        let mut local = LocalSpan::NONE;
        // Chunks checked lately. Empty entries hold an address no chunk has (chunks are 4 MiB
        // aligned), not 0: a wild pointer below the first chunk has header address 0, and must be
        // checked like any other.
        let mut checked: [usize; 4] = [usize::MAX; 4];
        let mut rest = blocks;
        while let Some((&block, tail)) = rest.split_first() {
            let addr = block.as_ptr() as usize;
            let h = ChunkHeader::of(addr);
            // `mine` is 0 without an owner, and so is the header of a wild pointer below the
            // first chunk: only a real owned chunk skips the check.
            if mine != 0 && h as usize == mine {
                // The owner's blocks go into its local bitmap with plain stores, and no grouping
                // (which only saves atomics): the run of them that starts here at once.
                // SAFETY: the caller owns the chunk, an active chunk of this class.
                rest = unsafe { local.gather(&*h, class, rest) };
                continue;
            }
            rest = tail;
            if checked[0] != h as usize {
                if !checked.contains(&(h as usize)) {
                    self.check_chunk(class, h, addr);
                }
                checked.rotate_right(1);
                checked[0] = h as usize;
            }
            // SAFETY: `check_chunk` proved (or, without a registry, the caller promises) that
            // `h` is a live slab chunk of this class; a slab chunk's header is never unmapped.
            let chunk = unsafe { &*h };
            let Some(slot) = chunk.slot_of(class, addr) else {
                bad_free("free", addr, "not the start of a block of its class");
            };
            let (word, bit) = (slot / 64, 1u64 << (slot % 64));
            if !groups.add(h as usize | word, bit) {
                bad_free("free", addr, "double free (block returned twice)");
            }
            if groups.is_full() {
                self.release_groups(class, &mut groups, mine, now);
                // Those releases may have retired a checked chunk (its last blocks came back),
                // so a block of it later in this flush, a second copy of one just released, is
                // checked again, and found freed into an empty chunk.
                checked = [usize::MAX; 4];
            }
        }
        self.release_groups(class, &mut groups, mine, now);
        if mine != 0 {
            // SAFETY: as in the loop; the run is empty unless the owner's chunk had blocks.
            unsafe { local.commit(&*(mine as *const ChunkHeader), class) };
        }
        if let Some(c) = cursor {
            if c.local == 0 {
                (c.lo, c.hi) = (local.lo, local.hi);
            } else {
                c.lo = c.lo.min(local.lo);
                c.hi = c.hi.max(local.hi);
            }
            c.local += local.blocks;
            if local.blocks != 0 {
                // SAFETY: the owned chunk's header, valid for the pool's life.
                unsafe { &*c.chunk }.set_released_at(now);
            }
        }
        if let Some(o) = owner {
            o.returned += (blocks.len() * CLASSES[class].size as usize) as isize;
            if o.returned >= PRESSURE_STEP as isize {
                o.returned = 0;
                // A recheck already due stays due: the heap's next allocation runs it (the flushes
                // of a heap that sheds its blocks just before must not put it off).
                o.recheck_at = if !self.pressure_check(o) {
                    0
                } else if o.recheck_due(now) {
                    o.recheck_at
                } else {
                    (now + POLICY.purge_delay_ms().max(0) as u64).max(1)
                };
            }
        }
    }

    /// Releases every gathered word (one atomic each; blocks of `mine`, the owner's chunk, are
    /// never gathered), then lowers each chunk's count once.
    fn release_groups(&self, class: usize, groups: &mut WordGroups, mine: usize, now: u64) {
        let mut counts: [(usize, usize); 4] = [(0, 0); 4];
        for (key, mask) in groups.drain() {
            let h = key & !(CHUNK_SIZE - 1);
            let word = key & (CHUNK_SIZE - 1);
            debug_assert_ne!(h, mine, "the owner's blocks are not grouped");
            let n = self.release_word(class, h as *mut ChunkHeader, word, mask);
            match counts.iter_mut().find(|c| c.0 == h || c.1 == 0) {
                Some(c) => *c = (h, c.1 + n),
                None => {
                    let (old, m) = counts[3];
                    self.finish_chunk(class, old as *mut ChunkHeader, m, now);
                    counts.rotate_right(1);
                    counts[0] = (h, n);
                }
            }
        }
        for (h, n) in counts {
            self.finish_chunk(class, h as *mut ChunkHeader, n, now);
        }
    }

    /// Checks, before touching it, that `h` is a slab chunk of this pool holding `class`; a
    /// block that says otherwise was not allocated here, or was freed twice.
    #[inline]
    fn check_chunk(&self, class: usize, h: *mut ChunkHeader, addr: usize) {
        if !self.registry.is_slab(addr, h as usize) {
            bad_free("free", addr, "pointer not allocated by fam-alloc");
        }
        // SAFETY: as in `flush`.
        let chunk = unsafe { &*h };
        debug_assert!(chunk.has_magic(), "flushed block outside a slab chunk");
        // A chunk only leaves ACTIVE once every block is back, so a block freed into a chunk that
        // is not (or no longer) of its class was freed twice.
        let tag = chunk.tag();
        if tag_state(tag) != STATE_ACTIVE || tag_class(tag) != class {
            bad_free("free", addr, "double free (the block's chunk is empty)");
        }
    }

    /// Releases `mask` of shared bitmap word `word`; returns how many blocks that gave back.
    #[inline]
    fn release_word(&self, class: usize, h: *mut ChunkHeader, word: usize, mask: u64) -> usize {
        // SAFETY: `h` passed `check_chunk`.
        let chunk = unsafe { &*h };
        match chunk.release(class, word, mask) {
            Ok(()) => mask.count_ones() as usize,
            Err(ReleaseError::NotClaimed { mask: bad, .. }) => {
                report_bad_bit(class, h as usize, word, bad)
            }
            Err(ReleaseError::OutOfRange { slot }) => {
                bad_free("free", chunk.base() + slot, "slot out of range")
            }
        }
    }

    /// `n` blocks of chunk `h`, which the caller does not own, came back to its shared bitmap.
    fn finish_chunk(&self, class: usize, h: *mut ChunkHeader, n: usize, now: u64) {
        if n == 0 {
            return;
        }
        // SAFETY: `h` passed `check_chunk`.
        let chunk = unsafe { &*h };
        // Before the count falls: a chunk this makes empty is retired with its time set.
        chunk.set_released_at(now);
        let slots = CLASSES[class].slots as usize;
        if chunk
            .membership()
            .released(n, slots, &self.bit(class, chunk))
        {
            self.retire(class, chunk);
        }
    }

    /// Moves a chunk whose blocks all came back, held in state RETIRING, to the empty pool.
    fn retire(&self, class: usize, chunk: &ChunkHeader) {
        let ok = chunk.slots(class).try_claim_all();
        debug_assert!(ok, "a retired chunk has no block out");
        chunk.deactivate();
        self.registry.retired(chunk.base());
        chunk.membership().emptied();
        self.forget_purged(chunk);
        // Relaxed: a statistic.
        self.active.fetch_sub(1, Ordering::Relaxed);
        let now = now_ms();
        chunk.set_emptied_at(now);
        self.committed.insert(class, chunk.number());
        // A negative delay: never old, only the excess goes.
        let delay = u64::try_from(POLICY.purge_delay_ms()).unwrap_or(u64::MAX);
        self.purge_empty(now, Some(delay), POLICY.retain_empty());
    }

    /// An EMPTY chunk held exclusively, for `class`: from the empty pool, or fresh from the
    /// source. A committed chunk that served `class` last comes first, then a decommitted one,
    /// and only then a committed chunk of another class: its new blocks lie across the old
    /// ones' pages, so the new incarnation touches pages the old one did not while the old
    /// one's stay resident (see [`ClassSets`]).
    fn take_empty(&self, class: usize) -> Option<*mut ChunkHeader> {
        let len = self.dir.len();
        if let Some(i) = self.committed.pop(class, len) {
            return Some(self.dir.get(i));
        }
        if let Some(i) = self.decommitted.pop(len) {
            let h = self.dir.get(i);
            // SAFETY: set members are formatted chunks, valid for the pool's life. Its pages come
            // back as the new incarnation touches them.
            unsafe { &*h }.set_committed(true);
            return Some(h);
        }
        if let Some(i) = self.committed.pop_other(class, len) {
            return Some(self.dir.get(i));
        }
        self.fresh_chunk()
    }

    /// A chunk fresh from the source, registered and formatted EMPTY, held by the caller.
    fn fresh_chunk(&self) -> Option<*mut ChunkHeader> {
        let base = self.source.alloc(1).ok()?;
        let addr = base.as_ptr() as usize;
        let number = match self.dir.add(addr as *mut ChunkHeader) {
            Some(n) if self.registry.register(addr) => n,
            _ => {
                // SAFETY: the chunk came from this source a moment ago and was never published
                // (a directory entry without a set bit is never read).
                let _ = unsafe { self.source.dealloc(base, 1) };
                return None;
            }
        };
        if !self.source.props().contains(SourceProps::ZEROED) {
            // SAFETY: the chunk is ours and unpublished; the local bitmap lies inside it.
            unsafe { ChunkHeader::clear_local(base) };
        }
        // SAFETY: the source handed us a whole chunk nobody else uses, and its local bitmap is
        // clear (zeroed by the source or just above). Nobody reads the header before a set
        // publishes it.
        let h = unsafe { ChunkHeader::format(base, number) };
        // Relaxed: a statistic.
        self.mapped.fetch_add(1, Ordering::Relaxed);
        Some(h)
    }

    /// Decommits the committed empty chunks that waited `delay` milliseconds (with `None`, every
    /// one), and the oldest beyond `keep` of them. Returns how many.
    fn purge_empty(&self, now: u64, delay: Option<u64>, keep: usize) -> usize {
        let len = self.dir.len();
        let mut done = 0;
        self.committed.for_each(len, |class, i| {
            // SAFETY: set members are formatted chunks, valid for the pool's life.
            let chunk = unsafe { &*self.dir.get(i) };
            let old = delay.is_none_or(|d| now.saturating_sub(chunk.emptied_at()) >= d);
            if old && self.committed.remove(class, i) {
                done += usize::from(self.decommit_empty(class, i));
            }
        });
        while self.committed.len() > keep {
            let mut oldest: Option<(u64, usize, usize)> = None;
            self.committed.for_each(len, |class, i| {
                // SAFETY: as above.
                let at = unsafe { &*self.dir.get(i) }.emptied_at();
                if oldest.is_none_or(|(t, _, _)| at < t) {
                    oldest = Some((at, class, i));
                }
            });
            let Some((_, class, i)) = oldest else {
                break;
            };
            // A lost race (someone took the chunk) leaves one fewer: look again.
            if self.committed.remove(class, i) {
                if !self.decommit_empty(class, i) {
                    break;
                }
                done += 1;
            }
        }
        done
    }

    /// Decommits empty chunk `i`, which served `class` last and which the caller took off the
    /// committed sets, and puts it on the decommitted set; or, if the source refuses, back on
    /// its committed set (it is tried again later). True if it was decommitted.
    fn decommit_empty(&self, class: usize, i: usize) -> bool {
        let h = self.dir.get(i);
        // SAFETY: set members are formatted chunks, valid for the pool's life.
        let chunk = unsafe { &*h };
        // SAFETY: the chunk is EMPTY and we hold it (we removed its bit), so no block in it is
        // in use; the range is page aligned and inside the chunk.
        let r = unsafe {
            self.source.decommit(
                NonNull::new_unchecked((h as usize + SLOT_OFFSET) as *mut u8),
                CHUNK_SIZE - SLOT_OFFSET,
            )
        };
        if r.is_ok() {
            chunk.set_committed(false);
            self.decommitted.insert(i);
            true
        } else {
            self.committed.insert(class, i);
            false
        }
    }

    /// Runs a purge pass if one is due: at most one per half purge delay (and 1 ms), none with
    /// a negative delay. `owner` is the calling thread's, whose own chunks are purged too.
    #[inline]
    fn maybe_pass(&self, owner: Option<&mut Owner>, now: u64) {
        // Relaxed: a guess; the CAS below elects the one thread that runs the pass.
        let due = self.next_pass_at.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        self.pass_slow(owner, now, due);
    }

    #[cold]
    fn pass_slow(&self, owner: Option<&mut Owner>, now: u64, due: u64) {
        let delay = POLICY.purge_delay_ms();
        if delay < 0 {
            return;
        }
        let next = now + (delay as u64 / 2).max(1);
        // Relaxed: the pass's own work is ordered by the partial sets' SeqCst RMWs; this only
        // says who runs it.
        if self
            .next_pass_at
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.pass(owner, now, delay as u64);
    }

    /// A purge pass: the free pages of listed chunks (and of `owner`'s) that no block came back
    /// to for `delay` milliseconds, and the empty chunks that waited as long or exceed
    /// [`Policy::retain_empty`](crate::Policy::retain_empty). Returns the pages and chunks given
    /// back.
    fn pass(&self, owner: Option<&mut Owner>, now: u64, delay: u64) -> (usize, usize) {
        (
            self.purge_pages(owner, now, Some(delay)),
            self.purge_empty(now, Some(delay), POLICY.retain_empty()),
        )
    }

    /// The pressure check (see the module comment): when the free memory the pool keeps
    /// committed exceeds [`PRESSURE_FREE`] and half the committed block area, `owner` gives up
    /// its chunks. Returns whether it found the pool over the bound (then a recheck is due).
    #[cold]
    fn pressure_check(&self, owner: &mut Owner) -> bool {
        if POLICY.purge_delay_ms() < 0 {
            return false;
        }
        let free = self.free_committed(owner);
        if free < PRESSURE_FREE || free < self.committed_bytes() / 2 {
            return false;
        }
        // The owner gives its chunks up: what it frees from now on goes to listed chunks, which
        // any pass reaches (a background one too), and what it frees into them no longer waits
        // in local bitmaps that only its own pass can merge.
        for (class, c) in owner.cursors.iter_mut().enumerate() {
            self.leave(c, class, false);
        }
        true
    }

    /// The pass, when `owner`'s last flush asked for it ([`Owner::recheck_wanted`]) and the
    /// purge delay has passed since: what the frees since that check made free goes back,
    /// although no flush follows them. For the heap's allocation slow path.
    ///
    /// Asked after every flush, so the test of whether a recheck is wanted is inlined into the
    /// caller: no call and no clock read unless one is.
    #[inline]
    pub fn pressure_recheck(&self, owner: &mut Owner) {
        if owner.recheck_wanted() {
            self.pressure_recheck_slow(owner);
        }
    }

    #[cold]
    fn pressure_recheck_slow(&self, owner: &mut Owner) {
        let now = now_ms();
        if !owner.recheck_due(now) {
            return;
        }
        owner.recheck_at = 0;
        owner.returned = 0;
        if let Ok(delay) = u64::try_from(POLICY.purge_delay_ms()) {
            // Not gated again: the check that asked for it found the pool over the bound, and
            // what stayed may be only this thread's own chunks (a background purge may have
            // taken the listed ones meanwhile, and it cannot reach these).
            self.pass(Some(owner), now, delay);
        }
    }

    /// About how many bytes of free blocks the pool keeps committed: the free blocks of listed
    /// chunks (less the pages purges gave back), the local blocks of `owner`'s chunks, and the
    /// committed empty chunks. The blocks of other threads' chunks are theirs to count; blocks
    /// never claimed since a chunk was taken are counted as committed although their pages may
    /// not be, so the figure errs on the side of purging.
    fn free_committed(&self, owner: &Owner) -> usize {
        let page = chunk_source::page_size();
        let len = self.dir.len();
        let mut bytes = self.committed.len() * (CHUNK_SIZE - SLOT_OFFSET);
        for (class, set) in self.partial.iter().enumerate() {
            let info = &CLASSES[class];
            set.for_each(len, |i| {
                // SAFETY: set members are formatted chunks, valid for the pool's life.
                let chunk = unsafe { &*self.dir.get(i) };
                let free = (info.slots as usize).saturating_sub(chunk.membership().used());
                bytes += (free * info.size as usize).saturating_sub(chunk.purged_pages() * page);
            });
        }
        for (class, c) in owner.cursors.iter().enumerate() {
            bytes += c.local as usize * CLASSES[class].size as usize;
        }
        bytes
    }

    /// About how many bytes of block area the pool keeps committed: active chunks less the pages
    /// purges gave back, and committed empty chunks.
    fn committed_bytes(&self) -> usize {
        // Relaxed: statistics, for an estimate.
        let active = self.active.load(Ordering::Relaxed) * (CHUNK_SIZE - SLOT_OFFSET);
        let purged = self.purged_pages.load(Ordering::Relaxed) * chunk_source::page_size();
        active.saturating_sub(purged) + self.committed.len() * (CHUNK_SIZE - SLOT_OFFSET)
    }

    /// A purge pass now, for a caller with no heap (a background thread): free pages of listed
    /// chunks quiet for the purge delay, empty chunks that waited for it. Does nothing with a
    /// negative delay. Returns the pages and chunks given back.
    pub fn maintain(&self) -> (usize, usize) {
        let delay = POLICY.purge_delay_ms();
        if delay < 0 {
            return (0, 0);
        }
        self.pass(None, now_ms(), delay as u64)
    }

    /// Gives back the free pages of every listed chunk, and of the chunks `owner` owns, that no
    /// block came back to for `delay` milliseconds and that were not purged since (with no
    /// delay, of every one, at once). Returns how many pages.
    fn purge_pages(&self, owner: Option<&mut Owner>, now: u64, delay: Option<u64>) -> usize {
        let quiet = |chunk: &ChunkHeader| {
            let released = chunk.released_at();
            delay.is_none_or(|d| now.saturating_sub(released) >= d && chunk.purged_at() <= released)
        };
        let mut pages = 0;
        let len = self.dir.len();
        for (class, set) in self.partial.iter().enumerate() {
            set.for_each(len, |i| {
                // SAFETY: set members are formatted chunks, valid for the pool's life.
                let chunk = unsafe { &*self.dir.get(i) };
                if !quiet(chunk) || !set.remove(i) {
                    return;
                }
                // We won the chunk's bit: it is ours, as a refill's owner's, until we give it up.
                chunk.membership().own();
                // SAFETY: we hold the chunk and its local bitmap is clear (nobody owned it).
                pages += unsafe { self.purge_chunk(class, chunk, now) };
                let slots = CLASSES[class].slots as usize;
                if chunk
                    .membership()
                    .give_up(slots, &self.bit(class, chunk), false)
                {
                    self.retire(class, chunk);
                }
            });
        }
        if let Some(o) = owner {
            for (class, c) in o.cursors.iter_mut().enumerate() {
                // SAFETY: an owned chunk's header, valid for the pool's life.
                let Some(chunk) = (unsafe { c.chunk.as_ref() }) else {
                    continue;
                };
                if !quiet(chunk) {
                    continue;
                }
                if c.local != 0 {
                    // The local blocks go back to the shared bitmap first. A block in the local
                    // bitmap is "out" there, and only the free mark a `free` wrote into it tells
                    // the C path's double-free check that it is free, so its page could not go;
                    // in the shared bitmap its bit says so.
                    // SAFETY: the cursor owns the chunk; its local blocks lie in `lo..hi`.
                    let n = unsafe { chunk.merge_local(class, c.lo, c.hi) };
                    debug_assert_eq!(n, c.local as usize);
                    chunk.membership().unclaimed(n);
                    *c = Cursor {
                        chunk: c.chunk,
                        ..Cursor::NONE
                    };
                }
                // SAFETY: the caller's owner owns the chunk.
                pages += unsafe { self.purge_chunk(class, chunk, now) };
            }
        }
        pages
    }

    /// Decommits the runs of free pages of `chunk` (of `class`) and records the purge.
    ///
    /// # Safety
    /// The caller holds the chunk (its owner, or a purger that won its bit), so nothing is
    /// claimed from it meanwhile.
    unsafe fn purge_chunk(&self, class: usize, chunk: &ChunkHeader, now: u64) -> usize {
        let base = chunk.base();
        let mut refused = false;
        // SAFETY: the caller holds the chunk (contract).
        let pages = unsafe {
            chunk.free_page_runs(class, chunk_source::page_size(), |off, len| {
                // SAFETY: no block in these pages is out of the chunk, and none is claimed while
                // we hold it, so nothing in them is in use; the range is page aligned and inside
                // the block area.
                let r = self
                    .source
                    .decommit(NonNull::new_unchecked((base + off) as *mut u8), len);
                refused |= r.is_err();
            })
        };
        // A refused decommit (a source without it) counts nothing and is not retried until
        // blocks come back again.
        let pages = if refused { 0 } else { pages };
        let before = chunk.set_purged(now, pages);
        // Relaxed: a statistic.
        self.purged_pages.fetch_add(pages, Ordering::Relaxed);
        self.purged_pages.fetch_sub(before, Ordering::Relaxed);
        pages
    }

    /// A chunk changes hands or empties: its purged pages are no longer counted as given back
    /// (its next owner faults them in as it claims; an empty chunk is counted whole).
    fn forget_purged(&self, chunk: &ChunkHeader) {
        let n = chunk.take_purged();
        if n != 0 {
            // Relaxed: a statistic.
            self.purged_pages.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Gives back the chunks `owner` owns (if given), retires every listed chunk with no block
    /// out, gives back the free pages of every listed chunk, then decommits every empty chunk,
    /// all at once, whatever the purge delay. Returns how many chunks were decommitted. Chunks
    /// other threads own are theirs until they leave.
    pub fn trim(&self, owner: Option<&mut Owner>) -> usize {
        if let Some(o) = owner {
            for (class, c) in o.cursors.iter_mut().enumerate() {
                self.leave(c, class, false);
            }
        }
        self.retire_listed_empty();
        let now = now_ms();
        self.purge_pages(None, now, None);
        self.purge_empty(now, None, 0)
    }

    /// Takes `n` chunks from the source now and keeps them on the empty pool, so that the
    /// refills that later need them make no call to the source. Returns how many it got (fewer
    /// when the source refuses). For an arena made with a capacity.
    pub fn add_empty(&self, n: usize) -> usize {
        let now = now_ms();
        for got in 0..n {
            let Some(h) = self.fresh_chunk() else {
                return got;
            };
            // SAFETY: a fresh chunk, formatted and unpublished: ours until the insert.
            let chunk = unsafe { &*h };
            chunk.set_emptied_at(now);
            self.committed
                .insert(tag_class(chunk.tag()), chunk.number());
        }
        n
    }

    /// Takes every block back at once: each chunk that holds a class becomes EMPTY, keeping its
    /// pages, and joins the empty pool, whatever blocks were out, cached or owned. For an arena's
    /// `reset`. `&mut self`: no operation is in flight and no block of the pool is used again;
    /// owners of its chunks must [`forget`](Owner::forget) them and heaps drop what they cache.
    ///
    /// Registry entries keep the chunks as slab chunks; a stale pointer freed later finds its
    /// slot free (a fresh incarnation's bitmap) or its chunk EMPTY, and is reported.
    pub fn reset(&mut self) {
        let len = self.dir.len();
        for set in &self.partial {
            while set.pop(len).is_some() {}
        }
        let now = now_ms();
        for i in 0..len {
            if self.committed.contains(i) || self.decommitted.contains(i) {
                continue; // already empty, on the empty pool
            }
            let h = self.dir.get(i);
            // SAFETY: directory entries are formatted chunks, valid for the pool's life; with
            // `&mut self` nothing else reads or writes them now and no reference into them is
            // kept, so the chunk is ours to format again (its local bitmap cleared first, as
            // `format` asks).
            unsafe {
                let base = NonNull::new_unchecked(h.cast::<u8>());
                ChunkHeader::clear_local(base);
                ChunkHeader::format(base, i);
                (*h).set_emptied_at(now);
            }
            self.registry.retired(h as usize);
            // SAFETY: as above.
            self.committed.insert(tag_class(unsafe { &*h }.tag()), i);
        }
        self.active.store(0, Ordering::Relaxed);
        self.purged_pages.store(0, Ordering::Relaxed);
    }

    /// How many chunks are where.
    pub fn chunk_counts(&self) -> ChunkCounts {
        ChunkCounts {
            empty_committed: self.committed.len(),
            empty_decommitted: self.decommitted.len(),
            partial: self.partial.iter().map(ChunkSet::len).sum(),
            purged_pages: self.purged_pages.load(Ordering::Relaxed),
        }
    }

    /// Chunks obtained from the source (slab chunks are never given back while the pool lives).
    pub fn mapped(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Chunks holding a class now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// The chunk source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The registry.
    pub fn registry(&self) -> &R {
        &self.registry
    }

    /// Re-checks every invariant of every chunk; panics at the first broken one. Only for a
    /// quiescent pool (no operation in flight), as tests have between operations. `owners` are
    /// the live owners, whose cursors are checked against their chunks.
    pub fn validate(&self, owners: &[&Owner]) {
        let len = self.dir.len();
        let mut partial = 0;
        for i in 0..len {
            let h = self.dir.get(i);
            assert!(!h.is_null(), "chunk {i} has no directory entry");
            // SAFETY: directory entries are formatted chunks, valid for the pool's life.
            let chunk = unsafe { &*h };
            assert!(chunk.has_magic());
            assert_eq!(chunk.number(), i);
            let tag = chunk.tag();
            let state = chunk.membership().state();
            let empty = self.committed.contains(i) || self.decommitted.contains(i);
            if tag_state(tag) == STATE_EMPTY {
                assert!(empty, "empty chunk {i} is in neither empty set");
                assert!(!(self.committed.contains(i) && self.decommitted.contains(i)));
                assert_eq!(state, crate::membership::EMPTY);
                assert_eq!(chunk.committed(), self.committed.contains(i));
                if chunk.committed() {
                    assert!(
                        self.committed.contains_in(tag_class(tag), i),
                        "empty chunk {i} is not in the committed set of its last class"
                    );
                }
                assert!((0..NUM_CLASSES).all(|c| !self.partial[c].contains(i)));
                continue;
            }
            assert_eq!(tag_state(tag), STATE_ACTIVE);
            assert!(!empty, "active chunk {i} is in an empty set");
            let class = tag_class(tag);
            let info = &CLASSES[class];
            let out = chunk.slots(class).count_claimed();
            assert_eq!(
                chunk.membership().used(),
                out,
                "chunk {i}: count against bitmap"
            );
            for c in 0..NUM_CLASSES {
                assert_eq!(
                    self.partial[c].contains(i),
                    c == class && state == LISTED,
                    "chunk {i} of class {class} in state {state}: partial set of class {c}"
                );
            }
            partial += usize::from(state == LISTED);
            let mut cursors = owners
                .iter()
                .flat_map(|o| o.cursors.iter())
                .filter(|c| c.chunk == h);
            let cursor = cursors.next();
            assert!(cursors.next().is_none(), "chunk {i} has two owners");
            match state {
                OWNED => {
                    let c = cursor.unwrap_or_else(|| panic!("owned chunk {i} has no owner"));
                    assert_eq!(chunk.local_count(class), c.local as usize);
                    for w in 0..info.words as usize {
                        assert!(!chunk.local_outside_shared(w), "local bits not out");
                    }
                }
                LISTED => {
                    assert!(cursor.is_none());
                    // Empty only if its owner left it so (kept for the heaps that follow).
                    assert!(out < info.slots as usize, "listed chunk {i} is full");
                    assert_eq!(chunk.local_count(class), 0);
                }
                crate::membership::FLOATING => {
                    assert!(cursor.is_none());
                    assert_eq!(out, info.slots as usize, "floating chunk {i} is not full");
                    assert_eq!(chunk.local_count(class), 0);
                }
                s => panic!("active chunk {i} in state {s}"),
            }
        }
        assert_eq!(self.chunk_counts().partial, partial);
    }
}

/// The local words a flush wrote into.
struct LocalSpan {
    /// Blocks gathered (committed or in the run).
    blocks: u32,
    lo: u32,
    hi: u32,
    /// The run of blocks not yet in the local bitmap: bits `mask` of local word `word`.
    word: usize,
    mask: u64,
}

impl LocalSpan {
    const NONE: LocalSpan = LocalSpan {
        blocks: 0,
        lo: u32::MAX,
        hi: 0,
        word: 0,
        mask: 0,
    };

    /// Takes the blocks at the start of `blocks` that lie in `chunk`, the owner's, into the
    /// run (committing it whenever the word changes) and returns the blocks after them. Each
    /// block is checked to be a block start; a repeat within a run is a double free, and the
    /// commit checks the rest against the bitmaps.
    ///
    /// Its own function, so that the loop keeps the run and the class's constants in registers:
    /// inside `flush`'s loop, with the gathering of other chunks' blocks around it, the run
    /// lived on the stack and a block cost about 40 instructions; here about 20.
    ///
    /// # Safety
    /// The caller owns `chunk`, an active chunk of `class`.
    #[inline(never)]
    unsafe fn gather<'b>(
        &mut self,
        chunk: &ChunkHeader,
        class: usize,
        blocks: &'b [NonNull<Block>],
    ) -> &'b [NonNull<Block>] {
        let base = chunk as *const ChunkHeader as usize;
        let (mut word, mut mask) = (self.word, self.mask);
        let mut taken = 0;
        for &block in blocks {
            let addr = block.as_ptr() as usize;
            if addr & !(CHUNK_SIZE - 1) != base {
                break;
            }
            let Some(slot) = chunk.slot_of(class, addr) else {
                bad_free("free", addr, "not the start of a block of its class");
            };
            let bit = 1u64 << (slot % 64);
            if slot / 64 != word {
                (self.word, self.mask) = (word, mask);
                // SAFETY: the caller owns the chunk; the run's word came from `slot_of`.
                unsafe { self.commit(chunk, class) };
                (word, mask) = (slot / 64, 0);
            }
            if mask & bit != 0 {
                bad_free("free", addr, "double free (block returned twice)");
            }
            mask |= bit;
            taken += 1;
        }
        (self.word, self.mask) = (word, mask);
        self.blocks += taken as u32;
        &blocks[taken..]
    }

    /// Frees the run into the local bitmap of `chunk` and empties it: one check and one store
    /// for the blocks of one word that came one after another (a bucket's blocks often do).
    /// Reports a block of it that was not out or is local already (a double free).
    ///
    /// # Safety
    /// The caller owns `chunk`, and when the run is not empty its word is one of the chunk's
    /// class's.
    #[inline(always)]
    unsafe fn commit(&mut self, chunk: &ChunkHeader, class: usize) {
        if self.mask == 0 {
            return;
        }
        // SAFETY: per the contract.
        if let Err(bad) = unsafe { chunk.free_local(self.word, self.mask) } {
            report_bad_bit(class, chunk as *const ChunkHeader as usize, self.word, bad);
        }
        self.lo = self.lo.min(self.word as u32);
        self.hi = self.hi.max(self.word as u32 + 1);
        self.mask = 0;
    }
}

/// Reports the first of the blocks `bad` of word `word` of chunk `h`: not out, so freed twice.
#[cold]
fn report_bad_bit(class: usize, h: usize, word: usize, bad: u64) -> ! {
    let slot = word * 64 + bad.trailing_zeros() as usize;
    let addr = h + SLOT_OFFSET + slot * CLASSES[class].size as usize;
    bad_free("free", addr, "double free (block already free)");
}

/// Monotonic time in milliseconds (the coarse clock: a vDSO read, no system call): the clock of
/// the purge delay, for the pool and whoever schedules its passes.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

// Flush reads a block's link through `Block`; blocks are at least one word.
static_assertions::assert_eq_size!(Block, usize);
