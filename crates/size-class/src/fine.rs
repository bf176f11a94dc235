//! The fine policy: 8-byte steps up to 64 B, then four classes per doubling up to 1 MiB.
//!
//! Classes 0..8 are 8, 16, ..., 64 bytes. Above that, the doubling `(2^k, 2^(k+1)]` (k >= 6) is
//! cut into four equal steps of `2^(k-2)`: `1.25, 1.5, 1.75, 2.0 x 2^k`. For a size `n > 64`,
//! `k = floor(log2(n - 1))` and the step index is `(n - 1) >> (k - 2)` minus 4. Pinning `k` at 5
//! for smaller sizes makes the same formula give the linear classes, so the lookup is a
//! leading-zero count, a shift and an add, with no branch on the size ([`Fine::class_of`]). A
//! lookup table would be as short, but its load lands on the dependency chain of a loop that
//! allocates one size over and over (the formula is hoisted out of it; the load was not), and
//! the pair benchmarks took 1.3 to 1.6 times as long.
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
    const LINEAR_CLASSES: usize = 8;

    /// See [`SizeClasses::class_of`].
    ///
    /// One formula covers both ranges, without a branch on the size (a program that mixes
    /// sizes on both sides of 64 B would mispredict it on about every other call). With
    /// `s = n - 1` and `k = max(floor(log2(s)), 5)`, the class is `4k - 20 + (s >> (k - 2))`:
    /// for `s >= 64` that is `8 + 4(k - 6) + (s >> (k - 2)) - 4`, the doubling's formula; for
    /// `s < 64`, `k` is 5 and it is `s >> 3`, the linear one.
    #[inline(always)]
    pub const fn class_of(size: usize) -> Option<usize> {
        if size > Self::MAX_SIZE {
            return None;
        }
        // 0 and 1..=8 -> 0, 9..=16 -> 1, ...
        let s = size.saturating_sub(1);
        // `k` as the bit length less one, from a count that is defined at zero: a `bsr` of a
        // value the compiler knows to be non-zero would keep the false dependency on its
        // destination register, which in a loop chains each lookup to the previous result.
        let bits = usize::BITS - s.leading_zeros();
        let k = if bits < 6 { 6 } else { bits } as usize - 1;
        Some(4 * k - 20 + (s >> (k - 2)))
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
