//! The central store: where a heap's buckets get blocks from and give their surplus back.
//!
//! The heap knows nothing about where blocks live. It asks its store for a batch of free blocks
//! of a class when a bucket runs dry ([`CentralStore::refill`]) and hands a batch back when a
//! bucket overflows or the heap is emptied ([`CentralStore::flush`]). Both move many blocks per
//! call (slices of addresses, never links in the blocks), so the store can serve or take back a
//! batch at once (a slab pool, say, claims or releases a whole bitmap word at once). The store is shared by every heap in front of it,
//! so it does its own synchronisation; the heap calls it through `&self`.

use core::ptr::NonNull;

use crate::Block;

/// A source and sink of free blocks, per size class, shared by the heaps in front of it.
///
/// # Safety
///
/// Implementors promise that the `n` addresses every [`refill`](Self::refill) writes into
/// `out[..n]`
///
/// - are those of distinct blocks of at least the block size of `class` bytes, non-null and
///   each aligned to at least `align_of::<Block>()`;
/// - are those of blocks that are free and handed to the caller exclusively: not handed out
///   again until they come back through [`flush`](Self::flush).
///
/// Heaps rely on this for memory safety: a block handed out twice would be given to two users.
pub unsafe trait CentralStore {
    /// Hands out up to `out.len()` (at least 1) free blocks of `class`: writes their addresses
    /// into `out[..n]` and returns `n`, 0 when the store has none left (out of memory). Returning
    /// fewer than asked is fine; `out[n..]` is left as it was.
    fn refill(&self, class: usize, out: &mut [*mut Block]) -> usize;

    /// Takes back `blocks`, all of class `class`. Ownership of the blocks passes to the store;
    /// the slice itself is the heap's and only lent for the call.
    ///
    /// # Safety
    ///
    /// The blocks are distinct, and every one is a block of `class` that this store handed out
    /// (through `refill`, possibly having since passed through other heaps and users) and that
    /// nothing uses any more.
    unsafe fn flush(&self, class: usize, blocks: &[NonNull<Block>]);

    /// The capacity a bucket of `class` should have. A bucket whose capacity is 0 asks this on
    /// each of its slow paths (so at most once per class while the answer is 0), and keeps a
    /// non-zero answer. The default answers 0: no caching.
    ///
    /// This lets a store learn when a heap is first used (a heap built with all capacities 0
    /// takes the slow path on its first allocation *and* on its first free), which is where a
    /// per-thread heap can register for thread-exit cleanup.
    #[inline]
    fn cap(&self, class: usize) -> u32 {
        let _ = class;
        0
    }

    /// The capacity the bucket of `class` may have from now on, up from `cap`: asked when the
    /// bucket, below its room, runs empty after it overflowed (a flush since its last refill),
    /// which says that the program cycles through more blocks of the class than the bucket
    /// holds, each cycle paying a flush and a refill. The heap keeps the answer within the class's room
    /// ([`room`](Self::room), or the capacities it was built with) and ignores one below `cap`.
    /// A bucket that only fills (a thread that frees what others allocated) or only empties
    /// never asks. The default answers `cap`: buckets keep their size.
    #[inline]
    fn grow(&self, class: usize, cap: u32) -> u32 {
        let _ = class;
        cap
    }

    /// The capacity the bucket of `class` should have from now on, down from `cap`: asked after
    /// each flush once the bucket has flushed more than twice its room since its last refill,
    /// which says that a run of frees, not a cycle, fills it. The bucket holds `cap / 2` blocks then (the flush kept them), and an
    /// answer must leave room for one more: the heap ignores one that does not, or that is not
    /// below `cap`. The default answers `cap`.
    #[inline]
    fn shrink(&self, class: usize, cap: u32) -> u32 {
        let _ = class;
        cap
    }

    /// The slots a heap built [`unlaid`](crate::ThreadHeap::unlaid) reserves for `class`: the
    /// most its capacity may become. Asked for every class at once, at the heap's first slow
    /// path. The default answers 0: no room, no caching.
    #[inline]
    fn room(&self, class: usize) -> u32 {
        let _ = class;
        0
    }

    /// Whether a diverted heap should give back every block it caches before its next
    /// [`divert`](Self::divert) question: asked at each allocation while diverted, first. The
    /// store's deferred work (a purge that returns the pages of free blocks) is due now, and a
    /// cached block keeps its page from being returned. The default answers false.
    #[inline]
    fn shed(&self) -> bool {
        false
    }

    /// Whether the heap should send every operation to its slow path for a while: asked after
    /// each flush, and, once that said yes, at each allocation until it says no (frees come in
    /// runs, and deferred work is for after them). The store's way to run deferred work (a
    /// purge due a little later, say) at the heap's next allocation, whichever class it is,
    /// with nothing tested on the fast paths: a diverted heap shows every bucket as both empty
    /// and full. The default answers false.
    #[inline]
    fn divert(&self) -> bool {
        false
    }
}
