//! `mstress`: the shape of mimalloc's test-stress.
//!
//! Each round starts new threads. A thread allocates objects, mostly small (8..=128 bytes)
//! with an occasional big one (1 in 100 is 100 times bigger, 1 in 1,000 a thousand times,
//! 1 in 10,000 ten thousand times: up to 1.25 MiB), keeping some for its whole life and
//! others in a working set where it frees random ones; it also swaps random objects of its
//! working set with a global transfer array, so objects wander between threads and outlive
//! the thread that allocated them (the transfer array lives across rounds). Every object
//! carries its tag in its first word and its size follows from the tag, so whichever thread
//! frees an object checks its whole pattern first.
//!
//! Measured: every round, thread creation and exit included, and the final frees.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Instant;

use fam_workloads::block::{alloc_stamped, check_free, tag};
use fam_workloads::{finish, Args, Rng, Work};

/// Rounds (thread generations).
const ROUNDS: usize = 30;
/// Objects each thread allocates per round at scale 1; as many again it keeps to the end.
const ALLOCS: usize = 80_000;
/// Slots of the transfer array.
const TRANSFERS: usize = 1000;

/// The size of the object whose tag is `tag`: 8..=128 bytes, or 100, 1,000 or 10,000 times
/// that with probabilities of about 1/100, 1/1,000 and 1/10,000.
fn size_of(tag: u64) -> usize {
    let base = 8 * (1 + (tag & 15) as usize);
    match (tag >> 8) % 10_000 {
        0 => base * 10_000,
        1..=9 => base * 1_000,
        10..=99 => base * 100,
        _ => base,
    }
}

/// A fresh object with a tag of its own.
fn new_object(thread: usize, n: &mut u64) -> *mut u8 {
    *n += 1;
    let t = tag(thread, *n);
    alloc_stamped(size_of(t), t)
}

/// Checks the object `p` (its first word holds its tag, which gives its size) and frees it.
///
/// # Safety
///
/// `p` is null or a live object from [`new_object`] that nobody else uses.
unsafe fn release(p: *mut u8) {
    if p.is_null() {
        return;
    }
    // SAFETY: every object is at least 8 bytes and holds its tag in its first word.
    let t = unsafe { p.cast::<u64>().read_unaligned() };
    // SAFETY: the tag gives the size the object was allocated with, unless the first word was
    // overwritten, which the pattern check then reports.
    unsafe { check_free("mstress", p, size_of(t), t) };
}

/// One thread's life: `allocs` objects into the working set, as many kept to the end.
fn stress(id: usize, allocs: usize, transfer: &[AtomicPtr<u8>]) {
    let mut rng = Rng::new(id as u64);
    let mut n = 0u64;
    let mut data: Vec<*mut u8> = Vec::new();
    let mut retained: Vec<*mut u8> = Vec::new();
    let (mut allocs, mut retain) = (allocs, allocs);
    while allocs > 0 || retain > 0 {
        if retain == 0 || (allocs > 0 && rng.one_in(2)) {
            allocs -= 1;
            data.push(new_object(id, &mut n));
        } else {
            retain -= 1;
            retained.push(new_object(id, &mut n));
        }
        if !data.is_empty() && rng.below(100) < 66 {
            let i = rng.below(data.len());
            // SAFETY: `data` holds live objects (or null) owned by this thread.
            unsafe { release(data[i]) };
            data[i] = std::ptr::null_mut();
        }
        if !data.is_empty() && rng.below(100) < 25 {
            let i = rng.below(data.len());
            let j = rng.below(TRANSFERS);
            // AcqRel: the receiver must see the pattern the sender wrote, and the sender
            // gives up the object it puts in.
            data[i] = transfer[j].swap(data[i], Ordering::AcqRel);
        }
    }
    for p in retained.into_iter().chain(data) {
        // SAFETY: every pointer left is a live object of this thread, or null.
        unsafe { release(p) };
    }
}

fn main() {
    let args = Args::from_env(
        "mstress",
        "mimalloc's stress shape: working sets, random frees, objects passed between threads",
    );
    let allocs = args.scaled(ALLOCS);
    let transfer: Vec<AtomicPtr<u8>> = (0..TRANSFERS)
        .map(|_| AtomicPtr::new(std::ptr::null_mut()))
        .collect();
    let t0 = Instant::now();
    for round in 0..ROUNDS {
        std::thread::scope(|s| {
            for t in 0..args.threads {
                let transfer = &transfer;
                s.spawn(move || stress(round * 1024 + t + 1, allocs, transfer));
            }
        });
    }
    for slot in &transfer {
        // SAFETY: the threads are gone; what is left in the array belongs to no one else.
        unsafe { release(slot.swap(std::ptr::null_mut(), Ordering::Acquire)) };
    }
    let elapsed = t0.elapsed();
    finish(
        "mstress",
        &args,
        Work {
            ops: (2 * allocs * args.threads * ROUNDS) as u64,
            unit: "objects",
            elapsed,
        },
    );
}
