//! Chunks from private anonymous mappings.
//!
//! Each `alloc` is its own mapping, aligned by [`sys::map_aligned`]
//! (map exactly, else over-map and trim). `dealloc` unmaps, `decommit` is `MADV_DONTNEED`, after
//! which a private anonymous range reads as zero.
//!
//! `resize` uses `mremap`: shrinking unmaps the tail; growing first asks for the pages right
//! after the run without `MREMAP_MAYMOVE` (the kernel grows the mapping in place if that space is
//! free and fails otherwise, never touching a neighbour); failing that it maps a fresh aligned
//! range of the new length and moves the run onto it with `MREMAP_MAYMOVE | MREMAP_FIXED`. A move
//! rewrites page tables only, so no byte is copied whatever the length.
//!
//! `move_chunk` moves one chunk onto another with `MREMAP_MAYMOVE | MREMAP_FIXED`, so a caller
//! can gather the resident chunks of several runs into one. Such a run spans several kernel
//! mappings, and `mremap` accepts only a range inside one mapping: the in-place growth of
//! `resize` then fails with `EFAULT`, and `resize` refuses instead of trying the move (which
//! would fail too, after the kernel had unmapped the destination).

use core::ptr::NonNull;

use crate::{
    check_chunk_aligned, check_page_range, chunk_bytes, owned_chunk_bytes, sys, ChunkError,
    ChunkSource, SourceProps, CHUNK_SIZE,
};

/// Flags of every mapping this source makes.
const FLAGS: i32 = libc::MAP_PRIVATE;

/// Chunks from private anonymous memory mappings (`mmap`), one mapping per `alloc`.
///
/// Properties: [`ZEROED`](SourceProps::ZEROED) | [`RESIZABLE`](SourceProps::RESIZABLE). The
/// source has no state; any number of them can be made, and chunks from one may be given back
/// to another.
#[derive(Clone, Copy, Debug, Default)]
pub struct MmapSource {
    _private: (),
}

impl MmapSource {
    /// The mmap source (it has no state, so this is free and can be used in a `static`).
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

// SAFETY: every run comes from a fresh mapping of its own, aligned by `map_aligned`, readable
// and writable and zero filled; the kernel hands no part of it out again until we unmap it.
unsafe impl ChunkSource for MmapSource {
    #[inline]
    fn props(&self) -> SourceProps {
        SourceProps::ZEROED | SourceProps::RESIZABLE
    }

    fn alloc(&self, n: usize) -> Result<NonNull<u8>, ChunkError> {
        let len = chunk_bytes(n)?;
        sys::map_aligned(len, 0, FLAGS)
    }

    unsafe fn dealloc(&self, ptr: NonNull<u8>, n: usize) -> Result<(), ChunkError> {
        let len = owned_chunk_bytes(n)?;
        check_chunk_aligned(ptr)?;
        // SAFETY: the caller gives back chunks this source mapped and uses them no more.
        unsafe { sys::unmap(ptr.as_ptr(), len) }
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ChunkError> {
        check_page_range(ptr, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the caller names pages of chunks we handed out and accepts losing their
        // content; on a private anonymous mapping they read as zero afterwards.
        unsafe { sys::advise(ptr.as_ptr(), len, libc::MADV_DONTNEED) }
    }

    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old_n: usize,
        new_n: usize,
    ) -> Result<NonNull<u8>, ChunkError> {
        let old_len = owned_chunk_bytes(old_n)?;
        let new_len = chunk_bytes(new_n)?;
        check_chunk_aligned(ptr)?;
        let old = ptr.as_ptr();
        if new_len == old_len {
            return Ok(ptr);
        }
        if new_len < old_len {
            // SAFETY: the tail [old + new_len, old + old_len) is part of the caller's run, which
            // the caller gives up past the new length.
            unsafe { sys::unmap(old.wrapping_add(new_len), old_len - new_len) }?;
            return Ok(ptr);
        }

        // Grow in place: without MREMAP_MAYMOVE the kernel only extends the mapping into free
        // address space right after it, and fails (ENOMEM) if anything is mapped there.
        // SAFETY: [old, old + old_len) is the caller's run; nothing else is touched.
        let grown = unsafe { libc::mremap(old.cast(), old_len, new_len, 0) };
        if grown != libc::MAP_FAILED {
            debug_assert_eq!(grown.cast::<u8>(), old);
            return Ok(ptr);
        }
        if sys::errno() == libc::EFAULT {
            // The run spans several mappings (its chunks were moved together one by one, see
            // `move_chunk`). A move of the whole run would fail the same way, and only after
            // the kernel had unmapped the destination: refuse, and let the caller copy.
            return Err(ChunkError::Unsupported);
        }

        // Move: reserve an aligned destination, then let the kernel move the pages onto it.
        let dest = sys::map_aligned(new_len, 0, FLAGS)?;
        // SAFETY: the source run is the caller's, the destination is a mapping we just made and
        // own, and the two do not overlap; MREMAP_FIXED replaces the destination mapping, and
        // on success the old range is unmapped by the kernel.
        let moved = unsafe {
            libc::mremap(
                old.cast(),
                old_len,
                new_len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                dest.as_ptr().cast::<libc::c_void>(),
            )
        };
        if moved == libc::MAP_FAILED {
            let err = sys::last_error();
            // SAFETY: `dest` is our own fresh mapping of `new_len` bytes, never handed out.
            let _ = unsafe { sys::unmap(dest.as_ptr(), new_len) };
            return Err(err);
        }
        debug_assert_eq!(moved.cast::<u8>(), dest.as_ptr());
        Ok(dest)
    }

    unsafe fn move_chunk(&self, src: NonNull<u8>, dest: NonNull<u8>) -> Result<(), ChunkError> {
        check_chunk_aligned(src)?;
        check_chunk_aligned(dest)?;
        if src == dest {
            return Err(ChunkError::InvalidArgument);
        }
        // One chunk lies inside one mapping: every mapping this source makes, resizes or moves
        // starts and ends on a chunk boundary, so the kernel's rule that the moved range is one
        // mapping always holds.
        // SAFETY: both chunks are the caller's (contract); MREMAP_FIXED replaces `dest` and, on
        // success, unmaps `src`. On failure `src` is left as it was.
        let moved = unsafe {
            libc::mremap(
                src.as_ptr().cast(),
                CHUNK_SIZE,
                CHUNK_SIZE,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                dest.as_ptr().cast::<libc::c_void>(),
            )
        };
        if moved == libc::MAP_FAILED {
            return Err(sys::last_error());
        }
        debug_assert_eq!(moved.cast::<u8>(), dest.as_ptr());
        Ok(())
    }
}
