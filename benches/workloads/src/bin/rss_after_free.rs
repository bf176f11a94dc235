//! `rss-after-free`: how much memory the allocator gives back once most of it is freed.
//!
//! One thread allocates blocks of log-uniform sizes between 16 B and 1 MiB until they add up to
//! 512 MiB at scale 1 (about 3,600 blocks), stamping each (which writes a word in every 4 KiB
//! page of it, so every page is resident), keeps every 64th block in allocation order live and
//! frees all the others in a shuffled order. It then sleeps 1 s, longer than the delay after
//! which an allocator that purges on a timer returns freed pages (fam-alloc's default is meant
//! to be at most 250 ms), calls `malloc(64)` and `free` once (so an allocator that purges only
//! from inside its own calls gets a chance to), and reads the resident set size from
//! `/proc/self/statm`. The live 1/64 of the blocks is scattered over the whole heap, so an
//! allocator gives memory back only if it returns the free pages between live blocks, not just
//! the free tail of its heap.
//!
//! Before the usual lines it prints `rss_after_free_kib=` (the resident set after the sleep,
//! KiB: what `cargo xtask bench` compares) and `live_kib=` (the bytes of the blocks still live,
//! from their sizes: the least an allocator could hold, program and libraries aside). The
//! figure depends on each allocator's purge policy: one that waits longer than the sleep (or
//! purges only on a later call that never comes) is measured holding what it has not yet
//! returned.
//!
//! It ports no classic program: the classic benchmarks report the peak RSS (as every workload
//! here does too), not what is left resident once the program has freed its memory. It has one
//! thread: `--threads` is accepted and ignored.
//!
//! Measured: the allocations and the frees (the sleep, the RSS reading and the final frees of
//! the blocks kept live are not timed).

use std::time::{Duration, Instant};

use fam_workloads::block::{self, tag, Slot};
use fam_workloads::{current_rss_kib, fail, finish, Args, Rng, Work};

/// Requested bytes at scale 1.
const TOTAL: usize = 512 * 1024 * 1024;
const MIN_SIZE: usize = 16;
const MAX_SIZE: usize = 1024 * 1024;
/// One block in this many (every `KEEP`-th in allocation order) stays live.
const KEEP: usize = 64;
/// How long to wait for the allocator to give memory back.
const SLEEP: Duration = Duration::from_millis(1000);

fn main() {
    let args = Args::from_env(
        "rss-after-free",
        "one thread (--threads is ignored) allocates 512 MiB of 16 B..1 MiB blocks, frees all \
         but every 64th in shuffled order, sleeps 1 s and reports the resident set",
    );
    let total = args.scaled(TOTAL);
    let mut rng = Rng::new(1);
    let mut sizes = Vec::new();
    let mut requested = 0;
    while requested < total {
        let size = rng.log_uniform(MIN_SIZE, MAX_SIZE);
        sizes.push(size);
        requested += size;
    }
    let mut order: Vec<usize> = (0..sizes.len()).filter(|i| i % KEEP != 0).collect();
    rng.shuffle(&mut order);
    let mut blocks = vec![Slot::EMPTY; sizes.len()];

    let t0 = Instant::now();
    for (n, (slot, &size)) in blocks.iter_mut().zip(&sizes).enumerate() {
        *slot = Slot::new(size, tag(0, n as u64));
    }
    for &i in &order {
        blocks[i].release("rss-after-free");
    }
    let elapsed = t0.elapsed();

    std::thread::sleep(SLEEP);
    // Through `black_box`: the compiler knows `malloc` and would drop an unused pair.
    let p = std::hint::black_box(block::alloc(64));
    // SAFETY: `p` is the live block just allocated.
    unsafe { block::free(p) };
    let Some(rss_kib) = current_rss_kib() else {
        fail(format_args!("cannot read /proc/self/statm"))
    };
    let live: usize = blocks.iter().map(|b| b.size).sum();
    for slot in &mut blocks {
        slot.release("rss-after-free");
    }
    println!("rss_after_free_kib={rss_kib}");
    println!("live_kib={}", live / 1024);
    finish(
        "rss-after-free",
        &args,
        Work {
            ops: sizes.len() as u64,
            unit: "blocks allocated and freed",
            elapsed,
        },
    );
}
