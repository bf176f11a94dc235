//! Statistics counters.
//!
//! Two kinds, so the fast paths pay nothing unless asked to:
//!
//! - **Per-thread counters** (cargo feature `stats`): every thread counts its allocations and frees
//!   per class in its own thread-local block, with relaxed loads and stores of atomics that only it
//!   writes (plain moves on x86-64: no locked instruction, no shared cache line). Other threads only
//!   read them, when a snapshot is taken. Each block is on a global list while its thread lives; at
//!   thread exit its counts are added to the totals of exited threads and it leaves the list.
//!   Without the feature these functions are empty and compile to nothing.
//!   Refills and flushes are counted the same way: each thread keeps, per class, the net number of
//!   blocks it took out of the pool and its own high-water mark of that number. No refill or
//!   flush touches a shared cache line for statistics.
//! - **Slow-path counters** (always on): large blocks, chunks. They change on paths that already
//!   make system calls or take locks, so shared atomics cost nothing noticeable there.
//!
//! A class's peak (`peak_blocks`) is the sum of every thread's high-water mark since the last
//! [`reset_peaks`], so it is at least the most blocks that were ever out at once, and exactly that
//! when one thread allocates and frees the class; when threads hand blocks to one another (one
//! allocates, another frees), it overstates (mimalloc's merged peaks do the same). An exact peak
//! of a sum over threads needs a shared counter on every refill and flush, which is what these
//! counters exist to avoid. A reset bumps an epoch; each thread restarts its marks from its
//! present counts at its next refill or flush (a thread that has not moved since counts with its
//! present number).
//!
//! How many blocks a thread's bucket caches is not counted on the fast path either. Every change
//! to a bucket's length is either a counted alloc (−1), a counted free (+1), or a refill or flush,
//! which goes through the pool; there the thread *publishes* the length the bucket will have
//! (net of the counted operation under way) with the counts at that moment. Any later length is
//! `published − (allocs − allocs then) + (frees − frees then)`, exact whenever the thread is not
//! in the middle of an operation.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Large blocks allocated, freed, and their bytes (requested sizes) now and at the peak.
pub(crate) static LARGE_ALLOCS: AtomicU64 = AtomicU64::new(0);
pub(crate) static LARGE_FREES: AtomicU64 = AtomicU64::new(0);
pub(crate) static LARGE_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static LARGE_PEAK: AtomicU64 = AtomicU64::new(0);
/// Chunks in live large blocks.
pub(crate) static LARGE_CHUNKS: AtomicU64 = AtomicU64::new(0);

/// Records a large block of `bytes` over `chunks` chunks coming (`sign` 1) or going (-1).
pub(crate) fn large_changed(bytes: usize, chunks: usize, sign: i64) {
    if sign > 0 {
        LARGE_ALLOCS.fetch_add(1, Relaxed);
        let now = LARGE_BYTES.fetch_add(bytes as u64, Relaxed) + bytes as u64;
        LARGE_PEAK.fetch_max(now, Relaxed);
        LARGE_CHUNKS.fetch_add(chunks as u64, Relaxed);
    } else {
        LARGE_FREES.fetch_add(1, Relaxed);
        LARGE_BYTES.fetch_sub(bytes as u64, Relaxed);
        LARGE_CHUNKS.fetch_sub(chunks as u64, Relaxed);
    }
}

/// Records a large block resized in place or moved.
pub(crate) fn large_resized(
    old_bytes: usize,
    new_bytes: usize,
    old_chunks: usize,
    new_chunks: usize,
) {
    if new_bytes >= old_bytes {
        let now = LARGE_BYTES.fetch_add((new_bytes - old_bytes) as u64, Relaxed)
            + (new_bytes - old_bytes) as u64;
        LARGE_PEAK.fetch_max(now, Relaxed);
    } else {
        LARGE_BYTES.fetch_sub((old_bytes - new_bytes) as u64, Relaxed);
    }
    LARGE_CHUNKS.fetch_add(new_chunks as u64, Relaxed);
    LARGE_CHUNKS.fetch_sub(old_chunks as u64, Relaxed);
}

#[cfg(feature = "stats")]
pub(crate) use enabled::*;

#[cfg(not(feature = "stats"))]
pub(crate) use disabled::*;

#[cfg(not(feature = "stats"))]
mod disabled {
    /// Without the `stats` feature a thread counts nothing: an empty type with empty methods.
    #[derive(Debug)]
    pub(crate) struct ThreadCounters;

    impl ThreadCounters {
        pub(crate) const fn new() -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn count_alloc(&self, _class: usize) {}
        #[inline(always)]
        pub(crate) fn count_free(&self, _class: usize) {}
    }

    #[inline(always)]
    pub(crate) fn refilled(_class: usize, _n: usize) {}
    #[inline(always)]
    pub(crate) fn flushed(_class: usize, _n: usize, _bucket_cap: u32) {}
    #[inline(always)]
    pub(crate) fn emptied_buckets() {}
    #[inline(always)]
    pub(crate) fn thread_started() {}
    #[inline(always)]
    pub(crate) fn thread_exited() {}
    pub(crate) fn register_child_hook() {}
    #[inline(always)]
    pub(crate) fn exited_op(_class: usize, _alloc: bool, _n: usize) {}
    pub(crate) fn heaps() -> core::iter::Empty<stats::HeapStats> {
        core::iter::empty()
    }
    pub(crate) fn threads_live() -> u64 {
        0
    }
    pub(crate) fn class_totals() -> [super::ClassTotals; crate::class::NUM_CLASSES] {
        [super::ClassTotals::default(); crate::class::NUM_CLASSES]
    }
    pub(crate) fn reset_peaks() {}
    pub(crate) static THREADS_EXITED: core::sync::atomic::AtomicU64 =
        core::sync::atomic::AtomicU64::new(0);
}

/// Process-wide counts of one class, from a snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ClassTotals {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) cached: u64,
    /// At least the most blocks out of the pool at once since the last reset (module docs).
    pub(crate) peak: u64,
}

#[cfg(feature = "stats")]
mod enabled {
    use core::ptr;
    use core::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, Ordering::Relaxed};

    use stats::HeapStats;

    use super::ClassTotals;
    use crate::class::{CLASSES, NUM_CLASSES};
    use crate::local::with_counters;
    use chunk_source::fork::ChildHook;
    use chunk_source::SpinMutex;

    /// One thread's counters. Written only by its thread (relaxed load + store); read by snapshots.
    /// The links are only touched under the [`LIVE`] lock.
    #[derive(Debug)]
    pub(crate) struct ThreadCounters {
        allocs: [AtomicU64; NUM_CLASSES],
        frees: [AtomicU64; NUM_CLASSES],
        /// Bucket length published at the last refill or flush, and the counts at that moment.
        published: [AtomicI64; NUM_CLASSES],
        allocs_then: [AtomicU64; NUM_CLASSES],
        frees_then: [AtomicU64; NUM_CLASSES],
        /// Net blocks this thread took out of the pool (refills minus flushes), and the most
        /// since the reset epoch `epoch` (see the module docs).
        out: [AtomicI64; NUM_CLASSES],
        peak: [AtomicI64; NUM_CLASSES],
        epoch: AtomicU64,
        id: AtomicU64,
        next: AtomicPtr<ThreadCounters>,
        prev: AtomicPtr<ThreadCounters>,
    }

    impl ThreadCounters {
        /// An allocation of `class` on this thread's fast path.
        #[inline(always)]
        pub(crate) fn count_alloc(&self, class: usize) {
            bump(&self.allocs[class]);
        }

        /// A free of `class` on this thread's fast path.
        #[inline(always)]
        pub(crate) fn count_free(&self, class: usize) {
            bump(&self.frees[class]);
        }

        pub(crate) const fn new() -> Self {
            Self {
                allocs: [const { AtomicU64::new(0) }; NUM_CLASSES],
                frees: [const { AtomicU64::new(0) }; NUM_CLASSES],
                published: [const { AtomicI64::new(0) }; NUM_CLASSES],
                allocs_then: [const { AtomicU64::new(0) }; NUM_CLASSES],
                frees_then: [const { AtomicU64::new(0) }; NUM_CLASSES],
                out: [const { AtomicI64::new(0) }; NUM_CLASSES],
                peak: [const { AtomicI64::new(0) }; NUM_CLASSES],
                epoch: AtomicU64::new(0),
                id: AtomicU64::new(0),
                next: AtomicPtr::new(ptr::null_mut()),
                prev: AtomicPtr::new(ptr::null_mut()),
            }
        }

        /// Blocks this thread's bucket of `class` holds (see the module docs).
        fn cached(&self, class: usize) -> u64 {
            let allocs = self.allocs[class]
                .load(Relaxed)
                .wrapping_sub(self.allocs_then[class].load(Relaxed));
            let frees = self.frees[class]
                .load(Relaxed)
                .wrapping_sub(self.frees_then[class].load(Relaxed));
            (self.published[class].load(Relaxed) - allocs as i64 + frees as i64).max(0) as u64
        }

        /// Moves this thread's count of blocks out of the pool by `n` (a refill, or a flush with
        /// `n` negative), raising its mark; first restarts every mark from the present when a
        /// reset happened since this thread last moved.
        fn moved(&self, class: usize, n: i64) {
            let epoch = EPOCH.load(Relaxed);
            if self.epoch.load(Relaxed) != epoch {
                for k in 0..NUM_CLASSES {
                    self.peak[k].store(self.out[k].load(Relaxed), Relaxed);
                }
                self.epoch.store(epoch, Relaxed);
            }
            let out = self.out[class].load(Relaxed) + n;
            self.out[class].store(out, Relaxed);
            if out > self.peak[class].load(Relaxed) {
                self.peak[class].store(out, Relaxed);
            }
        }

        /// This thread's mark for `class`, as a snapshot counts it: its present count if it has
        /// not moved since the last reset.
        fn mark(&self, class: usize) -> i64 {
            let out = self.out[class].load(Relaxed);
            if self.epoch.load(Relaxed) == EPOCH.load(Relaxed) {
                self.peak[class].load(Relaxed).max(out)
            } else {
                out
            }
        }

        fn publish(&self, class: usize, len: i64) {
            self.published[class].store(len, Relaxed);
            self.allocs_then[class].store(self.allocs[class].load(Relaxed), Relaxed);
            self.frees_then[class].store(self.frees[class].load(Relaxed), Relaxed);
        }
    }

    /// The counters of threads that are alive and registered, newest first.
    struct Live {
        head: *mut ThreadCounters,
        len: u64,
    }
    // SAFETY: the list only holds pointers to thread-local blocks, which their threads unlink
    // before they exit; it is reached only through the lock.
    unsafe impl Send for Live {}

    static LIVE: SpinMutex<Live> = SpinMutex::new(Live {
        head: ptr::null_mut(),
        len: 0,
    });
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    pub(crate) static THREADS_EXITED: AtomicU64 = AtomicU64::new(0);
    /// Counts of threads that have exited.
    static EXITED_ALLOCS: [AtomicU64; NUM_CLASSES] = [const { AtomicU64::new(0) }; NUM_CLASSES];
    static EXITED_FREES: [AtomicU64; NUM_CLASSES] = [const { AtomicU64::new(0) }; NUM_CLASSES];
    /// Blocks out of the pool that exited threads took (net), and the sum of their marks (kept
    /// at least as large; see the module docs).
    static EXITED_OUT: [AtomicI64; NUM_CLASSES] = [const { AtomicI64::new(0) }; NUM_CLASSES];
    static EXITED_PEAK: [AtomicI64; NUM_CLASSES] = [const { AtomicI64::new(0) }; NUM_CLASSES];
    /// Bumped by every `reset_peaks`.
    static EPOCH: AtomicU64 = AtomicU64::new(0);

    /// Calls `f` on every thread block of the list `live` (held locked by the caller).
    fn walk(live: &Live, mut f: impl FnMut(&ThreadCounters)) {
        let mut n = live.head;
        while !n.is_null() {
            // SAFETY: list members are thread blocks that stay listed while the lock is held
            // (and, in a forked child, copies of them in the child's memory).
            let c = unsafe { &*n };
            // Read before `f`, which may relink the node.
            n = c.next.load(Relaxed);
            f(c);
        }
    }

    /// Folds the counts of a thread that is gone into the exited totals.
    fn fold_exited(c: &ThreadCounters) {
        for class in 0..NUM_CLASSES {
            EXITED_ALLOCS[class].fetch_add(c.allocs[class].load(Relaxed), Relaxed);
            EXITED_FREES[class].fetch_add(c.frees[class].load(Relaxed), Relaxed);
            EXITED_OUT[class].fetch_add(c.out[class].load(Relaxed), Relaxed);
            EXITED_PEAK[class].fetch_add(c.mark(class), Relaxed);
        }
        THREADS_EXITED.fetch_add(1, Relaxed);
    }

    #[inline(always)]
    fn bump(c: &AtomicU64) {
        // Only this thread writes `c`: a relaxed load and store (no locked instruction) suffice.
        c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// A refill handed this thread `n` blocks, one of which the alloc under way takes.
    pub(crate) fn refilled(class: usize, n: usize) {
        with_counters(|c| {
            c.publish(class, n as i64);
            c.moved(class, n as i64);
        });
    }

    /// A flush took `n` blocks from a bucket of capacity `bucket_cap`; the free under way (if
    /// any) is counted after this. See [`thread_heap`]: a full bucket keeps `cap - n` blocks and
    /// then takes the freed one; a bucket of capacity 0 passes the freed block itself (`n = 1`).
    pub(crate) fn flushed(class: usize, n: usize, bucket_cap: u32) {
        with_counters(|c| {
            c.publish(class, bucket_cap as i64 - n as i64);
            c.moved(class, -(n as i64));
        });
    }

    /// Every bucket of this thread was just emptied (flush of the whole heap).
    pub(crate) fn emptied_buckets() {
        with_counters(|c| {
            for class in 0..NUM_CLASSES {
                c.publish(class, 0);
            }
        });
    }

    /// Puts this thread's counters on the live list.
    pub(crate) fn thread_started() {
        with_counters(|c| {
            let me = c as *const ThreadCounters as *mut ThreadCounters;
            c.id.store(NEXT_ID.fetch_add(1, Relaxed), Relaxed);
            let mut live = LIVE.lock();
            c.prev.store(ptr::null_mut(), Relaxed);
            c.next.store(live.head, Relaxed);
            if !live.head.is_null() {
                // SAFETY: list members are live thread blocks; we hold the lock.
                unsafe { (*live.head).prev.store(me, Relaxed) };
            }
            live.head = me;
            live.len += 1;
        });
    }

    /// Counts an allocation (or a free) made by a thread after its exit destructor ran, and the
    /// `n` blocks the refill (or flush) it took moved out of (or back to) the pool. Such a
    /// thread's counters are off the list, so this goes to the exited totals: one shared update
    /// per operation, on a path that refills or flushes every time anyway.
    pub(crate) fn exited_op(class: usize, alloc: bool, n: usize) {
        let c = if alloc {
            &EXITED_ALLOCS[class]
        } else {
            &EXITED_FREES[class]
        };
        c.fetch_add(1, Relaxed);
        if alloc {
            let out = EXITED_OUT[class].fetch_add(n as i64, Relaxed) + n as i64;
            EXITED_PEAK[class].fetch_max(out, Relaxed);
        } else {
            EXITED_OUT[class].fetch_sub(n as i64, Relaxed);
        }
    }

    /// Repairs the live list in a forked child, whose only thread is the one that forked.
    ///
    /// Any other thread may have held the list's lock at the fork (a snapshot, or a thread
    /// starting or exiting): the child frees it instead of waiting for a thread that does not
    /// exist there. The list itself is consistent when walked forward from its head whatever
    /// step a link or unlink was at (each changes one forward pointer, in one store), and every
    /// node on it is a thread block copied into the child. The threads other than this one are
    /// gone: their counts join the exited totals, and the list is left holding this thread only
    /// (if it was on it). A thread caught halfway through its own exit may be counted twice;
    /// counts are statistics, so that is the whole cost. The lock, if a thread of the parent
    /// held it, is taken over (see [`chunk_source::fork`]); the list is rebuilt whatever state
    /// the holder left it in.
    fn after_fork_in_child() {
        // Null when this thread has no counters of its own (it never took a slow path).
        let me = with_counters(|me| me as *const ThreadCounters as *mut ThreadCounters)
            .unwrap_or(ptr::null_mut());
        let mut live = LIVE.lock();
        let mut found = false;
        // Nodes are thread blocks, copied into the child with the memory.
        walk(&live, |c| {
            if ptr::eq(c, me) {
                found = true;
            } else {
                fold_exited(c);
            }
        });
        if found {
            // SAFETY: `me` is this thread's block; we hold the lock.
            unsafe {
                (*me).next.store(ptr::null_mut(), Relaxed);
                (*me).prev.store(ptr::null_mut(), Relaxed);
            }
            live.head = me;
            live.len = 1;
        } else {
            live.head = ptr::null_mut();
            live.len = 0;
        }
    }

    static CHILD_HOOK: ChildHook = ChildHook::new(after_fork_in_child);

    /// Makes every forked child repair the live list (see `after_fork_in_child`).
    pub(crate) fn register_child_hook() {
        chunk_source::fork::register(&CHILD_HOOK);
    }

    /// Folds this thread's counts into the exited totals and takes it off the list.
    pub(crate) fn thread_exited() {
        with_counters(|c| {
            let me = c as *const ThreadCounters as *mut ThreadCounters;
            let mut live = LIVE.lock();
            fold_exited(c);
            for class in 0..NUM_CLASSES {
                c.allocs[class].store(0, Relaxed);
                c.frees[class].store(0, Relaxed);
                c.out[class].store(0, Relaxed);
                c.peak[class].store(0, Relaxed);
                c.publish(class, 0);
            }
            let (p, n) = (c.prev.load(Relaxed), c.next.load(Relaxed));
            if p.is_null() {
                live.head = n;
            } else {
                // SAFETY: list members are live thread blocks; we hold the lock.
                unsafe { (*p).next.store(n, Relaxed) };
            }
            if !n.is_null() {
                // SAFETY: as above.
                unsafe { (*n).prev.store(p, Relaxed) };
            }
            debug_assert!(p != me && n != me);
            live.len -= 1;
        });
    }

    /// The per-heap views: the exited threads' heap (id 0), then each live thread's heap. Holds
    /// the list lock while it lives, so threads cannot start or exit meanwhile.
    pub(crate) fn heaps() -> Heaps {
        let live = LIVE.lock();
        let next = live.head;
        Heaps {
            _live: live,
            next,
            exited_done: false,
        }
    }

    /// Iterator over the heap views; see [`heaps`].
    pub(crate) struct Heaps {
        _live: chunk_source::SpinGuard<'static, Live>,
        next: *mut ThreadCounters,
        exited_done: bool,
    }

    impl Iterator for Heaps {
        type Item = HeapStats;

        fn next(&mut self) -> Option<HeapStats> {
            if !self.exited_done {
                self.exited_done = true;
                return Some(view(0, |class| {
                    let allocs = EXITED_ALLOCS[class].load(Relaxed);
                    (allocs, EXITED_FREES[class].load(Relaxed), 0)
                }));
            }
            if self.next.is_null() {
                return None;
            }
            // SAFETY: list members are live thread blocks; the guard we hold keeps them listed.
            let c = unsafe { &*self.next };
            let h = view(c.id.load(Relaxed), |class| {
                let allocs = c.allocs[class].load(Relaxed);
                (allocs, c.frees[class].load(Relaxed), c.cached(class))
            });
            self.next = c.next.load(Relaxed);
            Some(h)
        }
    }

    /// A heap view whose class `c` has the counts `counts(c)` = (allocs, frees, cached).
    fn view(id: u64, counts: impl Fn(usize) -> (u64, u64, u64)) -> HeapStats {
        let mut h = HeapStats::new(id, NUM_CLASSES);
        for (class, cs) in h.classes[..NUM_CLASSES].iter_mut().enumerate() {
            let (allocs, frees, cached) = counts(class);
            cs.block_size = CLASSES[class].size as u64;
            cs.allocs = allocs;
            cs.frees = frees;
            cs.cached = cached;
        }
        h
    }

    /// Live registered threads.
    pub(crate) fn threads_live() -> u64 {
        LIVE.lock().len
    }

    /// Process-wide counts per class, over exited and live threads. Holds the list lock for the
    /// walk.
    pub(crate) fn class_totals() -> [ClassTotals; NUM_CLASSES] {
        let mut t = [ClassTotals::default(); NUM_CLASSES];
        let mut peaks = [0i64; NUM_CLASSES];
        for class in 0..NUM_CLASSES {
            t[class].allocs = EXITED_ALLOCS[class].load(Relaxed);
            t[class].frees = EXITED_FREES[class].load(Relaxed);
            peaks[class] = EXITED_PEAK[class].load(Relaxed);
        }
        walk(&LIVE.lock(), |c| {
            for class in 0..NUM_CLASSES {
                t[class].allocs += c.allocs[class].load(Relaxed);
                t[class].frees += c.frees[class].load(Relaxed);
                t[class].cached += c.cached(class);
                peaks[class] += c.mark(class);
            }
        });
        for class in 0..NUM_CLASSES {
            // The marks bound the blocks out of the pool, which include those in use and cached
            // (relaxed reads of moving counters can disagree by a batch; the bound is kept).
            let out = t[class].allocs as i64 - t[class].frees as i64 + t[class].cached as i64;
            t[class].peak = peaks[class].max(out).max(0) as u64;
        }
        t
    }

    /// Starts the peaks again from the present.
    pub(crate) fn reset_peaks() {
        for class in 0..NUM_CLASSES {
            EXITED_PEAK[class].store(EXITED_OUT[class].load(Relaxed), Relaxed);
        }
        EPOCH.fetch_add(1, Relaxed);
    }
}
