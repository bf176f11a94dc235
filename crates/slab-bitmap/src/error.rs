//! [`ReleaseError`]: why a release was refused or only partly done.

use core::fmt;

/// A release that was wrong. Such a release never corrupts the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseError {
    /// The slot (for a mask: its first offending slot) is not below the set's `len`. Nothing
    /// was changed.
    OutOfRange {
        /// The offending slot index.
        slot: usize,
    },
    /// These slots were already free (a double release, or a release of a slot never
    /// claimed). They stay free; any other slots of the same call were released.
    NotClaimed {
        /// Index of the word.
        word: usize,
        /// One bit per slot of that word that was not claimed.
        mask: u64,
    },
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfRange { slot } => write!(f, "slot {slot} is out of range"),
            Self::NotClaimed { word, mask } if mask.count_ones() == 1 => write!(
                f,
                "slot {} released but not claimed",
                word * 64 + mask.trailing_zeros() as usize
            ),
            Self::NotClaimed { word, mask } => write!(
                f,
                "{} slots of word {word} released but not claimed (mask {mask:#018x})",
                mask.count_ones()
            ),
        }
    }
}

impl core::error::Error for ReleaseError {}
