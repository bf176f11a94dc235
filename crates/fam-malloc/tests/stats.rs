//! Statistics through the C ABI: `malloc` and `free` are counted like Rust's allocations,
//! `mallinfo2` agrees with `fam_alloc::stats`, `fam_write_stats` writes parseable reports to a
//! descriptor, and the shared global heap (`fam_init_global_allocator`, `fam_alloc`,
//! `fam_resize`, `fam_release`) works, across `fork` too.
//!
//! This binary's `malloc` is the library's (the rlib exports it), and so is its Rust global
//! allocator. The counters are the whole process's, so the tests run one at a time
//! ([`serial`]) and measure deltas in size classes nothing else here uses (blocks of 20 and
//! 27 KiB). Figures compared across several classes are read between two equal snapshots:
//! allocation and free counts only grow, so equal snapshots mean nothing changed in between.

use core::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use fam_alloc::{Snapshot, CHUNK_SIZE, VERSION};
use fam_malloc as fm;
use stats::parse;

const MIB: usize = 1 << 20;

/// The tests run one at a time: the counters are the whole process's, and one of them forks.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The class `malloc(size)` uses: the smallest whose block holds `size` bytes (every class from
/// 16 bytes up is aligned to at least 16, what `malloc` promises).
fn class_of(size: usize) -> usize {
    let snap = fam_alloc::stats();
    snap.class_slice()
        .iter()
        .position(|c| c.block_size as usize >= size)
        .unwrap_or_else(|| panic!("no class holds {size} bytes"))
}

/// `f()` read between two equal snapshots; returns the snapshot and what `f` gave.
fn quiet<T>(mut f: impl FnMut() -> T) -> (Snapshot, T) {
    for _ in 0..200 {
        let before = fam_alloc::stats();
        let value = f();
        if fam_alloc::stats() == before {
            return (before, value);
        }
        thread::yield_now();
    }
    panic!("the counters never stood still");
}

/// Fills `len` bytes at `p` with a pattern that depends on `seed` and the offset.
///
/// # Safety
/// `p` is valid for `len` bytes of writes.
unsafe fn fill(p: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: `i < len` (caller's contract).
        unsafe { p.add(i).write((i as u8).wrapping_mul(7) ^ seed) };
    }
}

/// Whether the `len` bytes at `p` hold the pattern [`fill`] wrote with `seed`.
///
/// # Safety
/// `p` is valid for `len` bytes of reads.
unsafe fn holds(p: *const u8, len: usize, seed: u8) -> bool {
    // SAFETY: `i < len` (caller's contract).
    (0..len).all(|i| unsafe { p.add(i).read() } == (i as u8).wrapping_mul(7) ^ seed)
}

/// `malloc` and `free` count in the same per-class counters as Rust's allocations, and a
/// large `malloc` in the large-block counters.
#[test]
fn c_malloc_and_free_are_counted() {
    let _g = serial();
    const SIZE: usize = 20_000;
    const N: usize = 100;
    const M: usize = 60;
    let class = class_of(SIZE);
    let mut ptrs: Vec<*mut c_void> = Vec::with_capacity(N);
    let s0 = fam_alloc::stats();
    let block = s0.classes[class].block_size;
    for _ in 0..N {
        let p = std::hint::black_box(fm::malloc(SIZE));
        assert!(!p.is_null());
        // SAFETY: a live block of this allocator.
        assert_eq!(unsafe { fm::malloc_usable_size(p) }, block as usize);
        ptrs.push(p);
    }
    let c1 = fam_alloc::stats().classes[class];
    let c0 = s0.classes[class];
    assert_eq!(c1.allocs - c0.allocs, N as u64, "malloc is counted");
    assert_eq!(c1.frees, c0.frees);
    assert_eq!(
        c1.in_use_bytes() - c0.in_use_bytes(),
        (N as u64 * block) as i64
    );
    for &p in &ptrs[..M] {
        // SAFETY: live blocks, freed once.
        unsafe { fm::free(p) };
    }
    let c2 = fam_alloc::stats().classes[class];
    assert_eq!(c2.frees - c0.frees, M as u64, "free is counted");
    assert_eq!(c2.in_use() - c0.in_use(), (N - M) as i64);
    for &p in &ptrs[M..] {
        // SAFETY: live blocks, freed once.
        unsafe { fm::free(p) };
    }
    let c3 = fam_alloc::stats().classes[class];
    assert_eq!(
        (c3.allocs - c0.allocs, c3.frees - c0.frees),
        (N as u64, N as u64)
    );
    assert_eq!(c3.in_use(), c0.in_use());

    // A large block: the requested bytes are counted, and its chunks.
    let l0 = fam_alloc::stats();
    let big = 3 * MIB + 7;
    let p = std::hint::black_box(fm::malloc(big)); // kept: the optimiser may drop an unused malloc
    assert!(!p.is_null());
    let l1 = fam_alloc::stats();
    assert_eq!(l1.large.allocs - l0.large.allocs, 1);
    assert_eq!(l1.large.bytes_in_use - l0.large.bytes_in_use, big as u64);
    assert_eq!(l1.chunks.large - l0.chunks.large, 1);
    // SAFETY: a live block, freed once.
    unsafe { fm::free(p) };
    let l2 = fam_alloc::stats();
    assert_eq!(l2.large.frees - l0.large.frees, 1);
    assert_eq!(l2.large.bytes_in_use, l0.large.bytes_in_use);
    assert_eq!(l2.chunks.large, l0.chunks.large);
}

/// Every `mallinfo2` field is what its documentation derives from `fam_alloc::stats`, read at
/// the same moment; the bytes in use move with the program's blocks.
#[test]
fn mallinfo2_agrees_with_stats() {
    let _g = serial();
    const SIZE: usize = 27_000;
    const N: usize = 30;
    let class = class_of(SIZE);
    let mut ptrs: Vec<*mut c_void> = Vec::with_capacity(N);
    let (s0, m0) = quiet(|| fm::mallinfo2());
    for _ in 0..N {
        let p = std::hint::black_box(fm::malloc(SIZE));
        assert!(!p.is_null());
        ptrs.push(p);
    }
    let big = std::hint::black_box(fm::malloc(5 * MIB)); // kept, as above
    assert!(!big.is_null());
    let (s, m) = quiet(|| fm::mallinfo2());

    let chunk = CHUNK_SIZE;
    assert_eq!(m.uordblks, s.small_in_use_bytes().max(0) as usize, "{m:?}");
    assert_eq!(m.arena, s.chunks.mapped as usize * chunk);
    assert!(m.arena >= m.uordblks, "{m:?}");
    assert_eq!(m.fordblks, m.arena - m.uordblks);
    assert_eq!(m.hblks as u64, s.large.allocs - s.large.frees);
    assert!(m.hblks >= 1, "the 5 MiB block is live");
    assert_eq!(m.hblkhd, s.chunks.large as usize * chunk);
    assert!(m.hblkhd >= 2 * chunk, "5 MiB takes two chunks");
    let cached: u64 = s.class_slice().iter().map(|c| c.cached).sum();
    assert_eq!(m.smblks as u64, cached);
    assert_eq!(m.fsmblks as u64, s.cached_bytes());
    assert_eq!(
        m.ordblks as u64,
        s.chunks.empty_committed + s.chunks.empty_decommitted
    );
    assert_eq!(
        m.keepcost,
        (s.chunks.empty_committed + s.large.cached_chunks) as usize * chunk
    );
    assert_eq!(m.usmblks, 0);

    // The bytes in use moved by the blocks allocated.
    let block = s.classes[class].block_size as usize;
    assert_eq!(
        s.classes[class].in_use_bytes() - s0.classes[class].in_use_bytes(),
        (N * block) as i64
    );
    assert_eq!(
        m.uordblks as i64 - m0.uordblks as i64,
        s.small_in_use_bytes() - s0.small_in_use_bytes()
    );
    assert_eq!(m.hblks - m0.hblks, 1);

    for &p in &ptrs {
        // SAFETY: live blocks, freed once.
        unsafe { fm::free(p) };
    }
    // SAFETY: a live block, freed once.
    unsafe { fm::free(big) };
    let (s2, m2) = quiet(|| fm::mallinfo2());
    assert_eq!(m2.hblks, m0.hblks);
    assert_eq!(m2.uordblks, s2.small_in_use_bytes().max(0) as usize);
    assert_eq!(s2.classes[class].in_use(), s0.classes[class].in_use());
}

/// A pipe whose ends do not block: a report larger than the pipe is cut short (and fails to
/// parse) instead of hanging the test.
struct Pipe {
    read: c_int,
    write: c_int,
}

impl Pipe {
    fn new() -> Self {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        assert_eq!(rc, 0);
        // Room for any report; if the system refuses, the default 64 KiB is plenty here.
        // SAFETY: `fds[1]` is the pipe's write end.
        unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, MIB as c_int) };
        Pipe {
            read: fds[0],
            write: fds[1],
        }
    }

    /// Everything in the pipe now.
    fn drain(&self) -> String {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::read(self.read, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        String::from_utf8(out).expect("reports are UTF-8")
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: both descriptors are this pipe's, closed once.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}

/// `fam_write_stats` writes the JSON report (matching the counters at that moment), the
/// bmalloc lines and the table to a descriptor, and refuses a format it does not know.
#[test]
fn fam_write_stats_writes_parseable_reports() {
    let _g = serial();
    let pipe = Pipe::new();
    // Something live, so the report has a large block and classes in use.
    let big = std::hint::black_box(fm::malloc(2 * MIB));
    let small = std::hint::black_box(fm::malloc(20_000));
    assert!(!big.is_null() && !small.is_null());

    // JSON, written while nothing changed: every figure is the snapshot's.
    let mut attempts = 0;
    let (snap, text) = loop {
        attempts += 1;
        assert!(attempts < 200, "the counters never stood still");
        let before = fam_alloc::stats();
        // SAFETY: the format is a NUL-terminated string.
        let rc = unsafe { fm::fam_write_stats(pipe.write, c"json".as_ptr()) };
        let same = fam_alloc::stats() == before;
        assert_eq!(rc, 0);
        // Reading the pipe allocates: only after the second snapshot.
        let text = pipe.drain();
        if same {
            break (before, text);
        }
    };
    let report = parse::json(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(report.version, VERSION);
    assert_eq!(report.classes.len(), snap.active().count(), "{text}");
    for (parsed, (b, c)) in report.classes.iter().zip(snap.active()) {
        assert_eq!((parsed.class, parsed.stats()), (b, *c));
    }
    assert_eq!(report.large, snap.large);
    assert!(report.large.bytes_in_use >= 2 * MIB as u64);
    assert_eq!(report.chunks, snap.chunks);
    assert_eq!(
        (report.threads_live, report.threads_exited),
        (snap.threads_live, snap.threads_exited)
    );
    assert_eq!(report.totals.allocs, snap.allocs());
    assert_eq!(report.totals.frees, snap.frees());
    assert_eq!(report.totals.in_use_bytes, snap.in_use_bytes());
    assert_eq!(report.heaps.first().map(|h| h.id), Some(0));

    // The bmalloc lines.
    // SAFETY: the format is a NUL-terminated string.
    let rc = unsafe { fm::fam_write_stats(pipe.write, c"bmalloc".as_ptr()) };
    assert_eq!(rc, 0);
    let text = pipe.drain();
    let bm = parse::bmalloc(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(bm.version, VERSION);
    assert!(!bm.classes.is_empty() && bm.large.is_some());

    // The table, by name and for NULL.
    for format in [c"table".as_ptr(), core::ptr::null()] {
        // SAFETY: the format is NULL or a NUL-terminated string.
        assert_eq!(unsafe { fm::fam_write_stats(pipe.write, format) }, 0);
        let text = pipe.drain();
        assert!(
            text.starts_with(&format!("fam-alloc {VERSION}: memory statistics\n")),
            "{text}"
        );
    }

    // An unknown format: EINVAL, and nothing written.
    // SAFETY: the format is a NUL-terminated string.
    let rc = unsafe { fm::fam_write_stats(pipe.write, c"nonsense".as_ptr()) };
    assert_eq!(rc, libc::EINVAL);
    assert_eq!(pipe.drain(), "");

    // SAFETY: live blocks, freed once.
    unsafe {
        fm::free(big);
        fm::free(small);
    }
}

/// The shared global heap: mapped once, then blocks that keep their content through resizes,
/// and a block a forked child allocates that the parent reads and releases.
#[test]
fn shared_global_heap() {
    let _g = serial();
    assert_eq!(fm::fam_init_global_allocator(8), 0);
    assert_eq!(fm::fam_init_global_allocator(8), libc::EEXIST);
    assert_eq!(fm::fam_init_global_allocator(0), libc::EEXIST);

    // alloc, grow, shrink, release, with the content checked at each step.
    let p = fm::fam_alloc(100).cast::<u8>();
    assert!(!p.is_null());
    assert_eq!(p as usize % fam_alloc::SHARED_ALIGN, 0);
    // SAFETY: `p` holds 100 bytes.
    unsafe { fill(p, 100, 1) };
    // SAFETY: `p` is a live block of the shared heap.
    let q = unsafe { fm::fam_resize(p.cast(), 10_000) }.cast::<u8>();
    assert!(!q.is_null());
    // SAFETY: `q` holds 10 000 bytes, the first 100 kept from `p`.
    unsafe {
        assert!(holds(q, 100, 1), "grown block keeps its content");
        fill(q, 10_000, 2);
    }
    // SAFETY: `q` is a live block of the shared heap.
    let r = unsafe { fm::fam_resize(q.cast(), 50) }.cast::<u8>();
    assert!(!r.is_null());
    // SAFETY: `r` holds 50 bytes, kept from `q`.
    assert!(unsafe { holds(r, 50, 2) }, "shrunk block keeps its content");
    // A block of several MiB, and NULL released as a no-op.
    let big = fm::fam_alloc(5 * MIB).cast::<u8>();
    assert!(!big.is_null());
    // SAFETY: `big` holds 5 MiB.
    unsafe {
        fill(big, 5 * MIB, 3);
        assert!(holds(big, 5 * MIB, 3));
    }
    // SAFETY: live blocks of the shared heap, released once; NULL is ignored.
    unsafe {
        fm::fam_release(r.cast());
        fm::fam_release(big.cast());
        fm::fam_release(core::ptr::null_mut());
    }

    // Across fork: the child allocates and fills a block and leaves its address in a block
    // allocated before the fork; the parent reads the content and releases the block.
    const LEN: usize = 4096;
    let mailbox = fm::fam_alloc(size_of::<AtomicUsize>()).cast::<AtomicUsize>();
    assert!(!mailbox.is_null());
    // SAFETY: the block is 16-aligned and large enough for an AtomicUsize.
    unsafe { mailbox.write(AtomicUsize::new(0)) };
    // SAFETY: the child calls only the shared heap and `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let b = fm::fam_alloc(LEN).cast::<u8>();
        if !b.is_null() {
            // SAFETY: `b` holds LEN bytes; the mailbox is shared with the parent.
            unsafe {
                fill(b, LEN, 0x5a);
                // Release: the parent that reads the address sees the content.
                (*mailbox).store(b as usize, Ordering::Release);
            }
        }
        // SAFETY: leaves the child without returning into the test harness.
        unsafe { libc::_exit(if b.is_null() { 1 } else { 0 }) };
    }
    let status = wait_for(pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child could not allocate: status {status:#x}"
    );
    // SAFETY: the mailbox is a live block; the child wrote it before exiting.
    let b = unsafe { (*mailbox).load(Ordering::Acquire) } as *mut u8;
    assert!(!b.is_null(), "the child left its block's address");
    // SAFETY: the child's block is in the shared heap and holds LEN bytes.
    let seen = unsafe { holds(b, LEN, 0x5a) };
    assert!(seen, "the child's writes are seen");
    // SAFETY: live blocks of the shared heap (one the child's), released once.
    unsafe {
        fm::fam_release(b.cast());
        fm::fam_release(mailbox.cast());
    }
    // The heap goes on working after the child is gone.
    let again = fm::fam_alloc(LEN);
    assert!(!again.is_null());
    // SAFETY: a live block, released once.
    unsafe { fm::fam_release(again) };
}

/// Waits for child `pid` (at most 30 s, then kills it) and returns its wait status.
fn wait_for(pid: libc::pid_t) -> c_int {
    let limit = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        assert_eq!(r, 0, "waitpid");
        if Instant::now() > limit {
            // SAFETY: our own child, stopped and reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child hung");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// `fam_print_stats` is `fam_write_stats` on stderr: the same answers.
#[test]
fn fam_print_stats_checks_its_format() {
    let _g = serial();
    // SAFETY: the format is a NUL-terminated string.
    let rc = unsafe { fm::fam_print_stats(c"nonsense".as_ptr()) };
    assert_eq!(rc, libc::EINVAL);
    let version = fm::fam_version();
    // SAFETY: `fam_version` returns a static NUL-terminated string.
    assert_eq!(unsafe { CStr::from_ptr(version) }.to_str(), Ok(VERSION));
}

/// The cached blocks of `class` in the one heap whose `class` shows `allocs` allocations and
/// `frees` frees, from a JSON report taken now.
fn cached_in_heap_with(class: usize, allocs: u64, frees: u64) -> u64 {
    let mut text = String::new();
    fam_alloc::write_stats(&mut text, fam_alloc::Format::Json).expect("a String takes the report");
    let report = parse::json(&text).unwrap_or_else(|e| panic!("the report parses: {e}\n{text}"));
    let found: Vec<u64> = report
        .heaps
        .iter()
        .filter_map(|h| h.classes.iter().find(|c| c.class == class))
        .filter(|c| c.allocs == allocs && c.frees == frees)
        .map(|c| c.cached)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one heap has class {class} at {allocs}/{frees}:\n{text}"
    );
    found[0]
}

/// A thread that allocates a batch of small blocks and frees it, again and again, grows its
/// bucket of that class past the class's own capacity until the batch stays in it (the counts
/// the report derives from the bucket's published length come out exact), and a long run of
/// frees of blocks that another thread allocated brings the bucket back to that capacity.
#[test]
fn a_cycled_bucket_grows_and_a_long_run_of_frees_shrinks_it() {
    let _g = serial();
    const SIZE: usize = 40;
    const BATCH: usize = 1500;
    const CYCLES: u64 = 4;
    const RUN: usize = 20_000;
    let class = class_of(SIZE);
    let block = fam_alloc::stats().class_slice()[class].block_size as u64;
    // The class's own capacity: the blocks 64 KiB hold, at most 256 (`slab_pool::class`).
    let own_cap = (65536 / block).min(256);
    assert!(
        own_cap < BATCH as u64,
        "the class's own bucket cannot hold the batch"
    );
    let (to_freer, from_maker) = std::sync::mpsc::channel::<Vec<usize>>();
    let freer = thread::spawn(move || {
        let mut ptrs = Vec::with_capacity(BATCH);
        for _ in 0..CYCLES {
            // SAFETY: plain malloc and free of this thread's own blocks.
            unsafe {
                ptrs.extend((0..BATCH).map(|_| fm::malloc(SIZE)));
                assert!(ptrs.iter().all(|p| !p.is_null()));
                for p in ptrs.drain(..) {
                    fm::free(p);
                }
            }
        }
        let n = CYCLES * BATCH as u64;
        let cached = cached_in_heap_with(class, n, n);
        assert!(
            cached >= BATCH as u64 && cached > own_cap,
            "the last batch stayed in the grown bucket: {cached} cached (own capacity {own_cap})"
        );
        let theirs = from_maker
            .recv()
            .expect("the other thread sends its blocks");
        for p in theirs {
            // SAFETY: live blocks of this malloc, freed once, here.
            unsafe { fm::free(p as *mut c_void) };
        }
        let cached = cached_in_heap_with(class, n, n + RUN as u64);
        assert!(
            cached <= own_cap,
            "a run of {RUN} frees shrank the bucket back: {cached} cached (own capacity {own_cap})"
        );
    });
    let maker = thread::spawn(move || {
        // The blocks go to the other thread, which frees them.
        let blocks: Vec<usize> = (0..RUN).map(|_| fm::malloc(SIZE) as usize).collect();
        assert!(blocks.iter().all(|&p| p != 0));
        to_freer
            .send(blocks)
            .expect("the freeing thread waits for them");
    });
    maker.join().expect("the allocating thread");
    freer.join().expect("the freeing thread");
}
