//! The size classes this allocator serves from slabs, and the per-class facts computed from them
//! at compile time.
//!
//! Classes come from [`size_class::Fine`]: 8 B steps up to 64 B, then four per doubling up to
//! 1 MiB. A slab chunk lays its blocks back to back from [`SLOT_OFFSET`], a 128 KiB-aligned
//! offset, so a block of class `c` is aligned to `min(natural_align(size), 128 KiB)`: requests
//! with a larger alignment go to the large path.

use chunk_source::CHUNK_SIZE;
use size_class::natural_align;
use size_class::Fine;

/// Number of slab classes.
pub const NUM_CLASSES: usize = Fine::NUM_CLASSES;
/// The largest request served from a slab.
pub const MAX_SMALL: usize = Fine::MAX_SIZE;
/// The largest alignment a slab block can be guaranteed (the alignment of the slot area): so
/// requests aligned up to 128 KiB (64 KiB-aligned buffers, say) stay on the slab path.
pub const MAX_SMALL_ALIGN: usize = 128 * 1024;

/// Bytes at the start of a chunk before the bitmap words: the chunk header (three cache lines,
/// see [`ChunkHeader`](crate::ChunkHeader)), padded.
pub const HEADER_SIZE: usize = 256;
/// Offset of the first block in a slab chunk: header and the two bitmap areas, rounded up to the
/// largest slab alignment. Blocks are therefore aligned to `min(natural_align(size), 128 KiB)`.
pub const SLOT_OFFSET: usize = MAX_SMALL_ALIGN;
/// The smallest block size, which has the most slots and so the longest bitmap.
const MIN_SIZE: usize = 8;
/// Bitmap words every chunk reserves for each of its two bitmaps, enough for the smallest class.
/// The areas do not depend on the class, so a chunk can change class without moving them.
pub const MAX_WORDS: usize = ((CHUNK_SIZE - SLOT_OFFSET) / MIN_SIZE).div_ceil(64);
/// Offset of the shared slot bitmap (atomic words: a set bit is a block out of the chunk).
pub const SHARED_BITS: usize = HEADER_SIZE;
/// Offset of the owner's local bitmap (plain words, written only by the chunk's owner: a set bit
/// is a block that came back to its owner and is free again, though still out in the shared one).
pub const LOCAL_BITS: usize = SHARED_BITS + MAX_WORDS * 8;

/// What a slab needs to know about one class.
#[derive(Clone, Copy, Debug)]
pub struct ClassInfo {
    /// Block size in bytes.
    pub size: u32,
    /// Blocks in one chunk.
    pub slots: u32,
    /// Bitmap words those blocks use.
    pub words: u32,
    /// `size`'s trailing zero bits: `size = odd << shift`.
    pub shift: u32,
    /// The inverse of `size`'s odd part modulo 2^64 (see [`SlotTest::slot`]).
    pub inverse: u64,
    /// How many blocks a thread's bucket of this class may cache.
    pub cap: u32,
}

/// Bytes a bucket aims to cache at most, for classes where that is more than the minimum count.
/// What a thread caches it also touches: with many classes in use, every class's bucket fills
/// its blocks' pages over time (at 128 KiB, glibc's bench-malloc-thread shape held 7.5 MiB at
/// its peak where mimalloc holds 4.8; at 64 KiB, 6.6), while classes up to 256 B keep their
/// 256 blocks.
pub const BUCKET_BYTES: usize = 64 * 1024;
/// Upper bound on the blocks a bucket caches, whatever their size: [`ClassInfo::cap`] and
/// [`CAPS`].
pub const BUCKET_MAX: usize = 256;

/// The bucket capacity of `class` when a bucket may hold at most `max_blocks` blocks: as many
/// blocks as [`BUCKET_BYTES`] holds, at least one and at most `max_blocks`. A bound above
/// [`BUCKET_MAX`] raises only the classes below 256 B (`BUCKET_BYTES / BUCKET_MAX`); the larger
/// ones are held by the bytes already.
pub const fn bucket_cap(class: usize, max_blocks: usize) -> u32 {
    let cap = BUCKET_BYTES / Fine::size_of(class);
    let cap = if cap > max_blocks {
        max_blocks
    } else if cap < 1 {
        1
    } else {
        cap
    };
    cap as u32
}

/// Every class's [`bucket_cap`] under the bound `max_blocks`.
pub const fn bucket_caps(max_blocks: usize) -> [u32; NUM_CLASSES] {
    let mut t = [0; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = bucket_cap(c, max_blocks);
        c += 1;
    }
    t
}

/// The sum of `caps`: the slots a thread heap needs to cache every class in full.
pub const fn cap_slots(caps: &[u32; NUM_CLASSES]) -> usize {
    let mut n = 0;
    let mut c = 0;
    while c < NUM_CLASSES {
        n += caps[c] as usize;
        c += 1;
    }
    n
}

const fn class_info(class: usize) -> ClassInfo {
    let size = Fine::size_of(class);
    let slots = (CHUNK_SIZE - SLOT_OFFSET) / size;
    let cap = bucket_cap(class, BUCKET_MAX);
    ClassInfo {
        size: size as u32,
        slots: slots as u32,
        words: slots.div_ceil(64) as u32,
        shift: size.trailing_zeros(),
        inverse: odd_inverse((size >> size.trailing_zeros()) as u64),
        cap,
    }
}

/// The inverse of the odd number `m` modulo 2^64. Newton's iteration `x <- x (2 - m x)` doubles
/// the bits that are right; `m` itself is right in its low 3 bits (`m * m = 1 mod 8` for odd
/// `m`), so five steps give 96 > 64.
const fn odd_inverse(m: u64) -> u64 {
    let mut x = m;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// A class's code: the class plus one. A byte holds every code, and 0 is left for "no class",
/// so one byte per chunk can say both whether the chunk serves a class and which one (the C
/// library's class index), and [`SLOT_TEST`] can take that byte as it is.
#[inline(always)]
pub const fn class_code(class: usize) -> u8 {
    assert!(class < NUM_CLASSES);
    class as u8 + 1
}

/// The class whose code is `code`, or a value of `NUM_CLASSES` or more for a code of no class
/// (0 wraps to `usize::MAX`): the inverse of [`class_code`], one subtraction.
#[inline(always)]
pub const fn code_class(code: u8) -> usize {
    (code as usize).wrapping_sub(1)
}

/// The block-start test of every class, by class code ([`class_code`]): one array per field,
/// each with an entry for every byte, so that a byte read from memory indexes all three as it
/// is, with no bounds check, no shift and no test for 0 first. The entries of code 0 and of the
/// codes above the last class have no slots, so their test fails for every offset.
pub struct SlotTest {
    /// The inverse modulo 2^64 of the odd part of the class's size.
    inverse: [u64; 256],
    /// Blocks in one chunk of the class (0: no class), 64-bit, so that the test compares with
    /// the table's entry in memory (a 32-bit entry would be loaded into a register first).
    slots: [u64; 256],
    /// The size's trailing zero bits: `size = odd << shift`.
    shift: [u8; 256],
}

/// The block-start test of every class (see [`SlotTest::slot`]).
pub static SLOT_TEST: SlotTest = {
    let mut t = SlotTest {
        inverse: [0; 256],
        slots: [0; 256],
        shift: [0; 256],
    };
    let mut c = 0;
    while c < NUM_CLASSES {
        let info = class_info(c);
        let code = class_code(c) as usize;
        t.inverse[code] = info.inverse;
        t.slots[code] = info.slots as u64;
        t.shift[code] = info.shift as u8;
        c += 1;
    }
    t
};

impl SlotTest {
    /// The slot that starts at offset `off` of the slot area in a chunk of the class with code
    /// `code`, or `None` when no block of that class starts there (and always for a code of no
    /// class), for every `off`: a multiplication, a rotation and one comparison that is also the
    /// bounds check.
    ///
    /// Write `size = m << shift` with `m` odd and `inverse * m = 1 mod 2^64`, and let
    /// `f(x) = (x * inverse) rotated right by shift`. `f` is a bijection of `u64` (a product with
    /// an odd number, then a rotation). A multiple `q * size` below 2^64 has `q < 2^(64 - shift)`
    /// and `q * size * inverse = q << shift`, so `f(q * size) = q`: the multiples of `size` take
    /// every value up to `u64::MAX / size`, and every other `x` lands above it. Since `slots` is
    /// at most that bound, `f(off) < slots` exactly when `off` is the start of a slot, and then
    /// `f(off)` is its index. A code of no class has `slots = 0`, which no value is below.
    #[inline(always)]
    pub fn slot(&self, code: u8, off: usize) -> Option<usize> {
        let i = usize::from(code);
        let q = (off as u64)
            .wrapping_mul(self.inverse[i])
            .rotate_right(u32::from(self.shift[i]));
        (q < self.slots[i]).then_some(q as usize)
    }
}

/// Facts about every class, indexed by class number.
pub static CLASSES: [ClassInfo; NUM_CLASSES] = {
    let mut t = [class_info(0); NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = class_info(c);
        c += 1;
    }
    t
};

/// Every class's bucket capacity ([`ClassInfo::cap`]), as a constant: the room a thread heap
/// reserves for each class.
pub const CAPS: [u32; NUM_CLASSES] = bucket_caps(BUCKET_MAX);

/// The sum of [`CAPS`]: the slots a thread heap needs to cache every class in full.
pub const CAP_SLOTS: usize = cap_slots(&CAPS);

/// The slab class for a request, or `None` when it goes to the large path.
#[inline(always)]
pub const fn small_class(size: usize, align: usize) -> Option<usize> {
    if align <= 8 {
        if size <= MAX_SMALL {
            return Fine::class_of(size);
        }
        return None;
    }
    if align <= MAX_SMALL_ALIGN && size <= MAX_SMALL {
        return Fine::class_of_aligned(size, align);
    }
    None
}

/// The alignment every block of `class` has.
pub const fn class_align(class: usize) -> usize {
    let a = natural_align(Fine::size_of(class));
    if a > MAX_SMALL_ALIGN {
        MAX_SMALL_ALIGN
    } else {
        a
    }
}

static_assertions::const_assert!(SLOT_OFFSET.is_multiple_of(MAX_SMALL_ALIGN));
// A class's facts fill half a cache line, so the table is indexed by a shift.
static_assertions::const_assert_eq!(core::mem::size_of::<ClassInfo>(), 32);
// Header and both bitmaps fit before the first block.
static_assertions::const_assert!(LOCAL_BITS + MAX_WORDS * 8 <= SLOT_OFFSET);
static_assertions::const_assert_eq!(Fine::size_of(0), MIN_SIZE);
static_assertions::const_assert!(SLOT_OFFSET < CHUNK_SIZE / 16);
// The smallest class fits its bitmap in the reserved area; the largest gets at least 3 blocks.
static_assertions::const_assert!(class_info(0).words as usize <= MAX_WORDS);
static_assertions::const_assert!(class_info(NUM_CLASSES - 1).slots >= 3);
// Every offset of the slot area fits a `u32` field, and a slot index fits in `u64` (for `slot`).
static_assertions::const_assert!(CHUNK_SIZE <= 1 << 22);
static_assertions::const_assert!(usize::BITS == u64::BITS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverses_are_inverses() {
        for info in CLASSES.iter() {
            let odd = (info.size >> info.shift) as u64;
            assert_eq!(odd % 2, 1);
            assert_eq!(odd.wrapping_mul(info.inverse), 1, "size {}", info.size);
        }
    }

    #[test]
    fn slot_finds_every_slot_and_only_block_starts() {
        for (c, info) in CLASSES.iter().enumerate() {
            let size = info.size as usize;
            let expect = |n: usize| {
                (n.is_multiple_of(size) && n / size < info.slots as usize).then(|| n / size)
            };
            let code = class_code(c);
            for i in 0..info.slots as usize {
                assert_eq!(
                    SLOT_TEST.slot(code, i * size),
                    Some(i),
                    "class {c} slot {i}"
                );
            }
            // Every offset of the first and last blocks and of the block after the last one, a
            // spread over the rest, offsets that wrapped below the slot area, and the top of the
            // offset range.
            let last = (info.slots as usize - 1) * size;
            let offsets = (0..2 * size)
                .chain(last.saturating_sub(size)..last + 2 * size)
                .chain((0..CHUNK_SIZE).step_by(997))
                .chain(
                    (1..=SLOT_OFFSET)
                        .step_by(61)
                        .map(|d| 0usize.wrapping_sub(d)),
                )
                .chain((0..4 * size).map(|d| usize::MAX - d));
            for n in offsets {
                assert_eq!(
                    SLOT_TEST.slot(code, n),
                    expect(n),
                    "class {c} offset {n:#x}"
                );
            }
        }
    }

    #[test]
    fn codes_of_no_class_have_no_slot() {
        let codes = (0..=u8::MAX).filter(|&b| !(1..=NUM_CLASSES).contains(&usize::from(b)));
        for code in codes {
            for off in (0..CHUNK_SIZE).step_by(8).chain([usize::MAX, 1 << 40]) {
                assert_eq!(
                    SLOT_TEST.slot(code, off),
                    None,
                    "code {code} offset {off:#x}"
                );
            }
        }
        assert_eq!(class_code(0), 1);
        assert_eq!(code_class(class_code(5)), 5);
        assert!(code_class(0) >= NUM_CLASSES);
        assert_eq!(usize::from(class_code(NUM_CLASSES - 1)), NUM_CLASSES);
    }

    #[test]
    fn small_class_honours_alignment() {
        let mut align = 1;
        while align <= MAX_SMALL_ALIGN {
            for size in [
                0, 1, 7, 8, 9, 63, 64, 65, 100, 1000, 4095, 4096, 5000, 65536, MAX_SMALL,
            ] {
                let c = small_class(size, align).unwrap();
                assert!(CLASSES[c].size as usize >= size);
                assert!(class_align(c) >= align, "size {size} align {align}");
            }
            align *= 2;
        }
        assert_eq!(small_class(MAX_SMALL + 1, 8), None);
        assert_eq!(small_class(8, 2 * MAX_SMALL_ALIGN), None);
        assert!(
            small_class(8, 65536).is_some(),
            "64 KiB alignment stays on the slab path"
        );
    }

    #[test]
    fn caps_are_bounded() {
        for info in CLASSES.iter() {
            assert!(info.cap >= 1 && info.cap as usize <= BUCKET_MAX);
            assert!(info.cap as usize * info.size as usize <= BUCKET_BYTES.max(info.size as usize));
        }
    }

    #[test]
    fn a_wider_bound_raises_only_the_classes_below_its_bytes() {
        let wide = bucket_caps(4 * BUCKET_MAX);
        for (c, info) in CLASSES.iter().enumerate() {
            assert!(wide[c] >= info.cap);
            if info.size as usize * BUCKET_MAX >= BUCKET_BYTES {
                assert_eq!(wide[c], info.cap, "class {c} is bound by its bytes");
            } else {
                assert!(wide[c] > info.cap, "class {c} is bound by the count");
            }
            assert!(wide[c] as usize * info.size as usize <= BUCKET_BYTES.max(info.size as usize));
        }
        assert_eq!(wide[0], 4 * BUCKET_MAX as u32);
        assert_eq!(cap_slots(&CAPS), CAP_SLOTS);
        assert!(cap_slots(&wide) > CAP_SLOTS);
    }
}
