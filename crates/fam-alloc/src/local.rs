//! The calling thread's heap, and what happens to it when the thread exits or the process forks.
//!
//! Each thread owns a [`ThreadHeap`] in a `Local`, reached with a plain TLS access: no lazy-init
//! check, no registration, nothing that can allocate. In Rust programs the `Local` is a
//! `const`-initialised thread-local with no destructor (`plain`); in the C library the
//! thread-local is a pointer to it, and a thread's `Local` is taken from a pool at its first slow
//! path (`ie`, which says why). Its buckets start with a capacity of zero, so a thread's first
//! allocation *and* its first free take the slow path, which asks [`GlobalStore::cap`] for the
//! real capacity. That call (or, in the C library, taking the `Local`) is where a thread
//! registers for exit: it sets a `pthread_key_t` value whose destructor flushes the heap back to
//! the central pool. glibc's `pthread_setspecific` does not allocate for
//! the first 32 keys, and `pthread_key_create` never does, so registering cannot recurse into the
//! allocator.
//!
//! Destructors of Rust thread-locals run before pthread key destructors, so blocks they free land
//! in the heap before it is flushed. After the flush the thread has no heap any more (its `Local`
//! is `EXITED`, or given back to the pool): anything it allocates or frees later in its teardown
//! (another library's key destructor) goes straight to the pool instead of being stranded in a
//! dead thread's bucket.
//!
//! Beside the buckets lives the thread's [`Owner`]: the slab chunks it refills from, one per class
//! (see [`slab_pool`]). Flushes pass it along, so blocks that come back to a chunk the thread owns
//! are freed without an atomic. At exit the thread gives those chunks up; after exit it refills
//! and flushes without an owner, so a dead thread never holds a chunk.
//!
//! Fork: the pool has no locks, so nothing is taken around `fork()` (the protocol is
//! [`chunk_source::fork`]'s). The private heap is the child's own copy, so the forking thread's
//! buckets and owned chunks stay valid there; other threads' are never used in the child (a
//! bounded loss: their buckets and one chunk per class).
//!
//! A thread's identity ([`thread_id`]) is a number drawn from a per-process counter, not an
//! address: glibc gives a new thread the stack (and so the thread-local addresses) of one that
//! exited, and a forked child's new threads would meet the addresses of the parent's.

use core::cell::{Cell, UnsafeCell};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use slab_pool::Owner;
use thread_heap::{Block, CentralStore, Entry};

use slab_pool::class::{bucket_caps, cap_slots};

use crate::class::{CLASSES, NUM_CLASSES};
use crate::counters::{self, ThreadCounters};
use crate::global::pool;

/// Installs the fork handler and registers what fam-alloc does in a forked child. Calls
/// `pthread_atfork`, which may allocate: only from where a nested allocation is safe.
pub(crate) fn prepare_for_fork() {
    chunk_source::fork::install();
    counters::register_child_hook();
}

/// The next thread identity; 0 means "none yet" and 1 is reserved for the arenas' adopting
/// state, so the first thread gets 2.
static NEXT_THREAD_ID: AtomicUsize = AtomicUsize::new(2);

thread_local! {
    /// This thread's identity, drawn on first use. No destructor: usable during thread teardown.
    static THREAD_ID: Cell<usize> = const { Cell::new(0) };
}

/// A number that identifies the calling thread among every thread this process has run, also
/// in a forked child (the forking thread keeps its number; later threads draw new ones). Never
/// 0 or 1.
#[inline(always)]
pub(crate) fn thread_id() -> usize {
    let id = THREAD_ID.with(Cell::get);
    if id != 0 {
        id
    } else {
        new_thread_id()
    }
}

#[cold]
fn new_thread_id() -> usize {
    // Relaxed: the numbers only need to be distinct, which the RMW alone guarantees.
    let id = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
    THREAD_ID.with(|c| c.set(id));
    id
}

/// The room each class's bucket has in a thread's heap: the most it may grow to. A bucket
/// starts at the class's own capacity ([`CLASSES`]`[class].cap`: the blocks 64 KiB hold, at
/// most 256), doubles when the program cycles through more blocks than it holds
/// ([`GlobalStore::grow`]) and halves back in a long run of frees ([`GlobalStore::shrink`]);
/// see `thread_heap::heap`. The room is what 64 KiB hold, at most [`tls::BUCKET_MAX`] blocks
/// (see [`slab_pool::class::bucket_cap`]), so only the classes below 256 B can grow.
///
/// The bound depends on where the `Local` lives. In a Rust program it is a thread-local in the
/// static TLS area, which glibc takes out of every thread's stack, so the room is the class's
/// own capacity and no bucket grows (5396 slots, 42 KiB). In the C library the `Local` is
/// mapped apart (`ie`) and the room is up to 2048 blocks (18585 slots, 145 KiB of address
/// space, of which a thread touches the slots it uses). There glibc's bench-malloc-simple,
/// which frees batches of 400 and 1600 blocks of 16-64 B and allocates them again, stops
/// paying a flush and a refill per 128 blocks once its buckets have grown: `glibc-simple` ran
/// 10 % faster.
const THREAD_CAPS: [u32; NUM_CLASSES] = bucket_caps(tls::BUCKET_MAX);

/// A thread's heap: room for every class's full bucket at [`THREAD_CAPS`].
type Heap = thread_heap::ThreadHeap<NUM_CLASSES, { cap_slots(&THREAD_CAPS) }>;

/// Per-thread state.
const NEW: u8 = 0;
const REGISTERING: u8 = 1;
const REGISTERED: u8 = 2;
const EXITED: u8 = 3;

/// Everything the allocator keeps per thread, in one place so that an operation reaches it
/// with one TLS access.
///
/// Its initial value is all zero bytes ([`ZEROED`]): an unlaid heap, an owner of no chunks,
/// state `NEW`, zero counters. So a thread-local `Local` lies in `.tbss` and a new thread's copy
/// is not written at all, and fresh anonymous pages are a valid `Local` as they are (which
/// [`ie`] relies on).
struct Local {
    heap: UnsafeCell<Heap>,
    /// The chunks this thread refills from; used only by the pool calls of its own heap.
    owner: UnsafeCell<Owner>,
    state: Cell<u8>,
    counters: ThreadCounters,
    /// The capacity each bucket grew to ([`GlobalStore::grow`]); 0 while it has the class's
    /// own ([`CLASSES`]`[class].cap`). The heap knows it too, but a flush, which publishes the
    /// bucket's length from its capacity for the statistics (`bucket_cap`), runs inside the
    /// heap's own call and cannot read the heap.
    grown: [Cell<u32>; NUM_CLASSES],
    /// In the initial-exec build, which slot of the pool of `Local`s ([`ie`]) holds this one,
    /// plus one (0: none, it was mapped on its own). Unused elsewhere.
    #[cfg_attr(
        not(all(
            feature = "initial-exec-tls",
            target_arch = "x86_64",
            target_os = "linux"
        )),
        allow(dead_code)
    )]
    slot: Cell<u32>,
}

impl Local {
    /// The initial value: a thread-local's, and the initial-exec build's placeholders'.
    // Each use is a fresh value (a thread's initial `Local`), never a shared one.
    #[allow(clippy::declare_interior_mutable_const)]
    const NEW: Local = Local {
        heap: UnsafeCell::new(Heap::unlaid()),
        owner: UnsafeCell::new(Owner::new()),
        state: Cell::new(NEW),
        counters: ThreadCounters::new(),
        grown: [const { Cell::new(0) }; NUM_CLASSES],
        slot: Cell::new(0),
    };
}

/// A `Local` made of zero bytes, as the loader leaves a thread's `.tbss` and as a fresh mapping
/// is. A constant, so that const evaluation proves zero bytes a valid `Local` (it checks every
/// constant's value); the test `zeroed_local_is_new` shows that it is `Local::NEW`.
// Read by the test only; each use is a fresh value, as for `NEW`.
#[allow(dead_code, clippy::declare_interior_mutable_const)]
// SAFETY: checked by const evaluation, as said above.
const ZEROED: Local = unsafe { core::mem::zeroed() };

/// How the calling thread reaches its `Local`: [`ie`] in the C library's initial-exec build,
/// [`plain`] elsewhere. Each has the same items:
///
/// - `this_fast()`: the `Local` the fast paths use, never null: the thread's own, or (`ie`,
///   before the thread's first slow path and after its exit) a placeholder whose buckets are
///   all empty and of capacity 0, which the fast paths only read;
/// - `current()`: the thread's own `Local`, for the slow paths; `None` once its exit destructor
///   ran (it gave its heap and chunks up then, and takes no new ones) and (`ie`) before its
///   first slow path made it one;
/// - `live()`: `current()`, but a thread that has no `Local` yet gets one now and is registered
///   for exit; `None` once the thread exited, or when it cannot have one (no memory, no exit
///   key), and then it runs without caching, which loses nothing;
/// - `retire(l)`: ends the thread's use of `l` at its exit, after it gave its heap and chunks up;
/// - `OPAQUE`: whether the fast paths take their bucket entry through [`Entry::opaque`] (see
///   [`entry`]);
/// - `STATIC_TLS_BYTES`: how much of every thread's static TLS (which glibc takes out of the
///   stack size a thread is created with) this takes, about.
#[cfg(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux"
))]
use ie as tls;
#[cfg(not(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux"
)))]
use plain as tls;

/// The `Local` as an ordinary thread-local: in an executable a constant offset from the thread
/// pointer, in a shared library a call to `__tls_get_addr`. Its heap is unlaid until the
/// thread's first slow path, and an exited thread's `Local` stays, in state `EXITED`.
#[cfg(not(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux"
)))]
mod plain {
    use super::{Local, EXITED};

    thread_local! {
        static LOCAL: Local = const { Local::NEW };
    }

    /// The executable's thread-local is at a constant offset from the thread pointer, with no
    /// base register: the case [`thread_heap::Entry::opaque`] is for.
    pub(super) const OPAQUE: bool = true;

    /// The whole `Local`, in an executable (a shared library's general-dynamic TLS is
    /// allocated apart, but counting it is harmless).
    pub(crate) const STATIC_TLS_BYTES: usize = size_of::<Local>();

    /// The `Local` is in static TLS: its buckets keep the slab pool's bound.
    pub(super) const BUCKET_MAX: usize = slab_pool::class::BUCKET_MAX;

    #[inline(always)]
    pub(super) fn this_fast() -> *const Local {
        LOCAL.with(|l| l as *const Local)
    }

    #[inline]
    pub(super) fn current() -> Option<*const Local> {
        let l = this_fast();
        // SAFETY: `LOCAL` lives as long as the thread.
        (unsafe { &*l }.state.get() != EXITED).then_some(l)
    }

    #[inline]
    pub(super) fn live() -> Option<*const Local> {
        current()
    }

    /// # Safety
    /// `l` is the calling thread's `Local`.
    pub(super) unsafe fn retire(l: *const Local) {
        // SAFETY: per the contract.
        unsafe { &*l }.state.set(EXITED);
    }
}

pub(crate) use tls::STATIC_TLS_BYTES;
use tls::{current, live, this_fast};

/// Runs `f` on the calling thread's own `Local` ([`current`]), if it has one.
#[inline]
fn with_current<R>(f: impl FnOnce(&Local) -> R) -> Option<R> {
    // SAFETY: `current` gives this thread's `Local`, alive while the thread runs; only the
    // thread's exit (`retire`) ends it, and that holds no reference to it.
    current().map(|l| f(unsafe { &*l }))
}

/// The calling thread's `Local` reached through an initial-exec thread-local.
///
/// A shared library's thread-locals use the general-dynamic model, where every access calls
/// `__tls_get_addr`; stable Rust cannot ask for another model. So the thread-local is declared
/// in assembly, reached through a `GOTTPOFF` relocation, which the dynamic linker resolves once
/// to its offset from the thread pointer: every access is the x86-64 initial-exec sequence, the
/// offset from the GOT and a load at that offset in the `fs` segment.
///
/// The thread-local is a pointer, 8 bytes of `.tdata`, not the `Local` itself (tens of
/// kilobytes, most of it the buckets' slots). A library with such a relocation has its whole
/// TLS block in the static TLS area, which glibc carves out of every thread's stack: with the
/// `Local` there, a thread created with a small stack (16 or 32 KiB) could not be created at
/// all (`pthread_create` failed with `EINVAL`), and the background thread's 64 KiB stack was
/// too small for a larger heap.
///
/// The pointer's initial value is [`UNSET`], a static `Local` of zeros: its buckets are empty
/// and of capacity 0, so both fast paths fail on it with no test of their own, and they only
/// read it ([`Heap::pop_in`], [`Heap::push_in`]). The slow path that follows ([`live`]) gives
/// the thread a `Local` of its own from [`Pool`] and points the thread-local at it. At exit the
/// thread gives it back and points at [`GONE`], another placeholder: what it allocates or frees
/// after that goes straight to the pool, as before.
///
/// A forked child's thread keeps its thread pointer and its copy of the memory, so it keeps its
/// `Local`. A library with initial-exec TLS must be preloaded or linked: `dlopen` refuses it when
/// the static TLS area has no room left, and a `malloc` that replaces the C library's is loaded
/// that way anyway.
#[cfg(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux"
))]
mod ie {
    use core::ptr::{self, NonNull};
    use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::Relaxed};

    use slab_bitmap::SlotSet;

    use super::{register, Local};

    /// The thread-local pointer's value is in a register when the fields are reached: the
    /// indexed form is one instruction shorter and as fast (see [`thread_heap::Entry::opaque`]).
    pub(super) const OPAQUE: bool = false;

    /// The pointer.
    pub(crate) const STATIC_TLS_BYTES: usize = size_of::<*const Local>();

    /// The `Local` is mapped, not in static TLS: the small classes' buckets may hold their
    /// bytes' worth (see [`super::THREAD_CAPS`]).
    pub(super) const BUCKET_MAX: usize = 8 * slab_pool::class::BUCKET_MAX;

    /// A `Local` that no thread owns, which the fast paths of every thread without a `Local`
    /// read at once.
    #[repr(transparent)]
    pub(super) struct Placeholder(Local);

    // SAFETY: nothing writes a placeholder. The fast paths write a heap only after a pop or push
    // succeeds, which a heap of empty buckets of capacity 0 never lets them, and count only
    // then; every other path reaches a `Local` through `current` or `live`, which never give a
    // placeholder.
    unsafe impl Sync for Placeholder {}

    /// The thread-local's initial value: a thread that has not taken a slow path yet.
    static UNSET: Placeholder = Placeholder(Local::NEW);
    /// The thread-local's value after the thread's exit destructor ran.
    static GONE: Placeholder = Placeholder(Local::NEW);

    // Hidden, so that every object of the library resolves it to the same thread-local without
    // the symbol leaving the library. The initial value is an address, relocated when the
    // library is loaded, before any thread's TLS is copied from it.
    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl fam_alloc_local",
        ".hidden fam_alloc_local",
        ".type fam_alloc_local,@object",
        ".size fam_alloc_local,8",
        "fam_alloc_local:",
        ".quad {unset}",
        ".popsection",
        unset = sym UNSET,
    );

    /// The thread-local's value: this thread's `Local`, or a placeholder.
    #[inline(always)]
    pub(super) fn this_fast() -> *const Local {
        get()
    }

    #[inline(always)]
    fn get() -> *const Local {
        let p: *const Local;
        // SAFETY: reads the GOT entry holding the thread-local's offset from the thread pointer
        // (fixed for the process's life) and the thread-local at that offset in the `fs`
        // segment, as the x86-64 TLS ABI lays it out. `readonly`: only `set`, an `asm!` that the
        // compiler must assume writes memory, changes the value.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + fam_alloc_local@GOTTPOFF]",
                "mov {p}, qword ptr fs:[{p}]",
                p = out(reg) p,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        p
    }

    /// Points the thread-local at `l`.
    fn set(l: *const Local) {
        // SAFETY: writes the thread-local found as in `get`; it belongs to this thread.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + fam_alloc_local@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {l}",
                t = out(reg) _,
                l = in(reg) l,
                options(nostack, preserves_flags),
            );
        }
    }

    /// The thread-local's value, unless it is a placeholder.
    #[inline]
    pub(super) fn current() -> Option<*const Local> {
        let l = get();
        (!ptr::eq(l, &UNSET.0) && !ptr::eq(l, &GONE.0)).then_some(l)
    }

    /// [`current`], after [`adopt`] for a thread that has not had a `Local` yet.
    #[inline]
    pub(super) fn live() -> Option<*const Local> {
        if ptr::eq(get(), &UNSET.0) {
            return adopt();
        }
        current()
    }

    /// Gives the calling thread, which has none, a `Local` of its own and registers it for
    /// exit. `None` (and the thread is [`GONE`] from then on) when no `Local` can be mapped or
    /// the thread cannot be registered.
    #[cold]
    #[inline(never)]
    fn adopt() -> Option<*const Local> {
        let Some(l) = Pool::take() else {
            set(&GONE.0);
            return None;
        };
        let l = l.as_ptr().cast_const();
        // From here on the nested allocations of the registration (inside libc) see it.
        set(l);
        // SAFETY: `l` is this thread's `Local` now.
        if register(unsafe { &*l }) {
            return Some(l);
        }
        set(&GONE.0);
        // SAFETY: `l` came from `Pool::take`, and the thread-local points elsewhere now.
        unsafe { Pool::give(l) };
        None
    }

    /// Ends the calling thread's use of its `Local` `l` (after its exit destructor gave its
    /// heap and chunks up): the thread-local points at [`GONE`], and `l` goes back to [`Pool`].
    ///
    /// # Safety
    /// `l` is the calling thread's `Local`, empty as its exit leaves it, and no reference to it
    /// is live.
    pub(super) unsafe fn retire(l: *const Local) {
        set(&GONE.0);
        // SAFETY: per the contract; nothing reaches `l` through the thread-local any more.
        unsafe { Pool::give(l) };
    }

    /// The `Local`s of threads: each is mapped once, and used again by later threads once its
    /// thread exits, so a process that creates threads one after another maps as many as ran
    /// at once. A slot set says which are in use; claiming a slot gives its `Local` to one
    /// thread alone, with what its last thread wrote into it (the set's claim/release hand-off,
    /// which slab-bitmap's loom models check with a data cell per slot). Past [`Pool::SLOTS`]
    /// threads at once, a `Local` is mapped for its thread and unmapped at its exit.
    struct Pool;

    const WORDS: usize = 16;

    /// Which slots are in use.
    static TAKEN: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];
    static HINT: AtomicUsize = AtomicUsize::new(0);
    /// Slot `i`'s `Local`, null until its first claimer maps it.
    static MAPPED: [AtomicPtr<Local>; Pool::SLOTS] =
        [const { AtomicPtr::new(ptr::null_mut()) }; Pool::SLOTS];

    impl Pool {
        const SLOTS: usize = WORDS * 64;

        fn set() -> SlotSet<'static> {
            SlotSet::new(&TAKEN, &HINT, Self::SLOTS)
        }

        /// A `Local` in its initial state for the calling thread, or `None` when the OS has no
        /// memory for one.
        fn take() -> Option<NonNull<Local>> {
            let Some(i) = Self::set().claim() else {
                return map();
            };
            // Relaxed: slot `i`'s `MAPPED` is written only by a claimer of `i`, whose release
            // of the slot (Release) happens before this claim (Acquire); that also makes the
            // state in which its thread left the `Local` visible here.
            if let Some(l) = NonNull::new(MAPPED[i].load(Relaxed)) {
                return Some(l);
            }
            let Some(l) = map() else {
                // Nothing was written: the slot goes back as it was.
                let _ = Self::set().release(i);
                return None;
            };
            // SAFETY: a fresh `Local`, ours alone.
            unsafe { l.as_ref() }.slot.set(i as u32 + 1);
            MAPPED[i].store(l.as_ptr(), Relaxed);
            Some(l)
        }

        /// Takes back a `Local` that [`take`](Self::take) gave and whose thread is done with it.
        /// Its state must be `Local::NEW`'s again but for `state`, which this resets; a thread's
        /// exit leaves the heap empty with capacities 0, the owner as `Owner::new()` and the
        /// counters at zero, off the live list.
        ///
        /// # Safety
        /// `l` came from `take`, and nothing reaches it any more.
        unsafe fn give(l: *const Local) {
            // SAFETY: per the contract, `l` is alive until it goes back.
            let local = unsafe { &*l };
            local.state.set(super::NEW);
            match local.slot.get() {
                // SAFETY: a `Local` of no slot was mapped on its own by `take`, and nothing
                // reaches it (contract).
                0 => unsafe { crate::os::unmap(l.cast_mut().cast(), size_of::<Local>()) },
                slot => {
                    let released = Self::set().release(slot as usize - 1);
                    debug_assert!(released.is_ok(), "a Local given back twice");
                }
            }
        }
    }

    /// A fresh `Local` of zeroed pages (a valid `Local::NEW`, see [`super::ZEROED`]).
    fn map() -> Option<NonNull<Local>> {
        crate::os::map(size_of::<Local>()).map(NonNull::cast)
    }
}

/// Registers the calling thread, whose `Local` is `l` and in state `NEW`, for exit; false if
/// that is impossible (then the thread stays `NEW`).
///
/// Registering may allocate inside libc (pthread_atfork's table, for one); in a C build that is
/// this allocator again. While `REGISTERING`, such nested calls get capacity 0: they are served
/// straight from the pool and do not recurse here.
fn register(l: &Local) -> bool {
    l.state.set(REGISTERING);
    let ok = register_thread();
    if ok {
        counters::thread_started();
    }
    l.state.set(if ok { REGISTERED } else { NEW });
    ok
}

/// Runs `f` on the calling thread's heap and counters, on the fast paths, which may be given a
/// placeholder (see [`this_fast`]): `f` reads the heap through [`Heap::pop_in`] or
/// [`Heap::push_in`] and counts only when that succeeds.
#[inline(always)]
fn with_fast<R>(f: impl FnOnce(*mut Heap, &ThreadCounters) -> R) -> R {
    let l = this_fast();
    // SAFETY: `this_fast` never gives null, and a placeholder or this thread's `Local` is alive
    // for the thread's life. The heap pointer comes with no reference to the heap.
    unsafe { f(UnsafeCell::raw_get(&raw const (*l).heap), &(*l).counters) }
}

/// The bucket entry of `class` for the fast paths: opaque ([`Entry::opaque`]) where the thread's
/// `Local` is an ordinary thread-local, which an executable reaches at a constant offset from
/// the thread pointer (no base register), as it is where the `Local` is reached through the
/// initial-exec pointer of [`ie`], whose value is in a register already.
#[inline(always)]
fn entry(class: usize) -> Entry<NUM_CLASSES> {
    let entry = Entry::of(class);
    if tls::OPAQUE {
        entry.opaque()
    } else {
        entry
    }
}

/// The allocation fast path of the calling thread, counted: the newest block of `class` in its
/// bucket, or `None` when the bucket is empty (then [`alloc_counted`]). The fast path of
/// `FamAlloc` and of the C library's `malloc`.
#[inline(always)]
pub(crate) fn pop_counted(class: usize) -> Option<NonNull<u8>> {
    let entry = entry(class);
    with_fast(|h, c| {
        // SAFETY: `h` is this thread's heap or a placeholder's, which `pop_in` only reads (see
        // `with_fast`); no reference to the heap is live.
        let p = unsafe { Heap::pop_in(h, entry) }?;
        c.count_alloc(class);
        Some(p)
    })
}

/// The free fast path of the calling thread, counted: caches `ptr` in the bucket of `class` and
/// returns true, or changes nothing and returns false when the bucket is full (then
/// [`dealloc_counted`]).
///
/// # Safety
/// `ptr` is a block of `class` that the global heap handed out, and the caller gives it up.
#[inline(always)]
pub(crate) unsafe fn push_counted(class: usize, ptr: NonNull<u8>) -> bool {
    let entry = entry(class);
    with_fast(|h, c| {
        // SAFETY: as in `pop_counted`, and the block is as `push_in` needs (contract).
        let pushed = unsafe { Heap::push_in(h, entry, ptr) };
        if pushed {
            c.count_free(class);
        }
        pushed
    })
}

/// The allocation slow path of the calling thread, counted: a block of `class` through `store`
/// (a refill when the bucket is empty), or `None` when memory is exhausted (not counted: no
/// block went out). A thread with no heap (exited, or none could be made) takes one block
/// straight from the pool.
#[inline(always)]
pub(crate) fn alloc_counted<S: CentralStore>(class: usize, store: &S) -> Option<NonNull<u8>> {
    let Some(l) = live() else {
        let mut one = [core::ptr::null_mut(); 1];
        // The store counts it with the exited threads (it finds no owner).
        return match store.refill(class, &mut one) {
            0 => None,
            _ => NonNull::new(one[0].cast()),
        };
    };
    // SAFETY: `l` is this thread's `Local` (from `live`).
    unsafe {
        with_local_at(l, |h, c| {
            let p = h.alloc(class, store)?;
            c.count_alloc(class);
            Some(p)
        })
    }
}

/// The free slow path of the calling thread, counted: `ptr` into the bucket of `class`, which
/// flushes to `store` when full. A thread with no heap gives the block straight to the pool.
///
/// # Safety
/// As for [`push_counted`], and `store` is the global heap's (plain or marking).
#[inline(always)]
pub(crate) unsafe fn dealloc_counted<S: CentralStore>(class: usize, ptr: NonNull<u8>, store: &S) {
    let Some(l) = live() else {
        // SAFETY: per the contract; the store counts it with the exited threads.
        return unsafe { store.flush(class, &[ptr.cast()]) };
    };
    // SAFETY: `l` is this thread's `Local` (from `live`), and the block is as `dealloc` needs
    // (contract).
    unsafe {
        with_local_at(l, |h, c| {
            h.dealloc(class, ptr, store);
            c.count_free(class);
        })
    }
}

/// `f` on the heap and counters of `l`.
///
/// # Safety
/// `l` is this thread's own `Local` (from `current` or `live`).
#[inline(always)]
unsafe fn with_local_at<R>(l: *const Local, f: impl FnOnce(&mut Heap, &ThreadCounters) -> R) -> R {
    // SAFETY: `l` is this thread's `Local` (contract), alive while the thread runs.
    let l = unsafe { &*l };
    // SAFETY: the heap is this thread's alone, and the allocator does not re-enter itself, so no
    // other reference to it is live while `f` runs.
    f(unsafe { &mut *l.heap.get() }, &l.counters)
}

/// Runs `f` on the calling thread's heap, if it has one (a thread that has none caches nothing).
#[inline]
pub(crate) fn with_heap<R>(f: impl FnOnce(&mut Heap) -> R) -> Option<R> {
    // SAFETY: `current` gives this thread's own `Local`.
    current().map(|l| unsafe { with_local_at(l, |h, _| f(h)) })
}

/// Runs `f` on the calling thread's counters, if it has a `Local` (slow paths).
#[cfg(feature = "stats")]
pub(crate) fn with_counters<R>(f: impl FnOnce(&ThreadCounters) -> R) -> Option<R> {
    with_current(|l| f(&l.counters))
}

/// Runs `f` with the calling thread's owned chunks, or with `None` when it has no `Local` (its
/// exit destructor ran: it gave its chunks up then and must not own any again).
///
/// Only the pool calls of this thread's heap reach them, and those never nest.
#[inline]
pub(crate) fn with_owner<R>(f: impl FnOnce(Option<&mut Owner>) -> R) -> R {
    // SAFETY: `current` gives this thread's own `Local`. The owner is this thread's alone; its
    // users (refill, flush, exit, trim) are pool calls that do not call each other, so no other
    // reference to it is live.
    f(current().map(|l| unsafe { &mut *(*l).owner.get() }))
}

/// The calling thread's state: `EXITED` for a thread with no `Local` of its own.
fn state() -> u8 {
    with_current(|l| l.state.get()).unwrap_or(EXITED)
}

/// The central store as seen from a thread heap: the global pool, plus thread registration.
pub(crate) struct GlobalStore;

// SAFETY: forwards to the global pool, which hands out free blocks of the requested class only.
unsafe impl CentralStore for GlobalStore {
    #[inline]
    fn refill(&self, class: usize, out: &mut [*mut Block]) -> usize {
        let (n, exited) = with_owner(|o| match o {
            Some(o) => (pool().refill(o, class, out), false),
            // The thread gave its chunks up at exit and must not own any again.
            None => (pool().refill_once(class, out), true),
        });
        crate::background::ensure_in_heap();
        crate::global::large_idle_check();
        if n == 0 {
            return 0;
        }
        if exited {
            // The thread's counters left the live list at exit; count with the exited threads.
            counters::exited_op(class, true, n);
        } else {
            counters::refilled(class, n);
        }
        n
    }

    #[inline]
    unsafe fn flush(&self, class: usize, blocks: &[NonNull<Block>]) {
        let n = blocks.len();
        let exited = with_owner(|o| {
            let exited = o.is_none();
            // SAFETY: the thread heap only flushes blocks of `class` that came from the global
            // pool (or bad pointers, which the pool's registry checks catch).
            unsafe { pool().flush(o, class, blocks) };
            exited
        });
        crate::background::ensure_in_heap();
        crate::global::large_idle_check();
        if exited {
            // After exit every free flushes its own block (capacity 0): count it as above.
            counters::exited_op(class, false, n);
        } else {
            counters::flushed(class, n, bucket_cap(class));
        }
    }

    /// The pass of the pressure check is due: the heap gives its cached blocks back first
    /// (see [`slab_pool::Owner::recheck_due`]).
    #[cold]
    fn shed(&self) -> bool {
        with_owner(|o| o.is_some_and(|o| o.recheck_due(slab_pool::now_ms())))
    }

    /// The allocation side of the pool's pressure check (see `slab_pool::pool`): once a flush of
    /// this thread found the pool over its bound, the heap sends its operations here until
    /// [`slab_pool::SlabPool::pressure_recheck`] has run, a short delay later, at the first of
    /// them after it; that gives back what the frees since the flush left free, although no
    /// flush follows them.
    #[cold]
    fn divert(&self) -> bool {
        with_owner(|o| {
            o.is_some_and(|o| {
                pool().pressure_recheck(o);
                o.recheck_wanted()
            })
        })
    }

    fn room(&self, class: usize) -> u32 {
        THREAD_CAPS[class]
    }

    /// Doubles the bucket, up to its room ([`THREAD_CAPS`]): a bucket of 256 blocks of 16 B
    /// that a program fills and empties by batches of 1600 grows to 2048 in three cycles.
    #[cold]
    fn grow(&self, class: usize, cap: u32) -> u32 {
        let grown = cap.saturating_mul(2).min(THREAD_CAPS[class]);
        // Only a registered thread's heap caches, and so overflows.
        with_current(|l| l.grown[class].set(grown));
        grown
    }

    /// Halves the bucket, down to the class's own capacity, in a long run of frees (a
    /// scattered free of many blocks, whose cached blocks each pin a page): one more halving at
    /// each flush of the run. A halving is `cap / 2 + 1`, room for the block the flush makes
    /// room for.
    #[cold]
    fn shrink(&self, class: usize, cap: u32) -> u32 {
        let own = CLASSES[class].cap;
        let shrunk = (cap / 2 + 1).max(own).min(cap);
        with_current(|l| l.grown[class].set(if shrunk > own { shrunk } else { 0 }));
        shrunk
    }

    #[cold]
    fn cap(&self, class: usize) -> u32 {
        let registered = with_current(|l| match l.state.get() {
            REGISTERED => true,
            NEW => register(l),
            _ => false,
        });
        if registered == Some(true) {
            CLASSES[class].cap
        } else {
            0
        }
    }
}

/// The pthread key whose destructor flushes a thread's heap; `KEY_UNSET` until created.
static EXIT_KEY: AtomicUsize = AtomicUsize::new(KEY_UNSET);
const KEY_UNSET: usize = usize::MAX;
const KEY_BUSY: usize = usize::MAX - 1;

/// Arranges for this thread's heap to be flushed at thread exit. False if that is impossible
/// (then the thread runs without caching, which loses nothing).
fn register_thread() -> bool {
    let key = match exit_key() {
        Some(k) => k,
        None => return false,
    };
    // SAFETY: `key` is a live key; the value is a non-null marker, never dereferenced.
    unsafe { libc::pthread_setspecific(key, core::ptr::dangling::<libc::c_void>()) == 0 }
}

/// Creates the exit key now, if it does not exist yet. A C library calls this before the
/// program's constructors run (see [`crate::raw::init`]).
pub(crate) fn init_exit_key() {
    let _ = exit_key();
}

/// The exit key, created (with the fork handlers) on first use.
fn exit_key() -> Option<libc::pthread_key_t> {
    loop {
        // Acquire: pairs with the Release store of the created key.
        match EXIT_KEY.load(Ordering::Acquire) {
            KEY_UNSET => {
                if EXIT_KEY
                    .compare_exchange(KEY_UNSET, KEY_BUSY, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                let mut key: libc::pthread_key_t = 0;
                // SAFETY: `key` is writable; the destructor is an `extern "C"` fn of the right type.
                let ok = unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0;
                if !ok {
                    EXIT_KEY.store(KEY_UNSET, Ordering::Release);
                    return None;
                }
                prepare_for_fork();
                crate::options::read_env();
                crate::statistics::install_exit_report();
                EXIT_KEY.store(key as usize, Ordering::Release);
                crate::background::ensure_in_heap();
                return Some(key);
            }
            KEY_BUSY => core::hint::spin_loop(),
            k => return Some(k as libc::pthread_key_t),
        }
    }
}

/// The pthread key destructor: everything the thread caches goes back to the pool, and the
/// thread's `Local` is retired (see `tls`).
extern "C" fn thread_exit(_marker: *mut libc::c_void) {
    let Some(l) = current() else {
        return;
    };
    // SAFETY: `l` is this thread's own `Local`.
    unsafe {
        with_local_at(l, |heap, _| {
            heap.flush_all(&GlobalStore);
            heap.reset_caps();
        });
        for grown in &(*l).grown {
            grown.set(0);
        }
        // The owner is as new afterwards, for a later thread that reuses this `Local`.
        pool().release_owner(&mut *(*l).owner.get());
    }
    counters::thread_exited();
    // From now on every allocation and free of this thread goes straight to the pool, and is
    // counted with the exited threads.
    // SAFETY: `l` is this thread's `Local`, emptied above; no reference to it is live.
    unsafe { tls::retire(l) };
}

/// Registers the calling thread if it has not used the allocator yet, so that code which takes
/// the statistics lock and then allocates does not register (and take that lock) inside it.
pub(crate) fn ensure_registered() {
    if live().is_some() && state() == NEW {
        let _ = GlobalStore.cap(0);
    }
}

/// The capacity a bucket of `class` has on this thread (what `cap` or `grow` handed out).
fn bucket_cap(class: usize) -> u32 {
    with_current(|l| {
        if l.state.get() != REGISTERED {
            return 0;
        }
        match l.grown[class].get() {
            0 => CLASSES[class].cap,
            grown => grown,
        }
    })
    .unwrap_or(0)
}

/// Gives every block the calling thread caches back to the pool.
pub(crate) fn flush_current() {
    let _ = with_heap(|h| h.flush_all(&GlobalStore));
    counters::emptied_buckets();
}

#[cfg(test)]
mod tests {
    use super::{thread_id, Local, ZEROED};
    use std::collections::HashSet;
    use std::thread;

    /// Threads started one after another usually get the stack (and the thread-local
    /// addresses) of the one before; their identities must still differ.
    #[test]
    fn threads_that_reuse_a_stack_get_new_identities() {
        let main = thread_id();
        assert_eq!(thread_id(), main, "a thread's identity is stable");
        let mut seen = HashSet::from([main]);
        for _ in 0..64 {
            let id = thread::spawn(thread_id).join().unwrap();
            assert!(id > 1, "0 and 1 are reserved");
            assert!(seen.insert(id), "identity {id} given twice");
        }
    }

    /// Zero bytes are `Local::NEW`, field by field: what lets the initial-exec build declare the
    /// thread's `Local` as zeroed `.tbss` without running its constructor.
    #[test]
    fn zeroed_local_is_new() {
        let (z, n) = (ZEROED, Local::NEW);
        // SAFETY: both are local values; nothing else references their cells.
        let (zh, nh) = unsafe { (&*z.heap.get(), &*n.heap.get()) };
        assert_eq!(format!("{zh:?}"), format!("{nh:?}"));
        // SAFETY: as above.
        let (zo, no) = unsafe { (&*z.owner.get(), &*n.owner.get()) };
        assert_eq!(format!("{zo:?}"), format!("{no:?}"));
        assert_eq!(z.state.get(), n.state.get());
        assert_eq!(format!("{:?}", z.counters), format!("{:?}", n.counters));
    }
}
