//! The chunk registry: which 4 MiB chunks of the address space belong to this allocator.
//!
//! Every chunk the allocator holds (slab chunks and the chunks of large blocks) has an entry here,
//! keyed by its chunk number (`address >> CHUNK_SHIFT`). A lookup reads only the registry's own
//! memory, never the chunk, so asking about a pointer that is not ours (a foreign or wild pointer
//! handed to `free`) is safe and cheap.
//!
//! The table is a two-level radix tree over the 47-bit user address space: 2^25 chunk numbers,
//! split into 2^11 root slots of leaves holding 2^14 entries each. A leaf (128 KiB of
//! `AtomicUsize`) is mapped from the OS the first time a chunk in its 64 GiB range is registered,
//! and installed with a CAS; leaves are never freed, so a reader holding a leaf pointer can
//! always read it. Entries are single words written with `Release` and read with `Acquire`, so a
//! reader that sees an entry also sees the chunk header that was written before it.
//!
//! A large block that `realloc` moves lands wherever the OS puts it, possibly in a 64 GiB range
//! with no leaf yet, and by then the old run is gone: registering the new run must not fail.
//! So such a move first takes a [`Reserve`] of leaves ([`Registry::reserve`]: from two spares
//! kept mapped, or mapped now), which fails, before anything moves, when memory is out; the
//! insert after the move draws on it ([`Registry::insert_reserved`]) and gives back what it did
//! not use.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use chunk_source::CHUNK_SHIFT;

const ADDRESS_BITS: u32 = 47;
const CHUNK_BITS: u32 = ADDRESS_BITS - CHUNK_SHIFT;
const LEAF_BITS: u32 = 14;
const ROOT_BITS: u32 = CHUNK_BITS - LEAF_BITS;
const LEAF_LEN: usize = 1 << LEAF_BITS;
const ROOT_LEN: usize = 1 << ROOT_BITS;

static_assertions::const_assert_eq!(ROOT_BITS + LEAF_BITS + CHUNK_SHIFT, ADDRESS_BITS);

type Leaf = [AtomicUsize; LEAF_LEN];

/// What a registered chunk is. Stored in the low bits of an entry, beside a 4 MiB aligned base.
///
/// An entry is one word: the base in the bits above [`CHUNK_SHIFT`] and the kind in bits 0-1. A
/// slab chunk's entry stays the same for the chunk's life; the class it serves at the moment is
/// kept apart, in the global pool's [`ClassIndex`], which a C `free` reads first.
///
/// A large run's entries (every chunk of the run has the same one) carry where the run's one
/// live payload starts, in bits 2-17: its offset from the base in 64-byte units, less one (the
/// offset is a multiple of 64 from 64 to `CHUNK_SIZE`, see large-alloc's header docs). `free`
/// obeys a large pointer only when it is that address, before it reads anything at the pointer:
/// the memory of a run holds whatever earlier blocks left there (a cached run is reused without
/// being cleared), headers included, so a header found at a pointer proves nothing by itself.
///
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A slab chunk; the entry's base is the chunk itself (its header).
    Slab = 1,
    /// A chunk of a large block's run; the entry's base is the run's first chunk.
    Large = 2,
}

const KIND_MASK: usize = 0b11;
const BASE_MASK: usize = !((1 << CHUNK_SHIFT) - 1);
/// Where a large run's entry keeps its payload's offset (see [`Kind`]).
const PAYLOAD_SHIFT: u32 = 2;
const PAYLOAD_MASK: usize = 0xffff;
/// The payload offset's unit: large payloads are 64-aligned, as are their runs' bases.
const PAYLOAD_UNIT: u32 = large_alloc::HEADER_SIZE.trailing_zeros();

static_assertions::const_assert_eq!(Kind::Large as usize & Kind::Slab as usize, 0);
static_assertions::const_assert!((PAYLOAD_MASK << PAYLOAD_SHIFT) & (BASE_MASK | KIND_MASK) == 0);
// Every payload offset, 64 to CHUNK_SIZE in steps of 64, has a code.
static_assertions::const_assert_eq!(1 << PAYLOAD_UNIT, large_alloc::HEADER_SIZE);
static_assertions::const_assert_eq!((PAYLOAD_MASK + 1) << PAYLOAD_UNIT, chunk_source::CHUNK_SIZE);

/// The raw entry of a slab chunk at `base`.
const fn slab_word(base: usize) -> usize {
    base | Kind::Slab as usize
}

/// The raw entry of every chunk of a large run at `base` whose live payload is at `payload`;
/// `None` when the payload lies where no large block's can (see [`Kind`]).
const fn large_word(base: usize, payload: usize) -> Option<usize> {
    let offset = payload.wrapping_sub(base);
    if offset < 1 << PAYLOAD_UNIT
        || offset > chunk_source::CHUNK_SIZE
        || offset & ((1 << PAYLOAD_UNIT) - 1) != 0
    {
        return None;
    }
    Some(base | (((offset >> PAYLOAD_UNIT) - 1) << PAYLOAD_SHIFT) | Kind::Large as usize)
}

/// A registered chunk: its kind, the base address its entry names, and for a large run the
/// address of its live payload (0 for a slab chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) kind: Kind,
    pub(crate) base: usize,
    pub(crate) payload: usize,
}

/// The registry itself. One static instance serves the whole process (and one more lives in
/// each private arena); all-zero memory is an empty registry.
pub(crate) struct Registry {
    root: [AtomicPtr<Leaf>; ROOT_LEN],
    /// Mapped, zeroed leaves kept for [`Registry::reserve`]; null where none.
    spares: [AtomicPtr<Leaf>; SPARES],
}

/// Spare leaves kept: enough for a run that crosses one leaf boundary (up to 64 GiB).
const SPARES: usize = 2;

/// Leaves set aside for one insert that must not fail: unused leaves, linked through their
/// first entry. Hand it to [`Registry::insert_reserved`], which gives back what is left.
#[must_use]
pub(crate) struct Reserve {
    head: *mut Leaf,
    len: usize,
}

impl Reserve {
    fn push(&mut self, leaf: *mut Leaf) {
        // SAFETY: `leaf` is a mapped leaf nobody else can reach; its first entry holds the link
        // until it is popped (and zeroed again).
        unsafe { (*leaf)[0].store(self.head as usize, Ordering::Relaxed) };
        self.head = leaf;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<*mut Leaf> {
        let leaf = self.head;
        if leaf.is_null() {
            return None;
        }
        // SAFETY: leaves on the reserve are mapped and reachable only through it.
        unsafe {
            self.head = (*leaf)[0].load(Ordering::Relaxed) as *mut Leaf;
            (*leaf)[0].store(0, Ordering::Relaxed);
        }
        self.len -= 1;
        Some(leaf)
    }
}

impl Registry {
    pub(crate) const fn new() -> Self {
        Self {
            root: [const { AtomicPtr::new(ptr::null_mut()) }; ROOT_LEN],
            spares: [const { AtomicPtr::new(ptr::null_mut()) }; SPARES],
        }
    }

    /// Leaves enough to register a run of `n` chunks at any address, taken from the spares or
    /// mapped now; `None` (nothing held) when the OS refuses, or when no run of `n` chunks fits
    /// in the address space. A run of up to 64 GiB needs the two spares and no system call.
    pub(crate) fn reserve(&self, n: usize) -> Option<Reserve> {
        if n > 1 << CHUNK_BITS {
            return None; // more chunks than the address space has: no run can be that long
        }
        let need = n.div_ceil(LEAF_LEN) + 1;
        let mut r = Reserve {
            head: ptr::null_mut(),
            len: 0,
        };
        for spare in &self.spares {
            if r.len == need {
                break;
            }
            // Acquire: the spare's zeroed contents (published by the Release CAS in `unreserve`).
            let leaf = spare.swap(ptr::null_mut(), Ordering::Acquire);
            if !leaf.is_null() {
                r.push(leaf);
            }
        }
        while r.len < need {
            match map_leaf() {
                Some(leaf) => r.push(leaf),
                None => {
                    self.unreserve(r);
                    return None;
                }
            }
        }
        Some(r)
    }

    /// [`insert_large`](Self::insert_large) that cannot fail: a leaf it needs comes from
    /// `reserve` if the OS refuses one. What is left of the reserve goes back to the spares.
    pub(crate) fn insert_large_reserved(
        &self,
        block: &large_alloc::LargeBlock,
        mut reserve: Reserve,
    ) {
        let (start, n) = (block.base.as_ptr() as usize, block.nchunks);
        let word = large_word(start, block.ptr.as_ptr() as usize);
        debug_assert!(word.is_some(), "a large block's payload has an offset code");
        debug_assert!(reserve.len > n.div_ceil(LEAF_LEN), "reserve too small");
        for i in 0..n {
            let ok = self
                .leaf_from(start + (i << CHUNK_SHIFT), Some(&mut reserve))
                .is_some();
            debug_assert!(ok, "a reserve covers every leaf of the run");
        }
        // A payload without a code cannot occur (the header's invariants); were it to, the run
        // stays unregistered and its block is refused as foreign, never obeyed.
        if let Some(word) = word {
            for i in 0..n {
                self.store(start + (i << CHUNK_SHIFT), word);
            }
        }
        self.unreserve(reserve);
    }

    /// Gives back a reserve that was not needed: its leaves become spares where there is room,
    /// the rest are unmapped.
    fn unreserve(&self, mut r: Reserve) {
        while let Some(leaf) = r.pop() {
            let kept = self.spares.iter().any(|s| {
                // Release: a later `reserve` sees the leaf's zeroed contents.
                s.compare_exchange(ptr::null_mut(), leaf, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            });
            if !kept {
                unmap_leaf(leaf);
            }
        }
    }

    #[inline(always)]
    fn split(addr: usize) -> Option<(usize, usize)> {
        let chunk = addr >> CHUNK_SHIFT;
        let root = chunk >> LEAF_BITS;
        // One comparison: a root index in range is an address below 2^47.
        (root < ROOT_LEN).then_some((root, chunk & (LEAF_LEN - 1)))
    }

    /// The raw entry for the chunk that contains `addr`: 0 when it is not registered.
    #[inline]
    fn word(&self, addr: usize) -> usize {
        let Some((r, l)) = Self::split(addr) else {
            return 0;
        };
        // Acquire: pairs with the Release CAS that installed the leaf (its zeroed contents).
        let leaf = self.root[r].load(Ordering::Acquire);
        if leaf.is_null() {
            return 0;
        }
        // SAFETY: installed leaves are never unmapped and hold LEAF_LEN entries; `l < LEAF_LEN`.
        // Acquire: pairs with the Release store of the entry (the chunk header written first).
        unsafe { (*leaf)[l].load(Ordering::Acquire) }
    }

    /// The entry for the chunk that contains `addr`, if that chunk is registered.
    #[inline]
    pub(crate) fn lookup(&self, addr: usize) -> Option<Entry> {
        Self::decode(self.word(addr))
    }

    fn decode(raw: usize) -> Option<Entry> {
        let base = raw & BASE_MASK;
        let (kind, payload) = match raw & KIND_MASK {
            1 => (Kind::Slab, 0),
            2 => {
                let units = ((raw >> PAYLOAD_SHIFT) & PAYLOAD_MASK) + 1;
                (Kind::Large, base + (units << PAYLOAD_UNIT))
            }
            _ => return None,
        };
        Some(Entry {
            kind,
            base,
            payload,
        })
    }

    /// Registers the run of a new large block: each of its chunks names the run's base and the
    /// block's payload. Returns false when a leaf could not be mapped (out of memory), or when
    /// the payload lies where no large block's can; nothing is registered then.
    pub(crate) fn insert_large(&self, block: &large_alloc::LargeBlock) -> bool {
        let base = block.base.as_ptr() as usize;
        match large_word(base, block.ptr.as_ptr() as usize) {
            Some(word) => self.insert_word(base, block.nchunks, word),
            None => false,
        }
    }

    /// Stores `word` in the entries of the `n` chunks starting at the chunk-aligned `start`.
    /// Returns false when a leaf could not be mapped (out of memory); nothing is registered then.
    fn insert_word(&self, start: usize, n: usize, word: usize) -> bool {
        debug_assert_eq!(start & ((1 << CHUNK_SHIFT) - 1), 0);
        for i in 0..n {
            if self.leaf_for(start + (i << CHUNK_SHIFT)).is_none() {
                return false;
            }
        }
        for i in 0..n {
            self.store(start + (i << CHUNK_SHIFT), word);
        }
        true
    }

    /// Forgets the `n` chunks starting at `start`.
    pub(crate) fn remove(&self, start: usize, n: usize) {
        for i in 0..n {
            self.store(start + (i << CHUNK_SHIFT), 0);
        }
    }

    /// Calls `f(base, chunks, kind)` once for every registered run (a slab chunk is a run of one),
    /// in address order.
    pub(crate) fn for_each_run(&self, mut f: impl FnMut(usize, usize, Kind)) {
        let mut current: Option<(usize, usize, Kind)> = None;
        for (r, slot) in self.root.iter().enumerate() {
            let leaf = slot.load(Ordering::Acquire);
            if leaf.is_null() {
                continue;
            }
            // SAFETY: installed leaves stay mapped while the registry exists.
            for (l, e) in unsafe { &*leaf }.iter().enumerate() {
                let addr = ((r << LEAF_BITS) | l) << CHUNK_SHIFT;
                let Some(Entry { kind, base, .. }) = Self::decode(e.load(Ordering::Acquire)) else {
                    continue;
                };
                match current {
                    Some((b, n, k)) if b == base && k == kind && kind == Kind::Large => {
                        current = Some((b, n + 1, k));
                    }
                    _ => {
                        if let Some((b, n, k)) = current.take() {
                            f(b, n, k);
                        }
                        debug_assert_eq!(base, addr, "a run starts at its base");
                        current = Some((base, 1, kind));
                    }
                }
            }
        }
        if let Some((b, n, k)) = current {
            f(b, n, k);
        }
    }

    fn store(&self, addr: usize, value: usize) {
        if let Some(leaf) = self.leaf_for(addr) {
            let (_, l) = Self::split(addr).expect("leaf_for checked the range");
            // Release: a reader that sees the entry sees the chunk header written before it.
            leaf[l].store(value, Ordering::Release);
        }
    }

    /// The leaf covering `addr`, mapping it on first use.
    fn leaf_for(&self, addr: usize) -> Option<&Leaf> {
        self.leaf_from(addr, None)
    }

    /// [`leaf_for`](Self::leaf_for), taking the leaf from `reserve` when the OS refuses one.
    fn leaf_from(&self, addr: usize, reserve: Option<&mut Reserve>) -> Option<&Leaf> {
        let (r, _) = Self::split(addr)?;
        let mut leaf = self.root[r].load(Ordering::Acquire);
        if leaf.is_null() {
            let fresh = map_leaf().or_else(|| reserve.and_then(Reserve::pop))?;
            // AcqRel: publish the zeroed leaf, or see the one another thread installed first.
            match self.root[r].compare_exchange(
                ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => leaf = fresh,
                Err(existing) => {
                    unmap_leaf(fresh);
                    leaf = existing;
                }
            }
        }
        // SAFETY: a non-null root slot points at a leaf that stays mapped for the process's life.
        Some(unsafe { &*leaf })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for slot in self.root.iter().chain(&self.spares) {
            let leaf = slot.swap(ptr::null_mut(), Ordering::AcqRel);
            if !leaf.is_null() {
                unmap_leaf(leaf);
            }
        }
    }
}

/// Resizes the large block at `ptr` with `large` and keeps `registry` (none for a shared
/// arena, whose region is released whole) in step with its run. The leaves a moved run may
/// need are reserved first, so running out of memory is `None` with the block untouched.
///
/// # Safety
/// `ptr` is a live large block of `large`, whose runs `registry` records; nobody else uses it
/// during the call.
pub(crate) unsafe fn resize_large<S: chunk_source::ChunkSource>(
    registry: Option<&Registry>,
    large: &large_alloc::LargeAlloc<S>,
    ptr: core::ptr::NonNull<u8>,
    new_size: usize,
) -> Option<large_alloc::Realloc> {
    let reserve = match registry {
        Some(reg) => Some(reg.reserve(new_size.div_ceil(chunk_source::CHUNK_SIZE) + 1)?),
        None => None,
    };
    // SAFETY: forwarded from the caller.
    let r = unsafe { large.realloc(ptr, new_size) };
    if let (Some(reg), Some(reserve)) = (registry, reserve) {
        match &r {
            // The payload follows from the run and the alignment, so it moved only if the run
            // changed.
            Ok(r) if r.run_changed() => {
                reg.remove(r.old_base.as_ptr() as usize, r.old_nchunks);
                reg.insert_large_reserved(&r.block, reserve);
            }
            _ => reg.unreserve(reserve),
        }
    }
    r.ok()
}

/// Tests make the OS refuse leaves with this.
#[cfg(test)]
static REFUSE_LEAVES: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn map_leaf() -> Option<*mut Leaf> {
    #[cfg(test)]
    if REFUSE_LEAVES.load(Ordering::Relaxed) {
        return None;
    }
    // Zero-filled pages are valid `AtomicUsize`s with value 0.
    crate::os::map(core::mem::size_of::<Leaf>()).map(|p| p.as_ptr().cast())
}

fn unmap_leaf(leaf: *mut Leaf) {
    // SAFETY: `leaf` came from `map_leaf` and nobody can reach it any more (it lost the install
    // race, or its registry is being dropped).
    unsafe { crate::os::unmap(leaf.cast(), core::mem::size_of::<Leaf>()) };
}

/// The class each chunk of the global pool serves, by chunk number: what a C `free` reads first.
///
/// One byte per chunk number of the 47-bit address space (32 MiB of `.bss`, whose pages cost
/// nothing until a chunk in their 512 GiB range serves a class): the class's code (the class
/// plus one, [`class_code`](slab_pool::class::class_code)) for a slab chunk of the global pool
/// that is active, 0 for every other address. So one load, with no pointer to follow and no null
/// leaf to test, says that an address is in a chunk that serves a class and which one, and a
/// foreign or wild pointer reads 0 (or lies above the table) and goes to the slow path, which
/// asks the registry. Null reads the byte of chunk number 0, which is always 0: a chunk there
/// would hold page 0, which no mapping gets (`vm.mmap_min_addr`), so a `free` needs no null test
/// of its own ahead of the lookup. Nor does it test the byte: `free` hands it as it is to the
/// block-start test ([`SLOT_TEST`](slab_pool::class::SLOT_TEST)), which has an entry for every
/// byte and refuses every offset for a byte that is no class's code. The pool calls
/// [`set`](Self::set) when it has activated a chunk (its header and bitmaps written) and
/// [`clear`](Self::clear) when it retires one. A block's chunk serves its class as long as the
/// block is out, so the byte a `free` of a live block reads is its class's code.
///
/// Memory the pool retired keeps its registry entry (it stays the pool's) and loses its byte:
/// the fast path's checks could not refuse a pointer into it (an empty chunk's bitmap says every
/// block is out, and its blocks' free marks are gone once its pages were given back), the slow
/// path reports it from the chunk's tag.
pub(crate) struct ClassIndex {
    bytes: [AtomicU8; 1 << CHUNK_BITS],
}

// Every class's code fits in a byte, and 0 is none.
static_assertions::const_assert!(slab_pool::class::NUM_CLASSES < u8::MAX as usize);

impl ClassIndex {
    pub(crate) const fn new() -> Self {
        // SAFETY: zero bytes are a valid array of `AtomicU8` (each is 0).
        unsafe { core::mem::zeroed() }
    }

    /// The byte of the chunk that contains `addr`: the class code
    /// ([`class_code`](slab_pool::class::class_code)) of an active slab chunk of the global pool,
    /// 0 for any other chunk, and `None` above the table.
    #[inline(always)]
    pub(crate) fn code_of(&self, addr: usize) -> Option<u8> {
        // Acquire: pairs with the Release store in `set` (the chunk's header and bitmaps
        // written before it).
        Some(self.bytes.get(addr >> CHUNK_SHIFT)?.load(Ordering::Acquire))
    }

    /// The class of the chunk that contains `addr`, if it is an active slab chunk of the global
    /// pool.
    #[inline(always)]
    pub(crate) fn class_of(&self, addr: usize) -> Option<usize> {
        // One comparison says "serves a class" (0 wraps to a huge value) and bounds the class
        // for the callers' per-class tables, which then need no check or mask of their own.
        let class = slab_pool::class::code_class(self.code_of(addr)?);
        (class < slab_pool::class::NUM_CLASSES).then_some(class)
    }

    /// Records that the chunk at `base` serves `class` from now on.
    pub(crate) fn set(&self, base: usize, class: usize) {
        debug_assert!(class < slab_pool::class::NUM_CLASSES);
        // Release: see `class_of`.
        self.bytes[base >> CHUNK_SHIFT]
            .store(slab_pool::class::class_code(class), Ordering::Release);
    }

    /// Records that the chunk at `base` serves no class any more.
    ///
    /// No block of the chunk is live by then, so only a bad free can still read the old class: a
    /// double free racing with the retirement. The fast path may take that one (the retired
    /// chunk's bitmap reads all out), unless the block's free mark is still there, which it is
    /// until the chunk's pages are given back, a purge delay later.
    pub(crate) fn clear(&self, base: usize) {
        // Relaxed: the store publishes nothing; readers only need to see it eventually (above).
        self.bytes[base >> CHUNK_SHIFT].store(0, Ordering::Relaxed);
    }
}

impl Registry {
    /// Registers the slab chunk at `base` (the slab pools' [`slab_pool::ChunkRegistry`]).
    fn register_slab(&self, base: usize) -> bool {
        self.insert_word(base, 1, slab_word(base))
    }

    /// Whether `addr` lies in the registered slab chunk at `base`.
    #[inline]
    fn is_slab_at(&self, addr: usize, base: usize) -> bool {
        self.lookup(addr)
            == Some(Entry {
                kind: Kind::Slab,
                base,
                payload: 0,
            })
    }
}

/// The global pool's registry (`global::REGISTRY`), as a type without state. A pool that held a
/// pointer to it would not be all zeros, so its half megabyte would go to `.data`, whose pages
/// are mapped from the library's file as soon as they are read (every pass reads each class's
/// set): about 300 KiB of every process's resident set. All zeros, it stays in `.bss`, where a
/// page costs nothing until it is written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GlobalRegistry;

impl slab_pool::ChunkRegistry for GlobalRegistry {
    fn register(&self, base: usize) -> bool {
        crate::global::registry().register_slab(base)
    }

    fn activated(&self, base: usize, class: usize) {
        debug_assert!(crate::global::registry().is_slab_at(base, base));
        crate::global::class_index().set(base, class);
    }

    fn retired(&self, base: usize) {
        crate::global::class_index().clear(base);
    }

    #[inline]
    fn is_slab(&self, addr: usize, base: usize) -> bool {
        crate::global::registry().is_slab_at(addr, base)
    }
}

/// A registry reached through a pointer, or none (null): for a pool that lives beside its
/// registry (a private arena's box) or has none (a shared arena, whose region is released whole).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RegistryPtr(pub(crate) *const Registry);

// SAFETY: the registry is all atomics; the pointer is only read.
unsafe impl Send for RegistryPtr {}
// SAFETY: as above.
unsafe impl Sync for RegistryPtr {}

impl slab_pool::ChunkRegistry for RegistryPtr {
    fn register(&self, base: usize) -> bool {
        // SAFETY: a non-null pointer names a registry that outlives the pool (set by its owner).
        unsafe { self.0.as_ref() }.is_none_or(|r| r.register_slab(base))
    }

    /// Nothing to record: an arena's blocks are freed with their layouts, so nobody asks for
    /// their chunks' classes.
    fn activated(&self, _base: usize, _class: usize) {}

    fn retired(&self, _base: usize) {}

    #[inline]
    fn is_slab(&self, addr: usize, base: usize) -> bool {
        // SAFETY: as above.
        unsafe { self.0.as_ref() }.is_none_or(|r| r.is_slab_at(addr, base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chunk_source::CHUNK_SIZE;
    use core::ptr::NonNull;
    use large_alloc::LargeBlock;
    use slab_pool::class::NUM_CLASSES;

    /// A large block of `n` chunks at `base` whose payload is `offset` bytes in (never touched).
    fn block(base: usize, n: usize, offset: usize) -> LargeBlock {
        LargeBlock {
            ptr: NonNull::new((base + offset) as *mut u8).unwrap(),
            base: NonNull::new(base as *mut u8).unwrap(),
            nchunks: n,
            zeroed: false,
        }
    }

    #[test]
    fn unknown_addresses_are_not_found() {
        let r = Registry::new();
        assert_eq!(r.lookup(0), None);
        assert_eq!(r.lookup(0x1234_5678), None);
        assert_eq!(r.lookup(usize::MAX), None);
        assert_eq!(r.lookup(1 << 50), None);
    }

    #[test]
    fn a_slab_chunk_is_registered_for_its_life() {
        let r = Registry::new();
        let base = 0x7f10_0000_0000usize & !(CHUNK_SIZE - 1);
        assert!(r.register_slab(base));
        let slab = Some(Entry {
            kind: Kind::Slab,
            base,
            payload: 0,
        });
        assert_eq!(r.lookup(base), slab);
        assert_eq!(r.lookup(base + CHUNK_SIZE - 1), slab);
        assert!(r.is_slab_at(base + 100, base));
        assert!(!r.is_slab_at(base + 100, base + CHUNK_SIZE));
        assert_eq!(r.lookup(base + CHUNK_SIZE), None);
    }

    /// Only a chunk that serves a class is in the index, under that class; the rest of the
    /// address space, above 2^47 included, is not. Uses the process's index at addresses no
    /// chunk of this test process has (the unit tests run on the system allocator).
    #[test]
    fn the_class_index_names_serving_chunks_only() {
        let index = crate::global::class_index();
        let base = 0x7ff0_0000_0000usize & !(CHUNK_SIZE - 1);
        assert_eq!(index.class_of(base), None);
        for class in [0, 7, NUM_CLASSES - 1] {
            index.set(base, class);
            assert_eq!(index.class_of(base), Some(class));
            assert_eq!(index.class_of(base + CHUNK_SIZE - 1), Some(class));
            assert_eq!(index.class_of(base + CHUNK_SIZE), None);
            assert_eq!(index.class_of(base - 1), None);
        }
        index.clear(base);
        assert_eq!(index.class_of(base + 8), None);
        for addr in [1 << 47, usize::MAX, (1 << 47) + base] {
            assert_eq!(index.class_of(addr), None, "{addr:#x}");
        }
    }

    #[test]
    fn insert_lookup_remove() {
        let r = Registry::new();
        let base = 0x7f00_0000_0000usize & !(CHUNK_SIZE - 1);
        assert!(r.insert_large(&block(base, 3, 64)));
        for i in 0..3 {
            let e = r.lookup(base + i * CHUNK_SIZE + 12345).unwrap();
            assert_eq!(
                e,
                Entry {
                    kind: Kind::Large,
                    base,
                    payload: base + 64,
                }
            );
        }
        assert_eq!(r.lookup(base + 3 * CHUNK_SIZE), None);
        assert_eq!(r.lookup(base - 1), None);
        assert!(r.register_slab(base + 3 * CHUNK_SIZE));
        assert_eq!(r.lookup(base + 3 * CHUNK_SIZE).unwrap().kind, Kind::Slab);
        let mut runs = Vec::new();
        r.for_each_run(|b, n, k| runs.push((b, n, k)));
        assert_eq!(
            runs,
            vec![
                (base, 3, Kind::Large),
                (base + 3 * CHUNK_SIZE, 1, Kind::Slab)
            ]
        );
        r.remove(base, 3);
        assert_eq!(r.lookup(base), None);
        assert_eq!(r.lookup(base + 3 * CHUNK_SIZE).unwrap().kind, Kind::Slab);
    }

    /// A run moved to an address range with no leaf, while the OS refuses memory, is still
    /// registered from the reserve taken before the move; without a reserve it is refused.
    #[test]
    fn a_reserve_registers_a_run_when_the_os_refuses_leaves() {
        let r = Registry::new();
        let leaf_span = LEAF_LEN * CHUNK_SIZE;
        let reserve = r.reserve(3).expect("leaves while memory is there");
        REFUSE_LEAVES.store(true, Ordering::Relaxed);
        // Three chunks across the boundary of leaves 5 and 6: two fresh leaves.
        let start = 6 * leaf_span - CHUNK_SIZE;
        r.insert_large_reserved(&block(start, 3, 4096), reserve);
        for i in 0..3 {
            let e = r.lookup(start + i * CHUNK_SIZE + 1).expect("registered");
            assert_eq!(
                (e.kind, e.base, e.payload),
                (Kind::Large, start, start + 4096)
            );
        }
        assert!(!r.insert_large(&block(9 * leaf_span, 1, 64)));
        assert!(r.reserve(1).is_none(), "no spare left and the OS refuses");
        REFUSE_LEAVES.store(false, Ordering::Relaxed);
        let reserve = r.reserve(1).expect("memory is back");
        r.insert_large_reserved(&block(9 * leaf_span, 1, 64), reserve);
        assert_eq!(r.lookup(9 * leaf_span).unwrap().kind, Kind::Large);
        // What the insert did not use went back to the spares.
        assert!(r
            .spares
            .iter()
            .all(|s| !s.load(Ordering::Relaxed).is_null()));
    }

    /// Every payload offset a large block can have (64 to a whole chunk, in steps of 64) is
    /// recorded exactly, and no other offset is accepted.
    #[test]
    fn a_large_entry_names_its_payload_exactly() {
        let r = Registry::new();
        let base = 0x7f20_0000_0000usize & !(CHUNK_SIZE - 1);
        for offset in (64..=CHUNK_SIZE).step_by(64) {
            assert!(r.insert_large(&block(base, 2, offset)), "offset {offset}");
            for i in 0..2 {
                let e = r.lookup(base + i * CHUNK_SIZE + 7).unwrap();
                assert_eq!(
                    (e.kind, e.base, e.payload),
                    (Kind::Large, base, base + offset)
                );
            }
            r.remove(base, 2);
        }
        for offset in [0, 32, 100, CHUNK_SIZE + 64] {
            assert!(!r.insert_large(&block(base, 2, offset)), "offset {offset}");
            assert_eq!(r.lookup(base), None);
        }
    }
}
