//! `Arena` side by side with bumpalo, `FamAlloc` and the system allocator.
//!
//! A bump allocator cannot free one block; an arena can. The question these groups answer is
//! what that costs: how close the arena's allocation is to a bump pointer's while it also
//! supports individual frees and reuse.
//!
//! ```text
//! cargo bench -p fam-benches --bench arena
//! cargo bench -p fam-benches --bench arena -- --warm-up-time 1 --measurement-time 2
//! ```
//!
//! Groups (one iteration each does):
//! - `arena_blocks_10k`: 10,000 blocks of 16..256 bytes (the same sizes every time), then
//!   - `arena`: frees each block (`Allocator::deallocate`) on the arena's owner thread;
//!   - `arena_drop`: drops a fresh arena holding them instead (no individual frees);
//!   - `arena_reset`: resets the arena (`Arena::reset`: every block at once, chunks kept);
//!   - `bumpalo`: resets the bump allocator (it cannot free a single block);
//!   - `fam` and `system`: frees each block (`GlobalAlloc::dealloc`).
//!
//!   Each `<name>_alloc` function runs the same rounds and times only their allocations (the
//!   frees or the reset happen outside the clock): the like-for-like comparison with bumpalo.
//! - `arena_vec_push_10k`: an allocator-api2 `Vec<u64>` grown by 10,000 pushes from empty, then
//!   dropped (`bumpalo`: then reset), and `std` `Vec` on the system allocator for reference.
//! - `arena_with_capacity_10k`: a fresh allocator made with 8 MiB of room (`Arena::with_capacity`,
//!   `Bump::with_capacity`), the 10,000 blocks of `arena_blocks_10k` allocated, then dropped.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use allocator_api2::alloc::Allocator;
use allocator_api2::vec::Vec as AVec;
use bumpalo::Bump;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use fam_alloc::{Arena, FamAlloc};

/// Blocks per iteration.
const BLOCKS: usize = 10_000;

/// An instance of fam-alloc's global heap, called through `GlobalAlloc` (the benchmark binary's
/// own global allocator stays the system's).
static FAM: FamAlloc = FamAlloc::new();

/// The block layouts: sizes 16..=256 in a fixed scattered order, alignment 8.
fn layouts() -> Vec<Layout> {
    (0..BLOCKS)
        .map(|i| Layout::from_size_align(16 + (i * 97) % 241, 8).expect("valid layout"))
        .collect()
}

/// Allocates every layout from `alloc`, then frees them all with `free`; returns the time the
/// allocations took.
fn alloc_then_free(
    layouts: &[Layout],
    ptrs: &mut Vec<NonNull<u8>>,
    mut alloc: impl FnMut(Layout) -> NonNull<u8>,
    mut free: impl FnMut(NonNull<u8>, Layout),
) -> Duration {
    ptrs.clear();
    let start = Instant::now();
    for &l in layouts {
        ptrs.push(black_box(alloc(l)));
    }
    let allocating = start.elapsed();
    for (&p, &l) in ptrs.iter().zip(layouts) {
        free(p, l);
    }
    allocating
}

/// Benchmarks `round` twice: `name` times whole rounds, `name_alloc` only the allocations
/// (what `round` returns).
fn both(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut round: impl FnMut() -> Duration) {
    g.bench_function(name, |b| b.iter(&mut round));
    g.bench_function(format!("{name}_alloc"), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| round()).sum())
    });
}

fn blocks(c: &mut Criterion) {
    let layouts = layouts();
    let mut ptrs = Vec::with_capacity(BLOCKS);
    let mut g = c.benchmark_group("arena_blocks_10k");
    g.throughput(Throughput::Elements(BLOCKS as u64));

    let arena = Arena::new();
    both(&mut g, "arena", || {
        alloc_then_free(
            &layouts,
            &mut ptrs,
            |l| arena.allocate(l).expect("arena allocate").cast(),
            // SAFETY: each block was allocated from `arena` with this layout just before.
            |p, l| unsafe { arena.deallocate(p, l) },
        )
    });
    drop(arena);

    g.bench_function("arena_drop", |b| {
        b.iter(|| {
            let arena = Arena::new();
            for &l in &layouts {
                black_box(arena.allocate(l).expect("arena allocate"));
            }
            drop(arena);
        })
    });

    let mut arena = Arena::new();
    both(&mut g, "arena_reset", || {
        let start = Instant::now();
        for &l in &layouts {
            black_box(arena.allocate(l).expect("arena allocate"));
        }
        let allocating = start.elapsed();
        arena.reset().expect("a private arena resets");
        allocating
    });
    drop(arena);

    let mut bump = Bump::new();
    both(&mut g, "bumpalo", || {
        let start = Instant::now();
        for &l in &layouts {
            black_box(bump.alloc_layout(l));
        }
        let allocating = start.elapsed();
        bump.reset();
        allocating
    });
    drop(bump);

    both(&mut g, "fam", || {
        alloc_then_free(
            &layouts,
            &mut ptrs,
            // SAFETY: the layouts have non-zero sizes.
            |l| NonNull::new(unsafe { FAM.alloc(l) }).expect("fam alloc"),
            // SAFETY: each block was allocated from `FAM` with this layout just before.
            |p, l| unsafe { FAM.dealloc(p.as_ptr(), l) },
        )
    });

    both(&mut g, "system", || {
        alloc_then_free(
            &layouts,
            &mut ptrs,
            // SAFETY: the layouts have non-zero sizes.
            |l| NonNull::new(unsafe { System.alloc(l) }).expect("system alloc"),
            // SAFETY: each block was allocated from `System` with this layout just before.
            |p, l| unsafe { System.dealloc(p.as_ptr(), l) },
        )
    });
    g.finish();
}

fn vec_push(c: &mut Criterion) {
    let mut g = c.benchmark_group("arena_vec_push_10k");
    g.throughput(Throughput::Elements(BLOCKS as u64));

    let arena = Arena::new();
    g.bench_function("arena", |b| {
        b.iter(|| {
            let mut v = AVec::new_in(&arena);
            for i in 0..BLOCKS as u64 {
                v.push(black_box(i));
            }
            black_box(&v);
        })
    });
    drop(arena);

    let mut bump = Bump::new();
    g.bench_function("bumpalo", |b| {
        b.iter(|| {
            {
                let mut v = AVec::new_in(&bump);
                for i in 0..BLOCKS as u64 {
                    v.push(black_box(i));
                }
                black_box(&v);
            }
            bump.reset();
        })
    });
    drop(bump);

    g.bench_function("system", |b| {
        b.iter(|| {
            let mut v = Vec::new();
            for i in 0..BLOCKS as u64 {
                v.push(black_box(i));
            }
            black_box(&v);
        })
    });
    g.finish();
}

fn with_capacity(c: &mut Criterion) {
    const ROOM: usize = 8 << 20;
    let layouts = layouts();
    let mut g = c.benchmark_group("arena_with_capacity_10k");
    g.throughput(Throughput::Elements(BLOCKS as u64));
    g.bench_function("arena", |b| {
        b.iter(|| {
            let arena = Arena::with_capacity(ROOM);
            for &l in &layouts {
                black_box(arena.allocate(l).expect("arena allocate"));
            }
            drop(arena);
        })
    });
    g.bench_function("bumpalo", |b| {
        b.iter(|| {
            let bump = Bump::with_capacity(ROOM);
            for &l in &layouts {
                black_box(bump.alloc_layout(l));
            }
            drop(bump);
        })
    });
    g.finish();
}

/// The benchmark group (criterion's generated entry point, which carries no docs of its own).
#[allow(missing_docs)]
mod harness {
    use super::*;

    criterion_group!(benches, blocks, vec_push, with_capacity);
}
criterion_main!(harness::benches);
