//! [`Batch`]: the slots one word gave to a single claim.

use core::iter::FusedIterator;

use crate::set::BITS;

/// Slots claimed together from one word by [`SlotSet::claim_batch`](crate::SlotSet::claim_batch):
/// `word * 64 + i` for each bit `i` set in `mask`.
///
/// Give them back one by one with [`SlotSet::release`](crate::SlotSet::release), or all at once
/// with [`SlotSet::release_mask`](crate::SlotSet::release_mask)`(batch.word, batch.mask)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Index of the word the slots belong to.
    pub word: usize,
    /// One bit per claimed slot of that word.
    pub mask: u64,
}

impl Batch {
    /// Number of slots in the batch.
    #[inline]
    pub fn len(&self) -> u32 {
        self.mask.count_ones()
    }

    /// Whether the batch holds no slot.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.mask == 0
    }

    /// The slot indices, in increasing order.
    #[inline]
    pub fn iter(&self) -> impl ExactSizeIterator<Item = usize> + FusedIterator + Clone {
        Slots {
            base: self.word * BITS,
            mask: self.mask,
        }
    }
}

/// Iterator over the set bits of a batch mask, lowest first.
#[derive(Clone, Debug)]
struct Slots {
    base: usize,
    mask: u64,
}

impl Iterator for Slots {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.mask == 0 {
            return None;
        }
        let bit = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(self.base + bit)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.mask.count_ones() as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Slots {}

impl FusedIterator for Slots {}
