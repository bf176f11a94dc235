//! Slab chunks: a 4 MiB chunk that holds blocks of one size class.
//!
//! ```text
//! 0        256              256 + 62 KiB            128 KiB                               4 MiB
//! | header | shared bitmap  | owner's local bitmap  | block 0 | block 1 | ... | block n-1 |  |
//! ```
//!
//! The **shared bitmap** (atomic words, a [`SlotSet`]): a set bit is a block out of the chunk, in
//! some thread's bucket or in use. The owner claims a word's free bits at once; any thread gives
//! blocks back with one `fetch_and` per word.
//!
//! The **local bitmap** (plain words): a set bit is a block that came back to the chunk's
//! *owner* and is free again, though its shared bit is still set. Only the owner reads or writes
//! it, so the owner frees and reclaims its own blocks with plain loads and stores. It is all
//! zero whenever the chunk has no owner: an owner that leaves merges it into the shared bitmap
//! first.
//!
//! The header spans three cache lines so that writers of different kinds do not share one:
//! the identity line (magic, tag, number: written when the chunk changes class, read by every
//! checked free), the membership line (the count of blocks out and the time blocks last came
//! back, written by every flush), and the claims line (the shared bitmap's search hint, moved by
//! the owner's claims, and the record of the last purge of its free pages).
//!
//! Chunks are never unmapped once formatted, and the header and both bitmaps are never
//! decommitted, so a pointer to a chunk header stays valid for the pool's life.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use chunk_source::CHUNK_SIZE;
use slab_bitmap::{ReleaseError, SlotSet};
use thread_heap::Block;

use crate::class::{
    class_code, ClassInfo, CLASSES, HEADER_SIZE, LOCAL_BITS, MAX_WORDS, SHARED_BITS, SLOT_OFFSET,
    SLOT_TEST,
};
use crate::membership::Membership;

/// Written once into every chunk that has ever been a slab.
const CHUNK_MAGIC: u64 = 0x6661_6d5f_736c_6162; // "fam_slab"

/// Chunk states, stored in the tag: the chunk holds a class.
pub(crate) const STATE_ACTIVE: u64 = 1;
/// The chunk is in the empty pool.
pub(crate) const STATE_EMPTY: u64 = 2;

/// A cache line of its own.
#[repr(C, align(64))]
struct Line<T>(T);

/// The identity line.
#[repr(C)]
struct Identity {
    magic: u64,
    /// `state << 8 | class`.
    tag: AtomicU64,
    /// The chunk's number in its pool's directory.
    number: usize,
    /// When the chunk entered the empty pool (monotonic milliseconds).
    emptied_at: AtomicU64,
    /// Whether the block area holds committed pages (false after a decommit).
    committed: AtomicBool,
}

/// The membership line: written by every flush that gives blocks back.
#[repr(C)]
struct Flushes {
    membership: Membership,
    /// When blocks last came back to the chunk (monotonic milliseconds).
    released_at: AtomicU64,
}

/// The claims line: written by the chunk's holder (its owner, or a purger holding it).
#[repr(C)]
struct Claims {
    /// The shared bitmap's search hint.
    hint: AtomicUsize,
    /// When the chunk's free pages were last given back (monotonic milliseconds).
    purged_at: AtomicU64,
    /// Pages given back then and not taken again since (as far as the pool knows).
    purged_pages: AtomicUsize,
}

/// The header at the start of every slab chunk.
///
/// Invariants: while the tag's state is ACTIVE, its class is the class of every block in the
/// chunk; the shared bitmap's set bits are exactly the blocks out of the chunk plus the tail bits
/// past the class's slot count; `membership.used()` equals their number (the tail excluded),
/// except transiently around a claim or a release; local bits are a subset of shared bits and
/// are all clear unless the chunk is OWNED. Every field is an atomic or written only before the
/// chunk is published, so shared references to the header are sound at all times.
#[repr(C)]
pub struct ChunkHeader {
    id: Line<Identity>,
    flushes: Line<Flushes>,
    claims: Line<Claims>,
}

static_assertions::const_assert!(core::mem::size_of::<ChunkHeader>() <= HEADER_SIZE);
static_assertions::const_assert_eq!(core::mem::size_of::<ChunkHeader>(), 3 * 64);
static_assertions::const_assert_eq!(core::mem::offset_of!(ChunkHeader, flushes), 64);
static_assertions::const_assert_eq!(core::mem::offset_of!(ChunkHeader, claims), 128);

/// A tag value.
#[inline(always)]
const fn make_tag(state: u64, class: usize) -> u64 {
    state << 8 | class as u64
}

/// The class a tag names.
#[inline(always)]
pub(crate) const fn tag_class(tag: u64) -> usize {
    (tag & 0xff) as usize
}

/// The state a tag names.
#[inline(always)]
pub(crate) const fn tag_state(tag: u64) -> u64 {
    (tag >> 8) & 0xff
}

/// Why an address is not a block that may be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadBlock {
    /// The chunk holds no class (all its blocks came back): the block was freed already.
    EmptyChunk,
    /// The address is inside a block, not at its start.
    Interior,
    /// The block is free in the chunk's bitmap.
    AlreadyFree,
}

impl BadBlock {
    /// The words a report uses.
    pub const fn message(self) -> &'static str {
        match self {
            BadBlock::EmptyChunk => "double free (the block's chunk is empty)",
            BadBlock::Interior => "pointer to the inside of a block",
            BadBlock::AlreadyFree => "double free (block already free)",
        }
    }
}

impl ChunkHeader {
    /// The header of the chunk that contains `addr`.
    #[inline(always)]
    pub fn of(addr: usize) -> *mut ChunkHeader {
        (addr & !(CHUNK_SIZE - 1)) as *mut ChunkHeader
    }

    /// The chunk's base address.
    #[inline(always)]
    pub fn base(&self) -> usize {
        self as *const Self as usize
    }

    /// Turns fresh memory from a chunk source into an EMPTY slab chunk numbered `number`.
    ///
    /// # Safety
    /// `base` is the start of a chunk of `CHUNK_SIZE` writable bytes that nobody else uses, and
    /// its local bitmap reads as zero (the shared one is reset by [`activate`](Self::activate)).
    pub(crate) unsafe fn format(base: NonNull<u8>, number: usize) -> *mut ChunkHeader {
        let h = base.as_ptr().cast::<ChunkHeader>();
        // SAFETY: the caller owns the chunk; the header fits in its first HEADER_SIZE bytes.
        unsafe {
            h.write(ChunkHeader {
                id: Line(Identity {
                    magic: CHUNK_MAGIC,
                    tag: AtomicU64::new(make_tag(STATE_EMPTY, 0)),
                    number,
                    emptied_at: AtomicU64::new(0),
                    committed: AtomicBool::new(true),
                }),
                flushes: Line(Flushes {
                    membership: Membership::new(),
                    released_at: AtomicU64::new(0),
                }),
                claims: Line(Claims {
                    hint: AtomicUsize::new(0),
                    purged_at: AtomicU64::new(0),
                    purged_pages: AtomicUsize::new(0),
                }),
            });
        }
        h
    }

    /// Zeroes the local bitmap of fresh memory from a source that does not zero.
    ///
    /// # Safety
    /// `base` is the start of a chunk of `CHUNK_SIZE` writable bytes that nobody else uses.
    pub(crate) unsafe fn clear_local(base: NonNull<u8>) {
        // SAFETY: the local bitmap lies inside the chunk (layout assertions in `class`).
        unsafe { core::ptr::write_bytes(base.as_ptr().add(LOCAL_BITS), 0, MAX_WORDS * 8) };
    }

    /// Whether the memory at `h` carries the slab magic.
    pub fn has_magic(&self) -> bool {
        self.id.0.magic == CHUNK_MAGIC
    }

    /// The tag (Acquire: a reader that sees a class sees the incarnation's bitmap reset).
    #[inline(always)]
    pub fn tag(&self) -> u64 {
        self.id.0.tag.load(Ordering::Acquire)
    }

    /// The chunk's number in its pool.
    #[inline(always)]
    pub(crate) fn number(&self) -> usize {
        self.id.0.number
    }

    /// Where the chunk is and how many blocks are out of it.
    #[inline(always)]
    pub fn membership(&self) -> &Membership {
        &self.flushes.0.membership
    }

    /// When blocks last came back to the chunk (or it last changed owner).
    #[inline]
    pub(crate) fn released_at(&self) -> u64 {
        // Relaxed: a time for a purge decision, which a stale value only makes early or late;
        // what makes a purge safe is holding the chunk and reading its bitmap.
        self.flushes.0.released_at.load(Ordering::Relaxed)
    }

    /// Blocks came back at `now` (milliseconds).
    #[inline]
    pub(crate) fn set_released_at(&self, now: u64) {
        // Relaxed: as in `released_at`.
        self.flushes.0.released_at.store(now, Ordering::Relaxed);
    }

    /// When the chunk's free pages were last given back.
    pub(crate) fn purged_at(&self) -> u64 {
        // Relaxed: as in `released_at`.
        self.claims.0.purged_at.load(Ordering::Relaxed)
    }

    /// Records a purge at `now` that left `pages` pages given back; returns the count before.
    /// For the chunk's holder.
    pub(crate) fn set_purged(&self, now: u64, pages: usize) -> usize {
        // Relaxed: written only by the chunk's holder; read for decisions and statistics.
        self.claims.0.purged_at.store(now, Ordering::Relaxed);
        self.claims.0.purged_pages.swap(pages, Ordering::Relaxed)
    }

    /// Pages the last purge gave back that no owner has taken again.
    pub(crate) fn purged_pages(&self) -> usize {
        // Relaxed: as in `set_purged`; an estimate for the pressure check.
        self.claims.0.purged_pages.load(Ordering::Relaxed)
    }

    /// Forgets the pages given back (a new owner takes them again as it claims); returns how
    /// many there were. For the chunk's holder.
    pub(crate) fn take_purged(&self) -> usize {
        // Relaxed: as in `set_purged`.
        self.claims.0.purged_pages.swap(0, Ordering::Relaxed)
    }

    /// Calls `f(offset, len)` for every maximal run of whole pages of the block area (offsets
    /// from the chunk's base) in which no block of `class` is out of the shared bitmap. Returns
    /// the pages in the runs.
    ///
    /// # Safety
    /// The caller holds the chunk (so no block of it is claimed meanwhile: bits only clear).
    pub(crate) unsafe fn free_page_runs(
        &self,
        class: usize,
        page: usize,
        mut f: impl FnMut(usize, usize),
    ) -> usize {
        let info = &CLASSES[class];
        let size = info.size as usize;
        let end = info.slots as usize * size;
        let shared = self.shared_words();
        // Acquire: a clear bit is a block some thread released, after its last read of the
        // block (the flush reads the link, then releases); the purge that follows must come
        // after that read.
        let out = |w: usize| shared[w].load(Ordering::Acquire);
        let mut pages = 0;
        let mut run: Option<usize> = None;
        let npages = end.div_ceil(page);
        for p in 0..=npages {
            let free = p < npages && {
                let first = p * page / size;
                let last = (((p + 1) * page).min(end) - 1) / size;
                (first / 64..=last / 64).all(|w| {
                    let lo = if w == first / 64 { first % 64 } else { 0 };
                    let hi = if w == last / 64 { last % 64 } else { 63 };
                    let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
                    out(w) & mask == 0
                })
            };
            match (free, run) {
                (true, None) => run = Some(p),
                (false, Some(start)) => {
                    f(SLOT_OFFSET + start * page, (p - start) * page);
                    pages += p - start;
                    run = None;
                }
                _ => {}
            }
        }
        pages
    }

    pub(crate) fn emptied_at(&self) -> u64 {
        // Relaxed: written by the thread that retired the chunk before it published it in the
        // empty set (SeqCst), which whoever reads it here has popped or scanned.
        self.id.0.emptied_at.load(Ordering::Relaxed)
    }

    pub(crate) fn set_emptied_at(&self, now: u64) {
        // Relaxed: published by the empty set's insert.
        self.id.0.emptied_at.store(now, Ordering::Relaxed);
    }

    /// Whether the block area's pages are committed.
    pub fn committed(&self) -> bool {
        // Relaxed: changed only by a holder of the chunk, published by the set it goes to.
        self.id.0.committed.load(Ordering::Relaxed)
    }

    pub(crate) fn set_committed(&self, c: bool) {
        // Relaxed: as above.
        self.id.0.committed.store(c, Ordering::Relaxed);
    }

    fn shared_words(&self) -> &[AtomicU64] {
        let p = (self.base() + SHARED_BITS) as *const AtomicU64;
        // SAFETY: every slab chunk reserves MAX_WORDS shared bitmap words at SHARED_BITS; the area
        // is never decommitted or unmapped while the chunk exists, and it is only accessed
        // atomically.
        unsafe { core::slice::from_raw_parts(p, MAX_WORDS) }
    }

    /// The owner's local bitmap words.
    fn local_words(&self) -> *mut u64 {
        (self.base() + LOCAL_BITS) as *mut u64
    }

    /// The shared slot set of the incarnation of class `class`.
    #[inline]
    pub fn slots(&self, class: usize) -> SlotSet<'_> {
        let info = &CLASSES[class];
        // SAFETY: the bitmap is reset for `class` (tail bits set) by `activate` before any block
        // of the incarnation is claimed or released; `activate` itself only resets through this
        // view, which writes every word and reads none.
        unsafe {
            SlotSet::new_unchecked(
                &self.shared_words()[..info.words as usize],
                &self.claims.0.hint,
                info.slots as usize,
            )
        }
    }

    /// Starts a new incarnation of class `class` on an EMPTY chunk.
    ///
    /// # Safety
    /// The caller holds the chunk exclusively (it came off the empty pool or straight from the
    /// source), and every block of its last incarnation came back.
    pub(crate) unsafe fn activate(&self, class: usize) {
        debug_assert_eq!(
            tag_state(self.id.0.tag.load(Ordering::Relaxed)),
            STATE_EMPTY
        );
        debug_assert_eq!(self.membership().used(), 0);
        // The bitmap is reset before the tag names the class: a checked free that reads the new
        // tag (Acquire) sees the fresh bits (Release store below).
        self.slots(class).reset();
        self.id
            .0
            .tag
            .store(make_tag(STATE_ACTIVE, class), Ordering::Release);
    }

    /// Marks the chunk EMPTY: its blocks all came back and it goes to the empty pool.
    pub(crate) fn deactivate(&self) {
        let old = self.id.0.tag.load(Ordering::Relaxed);
        self.id
            .0
            .tag
            .store(make_tag(STATE_EMPTY, tag_class(old)), Ordering::Release);
    }

    /// Claims up to `out.len()` (at most 64) blocks of `class` from the shared bitmap and writes
    /// their addresses into `out`, lowest first; returns how many (0 when none is free). Only the
    /// chunk's owner calls this.
    #[inline]
    pub(crate) fn claim(&self, class: usize, out: &mut [*mut Block]) -> usize {
        let Some(batch) = self.slots(class).claim_batch(out.len() as u32) else {
            return 0;
        };
        self.membership().claimed(batch.len() as usize);
        self.addresses(&CLASSES[class], batch.word, batch.mask, out)
    }

    /// Writes the addresses of blocks `mask` of bitmap word `word` into `out`, in address order,
    /// and returns how many (`out` has room for them all). The blocks are not touched.
    fn addresses(
        &self,
        info: &ClassInfo,
        word: usize,
        mut mask: u64,
        out: &mut [*mut Block],
    ) -> usize {
        let size = info.size as usize;
        let start = self.base() + SLOT_OFFSET + word * 64 * size;
        assert!(
            mask.count_ones() as usize <= out.len(),
            "more blocks than room"
        );
        let mut n = 0;
        while mask != 0 {
            // SAFETY: one slot per bit of `mask`, and it had at most `out.len()` (asserted).
            unsafe {
                *out.get_unchecked_mut(n) =
                    (start + mask.trailing_zeros() as usize * size) as *mut Block
            };
            mask &= mask - 1;
            n += 1;
        }
        n
    }

    /// Where `addr` lies in the slot area of its chunk, as
    /// [`SlotTest::slot`](crate::class::SlotTest::slot) takes it: the offset from the chunk's
    /// first block, modulo the chunk size. An address in the header or the bitmaps wraps to the
    /// last `SLOT_OFFSET` bytes of the range, above every class's last block (`slots * size <=
    /// CHUNK_SIZE - SLOT_OFFSET`), so the test refuses it as it refuses one past the blocks. Two
    /// instructions (an `lea` and an `and`).
    #[inline(always)]
    pub const fn slot_offset(addr: usize) -> usize {
        addr.wrapping_sub(SLOT_OFFSET) & (CHUNK_SIZE - 1)
    }

    /// The slot index of `addr`, an address inside this chunk, in a chunk of `class`, or `None`
    /// if it is not a block start ([`SlotTest::slot`](crate::class::SlotTest::slot): one
    /// multiplication, which also checks the bounds).
    #[inline(always)]
    pub fn slot_of(&self, class: usize, addr: usize) -> Option<usize> {
        SLOT_TEST.slot(class_code(class), Self::slot_offset(addr))
    }

    /// The class of the live block at `addr` in this chunk, checked: the chunk is active, `addr`
    /// is a block's start, and the block is out of the chunk. The one classifier of small blocks
    /// (with [`Self::check_block`] for a caller that knows the class already).
    #[inline]
    pub fn block_class(&self, addr: usize) -> Result<usize, BadBlock> {
        let tag = self.tag();
        if tag_state(tag) != STATE_ACTIVE {
            return Err(BadBlock::EmptyChunk);
        }
        // An active tag names a class below NUM_CLASSES (`activate` is only given those); the
        // mask lets the compiler drop the table's bounds check.
        let class = tag_class(tag) % CLASSES.len();
        self.check_block(class, addr)?;
        Ok(class)
    }

    /// Checks that `addr`, an address inside this chunk, is the start of a block of `class` that
    /// is out of the chunk, for a chunk that serves `class` (or served it last: in a chunk that
    /// is empty now every block reads as free): [`Self::slot_of`] and one bitmap load.
    #[inline(always)]
    pub fn check_block(&self, class: usize, addr: usize) -> Result<(), BadBlock> {
        let idx = self.slot_of(class, addr).ok_or(BadBlock::Interior)?;
        // SAFETY: `slot_of` gives only slots below the class's slot count.
        if !unsafe { self.slot_is_out(idx) } {
            return Err(BadBlock::AlreadyFree);
        }
        Ok(())
    }

    /// Whether slot `idx` is out of the chunk (its bit in the shared bitmap is set): the second
    /// half of [`Self::check_block`], for a caller that has the slot from
    /// [`SlotTest::slot`](crate::class::SlotTest::slot).
    ///
    /// # Safety
    /// `idx` is below the slot count of some class.
    #[inline(always)]
    pub unsafe fn slot_is_out(&self, idx: usize) -> bool {
        debug_assert!(idx / 64 < MAX_WORDS);
        // SAFETY: `idx` is below a class's slot count (contract), and every class's bitmap fits
        // in the MAX_WORDS words reserved for it (layout assertions in `class`).
        let word = unsafe { &*((self.base() + SHARED_BITS) as *const AtomicU64).add(idx / 64) };
        // Relaxed: a snapshot for a sanity check; the caller owns the block if it is live.
        word.load(Ordering::Relaxed) & (1u64 << (idx % 64)) != 0
    }

    /// Releases the blocks `mask` of shared bitmap word `word`; the error names bits that were not
    /// out (a double free).
    pub(crate) fn release(&self, class: usize, word: usize, mask: u64) -> Result<(), ReleaseError> {
        self.slots(class).release_mask(word, mask)
    }

    // ---- The owner's local bitmap. Every method below is for the chunk's owner alone. ----

    /// Adds `mask` to local word `word`: blocks that came back to their owner. Fails, changing
    /// nothing, with the bits that are not out in the shared bitmap or already local (a double
    /// free).
    ///
    /// # Safety
    /// The caller owns the chunk, and `word` is below its class's word count.
    #[inline(always)]
    pub(crate) unsafe fn free_local(&self, word: usize, mask: u64) -> Result<(), u64> {
        // Relaxed: our own claims set these bits; other threads only clear bits we do not hold.
        let out = self.shared_words()[word].load(Ordering::Relaxed);
        // SAFETY: the owner alone touches the local words (contract); `word < MAX_WORDS`.
        let w = unsafe { &mut *self.local_words().add(word) };
        let bad = (mask & !out) | (mask & *w);
        if bad != 0 {
            return Err(bad);
        }
        *w |= mask;
        Ok(())
    }

    /// Takes up to `out.len()` blocks from local words `*from..to`, the lowest first (across words
    /// when one word has fewer), writes their addresses into `out` and returns how many (at least
    /// one); moves `*from` past the words it emptied.
    ///
    /// # Safety
    /// The caller owns the chunk, `to` is at most its class's word count, and some local word in
    /// `*from..to` is non-zero.
    pub(crate) unsafe fn take_local(
        &self,
        class: usize,
        from: &mut u32,
        to: u32,
        out: &mut [*mut Block],
    ) -> usize {
        let words = self.local_words();
        let mut n = 0;
        let mut i = *from as usize;
        while i < to as usize && n < out.len() {
            // SAFETY: the owner alone touches the local words; `i < to <= words`.
            let w = unsafe { &mut *words.add(i) };
            if *w != 0 {
                let mask = lowest_bits(*w, (out.len() - n) as u32);
                *w &= !mask;
                n += self.addresses(&CLASSES[class], i, mask, &mut out[n..]);
                if *w != 0 {
                    break;
                }
            }
            i += 1;
        }
        *from = i as u32;
        assert!(n != 0, "no local block where the owner said");
        n
    }

    /// Moves every local bit in words `from..to` back to the shared bitmap (one release per
    /// non-zero word) and returns how many blocks that was.
    ///
    /// # Safety
    /// As for [`take_local`](Self::take_local); afterwards the local words are all clear.
    pub(crate) unsafe fn merge_local(&self, class: usize, from: u32, to: u32) -> usize {
        let words = self.local_words();
        let mut n = 0;
        for i in from as usize..to as usize {
            // SAFETY: the owner alone touches the local words; `i < to <= words`.
            let w = unsafe { &mut *words.add(i) };
            if *w != 0 {
                let r = self.release(class, i, *w);
                debug_assert!(r.is_ok(), "local bits are out in the shared bitmap");
                n += w.count_ones() as usize;
                *w = 0;
            }
        }
        n
    }

    /// Blocks in the local bitmap; for checks of a quiescent chunk.
    pub(crate) fn local_count(&self, class: usize) -> usize {
        (0..CLASSES[class].words as usize)
            // SAFETY: a read of a plain word; callers only check quiescent chunks.
            .map(|i| unsafe { self.local_words().add(i).read() }.count_ones() as usize)
            .sum()
    }

    /// Whether local word `i` has bits outside the shared word (for checks).
    pub(crate) fn local_outside_shared(&self, i: usize) -> bool {
        // SAFETY: as in `local_count`.
        let l = unsafe { self.local_words().add(i).read() };
        l & !self.shared_words()[i].load(Ordering::Relaxed) != 0
    }
}

/// The lowest `max` set bits of `w` (all of them when there are no more than `max`).
#[inline]
fn lowest_bits(w: u64, max: u32) -> u64 {
    if w.count_ones() <= max {
        return w;
    }
    let mut mask = 0;
    let mut rest = w;
    for _ in 0..max {
        let low = rest & rest.wrapping_neg();
        mask |= low;
        rest ^= low;
    }
    mask
}
