//! Untyped entry points, for a C ABI: allocation by size and alignment, and free, usable size
//! and realloc from the pointer alone.
//!
//! Rust's `GlobalAlloc` is told the layout on every free; C's `free` is not. Here the pointer is
//! first looked up in the allocator's own tables, which never read the address itself, so a
//! foreign or wild pointer is safe to ask about: the class index (one byte per chunk, see
//! `registry::ClassIndex`) names the class of an active slab chunk, and
//! anything else goes to the chunk registry, whose entry of a large run carries its base. Every
//! free is checked before it is obeyed, and a bad one is reported
//! (`fam-alloc: OP(0xADDR): WHAT` on stderr) and aborts:
//!
//! - a pointer the allocator does not own (not in a registered chunk);
//! - an interior pointer (not the start of a block of the chunk's class, or of a large block);
//! - a double free: the block's slot is already free in its chunk's bitmap, or the block sits in
//!   a thread's bucket. Every block in a bucket carries a mark in its first word (the block's
//!   address plus the odd constant `FREE_MARK`): a free through this module writes it, a refill of this
//!   module's slow paths writes it on the blocks it puts in a bucket, and the allocation path
//!   clears it. `realloc` and
//!   `malloc_usable_size` refuse a marked block too. The bucket holds block addresses and never
//!   touches a block, so the first word is free for the mark, and every block has one, the
//!   8-byte class's too.
//!
//! [`free`], [`realloc`] and [`usable_size`] take the blocks this module hands out, the C ABI's.
//! A block that `FamAlloc` handed out through Rust's `GlobalAlloc` (which is told the layout and
//! skips these checks) may still carry the mark a refill wrote while it was cached, and is not
//! theirs to take.
//!
//! What is not caught: a free of a block that was freed and has since been handed out again (it
//! is a live block then), a second free of a block whose program wrote over its first word
//! after the first free (a use after free that erased the mark), a `realloc` that stays in
//! place of a freed block whose mark is gone (it writes nothing; `realloc` skips the bitmap,
//! see `Check::Mark`, and a `realloc` that moves the block is checked in full by its `free`),
//! and, in a process that uses `FamAlloc` and this module together, a free of a block that a
//! `FamAlloc` refill cached and nobody was handed (`FamAlloc` writes no marks: Rust's
//! `GlobalAlloc` never needs them).
//!
//! The fast paths ([`alloc_small`], [`free`]) are written to stay in their callers with nothing
//! saved on the stack: every slow path (refill, flush, a thread's first access, a report) is an
//! out-of-line call, and every exit from them is a tail jump (see [`free`]). Through the C
//! library `malloc` is about 17 instructions and `free` about 36, about 27 of them the class
//! lookup and the checks above (the README gives the count of a loop and its command).

use core::ptr::{self, NonNull};

use large_alloc::LargeAlloc;
use size_class::Fine;

use crate::class::{CLASSES, MAX_SMALL_ALIGN};
use crate::global::{
    class_index, large_alloc, large_alloc_zeroed, large_free, large_realloc, registry, OsSource,
};
use crate::local::{alloc_counted, dealloc_counted, pop_counted, push_counted, GlobalStore};
use crate::registry::Kind;
use crate::report;
/// The slab class of a request, or `None` for the large path (a `const fn`, for tables).
pub use slab_pool::class::small_class;
/// The number of slab classes: every class [`small_class`] gives is below it.
pub use slab_pool::class::NUM_CLASSES;
use slab_pool::class::SLOT_TEST;
use slab_pool::ChunkHeader;
use thread_heap::CentralStore;

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
    // The environment was read just now; no thread heap is held here.
    crate::background::ensure();
}

/// Prints `fam-alloc: OP(0xVALUE): WHAT` on stderr and aborts, allocating nothing: how the C
/// library reports what it cannot go on from.
#[cold]
pub fn fail(op: &str, value: usize, what: &str) -> ! {
    report::bad_free(op, value, what)
}

/// What a free through this module writes into a block's first word, added to the block's
/// address: a value no program stores there by accident. It is odd, so the mark is never an
/// aligned pointer (a self-pointer, as in an empty circular list, or a pointer to a neighbour),
/// and it differs per block and, through address-space layout randomisation, per run. It fits in
/// 32 bits, so the mark is one `lea` from the address (a 64-bit constant would need a load of
/// the constant and an operation more on every `free`). It guards against mistakes, not
/// attackers.
const FREE_MARK: usize = 0x5bd1_e995;

static_assertions::const_assert!(FREE_MARK % 2 == 1 && FREE_MARK <= i32::MAX as usize);

/// The mark of a free block at `addr`.
#[inline(always)]
fn free_mark(addr: usize) -> usize {
    addr.wrapping_add(FREE_MARK)
}

/// The global heap's store as this module's slow paths use it: [`GlobalStore`], plus the free
/// mark on the blocks of every refill, which go into a bucket. A cached block must carry the
/// mark whether a free put it there or a refill did, or a `free` of a slot that was claimed for
/// a bucket but never handed out would pass every check (its bitmap bit says "out").
/// `FamAlloc`'s paths use `GlobalStore` itself and write nothing into the blocks they cache:
/// Rust's `GlobalAlloc` trusts its layouts and never asks.
struct MarkingStore;

// SAFETY: forwards to `GlobalStore`; the marks are written into blocks the refill just handed
// over, which nobody else holds.
unsafe impl CentralStore for MarkingStore {
    #[inline]
    fn refill(&self, class: usize, out: &mut [*mut thread_heap::Block]) -> usize {
        let n = GlobalStore.refill(class, out);
        for &b in &out[..n] {
            // SAFETY: the refill's blocks are free and ours, at least one word long.
            unsafe { b.cast::<usize>().write(free_mark(b as usize)) };
        }
        n
    }

    #[inline]
    unsafe fn flush(&self, class: usize, blocks: &[NonNull<thread_heap::Block>]) {
        // SAFETY: forwarded under the trait's contract.
        unsafe { GlobalStore.flush(class, blocks) }
    }

    #[inline]
    fn cap(&self, class: usize) -> u32 {
        GlobalStore.cap(class)
    }

    #[inline]
    fn room(&self, class: usize) -> u32 {
        GlobalStore.room(class)
    }

    #[inline]
    fn grow(&self, class: usize, cap: u32) -> u32 {
        GlobalStore.grow(class, cap)
    }

    #[inline]
    fn shrink(&self, class: usize, cap: u32) -> u32 {
        GlobalStore.shrink(class, cap)
    }

    #[inline]
    fn divert(&self) -> bool {
        GlobalStore.divert()
    }

    #[inline]
    fn shed(&self) -> bool {
        GlobalStore.shed()
    }
}

/// Allocates `size` bytes aligned to `align` (a power of two), or returns null when memory is
/// exhausted or the request cannot be met. A request of 0 bytes gets a unique minimal block.
#[inline]
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    match small_class(size, align) {
        Some(class) => alloc_small(class),
        None if size > isize::MAX as usize - MAX_SMALL_ALIGN => ptr::null_mut(),
        None => large_alloc(size, align),
    }
}

/// Allocates a block of slab class `class` (below [`NUM_CLASSES`], as [`small_class`] gives), or
/// returns null when memory is exhausted: the fast path of a caller that knows the class already
/// (the C library's `malloc` looks it up in a table). A pop from the thread's bucket; everything
/// else is in `alloc_small_slow`, so the fast path saves no registers.
#[inline(always)]
pub fn alloc_small(class: usize) -> *mut u8 {
    let p = pop_small(class);
    if !p.is_null() {
        return p;
    }
    alloc_small_slow(class % NUM_CLASSES)
}

/// The fast path of [`alloc_small`] alone: a block of `class` from the thread's bucket, or null
/// when the bucket is empty (a new thread's always is; then [`alloc`] does the rest). For a
/// caller with slow-path work of its own (the C library's `malloc` sets `errno`), so that it can
/// leave through one tail call and keep the fast path free of a stack frame.
#[inline(always)]
pub fn pop_small(class: usize) -> *mut u8 {
    match pop_counted(class % NUM_CLASSES) {
        Some(p) => handed_out(p.as_ptr()),
        None => ptr::null_mut(),
    }
}

/// [`alloc_small`] when the bucket is empty.
/// `extern "C"` (see [`free`]): the call can be a tail call.
#[cold]
#[inline(never)]
extern "C" fn alloc_small_slow(class: usize) -> *mut u8 {
    let p = alloc_counted(class, &MarkingStore);
    // Outside the thread's heap, where starting the background thread may allocate.
    crate::background::ensure();
    match p {
        Some(p) => handed_out(p.as_ptr()),
        None => ptr::null_mut(),
    }
}

/// A block on its way to the program: its free mark is cleared, so that a live block never
/// looks freed.
#[inline(always)]
fn handed_out(p: *mut u8) -> *mut u8 {
    // SAFETY: the block is ours and at least one word long.
    unsafe { p.cast::<usize>().write(0) };
    p
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
    large_alloc_zeroed(size, align)
}

/// What `ptr` is, checked: a slab block of a class, or a large block. Reports and aborts (naming
/// `op`) when it is neither.
enum Owned {
    Small { class: usize },
    Large,
}

/// How much of a slab block [`classify`] checks beyond its being the start of a block of an
/// active chunk, and not marked free.
#[derive(Clone, Copy)]
enum Check {
    /// Also that the block is out in its chunk's bitmap: everything `free` checks.
    Bitmap,
    /// Not the bitmap: for `realloc`, whose only way to give a block up is [`free`], which
    /// checks it in full before anything changes. Without the bitmap a `realloc` in place (which
    /// writes nothing) of a block that went back to its chunk and lost its mark (its page was
    /// purged, or the program wrote over it) is not reported; one that moves the block still is,
    /// by that `free`. The bitmap word was half of `classify`'s time in the `realloc` workload:
    /// it lies in the chunk's header, far from the block, and misses the cache.
    Mark,
}

#[inline(always)]
fn classify(op: &str, ptr: *mut u8, check: Check) -> Owned {
    let addr = ptr as usize;
    // The class index first, as `free` does: most pointers asked about are live slab blocks.
    let checked = match class_index().class_of(addr) {
        Some(class) => {
            // SAFETY: as in `free`: an active slab chunk of the global pool, never unmapped.
            let chunk = unsafe { &*ChunkHeader::of(addr) };
            match check {
                Check::Bitmap => chunk.check_block(class, addr).map(|()| class),
                Check::Mark => chunk
                    .slot_of(class, addr)
                    .map(|_| class)
                    .ok_or(slab_pool::BadBlock::Interior),
            }
        }
        None => {
            let Some(entry) = registry().lookup(addr) else {
                report::bad_free(op, addr, "pointer not allocated by fam-alloc");
            };
            match entry.kind {
                // The registry knows the one live payload of the run: nothing at `ptr` is read
                // first.
                Kind::Large if addr == entry.payload => return Owned::Large,
                Kind::Large => report::bad_free(op, addr, "not the start of a large block"),
                // SAFETY: the registry lists the chunk as a slab, and slab chunks are never
                // unmapped.
                Kind::Slab => unsafe { &*ChunkHeader::of(addr) }.block_class(addr),
            }
        }
    };
    match checked {
        // SAFETY: a claimed block is at least one word long.
        Ok(_) if unsafe { is_marked(ptr) } => double_free(op, addr),
        Ok(class) => Owned::Small { class },
        Err(bad) => report::bad_free(op, addr, bad.message()),
    }
}

/// Whether the block at `ptr` carries the free mark: it sits in a bucket.
///
/// # Safety
/// `ptr` is the start of a claimed slab block.
#[inline(always)]
unsafe fn is_marked(ptr: *mut u8) -> bool {
    // SAFETY: per the contract, the first word is inside the block.
    unsafe { ptr.cast::<usize>().read() == free_mark(ptr as usize) }
}

/// Frees `ptr` (null is ignored), checking it first; `op` names the caller in messages.
///
/// The fast path: one load of the class index gives the code of the class the pointer's chunk
/// serves (0 for any other address: null, large blocks, foreign pointers, retired chunks), the
/// block-start test of that code says that the pointer starts a slot (a code of no class has no
/// slots, so its test fails and needs no test of its own first), the chunk's bitmap says the
/// block is out, the block's first word says it is not in a bucket, and the block goes to the
/// calling thread's bucket. Whatever fails a check leaves for `free_other`, which finds out
/// from the registry what the pointer is and frees or reports it. Nothing is read at the
/// pointer, nor in its chunk, before the test has passed: an address in no chunk of ours reads
/// only the index and the test's tables.
///
/// Every call out of the fast path is a tail call, so the function needs no stack frame, and
/// each out-of-line function takes the pointer as its first argument, where `free` received it,
/// so the fast path keeps it in place and copies nothing (with `op` first, each exit had to move
/// it, and the compiler copied it up front: three moves more). The
/// out-of-line functions are `extern "C"` (an `extern "C"` function cannot unwind, so a caller
/// needs no landing pad around the call, and `free` itself is an `extern "C"` function in the
/// C library, where a call that might unwind could not be a tail call), and the one that
/// reports a refused block returns `()`, not `!` (a call to a `!` function is never a tail call).
///
/// # Safety
/// If `ptr` is a live block this module handed out, nobody uses it after the call.
#[inline(always)]
pub unsafe fn free(op: &str, ptr: *mut u8) {
    let addr = ptr as usize;
    let Some(code) = class_index().code_of(addr) else {
        // SAFETY: forwarded under this function's contract.
        return unsafe { free_other(ptr, op) };
    };
    let Some(slot) = SLOT_TEST.slot(code, ChunkHeader::slot_offset(addr)) else {
        // SAFETY: forwarded under this function's contract.
        return unsafe { free_other(ptr, op) };
    };
    let class = slab_pool::class::code_class(code);
    // SAFETY: only the codes of classes have slots in `SLOT_TEST` (its test
    // `codes_of_no_class_have_no_slot`), so `code` is one, `class_code(class)`, and the
    // per-class tables below need no bounds check.
    unsafe { core::hint::assert_unchecked(class < NUM_CLASSES) };
    // SAFETY: the index names only active slab chunks of the global pool, and slab chunks are
    // never unmapped.
    let chunk = unsafe { &*ChunkHeader::of(addr) };
    // SAFETY: `slot` passed the block-start test of the chunk's class: it is below the class's
    // slot count. If the block is out, it is a claimed slab block; a live block does not hold the
    // mark (see the module docs).
    if !unsafe { chunk.slot_is_out(slot) } || unsafe { is_marked(ptr) } {
        // SAFETY: forwarded under this function's contract.
        return unsafe { free_other(ptr, op) };
    }
    // SAFETY: as above, and the caller gives the block up.
    unsafe { ptr.cast::<usize>().write(free_mark(addr)) };
    // SAFETY: the checks proved `ptr` is the start of a claimed block of `class`, which the
    // caller gives up.
    if !unsafe { push_counted(class, NonNull::new_unchecked(ptr)) } {
        // SAFETY: as above.
        unsafe { free_small_slow(ptr, class) };
    }
}

/// [`free`] of a checked block when its bucket is full (a new thread's always is).
///
/// # Safety
/// `ptr` is the start of a claimed block of `class` that the caller gives up.
#[cold]
#[inline(never)]
unsafe extern "C" fn free_small_slow(ptr: *mut u8, class: usize) {
    // SAFETY: per the contract.
    unsafe { dealloc_counted(class, NonNull::new_unchecked(ptr), &MarkingStore) };
    // As in `alloc_small_slow`.
    crate::background::ensure();
}

/// Reports a block found in a bucket already.
#[cold]
#[inline(never)]
fn double_free(op: &str, addr: usize) -> ! {
    report::bad_free(op, addr, slab_pool::BadBlock::AlreadyFree.message())
}

/// The rest of [`free`]: null (ignored), a large block, a pointer that is not ours or a slab
/// block that failed a check of the fast path (reported), or a block of a chunk that the index
/// did not name yet when the fast path read it (freed).
///
/// # Safety
/// As for [`free`].
#[cold]
#[inline(never)]
#[allow(improper_ctypes_definitions)] // called from Rust only (see `free`)
unsafe extern "C" fn free_other(ptr: *mut u8, op: &str) {
    if ptr.is_null() {
        return;
    }
    match classify(op, ptr, Check::Bitmap) {
        // SAFETY: the registry says `ptr` is in a large run; `large_free` checks the header.
        Owned::Large => unsafe { large_free(ptr) },
        // A slab chunk registered since the caller looked: free it the usual way.
        // SAFETY: forwarded.
        Owned::Small { .. } => unsafe { free(op, ptr) },
    }
}

/// The number of usable bytes of the block at `ptr` (0 for null).
///
/// # Safety
/// `ptr` is null or a live block this module handed out (checked; misuse aborts with a message).
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    if ptr.is_null() {
        return 0;
    }
    match classify("malloc_usable_size", ptr, Check::Bitmap) {
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
/// and the alignment `align` it was allocated with. A slab block stays in place when it holds
/// `new_size` bytes, aligned so, and `new_size` is at least half its size; one that must grow
/// moves to a block of at least a quarter more than its size, while that is a slab block. A
/// large block grows and shrinks as [`large_alloc::LargeAlloc::realloc`] does. Returns null
/// (leaving the block as it was) when memory is exhausted. `ptr` null acts as `alloc`.
///
/// # Safety
/// `ptr` is null or a live block this module handed out allocated with alignment `align`, not used
/// through the old pointer after a successful move.
pub unsafe fn realloc(ptr: *mut u8, new_size: usize, align: usize) -> *mut u8 {
    if ptr.is_null() {
        return alloc(new_size, align);
    }
    // Checked in full by the `free` that ends a move; an in-place answer changes nothing.
    let (old_size, request) = match classify("realloc", ptr, Check::Mark) {
        Owned::Small { class } => {
            let size = CLASSES[class].size as usize;
            // In place when the block holds `new_size` with the alignment asked for and
            // `new_size` is at least half of it (or the block is of the smallest class): a
            // shrink to half or more keeps its block, as in mimalloc and tcmalloc.
            if new_size <= size
                && (2 * new_size >= size || class == 0)
                && (ptr as usize) & (align - 1) == 0
            {
                return ptr;
            }
            // A growth asks for a quarter more than the old block at least (tcmalloc's rule),
            // while that is still a slab request: a buffer grown in small steps then moves once
            // per one or two classes instead of once per class (the `realloc` workload copied
            // about half as much).
            let grown = new_size.max(size + size / 4);
            let request = if new_size > size && small_class(grown, align).is_some() {
                grown
            } else {
                new_size
            };
            (size, request)
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
            (unsafe { usable_size(ptr) }, new_size)
        }
    };
    let p = alloc(request, align);
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
