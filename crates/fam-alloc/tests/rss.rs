//! Resident memory falls after a program frees what it allocated.
//!
//! The tests allocate a few hundred MiB in small blocks, touch every block, free them all, and
//! read the process's anonymous resident memory (`RssAnon`) before, at the peak and after:
//! with [`fam_alloc::trim`] the empty chunks are decommitted at once; without it the pool still
//! decommits them by itself (when more than a few wait, or once they have waited a while). The
//! tests of this binary measure the whole process, so they run one at a time.

mod common;

use std::alloc::{alloc, dealloc, Layout};
use std::ptr;
use std::thread;
use std::time::{Duration, Instant};

use common::{exclusive, mib, rss_anon, scaled};
use fam_alloc::FamAlloc;

#[global_allocator]
static A: FamAlloc = FamAlloc::new();

/// Blocks linked through their first word, so that tracking them costs no memory of its own.
struct BlockList {
    head: *mut u8,
    layout: Layout,
    count: usize,
}

impl BlockList {
    /// Allocates blocks of `size` bytes until they add up to `bytes`, writing every page of each.
    fn allocate(size: usize, bytes: usize) -> Self {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let mut list = Self {
            head: ptr::null_mut(),
            layout,
            count: 0,
        };
        for i in 0..bytes / size {
            // SAFETY: a non-zero layout.
            let p = unsafe { alloc(layout) };
            assert!(
                !p.is_null(),
                "out of memory after {i} blocks of {size} bytes"
            );
            // SAFETY: `p` holds `size >= 16` bytes; the first word links the list, the second
            // marks the block, and one byte per further page makes the whole block resident.
            unsafe {
                p.cast::<*mut u8>().write(list.head);
                p.add(8).cast::<usize>().write(i);
                for off in (4096..size).step_by(4096) {
                    p.add(off).write(1);
                }
            }
            list.head = p;
            list.count += 1;
        }
        list
    }

    /// Frees every block, checking its mark on the way.
    fn free(self) {
        let mut p = self.head;
        let mut i = self.count;
        while !p.is_null() {
            i -= 1;
            // SAFETY: `p` is a live block of the list, written by `allocate`.
            let (next, mark) =
                unsafe { (p.cast::<*mut u8>().read(), p.add(8).cast::<usize>().read()) };
            assert_eq!(mark, i, "block {p:p} was overwritten");
            // SAFETY: allocated with `self.layout` and freed once.
            unsafe { dealloc(p, self.layout) };
            p = next;
        }
        assert_eq!(i, 0);
    }
}

/// Allocates `total` bytes, half in 64-byte and half in 4 KiB blocks, and returns them with the
/// resident memory added.
fn fill_memory(total: usize) -> (Vec<BlockList>, usize) {
    let before = rss_anon();
    let lists = vec![
        BlockList::allocate(64, total / 2),
        BlockList::allocate(4096, total / 2),
    ];
    let added = rss_anon().saturating_sub(before);
    assert!(
        added >= total / 10 * 9,
        "touching {:.0} MiB added only {:.1} MiB",
        mib(total),
        mib(added)
    );
    (lists, added)
}

#[test]
fn rss_falls_after_free_and_trim() {
    let _g = exclusive();
    fam_alloc::trim();
    let total = scaled(256 << 20, 128 << 20);
    let (lists, added) = fill_memory(total);
    let peak = rss_anon();
    for list in lists {
        list.free();
    }
    fam_alloc::flush_thread_cache();
    let trimmed = fam_alloc::trim();
    let after = rss_anon();
    let fallen = peak.saturating_sub(after);
    eprintln!(
        "with trim: +{:.1} MiB, then -{:.1} MiB ({trimmed} chunks trimmed)",
        mib(added),
        mib(fallen)
    );
    assert!(trimmed > 0, "trim found nothing to give back");
    assert!(
        fallen >= added / 4 * 3,
        "resident memory fell by {:.1} MiB of the {:.1} MiB added",
        mib(fallen),
        mib(added)
    );
    let counts = fam_alloc::chunk_counts();
    assert_eq!(
        counts.empty_committed, 0,
        "trim leaves no committed empty chunk: {counts:?}"
    );
}

#[test]
fn rss_falls_without_trim() {
    let _g = exclusive();
    fam_alloc::trim();
    let total = scaled(256 << 20, 128 << 20);
    let (lists, added) = fill_memory(total);
    let peak = rss_anon();
    for list in lists {
        list.free();
    }
    fam_alloc::flush_thread_cache();
    let right_after = rss_anon();
    // Keep the pool in use for a while with a class the test has not used: each round takes a
    // chunk's worth of blocks and gives them back, which retires a chunk and lets the pool
    // decommit the ones that have waited too long.
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_millis(400) || rounds < 4 {
        BlockList::allocate(2048, 4 << 20).free();
        fam_alloc::flush_thread_cache();
        rounds += 1;
        thread::sleep(Duration::from_millis(50));
    }
    let after = rss_anon();
    let fallen = peak.saturating_sub(after);
    eprintln!(
        "without trim: +{:.1} MiB, -{:.1} MiB right after the frees, -{:.1} MiB after {rounds} \
         rounds; {:?}",
        mib(added),
        mib(peak.saturating_sub(right_after)),
        mib(fallen),
        fam_alloc::chunk_counts()
    );
    assert!(
        fallen >= added / 4 * 3,
        "resident memory fell by {:.1} MiB of the {:.1} MiB added",
        mib(fallen),
        mib(added)
    );
}

#[test]
fn rss_falls_after_large_blocks_are_freed() {
    let _g = exclusive();
    fam_alloc::trim();
    let block = 8 << 20;
    let count = scaled(32, 16);
    let layout = Layout::from_size_align(block, 64).unwrap();
    let before = rss_anon();
    let blocks: Vec<*mut u8> = (0..count)
        .map(|i| {
            // SAFETY: a non-zero layout; freed below.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null());
            // SAFETY: `p` holds `block` bytes.
            unsafe { p.write_bytes(i as u8, block) };
            p
        })
        .collect();
    let peak = rss_anon();
    let added = peak.saturating_sub(before);
    assert!(added >= count * block / 10 * 9);
    for (i, &p) in blocks.iter().enumerate() {
        // SAFETY: allocated with `layout`, freed once.
        unsafe {
            assert_eq!(p.add(block - 1).read(), i as u8);
            dealloc(p, layout);
        }
    }
    // The run cache may keep a few freed runs mapped; the rest went back at once.
    let untrimmed = rss_anon();
    let cache_bound = large_alloc_cache_bound();
    assert!(
        peak.saturating_sub(untrimmed) + cache_bound >= added,
        "without trim, resident memory fell by {:.1} of {:.1} MiB",
        mib(peak.saturating_sub(untrimmed)),
        mib(added)
    );
    fam_alloc::trim();
    let after = rss_anon();
    assert!(
        peak.saturating_sub(after) >= added / 4 * 3,
        "after trim, resident memory fell by {:.1} of {:.1} MiB",
        mib(peak.saturating_sub(after)),
        mib(added)
    );
}

/// The most the large-block run cache keeps, and some slack.
fn large_alloc_cache_bound() -> usize {
    (large_alloc::CACHE_MAX_CHUNKS << 22) + (8 << 20)
}
