//! One size class's cache: a bounded, intrusive LIFO list of free blocks.
//!
//! The list is threaded through the free blocks themselves ([`Block::next`]), so a bucket is
//! three words of bookkeeping (head, length, capacity) and never allocates.
//!
//! - **Pop** (allocation fast path): load `head`; if it is null the bucket is empty, otherwise
//!   load `head.next`, store it as the new head, decrement `len`.
//! - **Push** (free fast path): if `len < cap`, store `block.next = head`, `head = block`,
//!   increment `len`.
//! - **Refill** (cold, bucket empty): ask the store for up to `max(cap / 2, 1)` blocks, hand out
//!   the chain's head and keep the rest. Asking for half the capacity leaves room for as many
//!   frees as allocations before the next trip to the store, so a thread that alternates
//!   between the two does not bounce between refill and flush.
//! - **Flush** (cold, bucket full): keep the newest `cap / 2` blocks, give the rest (the oldest,
//!   least likely to still be in cache) back to the store as one chain, then push. A thread that
//!   frees much more than it allocates therefore returns its surplus in batches and never holds
//!   more than `cap` blocks of a class.
//! - A bucket of capacity 0 caches nothing: every allocation is a refill of one block and every
//!   free is a flush of one block.
//!
//! The refill and flush paths are separate `#[cold]`, never-inlined functions, so the inlined
//! fast paths stay a handful of instructions.

use core::ptr::{self, NonNull};

use crate::{Block, CentralStore, Chain};

/// A bounded LIFO list of the free blocks of one size class.
///
/// # Invariants
///
/// - `len <= cap`;
/// - `head` is null iff `len == 0`;
/// - following `next` from `head` visits exactly `len` distinct blocks, and the last one's `next`
///   is null;
/// - every one of those blocks is a free block of this bucket's class, handed out by the store
///   the owning heap works with, and owned by this bucket alone (no user holds it, no other list
///   contains it).
///
/// Layout: `head`, `len` and `cap` share 16 bytes aligned to 16, so the fields the fast paths
/// touch always lie in one cache line, four buckets to a 64-byte line.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct Bucket {
    /// Newest free block, or null when the bucket is empty.
    head: *mut Block,
    /// Number of blocks in the list.
    len: u32,
    /// Most blocks the list may hold.
    cap: u32,
}

const _: () = assert!(size_of::<Bucket>() == 16);
const _: () = assert!(align_of::<Bucket>() == 16);
const _: () = assert!(core::mem::offset_of!(Bucket, head) == 0);

// SAFETY: a bucket owns its blocks exclusively (type invariant) and they are plain memory with no
// tie to the thread that filled the bucket, so the bucket may move to another thread with them.
unsafe impl Send for Bucket {}

impl Bucket {
    /// An empty bucket that holds at most `cap` blocks (0: cache nothing).
    #[inline]
    pub const fn new(cap: u32) -> Self {
        Self {
            head: ptr::null_mut(),
            len: 0,
            cap,
        }
    }

    /// Number of free blocks held.
    #[inline]
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the bucket holds no block.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most blocks the bucket holds.
    #[inline]
    pub const fn cap(&self) -> usize {
        self.cap as usize
    }

    /// Sets the capacity to 0: the next slow path asks the store again. Cached blocks stay
    /// until flushed.
    #[inline]
    pub(crate) fn reset_cap(&mut self) {
        self.cap = 0;
    }

    /// Blocks asked of the store when the bucket is empty: half the capacity, at least one.
    #[inline]
    const fn refill_size(&self) -> usize {
        let half = (self.cap / 2) as usize;
        if half == 0 {
            1
        } else {
            half
        }
    }

    /// Allocation fast path: takes the newest block, or returns `None` when the bucket is empty.
    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<NonNull<Block>> {
        let block = NonNull::new(self.head)?;
        // SAFETY: a non-null head is a free block owned by this bucket (type invariant), and a
        // free block's first word is its link.
        self.head = unsafe { (*block.as_ptr()).next };
        self.len -= 1;
        Some(block)
    }

    /// Allocation: pop, or refill from `store` and pop when empty.
    #[inline(always)]
    pub(crate) fn alloc<S: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        store: &S,
    ) -> Option<NonNull<Block>> {
        match self.pop() {
            Some(block) => Some(block),
            None => self.refill_and_pop(class, store),
        }
    }

    /// Free: push `block`; when the bucket is full, flush its oldest half to `store` first.
    ///
    /// # Safety
    ///
    /// `block` is a free block of this bucket's class from the store the heap works with, no
    /// longer used by anyone, and not in any list; `store` is that store.
    #[inline(always)]
    pub(crate) unsafe fn dealloc<S: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        block: NonNull<Block>,
        store: &S,
    ) {
        // SAFETY: forwarded from the caller.
        if !unsafe { self.try_push(block) } {
            // SAFETY: as above.
            unsafe { self.flush_and_push(class, block, store) }
        }
    }

    /// Free fast path alone: pushes `block` when there is room, else leaves everything as it was
    /// and returns false (the caller then takes [`Bucket::dealloc`]'s path).
    ///
    /// # Safety
    ///
    /// As for [`Bucket::dealloc`].
    #[inline(always)]
    pub(crate) unsafe fn try_push(&mut self, block: NonNull<Block>) -> bool {
        if self.len < self.cap {
            // SAFETY: the caller hands the block over, and there is room for it (`len < cap`).
            unsafe { self.push(block) };
            true
        } else {
            false
        }
    }

    /// Links `block` in as the new head.
    ///
    /// # Safety
    ///
    /// `len < cap`, and `block` is a free block of this class that the caller hands over.
    #[inline(always)]
    unsafe fn push(&mut self, block: NonNull<Block>) {
        debug_assert!(self.len < self.cap, "push onto a full bucket");
        debug_assert!(block.as_ptr().is_aligned(), "misaligned block");
        // SAFETY: the block is free and now ours (caller), at least one aligned word long (store
        // contract), so its first word may hold the link.
        unsafe { (*block.as_ptr()).next = self.head };
        self.head = block.as_ptr();
        self.len += 1;
    }

    /// Cold half of [`Bucket::alloc`]: the bucket is empty, fetch a batch, hand out its head and
    /// keep the rest. `None` when the store has nothing; the bucket stays empty and consistent.
    #[cold]
    #[inline(never)]
    fn refill_and_pop<S: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        store: &S,
    ) -> Option<NonNull<Block>> {
        debug_assert!(
            self.head.is_null() && self.len == 0,
            "refill of a non-empty bucket"
        );
        if self.cap == 0 {
            self.cap = store.cap(class);
        }
        let max = self.refill_size();
        let chain = store.refill(class, max)?;
        debug_assert!(
            (1..=max).contains(&chain.len),
            "store returned {} blocks, asked for at most {max}",
            chain.len
        );
        // SAFETY: a chain from the store satisfies the chain invariants (trait contract).
        unsafe { chain.debug_check() };
        let first = chain.head;
        if chain.len > 1 {
            // SAFETY: the chain holds more than one block, so its head is not its tail and links
            // to the second block (chain invariant); the blocks are ours now (store contract).
            let rest = unsafe { (*first.as_ptr()).next };
            // SAFETY: the tail is a free block handed to us; terminating the list there makes the
            // remaining `len - 1` blocks a well-formed bucket list.
            unsafe { (*chain.tail.as_ptr()).next = ptr::null_mut() };
            self.head = rest;
            // The store returns at most `max <= u32::MAX / 2` blocks (trait contract).
            self.len = (chain.len - 1) as u32;
        }
        self.debug_check();
        Some(first)
    }

    /// Cold half of [`Bucket::dealloc`]: the bucket is full (`len == cap`). Gives the oldest
    /// `len - cap / 2` blocks back to the store as one chain, then pushes `block`; with a
    /// capacity of 0, gives `block` itself back.
    ///
    /// # Safety
    ///
    /// As for [`Bucket::dealloc`].
    #[cold]
    #[inline(never)]
    unsafe fn flush_and_push<S: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        block: NonNull<Block>,
        store: &S,
    ) {
        if self.cap == 0 {
            self.cap = store.cap(class);
            if self.len < self.cap {
                // SAFETY: the caller hands the block over, and there is room for it now.
                unsafe { self.push(block) };
                return;
            }
        }
        if self.cap == 0 {
            // SAFETY: the caller hands over a free block of `class` that came from `store`; a
            // single block is a well-formed chain (its tail link is unspecified).
            unsafe { store.flush(class, Chain::single(block)) };
            return;
        }
        let keep = self.cap / 2;
        if let Some(chain) = self.split_off(keep) {
            // SAFETY: `split_off` unlinked a well-formed chain of blocks that this bucket owned,
            // all of `class` and from `store` (type invariant); the bucket no longer lists them.
            unsafe { store.flush(class, chain) };
        }
        // SAFETY: `len == keep < cap` now, and the caller hands the block over.
        unsafe { self.push(block) };
    }

    /// Unlinks every block after the newest `keep` and returns them as one chain (oldest last),
    /// or `None` when the bucket holds no more than `keep` blocks. The bucket is left holding
    /// exactly `min(len, keep)` blocks, consistent, before the chain is handed to anyone.
    fn split_off(&mut self, keep: u32) -> Option<Chain> {
        self.debug_check();
        if self.len <= keep {
            return None;
        }
        let count = self.len - keep;
        let head = if keep == 0 {
            let head = self.head;
            self.head = ptr::null_mut();
            head
        } else {
            // SAFETY: `keep - 1 < len` links from head stay inside the list (type invariant).
            let last_kept = unsafe { walk(self.head, keep - 1) };
            // SAFETY: `last_kept` is a block of the list (type invariant), so readable and
            // writable; ending the list there leaves the newest `keep` blocks.
            unsafe {
                let head = (*last_kept).next;
                (*last_kept).next = ptr::null_mut();
                head
            }
        };
        // SAFETY: the list held `count` blocks past the kept ones, starting at `head`.
        let tail = unsafe { walk(head, count - 1) };
        self.len = keep;
        // SAFETY: `head` and `tail` are blocks of the list (non-null by the type invariant,
        // since `count >= 1` blocks were left from `head`).
        let (head, tail) = unsafe { (NonNull::new_unchecked(head), NonNull::new_unchecked(tail)) };
        Some(Chain {
            head,
            tail,
            len: count as usize,
        })
    }

    /// Unlinks every block as one chain, or `None` when empty.
    pub(crate) fn take_all(&mut self) -> Option<Chain> {
        self.split_off(0)
    }

    /// Drops every block without giving it anywhere: the bucket becomes empty.
    pub(crate) fn forget(&mut self) {
        self.head = ptr::null_mut();
        self.len = 0;
    }

    /// Walks the list and panics if any invariant that can be checked locally is broken
    /// (length, null termination, capacity, alignment). Always checks.
    pub(crate) fn assert_valid(&self) {
        assert!(self.len <= self.cap, "bucket over its capacity");
        assert_eq!(self.head.is_null(), self.len == 0, "head null iff empty");
        let mut node = self.head;
        for i in 0..self.len {
            assert!(
                !node.is_null(),
                "list ends after {i} of {} blocks",
                self.len
            );
            assert!(node.is_aligned(), "misaligned block in a bucket");
            // SAFETY: `node` is one of the first `len` blocks of the list (non-null checked just
            // above), readable by the type invariant.
            node = unsafe { (*node).next };
        }
        assert!(node.is_null(), "list longer than len {}", self.len);
    }

    /// [`Bucket::assert_valid`] when debug assertions are on; nothing otherwise.
    #[inline]
    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            self.assert_valid();
        }
    }
}

/// Follows `steps` links from `node`.
///
/// # Safety
///
/// `node` and the `steps` blocks after it are readable list blocks.
#[inline]
unsafe fn walk(mut node: *mut Block, steps: u32) -> *mut Block {
    for _ in 0..steps {
        debug_assert!(!node.is_null(), "walked off the end of a list");
        // SAFETY: `node` is one of the blocks the caller vouches for.
        node = unsafe { (*node).next };
    }
    debug_assert!(!node.is_null(), "walked off the end of a list");
    node
}
