//! The block header and where a block lies in its run.
//!
//! A large block is one run of `nchunks` contiguous chunks. Its payload starts `offset` bytes
//! past the run's base and its 64-byte header fills the 64 bytes right before the payload:
//!
//! ```text
//! base                            payload-64     payload            payload+size
//! |---- padding (align > 64) ----|-- header --|------ payload -----|---- tail ----| base + nchunks*CHUNK_SIZE
//! ```
//!
//! - `align <= CHUNK_SIZE`: `offset = max(64, align)`. The base is `CHUNK_SIZE`-aligned, so the
//!   payload is `align`-aligned, and the offset does not depend on where the run lies: a run
//!   moved by `ChunkSource::resize` keeps its payload aligned.
//! - `align > CHUNK_SIZE`: the payload is the first `align`-aligned address at or after
//!   `base + 64`. The base is only `CHUNK_SIZE`-aligned, so the offset depends on it, but it is
//!   never more than `align`: the run is asked for with that worst case (`align / CHUNK_SIZE`
//!   chunks more than the payload needs), whatever base the source returns; once the payload is
//!   placed, the chunks before the header's chunk and after the payload go straight back.
//!
//! A run always holds at least the first byte of its payload (a zero-sized block is sized as
//! one byte), so the payload address lies inside its own run.
//!
//! The payload is always at least 64-aligned, so the header, 64 bytes aligned to 64, never
//! straddles a cache line and can be read through a plain reference.
//!
//! The header carries a magic word (live or freed), the requested size, the alignment, the run
//! (base and chunk count), the payload address it belongs to, and a guard: a hash of the other
//! fields, so a header overwritten by an underflowing write or forged by a foreign pointer is
//! refused instead of obeyed (obeying a wrong `nchunks` would unmap somebody else's memory).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use chunk_source::CHUNK_SIZE;
use static_assertions::{const_assert, const_assert_eq};

use crate::LargeError;

/// Bytes of the header that sits right before every payload.
pub const HEADER_SIZE: usize = 64;

/// Magic of a live block ("FAMLARGE" on 64-bit targets).
pub(crate) const MAGIC_LIVE: usize = 0x4641_4d4c_4152_4745_u64 as usize;
/// Magic of a freed block whose run is still mapped ("FAMFREED" on 64-bit targets).
pub(crate) const MAGIC_FREED: usize = 0x4641_4d46_5245_4544_u64 as usize;

/// Seed and multiplier of the guard hash.
const GUARD_SEED: usize = 0x6c61_7267_6568_6472_u64 as usize;
const GUARD_MUL: usize = 0x9e37_79b9_7f4a_7c15_u64 as usize;

/// The most chunks one run may have: `nchunks * CHUNK_SIZE` stays within `isize::MAX`.
pub(crate) const MAX_RUN_CHUNKS: usize = isize::MAX as usize / CHUNK_SIZE;

/// The header of a large block, in the 64 bytes right before its payload.
///
/// Invariants while the magic is live or freed (checked before a header is trusted):
/// - `base` is `CHUNK_SIZE`-aligned and `1 <= nchunks <= MAX_RUN_CHUNKS`;
/// - `payload` is `max(64, align)`-aligned, and this header is at `payload - 64`, inside the run;
/// - `payload < base + nchunks * CHUNK_SIZE` and `payload + size <= base + nchunks * CHUNK_SIZE`;
/// - `guard == guard_of(size, align, base, nchunks, payload)`.
///
/// Only the magic is written after the header is published (live to freed, by the one `dealloc`
/// that wins the compare-exchange), so it alone is atomic. The other fields change only through
/// `realloc`, which the caller runs with exclusive access to the block.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct LargeHeader {
    magic: AtomicUsize,
    size: usize,
    align: usize,
    base: *mut u8,
    nchunks: usize,
    payload: *mut u8,
    guard: usize,
}

const_assert_eq!(core::mem::size_of::<LargeHeader>(), HEADER_SIZE);
const_assert_eq!(core::mem::align_of::<LargeHeader>(), HEADER_SIZE);
// The smallest payload offset (64) leaves room for the header, and every chunk offset is a
// multiple of the header's alignment.
const_assert!(CHUNK_SIZE.is_power_of_two() && CHUNK_SIZE >= 2 * HEADER_SIZE);
const_assert!(MAX_RUN_CHUNKS >= 1);

impl LargeHeader {
    /// The size that was asked for (by `alloc` or the last `realloc`).
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The alignment that was asked for (a power of two).
    #[inline]
    pub fn align(&self) -> usize {
        self.align
    }

    /// The first byte of the block's run of chunks (`CHUNK_SIZE`-aligned).
    #[inline]
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// How many chunks the run has.
    #[inline]
    pub fn nchunks(&self) -> usize {
        self.nchunks
    }

    /// Bytes of the whole run (`nchunks * CHUNK_SIZE`).
    #[inline]
    pub fn run_len(&self) -> usize {
        self.nchunks * CHUNK_SIZE
    }

    /// The payload address this header belongs to.
    #[inline]
    pub fn payload(&self) -> *mut u8 {
        self.payload
    }

    /// Bytes usable from the payload to the end of the run (at least [`size`](Self::size)).
    #[inline]
    pub fn usable_size(&self) -> usize {
        self.base as usize + self.run_len() - self.payload as usize
    }

    /// Whether the block is live (allocated and not yet freed).
    #[inline]
    pub fn is_live(&self) -> bool {
        // Acquire: pairs with the Release store of `write`, so the fields read after are the
        // ones written with this magic.
        self.magic.load(Ordering::Acquire) == MAGIC_LIVE
    }

    /// Whether the fields satisfy the type's invariants and the guard matches them.
    fn is_consistent(&self) -> bool {
        let base = self.base as usize;
        let payload = self.payload as usize;
        let here = self as *const Self as usize;
        self.align.is_power_of_two()
            && base != 0
            && base.is_multiple_of(CHUNK_SIZE)
            && (1..=MAX_RUN_CHUNKS).contains(&self.nchunks)
            && payload.is_multiple_of(self.align.max(HEADER_SIZE))
            && here >= base
            && here + HEADER_SIZE == payload
            && (payload - base) < self.run_len()
            && self.size <= self.run_len() - (payload - base)
            && self.guard == guard_of(self.size, self.align, base, self.nchunks, payload)
    }

    /// Writes a live header for a block of `size` bytes aligned to `align` in the run
    /// `base .. base + nchunks * CHUNK_SIZE`, and returns the payload
    /// (`base + payload_offset(base, align)`).
    ///
    /// # Safety
    /// - The run is `CHUNK_SIZE`-aligned, `nchunks` chunks long, writable, and not in use by
    ///   anybody else (its header may be read concurrently only by a faulty double free).
    /// - `align` is a power of two and `payload_offset(base, align) + max(size, 1)` fits in the
    ///   run.
    pub(crate) unsafe fn write(
        base: NonNull<u8>,
        nchunks: usize,
        size: usize,
        align: usize,
    ) -> NonNull<u8> {
        debug_assert!(align.is_power_of_two());
        debug_assert_eq!(base.as_ptr() as usize % CHUNK_SIZE, 0);
        let offset = payload_offset(base.as_ptr() as usize, align);
        debug_assert!(offset
            .checked_add(size_in_run(size))
            .is_some_and(|end| end <= nchunks * CHUNK_SIZE));
        // SAFETY: `offset + max(size, 1)` fits in the run (caller), so the payload is inside it.
        let payload = unsafe { base.add(offset) };
        // SAFETY: `offset >= HEADER_SIZE` (`payload_offset`), so the header lies inside the run.
        let header = unsafe { payload.sub(HEADER_SIZE) }.cast::<LargeHeader>();
        let value = LargeHeader {
            // Not live until every other field is in place.
            magic: AtomicUsize::new(0),
            size,
            align,
            base: base.as_ptr(),
            nchunks,
            payload: payload.as_ptr(),
            guard: guard_of(
                size,
                align,
                base.as_ptr() as usize,
                nchunks,
                payload.as_ptr() as usize,
            ),
        };
        // SAFETY: the header lies inside the run (above), is 64-aligned (the payload is, by
        // `payload_offset` on a chunk-aligned base), and the run is ours to write.
        unsafe { header.write(value) };
        // SAFETY: just written, valid and aligned.
        let header = unsafe { header.as_ref() };
        debug_assert!(header.is_consistent());
        // Release: a thread that reads the live magic with Acquire sees the fields above.
        header.magic.store(MAGIC_LIVE, Ordering::Release);
        payload
    }

    /// Sets the requested size of the live block whose payload is `payload`, in place (the run
    /// does not change).
    ///
    /// # Safety
    /// `payload` is a live block's (its header checked by `find`), the caller has exclusive
    /// access to the block and holds no reference to its header across this call, and `size`
    /// fits in the run past the payload (`size <= usable_size()`).
    pub(crate) unsafe fn set_size(payload: NonNull<u8>, size: usize) {
        let h = payload
            .as_ptr()
            .wrapping_sub(HEADER_SIZE)
            .cast::<LargeHeader>();
        // SAFETY: the header of a live block is valid, aligned and inside its run; the caller
        // has exclusive access, so these plain reads and writes race with nobody.
        unsafe {
            debug_assert!(size <= (*h).usable_size());
            (*h).size = size;
            (*h).guard = guard_of(
                size,
                (*h).align,
                (*h).base as usize,
                (*h).nchunks,
                (*h).payload as usize,
            );
            debug_assert!((*h).is_consistent());
        }
    }

    /// Marks a live block freed. Exactly one of several concurrent callers succeeds.
    pub(crate) fn mark_freed(&self, addr: usize) -> Result<(), LargeError> {
        // AcqRel: Acquire to see the fields of the live header, Release so a later reader of
        // the freed magic (a second free) is ordered after this one.
        match self.magic.compare_exchange(
            MAGIC_LIVE,
            MAGIC_FREED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(MAGIC_FREED) => Err(LargeError::DoubleFree { addr }),
            Err(_) => Err(LargeError::BadPointer { addr }),
        }
    }

    /// Finds and checks the header of the block whose payload is `ptr`.
    ///
    /// Refuses without reading memory a pointer that cannot be a payload (below 64, or not
    /// 64-aligned). Otherwise reads the 64 bytes before `ptr` and accepts them only when the
    /// magic is live or freed, the recorded payload is `ptr` and the fields are consistent
    /// (guard included). A freed header gives `DoubleFree`, anything else `BadPointer`.
    ///
    /// # Safety
    /// The 64 bytes before `ptr` are readable for `'a` (true for every payload handed out by
    /// this crate until its run goes back to the source, and for any pointer at least 64 bytes
    /// into memory the caller owns). No other thread writes them concurrently.
    pub(crate) unsafe fn find<'a>(ptr: NonNull<u8>) -> Result<&'a LargeHeader, LargeError> {
        let addr = ptr.as_ptr() as usize;
        let bad = LargeError::BadPointer { addr };
        if addr < HEADER_SIZE || !addr.is_multiple_of(HEADER_SIZE) {
            return Err(bad);
        }
        let header = ptr.as_ptr().wrapping_sub(HEADER_SIZE).cast::<LargeHeader>();
        // SAFETY: the caller guarantees the 64 bytes before `ptr` are readable for 'a; they are
        // 64-aligned (checked above); every bit pattern is a valid `LargeHeader` (integers, raw
        // pointers and an atomic integer).
        let header = unsafe { &*header };
        // Acquire: pairs with the Release store of `write`, see `is_live`.
        let magic = header.magic.load(Ordering::Acquire);
        if magic != MAGIC_LIVE && magic != MAGIC_FREED {
            return Err(bad);
        }
        if header.payload as usize != addr || !header.is_consistent() {
            return Err(bad);
        }
        if magic == MAGIC_FREED {
            return Err(LargeError::DoubleFree { addr });
        }
        Ok(header)
    }
}

/// The hash kept in `LargeHeader::guard`.
#[inline]
fn guard_of(size: usize, align: usize, base: usize, nchunks: usize, payload: usize) -> usize {
    let mut h = GUARD_SEED;
    for v in [size, align, base, nchunks, payload] {
        h = (h ^ v).wrapping_mul(GUARD_MUL).rotate_left(27);
    }
    h
}

/// The most bytes the payload may lie past the base of its run.
#[inline]
pub(crate) const fn max_offset(align: usize) -> usize {
    if align <= HEADER_SIZE {
        HEADER_SIZE
    } else {
        align
    }
}

/// Where the payload lies past `base` (a `CHUNK_SIZE`-aligned address) for `align` (a power of
/// two): `max(64, align)` up to `CHUNK_SIZE`, else the first `align`-aligned address at or after
/// `base + 64`. Never more than `max_offset(align)`.
#[inline]
pub(crate) const fn payload_offset(base: usize, align: usize) -> usize {
    if align <= CHUNK_SIZE {
        max_offset(align)
    } else {
        // `base % align` is a multiple of CHUNK_SIZE (>= 64), so when it is not zero the next
        // aligned address is `align - rem >= CHUNK_SIZE >= 64` bytes past the base; when it is
        // zero, `base + 64` rounds up to `base + align`.
        let rem = base & (align - 1);
        if rem == 0 {
            align
        } else {
            align - rem
        }
    }
}

/// Chunks a run needs for `size` bytes aligned to `align` (a power of two), wherever the source
/// puts it (for `align <= CHUNK_SIZE`, exactly the chunks the block uses). `Err(Overflow)` when that run would not fit in `isize::MAX` bytes.
#[inline]
pub(crate) const fn chunks_for(size: usize, align: usize) -> Result<usize, LargeError> {
    let Some(bytes) = max_offset(align).checked_add(size_in_run(size)) else {
        return Err(LargeError::Overflow);
    };
    let n = bytes.div_ceil(CHUNK_SIZE);
    if n > MAX_RUN_CHUNKS {
        return Err(LargeError::Overflow);
    }
    Ok(n)
}

/// Chunks used by a block whose payload lies `offset` bytes into its run, from the run's base
/// to the end of the payload. The caller has checked `chunks_for(size, align)` for an `align`
/// with `offset <= max_offset(align)`, so nothing overflows.
#[inline]
pub(crate) const fn chunks_used(offset: usize, size: usize) -> usize {
    (offset + size_in_run(size)).div_ceil(CHUNK_SIZE)
}

/// Bytes of payload a run is sized for: at least one, so that even a zero-sized payload lies
/// inside its run (a registry that finds runs by address finds it, and the block's usable size
/// is never zero).
#[inline]
const fn size_in_run(size: usize) -> usize {
    if size == 0 {
        1
    } else {
        size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_chunk_counts() {
        assert_eq!(chunks_for(0, 1), Ok(1));
        assert_eq!(chunks_for(CHUNK_SIZE - HEADER_SIZE, 8), Ok(1));
        assert_eq!(chunks_for(CHUNK_SIZE - HEADER_SIZE + 1, 8), Ok(2));
        assert_eq!(chunks_for(CHUNK_SIZE - 4096, 4096), Ok(1));
        assert_eq!(chunks_for(CHUNK_SIZE - 4095, 4096), Ok(2));
        assert_eq!(chunks_for(1, CHUNK_SIZE), Ok(2));
        assert_eq!(chunks_for(0, CHUNK_SIZE), Ok(2));
        assert_eq!(chunks_used(CHUNK_SIZE, 0), 2);
        assert_eq!(chunks_used(64, 0), 1);
        assert_eq!(chunks_for(1, 4 * CHUNK_SIZE), Ok(5));
        assert_eq!(chunks_for(usize::MAX, 1), Err(LargeError::Overflow));
        assert_eq!(chunks_for(usize::MAX - 63, 1), Err(LargeError::Overflow));
        assert_eq!(
            chunks_for(isize::MAX as usize, 1),
            Err(LargeError::Overflow)
        );
        assert_eq!(
            chunks_for(0, 1 << (usize::BITS - 1)),
            Err(LargeError::Overflow)
        );
        let biggest = MAX_RUN_CHUNKS * CHUNK_SIZE - HEADER_SIZE;
        assert_eq!(chunks_for(biggest, 1), Ok(MAX_RUN_CHUNKS));
        assert_eq!(chunks_for(biggest + 1, 1), Err(LargeError::Overflow));
    }

    #[test]
    fn big_alignment_offsets() {
        let a = 4 * CHUNK_SIZE;
        for k in 0..8 {
            let base = (16 + k) * CHUNK_SIZE;
            let off = payload_offset(base, a);
            assert!(off >= HEADER_SIZE && off <= max_offset(a));
            assert_eq!((base + off) % a, 0);
            // The first aligned address at or after base + 64.
            assert!(base + off - a < base + HEADER_SIZE);
        }
        assert_eq!(payload_offset(CHUNK_SIZE, 64), 64);
        assert_eq!(payload_offset(CHUNK_SIZE, 1), 64);
        assert_eq!(payload_offset(CHUNK_SIZE, 4096), 4096);
        assert_eq!(payload_offset(CHUNK_SIZE, CHUNK_SIZE), CHUNK_SIZE);
    }

    #[test]
    fn guard_sees_every_field() {
        let g = guard_of(1, 2, 3, 4, 5);
        assert_ne!(g, guard_of(0, 2, 3, 4, 5));
        assert_ne!(g, guard_of(1, 0, 3, 4, 5));
        assert_ne!(g, guard_of(1, 2, 0, 4, 5));
        assert_ne!(g, guard_of(1, 2, 3, 0, 5));
        assert_ne!(g, guard_of(1, 2, 3, 4, 0));
    }
}
