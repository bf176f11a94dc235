//! `larson`: Larson and Krishnan's server simulation.
//!
//! Each thread owns an array of live objects (random sizes, 8..=1000 bytes) and replaces
//! random ones: check the old object's pattern, free it, allocate a new one and stamp it. After
//! each round the threads exit and new threads take over the arrays, each the array another
//! thread filled, so most frees hit objects a thread that no longer exists allocated (the
//! objects a server hands from one connection's thread to the next).
//!
//! Measured: every round, thread creation and exit included, and the final frees.

use std::time::Instant;

use fam_workloads::block::{tag, Slot};
use fam_workloads::{finish, Args, Rng, Work};

/// Objects per thread's array.
const SLOTS: usize = 2_000;
/// Rounds (thread generations).
const ROUNDS: usize = 10;
/// Replacements per thread per round at scale 1.
const OPS: usize = 1_800_000;
const MIN_SIZE: usize = 8;
const MAX_SIZE: usize = 1000;

fn main() {
    let args = Args::from_env(
        "larson",
        "Larson's server: threads replace random objects, arrays handed to new threads each round",
    );
    let ops = args.scaled(OPS);
    let t0 = Instant::now();
    let mut arrays: Vec<Vec<Slot>> = (0..args.threads)
        .map(|t| {
            let mut rng = Rng::new(t as u64);
            (0..SLOTS)
                .map(|i| Slot::new(rng.range(MIN_SIZE, MAX_SIZE), tag(t, i as u64)))
                .collect()
        })
        .collect();
    for round in 0..ROUNDS {
        // Hand every array to the next thread of the new generation.
        arrays.rotate_left(1);
        std::thread::scope(|s| {
            for (t, array) in arrays.iter_mut().enumerate() {
                s.spawn(move || {
                    let id = round * 1024 + t + 1;
                    let mut rng = Rng::new(id as u64);
                    for n in 0..ops {
                        let slot = &mut array[rng.below(SLOTS)];
                        slot.release("larson");
                        *slot = Slot::new(rng.range(MIN_SIZE, MAX_SIZE), tag(id, n as u64));
                    }
                });
            }
        });
    }
    for slot in arrays.iter_mut().flatten() {
        slot.release("larson: final");
    }
    let elapsed = t0.elapsed();
    finish(
        "larson",
        &args,
        Work {
            ops: (ops * ROUNDS * args.threads) as u64,
            unit: "replacements",
            elapsed,
        },
    );
}
