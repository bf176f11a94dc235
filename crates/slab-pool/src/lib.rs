//! slab-pool: the central store behind per-thread heaps. 4 MiB slab chunks per size class over a
//! [`chunk_source::ChunkSource`], with slot bitmaps from [`slab_bitmap`], and no locks.
//!
//! ```text
//! thread heap ──refill──> its owned chunk of the class: local free bits, then shared bitmap
//!      │                     └─ exhausted: give it up; own a listed chunk, an empty one, a new one
//!      └──flush──> blocks of its owned chunk: local bits (plain stores)
//!                  other blocks: one fetch_and per bitmap word; the chunk settles (listed/retired)
//! ```
//!
//! - [`class`]: the class table (block size, slots, bitmap words, bucket capacity per class).
//! - [`ChunkHeader`]: the chunk layout, the two bitmaps, and the one classifier of small blocks.
//! - [`membership`]: where a chunk is (owned, listed, floating, retiring, empty) and the
//!   lock-free protocol that moves it, model checked with loom.
//! - [`policy`]: the purge delay and the empty chunks kept committed, one [`POLICY`] per process.
//! - [`SlabPool`]: refill, flush, retirement, the empty pool, the purge of free pages and empty
//!   chunks, and a validator
//!   ([`SlabPool::validate`]) that re-checks every chunk's invariants between operations.
//!
//! A thread heap keeps an [`Owner`] beside its buckets and passes it to every refill and flush.
//!
//! ```
//! use slab_pool::{NoRegistry, Owner, SlabPool};
//! use chunk_source::MmapSource;
//!
//! static POOL: SlabPool<MmapSource> = SlabPool::new(MmapSource::new(), NoRegistry);
//!
//! let mut owner = Owner::new();
//! let mut out = [core::ptr::null_mut(); 16];
//! let n = POOL.refill(&mut owner, 3, &mut out);
//! assert!(n >= 1 && n <= 16, "memory");
//! let blocks: Vec<_> = out[..n].iter().map(|&p| core::ptr::NonNull::new(p).unwrap()).collect();
//! // SAFETY: the blocks came from this pool as class 3 and nothing uses them.
//! unsafe { POOL.flush(Some(&mut owner), 3, &blocks) };
//! POOL.validate(&[&owner]);
//! POOL.release_owner(&mut owner);
//! POOL.validate(&[]);
//! ```

#![no_std]

pub mod membership;
mod primitive;

#[cfg(not(loom))]
mod chunk;
#[cfg(not(loom))]
pub mod class;
#[cfg(not(loom))]
mod groups;
#[cfg(not(loom))]
pub mod policy;
#[cfg(not(loom))]
mod pool;
#[cfg(not(loom))]
mod report;
#[cfg(not(loom))]
mod set;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(not(loom))]
pub use chunk::{BadBlock, ChunkHeader};
#[cfg(not(loom))]
pub use policy::{Policy, POLICY};
#[cfg(not(loom))]
pub use pool::{now_ms, ChunkCounts, ChunkRegistry, NoRegistry, Owner, SlabPool};
#[cfg(not(loom))]
pub use report::bad_free;
#[cfg(not(loom))]
pub use set::MAX_CHUNKS;
