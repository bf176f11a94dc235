//! [`SlotSet`]: a lock-free set of slots, one bit per slot.
//!
//! # Representation
//!
//! Slot `s` is bit `s % 64` of word `s / 64`; a set bit means "claimed". The last word may hold
//! fewer than 64 slots: its bits at and past `len` (the *tail*) are written set by
//! [`SlotSet::reset`], set by every view over memory that lacks them, and no operation ever
//! clears them, so a search never has to know where the
//! set ends: a word whose free bits are all below `len` needs no bound check. Next to the words
//! lives a *hint*, a word index where searches start. It only saves work: any value is safe, and
//! one past the end is read as 0.
//!
//! # Claiming
//!
//! A search starts at the hint and visits every word once, wrapping around. For each word it
//! loads the value (a guess), picks free bits in it, and tries to set them with one atomic
//! read-modify-write (RMW):
//!
//! - [`claim`](SlotSet::claim) takes the lowest free bit with `fetch_or`. If another thread took
//!   that bit first, the `fetch_or` changed nothing and the search looks at the word again. A
//!   `fetch_or` of one bit whose old bit alone is tested compiles to `lock bts` on x86.
//! - [`claim_batch`](SlotSet::claim_batch) takes up to `max` free bits of one word. With
//!   `max >= 64` every free bit of the word fits, so one `swap(!0)` takes them all and its result
//!   says which they were; it cannot fail. With a smaller `max` it must not take more than `max`,
//!   so it computes the wanted value and installs it with a CAS (all free bits when they are few
//!   enough, else the lowest `max` of them).
//! - [`claim_run`](SlotSet::claim_run) finds `n` consecutive free bits inside one word with
//!   `log2(n)` shift-and steps over the free mask, then installs them with a CAS.
//!
//! When the RMW fails because the word filled up meanwhile, the search moves on. A CAS fails
//! only because another operation changed the word, so the set is lock-free.
//!
//! The hint is moved, with a plain store and only when its value changes, to the first word the
//! search did not find full (past the claimed word if that claim filled it). So full words are
//! skipped by later searches instead of rescanned, while a search still visits every word before
//! it reports the set full. A release into a word before the hint pulls the hint back to it, so
//! the lowest free slots are claimed first: when slots stand for memory, reuse stays packed at
//! the low end instead of cycling through the whole set.
//!
//! # Releasing
//!
//! [`release`](SlotSet::release) clears one bit and [`release_mask`](SlotSet::release_mask) any
//! bits of one word, each with a single `fetch_and`. The old value it returns tells which of
//! those bits were claimed: bits that were already free were left free by the `fetch_and`, and
//! are reported as [`ReleaseError::NotClaimed`] instead of being silently accepted. Bits out of
//! range (past `len`, the tail included) are refused before anything is written.
//!
//! # Taking the whole set
//!
//! [`try_claim_all`](SlotSet::try_claim_all) CASes every word from "all free" to "all claimed"
//! in order and, at the first word that is not all free, gives back the words it took. While it
//! holds a prefix of the words a concurrent search skips them, so such a search may report the
//! set full although `try_claim_all` is about to fail; it never hands a slot to two owners.
//!
//! # Memory ordering
//!
//! A slot is usually an index into memory that its owner writes. Every RMW that claims is
//! `Acquire` and every RMW that frees is `Release`. After initialisation every change to a word
//! is an RMW (only [`reset`](SlotSet::reset) stores, and it does not run concurrently), so the
//! claimer of a slot reads a value in the release sequence of the slot's last release and
//! synchronises with it: what the previous owner wrote into the slot happens before the new
//! owner's claim. Loads that only guess, the hint, and the read-only queries are `Relaxed`, each
//! with its reason beside it.

use core::fmt;

use crate::primitive::{
    AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use crate::{Batch, ReleaseError};

/// Slots per word.
pub(crate) const BITS: usize = u64::BITS as usize;

/// A word with every slot claimed.
pub(crate) const FULL: u64 = !0;

/// Bytes before the first slot word in raw memory: the hint, padded to the words' alignment.
#[cfg(not(loom))]
const HINT_BYTES: usize = core::mem::size_of::<AtomicU64>();

// The raw layout is `[hint: AtomicUsize, padded to 8][words: AtomicU64 ...]`; the hint must fit
// and be no more aligned than its slot, and the words must be 8-aligned at offset 8.
#[cfg(not(loom))]
const _: () = {
    assert!(core::mem::size_of::<AtomicUsize>() <= HINT_BYTES);
    assert!(core::mem::align_of::<AtomicUsize>() <= HINT_BYTES);
    assert!(core::mem::size_of::<AtomicU64>() == 8);
    assert!(core::mem::align_of::<AtomicU64>() == 8);
    assert!(HINT_BYTES.is_multiple_of(core::mem::align_of::<AtomicU64>()));
};

/// Bits of the last word at and past `len`: never slots, always set.
#[inline]
pub(crate) const fn tail_mask(len: usize) -> u64 {
    let used = len % BITS;
    if used == 0 {
        0
    } else {
        FULL << used
    }
}

/// A lock-free set of `len` slots, numbered `0..len`, viewed over caller-provided words.
///
/// `SlotSet` is a view (two references and two integers; it is `Copy`): the state lives in the
/// words and the hint it points to, which may be shared by other views, other threads, or other
/// processes mapping the same memory. The memory holds only integers, so it is valid at any
/// address in any process. Build one with [`SlotSet::new`] over atomics you own, with
/// [`SlotSet::init_raw`] / [`SlotSet::from_raw`] over raw memory, or get one from a
/// [`SlotArray`](crate::SlotArray).
///
/// # Invariants
///
/// - `words.len() == SlotSet::words_for(len)`.
/// - `tail == tail_mask(len)`: the bits of the last word at and past `len`. Every constructor
///   sets them in memory (`reset` writes them, the views seal them), and no method clears them
///   (releases refuse them, `release_all` writes them set), so a bit that a search finds free
///   is always a slot `< len`.
/// - For `s < len`, bit `s % 64` of word `s / 64` is set iff slot `s` is claimed.
/// - The hint is any value; values `>= words.len()` are read as 0.
///
/// Callers never see a broken invariant unless foreign code writes the words directly.
#[derive(Clone, Copy)]
pub struct SlotSet<'a> {
    words: &'a [AtomicU64],
    hint: &'a AtomicUsize,
    len: usize,
    tail: u64,
}

/// What one word gave a search.
enum Probe<R> {
    /// The word was full: the search goes on and the hint may pass it.
    Full,
    /// The word has free slots but not the ones asked for: the search goes on, the hint stays.
    Short,
    /// Claimed `R`; the flag tells whether the claim left the word full.
    Got(R, bool),
}

impl<'a> SlotSet<'a> {
    /// Words needed for `len` slots: `len / 64` rounded up.
    #[inline]
    pub const fn words_for(len: usize) -> usize {
        len.div_ceil(BITS)
    }

    /// Bytes of raw memory [`init_raw`](Self::init_raw) and [`from_raw`](Self::from_raw) need for
    /// `len` slots: one 8-byte hint word followed by the slot words.
    #[inline]
    pub const fn bytes_for(len: usize) -> usize {
        8 + 8 * Self::words_for(len)
    }

    /// A view over existing words. Changes no slot: words that were never [`reset`](Self::reset)
    /// are a set whose slots are claimed where their bits are set (call `reset` for "all free").
    /// Whatever the words hold, no slot at or past `len` is ever handed out: the view sets the
    /// tail bits of the last word if they are not set yet.
    ///
    /// Only the first `words_for(len)` words are used.
    ///
    /// # Panics
    ///
    /// If `words.len() < SlotSet::words_for(len)`.
    pub fn new(words: &'a [AtomicU64], hint: &'a AtomicUsize, len: usize) -> Self {
        let n = Self::words_for(len);
        assert!(
            words.len() >= n,
            "SlotSet::new: {len} slots need {n} words, got {}",
            words.len()
        );
        let set = Self::from_parts(&words[..n], hint, len);
        set.seal_tail();
        set
    }

    /// A view over words that already hold an initialised set of `len` slots, without the
    /// sealing [`new`](Self::new) does: no load of the last word. For callers that view the same
    /// words on every operation and reset them themselves (a slab chunk's bitmap, reset when
    /// the chunk takes a class).
    ///
    /// # Safety
    ///
    /// The bits past `len` in the last word are set (by [`reset`](Self::reset),
    /// [`init_raw`](Self::init_raw), or a view made with `new` over the same words and `len`).
    /// Otherwise the view may hand out slots past `len`.
    ///
    /// # Panics
    ///
    /// If `words.len() < SlotSet::words_for(len)`.
    pub unsafe fn new_unchecked(words: &'a [AtomicU64], hint: &'a AtomicUsize, len: usize) -> Self {
        let n = Self::words_for(len);
        assert!(
            words.len() >= n,
            "SlotSet::new_unchecked: {len} slots need {n} words, got {}",
            words.len()
        );
        Self::from_parts(&words[..n], hint, len)
    }

    /// Makes sure the bits past `len` in the last word are set, so that they are never handed
    /// out: one relaxed load, and an RMW only over memory that was never initialised.
    ///
    /// Every operation of a view runs after its constructor called this, and no operation
    /// clears a tail bit, so by coherence every RMW a view makes on the last word reads the
    /// tail set, whichever thread set it first. Relaxed: the bits carry no data, only the
    /// modification order of the word matters.
    #[inline]
    fn seal_tail(&self) {
        if let Some(last) = self.words.last() {
            if last.load(Relaxed) & self.tail != self.tail {
                last.fetch_or(self.tail, Relaxed);
            }
        }
    }

    /// The view over exactly `words_for(len)` words.
    #[inline]
    pub(crate) fn from_parts(words: &'a [AtomicU64], hint: &'a AtomicUsize, len: usize) -> Self {
        debug_assert_eq!(words.len(), Self::words_for(len));
        Self {
            words,
            hint,
            len,
            tail: tail_mask(len),
        }
    }

    /// Initialises the set: every slot free, the tail bits of the last word set, the hint 0.
    ///
    /// Not meant to run concurrently with other operations on the same set: a claim racing with
    /// it may get a slot that `reset` then frees again.
    ///
    /// A word that already holds its reset value is only read, not written: a set in fresh
    /// zero-filled memory (a new mapping) then leaves its pages untouched, which matters for
    /// sets far longer than what is used of them.
    pub fn reset(&self) {
        let last = self.words.len().wrapping_sub(1);
        for (i, word) in self.words.iter().enumerate() {
            let free = if i == last { self.tail } else { 0 };
            // Relaxed load: the caller holds the set alone (see above). Release store: whoever
            // claims a slot afterwards sees what was written before the reset. A word left as
            // it was carries no new write to order; what hands the set to another thread (the
            // caller's publication) orders the rest.
            if word.load(Relaxed) != free {
                word.store(free, Release);
            }
        }
        // Relaxed: the hint is only where searches start; any value is correct.
        self.hint.store(0, Relaxed);
    }

    /// Writes a fresh set of `len` slots, all free, into raw memory, and returns a view of it.
    ///
    /// The layout is one 8-byte hint word followed by [`words_for(len)`](Self::words_for) 64-bit
    /// slot words, [`bytes_for(len)`](Self::bytes_for) bytes in all, only integers: it may live in
    /// a mapping shared between processes, which then attach with [`from_raw`](Self::from_raw).
    ///
    /// # Safety
    ///
    /// - `ptr` is 8-aligned (checked: panics otherwise) and valid for reads and writes of
    ///   `bytes_for(len)` bytes for the whole lifetime `'a`;
    /// - for `'a`, that memory is accessed only atomically (through this crate or other 64-bit and
    ///   word-sized atomics), never by plain reads or writes that could race.
    ///
    /// # Panics
    ///
    /// If `ptr` is not 8-aligned.
    #[cfg(not(loom))]
    pub unsafe fn init_raw(ptr: *mut u8, len: usize) -> SlotSet<'a> {
        // SAFETY: the caller's contract is exactly the one `view_raw` asks for.
        let set = unsafe { Self::view_raw(ptr, len) };
        set.reset();
        set
    }

    /// Attaches to a set of `len` slots already initialised in raw memory (by
    /// [`init_raw`](Self::init_raw) or [`reset`](Self::reset), possibly in another process).
    /// Does not change the memory.
    ///
    /// # Safety
    ///
    /// As for [`init_raw`](Self::init_raw). Memory that holds no set made with the same `len`
    /// is read as one whose slots are claimed where bits are set; no slot is handed out twice
    /// and none past `len` (the tail is sealed as in [`new`](Self::new)).
    ///
    /// # Panics
    ///
    /// If `ptr` is not 8-aligned.
    #[cfg(not(loom))]
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> SlotSet<'a> {
        // SAFETY: the caller's contract is exactly the one `view_raw` asks for.
        let set = unsafe { Self::view_raw(ptr, len) };
        set.seal_tail();
        set
    }

    /// The view over raw memory, without writing it.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for reads and writes of `bytes_for(len)` bytes for `'a`, accessed only
    /// atomically during `'a`.
    #[cfg(not(loom))]
    unsafe fn view_raw(ptr: *mut u8, len: usize) -> SlotSet<'a> {
        assert!(
            ptr.cast::<AtomicU64>().is_aligned() && !ptr.is_null(),
            "SlotSet: raw memory must be non-null and 8-aligned"
        );
        // SAFETY: `ptr` is non-null and 8-aligned (checked above), which covers the size and
        // alignment of `AtomicUsize` (const-asserted at the top of this file); the caller
        // guarantees it is valid for `bytes_for(len) >= 8` bytes for 'a and accessed only
        // atomically, and every bit pattern is a valid `AtomicUsize`.
        let hint = unsafe { &*ptr.cast::<AtomicUsize>() };
        // SAFETY: the words occupy bytes `HINT_BYTES .. bytes_for(len)` of the caller's memory,
        // valid for 'a and accessed only atomically (caller's contract); `ptr + 8` stays inside
        // (or one past the end when there are no words, which `from_raw_parts` allows for an
        // empty slice), is 8-aligned since `ptr` is, and every bit pattern is a valid `AtomicU64`.
        let words = unsafe {
            core::slice::from_raw_parts(
                ptr.add(HINT_BYTES).cast::<AtomicU64>(),
                Self::words_for(len),
            )
        };
        Self::from_parts(words, hint, len)
    }

    /// Number of slots.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set has no slots at all (`len() == 0`); says nothing about which are claimed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bits of word `w` that are not slots (nonzero only for the last word).
    #[inline]
    fn tail_of(&self, w: usize) -> u64 {
        if w + 1 == self.words.len() {
            self.tail
        } else {
            0
        }
    }

    /// Visits every word once, from the hint, wrapping around, until `probe` claims something;
    /// then moves the hint to the first word not found full.
    #[inline(always)]
    fn search<R>(&self, mut probe: impl FnMut(usize, &AtomicU64) -> Probe<R>) -> Option<R> {
        let n = self.words.len();
        // Relaxed: the hint is only where to start; every word is visited whatever it says.
        let hint = self.hint.load(Relaxed);
        let start = if hint < n { hint } else { 0 };
        // The first word visited that was not full; `n` while there is none.
        let mut open = n;
        let mut w = start;
        for _ in 0..n {
            debug_assert!(w < n);
            // SAFETY: `w < n == self.words.len()`: `start < n` (or the loop does not run), and
            // `w` goes back to 0 when it reaches `n`.
            let word = unsafe { self.words.get_unchecked(w) };
            match probe(w, word) {
                Probe::Full => {}
                Probe::Short => {
                    if open == n {
                        open = w;
                    }
                }
                Probe::Got(found, now_full) => {
                    if open == n {
                        open = if !now_full {
                            w
                        } else if w + 1 == n {
                            0
                        } else {
                            w + 1
                        };
                    }
                    if open != hint {
                        // Relaxed: a hint; a stale or lost store only costs a longer search.
                        self.hint.store(open, Relaxed);
                    }
                    return Some(found);
                }
            }
            w = if w + 1 == n { 0 } else { w + 1 };
        }
        if open != n && open != hint {
            // Relaxed: as above.
            self.hint.store(open, Relaxed);
        }
        None
    }

    /// Claims one free slot and returns its index, or `None` if every slot is claimed.
    ///
    /// It takes the lowest free bit of the first word, starting at the hint, that is not full.
    #[inline]
    pub fn claim(&self) -> Option<usize> {
        self.search(|w, word| {
            // Relaxed: a guess at which bit is free; the `fetch_or` below decides.
            let mut cur = word.load(Relaxed);
            while cur != FULL {
                let bit = (!cur).trailing_zeros();
                let mask = 1u64 << bit;
                // Acquire: synchronises with the slot's last release, so the claimer sees what
                // its previous owner wrote. Only the old value of `mask`'s bit is used, which
                // lets x86 do the whole step with one `lock bts`.
                if word.fetch_or(mask, Acquire) & mask == 0 {
                    // `cur | mask` may be stale, but it only steers the hint.
                    return Probe::Got(w * BITS + bit as usize, cur | mask == FULL);
                }
                // Someone else took that bit first (the `fetch_or` changed nothing): look again.
                // Relaxed: a guess, as above.
                cur = word.load(Relaxed);
            }
            Probe::Full
        })
    }

    /// Claims up to `max` free slots of one word with a single successful atomic RMW, or returns
    /// `None` if every slot is claimed (or `max == 0`).
    ///
    /// With `max >= 64` it takes every free slot of the first non-full word with one `swap`;
    /// otherwise it takes `min(max, free slots of the word)` slots, the lowest ones, with a CAS.
    /// The slots are `batch.word * 64 + i` for each bit `i` set in `batch.mask`.
    #[inline]
    pub fn claim_batch(&self, max: u32) -> Option<Batch> {
        if max == 0 {
            return None;
        }
        self.search(|w, word| {
            // Relaxed: a guess; the RMW below decides (and skipping a full word writes nothing).
            let mut cur = word.load(Relaxed);
            if max >= BITS as u32 {
                if cur == FULL {
                    return Probe::Full;
                }
                // Acquire: as in `claim`, for every slot taken.
                let taken = !word.swap(FULL, Acquire);
                return if taken == 0 {
                    Probe::Full
                } else {
                    Probe::Got(
                        Batch {
                            word: w,
                            mask: taken,
                        },
                        true,
                    )
                };
            }
            while cur != FULL {
                let free = !cur;
                let take = lowest_bits(free, max);
                // Acquire on success: as in `claim`. Relaxed on failure: nothing is taken.
                match word.compare_exchange_weak(cur, cur | take, Acquire, Relaxed) {
                    Ok(_) => {
                        return Probe::Got(
                            Batch {
                                word: w,
                                mask: take,
                            },
                            cur | take == FULL,
                        );
                    }
                    Err(now) => cur = now,
                }
            }
            Probe::Full
        })
    }

    /// Claims `n` consecutive free slots that lie in one word (`1 <= n <= 64`) and returns the
    /// first index; `None` if no word has such a run, or `n` is 0 or above 64.
    ///
    /// It takes the lowest run of the first word, starting at the hint, that has one.
    pub fn claim_run(&self, n: usize) -> Option<usize> {
        if n == 0 || n > BITS {
            return None;
        }
        let run = FULL >> (BITS - n);
        self.search(|w, word| {
            // Relaxed: a guess; the CAS below decides.
            let mut cur = word.load(Relaxed);
            while cur != FULL {
                let starts = run_starts(!cur, n);
                if starts == 0 {
                    return Probe::Short;
                }
                let first = starts.trailing_zeros();
                let want = cur | (run << first);
                // Acquire on success: as in `claim`. Relaxed on failure: nothing is taken.
                match word.compare_exchange_weak(cur, want, Acquire, Relaxed) {
                    Ok(_) => return Probe::Got(w * BITS + first as usize, want == FULL),
                    Err(now) => cur = now,
                }
            }
            Probe::Full
        })
    }

    /// Claims every slot if, and only if, every slot is free; returns whether it did.
    ///
    /// Meant for retiring a whole set (a slab whose objects are all free) while other threads
    /// may still try to claim from it. It CASes each word from all-free to all-claimed and, at
    /// the first word that is not all free, hands back the words it took. While it runs, a
    /// concurrent search may find the set full. An empty set (`len == 0`) is claimed trivially.
    pub fn try_claim_all(&self) -> bool {
        for (i, word) in self.words.iter().enumerate() {
            let free = self.tail_of(i);
            // Acquire on success: the caller now owns every slot and sees what their last
            // owners wrote. Relaxed on failure: nothing is taken.
            if word.compare_exchange(free, FULL, Acquire, Relaxed).is_err() {
                for (j, taken) in self.words[..i].iter().enumerate() {
                    // Release: hands the slots back as it found them, writes included. A swap
                    // rather than a store: every change to a word stays an RMW (see the module
                    // docs), which keeps release sequences whole.
                    taken.swap(self.tail_of(j), Release);
                }
                return false;
            }
        }
        true
    }

    /// Releases one claimed slot.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::OutOfRange`] if `slot >= len()` (nothing changes);
    /// [`ReleaseError::NotClaimed`] if the slot was already free (it stays free).
    #[inline]
    pub fn release(&self, slot: usize) -> Result<(), ReleaseError> {
        if slot >= self.len {
            return Err(ReleaseError::OutOfRange { slot });
        }
        let w = slot / BITS;
        let mask = 1u64 << (slot % BITS);
        // Release: what the owner wrote into the slot happens before its next claim (Acquire).
        let old = self.words[w].fetch_and(!mask, Release);
        if old & mask == 0 {
            return Err(ReleaseError::NotClaimed { word: w, mask });
        }
        self.pull_hint(w);
        Ok(())
    }

    /// Moves the search hint back to `word` if it lies past it, so the lowest free slots are
    /// claimed first: address-ordered reuse keeps the claimed slots packed at the low end (fewer
    /// pages touched when slots stand for memory) instead of cycling through the whole set.
    #[inline]
    fn pull_hint(&self, word: usize) {
        // Relaxed: the hint is only where searches start; any value is correct.
        if word < self.hint.load(Relaxed) {
            self.hint.store(word, Relaxed);
        }
    }

    /// Releases the slots `word * 64 + i` for every bit `i` of `mask`, with one `fetch_and`
    /// (the inverse of [`claim_batch`](Self::claim_batch)). An empty mask is a no-op.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::OutOfRange`] (naming the first such slot) if `word` is out of range or
    /// `mask` has a bit at or past `len()`; then nothing changes.
    /// [`ReleaseError::NotClaimed`] with the bits of `mask` that were already free; the bits that
    /// were claimed are released all the same.
    #[inline]
    pub fn release_mask(&self, word: usize, mask: u64) -> Result<(), ReleaseError> {
        let Some(atom) = self.words.get(word) else {
            let first = (mask.trailing_zeros() % u64::BITS) as usize;
            return Err(ReleaseError::OutOfRange {
                slot: word.saturating_mul(BITS).saturating_add(first),
            });
        };
        let outside = mask & self.tail_of(word);
        if outside != 0 {
            return Err(ReleaseError::OutOfRange {
                slot: word * BITS + outside.trailing_zeros() as usize,
            });
        }
        // Release: as in `release`, for every slot of the mask.
        let old = atom.fetch_and(!mask, Release);
        if mask & old != 0 {
            self.pull_hint(word);
        }
        let not_claimed = mask & !old;
        if not_claimed != 0 {
            return Err(ReleaseError::NotClaimed {
                word,
                mask: not_claimed,
            });
        }
        Ok(())
    }

    /// Frees every slot, whatever its state: the inverse of a successful
    /// [`try_claim_all`](Self::try_claim_all), for the owner of the whole set.
    pub fn release_all(&self) {
        for (i, word) in self.words.iter().enumerate() {
            // Release: as in `release`, for every slot. A swap, as in `try_claim_all`.
            word.swap(self.tail_of(i), Release);
        }
    }

    /// Whether `slot` is claimed right now; `false` if `slot >= len()`.
    #[inline]
    pub fn is_claimed(&self, slot: usize) -> bool {
        if slot >= self.len {
            return false;
        }
        // Relaxed: a snapshot that orders nothing; ownership comes from a claim's result.
        let word = self.words[slot / BITS].load(Relaxed);
        word & (1u64 << (slot % BITS)) != 0
    }

    /// Number of claimed slots (tail bits not counted). A snapshot: with concurrent claims and
    /// releases, words are read one after another, not at one instant.
    pub fn count_claimed(&self) -> usize {
        self.words
            .iter()
            .enumerate()
            // Relaxed: a snapshot that orders nothing.
            .map(|(i, w)| (w.load(Relaxed) & !self.tail_of(i)).count_ones() as usize)
            .sum()
    }

    /// Number of free slots: `len() - count_claimed()`, with the same snapshot caveat.
    pub fn count_free(&self) -> usize {
        self.len - self.count_claimed()
    }
}

impl fmt::Debug for SlotSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotSet")
            .field("len", &self.len)
            .field("claimed", &self.count_claimed())
            .finish()
    }
}

/// The lowest `n` set bits of `x` (all of `x` if it has `n` or fewer). Clears bits one at a
/// time from whichever end is nearer, so at most 32 steps.
#[inline]
fn lowest_bits(x: u64, n: u32) -> u64 {
    let ones = x.count_ones();
    if ones <= n {
        return x;
    }
    let mut rest = x;
    if n <= ones / 2 {
        // Drop the lowest `n` set bits from `rest`: what was dropped is the answer.
        for _ in 0..n {
            rest &= rest - 1;
        }
        x ^ rest
    } else {
        // Drop the highest `ones - n` set bits: what remains is the answer.
        for _ in 0..ones - n {
            rest ^= 1u64 << (63 - rest.leading_zeros());
        }
        rest
    }
}

/// Bit `i` of the result is set iff bits `i .. i + n` of `free` are all set (`1 <= n <= 64`).
///
/// After each step bit `i` says "`have` free bits from `i`"; `m & (m >> s)` with `s <= have`
/// joins two overlapping runs into one of `have + s`. Shifting in zeros at the top keeps runs
/// inside the word.
#[inline]
fn run_starts(free: u64, n: usize) -> u64 {
    let mut m = free;
    let mut have = 1;
    while have < n {
        let s = if have < n - have { have } else { n - have };
        m &= m >> s;
        have += s;
    }
    m
}

#[cfg(test)]
mod bit_tests {
    use super::{lowest_bits, run_starts, tail_mask};

    #[test]
    fn lowest_bits_matches_naive() {
        let samples = [
            0u64,
            1,
            !0,
            0x8000_0000_0000_0001,
            0xF0F0_F0F0_0F0F_0F0F,
            0x0123_4567_89AB_CDEF,
        ];
        for &x in &samples {
            for n in 0..=65u32 {
                let mut want = 0u64;
                let mut left = n;
                for i in 0..64 {
                    if left > 0 && x & (1 << i) != 0 {
                        want |= 1 << i;
                        left -= 1;
                    }
                }
                assert_eq!(lowest_bits(x, n), want, "x={x:#x} n={n}");
            }
        }
    }

    #[test]
    fn run_starts_matches_naive() {
        let samples = [
            0u64,
            !0,
            0b1110_1111,
            0xFFFF_0000_FFFF_FFFF,
            0x8000_0000_0000_0000,
        ];
        for &x in &samples {
            for n in 1..=64usize {
                let mut want = 0u64;
                for i in 0..=(64 - n) {
                    if (i..i + n).all(|b| x & (1 << b) != 0) {
                        want |= 1 << i;
                    }
                }
                assert_eq!(run_starts(x, n), want, "x={x:#x} n={n}");
            }
        }
    }

    #[test]
    fn tail_masks() {
        assert_eq!(tail_mask(0), 0);
        assert_eq!(tail_mask(64), 0);
        assert_eq!(tail_mask(1), !1);
        assert_eq!(tail_mask(65), !1);
        assert_eq!(tail_mask(63), 1 << 63);
    }
}
