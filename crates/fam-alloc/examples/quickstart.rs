//! A multi-threaded workload with fam-alloc as the global allocator.
//!
//! Worker threads build and tear down collections (Vec, String, HashMap, BTreeMap) and hand boxed
//! messages to a consumer thread that frees them (cross-thread frees). The program checks its own
//! results, then prints what it did, how long it took, and where the allocator's memory is.
//!
//! Run: `cargo run --release --example quickstart`

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use fam_alloc::FamAlloc;

#[global_allocator]
static GLOBAL: FamAlloc = FamAlloc::new();

const WORKERS: usize = 4;
const ROUNDS: usize = 200;
const ITEMS: usize = 2_000;

/// One round of collection churn; returns a checksum and the number of allocations it made.
fn churn(seed: u64) -> (u64, u64) {
    let mut allocs = 0u64;
    let mut map: HashMap<u64, String> = HashMap::new();
    let mut tree: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut x = seed | 1;
    for i in 0..ITEMS as u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let s = format!("key-{}-{}", i, x % 1000);
        map.insert(i, s.clone());
        tree.entry(s).or_default().push(x);
        allocs += 3;
    }
    let mut sum = 0u64;
    for (k, v) in &map {
        sum = sum.wrapping_add(*k).wrapping_add(v.len() as u64);
    }
    for v in tree.values() {
        sum = sum.wrapping_add(v.iter().copied().fold(0u64, u64::wrapping_add));
    }
    (sum, allocs)
}

fn main() {
    let before = fam_alloc::stats();
    let start = Instant::now();
    let (tx, rx) = mpsc::sync_channel::<Box<[u64]>>(1024);
    let consumer = thread::spawn(move || {
        let mut freed = 0u64;
        let mut sum = 0u64;
        for msg in rx {
            assert_eq!(msg[0] as usize + 1, msg.len(), "message content corrupted");
            sum = sum.wrapping_add(msg.iter().sum::<u64>());
            freed += 1;
        }
        (freed, sum)
    });
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut allocs = 0u64;
                let mut check = 0u64;
                let mut sent_sum = 0u64;
                for r in 0..ROUNDS {
                    let (sum, n) = churn((w * ROUNDS + r) as u64 + 1);
                    check = check.wrapping_add(sum);
                    allocs += n;
                    let len = 1 + (r * 7 + w) % 200;
                    let msg: Box<[u64]> = (0..len as u64)
                        .map(|i| if i == 0 { len as u64 - 1 } else { i })
                        .collect();
                    sent_sum = sent_sum.wrapping_add(msg.iter().sum::<u64>());
                    tx.send(msg).expect("consumer alive");
                    allocs += 1;
                }
                (allocs, check, sent_sum)
            })
        })
        .collect();
    drop(tx);
    let mut allocs = 0u64;
    let mut sent = 0u64;
    let mut check = 0u64;
    for w in workers {
        let (a, c, s) = w.join().expect("worker");
        allocs += a;
        check = check.wrapping_add(c);
        sent = sent.wrapping_add(s);
    }
    let (freed, received) = consumer.join().expect("consumer");
    let elapsed = start.elapsed();
    let after = fam_alloc::stats();
    assert_eq!(freed, (WORKERS * ROUNDS) as u64, "every message arrived");
    assert_eq!(received, sent, "messages arrived intact");

    // Again, single-threaded, so the two checksums must agree: the allocator changed nothing.
    let mut again = 0u64;
    for w in 0..WORKERS {
        for r in 0..ROUNDS {
            again = again.wrapping_add(churn((w * ROUNDS + r) as u64 + 1).0);
        }
    }
    assert_eq!(again, check, "results do not depend on threads");

    let secs = elapsed.as_secs_f64();
    println!("fam-alloc quickstart");
    println!("  {WORKERS} worker threads x {ROUNDS} rounds of HashMap/BTreeMap/String churn ({ITEMS} items each)");
    println!("  {freed} boxed messages freed by a consumer thread (cross-thread frees)");
    let (n_alloc, n_free) = (
        after.allocs() - before.allocs(),
        after.frees() - before.frees(),
    );
    println!(
        "  {n_alloc} allocations and {n_free} frees in {secs:.3} s ({:.1} M operations/s, \
         counted by the allocator; the workload itself estimated {allocs} allocations)",
        (n_alloc + n_free) as f64 / secs / 1e6
    );
    println!("  results checked: checksums agree, every message intact");
    let snap = fam_alloc::stats();
    println!(
        "  allocator totals at the end: {} allocations, {} frees, {} threads exited",
        snap.allocs(),
        snap.frees(),
        snap.threads_exited
    );
    println!("  trim() gave back {} chunks\n", fam_alloc::trim());
    // The allocator's own report (the same one FAM_STATS=1 prints at exit).
    let mut report = String::new();
    fam_alloc::write_stats(&mut report, fam_alloc::Format::Table).expect("writing to a String");
    print!("{report}");
}
