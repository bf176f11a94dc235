//! The fine policy: 8-byte steps up to 64 B, then four classes per doubling up to 1 MiB.
//!
//! Classes 0..8 are 8, 16, ..., 64 bytes. Above that, the doubling `(2^k, 2^(k+1)]` (k >= 6) is
//! cut into four equal steps of `2^(k-2)`: `1.25, 1.5, 1.75, 2.0 x 2^k`. For a size `n > 64`,
//! `k = floor(log2(n - 1))` and the step index is `(n - 1) >> (k - 2)` minus 4, so the lookup is a
//! leading-zero count and two shifts.
//!
//! Waste bound: for `n > 64`, the chosen block `b` satisfies `b - n < 2^(k-2) <= b / 5`, so less
//! than a fifth of the block (a quarter of the request) is waste. For `n <= 64` the waste is at
//! most 7 bytes.
//!
//! Alignment: the step `2^(k-2)` divides every block of the doubling, so a block of the doubling
//! is naturally aligned to at least `2^(k-2)`; the `1.5 x 2^k` block to `2^(k-1)` and the top one
//! to `2^(k+1)`. Rounding a request up to a multiple of its alignment before the lookup therefore
//! always lands on a class aligned enough (proved exhaustively by the tests).

use crate::{natural_align, round_up, SizeClasses};

/// Four classes per doubling (the default policy), 8 B (class 0) to 1 MiB (class 63).
#[derive(Clone, Copy, Debug, Default)]
pub struct Fine;

impl Fine {
    /// Number of classes: 8 linear ones up to 64 B, then 4 per doubling for 64 B..1 MiB.
    pub const NUM_CLASSES: usize = 8 + 4 * 14;
    /// Largest block size (1 MiB).
    pub const MAX_SIZE: usize = 1 << 20;
    const LINEAR_MAX: usize = 64;
    const LINEAR_CLASSES: usize = 8;

    /// See [`SizeClasses::class_of`].
    #[inline(always)]
    pub const fn class_of(size: usize) -> Option<usize> {
        if size <= Self::LINEAR_MAX {
            // 0 and 1..=8 -> 0, 9..=16 -> 1, ...
            return Some(size.saturating_sub(1) >> 3);
        }
        if size > Self::MAX_SIZE {
            return None;
        }
        let s = size - 1;
        let k = (usize::BITS - 1 - s.leading_zeros()) as usize; // floor(log2(s)) >= 6
        let q = s >> (k - 2); // in 4..=7
        Some(Self::LINEAR_CLASSES + (k - 6) * 4 + (q - 4))
    }

    /// See [`SizeClasses::size_of`].
    #[inline(always)]
    pub const fn size_of(class: usize) -> usize {
        assert!(class < Self::NUM_CLASSES, "size class out of range");
        if class < Self::LINEAR_CLASSES {
            return (class + 1) * 8;
        }
        let c = class - Self::LINEAR_CLASSES;
        let k = 6 + c / 4;
        let j = c % 4;
        (1 << k) + ((j + 1) << (k - 2))
    }

    /// See [`SizeClasses::class_of_aligned`].
    #[inline(always)]
    pub const fn class_of_aligned(size: usize, align: usize) -> Option<usize> {
        debug_assert!(align.is_power_of_two());
        if align <= 8 {
            return Self::class_of(size);
        }
        // A request smaller than its alignment (0 bytes included) needs a block of `align` bytes.
        let size = if size < align { align } else { size };
        let rounded = match round_up(size, align) {
            Some(r) => r,
            None => return None,
        };
        let class = match Self::class_of(rounded) {
            Some(c) => c,
            None => return None,
        };
        debug_assert!(natural_align(Self::size_of(class)) >= align);
        Some(class)
    }
}

impl SizeClasses for Fine {
    const NUM_CLASSES: usize = Fine::NUM_CLASSES;
    const MAX_SIZE: usize = Fine::MAX_SIZE;

    #[inline(always)]
    fn class_of(size: usize) -> Option<usize> {
        Fine::class_of(size)
    }

    #[inline(always)]
    fn size_of(class: usize) -> usize {
        Fine::size_of(class)
    }

    #[inline(always)]
    fn class_of_aligned(size: usize, align: usize) -> Option<usize> {
        Fine::class_of_aligned(size, align)
    }
}

// The top class is exactly the advertised maximum.
const _: () = assert!(Fine::size_of(Fine::NUM_CLASSES - 1) == Fine::MAX_SIZE);
const _: () =
    assert!(matches!(Fine::class_of(Fine::MAX_SIZE), Some(c) if c == Fine::NUM_CLASSES - 1));
