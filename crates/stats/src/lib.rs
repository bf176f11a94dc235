//! Allocator statistics: the counters an allocator keeps, and three reports written from them.
//!
//! The allocator fills a [`Snapshot`] (process totals: one [`ClassStats`] per size class, large
//! blocks, chunks, threads) and, if it wants per-thread detail, one [`HeapStats`] per thread heap,
//! then calls a writer. Writers go through [`core::fmt::Write`] and never allocate, so they can
//! run at process exit inside the allocator itself; [`SinkWriter`] turns a fixed stack buffer
//! and a byte sink (a `write(2)` to stderr, say) into such a `Write`.
//!
//! | report | writer | for |
//! |---|---|---|
//! | [`Format::Bmalloc`] | [`write_bmalloc`] | the classic `V`/`B`/`H`/`S` lines, plus `L`/`C`/`T` |
//! | [`Format::Table`] | [`write_table`] | people: aligned columns, sizes in KiB/MiB |
//! | [`Format::Json`] | [`write_json`] | tools: one JSON object |
//!
//! [`write_report`] picks one by [`Format`]; [`Format::from_env`] reads the choice from an
//! environment variable's value. With the `std` feature, `parse` reads the bmalloc lines and
//! the JSON back into numbers.
//!
//! ```
//! use stats::{ClassStats, Format, HeapStats, Snapshot};
//!
//! let mut snap = Snapshot::new("0.1.0", 8);
//! snap.classes[2] = ClassStats { block_size: 24, allocs: 10, frees: 4, cached: 3, peak_blocks: 9 };
//! let mut heap = HeapStats::new(1, 8);
//! heap.classes[2] = ClassStats { peak_blocks: 0, ..snap.classes[2] };
//!
//! let mut out = String::new();
//! let format = Format::from_env("bmalloc").unwrap();
//! stats::write_report(&mut out, format, &snap, &mut [heap].into_iter()).unwrap();
//! assert!(out.contains("\nB 1/2(24) 3 10/4/6 144/72\nH 1 144/72\nS 144/72\n"));
//! ```
//!
//! # Counting rules
//!
//! A free is counted where it happens, which may be another thread than the one that allocated
//! the block. So in a per-heap view `allocs - frees` can be negative, and every "in use" figure is
//! signed ([`ClassStats::in_use`]): it never wraps around. Products and sums that do not fit
//! saturate (at `i64::MIN`/`i64::MAX` or `u64::MAX`) instead of wrapping.
//!
//! A class is *active* ([`ClassStats::is_active`]) when any of its counters is non-zero; the
//! reports list active classes only.
//!
//! # The bmalloc lines
//!
//! [`write_bmalloc`] writes a blank line, then one line per record; the first letter says what
//! the record is. `V`, `B`, `H` and `S` are the line kinds of the bmalloc statistics dump;
//! `L`, `C` and `T` are additions that come after `S`, so a reader of the old kinds can stop at
//! `S`.
//!
//! ```text
//!
//! V Memory Statistics (fam-alloc 0.1.0)
//! B 1/2(24) 3 10/4/6 144/72
//! B 1/5(48) 0 6/0/6 288/0
//! H 1 432/72
//! B 2/5(48) 1 0/3/-3 -144/48
//! B 2/9(96) 2 2/2/0 0/192
//! H 2 -144/240
//! B 0/2(24) 0 1/1/0 0/0
//! H 0 0/0
//! S 288/312
//! L 3/1 8388608 12582912 1
//! C 6/3/2/1/4
//! T 2/5
//! ```
//!
//! (Heap 2 freed three 48-byte blocks that heap 1 allocated: its `inuse` is -3.)
//!
//! | line | field | meaning |
//! |---|---|---|
//! | `V Memory Statistics (fam-alloc <version>)` | `version` | [`Snapshot::version`]; `unknown` if it is empty, control characters shown as `?` |
//! | `B k/b(size) c nmalloc/nfree/inuse used/free` | `k` | [`HeapStats::id`] (0: the exited threads, folded together) |
//! | | `b` | size class index |
//! | | `size` | [`ClassStats::block_size`], bytes per block |
//! | | `c` | [`ClassStats::cached`]: free blocks in this heap's bucket |
//! | | `nmalloc` | [`ClassStats::allocs`] made by this heap's thread |
//! | | `nfree` | [`ClassStats::frees`] made by this heap's thread (of blocks allocated anywhere) |
//! | | `inuse` | `nmalloc - nfree`, signed ([`ClassStats::in_use`]); negative when other threads allocated what this one freed |
//! | | `used` | `inuse * size`, signed ([`ClassStats::in_use_bytes`]) |
//! | | `free` | `c * size` ([`ClassStats::cached_bytes`]) |
//! | `H k used/free` | `used`, `free` | sums of the heap's `B` fields ([`HeapStats::used_bytes`], [`HeapStats::free_bytes`]) |
//! | `S used/free` | `used` | small blocks in use over the whole snapshot, every heap and exited threads included ([`Snapshot::small_in_use_bytes`]) |
//! | | `free` | bytes cached in buckets, whole snapshot ([`Snapshot::cached_bytes`]) |
//! | `L nmalloc/nfree bytes_in_use peak_bytes cached_chunks` | | large blocks: [`LargeStats`] fields in that order |
//! | `C mapped/active/empty_committed/empty_decommitted/large` | | chunks: [`ChunkStats`] fields in that order |
//! | `M committed/decommitted/resident` | | bytes at page level: [`MemoryStats`] fields in that order |
//! | `T live/exited` | | [`Snapshot::threads_live`], [`Snapshot::threads_exited`] |
//!
//! `B` lines are written per heap in the order the heaps are given, classes in increasing
//! order, inactive classes skipped; each heap's `H` line follows its `B` lines (also for a heap
//! with no active class). `S` is taken from the snapshot, not summed from the heaps listed,
//! so it stays right when the caller lists only some heaps.
//!
//! Two faults of the original dump are gone: `inuse` and `used` are signed (the original
//! printed them unsigned, so a heap that freed other threads' blocks showed values near
//! 2<sup>64</sup>), and the revision string is never empty.
#![no_std]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod bmalloc;
mod counters;
mod format;
mod json;
mod sink;
mod table;
mod text;

#[cfg(feature = "std")]
pub mod parse;

pub use bmalloc::write_bmalloc;
pub use counters::{ChunkStats, ClassStats, HeapStats, LargeStats, MemoryStats, Snapshot};
pub use format::{write_report, Format};
pub use json::write_json;
pub use sink::SinkWriter;
pub use table::write_table;

/// Most size classes a [`Snapshot`] or [`HeapStats`] holds.
pub const MAX_CLASSES: usize = 64;

/// Bytes in one chunk (4 MiB), used to show chunk counts as sizes in the table.
pub const CHUNK_BYTES: u64 = 4 << 20;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
