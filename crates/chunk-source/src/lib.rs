//! Chunks of memory: 4 MiB long, 4 MiB aligned, from the OS or from memory the caller hands in.
//!
//! Everything an allocator asks of the outside world goes through one small trait,
//! [`ChunkSource`]: take `n` contiguous chunks, give them back, give their physical pages back
//! while keeping the range (decommit), and grow or shrink a run of chunks. Because every chunk
//! starts at a multiple of [`CHUNK_SIZE`], the chunk that holds any address is found by masking
//! the address: `addr & !(CHUNK_SIZE - 1)`.
//!
//! Backends, chosen by cargo features:
//!
//! | type | feature | where the memory comes from | [`SourceProps`] |
//! |---|---|---|---|
//! | `MmapSource` | `mmap` (default) | private anonymous mappings, aligned by over-mapping | `ZEROED \| RESIZABLE` |
//! | `SbrkSource` | `sbrk` | growth of the program break, freed runs kept on a free list | `ZEROED` |
//! | `ShmSource` | `shm` | one `MAP_SHARED` region made up front, seen by forked children | `ZEROED \| SHARED \| FIXED` |
//! | [`RegionSource`] | always | memory the caller provides; no OS call at all | `FIXED` |
//!
//! The crate is `no_std` and never allocates. The OS backends use `libc` and are written for
//! Linux. With `--no-default-features` only [`RegionSource`] is left, which makes no OS call, so
//! the crate also serves targets without an OS. The `std` feature only adds
//! `impl std::error::Error for ChunkError`.
//!
//! Errors are values: running out of memory is [`ChunkError::OutOfMemory`], never a panic or an
//! abort. The page size is read once at run time ([`page_size`]), never assumed.
//!
//! ```
//! # #[cfg(feature = "mmap")] {
//! use chunk_source::{ChunkSource, MmapSource, CHUNK_SIZE};
//!
//! let source = MmapSource::new();
//! let chunk = source.alloc(2).expect("two chunks");
//! assert_eq!(chunk.as_ptr() as usize % CHUNK_SIZE, 0);
//! // SAFETY: `chunk` is the start of the two chunks `alloc(2)` just returned, used no more after.
//! unsafe { source.dealloc(chunk, 2) }.expect("given back");
//! # }
//! ```

#![no_std]

#[cfg(any(feature = "std", test))]
extern crate std;

#[cfg(all(
    any(feature = "mmap", feature = "sbrk", feature = "shm"),
    not(any(target_os = "linux", target_os = "android"))
))]
compile_error!(
    "the mmap, sbrk and shm backends of chunk-source need Linux; \
     build with `--no-default-features` for RegionSource alone"
);

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use static_assertions::{const_assert, const_assert_eq};

pub mod fork;
#[cfg(feature = "mmap")]
mod mmap;
mod region;
#[cfg(feature = "sbrk")]
mod sbrk;
#[cfg(feature = "shm")]
mod shm;
mod spin;
pub use spin::{SpinGuard, SpinMutex};
#[cfg(any(feature = "mmap", feature = "sbrk", feature = "shm"))]
mod sys;

#[cfg(feature = "mmap")]
pub use mmap::MmapSource;
pub use region::{RegionSource, REGION_MAX_CHUNKS};
#[cfg(feature = "sbrk")]
pub use sbrk::SbrkSource;
#[cfg(feature = "shm")]
pub use shm::ShmSource;

/// log2 of [`CHUNK_SIZE`].
pub const CHUNK_SHIFT: u32 = 22;

/// Bytes in one chunk (4 MiB). Every chunk handed out starts at a multiple of this.
pub const CHUNK_SIZE: usize = 1 << CHUNK_SHIFT;

const_assert_eq!(CHUNK_SIZE, 4 * 1024 * 1024);
const_assert!(CHUNK_SIZE.is_power_of_two());

/// Largest chunk count any request may name: its byte length, plus one chunk of slack for
/// alignment, must stay below `isize::MAX` (the most any Rust allocation or OS call takes).
#[cfg(any(feature = "mmap", feature = "sbrk", feature = "shm"))]
pub(crate) const MAX_CHUNKS: usize = (isize::MAX as usize >> CHUNK_SHIFT) - 1;

/// Page size used where the OS cannot be asked (no `sysconf`, or it failed).
const FALLBACK_PAGE_SIZE: usize = 4096;

/// The cached page size; 0 until the first call of [`page_size`].
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The size of a page of memory in bytes: `sysconf(_SC_PAGESIZE)`, read once and cached.
///
/// On a target without `sysconf` (no OS) it is 4096. The result is always a power of two no
/// larger than [`CHUNK_SIZE`].
#[inline]
pub fn page_size() -> usize {
    // Relaxed: every thread computes the same value, so a racing thread at worst asks the OS
    // once more; the value carries no other memory with it.
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    let size = query_page_size();
    // Relaxed: see above.
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

#[cfg(unix)]
#[cold]
fn query_page_size() -> usize {
    // SAFETY: sysconf only reads a system setting; it has no memory preconditions.
    let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    match usize::try_from(raw) {
        Ok(size) if size.is_power_of_two() && size <= CHUNK_SIZE => size,
        _ => FALLBACK_PAGE_SIZE,
    }
}

#[cfg(not(unix))]
#[cold]
fn query_page_size() -> usize {
    FALLBACK_PAGE_SIZE
}

bitflags::bitflags! {
    /// What a [`ChunkSource`] promises about its memory.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SourceProps: u32 {
        /// Fresh chunks read as zero, and so does a range after [`ChunkSource::decommit`].
        const ZEROED = 1;
        /// The memory is `MAP_SHARED`: forked children see (and write) the same bytes.
        const SHARED = 2;
        /// The capacity is fixed when the source is made; `alloc` fails once it is used up.
        const FIXED = 4;
        /// [`ChunkSource::resize`] is supported and grows or shrinks in place where it can, and
        /// [`ChunkSource::move_chunk`] moves a chunk with its pages.
        const RESIZABLE = 8;
    }
}

/// Why a [`ChunkSource`] call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkError {
    /// No memory (or no address space, or no free chunk in a fixed source) for the request.
    OutOfMemory,
    /// An argument is malformed: zero chunks, a pointer or length that is not aligned as needed.
    InvalidArgument,
    /// The range does not belong to this source, or is not currently handed out by it.
    NotOwned,
    /// This source does not support the operation.
    Unsupported,
    /// The OS refused with this `errno`.
    Os(i32),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory => f.write_str("out of memory"),
            Self::InvalidArgument => f.write_str("invalid argument"),
            Self::NotOwned => f.write_str("range not handed out by this chunk source"),
            Self::Unsupported => f.write_str("operation not supported by this chunk source"),
            Self::Os(errno) => write!(f, "operating system error (errno {errno})"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ChunkError {}

/// A supplier of chunks: runs of [`CHUNK_SIZE`] bytes aligned to [`CHUNK_SIZE`].
///
/// # Safety
///
/// Implementors promise that a successful [`alloc(n)`](ChunkSource::alloc) returns a pointer
/// aligned to [`CHUNK_SIZE`] to `n * CHUNK_SIZE` bytes that are readable and writable and that
/// are not handed out again (by this or any other call) until they are given back with
/// [`dealloc`](ChunkSource::dealloc). If [`props`](ChunkSource::props) says
/// [`ZEROED`](SourceProps::ZEROED), those bytes read as zero when handed out.
pub unsafe trait ChunkSource: Sync {
    /// What this source promises about its memory.
    fn props(&self) -> SourceProps;

    /// Hands out `n >= 1` contiguous chunks.
    ///
    /// # Errors
    ///
    /// [`ChunkError::InvalidArgument`] for `n == 0`; [`ChunkError::OutOfMemory`] when the memory
    /// (or, for a huge `n`, the address space) is not there; [`ChunkError::Os`] for any other
    /// refusal of the OS.
    fn alloc(&self, n: usize) -> Result<NonNull<u8>, ChunkError>;

    /// Gives back the `n` chunks at `ptr`.
    ///
    /// # Errors
    ///
    /// [`ChunkError::InvalidArgument`] for `n == 0` or a `ptr` that is not chunk aligned;
    /// [`ChunkError::NotOwned`] where the source can tell that the range is not handed out by it.
    /// On error nothing was given back.
    ///
    /// # Safety
    ///
    /// `ptr` and `n` describe chunks handed out by this source (one `alloc` result, or a part of
    /// one made of whole chunks) that are not given back yet; nothing uses them afterwards.
    unsafe fn dealloc(&self, ptr: NonNull<u8>, n: usize) -> Result<(), ChunkError>;

    /// Gives the physical pages of `[ptr, ptr + len)` back to the OS; the range stays handed out
    /// and usable. Afterwards it reads as zero when [`props`](ChunkSource::props) has
    /// [`ZEROED`](SourceProps::ZEROED). `len == 0` does nothing.
    ///
    /// # Errors
    ///
    /// [`ChunkError::InvalidArgument`] when `ptr` or `len` is not a multiple of [`page_size`];
    /// [`ChunkError::NotOwned`] where the source can tell that the range is not its own. On error
    /// the content is unchanged.
    ///
    /// # Safety
    ///
    /// The range lies inside chunks handed out by this source and not given back; whatever it
    /// held may be lost.
    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ChunkError>;

    /// Grows or shrinks the run of `old_n` chunks at `ptr` to `new_n` chunks, in place when
    /// possible, else moving it (content kept up to the smaller length) to a new
    /// [`CHUNK_SIZE`]-aligned place. Returns where the run is now. Sources without
    /// [`RESIZABLE`](SourceProps::RESIZABLE) return [`ChunkError::Unsupported`] (the default).
    ///
    /// # Errors
    ///
    /// [`ChunkError::Unsupported`], [`ChunkError::InvalidArgument`] (a count of zero, an
    /// unaligned `ptr`), [`ChunkError::OutOfMemory`]. On error the old run is untouched.
    ///
    /// # Safety
    ///
    /// `ptr` and `old_n` describe chunks handed out by this source and not given back. On success
    /// the old run is gone (unless the result equals `ptr`, in which case its first
    /// `min(old_n, new_n)` chunks are the new run's); only the returned run may be used.
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old_n: usize,
        new_n: usize,
    ) -> Result<NonNull<u8>, ChunkError> {
        let _ = (ptr, old_n, new_n);
        Err(ChunkError::Unsupported)
    }

    /// Moves the chunk at `src`, with its pages and their content, onto the chunk at `dest`,
    /// which it replaces: afterwards `dest` holds what `src` held, without a page being copied
    /// or faulted in again, and `src` is given back. Sources without
    /// [`RESIZABLE`](SourceProps::RESIZABLE) return [`ChunkError::Unsupported`] (the default).
    ///
    /// A caller that gathers the resident chunks of several freed runs into one longer run
    /// moves them one chunk at a time, so a chunk never has to come from one piece of the
    /// source's bookkeeping (for mmap, one kernel mapping) together with its neighbours.
    ///
    /// # Errors
    ///
    /// [`ChunkError::Unsupported`], [`ChunkError::InvalidArgument`] (an unaligned pointer, or
    /// `src == dest`), or the OS's refusal. On error `src` is untouched. After the first two
    /// `dest` is untouched too; after a refusal of the OS it may have been given back, and the
    /// caller must neither use it again nor give it back (the address range may belong to
    /// someone else by then).
    ///
    /// # Safety
    ///
    /// `src` and `dest` are chunks handed out by this source and not given back, owned by the
    /// caller; nothing uses `src` afterwards, and whatever `dest` held is lost.
    unsafe fn move_chunk(&self, src: NonNull<u8>, dest: NonNull<u8>) -> Result<(), ChunkError> {
        let _ = (src, dest);
        Err(ChunkError::Unsupported)
    }
}

// SAFETY: every call is forwarded unchanged to `S`, which keeps the promises of the trait.
unsafe impl<S: ChunkSource + ?Sized> ChunkSource for &S {
    #[inline]
    fn props(&self) -> SourceProps {
        (**self).props()
    }

    #[inline]
    fn alloc(&self, n: usize) -> Result<NonNull<u8>, ChunkError> {
        (**self).alloc(n)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: NonNull<u8>, n: usize) -> Result<(), ChunkError> {
        // SAFETY: the caller keeps the contract of `dealloc`, which is the same for `S`.
        unsafe { (**self).dealloc(ptr, n) }
    }

    #[inline]
    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ChunkError> {
        // SAFETY: the caller keeps the contract of `decommit`, which is the same for `S`.
        unsafe { (**self).decommit(ptr, len) }
    }

    #[inline]
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old_n: usize,
        new_n: usize,
    ) -> Result<NonNull<u8>, ChunkError> {
        // SAFETY: the caller keeps the contract of `resize`, which is the same for `S`.
        unsafe { (**self).resize(ptr, old_n, new_n) }
    }

    #[inline]
    unsafe fn move_chunk(&self, src: NonNull<u8>, dest: NonNull<u8>) -> Result<(), ChunkError> {
        // SAFETY: the caller keeps the contract of `move_chunk`, which is the same for `S`.
        unsafe { (**self).move_chunk(src, dest) }
    }
}

/// Bytes in `n` chunks, checked: zero chunks is [`ChunkError::InvalidArgument`], more than
/// [`MAX_CHUNKS`] is [`ChunkError::OutOfMemory`].
#[cfg(any(feature = "mmap", feature = "sbrk", feature = "shm"))]
#[inline]
pub(crate) fn chunk_bytes(n: usize) -> Result<usize, ChunkError> {
    if n == 0 {
        Err(ChunkError::InvalidArgument)
    } else if n > MAX_CHUNKS {
        Err(ChunkError::OutOfMemory)
    } else {
        Ok(n << CHUNK_SHIFT)
    }
}

/// Like [`chunk_bytes`], for a count that names chunks already handed out: no such run can be
/// longer than [`MAX_CHUNKS`], so a larger count is a malformed argument.
#[cfg(any(feature = "mmap", feature = "sbrk"))]
#[inline]
pub(crate) fn owned_chunk_bytes(n: usize) -> Result<usize, ChunkError> {
    chunk_bytes(n).map_err(|_| ChunkError::InvalidArgument)
}

/// `Err(InvalidArgument)` unless `ptr` is a multiple of [`CHUNK_SIZE`].
#[inline]
pub(crate) fn check_chunk_aligned(ptr: NonNull<u8>) -> Result<(), ChunkError> {
    if ptr.as_ptr() as usize & (CHUNK_SIZE - 1) == 0 {
        Ok(())
    } else {
        Err(ChunkError::InvalidArgument)
    }
}

/// `Err(InvalidArgument)` unless `ptr` and `len` are multiples of the page size and the range
/// does not wrap around the address space.
#[inline]
pub(crate) fn check_page_range(ptr: NonNull<u8>, len: usize) -> Result<(), ChunkError> {
    let mask = page_size() - 1;
    let addr = ptr.as_ptr() as usize;
    if addr & mask != 0 || len & mask != 0 || addr.checked_add(len).is_none() {
        Err(ChunkError::InvalidArgument)
    } else {
        Ok(())
    }
}

/// `addr` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
#[inline]
pub(crate) const fn align_up(addr: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    match addr.checked_add(align - 1) {
        Some(x) => Some(x & !(align - 1)),
        None => None,
    }
}
