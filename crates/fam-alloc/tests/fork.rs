//! Fork: shared arenas and the shared global heap used by several processes at once, and the
//! private global heap staying copy-on-write in a program that forks and goes on.
//!
//! Children never return into the test harness: each runs a closure and leaves with `_exit`,
//! its exit code saying whether it found what it expected (0) or what went wrong (see the
//! `EXIT_*` codes; a message goes to stderr first). The parent waits for each child with a time
//! limit, so a child that deadlocks (a lock inherited while held) fails the test instead of
//! hanging it. The tests of this binary fork one at a time ([`SERIAL`]).
//!
//! The binary's global allocator is `FamAlloc`, so every child also runs on an inherited copy
//! of the private heap.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

use allocator_api2::alloc::Allocator;
use allocator_api2::boxed::Box as ABox;
use allocator_api2::vec::Vec as AVec;
use fam_alloc::{Arena, FamAlloc};

#[global_allocator]
static A: FamAlloc = FamAlloc::new();

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const CHUNK: usize = 4 * MIB;

/// A child's exit codes.
const EXIT_OK: i32 = 0;
/// The data the child found (or built) is not what it should be.
const EXIT_WRONG_DATA: i32 = 2;
/// A block was handed to this process while another one held it.
const EXIT_TWO_OWNERS: i32 = 3;
/// A block's stamp was overwritten while this process held it.
const EXIT_STAMP: i32 = 4;
/// An allocation failed.
const EXIT_NO_MEMORY: i32 = 5;
/// The other processes did not show up at the start line.
const EXIT_BARRIER: i32 = 6;
/// The child panicked.
const EXIT_PANIC: i32 = 101;

/// How long a child may take before it counts as hung.
const CHILD_LIMIT: Duration = Duration::from_secs(25);

// ---------------------------------------------------------------------------------------------
// Helpers

/// The tests fork one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a child (or the parent's share of the work) failed.
#[derive(Debug)]
struct Failure {
    code: i32,
    msg: String,
}

fn fail(code: i32, msg: impl Into<String>) -> Failure {
    Failure {
        code,
        msg: msg.into(),
    }
}

/// Writes to stderr without Rust's stdio lock (which a thread of the parent may have held when
/// the child was forked).
fn say(msg: &str) {
    // SAFETY: writes `msg.len()` bytes from a live string to fd 2; a short or failed write only
    // loses the message.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// Forks; the child runs `f` and leaves with `_exit`; the parent gets the child's pid.
fn spawn_child<F: FnOnce() -> Result<(), Failure>>(f: F) -> libc::pid_t {
    // SAFETY: fork has no memory-safety preconditions; the child only runs `f` and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid != 0 {
        return pid;
    }
    std::panic::set_hook(Box::new(|info| say(&format!("child panicked: {info}\n"))));
    let code = match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => EXIT_OK,
        Ok(Err(e)) => {
            say(&format!("child {}: {}\n", std::process::id(), e.msg));
            e.code
        }
        Err(_) => EXIT_PANIC,
    };
    // SAFETY: leaves the child at once: no destructor of the parent's objects runs and nothing
    // returns into the test harness.
    unsafe { libc::_exit(code) }
}

/// Waits for a child; its exit code, or 128 + the signal that ended it. Kills it and panics
/// when it takes longer than [`CHILD_LIMIT`].
fn wait_child(pid: libc::pid_t) -> i32 {
    let deadline = Instant::now() + CHILD_LIMIT;
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if r == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
        if Instant::now() > deadline {
            // SAFETY: our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("child {pid} still running after {CHILD_LIMIT:?}: hung");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for every child and asserts they all exited with [`EXIT_OK`].
fn expect_children_ok(pids: &[libc::pid_t], what: &str) {
    let codes: Vec<i32> = pids.iter().map(|&p| wait_child(p)).collect();
    assert!(
        codes.iter().all(|&c| c == EXIT_OK),
        "{what}: children exited with {codes:?} (0 ok, {EXIT_WRONG_DATA} wrong data, \
         {EXIT_TWO_OWNERS} two owners, {EXIT_STAMP} stamp overwritten, {EXIT_NO_MEMORY} out of \
         memory, {EXIT_BARRIER} start barrier, {EXIT_PANIC} panic, >128 signal)"
    );
}

/// xorshift64*: deterministic per seed.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Random bytes that blocks are filled from (`pattern()[off..off + len]`): filling and checking
/// are one `memcpy` / `memcmp`.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut rng = XorShift::new(0xf0f0);
        (0..256 * KIB / 8)
            .flat_map(|_| rng.next_u64().to_le_bytes())
            .collect()
    })
}

/// The start line: every one of `n` processes adds itself, then waits for the others.
fn start_line(ready: &AtomicUsize, n: usize) -> Result<(), Failure> {
    ready.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline {
            return Err(fail(EXIT_BARRIER, "the other processes never started"));
        }
        std::thread::yield_now();
    }
    Ok(())
}

/// Whether the bytes at `p` are all zero.
///
/// # Safety
/// `p` is valid for reads of `len` bytes that no one writes meanwhile.
unsafe fn all_zero(p: *const u8, len: usize) -> bool {
    static ZEROS: [u8; 64 * KIB] = [0; 64 * KIB];
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { std::slice::from_raw_parts(p, len) };
    bytes.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

// ---------------------------------------------------------------------------------------------
// Fork storm on a shared arena

/// Processes in the storm, the parent included.
const STORM_PROCS: usize = 6;
/// Chunks of the storm's shared arena.
const STORM_CHUNKS: usize = 64;
/// Operations per process.
const STORM_OPS: usize = 20_000;
/// Live blocks a process keeps at most.
const STORM_LIVE: usize = 64;
/// One large block (1 to 3 MiB) every this many operations.
const STORM_LARGE_EVERY: u64 = 2_500;
/// Bytes of the region per entry of the ownership table: blocks are at least this long, so two
/// live blocks never share an entry.
const GRANULE: usize = 16;

/// Shared state of the storm, in the arena itself.
#[repr(C)]
struct Control {
    /// Processes at the start line.
    ready: AtomicUsize,
    /// The fewest free chunks of the region any process saw.
    min_free: AtomicUsize,
    /// Large blocks allocated, all processes together.
    large: AtomicUsize,
    /// Per process: the Vec it built for the parent (pointer, length, capacity).
    vecs: [[AtomicUsize; 3]; STORM_PROCS + 1],
}

/// Who holds each block of the region: entry `(addr - base) / GRANULE` holds the number of the
/// process (1..=STORM_PROCS) that holds the block starting at `addr`, 0 when none does. A
/// process sets it (from 0) right after it gets a block and clears it right before it frees
/// one, so a block handed to two processes at once fails the second one's compare-exchange.
struct Owners<'a> {
    table: &'a [AtomicU8],
    base: usize,
}

impl Owners<'_> {
    fn entry(&self, p: NonNull<u8>) -> &AtomicU8 {
        &self.table[(p.as_ptr() as usize - self.base) / GRANULE]
    }

    fn take(&self, p: NonNull<u8>, me: u8, what: &str) -> Result<(), Failure> {
        self.entry(p)
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(|other| {
                fail(
                    EXIT_TWO_OWNERS,
                    format!("{what} {p:?} handed to process {me} while process {other} holds it"),
                )
            })
    }

    fn give(&self, p: NonNull<u8>, me: u8, what: &str) -> Result<(), Failure> {
        self.entry(p)
            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(|other| {
                fail(
                    EXIT_TWO_OWNERS,
                    format!("{what} {p:?} held by process {me} is marked as process {other}'s"),
                )
            })
    }
}

/// The first chunk of a shared arena's region (its metadata chunk), found from a block in it.
fn region_base(arena: &Arena, inside: *const u8) -> usize {
    assert!(arena.contains(inside));
    let mut base = inside as usize & !(CHUNK - 1);
    while arena.contains((base - CHUNK) as *const u8) {
        base -= CHUNK;
    }
    base
}

/// A block held in the storm: stamped with its holder's pid and a sequence number.
struct Held {
    ptr: NonNull<u8>,
    layout: Layout,
    seq: u64,
}

/// Writes the stamp: pid and sequence number in the first 16 bytes, a mix of both in the last 8.
///
/// # Safety
/// `p` is valid for writes of `size >= 16` bytes, 8-aligned.
unsafe fn stamp(p: NonNull<u8>, size: usize, pid: u64, seq: u64) {
    let w = p.as_ptr().cast::<u64>();
    // SAFETY: the block holds at least 16 bytes, 8-aligned (caller).
    unsafe {
        w.write(pid);
        w.add(1).write(seq);
        if size >= 24 {
            p.as_ptr()
                .add(size - 8)
                .cast::<u64>()
                .write_unaligned(pid ^ seq.rotate_left(17));
        }
    }
}

/// Whether the stamp is still the one [`stamp`] wrote.
///
/// # Safety
/// As for [`stamp`], for reads.
unsafe fn stamped(p: NonNull<u8>, size: usize, pid: u64, seq: u64) -> bool {
    let w = p.as_ptr().cast::<u64>();
    // SAFETY: as in `stamp`.
    unsafe {
        w.read() == pid
            && w.add(1).read() == seq
            && (size < 24
                || p.as_ptr().add(size - 8).cast::<u64>().read_unaligned()
                    == pid ^ seq.rotate_left(17))
    }
}

/// The value at index `i` of the Vec process `me` builds for the parent.
fn vec_value(me: usize, i: u64) -> u64 {
    (me as u64) << 48 | i.wrapping_mul(0x9e37_79b9)
}

/// One process's share of the storm: `ops` allocations and frees of random sizes in `arena`,
/// every block stamped and recorded in the ownership table while held.
fn storm(arena: &Arena, ctl: &Control, owners: &Owners<'_>, me: u8) -> Result<(), Failure> {
    let pid = std::process::id() as u64;
    let mut rng = XorShift::new(pid << 8 | me as u64);
    let mut live: Vec<Held> = Vec::with_capacity(STORM_LIVE);
    let release = |h: Held| -> Result<(), Failure> {
        let size = h.layout.size();
        // SAFETY: the block is live and ours, `size >= 16` bytes, 8-aligned.
        if !unsafe { stamped(h.ptr, size, pid, h.seq) } {
            return Err(fail(
                EXIT_STAMP,
                format!(
                    "block {:?} ({size} B, seq {}) was overwritten",
                    h.ptr, h.seq
                ),
            ));
        }
        owners.give(h.ptr, me, "block")?;
        // SAFETY: the block is live for its layout and no longer used by this process.
        unsafe { arena.deallocate(h.ptr, h.layout) };
        Ok(())
    };
    start_line(&ctl.ready, STORM_PROCS)?;
    let mut want_large = false;
    for seq in 0..STORM_OPS as u64 {
        want_large |= seq % STORM_LARGE_EVERY == STORM_LARGE_EVERY / 2;
        let n = live.len();
        if n < 8 || (n < STORM_LIVE && rng.below(2) == 0) {
            let size = if want_large {
                want_large = false;
                ctl.large.fetch_add(1, Ordering::Relaxed);
                MIB + 1 + rng.below(2 * MIB)
            } else {
                // 16 B (room for the stamp) .. 64 KiB, spread evenly over the doublings.
                let b = 16 << rng.below(12);
                b + rng.below(b)
            };
            let layout = Layout::from_size_align(size, 8).expect("valid layout");
            let ptr = arena
                .allocate(layout)
                .map_err(|_| {
                    fail(
                        EXIT_NO_MEMORY,
                        format!("allocate {size} B failed at op {seq}: {:?}", arena.usage()),
                    )
                })?
                .cast::<u8>();
            owners.take(ptr, me, "block")?;
            // SAFETY: the block is ours, `size >= 16` bytes, 8-aligned.
            unsafe { stamp(ptr, size, pid, seq) };
            live.push(Held { ptr, layout, seq });
            if seq % 64 == 0 {
                if let Some(free) = arena.usage().chunks_free {
                    ctl.min_free.fetch_min(free, Ordering::Relaxed);
                }
            }
        } else {
            release(live.swap_remove(rng.below(n)))?;
        }
    }
    live.into_iter().try_for_each(release)
}

/// Blocks of `layout` one chunk holds: all a fresh one-chunk shared arena hands out.
fn blocks_per_chunk(layout: Layout) -> usize {
    let probe = Arena::shared(1).expect("probe arena");
    let mut n = 0;
    while probe.allocate(layout).is_ok() {
        n += 1;
    }
    n
}

/// Six processes (the parent and five children) allocate and free in one shared arena at once:
/// no block is ever held by two of them (ownership table, stamps), a child's Vec is read back by
/// the parent, and when all is done no block of the region is lost.
#[test]
fn shared_arena_fork_storm() {
    let _s = serial();
    let arena = Arena::shared(STORM_CHUNKS).expect("shared arena");
    assert_eq!(arena.usage().chunks_free, Some(STORM_CHUNKS));
    let ctl: &Control = ABox::leak(ABox::new_in(
        Control {
            ready: AtomicUsize::new(0),
            min_free: AtomicUsize::new(usize::MAX),
            large: AtomicUsize::new(0),
            vecs: Default::default(),
        },
        &arena,
    ));
    let base = region_base(&arena, (ctl as *const Control).cast());
    // One entry per granule of the whole region, metadata chunk included (a few chunks).
    let table_len = (STORM_CHUNKS + 1) * CHUNK / GRANULE;
    let table_layout = Layout::array::<AtomicU8>(table_len).expect("table layout");
    let table_ptr = arena
        .allocate_zeroed(table_layout)
        .expect("ownership table")
        .cast::<AtomicU8>();
    // SAFETY: the block holds `table_len` zeroed bytes, and `AtomicU8` has the layout of `u8`;
    // it lives until it is freed at the end of the test, after every use of `table`.
    let table = unsafe { std::slice::from_raw_parts(table_ptr.as_ptr(), table_len) };
    let owners = Owners { table, base };

    let mut pids = Vec::new();
    for me in 2..=STORM_PROCS {
        let (arena, owners) = (&arena, &owners);
        pids.push(spawn_child(move || {
            storm(arena, ctl, owners, me as u8)?;
            // A Vec for the parent to read: built here, published through the control block.
            let n = 1000 + 100 * me;
            let mut v = AVec::with_capacity_in(n, arena);
            v.extend((0..n as u64).map(|i| vec_value(me, i)));
            let p = NonNull::new(v.as_mut_ptr().cast::<u8>()).expect("non-null");
            owners.take(p, me as u8, "vec buffer")?;
            let (len, cap) = (v.len(), v.capacity());
            core::mem::forget(v);
            let slot = &ctl.vecs[me];
            slot[1].store(len, Ordering::Relaxed);
            slot[2].store(cap, Ordering::Relaxed);
            slot[0].store(p.as_ptr() as usize, Ordering::Release);
            // What this process's buckets hold goes back to the shared pool.
            arena.flush_thread_cache();
            Ok(())
        }));
    }
    let mine = storm(&arena, ctl, &owners, 1);
    expect_children_ok(&pids, "storm");
    if let Err(e) = mine {
        panic!("parent: {} (code {})", e.msg, e.code);
    }
    eprintln!(
        "storm: {} large blocks, fewest free chunks seen {}",
        ctl.large.load(Ordering::Relaxed),
        ctl.min_free.load(Ordering::Relaxed)
    );
    assert!(ctl.large.load(Ordering::Relaxed) >= STORM_PROCS * 7);

    // Each child's Vec, read back and freed here.
    for me in 2..=STORM_PROCS {
        let slot = &ctl.vecs[me];
        let p = slot[0].load(Ordering::Acquire) as *mut u64;
        let (len, cap) = (
            slot[1].load(Ordering::Relaxed),
            slot[2].load(Ordering::Relaxed),
        );
        assert_eq!(len, 1000 + 100 * me, "child {me}'s Vec");
        let nn = NonNull::new(p.cast::<u8>()).expect("child published its Vec");
        assert!(arena.contains(nn.as_ptr()));
        // SAFETY: the child built this Vec in the shared arena (same address here) and gave it
        // up when it exited; `len` and `cap` are its own.
        let v = unsafe { AVec::from_raw_parts_in(p, len, cap, &arena) };
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, &x)| x == vec_value(me, i as u64)));
        owners.give(nn, me as u8, "vec buffer").expect("vec owner");
        drop(v);
    }
    // Every block was given back by its holder.
    // SAFETY: every other process has exited; the table is `table_len` bytes.
    let table_clear = unsafe { all_zero(table_ptr.as_ptr().cast(), table_len) };
    assert!(table_clear, "a block is still marked as held");
    // SAFETY: the table and the control block are live blocks of the arena, unused from here.
    unsafe {
        arena.deallocate(table_ptr.cast(), table_layout);
        arena.deallocate(NonNull::from(ctl).cast(), Layout::new::<Control>());
    }
    arena.flush_thread_cache();
    arena.trim();

    // Nothing leaked. Slab chunks stay with the pool (empty ones in its empty pool, for any
    // class) rather than going back to the region, so `chunks_free` alone says little. The
    // criterion: with every block freed, no large run is left (each chunk of the region is free
    // or a slab chunk of the pool), and one class can take every chunk of the region and every
    // block of each chunk. A block left claimed anywhere (a lost bucket, a half-done flush)
    // would keep its chunk from that class and come out short.
    let u = arena.usage();
    assert_eq!(
        u.chunks_free.expect("shared") + u.chunks_held,
        STORM_CHUNKS,
        "a large run was not given back: {u:?}"
    );
    let big = Layout::from_size_align(256 * KIB, 8).expect("layout");
    let per_chunk = blocks_per_chunk(big);
    assert!(per_chunk >= 10);
    let mut got = Vec::new();
    while let Ok(p) = arena.allocate(big) {
        got.push(p.cast::<u8>());
        assert!(
            got.len() <= STORM_CHUNKS * per_chunk,
            "more blocks than the region holds"
        );
    }
    assert_eq!(
        got.len(),
        STORM_CHUNKS * per_chunk,
        "after the storm the region holds fewer free blocks than it should: {:?}",
        arena.usage()
    );
    assert_eq!(arena.usage().chunks_free, Some(0));
    for p in got {
        // SAFETY: allocated above with `big`.
        unsafe { arena.deallocate(p, big) };
    }
}

/// Blocks of a shared arena are the same memory in every process: children's writes and atomic
/// increments are seen by the parent.
#[test]
fn child_writes_to_a_shared_arena_reach_the_parent() {
    let _s = serial();
    let arena = Arena::shared(8).expect("shared arena");
    // The parent's map lives in the arena; a child adds to it, the parent sees it.
    let counter: &AtomicU64 = ABox::leak(ABox::new_in(AtomicU64::new(0), &arena));
    let words: &mut [u64; 512] = ABox::leak(ABox::new_in([0u64; 512], &arena));
    let words_ptr = words.as_mut_ptr() as usize;
    let pids: Vec<_> = (0..4u64)
        .map(|c| {
            spawn_child(move || {
                // SAFETY: the parent made this 512-word block before forking and does not touch
                // it until every child exited; each child writes its own quarter.
                let w = unsafe { std::slice::from_raw_parts_mut(words_ptr as *mut u64, 512) };
                for (i, x) in w[c as usize * 128..][..128].iter_mut().enumerate() {
                    *x = c << 32 | i as u64;
                }
                for _ in 0..1000 {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    expect_children_ok(&pids, "writers");
    assert_eq!(counter.load(Ordering::Relaxed), 4000);
    // SAFETY: every writer has exited.
    let w = unsafe { std::slice::from_raw_parts(words_ptr as *const u64, 512) };
    for (i, &x) in w.iter().enumerate() {
        assert_eq!(x, ((i / 128) as u64) << 32 | (i % 128) as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// The shared global heap

/// Chunks of the shared global heap (set up once for the binary).
const HEAP_CHUNKS: usize = 16;

fn shared_heap() {
    static INIT: Once = Once::new();
    INIT.call_once(|| fam_alloc::init_global_allocator(HEAP_CHUNKS).expect("shared heap"));
}

/// A block of the shared global heap as its holder knows it: its content is
/// `pattern()[off..off + size]`.
struct HeapBlock {
    ptr: *mut u8,
    size: usize,
    off: usize,
}

/// Sizes the heap churn uses: a few classes, so the 16 chunks are never short.
const HEAP_SIZES: [usize; 6] = [16, 40, 100, 500, 3000, 20_000];

/// # Safety
/// `b.ptr` is a live block of at least `b.size` bytes.
unsafe fn heap_fill(b: &HeapBlock, from: usize) {
    let src = &pattern()[b.off + from..b.off + b.size];
    // SAFETY: the block holds `b.size` bytes (caller); the pattern is in the private heap.
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), b.ptr.add(from), src.len()) };
}

/// # Safety
/// `b.ptr` is valid for reads of `len` bytes.
unsafe fn heap_holds(b: &HeapBlock, len: usize) -> bool {
    // SAFETY: forwarded from the caller.
    let got = unsafe { std::slice::from_raw_parts(b.ptr, len) };
    got == &pattern()[b.off..b.off + len]
}

/// `ops` random `alloc` / `resize` / `release` calls on the shared global heap, every block's
/// content checked before it is resized or released.
fn heap_churn(seed: u64, ops: usize) -> Result<(), Failure> {
    let mut rng = XorShift::new(seed);
    let mut live: Vec<HeapBlock> = Vec::new();
    let max_off = pattern().len() - HEAP_SIZES[HEAP_SIZES.len() - 1];
    for step in 0..ops {
        let n = live.len();
        let roll = rng.below(3);
        if n < 4 || (n < 32 && roll == 0) {
            let size = HEAP_SIZES[rng.below(HEAP_SIZES.len())];
            let ptr = fam_alloc::alloc(size);
            if ptr.is_null() {
                return Err(fail(
                    EXIT_NO_MEMORY,
                    format!("alloc({size}) at step {step}"),
                ));
            }
            if !(ptr as usize).is_multiple_of(fam_alloc::SHARED_ALIGN) {
                return Err(fail(EXIT_WRONG_DATA, format!("{ptr:?} misaligned")));
            }
            let b = HeapBlock {
                ptr,
                size,
                off: rng.below(max_off),
            };
            // SAFETY: `ptr` holds `size` bytes.
            unsafe { heap_fill(&b, 0) };
            live.push(b);
        } else if roll == 1 {
            let i = rng.below(n);
            let new_size = HEAP_SIZES[rng.below(HEAP_SIZES.len())];
            let b = &mut live[i];
            // SAFETY: `b` is live and holds `b.size` bytes.
            if !unsafe { heap_holds(b, b.size) } {
                return Err(fail(EXIT_WRONG_DATA, format!("step {step}: block changed")));
            }
            // SAFETY: `b.ptr` is a live block of the shared heap, replaced by the result.
            let q = unsafe { fam_alloc::resize(b.ptr, new_size) };
            if q.is_null() {
                return Err(fail(EXIT_NO_MEMORY, format!("resize to {new_size}")));
            }
            let kept = b.size.min(new_size);
            b.ptr = q;
            // SAFETY: `q` holds `new_size` bytes, the first `kept` carried over.
            if !unsafe { heap_holds(b, kept) } {
                return Err(fail(
                    EXIT_WRONG_DATA,
                    format!("step {step}: resize lost data"),
                ));
            }
            b.size = new_size;
            // SAFETY: as above.
            unsafe { heap_fill(b, kept) };
        } else {
            let b = live.swap_remove(rng.below(n));
            // SAFETY: `b` is live and holds `b.size` bytes.
            if !unsafe { heap_holds(&b, b.size) } {
                return Err(fail(EXIT_WRONG_DATA, format!("step {step}: block changed")));
            }
            // SAFETY: `b.ptr` is a live block, not used again.
            unsafe { fam_alloc::release(b.ptr) };
        }
    }
    for b in live {
        // SAFETY: as above.
        if !unsafe { heap_holds(&b, b.size) } {
            return Err(fail(EXIT_WRONG_DATA, "block changed"));
        }
        // SAFETY: as above.
        unsafe { fam_alloc::release(b.ptr) };
    }
    Ok(())
}

/// Four processes `alloc`, `resize` and `release` in the shared global heap at once, checking
/// every block's content; each child leaves a block for the parent, which reads, resizes and
/// releases it. (What each child's bucket caches is lost when it exits, see
/// `fork_shared_heap.rs`; the heap has room enough for that here.)
#[test]
fn shared_global_heap_across_fork() {
    let _s = serial();
    shared_heap();
    const CHILDREN: usize = 3;
    // Slots the children publish a block through: (pointer, length) each, and a start line.
    let slots = fam_alloc::alloc(8 * (2 * CHILDREN + 1)).cast::<AtomicUsize>();
    assert!(!slots.is_null());
    // SAFETY: the block holds 2 * CHILDREN + 1 words, 16-aligned; zeroed here before any use.
    let slots: &[AtomicUsize] = unsafe {
        slots.cast::<u8>().write_bytes(0, 8 * (2 * CHILDREN + 1));
        std::slice::from_raw_parts(slots, 2 * CHILDREN + 1)
    };
    let ready = &slots[0];
    let ops = if cfg!(debug_assertions) {
        5_000
    } else {
        50_000
    };
    let pids: Vec<_> = (0..CHILDREN)
        .map(|c| {
            spawn_child(move || {
                start_line(ready, CHILDREN + 1)?;
                heap_churn(0xc0de + c as u64, ops)?;
                // A block for the parent: written here, read and released there.
                let b = HeapBlock {
                    ptr: fam_alloc::alloc(1000 + c),
                    size: 1000 + c,
                    off: 977 * (c + 1),
                };
                if b.ptr.is_null() {
                    return Err(fail(EXIT_NO_MEMORY, "alloc for the parent"));
                }
                // SAFETY: `b.ptr` holds `b.size` bytes.
                unsafe { heap_fill(&b, 0) };
                slots[1 + 2 * c + 1].store(b.size, Ordering::Relaxed);
                slots[1 + 2 * c].store(b.ptr as usize, Ordering::Release);
                Ok(())
            })
        })
        .collect();
    let mine = start_line(ready, CHILDREN + 1).and_then(|()| heap_churn(0xbeef, ops));
    expect_children_ok(&pids, "shared heap churn");
    mine.unwrap_or_else(|e| panic!("parent: {}", e.msg));
    for c in 0..CHILDREN {
        let b = HeapBlock {
            ptr: slots[1 + 2 * c].load(Ordering::Acquire) as *mut u8,
            size: slots[1 + 2 * c + 1].load(Ordering::Relaxed),
            off: 977 * (c + 1),
        };
        assert!(!b.ptr.is_null(), "child {c} published no block");
        assert_eq!(b.size, 1000 + c);
        // SAFETY: the child wrote `size` bytes there and exited; the heap is mapped at the same
        // address in this process.
        assert!(unsafe { heap_holds(&b, b.size) }, "child {c}'s block");
        // The parent can write it, resize it and release it too.
        // SAFETY: as above; the block is ours now.
        let q = unsafe { fam_alloc::resize(b.ptr, 50_000) };
        assert!(!q.is_null());
        let moved = HeapBlock { ptr: q, ..b };
        // SAFETY: `q` holds 50,000 bytes, the first `size` carried over.
        assert!(unsafe { heap_holds(&moved, moved.size) });
        // SAFETY: `q` is live and not used again.
        unsafe { fam_alloc::release(q) };
    }
    // SAFETY: the slots block is live, and every child has exited.
    unsafe { fam_alloc::release(slots.as_ptr() as *mut u8) };
    let u = fam_alloc::shared_usage().expect("initialised");
    assert!(u.chunks_free.expect("shared") < HEAP_CHUNKS);
}

// ---------------------------------------------------------------------------------------------
// The private heap stays private

type Map = HashMap<String, Vec<u64>>;
type Model = BTreeMap<String, Vec<u64>>;

fn value(i: u64, len: u64, salt: u64) -> Vec<u64> {
    (0..len)
        .map(|j| i.wrapping_mul(1_000_003) ^ j ^ salt)
        .collect()
}

fn build(n: u64) -> (Map, Model) {
    let mut map = Map::new();
    let mut model = Model::new();
    for i in 0..n {
        let (k, v) = (format!("key-{i}"), value(i, i % 40, 0));
        map.insert(k.clone(), v.clone());
        model.insert(k, v);
    }
    (map, model)
}

fn same(map: &Map, model: &Model) -> bool {
    map.len() == model.len() && model.iter().all(|(k, v)| map.get(k) == Some(v))
}

/// `ops` random changes applied to both the map and its model: new keys, removals, pushes that
/// reallocate, shrinking, longer strings.
fn churn(map: &mut Map, model: &mut Model, ops: usize, seed: u64) {
    let mut rng = XorShift::new(seed);
    for op in 0..ops as u64 {
        match rng.below(6) {
            0 | 1 => {
                let k = format!("s{seed}-{op}-{}", "x".repeat(rng.below(40)));
                let v = value(op, rng.below(200) as u64, seed);
                map.insert(k.clone(), v.clone());
                model.insert(k, v);
            }
            2 => {
                if let Some(k) = model.keys().nth(rng.below(model.len().max(1))).cloned() {
                    assert!(map.remove(&k).is_some());
                    model.remove(&k);
                }
            }
            3 | 4 => {
                let at = rng.below(model.len().max(1));
                if let Some((k, v)) = model.iter_mut().nth(at) {
                    let extra = rng.below(300) as u64;
                    v.extend(0..extra);
                    map.get_mut(k).expect("key in map").extend(0..extra);
                }
            }
            _ => {
                let at = rng.below(model.len().max(1));
                if let Some((k, v)) = model.iter_mut().nth(at) {
                    let keep = v.len() / 2;
                    v.truncate(keep);
                    v.shrink_to_fit();
                    let m = map.get_mut(k).expect("key in map");
                    m.truncate(keep);
                    m.shrink_to_fit();
                }
            }
        }
    }
}

/// What a child does with an inherited map: checks it is what the parent had, changes it a lot,
/// checks the result against the model.
fn child_churn(map: &mut Map, model: &mut Model, seed: u64) -> Result<(), Failure> {
    if !same(map, model) {
        return Err(fail(
            EXIT_WRONG_DATA,
            "inherited map differs from the parent's",
        ));
    }
    let ops = if cfg!(debug_assertions) {
        3_000
    } else {
        30_000
    };
    churn(map, model, ops, seed);
    map.shrink_to_fit();
    if !same(map, model) {
        return Err(fail(
            EXIT_WRONG_DATA,
            "map differs from its model after the churn",
        ));
    }
    Ok(())
}

/// A child changes its copy of the parent's `HashMap<String, Vec<u64>>` (global heap) heavily;
/// the parent's map stays as it was, and the parent goes on allocating.
#[test]
fn private_heap_is_copy_on_write_across_fork() {
    let _s = serial();
    let n = if cfg!(debug_assertions) {
        3_000
    } else {
        30_000
    };
    let (mut map, mut model) = build(n);
    let pid = spawn_child(|| child_churn(&mut map, &mut model, 1));
    assert_eq!(wait_child(pid), EXIT_OK, "child");
    // The child's changes stayed in the child.
    let (fresh, _) = build(n);
    assert!(map == fresh, "the parent's map changed");
    assert!(same(&map, &model));
    // And the parent goes on allocating.
    churn(&mut map, &mut model, 3_000, 2);
    assert!(same(&map, &model));
}

/// Eight children in turn, the parent changing its heap between forks: each child sees the
/// parent's data as it was at its fork, and none of their changes reach the parent.
#[test]
fn eight_sequential_forks_see_the_parent_as_it_was() {
    let _s = serial();
    let (mut map, mut model) = build(1_000);
    for generation in 0..8u64 {
        // The parent changes its heap between forks; each child must see it as it is now.
        churn(&mut map, &mut model, 500, 100 + generation);
        let before = model.clone();
        let pid = spawn_child(|| child_churn(&mut map, &mut model, 200 + generation));
        assert_eq!(wait_child(pid), EXIT_OK, "child of generation {generation}");
        assert!(model == before, "the parent's model changed");
        assert!(
            same(&map, &model),
            "the parent's map changed (generation {generation})"
        );
    }
}

/// Forks while another thread of the parent allocates in a loop (global heap and a private
/// arena): the fork handlers take the allocator's locks, so no child inherits one held.
#[test]
fn forks_while_another_thread_allocates() {
    let _s = serial();
    let stop = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    let arena = Arena::new();
    // This thread allocates first, so it owns the arena's buckets and the worker below takes
    // the pool's paths (and its locks). A child adopts the buckets of the thread that forked it.
    let mine = ABox::new_in(7u64, &arena);
    std::thread::scope(|s| {
        // A thread that allocates all the time, in the global heap and in a private arena, so
        // the forks below happen while it is inside the allocator, holding its locks now and
        // then (the fork handlers must take them first).
        let worker = s.spawn(|| {
            let mut rng = XorShift::new(7);
            while !stop.load(Ordering::Relaxed) {
                let r = rounds.fetch_add(1, Ordering::Relaxed);
                let strings: Vec<String> = (0..100).map(|i| format!("{r}-{i}")).collect();
                let mut m: HashMap<u64, Vec<u8>> = HashMap::new();
                for i in 0..50u64 {
                    m.insert(i, vec![i as u8; rng.below(5_000)]);
                }
                let mut av = AVec::new_in(&arena);
                av.extend(0..rng.below(20_000) as u64);
                let big = vec![r as u8; 300 * KIB + rng.below(2 * MIB)];
                assert!(strings
                    .iter()
                    .enumerate()
                    .all(|(i, s)| *s == format!("{r}-{i}")));
                assert!(m.iter().all(|(&k, v)| v.iter().all(|&b| b == k as u8)));
                assert!(av.iter().enumerate().all(|(i, &x)| x == i as u64));
                assert!(big.iter().all(|&b| b == r as u8));
            }
        });
        let (mut map, mut model) = build(500);
        let mut pids = Vec::new();
        for f in 0..8u64 {
            // Let the worker get going (and into the allocator) before each fork.
            let r = rounds.load(Ordering::Relaxed);
            while rounds.load(Ordering::Relaxed) < r + 2 && !worker.is_finished() {
                std::thread::yield_now();
            }
            let arena = &arena;
            pids.push(spawn_child(|| {
                child_churn(&mut map, &mut model, 300 + f)?;
                // The arena the worker was using works in the child too.
                let mut v = AVec::new_in(arena);
                v.extend(0..10_000u64);
                if v.iter().sum::<u64>() != 9_999 * 10_000 / 2 {
                    return Err(fail(EXIT_WRONG_DATA, "arena Vec"));
                }
                Ok(())
            }));
        }
        expect_children_ok(&pids, "forks during allocation");
        stop.store(true, Ordering::Relaxed);
        worker.join().expect("worker thread");
        assert!(same(&map, &model));
    });
    assert!(rounds.load(Ordering::Relaxed) >= 8);
    assert_eq!(*mine, 7);
    drop(mine);
    assert_eq!(arena.usage().blocks_in_use, 0);
}

/// A child whose forking thread did not own a private arena's buckets must not use the owner's
/// copy of them: the owner may have been in the middle of a bucket operation when the fork
/// copied it (a torn bucket panics in debug builds, `refill of a non-empty bucket`, and is
/// silent corruption in release builds).
#[test]
fn child_does_not_adopt_buckets_torn_by_a_busy_owner() {
    let _s = serial();
    let arena = Arena::new();
    let stop = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    let l = Layout::from_size_align(64, 8).expect("layout");
    std::thread::scope(|s| {
        // The worker allocates first: it owns the arena's buckets, and keeps pushing and
        // popping (and refilling and flushing) them.
        s.spawn(|| {
            let mut held = Vec::with_capacity(1000);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1000 {
                    held.push(arena.allocate(l).expect("allocate").cast::<u8>());
                }
                for p in held.drain(..) {
                    // SAFETY: allocated above with `l`.
                    unsafe { arena.deallocate(p, l) };
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        });
        while rounds.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        let mut failed = Vec::new();
        for f in 0..200 {
            let pid = spawn_child(|| {
                // The forking thread is not the owner: the child's first use adopts the
                // worker's buckets as they were at the fork.
                let mut seen = std::collections::HashSet::new();
                let mut blocks = Vec::new();
                for _ in 0..3000 {
                    let p = arena
                        .allocate(l)
                        .map_err(|_| fail(EXIT_NO_MEMORY, "allocate"))?
                        .cast::<u8>();
                    if !seen.insert(p.as_ptr() as usize) {
                        return Err(fail(EXIT_TWO_OWNERS, format!("{p:?} handed out twice")));
                    }
                    blocks.push(p);
                }
                for p in blocks {
                    // SAFETY: allocated above with `l`.
                    unsafe { arena.deallocate(p, l) };
                }
                arena.flush_thread_cache();
                Ok(())
            });
            let code = wait_child(pid);
            if code != EXIT_OK {
                failed.push((f, code));
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(
            failed.is_empty(),
            "children that failed (fork, exit code): {failed:?}"
        );
    });
}

/// A private arena is copy-on-write across fork, like the rest of the private heap.
#[test]
fn private_arena_is_copy_on_write_across_fork() {
    let _s = serial();
    let arena = Arena::new();
    let mut v = AVec::new_in(&arena);
    v.extend(0..100_000u64);
    let mut map = hashbrown::HashMap::new_in(&arena);
    for i in 0..5_000u64 {
        map.insert(i, i * i);
    }
    let pid = spawn_child(|| {
        // The child's copy: change everything, grow it, check it.
        for x in v.iter_mut() {
            *x = !*x;
        }
        v.extend(0..100_000u64);
        map.retain(|k, _| k % 2 == 0);
        for i in 5_000..20_000u64 {
            map.insert(i, 0);
        }
        let ok = v.len() == 200_000
            && v[..100_000]
                .iter()
                .enumerate()
                .all(|(i, &x)| x == !(i as u64))
            && map.len() == 2_500 + 15_000;
        if ok {
            Ok(())
        } else {
            Err(fail(EXIT_WRONG_DATA, "child's arena data"))
        }
    });
    assert_eq!(wait_child(pid), EXIT_OK);
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
    assert_eq!(map.len(), 5_000);
    assert!(map.iter().all(|(&k, &x)| x == k * k));
    v.extend(0..1000u64);
    assert_eq!(v.len(), 101_000);
}

// ---------------------------------------------------------------------------------------------
// Forks while other threads start, exit and take snapshots

/// Runs a raw pthread that allocates 64 blocks and checks them; how many were intact.
fn child_thread_allocates() -> usize {
    extern "C" fn body(_arg: *mut libc::c_void) -> *mut libc::c_void {
        let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 48]).collect();
        let ok = blocks
            .iter()
            .enumerate()
            .filter(|(i, b)| b.iter().all(|&x| x == *i as u8))
            .count();
        ok as *mut libc::c_void
    }
    let mut t: libc::pthread_t = 0;
    // SAFETY: `t` is a valid out-pointer and `body` an `extern "C"` start routine that lives
    // for the program; the thread is joined before this returns.
    unsafe {
        assert_eq!(
            libc::pthread_create(&mut t, core::ptr::null(), body, core::ptr::null_mut()),
            0
        );
        let mut ret: *mut libc::c_void = core::ptr::null_mut();
        assert_eq!(libc::pthread_join(t, &mut ret), 0);
        ret as usize
    }
}

/// Another thread may be inside the statistics' thread list (starting, exiting, or taking a
/// snapshot) at the moment of a fork; the child must not wait for it. Two threads start and join
/// short-lived threads without pause, a third takes snapshots, and the main thread forks; each
/// child starts a thread of its own, allocates, takes a snapshot and leaves. A child that hangs
/// is killed by its own alarm (exit code 128 + SIGALRM).
#[test]
#[cfg_attr(
    feature = "sbrk",
    ignore = "sbrk backend: about 1 child in 5000 forks finds its allocation refused (open bug)"
)]
fn forks_while_threads_start_exit_and_take_snapshots_never_hang() {
    let _serial = serial();
    static STOP: AtomicBool = AtomicBool::new(false);
    STOP.store(false, Ordering::SeqCst);
    let churners: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                while !STOP.load(Ordering::Relaxed) {
                    let t = std::thread::spawn(|| {
                        let v: Vec<Box<[u8; 32]>> = (0..64).map(|_| Box::new([7; 32])).collect();
                        v.len()
                    });
                    assert_eq!(t.join().unwrap(), 64);
                }
            })
        })
        .collect();
    let snapshots = std::thread::spawn(|| {
        while !STOP.load(Ordering::Relaxed) {
            assert!(fam_alloc::stats().threads_live >= 1);
        }
    });
    let forks = 300;
    let mut codes = Vec::with_capacity(forks);
    for _ in 0..forks {
        let pid = spawn_child(|| {
            // SAFETY: the default action for SIGALRM (another test may have left a handler) and
            // an alarm: it ends this child if it hangs.
            unsafe {
                libc::signal(libc::SIGALRM, libc::SIG_DFL);
                libc::alarm(5);
            }
            // A raw pthread, not `std::thread`: std's own thread start takes a process-wide mutex
            // that the parent's churning threads may have held at the fork, which is not the
            // allocator's to repair.
            if child_thread_allocates() != 64 {
                return Err(fail(EXIT_WRONG_DATA, "a block lost its content"));
            }
            let s = fam_alloc::stats();
            if s.threads_live != 1 {
                return Err(fail(
                    EXIT_WRONG_DATA,
                    format!("{} live threads", s.threads_live),
                ));
            }
            Ok(())
        });
        codes.push(wait_child(pid));
    }
    STOP.store(true, Ordering::SeqCst);
    for t in churners {
        t.join().unwrap();
    }
    snapshots.join().unwrap();
    let bad: Vec<i32> = codes.iter().copied().filter(|&c| c != EXIT_OK).collect();
    assert!(
        bad.is_empty(),
        "{} of {forks} children failed: {bad:?} (128 + {} = hung)",
        bad.len(),
        libc::SIGALRM
    );
}

// ---------------------------------------------------------------------------------------------
// fork() from a signal handler that interrupted the allocator

/// Children forked by the handler, and how many of them the parent has reaped.
static HANDLER_FORKS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn ignore_signal(_sig: libc::c_int) {}

extern "C" fn fork_in_handler(_sig: libc::c_int) {
    // SAFETY: fork and _exit are async-signal-safe; the child leaves at once, as glibc's own
    // malloc fork test has it do. The handler takes no lock the interrupted code may hold.
    unsafe {
        let saved = *libc::__errno_location();
        let pid = libc::fork();
        if pid == 0 {
            libc::_exit(0);
        }
        if pid > 0 {
            HANDLER_FORKS.fetch_add(1, Ordering::Relaxed);
        }
        *libc::__errno_location() = saved;
    }
}

/// A timer signal forks from its handler while this thread allocates and frees without pause,
/// so the fork lands inside `alloc`, `dealloc`, refills and flushes. The pools hold no lock and
/// no prepare handler takes one, so neither the parent nor the children can wait on a lock the
/// interrupted code holds: the loop finishes, and every child exits.
#[test]
fn fork_from_a_signal_handler_that_interrupted_allocation_never_hangs() {
    let _serial = serial();
    HANDLER_FORKS.store(0, Ordering::SeqCst);
    // SAFETY: installs an async-signal-safe handler for SIGALRM with a zeroed, valid sigaction,
    // and arms a 2 ms interval timer; both are undone below.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = fork_in_handler as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGALRM, &sa, core::ptr::null_mut()),
            0
        );
        let t = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 2000,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 2000,
            },
        };
        assert_eq!(
            libc::setitimer(libc::ITIMER_REAL, &t, core::ptr::null_mut()),
            0
        );
    }
    let started = Instant::now();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        // Mixed sizes, kept and dropped out of order: refills, flushes and large blocks.
        let size = [24, 200, 3000, 40_000, 2 << 20][(round % 5) as usize];
        kept.push(vec![round as u8; size]);
        if kept.len() > 64 {
            let v = kept.swap_remove((round as usize * 7) % kept.len());
            assert!(v.iter().all(|&b| b == v[0]));
        }
        round += 1;
    }
    // SAFETY: disarms the timer, then leaves a handler that does nothing: a signal the timer
    // raised before it was disarmed may still be delivered, and must not end the test binary
    // (the default action would). Children that want an alarm set the default back themselves.
    unsafe {
        let off: libc::itimerval = core::mem::zeroed();
        libc::setitimer(libc::ITIMER_REAL, &off, core::ptr::null_mut());
        libc::signal(
            libc::SIGALRM,
            ignore_signal as *const () as libc::sighandler_t,
        );
    }
    let forks = HANDLER_FORKS.load(Ordering::SeqCst);
    // Reap every child; each must have exited with 0 (a hung one would keep this waiting, so
    // give them a deadline).
    let deadline = Instant::now() + CHILD_LIMIT;
    let mut reaped = 0;
    while reaped < forks {
        let mut status = 0;
        // SAFETY: waits for any child of ours; `status` is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child {pid}: status {status:#x}"
            );
            reaped += 1;
        } else {
            assert!(
                Instant::now() < deadline,
                "{} of {forks} children hung",
                forks - reaped
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Each fork copies this process's page tables, so the loop is slow but must go on.
    assert!(
        forks > 20,
        "only {forks} forks landed in 2 s: the timer did not fire"
    );
    assert!(round > 50, "the allocating loop made only {round} rounds");
}
