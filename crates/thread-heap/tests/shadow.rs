//! Single-thread random sequences checked against a shadow model of every bucket.
//!
//! The shadow keeps, per class, the exact list the bucket should hold (oldest first). From it,
//! every step's outcome is predicted: which block an allocation returns, whether the store is
//! asked for a refill and with what `max`, whether a free flushes and exactly which blocks in
//! which order. The model store reports what it handed out and received, so any disagreement
//! fails the test at the step where it happens.

mod common;

use std::ptr::NonNull;

use common::{scaled, Heap, Held, HeldSet, ModelStore, Rng};

const CLASSES: usize = 5;

struct Shadow {
    /// Per class, the bucket's blocks, oldest first (the last one is the head).
    lists: Vec<Vec<NonNull<u8>>>,
    caps: [u32; CLASSES],
}

impl Shadow {
    fn alloc(
        &mut self,
        heap: &mut Heap<CLASSES>,
        store: &ModelStore,
        class: usize,
    ) -> Option<NonNull<u8>> {
        let before = store.stats(class);
        let got = heap.alloc(class, store);
        let after = store.stats(class);
        let list = &mut self.lists[class];
        if let Some(expected) = list.pop() {
            assert_eq!(got, Some(expected), "pop returns the newest block");
            assert_eq!(after, before, "a pop does not reach the store");
        } else {
            assert_eq!(after.refills, before.refills + 1, "an empty bucket refills");
            let max = (self.caps[class] as usize / 2).max(1);
            assert_eq!(after.last_refill_max, max);
            if after.failed_refills == before.failed_refills {
                let chain = store.last_refill(class);
                assert!(!chain.is_empty() && chain.len() <= max);
                assert_eq!(got, Some(chain[0]), "the chain's head is handed out");
                list.extend(chain[1..].iter().rev());
            } else {
                assert_eq!(got, None, "a failed refill is out of memory");
            }
        }
        assert_eq!(heap.cached(class), list.len());
        got
    }

    fn dealloc(&mut self, heap: &mut Heap<CLASSES>, store: &ModelStore, held: Held) {
        let class = held.class;
        held.check(store);
        let before = store.stats(class);
        // SAFETY: `held` came from this heap over `store` and is no longer used.
        unsafe { heap.dealloc(class, held.ptr, store) };
        let after = store.stats(class);
        let cap = self.caps[class] as usize;
        let list = &mut self.lists[class];
        if list.len() < cap {
            assert_eq!(after, before, "a push with room does not reach the store");
            list.push(held.ptr);
        } else if cap == 0 {
            assert_eq!(after.flushes, before.flushes + 1);
            assert_eq!(
                store.last_flush(class),
                vec![held.ptr],
                "cap 0 flushes the block"
            );
        } else {
            let keep = cap / 2;
            let gone: Vec<_> = list.drain(..list.len() - keep).collect();
            assert_eq!(after.flushes, before.flushes + 1, "one flush per overflow");
            assert_eq!(
                store.last_flush(class),
                gone,
                "the oldest part, oldest first"
            );
            list.push(held.ptr);
        }
        assert_eq!(heap.cached(class), list.len());
        assert!(heap.cached(class) <= cap, "bucket over its cap");
    }

    fn flush_all(&mut self, heap: &mut Heap<CLASSES>, store: &ModelStore) {
        let before: Vec<_> = (0..CLASSES).map(|c| store.stats(c)).collect();
        heap.flush_all(store);
        for (class, list) in self.lists.iter_mut().enumerate() {
            let after = store.stats(class);
            if list.is_empty() {
                assert_eq!(after, before[class], "empty classes are not flushed");
            } else {
                assert_eq!(
                    after.flushes,
                    before[class].flushes + 1,
                    "one chain per class"
                );
                let all = std::mem::take(list);
                assert_eq!(store.last_flush(class), all);
            }
            assert_eq!(heap.cached(class), 0);
        }
    }
}

fn run(seed: u64, caps: [u32; CLASSES], steps: u64) {
    let store = ModelStore::new(&[(1, 300), (2, 300), (3, 300), (8, 300), (2, 40)]);
    let mut heap = Heap::new(caps);
    let mut shadow = Shadow {
        lists: vec![Vec::new(); CLASSES],
        caps,
    };
    let mut rng = Rng::new(seed);
    let mut held = HeldSet::default();
    // Phases that favour allocation, then freeing, so buckets run both empty and full.
    let mut alloc_bias = 60;
    for step in 0..steps {
        if step % 500 == 0 {
            alloc_bias = 25 + rng.below(50);
        }
        let r = rng.below(1000);
        if r < 5 {
            shadow.flush_all(&mut heap, &store);
        } else if r < 10 {
            store.set_fail(rng.below(3) == 0);
        } else if r < 15 {
            store.set_refill_limit(if rng.below(2) == 0 {
                usize::MAX
            } else {
                1 + rng.below(4)
            });
        } else if rng.below(100) < alloc_bias || held.is_empty() {
            let class = rng.below(CLASSES);
            if let Some(p) = shadow.alloc(&mut heap, &store, class) {
                held.insert(Held::new(&store, p, class, seed << 40 | step));
            }
        } else {
            let h = held.take(rng.below(held.len()));
            shadow.dealloc(&mut heap, &store, h);
        }
        for class in 0..CLASSES {
            assert_eq!(
                store.stats(class).out,
                held.count(class) + heap.cached(class),
                "seed {seed} step {step}: blocks lost or invented"
            );
        }
    }
    while !held.is_empty() {
        let h = held.take(held.len() - 1);
        shadow.dealloc(&mut heap, &store, h);
    }
    shadow.flush_all(&mut heap, &store);
    store.assert_all_home();
}

#[test]
fn random_sequences_match_the_shadow() {
    let cap_sets = [
        [8, 8, 8, 8, 8],
        [0, 1, 2, 3, 4],
        [64, 17, 5, 1, 0],
        [128, 128, 128, 128, 128],
    ];
    for (i, caps) in cap_sets.into_iter().enumerate() {
        for seed in 0..scaled(4, 1) as u64 {
            run(seed * 16 + i as u64 + 1, caps, scaled(6000, 400) as u64);
        }
    }
}

#[test]
fn a_free_only_phase_stays_within_the_cap() {
    let total = scaled(5000, 300);
    let store = ModelStore::new(&[(2, total)]);
    let mut producer = Heap::<1>::new([32]);
    let mut consumer = Heap::<1>::new([32]);
    let blocks: Vec<_> = (0..total)
        .map(|_| producer.alloc(0, &store).unwrap())
        .collect();
    assert!(producer.alloc(0, &store).is_none(), "every block is out");
    for (i, p) in blocks.into_iter().enumerate() {
        // SAFETY: each block came from `store` through `producer` and is no longer used.
        unsafe { consumer.dealloc(0, p, &store) };
        assert!(consumer.cached(0) <= 32);
        assert_eq!(store.stats(0).free, i + 1 - consumer.cached(0));
    }
    // The surplus went back in batches of half the cap.
    assert_eq!(store.stats(0).max_flush_len, 16);
    assert_eq!(store.stats(0).free, total - consumer.cached(0));
    // And the producer can allocate again from what came back.
    let p = producer.alloc(0, &store).expect("blocks came back");
    // SAFETY: `p` came from `store` and is not used.
    unsafe { consumer.dealloc(0, p, &store) };
    producer.flush_all(&store);
    consumer.flush_all(&store);
    store.assert_all_home();
}
