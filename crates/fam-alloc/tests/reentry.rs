//! The allocator never calls itself, and a thread's cached blocks come back when it exits.
//!
//! The global allocator here is [`Guarded`], a wrapper around `FamAlloc` that counts, per thread,
//! how deep it is inside an allocator call (in a `const`-initialised thread-local without a
//! destructor, so the counter itself never allocates). Any call that arrives while the thread is
//! already inside one — the allocator allocating through the global allocator, directly or from
//! a library it calls — is recorded as a violation. The tests run collection work, thread churn
//! with thread-locals whose destructors free (and allocate) memory at thread exit, and large
//! blocks, and then require that no violation happened.

mod common;

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, GlobalAlloc, Layout};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use common::{exclusive, listed_chunks, mib, rss_anon, scaled, shared};
use fam_alloc::FamAlloc;

/// `FamAlloc` with a re-entry detector around every method.
struct Guarded(FamAlloc);

#[global_allocator]
static A: Guarded = Guarded(FamAlloc::new());

thread_local! {
    /// How many allocator calls the thread is inside.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Calls that arrived while the same thread was already inside the allocator.
static VIOLATIONS: AtomicUsize = AtomicUsize::new(0);
/// Calls seen, to show the detector is in the path.
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Marks the thread as inside the allocator until dropped.
struct Inside;

impl Inside {
    fn enter() -> Self {
        DEPTH.with(|d| {
            if d.get() > 0 {
                VIOLATIONS.fetch_add(1, Ordering::Relaxed);
            }
            d.set(d.get() + 1);
        });
        CALLS.fetch_add(1, Ordering::Relaxed);
        Inside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

// SAFETY: every method forwards to `FamAlloc` with the caller's arguments unchanged; the guard
// only touches a thread-local counter and two atomics.
unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _in = Inside::enter();
        // SAFETY: forwarded under the caller's contract.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _in = Inside::enter();
        // SAFETY: forwarded under the caller's contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _in = Inside::enter();
        // SAFETY: forwarded under the caller's contract.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _in = Inside::enter();
        // SAFETY: forwarded under the caller's contract.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

/// Asserts that no re-entry happened and that the detector saw at least `min_calls` calls
/// since `calls_before`.
fn assert_no_reentry(calls_before: usize, min_calls: usize) {
    let calls = CALLS.load(Ordering::Relaxed) - calls_before;
    assert!(calls >= min_calls, "only {calls} allocator calls seen");
    assert_eq!(
        VIOLATIONS.load(Ordering::Relaxed),
        0,
        "the allocator re-entered itself"
    );
}

#[test]
fn detector_sees_nested_calls() {
    // Exclusive: the count goes up for a moment, which other tests would take for a violation.
    let _g = exclusive();
    // The detector itself works: a call made while "inside" counts.
    let before = VIOLATIONS.load(Ordering::Relaxed);
    DEPTH.with(|d| d.set(d.get() + 1));
    let inner = Inside::enter();
    drop(inner);
    DEPTH.with(|d| d.set(d.get() - 1));
    assert_eq!(VIOLATIONS.load(Ordering::Relaxed), before + 1);
    VIOLATIONS.fetch_sub(1, Ordering::Relaxed);
    assert_eq!(DEPTH.with(Cell::get), 0);
}

#[test]
fn collection_work_does_not_reenter() {
    let _g = shared();
    let before = CALLS.load(Ordering::Relaxed);
    let n = scaled(50_000, 10_000);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                let mut map: HashMap<usize, String> = HashMap::new();
                let mut tree: BTreeMap<String, Vec<usize>> = BTreeMap::new();
                for i in 0..n {
                    map.insert(i, format!("{t}-{i}"));
                    tree.entry(format!("{}", i % 100)).or_default().push(i);
                }
                let total: usize = tree.values().map(Vec::len).sum();
                assert_eq!(total, n);
                assert_eq!(map.len(), n);
                map.values().map(String::len).sum::<usize>()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap() > n);
    }
    assert_no_reentry(before, 4 * n);
}

/// Thread exits of threads with thread-local destructors that run this many times.
static TLS_DROPS: AtomicUsize = AtomicUsize::new(0);

/// A thread-local whose destructor allocates and frees while the thread is exiting.
struct AllocatesOnDrop;

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        let s = format!("exiting {:?}", thread::current().id());
        let v: Vec<u64> = (0..1000).collect();
        assert!(s.starts_with("exiting"));
        assert_eq!(v.iter().sum::<u64>(), 499_500);
        TLS_DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// Blocks a thread keeps until it exits; its destructor frees them.
    static KEPT: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    static ON_EXIT: RefCell<Option<AllocatesOnDrop>> = const { RefCell::new(None) };
}

#[test]
fn thread_exit_with_tls_destructors_does_not_reenter() {
    let _g = shared();
    let before = CALLS.load(Ordering::Relaxed);
    let drops_before = TLS_DROPS.load(Ordering::Relaxed);
    let threads = scaled(1000, 500);
    let wave = 25;
    for w in 0..threads / wave {
        let handles: Vec<_> = (0..wave)
            .map(|k| {
                let (tx, rx) = mpsc::channel::<Box<[u8]>>();
                // Blocks allocated here are freed by the thread's thread-local destructor.
                for j in 0..4 {
                    tx.send(vec![j as u8; 100 + 1000 * j].into_boxed_slice())
                        .unwrap();
                }
                drop(tx);
                thread::spawn(move || {
                    ON_EXIT.with(|o| *o.borrow_mut() = Some(AllocatesOnDrop));
                    KEPT.with(|kept| {
                        let mut kept = kept.borrow_mut();
                        kept.extend(rx.iter());
                        kept.push(vec![7; 1 + (w * wave + k) % 5000].into_boxed_slice());
                        if k == 0 {
                            kept.push(vec![9; 3 << 20].into_boxed_slice());
                        }
                    });
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    assert_eq!(TLS_DROPS.load(Ordering::Relaxed) - drops_before, threads);
    assert_no_reentry(before, threads * 10);
}

#[test]
fn large_blocks_do_not_reenter() {
    let _g = shared();
    let before = CALLS.load(Ordering::Relaxed);
    const M: usize = 1 << 20;
    for (size, align) in [
        (2 * M, 8),
        (5 * M, 4096),
        (100, 1 << 16),
        (17 * M, 64),
        (M + 1, 8192),
    ] {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero layouts; each block is freed once with its current layout.
        unsafe {
            let p = alloc(layout);
            assert!(!p.is_null() && (p as usize).is_multiple_of(align));
            p.write_bytes(1, size);
            let q = realloc(p, layout, size * 2);
            assert!(!q.is_null() && q.add(size - 1).read() == 1);
            let q2 = realloc(
                q,
                Layout::from_size_align(size * 2, align).unwrap(),
                size / 2 + 1,
            );
            assert!(!q2.is_null() && q2.read() == 1);
            dealloc(q2, Layout::from_size_align(size / 2 + 1, align).unwrap());
            let z = alloc_zeroed(layout);
            assert!(!z.is_null() && z.read() == 0 && z.add(size - 1).read() == 0);
            dealloc(z, layout);
        }
    }
    let _ = fam_alloc::thread_cached_bytes();
    fam_alloc::flush_thread_cache();
    let _ = fam_alloc::chunk_counts();
    let _ = fam_alloc::trim();
    assert_no_reentry(before, 20);
}

/// The sizes the exiting threads cache: after the frees each bucket holds blocks (up to its
/// capacity), which only the thread-exit flush gives back.
const EXIT_SIZES: [usize; 4] = [32, 256, 2000, 8000];

#[test]
fn exited_threads_give_their_cached_blocks_back() {
    let _g = exclusive();
    let before = CALLS.load(Ordering::Relaxed);
    let threads = 2000;
    let wave = 20;
    let warmup = 3;
    let mut chunks = Vec::new();
    let mut rss_warm = 0;
    for w in 0..threads / wave {
        let handles: Vec<_> = (0..wave)
            .map(|_| {
                thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(|| {
                        let mut blocks = Vec::with_capacity(64 * EXIT_SIZES.len());
                        for size in EXIT_SIZES {
                            for _ in 0..64 {
                                blocks.push(vec![size as u8; size]);
                            }
                        }
                        assert!(blocks
                            .iter()
                            .all(|b| b[0] == b.len() as u8 && b[b.len() - 1] == b.len() as u8));
                        drop(blocks);
                        fam_alloc::thread_cached_bytes()
                    })
                    .unwrap()
            })
            .collect();
        for h in handles {
            let cached = h.join().unwrap();
            assert!(cached >= 64 * 256, "the thread cached only {cached} bytes");
        }
        chunks.push(listed_chunks());
        if w + 1 == warmup {
            rss_warm = rss_anon();
        }
    }
    let rss_end = rss_anon();
    eprintln!(
        "thread exit: {threads} threads; resident {:.1} MiB after warm-up, {:.1} MiB at the end; \
         listed chunks per wave {chunks:?}",
        mib(rss_warm),
        mib(rss_end)
    );
    assert!(
        rss_end < rss_warm + (64 << 20),
        "resident memory grew from {:.1} to {:.1} MiB over {threads} threads",
        mib(rss_warm),
        mib(rss_end)
    );
    let warm_max = *chunks[..warmup].iter().max().unwrap();
    let late_max = *chunks[warmup..].iter().max().unwrap();
    // Each running thread owns a chunk of every class it uses (thread-owned refill), so a wave
    // whose threads overlap more than the warm-up's did needs more chunks at once: at most one
    // per class per thread of a wave. A leak grows past any such bound.
    let owned_per_wave = wave * EXIT_SIZES.len();
    assert!(
        late_max <= warm_max + owned_per_wave + 8,
        "the pool's chunks grew with the number of threads: {chunks:?}"
    );
    assert_no_reentry(before, threads * 64);
}

#[test]
fn block_cached_by_exited_thread_is_handed_out_again() {
    let _g = exclusive();
    // A class of its own (about 200 KiB): each bucket caches one block of it.
    let layout = Layout::from_size_align(200_000, 8).unwrap();
    let p = thread::spawn(move || {
        // SAFETY: a non-zero layout; freed once, into this thread's bucket.
        let p = unsafe {
            let p = alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(3, layout.size());
            dealloc(p, layout);
            p as usize
        };
        assert!(
            fam_alloc::thread_cached_bytes() >= layout.size(),
            "the freed block should sit in this thread's bucket"
        );
        p
    })
    .join()
    .unwrap();
    // Had the exited thread kept the block, its slot would never be free again. Once it is
    // back, allocations of the class reach it: its chunk is partial, or empty and reused before
    // any chunk from the OS.
    let mut got = Vec::new();
    let found = (0..2000).any(|_| {
        // SAFETY: a non-zero layout; every block is freed below.
        let q = unsafe { alloc(layout) };
        assert!(!q.is_null());
        got.push(q);
        q as usize == p
    });
    for q in got {
        // SAFETY: allocated above with `layout`, freed once.
        unsafe { dealloc(q, layout) };
    }
    assert!(
        found,
        "the block cached by the exited thread never came back"
    );
    fam_alloc::flush_thread_cache();
    assert_eq!(VIOLATIONS.load(Ordering::Relaxed), 0);
}

/// Keeps `Arc` in use so that reference counting across threads runs through the allocator.
#[test]
fn arcs_dropped_on_other_threads() {
    let _g = shared();
    let before = CALLS.load(Ordering::Relaxed);
    let data: Vec<Arc<Vec<u32>>> = (0..1000).map(|i| Arc::new(vec![i; 100])).collect();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let mine: Vec<Arc<Vec<u32>>> = data.iter().skip(t).step_by(4).cloned().collect();
            thread::spawn(move || {
                mine.iter()
                    .map(|v| v[0] as u64 * v.len() as u64)
                    .sum::<u64>()
            })
        })
        .collect();
    drop(data);
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 100 * 999 * 1000 / 2);
    assert_no_reentry(before, 1000);
}
