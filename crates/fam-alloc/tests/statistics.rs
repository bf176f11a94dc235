//! The statistics of the global heap: exact counts for known allocation patterns, the reports
//! read back into the numbers they were written from, and the report `FAM_STATS` writes at exit.
//!
//! The counters are process-wide, so the tests of this binary run one at a time ([`serial`]) and
//! measure deltas around their patterns. Each pattern uses a size class of its own that nothing
//! else in the process touches: blocks of 20 to 40 KiB, whose classes (5, 6 and 7 times a power
//! of two) no vector of the harness's or the parsers' small records grows into, and which no
//! other test of this binary uses. Their counts are exact even while the harness allocates in
//! other classes, and an earlier test's thread that exits meanwhile (flushing its caches) does
//! not touch them.
//!
//! Figures that span several classes, heaps or threads are compared inside one *quiet* report
//! ([`quiet_report`]): the report is written into a buffer reserved beforehand (so writing it
//! allocates nothing) between two snapshots, and is kept only when the two snapshots are equal.
//! Allocation and free counts only grow, so equal snapshots mean nothing happened in between.
//!
//! A thread of the harness may still be starting or exiting when a test begins (the previous
//! test's thread exits after it released the lock). Thread counts are therefore checked against
//! the heap ids the reports list: a thread that was listed before and is gone after exited, one
//! that appears started ([`assert_thread_counts`]).
//!
//! The exit report is checked in child processes: the binary runs itself with `--exact child`
//! and [`CHILD_VAR`] naming what the child does.

// The per-class counts these tests check exist only with the `stats` feature (on by default).
#![cfg(feature = "stats")]

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use fam_alloc::{FamAlloc, Format, Snapshot, CHUNK_SIZE, VERSION};
use stats::parse::{self, ParsedClass, ParsedHeap, ParsedJson};

#[global_allocator]
static A: FamAlloc = FamAlloc::new();

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// The environment variable that makes the `child` test do something (see [`child`]).
const CHILD_VAR: &str = "FAM_STATS_TEST_CHILD";

/// Bytes a bucket aims to cache at most; with [`BUCKET_MAX`] and a floor of one block this is
/// the allocator's rule for a bucket's capacity.
const BUCKET_BYTES: u64 = 64 * 1024;
/// Most blocks any bucket caches.
const BUCKET_MAX: u64 = 256;

/// Bytes of the header in front of a large block's payload (alignment up to 64).
const LARGE_HEADER: usize = 64;

// ---------------------------------------------------------------------------------------------
// Helpers

/// The tests run one at a time: the counters are the whole process's.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The class a request of `size` bytes (alignment 8) gets: the smallest whose block holds it.
fn class_of(size: usize) -> usize {
    let snap = fam_alloc::stats();
    let class = snap
        .class_slice()
        .iter()
        .position(|c| c.block_size as usize >= size)
        .unwrap_or_else(|| panic!("no class holds {size} bytes"));
    assert_eq!(
        Some(snap.classes[class].block_size as usize),
        fam_alloc::raw::block_size(size),
        "the snapshot's block sizes are the allocator's"
    );
    class
}

/// Most blocks a bucket of blocks of `block_size` bytes caches.
fn bucket_cap(block_size: u64) -> u64 {
    (BUCKET_BYTES / block_size).clamp(1, BUCKET_MAX)
}

/// Blocks a refill brings into an empty bucket at most (one of them is handed out at once).
fn refill_size(block_size: u64) -> u64 {
    (bucket_cap(block_size) / 2).max(1)
}

/// The bucket length after `frees` frees into a bucket of capacity `cap` holding `len` blocks:
/// a free into a full bucket first gives back all but the newest `cap / 2`.
fn after_frees(mut len: u64, frees: u64, cap: u64) -> u64 {
    for _ in 0..frees {
        if len == cap {
            len = cap / 2;
        }
        len += 1;
    }
    len
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("a valid layout")
}

/// Allocates a block of `size` bytes through the global allocator and fills it with `fill`.
fn alloc_block(size: usize, fill: u8) -> usize {
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { A.alloc(layout(size)) };
    assert!(!p.is_null(), "out of memory for {size} bytes");
    // SAFETY: `p` holds `size` writable bytes.
    unsafe { p.write_bytes(fill, size) };
    p as usize
}

/// Frees a block that [`alloc_block`] returned for `size`, after checking its first and last
/// bytes still hold `fill`.
fn free_block(p: usize, size: usize, fill: u8) {
    let p = p as *mut u8;
    // SAFETY: `p` is a live block of `size` bytes.
    let (first, last) = unsafe { (p.read(), p.add(size - 1).read()) };
    assert_eq!((first, last), (fill, fill), "block {p:p} lost its content");
    // SAFETY: `p` was allocated with this layout and is not used again.
    unsafe { A.dealloc(p, layout(size)) };
}

/// A report written while nothing changed, with the snapshot it shows and the calling thread's
/// cached bytes read right after it (nothing on this thread allocates in between).
struct Quiet {
    snap: Snapshot,
    text: String,
    own_cached: usize,
}

/// Writes the report in `format` into a reserved buffer between two equal snapshots (retrying
/// while other threads allocate). Writing allocates nothing, so the report shows exactly the
/// snapshot returned.
fn quiet_report(format: Format) -> Quiet {
    let mut capacity = 256 * KIB;
    for _ in 0..200 {
        let mut text = String::with_capacity(capacity);
        let reserved = text.capacity();
        let before = fam_alloc::stats();
        fam_alloc::write_stats(&mut text, format).expect("a String takes any report");
        let own_cached = fam_alloc::thread_cached_bytes();
        let after = fam_alloc::stats();
        if text.capacity() != reserved {
            capacity = text.capacity() * 2;
            continue;
        }
        if before == after {
            return Quiet {
                snap: before,
                text,
                own_cached,
            };
        }
        thread::yield_now();
    }
    panic!("the counters never stood still for a report");
}

/// A quiet JSON report, parsed.
fn json_report() -> (Quiet, ParsedJson) {
    let q = quiet_report(Format::Json);
    let parsed =
        parse::json(&q.text).unwrap_or_else(|e| panic!("the JSON report parses: {e}\n{}", q.text));
    (q, parsed)
}

/// The class entry `class` of a heap, if the heap lists it (it lists active classes only).
fn class_in(heap: &ParsedHeap, class: usize) -> Option<&ParsedClass> {
    heap.classes.iter().find(|c| c.class == class)
}

/// The one heap whose `class` shows exactly `allocs` allocations and `frees` frees.
fn heap_with<'a>(
    report: &'a ParsedJson,
    class: usize,
    allocs: u64,
    frees: u64,
    text: &str,
) -> &'a ParsedHeap {
    let found: Vec<&ParsedHeap> = report
        .heaps
        .iter()
        .filter(|h| class_in(h, class).is_some_and(|c| c.allocs == allocs && c.frees == frees))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one heap has class {class} at {allocs}/{frees}:\n{text}"
    );
    found[0]
}

/// The ids of the live heaps a report lists (heap 0, the exited threads, left out).
fn live_ids(report: &ParsedJson) -> BTreeSet<u64> {
    report
        .heaps
        .iter()
        .map(|h| h.id)
        .filter(|&id| id != 0)
        .collect()
}

/// The exited threads' heap (id 0), which every report lists first.
fn exited_heap(report: &ParsedJson) -> &ParsedHeap {
    let h = &report.heaps[0];
    assert_eq!(h.id, 0, "heap 0 comes first");
    h
}

/// Checks the thread counts of two reports: between them the test's own `mine` threads started
/// and exited (they are listed in neither), and any other thread listed in only one of them
/// started or exited.
fn assert_thread_counts(before: &ParsedJson, after: &ParsedJson, mine: u64) {
    let (b, a) = (live_ids(before), live_ids(after));
    assert_eq!(
        before.threads_live,
        b.len() as u64,
        "a live heap per live thread"
    );
    assert_eq!(
        after.threads_live,
        a.len() as u64,
        "a live heap per live thread"
    );
    let others_exited = b.difference(&a).count() as u64;
    let others_started = a.difference(&b).count() as u64;
    assert_eq!(
        after.threads_exited - before.threads_exited,
        mine + others_exited,
        "exited threads: the test's {mine} and {others_exited} other(s)"
    );
    assert_eq!(
        after.threads_live + others_exited,
        before.threads_live + others_started,
        "live threads"
    );
}

/// Per-class sums over the heaps of a JSON report: `(allocs, frees, cached)`.
fn heap_sums(report: &ParsedJson, num_classes: usize) -> Vec<(u64, u64, u64)> {
    let mut sums = vec![(0, 0, 0); num_classes];
    for h in &report.heaps {
        for c in &h.classes {
            sums[c.class].0 += c.allocs;
            sums[c.class].1 += c.frees;
            sums[c.class].2 += c.cached;
        }
    }
    sums
}

/// Chunks a large block of `size` bytes (alignment up to 64) occupies.
fn large_chunks(size: usize) -> u64 {
    (size + LARGE_HEADER).div_ceil(CHUNK_SIZE) as u64
}

/// Every decimal number in `text` (a `-` sign included), as written.
fn numbers(text: &str) -> Vec<i128> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = if i > 0 && bytes[i - 1] == b'-' {
                i - 1
            } else {
                i
            };
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            out.push(text[start..i].parse().expect("a run of digits is a number"));
        } else {
            i += 1;
        }
    }
    out
}

/// Asserts that no number in `text` looks like a negative value that wrapped around to an
/// unsigned one (anything at or past 2^63).
fn assert_nothing_wrapped(text: &str) {
    for n in numbers(text) {
        assert!(
            n < 1 << 63,
            "{n} looks like a wrapped negative value:\n{text}"
        );
    }
}

/// Runs the `child` test of this binary in a child process with `mode` and the given
/// environment changes (`None` removes a variable).
fn run_child(mode: &str, env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, mode)
        .env_remove("FAM_STATS")
        .env_remove("FAM_STATS_FILE");
    for &(k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("the test binary runs");
    assert!(
        out.status.success(),
        "the child ({mode}) failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Known patterns, exact counts

/// One thread allocates and frees blocks of one class: the class's counts move by exactly the
/// pattern, and the cached count follows the bucket rules (a refill brings at most half the
/// capacity, a free into a full bucket keeps half) and agrees with the thread's actual bucket.
#[test]
fn one_thread_counts_exactly() {
    let _g = serial();
    const SIZE: usize = 20_000;
    const N: usize = 100;
    const M: usize = 70;
    let class = class_of(SIZE);
    // A fresh thread, so its heap's counts are the pattern's alone.
    thread::spawn(move || {
        let mut ptrs = Vec::with_capacity(N);
        fam_alloc::flush_thread_cache();
        let s0 = fam_alloc::stats();
        let c0 = s0.classes[class];
        let size = c0.block_size;
        let (cap, refill) = (bucket_cap(size), refill_size(size));

        for i in 0..N {
            ptrs.push(alloc_block(SIZE, i as u8));
        }
        let s1 = fam_alloc::stats();
        let c1 = s1.classes[class];
        assert_eq!(c1.allocs - c0.allocs, N as u64, "allocs");
        assert_eq!(c1.frees, c0.frees, "frees");
        assert_eq!(c1.in_use() - c0.in_use(), N as i64, "blocks in use");
        assert_eq!(
            c1.in_use_bytes() - c0.in_use_bytes(),
            (N as u64 * size) as i64,
            "bytes in use"
        );
        // Allocations only take from the bucket: what is left of the last refill stays.
        assert!(
            c1.cached < refill,
            "cached {} after allocating only",
            c1.cached
        );
        assert!(c1.peak_blocks >= c1.in_use() as u64 + c1.cached, "{c1:?}");

        // The heap's own view says the same, and its cache is the thread's real bucket.
        let (q, report) = json_report();
        let mine = heap_with(&report, class, N as u64, 0, &q.text);
        let mc = class_in(mine, class).expect("the class is active");
        assert_eq!(
            mc.cached, q.snap.classes[class].cached,
            "only this heap caches it"
        );
        assert_eq!(mc.in_use, N as i64);
        assert_eq!(
            mine.cached_bytes, q.own_cached as u64,
            "counted cache = real bucket"
        );
        let after_allocs = mc.cached;

        for (i, &p) in ptrs[..M].iter().enumerate() {
            free_block(p, SIZE, i as u8);
        }
        let s2 = fam_alloc::stats();
        let c2 = s2.classes[class];
        assert_eq!(c2.allocs - c0.allocs, N as u64, "allocs");
        assert_eq!(c2.frees - c0.frees, M as u64, "frees");
        assert_eq!(c2.in_use() - c0.in_use(), (N - M) as i64, "blocks in use");
        assert_eq!(
            c2.cached,
            after_frees(after_allocs, M as u64, cap),
            "cached after {M} frees into a bucket of {cap} holding {after_allocs}"
        );
        assert!(c2.cached <= cap);

        let (q, report) = json_report();
        let mine = heap_with(&report, class, N as u64, M as u64, &q.text);
        assert_eq!(
            mine.cached_bytes, q.own_cached as u64,
            "counted cache = real bucket"
        );
        assert_eq!(
            class_in(mine, class).unwrap().in_use_bytes,
            ((N - M) as u64 * size) as i64
        );

        // After a flush the thread caches nothing, in any class.
        let mut text = String::with_capacity(256 * KIB);
        fam_alloc::flush_thread_cache();
        fam_alloc::write_stats(&mut text, Format::Json).unwrap();
        assert_eq!(fam_alloc::thread_cached_bytes(), 0);
        let report = parse::json(&text).unwrap();
        let mine = heap_with(&report, class, N as u64, M as u64, &text);
        assert_eq!(mine.cached_bytes, 0, "flushed:\n{text}");
        assert!(
            mine.classes.iter().all(|c| c.cached == 0),
            "flushed:\n{text}"
        );
        assert_eq!(fam_alloc::stats().classes[class].cached, 0);

        for (i, &p) in ptrs[M..].iter().enumerate() {
            free_block(p, SIZE, (M + i) as u8);
        }
        let c3 = fam_alloc::stats().classes[class];
        assert_eq!(
            (c3.allocs - c0.allocs, c3.frees - c0.frees),
            (N as u64, N as u64)
        );
        assert_eq!(c3.in_use(), c0.in_use(), "everything freed");
        assert_eq!(c3.cached, after_frees(0, (N - M) as u64, cap));
    })
    .join()
    .unwrap();
}

/// Thread A allocates, thread B frees: the process totals balance, A's heap shows the
/// allocations and B's the frees, with B's blocks in use negative (not wrapped) in every
/// report. When both exit, their counts move to heap 0.
#[test]
fn cross_thread_frees() {
    let _g = serial();
    const SIZE: usize = 23_000;
    const N: usize = 200;
    let class = class_of(SIZE);
    let block = fam_alloc::stats().classes[class].block_size;
    let (_, before) = json_report();
    let s0 = fam_alloc::stats().classes[class];

    let (to_b, b_gets) = mpsc::channel::<Vec<usize>>();
    let (done_tx, done) = mpsc::channel::<&'static str>();
    let (a_go, a_wait) = mpsc::channel::<()>();
    let (b_go, b_wait) = mpsc::channel::<()>();
    let a_done = done_tx.clone();
    let a = thread::spawn(move || {
        let ptrs: Vec<usize> = (0..N).map(|i| alloc_block(SIZE, i as u8)).collect();
        to_b.send(ptrs).unwrap();
        a_done.send("a").unwrap();
        a_wait.recv().unwrap();
    });
    let b = thread::spawn(move || {
        let ptrs = b_gets.recv().unwrap();
        for (i, &p) in ptrs.iter().enumerate() {
            free_block(p, SIZE, i as u8);
        }
        done_tx.send("b").unwrap();
        b_wait.recv().unwrap();
    });
    let mut finished = [done.recv().unwrap(), done.recv().unwrap()];
    finished.sort_unstable();
    assert_eq!(finished, ["a", "b"]);

    // Both threads wait, alive: their heaps are listed.
    let (q, report) = json_report();
    let c = q.snap.classes[class];
    assert_eq!(c.allocs - s0.allocs, N as u64);
    assert_eq!(c.frees - s0.frees, N as u64);
    assert_eq!(c.in_use(), s0.in_use(), "the process totals balance");
    let heap_a = heap_with(&report, class, N as u64, 0, &q.text);
    let heap_b = heap_with(&report, class, 0, N as u64, &q.text);
    assert_ne!(heap_a.id, heap_b.id);
    let cb = class_in(heap_b, class).unwrap();
    assert_eq!(cb.in_use, -(N as i64), "B freed what it never allocated");
    assert_eq!(cb.in_use_bytes, -((N as u64 * block) as i64));
    let ca = class_in(heap_a, class).unwrap();
    assert_eq!(
        (ca.in_use, ca.in_use_bytes),
        (N as i64, (N as u64 * block) as i64)
    );
    assert!(
        q.text
            .contains(&format!("\"frees\": {N}, \"in_use\": -{N}, ")),
        "the negative count is written as such:\n{}",
        q.text
    );
    assert_nothing_wrapped(&q.text);

    // The bmalloc lines say the same of B's heap.
    let qb = quiet_report(Format::Bmalloc);
    let bm = parse::bmalloc(&qb.text).unwrap();
    let line = bm
        .classes
        .iter()
        .find(|l| l.heap == heap_b.id && l.class == class)
        .unwrap_or_else(|| panic!("a B line for heap {}:\n{}", heap_b.id, qb.text));
    assert_eq!(
        (line.allocs, line.frees, line.in_use),
        (0, N as u64, -(N as i64))
    );
    assert_eq!(line.used, -((N as u64 * block) as i64));
    assert!(qb.text.contains(&format!(
        "B {}/{class}({block}) {} 0/{N}/-{N} -{}/",
        heap_b.id,
        line.cached,
        N as u64 * block
    )));
    assert_nothing_wrapped(&qb.text);

    a_go.send(()).unwrap();
    b_go.send(()).unwrap();
    a.join().unwrap();
    b.join().unwrap();

    // Both exited: heap 0 took their counts, and B's cached blocks went back to the pool.
    let (q, after) = json_report();
    let zero_before = class_in(exited_heap(&before), class)
        .copied()
        .unwrap_or_default();
    let zero_after = class_in(exited_heap(&after), class).copied().unwrap();
    assert_eq!(zero_after.allocs - zero_before.allocs, N as u64);
    assert_eq!(zero_after.frees - zero_before.frees, N as u64);
    assert_eq!(zero_after.cached, 0, "heap 0 caches nothing");
    assert!(!live_ids(&after).contains(&heap_a.id) && !live_ids(&after).contains(&heap_b.id));
    assert_eq!(
        q.snap.classes[class].cached, s0.cached,
        "the threads' caches are back:\n{}",
        q.text
    );
    assert_thread_counts(&before, &after, 2);
}

/// A thread that allocates, frees and exits: its counts move to heap 0, `threads_exited` grows
/// by one, and the blocks it cached are no longer counted as cached.
#[test]
fn thread_exit_folds_into_heap_zero() {
    let _g = serial();
    const SIZE: usize = 27_000;
    const K: usize = 10;
    let class = class_of(SIZE);
    let block = fam_alloc::stats().classes[class].block_size;
    let (qb, before) = json_report();
    let s0 = qb.snap.classes[class];

    // A barrier, not a channel: waiting on it allocates nothing, so the cache the worker
    // measures is still its cache when the report is written.
    let sync = Arc::new(Barrier::new(2));
    let own_cached = Arc::new(AtomicUsize::new(0));
    let t = thread::spawn({
        let (sync, own_cached) = (Arc::clone(&sync), Arc::clone(&own_cached));
        move || {
            let mut ptrs = Vec::with_capacity(K);
            for i in 0..K {
                ptrs.push(alloc_block(SIZE, i as u8));
            }
            for (i, &p) in ptrs.iter().enumerate() {
                free_block(p, SIZE, i as u8);
            }
            own_cached.store(fam_alloc::thread_cached_bytes(), Ordering::SeqCst);
            sync.wait();
            sync.wait();
        }
    });
    sync.wait();

    let (q, alive) = json_report();
    let heap = heap_with(&alive, class, K as u64, K as u64, &q.text);
    assert_eq!(
        heap.cached_bytes,
        own_cached.load(Ordering::SeqCst) as u64,
        "counted cache = the worker's real buckets"
    );
    let cached = class_in(heap, class).unwrap().cached;
    // The allocations leave less than a refill cached; the frees follow the bucket rules.
    let cap = bucket_cap(block);
    assert!(
        (0..refill_size(block)).any(|left| after_frees(left, K as u64, cap) == cached),
        "cached {cached} after {K} frees into a bucket of {cap}"
    );
    assert_eq!(q.snap.classes[class].cached - s0.cached, cached);
    assert!(live_ids(&alive).contains(&heap.id));
    let id = heap.id;

    sync.wait();
    t.join().unwrap();

    let (q, after) = json_report();
    assert!(!live_ids(&after).contains(&id), "the heap left the list");
    let zero_before = class_in(exited_heap(&before), class)
        .copied()
        .unwrap_or_default();
    let zero_after = class_in(exited_heap(&after), class).copied().unwrap();
    assert_eq!(zero_after.allocs - zero_before.allocs, K as u64);
    assert_eq!(zero_after.frees - zero_before.frees, K as u64);
    assert_eq!(zero_after.cached, 0);
    let c = q.snap.classes[class];
    assert_eq!(
        (c.allocs - s0.allocs, c.frees - s0.frees),
        (K as u64, K as u64)
    );
    assert_eq!(
        c.cached, s0.cached,
        "the exited thread's bucket was flushed"
    );
    assert_thread_counts(&before, &after, 1);
}

/// Large blocks: counts, bytes and chunks exact; the peak covers the most bytes live at once and
/// comes down to the present on `reset_peaks`; realloc in place and moved keeps the bytes exact.
#[test]
fn large_blocks_count_exactly() {
    let _g = serial();
    fam_alloc::reset_peaks();
    let s0 = fam_alloc::stats();
    assert_eq!(
        s0.large.peak_bytes, s0.large.bytes_in_use,
        "reset to the present"
    );
    let sizes = [2 * MIB, 5 * MIB + 1, 9 * MIB];
    let mut most = s0.large.bytes_in_use;
    let mut blocks = Vec::with_capacity(sizes.len());
    for (i, &size) in sizes.iter().enumerate() {
        blocks.push(alloc_block(size, 0x10 + i as u8));
        most = most.max(fam_alloc::stats().large.bytes_in_use);
    }
    let s1 = fam_alloc::stats();
    let total: u64 = sizes.iter().map(|&s| s as u64).sum();
    assert_eq!(s1.large.allocs - s0.large.allocs, 3);
    assert_eq!(s1.large.frees, s0.large.frees);
    assert_eq!(s1.large.bytes_in_use - s0.large.bytes_in_use, total);
    assert_eq!(
        s1.chunks.large - s0.chunks.large,
        sizes.iter().map(|&s| large_chunks(s)).sum::<u64>()
    );
    assert_eq!(s1.chunks.large - s0.chunks.large, 1 + 2 + 3);
    assert!(s1.large.peak_bytes >= most && most == s1.large.bytes_in_use);

    // Free the biggest: the peak stays, until it is reset to what is live now.
    free_block(blocks.pop().unwrap(), sizes[2], 0x12);
    let s2 = fam_alloc::stats();
    assert_eq!(s2.large.frees - s0.large.frees, 1);
    assert_eq!(
        s2.large.bytes_in_use,
        s1.large.bytes_in_use - sizes[2] as u64
    );
    assert_eq!(s2.chunks.large, s1.chunks.large - 3);
    assert!(s2.large.peak_bytes >= most);
    fam_alloc::reset_peaks();
    let s3 = fam_alloc::stats();
    assert_eq!(s3.large.peak_bytes, s3.large.bytes_in_use);
    assert_eq!(s3.large.bytes_in_use, s2.large.bytes_in_use);

    // Realloc in place: 2 MiB to 3 MiB stays in its one chunk.
    let p = blocks[0] as *mut u8;
    // SAFETY: `p` is a live block of 2 MiB allocated with this layout.
    let q = unsafe { A.realloc(p, layout(2 * MIB), 3 * MIB) };
    assert_eq!(q, p, "the same chunk holds 3 MiB");
    // SAFETY: the grown block holds 3 MiB; the first 2 MiB were kept.
    unsafe {
        assert_eq!(q.add(2 * MIB - 1).read(), 0x10);
        q.add(2 * MIB).write_bytes(0x10, MIB);
    }
    let s4 = fam_alloc::stats();
    assert_eq!(s4.large.bytes_in_use, s3.large.bytes_in_use + MIB as u64);
    assert_eq!(s4.chunks.large, s3.chunks.large);
    assert_eq!(
        (s4.large.allocs, s4.large.frees),
        (s3.large.allocs, s3.large.frees),
        "a realloc is neither an allocation nor a free"
    );
    assert_eq!(s4.large.peak_bytes, s4.large.bytes_in_use, "a new peak");

    // Realloc across chunk counts: 3 MiB to 6 MiB (one chunk to two), moved or not. The run
    // cache is emptied first: a cached run may be up to twice as long as a block needs.
    fam_alloc::trim();
    // SAFETY: `q` is a live block of 3 MiB.
    let r = unsafe { A.realloc(q, layout(3 * MIB), 6 * MIB) };
    assert!(!r.is_null());
    // SAFETY: the block holds 6 MiB; the first 3 MiB were kept.
    unsafe {
        assert_eq!((r.read(), r.add(3 * MIB - 1).read()), (0x10, 0x10));
        r.add(3 * MIB).write_bytes(0x10, 3 * MIB);
    }
    let s5 = fam_alloc::stats();
    assert_eq!(
        s5.large.bytes_in_use,
        s4.large.bytes_in_use + 3 * MIB as u64,
        "moved: {}",
        r != q
    );
    assert_eq!(s5.chunks.large, s4.chunks.large + 1);
    assert_eq!(
        (s5.large.allocs, s5.large.frees),
        (s4.large.allocs, s4.large.frees)
    );

    // Shrinking a large block to a small one moves it: a large free and a small allocation.
    let small = class_of(600 * KIB);
    // SAFETY: `r` is a live block of 6 MiB.
    let t = unsafe { A.realloc(r, layout(6 * MIB), 600 * KIB) };
    assert!(!t.is_null() && t != r);
    // SAFETY: the block holds 600 KiB, kept from the old one.
    assert_eq!(unsafe { t.add(600 * KIB - 1).read() }, 0x10);
    let s6 = fam_alloc::stats();
    assert_eq!(s6.large.frees, s5.large.frees + 1);
    assert_eq!(
        s6.large.bytes_in_use,
        s5.large.bytes_in_use - 6 * MIB as u64
    );
    assert_eq!(s6.chunks.large, s5.chunks.large - 2);
    assert_eq!(s6.classes[small].allocs, s5.classes[small].allocs + 1);
    // And growing it back past the small limit moves it again: a small free, a large allocation
    // (the cache emptied again, as above).
    fam_alloc::trim();
    // SAFETY: `t` is a live block of 600 KiB.
    let u = unsafe { A.realloc(t, layout(600 * KIB), 4 * MIB) };
    assert!(!u.is_null() && u != t);
    // SAFETY: the block holds 4 MiB, the first 600 KiB kept.
    assert_eq!(unsafe { u.add(600 * KIB - 1).read() }, 0x10);
    // SAFETY: as above.
    unsafe { u.write_bytes(0x10, 4 * MIB) };
    let s7 = fam_alloc::stats();
    assert_eq!(s7.large.allocs, s6.large.allocs + 1);
    assert_eq!(
        s7.large.bytes_in_use,
        s6.large.bytes_in_use + 4 * MIB as u64
    );
    assert_eq!(s7.chunks.large, s6.chunks.large + large_chunks(4 * MIB));
    assert_eq!(s7.classes[small].frees, s6.classes[small].frees + 1);

    free_block(u as usize, 4 * MIB, 0x10);
    free_block(blocks[1], sizes[1], 0x11);
    let s8 = fam_alloc::stats();
    assert_eq!(s8.large.allocs - s0.large.allocs, 4);
    assert_eq!(s8.large.frees - s0.large.frees, 4);
    assert_eq!(s8.large.bytes_in_use, s0.large.bytes_in_use);
    assert_eq!(s8.chunks.large, s0.chunks.large);
    assert!(s8.large.peak_bytes >= s7.large.bytes_in_use);
    fam_alloc::reset_peaks();
    assert_eq!(fam_alloc::stats().large.peak_bytes, s0.large.bytes_in_use);
}

/// A class's `peak_blocks` is at least the most blocks out of the pool at once (in use and
/// cached), survives frees, and comes down to the present on `reset_peaks`.
#[test]
fn class_peaks_cover_the_most_blocks_alive() {
    let _g = serial();
    const SIZE: usize = 39_000;
    const N: usize = 50;
    let class = class_of(SIZE);
    let mut ptrs = Vec::with_capacity(N);
    fam_alloc::flush_thread_cache();
    fam_alloc::reset_peaks();
    let c0 = fam_alloc::stats().classes[class];
    assert_eq!(
        c0.peak_blocks,
        c0.in_use() as u64 + c0.cached,
        "reset to the blocks out now"
    );

    for i in 0..N {
        ptrs.push(alloc_block(SIZE, i as u8));
    }
    let c1 = fam_alloc::stats().classes[class];
    assert_eq!(c1.in_use() - c0.in_use(), N as i64);
    // Only refills took blocks out since the reset, so the peak is the present.
    assert_eq!(c1.peak_blocks, c1.in_use() as u64 + c1.cached);
    assert!(c1.peak_blocks >= N as u64);

    // Free some and allocate some again: the peak never drops below the most seen.
    for (i, p) in ptrs.drain(..30).enumerate() {
        free_block(p, SIZE, i as u8);
    }
    let c2 = fam_alloc::stats().classes[class];
    assert!(c2.peak_blocks >= c1.peak_blocks);
    for i in 0..10 {
        ptrs.push(alloc_block(SIZE, 0x80 + i as u8));
    }
    let c3 = fam_alloc::stats().classes[class];
    assert!(c3.peak_blocks >= c1.peak_blocks);
    assert!(c3.peak_blocks >= c3.in_use() as u64 + c3.cached);

    for (i, &p) in ptrs.iter().enumerate() {
        let fill = if i < N - 30 {
            (30 + i) as u8
        } else {
            0x80 + (i - (N - 30)) as u8
        };
        free_block(p, SIZE, fill);
    }
    fam_alloc::flush_thread_cache();
    let c4 = fam_alloc::stats().classes[class];
    assert_eq!(c4.in_use(), c0.in_use());
    assert_eq!(c4.cached, c0.cached);
    assert!(c4.peak_blocks >= N as u64, "the peak outlives the blocks");
    fam_alloc::reset_peaks();
    let c5 = fam_alloc::stats().classes[class];
    assert_eq!(c5.peak_blocks, c5.in_use() as u64 + c5.cached, "reset");
    assert!(c5.peak_blocks < N as u64);
}

/// With two threads holding blocks of a class at once, the peak is at least their sum: each
/// thread counts its own mark, and the snapshot adds them. It outlives both threads' blocks, and a
/// reset while a thread sits idle with blocks counts that thread at its present number.
#[test]
fn class_peaks_add_the_marks_of_every_thread() {
    let _g = serial();
    const SIZE: usize = 27_000;
    const N: usize = 40;
    let class = class_of(SIZE);
    fam_alloc::flush_thread_cache();
    fam_alloc::reset_peaks();
    let c0 = fam_alloc::stats().classes[class];

    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let mine: Vec<usize> = (0..N).map(|i| alloc_block(SIZE, i as u8)).collect();
        held_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        for (i, p) in mine.into_iter().enumerate() {
            free_block(p, SIZE, i as u8);
        }
        fam_alloc::flush_thread_cache();
    });
    held_rx.recv().unwrap();
    let ours: Vec<usize> = (0..N).map(|i| alloc_block(SIZE, 0x40 + i as u8)).collect();
    let c1 = fam_alloc::stats().classes[class];
    assert_eq!(c1.in_use() - c0.in_use(), 2 * N as i64, "{c1:?}");
    assert!(c1.peak_blocks >= c0.peak_blocks + 2 * N as u64, "{c1:?}");
    assert!(c1.peak_blocks >= c1.in_use() as u64 + c1.cached, "{c1:?}");

    // A reset while the other thread is idle with its blocks: everyone counts at the present.
    fam_alloc::reset_peaks();
    let c2 = fam_alloc::stats().classes[class];
    assert_eq!(c2.peak_blocks, c2.in_use() as u64 + c2.cached, "{c2:?}");

    go_tx.send(()).unwrap();
    other.join().unwrap();
    for (i, p) in ours.into_iter().enumerate() {
        free_block(p, SIZE, 0x40 + i as u8);
    }
    fam_alloc::flush_thread_cache();
    let c3 = fam_alloc::stats().classes[class];
    assert_eq!(c3.in_use(), c0.in_use());
    assert!(
        c3.peak_blocks >= c0.peak_blocks.max(2 * N as u64),
        "the peak outlives the blocks and the thread: {c3:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Reports read back

/// Something in every part of a report: small blocks in use and cached, a large block, a heap
/// with a negative count. Dropped when the report is written.
struct Scene {
    small: Vec<usize>,
    large: usize,
    stop: mpsc::Sender<()>,
    threads: Vec<thread::JoinHandle<()>>,
}

const SCENE_SMALL: usize = 7000;
const SCENE_LARGE: usize = 3 * MIB + 5;

fn scene() -> Scene {
    let small: Vec<usize> = (0..40).map(|i| alloc_block(SCENE_SMALL, i as u8)).collect();
    let large = alloc_block(SCENE_LARGE, 0x33);
    // A thread that frees blocks this one allocated, and stays alive until the scene ends.
    let given: Vec<usize> = (0..20).map(|_| alloc_block(SCENE_SMALL, 0x44)).collect();
    let (stop, wait) = mpsc::channel::<()>();
    let (ready_tx, ready) = mpsc::channel::<()>();
    let t = thread::spawn(move || {
        for p in given {
            free_block(p, SCENE_SMALL, 0x44);
        }
        ready_tx.send(()).unwrap();
        let _ = wait.recv();
    });
    ready.recv().unwrap();
    Scene {
        small,
        large,
        stop,
        threads: vec![t],
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for (i, &p) in self.small.iter().enumerate() {
            free_block(p, SCENE_SMALL, i as u8);
        }
        free_block(self.large, SCENE_LARGE, 0x33);
    }
}

/// The bmalloc lines read back to the snapshot they were written from: every class's counts
/// summed over the heaps, each line's derived figures, the heaps' sums, `S`, `L`, `C`, `T`.
#[test]
fn bmalloc_report_reads_back() {
    let _g = serial();
    let _scene = scene();
    let q = quiet_report(Format::Bmalloc);
    let (snap, text) = (&q.snap, &q.text);
    let bm = parse::bmalloc(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(text.starts_with("\nV Memory Statistics (fam-alloc "));
    assert_eq!(bm.version, VERSION);
    assert_eq!(bm.used, snap.small_in_use_bytes(), "S used");
    assert_eq!(bm.free, snap.cached_bytes(), "S free");
    assert_eq!(bm.large, Some(snap.large), "L");
    assert_eq!(bm.chunks, Some(snap.chunks), "C");
    assert_eq!(
        bm.threads,
        Some((snap.threads_live, snap.threads_exited)),
        "T"
    );
    assert!(snap.large.bytes_in_use >= SCENE_LARGE as u64);
    assert!(snap.large.peak_bytes >= snap.large.bytes_in_use);

    // Heap 0 first, one H line per heap after its B lines; a heap per live thread.
    assert_eq!(bm.heaps.first().map(|h| h.heap), Some(0));
    assert_eq!(bm.heaps.len() as u64, 1 + snap.threads_live);
    let mut sums = vec![(0u64, 0u64, 0u64); snap.num_classes];
    for line in &bm.classes {
        let c = &snap.classes[line.class];
        assert_eq!(line.block_size, c.block_size, "{line:?}");
        assert_eq!(
            line.in_use,
            line.allocs as i64 - line.frees as i64,
            "{line:?}"
        );
        assert_eq!(line.used, line.in_use * line.block_size as i64, "{line:?}");
        assert_eq!(line.free, line.cached * line.block_size, "{line:?}");
        if line.heap == 0 {
            assert_eq!(line.cached, 0, "heap 0 caches nothing: {line:?}");
        }
        sums[line.class].0 += line.allocs;
        sums[line.class].1 += line.frees;
        sums[line.class].2 += line.cached;
    }
    for h in &bm.heaps {
        let lines = bm.classes.iter().filter(|l| l.heap == h.heap);
        let (used, free) = lines.fold((0, 0), |(u, f), l| (u + l.used, f + l.free));
        assert_eq!((h.used, h.free), (used, free), "H line of heap {}", h.heap);
    }
    for (b, c) in snap.class_slice().iter().enumerate() {
        assert_eq!(
            sums[b],
            (c.allocs, c.frees, c.cached),
            "class {b} over the heaps"
        );
    }
    let scene = class_of(SCENE_SMALL);
    assert!(
        bm.classes.iter().any(|l| l.class == scene && l.in_use < 0),
        "the scene's freeing thread shows a negative count:\n{text}"
    );
    assert_nothing_wrapped(text);
}

/// The JSON report reads back to the snapshot it was written from: version, every active class
/// with all its counters, large blocks, chunks, threads, totals, and the heaps summing to the
/// classes.
#[test]
fn json_report_reads_back() {
    let _g = serial();
    let _scene = scene();
    let (q, report) = json_report();
    let snap = &q.snap;
    assert_eq!(report.version, VERSION);
    assert_eq!(snap.version, VERSION);
    assert_eq!(
        report.classes.len(),
        snap.active().count(),
        "one entry per active class"
    );
    for (parsed, (b, c)) in report.classes.iter().zip(snap.active()) {
        assert_eq!(parsed.class, b);
        assert_eq!(parsed.stats(), *c, "class {b}");
        assert_eq!(parsed.in_use, c.in_use(), "class {b}");
        assert_eq!(parsed.in_use_bytes, c.in_use_bytes(), "class {b}");
    }
    assert_eq!(report.large, snap.large);
    assert_eq!(report.chunks, snap.chunks);
    assert_eq!(
        (report.threads_live, report.threads_exited),
        (snap.threads_live, snap.threads_exited)
    );
    assert_eq!(report.totals.allocs, snap.allocs());
    assert_eq!(report.totals.frees, snap.frees());
    assert_eq!(report.totals.in_use_bytes, snap.in_use_bytes());
    assert_eq!(report.totals.cached_bytes, snap.cached_bytes());
    assert!(snap.large.bytes_in_use >= SCENE_LARGE as u64);

    assert_eq!(report.heaps.len() as u64, 1 + snap.threads_live);
    assert_eq!(exited_heap(&report).cached_bytes, 0);
    let sums = heap_sums(&report, snap.num_classes);
    for (b, c) in snap.class_slice().iter().enumerate() {
        assert_eq!(
            sums[b],
            (c.allocs, c.frees, c.cached),
            "class {b} over the heaps"
        );
    }
    for h in &report.heaps {
        let used: i64 = h.classes.iter().map(|c| c.in_use_bytes).sum();
        let cached: u64 = h.classes.iter().map(|c| c.cached * c.block_size).sum();
        assert_eq!(
            (h.in_use_bytes, h.cached_bytes),
            (used, cached),
            "heap {}",
            h.id
        );
        for c in &h.classes {
            assert_eq!(c.in_use, c.allocs as i64 - c.frees as i64);
            assert_eq!(c.peak_blocks, 0, "heaps carry no peak");
        }
    }
    let scene = class_of(SCENE_SMALL);
    assert!(
        report
            .heaps
            .iter()
            .any(|h| class_in(h, scene).is_some_and(|c| c.in_use < 0)),
        "the scene's freeing thread shows a negative count:\n{}",
        q.text
    );
    assert_nothing_wrapped(&q.text);
}

/// The table names the version and lists every active class with its block size.
#[test]
fn table_report_lists_active_classes() {
    let _g = serial();
    let _scene = scene();
    let q = quiet_report(Format::Table);
    let text = &q.text;
    assert!(
        text.starts_with(&format!("fam-alloc {VERSION}: memory statistics\n")),
        "{text}"
    );
    let mut listed = 0;
    for (b, c) in q.snap.active() {
        let row = format!("{b} {}", c.block_size);
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ") == row),
            "class {b} ({} bytes) is listed:\n{text}",
            c.block_size
        );
        listed += 1;
    }
    assert!(listed > 0);
    assert!(text.contains("large blocks") && text.contains("threads"));
}

// ---------------------------------------------------------------------------------------------
// The exit report

/// Child mode: nothing unless [`CHILD_VAR`] is set. `pattern` allocates 1000 blocks of 3000
/// bytes (keeping 10) and one large block (kept), then returns so the harness exits normally;
/// `unregistered-writer` writes a report into a `String` from a thread that has never
/// allocated.
#[test]
fn child() {
    let _g = serial();
    match std::env::var(CHILD_VAR).as_deref() {
        Ok("pattern") => {
            let ptrs: Vec<usize> = (0..1000).map(|i| alloc_block(3000, i as u8)).collect();
            for (i, &p) in ptrs.iter().enumerate().skip(10) {
                free_block(p, 3000, i as u8);
            }
            let large = alloc_block(2 * MIB, 1);
            // Kept to the end of the process, so the exit report shows them in use.
            std::hint::black_box((ptrs, large));
        }
        Ok("unregistered-writer") => unregistered_writer(),
        _ => {}
    }
}

/// Checks a child's JSON exit report for the `pattern` child's allocations.
fn assert_pattern_json(text: &str) {
    let report = parse::json(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(report.version, VERSION);
    let c = report
        .classes
        .iter()
        .find(|c| c.block_size == 3072)
        .unwrap_or_else(|| panic!("the class of 3000 bytes is listed:\n{text}"));
    assert!(
        c.allocs >= 1000 && c.frees >= 990 && c.in_use >= 10,
        "{c:?}"
    );
    assert!(report.large.allocs >= 1 && report.large.bytes_in_use >= 2 * MIB as u64);
    assert!(report.threads_live >= 1);
    let sums = heap_sums(&report, stats::MAX_CLASSES);
    assert_eq!((sums[c.class].0, sums[c.class].1), (c.allocs, c.frees));
    assert_nothing_wrapped(text);
}

/// `FAM_STATS=json`: the child writes the JSON report on stderr at exit.
#[test]
fn exit_report_json_on_stderr() {
    let _g = serial();
    let out = run_child("pattern", &[("FAM_STATS", Some("json"))]);
    let stderr = String::from_utf8(out.stderr).expect("the report is UTF-8");
    let start = stderr
        .find("{\"version\"")
        .unwrap_or_else(|| panic!("no JSON report on stderr:\n{stderr}"));
    assert!(
        stderr[start..].ends_with("]}\n"),
        "the report ends the output"
    );
    assert_pattern_json(&stderr[start..]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"version\""));
}

/// `FAM_STATS=bmalloc` with `FAM_STATS_FILE`: the lines go to the file, not to stderr.
#[test]
fn exit_report_bmalloc_to_file() {
    let _g = serial();
    let path = std::env::temp_dir().join(format!("fam-stats-test-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let out = run_child(
        "pattern",
        &[
            ("FAM_STATS", Some("bmalloc")),
            ("FAM_STATS_FILE", Some(path.to_str().expect("a UTF-8 path"))),
        ],
    );
    let text = std::fs::read_to_string(&path).expect("the report file was written");
    let _ = std::fs::remove_file(&path);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Memory Statistics"),
        "the report went to the file only"
    );
    assert!(
        text.contains(&format!("\nV Memory Statistics (fam-alloc {VERSION})\n")),
        "{text}"
    );
    let bm = parse::bmalloc(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(bm.version, VERSION);
    assert!(!bm.classes.is_empty() && text.lines().any(|l| l.starts_with("B ")));
    assert_eq!(text.lines().filter(|l| l.starts_with("S ")).count(), 1);
    let (allocs, frees) = bm
        .classes
        .iter()
        .filter(|l| l.block_size == 3072)
        .fold((0, 0), |(a, f), l| (a + l.allocs, f + l.frees));
    assert!(allocs >= 1000 && frees >= 990, "{allocs}/{frees}:\n{text}");
    let large = bm.large.expect("an L line");
    assert!(large.allocs >= 1 && large.bytes_in_use >= 2 * MIB as u64);
    assert!(bm.used >= 10 * 3072);
    assert_nothing_wrapped(&text);
}

/// Without `FAM_STATS` (or with a value that asks for nothing) there is no report.
#[test]
fn no_exit_report_without_fam_stats() {
    let _g = serial();
    for env in [None, Some("0"), Some("")] {
        let out = run_child("pattern", &[("FAM_STATS", env)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        for marker in ["Memory Statistics", "\"version\"", "memory statistics"] {
            assert!(
                !stderr.contains(marker),
                "FAM_STATS={env:?} wrote a report:\n{stderr}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Known faults

/// A pthread key whose destructor frees the block its value points to; created after the
/// allocator's own key, so its destructor runs after the allocator flushed the thread's heap.
static LATE_KEY: OnceLock<libc::pthread_key_t> = OnceLock::new();
const LATE_SIZE: usize = 11_000;

extern "C" fn late_free(p: *mut libc::c_void) {
    // SAFETY: the value is a live block of LATE_SIZE bytes that only this destructor frees.
    unsafe { A.dealloc(p.cast(), layout(LATE_SIZE)) };
}

/// A block freed by another pthread key's destructor, after the allocator's own destructor
/// folded the exiting thread's counts into heap 0, is counted like any other free.
///
/// Fails now: `thread_exited` takes the thread's counters off the live list, but later frees on
/// the thread (which go straight to the pool, as the thread's buckets have capacity 0) still
/// bump the thread-local counters, which no snapshot reads again. The free is lost and the block
/// stays "in use" for ever. (Allocations made that late are lost the same way.)
#[test]
fn frees_in_late_thread_destructors_are_counted() {
    let _g = serial();
    let class = class_of(LATE_SIZE);
    let key = *LATE_KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is writable; the destructor has the right type and lives for ever.
        let rc = unsafe { libc::pthread_key_create(&mut key, Some(late_free)) };
        assert_eq!(rc, 0);
        key
    });
    let c0 = fam_alloc::stats().classes[class];
    thread::spawn(move || {
        let p = alloc_block(LATE_SIZE, 7);
        // SAFETY: `key` is a live key; the block is freed by its destructor at thread exit.
        let rc = unsafe { libc::pthread_setspecific(key, p as *const libc::c_void) };
        assert_eq!(rc, 0);
    })
    .join()
    .unwrap();
    let c1 = fam_alloc::stats().classes[class];
    assert_eq!(c1.allocs - c0.allocs, 1, "the allocation is counted");
    assert_eq!(
        c1.frees - c0.frees,
        1,
        "the free in the late destructor is counted"
    );
    assert_eq!(c1.in_use(), c0.in_use(), "nothing stays in use");
}

static WRITER_DONE: AtomicBool = AtomicBool::new(false);

extern "C" fn writer_thread(_: *mut libc::c_void) -> *mut libc::c_void {
    let mut text = String::new();
    let ok = fam_alloc::write_stats(&mut text, Format::Json).is_ok() && parse::json(&text).is_ok();
    WRITER_DONE.store(ok, Ordering::SeqCst);
    core::ptr::null_mut()
}

/// Child mode `unregistered-writer`: a thread created with `pthread_create` (so nothing of the
/// Rust runtime allocates on it first) writes a report into a `String`.
fn unregistered_writer() {
    let mut t: libc::pthread_t = 0;
    // SAFETY: `t` is writable; the start routine has the right type and takes no argument.
    let rc = unsafe {
        libc::pthread_create(
            &mut t,
            core::ptr::null(),
            writer_thread,
            core::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0);
    // SAFETY: `t` is a joinable thread created above, joined once.
    assert_eq!(unsafe { libc::pthread_join(t, core::ptr::null_mut()) }, 0);
    assert!(WRITER_DONE.load(Ordering::SeqCst));
}

/// `write_stats` into a `String` from a thread whose first allocation is the report's own.
///
/// Hangs now: `write_stats` holds the thread-list lock while it writes the per-heap views, the
/// `String`'s first allocation registers the thread, and registering
/// (`counters::thread_started`) takes the same spin lock. The child is killed after a generous
/// limit and the test fails.
#[test]
fn report_from_a_thread_that_never_allocated() {
    let _g = serial();
    let mut child = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "unregistered-writer")
        .env_remove("FAM_STATS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary runs");
    let limit = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break Some(status);
        }
        if Instant::now() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let status = status.expect("the child finished (it hung: deadlock in write_stats)");
    assert!(status.success(), "{status:?}");
}
