//! `glibc-thread`: the shape of glibc's bench-malloc-thread.
//!
//! Each thread keeps a working set of blocks and, again and again, picks one at random, checks
//! and frees it and allocates a new one in its place. Sizes are drawn between 4 bytes and
//! 32 KiB with density proportional to 1/size² (glibc's choice: most blocks are a few dozen
//! bytes, a few are large). The threads share nothing but the allocator.
//!
//! Measured: from the start of the threads to their end, the final frees included.

use fam_workloads::{finish, replace_randomly, Args, Work};

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
    let elapsed = replace_randomly("glibc-thread", args.threads, WORKING_SET, ops, |rng| {
        rng.inverse_square(MIN_SIZE, MAX_SIZE)
    });
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
