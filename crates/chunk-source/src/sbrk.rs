//! Chunks from the program break (`sbrk`).
//!
//! Growth: the break is one per process and other code (libc's `malloc`, the program itself)
//! may move it between our calls, so nothing about it is remembered. Under a spin lock, `alloc`
//! reads the break (`sbrk(0)`), asks for the padding up to the next chunk boundary plus the run
//! (`sbrk(pad + len)`), and takes the aligned run inside what `sbrk` actually returned. If the
//! break moved between the two calls the aligned run may not fit; the source then asks for the
//! missing bytes and keeps the run if they came contiguously, else leaves that piece unused and
//! starts over (a few times, then it reports out of memory). Pages past the old break are fresh
//! from the kernel and read as zero.
//!
//! Reuse: the break cannot shrink safely below memory that others may have placed above it, so
//! freed runs go on a free list instead. The list is intrusive: a free run's first bytes hold a
//! [`FreeRun`] header (next run, length in chunks). It is sorted by address and neighbours are
//! merged, so runs freed one chunk at a time can serve a longer request later. `alloc` takes the
//! first run that is long enough, splitting off its tail if it is longer.
//!
//! When the break cannot grow, runs come from private anonymous mappings instead (as glibc's
//! `malloc` does): something may sit right above the break, or `RLIMIT_DATA` forbids growing
//! it. One case is out of every program's hands: a child forked while another thread of the
//! parent was growing the break can inherit a heap mapping that already reaches past its break
//! (the kernel copies the break and the mappings at different moments), and no `brk` call can
//! ever succeed in it. Such runs are zero like fresh break memory, and are freed and reused
//! through the same free list: nothing here ever unmaps or lowers anything.
//!
//! Zeroed memory: `dealloc` drops the pages of a run with `MADV_DONTNEED` (which also gives
//! them back to the OS) before it is listed, so a free run reads as zero except for its header,
//! and a header is cleared whenever its run is handed out or merged into a neighbour.
//!
//! Thread safety: all growth and list changes happen under one process-wide spin lock, so
//! threads using this source never race each other on the break. Code that moves the break
//! outside this source at the very same moment (between our `sbrk(0)` and `sbrk(n)`) is
//! detected as above; `brk` has no atomic increment, so a truly simultaneous `sbrk` elsewhere
//! (glibc takes its own lock, not ours) cannot be excluded.

use core::mem::{self, MaybeUninit};
use core::ptr::{self, NonNull};

use static_assertions::{assert_eq_size, const_assert};

use crate::spin::SpinMutex;
use crate::{
    align_up, check_chunk_aligned, check_page_range, chunk_bytes, owned_chunk_bytes, sys,
    ChunkError, ChunkSource, SourceProps, CHUNK_SIZE,
};

/// How many times `alloc` starts over when the break moves under it before giving up.
const GROW_TRIES: usize = 8;

/// Header at the start of a free run.
///
/// Invariant: `chunks >= 1`; `[self, self + chunks * CHUNK_SIZE)` was handed out by this source,
/// given back, and reads as zero past this header; `next` is null or a free run at a higher
/// address that does not touch this one (touching runs are merged).
#[repr(C)]
struct FreeRun {
    next: *mut FreeRun,
    chunks: usize,
}

assert_eq_size!(FreeRun, [usize; 2]);
const_assert!(mem::size_of::<FreeRun>() <= 4096);

/// The free list: sorted by address, no two runs touching.
struct FreeList {
    head: *mut FreeRun,
}

// SAFETY: the runs the list points to are memory of this process owned by the list; moving the
// list to another thread moves that ownership with it.
unsafe impl Send for FreeList {}

/// The free list, and the right to move the break on behalf of this source. Taken over in a
/// forked child whose parent had a thread inside this source at the fork (see
/// [`crate::fork`]): the free list, which that thread may have been changing, is dropped (its
/// runs stay mapped, their pages already given back; the child grows the break for new chunks).
static STATE: SpinMutex<FreeList> = SpinMutex::with_repair(
    FreeList {
        head: ptr::null_mut(),
    },
    |list| list.head = ptr::null_mut(),
);

/// Chunks from the program break, grown with `sbrk` and reused through a free list.
///
/// Properties: [`ZEROED`](SourceProps::ZEROED). The break and the free list are process-wide:
/// every `SbrkSource` shares them, so a chunk from one may be given back to another. Memory is
/// never returned by lowering the break; `dealloc` and `decommit` give pages back with
/// `madvise` instead, and freed chunks are handed out again.
///
/// The break has no atomic increment: this source serialises its own use with a spin lock and
/// copes with others moving the break between its calls, but code that calls `sbrk` at the very
/// same moment from another thread can still race it. Use it where nothing else grows the break
/// concurrently (for example when this crate provides `malloc` itself). A child forked while
/// another thread held the spin lock takes it over (see [`crate::fork`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SbrkSource {
    _private: (),
}

impl SbrkSource {
    /// The sbrk source (its state is process-wide, so this is free and can be used in a
    /// `static`).
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

// SAFETY: a run comes either from fresh break growth, aligned inside what `sbrk` returned and
// owned by nobody else, or from the free list, whose runs were given back and are unlinked
// before being handed out; both read as zero (see the module comment).
unsafe impl ChunkSource for SbrkSource {
    #[inline]
    fn props(&self) -> SourceProps {
        SourceProps::ZEROED
    }

    fn alloc(&self, n: usize) -> Result<NonNull<u8>, ChunkError> {
        let len = chunk_bytes(n)?;
        let mut list = STATE.lock();
        // SAFETY: we hold the lock, and the list keeps its invariant.
        if let Some(run) = unsafe { take_free(&mut list, n) } {
            debug_check(&list);
            return Ok(run);
        }
        match grow(len) {
            // The break cannot move (see the module comment): a private anonymous mapping
            // instead, which from then on is kept and reused like break memory.
            Err(ChunkError::OutOfMemory) => sys::map_aligned(len, 0, libc::MAP_PRIVATE),
            r => r,
        }
    }

    unsafe fn dealloc(&self, ptr: NonNull<u8>, n: usize) -> Result<(), ChunkError> {
        let len = owned_chunk_bytes(n)?;
        check_chunk_aligned(ptr)?;
        let start = ptr.as_ptr() as usize;
        let end = start.checked_add(len).ok_or(ChunkError::InvalidArgument)?;
        // Refuse a run that overlaps a free one (a double free) before touching its pages.
        if overlaps_free(&STATE.lock(), start, end) {
            return Err(ChunkError::NotOwned);
        }
        // Drop the content outside the lock: it can take a while for a long run.
        // SAFETY: the caller gives the run back and no longer uses it; it is brk memory, private
        // and anonymous, so it reads as zero afterwards.
        unsafe { sys::discard(ptr.as_ptr(), len, libc::MADV_DONTNEED) };
        let mut list = STATE.lock();
        if overlaps_free(&list, start, end) {
            // A racing give-back of the same run got there first.
            return Err(ChunkError::NotOwned);
        }
        // SAFETY: we hold the lock; the run is ours, zero, and overlaps no free run.
        unsafe { insert_free(&mut list, ptr.as_ptr(), n) };
        Ok(())
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ChunkError> {
        check_page_range(ptr, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the caller names pages of chunks we handed out and accepts losing their
        // content; brk memory is private and anonymous, so it reads as zero afterwards.
        unsafe { sys::advise(ptr.as_ptr(), len, libc::MADV_DONTNEED) }
    }
}

/// Moves the break up by enough to hold an aligned run of `len` bytes, and returns that run.
/// Called with the lock held.
fn grow(len: usize) -> Result<NonNull<u8>, ChunkError> {
    for _ in 0..GROW_TRIES {
        let cur = sbrk(0)? as usize;
        let pad = align_up(cur, CHUNK_SIZE).ok_or(ChunkError::OutOfMemory)? - cur;
        let want = pad.checked_add(len).ok_or(ChunkError::OutOfMemory)?;
        let got = sbrk(want)?;
        // Work from what sbrk returned, not from `cur`: the break may have moved in between.
        let got_addr = got as usize;
        let end = got_addr + want;
        let start = align_up(got_addr, CHUNK_SIZE).ok_or(ChunkError::OutOfMemory)?;
        let run = got.wrapping_add(start - got_addr);
        if start + len <= end {
            return NonNull::new(run).ok_or(ChunkError::OutOfMemory);
        }
        // The break moved under us and the aligned run sticks out past what we got. Ask for
        // the rest; it only helps if it comes right after our piece.
        let more = sbrk(start + len - end)?;
        if more as usize == end {
            return NonNull::new(run).ok_or(ChunkError::OutOfMemory);
        }
        // Both pieces stay unused (the break cannot be lowered safely); try again from the top.
    }
    Err(ChunkError::OutOfMemory)
}

/// `sbrk(incr)`: the old break, or the error.
fn sbrk(incr: usize) -> Result<*mut u8, ChunkError> {
    let incr = libc::intptr_t::try_from(incr).map_err(|_| ChunkError::OutOfMemory)?;
    // SAFETY: growing the break (or reading it, for 0) hands us fresh memory and touches none
    // that exists; libc keeps its own idea of the break in step.
    let p = unsafe { libc::sbrk(incr) };
    if p as usize == usize::MAX {
        Err(sys::last_error())
    } else {
        Ok(p.cast())
    }
}

/// Unlinks (or splits) the first free run of at least `n` chunks and returns its start.
///
/// # Safety
///
/// The caller holds the lock and the list keeps its invariant.
unsafe fn take_free(list: &mut FreeList, n: usize) -> Option<NonNull<u8>> {
    let mut prev: *mut FreeRun = ptr::null_mut();
    let mut cur = list.head;
    while !cur.is_null() {
        // SAFETY: every run on the list starts with a valid header (list invariant).
        let run = unsafe { &mut *cur };
        if run.chunks > n {
            // Split: hand out the tail, which reads as zero; the header stays where it is.
            run.chunks -= n;
            let tail = cur.cast::<u8>().wrapping_add(run.chunks * CHUNK_SIZE);
            return NonNull::new(tail);
        }
        if run.chunks == n {
            let next = run.next;
            if prev.is_null() {
                list.head = next;
            } else {
                // SAFETY: `prev` is the run before `cur` on the list, a valid header.
                unsafe { (*prev).next = next };
            }
            // SAFETY: the header is ours; clearing it makes the whole run read as zero again.
            unsafe { clear_header(cur) };
            return NonNull::new(cur.cast());
        }
        prev = cur;
        cur = run.next;
    }
    None
}

/// Whether `[start, end)` overlaps any free run.
fn overlaps_free(list: &FreeList, start: usize, end: usize) -> bool {
    let mut cur = list.head;
    while !cur.is_null() {
        // SAFETY: every run on the list starts with a valid header (list invariant).
        let run = unsafe { &*cur };
        let run_start = cur as usize;
        if run_start >= end {
            return false;
        }
        if run_start + run.chunks * CHUNK_SIZE > start {
            return true;
        }
        cur = run.next;
    }
    false
}

/// Puts the zeroed run of `n` chunks at `ptr` on the list, merging it with touching neighbours.
///
/// # Safety
///
/// The caller holds the lock; the run was handed out by this source, is given back, reads as
/// zero, and overlaps no free run.
unsafe fn insert_free(list: &mut FreeList, ptr: *mut u8, n: usize) {
    let addr = ptr as usize;
    // Find the last run below `ptr` and the first one above it.
    let mut prev: *mut FreeRun = ptr::null_mut();
    let mut next = list.head;
    while !next.is_null() && (next as usize) < addr {
        prev = next;
        // SAFETY: `next` is a run on the list, a valid header.
        next = unsafe { (*next).next };
    }

    // SAFETY: `prev` is null or a valid header.
    let merged: *mut FreeRun = match unsafe { prev.as_mut() } {
        Some(p) if prev as usize + p.chunks * CHUNK_SIZE == addr => {
            p.chunks += n;
            prev
        }
        _ => {
            let run = ptr.cast::<FreeRun>();
            // SAFETY: the run is ours, chunk aligned and far longer than a header.
            unsafe { run.write(FreeRun { next, chunks: n }) };
            if prev.is_null() {
                list.head = run;
            } else {
                // SAFETY: `prev` is a valid header.
                unsafe { (*prev).next = run };
            }
            run
        }
    };

    if !next.is_null() {
        // SAFETY: `merged` and `next` are distinct valid headers.
        let (m, nx) = unsafe { (&mut *merged, &*next) };
        if merged as usize + m.chunks * CHUNK_SIZE == next as usize {
            m.chunks += nx.chunks;
            m.next = nx.next;
            // SAFETY: `next` is now inside `merged`'s run; its header must read as zero.
            unsafe { clear_header(next) };
        }
    }
    debug_check(list);
}

/// Checks the list invariant (debug builds only): aligned, non-empty, sorted, not touching.
fn debug_check(list: &FreeList) {
    if !cfg!(debug_assertions) {
        return;
    }
    let mut end = 0usize;
    let mut cur = list.head;
    while !cur.is_null() {
        // SAFETY: every run on the list starts with a valid header (list invariant).
        let run = unsafe { &*cur };
        let start = cur as usize;
        assert!(
            start.is_multiple_of(CHUNK_SIZE),
            "free run {start:#x} not chunk aligned"
        );
        assert!(run.chunks >= 1, "empty free run at {start:#x}");
        assert!(
            start > end,
            "free runs out of order or touching at {start:#x}"
        );
        end = start + run.chunks * CHUNK_SIZE;
        cur = run.next;
    }
}

/// Writes zeros over a header that is no longer one.
///
/// # Safety
///
/// `run` points to a header this source owns.
unsafe fn clear_header(run: *mut FreeRun) {
    // SAFETY: the header is ours and writable (see the caller's contract).
    unsafe {
        run.cast::<MaybeUninit<FreeRun>>()
            .write(MaybeUninit::zeroed())
    };
}

#[cfg(test)]
mod tests {
    //! The free list alone, over memory from the test (no `sbrk`), against a model: a list of
    //! which chunks are free, whose maximal runs the list must hold exactly.

    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use std::vec::Vec;

    const CHUNKS: usize = 24;
    /// Bytes at the start of each chunk that the test dirties and checks.
    const PROBE: usize = 64;

    /// Maximal runs of free chunks in the model, as (first, length).
    fn model_runs(free: &[bool]) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < free.len() {
            if free[i] {
                let start = i;
                while i < free.len() && free[i] {
                    i += 1;
                }
                runs.push((start, i - start));
            } else {
                i += 1;
            }
        }
        runs
    }

    fn list_runs(list: &FreeList, base: usize) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        let mut cur = list.head;
        while !cur.is_null() {
            // SAFETY: every run on the list starts with a valid header.
            let run = unsafe { &*cur };
            runs.push(((cur as usize - base) / CHUNK_SIZE, run.chunks));
            cur = run.next;
        }
        runs
    }

    #[test]
    fn free_list_matches_model() {
        // The layout has a nonzero size and a power-of-two alignment.
        let layout = Layout::from_size_align(CHUNKS * CHUNK_SIZE, CHUNK_SIZE).unwrap();
        // SAFETY: the layout has a nonzero size.
        let mem = unsafe { alloc_zeroed(layout) };
        assert!(!mem.is_null());
        let base = mem as usize;
        let mut list = FreeList {
            head: ptr::null_mut(),
        };
        let mut free = [false; CHUNKS];
        let mut held: Vec<(usize, usize)> = Vec::new();
        // Start with everything handed out, one chunk at a time.
        for i in 0..CHUNKS {
            held.push((i, 1));
        }
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..4000 {
            if !held.is_empty() && next() % 2 == 0 {
                let (i, n) = held.swap_remove((next() % held.len() as u64) as usize);
                let p = mem.wrapping_add(i * CHUNK_SIZE);
                assert!(!overlaps_free(
                    &list,
                    p as usize,
                    p as usize + n * CHUNK_SIZE
                ));
                // What `dealloc` does before listing a run: make it read as zero. Only the first
                // bytes of each chunk are ever dirtied below, so only those are cleared.
                for c in 0..n {
                    // SAFETY: the chunk lies in `mem` and is not on the list.
                    unsafe { ptr::write_bytes(p.add(c * CHUNK_SIZE), 0, PROBE) };
                }
                // SAFETY: the run is ours, zero, and overlaps no free run.
                unsafe { insert_free(&mut list, p, n) };
                free[i..i + n].iter_mut().for_each(|f| *f = true);
            } else {
                let n = 1 + (next() % 5) as usize;
                // SAFETY: the list keeps its invariant.
                let got = unsafe { take_free(&mut list, n) };
                let want = model_runs(&free)
                    .into_iter()
                    .find(|&(_, len)| len >= n)
                    .map(|(start, len)| start + len - n); // the tail of the first fit
                let got_index = got.map(|p| (p.as_ptr() as usize - base) / CHUNK_SIZE);
                assert_eq!(got_index, want, "take_free({n})");
                if let Some(i) = got_index {
                    for c in i..i + n {
                        // SAFETY: the chunk was just handed out; where headers live (its first
                        // bytes) it must read as zero.
                        let head =
                            unsafe { core::slice::from_raw_parts(mem.add(c * CHUNK_SIZE), PROBE) };
                        assert!(head.iter().all(|&b| b == 0), "chunk {c} is not zero");
                        // Dirty it, as a user would.
                        // SAFETY: the chunk is ours now.
                        unsafe { ptr::write_bytes(mem.add(c * CHUNK_SIZE), 0x5A, PROBE) };
                    }
                    free[i..i + n].iter_mut().for_each(|f| *f = false);
                    held.push((i, n));
                }
            }
            debug_check(&list);
            assert_eq!(list_runs(&list, base), model_runs(&free));
        }
        // SAFETY: `mem` came from `alloc_zeroed(layout)`.
        unsafe { dealloc(mem, layout) };
    }
}
