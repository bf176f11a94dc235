//! Cross-thread frees and thread churn.
//!
//! Blocks travel between threads through `std::sync::mpsc`: one thread allocates, another checks
//! and frees. Every block carries a fill pattern derived from its address and a seed, written by
//! the allocating thread and checked by the freeing one, so a block handed out twice, or
//! written to while in the allocator's hands, is caught where it is freed.
//!
//! The churn test starts thousands of short-lived threads in waves; threads free blocks that
//! threads of earlier waves (dead by then) allocated. Resident memory and the pool's chunk count
//! are read after the first waves and at the end: neither may grow with the number of threads.

mod common;

use std::alloc::{alloc, dealloc, Layout};
use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use common::{
    addr_seed, check, exclusive, fill, listed_chunks, mib, rss_anon, scaled, shared, XorShift,
};
use fam_alloc::FamAlloc;

#[global_allocator]
static A: FamAlloc = FamAlloc::new();

/// A block in flight between threads.
#[derive(Debug)]
struct Msg {
    addr: usize,
    layout: Layout,
    seed: u64,
    /// Who sent it and its number among that sender's messages.
    from: usize,
    seq: u64,
}

/// A size mostly small, sometimes up to 64 KiB, rarely a large block.
fn random_layout(rng: &mut XorShift) -> Layout {
    let size = match rng.below(1000) {
        0..=699 => 1 + rng.below(256),
        700..=949 => 1 + rng.below(8192),
        950..=997 => 1 + rng.below(64 * 1024),
        _ => (1 << 20) + rng.below(2 << 20),
    } as usize;
    let align = match rng.below(10) {
        0..=7 => 8,
        8 => 1 << rng.below(13),
        _ => 1 << (3 + rng.below(12)),
    };
    Layout::from_size_align(size, align).unwrap()
}

/// Allocates a block of `layout` and fills it with the pattern of its address and `seed`.
fn make(layout: Layout, seed: u64, from: usize, seq: u64) -> Msg {
    // SAFETY: the layouts used here have non-zero sizes.
    let p = unsafe { alloc(layout) };
    assert!(!p.is_null(), "out of memory for {layout:?}");
    assert_eq!(
        p as usize % layout.align(),
        0,
        "misaligned block for {layout:?}"
    );
    // SAFETY: `p` holds `layout.size()` bytes, ours alone.
    unsafe { fill(p, layout.size(), addr_seed(p, seed)) };
    Msg {
        addr: p as usize,
        layout,
        seed,
        from,
        seq,
    }
}

/// Checks the pattern of a block and frees it.
fn consume(m: Msg) {
    let p = m.addr as *mut u8;
    // SAFETY: the block is live, `layout.size()` bytes, and now owned by this thread.
    let bad = unsafe { check(p, m.layout.size(), addr_seed(p, m.seed)) };
    assert_eq!(bad, None, "block {m:?} corrupted at offset {bad:?}");
    // SAFETY: allocated with this layout by `make`, freed once.
    unsafe { dealloc(p, m.layout) };
}

#[test]
fn producer_consumer() {
    let _g = shared();
    let count = scaled(200_000, 30_000) as u64;
    let (tx, rx) = mpsc::sync_channel::<Msg>(512);
    let producer = thread::spawn(move || {
        let mut rng = XorShift::new(1);
        let mut bytes = 0usize;
        for seq in 0..count {
            let layout = random_layout(&mut rng);
            bytes += layout.size();
            tx.send(make(layout, rng.next_u64(), 0, seq)).unwrap();
        }
        bytes
    });
    let consumer = thread::spawn(move || {
        let mut bytes = 0usize;
        let mut next = 0;
        for m in rx {
            assert_eq!(m.seq, next, "messages arrive in order");
            next += 1;
            bytes += m.layout.size();
            consume(m);
        }
        (next, bytes)
    });
    let sent = producer.join().unwrap();
    let (received, freed) = consumer.join().unwrap();
    assert_eq!(received, count);
    assert_eq!(freed, sent);
}

#[test]
fn many_producers_one_consumer() {
    let _g = shared();
    let producers = 6;
    let per = scaled(40_000, 5_000) as u64;
    let (tx, rx) = mpsc::sync_channel::<Msg>(1024);
    let handles: Vec<_> = (0..producers)
        .map(|id| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut rng = XorShift::new(100 + id as u64);
                for seq in 0..per {
                    let layout = random_layout(&mut rng);
                    tx.send(make(layout, rng.next_u64(), id, seq)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = thread::spawn(move || {
        let mut next = vec![0u64; producers];
        for m in rx {
            assert_eq!(m.seq, next[m.from], "per-producer order");
            next[m.from] += 1;
            consume(m);
        }
        next
    });
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), vec![per; producers]);
}

#[test]
fn ring_of_threads_passing_blocks() {
    let _g = shared();
    let threads = 5;
    let tokens = scaled(400, 100);
    let laps = 4;
    // Thread i receives on rxs[i] and sends to thread i + 1. A token makes `laps` laps and is
    // retired by the thread that created it, so every thread receives exactly
    // `threads * tokens * laps` messages.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| mpsc::channel::<(Msg, usize)>())
        .unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            let tx = txs[(i + 1) % threads].clone();
            thread::spawn(move || {
                let mut rng = XorShift::new(1000 + i as u64);
                for t in 0..tokens {
                    let m = make(random_layout(&mut rng), rng.next_u64(), i, t as u64);
                    tx.send((m, threads * laps)).unwrap();
                }
                let mut retired = 0;
                for _ in 0..threads * tokens * laps {
                    let (m, hops) = rx.recv().unwrap();
                    let (from, seq) = (m.from, m.seq);
                    consume(m);
                    if hops == 1 {
                        assert_eq!(from, i, "a token ends its laps where it started");
                        retired += 1;
                    } else {
                        // Replace the block with a fresh one of another size: this thread
                        // frees what its neighbour allocated and allocates what the next frees.
                        let m = make(random_layout(&mut rng), rng.next_u64(), from, seq);
                        tx.send((m, hops - 1)).unwrap();
                    }
                }
                retired
            })
        })
        .collect();
    drop(txs);
    for h in handles {
        assert_eq!(h.join().unwrap(), tokens);
    }
}

/// Blocks left behind by threads that have exited, for later threads to check and free.
type Graveyard = Arc<Mutex<Vec<Msg>>>;

/// Sizes the churn threads allocate. A handful of classes, so that what the pool keeps
/// resident for them (their chunks' pages, touched as blocks come and go) is reached early.
const CHURN_SIZES: [usize; 7] = [16, 40, 96, 200, 500, 1000, 3000];

/// The work of one short-lived thread of the churn test.
fn churn_thread(id: usize, graveyard: &Graveyard) {
    let mut rng = XorShift::new(id as u64);
    let mut mine: Vec<Msg> = (0..40)
        .map(|k| {
            let size = match rng.below(40) {
                0 => [4096, 16 << 10, 64 << 10][rng.below_usize(3)],
                _ => CHURN_SIZES[rng.below_usize(CHURN_SIZES.len())],
            };
            make(
                Layout::from_size_align(size, 8).unwrap(),
                rng.next_u64(),
                id,
                k,
            )
        })
        .collect();
    if id.is_multiple_of(100) {
        mine.push(make(
            Layout::from_size_align(2 << 20, 8).unwrap(),
            7,
            id,
            99,
        ));
    }
    // Some ordinary collection work too.
    let map: HashMap<usize, String> = (0..50).map(|k| (k, format!("{id}-{k}"))).collect();
    assert_eq!(map[&7], format!("{id}-7"));

    // Free blocks of dead threads, leave some of ours behind.
    let inherited: Vec<Msg> = {
        let mut g = graveyard.lock().unwrap();
        let keep = g.len().saturating_sub(4);
        g.split_off(keep)
    };
    for m in inherited {
        assert_ne!(m.from, id);
        consume(m);
    }
    {
        let mut g = graveyard.lock().unwrap();
        while g.len() < 400 && mine.len() > 36 {
            let k = rng.below_usize(mine.len());
            g.push(mine.swap_remove(k));
        }
    }
    for m in mine {
        consume(m);
    }
}

#[test]
fn thread_churn_keeps_memory_bounded() {
    let _g = exclusive();
    let total = scaled(3000, 2000);
    let wave = 50;
    let warmup = 3;
    let graveyard: Graveyard = Arc::new(Mutex::new(Vec::new()));
    let mut chunks = Vec::new();
    let mut rss_warm = 0;
    for w in 0..total / wave {
        let handles: Vec<_> = (0..wave)
            .map(|k| {
                let g = Arc::clone(&graveyard);
                thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || churn_thread(w * wave + k, &g))
                    .unwrap()
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        chunks.push(listed_chunks());
        if w + 1 == warmup {
            rss_warm = rss_anon();
        }
    }
    let rss_end = rss_anon();
    eprintln!(
        "churn: {total} threads; resident {:.1} MiB after warm-up, {:.1} MiB at the end; \
         listed chunks per wave {chunks:?}",
        mib(rss_warm),
        mib(rss_end)
    );
    let growth = rss_end.saturating_sub(rss_warm);
    assert!(
        growth < 64 << 20,
        "resident memory grew by {:.1} MiB over {} threads (from {:.1} to {:.1} MiB)",
        mib(growth),
        total,
        mib(rss_warm),
        mib(rss_end)
    );
    let warm_max = *chunks[..warmup].iter().max().unwrap();
    let late_max = *chunks[warmup..].iter().max().unwrap();
    // Each running thread owns a chunk of every class it uses (thread-owned refill), so a wave
    // whose threads overlap more than the warm-up's did needs more chunks at once. That is
    // bounded by one wave's worth of owned chunks; a leak is not.
    let owned_per_wave = wave * (CHURN_SIZES.len() + 3);
    assert!(
        late_max <= warm_max + owned_per_wave.min(warm_max) + 16,
        "the pool's chunks grew with the number of waves: {chunks:?}"
    );
    // Everything left behind is still intact.
    let left = std::mem::take(&mut *graveyard.lock().unwrap());
    assert!(!left.is_empty());
    for m in left {
        consume(m);
    }
}
