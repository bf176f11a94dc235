//! Per-thread caches of free blocks, one bounded LIFO bucket per size class, in front of a
//! central store.
//!
//! A [`ThreadHeap`] holds one [`Bucket`] per size class. A bucket is a stack of the addresses of
//! free blocks, in an array inside the heap: allocation pops an address and free pushes one, both
//! inlined and a few instructions long, and neither touches the block. Only two events reach the
//! [`CentralStore`], both on separate cold paths and both moving many blocks in one call:
//!
//! - an allocation from an empty bucket has the store write up to `max(cap / 2, 1)` addresses
//!   of free blocks ([`Block`]) straight into its slots (refill);
//! - a free into a full bucket first gives back its oldest half as a slice of addresses (flush),
//!   so a bucket never holds more than its capacity.
//!
//! A block freed on any thread goes into the freeing thread's bucket, wherever it was allocated
//! (ownership transfer): blocks carry no owner, and frees need no synchronisation. The bound on
//! every bucket is what keeps a producer/consumer pair from moving all memory into the consumer's
//! heap: the consumer's surplus flows back to the store, where the producer's refills find it.
//!
//! The crate has no atomics, no locks and never allocates; the store does its own
//! synchronisation.
//!
//! # Example
//!
//! A single-threaded store over a fixed set of 64-byte blocks of one class:
//!
//! ```
//! use core::cell::RefCell;
//! use core::ptr::NonNull;
//! use thread_heap::{Block, CentralStore, ThreadHeap};
//!
//! struct Pool {
//!     free: RefCell<Vec<NonNull<Block>>>,
//! }
//!
//! // SAFETY: `free` lists distinct 64-byte, 8-aligned blocks of a buffer that outlives the
//! // pool and that nothing else uses; a block leaves `free` when handed out and comes back only
//! // through `flush`.
//! unsafe impl CentralStore for Pool {
//!     fn refill(&self, _class: usize, out: &mut [*mut Block]) -> usize {
//!         let mut free = self.free.borrow_mut();
//!         let at = free.len().saturating_sub(out.len());
//!         let batch = free.split_off(at);
//!         for (slot, block) in out.iter_mut().zip(&batch) {
//!             *slot = block.as_ptr();
//!         }
//!         batch.len()
//!     }
//!
//!     unsafe fn flush(&self, _class: usize, blocks: &[NonNull<Block>]) {
//!         self.free.borrow_mut().extend_from_slice(blocks);
//!     }
//! }
//!
//! let mut buffer = vec![0u64; 8 * 100];
//! let blocks = buffer.chunks_exact_mut(8).map(|b| NonNull::from(b).cast()).collect();
//! let pool = Pool { free: RefCell::new(blocks) };
//!
//! let mut heap = ThreadHeap::<1, 8>::new([8]);
//! let p = heap.alloc(0, &pool).expect("the pool has blocks");
//! assert_eq!(heap.cached(0), 3); // a refill of 8 / 2 blocks, one handed out
//! // SAFETY: `p` is a block of class 0 from `pool`, no longer used.
//! unsafe { heap.dealloc(0, p, &pool) };
//! assert_eq!(heap.cached(0), 4);
//! heap.flush_all(&pool);
//! assert_eq!(pool.free.borrow().len(), 100);
//! ```
#![cfg_attr(not(test), no_std)]
#![doc = include_str!("../README.md")]

mod block;
mod bucket;
mod heap;
mod store;

pub use block::Block;
pub use bucket::Bucket;
pub use heap::{Entry, ThreadHeap};
pub use store::CentralStore;

// Lets the test support shared with the integration tests name this crate by its name.
#[cfg(test)]
extern crate self as thread_heap;

#[cfg(test)]
mod tests;
