//! A model-based random test: a deterministic generator drives `alloc`, `alloc_zeroed`,
//! `realloc` and `dealloc` with a skewed mix of sizes (mostly small, some up to 2 MiB) and
//! alignments from 1 to 8192, against a shadow model of the live blocks.
//!
//! The model knows every live block's layout and the seed of its fill pattern, and keeps the
//! blocks in a `BTreeMap` by address. After every operation it checks that the block it touched
//! overlaps no other, that its content is what was written (for `realloc`: the old prefix), and
//! that its neighbours in address order are intact (an overrun or a block handed out twice
//! shows there first); every few thousand operations it checks every live block.
//!
//! The number of operations is fixed in CI; set `FAM_MODEL_OPS` to run longer. The
//! multi-threaded variant runs four models at once that hand some of their blocks to each
//! other, with one address map for all of them so overlaps between threads are caught too.

mod common;

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use common::{check, check_prefix, fill, is_zero, mix, scaled, XorShift};
use fam_alloc::FamAlloc;

#[global_allocator]
static A: FamAlloc = FamAlloc::new();

/// Operations per model: `FAM_MODEL_OPS` if set, else a count that suits the build.
fn ops(release: usize, debug: usize) -> usize {
    match std::env::var("FAM_MODEL_OPS") {
        Ok(v) => v.parse().expect("FAM_MODEL_OPS is a number"),
        Err(_) => scaled(release, debug),
    }
}

/// A size: mostly small, some medium, a few up to 2 MiB (large blocks).
fn random_size(rng: &mut XorShift) -> usize {
    1 + match rng.below(100) {
        0..=59 => rng.below(128),
        60..=84 => rng.below(4096),
        85..=96 => rng.below(256 << 10),
        _ => rng.below(2 << 20),
    } as usize
}

/// An alignment: mostly 1 to 8, some up to a page, a few 8192 (large blocks whatever the size).
fn random_align(rng: &mut XorShift) -> usize {
    match rng.below(100) {
        0..=79 => 1 << rng.below(4),
        80..=96 => 1 << (4 + rng.below(9)),
        _ => 8192,
    }
}

/// A live block as the model sees it.
#[derive(Clone, Copy, Debug)]
struct Block {
    layout: Layout,
    seed: u64,
}

/// A block handed from one model to another.
struct Transfer {
    addr: usize,
    block: Block,
}

// SAFETY: a transfer carries the sole ownership of a block; only the receiver touches it.
unsafe impl Send for Transfer {}

/// Address ranges of the live blocks of every model, to catch overlaps between threads.
type Ranges = Mutex<BTreeMap<usize, usize>>;

struct Model<'a> {
    rng: XorShift,
    /// Live blocks by address.
    blocks: BTreeMap<usize, Block>,
    /// The same addresses, for picking one at random.
    addrs: Vec<usize>,
    bytes: usize,
    next_seed: u64,
    /// Shared with other models, if any.
    shared: Option<&'a Ranges>,
    ops: [usize; 5],
}

impl<'a> Model<'a> {
    fn new(seed: u64, shared: Option<&'a Ranges>) -> Self {
        Self {
            rng: XorShift::new(seed),
            blocks: BTreeMap::new(),
            addrs: Vec::new(),
            bytes: 0,
            next_seed: mix(seed) << 20,
            shared,
            ops: [0; 5],
        }
    }

    fn seed(&mut self) -> u64 {
        self.next_seed += 1;
        self.next_seed
    }

    /// Records a block, asserting that it overlaps no live block.
    fn insert(&mut self, addr: usize, block: Block) {
        let end = addr + block.layout.size();
        if let Some((&s, b)) = self.blocks.range(..end).next_back() {
            assert!(
                s + b.layout.size() <= addr,
                "{:?} at {addr:#x} overlaps {:?} at {s:#x}",
                block.layout,
                b.layout
            );
        }
        if let Some(shared) = self.shared {
            let mut ranges = shared.lock().unwrap();
            if let Some((&s, &e)) = ranges.range(..end).next_back() {
                assert!(
                    e <= addr,
                    "{:?} at {addr:#x} overlaps another thread's block {s:#x}..{e:#x}",
                    block.layout
                );
            }
            ranges.insert(addr, end);
        }
        assert!(
            fam_alloc::owns(addr as *const u8),
            "{addr:#x} is not the allocator's"
        );
        self.blocks.insert(addr, block);
        self.addrs.push(addr);
        self.bytes += block.layout.size();
    }

    /// Forgets the block at `addrs[i]` (before it is freed, so its address may be reused).
    fn remove(&mut self, i: usize) -> (usize, Block) {
        let addr = self.addrs.swap_remove(i);
        let block = self.blocks.remove(&addr).expect("a live block");
        if let Some(shared) = self.shared {
            shared.lock().unwrap().remove(&addr);
        }
        self.bytes -= block.layout.size();
        (addr, block)
    }

    fn check_block(addr: usize, b: &Block) {
        // SAFETY: the model only holds live blocks of `layout.size()` bytes that it owns.
        let bad = unsafe { check(addr as *const u8, b.layout.size(), b.seed) };
        assert_eq!(
            bad, None,
            "{:?} at {addr:#x} corrupted at offset {bad:?}",
            b.layout
        );
    }

    /// Checks the live blocks right before and after `addr`.
    fn check_neighbours(&self, addr: usize) {
        if let Some((&a, b)) = self.blocks.range(..addr).next_back() {
            Self::check_block(a, b);
        }
        if let Some((&a, b)) = self.blocks.range(addr + 1..).next() {
            Self::check_block(a, b);
        }
    }

    fn check_all(&self) {
        for (&a, b) in &self.blocks {
            Self::check_block(a, b);
        }
    }

    fn random_layout(&mut self) -> Layout {
        let size = random_size(&mut self.rng);
        let align = random_align(&mut self.rng);
        Layout::from_size_align(size, align).unwrap()
    }

    fn do_alloc(&mut self, zeroed: bool) {
        let layout = self.random_layout();
        // SAFETY: sizes are at least 1.
        let p = unsafe {
            if zeroed {
                alloc_zeroed(layout)
            } else {
                alloc(layout)
            }
        };
        assert!(!p.is_null(), "out of memory for {layout:?}");
        assert_eq!(p as usize % layout.align(), 0, "{layout:?} at {p:p}");
        if zeroed {
            // SAFETY: `p` holds `layout.size()` bytes.
            let zero = unsafe { is_zero(p, layout.size()) };
            assert!(zero, "alloc_zeroed({layout:?}) is dirty");
        }
        let seed = self.seed();
        // SAFETY: `p` holds `layout.size()` bytes, ours alone.
        unsafe { fill(p, layout.size(), seed) };
        self.insert(p as usize, Block { layout, seed });
        self.check_neighbours(p as usize);
    }

    fn do_dealloc(&mut self) {
        let i = self.rng.below_usize(self.addrs.len());
        let (addr, b) = self.remove(i);
        Self::check_block(addr, &b);
        // SAFETY: allocated with `b.layout`, freed once.
        unsafe { dealloc(addr as *mut u8, b.layout) };
        self.check_neighbours(addr);
    }

    fn do_realloc(&mut self) {
        let i = self.rng.below_usize(self.addrs.len());
        let (addr, b) = self.remove(i);
        let new_size = random_size(&mut self.rng);
        // SAFETY: the block is live with `b.layout`; `new_size` is non-zero and small enough.
        let p = unsafe { realloc(addr as *mut u8, b.layout, new_size) };
        assert!(!p.is_null(), "realloc {:?} -> {new_size} failed", b.layout);
        assert_eq!(p as usize % b.layout.align(), 0);
        // SAFETY: `p` holds `new_size` bytes, the first of them the old content.
        let bad = unsafe { check_prefix(p, b.layout.size(), new_size, b.seed) };
        assert_eq!(
            bad, None,
            "realloc {:?} -> {new_size} lost content at {bad:?}",
            b.layout
        );
        let layout = Layout::from_size_align(new_size, b.layout.align()).unwrap();
        let seed = self.seed();
        // SAFETY: `p` holds `new_size` bytes, ours alone.
        unsafe { fill(p, new_size, seed) };
        self.insert(p as usize, Block { layout, seed });
        self.check_neighbours(p as usize);
        if p as usize != addr {
            self.check_neighbours(addr);
        }
    }

    /// One random operation; the live set drifts between a few hundred and a few thousand
    /// blocks, and at most `max_bytes`.
    fn step(&mut self, max_bytes: usize) {
        let live = self.addrs.len();
        let roll = self.rng.below(100);
        let alloc_share = match live {
            0..=200 => 75,
            201..=3000 => 50,
            _ => 25,
        };
        if live == 0 || (roll < alloc_share && self.bytes < max_bytes) {
            let zeroed = self.rng.chance(20);
            self.ops[usize::from(zeroed)] += 1;
            self.do_alloc(zeroed);
        } else if roll < alloc_share + 15 {
            self.ops[2] += 1;
            self.do_realloc();
        } else {
            self.ops[3] += 1;
            self.do_dealloc();
        }
    }

    /// Hands a random block to another model.
    fn give(&mut self) -> Option<Transfer> {
        if self.addrs.is_empty() {
            return None;
        }
        let i = self.rng.below_usize(self.addrs.len());
        let addr = self.addrs.swap_remove(i);
        let block = self.blocks.remove(&addr).expect("a live block");
        self.bytes -= block.layout.size();
        Self::check_block(addr, &block);
        Some(Transfer { addr, block })
    }

    /// Takes a block from another model (its range stays in the shared map).
    fn take(&mut self, t: Transfer) {
        Self::check_block(t.addr, &t.block);
        self.ops[4] += 1;
        self.blocks.insert(t.addr, t.block);
        self.addrs.push(t.addr);
        self.bytes += t.block.layout.size();
    }

    fn free_all(&mut self) {
        self.check_all();
        while !self.addrs.is_empty() {
            self.do_dealloc();
        }
    }
}

#[test]
fn model_single_thread() {
    let n = ops(200_000, 40_000);
    let mut m = Model::new(2024, None);
    for k in 0..n {
        m.step(64 << 20);
        if k % 4096 == 4095 {
            m.check_all();
        }
    }
    eprintln!(
        "model: {n} operations [alloc, alloc_zeroed, realloc, dealloc, received] {:?}, {} live",
        m.ops,
        m.addrs.len()
    );
    let [allocs, zeroed, reallocs, frees, _] = m.ops;
    assert!(allocs > n / 10 && zeroed > n / 50 && reallocs > n / 20 && frees > n / 10);
    m.free_all();
}

fn model_thread(
    id: usize,
    n: usize,
    ranges: &Ranges,
    to_next: &Sender<Transfer>,
    inbox: &Receiver<Transfer>,
    done: &Barrier,
) -> [usize; 5] {
    let mut m = Model::new(7000 + id as u64, Some(ranges));
    for k in 0..n {
        while let Ok(t) = inbox.try_recv() {
            m.take(t);
        }
        m.step(32 << 20);
        if m.rng.chance(3) {
            if let Some(t) = m.give() {
                to_next.send(t).unwrap();
            }
        }
        if k % 4096 == 4095 {
            m.check_all();
        }
    }
    // Every thread has sent all it will send once all have passed the barrier.
    done.wait();
    while let Ok(t) = inbox.try_recv() {
        m.take(t);
    }
    m.free_all();
    m.ops
}

#[test]
fn model_four_threads_exchanging_blocks() {
    let threads = 4;
    let n = ops(100_000, 15_000);
    let ranges: Arc<Ranges> = Arc::new(Mutex::new(BTreeMap::new()));
    let done = Arc::new(Barrier::new(threads));
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<Transfer>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            let tx = txs[(i + 1) % threads].clone();
            let (ranges, done) = (Arc::clone(&ranges), Arc::clone(&done));
            thread::spawn(move || model_thread(i, n, &ranges, &tx, &rx, &done))
        })
        .collect();
    drop(txs);
    for h in handles {
        let [allocs, _, _, frees, received] = h.join().unwrap();
        assert!(allocs > n / 10 && frees > n / 10);
        assert!(received > 0, "blocks were exchanged");
    }
    assert!(ranges.lock().unwrap().is_empty(), "every block was freed");
}
