//! A pre-fork server in miniature: the parent maps a shared arena and forks workers; each worker
//! computes its share of a job into a `Vec` in the arena and publishes it in a results table
//! (in the arena too); the parent waits, reads every result back at the same address, checks it
//! against its own computation, prints a summary, and exits non-zero on any mismatch.
//!
//! Only the arena is shared: the rest of each worker's heap is its own copy-on-write copy.
//!
//! Run: `cargo run --release -p fam-alloc --example shared_fork [workers]`

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use fam_alloc::Arena;

/// Numbers each worker searches for primes.
const SPAN: u64 = 200_000;
/// The most workers the results table has room for.
const MAX_WORKERS: usize = 32;

/// Where a worker publishes its result: a `Vec<u64>` of the shared arena, as raw parts.
/// `ptr` is written last (Release), so a non-zero `ptr` means the rest is there.
#[derive(Default)]
struct Slot {
    ptr: AtomicUsize,
    len: AtomicUsize,
    cap: AtomicUsize,
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// The primes of worker `w`'s range, in `alloc`.
fn primes_in<A: allocator_api2::alloc::Allocator>(w: usize, alloc: A) -> Vec<u64, A> {
    let start = w as u64 * SPAN;
    let mut v = Vec::new_in(alloc);
    v.extend((start..start + SPAN).filter(|&n| is_prime(n)));
    v
}

fn main() -> ExitCode {
    let workers: usize = std::env::args()
        .nth(1)
        .map_or(4, |a| a.parse().expect("worker count"))
        .clamp(1, MAX_WORKERS);
    // 16 chunks of 4 MiB: room for every worker's results.
    let arena = Arena::shared(16).expect("map the shared arena");
    let table: &[Slot; MAX_WORKERS] = Box::leak(Box::new_in(Default::default(), &arena));

    let mut pids = std::vec::Vec::new();
    for (w, slot) in table.iter().enumerate().take(workers) {
        // SAFETY: fork has no memory-safety preconditions; the child below only computes, writes
        // to the shared arena and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let v = primes_in(w, &arena);
            let (ptr, len, cap) = (v.as_ptr() as usize, v.len(), v.capacity());
            core::mem::forget(v); // the parent takes it over
            slot.len.store(len, Ordering::Relaxed);
            slot.cap.store(cap, Ordering::Relaxed);
            slot.ptr.store(ptr, Ordering::Release);
            // Blocks cached by this process go back to the shared pool before it exits.
            arena.flush_thread_cache();
            // SAFETY: leaves the worker without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        pids.push(pid);
    }

    let mut ok = true;
    for (w, &pid) in pids.iter().enumerate() {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            println!("worker {w} (pid {pid}) failed: status {status:#x}");
            ok = false;
            continue;
        }
        let slot = &table[w];
        let ptr = slot.ptr.load(Ordering::Acquire) as *mut u64;
        if ptr.is_null() || !arena.contains(ptr.cast()) {
            println!("worker {w} published no result in the arena");
            ok = false;
            continue;
        }
        // SAFETY: the worker built this Vec in the shared arena, which is mapped at the same
        // address here, published its parts and exited without touching it again.
        let got = unsafe {
            Vec::from_raw_parts_in(
                ptr,
                slot.len.load(Ordering::Relaxed),
                slot.cap.load(Ordering::Relaxed),
                &arena,
            )
        };
        let want = primes_in(w, allocator_api2::alloc::Global);
        let matches = got[..] == want[..];
        println!(
            "worker {w}: {:>6} primes in [{:>9}, {:>9}), largest {:>9}  {}",
            got.len(),
            w as u64 * SPAN,
            (w as u64 + 1) * SPAN,
            got.last().copied().unwrap_or(0),
            if matches { "ok" } else { "MISMATCH" }
        );
        ok &= matches;
        // Freed by the parent, although a worker allocated it.
        drop(got);
    }
    let u = arena.usage();
    println!(
        "shared arena: chunks free {} of 16, held by its pool {}",
        u.chunks_free.unwrap_or(0),
        u.chunks_held
    );
    if ok {
        println!("all {workers} results check out");
        ExitCode::SUCCESS
    } else {
        println!("results do not match");
        ExitCode::FAILURE
    }
}
