//! [`SlotArray`]: a slot set that owns its words, constructible in a `static`.

use core::fmt;

use crate::primitive::{AtomicU64, AtomicUsize};
use crate::set::{tail_mask, SlotSet, FULL};

/// A slot set of up to `WORDS * 64` slots that owns its memory.
///
/// `new` is a `const fn`, so a `SlotArray` can be a `static` shared by every thread with no
/// initialisation step. All operations go through the view [`as_set`](Self::as_set).
///
/// # Invariants
///
/// `len <= WORDS * 64`; the first `SlotSet::words_for(len)` words with `hint` form an
/// initialised [`SlotSet`] of `len` slots; the words after them are unused (and kept full).
#[repr(C)]
pub struct SlotArray<const WORDS: usize> {
    hint: AtomicUsize,
    len: usize,
    words: [AtomicU64; WORDS],
}

impl<const WORDS: usize> SlotArray<WORDS> {
    /// A set of `len` slots, all free.
    ///
    /// # Panics
    ///
    /// If `len > WORDS * 64` (at compile time when evaluated in a constant or a `static`).
    #[cfg(not(loom))]
    pub const fn new(len: usize) -> Self {
        let used = SlotSet::words_for(len);
        assert!(used <= WORDS, "SlotArray::new: len exceeds WORDS * 64");
        let mut words = [const { AtomicU64::new(0) }; WORDS];
        if used > 0 {
            words[used - 1] = AtomicU64::new(tail_mask(len));
        }
        let mut i = used;
        while i < WORDS {
            words[i] = AtomicU64::new(FULL);
            i += 1;
        }
        Self {
            hint: AtomicUsize::new(0),
            len,
            words,
        }
    }

    /// A set of `len` slots, all free (not `const` under `cfg(loom)`: loom's atomics are not).
    ///
    /// # Panics
    ///
    /// If `len > WORDS * 64`.
    #[cfg(loom)]
    pub fn new(len: usize) -> Self {
        let used = SlotSet::words_for(len);
        assert!(used <= WORDS, "SlotArray::new: len exceeds WORDS * 64");
        let words = core::array::from_fn(|i| {
            AtomicU64::new(match i {
                i if i + 1 == used => tail_mask(len),
                i if i < used => 0,
                _ => FULL,
            })
        });
        Self {
            hint: AtomicUsize::new(0),
            len,
            words,
        }
    }

    /// The set's view, through which every operation goes.
    #[inline]
    pub fn as_set(&self) -> SlotSet<'_> {
        SlotSet::from_parts(
            &self.words[..SlotSet::words_for(self.len)],
            &self.hint,
            self.len,
        )
    }
}

impl<const WORDS: usize> fmt::Debug for SlotArray<WORDS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotArray")
            .field("words", &WORDS)
            .field("set", &self.as_set())
            .finish()
    }
}
