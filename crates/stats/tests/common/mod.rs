//! Snapshots for the tests: a small known one and pseudo-random ones.
#![allow(dead_code)]

use stats::{ChunkStats, ClassStats, HeapStats, LargeStats, MemoryStats, Snapshot, MAX_CLASSES};

/// xorshift64: small, deterministic, good enough to vary test inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// Block size of class `b` in the test snapshots: 8-byte steps up to 64, then four classes per
/// doubling (class 63 is 1 MiB).
pub fn block_size(b: usize) -> u64 {
    if b < 8 {
        8 * (b as u64 + 1)
    } else {
        let base = 64u64 << ((b - 8) / 4);
        base + base / 4 * ((b - 8) % 4 + 1) as u64
    }
}

fn class(b: usize, allocs: u64, frees: u64, cached: u64) -> ClassStats {
    ClassStats {
        block_size: block_size(b),
        allocs,
        frees,
        cached,
        peak_blocks: 0,
    }
}

/// A known case: two live heaps and the exited-threads heap; heap 2 frees blocks that heap 1
/// allocated, so heap 2 shows a negative in-use count; large blocks and chunks in use.
///
/// | heap | class | size | allocs | frees | cached |
/// |---|---|---|---|---|---|
/// | 1 | 2 | 24 | 10 | 4 | 3 |
/// | 1 | 5 | 48 | 6 | 0 | 0 |
/// | 2 | 5 | 48 | 0 | 3 | 1 |
/// | 2 | 9 | 96 | 2 | 2 | 2 |
/// | 0 | 2 | 24 | 1 | 1 | 0 |
pub fn known() -> (Snapshot, Vec<HeapStats>) {
    let n = 12;
    let mut h1 = HeapStats::new(1, n);
    h1.classes[2] = class(2, 10, 4, 3);
    h1.classes[5] = class(5, 6, 0, 0);
    let mut h2 = HeapStats::new(2, n);
    h2.classes[5] = class(5, 0, 3, 1);
    h2.classes[9] = class(9, 2, 2, 2);
    let mut h0 = HeapStats::new(0, n);
    h0.classes[2] = class(2, 1, 1, 0);
    let heaps = vec![h1, h2, h0];
    let mut snap = sum("0.1.0", n, &heaps);
    snap.classes[2].peak_blocks = 12;
    snap.classes[5].peak_blocks = 6;
    snap.classes[9].peak_blocks = 2;
    snap.large = LargeStats {
        allocs: 3,
        frees: 1,
        bytes_in_use: 8 << 20,
        peak_bytes: 12 << 20,
        cached_chunks: 1,
    };
    snap.chunks = ChunkStats {
        mapped: 6,
        active: 3,
        empty_committed: 2,
        empty_decommitted: 1,
        large: 4,
    };
    snap.memory = MemoryStats {
        committed_bytes: 30 << 20,
        decommitted_bytes: 5 << 20,
        resident_bytes: 41 << 20,
    };
    snap.threads_live = 2;
    snap.threads_exited = 5;
    (snap, heaps)
}

/// A snapshot whose classes are the sums of `heaps`' classes (block sizes from `block_size`).
pub fn sum(version: &'static str, n: usize, heaps: &[HeapStats]) -> Snapshot {
    let mut snap = Snapshot::new(version, n);
    for (b, c) in snap.classes[..n].iter_mut().enumerate() {
        c.block_size = block_size(b);
        for h in heaps {
            c.allocs += h.classes[b].allocs;
            c.frees += h.classes[b].frees;
            c.cached += h.classes[b].cached;
        }
    }
    snap
}

/// A random snapshot: 0..6 heaps (ids distinct, heap 0 sometimes among them), each class of a
/// heap active with probability 1/3, frees often above allocs in a heap (cross-thread frees);
/// a sixth of the snapshots list only some of the heaps that went into the totals.
pub fn random(rng: &mut Rng) -> (Snapshot, Vec<HeapStats>) {
    let n = 1 + rng.below(MAX_CLASSES as u64) as usize;
    let nheaps = rng.below(6) as usize;
    let first_id = rng.below(2);
    let mut heaps = Vec::new();
    for k in 0..nheaps {
        let mut h = HeapStats::new(first_id + k as u64 * (1 + rng.below(3)), n);
        for b in 0..n {
            h.classes[b].block_size = block_size(b);
            if rng.one_in(3) {
                let scale = if rng.one_in(10) { 1 << 32 } else { 1000 };
                h.classes[b].allocs = rng.below(scale);
                h.classes[b].frees = rng.below(scale);
                h.classes[b].cached = if rng.one_in(2) { rng.below(500) } else { 0 };
            }
        }
        heaps.push(h);
    }
    let mut snap = sum("0.1.0-test", n, &heaps);
    for c in snap.classes[..n].iter_mut() {
        if c.is_active() {
            c.peak_blocks = c.in_use().max(0) as u64 + c.cached + rng.below(100);
        }
    }
    snap.large = LargeStats {
        allocs: rng.below(10_000),
        frees: rng.below(10_000),
        bytes_in_use: rng.below(1 << 40),
        peak_bytes: rng.below(1 << 41),
        cached_chunks: rng.below(8),
    };
    snap.chunks = ChunkStats {
        mapped: rng.below(4096),
        active: rng.below(4096),
        empty_committed: rng.below(64),
        empty_decommitted: rng.below(64),
        large: rng.below(1024),
    };
    snap.memory = MemoryStats {
        committed_bytes: rng.below(1 << 40),
        decommitted_bytes: rng.below(1 << 40),
        resident_bytes: rng.below(1 << 40),
    };
    snap.threads_live = rng.below(200);
    snap.threads_exited = rng.below(100_000);
    if rng.one_in(6) && !heaps.is_empty() {
        heaps.pop();
    }
    (snap, heaps)
}

/// The signature the report writers share.
pub type Writer = fn(
    &mut dyn core::fmt::Write,
    &Snapshot,
    &mut dyn Iterator<Item = HeapStats>,
) -> core::fmt::Result;

/// The report `write` produces for `snap` and `heaps`, as a String.
pub fn render(write: Writer, snap: &Snapshot, heaps: &[HeapStats]) -> String {
    let mut s = String::new();
    write(&mut s, snap, &mut heaps.iter().copied()).unwrap();
    s
}
