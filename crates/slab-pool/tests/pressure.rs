//! The pressure bound, end to end: memory a thread frees beyond the bound goes back to the OS
//! after the purge delay, at the recheck its next allocation runs although no flush
//! follows, and the thread owns no chunk after it (so a background pass reaches them all); a
//! thread that frees less than the bound asks for no recheck and keeps its pages until a pool
//! operation's pass.
//! Its own process: it sets the process-wide policy, and its one test runs its phases in order
//! on one pool.

use chunk_source::MmapSource;
use slab_pool::class::{small_class, CLASSES};
mod common;

use std::thread::sleep;
use std::time::Duration;

use slab_pool::policy::{PRESSURE_FREE, PRESSURE_STEP};
use slab_pool::{NoRegistry, Owner, SlabPool, POLICY};
use thread_heap::Block;

static POOL: SlabPool<MmapSource> = SlabPool::new(MmapSource::new(), NoRegistry);

/// Resident pages of the block areas of the chunks holding `blocks`.
fn resident_pages(blocks: &[usize]) -> usize {
    let mut bases: Vec<usize> = blocks
        .iter()
        .map(|&b| b & !(chunk_source::CHUNK_SIZE - 1))
        .collect();
    bases.sort_unstable();
    bases.dedup();
    bases.into_iter().map(common::resident_pages).sum()
}

/// Claims at least `bytes` of blocks of `class` for `owner`, writing each; returns them.
fn claim(owner: &mut Owner, class: usize, bytes: usize) -> Vec<usize> {
    let size = CLASSES[class].size as usize;
    let mut all = Vec::new();
    let mut out = vec![core::ptr::null_mut(); 64];
    while all.len() * size < bytes {
        let n = POOL.refill(owner, class, &mut out);
        assert_ne!(n, 0, "out of memory");
        all.extend(out[..n].iter().map(|&p| p as usize));
    }
    for &b in &all {
        // SAFETY: the test holds every block.
        unsafe { std::ptr::write_bytes(b as *mut u8, 1, size) };
    }
    all
}

/// One block in this many (in claim order) stays live, so that no chunk empties (an empty chunk
/// goes to the empty pool, whose own policy is tested elsewhere) and each keeps a few pages.
const KEEP: usize = 4096;

/// Frees all of `blocks` but every [`KEEP`]-th through `owner`, in a scrambled order or in claim
/// order, 32 at a time, as a bucket's flushes do. Returns the ones kept live.
fn free_all_but_some(
    owner: &mut Owner,
    class: usize,
    blocks: &[usize],
    scramble: bool,
) -> Vec<usize> {
    let kept: Vec<usize> = blocks.iter().copied().step_by(KEEP).collect();
    let mut blocks: Vec<usize> = (0..blocks.len())
        .filter(|i| i % KEEP != 0)
        .map(|i| blocks[i])
        .collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..blocks.len()).rev().filter(|_| scramble) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blocks.swap(i, (x % (i as u64 + 1)) as usize);
    }
    for batch in blocks.chunks(32) {
        let ptrs: Vec<_> = batch
            .iter()
            .map(|&a| core::ptr::NonNull::new(a as *mut Block).unwrap())
            .collect();
        // SAFETY: every block was handed out by this pool as a block of `class`, and is freed
        // once.
        unsafe { POOL.flush(Some(owner), class, &ptrs) };
    }
    kept
}

#[test]
fn frees_beyond_the_bound_go_back_at_the_recheck_and_frees_below_it_wait() {
    // Passes want 2 s of quiet, and so does the recheck.
    POLICY.set_purge_delay_ms(2000);
    let class = small_class(64, 8).unwrap();
    let page = chunk_source::page_size();
    let delay = Duration::from_millis(2000 + 100);

    // Below the bound: half of it freed keeps every page, and asks for no recheck.
    let mut a = Owner::new();
    let small = claim(&mut a, class, PRESSURE_FREE / 2);
    let pages = small.len() * 64 / page;
    let small_kept = free_all_but_some(&mut a, class, &small, true);
    assert!(!a.recheck_wanted());
    sleep(delay);
    POOL.pressure_recheck(&mut a);
    assert!(
        resident_pages(&small) >= pages,
        "{} of {pages} pages resident after frees below the bound",
        resident_pages(&small)
    );

    // Beyond it, scrambled: a page is rarely all free before the last frees, and the last
    // check asks for a recheck; before the delay it gives nothing back, after it the
    // recheck gives back the rest although no flush follows. The chunks of the first phase
    // are listed with their free pages: those go too. What stays is about a page per live
    // block (32 pages of slack for the edges of the chunks the phases share).
    let mut b = Owner::new();
    let big = claim(&mut b, class, 4 * PRESSURE_FREE + PRESSURE_STEP);
    let peak = resident_pages(&big);
    let big_kept = free_all_but_some(&mut b, class, &big, true);
    assert!(
        b.recheck_wanted(),
        "the last check found the pool over the bound"
    );
    assert!(
        !b.owns(class),
        "past the bound the owner gives its chunk up, for any pass to reach"
    );
    POOL.validate(&[&a, &b]);
    POOL.pressure_recheck(&mut b);
    assert!(b.recheck_wanted(), "a recheck before the delay waits");
    assert!(
        resident_pages(&big) * 2 > peak,
        "nothing went back before the delay"
    );
    sleep(delay);
    POOL.pressure_recheck(&mut b);
    assert!(!b.recheck_wanted());
    let all = [&small[..], &big[..]].concat();
    let left = resident_pages(&all);
    let live = small_kept.len() + big_kept.len();
    assert!(
        left <= live + 32,
        "{left} pages resident after the recheck, {live} blocks live (peak {peak})"
    );

    // With purging off, the bound gives nothing back.
    POLICY.set_purge_delay_ms(-1);
    let mut c = Owner::new();
    let off = claim(&mut c, class, 2 * PRESSURE_FREE);
    let before = resident_pages(&off);
    free_all_but_some(&mut c, class, &off, true);
    sleep(delay);
    POOL.pressure_recheck(&mut c);
    assert_eq!(resident_pages(&off), before);
    POOL.release_owner(&mut a);
    POOL.release_owner(&mut b);
    POOL.release_owner(&mut c);

    // An owner given up is as new: the recheck it was owed goes with its chunks, so a heap
    // that reuses it starts with none.
    POLICY.set_purge_delay_ms(2000);
    let mut d = Owner::new();
    let more = claim(&mut d, class, 4 * PRESSURE_FREE + PRESSURE_STEP);
    free_all_but_some(&mut d, class, &more, true);
    assert!(d.recheck_wanted(), "freed beyond the bound");
    POOL.release_owner(&mut d);
    assert!(!d.recheck_wanted(), "a released owner owes no recheck");
}
