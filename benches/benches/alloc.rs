//! fam-alloc side by side with the system allocator, mimalloc and jemalloc.
//!
//! Every workload is a criterion group whose functions are the four allocators (`fam`, `system`,
//! `mimalloc`, `jemalloc`), called through `GlobalAlloc` on their instances in this one process;
//! the benchmark binary's own global allocator stays the system default. The workloads live in
//! the `fam_benches` library.
//!
//! ```text
//! cargo bench -p fam-benches --bench alloc                      # everything (several minutes)
//! cargo bench -p fam-benches --bench alloc -- pair_             # one family of groups
//! cargo bench -p fam-benches --bench alloc -- --warm-up-time 1 --measurement-time 2
//! FAM_BENCH_THREADS=2,4,8 cargo bench -p fam-benches --bench alloc -- thread_churn
//! cargo run --release -p fam-benches --bin fam-bench-summary    # the ratio table
//! ```
//!
//! Group names: `pair_<size>` (100 alloc/free pairs per iteration), `aligned_<size>_at_<align>`
//! (the same, aligned), `mixed_100k`, `vec_push_100k`, `vec_push_1m`, `hashmap_churn_10k`,
//! `hashmap_vec_churn_200k`, `treap_churn_10k`, `cross_thread_20k` and `thread_churn_<n>t` (one
//! round of the workload per iteration). A `BTreeMap<u64, String>` churn is not among them: std's
//! `BTreeMap` takes no allocator parameter on stable Rust, so it cannot be pointed at each
//! allocator in one process; the treap churn stands for node-based trees.

use std::alloc::Layout;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::Throughput;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use fam_benches::{
    alloc_free_pairs, bench_threads, cross_thread, for_each_allocator, hashmap_churn,
    hashmap_vec_churn, mixed_batch, size_label, thread_churn, treap_churn, vec_push, ChurnConfig,
    ChurnPlan, CrossPlan, MixedPlan, ALIGNED_CASES, PAIRS, PAIR_SIZES,
};

/// Settings for groups whose iterations take milliseconds: a fixed iteration count per sample
/// and fewer samples, so they fit the measurement time.
fn slow(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
}

/// Alloc/free pairs, one group per size.
fn pairs(c: &mut Criterion) {
    for size in PAIR_SIZES {
        let layout = Layout::from_size_align(size, 8).expect("valid layout");
        let mut g = c.benchmark_group(format!("pair_{}", size_label(size)));
        g.throughput(Throughput::Elements(PAIRS as u64));
        if size >= 256 << 10 {
            slow(&mut g);
        }
        for_each_allocator!(|name, a| {
            g.bench_function(name, |b| b.iter(|| alloc_free_pairs(&a.0, layout, PAIRS)));
        });
        g.finish();
    }
}

/// Aligned alloc/free pairs, one group per size and alignment.
fn aligned(c: &mut Criterion) {
    for (size, align) in ALIGNED_CASES {
        let layout = Layout::from_size_align(size, align).expect("valid layout");
        let name = format!("aligned_{}_at_{}", size_label(size), size_label(align));
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(PAIRS as u64));
        for_each_allocator!(|name, a| {
            g.bench_function(name, |b| b.iter(|| alloc_free_pairs(&a.0, layout, PAIRS)));
        });
        g.finish();
    }
}

/// 100k mixed sizes, all allocated, then freed in shuffled order.
fn mixed(c: &mut Criterion) {
    let plan = MixedPlan::new(100_000, 1);
    let mut ptrs = Vec::with_capacity(plan.len());
    let mut g = c.benchmark_group("mixed_100k");
    g.throughput(Throughput::Elements(plan.len() as u64));
    slow(&mut g);
    for_each_allocator!(|name, a| {
        g.bench_function(name, |b| b.iter(|| mixed_batch(&a.0, &plan, &mut ptrs)));
    });
    g.finish();
}

/// `Vec` growth: 100k and 1M pushes.
fn vec_growth(c: &mut Criterion) {
    for (label, n) in [("vec_push_100k", 100_000), ("vec_push_1m", 1_000_000)] {
        let mut g = c.benchmark_group(label);
        g.throughput(Throughput::Elements(n));
        slow(&mut g);
        for_each_allocator!(|name, a| {
            g.bench_function(name, |b| b.iter(|| black_box(vec_push(a, n))));
        });
        g.finish();
    }
}

/// Hash map and search tree churn over 10k keys.
fn containers(c: &mut Criterion) {
    let plan = ChurnPlan::new(10_000, 2);
    let mut g = c.benchmark_group("hashmap_churn_10k");
    slow(&mut g);
    for_each_allocator!(|name, a| {
        g.bench_function(name, |b| b.iter(|| black_box(hashmap_churn(a, &plan))));
    });
    g.finish();

    let plan = ChurnPlan::new(200_000, 4);
    let mut g = c.benchmark_group("hashmap_vec_churn_200k");
    slow(&mut g);
    for_each_allocator!(|name, a| {
        g.bench_function(name, |b| b.iter(|| black_box(hashmap_vec_churn(a, &plan))));
    });
    g.finish();

    let plan = ChurnPlan::new(10_000, 3);
    let mut g = c.benchmark_group("treap_churn_10k");
    slow(&mut g);
    for_each_allocator!(|name, a| {
        g.bench_function(name, |b| b.iter(|| black_box(treap_churn(a, &plan))));
    });
    g.finish();
}

/// Producer/consumer across two threads, 20k blocks per iteration.
fn cross(c: &mut Criterion) {
    let plan = CrossPlan::new(20_000, 4);
    let mut g = c.benchmark_group("cross_thread_20k");
    g.throughput(Throughput::Elements(plan.len() as u64));
    slow(&mut g);
    for_each_allocator!(|name, a| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| cross_thread(&a.0, &plan, iters))
        });
    });
    g.finish();
}

/// Multi-thread churn for each count of `FAM_BENCH_THREADS` (default 2 and 4).
fn churn(c: &mut Criterion) {
    for threads in bench_threads() {
        let cfg = ChurnConfig::new(threads);
        let mut g = c.benchmark_group(format!("thread_churn_{threads}t"));
        g.throughput(Throughput::Elements((cfg.ops * threads) as u64));
        slow(&mut g);
        for_each_allocator!(|name, a| {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| thread_churn(&a.0, cfg, iters))
            });
        });
        g.finish();
    }
}

/// The harness's defaults; command-line flags such as `--measurement-time` override them.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The benchmark group (criterion's generated entry point, which carries no docs of its own).
#[allow(missing_docs)]
mod harness {
    use super::*;

    criterion_group! {
        name = benches;
        config = config();
        targets = pairs, aligned, mixed, vec_growth, containers, cross, churn
    }
}
criterion_main!(harness::benches);
