//! The calling thread's heap, and what happens to it when the thread exits or the process forks.
//!
//! Each thread owns a [`ThreadHeap`] in a `const`-initialised thread-local with no destructor, so
//! reaching it is a plain TLS access: no lazy-init check, no registration, nothing that can
//! allocate. Its buckets start with a capacity of zero, so a thread's first allocation *and* its
//! first free take the slow path, which asks [`GlobalStore::cap`] for the real capacity. That
//! call is where a thread registers for exit: it sets a `pthread_key_t` value whose destructor
//! flushes the heap back to the central pool. glibc's `pthread_setspecific` does not allocate for
//! the first 32 keys, and `pthread_key_create` never does, so registering cannot recurse into the
//! allocator.
//!
//! Destructors of Rust thread-locals run before pthread key destructors, so blocks they free land
//! in the heap before it is flushed. After the flush every capacity is zero again and the state is
//! `EXITED`: anything freed later in the thread's teardown (another library's key destructor) goes
//! straight back to the pool instead of being stranded in a dead thread's bucket.
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

use crate::class::{Heap, CAPS, CLASSES, NUM_CLASSES};
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

/// Per-thread state.
const NEW: u8 = 0;
const REGISTERING: u8 = 1;
const REGISTERED: u8 = 2;
const EXITED: u8 = 3;

/// Everything the allocator keeps per thread, in one thread-local so that an operation reaches
/// it with one TLS access.
///
/// Its initial value is all zero bytes ([`ZEROED`]): an unlaid heap, an
/// owner of no chunks, state `NEW`, zero counters. So it lies in `.tbss`, a new thread's copy
/// is not written at all, and storage that the loader zeroes is a valid `Local` as it is
/// (which [`ie`] relies on).
struct Local {
    heap: UnsafeCell<Heap>,
    /// The chunks this thread refills from; used only by the pool calls of its own heap.
    owner: UnsafeCell<Owner>,
    state: Cell<u8>,
    counters: ThreadCounters,
}

impl Local {
    /// The initial value. The initial-exec build never constructs it: its storage starts as
    /// [`ZEROED`], which is the same value.
    #[cfg_attr(
        all(
            feature = "initial-exec-tls",
            target_arch = "x86_64",
            target_os = "linux"
        ),
        allow(dead_code)
    )]
    // Each use is a fresh value (a thread's initial `Local`), never a shared one.
    #[allow(clippy::declare_interior_mutable_const)]
    const NEW: Local = Local {
        heap: UnsafeCell::new(Heap::unlaid()),
        owner: UnsafeCell::new(Owner::new()),
        state: Cell::new(NEW),
        counters: ThreadCounters::new(),
    };
}

/// A `Local` made of zero bytes, as the loader leaves a thread's `.tbss`. A constant, so that
/// const evaluation proves zero bytes a valid `Local` (it checks every constant's value); the
/// test `zeroed_local_is_new` shows that it is `Local::NEW`.
// Read by the test only; each use is a fresh value, as for `NEW`.
#[allow(dead_code, clippy::declare_interior_mutable_const)]
// SAFETY: checked by const evaluation, as said above.
const ZEROED: Local = unsafe { core::mem::zeroed() };

#[cfg(not(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux"
)))]
thread_local! {
    static LOCAL: Local = const { Local::NEW };
}

/// The calling thread's [`Local`], never null.
///
/// By default this is `LOCAL.with`: in an executable a constant offset from the thread pointer,
/// in a shared library a call to `__tls_get_addr`. With the `initial-exec-tls` feature (on
/// x86-64 Linux) the `Local` is a block of `.tbss` declared in assembly ([`ie`]), which a shared
/// library reaches with two instructions and no call.
#[inline(always)]
fn this() -> *const Local {
    #[cfg(all(
        feature = "initial-exec-tls",
        target_arch = "x86_64",
        target_os = "linux"
    ))]
    return ie::get();
    #[cfg(not(all(
        feature = "initial-exec-tls",
        target_arch = "x86_64",
        target_os = "linux"
    )))]
    LOCAL.with(|l| l as *const Local)
}

/// Runs `f` on the calling thread's [`Local`].
#[inline(always)]
fn with_this<R>(f: impl FnOnce(&Local) -> R) -> R {
    // SAFETY: `this` returns the address of this thread's `Local`, which lives as long as the
    // thread and is never dropped (it has no destructor).
    f(unsafe { &*this() })
}

/// The thread's [`Local`] as initial-exec TLS.
///
/// A shared library's thread-locals use the general-dynamic model, where every access calls
/// `__tls_get_addr`; stable Rust cannot ask for another model. The `Local` is therefore declared
/// in assembly: `size_of::<Local>()` zeroed bytes of `.tbss` (a valid `Local::NEW`, see the
/// assertion above; it has no destructor to register), reached through a `GOTTPOFF` relocation,
/// which the dynamic linker resolves once to the block's offset from the thread pointer. Every
/// access is the x86-64 initial-exec sequence: the thread pointer from `fs:0`, plus that offset.
///
/// A library with such a relocation has its whole TLS block in the static TLS area, so it must
/// be preloaded or linked: `dlopen` refuses it (glibc keeps only a few hundred bytes of static
/// TLS spare, and the block is tens of kilobytes). A `malloc` that replaces the C library's is
/// loaded that way anyway. A forked child's thread has the same thread pointer, so it keeps its
/// `Local`.
#[cfg(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux"
))]
mod ie {
    use core::mem::{align_of, size_of};

    use super::Local;

    // Hidden, so that every object of the library resolves it to the same block without the
    // symbol leaving the library.
    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align {align}",
        ".globl fam_alloc_local",
        ".hidden fam_alloc_local",
        ".type fam_alloc_local,@object",
        ".size fam_alloc_local,{size}",
        "fam_alloc_local:",
        ".zero {size}",
        ".popsection",
        align = const align_of::<Local>().trailing_zeros(),
        size = const size_of::<Local>(),
    );

    /// The address of this thread's `Local`.
    #[inline(always)]
    pub(super) fn get() -> *const Local {
        let p: *const Local;
        // SAFETY: reads the thread pointer (the TCB's self pointer at `fs:0`, as the x86-64 TLS
        // ABI requires) and the GOT entry holding the block's offset from it; neither changes
        // during the thread's life, so the result is `pure` and reads no memory Rust sees.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr fs:[0]",
                "add {p}, qword ptr [rip + fam_alloc_local@GOTTPOFF]",
                p = out(reg) p,
                options(pure, nomem, nostack),
            );
        }
        p
    }
}

/// Runs `f` on the calling thread's heap and counters.
///
/// `f` must not reach `with_local` again with the heap (the allocator never calls itself, so it
/// cannot); the counters and state may be reached again, they are separate fields.
#[inline(always)]
pub(crate) fn with_local<R>(f: impl FnOnce(&mut Heap, &ThreadCounters) -> R) -> R {
    // SAFETY: `this` is this thread's `Local`, never null.
    unsafe { with_local_at(this(), f) }
}

/// The bucket entry of `class` for the fast paths: opaque ([`Entry::opaque`]) where the thread's
/// `Local` is an ordinary thread-local, which an executable reaches at a constant offset from
/// the thread pointer (no base register), as it is where the `Local` is the initial-exec slot
/// of [`this`], whose address is in a register already.
#[inline(always)]
fn entry(class: usize) -> Entry<NUM_CLASSES> {
    let entry = Entry::of(class);
    #[cfg(not(all(
        feature = "initial-exec-tls",
        target_arch = "x86_64",
        target_os = "linux"
    )))]
    let entry = entry.opaque();
    entry
}

/// The allocation fast path of the calling thread, counted: the newest block of `class` in its
/// bucket, or `None` when the bucket is empty (then [`alloc_counted`]). `FamAlloc`'s fast path;
/// the C library's (`raw::pop_small`) writes the same lines out, for the reason given there.
#[inline(always)]
pub(crate) fn pop_counted(class: usize) -> Option<NonNull<u8>> {
    let entry = entry(class);
    with_local(|h, c| {
        let p = h.pop_at(entry)?;
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
    with_local(|h, c| {
        // SAFETY: per the contract.
        let pushed = unsafe { h.push_at(entry, ptr) };
        if pushed {
            c.count_free(class);
        }
        pushed
    })
}

/// The allocation slow path of the calling thread, counted: a block of `class` through `store`
/// (a refill when the bucket is empty), or `None` when memory is exhausted (not counted: no
/// block went out).
#[inline(always)]
pub(crate) fn alloc_counted<S: CentralStore>(class: usize, store: &S) -> Option<NonNull<u8>> {
    with_local(|h, c| {
        let p = h.alloc(class, store)?;
        c.count_alloc(class);
        Some(p)
    })
}

/// The free slow path of the calling thread, counted: `ptr` into the bucket of `class`, which
/// flushes to `store` when full.
///
/// # Safety
/// As for [`push_counted`], and `store` is the global heap's (plain or marking).
#[inline(always)]
pub(crate) unsafe fn dealloc_counted<S: CentralStore>(class: usize, ptr: NonNull<u8>, store: &S) {
    with_local(|h, c| {
        // SAFETY: per the contract.
        unsafe { h.dealloc(class, ptr, store) };
        c.count_free(class);
    });
}

/// `f` on the heap and counters of `l`.
///
/// # Safety
/// `l` is this thread's `Local` (from `this`).
#[inline(always)]
unsafe fn with_local_at<R>(l: *const Local, f: impl FnOnce(&mut Heap, &ThreadCounters) -> R) -> R {
    // SAFETY: `l` is this thread's `LOCAL` (contract), alive for the thread's life.
    let l = unsafe { &*l };
    // SAFETY: the heap is this thread's alone, and the allocator does not re-enter itself, so no
    // other reference to it is live while `f` runs.
    f(unsafe { &mut *l.heap.get() }, &l.counters)
}

/// Runs `f` on the calling thread's heap.
#[inline(always)]
pub(crate) fn with_heap<R>(f: impl FnOnce(&mut Heap) -> R) -> R {
    with_local(|h, _| f(h))
}

/// Runs `f` on the calling thread's counters (slow paths).
#[cfg(feature = "stats")]
pub(crate) fn with_counters<R>(f: impl FnOnce(&ThreadCounters) -> R) -> R {
    with_this(|l| f(&l.counters))
}

/// Runs `f` on the calling thread's owned chunks.
///
/// Only the pool calls of this thread's heap reach them, and those never nest.
#[inline]
pub(crate) fn with_owner<R>(f: impl FnOnce(&mut Owner) -> R) -> R {
    with_this(|l| {
        // SAFETY: the owner is this thread's alone; its users (refill, flush, exit, trim) are
        // pool calls that do not call each other, so no other reference to it is live.
        f(unsafe { &mut *l.owner.get() })
    })
}

/// Runs `f` with the calling thread's owned chunks, or with `None` once its exit destructor ran
/// (it gave them up then and must not own any again): state and owner in one TLS access.
#[inline]
fn with_live_owner<R>(f: impl FnOnce(Option<&mut Owner>) -> R) -> R {
    with_this(|l| {
        let live = l.state.get() != EXITED;
        // SAFETY: as in `with_owner`.
        f(live.then(|| unsafe { &mut *l.owner.get() }))
    })
}

fn state() -> u8 {
    with_this(|l| l.state.get())
}

fn set_state(s: u8) {
    with_this(|l| l.state.set(s));
}

/// The central store as seen from a thread heap: the global pool, plus thread registration.
pub(crate) struct GlobalStore;

// SAFETY: forwards to the global pool, which hands out free blocks of the requested class only.
unsafe impl CentralStore for GlobalStore {
    #[inline]
    fn refill(&self, class: usize, out: &mut [*mut Block]) -> usize {
        let (n, exited) = with_live_owner(|o| match o {
            Some(o) => (pool().refill(o, class, out), false),
            // The thread gave its chunks up at exit and must not own any again.
            None => (pool().refill_once(class, out), true),
        });
        crate::background::ensure_in_heap();
        crate::global::large_idle_check(slab_pool::now_ms());
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
        let exited = with_live_owner(|o| {
            let exited = o.is_none();
            // SAFETY: the thread heap only flushes blocks of `class` that came from the global
            // pool (or bad pointers, which the pool's registry checks catch).
            unsafe { pool().flush(o, class, blocks) };
            exited
        });
        crate::background::ensure_in_heap();
        crate::global::large_idle_check(slab_pool::now_ms());
        if exited {
            // After exit every free flushes its own block (capacity 0): count it as above.
            counters::exited_op(class, false, n);
        } else {
            counters::flushed(class, n, bucket_cap(class));
        }
    }

    /// The allocation side of the pool's pressure check (see `slab_pool::pool`): once a flush of
    /// this thread found the pool over its bound, the heap sends its operations here until
    /// [`slab_pool::SlabPool::pressure_recheck`] has run, a short delay later, at the first of
    /// them after it; that gives back what the frees since the flush left free, although no
    /// flush follows them.
    #[cold]
    fn divert(&self) -> bool {
        with_live_owner(|o| {
            o.is_some_and(|o| {
                pool().pressure_recheck(o);
                o.recheck_wanted()
            })
        })
    }

    fn room(&self, class: usize) -> u32 {
        CAPS[class]
    }

    #[cold]
    fn cap(&self, class: usize) -> u32 {
        match state() {
            REGISTERED => CLASSES[class].cap,
            NEW => {
                // Registering may allocate inside libc (pthread_atfork's table, for one); in a C
                // build that is this allocator again. While REGISTERING, such nested calls get
                // capacity 0: they are served straight from the pool and do not recurse here.
                set_state(REGISTERING);
                let ok = register_thread();
                if ok {
                    counters::thread_started();
                }
                set_state(if ok { REGISTERED } else { NEW });
                if ok {
                    CLASSES[class].cap
                } else {
                    0
                }
            }
            _ => 0,
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

/// The pthread key destructor: everything the thread caches goes back to the pool.
extern "C" fn thread_exit(_marker: *mut libc::c_void) {
    with_heap(|heap| {
        heap.flush_all(&GlobalStore);
        heap.reset_caps();
    });
    with_owner(|o| pool().release_owner(o));
    counters::thread_exited();
    // From now on every allocation and free of this thread takes the slow path (capacity 0),
    // which counts it with the exited threads.
    set_state(EXITED);
}

/// Registers the calling thread if it has not used the allocator yet, so that code which takes
/// the statistics lock and then allocates does not register (and take that lock) inside it.
pub(crate) fn ensure_registered() {
    if state() == NEW {
        let _ = GlobalStore.cap(0);
    }
}

/// The capacity a bucket of `class` has on this thread (what `cap` handed out).
fn bucket_cap(class: usize) -> u32 {
    if state() == REGISTERED {
        CLASSES[class].cap
    } else {
        0
    }
}

/// Gives every block the calling thread caches back to the pool.
pub(crate) fn flush_current() {
    with_heap(|h| h.flush_all(&GlobalStore));
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
