//! Untyped entry points, for a C ABI: allocation by size and alignment, and free, usable size
//! and realloc from the pointer alone.
//!
//! Rust's `GlobalAlloc` is told the layout on every free; C's `free` is not. Here the pointer is
//! first looked up in the chunk registry (which reads only the allocator's own tables, so a
//! foreign or wild pointer is safe to ask about), then its chunk says what it is: a slab chunk's
//! header names its class, a large run's header its size. Every free is checked before it is
//! obeyed, and a bad one is reported (`fam-alloc: OP(0xADDR): WHAT` on stderr) and aborts:
//!
//! - a pointer the allocator does not own (not in a registered chunk);
//! - an interior pointer (not the start of a block of the chunk's class, or of a large block);
//! - a double free: the block's slot is already free in its chunk's bitmap, or the block sits in
//!   a thread's bucket, which a free through this module marks with a per-process secret in the
//!   block's second word (blocks of 16 bytes and more; the allocation path clears it).
//!
//! What is not caught: a double free of an 8-byte block still cached in a bucket, and a free of a
//! block that was freed and has since been handed out again (it is a live block then).

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

use large_alloc::LargeAlloc;
use size_class::Fine;

use crate::class::{small_class, CLASSES, MAX_SMALL_ALIGN};
use crate::global::{large_alloc, large_free, large_realloc, registry, OsSource};
use crate::local::{with_local, GlobalStore};
use crate::registry::Kind;
use crate::report;
use slab_pool::ChunkHeader;

/// Sets up what thread registration needs before the program runs: the pthread key whose
/// destructor flushes a thread's heap at exit. A C library calls this from a load-time
/// constructor. It matters when the program creates more than 32 keys of its own before its first
/// allocation: a key created after those lives in glibc's second-level key array, and setting it
/// during a thread's first allocation can be undone by the `pthread_setspecific` that the
/// allocation is nested in (glibc installs a second-level array allocated by the outer call over
/// the one the nested call installed), so the thread would exit without flushing its heap or
/// leaving the statistics' thread list. One of the first 32 keys is stored inline and never lost.
pub fn init() {
    crate::local::init_exit_key();
}

/// The secret that marks a block freed through this module; chosen once per process.
static FREE_MARK: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn free_mark() -> usize {
    let m = FREE_MARK.load(Ordering::Relaxed);
    if m != 0 {
        return m;
    }
    init_free_mark()
}

#[cold]
fn init_free_mark() -> usize {
    // Address-space layout randomisation and the clock make a value no program will write by
    // chance; it only has to be unpredictable to accidents, not to attackers.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let seed = (&FREE_MARK as *const AtomicUsize as usize)
        ^ (ts.tv_nsec as usize).rotate_left(32)
        ^ ts.tv_sec as usize;
    let m = mix(seed) | 1;
    match FREE_MARK.compare_exchange(0, m, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => m,
        Err(existing) => existing,
    }
}

/// A 64-bit finaliser (splitmix64's): spreads every input bit over the output.
fn mix(mut z: usize) -> usize {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Allocates `size` bytes aligned to `align` (a power of two), or returns null when memory is
/// exhausted or the request cannot be met. A request of 0 bytes gets a unique minimal block.
#[inline]
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    match small_class(size, align) {
        Some(class) => match with_local(|h, c| {
            let p = h.alloc(class, &GlobalStore);
            c.count_alloc(class);
            p
        }) {
            Some(p) => {
                let p = p.as_ptr().cast::<u8>();
                if CLASSES[class].size >= 16 {
                    // SAFETY: the block is ours and at least two words long; clearing the free
                    // mark keeps a live block from ever looking freed.
                    unsafe { p.cast::<usize>().add(1).write(0) };
                }
                p
            }
            None => ptr::null_mut(),
        },
        None if size > isize::MAX as usize - MAX_SMALL_ALIGN => ptr::null_mut(),
        None => large_alloc(size, align).map_or(ptr::null_mut(), |(p, _)| p),
    }
}

/// Allocates `size` zeroed bytes aligned to `align`, skipping the zeroing when the memory comes
/// straight from the OS.
pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    if small_class(size, align).is_some() {
        let p = alloc(size, align);
        if !p.is_null() {
            // SAFETY: `p` holds at least `size` writable bytes.
            unsafe { ptr::write_bytes(p, 0, size) };
        }
        return p;
    }
    if size > isize::MAX as usize - MAX_SMALL_ALIGN {
        return ptr::null_mut();
    }
    match large_alloc(size, align) {
        Some((p, true)) => p,
        Some((p, false)) => {
            // SAFETY: `p` holds at least `size` writable bytes.
            unsafe { ptr::write_bytes(p, 0, size) };
            p
        }
        None => ptr::null_mut(),
    }
}

/// What `ptr` is, checked: a slab block of a class, or a large block. Reports and aborts (naming
/// `op`) when it is neither.
enum Owned {
    Small { class: usize },
    Large,
}

#[inline]
fn classify(op: &str, ptr: *mut u8) -> Owned {
    let addr = ptr as usize;
    let Some(entry) = registry().lookup(addr) else {
        report::bad_free(op, addr, "pointer not allocated by fam-alloc");
    };
    match entry.kind {
        Kind::Large if crate::global::large_header_in_run(addr, entry.base) => Owned::Large,
        Kind::Large => report::bad_free(op, addr, "not the start of a large block"),
        Kind::Slab => {
            // SAFETY: the registry lists the chunk as a slab, and slab chunks are never unmapped.
            match unsafe { &*ChunkHeader::of(addr) }.block_class(addr) {
                Ok(class) => Owned::Small { class },
                Err(bad) => report::bad_free(op, addr, bad.message()),
            }
        }
    }
}

/// Frees `ptr` (null is ignored), checking it first; `op` names the caller in messages.
///
/// # Safety
/// If `ptr` is a live block of this allocator, nobody uses it after the call.
#[inline]
pub unsafe fn free(op: &str, ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    match classify(op, ptr) {
        Owned::Small { class } => {
            if CLASSES[class].size >= 16 {
                let mark = free_mark() ^ ptr as usize;
                let second = ptr.cast::<usize>().wrapping_add(1);
                // SAFETY: the block is a claimed slab block of at least 16 bytes, so its second
                // word is readable; a live block does not hold the mark (see the module docs).
                if unsafe { second.read() } == mark {
                    report::bad_free(op, ptr as usize, "double free (block already free)");
                }
                // SAFETY: as above, and the caller gives the block up.
                unsafe { second.write(mark) };
            }
            with_local(|h, c| {
                // SAFETY: `classify` proved `ptr` is the start of a claimed block of `class`.
                unsafe { h.dealloc(class, NonNull::new_unchecked(ptr), &GlobalStore) };
                c.count_free(class);
            });
        }
        // SAFETY: the registry says `ptr` is in a large run; `large_free` checks the header.
        Owned::Large => unsafe { large_free(ptr) },
    }
}

/// The number of usable bytes of the block at `ptr` (0 for null).
///
/// # Safety
/// `ptr` is null or a live block of this allocator (checked; misuse aborts with a message).
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    if ptr.is_null() {
        return 0;
    }
    match classify("malloc_usable_size", ptr) {
        Owned::Small { class } => CLASSES[class].size as usize,
        Owned::Large => {
            // SAFETY: the registry says `ptr` is in a large run; the header read checks the magic.
            match unsafe { LargeAlloc::<OsSource>::usable_size(NonNull::new_unchecked(ptr)) } {
                Ok(n) => n,
                Err(_) => report::bad_free(
                    "malloc_usable_size",
                    ptr as usize,
                    "not the start of a large block",
                ),
            }
        }
    }
}

/// Resizes the block at `ptr` to `new_size` bytes, keeping its content up to the smaller size
/// and the alignment `align` it was allocated with. Stays in place when the block's class does
/// not change. Returns null (leaving the block as it was) when memory is exhausted. `ptr` null
/// acts as `alloc`.
///
/// # Safety
/// `ptr` is null or a live block of this allocator allocated with alignment `align`, not used
/// through the old pointer after a successful move.
pub unsafe fn realloc(ptr: *mut u8, new_size: usize, align: usize) -> *mut u8 {
    if ptr.is_null() {
        return alloc(new_size, align);
    }
    let old_size = match classify("realloc", ptr) {
        Owned::Small { class } => {
            if small_class(new_size, align) == Some(class) {
                return ptr;
            }
            CLASSES[class].size as usize
        }
        Owned::Large => {
            if small_class(new_size, align).is_none() && align <= chunk_source::CHUNK_SIZE {
                if new_size > isize::MAX as usize - MAX_SMALL_ALIGN {
                    return ptr::null_mut();
                }
                // SAFETY: `ptr` is a live large block (registry and header checked by the call).
                return unsafe { large_realloc(ptr, new_size) };
            }
            // SAFETY: as in `usable_size`.
            unsafe { usable_size(ptr) }
        }
    };
    let p = alloc(new_size, align);
    if !p.is_null() {
        // SAFETY: both blocks hold at least the smaller size and are distinct.
        unsafe { ptr::copy_nonoverlapping(ptr, p, old_size.min(new_size)) };
        // SAFETY: the old block is live and the caller gives it up on success.
        unsafe { free("realloc", ptr) };
    }
    p
}

/// The smallest block size a request of `size` bytes gets (for `malloc_usable_size` semantics
/// and tests).
pub fn block_size(size: usize) -> Option<usize> {
    Fine::class_of(size).map(|c| CLASSES[c].size as usize)
}
