//! Size classes: the policy that maps a request size to the block size an allocator hands out.
//!
//! Two policies share one trait, [`SizeClasses`]:
//!
//! - [`Pow2`]: every power of two from 8 B to 1 MiB (18 classes). Simple, and at most half of a
//!   block is wasted.
//! - [`Fine`] (the default, [`DefaultClasses`]): 8 B steps up to 64 B, then four classes per
//!   doubling up to 1 MiB (64 classes). A request of `n > 64` bytes lands in a block of fewer than
//!   `1.25 * n` bytes, so the waste inside a block is under 20 % of the block (under 25 % of the
//!   request); a request of `n <= 64` bytes wastes fewer than 8 bytes.
//!
//! Both lookups are O(1) (a leading-zero count and a few shifts, no table) and `const fn`, so
//! tables of per-class facts can be computed at compile time.
//!
//! # Alignment
//!
//! The *natural alignment* of a class is the largest power of two dividing its block size
//! ([`natural_align`]). An allocator that lays blocks out back to back from an address aligned to
//! at least that much (a slab starting on a page boundary, say) gives every block of the class that
//! alignment, capped by the alignment of the slab start. For [`Fine`] that is 8 B for 8/24/40/56,
//! 16 B for 16/48/80/112, and so on up to the block size itself for the powers of two. For
//! [`Pow2`] it is the block size.
//!
//! [`SizeClasses::class_of_aligned`] picks the smallest class that is both large enough and
//! naturally aligned enough, so a 64-byte-aligned request of 100 bytes costs a 128-byte block,
//! not a page.
#![no_std]
#![doc = include_str!("../README.md")]

mod fine;
mod pow2;

pub use fine::Fine;
pub use pow2::Pow2;

/// The policy an allocator uses when it has no reason to choose another.
pub type DefaultClasses = Fine;

/// A mapping between request sizes and size classes.
///
/// Classes are numbered `0..NUM_CLASSES` in increasing block size. Every policy in this crate also
/// offers the same functions as inherent `const fn`s, for use in constant expressions.
pub trait SizeClasses {
    /// Number of classes.
    const NUM_CLASSES: usize;
    /// Block size of the largest class: the largest request the policy serves.
    const MAX_SIZE: usize;

    /// The smallest class whose blocks hold `size` bytes, or `None` when `size > MAX_SIZE`.
    /// A request of 0 bytes gets class 0.
    fn class_of(size: usize) -> Option<usize>;

    /// Block size of `class`. Panics (in const context: fails to compile) when
    /// `class >= NUM_CLASSES`.
    fn size_of(class: usize) -> usize;

    /// The smallest class whose blocks hold `size` bytes and whose [`natural_align`]ment is at
    /// least `align` (a power of two), or `None` when there is none.
    fn class_of_aligned(size: usize, align: usize) -> Option<usize>;
}

/// The largest power of two that divides `size` (the alignment that back-to-back blocks of that
/// size keep from an aligned start). `natural_align(0)` is 0.
#[inline]
pub const fn natural_align(size: usize) -> usize {
    size & size.wrapping_neg()
}

/// Rounds `size` up to a multiple of the power of two `align`, or `None` on overflow.
#[inline(always)]
const fn round_up(size: usize, align: usize) -> Option<usize> {
    match size.checked_add(align - 1) {
        Some(s) => Some(s & !(align - 1)),
        None => None,
    }
}
