//! One size class's cache: a bounded LIFO stack of free blocks, kept as an array of their
//! addresses.
//!
//! A [`Bucket`] says where the class's stack lies in the heap's slot array and how far it may
//! grow. The heap keeps each of its four fields in an array of its own, indexed by class (see
//! [`ThreadHeap`](crate::ThreadHeap)), and [`ThreadHeap::bucket`](crate::ThreadHeap::bucket)
//! gives a class's four as one value. The stack itself is `cap` slots of the heap's array,
//! bottom (oldest) first.
//!
//! - **Pop** (allocation fast path): if `top` is at `base` the bucket is empty; otherwise
//!   decrement `top` and take the address in that slot. The block itself is not read.
//! - **Push** (free fast path): if `top < limit`, write the address into slot `top` and
//!   increment it. The block itself is not written.
//! - **Refill** (cold, bucket empty): the store writes up to `max(cap / 2, 1)` addresses straight
//!   into the stack's slots; the first it gave is handed out and the rest follow in its order.
//!   Asking for half the capacity leaves room for as many frees as allocations before the next
//!   trip to the store, so a thread that alternates between the two does not bounce between
//!   refill and flush.
//! - **Flush** (cold, bucket full): the oldest `cap - cap / 2` addresses (the bottom of the
//!   stack, the blocks least likely to still be in cache) go back to the store as one slice and
//!   the newest `cap / 2` move down to the bottom, then the block is pushed. A thread that frees
//!   much more than it allocates therefore returns its surplus in batches and never holds more
//!   than `cap` blocks of a class.
//! - A bucket of capacity 0 caches nothing: every allocation is a refill of one block and every
//!   free is a flush of one block.
//!
//! Why addresses and not a list threaded through the free blocks: a flush must tell the store
//! which blocks it gives back, and a block freed a while ago is no longer in any cache. With the
//! links in the blocks, a flush was a chain of dependent cache misses, one per block (in a run
//! that frees 100k blocks of 8..512 B in random order, the load of each block's link was half of
//! the whole run's time), and a refill wrote links into fresh blocks only to read them back; with
//! the addresses in the heap's array, a flush reads one cache line per eight blocks, in order,
//! and neither direction touches a block.
//!
//! The refill and flush paths are separate `#[cold]`, never-inlined functions of the heap, so the
//! inlined fast paths stay a handful of instructions.

/// Where one size class's stack lies in the heap's slot array, and how full it is, as slot
/// indices: the stack is `base..top`, it may grow to `limit`, and the class's reserved room ends
/// at `end`. Indices rather than a length and a capacity, so that a pop compares and moves one
/// index and a push compares it with another, with no addition on either fast path.
///
/// # Invariants (kept by [`ThreadHeap`](crate::ThreadHeap))
///
/// - `base <= top <= limit <= end`, and `end - base` is the number of slots the heap reserved
///   for the class (after [`ThreadHeap::reset_caps`](crate::ThreadHeap::reset_caps) `limit` may
///   be below `top` until the next flush); while the heap is diverted (see
///   [`ThreadHeap`](crate::ThreadHeap)'s module docs), `base == top == limit` and the stack
///   really starts at the previous bucket's `end`;
/// - slots `base..top` hold the addresses of `top - base` distinct free blocks of this class,
///   oldest first, each handed out by the store the heap works with and owned by the bucket
///   alone (no user holds it, no other bucket lists it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// One past the newest block's slot (`base` when empty).
    pub(crate) top: u32,
    /// One past the last slot the stack may use now: `base + cap` (`base`: cache nothing, or not
    /// yet asked).
    pub(crate) limit: u32,
    /// First slot of the class's stack in the heap's array.
    pub(crate) base: u32,
    /// One past the last slot reserved for the class: `limit` is at most this.
    pub(crate) end: u32,
}

impl Bucket {
    /// Number of free blocks held.
    #[inline]
    pub const fn len(&self) -> usize {
        (self.top - self.base) as usize
    }

    /// Whether the bucket holds no block.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.top == self.base
    }

    /// Most blocks the bucket holds.
    #[inline]
    pub const fn cap(&self) -> usize {
        (self.limit - self.base) as usize
    }

    /// Slots reserved for the class: the most the capacity may become.
    #[inline]
    pub const fn room(&self) -> usize {
        (self.end - self.base) as usize
    }

    /// Blocks asked of the store when the bucket is empty: half the capacity, at least one.
    #[inline]
    pub(crate) const fn refill_size(&self) -> usize {
        let half = self.cap() / 2;
        if half == 0 {
            1
        } else {
            half
        }
    }
}
