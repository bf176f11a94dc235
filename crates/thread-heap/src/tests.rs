//! Unit tests: every operation against the model store, with the bucket invariants re-checked
//! (a full walk of every list) after each step.

#[path = "../tests/common/mod.rs"]
mod common;

use core::ptr::NonNull;

use common::{scaled, Heap, Held, HeldSet, ModelStore, Rng};

use crate::{Block, CentralStore, ThreadHeap};

/// One class of 2-word blocks.
fn store_one(blocks: usize) -> ModelStore {
    ModelStore::new(&[(2, blocks)])
}

/// Allocates `n` blocks of `class`, tagging each.
fn take<const N: usize>(
    heap: &mut Heap<N>,
    store: &ModelStore,
    class: usize,
    n: usize,
) -> Vec<Held> {
    (0..n)
        .map(|i| {
            let p = heap.alloc(class, store).expect("store has blocks");
            heap.assert_valid();
            Held::new(store, p, class, i as u64)
        })
        .collect()
}

fn free<const N: usize>(heap: &mut Heap<N>, store: &ModelStore, held: Held) {
    held.check(store);
    // SAFETY: `held` was allocated from a heap over `store` and is no longer used.
    unsafe { heap.dealloc(held.class, held.ptr, store) };
    heap.assert_valid();
}

#[test]
fn layout() {
    assert!(
        size_of::<ThreadHeap<4, 8>>() >= 4 * 16 + 8 * 8,
        "four bucket fields per class, then slots"
    );
    assert_eq!(size_of::<Block>(), size_of::<usize>());
}

#[test]
fn heap_is_send_and_const() {
    fn send<T: Send>() {}
    send::<Heap<8>>();
    const HEAP: Heap<3> = Heap::new([0, 1, 2]);
    let heap = HEAP;
    assert_eq!((heap.cap(0), heap.cap(1), heap.cap(2)), (0, 1, 2));
    assert_eq!((heap.cached(0), heap.cached(1), heap.cached(2)), (0, 0, 0));
    assert!(heap.bucket(2).is_empty());
}

#[test]
fn refill_asks_for_half_the_cap_and_keeps_the_rest() {
    for (cap, asked) in [(0, 1), (1, 1), (2, 1), (3, 1), (8, 4), (9, 4), (64, 32)] {
        let store = store_one(100);
        let mut heap = Heap::<1>::new([cap]);
        let held = take(&mut heap, &store, 0, 1);
        let stats = store.stats(0);
        assert_eq!(stats.refills, 1, "cap {cap}");
        assert_eq!(stats.last_refill_max, asked, "cap {cap}");
        assert_eq!(stats.out, asked, "cap {cap}");
        assert_eq!(heap.cached(0), asked - 1, "cap {cap}");
        assert_eq!(
            held[0].ptr,
            store.last_refill(0)[0],
            "the first block given is handed out"
        );
        // The rest of the batch is handed out before the store is asked again.
        let more = take(&mut heap, &store, 0, asked - 1);
        assert_eq!(store.stats(0).refills, 1, "cap {cap}");
        assert_eq!(heap.cached(0), 0);
        let in_order: Vec<_> = held.iter().chain(&more).map(|h| h.ptr).collect();
        assert_eq!(
            in_order,
            store.last_refill(0),
            "batch handed out in the order given"
        );
        take(&mut heap, &store, 0, 1);
        assert_eq!(store.stats(0).refills, 2, "cap {cap}");
    }
}

#[test]
fn free_is_lifo() {
    let store = store_one(64);
    let mut heap = Heap::<1>::new([16]);
    let held = take(&mut heap, &store, 0, 8);
    let order: Vec<_> = held.iter().map(|h| h.ptr).collect();
    let cached = heap.cached(0);
    for h in held {
        free(&mut heap, &store, h);
    }
    assert_eq!(heap.cached(0), cached + 8);
    for &p in order.iter().rev() {
        assert_eq!(heap.alloc(0, &store), Some(p));
    }
    assert_eq!(store.stats(0).flushes, 0);
}

/// The fast-path halves never reach the store: `pop` of an empty bucket and `push` onto a full
/// one report it and change nothing, and otherwise act as `alloc` and `dealloc` do.
#[test]
fn pop_and_push_stop_where_the_store_would_be_needed() {
    let store = store_one(64);
    let mut heap = Heap::<1>::new([4]);
    assert_eq!(heap.pop(0), None, "an empty bucket does not refill");
    assert_eq!(store.stats(0).refills, 0);
    let held = take(&mut heap, &store, 0, 5);
    // Refills of two (half the capacity) left one block cached: three pushes fill the bucket.
    assert_eq!(heap.cached(0), 1);
    let order: Vec<_> = held.iter().map(|h| h.ptr).collect();
    let mut pushed = Vec::new();
    for h in held {
        h.check(&store);
        // SAFETY: `h` was allocated from this heap over `store` and is no longer used; a refused
        // block stays ours and is freed below.
        if unsafe { heap.push(0, h.ptr) } {
            pushed.push(h.ptr);
        } else {
            assert_eq!(heap.cached(0), 4, "refused only when full");
            // SAFETY: as above, through the path that flushes.
            unsafe { heap.dealloc(0, h.ptr, &store) };
        }
        heap.assert_valid();
    }
    // The fourth was refused; its free flushed half the bucket, so the fifth fit again.
    assert_eq!(pushed, [order[0], order[1], order[2], order[4]]);
    assert_eq!(
        store.stats(0).flushes,
        1,
        "only the refused block's free flushed"
    );
    let newest = heap.pop(0).expect("the bucket holds blocks");
    assert_eq!(newest, *order.last().unwrap(), "LIFO");
    heap.flush_all(&store);
}

/// Fills a bucket of capacity `cap` with `cap` blocks freed in order, frees one more and checks
/// that exactly the oldest `cap - cap / 2` went back in one flush, oldest first.
fn check_overflow(cap: u32) {
    let store = store_one(4 * cap as usize + 8);
    let mut heap = Heap::<1>::new([cap]);
    let mut held = take(&mut heap, &store, 0, cap as usize + 1);
    // Drain what the last refill left cached so the bucket holds only our frees.
    let extra = heap.cached(0);
    held.extend(take(&mut heap, &store, 0, extra));
    assert_eq!(heap.cached(0), 0);
    let order: Vec<_> = held.iter().map(|h| h.ptr).collect();
    let mut held = held.into_iter();
    for h in held.by_ref().take(cap as usize) {
        free(&mut heap, &store, h);
    }
    assert_eq!(heap.cached(0), cap as usize);
    assert_eq!(store.stats(0).flushes, 0, "cap {cap}: no flush until full");
    free(&mut heap, &store, held.next().unwrap());
    let keep = (cap / 2) as usize;
    let stats = store.stats(0);
    assert_eq!(stats.flushes, 1, "cap {cap}: one flush");
    assert_eq!(stats.flushed_blocks, cap as usize - keep, "cap {cap}");
    assert_eq!(
        store.last_flush(0),
        order[..cap as usize - keep],
        "cap {cap}: oldest blocks, oldest first"
    );
    assert_eq!(heap.cached(0), keep + 1);
    // What stays: the block just freed, then the newest `keep` in LIFO order.
    for i in (cap as usize - keep..=cap as usize).rev() {
        assert_eq!(heap.alloc(0, &store), Some(order[i]), "cap {cap}");
    }
    assert_eq!(heap.cached(0), 0);
    heap.assert_valid();
}

#[test]
fn full_bucket_flushes_its_oldest_half() {
    for cap in [1, 2, 3, 5, 8, 9, 64, 256] {
        check_overflow(cap);
    }
}

/// A bucket keeps addresses, not links: caching a block, handing it out again and flushing it
/// never write into it, so a block's content is exactly what its last user left.
#[test]
fn cached_blocks_are_never_written() {
    let store = store_one(64);
    let mut heap = Heap::<1>::new([8]);
    let held = take(&mut heap, &store, 0, 12);
    let copies: Vec<(NonNull<u8>, u64)> = held.iter().map(|h| (h.ptr, h.tag)).collect();
    for h in held {
        // SAFETY: `h` came from this heap over `store` and is no longer used.
        unsafe { heap.dealloc(0, h.ptr, &store) };
    }
    let cached = heap.cached(0);
    assert!(
        cached > 0 && store.stats(0).flushes > 0,
        "some cached, some flushed"
    );
    let flushed = store.last_flush(0);
    for (p, tag) in copies.iter().filter(|(p, _)| !flushed.contains(p)) {
        for w in 0..store.block_words(0) {
            // SAFETY: the block is cached by the heap, which owns it but never writes it; the
            // test only reads it.
            let v = unsafe { p.as_ptr().cast::<u64>().add(w).read() };
            assert_eq!(v, *tag, "cached block {p:p} written at word {w}");
        }
    }
    heap.flush_all(&store);
    store.assert_all_home();
}

/// A lazy heap learns each capacity from the store on the class's first slow path, and never
/// takes more than the room it reserved.
#[test]
fn a_learned_capacity_stays_within_the_room() {
    let model = store_one(64);
    let store = CapStore {
        inner: &model,
        asked: 0.into(),
        answer: 100.into(),
    };
    let mut heap = Heap::<1>::lazy([6]);
    assert_eq!(heap.cap(0), 0, "nothing cached before the first slow path");
    let p = heap.alloc(0, &store).unwrap();
    assert_eq!((store.asked.get(), heap.cap(0), heap.cached(0)), (1, 6, 2));
    // SAFETY: `p` came from this heap's store and is not used any more.
    unsafe { heap.dealloc(0, p, &store) };
    heap.assert_valid();
    heap.flush_all(&store);
    model.assert_all_home();
}

#[test]
fn cap_zero_caches_nothing() {
    let store = store_one(8);
    let mut heap = Heap::<1>::new([0]);
    for round in 1..=3 {
        let p = heap.alloc(0, &store).unwrap();
        assert_eq!(heap.cached(0), 0);
        let s = store.stats(0);
        assert_eq!((s.refills, s.last_refill_max, s.out), (round, 1, 1));
        let h = Held::new(&store, p, 0, round as u64);
        free(&mut heap, &store, h);
        let s = store.stats(0);
        assert_eq!((s.flushes, s.max_flush_len, s.out), (round, 1, 0));
        assert_eq!(store.last_flush(0), vec![p]);
        assert_eq!(heap.cached(0), 0);
    }
    store.assert_all_home();
}

#[test]
fn store_may_return_fewer_than_asked() {
    let store = store_one(64);
    store.set_refill_limit(2);
    let mut heap = Heap::<1>::new([16]);
    take(&mut heap, &store, 0, 1);
    assert_eq!(store.stats(0).last_refill_max, 8);
    assert_eq!(heap.cached(0), 1);
    store.set_refill_limit(1);
    take(&mut heap, &store, 0, 2);
    assert_eq!(heap.cached(0), 0);
    assert_eq!(store.stats(0).refills, 2);
}

#[test]
fn refill_failure_leaves_the_heap_usable() {
    let store = store_one(64);
    let mut heap = Heap::<2>::new([8, 8]);
    let mut held = take(&mut heap, &store, 0, 2); // 2 left cached
    store.set_fail(true);
    // Cached blocks are still served...
    held.extend(take(&mut heap, &store, 0, 2));
    // ...then the heap reports out of memory without changing state.
    for _ in 0..3 {
        assert_eq!(heap.alloc(0, &store), None);
        heap.assert_valid();
        assert_eq!(heap.cached(0), 0);
    }
    assert_eq!(store.stats(0).failed_refills, 3);
    // Frees still work while the store fails.
    for h in held.drain(..) {
        free(&mut heap, &store, h);
    }
    assert_eq!(heap.cached(0), 4);
    store.set_fail(false);
    held = take(&mut heap, &store, 0, 10);
    for h in held {
        free(&mut heap, &store, h);
    }
    heap.flush_all(&store);
    store.assert_all_home();
}

#[test]
fn exhausted_store_hands_out_every_block_then_none() {
    let store = store_one(10);
    let mut heap = Heap::<1>::new([8]);
    let held = take(&mut heap, &store, 0, 10);
    assert_eq!(heap.alloc(0, &store), None);
    assert_eq!(heap.alloc(0, &store), None);
    let mut held = held.into_iter();
    free(&mut heap, &store, held.next().unwrap());
    let again = heap.alloc(0, &store).expect("the freed block is cached");
    let again = Held::new(&store, again, 0, 99);
    free(&mut heap, &store, again);
    for h in held {
        free(&mut heap, &store, h);
    }
    heap.flush_all(&store);
    store.assert_all_home();
}

#[test]
fn flush_all_sends_one_batch_per_class() {
    let store = ModelStore::new(&[(1, 64), (2, 64), (4, 64)]);
    let mut heap = Heap::<3>::new([8, 8, 8]);
    let a = take(&mut heap, &store, 0, 1); // 3 cached
    let b = take(&mut heap, &store, 2, 4); // 0 cached
    for h in b {
        free(&mut heap, &store, h);
    } // 4 cached
    assert_eq!((heap.cached(0), heap.cached(1), heap.cached(2)), (3, 0, 4));
    assert_eq!(
        heap.cached_total_bytes(|c| store.block_bytes(c)),
        3 * 8 + 4 * 32
    );
    heap.flush_all(&store);
    heap.assert_valid();
    assert_eq!((heap.cached(0), heap.cached(1), heap.cached(2)), (0, 0, 0));
    assert_eq!(
        heap.cached_total_bytes(|_| unreachable!("no class is cached")),
        0
    );
    assert_eq!(store.stats(0).flushes, 1);
    assert_eq!(store.stats(0).max_flush_len, 3);
    assert_eq!(store.stats(1).flushes, 0);
    assert_eq!(store.stats(2).flushes, 1);
    assert_eq!(store.stats(2).max_flush_len, 4);
    assert_eq!(store.out_total(), 1);
    // The heap works again after a flush.
    for h in a {
        free(&mut heap, &store, h);
    }
    heap.flush_all(&store);
    store.assert_all_home();
}

#[test]
fn forget_all_leaves_the_store_alone() {
    let store = ModelStore::new(&[(1, 64), (2, 64)]);
    let mut heap = Heap::<2>::new([8, 16]);
    take(&mut heap, &store, 0, 1);
    take(&mut heap, &store, 1, 1);
    let before = (store.stats(0), store.stats(1));
    assert_eq!((heap.cached(0), heap.cached(1)), (3, 7));
    heap.forget_all();
    heap.assert_valid();
    assert_eq!((heap.cached(0), heap.cached(1)), (0, 0));
    assert_eq!(
        (store.stats(0), store.stats(1)),
        before,
        "the store is not touched"
    );
    // The forgotten blocks stay out (they belong to someone else); the heap refills afresh.
    let fresh = take(&mut heap, &store, 0, 1);
    assert_eq!(store.stats(0).out, 8);
    assert!(store.last_refill(0).contains(&fresh[0].ptr));
}

/// Random allocations and frees over several classes and caps, re-checking every invariant
/// after every step, with block conservation: what the store has out is exactly what the test
/// holds plus what the heap caches.
#[test]
fn random_operations_keep_every_invariant() {
    const CAPS: [u32; 6] = [0, 1, 2, 3, 8, 33];
    for seed in 1..=scaled(6, 1) as u64 {
        let store = ModelStore::new(&[(1, 400), (2, 400), (3, 400), (1, 400), (5, 400), (2, 400)]);
        let mut heap = Heap::<6>::new(CAPS);
        let mut rng = Rng::new(seed);
        let mut held = HeldSet::default();
        for step in 0..scaled(4000, 300) as u64 {
            let r = rng.below(100);
            if r < 2 {
                heap.flush_all(&store);
            } else if r < 3 {
                store.set_fail(rng.below(2) == 0);
            } else if r < 55 || held.is_empty() {
                let class = rng.below(CAPS.len());
                if let Some(p) = heap.alloc(class, &store) {
                    held.insert(Held::new(&store, p, class, seed << 32 | step));
                }
            } else {
                let h = held.take(rng.below(held.len()));
                free(&mut heap, &store, h);
            }
            heap.assert_valid();
            for (class, &cap) in CAPS.iter().enumerate() {
                assert!(heap.cached(class) <= cap as usize);
                assert_eq!(
                    store.stats(class).out,
                    held.count(class) + heap.cached(class)
                );
            }
        }
        while !held.is_empty() {
            let h = held.take(0);
            free(&mut heap, &store, h);
        }
        heap.flush_all(&store);
        store.assert_all_home();
    }
}

/// A store that breaks its contract by claiming more blocks than it was asked for.
struct LyingStore {
    blocks: core::cell::UnsafeCell<[u64; 4]>,
}

// SAFETY: deliberately broken, used only to check that the heap catches it before use.
unsafe impl CentralStore for LyingStore {
    fn refill(&self, _class: usize, out: &mut [*mut Block]) -> usize {
        let base = self.blocks.get().cast::<Block>();
        for (i, slot) in out.iter_mut().enumerate() {
            // SAFETY: at most 4 slots are asked for (capacity 8), inside the 4-word buffer.
            *slot = unsafe { base.add(i) };
        }
        out.len() + 1
    }

    unsafe fn flush(&self, _class: usize, _blocks: &[NonNull<Block>]) {}
}

#[test]
#[should_panic]
fn a_store_that_claims_more_than_asked_is_caught() {
    let store = LyingStore {
        blocks: core::cell::UnsafeCell::new([0; 4]),
    };
    let mut heap = Heap::<1>::new([8]);
    let _ = heap.alloc(0, &store);
}

/// A store that counts how often buckets ask for their capacity, and answers `answer`.
struct CapStore<'a> {
    inner: &'a ModelStore,
    asked: core::cell::Cell<u32>,
    answer: core::cell::Cell<u32>,
}

// SAFETY: forwards refill and flush to the model store, which upholds the contract.
unsafe impl CentralStore for CapStore<'_> {
    fn refill(&self, class: usize, out: &mut [*mut Block]) -> usize {
        self.inner.refill(class, out)
    }
    unsafe fn flush(&self, class: usize, blocks: &[NonNull<Block>]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.flush(class, blocks) }
    }
    fn cap(&self, _class: usize) -> u32 {
        self.asked.set(self.asked.get() + 1);
        self.answer.get()
    }
    fn room(&self, class: usize) -> u32 {
        6 + class as u32
    }
}

/// An unlaid heap (all zeros, for a thread-local in `.tbss`) takes its slot ranges from the
/// store's rooms at its first slow path, whatever the class, then learns each capacity as a
/// lazy heap does.
#[test]
fn an_unlaid_heap_lays_itself_out_at_its_first_slow_path() {
    let model = ModelStore::new(&[(2, 64), (2, 64)]);
    let store = CapStore {
        inner: &model,
        asked: 0.into(),
        answer: 100.into(),
    };
    const UNLAID: Heap<2> = Heap::unlaid();
    let mut heap = UNLAID;
    assert_eq!((heap.cap(0), heap.cap(1)), (0, 0));
    assert!(heap.pop(1).is_none(), "nothing cached");
    let p = heap.alloc(1, &store).expect("the store has blocks");
    heap.assert_valid();
    assert_eq!(
        (heap.bucket(1).base, heap.bucket(1).end),
        (6, 13),
        "rooms 6 and 7, in order"
    );
    assert_eq!(heap.cap(1), 7, "the capacity asked, kept within the room");
    assert_eq!(
        heap.cap(0),
        0,
        "class 0 learns its capacity at its own first slow path"
    );
    let q = heap.alloc(0, &store).expect("the store has blocks");
    assert_eq!(heap.cap(0), 6);
    assert_eq!(store.asked.get(), 2);
    // SAFETY: both came from this heap's store and are not used any more.
    unsafe {
        heap.dealloc(1, p, &store);
        heap.dealloc(0, q, &store);
    }
    heap.assert_valid();
    heap.flush_all(&store);
    model.assert_all_home();
}

#[test]
fn zero_cap_asks_the_store_on_first_alloc_and_on_first_free() {
    let model = store_one(64);
    let store = CapStore {
        inner: &model,
        asked: 0.into(),
        answer: 8.into(),
    };
    // First use is an allocation: the bucket learns its capacity there and caches the rest.
    let mut heap = Heap::<1>::lazy([8]);
    let p = heap.alloc(0, &store).unwrap();
    assert_eq!((store.asked.get(), heap.cap(0)), (1, 8));
    assert_eq!(
        heap.cached(0),
        3,
        "refilled cap/2 = 4 blocks and handed out one"
    );
    // SAFETY: `p` came from this heap's store and is not used any more.
    unsafe { heap.dealloc(0, p, &store) };
    assert_eq!(store.asked.get(), 1, "a known capacity is not asked again");
    heap.flush_all(&store);

    // First use is a free (a block allocated by another heap): the free asks and caches it.
    let mut other = Heap::<1>::lazy([8]);
    let q = heap.alloc(0, &store).unwrap();
    // SAFETY: as above; the block moves to the other heap (ownership transfer).
    unsafe { other.dealloc(0, q, &store) };
    assert_eq!(
        (store.asked.get(), other.cap(0), other.cached(0)),
        (2, 8, 1)
    );

    // After flush_all and reset_caps, a store answering 0 makes frees go straight back.
    other.flush_all(&store);
    heap.flush_all(&store);
    other.reset_caps();
    store.answer.set(0);
    let r = heap.alloc(0, &store).unwrap();
    // SAFETY: as above.
    unsafe { other.dealloc(0, r, &store) };
    assert_eq!((other.cap(0), other.cached(0)), (0, 0));
    assert_eq!(store.asked.get(), 3);
    heap.flush_all(&store);
    model.assert_all_home();
}

/// Frees blocks of class 0 from `held` until the store has seen a flush of that class: the
/// point at which a store that answers `divert()` with true diverts the heap.
fn free_until_a_flush(heap: &mut Heap<2>, store: &ModelStore, held: &mut Vec<Held>) {
    while store.stats(0).flushes == 0 {
        free(heap, store, held.pop().expect("enough blocks for a flush"));
    }
}

/// After a flush that the store answers with `divert() == true`, every bucket looks empty to the
/// pop and full to the push, yet keeps its blocks: each allocation asks the store again and is
/// served from the real stack, each free is taken without asking, and the first allocation the
/// store answers `false` ends the diversion.
#[test]
fn a_diverted_heap_sends_every_operation_to_its_slow_path() {
    let store = ModelStore::new(&[(2, 64), (2, 64)]);
    let mut heap = Heap::<2>::new([8, 8]);
    let mut zero = take(&mut heap, &store, 0, 12);
    let one = take(&mut heap, &store, 1, 1);
    let (cached1, asks) = (heap.cached(1), store.divert_asks());
    assert!(cached1 > 0);
    assert!(!heap.is_diverted());
    store.set_divert(true);
    free_until_a_flush(&mut heap, &store, &mut zero);
    assert!(heap.is_diverted(), "a flush answered with divert() diverts");
    assert_eq!(store.divert_asks(), asks + 1, "asked once, after the flush");
    let cached0 = heap.cached(0);
    assert_eq!(heap.cached(1), cached1, "diverting keeps every block");
    for class in 0..2 {
        let b = heap.bucket(class);
        assert!(b.is_empty() && b.cap() == 0, "class {class}: no fast path");
    }
    assert!(heap.pop(1).is_none(), "the pop sees an empty bucket");
    let newest = store.last_refill(1)[1];
    let p = heap.alloc(1, &store).expect("the real stack serves");
    assert_eq!(p, newest, "LIFO, as undiverted");
    assert_eq!(store.divert_asks(), asks + 2, "an allocation asks");
    assert!(heap.is_diverted());
    assert_eq!(heap.cached(1), cached1 - 1);
    let refills = store.stats(1).refills;
    // SAFETY: `p` came from this heap over `store` and is not used.
    unsafe { heap.dealloc(1, p, &store) };
    assert_eq!(store.divert_asks(), asks + 2, "a free does not ask");
    assert_eq!(heap.cached(1), cached1);
    assert_eq!(
        store.stats(1).refills,
        refills,
        "no store call for a block with room"
    );
    heap.assert_valid();
    store.set_divert(false);
    let q = heap.alloc(0, &store).expect("cached");
    assert_eq!(store.divert_asks(), asks + 3);
    assert!(
        !heap.is_diverted(),
        "an allocation answered false ends the diversion"
    );
    assert_eq!(heap.cached(0), cached0 - 1);
    assert_eq!(heap.cached(1), cached1);
    let r = heap.pop(1).expect("the fast path works again");
    // SAFETY: `r` came from this heap over `store` and is not used.
    assert!(unsafe { heap.push(1, r) });
    heap.assert_valid();
    zero.push(Held::new(&store, q, 0, 99));
    for h in zero.into_iter().chain(one) {
        free(&mut heap, &store, h);
    }
    heap.flush_all(&store);
    store.assert_all_home();
}

/// When the store's deferred work is due (`shed`), a diverted heap's next allocation first
/// gives back every block it caches, of every class, then asks `divert`: answered no, the
/// allocation is a refill and the diversion is over; answered yes, the heap stays diverted.
#[test]
fn a_diverted_heap_sheds_its_blocks_when_the_store_asks() {
    for goes_on in [false, true] {
        let store = ModelStore::new(&[(2, 64), (2, 64)]);
        let mut heap = Heap::<2>::new([8, 8]);
        let mut zero = take(&mut heap, &store, 0, 12);
        let one = take(&mut heap, &store, 1, 3);
        for h in one {
            free(&mut heap, &store, h);
        }
        store.set_divert(true);
        free_until_a_flush(&mut heap, &store, &mut zero);
        assert!(heap.is_diverted());
        assert!(heap.cached(0) > 0 && heap.cached(1) > 0);
        let (refills, asks) = (store.stats(0).refills, store.divert_asks());
        store.set_shed(true);
        store.set_divert(goes_on);
        let p = heap.alloc(0, &store).expect("the store has blocks");
        assert_eq!(
            store.divert_asks(),
            asks + 1,
            "asked once, after the shedding"
        );
        assert_eq!(heap.cached(1), 0, "class 1 gave its blocks back");
        assert_eq!(
            store.stats(0).refills,
            refills + 1,
            "the allocation is a refill: its bucket was emptied"
        );
        assert_eq!(heap.is_diverted(), goes_on);
        assert_eq!(store.stats(1).out, 0, "every block of class 1 is home");
        store.set_shed(false);
        store.set_divert(false);
        zero.push(Held::new(&store, p, 0, 7));
        for h in zero {
            free(&mut heap, &store, h);
        }
        heap.assert_valid();
        heap.flush_all(&store);
        store.assert_all_home();
    }
}

/// Emptying a diverted heap ends the diversion and gives back every block, those hidden from
/// the fast paths included.
#[test]
fn flush_all_of_a_diverted_heap_gives_back_every_block() {
    let store = ModelStore::new(&[(2, 64), (2, 64)]);
    let mut heap = Heap::<2>::new([8, 8]);
    let mut zero = take(&mut heap, &store, 0, 12);
    let one = take(&mut heap, &store, 1, 3);
    store.set_divert(true);
    free_until_a_flush(&mut heap, &store, &mut zero);
    assert!(heap.is_diverted());
    for h in zero.into_iter().chain(one) {
        free(&mut heap, &store, h);
    }
    assert!(heap.is_diverted(), "frees keep the diversion");
    heap.flush_all(&store);
    assert!(!heap.is_diverted());
    store.assert_all_home();
}

#[test]
fn an_entry_is_its_class_offset_and_opaque_keeps_it() {
    use crate::Entry;
    for class in 0..8 {
        let e = Entry::<8>::of(class);
        assert_eq!(e.opaque(), e);
        assert_ne!(e, Entry::<8>::of((class + 1) % 8));
    }
    assert!(std::panic::catch_unwind(|| Entry::<8>::of(8)).is_err());
}

#[test]
fn entries_reach_the_buckets_of_their_classes() {
    use crate::Entry;
    let mut heap: ThreadHeap<3, 8> = ThreadHeap::new([2, 2, 2]);
    let mut blocks = [0usize; 6];
    let addr = |i: usize, b: &mut [usize; 6]| NonNull::from(&mut b[i]).cast::<u8>();
    for class in 0..3 {
        let e = Entry::<3>::of(class).opaque();
        // SAFETY: the words stand for blocks of `class`, handed to the heap once each.
        unsafe {
            assert!(heap.push_at(e, addr(2 * class, &mut blocks)));
            assert!(heap.push_at(e, addr(2 * class + 1, &mut blocks)));
            assert!(!heap.push_at(e, addr(2 * class, &mut blocks)), "capacity 2");
        }
    }
    for class in 0..3 {
        assert_eq!(heap.cached(class), 2);
        let got = heap.pop_at(Entry::of(class)).unwrap();
        assert_eq!(
            got,
            addr(2 * class + 1, &mut blocks),
            "the newest of its own class"
        );
        assert_eq!(heap.pop(class), Some(addr(2 * class, &mut blocks)));
        assert_eq!(heap.pop_at(Entry::of(class).opaque()), None);
    }
    heap.assert_valid();
}

/// An unlaid heap shared by many threads through `pop_in` and `push_in` (as a placeholder heap
/// for threads that have none yet): every pop and push fails and not a byte of it changes.
#[test]
fn pop_in_and_push_in_leave_an_unlaid_heap_untouched() {
    use crate::Entry;
    use std::sync::atomic::{AtomicUsize, Ordering};
    type Shared = ThreadHeap<4, 16>;
    struct Placeholder(std::cell::UnsafeCell<Shared>);
    // SAFETY: the test only reaches the heap through `pop_in`/`push_in`, which write nothing to a
    // heap of empty buckets of capacity 0 (what it checks).
    unsafe impl Sync for Placeholder {}
    static HEAP: Placeholder = Placeholder(std::cell::UnsafeCell::new(Shared::unlaid()));
    static FAILED: AtomicUsize = AtomicUsize::new(0);
    let bytes = || {
        // SAFETY: a plain read of the heap's bytes; nothing writes it (checked here).
        unsafe {
            std::slice::from_raw_parts(HEAP.0.get().cast::<u8>(), size_of::<Shared>()).to_vec()
        }
    };
    let before = bytes();
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                let mut word = 0usize;
                for i in 0..10_000 {
                    let e = Entry::<4>::of((i + t) % 4);
                    let block = NonNull::from(&mut word).cast::<u8>();
                    // SAFETY: the heap is valid; its buckets are empty and of capacity 0, so
                    // neither call writes it (their contract for a shared heap).
                    let (popped, pushed) = unsafe {
                        (
                            Shared::pop_in(HEAP.0.get(), e),
                            Shared::push_in(HEAP.0.get(), e, block),
                        )
                    };
                    if popped.is_some() || pushed {
                        FAILED.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(
        FAILED.load(Ordering::Relaxed),
        0,
        "an unlaid heap served a pop or push"
    );
    assert!(bytes() == before, "the unlaid heap was written");
}

/// A store whose buckets start at capacity 8 in a room of 64, double when they cycle and halve
/// (to half plus one) in a long run of frees, as fam-alloc's global store does.
struct SizingStore<'a> {
    inner: &'a ModelStore,
    grows: core::cell::Cell<u32>,
    shrinks: core::cell::Cell<u32>,
}

impl<'a> SizingStore<'a> {
    const CAP: u32 = 8;
    const ROOM: u32 = 64;

    fn new(inner: &'a ModelStore) -> Self {
        Self {
            inner,
            grows: 0.into(),
            shrinks: 0.into(),
        }
    }
}

// SAFETY: forwards refill and flush to the model store, which upholds the contract.
unsafe impl CentralStore for SizingStore<'_> {
    fn refill(&self, class: usize, out: &mut [*mut Block]) -> usize {
        self.inner.refill(class, out)
    }
    unsafe fn flush(&self, class: usize, blocks: &[NonNull<Block>]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.flush(class, blocks) }
    }
    fn cap(&self, _class: usize) -> u32 {
        Self::CAP
    }
    fn room(&self, _class: usize) -> u32 {
        Self::ROOM
    }
    fn grow(&self, _class: usize, cap: u32) -> u32 {
        self.grows.set(self.grows.get() + 1);
        // More than the room: the heap keeps it within.
        cap * 4
    }
    fn shrink(&self, _class: usize, cap: u32) -> u32 {
        self.shrinks.set(self.shrinks.get() + 1);
        (cap / 2 + 1).clamp(Self::CAP.min(cap), cap)
    }
}

/// Allocates `n` blocks and frees them again, in the same order.
fn cycle(heap: &mut Heap<1>, store: &SizingStore, n: usize) {
    let held: Vec<Held> = (0..n)
        .map(|i| {
            let p = heap.alloc(0, store).expect("store has blocks");
            heap.assert_valid();
            Held::new(store.inner, p, 0, i as u64)
        })
        .collect();
    for h in held {
        h.check(store.inner);
        // SAFETY: allocated from this heap's store just above, not used any more.
        unsafe { heap.dealloc(0, h.ptr, store) };
        heap.assert_valid();
    }
}

/// A batch larger than the bucket, allocated and freed again and again, grows the bucket until
/// the batch fits (within the room), and from then on a cycle reaches the store no more.
#[test]
fn a_bucket_that_cycles_grows_until_its_batch_fits() {
    let model = store_one(256);
    let store = SizingStore::new(&model);
    const UNLAID: Heap<1> = Heap::unlaid();
    let mut heap = UNLAID;
    cycle(&mut heap, &store, 40);
    assert_eq!(
        heap.cap(0),
        8,
        "one cycle: the first refill follows no flush"
    );
    assert_eq!(store.grows.get(), 0);
    cycle(&mut heap, &store, 40);
    assert_eq!(
        heap.cap(0),
        32,
        "asked once, at the first refill after a flush"
    );
    assert_eq!(store.grows.get(), 1);
    cycle(&mut heap, &store, 40);
    assert_eq!(heap.cap(0), 64, "the store's answer kept within the room");
    assert_eq!(store.grows.get(), 2);
    let before = model.stats(0);
    cycle(&mut heap, &store, 40);
    cycle(&mut heap, &store, 40);
    let after = model.stats(0);
    assert_eq!(
        (after.refills, after.flushes),
        (before.refills, before.flushes),
        "40 blocks fit a bucket of 64: the cycles stay in the heap"
    );
    assert_eq!(store.shrinks.get(), 0);
    heap.flush_all(&store);
    model.assert_all_home();
}

/// A bucket that only fills (frees of blocks another heap allocated) never asks to grow, and
/// one that grew shrinks back, a halving per flush, once a run of frees flushes more than
/// twice its room with no refill between.
#[test]
fn a_long_run_of_frees_shrinks_a_grown_bucket_back() {
    let model = store_one(1024);
    let store = SizingStore::new(&model);
    let mut heap = Heap::<1>::lazy([SizingStore::ROOM]);
    for _ in 0..3 {
        cycle(&mut heap, &store, 40);
    }
    assert_eq!(heap.cap(0), 64);

    // Another heap allocates 600 blocks; this one frees them all.
    let mut other = Heap::<1>::lazy([SizingStore::ROOM]);
    let held = take(&mut other, &model, 0, 600);
    let mut flushed = model.stats(0).flushes;
    let mut caps = vec![];
    for h in held {
        h.check(&model);
        // SAFETY: allocated from a heap over the same store, not used any more.
        unsafe { heap.dealloc(0, h.ptr, &store) };
        heap.assert_valid();
        let flushes = model.stats(0).flushes;
        if flushes != flushed {
            flushed = flushes;
            caps.push(heap.cap(0));
        }
    }
    assert_eq!(store.grows.get(), 2, "frees alone never ask to grow");
    // Flushes of 32 blocks at capacity 64: the fifth takes the run past 128, and each one
    // from then on halves the bucket, down to the store's floor of 8.
    assert_eq!(&caps[..4], &[64, 64, 64, 64]);
    assert_eq!(&caps[4..8], &[33, 17, 9, 8]);
    assert!(caps[8..].iter().all(|&c| c == 8), "{caps:?}");
    assert!(store.shrinks.get() as usize >= caps.len() - 4);
    heap.flush_all(&store);
    other.flush_all(&model);
    model.assert_all_home();
}
