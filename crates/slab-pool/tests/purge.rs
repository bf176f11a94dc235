//! The purge delay, end to end: free pages of active chunks keep their memory for the delay and
//! lose it afterwards, at the next pool operation or at a `maintain` call, for chunks that are
//! listed and for chunks the calling thread owns. Its own process: it sets the process-wide
//! policy.

mod common;

use std::thread::sleep;
use std::time::Duration;

use common::resident_pages;

use chunk_source::{ChunkSource, MmapSource};
use slab_pool::class::{small_class, CLASSES};
use slab_pool::{BadBlock, ChunkHeader, NoRegistry, Owner, SlabPool, POLICY};
use thread_heap::Block;

static POOL: SlabPool<MmapSource> = SlabPool::new(MmapSource::new(), NoRegistry);

const DELAY_MS: i64 = 40;

/// A refill of up to `max` blocks: their addresses, lowest first, or `None` when the pool is out
/// of memory.
fn refill<S: ChunkSource, R: slab_pool::ChunkRegistry>(
    pool: &SlabPool<S, R>,
    owner: &mut Owner,
    class: usize,
    max: usize,
) -> Option<Vec<usize>> {
    let mut out = vec![core::ptr::null_mut(); max];
    let n = SlabPool::refill(pool, owner, class, &mut out);
    (n != 0).then(|| out[..n].iter().map(|&p| p as usize).collect())
}

fn blocks_of(addrs: &[usize]) -> Vec<std::ptr::NonNull<Block>> {
    addrs
        .iter()
        .map(|&a| std::ptr::NonNull::new(a as *mut Block).unwrap())
        .collect()
}

/// Claims every block of one chunk of `class` for `owner`, writing each; returns them.
fn fill_chunk(owner: &mut Owner, class: usize) -> Vec<usize> {
    let slots = CLASSES[class].slots as usize;
    let size = CLASSES[class].size as usize;
    let mut all = Vec::new();
    while all.len() < slots {
        all.extend(refill(&POOL, owner, class, 64).unwrap());
    }
    for &b in &all {
        // SAFETY: the test holds every block.
        unsafe { std::ptr::write_bytes(b as *mut u8, 1, size) };
    }
    all
}

#[test]
fn free_pages_keep_their_memory_for_the_delay_then_go_back() {
    POLICY.set_purge_delay_ms(DELAY_MS);
    let class = small_class(64, 8).unwrap();
    let other = small_class(32, 8).unwrap();
    let page_count = (CLASSES[class].slots as usize * CLASSES[class].size as usize)
        .div_ceil(chunk_source::page_size());

    // A listed chunk: filled by one owner, freed by no owner.
    let mut a = Owner::new();
    let all = fill_chunk(&mut a, class);
    let base = ChunkHeader::of(all[0]) as usize;
    POOL.release_owner(&mut a);
    // One block stays live, so the chunk stays active (listed) instead of empty.
    for part in all[1..].chunks(500) {
        // SAFETY: blocks of this class from this pool, unused.
        unsafe { POOL.flush(None, class, &blocks_of(part)) };
    }
    POOL.validate(&[]);
    // Within the delay the pages stay (the last flush was just now).
    let r = resident_pages(base);
    assert!(
        r >= page_count * 9 / 10,
        "{r} of {page_count} resident, {:?}",
        POOL.chunk_counts()
    );
    sleep(Duration::from_millis(3 * DELAY_MS as u64));
    // The next pool operation, a flush of another class's block, runs the pass.
    let mut b = Owner::new();
    let one = refill(&POOL, &mut b, other, 1).unwrap();
    // SAFETY: a block of `other` from this pool, unused.
    unsafe { POOL.flush(Some(&mut b), other, &blocks_of(&one)) };
    assert_eq!(
        resident_pages(base),
        1,
        "a quiet listed chunk gave its free pages back"
    );
    assert_eq!(POOL.chunk_counts().purged_pages, page_count - 1);
    POOL.validate(&[&b]);

    // A chunk the thread owns gives back the pages of the blocks freed back to it (its local
    // bits) too: the pass moves them to the shared bitmap first, where a second free of one of
    // them is refused by its bit instead of by the free mark its page held.
    let mut c = Owner::new();
    let slots = CLASSES[other].slots as usize;
    let mut mine = Vec::new();
    while mine.len() < slots / 2 {
        mine.extend(refill(&POOL, &mut c, other, 64).unwrap());
    }
    let size = CLASSES[other].size as usize;
    for &p in &mine {
        // SAFETY: the test holds every block.
        unsafe { std::ptr::write_bytes(p as *mut u8, 1, size) };
    }
    let mine_base = ChunkHeader::of(mine[0]) as usize;
    let touched = resident_pages(mine_base);
    assert!(touched >= mine.len() * size / chunk_source::page_size());
    for part in mine.chunks(500) {
        // SAFETY: blocks of `other` from this pool, unused.
        unsafe { POOL.flush(Some(&mut c), other, &blocks_of(part)) };
    }
    POOL.validate(&[&b, &c]);
    // SAFETY: the header of a slab chunk of this pool.
    let mine_chunk = unsafe { &*ChunkHeader::of(mine[1]) };
    assert!(
        mine_chunk.check_block(other, mine[1]).is_ok(),
        "a block in the local bitmap is out in the shared one"
    );
    assert_eq!(resident_pages(mine_base), touched, "kept within the delay");
    sleep(Duration::from_millis(3 * DELAY_MS as u64));
    let x = refill(&POOL, &mut c, class, 1).unwrap();
    // SAFETY: a block of `class` from this pool, unused.
    unsafe { POOL.flush(Some(&mut c), class, &blocks_of(&x)) };
    assert_eq!(
        resident_pages(mine_base),
        0,
        "an owned chunk with every block back gave all its pages back"
    );
    assert_eq!(
        mine_chunk.check_block(other, mine[1]),
        Err(BadBlock::AlreadyFree),
        "its blocks are free in the shared bitmap now"
    );
    POOL.validate(&[&b, &c]);
    // The owner goes on claiming from it; the blocks come back as zero pages.
    let again = refill(&POOL, &mut c, other, 64).unwrap();
    assert!(again
        .iter()
        .all(|&p| ChunkHeader::of(p) as usize == mine_base));
    // SAFETY: a block just claimed, ours; the pages read zero since the purge.
    assert_eq!(unsafe { *((again[0] + 8) as *const u8) }, 0);
    // SAFETY: blocks of `other` from this pool, unused.
    unsafe { POOL.flush(Some(&mut c), other, &blocks_of(&again)) };
    POOL.validate(&[&b, &c]);

    // `maintain` (a background thread's call) purges without any pool operation.
    let mut d = Owner::new();
    let third = fill_chunk(&mut d, class);
    let third_base = ChunkHeader::of(third[0]) as usize;
    POOL.release_owner(&mut d);
    for part in third[1..].chunks(500) {
        // SAFETY: as above.
        unsafe { POOL.flush(None, class, &blocks_of(part)) };
    }
    assert!(resident_pages(third_base) > 0);
    sleep(Duration::from_millis(3 * DELAY_MS as u64));
    let (pages, _) = POOL.maintain();
    assert_eq!(pages, page_count - 1, "maintain gave back the free pages");
    assert_eq!(resident_pages(third_base), 1);

    // A negative delay turns purging off.
    POLICY.set_purge_delay_ms(-1);
    let mut e = Owner::new();
    let fourth = fill_chunk(&mut e, class);
    let fourth_base = ChunkHeader::of(fourth[0]) as usize;
    POOL.release_owner(&mut e);
    for part in fourth[1..].chunks(500) {
        // SAFETY: as above.
        unsafe { POOL.flush(None, class, &blocks_of(part)) };
    }
    sleep(Duration::from_millis(3 * DELAY_MS as u64));
    assert_eq!(POOL.maintain(), (0, 0));
    assert!(resident_pages(fourth_base) >= page_count * 9 / 10);
    POOL.release_owner(&mut b);
    POOL.release_owner(&mut c);
    // SAFETY: the blocks kept live above, unused now.
    unsafe { POOL.flush(None, class, &blocks_of(&[all[0], third[0], fourth[0]])) };
    POOL.validate(&[]);
}
