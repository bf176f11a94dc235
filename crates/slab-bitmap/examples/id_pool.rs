//! An ID pool over a `static` slot set: threads take small integer IDs (think connection or
//! session numbers), use them, and give them back. No lock, no allocation in the pool, and an ID
//! is never in two hands at once.
//!
//! ```text
//! cargo run -p slab-bitmap --example id_pool
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use slab_bitmap::{SlotArray, SlotSet};

/// Up to 1000 live IDs: 0..1000.
const MAX_IDS: usize = 1000;

/// An ID pool. `SlotArray::new` is `const`, so the pool needs no initialisation at run time.
struct IdPool<const WORDS: usize> {
    slots: SlotArray<WORDS>,
}

impl<const WORDS: usize> IdPool<WORDS> {
    const fn new(capacity: usize) -> Self {
        Self {
            slots: SlotArray::new(capacity),
        }
    }

    fn set(&self) -> SlotSet<'_> {
        self.slots.as_set()
    }

    /// A fresh ID, returned to the pool when the guard is dropped; `None` when all are taken.
    fn acquire(&self) -> Option<Id<'_>> {
        let id = self.set().claim()?;
        Some(Id {
            pool: self.set(),
            id,
        })
    }

    /// Up to `n` IDs at once, with a single atomic operation (they come from one 64-bit word,
    /// so `n` above 64 still yields at most 64).
    fn acquire_many(&self, n: u32) -> Vec<Id<'_>> {
        match self.set().claim_batch(n) {
            Some(batch) => batch
                .iter()
                .map(|id| Id {
                    pool: self.set(),
                    id,
                })
                .collect(),
            None => Vec::new(),
        }
    }

    fn in_use(&self) -> usize {
        self.set().count_claimed()
    }
}

/// An ID taken from the pool; dropping it gives the ID back.
struct Id<'a> {
    pool: SlotSet<'a>,
    id: usize,
}

impl Id<'_> {
    fn get(&self) -> usize {
        self.id
    }
}

impl Drop for Id<'_> {
    fn drop(&mut self) {
        // The guard owns the ID, so releasing it cannot fail.
        self.pool
            .release(self.id)
            .expect("an ID guard releases an ID it holds");
    }
}

static POOL: IdPool<{ MAX_IDS.div_ceil(64) }> = IdPool::new(MAX_IDS);

/// One counter per ID: how many times it was handed out.
static HANDED_OUT: [AtomicU32; MAX_IDS] = [const { AtomicU32::new(0) }; MAX_IDS];

fn main() {
    let first = POOL.acquire().expect("the pool starts empty");
    let second = POOL.acquire().expect("the pool starts empty");
    println!("first IDs: {} and {}", first.get(), second.get());
    let returned = first.get();
    drop(first);
    let again = POOL.acquire().expect("an ID was just returned");
    println!(
        "returned {returned}, then got {} (the lowest free ID)",
        again.get()
    );
    drop((second, again));

    let many = POOL.acquire_many(20);
    println!(
        "a batch of {} IDs: {:?}",
        many.len(),
        many.iter().map(Id::get).collect::<Vec<_>>()
    );
    drop(many);

    // Eight threads take IDs, hold a few at a time, and give them back.
    let rounds = 2_000;
    thread::scope(|scope| {
        for t in 0..8 {
            scope.spawn(move || {
                let mut held = Vec::new();
                for round in 0..rounds {
                    if (round + t) % 3 == 0 {
                        held.clear(); // drops the guards: the IDs go back
                    }
                    if let Some(id) = POOL.acquire() {
                        HANDED_OUT[id.get()].fetch_add(1, Ordering::Relaxed);
                        held.push(id);
                    }
                }
            });
        }
    });

    let used = HANDED_OUT
        .iter()
        .filter(|c| c.load(Ordering::Relaxed) > 0)
        .count();
    let total: u32 = HANDED_OUT.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    println!("8 threads took {total} IDs in all, reusing {used} distinct ones");
    println!("IDs still in use: {}", POOL.in_use());
    assert_eq!(POOL.in_use(), 0);
}
