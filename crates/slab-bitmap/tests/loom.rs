//! Model checks with loom: every interleaving of two threads, and every outcome that the
//! memory orderings allow, for each race the set must win.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p slab-bitmap --test loom --release
//! ```
//!
//! Slots carry data in loom's `UnsafeCell`s: a thread writes a slot's cell before releasing the
//! slot, and whoever claims it next reads the cell. If a claim did not synchronise with the
//! release (an ordering too weak), loom reports the access as a data race.

#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use slab_bitmap::{ReleaseError, SlotArray};

/// A set and one data cell per slot.
struct Shared<const WORDS: usize, const LEN: usize> {
    set: SlotArray<WORDS>,
    data: [UnsafeCell<u32>; LEN],
}

impl<const WORDS: usize, const LEN: usize> Shared<WORDS, LEN> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            set: SlotArray::new(LEN),
            data: core::array::from_fn(|_| UnsafeCell::new(0)),
        })
    }

    /// Writes the data of a slot the caller owns.
    fn write(&self, slot: usize, value: u32) {
        // SAFETY: the caller owns `slot`; loom checks that no other access races with this one.
        self.data[slot].with_mut(|p| unsafe { *p = value });
    }

    /// Reads the data of a slot the caller owns.
    fn read(&self, slot: usize) -> u32 {
        // SAFETY: as in `write`.
        self.data[slot].with(|p| unsafe { *p })
    }
}

#[test]
fn claim_claim_race() {
    loom::model(|| {
        let s = Shared::<1, 2>::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.set.as_set().claim())
        };
        let mine = s.set.as_set().claim();
        let theirs = t.join().unwrap();
        let (a, b) = (mine.unwrap(), theirs.unwrap());
        assert_ne!(a, b);
        assert_eq!(s.set.as_set().claim(), None);
    });
}

#[test]
fn claim_claim_race_for_the_last_slot() {
    loom::model(|| {
        let s = Shared::<1, 1>::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.set.as_set().claim())
        };
        let mine = s.set.as_set().claim();
        let theirs = t.join().unwrap();
        assert!(mine.is_some() != theirs.is_some(), "{mine:?} {theirs:?}");
        assert_eq!(mine.or(theirs), Some(0));
    });
}

/// Slots 0 and 1 are held by one thread, which writes slot 0 and releases it while the other
/// claims a batch of up to `max`: the batch always has slots 2 and 3, and slot 0 only with the
/// data written before its release.
fn claim_batch_vs_release(max: u32) {
    loom::model(move || {
        let s = Shared::<1, 4>::new();
        let held = s.set.as_set().claim_batch(2).unwrap();
        assert_eq!(held.mask, 0b11);
        let t = {
            let s = s.clone();
            thread::spawn(move || {
                s.write(0, 42);
                s.set.as_set().release(0).unwrap();
            })
        };
        let batch = s.set.as_set().claim_batch(max).unwrap();
        assert_eq!(batch.word, 0);
        assert_eq!(batch.mask & 0b1110, 0b1100, "{batch:?}");
        if batch.mask & 1 != 0 {
            assert_eq!(s.read(0), 42);
        }
        t.join().unwrap();
        let set = s.set.as_set();
        assert_eq!(set.count_claimed(), 1 + batch.len() as usize);
        assert!(set.is_claimed(1));
    });
}

#[test]
fn claim_batch_swap_vs_release() {
    claim_batch_vs_release(64);
}

#[test]
fn claim_batch_cas_vs_release() {
    claim_batch_vs_release(3);
}

#[test]
fn release_mask_vs_claim() {
    loom::model(|| {
        let s = Shared::<1, 3>::new();
        assert!(s.set.as_set().try_claim_all());
        let t = {
            let s = s.clone();
            thread::spawn(move || {
                s.write(0, 7);
                s.write(1, 8);
                s.set.as_set().release_mask(0, 0b011).unwrap();
            })
        };
        let got = s.set.as_set().claim();
        match got {
            None => {}
            Some(0) => assert_eq!(s.read(0), 7),
            Some(1) => assert_eq!(s.read(1), 8),
            Some(other) => panic!("claimed slot {other}, which was never released"),
        }
        t.join().unwrap();
        let set = s.set.as_set();
        assert_eq!(set.count_claimed(), 1 + usize::from(got.is_some()));
        assert!(set.is_claimed(2));
    });
}

#[test]
fn release_mask_reports_what_a_racing_release_took() {
    loom::model(|| {
        let s = Shared::<1, 2>::new();
        assert!(s.set.as_set().try_claim_all());
        let t = {
            let s = s.clone();
            thread::spawn(move || s.set.as_set().release(1))
        };
        let mine = s.set.as_set().release_mask(0, 0b11);
        let theirs = t.join().unwrap();
        match theirs {
            Ok(()) => assert_eq!(
                mine,
                Err(ReleaseError::NotClaimed {
                    word: 0,
                    mask: 0b10
                })
            ),
            Err(e) => {
                assert_eq!(
                    e,
                    ReleaseError::NotClaimed {
                        word: 0,
                        mask: 0b10
                    }
                );
                assert_eq!(mine, Ok(()));
            }
        }
        assert_eq!(s.set.as_set().count_claimed(), 0);
    });
}

#[test]
fn try_claim_all_vs_claim() {
    loom::model(|| {
        // Two words, the second with a tail: 65 slots.
        let s = Shared::<2, 65>::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.set.as_set().claim())
        };
        let all = s.set.as_set().try_claim_all();
        let one = t.join().unwrap();
        // Exactly one of them wins, and a failed try_claim_all leaves nothing behind.
        assert!(all != one.is_some(), "try_claim_all {all}, claim {one:?}");
        let set = s.set.as_set();
        if all {
            assert_eq!(set.count_claimed(), 65);
            set.release_all();
            assert_eq!(set.count_free(), 65);
        } else {
            assert_eq!(set.count_claimed(), 1);
            assert!(set.is_claimed(one.unwrap()));
        }
    });
}

#[test]
fn try_claim_all_vs_release() {
    loom::model(|| {
        let s = Shared::<1, 2>::new();
        assert_eq!(s.set.as_set().claim(), Some(0));
        let t = {
            let s = s.clone();
            thread::spawn(move || {
                s.write(0, 5);
                s.set.as_set().release(0).unwrap();
            })
        };
        if s.set.as_set().try_claim_all() {
            // It saw slot 0 free, so it sees what was written before the release.
            assert_eq!(s.read(0), 5);
        }
        t.join().unwrap();
    });
}

#[test]
fn claim_run_vs_claim() {
    loom::model(|| {
        let s = Shared::<1, 4>::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.set.as_set().claim())
        };
        let run = s.set.as_set().claim_run(2).expect("a run of 2 always fits");
        let one = t.join().unwrap().expect("a slot is always left");
        assert!(one < run || one >= run + 2, "run {run}, slot {one}");
        assert_eq!(s.set.as_set().count_claimed(), 3);
    });
}
