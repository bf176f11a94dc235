//! A private arena: allocator-api2's `Vec` and `Box` and a hashbrown `HashMap` in it, with the
//! arena's usage and the process's resident memory at each stage, until the arena is dropped
//! and gives everything back at once.
//!
//! Run: `cargo run --release -p fam-alloc --example arena`

use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use fam_alloc::{Arena, ArenaUsage};

/// Anonymous resident memory of this process in MiB (`RssAnon`), when the OS reports it.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: f64 = line["RssAnon:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn report(stage: &str, usage: Option<ArenaUsage>) {
    let rss = rss_mib().map_or_else(|| "n/a".to_string(), |m| format!("{m:8.1} MiB"));
    match usage {
        Some(u) => println!(
            "{stage:<28} in use {:>9} blocks {:>8.1} MiB   chunks held {:>3}   RSS {rss}",
            u.blocks_in_use,
            u.bytes_in_use as f64 / (1 << 20) as f64,
            u.chunks_held
        ),
        None => println!("{stage:<28} {:>61}", format!("RSS {rss}")),
    }
}

fn main() {
    report("start", None);
    let arena = Arena::new();

    // A vector of 4M numbers: its buffer outgrows the slab classes and becomes a large block.
    let mut numbers = Vec::new_in(&arena);
    numbers.extend(0..4_000_000u64);
    // 200k map entries, each value a vector of its own in the same arena.
    let mut map = hashbrown::HashMap::new_in(&arena);
    for k in 0..200_000u64 {
        let mut v = Vec::with_capacity_in(1 + (k % 24) as usize, &arena);
        v.extend((0..=k % 24).map(|j| (k + j) as u32));
        map.insert(k, v);
    }
    // 100k boxes of 64 bytes.
    let mut boxes = Vec::with_capacity_in(100_000, &arena);
    for i in 0..100_000u32 {
        boxes.push(Box::new_in([i as u8; 64], &arena));
    }
    report("filled", Some(arena.usage()));

    // Check what was built.
    let sum: u64 = numbers.iter().sum();
    let entries_ok = map
        .iter()
        .all(|(&k, v)| v.len() as u64 == 1 + k % 24 && v[0] as u64 == k);
    let boxes_ok = boxes
        .iter()
        .enumerate()
        .all(|(i, b)| b.iter().all(|&x| x == i as u8));
    assert_eq!(sum, 3_999_999 * 4_000_000 / 2);
    assert!(entries_ok && boxes_ok, "arena data is wrong");

    // Individual frees: half the map goes, and its blocks are reused by what comes next.
    map.retain(|k, _| k % 2 == 0);
    report("half the map freed", Some(arena.usage()));
    for k in 200_000..300_000u64 {
        let mut v = Vec::with_capacity_in(8, &arena);
        v.extend(0..8u32);
        map.insert(k, v);
    }
    report("refilled", Some(arena.usage()));

    drop(numbers);
    drop(map);
    drop(boxes);
    report("collections dropped", Some(arena.usage()));
    // The blocks cached in this thread's buckets go back to the pool; empty chunks are then
    // decommitted at once (the pool would do it by itself after a short delay).
    arena.flush_thread_cache();
    let trimmed = arena.trim();
    report(
        &format!("flush + trim ({trimmed} chunks)"),
        Some(arena.usage()),
    );
    drop(arena);
    report("arena dropped", None);
}
