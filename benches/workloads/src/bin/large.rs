//! `large`: large blocks, 64 KiB .. 32 MiB.
//!
//! Each thread keeps a few large blocks and, again and again, checks and frees a random one
//! and allocates another of a log-uniform size between 64 KiB and 32 MiB in its place,
//! writing one word in every page of it (as a program filling the block would touch every
//! page). The allocator's choice between reusing memory it holds and asking the OS for fresh
//! pages (which the writes then fault in) decides the time; how much it keeps decides the
//! peak RSS.
//!
//! Measured: from the start of the threads to their end, the final frees included.

use std::sync::Barrier;
use std::time::Instant;

use fam_workloads::block::{tag, Slot};
use fam_workloads::{finish, Args, Rng, Work};

/// Blocks in each thread's working set.
const WORKING_SET: usize = 4;
/// Replacements per thread at scale 1.
const OPS: usize = 400;
const MIN_SIZE: usize = 64 * 1024;
const MAX_SIZE: usize = 32 * 1024 * 1024;

fn main() {
    let args = Args::from_env(
        "large",
        "threads replace random large blocks (64 KiB .. 32 MiB), every page written",
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
                    slot.release("large");
                    *slot = Slot::new(rng.log_uniform(MIN_SIZE, MAX_SIZE), tag(t, n as u64));
                }
                for slot in &mut set {
                    slot.release("large: final");
                }
            });
        }
        start.wait();
        Instant::now()
    });
    let elapsed = t0.elapsed();
    finish(
        "large",
        &args,
        Work {
            ops: (ops * args.threads) as u64,
            unit: "large blocks",
            elapsed,
        },
    );
}
