//! A proptest state machine over the global heap (`FamAlloc` through `GlobalAlloc`, and the
//! C-facing `fam_alloc::raw` entry points) and a private `Arena`: random sequences of alloc,
//! alloc_zeroed, aligned alloc (up to 64 KiB), realloc (grow, shrink, same size), dealloc (on
//! this thread or another), flushes and trims, and arena resets, with sizes from 0 to 2 MiB
//! skewed small. The model, and every check made after each op, is in `common/ops.rs`, which
//! the `ops` fuzz target runs too.
//!
//! A failing sequence is shrunk (ops dropped, sizes and picks lowered) to a short one, which
//! proptest prints and records in `tests/proptest_model.proptest-regressions` (commit it: the
//! recorded cases run first on every later run). `PROPTEST_CASES=<n>` runs `n` sequences instead of the default
//! [`property::DEFAULT_CASES`]. The inputs kept in `fuzz/regressions/ops/` (crashes the fuzzer found, and
//! seeds) are replayed through the same model here, so they run without a nightly toolchain.

mod common;
#[path = "common/ops.rs"]
mod ops;
#[path = "common/property.rs"]
mod property;

use fam_alloc::FamAlloc;
use ops::{Heap, Model, Op, Resize, MAX_ALIGN_LOG2, MAX_LIVE, MAX_SIZE};
use proptest::prelude::*;

#[global_allocator]
static A: FamAlloc = FamAlloc::new();

/// The longest sequence.
const MAX_OPS: usize = 192;

/// Sizes from 0 to 2 MiB, most of them small: 60 % up to 128 B, 25 % up to 4 KiB, 12 % up to
/// 256 KiB, 3 % up to 2 MiB (above the largest slab class, 1 MiB, they are large blocks).
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        60 => 0..=128usize,
        25 => 0..=4096usize,
        12 => 0..=256usize << 10,
        3 => 0..=MAX_SIZE,
    ]
}

fn heap() -> impl Strategy<Value = Heap> {
    prop_oneof![Just(Heap::Global), Just(Heap::Raw), Just(Heap::Arena)]
}

fn resize() -> impl Strategy<Value = Resize> {
    prop_oneof![
        4 => size().prop_map(Resize::Grow),
        4 => size().prop_map(Resize::Shrink),
        1 => Just(Resize::Same),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly one of the 8 newest blocks (a pick counts from the newest).
    let pick = prop_oneof![3 => 0..8usize, 1 => 0..MAX_LIVE];
    prop_oneof![
        30 => (heap(), size(), 0..=3u32, prop::bool::weighted(0.25)).prop_map(
            |(heap, size, align_log2, zeroed)| Op::Alloc { heap, size, align_log2, zeroed }
        ),
        // Aligned allocations: 16 B to 64 KiB (above 128 KiB the large path would take them).
        8 => (heap(), size(), 4..=MAX_ALIGN_LOG2, prop::bool::weighted(0.25)).prop_map(
            |(heap, size, align_log2, zeroed)| Op::Alloc { heap, size, align_log2, zeroed }
        ),
        18 => (pick.clone(), resize(), any::<bool>())
            .prop_map(|(pick, resize, zeroed)| Op::Realloc { pick, resize, zeroed }),
        25 => (pick, prop::bool::weighted(0.05))
            .prop_map(|(pick, remote)| Op::Dealloc { pick, remote }),
        2 => any::<bool>().prop_map(|trim| Op::Flush { trim }),
        1 => Just(Op::ResetArena),
    ]
}

proptest! {
    #![proptest_config(property::config())]

    /// Every op's block checks out (see `common/ops.rs`), and all blocks are intact at the end.
    #[test]
    fn random_ops_keep_every_block_intact(ops in prop::collection::vec(op(), 1..=MAX_OPS)) {
        let mut m = Model::new();
        for op in &ops {
            m.apply(op);
        }
        m.finish();
    }
}

/// A fixed sequence that reaches every kind of op, so the model's own bookkeeping is exercised
/// on every run, whatever the random cases draw.
#[test]
fn fixed_sequence_reaches_every_op() {
    let alloc = |heap, size, align_log2, zeroed| Op::Alloc {
        heap,
        size,
        align_log2,
        zeroed,
    };
    let realloc = |pick, resize, zeroed| Op::Realloc {
        pick,
        resize,
        zeroed,
    };
    let dealloc = |pick, remote| Op::Dealloc { pick, remote };
    let mut ops = Vec::new();
    for heap in [Heap::Global, Heap::Raw, Heap::Arena] {
        ops.extend([
            alloc(heap, 0, 0, false),
            alloc(heap, 24, 3, true),
            alloc(heap, 5000, MAX_ALIGN_LOG2, false),
            alloc(heap, MAX_SIZE, 6, true),
            alloc(heap, fam_alloc::MAX_SMALL_SIZE, 4, false),
            // Picks count from the newest block: 0 is the 1 MiB one, 4 the empty one.
            realloc(3, Resize::Grow(100_000), true),
            realloc(1, Resize::Shrink(MAX_SIZE - 40), false),
            realloc(0, Resize::Grow(1), true),
            realloc(4, Resize::Same, false),
        ]);
    }
    ops.extend([
        Op::Flush { trim: false },
        dealloc(2, true),
        dealloc(7, false),
        Op::Flush { trim: true },
        Op::ResetArena,
        alloc(Heap::Arena, 3, 1, true),
        dealloc(0, true),
    ]);
    let mut m = Model::new();
    for op in &ops {
        m.apply(op);
    }
    let c = m.finish();
    assert!(
        c.alloc == 16
            && c.zeroed == 7
            && c.aligned == 6
            && c.large == 3
            && c.grow == 6
            && c.shrink == 3
            && c.same == 3
            && c.remote == 2
            && c.flush == 2
            && c.reset == 1
            && c.skipped == 0,
        "{c:?}"
    );
}

/// The inputs in `fuzz/regressions/ops/`, decoded as the fuzz target decodes them, run through
/// the model.
#[test]
fn fuzz_regressions_replay() {
    for (path, data) in property::inputs("ops") {
        let ops = ops::decode(&data);
        eprintln!("{}: {} ops", path.display(), ops.len());
        let mut m = Model::new();
        for op in &ops {
            m.apply(op);
        }
        m.finish();
    }
}
