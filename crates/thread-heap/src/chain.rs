//! Free blocks and chains of them: the unit that moves between a heap and its store.
//!
//! A free block needs no header: while it is free its first word holds the address of the next
//! free block of the same list ([`Block::next`]). A [`Chain`] names a run of such blocks by its
//! two ends and its length, so a whole batch moves between a [`ThreadHeap`](crate::ThreadHeap) and
//! a [`CentralStore`](crate::CentralStore) in one call, and the receiver can splice it into a list
//! of its own without walking it. The link of the tail is left unspecified: the receiver writes
//! it when it splices the chain in, so the sender never has to touch the tail again.

use core::ptr::NonNull;

/// A free block as a list sees it: its first word links to the next free block.
///
/// Only the first word of a free block belongs to the list; the rest of the block is untouched.
/// Every block of every class is therefore at least `size_of::<Block>()` bytes long and aligned
/// to `align_of::<Block>()`.
#[repr(C)]
#[derive(Debug)]
pub struct Block {
    /// The next free block of the same list, or null (meaning depends on the list: a bucket ends
    /// with null, a [`Chain`]'s tail link is unspecified).
    pub next: *mut Block,
}

const _: () = assert!(size_of::<Block>() == size_of::<usize>());
const _: () = assert!(align_of::<Block>() == align_of::<usize>());

/// A chain of `len` free blocks linked through [`Block::next`].
///
/// # Invariants (promised by whoever builds one)
///
/// - `len >= 1`;
/// - following `next` from `head` exactly `len - 1` times visits `len` distinct free blocks and
///   ends at `tail` (so `head == tail` iff `len == 1`);
/// - `tail.next` is unspecified: readers must not follow it;
/// - the chain owns its blocks: nothing else uses them or lists them.
///
/// The fields are public so that stores can build and take apart chains freely; code that reads
/// through them relies on the invariants above, which is why [`Chain::blocks`] is `unsafe`.
#[derive(Debug)]
pub struct Chain {
    /// First block (the one a receiving LIFO list hands out first).
    pub head: NonNull<Block>,
    /// Last block, reached from `head` after `len - 1` links.
    pub tail: NonNull<Block>,
    /// Number of blocks, at least 1.
    pub len: usize,
}

// SAFETY: a chain owns its blocks exclusively (type invariant) and holds no reference to anything
// tied to a thread, so handing it (and with it the blocks) to another thread is sound.
unsafe impl Send for Chain {}

impl Chain {
    /// A chain of the single block `block`.
    #[inline]
    pub const fn single(block: NonNull<Block>) -> Self {
        Self {
            head: block,
            tail: block,
            len: 1,
        }
    }

    /// The blocks of the chain, from `head` to `tail`.
    ///
    /// Each block's link is read before the block is yielded, so the consumer may overwrite a
    /// block as soon as it receives it. The tail's link is never read.
    ///
    /// # Safety
    ///
    /// The chain must satisfy its invariants: its first `len - 1` blocks are readable and link
    /// to the next block of the chain.
    #[inline]
    pub unsafe fn blocks(self) -> ChainBlocks {
        ChainBlocks {
            next: self.head,
            left: self.len,
        }
    }

    /// Walks the chain and panics unless `len - 1` links from `head` lead to `tail` through
    /// distinct, aligned, non-null blocks. Only does work when debug assertions are on.
    ///
    /// # Safety
    ///
    /// The first `len - 1` blocks of the chain are readable.
    pub(crate) unsafe fn debug_check(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        assert!(self.len >= 1, "a chain holds at least one block");
        let mut node = self.head;
        for _ in 1..self.len {
            assert!(node.as_ptr().is_aligned(), "misaligned block in a chain");
            assert!(node != self.tail, "chain reaches its tail too early");
            // SAFETY: `node` is one of the first `len - 1` blocks, readable by the caller's promise.
            let next = unsafe { (*node.as_ptr()).next };
            node = NonNull::new(next).expect("chain shorter than its len");
        }
        assert!(node == self.tail, "chain does not end at its tail");
        assert!(node.as_ptr().is_aligned(), "misaligned block in a chain");
    }
}

/// Iterator over the blocks of a [`Chain`], returned by [`Chain::blocks`].
#[derive(Debug)]
pub struct ChainBlocks {
    /// The block to yield next (meaningless once `left == 0`).
    next: NonNull<Block>,
    /// Blocks not yet yielded.
    left: usize,
}

impl Iterator for ChainBlocks {
    type Item = NonNull<Block>;

    #[inline]
    fn next(&mut self) -> Option<NonNull<Block>> {
        if self.left == 0 {
            return None;
        }
        let block = self.next;
        self.left -= 1;
        if self.left > 0 {
            // SAFETY: `block` is not the tail (blocks remain after it), so by the chain invariant
            // promised to `Chain::blocks` it is readable and links to the next block of the chain.
            let next = unsafe { (*block.as_ptr()).next };
            // SAFETY: a link inside a chain (not the tail's) is a block, never null.
            self.next = unsafe { NonNull::new_unchecked(next) };
        }
        Some(block)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for ChainBlocks {}

impl core::iter::FusedIterator for ChainBlocks {}
