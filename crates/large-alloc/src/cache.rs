//! A small cache of freed runs.
//!
//! Getting a run from the OS and giving it back costs two system calls, and a fresh mapping a
//! page fault for every page touched. A program that allocates and frees blocks of a few MiB in
//! a loop would pay all of that each time; the cache keeps up to [`CACHE_SLOTS`] freed runs of
//! at most [`CACHE_MAX_RUN_CHUNKS`] chunks each, [`CACHE_MAX_CHUNKS`] chunks in all, and gives
//! the next allocation that needs `n` chunks the smallest run of at least `n` (best fit).
//! `LargeAlloc` lets the block keep a run of up to `2n` chunks whole, and splits a longer one,
//! putting its tail back in the cache (or back to the source when the cache has no room): the
//! tail's pages are resident already, and a program whose block sizes vary finds them again
//! where a fresh run would fault every page in. The waste is bounded by the block's own
//! chunks, and the chunks held beyond what blocks need are still bounded by the cache's budget.
//!
//! When no cached run is long enough and the source can move chunks (the mmap source, by
//! `mremap`), `LargeAlloc` gathers shorter ones: it maps a fresh run of `n` chunks and moves
//! cached runs onto it, chunk by chunk, the longest that fits in what is left first, until
//! the run is full or nothing cached fits. The kernel moves page tables, not bytes, so every
//! page those runs had faulted in comes along, and only the part that no cached run covered
//! faults in fresh; in effect the cache's runs coalesce as a page heap's free spans do
//! (tcmalloc's), with no address-order bookkeeping. On the suite's `large` shape (two threads
//! replacing blocks of 64 KiB..32 MiB, `--scale 4`) this and the `2n` bound took the page
//! faults from about 75,000 to 50,000 (tcmalloc: 58,000) and the time from 1.28x tcmalloc's to
//! about 1.1x; before, the longest shorter run of at least `n/2` chunks was grown by `mremap`
//! and the rest of the block faulted in, and runs were kept whole up to `3n`.
//!
//! A gathered run is several kernel mappings. It is unmapped, decommitted, split and freed like
//! any run, and moved again chunk by chunk; only a `mremap` of the whole run, which must lie in
//! one mapping, fails (the mmap source's `resize` then refuses, and a realloc copies).
//!
//! Each slot is one atomic pointer: null (empty), `BUSY` (being filled), or the run's base with
//! its chunk count in the low bits (a base is `CHUNK_SIZE`-aligned and a count is below
//! `CHUNK_SIZE`, so one word holds both and one compare-exchange moves both).
//!
//! - `take(n)`: find the slot with the shortest run of at least `n` chunks, compare-exchange it to
//!   empty; the winner owns the run (a loser looks again, at most once per slot).
//! - `put(run)`: reserve the run's chunks in the budget (`cached`; refused past the limit),
//!   claim an empty slot (empty to `BUSY`), write its stamp, publish the run. With no empty slot
//!   the reservation is undone and the caller gives the run back to the source.
//!
//! Each call scans at most [`CACHE_SLOTS`] slots and skips a busy one: no lock, no waiting,
//! no allocation.
//!
//! Aging: every large allocation and free that goes through the cache advances a logical
//! clock, and stamps the run it puts. A run that has sat unused for more than
//! [`CACHE_MAX_AGE`] ticks is taken out by the next sweep and given back to the source (which
//! unmaps it, so its pages are returned too). There is no timer: a program that stops using
//! large blocks keeps at most [`CACHE_MAX_CHUNKS`] chunks cached until its next large
//! operation, a `trim`, or the drop of the allocator.

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use chunk_source::CHUNK_SIZE;
use static_assertions::const_assert;

/// Slots of the cache of freed runs.
pub const CACHE_SLOTS: usize = 32;
/// The longest run the cache keeps, in chunks (64 MiB: a 32 MiB block's run, and twice it).
pub const CACHE_MAX_RUN_CHUNKS: usize = 16;
/// The most chunks the cache holds in all (256 MiB).
pub const CACHE_MAX_CHUNKS: usize = 64;
/// Large allocations and frees a cached run may sit through unused before it is given back.
pub const CACHE_MAX_AGE: usize = 256;

// A chunk count fits in the low bits of a chunk-aligned base.
const_assert!(CACHE_MAX_RUN_CHUNKS < CHUNK_SIZE);
const_assert!(CACHE_MAX_RUN_CHUNKS <= CACHE_MAX_CHUNKS);
const_assert!(CACHE_SLOTS >= 1);

/// Low bits of a slot word that hold the chunk count.
const COUNT_MASK: usize = CHUNK_SIZE - 1;
/// A slot being filled: never a run (a run's word is at least `CHUNK_SIZE`).
const BUSY: *mut u8 = ptr::without_provenance_mut(1);

/// One cached run.
struct Slot {
    /// Null, `BUSY`, or `base | nchunks`.
    run: AtomicPtr<u8>,
    /// The clock when the run was put (meaningful while `run` holds a run).
    stamp: AtomicUsize,
}

/// A bounded, lock-free set of freed runs.
///
/// Invariants:
/// - a run is in at most one slot, and a run in a slot is owned by nobody else;
/// - chunks held in slots <= `cached` <= [`CACHE_MAX_CHUNKS`] (`cached` also counts the
///   reservations of puts in progress, and is lowered only after a run has left its slot).
pub(crate) struct RunCache {
    slots: [Slot; CACHE_SLOTS],
    cached: AtomicUsize,
    clock: AtomicUsize,
}

impl RunCache {
    /// An empty cache.
    pub(crate) const fn new() -> Self {
        RunCache {
            slots: [const {
                Slot {
                    run: AtomicPtr::new(ptr::null_mut()),
                    stamp: AtomicUsize::new(0),
                }
            }; CACHE_SLOTS],
            cached: AtomicUsize::new(0),
            clock: AtomicUsize::new(0),
        }
    }

    /// Whether a run of `n` chunks may be cached.
    #[inline]
    pub(crate) const fn fits(n: usize) -> bool {
        n >= 1 && n <= CACHE_MAX_RUN_CHUNKS
    }

    /// Chunks cached now (including puts in progress).
    #[inline]
    pub(crate) fn cached_chunks(&self) -> usize {
        // Relaxed: a statistic; nothing is published through it.
        self.cached.load(Ordering::Relaxed)
    }

    /// The clock now, without advancing it.
    #[inline]
    pub(crate) fn now(&self) -> usize {
        // Relaxed: as in `tick`.
        self.clock.load(Ordering::Relaxed)
    }

    /// Advances the clock and returns the new time.
    #[inline]
    pub(crate) fn tick(&self) -> usize {
        // Relaxed: the clock only orders ages roughly; a stale read makes a run look younger.
        self.clock.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// Takes the shortest cached run of at least `n` chunks, if there is one, with its length.
    pub(crate) fn take(&self, n: usize) -> Option<(NonNull<u8>, usize)> {
        if !Self::fits(n) || self.cached_chunks() < n {
            return None;
        }
        self.take_best(|len| len >= n, |len, best| len < best)
    }

    /// Takes the longest cached run of at most `n` chunks, if there is one, with its length:
    /// for a caller that gathers runs into a longer one (see the module docs).
    pub(crate) fn take_longest_at_most(&self, n: usize) -> Option<(NonNull<u8>, usize)> {
        self.take_best(|len| len <= n, |len, best| len > best)
    }

    /// Takes the run whose length `fits` accepts and that is `better` than every other such
    /// run (`better(len, best_so_far)`), with its length.
    fn take_best(
        &self,
        fits: impl Fn(usize) -> bool,
        better: impl Fn(usize, usize) -> bool,
    ) -> Option<(NonNull<u8>, usize)> {
        for _ in 0..CACHE_SLOTS {
            let mut best: Option<(&Slot, *mut u8)> = None;
            for slot in &self.slots {
                // Relaxed: only a hint; the compare-exchange in `take_slot` synchronises.
                let word = slot.run.load(Ordering::Relaxed);
                let len = word.addr() & COUNT_MASK;
                if word.is_null() || word == BUSY || !fits(len) {
                    continue;
                }
                if best.is_none_or(|(_, b)| better(len, b.addr() & COUNT_MASK)) {
                    best = Some((slot, word));
                }
            }
            let (slot, word) = best?;
            if let Some(base) = self.take_slot(slot, word) {
                return Some((base, word.addr() & COUNT_MASK));
            }
        }
        None
    }

    /// Empties `slot` if it still holds `word` (a run), and returns the run's base.
    fn take_slot(&self, slot: &Slot, word: *mut u8) -> Option<NonNull<u8>> {
        // Acquire: pairs with the Release publication in `put`, so the taker's writes to the
        // run come after every write of the thread that freed it.
        slot.run
            .compare_exchange(word, ptr::null_mut(), Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        let n = word.addr() & COUNT_MASK;
        // Relaxed: the budget publishes nothing; the run left its slot before it is lowered.
        self.cached.fetch_sub(n, Ordering::Relaxed);
        NonNull::new(word.map_addr(|a| a & !COUNT_MASK))
    }

    /// Offers a freed run of `n` chunks, stamped `now`. Returns false when the cache will not
    /// take it (too long, budget or slots full): the caller still owns it.
    ///
    /// The run must be `CHUNK_SIZE`-aligned, owned by the caller, and given up by it on true.
    pub(crate) fn put(&self, base: NonNull<u8>, n: usize, now: usize) -> bool {
        debug_assert_eq!(base.as_ptr().addr() & COUNT_MASK, 0);
        if !Self::fits(n) {
            return false;
        }
        // Relaxed: the budget publishes nothing (see `take_slot`).
        let reserved = self
            .cached
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c + n <= CACHE_MAX_CHUNKS).then_some(c + n)
            })
            .is_ok();
        if !reserved {
            return false;
        }
        for slot in &self.slots {
            // Relaxed: claiming an empty slot publishes nothing yet; the run is published
            // below with Release.
            if slot
                .run
                .compare_exchange(ptr::null_mut(), BUSY, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                // Relaxed: ordered before the Release store below, read after an Acquire load.
                slot.stamp.store(now, Ordering::Relaxed);
                // Release: the run's content (the freed header) and the stamp are visible to
                // whoever takes it with Acquire.
                slot.run
                    .store(base.as_ptr().map_addr(|a| a | n), Ordering::Release);
                return true;
            }
        }
        // Relaxed: undoing our own reservation.
        self.cached.fetch_sub(n, Ordering::Relaxed);
        false
    }

    /// Takes out every run that has sat unused for more than [`CACHE_MAX_AGE`] ticks at time
    /// `now`, and hands each to `give_back(base, nchunks)`.
    pub(crate) fn evict_stale(&self, now: usize, mut give_back: impl FnMut(NonNull<u8>, usize)) {
        for slot in &self.slots {
            // Acquire: the stamp read next is the one written before this run was published.
            let word = slot.run.load(Ordering::Acquire);
            if word.is_null() || word == BUSY {
                continue;
            }
            // Relaxed: ordered by the Acquire load above.
            let age = now.wrapping_sub(slot.stamp.load(Ordering::Relaxed));
            // A stamp newer than `now` (a put that raced this sweep) wraps to a huge age: keep it.
            if age <= CACHE_MAX_AGE || age > usize::MAX / 2 {
                continue;
            }
            if let Some(base) = self.take_slot(slot, word) {
                give_back(base, word.addr() & COUNT_MASK);
            }
        }
    }

    /// Takes out every cached run and hands each to `give_back(base, nchunks)`.
    pub(crate) fn drain(&self, mut give_back: impl FnMut(NonNull<u8>, usize)) {
        for slot in &self.slots {
            // Relaxed: only a hint; `take_slot` synchronises.
            let word = slot.run.load(Ordering::Relaxed);
            if word.is_null() || word == BUSY {
                continue;
            }
            if let Some(base) = self.take_slot(slot, word) {
                give_back(base, word.addr() & COUNT_MASK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn fake_run(i: usize) -> NonNull<u8> {
        NonNull::new(ptr::without_provenance_mut((i + 1) * CHUNK_SIZE)).unwrap()
    }

    #[test]
    fn take_gives_the_shortest_run_that_is_long_enough() {
        let c = RunCache::new();
        assert!(c.put(fake_run(0), 2, 0));
        assert!(c.put(fake_run(10), 6, 0));
        assert!(c.put(fake_run(20), 3, 0));
        // 1 chunk: the shortest run, 2.
        assert_eq!(c.take(1), Some((fake_run(0), 2)));
        // 4 chunks: 6 (3 is too short); 7 chunks: nothing that long.
        assert_eq!(c.take(4), Some((fake_run(10), 6)));
        assert_eq!(c.take(7), None);
        assert_eq!(c.take(1), Some((fake_run(20), 3)));
        assert_eq!(c.take(1), None);
        assert_eq!(c.cached_chunks(), 0);
    }

    #[test]
    fn take_prefers_the_exact_length() {
        let c = RunCache::new();
        assert!(c.put(fake_run(0), 4, 0));
        assert!(c.put(fake_run(10), 3, 0));
        assert_eq!(c.take(3), Some((fake_run(10), 3)));
        assert_eq!(c.take(3), Some((fake_run(0), 4)));
        assert_eq!(c.cached_chunks(), 0);
    }

    #[test]
    fn budget_and_slots_are_bounded() {
        let c = RunCache::new();
        assert!(!c.put(fake_run(0), CACHE_MAX_RUN_CHUNKS + 1, 0));
        let mut n = 0;
        let mut i = 0;
        while c.put(fake_run(i), 1, 0) {
            i += 1;
            n += 1;
        }
        assert_eq!(n, CACHE_SLOTS.min(CACHE_MAX_CHUNKS));
        assert_eq!(c.cached_chunks(), n);
        let mut got = Vec::new();
        c.drain(|b, k| got.push((b, k)));
        assert_eq!(got.len(), n);
        assert_eq!(c.cached_chunks(), 0);
        let c = RunCache::new();
        let mut total = 0;
        let mut i = 0;
        while c.put(fake_run(i * 8), CACHE_MAX_RUN_CHUNKS, 0) {
            i += 1;
            total += CACHE_MAX_RUN_CHUNKS;
        }
        assert!(total <= CACHE_MAX_CHUNKS);
        assert_eq!(c.cached_chunks(), total);
        c.drain(|_, _| {});
    }

    #[test]
    fn stale_runs_are_evicted() {
        let c = RunCache::new();
        assert!(c.put(fake_run(0), 1, 10));
        assert!(c.put(fake_run(1), 1, 10 + CACHE_MAX_AGE));
        let mut got = Vec::new();
        c.evict_stale(10 + CACHE_MAX_AGE, |b, k| got.push((b, k)));
        assert!(got.is_empty());
        c.evict_stale(11 + CACHE_MAX_AGE, |b, k| got.push((b, k)));
        assert_eq!(got, [(fake_run(0), 1)]);
        // A stamp from the future is not old.
        c.evict_stale(5, |b, k| got.push((b, k)));
        assert_eq!(got.len(), 1);
        c.drain(|_, _| {});
    }
}
