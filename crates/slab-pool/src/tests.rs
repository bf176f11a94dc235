//! The pool against a shadow model: every block handed out is distinct, inside a chunk of its
//! class, and every invariant holds after every operation ([`SlabPool::validate`]).

extern crate std;

use std::boxed::Box;
use std::collections::BTreeSet;
use std::vec::Vec;

use chunk_source::{ChunkError, ChunkSource, MmapSource};
use thread_heap::Block;

use crate::class::CLASSES;
use crate::membership::{FLOATING, LISTED, OWNED};
use crate::policy::DEFAULT_RETAIN_EMPTY;
use crate::{ChunkHeader, NoRegistry, Owner, SlabPool};

/// A source that refuses after `limit` chunks, to test out of memory.
#[derive(Clone, Copy)]
struct Limited {
    limit: usize,
    given: &'static core::sync::atomic::AtomicUsize,
}

// SAFETY: forwards to `MmapSource`, which upholds the trait's contract; refusing is allowed.
unsafe impl ChunkSource for Limited {
    fn props(&self) -> chunk_source::SourceProps {
        MmapSource::new().props()
    }
    fn alloc(&self, n: usize) -> Result<core::ptr::NonNull<u8>, ChunkError> {
        use core::sync::atomic::Ordering::Relaxed;
        if self.given.fetch_add(n, Relaxed) + n > self.limit {
            self.given.fetch_sub(n, Relaxed);
            return Err(ChunkError::OutOfMemory);
        }
        MmapSource::new().alloc(n)
    }
    unsafe fn dealloc(&self, ptr: core::ptr::NonNull<u8>, n: usize) -> Result<(), ChunkError> {
        // SAFETY: forwarded.
        unsafe { MmapSource::new().dealloc(ptr, n) }
    }
    unsafe fn decommit(&self, ptr: core::ptr::NonNull<u8>, len: usize) -> Result<(), ChunkError> {
        // SAFETY: forwarded.
        unsafe { MmapSource::new().decommit(ptr, len) }
    }
}

type Pool<S = MmapSource> = SlabPool<S, NoRegistry>;

/// A pool on the heap, built in place (it is half a megabyte).
fn boxed<S: ChunkSource>(source: S) -> Box<Pool<S>> {
    let b: Box<core::mem::MaybeUninit<Pool<S>>> = Box::new_uninit();
    let p = Box::into_raw(b).cast::<Pool<S>>();
    // SAFETY: `p` comes from a box of the pool's layout, so it is valid for writes; `init`
    // leaves a whole pool there for the box to take back.
    unsafe {
        SlabPool::init(p, source, NoRegistry);
        Box::from_raw(p)
    }
}

/// A refill of up to `max` blocks: their addresses, lowest first, or `None` when the pool is out
/// of memory.
fn refill<S: ChunkSource, R: crate::ChunkRegistry>(
    pool: &SlabPool<S, R>,
    owner: &mut Owner,
    class: usize,
    max: usize,
) -> Option<Vec<usize>> {
    let mut out = std::vec![core::ptr::null_mut(); max];
    let n = SlabPool::refill(pool, owner, class, &mut out);
    (n != 0).then(|| out[..n].iter().map(|&p| p as usize).collect())
}

/// The given blocks' addresses, as a heap flushes them.
fn blocks_of(addrs: &[usize]) -> Vec<core::ptr::NonNull<Block>> {
    addrs
        .iter()
        .map(|&a| core::ptr::NonNull::new(a as *mut Block).unwrap())
        .collect()
}

fn state_of(addr: usize) -> u8 {
    // SAFETY: test addresses are blocks of live chunks.
    unsafe { &*ChunkHeader::of(addr) }.membership().state()
}

/// A deterministic generator.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn refill_hands_out_distinct_blocks_of_the_class() {
    let pool = boxed(MmapSource::new());
    let mut owner = Owner::new();
    for class in [0, 5, 20, 40, 63] {
        let info = CLASSES[class];
        let mut seen = BTreeSet::new();
        for _ in 0..4 {
            let chain = refill(&pool, &mut owner, class, 64).unwrap();
            for b in chain.clone() {
                assert!(seen.insert(b), "block handed out twice");
                // SAFETY: the block is in a live chunk.
                let h = unsafe { &*ChunkHeader::of(b) };
                assert_eq!(h.block_class(b), Ok(class));
                assert_eq!(
                    (b - h.base() - crate::class::SLOT_OFFSET) % info.size as usize,
                    0
                );
            }
            pool.validate(&[&owner]);
        }
        assert!(owner.owns(class));
    }
}

#[test]
fn owner_frees_go_local_and_come_back_first() {
    let pool = boxed(MmapSource::new());
    let mut owner = Owner::new();
    let chain = refill(&pool, &mut owner, 2, 64).unwrap();
    let got = chain.clone();
    let h = ChunkHeader::of(got[0]);
    // SAFETY: a live chunk.
    let used = unsafe { &*h }.membership().used();
    // Free them in scrambled order: they land in the owner's local bitmap, `used` is unchanged.
    let mut scrambled = got.clone();
    scrambled.reverse();
    scrambled.swap(0, 7);
    // SAFETY: the blocks came from this pool as class 2 and are not used.
    unsafe { pool.flush(Some(&mut owner), 2, &blocks_of(&scrambled)) };
    // SAFETY: a live chunk.
    assert_eq!(unsafe { &*h }.membership().used(), used);
    pool.validate(&[&owner]);
    // The next refill hands the same blocks back, lowest first.
    let again = refill(&pool, &mut owner, 2, 64).unwrap();
    assert_eq!(again, got);
    pool.validate(&[&owner]);
}

#[test]
fn a_flush_spanning_many_words_counts_every_local_block() {
    // More distinct words than one table of groups holds, all in the owned chunk.
    let pool = boxed(MmapSource::new());
    let mut owner = Owner::new();
    let mut got = Vec::new();
    while got.len() < 64 * 100 {
        got.extend(refill(&pool, &mut owner, 0, 64).unwrap());
    }
    // One block of each word, then the rest: the first flush touches 100 words.
    let firsts: Vec<usize> = got.iter().copied().step_by(64).collect();
    // SAFETY: class-0 blocks of this pool, unused.
    unsafe { pool.flush(Some(&mut owner), 0, &blocks_of(&firsts)) };
    pool.validate(&[&owner]);
    // They come back lowest first, up to 64 per refill across words.
    let again: BTreeSet<usize> = (0..2)
        .flat_map(|_| refill(&pool, &mut owner, 0, 64).unwrap())
        .collect();
    assert_eq!(again.len(), 100);
    assert_eq!(again, firsts.iter().copied().collect());
    pool.validate(&[&owner]);
}

#[test]
fn a_full_chunk_floats_then_is_listed_by_a_remote_free_then_retired() {
    let pool = boxed(MmapSource::new());
    let class = 23; // the largest owned class: the fewest slots per owned chunk
    let slots = CLASSES[class].slots as usize;
    let mut owner = Owner::new();
    let mut first = Vec::new();
    while first.len() < slots {
        first.extend(refill(&pool, &mut owner, class, 64).unwrap());
    }
    // The next refill gives the full chunk up (FLOATING) and owns a new one.
    let next = refill(&pool, &mut owner, class, 1).unwrap();
    assert_ne!(ChunkHeader::of(next[0]), ChunkHeader::of(first[0]));
    assert_eq!(state_of(first[0]), FLOATING);
    assert_eq!(state_of(next[0]), OWNED);
    pool.validate(&[&owner]);
    // Another thread (no owner) frees one block: the chunk is listed.
    // SAFETY: blocks of class `class` from this pool, unused.
    unsafe { pool.flush(None, class, &blocks_of(&first[..1])) };
    assert_eq!(state_of(first[0]), LISTED);
    assert_eq!(pool.chunk_counts().partial, 1);
    pool.validate(&[&owner]);
    // The rest come back: the chunk is retired to the empty pool.
    // SAFETY: as above.
    unsafe { pool.flush(None, class, &blocks_of(&first[1..])) };
    assert_eq!(pool.chunk_counts().partial, 0);
    assert_eq!(pool.chunk_counts().empty_committed, 1);
    assert_eq!(pool.active(), 1);
    pool.validate(&[&owner]);
    // The empty chunk serves another class next.
    let mut other = Owner::new();
    let b = refill(&pool, &mut other, 0, 8).unwrap();
    assert_eq!(ChunkHeader::of(b[0]), ChunkHeader::of(first[0]));
    pool.validate(&[&owner, &other]);
}

#[test]
fn release_owner_merges_local_frees_and_retires_empty_chunks() {
    let pool = boxed(MmapSource::new());
    let mut owner = Owner::new();
    let mut held = Vec::new();
    for class in 0..8 {
        let chain = refill(&pool, &mut owner, class, 32).unwrap();
        held.push((class, chain.clone()));
    }
    for (class, b) in &held {
        // SAFETY: blocks of `class` from this pool, unused.
        unsafe { pool.flush(Some(&mut owner), *class, &blocks_of(b)) };
    }
    pool.validate(&[&owner]);
    assert_eq!(pool.active(), 8);
    // Given up, the empty chunks stay listed for the next heap that needs their classes...
    pool.release_owner(&mut owner);
    pool.validate(&[]);
    assert_eq!(pool.active(), 8);
    assert_eq!(pool.chunk_counts().partial, 8);
    let mut next = Owner::new();
    let b = refill(&pool, &mut next, 3, 4).unwrap();
    assert_eq!(
        ChunkHeader::of(b[0]),
        ChunkHeader::of(held[3].1[0]),
        "the warm chunk is reused"
    );
    // SAFETY: class-3 blocks of this pool, unused.
    unsafe { pool.flush(Some(&mut next), 3, &blocks_of(&b)) };
    // ...and trim retires and decommits them all.
    assert_eq!(pool.trim(Some(&mut next)), 8);
    assert_eq!(pool.active(), 0);
    assert_eq!(pool.chunk_counts().empty_decommitted, 8);
    pool.validate(&[]);
}

#[test]
fn empty_chunks_beyond_the_limit_are_decommitted() {
    let pool = boxed(MmapSource::new());
    let n = DEFAULT_RETAIN_EMPTY + 4;
    let mut owner = Owner::new();
    let mut held = Vec::new();
    // n chunks of the largest class, each fully claimed.
    for _ in 0..n {
        let class = 63;
        let mut b = Vec::new();
        while b.len() < CLASSES[class].slots as usize {
            b.extend(refill(&pool, &mut owner, class, 64).unwrap());
        }
        held.push(b);
    }
    pool.release_owner(&mut owner);
    for b in &held {
        // SAFETY: blocks of class 63 from this pool, unused.
        unsafe { pool.flush(None, 63, &blocks_of(b)) };
    }
    let c = pool.chunk_counts();
    assert_eq!(c.empty_committed + c.empty_decommitted, n);
    assert!(c.empty_committed <= DEFAULT_RETAIN_EMPTY, "{c:?}");
    pool.validate(&[]);
}

/// Claims every block of one fresh chunk of `class` for `owner`, gives the chunk up and returns
/// the blocks (all in that chunk).
fn whole_chunk(pool: &Pool, owner: &mut Owner, class: usize) -> Vec<usize> {
    let mut b = Vec::new();
    while b.len() < CLASSES[class].slots as usize {
        b.extend(refill(pool, owner, class, 64).unwrap());
    }
    let chunk = ChunkHeader::of(b[0]);
    assert!(b.iter().all(|&a| ChunkHeader::of(a) == chunk));
    pool.release_owner(owner);
    b
}

#[test]
fn an_empty_chunk_serves_the_class_it_served_last_first() {
    let pool = boxed(MmapSource::new());
    let mut owner = Owner::new();
    let a = whole_chunk(&pool, &mut owner, 63);
    let b = whole_chunk(&pool, &mut owner, 62);
    // SAFETY: blocks of these classes from this pool, unused.
    unsafe {
        pool.flush(None, 63, &blocks_of(&a));
        pool.flush(None, 62, &blocks_of(&b));
    }
    assert_eq!(pool.chunk_counts().empty_committed, 2);
    pool.validate(&[]);
    // Class 62 gets its own old chunk, not the lower-numbered one of class 63.
    let mut next = Owner::new();
    let got = refill(&pool, &mut next, 62, 1).unwrap();
    assert_eq!(ChunkHeader::of(got[0]), ChunkHeader::of(b[0]));
    // A class neither served takes what is left.
    let mut other = Owner::new();
    let got = refill(&pool, &mut other, 0, 1).unwrap();
    assert_eq!(ChunkHeader::of(got[0]), ChunkHeader::of(a[0]));
    pool.validate(&[&next, &other]);
}

#[test]
fn a_decommitted_chunk_comes_before_another_class_committed_one() {
    let pool = boxed(MmapSource::new());
    let mut owner = Owner::new();
    let a = whole_chunk(&pool, &mut owner, 63);
    let b = whole_chunk(&pool, &mut owner, 62);
    // SAFETY: blocks of class 63 from this pool, unused.
    unsafe { pool.flush(None, 63, &blocks_of(&a)) };
    assert_eq!(pool.trim(None), 1);
    // SAFETY: blocks of class 62 from this pool, unused.
    unsafe { pool.flush(None, 62, &blocks_of(&b)) };
    let c = pool.chunk_counts();
    assert_eq!((c.empty_committed, c.empty_decommitted), (1, 1));
    // A third class: the decommitted chunk, whose pages all fault in anew, rather than the
    // committed one, whose pages of class 62 would stay resident beside the new blocks.
    let mut next = Owner::new();
    let got = refill(&pool, &mut next, 0, 1).unwrap();
    assert_eq!(ChunkHeader::of(got[0]), ChunkHeader::of(a[0]));
    assert_eq!(pool.chunk_counts().empty_committed, 1);
    pool.validate(&[&next]);
}

#[test]
fn the_oldest_empty_chunk_beyond_the_limit_is_decommitted() {
    let pool = boxed(MmapSource::new());
    let mut owner = Owner::new();
    let held: Vec<Vec<usize>> = (0..=DEFAULT_RETAIN_EMPTY)
        .map(|_| whole_chunk(&pool, &mut owner, 63))
        .collect();
    // Emptied highest-numbered first, a millisecond apart (the pool's clock is coarser, so
    // neighbours may share a stamp): the lowest-numbered chunks are the newest.
    for b in held.iter().rev() {
        // SAFETY: blocks of class 63 from this pool, unused.
        unsafe { pool.flush(None, 63, &blocks_of(b)) };
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let chunks: Vec<&ChunkHeader> = held
        .iter()
        // SAFETY: the blocks' chunks are formatted chunks of the live pool.
        .map(|b| unsafe { &*ChunkHeader::of(b[0]) })
        .collect();
    let (gone, kept): (Vec<&&ChunkHeader>, Vec<&&ChunkHeader>) =
        chunks.iter().partition(|c| !c.committed());
    assert!(!gone.is_empty(), "one chunk past the limit was decommitted");
    let newest_gone = gone.iter().map(|c| c.emptied_at()).max().unwrap();
    let oldest_kept = kept.iter().map(|c| c.emptied_at()).min().unwrap();
    assert!(
        newest_gone <= oldest_kept,
        "a chunk emptied at {newest_gone} went before one emptied at {oldest_kept}"
    );
    assert!(
        chunks[0].committed(),
        "the newest empty chunk stays committed"
    );
    assert!(pool.chunk_counts().empty_committed <= DEFAULT_RETAIN_EMPTY);
    pool.validate(&[]);
}

#[test]
fn random_operations_against_a_model() {
    let pool = boxed(MmapSource::new());
    let mut owners = [Owner::new(), Owner::new(), Owner::new()];
    let mut live: Vec<(usize, usize)> = Vec::new(); // (class, block)
    let mut all = BTreeSet::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for step in 0..3000 {
        let who = rng.below(3);
        match rng.below(10) {
            0..=4 => {
                let class = [0, 1, 9, 30, 60][rng.below(5)];
                let chain = refill(&pool, &mut owners[who], class, 1 + rng.below(64)).unwrap();
                for b in chain.clone() {
                    assert!(all.insert(b), "step {step}: block {b:#x} handed out twice");
                    live.push((class, b));
                }
            }
            5..=8 if !live.is_empty() => {
                // Free a random handful of one class, from any owner (or none).
                let class = live[rng.below(live.len())].0;
                let mut picked = Vec::new();
                let mut i = 0;
                while i < live.len() && picked.len() < 80 {
                    if live[i].0 == class && rng.below(3) == 0 {
                        picked.push(live.swap_remove(i).1);
                    } else {
                        i += 1;
                    }
                }
                if picked.is_empty() {
                    continue;
                }
                for b in &picked {
                    all.remove(b);
                }
                let owner = if rng.below(4) == 0 {
                    None
                } else {
                    Some(&mut owners[who])
                };
                // SAFETY: the picked blocks are of `class`, from this pool, and unused.
                unsafe { pool.flush(owner, class, &blocks_of(&picked)) };
            }
            _ => pool.release_owner(&mut owners[who]),
        }
        pool.validate(&[&owners[0], &owners[1], &owners[2]]);
    }
    for o in &mut owners {
        pool.release_owner(o);
    }
    while let Some((class, b)) = live.pop() {
        // SAFETY: as above.
        unsafe { pool.flush(None, class, &blocks_of(&[b])) };
    }
    pool.validate(&[]);
    pool.trim(None);
    pool.validate(&[]);
    assert_eq!(pool.active(), 0, "every chunk came back");
}

#[test]
fn threads_refill_and_free_each_others_blocks() {
    use std::sync::mpsc;
    static POOL: SlabPool<MmapSource> = SlabPool::new(MmapSource::new(), NoRegistry);
    let (tx, rx) = mpsc::channel::<Vec<usize>>();
    let producer = std::thread::spawn(move || {
        let mut owner = Owner::new();
        for _ in 0..2000 {
            let chain = refill(&POOL, &mut owner, 4, 32).unwrap();
            tx.send(chain.clone()).unwrap();
        }
        POOL.release_owner(&mut owner);
    });
    let consumer = std::thread::spawn(move || {
        let mut owner = Owner::new();
        let mut seen = 0;
        for b in rx {
            seen += b.len();
            // Keep one back to mix local and remote frees when they are ours.
            let mine = refill(&POOL, &mut owner, 4, 1).unwrap();
            let mut all = b;
            all.push(mine[0]);
            // SAFETY: class-4 blocks of this pool, no longer used.
            unsafe { POOL.flush(Some(&mut owner), 4, &blocks_of(&all)) };
        }
        POOL.release_owner(&mut owner);
        seen
    });
    producer.join().unwrap();
    assert!(consumer.join().unwrap() >= 2000);
    POOL.validate(&[]);
    POOL.trim(None);
    POOL.validate(&[]);
    assert_eq!(POOL.active(), 0);
}

#[test]
fn out_of_memory_is_none_and_the_pool_recovers() {
    static GIVEN: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    let pool = boxed(Limited {
        limit: 2,
        given: &GIVEN,
    });
    let mut a = Owner::new();
    let mut b = Owner::new();
    let mut c = Owner::new();
    assert!(refill(&pool, &mut a, 0, 1).is_some());
    assert!(refill(&pool, &mut b, 1, 1).is_some());
    assert!(
        refill(&pool, &mut c, 2, 1).is_none(),
        "a third chunk is refused"
    );
    pool.validate(&[&a, &b, &c]);
    // b leaves its chunk with one block out: it is listed, and serves class 1 again without a
    // new chunk.
    pool.release_owner(&mut b);
    pool.validate(&[&a, &c]);
    assert_eq!(pool.chunk_counts().partial, 1);
    assert!(
        refill(&pool, &mut c, 1, 1).is_some(),
        "the listed chunk of class 1 serves again"
    );
    assert_eq!(pool.mapped(), 2);
    pool.validate(&[&a, &c]);
}

#[test]
#[should_panic(expected = "count against bitmap")]
fn the_validator_catches_a_wrong_count() {
    let pool = boxed(MmapSource::new());
    let mut owner = Owner::new();
    let chain = refill(&pool, &mut owner, 0, 4).unwrap();
    // SAFETY: a live chunk; this deliberately breaks its invariant.
    unsafe { &*ChunkHeader::of(chain[0]) }
        .membership()
        .claimed(1);
    pool.validate(&[&owner]);
}

/// `reset` takes every block back: chunks of two classes, some blocks out, some flushed, some
/// local to their owner, all become empty chunks on the empty pool, and they serve any class
/// again without the source being asked for more.
#[test]
fn reset_empties_every_chunk_and_keeps_it() {
    let mut pool = boxed(MmapSource::new());
    let mut owner = Owner::new();
    let (a, b) = (1, 20);
    let mut held = Vec::new();
    for class in [a, b] {
        for _ in 0..(CLASSES[class].slots as usize * 2 / 64 + 1) {
            held.extend(refill(&pool, &mut owner, class, 64).unwrap());
        }
    }
    // Some back to their chunks: the owned one keeps them locally, the others are released.
    let back: Vec<usize> = held.iter().copied().step_by(3).collect();
    // SAFETY: blocks of class `a` that the test holds, given back once.
    unsafe {
        pool.flush(
            Some(&mut owner),
            a,
            &blocks_of(
                &back
                    .iter()
                    .copied()
                    .filter(|&p| class_of(&pool, p) == a)
                    .collect::<Vec<_>>(),
            ),
        )
    };
    let mapped = pool.mapped();
    assert!(mapped >= 4, "two chunks per class at least, got {mapped}");
    owner.forget();
    pool.reset();
    pool.validate(&[]);
    let counts = pool.chunk_counts();
    assert_eq!(counts.partial, 0);
    assert_eq!(counts.empty_committed + counts.empty_decommitted, mapped);
    assert_eq!(pool.active(), 0);
    // Every chunk serves again, any class, with no new chunk from the source.
    let mut owner = Owner::new();
    let mut again = BTreeSet::new();
    let per_chunk = CLASSES[b].slots as usize;
    while again.len() < per_chunk * mapped {
        let chain = refill(&pool, &mut owner, b, 64).unwrap();
        again.extend(chain.clone());
    }
    assert_eq!(pool.mapped(), mapped, "reset chunks were not reused");
    pool.validate(&[&owner]);
}

/// The class of the chunk holding `p` (its tag).
fn class_of(_pool: &Pool, p: usize) -> usize {
    // SAFETY: `p` is a block of a formatted chunk of the pool.
    unsafe { &*ChunkHeader::of(p) }.block_class(p).unwrap()
}

/// Per page of `[addr, addr + len)`, whether it is resident.
fn resident(addr: usize, len: usize) -> Vec<bool> {
    let page = chunk_source::page_size();
    let mut v = std::vec![0u8; len.div_ceil(page)];
    // SAFETY: the range is mapped (a chunk of the pool) and `v` has a byte per page.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, len, v.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore");
    v.iter().map(|b| b & 1 != 0).collect()
}

#[test]
fn trim_gives_back_the_free_pages_of_a_listed_chunk_and_keeps_the_live_ones() {
    let pool = boxed(MmapSource::new());
    let class = crate::class::small_class(64, 8).unwrap();
    let size = CLASSES[class].size as usize;
    let slots = CLASSES[class].slots as usize;
    let mut owner = Owner::new();
    let mut all = Vec::new();
    while all.len() < slots {
        all.extend(refill(&pool, &mut owner, class, 64).unwrap());
    }
    let base = ChunkHeader::of(all[0]) as usize;
    assert!(all.iter().all(|&b| ChunkHeader::of(b) as usize == base));
    for &b in &all {
        // SAFETY: the test holds every block; each is `size` bytes.
        unsafe { core::ptr::write_bytes(b as *mut u8, 0xa5, size) };
    }
    pool.release_owner(&mut owner);
    // Keep every 100th block (so some pages hold a live block and most do not); free the rest
    // from no owner, so the chunk is listed.
    let kept: Vec<usize> = all.iter().copied().step_by(100).collect();
    let freed: Vec<usize> = (0..all.len())
        .filter(|i| i % 100 != 0)
        .map(|i| all[i])
        .collect();
    for part in freed.chunks(1000) {
        // SAFETY: blocks of this class from this pool, unused.
        unsafe { pool.flush(None, class, &blocks_of(part)) };
    }
    pool.validate(&[]);
    let page = chunk_source::page_size();
    let area = base + crate::class::SLOT_OFFSET;
    let live_page = |p: usize| {
        kept.iter()
            .any(|&b| (b - area) / page <= p && p <= (b + size - 1 - area) / page)
    };
    let npages = (slots * size).div_ceil(page);
    assert_eq!(pool.trim(None), 0, "no chunk is empty");
    let res = resident(area, npages * page);
    let want_purged = (0..npages).filter(|&p| !live_page(p)).count();
    assert!(want_purged > npages / 3, "the test keeps most pages free");
    for (p, &r) in res.iter().enumerate() {
        assert_eq!(
            r,
            live_page(p),
            "page {p}: resident {r}, holds a live block {}",
            !r
        );
    }
    assert_eq!(pool.chunk_counts().purged_pages, want_purged);
    for &b in &kept {
        // SAFETY: a live block of the test's.
        let v = unsafe { core::slice::from_raw_parts(b as *const u8, size) };
        assert!(
            v.iter().all(|&x| x == 0xa5),
            "a live block kept its content"
        );
    }
    pool.validate(&[]);
    // A new owner takes the chunk: its blocks in purged pages read as zero and are usable.
    let mut next = Owner::new();
    let b = refill(&pool, &mut next, class, 64).unwrap();
    assert_eq!(ChunkHeader::of(b[0]) as usize, base);
    assert_eq!(
        pool.chunk_counts().purged_pages,
        0,
        "owned again: counted as committed"
    );
    // SAFETY: blocks of this class from this pool, unused.
    unsafe { pool.flush(Some(&mut next), class, &blocks_of(&b)) };
    pool.release_owner(&mut next);
    // SAFETY: the kept blocks, unused now.
    unsafe { pool.flush(None, class, &blocks_of(&kept)) };
    pool.validate(&[]);
    assert_eq!(pool.active(), 0);
}

/// A block that appears twice in one flush, with enough other words between the copies that
/// the flush releases the first copy (and so retires its chunk, whose only block it was) before
/// it reaches the second: the second is reported as a free into an empty chunk, and the process
/// aborts, instead of being released into the retired chunk's bitmap (which a retired chunk
/// holds all claimed, so the release would succeed) and its count taken below zero.
#[test]
fn a_copy_of_a_block_after_its_chunk_retired_in_the_same_flush_aborts() {
    // SAFETY: the child only runs the pool code below and exits; the parent waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let run = std::panic::catch_unwind(|| {
            let pool = boxed(MmapSource::new());
            let class = 0;
            let word_bytes = 64 * CLASSES[class].size as usize;
            // One block of each of 47 words of a chunk that `owner` owns (the flush below has
            // no owner, so every block is gathered by word).
            let mut owner = Owner::new();
            let mut words = BTreeSet::new();
            let mut others = Vec::new();
            while others.len() < 47 {
                let got = refill(&pool, &mut owner, class, 64).unwrap();
                if words.insert(got[0] / word_bytes) {
                    others.push(got[0]);
                }
            }
            // The one block out of another chunk, which then is listed, owned by nobody.
            let mut one = [core::ptr::null_mut(); 1];
            assert_eq!(pool.refill_once(class, &mut one), 1);
            let lone = one[0] as usize;
            let chunk_of = |a: usize| a & !(chunk_source::CHUNK_SIZE - 1);
            assert!(others.iter().all(|&a| chunk_of(a) != chunk_of(lone)));
            let mut flush = std::vec![lone];
            flush.extend(&others);
            flush.push(lone);
            // SAFETY: a bad flush that the pool must catch; every pointer lies in its chunks.
            unsafe { pool.flush(None, class, &blocks_of(&flush)) };
        });
        // Returning (or panicking on the count) means the copy was not caught.
        // SAFETY: `_exit` ends the child without running the parent's test harness.
        unsafe { libc::_exit(if run.is_ok() { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT,
        "the second copy was not reported (child status {status:#x})"
    );
}
