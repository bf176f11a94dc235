//! Unit tests: every method, the edge cases, and a random walk checked against a plain model.

use std::vec;
use std::vec::Vec;

use crate::primitive::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use crate::{Batch, ReleaseError, SlotArray, SlotSet};

/// Words and hint owned by a test, with a set of `len` slots over them.
struct Owned {
    words: Vec<AtomicU64>,
    hint: AtomicUsize,
    len: usize,
}

impl Owned {
    fn new(len: usize) -> Self {
        let owned = Self {
            words: (0..SlotSet::words_for(len))
                .map(|_| AtomicU64::new(0))
                .collect(),
            hint: AtomicUsize::new(0),
            len,
        };
        owned.set().reset();
        owned
    }

    fn set(&self) -> SlotSet<'_> {
        SlotSet::new(&self.words, &self.hint, self.len)
    }
}

/// Small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn claim_all_singly(set: SlotSet<'_>) -> Vec<usize> {
    let mut got = Vec::new();
    while let Some(s) = set.claim() {
        got.push(s);
    }
    got
}

#[test]
fn sizes() {
    assert_eq!(SlotSet::words_for(0), 0);
    assert_eq!(SlotSet::words_for(1), 1);
    assert_eq!(SlotSet::words_for(64), 1);
    assert_eq!(SlotSet::words_for(65), 2);
    assert_eq!(SlotSet::bytes_for(0), 8);
    assert_eq!(SlotSet::bytes_for(1), 16);
    assert_eq!(SlotSet::bytes_for(128), 24);
    assert_eq!(SlotSet::bytes_for(129), 32);
    assert_eq!(SlotSet::words_for(usize::MAX), usize::MAX / 64 + 1);
}

#[test]
fn empty_set() {
    let owned = Owned::new(0);
    let set = owned.set();
    assert_eq!(set.len(), 0);
    assert!(set.is_empty());
    assert_eq!(set.claim(), None);
    assert_eq!(set.claim_batch(64), None);
    assert_eq!(set.claim_batch(3), None);
    assert_eq!(set.claim_run(1), None);
    assert!(set.try_claim_all());
    set.release_all();
    assert_eq!(set.count_claimed(), 0);
    assert_eq!(set.count_free(), 0);
    assert!(!set.is_claimed(0));
    assert_eq!(set.release(0), Err(ReleaseError::OutOfRange { slot: 0 }));
    assert_eq!(
        set.release_mask(0, 1),
        Err(ReleaseError::OutOfRange { slot: 0 })
    );
    let array = SlotArray::<0>::new(0);
    assert!(array.as_set().is_empty());
    assert_eq!(array.as_set().claim(), None);
}

#[test]
fn claims_every_slot_once_in_order() {
    for len in [1, 5, 63, 64, 65, 127, 128, 129, 200, 1000] {
        let owned = Owned::new(len);
        let set = owned.set();
        assert!(!set.is_empty());
        assert_eq!(set.count_free(), len);
        let got = claim_all_singly(set);
        assert_eq!(got, (0..len).collect::<Vec<_>>(), "len {len}");
        assert_eq!(set.count_claimed(), len);
        assert_eq!(set.count_free(), 0);
        assert!((0..len).all(|s| set.is_claimed(s)));
    }
}

#[test]
fn tail_bits_are_never_handed_out() {
    for len in [1, 3, 63, 65, 100, 130] {
        let owned = Owned::new(len);
        let set = owned.set();
        let last = owned.words.last().unwrap().load(Relaxed);
        assert_eq!(
            last.count_ones() as usize,
            (64 - len % 64) % 64,
            "len {len}"
        );

        // By batches of every kind.
        while let Some(b) = set.claim_batch(64) {
            assert!(b.iter().all(|s| s < len), "len {len}: {b:?}");
        }
        set.release_all();
        while let Some(b) = set.claim_batch(7) {
            assert!(b.iter().all(|s| s < len), "len {len}: {b:?}");
        }
        set.release_all();
        // By runs.
        while let Some(first) = set.claim_run(2) {
            assert!(first + 2 <= len, "len {len}: run at {first}");
        }
        set.reset(); // also puts the hint back at word 0
                     // A run that would need the tail does not fit in the last word.
        if len % 64 != 0 {
            let last = len / 64;
            for _ in 0..last {
                assert!(set.claim_batch(64).is_some());
            }
            assert_eq!(set.claim_run(len % 64 + 1), None);
            assert_eq!(set.claim_run(len % 64), Some(last * 64));
        }
        // Counting ignores the tail, and releasing it is refused.
        set.reset();
        assert_eq!(set.count_claimed(), 0);
        if len % 64 != 0 {
            let w = len / 64;
            assert_eq!(
                set.release_mask(w, 1 << (len % 64)),
                Err(ReleaseError::OutOfRange { slot: len })
            );
            assert_eq!(
                set.release(len),
                Err(ReleaseError::OutOfRange { slot: len })
            );
        }
        assert_eq!(owned.words.last().unwrap().load(Relaxed), last);
    }
}

#[test]
fn new_uses_only_the_words_it_needs() {
    let words: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(!0)).collect();
    let hint = AtomicUsize::new(0);
    let set = SlotSet::new(&words, &hint, 70);
    // Still all claimed: `new` does not write.
    assert_eq!(set.count_claimed(), 70);
    set.reset();
    assert_eq!(set.count_free(), 70);
    assert_eq!(words[2].load(Relaxed), !0);
    assert_eq!(words[3].load(Relaxed), !0);
    assert_eq!(claim_all_singly(set).len(), 70);
}

/// Words that were never reset: a zeroed pair for 100 slots has its 28 tail bits clear.
#[test]
fn a_view_over_unreset_words_never_hands_out_a_slot_past_len() {
    let words = [AtomicU64::new(0), AtomicU64::new(0)];
    let hint = AtomicUsize::new(0);
    let set = SlotSet::new(&words, &hint, 100);
    assert_eq!(set.count_free(), 100);
    let slots = claim_all_singly(set);
    assert_eq!(slots.len(), 100);
    assert!(slots.iter().all(|&s| s < 100));
    set.release_all();
    let words = [AtomicU64::new(0), AtomicU64::new(0)];
    let set = SlotSet::new(&words, &hint, 100);
    let mut got = 0;
    while let Some(b) = set.claim_batch(64) {
        got += b.len() as usize;
        assert!(b.iter().all(|s| s < 100), "a batch past len");
    }
    assert_eq!(got, 100);
}

#[test]
fn a_raw_view_over_zeroed_memory_never_hands_out_a_slot_past_len() {
    let mut mem = [0u64; 3];
    // SAFETY: 24 bytes = bytes_for(100), 8-aligned, used only through the view below.
    let set = unsafe { SlotSet::from_raw(mem.as_mut_ptr().cast(), 100) };
    let slots = claim_all_singly(set);
    assert_eq!(slots.len(), 100);
    assert!(slots.iter().all(|&s| s < 100));
}

#[test]
#[should_panic(expected = "need 2 words")]
fn new_panics_on_too_few_words() {
    let words = [AtomicU64::new(0)];
    let hint = AtomicUsize::new(0);
    let _ = SlotSet::new(&words, &hint, 65);
}

#[test]
fn release_errors() {
    let owned = Owned::new(100);
    let set = owned.set();
    assert_eq!(
        set.release(3),
        Err(ReleaseError::NotClaimed {
            word: 0,
            mask: 1 << 3
        })
    );
    assert_eq!(
        set.release(70),
        Err(ReleaseError::NotClaimed {
            word: 1,
            mask: 1 << 6
        })
    );
    assert_eq!(
        set.release(100),
        Err(ReleaseError::OutOfRange { slot: 100 })
    );
    assert_eq!(
        set.release(usize::MAX),
        Err(ReleaseError::OutOfRange { slot: usize::MAX })
    );
    let s = set.claim().unwrap();
    assert_eq!(set.release(s), Ok(()));
    assert_eq!(
        set.release(s),
        Err(ReleaseError::NotClaimed { word: 0, mask: 1 })
    );
    assert_eq!(set.count_claimed(), 0);
}

#[test]
fn release_mask_releases_claimed_and_reports_the_rest() {
    let owned = Owned::new(100);
    let set = owned.set();
    let b = set.claim_batch(8).unwrap();
    assert_eq!(
        b,
        Batch {
            word: 0,
            mask: 0xFF
        }
    );
    // Bits 0..8 claimed, 8..12 not.
    assert_eq!(
        set.release_mask(0, 0xFFF),
        Err(ReleaseError::NotClaimed {
            word: 0,
            mask: 0xF00
        })
    );
    assert_eq!(set.count_claimed(), 0);
    assert!(set.release_mask(0, 0).is_ok());
    // Out of range: nothing changes.
    let b = set.claim_batch(64).unwrap();
    assert_eq!(b, Batch { word: 0, mask: !0 });
    let c = set.claim_batch(64).unwrap();
    assert_eq!(
        c,
        Batch {
            word: 1,
            mask: (1 << 36) - 1
        }
    );
    assert_eq!(
        set.release_mask(1, c.mask | 1 << 40),
        Err(ReleaseError::OutOfRange { slot: 104 })
    );
    assert_eq!(set.count_claimed(), 100);
    assert_eq!(
        set.release_mask(2, 1 << 5),
        Err(ReleaseError::OutOfRange { slot: 133 })
    );
    assert_eq!(
        set.release_mask(7, 0),
        Err(ReleaseError::OutOfRange { slot: 7 * 64 })
    );
    assert_eq!(
        set.release_mask(usize::MAX, 1),
        Err(ReleaseError::OutOfRange { slot: usize::MAX })
    );
    assert_eq!(set.count_claimed(), 100);
    assert_eq!(set.release_mask(c.word, c.mask), Ok(()));
    assert_eq!(set.release_mask(b.word, b.mask), Ok(()));
    assert_eq!(set.count_claimed(), 0);
}

#[test]
fn error_display() {
    use std::string::ToString;
    assert_eq!(
        ReleaseError::OutOfRange { slot: 9 }.to_string(),
        "slot 9 is out of range"
    );
    assert_eq!(
        ReleaseError::NotClaimed {
            word: 1,
            mask: 1 << 2
        }
        .to_string(),
        "slot 66 released but not claimed"
    );
    assert_eq!(
        ReleaseError::NotClaimed {
            word: 0,
            mask: 0b110
        }
        .to_string(),
        "2 slots of word 0 released but not claimed (mask 0x0000000000000006)"
    );
    let err: &dyn core::error::Error = &ReleaseError::OutOfRange { slot: 1 };
    assert!(err.source().is_none());
}

#[test]
fn claim_batch_takes_lowest_and_at_most_max() {
    let owned = Owned::new(130);
    let set = owned.set();
    assert_eq!(set.claim_batch(0), None);
    assert_eq!(set.claim_batch(1), Some(Batch { word: 0, mask: 1 }));
    assert_eq!(
        set.claim_batch(3),
        Some(Batch {
            word: 0,
            mask: 0b1110
        })
    );
    set.release(2).unwrap();
    // Free in word 0: bit 2 and 4..64 (61 slots); asking for 2 takes bits 2 and 4.
    assert_eq!(
        set.claim_batch(2),
        Some(Batch {
            word: 0,
            mask: 0b10100
        })
    );
    // Asking for exactly the free count takes all with the CAS path.
    assert_eq!(
        set.claim_batch(59),
        Some(Batch {
            word: 0,
            mask: !0 << 5
        })
    );
    // Word 0 is full: the next batch comes from word 1, all of it with max >= 64.
    assert_eq!(set.claim_batch(1000), Some(Batch { word: 1, mask: !0 }));
    // Word 2 has two slots only; max larger than that but below 64 takes both.
    assert_eq!(
        set.claim_batch(10),
        Some(Batch {
            word: 2,
            mask: 0b11
        })
    );
    assert_eq!(set.claim_batch(64), None);
    assert_eq!(set.claim_batch(5), None);
    assert_eq!(set.count_free(), 0);
}

#[test]
fn batch_len_and_iter() {
    let b = Batch {
        word: 2,
        mask: 0b1001_0001,
    };
    assert_eq!(b.len(), 3);
    assert!(!b.is_empty());
    let it = b.iter();
    assert_eq!(it.len(), 3);
    assert_eq!(it.collect::<Vec<_>>(), vec![128, 132, 135]);
    let e = Batch { word: 0, mask: 0 };
    assert!(e.is_empty());
    assert_eq!(e.len(), 0);
    assert_eq!(e.iter().next(), None);
    let full = Batch { word: 1, mask: !0 };
    assert_eq!(
        full.iter().collect::<Vec<_>>(),
        (64..128).collect::<Vec<_>>()
    );
}

#[test]
fn claim_run_finds_runs_inside_one_word() {
    let owned = Owned::new(192);
    let set = owned.set();
    assert_eq!(set.claim_run(0), None);
    assert_eq!(set.claim_run(65), None);
    assert_eq!(set.claim_run(3), Some(0));
    assert_eq!(set.claim_run(1), Some(3));
    // Leave holes of 1 and 2 in word 0: free 0, 2..4.
    set.release(0).unwrap();
    set.release(2).unwrap();
    set.release(3).unwrap();
    assert_eq!(set.claim_run(2), Some(2));
    assert_eq!(set.claim_run(64), Some(64)); // word 0 is not free at all; word 1 is
    assert_eq!(set.claim_run(60), Some(4)); // 4..64 is the first run of 60
    assert_eq!(set.claim_run(1), Some(0));
    // Word 0 full, word 1 full, word 2 empty: a run of 64 fits once more.
    assert_eq!(set.claim_run(64), Some(128));
    assert_eq!(set.claim_run(1), None);
    assert_eq!(set.count_free(), 0);

    // A run never crosses words: free 60..68 is 8 free slots but no run of 5.
    set.release_all();
    assert!(set.claim_batch(64).is_some());
    assert!(set.claim_batch(64).is_some());
    assert!(set.claim_batch(64).is_some());
    set.release_mask(0, 0xF << 60).unwrap();
    set.release_mask(1, 0xF).unwrap();
    assert_eq!(set.claim_run(5), None);
    assert_eq!(set.claim_run(4), Some(60));
    assert_eq!(set.claim_run(4), Some(64));
}

#[test]
fn try_claim_all_and_release_all() {
    for len in [1, 64, 100, 192] {
        let owned = Owned::new(len);
        let set = owned.set();
        assert!(set.try_claim_all());
        assert_eq!(set.count_claimed(), len);
        assert_eq!(set.claim(), None);
        assert!(!set.try_claim_all());
        set.release_all();
        assert_eq!(set.count_free(), len);

        // Only the last slot claimed: fails, and hands back what it took.
        let last = len - 1;
        let words_before: Vec<u64> = owned.words.iter().map(|w| w.load(Relaxed)).collect();
        for s in 0..len {
            assert_eq!(set.claim(), Some(s));
        }
        for s in 0..last {
            set.release(s).unwrap();
        }
        assert!(!set.try_claim_all());
        assert_eq!(set.count_claimed(), 1);
        assert!(set.is_claimed(last));
        set.release(last).unwrap();
        assert_eq!(
            owned
                .words
                .iter()
                .map(|w| w.load(Relaxed))
                .collect::<Vec<_>>(),
            words_before
        );
        assert!(set.try_claim_all());
    }
}

#[test]
fn is_claimed_and_counts() {
    let owned = Owned::new(70);
    let set = owned.set();
    assert!(!set.is_claimed(0));
    assert!(!set.is_claimed(69));
    assert!(!set.is_claimed(70)); // out of range
    assert!(!set.is_claimed(127)); // a tail bit, set in memory, but not a slot
    assert_eq!(set.claim_run(2), Some(0));
    assert!(set.is_claimed(0) && set.is_claimed(1) && !set.is_claimed(2));
    assert_eq!(set.count_claimed(), 2);
    assert_eq!(set.count_free(), 68);
}

#[test]
fn hint_skips_full_words_and_wraps_around() {
    let owned = Owned::new(200);
    let set = owned.set();
    let hint = || owned.hint.load(Relaxed);
    assert_eq!(hint(), 0);
    // Filling word 0 moves the hint past it.
    assert_eq!(set.claim_batch(64), Some(Batch { word: 0, mask: !0 }));
    assert_eq!(hint(), 1);
    assert_eq!(set.claim(), Some(64));
    assert_eq!(hint(), 1);
    // Free a slot behind the hint: the release pulls the hint back, so the lowest free slot is
    // claimed next (address-ordered reuse).
    set.release(5).unwrap();
    assert_eq!(hint(), 0);
    assert_eq!(set.claim(), Some(5));
    assert_eq!(set.claim(), Some(65));
    // Fill words 1, 2, 3 (word 3 holds 8 slots): the hint wraps to word 0.
    assert!(set.claim_batch(64).is_some_and(|b| b.word == 1));
    assert_eq!(hint(), 2);
    assert!(set.claim_batch(64).is_some_and(|b| b.word == 2));
    assert_eq!(hint(), 3);
    assert_eq!(
        set.claim_batch(64),
        Some(Batch {
            word: 3,
            mask: 0xFF
        })
    );
    assert_eq!(hint(), 0);
    // Everything is claimed now.
    assert_eq!(set.claim(), None);

    // A search from the hint that finds its word full moves on and wraps.
    set.release(130).unwrap();
    assert_eq!(
        hint(),
        0,
        "a release in word 2 does not move the hint forward"
    );
    owned.hint.store(3, Relaxed);
    assert_eq!(set.claim(), Some(130));
    assert_eq!(hint(), 3);

    // An out-of-range hint (e.g. scribbled by foreign code) is read as 0.
    set.release(199).unwrap();
    owned.hint.store(usize::MAX, Relaxed);
    assert_eq!(set.claim(), Some(199));
    assert_eq!(hint(), 0);

    // A failed run search leaves the hint at the first word that was not full.
    set.release_all();
    assert!(set.claim_batch(64).is_some());
    set.release_mask(0, 0b101).unwrap();
    owned.hint.store(0, Relaxed);
    assert_eq!(set.claim_run(2), Some(64));
    assert_eq!(hint(), 0);
    assert_eq!(set.claim(), Some(0));
}

#[test]
fn slot_array_const_and_static() {
    static ARRAY: SlotArray<3> = SlotArray::new(130);
    let set = ARRAY.as_set();
    assert_eq!(set.len(), 130);
    assert_eq!(claim_all_singly(set), (0..130).collect::<Vec<_>>());
    set.release_all();
    assert_eq!(set.count_free(), 130);

    let small: SlotArray<1> = const { SlotArray::new(5) };
    assert_eq!(claim_all_singly(small.as_set()), vec![0, 1, 2, 3, 4]);

    // Fewer slots than the array can hold: the spare words are unused.
    let roomy = SlotArray::<4>::new(64);
    assert_eq!(claim_all_singly(roomy.as_set()).len(), 64);
    assert!(std::format!("{roomy:?}").contains("claimed: 64"));
}

#[test]
#[should_panic(expected = "len exceeds")]
fn slot_array_too_long_panics() {
    let _ = SlotArray::<1>::new(65);
}

#[test]
fn raw_memory_round_trip() {
    let len = 150;
    let bytes = SlotSet::bytes_for(len);
    assert_eq!(bytes, 8 + 3 * 8);
    // Dirty memory: init_raw must overwrite it.
    let mut memory = vec![0xDEAD_BEEF_u64; bytes / 8 + 1];
    let ptr = memory.as_mut_ptr().cast::<u8>();
    {
        // SAFETY: `ptr` is 8-aligned (a `u64` vector) and valid for `bytes` bytes while
        // `memory` lives; the vector is not touched until both views are gone.
        let a = unsafe { SlotSet::init_raw(ptr, len) };
        // SAFETY: as above; the memory was initialised by `init_raw` with the same `len`.
        let b = unsafe { SlotSet::from_raw(ptr, len) };
        assert_eq!(a.count_free(), len);
        let x = a.claim().unwrap();
        let batch = b.claim_batch(64).unwrap();
        assert!(b.is_claimed(x));
        assert!(!batch.iter().any(|s| s == x));
        assert_eq!(a.count_claimed(), 1 + batch.len() as usize);
        b.release(x).unwrap();
        a.release_mask(batch.word, batch.mask).unwrap();
        assert_eq!(b.count_free(), len);
        // Word 0 was filled by the batch, so the hint moved on to word 1; releasing into word 0
        // pulled it back, so the lowest slot is claimed again.
        let y = a.claim().unwrap();
        assert_eq!(y, 0);
        assert!(b.is_claimed(y));
        // Fill word 0 and claim once more: the hint moves on to word 1.
        assert_eq!(a.claim_batch(64).map(|b| b.word), Some(0));
        assert_eq!(a.claim(), Some(64));
    }
    // The layout: hint word, then the slot words; the word after them is untouched.
    assert_eq!(memory[0], 1, "the hint");
    assert_eq!(memory[1], !0u64, "word 0 full");
    assert_eq!(memory[2], 1, "slot 64 is bit 0 of the second slot word");
    assert_eq!(memory[3], !0u64 << (len % 64));
    assert_eq!(memory[4], 0xDEAD_BEEF);

    // Zero slots need the hint word only.
    let mut hint_only = [0u64; 1];
    // SAFETY: 8-aligned and valid for `bytes_for(0) == 8` bytes, used only through the view.
    let empty = unsafe { SlotSet::init_raw(hint_only.as_mut_ptr().cast(), 0) };
    assert_eq!(empty.claim(), None);
}

#[test]
#[should_panic(expected = "8-aligned")]
fn raw_memory_must_be_aligned() {
    let mut memory = [0u64; 4];
    // SAFETY: not upheld on purpose: the pointer is misaligned, which must panic before any
    // access.
    let _ = unsafe { SlotSet::init_raw(memory.as_mut_ptr().cast::<u8>().wrapping_add(4), 64) };
}

/// A random walk of every operation, checked step by step against a model (`bool` per slot).
#[test]
fn random_walk_against_model() {
    let steps = if cfg!(miri) { 300 } else { 20_000 };
    for (seed, len) in [(1u64, 1usize), (2, 63), (3, 64), (4, 130), (5, 257)] {
        let owned = Owned::new(len);
        let set = owned.set();
        let mut model = vec![false; len];
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let words = SlotSet::words_for(len);
        let word_free =
            |m: &[bool], w: usize| (w * 64..len.min(w * 64 + 64)).filter(|&s| !m[s]).count();
        for step in 0..steps {
            let all_full = model.iter().all(|&c| c);
            match rng.below(9) {
                0 => match set.claim() {
                    Some(s) => {
                        assert!(s < len && !model[s], "step {step}: claim {s}");
                        model[s] = true;
                    }
                    None => assert!(all_full, "step {step}: claim None"),
                },
                1 | 2 => {
                    let max = [1u32, 2, 5, 31, 63, 64, 200][rng.below(7) as usize];
                    match set.claim_batch(max) {
                        Some(b) => {
                            assert!(!b.is_empty() && b.len() <= max, "step {step}: {b:?}");
                            let free = word_free(&model, b.word);
                            assert_eq!(b.len() as usize, free.min(max as usize), "step {step}");
                            for s in b.iter() {
                                assert!(s < len && !model[s], "step {step}: batch {s}");
                                model[s] = true;
                            }
                            if max < 64 {
                                // The lowest free slots of the word.
                                let lowest: Vec<usize> = (b.word * 64..len)
                                    .filter(|&s| !model[s] || b.iter().any(|t| t == s))
                                    .take(b.len() as usize)
                                    .collect();
                                assert_eq!(b.iter().collect::<Vec<_>>(), lowest);
                            }
                        }
                        None => assert!(all_full, "step {step}: batch None"),
                    }
                }
                3 => {
                    let n = 1 + rng.below(8) as usize;
                    let has_run = (0..words).any(|w| {
                        let end = len.min(w * 64 + 64);
                        (w * 64..end).any(|s| s + n <= end && (s..s + n).all(|t| !model[t]))
                    });
                    match set.claim_run(n) {
                        Some(first) => {
                            assert_eq!(first / 64, (first + n - 1) / 64, "step {step}");
                            assert!(first + n <= len, "step {step}: run at {first}");
                            for (s, claimed) in model.iter_mut().enumerate().skip(first).take(n) {
                                assert!(!*claimed, "step {step}: run slot {s}");
                                *claimed = true;
                            }
                        }
                        None => assert!(!has_run, "step {step}: run None"),
                    }
                }
                4 | 5 => {
                    let s = rng.below(len as u64 + 2) as usize;
                    let want = if s >= len {
                        Err(ReleaseError::OutOfRange { slot: s })
                    } else if model[s] {
                        Ok(())
                    } else {
                        Err(ReleaseError::NotClaimed {
                            word: s / 64,
                            mask: 1 << (s % 64),
                        })
                    };
                    assert_eq!(set.release(s), want, "step {step}");
                    if s < len {
                        model[s] = false;
                    }
                }
                6 | 7 => {
                    let w = rng.below(words as u64) as usize;
                    let mut mask = rng.next() & rng.next();
                    let end = len - w * 64;
                    if end < 64 {
                        mask &= (1u64 << end) - 1;
                    }
                    let not_claimed = (0..64)
                        .filter(|&i| mask & (1 << i) != 0 && !model[w * 64 + i])
                        .fold(0u64, |m, i| m | 1 << i);
                    let want = if not_claimed == 0 {
                        Ok(())
                    } else {
                        Err(ReleaseError::NotClaimed {
                            word: w,
                            mask: not_claimed,
                        })
                    };
                    assert_eq!(set.release_mask(w, mask), want, "step {step}");
                    for i in 0..64 {
                        if mask & (1 << i) != 0 {
                            model[w * 64 + i] = false;
                        }
                    }
                }
                _ => {
                    let all_free = model.iter().all(|&c| !c);
                    assert_eq!(set.try_claim_all(), all_free, "step {step}");
                    if all_free {
                        model.iter_mut().for_each(|c| *c = true);
                        if rng.below(2) == 0 {
                            set.release_all();
                            model.iter_mut().for_each(|c| *c = false);
                        }
                    }
                }
            }
            let claimed = model.iter().filter(|&&c| c).count();
            assert_eq!(set.count_claimed(), claimed, "step {step}");
            assert_eq!(set.count_free(), len - claimed, "step {step}");
            if step % 64 == 0 {
                for (s, &c) in model.iter().enumerate() {
                    assert_eq!(set.is_claimed(s), c, "step {step}: slot {s}");
                }
            }
        }
    }
}
