//! `glibc-simple`: the shape of glibc's bench-malloc-simple.
//!
//! One thread, for each block size of 16 .. 4096 bytes and each batch length of 25, 100, 400
//! and 1600 blocks, allocates a batch of blocks of that size (stamping each) and frees them all
//! (checking each), over and over. This is the plain single-threaded cost of `malloc` and
//! `free` with a small, hot working set. The shape has one thread: `--threads` is accepted and
//! ignored.
//!
//! Measured: all the batches.

use std::time::Instant;

use fam_workloads::block::{tag, Slot};
use fam_workloads::{finish, Args, Work};

/// Block sizes.
const SIZES: [usize; 9] = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
/// Batch lengths.
const COUNTS: [usize; 4] = [25, 100, 400, 1600];
/// Blocks allocated per (size, batch length) pair at scale 1.
const BLOCKS: usize = 500_000;

fn main() {
    let args = Args::from_env(
        "glibc-simple",
        "one thread allocates a batch of same-size blocks, then frees it (bench-malloc-simple)",
    );
    let blocks = args.scaled(BLOCKS);
    let mut batch = vec![Slot::EMPTY; COUNTS[COUNTS.len() - 1]];
    let mut n = 0u64;
    let mut total = 0u64;
    let t0 = Instant::now();
    for &size in &SIZES {
        for &count in &COUNTS {
            for _ in 0..blocks.div_ceil(count) {
                for slot in &mut batch[..count] {
                    n += 1;
                    *slot = Slot::new(size, tag(0, n));
                }
                for slot in &mut batch[..count] {
                    slot.release("glibc-simple");
                }
                total += count as u64;
            }
        }
    }
    let elapsed = t0.elapsed();
    finish(
        "glibc-simple",
        &args,
        Work {
            ops: total,
            unit: "malloc/free pairs",
            elapsed,
        },
    );
}
