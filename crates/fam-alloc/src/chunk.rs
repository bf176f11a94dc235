//! Slab chunks: a 4 MiB chunk that holds blocks of one size class, tracked by a slot bitmap.
//!
//! ```text
//! 0          HEADER_SIZE                     SLOT_OFFSET                              4 MiB
//! | header   | bitmap words (MAX_WORDS)      | block 0 | block 1 | ...  | block n-1 |  |
//! ```
//!
//! A set bit means the block is out of the chunk: in a thread's bucket or in use by the program.
//! Refill claims a batch of bits of one word; flush releases a mask of one word. Both are single
//! atomic operations on the bitmap, so the chunk needs no lock for them.
//!
//! # Incarnations
//!
//! A chunk that becomes entirely free is *retired* to the empty pool and may later be reused for
//! another class. Threads may still hold a stale pointer to it (a class's `current` chunk read just
//! before the retirement), so every claim is bracketed by two reads of the chunk's `tag`
//! (generation, state and class in one word): a claim whose tag changed in between is undone.
//! That is safe because:
//!
//! - chunks are never unmapped once they have been slabs, and the header and bitmap area are
//!   never decommitted, so a stale reader only ever touches bitmap memory;
//! - the bitmap area has the same size for every class ([`MAX_WORDS`]), so a stale reader scanning
//!   with an older, longer word count never reaches block memory; words past the current
//!   incarnation's count that any earlier incarnation used are set to all-ones at reinit, so
//!   nothing can be claimed there;
//! - retirement needs every bit of the incarnation clear ([`SlotSet::try_claim_all`]), so bits a
//!   stale claimer holds pin the incarnation until it has released them.

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use chunk_source::CHUNK_SIZE;
use slab_bitmap::{Batch, ReleaseError, SlotSet};
use thread_heap::{Block, Chain};

use crate::class::{ClassInfo, CLASSES, HEADER_SIZE, MAX_WORDS, SLOT_OFFSET};

/// Written once into every chunk that has ever been a slab.
const CHUNK_MAGIC: u64 = 0x6661_6d5f_736c_6162; // "fam_slab"

/// Chunk states, stored in the tag.
pub(crate) const STATE_ACTIVE: u64 = 1;
pub(crate) const STATE_EMPTY: u64 = 2;

/// The header at the start of every slab chunk.
///
/// Invariants: `tag`'s class is the class of every block in the chunk while the state is ACTIVE;
/// bits set in the bitmap are exactly the blocks out of the chunk, plus the permanent tail bits
/// past `slots`; `used` equals the number of blocks out, except transiently around a claim or a
/// release. The plain fields are owned by whoever holds the lock of the list the chunk is on
/// (its class's lock while ACTIVE, the empty pool's lock while EMPTY).
#[repr(C)]
pub(crate) struct ChunkHeader {
    magic: u64,
    /// `generation << 16 | state << 8 | class`.
    pub(crate) tag: AtomicU64,
    /// Blocks out of the chunk; when it drops to zero the chunk may be retired.
    pub(crate) used: AtomicUsize,
    /// The slot set's search hint.
    hint: AtomicUsize,
    /// Whether the chunk is on its class's partial list.
    pub(crate) listed: AtomicBool,
    /// Whether the block area holds committed pages (false after a decommit).
    pub(crate) committed: bool,
    /// Bitmap words any incarnation has initialised.
    hwm_words: u32,
    /// Links of the list the chunk is on (class partial list or empty pool).
    pub(crate) next: *mut ChunkHeader,
    pub(crate) prev: *mut ChunkHeader,
    /// When the chunk entered the empty pool (monotonic nanoseconds).
    pub(crate) emptied_at: u64,
}

static_assertions::const_assert!(core::mem::size_of::<ChunkHeader>() <= HEADER_SIZE);
static_assertions::const_assert_eq!(HEADER_SIZE % 8, 0);

#[inline(always)]
pub(crate) const fn make_tag(generation: u64, state: u64, class: usize) -> u64 {
    generation << 16 | state << 8 | class as u64
}

#[inline(always)]
pub(crate) const fn tag_class(tag: u64) -> usize {
    (tag & 0xff) as usize
}

#[inline(always)]
pub(crate) const fn tag_state(tag: u64) -> u64 {
    (tag >> 8) & 0xff
}

impl ChunkHeader {
    /// The header of the chunk that contains `addr`.
    #[inline(always)]
    pub(crate) fn of(addr: usize) -> *mut ChunkHeader {
        (addr & !(CHUNK_SIZE - 1)) as *mut ChunkHeader
    }

    /// The chunk's base address.
    #[inline(always)]
    pub(crate) fn base(&self) -> usize {
        self as *const Self as usize
    }

    /// Turns fresh memory from a chunk source into an EMPTY slab chunk.
    ///
    /// # Safety
    /// `base` is the start of a chunk of `CHUNK_SIZE` writable bytes that nobody else uses, and
    /// its first `SLOT_OFFSET` bytes read as zero.
    pub(crate) unsafe fn format(base: NonNull<u8>) -> *mut ChunkHeader {
        let h = base.as_ptr().cast::<ChunkHeader>();
        // SAFETY: the caller owns the chunk; the header fits in its first HEADER_SIZE bytes.
        unsafe {
            h.write(ChunkHeader {
                magic: CHUNK_MAGIC,
                tag: AtomicU64::new(make_tag(0, STATE_EMPTY, 0)),
                used: AtomicUsize::new(0),
                hint: AtomicUsize::new(0),
                listed: AtomicBool::new(false),
                committed: true,
                hwm_words: 0,
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                emptied_at: 0,
            });
        }
        h
    }

    /// Whether the memory at `h` carries the slab magic.
    pub(crate) fn has_magic(&self) -> bool {
        self.magic == CHUNK_MAGIC
    }

    fn words(&self) -> &[AtomicU64] {
        let p = (self.base() + HEADER_SIZE) as *const AtomicU64;
        // SAFETY: every slab chunk reserves MAX_WORDS bitmap words right after the header; the
        // area is never decommitted or unmapped while the chunk exists, and it is only accessed
        // atomically.
        unsafe { core::slice::from_raw_parts(p, MAX_WORDS) }
    }

    /// The slot set of the incarnation of class `class`.
    #[inline]
    pub(crate) fn slots(&self, class: usize) -> SlotSet<'_> {
        let info = &CLASSES[class];
        SlotSet::new(
            &self.words()[..info.words as usize],
            &self.hint,
            info.slots as usize,
        )
    }

    /// Starts a new incarnation of class `class` on an EMPTY chunk.
    ///
    /// # Safety
    /// The caller owns the chunk (it came off the empty pool or straight from the source) and no
    /// thread holds bits of its current incarnation (retirement claimed them all).
    pub(crate) unsafe fn activate(&mut self, class: usize) {
        let old = self.tag.load(Ordering::Relaxed);
        debug_assert_eq!(tag_state(old), STATE_EMPTY);
        let generation = (old >> 16) + 1;
        // The new tag goes first: a stale claimer that wins a bit of the fresh bitmap below reads
        // it afterwards (its claim acquires the reset word) and gives the bit back.
        self.tag
            .store(make_tag(generation, STATE_ACTIVE, class), Ordering::SeqCst);
        let info = &CLASSES[class];
        let words = self.words();
        let n = info.words as usize;
        // Words no longer in use but seen by an earlier incarnation: full, so never claimed.
        for w in words.iter().take(self.hwm_words as usize).skip(n) {
            w.store(u64::MAX, Ordering::Release);
        }
        self.hwm_words = self.hwm_words.max(n as u32);
        self.used.store(0, Ordering::Relaxed);
        self.slots(class).reset();
    }

    /// Claims up to `max` blocks of `class` and links them into a chain, or `None` when the
    /// chunk has none free, is not (or no longer) of that class.
    #[inline]
    pub(crate) fn claim(&self, class: usize, max: u32) -> Option<Chain> {
        let before = self.tag.load(Ordering::Acquire);
        if tag_class(before) != class || tag_state(before) != STATE_ACTIVE {
            return None;
        }
        let slots = self.slots(class);
        let batch = slots.claim_batch(max)?;
        // The claim acquired the word, so this load sees any reincarnation that reset it.
        let after = self.tag.load(Ordering::Acquire);
        if after != before {
            let _ = slots.release_mask(batch.word, batch.mask);
            return None;
        }
        self.used.fetch_add(batch.len() as usize, Ordering::Relaxed);
        // SAFETY: the batch's bits are ours now, so its blocks are free memory of this chunk.
        Some(unsafe { self.chain_of(&CLASSES[class], batch) })
    }

    /// Links the blocks of `batch` in address order.
    ///
    /// # Safety
    /// The batch's blocks were just claimed by the caller.
    unsafe fn chain_of(&self, info: &ClassInfo, batch: Batch) -> Chain {
        let size = info.size as usize;
        let start = self.base() + SLOT_OFFSET + batch.word * 64 * size;
        let mut mask = batch.mask;
        let first = start + mask.trailing_zeros() as usize * size;
        mask &= mask - 1;
        let mut prev = first as *mut Block;
        while mask != 0 {
            let p = (start + mask.trailing_zeros() as usize * size) as *mut Block;
            mask &= mask - 1;
            // SAFETY: `prev` is a claimed block of at least 8 bytes, 8-aligned, in this chunk.
            unsafe { (*prev).next = p };
            prev = p;
        }
        Chain {
            // SAFETY: block addresses are inside the chunk, hence non-null.
            head: unsafe { NonNull::new_unchecked(first as *mut Block) },
            // SAFETY: as above.
            tail: unsafe { NonNull::new_unchecked(prev) },
            len: batch.len() as usize,
        }
    }

    /// The slot index of `addr` in a chunk of `class`, or `None` if it is not a block start.
    #[inline]
    pub(crate) fn slot_of(&self, class: usize, addr: usize) -> Option<usize> {
        let info = &CLASSES[class];
        let off = addr.checked_sub(self.base() + SLOT_OFFSET)?;
        let idx = ((off as u64 * info.recip) >> 32) as usize;
        if idx < info.slots as usize && idx * info.size as usize == off {
            Some(idx)
        } else {
            None
        }
    }

    /// Whether slot `slot` (a valid slot of the current class) is out of the chunk: a block in
    /// use or in a bucket. A plain read of its bitmap word.
    #[inline]
    pub(crate) fn is_out(&self, slot: usize) -> bool {
        // Relaxed: a snapshot for a sanity check; the caller owns the block if it is live.
        self.words()[slot / 64].load(Ordering::Relaxed) & (1u64 << (slot % 64)) != 0
    }

    /// Releases the blocks `mask` of bitmap word `word`; returns how many were released and the
    /// error for bits that were not out (a double free).
    pub(crate) fn release(
        &self,
        class: usize,
        word: usize,
        mask: u64,
    ) -> Result<u32, ReleaseError> {
        self.slots(class)
            .release_mask(word, mask)
            .map(|()| mask.count_ones())
    }

    /// Tries to claim every block, so the chunk can be retired. Only succeeds when none is out.
    pub(crate) fn try_retire(&self, class: usize) -> bool {
        if !self.slots(class).try_claim_all() {
            return false;
        }
        let old = self.tag.load(Ordering::Relaxed);
        self.tag.store(
            make_tag((old >> 16) + 1, STATE_EMPTY, class),
            Ordering::SeqCst,
        );
        true
    }
}
