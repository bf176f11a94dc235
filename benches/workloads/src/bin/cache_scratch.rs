//! `cache-scratch`: Hoard's test of passive false sharing.
//!
//! The main thread allocates one small object (8 bytes) per thread, one after the other, so
//! they likely share a cache line, and hands one to each thread. Each thread checks and frees
//! the object it was given, then repeatedly allocates an object of the same size, writes every
//! byte of it many times, checks it and frees it. An allocator that gives the freed object (or
//! its neighbours) to the thread that freed it makes the threads write to one cache line and
//! the run slows down many times over.
//!
//! Measured: from the start of the threads to their end.

use std::sync::Barrier;
use std::time::Instant;

use fam_workloads::block::{alloc, free, tag, write_repeatedly, Slot};
use fam_workloads::{finish, Args, Work};

/// Object size: several fit in one cache line.
const OBJ_SIZE: usize = 8;
/// Objects each thread allocates at scale 1.
const ITERATIONS: usize = 16_000;
/// Passes of writes over each object.
const REPETITIONS: usize = 50_000;

fn main() {
    let args = Args::from_env(
        "cache-scratch",
        "threads free objects allocated by the main thread, then allocate and write (passive false sharing)",
    );
    let iterations = args.scaled(ITERATIONS);
    let given: Vec<Slot> = (0..args.threads)
        .map(|t| Slot::new(OBJ_SIZE, tag(0, t as u64)))
        .collect();
    let start = Barrier::new(args.threads + 1);
    let t0 = std::thread::scope(|s| {
        for (t, mut obj) in given.into_iter().enumerate() {
            let start = &start;
            s.spawn(move || {
                start.wait();
                // The main thread allocated and stamped `obj` and handed it only here.
                obj.release("cache-scratch: given object");
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
        }
        start.wait();
        Instant::now()
    });
    let elapsed = t0.elapsed();
    finish(
        "cache-scratch",
        &args,
        Work {
            ops: (iterations * args.threads) as u64,
            unit: "objects written",
            elapsed,
        },
    );
}
