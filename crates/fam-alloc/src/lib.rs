//! fam-alloc: a memory allocator with per-thread buckets over lock-free slabs.
//!
//! ```text
//! FamAlloc ──> thread heap (per thread, one bucket per size class, no atomics)
//!                 │ refill: a word of slot bits claimed at once / flush: one release per word
//!                 v
//!              slab pool (per class: 4 MiB chunks with slot bitmaps) ──> chunk source (mmap, sbrk)
//!              large blocks (> 1 MiB or alignment > 128 KiB): runs of chunks with a header
//!              chunk registry: which chunks are ours, without touching them
//! ```
//!
//! A block freed by any thread goes into the freeing thread's bucket (ownership transfer), so a
//! cross-thread free costs the same as a local one. Buckets are bounded; their surplus returns to
//! the slab pool in batches. Chunks whose blocks all came back are retired to a pool of empty
//! chunks shared by every class and decommitted after a delay, so memory returns to the OS.
//!
//! Use it as the global allocator:
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: fam_alloc::FamAlloc = fam_alloc::FamAlloc::new();
//! # fn main() {}
//! ```
//!
//! # Features
//! - `mmap` (default): the global heap's chunks come from private anonymous mappings. Always
//!   compiled in; it is the backend unless another is chosen.
//! - `sbrk`: the global heap's chunks come from the program break instead.
//! - `stats` (default): per-thread counters on the fast paths, for exact per-class statistics
//!   (one instruction per allocation and per free).
//! - `allocator-api2-04`: `Arena` also implements allocator-api2 0.4's `Allocator`.
//!
//! Shared arenas ([`Arena::shared`]) and the shared global heap ([`init_global_allocator`]) are
//! always available: they map their own shared regions.

mod arena;
mod background;
mod class;
mod counters;
mod global;
mod local;
pub mod options;
mod os;
pub mod raw;
mod registry;
mod report;
mod shared;
mod statistics;

pub use arena::{Arena, ArenaError, ArenaUsage};
pub use chunk_source::CHUNK_SIZE;
pub use global::{chunk_counts, flush_thread_cache, owns, thread_cached_bytes, trim, FamAlloc};
pub use shared::{alloc, init_global_allocator, release, resize, shared_usage, SHARED_ALIGN};
pub use slab_pool::ChunkCounts;
pub use statistics::{print_stats, print_stats_to_fd, reset_peaks, stats, write_stats, VERSION};
pub use stats::{ClassStats, Format, HeapStats, Snapshot};

/// The largest request served from slabs (larger ones are large blocks).
pub const MAX_SMALL_SIZE: usize = class::MAX_SMALL;
/// The largest alignment served from slabs (larger ones are large blocks).
pub const MAX_SMALL_ALIGN: usize = class::MAX_SMALL_ALIGN;
