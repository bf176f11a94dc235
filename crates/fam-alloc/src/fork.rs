//! `fork()` handling for the global heap.
//!
//! `pthread_atfork` handlers take every lock of the global pool before the fork and release them
//! in both processes afterwards. Without that, a child forked while another thread held a class
//! lock would wait on it forever; with it, the child inherits a pool in a consistent state. The
//! forking thread's own heap is copied with the process and stays valid; the buckets of threads
//! that do not exist in the child are simply never used there (their blocks are lost to the child,
//! a bounded amount: at most one bucket's capacity per class per thread).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::global::pool;

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the handlers once per process.
pub(crate) fn install_handlers() {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are `extern "C"` functions that live for the whole program.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

extern "C" fn prepare() {
    pool().lock_all();
}

extern "C" fn parent() {
    // SAFETY: `prepare` took every lock on this thread.
    unsafe { pool().unlock_all() };
}

extern "C" fn child() {
    // SAFETY: the child's only thread is the one that ran `prepare`, which took every lock.
    unsafe { pool().unlock_all() };
}
