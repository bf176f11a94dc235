//! The power-of-two policy: blocks of 8, 16, 32, ... 1 MiB bytes.
//!
//! `class_of(n)` is `ceil(log2(n)) - 3` for `n > 8`, computed with one leading-zero count on
//! `n - 1`, so it needs no table and runs in constant time.

use crate::SizeClasses;

/// Power-of-two classes from 8 B (class 0) to 1 MiB (class 17).
///
/// Every block is naturally aligned to its own size. At most half of a block is wasted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pow2;

impl Pow2 {
    /// Number of classes: 8 B, 16 B, ..., 1 MiB.
    pub const NUM_CLASSES: usize = 18;
    /// Largest block size (1 MiB).
    pub const MAX_SIZE: usize = 1 << 20;
    const MIN_SHIFT: u32 = 3;

    /// See [`SizeClasses::class_of`].
    #[inline(always)]
    pub const fn class_of(size: usize) -> Option<usize> {
        if size <= 8 {
            return Some(0);
        }
        if size > Self::MAX_SIZE {
            return None;
        }
        // ceil(log2(size)) for size >= 2 is the bit length of size - 1.
        let bits = usize::BITS - (size - 1).leading_zeros();
        Some((bits - Self::MIN_SHIFT) as usize)
    }

    /// See [`SizeClasses::size_of`].
    #[inline(always)]
    pub const fn size_of(class: usize) -> usize {
        assert!(class < Self::NUM_CLASSES, "size class out of range");
        1 << (class as u32 + Self::MIN_SHIFT)
    }

    /// See [`SizeClasses::class_of_aligned`]. A power-of-two block is aligned to its size, so the
    /// class of `max(size, align)` is the answer.
    #[inline(always)]
    pub const fn class_of_aligned(size: usize, align: usize) -> Option<usize> {
        debug_assert!(align.is_power_of_two());
        if align > size {
            Self::class_of(align)
        } else {
            Self::class_of(size)
        }
    }
}

impl SizeClasses for Pow2 {
    const NUM_CLASSES: usize = Pow2::NUM_CLASSES;
    const MAX_SIZE: usize = Pow2::MAX_SIZE;

    #[inline(always)]
    fn class_of(size: usize) -> Option<usize> {
        Pow2::class_of(size)
    }

    #[inline(always)]
    fn size_of(class: usize) -> usize {
        Pow2::size_of(class)
    }

    #[inline(always)]
    fn class_of_aligned(size: usize, align: usize) -> Option<usize> {
        Pow2::class_of_aligned(size, align)
    }
}

const _: () = assert!(Pow2::size_of(Pow2::NUM_CLASSES - 1) == Pow2::MAX_SIZE);
const _: () =
    assert!(matches!(Pow2::class_of(Pow2::MAX_SIZE), Some(c) if c == Pow2::NUM_CLASSES - 1));
