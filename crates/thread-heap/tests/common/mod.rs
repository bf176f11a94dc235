//! Test support shared by the unit and integration tests: a model central store that checks
//! every call made to it, a user-side record of the blocks a test holds, and a small PRNG.
//!
//! The model store carves fixed-size blocks out of one buffer per class and remembers, for every
//! block, whether it is out (handed out by `refill` and not yet flushed back). It panics as soon
//! as a heap breaks the store contract: a flush of a block that is not out, of a block of another
//! class or of an address that is not a block, a block flushed twice, a refill
//! request of 0 blocks. While a block is in the store every word of it holds `FREE_PATTERN`, and
//! `refill` checks the pattern before handing the block out again, so a heap that writes to a
//! block after giving it back is caught too.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::ptr::{self, NonNull};
use std::sync::{Mutex, MutexGuard};

use thread_heap::{Block, CentralStore, ThreadHeap};

/// The heap the tests use: room for 1024 cached blocks over all classes.
pub type Heap<const N: usize> = ThreadHeap<N, 1024>;

/// What every word of a block in the store holds.
pub const FREE_PATTERN: u64 = 0xF4EE_F4EE_F4EE_F4EE;

/// Counters of one class, as a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Blocks handed out and not yet flushed back.
    pub out: usize,
    /// Largest `out` seen since the start (or the last `reset_peak`).
    pub peak_out: usize,
    /// Blocks in the store.
    pub free: usize,
    /// `refill` calls (failed ones included).
    pub refills: usize,
    /// `refill` calls that returned `None`.
    pub failed_refills: usize,
    /// `max` of the last `refill` call.
    pub last_refill_max: usize,
    /// `flush` calls.
    pub flushes: usize,
    /// Blocks received through `flush`.
    pub flushed_blocks: usize,
    /// Most blocks received in one `flush`.
    pub max_flush_len: usize,
}

struct ClassState {
    /// Words per block.
    block_words: usize,
    /// First word of the class in the buffer.
    start: usize,
    /// Number of blocks.
    count: usize,
    /// Indices of the free blocks; `refill` takes from the end.
    free: Vec<usize>,
    /// `out[i]`: block `i` is handed out.
    out: Vec<bool>,
    stats: ClassStats,
    /// Block indices of the last flush, in the order given.
    last_flush: Vec<usize>,
    /// Block indices of the last refill, in the order given.
    last_refill: Vec<usize>,
}

struct State {
    classes: Vec<ClassState>,
    /// Every `refill` fails while set.
    fail: bool,
    /// Most blocks one `refill` returns, whatever `max` asks.
    refill_limit: usize,
    /// What `divert` answers, and how often it was asked.
    divert: bool,
    divert_asks: usize,
    /// What `shed` answers.
    shed: bool,
}

/// A `Mutex`-protected pool of fixed-size blocks, per class, that checks its callers.
pub struct ModelStore {
    /// The buffer every block lies in, owned (from a leaked `Box<[u64]>`); only accessed through
    /// raw pointers derived from this one.
    base: *mut u64,
    /// Length of the buffer in words.
    words: usize,
    state: Mutex<State>,
}

// SAFETY: the buffer is plain memory; a block is written either by the store (under the mutex,
// while the block is free) or by whoever the store handed it to, and every hand-over goes through
// the mutex or a channel, which order the accesses. The state itself is behind the mutex.
unsafe impl Sync for ModelStore {}
// SAFETY: see `Sync`; the buffer pointer is owned and not tied to a thread.
unsafe impl Send for ModelStore {}

impl ModelStore {
    /// A store with, for class `c`, `classes[c].1` blocks of `classes[c].0` words each.
    pub fn new(classes: &[(usize, usize)]) -> Self {
        let words: usize = classes.iter().map(|&(w, n)| w * n).sum();
        let buffer = vec![FREE_PATTERN; words.max(1)].into_boxed_slice();
        let base = Box::into_raw(buffer).cast::<u64>();
        let mut start = 0;
        let classes = classes
            .iter()
            .map(|&(block_words, count)| {
                assert!(block_words >= 1, "a block holds at least its link");
                let class = ClassState {
                    block_words,
                    start,
                    count,
                    free: (0..count).rev().collect(),
                    out: vec![false; count],
                    stats: ClassStats {
                        free: count,
                        ..ClassStats::default()
                    },
                    last_flush: Vec::new(),
                    last_refill: Vec::new(),
                };
                start += block_words * count;
                class
            })
            .collect();
        Self {
            base,
            words: words.max(1),
            state: Mutex::new(State {
                classes,
                fail: false,
                refill_limit: usize::MAX,
                divert: false,
                divert_asks: 0,
                shed: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("model store poisoned")
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.lock().classes.len()
    }

    /// Block size of `class` in bytes.
    pub fn block_bytes(&self, class: usize) -> usize {
        self.lock().classes[class].block_words * 8
    }

    /// Block size of `class` in words.
    pub fn block_words(&self, class: usize) -> usize {
        self.lock().classes[class].block_words
    }

    /// Number of blocks of `class`.
    pub fn total(&self, class: usize) -> usize {
        self.lock().classes[class].count
    }

    /// Counters of `class`.
    pub fn stats(&self, class: usize) -> ClassStats {
        self.lock().classes[class].stats
    }

    /// Sum of `out` over all classes.
    pub fn out_total(&self) -> usize {
        self.lock().classes.iter().map(|c| c.stats.out).sum()
    }

    /// Makes every `refill` fail (or succeed again).
    pub fn set_fail(&self, fail: bool) {
        self.lock().fail = fail;
    }

    /// Makes `divert` answer `on` from now on.
    pub fn set_divert(&self, on: bool) {
        self.lock().divert = on;
    }

    /// Makes `shed` answer `on` from now on.
    pub fn set_shed(&self, on: bool) {
        self.lock().shed = on;
    }

    /// How often a heap asked `divert`.
    pub fn divert_asks(&self) -> usize {
        self.lock().divert_asks
    }

    /// Makes every `refill` return at most `limit` blocks.
    pub fn set_refill_limit(&self, limit: usize) {
        self.lock().refill_limit = limit;
    }

    /// Forgets the peaks: `peak_out = out` for every class.
    pub fn reset_peak(&self) {
        for class in &mut self.lock().classes {
            class.stats.peak_out = class.stats.out;
        }
    }

    /// The blocks of the last flush of `class`, in the order given.
    pub fn last_flush(&self, class: usize) -> Vec<NonNull<u8>> {
        let state = self.lock();
        let c = &state.classes[class];
        c.last_flush.iter().map(|&i| self.block_at(c, i)).collect()
    }

    /// The blocks of the last refill of `class`, in the order given.
    pub fn last_refill(&self, class: usize) -> Vec<NonNull<u8>> {
        let state = self.lock();
        let c = &state.classes[class];
        c.last_refill.iter().map(|&i| self.block_at(c, i)).collect()
    }

    /// Whether `ptr` is a block of `class` that is currently handed out.
    pub fn is_out(&self, class: usize, ptr: NonNull<u8>) -> bool {
        let state = self.lock();
        match self.locate(&state, ptr) {
            Some((c, i)) => c == class && state.classes[c].out[i],
            None => false,
        }
    }

    /// Panics unless every block of every class is back in the store, untouched since.
    pub fn assert_all_home(&self) {
        let state = self.lock();
        for (class, c) in state.classes.iter().enumerate() {
            assert_eq!(c.stats.out, 0, "class {class}: blocks still out");
            assert_eq!(c.free.len(), c.count, "class {class}: blocks missing");
            assert!(
                c.out.iter().all(|&o| !o),
                "class {class}: a block is marked out"
            );
            let mut seen = vec![false; c.count];
            for &i in &c.free {
                assert!(!seen[i], "class {class}: block {i} twice in the free list");
                seen[i] = true;
                self.assert_pattern(c, i);
            }
        }
    }

    fn block_at(&self, c: &ClassState, index: usize) -> NonNull<u8> {
        assert!(index < c.count);
        // SAFETY: the block lies inside the buffer (index < count), so the offset stays in it.
        let p = unsafe { self.base.add(c.start + index * c.block_words) };
        NonNull::new(p.cast()).expect("buffer pointer is not null")
    }

    /// Class and index of the block starting at `ptr`, or `None` if `ptr` is not a block start.
    fn locate(&self, state: &State, ptr: NonNull<u8>) -> Option<(usize, usize)> {
        let addr = ptr.as_ptr().addr();
        let base = self.base.addr();
        if addr < base || addr >= base + self.words * 8 || !(addr - base).is_multiple_of(8) {
            return None;
        }
        let word = (addr - base) / 8;
        for (class, c) in state.classes.iter().enumerate() {
            if word >= c.start && word < c.start + c.count * c.block_words {
                let off = word - c.start;
                return off
                    .is_multiple_of(c.block_words)
                    .then_some((class, off / c.block_words));
            }
        }
        None
    }

    fn assert_pattern(&self, c: &ClassState, index: usize) {
        let p = self.block_at(c, index).as_ptr().cast::<u64>();
        for w in 0..c.block_words {
            // SAFETY: the block is free, so only the store (holding the lock) accesses it, and
            // the word lies inside it.
            let v = unsafe { p.add(w).read() };
            assert_eq!(v, FREE_PATTERN, "free block {index} written at word {w}");
        }
    }
}

impl Drop for ModelStore {
    fn drop(&mut self) {
        // SAFETY: `base` and `words` describe the boxed slice leaked in `new`, freed only here.
        drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(self.base, self.words)) });
    }
}

// SAFETY: `refill` hands out only blocks taken from the free list, marks them out and asserts
// they were not out; each block is `block_words * 8 >= 8` bytes, 8-aligned (the buffer is a
// `[u64]`), inside the buffer the store owns, and at most `out.len()` of them are written.
unsafe impl CentralStore for ModelStore {
    fn refill(&self, class: usize, out: &mut [*mut Block]) -> usize {
        let max = out.len();
        assert!(max >= 1, "refill of 0 blocks");
        let mut state = self.lock();
        let (fail, limit) = (state.fail, state.refill_limit);
        let c = &mut state.classes[class];
        c.stats.refills += 1;
        c.stats.last_refill_max = max;
        let n = max.min(limit).min(c.free.len());
        if fail || n == 0 {
            c.stats.failed_refills += 1;
            return 0;
        }
        let taken = c.free.split_off(c.free.len() - n);
        for (slot, &i) in out.iter_mut().zip(&taken) {
            assert!(!c.out[i], "block {i} of class {class} handed out twice");
            self.assert_pattern(c, i);
            c.out[i] = true;
            *slot = self.block_at(c, i).cast().as_ptr();
        }
        c.stats.out += n;
        c.stats.free -= n;
        c.stats.peak_out = c.stats.peak_out.max(c.stats.out);
        c.last_refill = taken;
        n
    }

    unsafe fn flush(&self, class: usize, blocks: &[NonNull<Block>]) {
        assert!(!blocks.is_empty(), "flush of no blocks");
        let mut state = self.lock();
        assert!(
            class < state.classes.len(),
            "flush of class {class} out of range"
        );
        let mut indices = Vec::with_capacity(blocks.len());
        for &node in blocks {
            let (c, i) = self
                .locate(&state, node.cast())
                .unwrap_or_else(|| panic!("flushed {node:p} is not a block"));
            assert_eq!(c, class, "block of class {c} flushed as class {class}");
            let cs = &mut state.classes[class];
            assert!(cs.out[i], "flushed block {i} of class {class} was not out");
            cs.out[i] = false;
            indices.push(i);
            let p = node.as_ptr();
            let words = cs.block_words;
            for w in 0..words {
                // SAFETY: the block is back in the store and the word
                // lies inside it.
                unsafe { p.cast::<u64>().add(w).write(FREE_PATTERN) };
            }
        }
        let cs = &mut state.classes[class];
        cs.free.extend(indices.iter().copied());
        cs.stats.out -= blocks.len();
        cs.stats.free += blocks.len();
        cs.stats.flushes += 1;
        cs.stats.flushed_blocks += blocks.len();
        cs.stats.max_flush_len = cs.stats.max_flush_len.max(blocks.len());
        cs.last_flush = indices;
    }

    fn divert(&self) -> bool {
        let mut state = self.lock();
        state.divert_asks += 1;
        state.divert
    }

    fn shed(&self) -> bool {
        self.lock().shed
    }
}

/// A block a test holds, with the tag written into every word of it.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    /// Start of the block.
    pub ptr: NonNull<u8>,
    /// Its class.
    pub class: usize,
    /// The value of every word.
    pub tag: u64,
}

// SAFETY: a held block is plain memory owned by whoever holds the record.
unsafe impl Send for Held {}

impl Held {
    /// Records a freshly allocated block and fills it with `tag`.
    pub fn new(store: &ModelStore, ptr: NonNull<u8>, class: usize, tag: u64) -> Self {
        assert!(
            store.is_out(class, ptr),
            "the heap handed out {ptr:p}, which the store has not"
        );
        let held = Self { ptr, class, tag };
        held.write(store.block_words(class));
        held
    }

    fn write(&self, words: usize) {
        for w in 0..words {
            // SAFETY: the block is ours (just allocated) and the word lies inside it.
            unsafe { self.ptr.as_ptr().cast::<u64>().add(w).write(self.tag) };
        }
    }

    /// Panics unless every word still holds the tag (nobody else wrote into the block).
    pub fn check(&self, store: &ModelStore) {
        for w in 0..store.block_words(self.class) {
            // SAFETY: the block is ours and the word lies inside it.
            let v = unsafe { self.ptr.as_ptr().cast::<u64>().add(w).read() };
            assert_eq!(
                v, self.tag,
                "held block {:p} overwritten at word {w}",
                self.ptr
            );
        }
    }
}

/// The blocks a test holds, checked for duplicates.
#[derive(Default)]
pub struct HeldSet {
    blocks: Vec<Held>,
    index: HashMap<usize, usize>,
}

impl HeldSet {
    /// Adds a block; panics if it is held already (the heap handed it out twice).
    pub fn insert(&mut self, held: Held) {
        let addr = held.ptr.as_ptr().addr();
        let prev = self.index.insert(addr, self.blocks.len());
        assert!(prev.is_none(), "block {:p} handed out while held", held.ptr);
        self.blocks.push(held);
    }

    /// Removes and returns the block at position `i` (any order).
    pub fn take(&mut self, i: usize) -> Held {
        let held = self.blocks.swap_remove(i);
        self.index.remove(&held.ptr.as_ptr().addr());
        if let Some(moved) = self.blocks.get(i) {
            self.index.insert(moved.ptr.as_ptr().addr(), i);
        }
        held
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Number of blocks of `class` held.
    pub fn count(&self, class: usize) -> usize {
        self.blocks.iter().filter(|h| h.class == class).count()
    }
}

/// `full` normally, `miri` under Miri (which runs far slower).
pub const fn scaled(full: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        full
    }
}

/// xorshift64*: a small deterministic PRNG.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}
