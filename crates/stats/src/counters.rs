//! The counter types the allocator fills and the figures derived from them.
//!
//! Derived figures are computed in `i128` and clamped to the result type, so no report ever
//! shows a value that wrapped around: a difference that goes below zero stays negative, and a
//! product too large for 64 bits saturates.

use crate::MAX_CLASSES;

/// Clamps to the `i64` range.
pub(crate) fn clamp_i64(v: i128) -> i64 {
    // The clamp makes the cast exact.
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The active classes of `classes`, with their indices.
fn active(classes: &[ClassStats]) -> impl Iterator<Item = (usize, &ClassStats)> {
    classes.iter().enumerate().filter(|(_, c)| c.is_active())
}

/// One size class, summed over the heaps it describes.
///
/// Invariant kept by the allocator (not checked here): in a process-wide view
/// `peak_blocks >= in_use + cached` held at the time of the peak; in a per-heap view
/// `peak_blocks` is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Bytes per block.
    pub block_size: u64,
    /// Allocations counted (where they happened).
    pub allocs: u64,
    /// Frees counted (where they happened: may be another thread than the allocation's).
    pub frees: u64,
    /// Free blocks held in buckets (thread caches).
    pub cached: u64,
    /// Most blocks out of the central pool at once (in use + cached) since the last reset;
    /// 0 in a per-heap view.
    pub peak_blocks: u64,
}

impl ClassStats {
    /// All counters and the block size zero.
    pub const ZERO: ClassStats = ClassStats {
        block_size: 0,
        allocs: 0,
        frees: 0,
        cached: 0,
        peak_blocks: 0,
    };

    /// Blocks in use: `allocs - frees`, signed. A heap whose blocks were freed by other threads
    /// goes negative; the value never wraps (it saturates at the `i64` range).
    pub fn in_use(&self) -> i64 {
        clamp_i64(i128::from(self.allocs) - i128::from(self.frees))
    }

    /// Bytes in use: `in_use() * block_size`, signed, saturating.
    pub fn in_use_bytes(&self) -> i64 {
        // |i64| * u64 < 2^127: the product fits in i128.
        clamp_i64(i128::from(self.in_use()) * i128::from(self.block_size))
    }

    /// Bytes cached: `cached * block_size`, saturating.
    pub fn cached_bytes(&self) -> u64 {
        self.cached.saturating_mul(self.block_size)
    }

    /// Whether any counter (`allocs`, `frees`, `cached`, `peak_blocks`) is non-zero. Reports list
    /// active classes only.
    pub fn is_active(&self) -> bool {
        self.allocs != 0 || self.frees != 0 || self.cached != 0 || self.peak_blocks != 0
    }
}

/// One thread heap (id 0: the threads that have exited, folded together).
///
/// Only `classes[..num_classes]` count (`num_classes` above [`MAX_CLASSES`] is read as
/// [`MAX_CLASSES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// Heap id, as the allocator numbers its thread heaps; 0 is the exited threads.
    pub id: u64,
    /// Number of size classes in use.
    pub num_classes: usize,
    /// Per-class counters of this heap; `peak_blocks` is 0 here.
    pub classes: [ClassStats; MAX_CLASSES],
}

impl HeapStats {
    /// A heap with every counter zero and block sizes 0.
    pub const fn new(id: u64, num_classes: usize) -> Self {
        HeapStats {
            id,
            num_classes: if num_classes > MAX_CLASSES {
                MAX_CLASSES
            } else {
                num_classes
            },
            classes: [ClassStats::ZERO; MAX_CLASSES],
        }
    }

    /// The classes that count: `classes[..num_classes]`.
    pub fn class_slice(&self) -> &[ClassStats] {
        &self.classes[..self.num_classes.min(MAX_CLASSES)]
    }

    /// The active classes with their indices, in increasing order.
    pub fn active(&self) -> impl Iterator<Item = (usize, &ClassStats)> {
        active(self.class_slice())
    }

    /// Sum of the classes' [`ClassStats::in_use_bytes`] (signed, saturating).
    pub fn used_bytes(&self) -> i64 {
        in_use_sum(self.class_slice())
    }

    /// Sum of the classes' [`ClassStats::cached_bytes`] (saturating).
    pub fn free_bytes(&self) -> u64 {
        cached_sum(self.class_slice())
    }
}

/// Blocks above the largest size class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeStats {
    /// Large blocks allocated.
    pub allocs: u64,
    /// Large blocks freed.
    pub frees: u64,
    /// Bytes of live large blocks.
    pub bytes_in_use: u64,
    /// Most bytes of live large blocks at once.
    pub peak_bytes: u64,
    /// Chunks held in the cache of freed runs.
    pub cached_chunks: u64,
}

/// Chunks (4 MiB each, [`crate::CHUNK_BYTES`]) by what they hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    /// Chunks obtained from the OS for slabs, ever (slab chunks are never unmapped).
    pub mapped: u64,
    /// Slab chunks holding a class now.
    pub active: u64,
    /// Empty slab chunks still holding their pages.
    pub empty_committed: u64,
    /// Empty slab chunks whose pages went back to the OS.
    pub empty_decommitted: u64,
    /// Chunks in live large blocks.
    pub large: u64,
}

/// Memory at page level, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Mapped memory whose pages the allocator has not given back: slab chunks (less the free
    /// pages and empty chunks it decommitted), large blocks and cached large runs. An upper
    /// bound of what it holds resident (pages never touched are not resident either).
    pub committed_bytes: u64,
    /// Mapped memory whose pages went back to the OS: free pages of active chunks and the block
    /// areas of empty chunks, after the purge delay or a trim.
    pub decommitted_bytes: u64,
    /// The process's resident set (the OS's figure, every mapping of the process included), or
    /// 0 where the allocator cannot read it.
    pub resident_bytes: u64,
}

/// Process totals.
///
/// Only `classes[..num_classes]` count (`num_classes` above [`MAX_CLASSES`] is read as
/// [`MAX_CLASSES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Version of the allocator (e.g. its `CARGO_PKG_VERSION`); reports show `unknown` when it
    /// is empty.
    pub version: &'static str,
    /// Number of size classes in use.
    pub num_classes: usize,
    /// Per-class counters summed over every heap, exited threads included.
    pub classes: [ClassStats; MAX_CLASSES],
    /// Large blocks.
    pub large: LargeStats,
    /// Chunks.
    pub chunks: ChunkStats,
    /// Memory at page level.
    pub memory: MemoryStats,
    /// Threads with a live heap.
    pub threads_live: u64,
    /// Threads that have exited (their counters are folded into heap 0).
    pub threads_exited: u64,
}

impl Snapshot {
    /// A snapshot with every counter zero and block sizes 0. An empty `version` becomes
    /// `"unknown"`.
    pub const fn new(version: &'static str, num_classes: usize) -> Self {
        Snapshot {
            version: if version.is_empty() {
                "unknown"
            } else {
                version
            },
            num_classes: if num_classes > MAX_CLASSES {
                MAX_CLASSES
            } else {
                num_classes
            },
            classes: [ClassStats::ZERO; MAX_CLASSES],
            large: LargeStats {
                allocs: 0,
                frees: 0,
                bytes_in_use: 0,
                peak_bytes: 0,
                cached_chunks: 0,
            },
            chunks: ChunkStats {
                mapped: 0,
                active: 0,
                empty_committed: 0,
                empty_decommitted: 0,
                large: 0,
            },
            memory: MemoryStats {
                committed_bytes: 0,
                decommitted_bytes: 0,
                resident_bytes: 0,
            },
            threads_live: 0,
            threads_exited: 0,
        }
    }

    /// The classes that count: `classes[..num_classes]`.
    pub fn class_slice(&self) -> &[ClassStats] {
        &self.classes[..self.num_classes.min(MAX_CLASSES)]
    }

    /// The active classes with their indices, in increasing order.
    pub fn active(&self) -> impl Iterator<Item = (usize, &ClassStats)> {
        active(self.class_slice())
    }

    /// Sum of the classes' [`ClassStats::in_use_bytes`] (signed, saturating).
    pub fn small_in_use_bytes(&self) -> i64 {
        in_use_sum(self.class_slice())
    }

    /// Sum of the classes' [`ClassStats::cached_bytes`] (saturating).
    pub fn cached_bytes(&self) -> u64 {
        cached_sum(self.class_slice())
    }

    /// Bytes in use, small and large: `small_in_use_bytes() + large.bytes_in_use` (saturating).
    pub fn in_use_bytes(&self) -> i64 {
        clamp_i64(i128::from(self.small_in_use_bytes()) + i128::from(self.large.bytes_in_use))
    }

    /// Allocations, small and large (saturating).
    pub fn allocs(&self) -> u64 {
        self.class_slice()
            .iter()
            .fold(self.large.allocs, |acc, c| acc.saturating_add(c.allocs))
    }

    /// Frees, small and large (saturating).
    pub fn frees(&self) -> u64 {
        self.class_slice()
            .iter()
            .fold(self.large.frees, |acc, c| acc.saturating_add(c.frees))
    }
}

/// Sum of the classes' [`ClassStats::in_use_bytes`] (signed, saturating).
fn in_use_sum(classes: &[ClassStats]) -> i64 {
    clamp_i64(classes.iter().map(|c| i128::from(c.in_use_bytes())).sum())
}

/// Sum of the classes' [`ClassStats::cached_bytes`] (saturating).
fn cached_sum(classes: &[ClassStats]) -> u64 {
    classes
        .iter()
        .fold(0u64, |acc, c| acc.saturating_add(c.cached_bytes()))
}
