//! `glibc-thread`: the shape of glibc's bench-malloc-thread.
//!
//! Each thread keeps a working set of blocks and, again and again, picks one at random, checks
//! and frees it and allocates a new one in its place. Sizes are drawn between 4 bytes and
//! 32 KiB with density proportional to 1/size² (glibc's choice: most blocks are a few dozen
//! bytes, a few are large). The threads share nothing but the allocator.
//!
//! Measured: from the start of the threads to their end, the final frees included.

use std::sync::Barrier;
use std::time::Instant;

use fam_workloads::block::{tag, Slot};
use fam_workloads::{finish, Args, Rng, Work};

/// Blocks in each thread's working set.
const WORKING_SET: usize = 1024;
/// Replacements per thread at scale 1.
const OPS: usize = 18_000_000;
const MIN_SIZE: usize = 4;
const MAX_SIZE: usize = 32 * 1024;

fn main() {
    let args = Args::from_env(
        "glibc-thread",
        "threads replace random blocks of a working set, sizes biased to small (bench-malloc-thread)",
    );
    let ops = args.scaled(OPS);
    let start = Barrier::new(args.threads + 1);
    let t0 = std::thread::scope(|s| {
        for t in 0..args.threads {
            let start = &start;
            s.spawn(move || {
                let mut rng = Rng::new(t as u64 + 1);
                let mut set = vec![Slot::EMPTY; WORKING_SET];
                start.wait();
                for n in 0..ops {
                    let slot = &mut set[rng.below(WORKING_SET)];
                    slot.release("glibc-thread");
                    *slot = Slot::new(rng.inverse_square(MIN_SIZE, MAX_SIZE), tag(t, n as u64));
                }
                for slot in &mut set {
                    slot.release("glibc-thread: final");
                }
            });
        }
        start.wait();
        Instant::now()
    });
    let elapsed = t0.elapsed();
    finish(
        "glibc-thread",
        &args,
        Work {
            ops: (ops * args.threads) as u64,
            unit: "replacements",
            elapsed,
        },
    );
}
