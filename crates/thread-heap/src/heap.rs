//! A thread's heap: one [`Bucket`] per size class in front of a [`CentralStore`].
//!
//! Allocation pops from the bucket of the class and free pushes onto it; only an empty bucket
//! (refill) or a full one (flush of its oldest half) reaches the store. A block freed by any
//! thread goes into the bucket of the thread that frees it: no block remembers its allocating
//! thread, so a free never needs a lock, an atomic instruction or a message to another thread.
//! The bucket bounds keep such transfers from piling up: a thread that only frees hands its
//! surplus back to the store in batches.
//!
//! The heap holds no reference to its store; every call that may reach the store takes it as an
//! argument. A heap works with one store (or with stores that share their blocks) for as long as
//! it holds blocks: see [`ThreadHeap::dealloc`] and [`ThreadHeap::flush_all`].

use core::ptr::NonNull;

use crate::{Bucket, CentralStore};

/// Per-thread caches of free blocks, one [`Bucket`] per size class `0..N`.
///
/// # Invariants
///
/// Every bucket satisfies the [`Bucket`] invariants, and all of them hold blocks handed out by
/// the one store this heap works with. A block is in at most one bucket and is not in use.
///
/// `new` is a `const fn` and the heap has no destructor, so it can live in a thread-local
/// `static` with a constant initialiser: no lazy initialisation, no destructor registration.
/// Dropping a heap that still caches blocks leaks them (it holds no store to return them to):
/// call [`flush_all`](Self::flush_all) (or, after `fork`, [`forget_all`](Self::forget_all))
/// first. The heap owns its blocks and nothing tied to a thread, so it is `Send`: a retired heap
/// can be flushed by another thread.
#[derive(Debug)]
pub struct ThreadHeap<const N: usize> {
    /// The bucket of class `c` is `buckets[c]`.
    buckets: [Bucket; N],
}

const _: () = assert!(!core::mem::needs_drop::<ThreadHeap<64>>());
const _: () = assert!(size_of::<ThreadHeap<64>>() == 64 * size_of::<Bucket>());

impl<const N: usize> ThreadHeap<N> {
    /// An empty heap whose bucket for class `c` holds at most `caps[c]` blocks (0: no caching
    /// for that class).
    pub const fn new(caps: [u32; N]) -> Self {
        let mut buckets = [const { Bucket::new(0) }; N];
        let mut class = 0;
        while class < N {
            buckets[class] = Bucket::new(caps[class]);
            class += 1;
        }
        Self { buckets }
    }

    /// Allocates a block of `class`: the newest cached one, or, when the bucket is empty, the
    /// first of a batch of up to `max(cap / 2, 1)` blocks fetched from `store` (the rest stay
    /// cached). `None` when the bucket is empty and the store is out of memory; the heap stays
    /// usable.
    ///
    /// The block is at least the class's block size and aligned as the store aligns the class.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline(always)]
    pub fn alloc<S: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        store: &S,
    ) -> Option<NonNull<u8>> {
        self.buckets[class].alloc(class, store).map(NonNull::cast)
    }

    /// Allocation fast path alone: the newest cached block of `class`, or `None` when the bucket
    /// is empty (the caller then goes to [`alloc`](Self::alloc), which refills). For a caller
    /// that keeps the slow path out of line itself, so that its fast path saves no registers.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline(always)]
    pub fn pop(&mut self, class: usize) -> Option<NonNull<u8>> {
        self.buckets[class].pop().map(NonNull::cast)
    }

    /// Free fast path alone: caches `ptr` in the bucket of `class` when it has room and returns
    /// true; otherwise changes nothing and returns false (the caller then goes to
    /// [`dealloc`](Self::dealloc), which flushes).
    ///
    /// # Safety
    ///
    /// As for [`dealloc`](Self::dealloc).
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline(always)]
    pub unsafe fn push(&mut self, class: usize, ptr: NonNull<u8>) -> bool {
        // SAFETY: as in `dealloc`.
        unsafe { self.buckets[class].try_push(ptr.cast()) }
    }

    /// Frees a block of `class` into this heap's bucket for the class. When the bucket is full,
    /// its oldest half first goes back to `store` as one chain; with a capacity of 0 the block
    /// goes straight back to `store`.
    ///
    /// The block may have been allocated by any heap working with `store`, on any thread.
    ///
    /// # Safety
    ///
    /// - `ptr` is a block of class `class` that `store` handed out (through this or another
    ///   heap), it is not in use any more and not freed twice: from now on it belongs to the heap;
    /// - `store` is the store this heap works with: every block this heap holds came from it.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline(always)]
    pub unsafe fn dealloc<S: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        ptr: NonNull<u8>,
        store: &S,
    ) {
        // SAFETY: the caller hands over a free block of `class` from `store`, the store of this
        // heap, which is exactly what the bucket of `class` may hold.
        unsafe { self.buckets[class].dealloc(class, ptr.cast(), store) }
    }

    /// Gives every cached block back to `store`, one chain per class that holds any (used when a
    /// thread exits). The heap is empty afterwards and can be used again.
    ///
    /// `store` must be the store this heap works with: the blocks are handed to it as its own.
    pub fn flush_all<S: CentralStore + ?Sized>(&mut self, store: &S) {
        for (class, bucket) in self.buckets.iter_mut().enumerate() {
            if let Some(chain) = bucket.take_all() {
                // SAFETY: `take_all` unlinked a well-formed chain of free blocks of `class` that
                // the bucket owned, all from the store this heap works with (type invariant),
                // which the caller passes as `store`.
                unsafe { store.flush(class, chain) };
            }
        }
    }

    /// Sets every bucket's capacity back to 0, so the next slow path of each class asks the
    /// store ([`CentralStore::cap`]) again. Meant for after [`flush_all`](Self::flush_all) at
    /// thread exit: with a store that then answers 0, later frees go straight to the store
    /// instead of being cached in a heap nobody will flush.
    pub fn reset_caps(&mut self) {
        for b in &mut self.buckets {
            b.reset_cap();
        }
    }

    /// Empties every bucket without giving the blocks to anyone; the store is not touched.
    ///
    /// Used in a child process after `fork` when the cached blocks lie in memory shared with the
    /// parent: the parent's copy of the heap still owns them, so the child must neither hand
    /// them out nor return them.
    pub fn forget_all(&mut self) {
        for bucket in &mut self.buckets {
            bucket.forget();
        }
    }

    /// Number of blocks of `class` cached.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline]
    pub fn cached(&self, class: usize) -> usize {
        self.buckets[class].len()
    }

    /// Capacity of the bucket of `class`: the most blocks it caches.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline]
    pub fn cap(&self, class: usize) -> usize {
        self.buckets[class].cap()
    }

    /// The bucket of `class`, for inspection.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline]
    pub fn bucket(&self, class: usize) -> &Bucket {
        &self.buckets[class]
    }

    /// Bytes cached in all buckets, given the block size of each class. `size_of` is called
    /// only for classes that hold blocks.
    pub fn cached_total_bytes(&self, size_of: impl Fn(usize) -> usize) -> usize {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, bucket)| !bucket.is_empty())
            .map(|(class, bucket)| bucket.len() * size_of(class))
            .sum()
    }

    /// Panics unless every bucket satisfies its invariants (walks every list).
    #[cfg(test)]
    pub(crate) fn assert_valid(&self) {
        for bucket in &self.buckets {
            bucket.assert_valid();
        }
    }
}
