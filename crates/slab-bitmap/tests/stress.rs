//! Several threads claim (one slot, batches, runs, the whole set) and release at random, and
//! every claim is checked to be exclusive: after each claim the thread marks each slot it got in
//! an owner table with a CAS from 0 to its id, and clears the mark with a CAS before releasing.
//! A slot handed to two threads at once makes one of those CASes fail, and the test with it.

#![cfg(not(loom))]

use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;

use slab_bitmap::{SlotArray, SlotSet};

/// Not a multiple of 64: the last word has a tail that must never be handed out.
const LEN: usize = 250;
const WORDS: usize = LEN.div_ceil(64);
const THREADS: u8 = 4;
const ITERATIONS: usize = if cfg!(miri) { 150 } else { 200_000 };
/// Beyond this many held slots a thread releases instead of claiming.
const HOLD_MAX: usize = 60;

static SET: SlotArray<WORDS> = SlotArray::new(LEN);
static OWNERS: [AtomicU8; LEN] = [const { AtomicU8::new(0) }; LEN];

/// Small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Slots a thread holds, grouped as they were claimed.
enum Held {
    One(usize),
    Batch { word: usize, mask: u64 },
    Run { first: usize, n: usize },
}

fn slots_of(held: &Held) -> Vec<usize> {
    match *held {
        Held::One(s) => vec![s],
        Held::Batch { word, mask } => (0..64)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| word * 64 + i)
            .collect(),
        Held::Run { first, n } => (first..first + n).collect(),
    }
}

fn own(slot: usize, me: u8) {
    assert!(slot < LEN, "thread {me}: slot {slot} is past the end");
    // AcqRel on success / Acquire on failure: the owner table is a checker, ordered like the
    // slots it checks.
    if let Err(other) = OWNERS[slot].compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
        panic!("thread {me}: slot {slot} claimed while thread {other} owns it");
    }
}

fn disown(slot: usize, me: u8) {
    if let Err(other) = OWNERS[slot].compare_exchange(me, 0, Ordering::AcqRel, Ordering::Acquire) {
        panic!("thread {me}: releasing slot {slot}, owned by {other}");
    }
}

fn release(set: SlotSet<'_>, held: Held, me: u8, rng: &mut Rng) {
    for s in slots_of(&held) {
        disown(s, me);
    }
    match held {
        Held::One(s) => set.release(s).unwrap(),
        Held::Batch { word, mask } if rng.below(2) == 0 => set.release_mask(word, mask).unwrap(),
        Held::Batch { word, mask } => {
            for i in (0..64).filter(|i| mask & (1 << i) != 0) {
                set.release(word * 64 + i).unwrap();
            }
        }
        Held::Run { first, n } => {
            let mask = (u64::MAX >> (64 - n)) << (first % 64);
            set.release_mask(first / 64, mask).unwrap();
        }
    }
}

fn worker(me: u8) -> usize {
    let set = SET.as_set();
    let mut rng = Rng((0x9E37_79B9_7F4A_7C15 ^ (u64::from(me) << 32)) | 1);
    let mut held: Vec<Held> = Vec::new();
    let mut held_slots = 0;
    let mut claims = 0;
    for _ in 0..ITERATIONS {
        let op = if held_slots > HOLD_MAX {
            9
        } else {
            rng.below(12)
        };
        let got = match op {
            0..=2 => set.claim().map(Held::One),
            3..=4 => {
                let max = [1, 3, 8, 63, 64, u32::MAX][rng.below(6) as usize];
                set.claim_batch(max).map(|b| {
                    assert!(!b.is_empty() && b.len() <= max);
                    Held::Batch {
                        word: b.word,
                        mask: b.mask,
                    }
                })
            }
            5 => {
                let n = 1 + rng.below(6) as usize;
                set.claim_run(n).map(|first| {
                    assert_eq!(first / 64, (first + n - 1) / 64, "a run crosses words");
                    Held::Run { first, n }
                })
            }
            6 => {
                if set.try_claim_all() {
                    // Nobody else can hold anything now.
                    for s in 0..LEN {
                        own(s, me);
                    }
                    for s in 0..LEN {
                        disown(s, me);
                    }
                    set.release_all();
                    claims += 1;
                }
                None
            }
            _ => {
                if !held.is_empty() {
                    let h = held.swap_remove(rng.below(held.len() as u64) as usize);
                    held_slots -= slots_of(&h).len();
                    release(set, h, me, &mut rng);
                }
                None
            }
        };
        if let Some(h) = got {
            for s in slots_of(&h) {
                own(s, me);
            }
            held_slots += slots_of(&h).len();
            held.push(h);
            claims += 1;
        }
    }
    for h in held {
        release(set, h, me, &mut rng);
    }
    claims
}

#[test]
fn claims_are_exclusive_under_contention() {
    let claims: usize = thread::scope(|scope| {
        let workers: Vec<_> = (1..=THREADS)
            .map(|me| scope.spawn(move || worker(me)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert!(claims > 0);
    let set = SET.as_set();
    assert_eq!(set.count_claimed(), 0);
    assert!(OWNERS.iter().all(|o| o.load(Ordering::Relaxed) == 0));
    // Everything is free again, tail included: a full sweep gets exactly 0..LEN.
    let mut all: Vec<usize> = std::iter::from_fn(|| set.claim()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..LEN).collect::<Vec<_>>());
}
