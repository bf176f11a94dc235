//! Large blocks: each one its own run of 4 MiB chunks from a [`ChunkSource`].
//!
//! This is the part of an allocator that serves requests too big for its size classes. A block
//! of `size` bytes aligned to `align` (any power of two) gets a run of whole chunks from the
//! source, a 64-byte [`LargeHeader`] right before the payload, and nothing else: no list, no
//! lock, no allocation.
//!
//! # Layout
//!
//! The payload lies at `base + max(64, align)` for alignments up to `CHUNK_SIZE`; for larger
//! ones the run takes `align / CHUNK_SIZE` more chunks and the payload is the first aligned
//! address at or after `base + 64`. The header records the magic (live or freed), the size
//! asked for, the alignment, the run (base and chunk count), the payload address and a guard
//! hash of those fields. See [`LargeHeader`].
//!
//! # Checks
//!
//! [`LargeAlloc::dealloc`], [`LargeAlloc::realloc`], [`LargeAlloc::header`] and
//! [`LargeAlloc::usable_size`] accept a pointer only if the 64 bytes before it hold a header
//! with a known magic, whose recorded payload is that very pointer and whose guard matches:
//! interior pointers, pointers into other memory and corrupted headers give
//! [`LargeError::BadPointer`]. `dealloc` turns the magic from live to freed with one
//! compare-exchange before it lets the run go, so a second free gives
//! [`LargeError::DoubleFree`] while the run is still mapped (in the cache, or with a source
//! that keeps it). Once the source has unmapped a run, the header cannot be read at all: a
//! caller that must survive frees of arbitrary pointers keeps a registry of its runs (the
//! `base` and `nchunks` of [`LargeBlock`] and [`Realloc`]) and asks it first.
//!
//! # Sizes
//!
//! A size whose run (size + header and alignment padding, rounded up to whole chunks) would
//! pass `isize::MAX` bytes is [`LargeError::Overflow`], never a wrapped small block; a size the
//! source cannot provide is [`LargeError::OutOfMemory`].
//!
//! # Reallocation
//!
//! In place when the chunk count does not change; else through `ChunkSource::resize` (mremap
//! for the mmap source) when the source is `RESIZABLE` and the alignment is at most
//! `CHUNK_SIZE`; else a new block, a copy and a free. [`Realloc`] tells whether the payload
//! moved and which run the block had before.
//!
//! # The cache of freed runs
//!
//! Up to [`CACHE_SLOTS`] freed runs of at most [`CACHE_MAX_RUN_CHUNKS`] chunks,
//! [`CACHE_MAX_CHUNKS`] chunks in all, are kept for later allocations (the shortest run long
//! enough, split past twice the need; or, on a source that moves chunks, shorter runs gathered
//! into one with their pages), so that allocating and freeing a few-MiB block in a loop does
//! not map and unmap every time, nor fault its pages in again. The cache is lock-free (one compare-exchange per slot), and a run that has sat
//! through more than [`CACHE_MAX_AGE`] large allocations and frees unused is given back to the
//! source; [`LargeAlloc::trim`] gives back all of them, and so does dropping the allocator and
//! a source running out of memory. A reused run is not zeroed (`zeroed` is false). Runs of a
//! [`SourceProps::SHARED`] source are never cached: after a fork another process could cache
//! the same run.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "mmap")] {
//! use chunk_source::MmapSource;
//! use large_alloc::LargeAlloc;
//!
//! static LARGE: LargeAlloc<MmapSource> = LargeAlloc::new(MmapSource::new());
//!
//! let block = LARGE.alloc(5 << 20, 4096).unwrap();
//! assert_eq!(block.ptr.as_ptr() as usize % 4096, 0);
//! assert!(block.zeroed);
//! // SAFETY: a live block of LARGE, used by this thread only and freed once.
//! unsafe {
//!     block.ptr.as_ptr().write_bytes(7, 5 << 20);
//!     let grown = LARGE.realloc(block.ptr, 9 << 20).unwrap();
//!     assert_eq!(*grown.block.ptr.as_ptr().add((5 << 20) - 1), 7);
//!     LARGE.dealloc(grown.block.ptr).unwrap();
//! }
//! # }
//! ```

#![no_std]

mod cache;
mod error;
mod header;
mod large;

#[cfg(test)]
extern crate std;

pub use cache::{CACHE_MAX_AGE, CACHE_MAX_CHUNKS, CACHE_MAX_RUN_CHUNKS, CACHE_SLOTS};
pub use chunk_source::{ChunkError, ChunkSource, SourceProps, CHUNK_SIZE};
pub use error::LargeError;
pub use header::{LargeHeader, HEADER_SIZE};
pub use large::{LargeAlloc, LargeBlock, Realloc};
