//! Blocks from the C library's `malloc`, and the patterns that prove their content survives.
//!
//! [`alloc`], [`free`] and [`realloc`] call `libc::malloc`, `libc::free` and `libc::realloc`
//! (whatever definitions the dynamic linker bound them to: the C library's, or a preloaded
//! allocator's). A null result ends the program (exit status 1) with a message.
//!
//! [`stamp`] writes a pattern derived from a 64-bit tag into a block and [`verify`] checks it.
//! The pattern covers the first 64 bytes, the last 8 and one word of every 4 KiB page in
//! between, so a block that overlaps another live block, or whose content the allocator
//! disturbed, is caught, and every page of a large block is touched as a program filling it
//! would, while the cost stays small next to the allocator's for small blocks.

use std::ptr;

use crate::report::fail;
use crate::rng::mix;

/// Bytes at the start of a block that [`stamp`] writes in full.
pub const HEAD: usize = 64;

/// Distance between the words [`stamp`] writes past the head.
pub const PAGE: usize = 4096;

/// `malloc(size)`; ends the program if it returns null.
#[inline]
pub fn alloc(size: usize) -> *mut u8 {
    // SAFETY: malloc may be called with any size; a null result is handled below.
    let p = unsafe { libc::malloc(size) }.cast::<u8>();
    if p.is_null() {
        fail(format_args!("malloc({size}) returned null"));
    }
    p
}

/// `free(p)`.
///
/// # Safety
///
/// `p` is null or a block from [`alloc`] or [`realloc`] that has not been freed.
#[inline]
pub unsafe fn free(p: *mut u8) {
    // SAFETY: the caller passes a live block of this malloc, or null.
    unsafe { libc::free(p.cast()) }
}

/// `realloc(p, size)` (`size > 0`); ends the program if it returns null.
///
/// # Safety
///
/// `p` is null or a block from [`alloc`] or [`realloc`] that has not been freed; after the call
/// only the returned pointer may be used.
#[inline]
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: the caller passes a live block of this malloc, or null.
    let q = unsafe { libc::realloc(p.cast(), size) }.cast::<u8>();
    if q.is_null() {
        fail(format_args!("realloc({p:p}, {size}) returned null"));
    }
    q
}

/// The word the pattern of `tag` puts at byte `offset`.
#[inline]
fn word(tag: u64, offset: usize) -> u64 {
    tag ^ (offset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A tag for the `n`-th block of a thread (`thread` distinguishes the threads), never the same
/// for two different pairs.
#[inline]
pub fn tag(thread: usize, n: u64) -> u64 {
    // `mix` is a bijection, so distinct inputs give distinct tags.
    mix(((thread as u64) << 40) ^ n)
}

/// The offsets of the words [`stamp`] writes in a block of `size >= 8` bytes, in order: every
/// word of the head, one word per page after it, and the last word of the block, none of them
/// overlapping another.
#[inline]
fn offsets(size: usize) -> impl Iterator<Item = usize> {
    debug_assert!(size >= 8);
    let head_end = size.min(HEAD) & !7;
    let tail = size - 8;
    let head = (0..head_end).step_by(8);
    let pages = (PAGE..tail.saturating_sub(7))
        .step_by(PAGE)
        .filter(move |&o| o >= head_end);
    let last = (tail >= head_end).then_some(tail);
    head.chain(pages).chain(last)
}

/// Writes the pattern of `tag` into the `size` bytes at `p`. Blocks under 8 bytes get the
/// tag's low bytes; larger ones the words at the offsets `offsets` picks (the first, one per page, the last). A block with `size >= 8` holds `tag`
/// itself in its first word, so a block can be identified from its content alone.
///
/// # Safety
///
/// `p` is valid for writes of `size` bytes.
#[inline]
pub unsafe fn stamp(p: *mut u8, size: usize, tag: u64) {
    if size < 8 {
        for i in 0..size {
            // SAFETY: `i < size`, inside the block.
            unsafe { p.add(i).write((tag >> (8 * i)) as u8) };
        }
        return;
    }
    // Every byte of a block up to `HEAD + 8` bytes is written: the head's words, then the
    // tail word or, where that would overlap the head, the bytes past the head one by one.
    let head_end = size.min(HEAD) & !7;
    if size - 8 < head_end {
        // The tail word would overlap the head: write the few bytes past the head one by one.
        for i in head_end..size {
            // SAFETY: `i < size`, inside the block.
            unsafe { p.add(i).write((word(tag, i) >> 3) as u8) };
        }
    }
    for o in offsets(size) {
        // SAFETY: `o + 8 <= size` for every offset, so the word is inside the block.
        unsafe { ptr::write_unaligned(p.add(o).cast::<u64>(), word(tag, o)) };
    }
}

/// Checks the pattern [`stamp`] wrote with `tag` into `size` bytes at `p`: `Err` with the first
/// offset that differs.
///
/// # Safety
///
/// `p` is valid for reads of `size` bytes.
#[inline]
pub unsafe fn verify(p: *const u8, size: usize, tag: u64) -> Result<(), usize> {
    if size < 8 {
        for i in 0..size {
            // SAFETY: `i < size`, inside the block.
            if unsafe { p.add(i).read() } != (tag >> (8 * i)) as u8 {
                return Err(i);
            }
        }
        return Ok(());
    }
    let head_end = size.min(HEAD) & !7;
    if size - 8 < head_end {
        for i in head_end..size {
            // SAFETY: `i < size`, inside the block.
            if unsafe { p.add(i).read() } != (word(tag, i) >> 3) as u8 {
                return Err(i);
            }
        }
    }
    for o in offsets(size) {
        // SAFETY: `o + 8 <= size` for every offset, so the word is inside the block.
        if unsafe { ptr::read_unaligned(p.add(o).cast::<u64>()) } != word(tag, o) {
            return Err(o);
        }
    }
    Ok(())
}

/// [`verify`], ending the program with a message naming `what` on a mismatch.
///
/// # Safety
///
/// `p` is valid for reads of `size` bytes.
#[inline]
pub unsafe fn check(what: &str, p: *const u8, size: usize, tag: u64) {
    // SAFETY: forwarded from the caller.
    if let Err(offset) = unsafe { verify(p, size, tag) } {
        fail(format_args!(
            "{what}: block {p:p} of {size} bytes (tag {tag:#018x}) differs at offset {offset}"
        ));
    }
}

/// [`check`], then [`free`].
///
/// # Safety
///
/// `p` is a live block of at least `size` bytes from [`alloc`] or [`realloc`]; it is freed.
#[inline]
pub unsafe fn check_free(what: &str, p: *mut u8, size: usize, tag: u64) {
    // SAFETY: forwarded from the caller.
    unsafe {
        check(what, p, size, tag);
        free(p);
    }
}

/// [`alloc`], then [`stamp`] with `tag`.
#[inline]
pub fn alloc_stamped(size: usize, tag: u64) -> *mut u8 {
    let p = alloc(size);
    // SAFETY: `p` is a fresh block of `size` bytes.
    unsafe { stamp(p, size, tag) };
    p
}

/// Writes every byte of the `size` bytes at `p`, `passes` times over, with volatile writes (so
/// each reaches memory, as a program updating an object would), then checks the last values.
/// `salt` varies the values between objects. This is the work of the false-sharing tests: its
/// speed depends on whether another thread writes to the same cache line.
///
/// # Safety
///
/// `p` is valid for reads and writes of `size` bytes and no other thread uses them.
#[inline]
pub unsafe fn write_repeatedly(p: *mut u8, size: usize, passes: usize, salt: usize) {
    for r in 0..passes {
        for k in 0..size {
            // SAFETY: `k < size`, inside the block the caller owns.
            unsafe { ptr::write_volatile(p.add(k), (r + k + salt) as u8) };
        }
    }
    for k in 0..size {
        let want = (passes.wrapping_sub(1) + k + salt) as u8;
        // SAFETY: as above.
        let got = unsafe { ptr::read_volatile(p.add(k)) };
        if passes > 0 && got != want {
            fail(format_args!(
                "object {p:p} byte {k}: read {got:#04x}, wrote {want:#04x}"
            ));
        }
    }
}

/// One live block of a workload: where it is, its size and its pattern's tag.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// The block, or null for an empty slot.
    pub ptr: *mut u8,
    /// Its size in bytes.
    pub size: usize,
    /// The tag its pattern was stamped with.
    pub tag: u64,
}

// SAFETY: a slot names a block of the process-wide heap; whichever thread holds the slot is
// the only one that uses the block, so moving it to another thread is sound.
unsafe impl Send for Slot {}

impl Slot {
    /// An empty slot.
    pub const EMPTY: Slot = Slot {
        ptr: ptr::null_mut(),
        size: 0,
        tag: 0,
    };

    /// A fresh stamped block of `size` bytes.
    #[inline]
    pub fn new(size: usize, tag: u64) -> Slot {
        Slot {
            ptr: alloc_stamped(size, tag),
            size,
            tag,
        }
    }

    /// Checks the block's pattern and frees it (nothing for an empty slot); the slot is empty
    /// afterwards.
    #[inline]
    pub fn release(&mut self, what: &str) {
        if !self.ptr.is_null() {
            // SAFETY: a non-empty slot holds a live block of `size` bytes stamped with `tag`.
            unsafe { check_free(what, self.ptr, self.size, self.tag) };
            *self = Slot::EMPTY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_buf(buf: &mut [u8], t: u64) {
        // SAFETY: the slice is valid for writes of its length.
        unsafe { stamp(buf.as_mut_ptr(), buf.len(), t) }
    }

    fn verify_buf(buf: &[u8], t: u64) -> Result<(), usize> {
        // SAFETY: the slice is valid for reads of its length.
        unsafe { verify(buf.as_ptr(), buf.len(), t) }
    }

    #[test]
    fn every_size_round_trips_and_a_changed_byte_is_caught() {
        for size in (1..300).chain([4095, 4096, 4097, 8191, 8192, 20_000, 70_001]) {
            let mut buf = vec![0u8; size];
            let t = tag(1, size as u64);
            stamp_buf(&mut buf, t);
            assert_eq!(verify_buf(&buf, t), Ok(()), "{size}");
            assert!(verify_buf(&buf, t ^ 1).is_err(), "{size}");
            // The first and the last byte are always covered.
            for i in [0, size - 1] {
                buf[i] ^= 0x40;
                assert!(verify_buf(&buf, t).is_err(), "{size} {i}");
                buf[i] ^= 0x40;
            }
        }
    }

    #[test]
    fn small_blocks_are_covered_in_full() {
        for size in 1..=HEAD + 8 {
            let mut buf = vec![0u8; size];
            stamp_buf(&mut buf, 0x0123_4567_89ab_cdef);
            for i in 0..size {
                buf[i] ^= 1;
                let r = verify_buf(&buf, 0x0123_4567_89ab_cdef);
                assert!(r.is_err(), "size {size}, byte {i} not covered");
                buf[i] ^= 1;
            }
        }
    }

    #[test]
    fn offsets_do_not_overlap_and_touch_every_page() {
        for size in [8, 9, 63, 64, 65, 4100, 12_288, 1 << 20] {
            let offs: Vec<usize> = offsets(size).collect();
            for w in offs.windows(2) {
                assert!(w[0] + 8 <= w[1], "{size}: {offs:?}");
            }
            assert!(*offs.last().unwrap() + 8 <= size);
            for page in 0..size.div_ceil(PAGE) {
                let touched = offs
                    .iter()
                    .any(|&o| o / PAGE == page || (o + 7) / PAGE == page);
                assert!(touched, "{size}: page {page}");
            }
        }
    }

    #[test]
    fn repeated_writes_leave_the_last_pass() {
        let mut buf = [0u8; 8];
        // SAFETY: `buf` holds 8 bytes.
        unsafe { write_repeatedly(buf.as_mut_ptr(), 8, 3, 5) };
        assert_eq!(buf, [7, 8, 9, 10, 11, 12, 13, 14]);
    }

    #[test]
    fn malloc_blocks_round_trip() {
        let mut s = Slot::new(100, tag(0, 1));
        s.release("test");
        assert!(s.ptr.is_null());
        let p = alloc_stamped(10, 5);
        // SAFETY: `p` is a live block of 10 bytes; realloc keeps its content.
        unsafe {
            let q = realloc(p, 1000);
            check("grown", q, 10, 5);
            free(q);
        }
    }
}
