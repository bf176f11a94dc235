//! Gathering a flush's blocks by bitmap word, so that blocks of one word share one release.

use core::mem::MaybeUninit;

/// Blocks of one flush gathered by bitmap word: an open-addressing table keyed by
/// `chunk base | word index` (a chunk is 4 MiB aligned and has fewer than 2^22 words), so every
/// pair of blocks of the same word within a flush shares one release.
pub(crate) struct WordGroups {
    keys: [usize; GROUP_SLOTS],
    /// A slot's mask is meaningful only while its key is non-zero (written when the key is).
    masks: [MaybeUninit<u64>; GROUP_SLOTS],
    /// Occupied slots, in insertion order; the first `len` are meaningful.
    order: [MaybeUninit<u8>; GROUP_LIMIT],
    len: usize,
}

const GROUP_SLOTS: usize = 64;
/// Entries before the table is drained (keeps probes short).
const GROUP_LIMIT: usize = 48;

impl WordGroups {
    pub(crate) fn new() -> Self {
        Self {
            keys: [0; GROUP_SLOTS],
            masks: [MaybeUninit::uninit(); GROUP_SLOTS],
            order: [MaybeUninit::uninit(); GROUP_LIMIT],
            len: 0,
        }
    }

    /// Adds `bit` to the group of `key`; false if the bit was already there (freed twice).
    #[inline]
    pub(crate) fn add(&mut self, key: usize, bit: u64) -> bool {
        let mut i =
            key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (usize::BITS - GROUP_SLOTS.trailing_zeros());
        loop {
            if self.keys[i] == key {
                // SAFETY: the slot's key is set, so its mask was written with it.
                let mask = unsafe { self.masks[i].assume_init() };
                self.masks[i] = MaybeUninit::new(mask | bit);
                return mask & bit == 0;
            }
            if self.keys[i] == 0 {
                self.keys[i] = key;
                self.masks[i] = MaybeUninit::new(bit);
                self.order[self.len] = MaybeUninit::new(i as u8);
                self.len += 1;
                return true;
            }
            i = (i + 1) % GROUP_SLOTS;
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == GROUP_LIMIT
    }

    /// Takes every group out, leaving the table empty.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let n = core::mem::take(&mut self.len);
        self.order[..n].iter().map(|i| {
            // SAFETY: the first `len` entries of `order` were written by `add`.
            let i = unsafe { i.assume_init() } as usize;
            // SAFETY: slot `i` is occupied, so its mask was written.
            (core::mem::take(&mut self.keys[i]), unsafe {
                self.masks[i].assume_init()
            })
        })
    }
}

static_assertions::const_assert!(GROUP_SLOTS.is_power_of_two() && GROUP_LIMIT < GROUP_SLOTS);
static_assertions::const_assert!(GROUP_SLOTS <= u8::MAX as usize + 1);
