//! The background purge: one thread that gives freed memory back to the OS while the program
//! makes no allocator call. Off by default; `FAM_BACKGROUND_PURGE=1` or
//! [`crate::options::set_background_purge`] turns it on.
//!
//! Without it, memory freed within the purge delay goes back at the next pool operation after
//! the delay (a flush of a full bucket, see `slab_pool`'s module docs): a process that stops
//! calling the allocator, or only calls its fast paths, keeps it. The thread wakes every half
//! purge delay (at least 10 ms apart; once a second while purging is off) and runs the global
//! pool's pass ([`slab_pool::SlabPool::maintain`]: free pages of quiet listed chunks, empty
//! chunks past the delay), and gives back the cached large runs once no large block was
//! allocated or freed for a whole delay (`global::large_idle_check`, which every refill and
//! flush of a thread heap calls too). Its cost: a wake-up per half delay (20 a second at the
//! default 100 ms), each a scan of the partial and empty sets, a few microseconds when nothing
//! is due, and a 64 KiB stack. It blocks every signal, so no handler of the program runs on it.
//! Chunks the program's own threads own are theirs: only their passes purge them.
//!
//! # Starting
//!
//! `pthread_create` allocates (the new thread's TLS block, through `malloc`), which in the C
//! library is this allocator again, so there the thread is started only where the calling
//! thread holds none of the allocator's state: from the option setter, from the library's
//! load-time constructor (after it read the environment), and at [`ensure`] calls on paths
//! outside a thread heap (the slow paths of the C entry points, large blocks). A build without
//! the `initial-exec-tls` feature (the C library's) cannot be the process's `malloc`, so its
//! nested allocations go to libc's, and it also starts the thread from inside a thread heap
//! ([`ensure_in_heap`]): at the first thread's registration and at `FamAlloc`'s refills and
//! flushes.
//!
//! # Fork
//!
//! A forked child has no copy of the thread. [`RUNNING`] holds the fork generation
//! ([`chunk_source::fork::generation`]) the thread runs in, so in a child it is stale, and the
//! child's first start point starts a thread of its own. The pass takes no lock, so a fork in
//! the middle of one leaves nothing held; at worst the chunk the pass held at that moment is on
//! no set in the child (lost to the child, never handed out twice), as a chunk owned by a thread
//! that does not exist in the child is.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chunk_source::fork;
use slab_pool::POLICY;

/// Whether the program asked for the thread.
static WANTED: AtomicBool = AtomicBool::new(false);
/// The fork generation the thread was started in; 0 when there is none.
static RUNNING: AtomicU64 = AtomicU64::new(0);
/// Whether this build may be the process's `malloc` (the C library turns `initial-exec-tls`
/// on), so that a `pthread_create` nested in a thread heap's pool call could re-enter the heap.
const MAY_BE_MALLOC: bool = cfg!(feature = "initial-exec-tls");

/// The thread's stack: the pass is shallow and allocates nothing. glibc carves the static TLS
/// out of the size asked for, so that is added: in a Rust executable the thread heap is there.
const STACK_BYTES: usize = (64 << 10) + crate::local::STATIC_TLS_BYTES;

/// Turns the background purge on or off. On starts the thread now if it is not running (in this
/// process: after a fork, the child's own); off lets it end at its next wake-up.
pub(crate) fn set_enabled(on: bool) {
    request(on);
    if on {
        start_if_needed();
    }
}

/// Records whether the thread is wanted, starting nothing (for a caller inside the allocator:
/// the environment is read during the first thread's registration).
pub(crate) fn request(on: bool) {
    // Relaxed: the flag is a request; the thread and the starters read it again after their
    // RMWs on RUNNING, which decide who does what.
    WANTED.store(on, Ordering::Relaxed);
}

/// Whether the background purge is on.
pub(crate) fn enabled() -> bool {
    // Relaxed: as in `set_enabled`.
    WANTED.load(Ordering::Relaxed)
}

/// Whether the thread runs in this process now.
pub(crate) fn running() -> bool {
    // Acquire: pairs with the starter's CAS, for a caller that then looks at what it did.
    RUNNING.load(Ordering::Acquire) == fork::generation()
}

/// A start point outside any thread heap: starts the thread if it is wanted and not running in
/// this process. One relaxed load when the purge is off.
#[inline]
pub(crate) fn ensure() {
    if enabled() {
        ensure_slow();
    }
}

/// A start point inside a thread heap (a pool call, a thread's registration): only in a build
/// that cannot be the process's `malloc`, where the allocations nested in `pthread_create` go
/// to libc's.
#[inline]
pub(crate) fn ensure_in_heap() {
    if !MAY_BE_MALLOC && enabled() {
        ensure_slow();
    }
}

#[cold]
fn ensure_slow() {
    if !running() {
        start_if_needed();
    }
}

/// Starts the thread unless one runs in this process's generation; exactly one caller per
/// generation tries.
fn start_if_needed() {
    let generation = fork::generation();
    let seen = RUNNING.load(Ordering::Acquire);
    if seen == generation {
        return;
    }
    // AcqRel: the winner alone starts a thread for this generation.
    if RUNNING
        .compare_exchange(seen, generation, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    if !spawn() {
        // No thread (out of threads or memory): say so once for this generation and leave
        // RUNNING set, so no allocator call retries it; the next pool operations still purge.
        crate::options::warn_line(&[b"fam-alloc: the background purge thread could not start\n"]);
    }
}

/// Creates the detached thread with every signal blocked. False if it could not.
fn spawn() -> bool {
    // SAFETY: plain libc calls on values owned here; the attribute object is initialised
    // before use and destroyed after; the signal masks are valid sets.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_attr_init(&mut attr) != 0 {
            return false;
        }
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, STACK_BYTES.max(libc::PTHREAD_STACK_MIN));
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        // The new thread inherits the creator's mask: block everything around the create.
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut tid: libc::pthread_t = 0;
        let ok = libc::pthread_create(&mut tid, &attr, run, core::ptr::null_mut()) == 0;
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        ok
    }
}

/// The thread: sleep, pass, until the purge is turned off.
extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: a NUL-terminated name of at most 15 bytes for the calling thread.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), c"fam-purge".as_ptr()) };
    let generation = fork::generation();
    loop {
        if !enabled() {
            // Leave, unless the purge was turned on again before RUNNING said we left (then
            // its starter saw us running and started nothing).
            // AcqRel: ordered with the starters' CAS.
            let _ = RUNNING.compare_exchange(generation, 0, Ordering::AcqRel, Ordering::Relaxed);
            if !enabled()
                || RUNNING
                    .compare_exchange(0, generation, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
            {
                return core::ptr::null_mut();
            }
        }
        let delay = POLICY.purge_delay_ms();
        sleep_ms(if delay < 0 {
            1000
        } else {
            (delay as u64 / 2).max(10)
        });
        if delay < 0 {
            continue;
        }
        crate::global::pool().maintain();
        crate::global::large_idle_check();
    }
}

fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec; an interrupted sleep just ends early.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}
