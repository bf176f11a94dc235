//! Whole workloads by name, each run once: what the peak-RSS tool runs in a fresh process.

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;

use crate::{
    alloc_free_pairs, bench_threads, cross_thread, hashmap_churn, mixed_batch, thread_churn,
    treap_churn, vec_push, ChurnConfig, ChurnPlan, CrossPlan, MixedPlan, Via, ALIGNED_CASES, PAIRS,
    PAIR_SIZES,
};

/// One benchmark workload at the benchmarks' sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Nothing: the process's own footprint, for reference.
    Baseline,
    /// [`PAIRS`] alloc/free pairs at each of [`PAIR_SIZES`], smallest first.
    Pairs,
    /// 100k mixed sizes, all allocated, then freed in shuffled order.
    Mixed,
    /// 100k `u64` pushed onto a `Vec`.
    VecPush,
    /// Hash map churn over 10k keys.
    HashMap,
    /// Treap churn over 10k keys.
    Treap,
    /// 20k blocks from a producer thread to a consumer thread.
    CrossThread,
    /// Multi-thread churn with the largest of [`bench_threads`] thread counts.
    ThreadChurn,
    /// [`PAIRS`] alloc/free pairs for each of [`ALIGNED_CASES`].
    Aligned,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 9] = [
        Workload::Baseline,
        Workload::Pairs,
        Workload::Mixed,
        Workload::VecPush,
        Workload::HashMap,
        Workload::Treap,
        Workload::CrossThread,
        Workload::ThreadChurn,
        Workload::Aligned,
    ];

    /// The workload's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Baseline => "baseline",
            Workload::Pairs => "pairs",
            Workload::Mixed => "mixed",
            Workload::VecPush => "vec_push",
            Workload::HashMap => "hashmap",
            Workload::Treap => "treap",
            Workload::CrossThread => "cross_thread",
            Workload::ThreadChurn => "thread_churn",
            Workload::Aligned => "aligned",
        }
    }

    /// The workload called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }

    /// Runs the workload once against `a`.
    pub fn run<A: GlobalAlloc + Sync>(self, a: &Via<A>) {
        match self {
            Workload::Baseline => {}
            Workload::Pairs => {
                for &size in &PAIR_SIZES {
                    let layout = Layout::from_size_align(size, 8).expect("valid layout");
                    alloc_free_pairs(&a.0, layout, PAIRS);
                }
            }
            Workload::Mixed => {
                let plan = MixedPlan::new(100_000, 1);
                let mut ptrs = Vec::with_capacity(plan.len());
                mixed_batch(&a.0, &plan, &mut ptrs);
            }
            Workload::VecPush => {
                black_box(vec_push(a, 100_000));
            }
            Workload::HashMap => {
                black_box(hashmap_churn(a, &ChurnPlan::new(10_000, 2)));
            }
            Workload::Treap => {
                black_box(treap_churn(a, &ChurnPlan::new(10_000, 3)));
            }
            Workload::CrossThread => {
                cross_thread(&a.0, &CrossPlan::new(20_000, 4), 1);
            }
            Workload::ThreadChurn => {
                let threads = bench_threads().into_iter().max().unwrap_or(4);
                thread_churn(&a.0, ChurnConfig::new(threads), 1);
            }
            Workload::Aligned => {
                for &(size, align) in &ALIGNED_CASES {
                    let layout = Layout::from_size_align(size, align).expect("valid layout");
                    alloc_free_pairs(&a.0, layout, PAIRS);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::from_name(w.name()), Some(w));
        }
        assert_eq!(Workload::from_name("nope"), None);
    }
}
