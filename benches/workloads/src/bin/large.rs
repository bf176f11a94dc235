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

use fam_workloads::{finish, replace_randomly, Args, Work};

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
    let elapsed = replace_randomly("large", args.threads, WORKING_SET, ops, |rng| {
        rng.log_uniform(MIN_SIZE, MAX_SIZE)
    });
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
