//! Several threads: blocks freed by a thread other than the allocating one (ownership transfer),
//! rings of threads passing blocks around, and thousands of short-lived threads.
//!
//! Every heap here is used by one thread at a time; the only shared object is the model store,
//! which checks every refill and flush, so a block handed to two threads, lost, or returned
//! twice fails the test.

mod common;

use std::cell::RefCell;
use std::sync::{mpsc, Mutex};
use std::thread;

use common::{scaled, Heap, Held, ModelStore, Rng};

/// Frees `held` into `heap`, checking its contents first.
fn free<const N: usize>(heap: &mut Heap<N>, store: &ModelStore, held: Held) {
    held.check(store);
    // SAFETY: `held` was allocated from a heap over `store` and nobody uses it any more.
    unsafe { heap.dealloc(held.class, held.ptr, store) };
}

#[test]
fn blocks_freed_by_another_thread_flow_back_to_the_store() {
    const BLOCKS: usize = scaled(10_000, 300);
    const CAP: u32 = 64;
    let store = ModelStore::new(&[(2, BLOCKS + 2 * CAP as usize)]);
    let (tx, rx) = mpsc::channel::<Held>();
    let (producer, consumer) = thread::scope(|s| {
        let store = &store;
        let a = s.spawn(move || {
            let mut heap = Heap::<1>::new([CAP]);
            for i in 0..BLOCKS {
                let p = heap
                    .alloc(0, store)
                    .expect("the store has a block for everyone");
                tx.send(Held::new(store, p, 0, i as u64)).unwrap();
            }
            heap
        });
        let b = s.spawn(move || {
            let mut heap = Heap::<1>::new([CAP]);
            for held in rx {
                free(&mut heap, store, held);
                assert!(heap.cached(0) <= CAP as usize, "consumer over its cap");
            }
            heap
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let stats = store.stats(0);
    // Everything the consumer does not cache went back to the store, in chains of cap / 2.
    assert!(consumer.cached(0) <= CAP as usize);
    assert_eq!(stats.flushed_blocks, BLOCKS - consumer.cached(0));
    assert_eq!(stats.max_flush_len, (CAP - CAP / 2) as usize);
    assert_eq!(stats.out, producer.cached(0) + consumer.cached(0));
    let (mut producer, mut consumer) = (producer, consumer);
    producer.flush_all(&store);
    consumer.flush_all(&store);
    store.assert_all_home();
}

#[test]
fn a_producer_lives_on_what_the_consumer_gives_back() {
    // Far fewer blocks than transfers: the producer only keeps going because the consumer's
    // surplus returns to the store. At any moment the blocks out are the producer's cache (at
    // most CAP), the channel (at most 64), the consumer's cache (at most CAP) and one block in
    // each thread's hand: 130 < POOL, so the store is never empty when the producer asks.
    const TRANSFERS: usize = scaled(20_000, 400);
    const CAP: u32 = 32;
    const POOL: usize = 200;
    let store = ModelStore::new(&[(2, POOL)]);
    let (tx, rx) = mpsc::sync_channel::<Held>(64);
    thread::scope(|s| {
        let store = &store;
        s.spawn(move || {
            let mut heap = Heap::<1>::new([CAP]);
            for i in 0..TRANSFERS {
                let p = heap
                    .alloc(0, store)
                    .expect("the consumer's surplus came back");
                tx.send(Held::new(store, p, 0, i as u64)).unwrap();
            }
            heap.flush_all(store);
        });
        s.spawn(move || {
            let mut heap = Heap::<1>::new([CAP]);
            for held in rx {
                free(&mut heap, store, held);
                assert!(heap.cached(0) <= CAP as usize);
            }
            heap.flush_all(store);
        });
    });
    let stats = store.stats(0);
    assert!(
        stats.flushed_blocks >= TRANSFERS,
        "every transfer came back"
    );
    assert!(stats.peak_out <= POOL);
    store.assert_all_home();
}

#[test]
fn a_ring_of_threads_passes_blocks_along() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = scaled(4000, 150);
    const CAPS: [u32; 3] = [16, 5, 0];
    let store = ModelStore::new(&[
        (1, 3 * THREADS * PER_THREAD),
        (3, 3 * THREADS * PER_THREAD),
        (2, 3 * THREADS * PER_THREAD),
    ]);
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..THREADS {
        let (tx, rx) = mpsc::channel::<Option<Held>>();
        senders.push(tx);
        receivers.push(rx);
    }
    // Thread t sends to thread t + 1 and receives from thread t - 1.
    senders.rotate_left(1);
    thread::scope(|s| {
        for (t, (tx, rx)) in senders.into_iter().zip(receivers).enumerate() {
            let store = &store;
            s.spawn(move || {
                let mut heap = Heap::<3>::new(CAPS);
                let mut rng = Rng::new(t as u64 + 100);
                let mut mine = Vec::new();
                // Whether the previous thread has sent its last block.
                let mut upstream_done = false;
                for i in 0..PER_THREAD {
                    let class = rng.below(3);
                    let p = heap.alloc(class, store).expect("pool is large enough");
                    let held = Held::new(store, p, class, (t * PER_THREAD + i) as u64);
                    // Keep some locally for a while, pass the rest on.
                    if rng.below(4) == 0 {
                        mine.push(held);
                    } else {
                        tx.send(Some(held)).unwrap();
                    }
                    if mine.len() > 20 {
                        free(&mut heap, store, mine.swap_remove(rng.below(mine.len())));
                    }
                    while let Ok(msg) = rx.try_recv() {
                        match msg {
                            Some(held) => free(&mut heap, store, held),
                            None => upstream_done = true,
                        }
                    }
                    for (class, &cap) in CAPS.iter().enumerate() {
                        assert!(heap.cached(class) <= cap as usize);
                    }
                }
                tx.send(None).unwrap();
                while !upstream_done {
                    match rx.recv().expect("the previous thread ends with None") {
                        Some(held) => free(&mut heap, store, held),
                        None => upstream_done = true,
                    }
                }
                for held in mine {
                    free(&mut heap, store, held);
                }
                heap.flush_all(store);
            });
        }
    });
    store.assert_all_home();
}

const CHURN_CAPS: [u32; 4] = [32, 16, 8, 0];
const CHURN_THREADS: usize = scaled(2000, 16);
const WAVE: usize = 8;
const MAX_LIVE: usize = 24;
const PILE_MAX: usize = 64;

thread_local! {
    static HEAP: RefCell<Heap<4>> = const { RefCell::new(Heap::new(CHURN_CAPS)) };
}

/// The life of one short-lived thread: random allocations and frees, including blocks left on
/// the shared pile by earlier (possibly dead) threads; some of its own blocks go onto the pile.
fn churn_life(heap: &mut Heap<4>, store: &ModelStore, pile: &Mutex<Vec<Held>>, id: usize) {
    let mut rng = Rng::new(id as u64 + 7);
    let mut live: Vec<Held> = Vec::new();
    for step in 0..scaled(150, 40) {
        let r = rng.below(10);
        if r < 5 && live.len() < MAX_LIVE {
            let class = rng.below(4);
            let p = heap.alloc(class, store).expect("pool is large enough");
            live.push(Held::new(store, p, class, (id << 16 | step) as u64));
        } else if r < 7 {
            let taken = pile.lock().unwrap().pop();
            if let Some(held) = taken {
                free(heap, store, held);
            }
        } else if let Some(i) = (!live.is_empty()).then(|| rng.below(live.len())) {
            free(heap, store, live.swap_remove(i));
        }
        for (class, &cap) in CHURN_CAPS.iter().enumerate() {
            assert!(heap.cached(class) <= cap as usize);
        }
    }
    // Leave a few blocks for a later thread to free.
    let mut pile = pile.lock().unwrap();
    while pile.len() < PILE_MAX {
        match live.pop() {
            Some(held) => pile.push(held),
            None => break,
        }
    }
    drop(pile);
    for held in live {
        free(heap, store, held);
    }
    heap.flush_all(store);
    assert_eq!(heap.cached_total_bytes(|_| 1), 0);
}

#[test]
fn thread_churn_returns_everything_and_stays_bounded() {
    // Every class could satisfy the peak many times over: the bound below is what is checked.
    let store = ModelStore::new(&[(1, 4000), (2, 4000), (4, 4000), (1, 4000)]);
    let pile = Mutex::new(Vec::new());
    for wave in 0..CHURN_THREADS / WAVE {
        thread::scope(|s| {
            for k in 0..WAVE {
                let id = wave * WAVE + k;
                let (store, pile) = (&store, &pile);
                if id.is_multiple_of(2) {
                    s.spawn(move || HEAP.with_borrow_mut(|heap| churn_life(heap, store, pile, id)));
                } else {
                    s.spawn(move || {
                        let mut heap = Heap::new(CHURN_CAPS);
                        churn_life(&mut heap, store, pile, id);
                    });
                }
            }
        });
        // Between waves, only the pile is out.
        assert_eq!(store.out_total(), pile.lock().unwrap().len(), "wave {wave}");
    }
    // At most WAVE threads are alive at once, each holding at most MAX_LIVE blocks and caching
    // at most its cap per class, plus the pile: a bound that does not grow with the number of
    // threads (2000 threads that kept their caches would hold far more).
    for (class, &cap) in CHURN_CAPS.iter().enumerate() {
        let bound = WAVE * (MAX_LIVE + cap as usize) + PILE_MAX;
        let peak = store.stats(class).peak_out;
        assert!(peak <= bound, "class {class}: peak {peak} > {bound}");
    }
    let mut heap = Heap::new(CHURN_CAPS);
    for held in pile.into_inner().unwrap() {
        free(&mut heap, &store, held);
    }
    heap.flush_all(&store);
    store.assert_all_home();
}
