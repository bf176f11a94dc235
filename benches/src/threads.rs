//! The multi-threaded workloads, timed from inside so thread start-up stays out of the number.
//!
//! Both spawn their threads (scoped, so they borrow the allocator), line them up on a barrier,
//! and time from the barrier to the last join: thread creation is outside, each thread's exit
//! (where a caching allocator hands its cache back) is inside. Each call runs `rounds` rounds of
//! the work, which is how criterion's `iter_custom` asks for `iters` iterations.
//!
//! - [`cross_thread`]: a producer allocates blocks and ships their pointers over a bounded
//!   channel to a consumer that frees them, so every free is a free of another thread's block.
//! - [`thread_churn`]: each thread keeps a small working set of live blocks and replaces random
//!   ones; its frees are all local, the threads contend only inside the allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use std::alloc::handle_alloc_error;
use std::sync::mpsc::sync_channel;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::{touch, Rng};

/// Blocks per channel message of [`cross_thread`]. Sending them in parcels keeps the channel's
/// own cost (a lock and possibly a wake-up per message) small next to the allocator's.
pub const PARCEL: usize = 32;

/// Parcels the channel of [`cross_thread`] holds before the producer waits.
const CHANNEL_BOUND: usize = 64;

/// Block sizes are multiples of this; they are allocated with this alignment.
const ALIGN: usize = 8;

/// A parcel of blocks in flight from the producer to the consumer (plain data: the producer
/// sends a copy and refills its own).
#[derive(Clone, Copy)]
struct Parcel {
    ptrs: [*mut u8; PARCEL],
    sizes: [u32; PARCEL],
    len: usize,
}

// SAFETY: the blocks belong to the allocator, not to a thread; the producer gives up every
// pointer it puts in a parcel, so only the receiving thread uses them.
unsafe impl Send for Parcel {}

/// The blocks [`cross_thread`] sends in one round.
#[derive(Clone, Debug)]
pub struct CrossPlan {
    sizes: Vec<u32>,
}

impl CrossPlan {
    /// `blocks` sizes in 64..=1024 bytes (multiples of 8, each equally likely), drawn from the
    /// generator seeded with `seed`.
    pub fn new(blocks: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let sizes = (0..blocks)
            .map(|_| (rng.range(64 / ALIGN, 1024 / ALIGN) * ALIGN) as u32)
            .collect();
        Self { sizes }
    }

    /// Blocks per round.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether a round sends nothing.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }
}

/// A block layout of `size` bytes (non-zero, a multiple of [`ALIGN`]).
fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("valid layout")
}

/// Producer/consumer: the producer thread allocates every block of `plan` (touching each) and
/// sends the pointers in parcels over a bounded channel; the consumer thread frees them. Repeats
/// `rounds` times; returns the time from the start line to both threads' exit.
pub fn cross_thread<A: GlobalAlloc + Sync>(a: &A, plan: &CrossPlan, rounds: u64) -> Duration {
    let (tx, rx) = sync_channel::<Parcel>(CHANNEL_BOUND);
    let start = Barrier::new(3);
    thread::scope(|s| {
        let producer = s.spawn(|| {
            start.wait();
            let mut parcel = Parcel {
                ptrs: [core::ptr::null_mut(); PARCEL],
                sizes: [0; PARCEL],
                len: 0,
            };
            for _ in 0..rounds {
                for &size in &plan.sizes {
                    let l = layout(size as usize);
                    // SAFETY: sizes are at least 64.
                    let p = unsafe { a.alloc(l) };
                    if p.is_null() {
                        handle_alloc_error(l);
                    }
                    // SAFETY: `p` is a fresh block of at least one byte.
                    unsafe { touch(p, size as u8) };
                    parcel.ptrs[parcel.len] = p;
                    parcel.sizes[parcel.len] = size;
                    parcel.len += 1;
                    if parcel.len == PARCEL {
                        tx.send(parcel).expect("consumer alive");
                        parcel.len = 0;
                    }
                }
            }
            if parcel.len > 0 {
                tx.send(parcel).expect("consumer alive");
            }
            // Dropping `tx` here closes the channel and ends the consumer.
            drop(tx);
        });
        let consumer = s.spawn(|| {
            start.wait();
            let mut freed = 0usize;
            for parcel in rx {
                for (&p, &size) in parcel.ptrs[..parcel.len]
                    .iter()
                    .zip(&parcel.sizes[..parcel.len])
                {
                    // SAFETY: the producer allocated `p` with this layout and sent it only here.
                    unsafe { a.dealloc(p, layout(size as usize)) };
                }
                freed += parcel.len;
            }
            black_box(freed)
        });
        start.wait();
        let t0 = Instant::now();
        producer.join().expect("producer panicked");
        let freed = consumer.join().expect("consumer panicked");
        let elapsed = t0.elapsed();
        assert_eq!(freed as u64, plan.len() as u64 * rounds);
        elapsed
    })
}

/// The shape of a [`thread_churn`] run.
#[derive(Clone, Copy, Debug)]
pub struct ChurnConfig {
    /// Threads running at once.
    pub threads: usize,
    /// Replacements (one free and one alloc) per thread per round.
    pub ops: usize,
    /// Live blocks each thread keeps (its working set).
    pub slots: usize,
    /// Smallest block size.
    pub min_size: usize,
    /// Largest block size; sizes are log-uniform between the two.
    pub max_size: usize,
}

impl ChurnConfig {
    /// The benchmark's shape for `threads` threads: 50k replacements per thread over a working set
    /// of 512 blocks of 16..=1024 bytes.
    pub const fn new(threads: usize) -> Self {
        Self {
            threads,
            ops: 50_000,
            slots: 512,
            min_size: 16,
            max_size: 1024,
        }
    }
}

/// Multi-thread churn: `cfg.threads` threads each run `rounds` rounds of `cfg.ops` replacements
/// (pick a random slot of its working set, free the block there if any, allocate a block of a
/// random size, touch it), freeing what is left at the end of each round. Returns the time from
/// the start line to every thread's exit.
pub fn thread_churn<A: GlobalAlloc + Sync>(a: &A, cfg: ChurnConfig, rounds: u64) -> Duration {
    assert!(cfg.slots > 0 && cfg.min_size >= ALIGN && cfg.min_size <= cfg.max_size);
    let start = Barrier::new(cfg.threads + 1);
    thread::scope(|s| {
        let workers: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    let mut rng = Rng::new(0xC0FFEE + t as u64);
                    let mut live: Vec<(*mut u8, usize)> =
                        vec![(core::ptr::null_mut(), 0); cfg.slots];
                    start.wait();
                    for _ in 0..rounds {
                        for op in 0..cfg.ops {
                            let slot = &mut live[rng.below(cfg.slots)];
                            if !slot.0.is_null() {
                                // SAFETY: the slot holds a block allocated with this layout.
                                unsafe { a.dealloc(slot.0, layout(slot.1)) };
                            }
                            let size = rng.log_uniform(cfg.min_size, cfg.max_size) & !(ALIGN - 1);
                            let l = layout(size);
                            // SAFETY: `size >= min_size >= ALIGN > 0`.
                            let p = unsafe { a.alloc(l) };
                            if p.is_null() {
                                handle_alloc_error(l);
                            }
                            // SAFETY: `p` is a fresh block of at least one byte.
                            unsafe { touch(p, op as u8) };
                            *slot = (p, size);
                        }
                        for slot in &mut live {
                            if !slot.0.is_null() {
                                // SAFETY: as above; the slot is emptied so it is freed once.
                                unsafe { a.dealloc(slot.0, layout(slot.1)) };
                                slot.0 = core::ptr::null_mut();
                            }
                        }
                    }
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for w in workers {
            w.join().expect("worker panicked");
        }
        t0.elapsed()
    })
}

/// The thread counts of the multi-thread churn benchmark: `FAM_BENCH_THREADS` when set (one
/// count or a comma-separated list, e.g. `8` or `2,4,8`), else 2 and 4.
pub fn bench_threads() -> Vec<usize> {
    parse_threads(std::env::var("FAM_BENCH_THREADS").ok().as_deref())
}

/// [`bench_threads`] on the variable's value; unparsable or zero entries are skipped.
fn parse_threads(var: Option<&str>) -> Vec<usize> {
    let counts: Vec<usize> = var
        .unwrap_or("")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .collect();
    if counts.is_empty() {
        vec![2, 4]
    } else {
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts() {
        assert_eq!(parse_threads(None), [2, 4]);
        assert_eq!(parse_threads(Some("8")), [8]);
        assert_eq!(parse_threads(Some("1, 3,x,0")), [1, 3]);
        assert_eq!(parse_threads(Some("")), [2, 4]);
    }

    #[test]
    fn every_allocator_runs_the_threaded_workloads() {
        let plan = CrossPlan::new(1_000, 5);
        let cfg = ChurnConfig {
            ops: 2_000,
            ..ChurnConfig::new(3)
        };
        crate::for_each_allocator!(|_name, a| {
            cross_thread(&a.0, &plan, 2);
            thread_churn(&a.0, cfg, 2);
        });
    }
}
