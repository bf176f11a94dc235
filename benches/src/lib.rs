//! Workloads that compare fam-alloc with the system allocator, mimalloc and jemalloc.
//!
//! Every workload is a plain function generic over `A: GlobalAlloc` (or over [`Via<A>`] where it
//! needs an `allocator_api2` allocator), so the same code runs against each allocator through
//! calls on an instance: the programs that use it keep the system allocator as their own
//! `#[global_allocator]`, and the four allocators under test sit side by side in one process.
//!
//! | workload | function |
//! |---|---|
//! | alloc/free pairs of one size (and alignment) | [`alloc_free_pairs`] |
//! | 100k mixed sizes, freed in shuffled order | [`MixedPlan`], [`mixed_batch`] |
//! | `Vec` growth by `push` | [`vec_push`] |
//! | hash map churn with heap-allocated keys | [`ChurnPlan`], [`hashmap_churn`] |
//! | hash map churn with heap-allocated values (200k keys) | [`ChurnPlan`], [`hashmap_vec_churn`] |
//! | search tree churn (a treap of boxed nodes) | [`ChurnPlan`], [`treap_churn`] |
//! | producer thread allocates, consumer thread frees | [`CrossPlan`], [`cross_thread`] |
//! | several threads replacing blocks in small working sets | [`ChurnConfig`], [`thread_churn`] |
//!
//! The allocators are the statics [`FAM`], [`SYSTEM`], [`MIMALLOC`] and [`JEMALLOC`], named
//! by [`ALLOCATORS`]; [`for_each_allocator!`] runs a piece of code once with each of them.
//! [`Workload`] runs one whole workload once, which is what the peak-RSS tool measures.
//!
//! Every random choice comes from a seeded [`Rng`], so each run does the same work.

mod threads;
mod treap;
mod via;
mod workload;
mod workloads;

use std::alloc::System;

use fam_alloc::FamAlloc;
use mimalloc::MiMalloc;
use tikv_jemallocator::Jemalloc;

pub use fam_workloads::Rng;
pub use threads::{bench_threads, cross_thread, thread_churn, ChurnConfig, CrossPlan, PARCEL};
pub use treap::Treap;
pub use via::Via;
pub use workload::Workload;
pub use workloads::{
    alloc_free_pairs, hashmap_churn, hashmap_vec_churn, mixed_batch, size_label, touch,
    treap_churn, vec_push, ChurnPlan, MixedPlan, ALIGNED_CASES, PAIRS, PAIR_SIZES,
};

/// fam-alloc (every instance shares the one process-wide heap).
pub static FAM: Via<FamAlloc> = Via(FamAlloc::new());
/// The C library's `malloc`, through `std::alloc::System`.
pub static SYSTEM: Via<System> = Via(System);
/// mimalloc.
pub static MIMALLOC: Via<MiMalloc> = Via(MiMalloc);
/// jemalloc.
pub static JEMALLOC: Via<Jemalloc> = Via(Jemalloc);

/// The names of the allocators under test, in the order reports list them. They are the
/// function names of every benchmark group.
pub const ALLOCATORS: [&str; 4] = ["fam", "system", "mimalloc", "jemalloc"];

/// Runs `$body` once per allocator, in the order of [`ALLOCATORS`], with `$name` bound to the
/// allocator's name (`&'static str`) and `$a` to its static [`Via`] (`&'static Via<_>`; the
/// `GlobalAlloc` itself is `$a.0`).
///
/// ```
/// let mut names = Vec::new();
/// fam_benches::for_each_allocator!(|name, a| {
///     fam_benches::alloc_free_pairs(&a.0, std::alloc::Layout::new::<u64>(), 10);
///     names.push(name);
/// });
/// assert_eq!(names, fam_benches::ALLOCATORS);
/// ```
#[macro_export]
macro_rules! for_each_allocator {
    (|$name:ident, $a:ident| $body:block) => {{
        {
            let $name: &'static str = "fam";
            let $a = &$crate::FAM;
            $body
        }
        {
            let $name: &'static str = "system";
            let $a = &$crate::SYSTEM;
            $body
        }
        {
            let $name: &'static str = "mimalloc";
            let $a = &$crate::MIMALLOC;
            $body
        }
        {
            let $name: &'static str = "jemalloc";
            let $a = &$crate::JEMALLOC;
            $body
        }
    }};
}
