//! Where an active chunk is: owned by one thread, listed in its class's partial set, or floating
//! (full, on no set), and the protocol that moves it between them without a lock.
//!
//! # States
//!
//! ```text
//!            pop from the partial set               owner's free blocks ran out
//!   LISTED ─────────────────────────────> OWNED ──────────────────────────────> FLOATING
//!     ^  │                                  │ (thread exit, trim: local frees merged first) │
//!     │  │ last block back                  └───────────────────────────────────────────────┤
//!     │  v                                                                                   │
//!     │ RETIRING ──> EMPTY (the empty pool)                 a block came back ───────────────┘
//!     └────────────────────────────────────────────────────────── (FLOATING -> LISTED)
//! ```
//!
//! Only the owner claims blocks of a chunk, so `used` (blocks out of the chunk) rises only while
//! the chunk is OWNED; in every other state it can only fall, as flushes give blocks back. The
//! partial set's bit for the chunk is the token of exclusive access to a LISTED chunk: a refill
//! that pops it becomes the owner, a retirer that removes it may retire the chunk, and only one of
//! them can win it.
//!
//! # Who acts
//!
//! Two parties meet: a thread that just lowered `used` (a flush, with [`Membership::released`]),
//! and the owner leaving a chunk (with [`Membership::give_up`]). Each *first* publishes its own
//! change (the lower count, or the FLOATING state) and *then* reads the other's (the state, or the
//! count), all sequentially consistent. In the single order of SeqCst operations one of the two
//! reads comes after the other party's write, so at least one of them sees both changes and acts:
//! a chunk with free blocks never stays FLOATING, and a chunk whose last block came back never
//! stays unretired unless it is owned (its owner retires it when it leaves). Listing follows the
//! same rule: the lister sets LISTED and the bit, then reads `used`; a flusher that emptied the
//! chunk meanwhile reads the state after its decrement. Whoever sees "LISTED and empty" tries to
//! remove the bit; at most one succeeds, and it re-reads `used` before retiring, because the bit
//! may have gone round (popped, owned, given up, listed again) since `used` was last read.
//!
//! Everything here is SeqCst, and every read that the argument depends on is a read-modify-write
//! that changes nothing (`fetch_add(0)`): an RMW reads the newest value in its variable's
//! modification order and joins its release sequence, so the "publish, then read the other's"
//! argument holds even under acquire/release reasoning alone, which is what loom checks (it
//! treats SeqCst as AcqRel). For the same reason every write of the state is a `swap` or a CAS,
//! never a plain store: all its changes then form one chain of RMWs, which loom models exactly.
//! These are slow-path operations (a chunk changing hands); the RMWs
//! cost a few cycles each there.

use crate::primitive::{
    AtomicU8, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};

/// In the empty pool (or being formatted); not of any class.
pub const EMPTY: u8 = 0;
/// A thread claims blocks from it; only that thread does.
pub const OWNED: u8 = 1;
/// Full when its owner left it; on no set.
pub const FLOATING: u8 = 2;
/// Its bit is (or is about to be) in its class's partial set.
pub const LISTED: u8 = 3;
/// One thread holds it exclusively to retire it.
pub const RETIRING: u8 = 4;

/// The partial set's bit for one chunk, as the protocol sees it.
pub trait Listing {
    /// Sets the chunk's bit. It is not set (the caller won the right to set it).
    fn insert(&self);
    /// Clears the chunk's bit; true if this call cleared it (the caller now holds the chunk).
    fn remove(&self) -> bool;
}

/// The membership state of one chunk and its count of blocks out.
pub struct Membership {
    state: AtomicU8,
    used: AtomicUsize,
}

impl Membership {
    /// An EMPTY chunk's membership.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            used: AtomicUsize::new(0),
        }
    }

    /// An EMPTY chunk's membership.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            used: AtomicUsize::new(0),
        }
    }

    /// The state, for checks and statistics.
    pub fn state(&self) -> u8 {
        self.state.load(SeqCst)
    }

    /// Blocks out of the chunk (claimed from its shared bitmap and not released).
    pub fn used(&self) -> usize {
        self.used.load(SeqCst)
    }

    /// A chunk fresh from the empty pool, or just popped from the partial set, becomes the
    /// caller's. The caller holds it exclusively (it took it off the empty pool or won its bit).
    pub fn own(&self) {
        self.state.swap(OWNED, SeqCst);
    }

    /// The owner claimed `n` blocks from the shared bitmap.
    #[inline]
    pub fn claimed(&self, n: usize) {
        // Relaxed: only the owner raises the count, and nobody decides anything from it while the
        // chunk is OWNED; the owner's later SeqCst store of FLOATING publishes it.
        self.used.fetch_add(n, Relaxed);
    }

    /// The owner gave `n` blocks back to the shared bitmap (merging its local frees) while it
    /// still owns the chunk.
    pub fn unclaimed(&self, n: usize) {
        let before = self.used.fetch_sub(n, SeqCst);
        debug_assert!(before >= n, "more blocks came back than went out");
    }

    /// `n` blocks were released into the shared bitmap by a thread that does not own the chunk
    /// (the bits are already clear). Returns true if the caller must now retire the chunk: it is
    /// empty, and the caller holds it exclusively in state RETIRING.
    pub fn released(&self, n: usize, slots: usize, list: &impl Listing) -> bool {
        let before = self.used.fetch_sub(n, SeqCst);
        debug_assert!(before >= n, "more blocks came back than went out");
        self.settle(slots, list, false)
    }

    /// The owner leaves the chunk (its blocks ran out, or the thread exits). Returns true if the
    /// caller must retire it, as for [`released`](Self::released). With `keep_empty`, a chunk
    /// with no block out is listed instead of retired, so that the next heap to need its class
    /// finds it warm (a thread that exits leaves its chunks to the threads that follow); it stays
    /// listed until a refill takes it or a trim retires it.
    pub fn give_up(&self, slots: usize, list: &impl Listing, keep_empty: bool) -> bool {
        debug_assert_eq!(self.state(), OWNED);
        self.state.swap(FLOATING, SeqCst);
        self.settle(slots, list, keep_empty)
    }

    /// Takes a LISTED chunk that has no block out off its set to retire it (a trim of chunks
    /// that were listed empty). True if the caller now holds it in state RETIRING.
    pub fn retire_if_empty(&self, list: &impl Listing) -> bool {
        self.read_state() == LISTED && self.read_used() == 0 && self.retire_listed(list)
    }

    /// Moves a chunk that is not owned to where its count says it belongs: listed if it has free
    /// blocks, retired if it has no block out.
    ///
    /// A FLOATING chunk can go round (listed, owned, given up) between two reads, so a count read
    /// while it looked FLOATING may be stale by the time a CAS takes it: the CAS only makes the
    /// caller its exclusive holder (state LISTED before its bit is set, or RETIRING), and the
    /// decision is taken on a count read again while holding it.
    fn settle(&self, slots: usize, list: &impl Listing, keep_empty: bool) -> bool {
        loop {
            match self.read_state() {
                FLOATING => {
                    if self.read_used() == slots {
                        // Full: the next release settles it.
                        return false;
                    }
                    if self
                        .state
                        .compare_exchange(FLOATING, LISTED, SeqCst, SeqCst)
                        .is_err()
                    {
                        continue;
                    }
                    // Held: LISTED without its bit, so no refill can own it and the count only
                    // falls.
                    match self.read_used() {
                        0 if keep_empty => {
                            // Nothing is out, so no release will come to look at it again.
                            list.insert();
                            return false;
                        }
                        0 => {
                            self.state.swap(RETIRING, SeqCst);
                            return true;
                        }
                        u if u == slots => {
                            // It filled up while it went round; float it again and look again
                            // (a release that came meanwhile saw LISTED and left it to us).
                            self.state.swap(FLOATING, SeqCst);
                        }
                        _ => {
                            list.insert();
                            // A flush may have emptied it before it could see the bit.
                            return self.read_used() == 0 && self.retire_listed(list);
                        }
                    }
                }
                LISTED => return self.read_used() == 0 && self.retire_listed(list),
                // OWNED: the owner settles it when it leaves. RETIRING, EMPTY: someone holds it.
                _ => return false,
            }
        }
    }

    /// Tries to take a LISTED chunk that looked empty off its set to retire it.
    fn retire_listed(&self, list: &impl Listing) -> bool {
        loop {
            if !list.remove() {
                // A refill took it (it is being owned), or another thread is retiring it.
                return false;
            }
            // We hold the bit. The chunk may have been owned and listed again since `used` was
            // read, so read it again now that nobody can claim from it.
            if self.read_used() == 0 {
                self.state.swap(RETIRING, SeqCst);
                return true;
            }
            list.insert();
            // A flush that emptied it before our insert could not remove the bit we held.
            if self.read_used() != 0 {
                return false;
            }
        }
    }

    /// The count, read as an RMW (see the module comment).
    fn read_used(&self) -> usize {
        self.used.fetch_add(0, SeqCst)
    }

    /// The state, read as an RMW (see the module comment).
    fn read_state(&self) -> u8 {
        self.state.fetch_add(0, SeqCst)
    }

    /// A retired chunk enters the empty pool. The caller holds it in state RETIRING.
    pub fn emptied(&self) {
        debug_assert_eq!(self.state(), RETIRING);
        debug_assert_eq!(self.used(), 0);
        self.state.swap(EMPTY, SeqCst);
    }
}

impl Default for Membership {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, loom))]
mod models {
    //! Every interleaving of the protocol's races, with every outcome SeqCst allows.
    //!
    //! ```text
    //! RUSTFLAGS="--cfg loom" cargo test -p slab-pool --lib --release
    //! ```

    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;

    /// One chunk: its membership, its partial-set bit, and how often it was retired.
    struct Chunk {
        m: Membership,
        bit: AtomicBool,
        retired: AtomicUsize,
    }

    impl Listing for Chunk {
        fn insert(&self) {
            assert!(!self.bit.swap(true, SeqCst), "a chunk is listed twice");
        }
        fn remove(&self) -> bool {
            self.bit.swap(false, SeqCst)
        }
    }

    impl Chunk {
        /// An owned chunk of `slots` blocks, `used` of them out.
        fn owned(used: usize) -> Arc<Self> {
            let c = Arc::new(Self {
                m: Membership::new(),
                bit: AtomicBool::new(false),
                retired: AtomicUsize::new(0),
            });
            c.m.own();
            c.m.claimed(used);
            c
        }

        fn retire_if(&self, must: bool) {
            if must {
                assert_eq!(self.m.state(), RETIRING);
                assert_eq!(self.m.used(), 0, "retired with blocks out");
                self.retired.fetch_add(1, SeqCst);
                self.m.emptied();
            }
        }

        /// What a refill does: pop the bit, own the chunk, claim one block if any is free.
        fn refill(&self, slots: usize) -> bool {
            if !self.remove() {
                return false;
            }
            self.m.own();
            if self.m.used() < slots {
                self.m.claimed(1);
            }
            true
        }

        /// The end state is consistent: retired at most once and only when empty; listed iff
        /// it has free blocks and is neither owned nor retired.
        fn check(&self, slots: usize, owned: bool) {
            let retired = self.retired.load(SeqCst);
            let listed = self.bit.load(SeqCst);
            let used = self.m.used();
            assert!(retired <= 1);
            if owned {
                assert_eq!(self.m.state(), OWNED);
                assert!(!listed);
                return;
            }
            if retired == 1 {
                assert_eq!(self.m.state(), EMPTY);
                assert!(!listed, "retired and listed");
            } else if used == 0 {
                panic!("an empty chunk was neither retired nor owned");
            } else if used < slots {
                assert!(listed, "a chunk with free blocks was lost");
                assert_eq!(self.m.state(), LISTED);
            } else {
                assert!(!listed);
                assert_eq!(self.m.state(), FLOATING);
            }
        }
    }

    /// Another thread releases `n` blocks of a two-slot chunk (and retires it if told to).
    fn release_in_thread(c: &Arc<Chunk>, n: usize) -> thread::JoinHandle<()> {
        let c = c.clone();
        thread::spawn(move || {
            let must = c.m.released(n, 2, &*c);
            c.retire_if(must);
        })
    }

    /// The owner leaves a full chunk while another thread frees its last blocks.
    #[test]
    fn give_up_races_the_last_release() {
        loom::model(|| {
            let c = Chunk::owned(2);
            let t = release_in_thread(&c, 2);
            let must = c.m.give_up(2, &*c, false);
            c.retire_if(must);
            t.join().unwrap();
            c.check(2, false);
            assert_eq!(c.retired.load(SeqCst), 1);
        });
    }

    /// The owner leaves a chunk, keeping it if empty, while the last block comes back: the chunk
    /// ends listed (empty, kept) or retired, exactly one of the two.
    #[test]
    fn keep_empty_races_the_last_release() {
        loom::model(|| {
            let c = Chunk::owned(1);
            let t = release_in_thread(&c, 1);
            let must = c.m.give_up(2, &*c, true);
            c.retire_if(must);
            t.join().unwrap();
            let retired = c.retired.load(SeqCst);
            let listed = c.bit.load(SeqCst);
            assert_eq!(c.m.used(), 0);
            assert!(
                retired + usize::from(listed) == 1,
                "retired {retired}, listed {listed}"
            );
            assert_eq!(c.m.state(), if listed { LISTED } else { EMPTY });
        });
    }

    /// Two threads free one block each of a full floating chunk: it is listed once, then
    /// retired once.
    #[test]
    fn two_releases_of_a_floating_chunk() {
        loom::model(|| {
            let c = Chunk::owned(2);
            assert!(!c.m.give_up(2, &*c, false));
            let t = release_in_thread(&c, 1);
            let must = c.m.released(1, 2, &*c);
            c.retire_if(must);
            t.join().unwrap();
            c.check(2, false);
            assert_eq!(c.retired.load(SeqCst), 1);
        });
    }

    /// A refill pops a listed chunk while a flush gives its last block back: either the refill
    /// owns it, or it was retired first and the refill found no bit.
    #[test]
    fn refill_races_retirement() {
        loom::model(|| {
            // Two slots, one out: given up, it is listed.
            let c = Chunk::owned(1);
            assert!(!c.m.give_up(2, &*c, false));
            assert!(c.bit.load(SeqCst));
            let t = release_in_thread(&c, 1);
            let owned = c.refill(2);
            t.join().unwrap();
            c.check(2, owned);
            assert_eq!(c.retired.load(SeqCst), usize::from(!owned));
        });
    }

    /// A chunk goes round (popped, owned, given up, listed again) while a retirer holds a stale
    /// view of it as empty: the retirer must not retire it with a block out.
    #[test]
    fn stale_retirer_does_not_retire_a_reused_chunk() {
        loom::model(|| {
            let c = Chunk::owned(1);
            assert!(!c.m.give_up(2, &*c, false));
            let t = release_in_thread(&c, 1);
            // Meanwhile a refill takes it, claims a block and leaves it.
            if c.refill(2) {
                let must = c.m.give_up(2, &*c, false);
                c.retire_if(must);
            }
            t.join().unwrap();
            c.check(2, false);
        });
    }
}
