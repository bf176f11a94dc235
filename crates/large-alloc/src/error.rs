//! The one error type of the crate.

use core::fmt;

use chunk_source::ChunkError;

/// Why a large-block operation failed.
///
/// Every failure leaves the allocator and the blocks it handed out as they were: a failed
/// `alloc` takes nothing, a failed `realloc` leaves the old block valid and unchanged, a failed
/// `dealloc` frees nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LargeError {
    /// The chunk source has no memory for the run (after the cache of freed runs was emptied).
    OutOfMemory,
    /// The pointer is not the payload of a live or freed large block: no header, a header of
    /// another address (an interior or copied pointer), a misaligned pointer or a corrupted
    /// header.
    BadPointer {
        /// The address that was passed in.
        addr: usize,
    },
    /// The block was already freed (its header still says so: the run is cached or otherwise
    /// still mapped).
    DoubleFree {
        /// The address that was passed in.
        addr: usize,
    },
    /// The size plus the header and alignment padding does not fit in `isize::MAX` bytes of
    /// whole chunks.
    Overflow,
    /// The alignment is not a power of two.
    InvalidAlign {
        /// The alignment that was asked for.
        align: usize,
    },
    /// The chunk source failed for a reason other than lack of memory.
    Source(ChunkError),
}

impl LargeError {
    /// Whether the error is the caller's fault (a pointer that is no live large block), as
    /// opposed to a refusal of the OS or a lack of memory. A `dealloc` that fails for the OS
    /// keeps the run mapped and gives its pages back: the free itself was right.
    pub const fn is_misuse(&self) -> bool {
        matches!(
            self,
            LargeError::BadPointer { .. } | LargeError::DoubleFree { .. }
        )
    }
}

impl From<ChunkError> for LargeError {
    fn from(e: ChunkError) -> Self {
        match e {
            ChunkError::OutOfMemory => LargeError::OutOfMemory,
            other => LargeError::Source(other),
        }
    }
}

impl fmt::Display for LargeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LargeError::OutOfMemory => f.write_str("out of memory for a large block"),
            LargeError::BadPointer { addr } => {
                write!(f, "{addr:#x} is not the address of a large block")
            }
            LargeError::DoubleFree { addr } => {
                write!(f, "large block at {addr:#x} was already freed")
            }
            LargeError::Overflow => f.write_str("large block size overflows the address space"),
            LargeError::InvalidAlign { align } => {
                write!(f, "alignment {align} is not a power of two")
            }
            LargeError::Source(e) => write!(f, "chunk source failed: {e}"),
        }
    }
}

impl core::error::Error for LargeError {}
