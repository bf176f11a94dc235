//! The allocation model that the proptest state machine (`tests/proptest_model.rs`) and the
//! `ops` fuzz target (`fuzz/fuzz_targets/ops.rs`, which includes this file by path) both run.
//!
//! An [`Op`] says what to do without naming an address: a block is picked by its place among the
//! live blocks counted from the newest (0 is the newest; a pick past the oldest takes the
//! oldest), a resize says grow, shrink or keep and by how much. Any sequence of ops is therefore
//! valid in any state, so proptest can shrink a failing sequence by dropping ops and lowering
//! numbers without invalidating the ops after them (dropping an op that made an older block
//! changes no pick), and any fuzz input decodes ([`decode`]) to a sequence that runs.
//!
//! [`Model`] is the reference state machine: its state is every live block's heap, layout,
//! usable extent and fill seed, keyed by address. Each op is applied to the allocator and to
//! the state, and the touched block is checked at once: aligned, at least as long as asked,
//! overlapping no other live block of any heap (the blocks are kept by address, so the blocks
//! on either side are the only ones it could overlap), zero where a zeroing call promised zero,
//! holding its old content up to the smaller size after a resize, and with its neighbours'
//! content intact (an overrun or a block handed out twice shows there first). A block's content
//! is checked again when it is freed, and every block at [`Model::finish`].
//!
//! The heaps: `FamAlloc` through `GlobalAlloc`, the C-facing entry points of `fam_alloc::raw`,
//! and a private `Arena` through allocator-api2's `Allocator`.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use std::collections::BTreeMap;

use allocator_api2::alloc::Allocator;
use arbitrary::Unstructured;
use fam_alloc::{Arena, FamAlloc};

use crate::common::{check, check_prefix, fill, is_zero, mix};

/// The global allocator (every `FamAlloc` is the same process-wide heap).
const GLOBAL: FamAlloc = FamAlloc::new();

/// The largest size an op asks for: 2 MiB (above the largest slab class, so large blocks too).
pub const MAX_SIZE: usize = 2 << 20;
/// The largest alignment, as a power of two: 64 KiB.
pub const MAX_ALIGN_LOG2: u32 = 16;
/// At most this many blocks are live at once; an allocation beyond it is skipped.
pub const MAX_LIVE: usize = 256;
/// At most this many bytes are live at once; an allocation or growth beyond it is skipped.
pub const MAX_LIVE_BYTES: usize = 48 << 20;
/// [`decode`] reads at most this many ops from one input.
pub const MAX_OPS: usize = 1024;

/// Which allocator an allocation goes to (its resizes and free go to the same one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heap {
    /// `FamAlloc` through `GlobalAlloc` (sizes of 0 become 1: `GlobalAlloc` forbids 0).
    Global,
    /// `fam_alloc::raw`: `alloc`, `alloc_zeroed`, `realloc`, `free`, as the C library calls them.
    Raw,
    /// The model's private `Arena` through allocator-api2.
    Arena,
}

/// How a resize changes a block's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// Larger by this many bytes (at most [`MAX_SIZE`] in all).
    Grow(usize),
    /// Smaller by this many bytes (at least 0 left).
    Shrink(usize),
    /// The same size.
    Same,
}

/// One step of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Allocates `size` bytes aligned to `1 << align_log2`, zeroed or not.
    Alloc {
        heap: Heap,
        size: usize,
        align_log2: u32,
        zeroed: bool,
    },
    /// Resizes the live block `pick` places from the newest; `zeroed` makes an arena's grow
    /// a `grow_zeroed` (the other heaps have no zeroing resize).
    Realloc {
        pick: usize,
        resize: Resize,
        zeroed: bool,
    },
    /// Frees the live block `pick` places from the newest, on a thread of its own when `remote`.
    Dealloc { pick: usize, remote: bool },
    /// Gives the calling thread's cached blocks back (the global heap's and the arena's); with
    /// `trim`, also decommits empty chunks and unmaps cached large runs.
    Flush { trim: bool },
    /// Drops the arena with its blocks still live (they all go back at once) and makes a new one.
    ResetArena,
}

/// A size skewed towards small ones, from two raw values (`tier` picks the range): 60 % up to
/// 128 B, 25 % up to 4 KiB, 12 % up to 256 KiB, 3 % up to [`MAX_SIZE`].
pub fn skewed_size(tier: u8, raw: u32) -> usize {
    let raw = raw as usize;
    match u32::from(tier) * 100 / 256 {
        0..=59 => raw % 129,
        60..=84 => raw % 4097,
        85..=96 => raw % ((256 << 10) + 1),
        _ => raw % (MAX_SIZE + 1),
    }
}

/// An alignment, as a power of two, skewed towards small ones (80 % at most 8, 3 % above 4 KiB).
pub fn skewed_align_log2(tier: u8, raw: u8) -> u32 {
    let raw = u32::from(raw);
    match u32::from(tier) * 100 / 256 {
        0..=79 => raw % 4,
        80..=96 => 4 + raw % 9,
        _ => 13 + raw % (MAX_ALIGN_LOG2 - 12),
    }
}

fn decode_heap(u: &mut Unstructured<'_>) -> arbitrary::Result<Heap> {
    Ok(match u.int_in_range(0u8..=2)? {
        0 => Heap::Global,
        1 => Heap::Raw,
        _ => Heap::Arena,
    })
}

/// A pick, mostly among the 8 newest blocks.
fn decode_pick(u: &mut Unstructured<'_>) -> arbitrary::Result<usize> {
    let b: u8 = u.arbitrary()?;
    Ok(match b {
        0..=159 => usize::from(b % 8),
        160..=223 => usize::from(b % 64),
        _ => usize::from(b),
    })
}

fn decode_op(u: &mut Unstructured<'_>) -> arbitrary::Result<Op> {
    let tag: u8 = u.arbitrary()?;
    Ok(match tag % 32 {
        0..=11 => Op::Alloc {
            heap: decode_heap(u)?,
            size: skewed_size(u.arbitrary()?, u.arbitrary()?),
            align_log2: skewed_align_log2(u.arbitrary()?, u.arbitrary()?),
            zeroed: tag & 0x80 != 0,
        },
        12..=18 => Op::Realloc {
            pick: decode_pick(u)?,
            resize: match u.int_in_range(0u8..=8)? {
                0..=3 => Resize::Grow(skewed_size(u.arbitrary()?, u.arbitrary()?)),
                4..=7 => Resize::Shrink(skewed_size(u.arbitrary()?, u.arbitrary()?)),
                _ => Resize::Same,
            },
            zeroed: tag & 0x80 != 0,
        },
        19..=29 => Op::Dealloc {
            pick: decode_pick(u)?,
            remote: tag & 0xe0 == 0xe0,
        },
        30 => Op::Flush {
            trim: tag & 0x80 != 0,
        },
        _ => Op::ResetArena,
    })
}

/// The ops a fuzz input stands for (at most [`MAX_OPS`]; bytes that do not complete an op are
/// ignored).
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match decode_op(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// A live block as the model knows it (its address is its key in [`Model::blocks`]).
#[derive(Clone, Copy, Debug)]
struct Live {
    heap: Heap,
    size: usize,
    align: usize,
    /// The bytes the allocator says are usable (`usable_size`, or the length an arena
    /// returned): no other live block may lie in them.
    extent: usize,
    /// The seed of the fill pattern over the first `size` bytes.
    seed: u64,
}

impl Live {
    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size, self.align).expect("a valid layout")
    }
}

/// How many ops of each kind did something, to show that a run exercised them all.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub alloc: usize,
    pub zeroed: usize,
    pub aligned: usize,
    pub large: usize,
    pub grow: usize,
    pub shrink: usize,
    pub same: usize,
    pub dealloc: usize,
    pub remote: usize,
    pub flush: usize,
    pub reset: usize,
    pub skipped: usize,
}

/// The reference state machine over the three heaps; see the module docs.
pub struct Model {
    arena: Arena,
    /// Live blocks by address.
    blocks: BTreeMap<usize, Live>,
    /// The same addresses in the order the blocks were made (what a pick counts in, from the
    /// end).
    order: Vec<usize>,
    bytes: usize,
    next_seed: u64,
    step: usize,
    last: Option<Op>,
    /// What the ops did so far.
    pub counts: Counts,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    /// A model with no live block and a fresh arena.
    pub fn new() -> Self {
        Self {
            arena: Arena::new(),
            blocks: BTreeMap::new(),
            order: Vec::new(),
            bytes: 0,
            next_seed: 0,
            step: 0,
            last: None,
            counts: Counts::default(),
        }
    }

    fn seed(&mut self) -> u64 {
        self.next_seed += 1;
        mix(self.next_seed)
    }

    /// Panics with the step and the op that led to it.
    #[track_caller]
    fn fail(&self, what: std::fmt::Arguments<'_>) -> ! {
        panic!("step {} ({:?}): {what}", self.step, self.last)
    }

    /// Checks a block the allocator just returned, before the model records it.
    fn check_new(&self, addr: usize, b: &Live) {
        if !addr.is_multiple_of(b.align) {
            self.fail(format_args!("{addr:#x} is not aligned for {b:?}"));
        }
        if b.extent < b.size {
            self.fail(format_args!(
                "{addr:#x}: usable {} < asked for {b:?}",
                b.extent
            ));
        }
        if b.heap != Heap::Arena && !fam_alloc::owns(addr as *const u8) {
            self.fail(format_args!("{addr:#x} ({b:?}) is not the global heap's"));
        }
        let end = addr + b.extent.max(1);
        if let Some((&s, o)) = self.blocks.range(..end).next_back() {
            if s + o.extent.max(1) > addr {
                self.fail(format_args!(
                    "[{addr:#x}, {end:#x}) {b:?} overlaps live {o:?} at {s:#x}"
                ));
            }
        }
    }

    fn check_content(&self, addr: usize, b: &Live, when: &str) {
        // SAFETY: the model holds only live blocks of at least `size` bytes, which nobody else
        // touches.
        let bad = unsafe { check(addr as *const u8, b.size, b.seed) };
        if let Some(off) = bad {
            self.fail(format_args!(
                "{when}: {b:?} at {addr:#x} corrupted at offset {off}"
            ));
        }
    }

    /// Checks the live blocks right before and after `addr` in address order.
    fn check_neighbours(&self, addr: usize) {
        if let Some((&a, b)) = self.blocks.range(..addr).next_back() {
            self.check_content(a, b, "lower neighbour");
        }
        if let Some((&a, b)) = self.blocks.range(addr + 1..).next() {
            self.check_content(a, b, "upper neighbour");
        }
    }

    /// The arena's own figures against the model's.
    fn check_arena_usage(&self) {
        let (blocks, bytes) = self
            .blocks
            .values()
            .filter(|b| b.heap == Heap::Arena)
            .fold((0, 0), |(n, s), b| (n + 1, s + b.extent));
        let u = self.arena.usage();
        if (u.blocks_in_use, u.bytes_in_use) != (blocks, bytes) {
            self.fail(format_args!(
                "arena reports {} blocks / {} B in use, the model {blocks} / {bytes}",
                u.blocks_in_use, u.bytes_in_use
            ));
        }
    }

    /// Records a block that [`Self::check_new`] accepted.
    fn insert(&mut self, addr: usize, b: Live) {
        self.blocks.insert(addr, b);
        self.bytes += b.size;
    }

    fn remove(&mut self, addr: usize) -> Live {
        let b = self.blocks.remove(&addr).expect("a live block");
        self.bytes -= b.size;
        b
    }

    /// The usable extent of a block of the C-facing entry points. (A `FamAlloc` block's extent
    /// is its layout's size: `GlobalAlloc` promises no more, and `raw`'s functions take only
    /// blocks `raw` handed out.)
    fn raw_extent(p: *mut u8) -> usize {
        // SAFETY: `p` is a live block of the global heap, just returned by `raw`.
        unsafe { fam_alloc::raw::usable_size(p) }
    }

    /// Where in `order` the block `pick` places from the newest is (`order` is not empty).
    fn index(&self, pick: usize) -> usize {
        let n = self.order.len();
        n - 1 - pick.min(n - 1)
    }

    /// Applies one op to the allocator and the model, and checks what it touched.
    pub fn apply(&mut self, op: &Op) {
        self.step += 1;
        self.last = Some(*op);
        match *op {
            Op::Alloc {
                heap,
                size,
                align_log2,
                zeroed,
            } => self.alloc(heap, size, align_log2, zeroed),
            Op::Realloc {
                pick,
                resize,
                zeroed,
            } => self.realloc(pick, resize, zeroed),
            Op::Dealloc { pick, remote } => self.dealloc(pick, remote),
            Op::Flush { trim } => {
                self.counts.flush += 1;
                if trim {
                    fam_alloc::trim();
                    self.arena.trim();
                } else {
                    fam_alloc::flush_thread_cache();
                    self.arena.flush_thread_cache();
                }
            }
            Op::ResetArena => self.reset_arena(),
        }
        self.check_arena_usage();
    }

    fn alloc(&mut self, heap: Heap, size: usize, align_log2: u32, zeroed: bool) {
        let size = size.min(MAX_SIZE);
        let size = if heap == Heap::Global {
            size.max(1)
        } else {
            size
        };
        let align = 1usize << align_log2.min(MAX_ALIGN_LOG2);
        if self.order.len() >= MAX_LIVE || self.bytes + size > MAX_LIVE_BYTES {
            self.counts.skipped += 1;
            return;
        }
        let layout = Layout::from_size_align(size, align).expect("a valid layout");
        let (p, extent) = match heap {
            Heap::Global => {
                // SAFETY: the layout's size is not zero.
                let p = unsafe {
                    if zeroed {
                        GLOBAL.alloc_zeroed(layout)
                    } else {
                        GLOBAL.alloc(layout)
                    }
                };
                if p.is_null() {
                    self.fail(format_args!("out of memory for {layout:?}"));
                }
                (p, size)
            }
            Heap::Raw => {
                let p = if zeroed {
                    fam_alloc::raw::alloc_zeroed(size, align)
                } else {
                    fam_alloc::raw::alloc(size, align)
                };
                if p.is_null() {
                    self.fail(format_args!("out of memory for {layout:?}"));
                }
                (p, Self::raw_extent(p))
            }
            Heap::Arena => {
                let got = if zeroed {
                    self.arena.allocate_zeroed(layout)
                } else {
                    self.arena.allocate(layout)
                }
                .unwrap_or_else(|_| self.fail(format_args!("arena out of memory for {layout:?}")));
                (got.cast::<u8>().as_ptr(), got.len())
            }
        };
        let addr = p as usize;
        let seed = self.seed();
        let b = Live {
            heap,
            size,
            align,
            extent,
            seed,
        };
        self.check_new(addr, &b);
        if zeroed {
            // SAFETY: `p` holds `size` bytes (its extent is at least that, checked just above).
            if !unsafe { is_zero(p, size) } {
                self.fail(format_args!("{b:?} at {addr:#x} is not zeroed"));
            }
        }
        self.insert(addr, b);
        // SAFETY: the block holds `size` bytes, ours alone.
        unsafe { fill(p, size, seed) };
        self.order.push(addr);
        self.check_neighbours(addr);
        self.counts.alloc += 1;
        self.counts.zeroed += usize::from(zeroed);
        self.counts.aligned += usize::from(align > 16);
        self.counts.large += usize::from(size > fam_alloc::MAX_SMALL_SIZE);
    }

    fn realloc(&mut self, pick: usize, resize: Resize, zeroed: bool) {
        if self.order.is_empty() {
            self.counts.skipped += 1;
            return;
        }
        let i = self.index(pick);
        let addr = self.order[i];
        let old = self.blocks[&addr];
        let mut new_size = match resize {
            Resize::Grow(d) => old.size.saturating_add(d).min(MAX_SIZE).max(old.size),
            Resize::Shrink(d) => old.size - d.min(old.size),
            Resize::Same => old.size,
        };
        if old.heap == Heap::Global {
            new_size = new_size.max(1);
        }
        if self.bytes - old.size + new_size > MAX_LIVE_BYTES {
            new_size = old.size;
        }
        self.check_content(addr, &old, "before resize");
        self.remove(addr);
        let p = addr as *mut u8;
        let new_layout = Layout::from_size_align(new_size, old.align).expect("a valid layout");
        let zero_tail = zeroed && old.heap == Heap::Arena && new_size > old.size;
        let (q, extent) = match old.heap {
            Heap::Global => {
                // SAFETY: `p` is live with `old.layout()`; `new_size` is not zero and at most
                // 2 MiB, so it rounds up to its alignment without overflow.
                let q = unsafe { GLOBAL.realloc(p, old.layout(), new_size) };
                if q.is_null() {
                    self.fail(format_args!("realloc to {new_size} failed"));
                }
                (q, new_size)
            }
            Heap::Raw => {
                // SAFETY: `p` is a live block of the global heap allocated at `old.align`.
                let q = unsafe { fam_alloc::raw::realloc(p, new_size, old.align) };
                if q.is_null() {
                    self.fail(format_args!("realloc to {new_size} failed"));
                }
                (q, Self::raw_extent(q))
            }
            Heap::Arena => {
                // SAFETY: `p` is a live block, so not null.
                let nn = unsafe { NonNull::new_unchecked(p) };
                // SAFETY: `nn` is a live block of this arena for `old.layout()`; grow gets a
                // size at least the old one, shrink at most, and the alignment stays.
                let got = unsafe {
                    if new_size < old.size {
                        self.arena.shrink(nn, old.layout(), new_layout)
                    } else if zero_tail {
                        self.arena.grow_zeroed(nn, old.layout(), new_layout)
                    } else {
                        self.arena.grow(nn, old.layout(), new_layout)
                    }
                }
                .unwrap_or_else(|_| self.fail(format_args!("arena resize to {new_size} failed")));
                (got.cast::<u8>().as_ptr(), got.len())
            }
        };
        let new_addr = q as usize;
        let seed = self.seed();
        let b = Live {
            size: new_size,
            extent,
            seed,
            ..old
        };
        self.check_new(new_addr, &b);
        // SAFETY: the block holds `new_size` bytes (checked against its extent just above); the
        // first `min(old, new)` of them are the old content.
        let lost = unsafe { check_prefix(q, old.size, new_size, old.seed) };
        if let Some(off) = lost {
            self.fail(format_args!(
                "resize of {old:?} at {addr:#x} to {new_size} at {new_addr:#x} lost content at {off}"
            ));
        }
        if zero_tail {
            // SAFETY: as above; the tail is `old.size..new_size`.
            if !unsafe { is_zero(q.add(old.size), new_size - old.size) } {
                self.fail(format_args!(
                    "grow_zeroed of {old:?} to {new_size}: tail not zero"
                ));
            }
        }
        self.insert(new_addr, b);
        // SAFETY: the block holds `new_size` bytes, ours alone.
        unsafe { fill(q, new_size, seed) };
        self.order[i] = new_addr;
        self.check_neighbours(new_addr);
        if new_addr != addr {
            self.check_neighbours(addr);
        }
        match new_size.cmp(&old.size) {
            std::cmp::Ordering::Greater => self.counts.grow += 1,
            std::cmp::Ordering::Less => self.counts.shrink += 1,
            std::cmp::Ordering::Equal => self.counts.same += 1,
        }
    }

    /// Frees the block at `addr` (already out of the model) through its own heap.
    fn free(arena: &Arena, addr: usize, b: &Live) {
        let p = addr as *mut u8;
        match b.heap {
            // SAFETY: `p` is live with `b.layout()` and freed once.
            Heap::Global => unsafe { GLOBAL.dealloc(p, b.layout()) },
            // SAFETY: `p` is a live block of the global heap, freed once.
            Heap::Raw => unsafe { fam_alloc::raw::free("free", p) },
            // SAFETY: `p` is a live, non-null block of `arena` for `b.layout()`, freed once.
            Heap::Arena => unsafe { arena.deallocate(NonNull::new_unchecked(p), b.layout()) },
        }
    }

    fn dealloc(&mut self, pick: usize, remote: bool) {
        if self.order.is_empty() {
            self.counts.skipped += 1;
            return;
        }
        let i = self.index(pick);
        let addr = self.order.remove(i);
        let b = self.remove(addr);
        self.check_content(addr, &b, "before free");
        let arena = &self.arena;
        if remote {
            std::thread::scope(|s| {
                s.spawn(move || Self::free(arena, addr, &b));
            });
            self.counts.remote += 1;
        } else {
            Self::free(arena, addr, &b);
        }
        self.check_neighbours(addr);
        self.counts.dealloc += 1;
    }

    fn reset_arena(&mut self) {
        let mine: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|a| self.blocks[a].heap == Heap::Arena)
            .collect();
        for &a in &mine {
            let b = self.remove(a);
            self.check_content(a, &b, "before the arena's drop");
        }
        self.order.retain(|a| !mine.contains(a));
        self.arena = Arena::new();
        self.counts.reset += 1;
    }

    /// Checks every live block, frees them all and checks that the arena is empty.
    pub fn finish(mut self) -> Counts {
        self.last = None;
        for (&a, b) in &self.blocks {
            self.check_content(a, b, "at the end");
        }
        while !self.order.is_empty() {
            self.dealloc(0, false);
        }
        self.check_arena_usage();
        self.counts
    }
}
