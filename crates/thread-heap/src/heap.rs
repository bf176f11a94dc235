//! A thread's heap: one [`Bucket`] per size class in front of a [`CentralStore`].
//!
//! Allocation pops from the bucket of the class and free pushes onto it; only an empty bucket
//! (refill) or a full one (flush of its oldest part) reaches the store. A block freed by any
//! thread goes into the bucket of the thread that frees it: no block remembers its allocating
//! thread, so a free never needs a lock, an atomic instruction or a message to another thread.
//! The bucket bounds keep such transfers from piling up: a thread that only frees hands its
//! surplus back to the store in batches.
//!
//! The buckets' stacks share one array of `S` slots inside the heap, class `c`'s at a fixed
//! offset (the sum of the rooms of the classes before it), so the heap is one plain value with no
//! pointer into itself: it may be moved, and built by a `const fn`.
//!
//! A heap can be *diverted*: when the store's [`CentralStore::divert`] answers yes after a
//! flush, every bucket's `base` and `limit` are set to its `top` (the limits kept aside; a
//! class's real base is the previous class's `end`), so the pop sees every bucket empty and the
//! push sees it full, and both fast paths, unchanged, fall through to the slow paths. There a
//! free goes onto the bucket's real stack (or flushes it) without asking; an allocation asks
//! `divert` again, is served from the real stack or by a refill, and ends the diversion when
//! the store says no. It is how a store runs work it deferred (a purge due a few milliseconds
//! later) at the heap's next allocation, whatever its class, without a test on the fast paths.
//! When that work is due ([`CentralStore::shed`]), the heap first gives back every block it
//! caches, so that the purge can return their pages too.
//!
//! A bucket starts at the capacity the store gives ([`CentralStore::cap`]) and may grow within
//! its room: when it runs empty after it overflowed since its last refill, the program cycles
//! through more blocks of the class than the bucket holds (it allocates a batch and frees it,
//! again and again), and the heap asks the store ([`CentralStore::grow`]) how far it may grow.
//! A bucket that only empties never grows, and one that flushes more than twice the most it
//! could hold with no refill between (a long run of frees, which no bucket size would absorb; a
//! thread that frees what others allocate) asks at each flush after that whether it should
//! shrink back ([`CentralStore::shrink`]): a thread that frees many blocks in a scattered
//! order, whose bucket pins the pages of the blocks it caches, ends with the first size.
//!
//! The heap holds no reference to its store; every call that may reach the store takes it as an
//! argument. A heap works with one store (or with stores that share their blocks) for as long as
//! it holds blocks: see [`ThreadHeap::dealloc`] and [`ThreadHeap::flush_all`].

use core::ptr::{self, NonNull};

use crate::{Block, Bucket, CentralStore};

/// Per-thread caches of free blocks, one [`Bucket`] per size class `0..N`, their stacks in `S`
/// slots.
///
/// # Invariants
///
/// Every bucket satisfies the [`Bucket`] invariants; the buckets' slot ranges `base..end` are
/// disjoint and inside `0..S`; all of them hold blocks handed out by the
/// one store this heap works with. A block is in at most one bucket and is not in use.
///
/// `new` and [`lazy`](Self::lazy) are `const fn`s and the heap has no destructor, so it can live
/// in a thread-local `static` with a constant initialiser: no lazy initialisation, no destructor
/// registration. Dropping a heap that still caches blocks leaks them (it holds no store to return
/// them to): call [`flush_all`](Self::flush_all) (or, after `fork`, [`forget_all`](Self::forget_all))
/// first. The heap owns its blocks and nothing tied to a thread, so it is `Send`: a retired heap
/// can be flushed by another thread.
#[derive(Debug)]
#[repr(C)]
pub struct ThreadHeap<const N: usize, const S: usize> {
    /// The [`Bucket`] of class `c` is `top[c]`, `limit[c]`, `base[c]` and `end[c]`: one array
    /// per field, so that a fast path addresses a field as `heap + offset + 4 * class`, with the
    /// class as the index register. With one 16-byte record per class, each fast path first
    /// shifted the class into a second register (two instructions more on each). The two
    /// fields a fast path reads (`top`, and `limit` or `base`) lie in two cache lines, each
    /// shared by 16 classes, where the records gave each class part of one line shared by four
    /// classes. First, so that the fast paths find `top` at the heap's start.
    top: [u32; N],
    /// Each bucket's `limit`.
    limit: [u32; N],
    /// Each bucket's `base`.
    base: [u32; N],
    /// Each bucket's `end`.
    end: [u32; N],
    /// The stacks: class `c`'s blocks are in `slots[base[c]..top[c]]` (while diverted, from the
    /// class's first slot up to `top`).
    slots: [*mut Block; S],
    /// While diverted, each bucket's `limit`; its `base` and `limit` are then both `top`.
    hidden_limit: [u32; N],
    /// The blocks each bucket flushed since its last refill (saturating): a refill that finds
    /// it non-zero asks the store whether the bucket may grow ([`CentralStore::grow`]), and a
    /// flush that takes it past twice the bucket's room whether it should shrink
    /// ([`CentralStore::shrink`]).
    flushed: [u32; N],
    /// Whether the store asked that every operation take the slow path (see
    /// [`CentralStore::divert`]).
    diverted: bool,
    /// Whether the buckets have their slot ranges: false only for an [`unlaid`](Self::unlaid)
    /// heap before its first slow path.
    laid: bool,
}

// SAFETY: the heap owns its blocks exclusively (type invariant); they are plain memory with no
// tie to the thread that filled the heap, so the heap may move to another thread with them.
unsafe impl<const N: usize, const S: usize> Send for ThreadHeap<N, S> {}

const _: () = assert!(!core::mem::needs_drop::<ThreadHeap<64, 64>>());
const _: () = assert!(core::mem::offset_of!(ThreadHeap<64, 64>, top) == 0);
const _: () =
    assert!(core::mem::offset_of!(ThreadHeap<64, 64>, slots) == 4 * 64 * size_of::<u32>());

/// Where one class's fields lie in a heap's bucket arrays (`ThreadHeap<N, _>`'s `top`, `limit`,
/// `base`, `end`): the byte offset `4 * class`, checked against `N` when it is made. The fast
/// paths take a class ([`ThreadHeap::pop`], [`ThreadHeap::push`]) or an entry
/// ([`ThreadHeap::pop_at`], [`ThreadHeap::push_at`]); an entry lets the caller choose how the
/// compiler addresses the fields (see [`opaque`](Self::opaque)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<const N: usize>(usize);

impl<const N: usize> Entry<N> {
    /// The entry of `class`.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline(always)]
    pub fn of(class: usize) -> Self {
        assert!(class < N, "class out of range");
        Self(class * size_of::<u32>())
    }

    /// The same entry, computed into a register the optimiser cannot see through, so that the
    /// fast paths address the fields as "register plus displacement" (one `lea` first) rather
    /// than fold the class into the access as "index times 4 plus displacement".
    ///
    /// For a heap that is itself reached through a register (a thread-local found through the
    /// GOT, any heap behind a pointer), leave the entry as it is: the access is then "base plus
    /// index times 4", one instruction less, and as fast. For a heap at a constant address, a
    /// thread-local of an executable (a constant offset from the `fs` segment on x86-64), the
    /// folded form has no base register, and on the machines the benchmarks ran on a load of
    /// `top` in that form waited for the store to `top` before it instead of taking its value
    /// at once: an alloc/free pair in a loop took 4.4 ns, against 1.6 ns through an opaque
    /// entry (criterion `pair_16B`, 100 pairs: 440 against 164 ns). Elsewhere than x86 the
    /// entry is returned as it is.
    #[inline(always)]
    pub fn opaque(self) -> Self {
        #[allow(unused_mut)] // written by the `asm!` on x86
        let mut off = self.0;
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        // SAFETY: the block has no instructions; it only hides the value from the optimiser, and
        // touches no memory, stack or flags (as its options say). The value is unchanged.
        unsafe {
            core::arch::asm!(
                "/* {0} */",
                inout(reg) off,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        Self(off)
    }
}

impl<const N: usize, const S: usize> ThreadHeap<N, S> {
    /// An empty heap whose bucket for class `c` holds at most `caps[c]` blocks (0: no caching
    /// for that class).
    ///
    /// # Panics
    ///
    /// When the capacities add up to more than `S` slots (at compile time in a `const`).
    pub const fn new(caps: [u32; N]) -> Self {
        Self::build(caps, true)
    }

    /// An empty heap that reserves `room[c]` slots for class `c` and caches nothing yet: each
    /// class's first slow path (allocation or free) asks the store ([`CentralStore::cap`]) for
    /// the capacity, kept within the room. This is how a store learns when a thread first uses
    /// its heap.
    ///
    /// # Panics
    ///
    /// As for [`new`](Self::new).
    pub const fn lazy(room: [u32; N]) -> Self {
        Self::build(room, false)
    }

    const fn build(room: [u32; N], caching: bool) -> Self {
        assert!(S <= u32::MAX as usize, "slot indices are 32-bit");
        let mut heap = Self::unlaid();
        let mut base = 0usize;
        let mut class = 0;
        while class < N {
            let end = base + room[class] as usize;
            assert!(end <= S, "the capacities need more slots than the heap has");
            heap.top[class] = base as u32;
            heap.limit[class] = if caching { end } else { base } as u32;
            heap.base[class] = base as u32;
            heap.end[class] = end as u32;
            base = end;
            class += 1;
        }
        heap.laid = true;
        heap
    }

    /// An empty heap, all zeros, whose slot ranges are laid out at its first slow path from
    /// what the store answers to [`CentralStore::room`]; then as [`lazy`](Self::lazy) with those
    /// rooms. For a thread-local heap: a thread-local whose initial value is all zeros costs a
    /// new thread nothing until it touches it (`.tbss`), where any other value is copied into
    /// every thread's TLS at its creation (`.tdata`, the heap's whole size).
    pub const fn unlaid() -> Self {
        Self {
            top: [0; N],
            limit: [0; N],
            base: [0; N],
            end: [0; N],
            slots: [ptr::null_mut(); S],
            hidden_limit: [0; N],
            flushed: [0; N],
            diverted: false,
            laid: false,
        }
    }

    /// Allocates a block of `class`: the newest cached one, or, when the bucket is empty, the
    /// first of a batch of up to `max(cap / 2, 1)` blocks fetched from `store` (the rest stay
    /// cached). `None` when the bucket is empty and the store is out of memory; the heap stays
    /// usable.
    ///
    /// The block is at least the class's block size and aligned as the store aligns the class.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline(always)]
    pub fn alloc<S2: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        store: &S2,
    ) -> Option<NonNull<u8>> {
        match self.pop(class) {
            Some(p) => Some(p),
            None => self.alloc_slow(class, store).map(NonNull::cast),
        }
    }

    /// Allocation fast path alone: the newest cached block of `class`, or `None` when the bucket
    /// is empty (the caller then goes to [`alloc`](Self::alloc), which refills). For a caller
    /// that keeps the slow path out of line itself, so that its fast path saves no registers.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline(always)]
    pub fn pop(&mut self, class: usize) -> Option<NonNull<u8>> {
        self.pop_at(Entry::of(class))
    }

    /// [`pop`](Self::pop) of the class whose entry is `entry`.
    #[inline(always)]
    pub fn pop_at(&mut self, entry: Entry<N>) -> Option<NonNull<u8>> {
        // SAFETY: `self` is a valid heap, reached through no other reference while this runs.
        unsafe { Self::pop_in(self, entry) }
    }

    /// [`pop_at`](Self::pop_at) through a pointer, for a heap that may be shared: it reads the
    /// bucket's `top` and `base`, and writes only when they differ (the bucket holds a block).
    /// So a heap whose every bucket is empty (an [`unlaid`](Self::unlaid) one) may be read by
    /// many threads at once through this, none of them holding it: it is never written.
    ///
    /// # Safety
    ///
    /// `heap` points to a valid heap. If its bucket of `entry` holds a block, the heap is the
    /// caller's: no other thread reaches it and no reference to it is live.
    #[inline(always)]
    pub unsafe fn pop_in(heap: *mut Self, entry: Entry<N>) -> Option<NonNull<u8>> {
        // SAFETY: `heap` is valid (contract); the fields are in bounds (`field_in`).
        let (base, top) = unsafe {
            (
                *Self::field_in(&raw mut (*heap).base, entry),
                Self::field_in(&raw mut (*heap).top, entry),
            )
        };
        // SAFETY: as above.
        let at = unsafe { *top };
        if at == base {
            return None;
        }
        let at = at - 1;
        debug_assert!((at as usize) < S);
        // SAFETY: the bucket holds a block, so the heap is the caller's to write (contract).
        // `base <= top - 1 < end <= S` (type invariant), and a slot below the old top holds a
        // cached block's address, never null.
        unsafe {
            *top = at;
            let slot = (&raw mut (*heap).slots)
                .cast::<*mut Block>()
                .add(at as usize);
            Some(NonNull::new_unchecked(*slot).cast())
        }
    }

    /// Free fast path alone: caches `ptr` in the bucket of `class` when it has room and returns
    /// true; otherwise changes nothing and returns false (the caller then goes to
    /// [`dealloc`](Self::dealloc), which flushes).
    ///
    /// # Safety
    ///
    /// As for [`dealloc`](Self::dealloc).
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline(always)]
    pub unsafe fn push(&mut self, class: usize, ptr: NonNull<u8>) -> bool {
        // SAFETY: forwarded.
        unsafe { self.push_at(Entry::of(class), ptr) }
    }

    /// [`push`](Self::push) into the class whose entry is `entry`.
    ///
    /// # Safety
    ///
    /// As for [`push`](Self::push), for the class of `entry`.
    #[inline(always)]
    pub unsafe fn push_at(&mut self, entry: Entry<N>, ptr: NonNull<u8>) -> bool {
        // SAFETY: `self` is a valid heap, reached through no other reference; the rest is
        // forwarded.
        unsafe { Self::push_in(self, entry, ptr) }
    }

    /// [`push_at`](Self::push_at) through a pointer, for a heap that may be shared, as
    /// [`pop_in`](Self::pop_in): it reads the bucket's `top` and `limit`, and writes only when
    /// the bucket has room. A heap whose every bucket has capacity 0 is never written.
    ///
    /// # Safety
    ///
    /// `heap` points to a valid heap. If its bucket of `entry` has room, the heap is the
    /// caller's, as for [`pop_in`](Self::pop_in), and `ptr` is as for [`push`](Self::push).
    #[inline(always)]
    pub unsafe fn push_in(heap: *mut Self, entry: Entry<N>, ptr: NonNull<u8>) -> bool {
        // SAFETY: `heap` is valid (contract); the fields are in bounds (`field_in`).
        let (limit, top) = unsafe {
            (
                *Self::field_in(&raw mut (*heap).limit, entry),
                Self::field_in(&raw mut (*heap).top, entry),
            )
        };
        // SAFETY: as above.
        let at = unsafe { *top };
        if at >= limit {
            return false;
        }
        debug_assert!((at as usize) < S);
        // SAFETY: the bucket has room, so the heap is the caller's to write (contract);
        // `top < limit <= end <= S` (type invariant). The caller hands the block over.
        unsafe {
            let slot = (&raw mut (*heap).slots)
                .cast::<*mut Block>()
                .add(at as usize);
            *slot = ptr.as_ptr().cast();
            // An increment of the field, not a store of `at + 1`: one instruction (`inc` of
            // memory) where the store is two, on the Rust path (17 instructions a pair, 18 with
            // the store).
            *top += 1;
        }
        true
    }

    /// The field of one bucket array at `entry`, through a pointer to the array.
    #[inline(always)]
    fn field_in(array: *mut [u32; N], entry: Entry<N>) -> *mut u32 {
        // An `Entry<N>` is `4 * class` with `class < N` (checked by `Entry::of`, kept by
        // `opaque`): an aligned entry of a `[u32; N]`, so the offset stays inside the array.
        array.cast::<u32>().wrapping_byte_add(entry.0)
    }

    /// Frees a block of `class` into this heap's bucket for the class. When the bucket is full,
    /// its oldest part first goes back to `store` in one call; with a capacity of 0 the block
    /// goes straight back to `store`.
    ///
    /// The block may have been allocated by any heap working with `store`, on any thread.
    ///
    /// # Safety
    ///
    /// - `ptr` is a block of class `class` that `store` handed out (through this or another
    ///   heap), it is not in use any more and not freed twice: from now on it belongs to the heap;
    /// - `store` is the store this heap works with: every block this heap holds came from it.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline(always)]
    pub unsafe fn dealloc<S2: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        ptr: NonNull<u8>,
        store: &S2,
    ) {
        // SAFETY: forwarded from the caller.
        if !unsafe { self.push(class, ptr) } {
            // SAFETY: as above.
            unsafe { self.dealloc_slow(class, ptr.cast(), store) }
        }
    }

    /// Cold half of [`alloc`](Self::alloc): the bucket looks empty. While diverted, the store
    /// is asked first whether the diversion goes on; then the bucket's real stack serves, or a
    /// refill ([`refill_and_pop`](Self::refill_and_pop)).
    #[cold]
    #[inline(never)]
    fn alloc_slow<S2: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        store: &S2,
    ) -> Option<NonNull<Block>> {
        if self.diverted {
            if store.shed() {
                // Every cached block goes back (which ends the diversion), then the store says
                // whether it goes on.
                self.flush_all(store);
                if !store.divert() {
                    return self.refill_and_pop(class, store);
                }
                self.divert();
                return self.alloc_diverted(class, store);
            }
            if store.divert() {
                return self.alloc_diverted(class, store);
            }
            self.undivert();
            if let Some(p) = self.pop(class) {
                return Some(p.cast());
            }
        }
        self.refill_and_pop(class, store)
    }

    /// An allocation of a heap that stays diverted: from the bucket's real stack, or a refill.
    #[inline]
    fn alloc_diverted<S2: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        store: &S2,
    ) -> Option<NonNull<Block>> {
        self.reveal(class);
        let p = match self.pop(class) {
            Some(p) => Some(p.cast()),
            None => self.refill_and_pop(class, store),
        };
        self.hide(class);
        p
    }

    /// Cold half of [`dealloc`](Self::dealloc): the bucket looks full. While diverted, the
    /// bucket's real stack takes the block (or flushes first); otherwise a flush
    /// ([`flush_and_push`](Self::flush_and_push)), after which the heap diverts itself if the
    /// store asks for it.
    ///
    /// # Safety
    ///
    /// As for [`dealloc`](Self::dealloc).
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow<S2: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        block: NonNull<Block>,
        store: &S2,
    ) {
        if self.diverted {
            // Only an allocation asks whether the diversion ends: frees come in runs, and the
            // store's deferred work is for after them.
            self.reveal(class);
            // SAFETY: forwarded from the caller.
            if !unsafe { self.push(class, block.cast()) } {
                // SAFETY: as above.
                unsafe { self.flush_and_push(class, block, store) };
            }
            self.hide(class);
            return;
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.flush_and_push(class, block, store) };
        if store.divert() {
            self.divert();
        }
    }

    /// Gives an [`unlaid`](Self::unlaid) heap its slot ranges: `store.room(c)` slots for class
    /// `c`, in class order, as far as the `S` slots go. Every bucket is empty (an unlaid heap
    /// caches nothing: both its fast paths fail) and keeps capacity 0.
    #[cold]
    fn lay_out<S2: CentralStore + ?Sized>(&mut self, store: &S2) {
        let mut base = 0;
        for class in 0..N {
            let room = store.room(class).min(S as u32 - base);
            self.top[class] = base;
            self.limit[class] = base;
            self.base[class] = base;
            self.end[class] = base + room;
            base += room;
        }
        self.laid = true;
    }

    /// The first slot of the class's stack (its bucket's `base`, except while diverted).
    #[inline]
    fn first(&self, class: usize) -> u32 {
        match class.checked_sub(1) {
            Some(before) => self.end[before],
            None => 0,
        }
    }

    /// Diverts every operation to the slow path: each bucket's `base` and `limit` become its
    /// `top`, so that the pop sees it empty and the push full, and its limit is kept aside.
    fn divert(&mut self) {
        debug_assert!(!self.diverted);
        for class in 0..N {
            self.hide(class);
        }
        self.diverted = true;
    }

    /// Ends a diversion: every bucket gets its `base` and `limit` back.
    fn undivert(&mut self) {
        if !self.diverted {
            return;
        }
        for class in 0..N {
            self.reveal(class);
        }
        self.diverted = false;
    }

    /// One bucket of a diverted heap as the fast paths see it: `base` and `limit` at `top`.
    #[inline]
    fn hide(&mut self, class: usize) {
        self.hidden_limit[class] = self.limit[class];
        self.base[class] = self.top[class];
        self.limit[class] = self.top[class];
    }

    /// One bucket of a diverted heap as it really is, for one operation on it.
    #[inline]
    fn reveal(&mut self, class: usize) {
        self.base[class] = self.first(class);
        self.limit[class] = self.hidden_limit[class];
    }

    /// Asks the store how far the bucket of `class`, which overflowed and has now run empty, may
    /// grow ([`CentralStore::grow`]), kept within the room reserved for it (a bucket that fills
    /// its room does not ask). It never shrinks here.
    #[cold]
    fn grow<S2: CentralStore + ?Sized>(&mut self, class: usize, store: &S2) {
        let cap = self.limit[class] - self.base[class];
        let room = self.end[class] - self.base[class];
        if cap >= room {
            return;
        }
        let grown = store.grow(class, cap).min(room);
        if grown > cap {
            self.limit[class] = self.base[class] + grown;
        }
    }

    /// Asks the store whether the bucket of `class`, which has flushed more than twice its room
    /// since its last refill and was just flushed, should shrink
    /// ([`CentralStore::shrink`]). An answer that is not below the capacity, or that would not
    /// leave room for one block more than the bucket holds, is ignored.
    #[cold]
    fn shrink<S2: CentralStore + ?Sized>(&mut self, class: usize, store: &S2) {
        let cap = self.limit[class] - self.base[class];
        let len = self.top[class] - self.base[class];
        let shrunk = store.shrink(class, cap);
        if shrunk < cap && shrunk > len {
            self.limit[class] = self.base[class] + shrunk;
        }
    }

    /// Asks the store for the capacity of `class` (its bucket's capacity is 0), kept within the
    /// room reserved for it.
    #[inline]
    fn learn_cap<S2: CentralStore + ?Sized>(&mut self, class: usize, store: &S2) {
        if !self.laid {
            self.lay_out(store);
        }
        let answer = store.cap(class);
        let base = self.base[class];
        self.limit[class] = base + answer.min(self.end[class] - base);
    }

    /// [`alloc_slow`](Self::alloc_slow) of an empty bucket. The store writes a batch of
    /// addresses straight into the bucket's slots; the lowest-placed one is handed out and the
    /// rest stay, to be handed out in the order the store gave them. `None` when the store has
    /// nothing; the bucket stays empty and consistent.
    #[inline]
    fn refill_and_pop<S2: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        store: &S2,
    ) -> Option<NonNull<Block>> {
        debug_assert!(
            self.bucket(class).is_empty(),
            "refill of a non-empty bucket"
        );
        if self.bucket(class).cap() == 0 {
            self.learn_cap(class, store);
        }
        if self.flushed[class] != 0 {
            self.flushed[class] = 0;
            self.grow(class, store);
        }
        let b = self.bucket(class);
        let max = b.refill_size();
        let mut one = [ptr::null_mut(); 1];
        // A capacity of at least 2 has room for `cap / 2` slots; below that the one block asked
        // for is handed out at once and needs no slot.
        let out = if b.cap() >= 2 {
            &mut self.slots[b.base as usize..][..max]
        } else {
            &mut one[..]
        };
        let n = store.refill(class, out);
        debug_assert!(
            n <= max,
            "store returned {n} blocks, asked for at most {max}"
        );
        if n == 0 {
            return None;
        }
        let out = &mut out[..n];
        // First given, first handed out: the stack's top is its last slot.
        out.reverse();
        let first = out[n - 1];
        if b.cap() >= 2 {
            // The other `n - 1 < cap` stay: `top` stays within `limit`.
            self.top[class] = b.base + (n - 1) as u32;
        }
        self.debug_check(class);
        NonNull::new(first)
    }

    /// [`dealloc_slow`](Self::dealloc_slow) of a full bucket (`len == cap`). Gives the
    /// oldest `cap - cap / 2` blocks back to the store in one call, moves the newest down, then
    /// pushes `block`; with a capacity of 0, gives `block` itself back.
    ///
    /// # Safety
    ///
    /// As for [`dealloc`](Self::dealloc).
    #[inline]
    unsafe fn flush_and_push<S2: CentralStore + ?Sized>(
        &mut self,
        class: usize,
        block: NonNull<Block>,
        store: &S2,
    ) {
        if self.bucket(class).cap() == 0 {
            self.learn_cap(class, store);
            // SAFETY: the caller hands the block over.
            if unsafe { self.push(class, block.cast()) } {
                return;
            }
        }
        let b = self.bucket(class);
        if b.cap() == 0 {
            // SAFETY: the caller hands over a free block of `class` that came from `store`.
            unsafe { store.flush(class, &[block]) };
            return;
        }
        let keep = b.cap() / 2;
        let len = b.len();
        let stack = &mut self.slots[b.base as usize..][..len];
        // The newest `keep` to the bottom, the oldest `len - keep` above them, in their order.
        stack.rotate_left(len - keep);
        // `keep < len`, so `top` stays within the stack.
        self.top[class] = b.base + keep as u32;
        self.debug_check(class);
        let gone = &self.slots[b.base as usize + keep..][..len - keep];
        // SAFETY: the slots above `keep` hold the addresses of the blocks the bucket just gave
        // up: non-null, free blocks of `class` from `store` (type invariant), listed nowhere now.
        unsafe { store.flush(class, nonnull(gone)) };
        let run = self.flushed[class].saturating_add((len - keep) as u32);
        self.flushed[class] = run;
        if run > 2 * (self.end[class] - self.base[class]) {
            self.shrink(class, store);
        }
        // SAFETY: `keep < cap` blocks are left (the shrink keeps room for one more), and the
        // caller hands the block over.
        let pushed = unsafe { self.push(class, block.cast()) };
        debug_assert!(pushed, "a flushed bucket has room");
    }

    /// Gives every cached block back to `store`, one call per class that holds any (used when a
    /// thread exits). The heap is empty afterwards and can be used again.
    ///
    /// `store` must be the store this heap works with: the blocks are handed to it as its own.
    pub fn flush_all<S2: CentralStore + ?Sized>(&mut self, store: &S2) {
        self.undivert();
        for class in 0..N {
            let b = self.bucket(class);
            if b.is_empty() {
                continue;
            }
            self.top[class] = b.base;
            // SAFETY: the slots held the bucket's blocks, non-null (type invariant).
            let blocks = unsafe { nonnull(&self.slots[b.base as usize..b.top as usize]) };
            // SAFETY: those are free blocks of `class` from the store this heap works with (type
            // invariant), which the caller passes as `store`; the bucket no longer lists them.
            unsafe { store.flush(class, blocks) };
        }
    }

    /// Sets every bucket's capacity back to 0, so the next slow path of each class asks the
    /// store ([`CentralStore::cap`]) again. Meant for after [`flush_all`](Self::flush_all) at
    /// thread exit: with a store that then answers 0, later frees go straight to the store
    /// instead of being cached in a heap nobody will flush.
    pub fn reset_caps(&mut self) {
        self.undivert();
        self.limit = self.base;
        self.flushed = [0; N];
    }

    /// Empties every bucket without giving the blocks to anyone; the store is not touched.
    ///
    /// Used in a child process after `fork` when the cached blocks lie in memory shared with the
    /// parent: the parent's copy of the heap still owns them, so the child must neither hand
    /// them out nor return them.
    pub fn forget_all(&mut self) {
        self.undivert();
        self.top = self.base;
    }

    /// Number of blocks of `class` cached.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline]
    pub fn cached(&self, class: usize) -> usize {
        (self.top[class] - self.first(class)) as usize
    }

    /// Capacity of the bucket of `class`: the most blocks it caches.
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline]
    pub fn cap(&self, class: usize) -> usize {
        let limit = if self.diverted {
            self.hidden_limit[class]
        } else {
            self.limit[class]
        };
        (limit - self.first(class)) as usize
    }

    /// Whether the heap is diverted: every operation takes the slow path, where the store is
    /// asked whether that should go on (see [`CentralStore::divert`]).
    #[inline]
    pub fn is_diverted(&self) -> bool {
        self.diverted
    }

    /// The bucket of `class`, for inspection (while the heap is diverted, its `base` and `limit`
    /// are both its `top`).
    ///
    /// # Panics
    ///
    /// When `class >= N`.
    #[inline]
    pub fn bucket(&self, class: usize) -> Bucket {
        Bucket {
            top: self.top[class],
            limit: self.limit[class],
            base: self.base[class],
            end: self.end[class],
        }
    }

    /// Bytes cached in all buckets, given the block size of each class. `size_of` is called
    /// only for classes that hold blocks.
    pub fn cached_total_bytes(&self, size_of: impl Fn(usize) -> usize) -> usize {
        (0..N)
            .filter(|&class| self.cached(class) != 0)
            .map(|class| self.cached(class) * size_of(class))
            .sum()
    }

    /// Panics unless every bucket satisfies the invariants that can be checked locally (bounds,
    /// disjoint ranges, non-null aligned addresses).
    pub fn assert_valid(&self) {
        let mut end = 0;
        for class in 0..N {
            self.assert_bucket(class, self.diverted);
            let b = self.bucket(class);
            assert_eq!(
                self.first(class),
                end,
                "class {class}: slot ranges not packed in order"
            );
            if !self.diverted {
                assert_eq!(b.base, end, "class {class}: base is not the first slot");
            }
            end = b.end;
        }
        assert!(end as usize <= S, "slot ranges past the array");
    }

    /// Checks one bucket, as the fast paths see it while `hidden` (diverted), as it really is
    /// otherwise.
    fn assert_bucket(&self, class: usize, hidden: bool) {
        let b = self.bucket(class);
        let first = self.first(class);
        let limit = if hidden {
            assert!(
                b.base == b.top && b.limit == b.top,
                "class {class}: a diverted bucket lets a fast path through"
            );
            self.hidden_limit[class]
        } else {
            b.limit
        };
        assert!(first <= b.top, "class {class}: stack below its base");
        assert!(b.top <= limit, "class {class}: bucket over its capacity");
        assert!(limit <= b.end, "class {class}: capacity over the room");
        assert!(b.end as usize <= S, "class {class}: room past the array");
        for &p in &self.slots[first as usize..b.top as usize] {
            assert!(!p.is_null(), "class {class}: null block in a bucket");
            assert!(
                p.is_aligned(),
                "class {class}: misaligned block in a bucket"
            );
        }
    }

    /// [`assert_bucket`](Self::assert_bucket) of a bucket as it really is (revealed, if the heap
    /// is diverted) when debug assertions are on; nothing otherwise.
    #[inline]
    fn debug_check(&self, class: usize) {
        if cfg!(debug_assertions) {
            self.assert_bucket(class, false);
        }
    }
}

/// Slots that hold blocks' addresses, as the store receives them.
///
/// # Safety
///
/// Every slot holds a non-null address.
#[inline]
unsafe fn nonnull(slots: &[*mut Block]) -> &[NonNull<Block>] {
    debug_assert!(slots.iter().all(|p| !p.is_null()));
    // SAFETY: `NonNull<Block>` has the layout of `*mut Block`, and no slot is null (caller).
    unsafe { core::slice::from_raw_parts(slots.as_ptr().cast(), slots.len()) }
}
