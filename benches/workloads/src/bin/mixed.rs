//! `mixed`: many sizes, in random order.
//!
//! Each thread, cycle after cycle, allocates a batch of objects of log-uniform sizes
//! (8 B .. 32 KiB: every doubling equally likely), frees a random half of them in random
//! order, allocates new objects of new sizes in their place, and frees the whole batch in
//! another random order. The allocator sees every size class in use at once, frees far from
//! allocation order, and memory that must be reused across sizes.
//!
//! Measured: from the start of the threads to their end.

use fam_workloads::block::{tag, Slot};
use fam_workloads::{finish, timed_threads, Args, Rng, Work};

/// Objects per batch.
const BATCH: usize = 10_000;
/// Cycles per thread at scale 1.
const CYCLES: usize = 200;
const MIN_SIZE: usize = 8;
const MAX_SIZE: usize = 32 * 1024;

fn main() {
    let args = Args::from_env(
        "mixed",
        "batches of 8 B .. 32 KiB objects allocated and freed in random order",
    );
    let cycles = args.scaled(CYCLES);
    let elapsed = timed_threads(args.threads, |t, start| {
        let mut rng = Rng::new(t as u64 + 1);
        let mut order: Vec<usize> = (0..BATCH).collect();
        let mut batch = vec![Slot::EMPTY; BATCH];
        let mut n = 0u64;
        let mut fresh = |rng: &mut Rng| {
            n += 1;
            Slot::new(rng.log_uniform(MIN_SIZE, MAX_SIZE), tag(t, n))
        };
        start.wait();
        for _ in 0..cycles {
            for slot in &mut batch {
                *slot = fresh(&mut rng);
            }
            rng.shuffle(&mut order);
            for &i in &order[..BATCH / 2] {
                batch[i].release("mixed: half");
            }
            for &i in &order[..BATCH / 2] {
                batch[i] = fresh(&mut rng);
            }
            rng.shuffle(&mut order);
            for &i in &order {
                batch[i].release("mixed: all");
            }
        }
    });
    finish(
        "mixed",
        &args,
        Work {
            ops: (cycles * args.threads * BATCH * 3 / 2) as u64,
            unit: "objects",
            elapsed,
        },
    );
}
