//! `glibc-simple`: the shape of glibc's bench-malloc-simple.
//!
//! For each block size the original runs with no arguments (16, 32 and 64 bytes) and each
//! batch length of 25, 100, 400 and 1600 blocks, allocates a batch of blocks of that size
//! (stamping each) and frees them all (checking each), over and over. This is the plain cost of
//! `malloc` and `free` with a small, hot working set. As in the original, the whole series runs
//! three times: on the main thread, on a thread started for it, and on the main thread again
//! once that thread has exited. One thread allocates at a time: `--threads` is accepted and
//! ignored.
//!
//! Measured: all the batches of the three phases, the thread's start and exit included.

use std::time::Instant;

use fam_workloads::block::{tag, Slot};
use fam_workloads::{fail, finish, Args, Work};

/// One phase: every size and batch length, `blocks` blocks each; returns the pairs made.
fn series(blocks: usize, phase: usize) -> u64 {
    let mut batch = vec![Slot::EMPTY; COUNTS[COUNTS.len() - 1]];
    let mut n = 0u64;
    let mut total = 0u64;
    for &size in &SIZES {
        for &count in &COUNTS {
            for _ in 0..blocks.div_ceil(count) {
                for slot in &mut batch[..count] {
                    n += 1;
                    *slot = Slot::new(size, tag(phase, n));
                }
                for slot in &mut batch[..count] {
                    slot.release("glibc-simple");
                }
                total += count as u64;
            }
        }
    }
    total
}

/// Block sizes (the original's defaults).
const SIZES: [usize; 3] = [16, 32, 64];
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
    let t0 = Instant::now();
    let mut total = series(blocks, 0);
    total += std::thread::spawn(move || series(blocks, 1))
        .join()
        .unwrap_or_else(|_| fail(format_args!("the second phase's thread panicked")));
    total += series(blocks, 2);
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
