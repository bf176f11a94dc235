//! `malloc-large`: the shape of mimalloc-bench's malloc-large.
//!
//! One thread keeps 20 slots and, 2000 times at scale 1, picks a slot at random and puts in it
//! a new block of a uniformly random size between 5 MiB and 25 MiB, zeroed in full; the block
//! the slot held before (if any) is freed after the new one is made, as the original's
//! `buffers[i] = std::make_unique<char[]>(n)` does (the new array is allocated and
//! value-initialised before the assignment deletes the old one), so up to 21 blocks are live.
//! Every block is far beyond the sizes allocators keep in size classes, so this is the cost
//! of getting big blocks again and again: an allocator that keeps freed large blocks (or their
//! pages) and reuses them pays for the zeroing only, one that unmaps them and maps fresh ones
//! pays for the page faults (and the kernel's zeroing of the pages) as well.
//!
//! How it differs from the original: the block comes from `malloc` (the C library's, or the
//! preloaded allocator's) where the original calls C++ `operator new[]`, and it is zeroed with
//! `ptr::write_bytes` (a `memset`) after `malloc` returns, as the original's value
//! initialisation does after `operator new[]`: never with `calloc`, so an allocator's `calloc`
//! shortcut for fresh, already-zero pages is not credited. Each block also carries a check
//! pattern the original lacks, written over the zeroes and checked before the block is freed:
//! the suite's pattern of its tag in the first 64 bytes ([`block::stamp`]) and a word derived
//! from the tag in the last 8, not the word per page the other workloads add (the `memset`
//! already touches every page, and writing and reading back a word per page added a fifth or
//! more to the run's time, the same for every allocator, diluting the differences). The sizes
//! and slots come from the suite's seeded generator, not `std::mt19937`, and the iteration
//! count scales with `--scale`. The original's own clock is never printed: mimalloc-bench times
//! the whole process, whose exit frees the blocks still live, so the final frees are timed here
//! too. The shape has one thread: `--threads` is accepted and ignored.
//!
//! Measured: the whole loop, the final frees included.

use std::hint::black_box;
use std::ptr;
use std::time::Instant;

use fam_workloads::block::{self, Slot};
use fam_workloads::{fail, finish, Args, Rng, Work};

/// Slots, as in the original (`kNumBuffers`).
const SLOTS: usize = 20;
/// Blocks allocated at scale 1, as in the original (`kNumIterations`).
const ITERATIONS: usize = 2000;
const MIN_SIZE: usize = 5 * 1024 * 1024;
const MAX_SIZE: usize = 25 * 1024 * 1024;

/// The word at the end of a block tagged `tag`.
fn last_word(tag: u64) -> u64 {
    !tag
}

/// `malloc(size)`, every byte zeroed with `memset`, then marked with `tag`: the suite's
/// pattern in its first [`block::HEAD`] bytes and [`last_word`] in its last 8.
fn zeroed_block(size: usize, tag: u64) -> Slot {
    // Through `black_box` first: the compiler folds a `malloc` followed by a `memset` of zero
    // over the whole block into `calloc`, which an allocator may serve with untouched zero
    // pages, and the zeroing would not be measured.
    let p = black_box(block::alloc(size));
    // SAFETY: `p` is a fresh block of `size` bytes.
    unsafe { ptr::write_bytes(p, 0, size) };
    // The zeroes are never read back in full; handing the pointer to `black_box` keeps the
    // compiler from dropping the `memset` as a dead store before `free`.
    let p = black_box(p);
    // SAFETY: `size >= MIN_SIZE > HEAD + 8`, so both marks are inside the block.
    unsafe {
        block::stamp(p, block::HEAD, tag);
        ptr::write_unaligned(p.add(size - 8).cast::<u64>(), last_word(tag));
    }
    Slot { ptr: p, size, tag }
}

/// Checks the marks of the block in `slot` (if any) and frees it; the slot is empty afterwards.
fn release(slot: &mut Slot) {
    if slot.ptr.is_null() {
        return;
    }
    let Slot { ptr: p, size, tag } = *slot;
    // SAFETY: a non-empty slot holds a live block of `size` bytes from `zeroed_block`.
    unsafe {
        block::check("malloc-large", p, block::HEAD, tag);
        let last = ptr::read_unaligned(p.add(size - 8).cast::<u64>());
        if last != last_word(tag) {
            fail(format_args!(
                "malloc-large: block {p:p} of {size} bytes (tag {tag:#018x}) differs in its \
                 last word: {last:#018x}"
            ));
        }
        block::free(p);
    }
    *slot = Slot::EMPTY;
}

fn main() {
    let args = Args::from_env(
        "malloc-large",
        "one thread (--threads is ignored) replaces random blocks of 20 slots with new zeroed \
         blocks of 5..25 MiB (mimalloc-bench's malloc-large)",
    );
    let iterations = args.scaled(ITERATIONS);
    let mut rng = Rng::new(42);
    let mut slots = [Slot::EMPTY; SLOTS];
    let t0 = Instant::now();
    for n in 0..iterations {
        let i = rng.below(SLOTS);
        let size = rng.range(MIN_SIZE, MAX_SIZE);
        let new = zeroed_block(size, block::tag(0, n as u64));
        release(&mut slots[i]);
        slots[i] = new;
    }
    for slot in &mut slots {
        release(slot);
    }
    let elapsed = t0.elapsed();
    finish(
        "malloc-large",
        &args,
        Work {
            ops: iterations as u64,
            unit: "zeroed large blocks",
            elapsed,
        },
    );
}
