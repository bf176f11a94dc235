//! The pool's directory of chunks and its lock-free sets of chunk numbers.
//!
//! Every chunk a pool formats gets a number, its index in the [`Directory`]. A [`ChunkSet`] is a
//! bitmap over those numbers in which a *set* bit means "this chunk is in the set". That is the
//! opposite polarity of a [`slab_bitmap::SlotSet`] (where a set bit is a claimed slot), chosen so
//! that an all-zero set, which is what a `static` or a fresh mapping holds, is the empty set, and
//! so that a set spans only as many words as the pool has chunks: a search stops at the
//! directory's length instead of visiting the whole capacity.
//!
//! Membership changes are single read-modify-writes of one bit, so there is no ABA problem and no
//! lock: [`insert`](ChunkSet::insert) is a `fetch_or`, [`remove`](ChunkSet::remove) a
//! `fetch_and` whose old value tells the caller whether it was the one that removed the chunk,
//! and [`pop`](ChunkSet::pop) a search followed by such a removal. They are SeqCst because they
//! take part in the membership protocol's total order (see [`crate::membership`]).

use core::ptr;
use core::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::chunk::ChunkHeader;
use crate::class::NUM_CLASSES;

/// Chunks one pool can hold: 128 GiB of slab memory.
pub const MAX_CHUNKS: usize = 1 << 15;
const SET_WORDS: usize = MAX_CHUNKS / 64;

/// A set of chunk numbers below [`MAX_CHUNKS`].
pub(crate) struct ChunkSet {
    words: [AtomicU64; SET_WORDS],
    /// Members, for statistics and estimates. It is changed after the bit, so it lags: a remove
    /// can lower it before the insert of the same member has raised it. Signed, so that such a
    /// moment reads as a small negative number, which [`len`](Self::len) reads as 0, and not as
    /// a wrapped `usize` (a sum of those overflowed, and a pool that read one thought it kept
    /// billions of empty chunks).
    count: AtomicIsize,
}

impl ChunkSet {
    pub(crate) const fn new() -> Self {
        Self {
            words: [const { AtomicU64::new(0) }; SET_WORDS],
            count: AtomicIsize::new(0),
        }
    }

    /// Adds chunk `i`, which the caller holds exclusively and which is not in the set.
    pub(crate) fn insert(&self, i: usize) {
        let bit = 1u64 << (i % 64);
        let old = self.words[i / 64].fetch_or(bit, Ordering::SeqCst);
        debug_assert_eq!(old & bit, 0, "chunk {i} inserted twice");
        // Relaxed: a statistic.
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes chunk `i`; true if this call removed it (the caller now holds it exclusively).
    pub(crate) fn remove(&self, i: usize) -> bool {
        let bit = 1u64 << (i % 64);
        let got = self.words[i / 64].fetch_and(!bit, Ordering::SeqCst) & bit != 0;
        if got {
            // Relaxed: a statistic.
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        got
    }

    /// Removes and returns the lowest-numbered member below `len`, if any. Low numbers first
    /// keeps reuse packed in the chunks formatted first.
    pub(crate) fn pop(&self, len: usize) -> Option<usize> {
        for (w, word) in self.words[..len.div_ceil(64).min(SET_WORDS)]
            .iter()
            .enumerate()
        {
            // Relaxed: a guess; the fetch_and below decides.
            let mut v = word.load(Ordering::Relaxed);
            while v != 0 {
                let bit = 1u64 << v.trailing_zeros();
                let old = word.fetch_and(!bit, Ordering::SeqCst);
                if old & bit != 0 {
                    // Relaxed: a statistic.
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    return Some(w * 64 + bit.trailing_zeros() as usize);
                }
                v = old & !bit;
            }
        }
        None
    }

    /// Whether chunk `i` is in the set now (for checks).
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.words[i / 64].load(Ordering::SeqCst) & (1u64 << (i % 64)) != 0
    }

    /// Calls `f` with every member below `len` (a snapshot per word; members may come and go).
    pub(crate) fn for_each(&self, len: usize, mut f: impl FnMut(usize)) {
        for (w, word) in self.words[..len.div_ceil(64).min(SET_WORDS)]
            .iter()
            .enumerate()
        {
            let mut v = word.load(Ordering::SeqCst);
            while v != 0 {
                f(w * 64 + v.trailing_zeros() as usize);
                v &= v - 1;
            }
        }
    }

    /// Members, approximately (exact when no operation is in flight; never negative).
    pub(crate) fn len(&self) -> usize {
        // Relaxed: a statistic.
        self.count.load(Ordering::Relaxed).max(0) as usize
    }
}

/// One [`ChunkSet`] per class: a chunk is in the set of the class it served last. The empty
/// pool's committed chunks are kept so, because a chunk that serves the same class again has
/// its blocks where they were, so the pages its last incarnation touched are the ones the new
/// one touches first; a chunk taken for another class touches pages the last one did not, and a
/// pool that keeps reusing its empty chunks across classes ends with every page of all of them
/// resident. Each member is in one set only, so the sets' operations are [`ChunkSet`]'s.
pub(crate) struct ClassSets {
    sets: [ChunkSet; NUM_CLASSES],
}

impl ClassSets {
    pub(crate) const fn new() -> Self {
        Self {
            sets: [const { ChunkSet::new() }; NUM_CLASSES],
        }
    }

    /// Adds chunk `i`, which served `class` last, which the caller holds exclusively and which
    /// is in no set here.
    pub(crate) fn insert(&self, class: usize, i: usize) {
        self.sets[class].insert(i);
    }

    /// Removes chunk `i` from the set of `class`; true if this call removed it.
    pub(crate) fn remove(&self, class: usize, i: usize) -> bool {
        self.sets[class].remove(i)
    }

    /// Removes and returns the lowest-numbered member below `len` that served `class` last.
    pub(crate) fn pop(&self, class: usize, len: usize) -> Option<usize> {
        self.sets[class].pop(len)
    }

    /// Removes and returns a member below `len` that served a class other than `class` last:
    /// the lowest-numbered one of the first class after it (in class order, wrapping) that has
    /// any.
    pub(crate) fn pop_other(&self, class: usize, len: usize) -> Option<usize> {
        (1..NUM_CLASSES).find_map(|d| self.sets[(class + d) % NUM_CLASSES].pop(len))
    }

    /// Whether chunk `i` is in the set of `class` now (for checks).
    pub(crate) fn contains_in(&self, class: usize, i: usize) -> bool {
        self.sets[class].contains(i)
    }

    /// Whether chunk `i` is in any of the sets now (for checks).
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.sets.iter().any(|set| set.contains(i))
    }

    /// Calls `f` with the class and number of every member below `len` (a snapshot per word;
    /// members may come and go).
    pub(crate) fn for_each(&self, len: usize, mut f: impl FnMut(usize, usize)) {
        for (class, set) in self.sets.iter().enumerate() {
            set.for_each(len, |i| f(class, i));
        }
    }

    /// Members, approximately (exact when no operation is in flight).
    pub(crate) fn len(&self) -> usize {
        self.sets.iter().map(ChunkSet::len).sum()
    }
}

/// The chunks of a pool, by number. Entries are written once, when a chunk is first formatted,
/// and never change: chunks are never unmapped while the pool lives.
pub(crate) struct Directory {
    chunks: [AtomicPtr<ChunkHeader>; MAX_CHUNKS],
    /// Numbers handed out (may pass `MAX_CHUNKS` when the directory is full; read it clamped).
    len: AtomicUsize,
}

impl Directory {
    pub(crate) const fn new() -> Self {
        Self {
            chunks: [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS],
            len: AtomicUsize::new(0),
        }
    }

    /// Numbers handed out so far: every member of a set is below this.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        // Relaxed: a bound for scans. An entry is read only for a number a set published, and
        // the set's SeqCst RMWs order that after the entry's Release store.
        self.len.load(Ordering::Relaxed).min(MAX_CHUNKS)
    }

    /// Gives `h` a number, or `None` when the directory is full.
    pub(crate) fn add(&self, h: *mut ChunkHeader) -> Option<usize> {
        // Relaxed: the number is ours alone; publication is the entry's Release store.
        let i = self.len.fetch_add(1, Ordering::Relaxed);
        if i >= MAX_CHUNKS {
            return None;
        }
        // Release: whoever reads the entry sees the formatted header.
        self.chunks[i].store(h, Ordering::Release);
        Some(i)
    }

    /// The chunk numbered `i`, or null if it is still being added.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> *mut ChunkHeader {
        // Acquire: pairs with the Release store in `add`.
        self.chunks[i].load(Ordering::Acquire)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The count lags the bits by at most one change per thread in flight: a remove may lower
    /// it before the insert it undoes has raised it, or an insert raise it before the remove
    /// that made room has lowered it. One thread inserts a chunk whenever it is out, another
    /// takes it out whenever it is in, and a third reads the length of this set of at most one
    /// member throughout: it may read 2, never a wrapped number (it read `usize::MAX` when the
    /// count was unsigned).
    #[test]
    fn the_length_never_wraps_while_members_come_and_go() {
        extern crate std;
        use std::sync::atomic::AtomicBool;
        use std::thread;

        const ROUNDS: usize = 200_000;
        let set = ChunkSet::new();
        let done = AtomicBool::new(false);
        let worst = thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    while set.contains(7) {
                        core::hint::spin_loop();
                    }
                    set.insert(7);
                }
                done.store(true, Ordering::SeqCst);
            });
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) || set.contains(7) {
                    set.remove(7);
                }
            });
            let reader = s.spawn(|| {
                let mut worst = 0;
                while !done.load(Ordering::SeqCst) {
                    worst = worst.max(set.len());
                }
                worst
            });
            reader.join().unwrap()
        });
        assert!(
            worst <= 2,
            "a set of at most one chunk read as {worst} long"
        );
        assert_eq!(set.len(), 0);
        let sets = ClassSets::new();
        sets.insert(3, 7);
        assert_eq!(sets.len(), 1);
    }
}
