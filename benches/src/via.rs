//! `Via`: any `GlobalAlloc` as an `allocator_api2` allocator.
//!
//! Collections that take an allocator (allocator-api2's `Vec` and `Box`, hashbrown's `HashMap`)
//! call `allocate`/`grow`/`shrink`/`deallocate`; `Via` turns them into the matching
//! `GlobalAlloc` calls, so a collection benchmark measures the allocator the way a program with
//! it as `#[global_allocator]` would use it: `grow` and `shrink` become `realloc` whenever the
//! alignment stays the same, as the standard library's adapter does.
//!
//! `GlobalAlloc` may not be asked for zero bytes, so zero-sized requests never reach it: they get
//! a dangling, well-aligned pointer, and freeing one does nothing.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator};

/// A `GlobalAlloc` seen as an [`Allocator`]. Use `&Via<A>` as the allocator of a collection
/// (allocator-api2 implements `Allocator` for references to allocators).
///
/// ```
/// use allocator_api2::vec::Vec;
/// use fam_benches::Via;
///
/// let via = Via(std::alloc::System);
/// let mut v = Vec::new_in(&via);
/// v.extend_from_slice(&[1u32, 2, 3]);
/// assert_eq!(v.iter().sum::<u32>(), 6);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Via<A: GlobalAlloc>(pub A);

/// A non-null pointer to no bytes, aligned to `layout.align()`.
fn dangling(layout: Layout) -> NonNull<[u8]> {
    // `align` is a non-zero power of two, so the address is non-null and aligned.
    let p = ptr::without_provenance_mut::<u8>(layout.align());
    NonNull::slice_from_raw_parts(NonNull::new(p).unwrap_or(NonNull::dangling()), 0)
}

/// The block `p` of `len` bytes, or `AllocError` when the allocator returned null.
fn block(p: *mut u8, len: usize) -> Result<NonNull<[u8]>, AllocError> {
    NonNull::new(p)
        .map(|p| NonNull::slice_from_raw_parts(p, len))
        .ok_or(AllocError)
}

impl<A: GlobalAlloc> Via<A> {
    /// Moves a block to a new allocation of `new`: allocate, copy the first `copy` bytes, free
    /// the old one. For alignment changes, which `realloc` cannot do.
    ///
    /// # Safety
    /// `ptr` is a block of this allocator allocated with `old` (dangling when `old` has size 0),
    /// `copy <= min(old.size(), new.size())`, and `new.size() > 0`.
    unsafe fn relocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        copy: usize,
        zeroed: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `new` has a non-zero size (caller's contract).
        let p = unsafe {
            if zeroed {
                self.0.alloc_zeroed(new)
            } else {
                self.0.alloc(new)
            }
        };
        let out = block(p, new.size())?;
        // SAFETY: the old block holds at least `copy` bytes, the new one too, and a fresh block
        // does not overlap a live one.
        unsafe { ptr::copy_nonoverlapping(ptr.as_ptr(), p, copy) };
        // SAFETY: `ptr` was allocated with `old` (caller's contract) and is given up now.
        unsafe { self.deallocate(ptr, old) };
        Ok(out)
    }
}

// SAFETY: every non-empty block comes from `GlobalAlloc::alloc`/`alloc_zeroed`/`realloc` of the
// same inner allocator with a layout of the requested size and alignment, and goes back to
// `dealloc`/`realloc` with that layout; `Via` holds no state of its own, so copies and references
// all reach the same allocator. Zero-sized blocks are dangling and never passed to it.
unsafe impl<A: GlobalAlloc> Allocator for Via<A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        // SAFETY: the layout has a non-zero size.
        block(unsafe { self.0.alloc(layout) }, layout.size())
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        // SAFETY: the layout has a non-zero size.
        block(unsafe { self.0.alloc_zeroed(layout) }, layout.size())
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: the caller passes a block of this allocator with the layout it was
            // allocated with; non-empty blocks came from the inner allocator.
            unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
        }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() != 0 && old.align() == new.align() {
            // SAFETY: `ptr` is a live block of `old` (caller's contract), `new.size()` is
            // non-zero (it is at least `old.size()`) and a valid layout size for that alignment.
            let p = unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) };
            return block(p, new.size());
        }
        if new.size() == 0 {
            return Ok(dangling(new));
        }
        // SAFETY: forwarded contract; `old.size() <= new.size()`.
        unsafe { self.relocate(ptr, old, new, old.size(), false) }
    }

    #[inline]
    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() != 0 && old.align() == new.align() {
            // SAFETY: as in `grow`.
            let p = unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) };
            let out = block(p, new.size())?;
            // SAFETY: the block holds `new.size()` bytes; the tail past `old.size()` is ours to
            // write.
            unsafe { p.add(old.size()).write_bytes(0, new.size() - old.size()) };
            return Ok(out);
        }
        if new.size() == 0 {
            return Ok(dangling(new));
        }
        // SAFETY: forwarded contract; the fresh block is zeroed and the old bytes copied over it.
        unsafe { self.relocate(ptr, old, new, old.size(), true) }
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() == 0 {
            // SAFETY: `ptr` is a live block of `old`; it is given up.
            unsafe { self.deallocate(ptr, old) };
            return Ok(dangling(new));
        }
        if old.align() == new.align() {
            // SAFETY: `ptr` is a live block of `old` (non-empty, since `new.size()` is non-zero
            // and at most `old.size()`), and `new.size()` is non-zero.
            let p = unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) };
            return block(p, new.size());
        }
        // SAFETY: forwarded contract; `new.size() <= old.size()`.
        unsafe { self.relocate(ptr, old, new, new.size(), false) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn grow_keeps_contents_and_zeroes_the_tail() {
        let via = Via(System);
        let old = Layout::from_size_align(24, 8).unwrap();
        let p = via.allocate(old).unwrap().cast::<u8>();
        // SAFETY: the block holds 24 bytes.
        unsafe { p.as_ptr().write_bytes(0xAB, 24) };
        for new in [
            Layout::from_size_align(4000, 8).unwrap(),
            Layout::from_size_align(4000, 256).unwrap(),
        ] {
            // SAFETY: `p` is a live block of `old`; a fresh copy is made for each case.
            let q = unsafe {
                let src = via.allocate(old).unwrap().cast::<u8>();
                ptr::copy_nonoverlapping(p.as_ptr(), src.as_ptr(), 24);
                via.grow_zeroed(src, old, new).unwrap().cast::<u8>()
            };
            assert_eq!(q.as_ptr() as usize % new.align(), 0);
            // SAFETY: the grown block holds `new.size()` initialised bytes.
            let bytes = unsafe { core::slice::from_raw_parts(q.as_ptr(), new.size()) };
            assert!(bytes[..24].iter().all(|&b| b == 0xAB));
            assert!(bytes[24..].iter().all(|&b| b == 0));
            // SAFETY: `q` is a live block of `new`.
            unsafe { via.deallocate(q, new) };
        }
        // SAFETY: `p` is a live block of `old`.
        unsafe { via.deallocate(p, old) };
    }

    #[test]
    fn shrink_to_zero_and_zero_sized_blocks() {
        let via = Via(System);
        let old = Layout::from_size_align(64, 16).unwrap();
        let p = via.allocate(old).unwrap().cast::<u8>();
        let zero = Layout::from_size_align(0, 16).unwrap();
        // SAFETY: `p` is a live block of `old`.
        let z = unsafe { via.shrink(p, old, zero) }.unwrap();
        assert_eq!(z.len(), 0);
        assert_eq!(z.cast::<u8>().as_ptr() as usize % 16, 0);
        // SAFETY: a zero-sized block may be grown from and freed.
        let g = unsafe { via.grow(z.cast(), zero, old) }.unwrap();
        assert_eq!(g.len(), 64);
        // SAFETY: `g` is a live block of `old`; freeing a zero-sized block does nothing.
        unsafe {
            via.deallocate(g.cast(), old);
            via.deallocate(z.cast(), zero);
        }
    }
}
