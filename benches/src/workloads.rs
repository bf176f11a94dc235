//! The single-threaded workloads.
//!
//! Each touches every block it allocates (one byte, written with a volatile store) so the memory
//! is really used and no compiler can drop an allocation whose result is never read. Inputs that
//! need random choices (sizes, free orders, keys) are drawn up front into a plan, so a timed loop
//! spends its time in the allocator, not in the generator.

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use std::alloc::handle_alloc_error;

use allocator_api2::vec::Vec as AVec;
use hashbrown::HashMap;

use crate::{Rng, Treap, Via};
use fam_workloads::mix;

/// Block sizes of the alloc/free pair benchmarks.
pub const PAIR_SIZES: [usize; 10] = [
    16,
    64,
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
];

/// Alloc/free pairs per call of [`alloc_free_pairs`] in the benchmarks: enough to make the timer's
/// own cost negligible.
pub const PAIRS: usize = 100;

/// `(size, align)` of the aligned-allocation benchmarks.
pub const ALIGNED_CASES: [(usize, usize); 4] =
    [(64, 64), (100, 64), (4096, 4096), (64 << 10, 64 << 10)];

/// `16B`, `4KiB`, `1MiB`: a size as benchmark names spell it.
pub fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

/// Writes one byte at the start of a block with a volatile store, so the block is really used.
///
/// # Safety
/// `p` is valid for writing one byte.
#[inline(always)]
pub unsafe fn touch(p: *mut u8, value: u8) {
    // SAFETY: the caller's contract.
    unsafe { p.write_volatile(value) }
}

/// Allocates a block of `layout`, touches it and frees it, `pairs` times. `dealloc` gets the
/// same layout, as Rust's collections pass it.
#[inline(never)]
pub fn alloc_free_pairs<A: GlobalAlloc>(a: &A, layout: Layout, pairs: usize) {
    assert!(layout.size() > 0, "GlobalAlloc needs a non-zero size");
    for i in 0..pairs {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { a.alloc(layout) };
        if p.is_null() {
            handle_alloc_error(layout);
        }
        // SAFETY: `p` is a fresh block of at least one byte; it is freed once, with its layout.
        unsafe {
            touch(p, i as u8);
            a.dealloc(black_box(p), layout);
        }
    }
}

/// A batch of mixed-size blocks and the order to free them in.
///
/// Sizes are skewed like a typical program's: 90% in 8..=512 B, 9.5% in 513 B..=4 KiB, 0.5% in
/// 4 KiB..=64 KiB, each band log-uniform (every doubling equally likely). Alignment is 8.
#[derive(Clone, Debug)]
pub struct MixedPlan {
    layouts: Vec<Layout>,
    free_order: Vec<u32>,
}

impl MixedPlan {
    /// `count` blocks drawn from the generator seeded with `seed`, and a shuffled free order.
    pub fn new(count: usize, seed: u64) -> Self {
        assert!(count <= u32::MAX as usize);
        let mut rng = Rng::new(seed);
        let layouts = (0..count)
            .map(|_| {
                let size = match rng.below(1000) {
                    0..900 => rng.log_uniform(8, 512),
                    900..995 => rng.log_uniform(513, 4 << 10),
                    _ => rng.log_uniform((4 << 10) + 1, 64 << 10),
                };
                Layout::from_size_align(size, 8).expect("valid layout")
            })
            .collect();
        let mut free_order: Vec<u32> = (0..count as u32).collect();
        rng.shuffle(&mut free_order);
        Self {
            layouts,
            free_order,
        }
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.layouts.len()
    }

    /// Whether the plan has no blocks.
    pub fn is_empty(&self) -> bool {
        self.layouts.is_empty()
    }

    /// Sum of the block sizes.
    pub fn total_bytes(&self) -> usize {
        self.layouts.iter().map(Layout::size).sum()
    }
}

/// Allocates every block of `plan` (touching each), then frees them all in the plan's shuffled
/// order. `ptrs` is scratch space for the pointers, reused between calls so the timed part does
/// not allocate through anything but `a`.
#[inline(never)]
pub fn mixed_batch<A: GlobalAlloc>(a: &A, plan: &MixedPlan, ptrs: &mut Vec<*mut u8>) {
    ptrs.clear();
    ptrs.reserve(plan.len());
    for (i, &layout) in plan.layouts.iter().enumerate() {
        // SAFETY: every planned size is at least 8.
        let p = unsafe { a.alloc(layout) };
        if p.is_null() {
            handle_alloc_error(layout);
        }
        // SAFETY: `p` is a fresh block of at least one byte.
        unsafe { touch(p, i as u8) };
        ptrs.push(p);
    }
    for &i in &plan.free_order {
        let i = i as usize;
        // SAFETY: `free_order` is a permutation, so each block is freed once, with its layout.
        unsafe { a.dealloc(ptrs[i], plan.layouts[i]) };
    }
    black_box(ptrs);
}

/// Pushes `0..n` one by one onto an allocator-api2 `Vec` in `a` (growth by doubling, each step a
/// `realloc`), reads it back and drops it. Returns the sum, so the work cannot be skipped.
#[inline(never)]
pub fn vec_push<A: GlobalAlloc>(a: &Via<A>, n: u64) -> u64 {
    let mut v = AVec::new_in(a);
    for i in 0..n {
        v.push(black_box(i));
    }
    black_box(&mut v);
    v.iter().sum()
}

/// The ids inserted and removed by a churn workload: `n` keys go in, then `n` rounds each remove
/// one live key (in a shuffled order of the first `n`) and insert a new one.
#[derive(Clone, Debug)]
pub struct ChurnPlan {
    n: usize,
    remove_order: Vec<u32>,
}

impl ChurnPlan {
    /// A plan of `n` keys and `n` replacements, shuffled by the generator seeded with `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        assert!(n <= (u32::MAX / 2) as usize);
        let mut remove_order: Vec<u32> = (0..n as u32).collect();
        Rng::new(seed).shuffle(&mut remove_order);
        Self { n, remove_order }
    }

    /// Number of keys live at once.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the plan has no keys.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// Longest key of [`hashmap_churn`].
const MAX_KEY: usize = 40;

/// The key bytes of `id`: its 8 little-endian bytes (so keys are distinct), then pseudo-random
/// bytes up to a length in 8..=40 that depends on the id, like short strings of mixed length.
fn key_bytes(id: u64, buf: &mut [u8; MAX_KEY]) -> &[u8] {
    let h = mix(id);
    let len = 8 + (h % (MAX_KEY as u64 - 7)) as usize;
    buf[..8].copy_from_slice(&id.to_le_bytes());
    for (i, b) in buf[8..len].iter_mut().enumerate() {
        *b = (h >> ((i % 8) * 8)) as u8 ^ i as u8;
    }
    &buf[..len]
}

/// Hash map churn: a hashbrown `HashMap` in `a` whose keys are byte strings boxed in `a`. Inserts
/// the plan's `n` keys (the table grows as it fills), then `n` times removes a live key (freeing
/// it) and inserts a new one (allocating it), then drops the map. Returns the final length.
#[inline(never)]
pub fn hashmap_churn<A: GlobalAlloc>(a: &Via<A>, plan: &ChurnPlan) -> usize {
    let make_key = |id: u64, buf: &mut [u8; MAX_KEY]| {
        let bytes = key_bytes(id, buf);
        let mut v = AVec::with_capacity_in(bytes.len(), a);
        v.extend_from_slice(bytes);
        v.into_boxed_slice()
    };
    let mut buf = [0u8; MAX_KEY];
    let mut map = HashMap::new_in(a);
    let n = plan.n as u64;
    for id in 0..n {
        map.insert(make_key(id, &mut buf), id);
    }
    for (i, &victim) in plan.remove_order.iter().enumerate() {
        let removed = map.remove(key_bytes(u64::from(victim), &mut buf));
        debug_assert_eq!(removed, Some(u64::from(victim)));
        let id = n + i as u64;
        map.insert(make_key(id, &mut buf), id);
    }
    black_box(&mut map);
    map.len()
}

/// Map churn with owned values: a `HashMap<u64, Vec<u8>>` in `a` whose values are byte vectors
/// of 8..=64 bytes (a length that depends on the key). Inserts the plan's `n` keys, then `n`
/// times removes a live key (freeing its value) and inserts a new one, then drops the map.
/// Returns the sum of the final values' lengths.
#[inline(never)]
pub fn hashmap_vec_churn<A: GlobalAlloc>(a: &Via<A>, plan: &ChurnPlan) -> usize {
    let value = |id: u64| {
        let len = 8 + (mix(id) % 57) as usize;
        let mut v = AVec::with_capacity_in(len, a);
        v.resize(len, id as u8);
        v
    };
    let mut map = HashMap::new_in(a);
    let n = plan.n as u64;
    for id in 0..n {
        map.insert(id, value(id));
    }
    for (i, &victim) in plan.remove_order.iter().enumerate() {
        let removed = map.remove(&u64::from(victim));
        debug_assert!(removed.is_some());
        let id = n + i as u64;
        map.insert(id, value(id));
    }
    black_box(&mut map);
    map.values().map(|v| v.len()).sum()
}

/// Search tree churn: a [`Treap`] in `a` with pseudo-random `u64` keys. Inserts the plan's `n`
/// keys, then `n` times removes a live key and inserts a new one, then drops the tree. Returns the
/// final length.
#[inline(never)]
pub fn treap_churn<A: GlobalAlloc>(a: &Via<A>, plan: &ChurnPlan) -> usize {
    let key = |id: u64| mix(id ^ 0xA076_1D64_78BD_642F);
    let mut t = Treap::new_in(a);
    let n = plan.n as u64;
    for id in 0..n {
        t.insert(key(id));
    }
    for (i, &victim) in plan.remove_order.iter().enumerate() {
        let removed = t.remove(key(u64::from(victim)));
        debug_assert!(removed);
        t.insert(key(n + i as u64));
    }
    black_box(&mut t);
    t.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let labels: Vec<String> = PAIR_SIZES.iter().map(|&s| size_label(s)).collect();
        assert_eq!(
            labels,
            ["16B", "64B", "256B", "1KiB", "4KiB", "16KiB", "64KiB", "256KiB", "1MiB", "4MiB"]
        );
        assert_eq!(size_label(100), "100B");
    }

    #[test]
    fn mixed_plan_is_skewed_and_deterministic() {
        let plan = MixedPlan::new(100_000, 1);
        let small = plan.layouts.iter().filter(|l| l.size() <= 512).count();
        assert!((88_000..92_000).contains(&small), "{small}");
        assert!(plan
            .layouts
            .iter()
            .all(|l| (8..=64 << 10).contains(&l.size())));
        assert!(plan.layouts.iter().any(|l| l.size() > 32 << 10));
        assert_eq!(plan.total_bytes(), MixedPlan::new(100_000, 1).total_bytes());
        let mut order = plan.free_order.clone();
        order.sort_unstable();
        assert!(order.iter().enumerate().all(|(i, &j)| i == j as usize));
    }

    #[test]
    fn keys_are_distinct_and_sized() {
        let mut seen = std::collections::HashSet::new();
        let mut buf = [0u8; MAX_KEY];
        for id in 0..5_000 {
            let k = key_bytes(id, &mut buf);
            assert!((8..=MAX_KEY).contains(&k.len()));
            assert!(seen.insert(k.to_vec()));
        }
    }

    #[test]
    fn every_allocator_runs_every_single_threaded_workload() {
        let plan = MixedPlan::new(2_000, 9);
        let churn = ChurnPlan::new(500, 4);
        let mut ptrs = Vec::new();
        crate::for_each_allocator!(|name, a| {
            for &size in &PAIR_SIZES {
                alloc_free_pairs(&a.0, Layout::from_size_align(size, 8).unwrap(), 3);
            }
            for &(size, align) in &ALIGNED_CASES {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size; the block is freed with its layout.
                unsafe {
                    let p = a.0.alloc(layout);
                    assert_eq!(p as usize % align, 0, "{name}: {size} at {align}");
                    a.0.dealloc(p, layout);
                }
                alloc_free_pairs(&a.0, layout, 3);
            }
            mixed_batch(&a.0, &plan, &mut ptrs);
            assert_eq!(vec_push(a, 10_000), 10_000 * 9_999 / 2, "{name}");
            assert_eq!(hashmap_churn(a, &churn), 500, "{name}");
            assert_eq!(treap_churn(a, &churn), 500, "{name}");
        });
    }
}
