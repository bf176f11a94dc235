//! `cache-thrash`: Hoard's test of active false sharing.
//!
//! Each thread repeatedly allocates a small object (8 bytes), writes every byte of it many
//! times, checks it and frees it. If the allocator hands two threads objects on the same
//! cache line, their writes fight over that line and the run slows down many times over;
//! allocators that give each thread its own memory run at the speed of the writes.
//!
//! Measured: from the start of the threads to their end.

use fam_workloads::block::{alloc, free, write_repeatedly};
use fam_workloads::{finish, timed_threads, Args, Work};

/// Object size: several fit in one cache line.
const OBJ_SIZE: usize = 8;
/// Objects each thread allocates at scale 1.
const ITERATIONS: usize = 16_000;
/// Passes of writes over each object.
const REPETITIONS: usize = 50_000;

fn main() {
    let args = Args::from_env(
        "cache-thrash",
        "each thread allocates small objects and writes them repeatedly (active false sharing)",
    );
    let iterations = args.scaled(ITERATIONS);
    let elapsed = timed_threads(args.threads, |t, start| {
        start.wait();
        for i in 0..iterations {
            let p = alloc(OBJ_SIZE);
            // SAFETY: `p` is a fresh block of OBJ_SIZE bytes of this thread; it is
            // freed once and not used after.
            unsafe {
                write_repeatedly(p, OBJ_SIZE, REPETITIONS, t + i);
                free(p);
            }
        }
    });
    finish(
        "cache-thrash",
        &args,
        Work {
            ops: (iterations * args.threads) as u64,
            unit: "objects written",
            elapsed,
        },
    );
}
