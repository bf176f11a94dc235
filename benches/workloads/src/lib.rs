//! Allocator workloads that run on whatever `malloc` the process has.
//!
//! Each workload is a program of its own (`src/bin/*.rs`) in the shape of one of the classic
//! allocator benchmarks. They allocate through the C library's `malloc`, `free` and `realloc`
//! (the functions in [`block`]), never through a Rust allocator of their own, so the allocator
//! under test is chosen from outside: the C library's by default, or any other with
//! `LD_PRELOAD=liballoc.so workload ...`. `cargo xtask bench` runs every workload once per
//! allocator and compares them.
//!
//! | program | shape |
//! |---|---|
//! | `larson` | Larson's server: threads replace random objects in their own arrays; each round new threads take over the arrays of the old ones |
//! | `xmalloc` | xmalloc-test: producer threads allocate, consumer threads free |
//! | `cache-thrash` | Hoard's cache-thrash: each thread allocates small objects and writes to them (active false sharing) |
//! | `cache-scratch` | Hoard's cache-scratch: objects allocated by one thread are freed by others, which then allocate and write (passive false sharing) |
//! | `mstress` | mimalloc's test-stress: a large working set per thread, random replacement, objects handed between threads, occasional big blocks |
//! | `mixed` | many sizes (8 B .. 32 KiB) allocated and freed in random order |
//! | `glibc-simple` | glibc's bench-malloc-simple: one thread allocates N blocks of one size and frees them |
//! | `glibc-thread` | glibc's bench-malloc-thread: threads replace random blocks of a working set, sizes biased to small |
//! | `large` | large blocks, 64 KiB .. 32 MiB, every page written |
//! | `realloc` | many buffers grown by small steps with `realloc` |
//! | `malloc-large` | mimalloc-bench's malloc-large: one thread replaces random blocks of 20 slots with new 5 .. 25 MiB blocks, each zeroed in full |
//! | `rss-after-free` | one thread allocates 512 MiB of 16 B .. 1 MiB blocks, frees all but every 64th, waits 1 s and reports the resident set (`rss_after_free_kib=`) |
//!
//! Every program takes `--threads N` and `--scale F` (the work done is proportional to `F`; at
//! 1.0 a run takes a second or a few on two cores), checks its own results (every block
//! carries a pattern derived from a tag, written after `malloc` and checked before `free`; a
//! mismatch ends the program with exit status 1), and ends its output with
//!
//! ```text
//! malloc_from=<the shared object that defines the malloc in use>
//! cpu_s=<user + system CPU seconds of the whole process>
//! time_s=<seconds of the measured part>
//! peak_rss_kib=<VmHWM of /proc/self/status>
//! ```
//!
//! (`rss-after-free` prints `rss_after_free_kib=` and `live_kib=` just before them.)
//!
//! Every random choice comes from a seeded [`Rng`], so every run does the same work.

pub mod args;
pub mod block;
pub mod report;
mod rng;

pub use args::Args;
pub use report::{cpu_seconds, current_rss_kib, fail, finish, peak_rss_kib, Work};
pub use rng::{mix, Rng};

use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Runs `work(t, start)` for every `t` in `0..threads`, each on a thread of its own. Each calls
/// `start.wait()` once its setup is done; the clock starts when every thread (and the caller)
/// has, and stops when the last one finishes. Returns that time.
pub fn timed_threads<F: Fn(usize, &Barrier) + Sync>(threads: usize, work: F) -> Duration {
    let start = Barrier::new(threads + 1);
    let t0 = std::thread::scope(|s| {
        for t in 0..threads {
            let (start, work) = (&start, &work);
            s.spawn(move || work(t, start));
        }
        start.wait();
        Instant::now()
    });
    t0.elapsed()
}

/// The working-set workload: each of `threads` threads keeps `working_set` blocks and `ops`
/// times replaces a random one by a new block of `size(rng)` bytes. Every block is checked
/// before it is freed (a mismatch names `name`). Returns the time of the replacements.
pub fn replace_randomly(
    name: &str,
    threads: usize,
    working_set: usize,
    ops: usize,
    size: impl Fn(&mut Rng) -> usize + Sync,
) -> Duration {
    timed_threads(threads, |t, start| {
        let mut rng = Rng::new(t as u64 + 1);
        let mut set = vec![block::Slot::EMPTY; working_set];
        start.wait();
        for n in 0..ops {
            let slot = &mut set[rng.below(working_set)];
            slot.release(name);
            *slot = block::Slot::new(size(&mut rng), block::tag(t, n as u64));
        }
        for slot in &mut set {
            slot.release(name);
        }
    })
}
