//! Memory goes back after frees in any order: the rows of the measurement that showed it did not
//! (2M x 64 B, 8M x 16..256 B, 1M x 1000 B; freed as allocated, reversed and scrambled). Each
//! row allocates its blocks through one path (see below), touches them, frees them all in the
//! row's order, then checks the anonymous resident memory the blocks added: at most 16 MiB (the
//! target is 1.1 x what stays live + 16 MiB, and nothing of theirs stays live; a block kept live
//! pins its page, so a pattern that keeps one block per page keeps every page, in any allocator
//! that works in pages),
//!
//! - after the purge delay and one allocation and free of 64 B: what the frees gave back beyond
//!   the pool's pressure bound went back during the frees themselves, or at that allocation
//!   (the pressure recheck);
//! - at once after `fam_alloc::trim()`;
//! - with the background purge on, after the delay without any call (past the pressure bound
//!   the thread gave its own chunks up, so the background pass reaches every chunk; what stays
//!   is the pages the thread's cached blocks pin).
//!
//! The scrambled rows run twice: through `fam_alloc::raw` (the C library's paths) and through
//! `FamAlloc`'s `GlobalAlloc` methods (a Rust program's), whose fast paths test nothing for the
//! pressure recheck (the heap diverts them to its slow path instead).
//!
//! Debug builds run the rows at a quarter of the block counts. The binary keeps the system
//! allocator for everything else (the pointer table included, allocated before the baseline),
//! and its tests run one at a time.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{exclusive, mib, rss_anon, scaled, XorShift};
use fam_alloc::FamAlloc;

const DELAY_MS: i64 = 30;

#[derive(Clone, Copy, Debug)]
enum Order {
    AsAllocated,
    Reversed,
    Scrambled,
}

/// Which entry points a row calls.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// `fam_alloc::raw`, as the C library calls it.
    C,
    /// `FamAlloc` as a `#[global_allocator]`.
    Rust,
}

impl Path {
    fn alloc(self, size: usize) -> *mut u8 {
        match self {
            Path::C => fam_alloc::raw::alloc(size, 8),
            // SAFETY: a non-zero size with alignment 8.
            Path::Rust => unsafe {
                FamAlloc::new().alloc(Layout::from_size_align(size, 8).unwrap())
            },
        }
    }

    /// # Safety
    /// `p` came from `self.alloc(size)` and is freed once.
    unsafe fn free(self, p: *mut u8, size: usize) {
        match self {
            // SAFETY: per the contract.
            Path::C => unsafe { fam_alloc::raw::free("free", p) },
            // SAFETY: per the contract, with the layout it was allocated with.
            Path::Rust => unsafe {
                FamAlloc::new().dealloc(p, Layout::from_size_align(size, 8).unwrap())
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Then {
    /// Wait past the delay, then one pool call.
    DelayAndOneCall,
    /// `trim()` at once.
    Trim,
    /// Background purge on, wait, no call.
    Background,
}

/// Runs one row and checks the bound.
fn row(path: Path, blocks: usize, sizes: (usize, usize), order: Order, then: Then) {
    let _x = exclusive();
    options(then);
    let n = scaled(blocks, blocks / 4);
    // The tables are written before the baseline, so their pages are in it.
    let mut ptrs: Vec<(usize, usize)> = vec![(1, 1); n];
    let mut index: Vec<usize> = (0..n).collect();
    let baseline = rss_anon();
    let mut rng = XorShift::new(n as u64 ^ sizes.1 as u64);
    for slot in ptrs.iter_mut() {
        let size = sizes.0 + rng.below_usize(sizes.1 - sizes.0 + 1);
        let p = path.alloc(size);
        assert!(!p.is_null());
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.write_bytes(0x5a, size) };
        *slot = (p as usize, size);
    }
    let peak = rss_anon() - baseline;
    match order {
        Order::AsAllocated => {}
        Order::Reversed => index.reverse(),
        Order::Scrambled => {
            for i in (1..n).rev() {
                index.swap(i, rng.below_usize(i + 1));
            }
        }
    }
    let live: usize = 0;
    for &i in &index {
        // SAFETY: each block was allocated above and is freed once.
        unsafe { path.free(ptrs[i].0 as *mut u8, ptrs[i].1) };
    }
    let bound = live + live / 10 + (16 << 20);
    let grown = || rss_anon().saturating_sub(baseline);
    match then {
        Then::DelayAndOneCall => {
            sleep(Duration::from_millis(3 * DELAY_MS as u64));
            // One allocator call, as a program makes it: a fast-path pair that reaches no pool.
            let p = path.alloc(64);
            assert!(!p.is_null());
            // SAFETY: the block just allocated.
            unsafe { path.free(p, 64) };
        }
        Then::Trim => {
            fam_alloc::trim();
        }
        Then::Background => {
            let start = Instant::now();
            while grown() > bound && start.elapsed() < Duration::from_secs(5) {
                sleep(Duration::from_millis(10));
            }
        }
    }
    let after = grown();
    eprintln!("ROW {path:?} {order:?} {then:?} {:.1}", mib(after));
    assert!(
        after <= bound,
        "{path:?}: {blocks} x {sizes:?} B freed {order:?}, then {then:?}: {:.1} MiB resident \
         after (peak {:.1} MiB), {:.1} MiB live, bound {:.1} MiB; {:?}",
        mib(after),
        mib(peak),
        mib(live),
        mib(bound),
        fam_alloc::stats().memory
    );
    fam_alloc::options::set_background_purge(false);
    fam_alloc::trim();
}

fn options(then: Then) {
    fam_alloc::options::set_purge_delay_ms(DELAY_MS);
    fam_alloc::options::set_background_purge(matches!(then, Then::Background));
}

const M: usize = 1 << 20;

#[test]
fn two_million_64_byte_blocks() {
    for order in [Order::AsAllocated, Order::Scrambled] {
        for then in [Then::DelayAndOneCall, Then::Trim, Then::Background] {
            row(Path::C, 2 * M, (64, 64), order, then);
        }
    }
    row(
        Path::Rust,
        2 * M,
        (64, 64),
        Order::Scrambled,
        Then::DelayAndOneCall,
    );
}

#[test]
fn eight_million_blocks_of_16_to_256_bytes() {
    for order in [Order::AsAllocated, Order::Reversed, Order::Scrambled] {
        for then in [Then::DelayAndOneCall, Then::Trim, Then::Background] {
            row(Path::C, 8 * M, (16, 256), order, then);
        }
    }
    row(
        Path::Rust,
        8 * M,
        (16, 256),
        Order::Scrambled,
        Then::DelayAndOneCall,
    );
}

#[test]
fn one_million_1000_byte_blocks_scrambled() {
    for then in [Then::DelayAndOneCall, Then::Trim, Then::Background] {
        row(Path::C, M, (1000, 1000), Order::Scrambled, then);
    }
    row(
        Path::Rust,
        M,
        (1000, 1000),
        Order::Scrambled,
        Then::DelayAndOneCall,
    );
}
