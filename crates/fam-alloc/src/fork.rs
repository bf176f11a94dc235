//! `fork()` handling for the global heap.
//!
//! `pthread_atfork` handlers take every lock of the global pool before the fork and release them
//! in both processes afterwards. Without that, a child forked while another thread held a class
//! lock would wait on it forever; with it, the child inherits a pool in a consistent state. The
//! forking thread's own heap is copied with the process and stays valid; the buckets of threads
//! that do not exist in the child are simply never used there (their blocks are lost to the child,
//! a bounded amount: at most one bucket's capacity per class per thread).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arena;
use crate::global::pool;

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Forks survived by this process's lineage: the child handler increments its copy, so a value
/// recorded before a fork differs from the current one in the child.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The current fork generation.
#[inline(always)]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

thread_local! {
    static TOKEN: u8 = const { 0 };
}

/// A number that identifies the calling thread among the live threads of this process (the
/// address of one of its thread-locals). Never 0 or 1.
#[inline(always)]
pub(crate) fn thread_token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

/// Installs the handlers once per process.
pub(crate) fn install_handlers() {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are `extern "C"` functions that live for the whole program.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

extern "C" fn prepare() {
    arena::lock_all_for_fork();
    pool().lock_all();
}

extern "C" fn parent() {
    // SAFETY: `prepare` took every lock on this thread.
    unsafe {
        pool().unlock_all();
        arena::unlock_all_after_fork();
    }
}

extern "C" fn child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the child's only thread is the one that ran `prepare`, which took every lock.
    unsafe {
        pool().unlock_all();
        arena::unlock_all_after_fork();
    }
}
