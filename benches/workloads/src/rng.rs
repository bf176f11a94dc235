//! A small seeded random number generator (SplitMix64), so every run does the same work.

/// SplitMix64: one 64-bit state, one add and a mixing function per number. Cheap enough to sit
/// inside a timed loop, and good enough to pick sizes, slots and orders.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence depends only on `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number in `0..n` (`n > 0`), by multiply-and-shift (the bias is below 2^-32 for the
    /// sizes used here).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A number in `lo..=hi`, each value equally likely.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `1 / n`.
    #[inline]
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A size in `lo..=hi` (`1 <= lo <= hi`) whose power of two is uniform: each octave
    /// `2^k..2^(k+1)` that meets the range gets the same share, spread evenly over the part of
    /// it inside the range, so small sizes dominate, as in real programs. A `hi` that is a
    /// power of two counts as the top of the octave below it (8..=512 has six octaves, 512 as
    /// likely as 511), not as an octave of its own.
    #[inline]
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let lo_bits = usize::BITS - 1 - lo.leading_zeros();
        let top = if hi > lo && hi.is_power_of_two() {
            hi - 1
        } else {
            hi
        };
        let hi_bits = usize::BITS - 1 - top.leading_zeros();
        let bits = lo_bits + self.below((hi_bits - lo_bits + 1) as usize) as u32;
        let base = 1usize << bits;
        let first = base.max(lo);
        let last = if bits == hi_bits { hi } else { 2 * base - 1 };
        self.range(first, last)
    }

    /// A size in `lo..=hi` (`lo >= 1`) with density proportional to `1 / size^2`, the
    /// distribution glibc's bench-malloc-thread draws from: most blocks are a few times `lo`,
    /// a few are near `hi`.
    #[inline]
    pub fn inverse_square(&mut self, lo: usize, hi: usize) -> usize {
        // Inverting the CDF F(s) = (1/lo - 1/s) / (1/lo - 1/hi) at a uniform u in [0, 1).
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let (l, h) = (1.0 / lo as f64, 1.0 / hi as f64);
        ((1.0 / (l - u * (l - h))) as usize).clamp(lo, hi)
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// The SplitMix64 finaliser: a bijection on `u64` that spreads every input bit over the output.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..10_000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let x = a.log_uniform(8, 512);
            assert!((8..=512).contains(&x));
            assert_eq!(x, b.log_uniform(8, 512));
            let y = a.inverse_square(4, 32768);
            assert!((4..=32768).contains(&y));
            assert_eq!(y, b.inverse_square(4, 32768));
        }
        let mut v: Vec<u32> = (0..100).collect();
        Rng::new(1).shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }

    /// Every octave of the range gets its share, and no single size more than its part of one.
    #[test]
    fn log_uniform_gives_each_octave_its_share() {
        let mut r = Rng::new(5);
        let draws = 60_000;
        let mut octaves = [0usize; 6];
        let mut top = 0;
        for _ in 0..draws {
            let x = r.log_uniform(8, 512);
            assert!((8..=512).contains(&x), "{x}");
            let k = (usize::BITS - 1 - x.min(511).leading_zeros()) as usize - 3;
            octaves[k] += 1;
            top += usize::from(x == 512);
        }
        // 10,000 expected per octave.
        assert!(
            octaves.iter().all(|&n| (9_000..11_000).contains(&n)),
            "{octaves:?}"
        );
        // 512 is one of the 257 sizes of the top octave (256..=512): about 39 draws.
        assert!(top < 120, "{top}");
        for (lo, hi) in [(1, 1), (513, 4096), (5 << 20, 25 << 20), (100, 101)] {
            for _ in 0..1000 {
                let x = r.log_uniform(lo, hi);
                assert!((lo..=hi).contains(&x), "{lo}..={hi}: {x}");
            }
        }
    }

    #[test]
    fn inverse_square_is_mostly_small() {
        let mut r = Rng::new(3);
        let small = (0..10_000)
            .filter(|_| r.inverse_square(4, 32768) <= 64)
            .count();
        // P(s <= 64) = (1/4 - 1/64) / (1/4 - 1/32768), about 0.94.
        assert!((9_000..9_800).contains(&small), "{small}");
    }
}
