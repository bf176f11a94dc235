//! The central slab pool: per class, the chunks that hold blocks of that class, and one pool of
//! empty chunks shared by all classes.
//!
//! Refill (a bucket ran dry) claims a batch of one bitmap word from the class's `current` chunk
//! with no lock. Only when that chunk is exhausted does the class lock come in: it guards the
//! class's list of partial chunks, which refill walks to find another chunk with free blocks
//! (unlinking the full ones it passes), or extends with a chunk from the empty pool or the OS.
//!
//! Flush (a bucket overflowed, or a thread exited) walks the chain it is given, gathers the blocks
//! by chunk and bitmap word in a small table, and releases each word's mask with one atomic. A
//! chunk that was unlinked as full is linked again by the flush that frees a block in it; a chunk
//! whose last block comes back is retired to the empty pool. The unlink/relink race is settled
//! by sequentially consistent operations on the bitmap and on `listed`: a refill that unlinks a
//! chunk re-reads its bitmap after clearing `listed`, and a flush reads `listed` after releasing,
//! so at least one of them sees the other.
//!
//! Empty chunks keep their pages for a while (a program that frees and allocates again should not
//! pay for page faults), then are decommitted: when more than [`MAX_COMMITTED_EMPTY`] wait, or
//! when one has waited longer than [`DECOMMIT_DELAY_NS`] at the next pool operation. [`SlabPool::trim`]
//! decommits them all at once. Chunks are never unmapped, which is what lets readers hold stale
//! chunk pointers safely (see [`crate::chunk`]).

use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use chunk_source::{ChunkSource, CHUNK_SIZE};
use slab_bitmap::ReleaseError;
use thread_heap::{Block, Chain};

use crate::chunk::{tag_class, tag_state, ChunkHeader, STATE_ACTIVE};
use crate::class::{CLASSES, NUM_CLASSES, SLOT_OFFSET};
use crate::lock::SpinLock;
use crate::registry::{Kind, Registry};
use crate::report;

/// Empty chunks kept with their pages before the oldest is decommitted (64 MiB): enough that a
/// program which frees a large batch and allocates it again does not fault every page back in.
pub(crate) const MAX_COMMITTED_EMPTY: usize = 16;
/// How long an empty chunk keeps its pages, at most, when the pool is in use.
pub(crate) const DECOMMIT_DELAY_NS: u64 = 250_000_000;

/// A doubly linked list of chunk headers, owned by the lock around it.
struct ChunkList {
    head: *mut ChunkHeader,
    tail: *mut ChunkHeader,
    len: usize,
}

// SAFETY: the list only holds pointers to chunks, which live for the process; it is only reached
// through the SpinLock around it.
unsafe impl Send for ChunkList {}

// SAFETY: the registry pointer is only read (the registry is itself thread-safe); everything else
// in the pool is atomics and spin-locked lists.
unsafe impl<S: ChunkSource + Send> Send for SlabPool<S> {}
// SAFETY: as above; `S: ChunkSource` is `Sync` by the trait's bound.
unsafe impl<S: ChunkSource> Sync for SlabPool<S> {}

impl ChunkList {
    const fn new() -> Self {
        Self {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// # Safety
    /// `h` is a live chunk header on no list, and the caller holds this list's lock.
    unsafe fn push_front(&mut self, h: *mut ChunkHeader) {
        // SAFETY: per the contract, `h` and the list's nodes are live and owned by the lock.
        unsafe {
            (*h).prev = ptr::null_mut();
            (*h).next = self.head;
            if self.head.is_null() {
                self.tail = h;
            } else {
                (*self.head).prev = h;
            }
        }
        self.head = h;
        self.len += 1;
    }

    /// # Safety
    /// `h` is on this list, and the caller holds this list's lock.
    unsafe fn unlink(&mut self, h: *mut ChunkHeader) {
        // SAFETY: per the contract, `h` and its neighbours are nodes of this list.
        unsafe {
            let (p, n) = ((*h).prev, (*h).next);
            if p.is_null() {
                self.head = n;
            } else {
                (*p).next = n;
            }
            if n.is_null() {
                self.tail = p;
            } else {
                (*n).prev = p;
            }
            (*h).prev = ptr::null_mut();
            (*h).next = ptr::null_mut();
        }
        self.len -= 1;
    }

    fn pop_back(&mut self) -> Option<*mut ChunkHeader> {
        let t = self.tail;
        if t.is_null() {
            return None;
        }
        // SAFETY: `t` is this list's tail, and `&mut self` means the lock is held.
        unsafe { self.unlink(t) };
        Some(t)
    }

    fn pop_front(&mut self) -> Option<*mut ChunkHeader> {
        let h = self.head;
        if h.is_null() {
            return None;
        }
        // SAFETY: `h` is this list's head, and `&mut self` means the lock is held.
        unsafe { self.unlink(h) };
        Some(h)
    }
}

/// One class's share of the pool.
struct ClassPool {
    /// The chunk refills try first, without a lock. May be stale or null.
    current: AtomicPtr<ChunkHeader>,
    /// Chunks of this class that may have free blocks.
    partial: SpinLock<ChunkList>,
}

/// Empty chunks: committed ones newest first, then decommitted ones.
struct EmptyPool {
    committed: ChunkList,
    decommitted: ChunkList,
}

/// The central store behind every thread heap: slab chunks per class over a chunk source.
pub struct SlabPool<S: ChunkSource> {
    source: S,
    /// Where the pool records its chunks; null when nobody needs to find them (a shared arena,
    /// whose region is released whole).
    registry: *const Registry,
    classes: [ClassPool; NUM_CLASSES],
    empty: SpinLock<EmptyPool>,
    /// Chunks obtained from the source, and those holding a class now.
    mapped: AtomicUsize,
    active: AtomicUsize,
}

/// Counts of the chunks a pool holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    /// Empty chunks whose pages are still committed.
    pub empty_committed: usize,
    /// Empty chunks whose block pages were given back to the OS.
    pub empty_decommitted: usize,
    /// Chunks on the partial lists of their classes.
    pub partial: usize,
}

impl<S: ChunkSource> SlabPool<S> {
    /// A pool over `source`, registering its chunks in `registry`.
    pub(crate) const fn new(source: S, registry: &'static Registry) -> Self {
        // SAFETY: a 'static registry outlives the pool.
        unsafe { Self::with_registry(source, registry) }
    }

    /// A pool over `source`, registering its chunks in `registry` unless it is null.
    ///
    /// # Safety
    /// A non-null `registry` stays valid for as long as the pool is used.
    pub(crate) const unsafe fn with_registry(source: S, registry: *const Registry) -> Self {
        Self {
            source,
            registry,
            classes: [const {
                ClassPool {
                    current: AtomicPtr::new(ptr::null_mut()),
                    partial: SpinLock::new(ChunkList::new()),
                }
            }; NUM_CLASSES],
            mapped: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            empty: SpinLock::new(EmptyPool {
                committed: ChunkList::new(),
                decommitted: ChunkList::new(),
            }),
        }
    }

    /// Up to `max` free blocks of `class`, linked, or `None` when memory is exhausted.
    #[inline]
    pub(crate) fn refill(&self, class: usize, max: usize) -> Option<Chain> {
        let max = max.clamp(1, 64) as u32;
        let cur = self.classes[class].current.load(Ordering::Acquire);
        if !cur.is_null() {
            // SAFETY: chunk pointers stay valid forever (chunks are never unmapped).
            if let Some(chain) = unsafe { &*cur }.claim(class, max) {
                return Some(chain);
            }
        }
        self.refill_slow(class, max)
    }

    #[cold]
    fn refill_slow(&self, class: usize, max: u32) -> Option<Chain> {
        let cp = &self.classes[class];
        let mut list = cp.partial.lock();
        let cur = cp.current.load(Ordering::Acquire);
        if !cur.is_null() {
            // SAFETY: chunk pointers stay valid forever.
            if let Some(chain) = unsafe { &*cur }.claim(class, max) {
                return Some(chain);
            }
        }
        while !list.head.is_null() {
            let h = list.head;
            // SAFETY: `h` is on the list we hold the lock of, and chunks stay valid forever.
            let chunk = unsafe { &*h };
            if let Some(chain) = chunk.claim(class, max) {
                cp.current.store(h, Ordering::Release);
                return Some(chain);
            }
            // SAFETY: `h` is on `list`, whose lock we hold.
            unsafe { list.unlink(h) };
            chunk.listed.store(false, Ordering::SeqCst);
            // A flush may have freed blocks before it could see `listed` cleared: look again.
            // Flushes lower `used` with a SeqCst RMW *after* releasing the bits and then read
            // `listed` (SeqCst); in the single order of SeqCst operations either that read sees
            // our store (and the flush relinks the chunk) or this load sees the lower count.
            if chunk.used.load(Ordering::SeqCst) < CLASSES[class].slots as usize {
                if let Some(chain) = chunk.claim(class, max) {
                    chunk.listed.store(true, Ordering::SeqCst);
                    // SAFETY: `h` was just unlinked and we hold the lock.
                    unsafe { list.push_front(h) };
                    cp.current.store(h, Ordering::Release);
                    return Some(chain);
                }
            }
        }
        let h = self.take_empty()?;
        // SAFETY: `take_empty` hands out an EMPTY chunk that no thread holds bits of.
        unsafe { (*h).activate(class) };
        self.active.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above, the chunk is ours until published.
        let chunk = unsafe { &*h };
        chunk.listed.store(true, Ordering::SeqCst);
        // SAFETY: the chunk is on no list and we hold the class lock.
        unsafe { list.push_front(h) };
        let chain = chunk.claim(class, max);
        cp.current.store(h, Ordering::Release);
        debug_assert!(chain.is_some(), "a fresh chunk has free blocks");
        chain
    }

    /// Gives the blocks of `chain` (all of class `class`) back to their chunks.
    ///
    /// The blocks are gathered by bitmap word in a small table and each word's mask released
    /// with one atomic; the released counts are gathered by chunk, so each chunk's `used` is
    /// lowered once per flush (and the chunk relinked or retired then).
    ///
    /// # Safety
    /// Every block of the chain is a block of class `class` handed out by this pool and not in use.
    pub(crate) unsafe fn flush(&self, class: usize, chain: Chain) {
        let mut groups = WordGroups::new();
        let mut checked: [usize; 4] = [0; 4];
        let mut node = chain.head.as_ptr();
        for i in 0..chain.len {
            let addr = node as usize;
            if i + 1 < chain.len {
                // SAFETY: the chain has `len` linked blocks; this is not the last one.
                node = unsafe { (*node).next };
            }
            let h = ChunkHeader::of(addr);
            if checked[0] != h as usize {
                if !checked.contains(&(h as usize)) {
                    self.check_chunk(class, h, addr);
                }
                checked.rotate_right(1);
                checked[0] = h as usize;
            }
            // SAFETY: `check_chunk` proved (or, without a registry, the caller promises) that `h`
            // is a live slab chunk of this class, whose header is never unmapped.
            let Some(slot) = unsafe { &*h }.slot_of(class, addr) else {
                report::bad_free("free", addr, "not the start of a block of its class");
            };
            if !groups.add(h as usize | (slot / 64), 1u64 << (slot % 64)) {
                report::bad_free("free", addr, "double free (block returned twice)");
            }
            if groups.is_full() {
                self.release_groups(class, &mut groups);
            }
        }
        self.release_groups(class, &mut groups);
    }

    /// Releases every gathered word (one atomic each), then lowers each chunk's count once.
    fn release_groups(&self, class: usize, groups: &mut WordGroups) {
        let mut counts: [(usize, usize); 4] = [(0, 0); 4];
        for (key, mask) in groups.drain() {
            let h = key & !(CHUNK_SIZE - 1);
            let n = self.release_word(class, h as *mut ChunkHeader, key & (CHUNK_SIZE - 1), mask);
            match counts.iter_mut().find(|c| c.0 == h || c.1 == 0) {
                Some(c) => *c = (h, c.1 + n),
                None => {
                    let (old, m) = counts[3];
                    self.finish_chunk(class, old as *mut ChunkHeader, m);
                    counts.rotate_right(1);
                    counts[0] = (h, n);
                }
            }
        }
        for (h, n) in counts {
            self.finish_chunk(class, h as *mut ChunkHeader, n);
        }
    }

    /// Checks, before touching it, that `h` is a slab chunk of this pool holding `class`; a
    /// block that says otherwise was not allocated here, or was freed twice.
    #[inline]
    fn check_chunk(&self, class: usize, h: *mut ChunkHeader, addr: usize) {
        // The fast free path trusts its caller; this cold path asks the registry first.
        // SAFETY: a non-null registry outlives the pool (constructor contract).
        if let Some(registry) = unsafe { self.registry.as_ref() } {
            match registry.lookup(addr) {
                Some(e) if e.kind == Kind::Slab && e.base == h as usize => {}
                _ => report::bad_free("free", addr, "pointer not allocated by fam-alloc"),
            }
        }
        // SAFETY: as in `flush`.
        let chunk = unsafe { &*h };
        debug_assert!(chunk.has_magic(), "flushed block outside a slab chunk");
        // A chunk only leaves ACTIVE once every block is back, so a block freed into a chunk that
        // is not (or no longer) of its class was freed twice.
        let tag = chunk.tag.load(Ordering::Acquire);
        if tag_state(tag) != STATE_ACTIVE || tag_class(tag) != class {
            report::bad_free("free", addr, "double free (the block's chunk is empty)");
        }
    }

    /// Releases `mask` of bitmap word `word`; returns how many blocks that gave back.
    #[inline]
    fn release_word(&self, class: usize, h: *mut ChunkHeader, word: usize, mask: u64) -> usize {
        // SAFETY: `h` passed `check_chunk`.
        let chunk = unsafe { &*h };
        match chunk.release(class, word, mask) {
            Ok(n) => n as usize,
            Err(ReleaseError::NotClaimed { mask: bad, .. }) => {
                let slot = word * 64 + bad.trailing_zeros() as usize;
                let addr = chunk.base() + SLOT_OFFSET + slot * CLASSES[class].size as usize;
                report::bad_free("free", addr, "double free (block already free)");
            }
            Err(ReleaseError::OutOfRange { slot }) => {
                report::bad_free("free", chunk.base() + slot, "slot out of range");
            }
        }
    }

    /// `n` blocks of chunk `h` came back: lower its count, then retire it if it is now empty, or
    /// relink it if a refill had unlinked it as full.
    fn finish_chunk(&self, class: usize, h: *mut ChunkHeader, n: usize) {
        if n == 0 {
            return;
        }
        // SAFETY: `h` passed `check_chunk`.
        let chunk = unsafe { &*h };
        // SeqCst: pairs with the unlink in `refill_slow` (see there).
        let before = chunk.used.fetch_sub(n, Ordering::SeqCst);
        debug_assert!(before >= n, "more blocks came back than went out");
        if before == n {
            self.retire(class, h, false);
            return;
        }
        if !chunk.listed.load(Ordering::SeqCst) {
            let mut list = self.classes[class].partial.lock();
            let tag = chunk.tag.load(Ordering::Acquire);
            if tag_state(tag) == STATE_ACTIVE
                && tag_class(tag) == class
                && !chunk.listed.load(Ordering::SeqCst)
            {
                chunk.listed.store(true, Ordering::SeqCst);
                // SAFETY: unlisted chunks are on no list; we hold the class lock.
                unsafe { list.push_front(h) };
            }
        }
    }

    /// Moves a chunk whose blocks all came back to the empty pool, if nothing raced it (and,
    /// unless `force`, if it is not its class's current chunk).
    fn retire(&self, class: usize, h: *mut ChunkHeader, force: bool) {
        let cp = &self.classes[class];
        {
            let mut list = cp.partial.lock();
            // SAFETY: chunks stay valid forever.
            let chunk = unsafe { &*h };
            let tag = chunk.tag.load(Ordering::Acquire);
            if tag_state(tag) != STATE_ACTIVE || tag_class(tag) != class {
                return;
            }
            // The chunk refills go to first stays: a class used one block at a time must not
            // retire and reactivate its chunk on every free. `trim` retires it when it is empty.
            if cp.current.load(Ordering::Acquire) == h && !force {
                return;
            }
            if chunk.used.load(Ordering::Acquire) != 0 || !chunk.try_retire(class) {
                // Blocks went out again meanwhile; make sure the chunk can be found.
                if !chunk.listed.load(Ordering::SeqCst) && chunk.tag.load(Ordering::Acquire) == tag
                {
                    chunk.listed.store(true, Ordering::SeqCst);
                    // SAFETY: unlisted chunks are on no list; we hold the class lock.
                    unsafe { list.push_front(h) };
                }
                return;
            }
            if chunk.listed.swap(false, Ordering::SeqCst) {
                // SAFETY: a listed chunk is on this class's list, whose lock we hold.
                unsafe { list.unlink(h) };
            }
            let _ = cp.current.compare_exchange(
                h,
                ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.put_empty(h);
    }

    /// An EMPTY chunk: from the empty pool, or fresh from the source.
    fn take_empty(&self) -> Option<*mut ChunkHeader> {
        {
            let mut empty = self.empty.lock();
            if let Some(h) = empty
                .committed
                .pop_front()
                .or_else(|| empty.decommitted.pop_front())
            {
                return Some(h);
            }
        }
        let base = self.source.alloc(1).ok()?;
        // SAFETY: the source handed us a whole chunk nobody else uses. Its header area reads as
        // zero if the source zeroes; `format` and `activate` write every field and word they use.
        let h = unsafe { ChunkHeader::format(base) };
        // SAFETY: a non-null registry outlives the pool (constructor contract).
        let registry = unsafe { self.registry.as_ref() };
        let addr = base.as_ptr() as usize;
        if registry.is_some_and(|r| !r.insert(addr, 1, Kind::Slab, addr)) {
            // SAFETY: the chunk came from this source a moment ago and was never published.
            let _ = unsafe { self.source.dealloc(base, 1) };
            return None;
        }
        self.mapped.fetch_add(1, Ordering::Relaxed);
        Some(h)
    }

    fn put_empty(&self, h: *mut ChunkHeader) {
        let now = now_ns();
        {
            let mut empty = self.empty.lock();
            // SAFETY: the chunk was just retired; the pool lock now owns its plain fields.
            unsafe {
                (*h).emptied_at = now;
                empty.committed.push_front(h);
            }
        }
        self.purge(now, false);
    }

    /// Decommits every committed empty chunk that waited too long (or, with `all`, every one),
    /// a batch at a time with the lock released around the system calls. Returns how many.
    fn purge(&self, now: u64, all: bool) -> usize {
        let mut total = 0;
        loop {
            let mut victims = [ptr::null_mut(); 8];
            let n = {
                let mut empty = self.empty.lock();
                Self::pick_victims(&mut empty, now, &mut victims, all)
            };
            if n == 0 {
                return total;
            }
            let done = self.decommit_all(&victims[..n]);
            total += done;
            if done == 0 {
                // The source refuses; the chunks went back as committed. Try again later.
                return total;
            }
        }
    }

    /// Takes committed empty chunks that waited too long (or all of them) off the list.
    fn pick_victims(
        empty: &mut EmptyPool,
        now: u64,
        out: &mut [*mut ChunkHeader],
        all: bool,
    ) -> usize {
        let mut n = 0;
        while n < out.len() {
            let tail = empty.committed.tail;
            if tail.is_null() {
                break;
            }
            // SAFETY: `tail` is on the committed list, whose lock the caller holds.
            let age = now.saturating_sub(unsafe { (*tail).emptied_at });
            if !all && empty.committed.len <= MAX_COMMITTED_EMPTY && age < DECOMMIT_DELAY_NS {
                break;
            }
            out[n] = empty.committed.pop_back().expect("tail is non-null");
            n += 1;
        }
        n
    }

    /// Decommits the block area of each chunk (outside the lock), then files them as decommitted.
    /// Returns how many were decommitted; a chunk the source refused stays committed.
    fn decommit_all(&self, victims: &[*mut ChunkHeader]) -> usize {
        let mut done = 0;
        for &h in victims {
            let start = h as usize + SLOT_OFFSET;
            // SAFETY: the chunk is EMPTY and off every list, so no block in it is in use; the range
            // is page aligned and inside the chunk.
            let r = unsafe {
                self.source.decommit(
                    NonNull::new_unchecked(start as *mut u8),
                    CHUNK_SIZE - SLOT_OFFSET,
                )
            };
            // SAFETY: the chunk is off every list; only this thread touches its plain fields.
            unsafe { (*h).committed = r.is_err() };
            done += usize::from(r.is_ok());
        }
        let mut empty = self.empty.lock();
        for &h in victims {
            // SAFETY: the chunk is on no list; we hold the empty pool's lock.
            unsafe {
                if (*h).committed {
                    empty.committed.push_front(h);
                } else {
                    empty.decommitted.push_front(h);
                }
            }
        }
        done
    }

    /// Retires the current chunks that are empty, then decommits every empty chunk now. Returns
    /// how many were decommitted.
    pub(crate) fn trim(&self) -> usize {
        for (class, cp) in self.classes.iter().enumerate() {
            let h = cp.current.load(Ordering::Acquire);
            // SAFETY: chunk pointers stay valid forever.
            if !h.is_null() && unsafe { &*h }.used.load(Ordering::Acquire) == 0 {
                self.retire(class, h, true);
            }
        }
        self.purge(now_ns(), true)
    }

    /// How many chunks are where.
    pub(crate) fn chunk_counts(&self) -> ChunkCounts {
        let (c, d) = {
            let e = self.empty.lock();
            (e.committed.len, e.decommitted.len)
        };
        let partial = self.classes.iter().map(|cp| cp.partial.lock().len).sum();
        ChunkCounts {
            empty_committed: c,
            empty_decommitted: d,
            partial,
        }
    }

    /// Chunks obtained from the source (slab chunks are never given back while the pool lives).
    pub(crate) fn mapped(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Chunks holding a class now.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// The chunk source.
    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    /// Sets where chunks are registered.
    ///
    /// # Safety
    /// As for [`with_registry`](Self::with_registry); the pool has no chunks yet.
    pub(crate) unsafe fn set_registry(&mut self, registry: *const Registry) {
        debug_assert_eq!(self.mapped(), 0);
        self.registry = registry;
    }

    /// Takes every lock of the pool (before `fork()`).
    pub(crate) fn lock_all(&self) {
        for cp in &self.classes {
            cp.partial.raw_lock();
        }
        self.empty.raw_lock();
    }

    /// Releases what [`lock_all`](Self::lock_all) took (after `fork()`, in parent and child).
    ///
    /// # Safety
    /// The calling thread took every lock with `lock_all`.
    pub(crate) unsafe fn unlock_all(&self) {
        // SAFETY: per the contract, this thread holds each of these locks without a guard.
        unsafe {
            self.empty.raw_unlock();
            for cp in self.classes.iter().rev() {
                cp.partial.raw_unlock();
            }
        }
    }
}

/// Monotonic time in nanoseconds (the coarse clock: a vDSO read, no system call).
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Blocks of one flush gathered by bitmap word: an open-addressing table keyed by
/// `chunk base | word index` (a chunk is 4 MiB aligned and has fewer than 2^22 words), so every
/// pair of blocks of the same word within a flush shares one release.
struct WordGroups {
    keys: [usize; GROUP_SLOTS],
    /// A slot's mask is meaningful only while its key is non-zero (written when the key is).
    masks: [MaybeUninit<u64>; GROUP_SLOTS],
    /// Occupied slots, in insertion order; the first `len` are meaningful.
    order: [MaybeUninit<u8>; GROUP_LIMIT],
    len: usize,
}

const GROUP_SLOTS: usize = 64;
/// Entries before the table is drained (keeps probes short).
const GROUP_LIMIT: usize = 48;

impl WordGroups {
    fn new() -> Self {
        Self {
            keys: [0; GROUP_SLOTS],
            masks: [MaybeUninit::uninit(); GROUP_SLOTS],
            order: [MaybeUninit::uninit(); GROUP_LIMIT],
            len: 0,
        }
    }

    /// Adds `bit` to the group of `key`; false if the bit was already there (freed twice).
    #[inline]
    fn add(&mut self, key: usize, bit: u64) -> bool {
        let mut i =
            key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (usize::BITS - GROUP_SLOTS.trailing_zeros());
        loop {
            if self.keys[i] == key {
                // SAFETY: the slot's key is set, so its mask was written with it.
                let mask = unsafe { self.masks[i].assume_init() };
                self.masks[i] = MaybeUninit::new(mask | bit);
                return mask & bit == 0;
            }
            if self.keys[i] == 0 {
                self.keys[i] = key;
                self.masks[i] = MaybeUninit::new(bit);
                self.order[self.len] = MaybeUninit::new(i as u8);
                self.len += 1;
                return true;
            }
            i = (i + 1) % GROUP_SLOTS;
        }
    }

    fn is_full(&self) -> bool {
        self.len == GROUP_LIMIT
    }

    /// Takes every group out, leaving the table empty.
    fn drain(&mut self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let n = core::mem::take(&mut self.len);
        self.order[..n].iter().map(|i| {
            // SAFETY: the first `len` entries of `order` were written by `add`.
            let i = unsafe { i.assume_init() } as usize;
            // SAFETY: slot `i` is occupied, so its mask was written.
            (core::mem::take(&mut self.keys[i]), unsafe {
                self.masks[i].assume_init()
            })
        })
    }
}

static_assertions::const_assert!(GROUP_SLOTS.is_power_of_two() && GROUP_LIMIT < GROUP_SLOTS);
static_assertions::const_assert!(GROUP_SLOTS <= u8::MAX as usize + 1);

// Flush reads a block's link through `Block`; blocks are at least one word.
static_assertions::assert_eq_size!(Block, usize);
