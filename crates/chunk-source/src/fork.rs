//! The workspace's one fork protocol: a fork generation, and the list of work a forked child
//! does before it returns from `fork()`.
//!
//! This module imports nothing of the allocator (only `core` and, with an OS backend, `libc`),
//! so every crate can use it, and nothing it does can call back into an allocator.
//!
//! # Protocol
//!
//! Nothing is taken before a fork. A `pthread_atfork` prepare handler that takes allocator locks
//! deadlocks two ways: against libc, whose `fork()` takes its own locks (stdio's list lock among
//! them) after the prepare handlers, so a thread that holds a `FILE` lock and waits for an
//! allocator lock inverts the order; and against a signal handler that forks while its own
//! thread, interrupted inside the allocator, holds a lock the prepare handler then waits for.
//! Instead:
//!
//! 1. **The generation.** [`generation`] counts the forks this process's lineage went through;
//!    the child handler increments the child's copy before anything else runs in the child.
//!    State that records the generation it was made in (an arena's owner, a held lock) is known
//!    to be stale in the child when its generation is older.
//! 2. **Locks reset themselves.** Every lock in the workspace is a [`SpinMutex`](crate::SpinMutex),
//!    whose lock word holds the generation of its holder. A lock held at the fork is, in the
//!    child, held by an older generation: the first thread of the child that wants it takes it
//!    over instead of waiting for a holder that does not exist there (and a lock's `repair`,
//!    if it has one, fixes what the holder may have left half written). Locks therefore need
//!    no list: one inside memory a caller handed in (a region's map) is covered as much as a
//!    `static` one, and the child never waits on one.
//! 3. **Child hooks.** What must happen in the child at once, before any other code runs there,
//!    is a [`ChildHook`] registered with [`register`]: for example the statistics fold the
//!    counts of the threads the child does not have. Hooks run on the child's only thread,
//!    newest first; a hook may take locks (they reset themselves as above) and must not
//!    allocate.
//!
//! Because nothing is held across `fork()`, nothing can invert against libc's own fork locks,
//! and a signal handler that forks waits for nothing. The cost is that a child may lose what a
//! vanished thread was doing: a chunk it was taking, counts it was adding. The losses are
//! bounded and leave every structure consistent (each user's module comment says why).
//!
//! The child handler is installed by [`install`], which calls `pthread_atfork`: glibc may
//! allocate there, so call it once from a context that holds no allocator lock and tolerates a
//! nested allocation (fam-alloc does, when a thread first registers and when an arena is made).
//! Handlers run in registration order in the child: a library whose child handler allocates
//! before this one ran would find a stale lock looking current; installing early (at load time
//! or first use) keeps that window closed in practice.

// Without an OS backend there is no fork to hook: hooks can be registered but never run.
#![cfg_attr(
    not(any(feature = "mmap", feature = "sbrk", feature = "shm")),
    allow(dead_code)
)]

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// Forks survived by this process's lineage; starts at 1, so 0 can mean "no generation".
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Newest registered hook; each links to the one registered before it.
static HOOKS: AtomicPtr<ChildHook> = AtomicPtr::new(ptr::null_mut());

#[cfg(any(feature = "mmap", feature = "sbrk", feature = "shm"))]
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The current fork generation: 1 in a process that no fork made, one more in each child than
/// in its parent at the fork. Never 0.
#[inline(always)]
pub fn generation() -> u64 {
    // Relaxed: the value changes only in the child handler, on the child's only thread, before
    // any other code runs there; every later read in the child is ordered after it by being on
    // that thread or on threads it starts.
    GENERATION.load(Ordering::Relaxed)
}

/// Work a forked child does in its `pthread_atfork` child handler.
pub struct ChildHook {
    run: fn(),
    next: AtomicPtr<ChildHook>,
    linked: AtomicBool,
}

impl ChildHook {
    /// A hook that calls `run` in every forked child (once [`register`]ed).
    pub const fn new(run: fn()) -> Self {
        Self {
            run,
            next: AtomicPtr::new(ptr::null_mut()),
            linked: AtomicBool::new(false),
        }
    }
}

/// Adds `hook` to the child's work; registering the same hook again does nothing. Lock-free and
/// allocation-free: callable from anywhere, also from allocation paths.
pub fn register(hook: &'static ChildHook) {
    // AcqRel: one registration wins; the loser returns after the winner started linking.
    if hook.linked.swap(true, Ordering::AcqRel) {
        return;
    }
    let me = hook as *const ChildHook as *mut ChildHook;
    // Relaxed: the CAS below publishes the link.
    let mut head = HOOKS.load(Ordering::Relaxed);
    loop {
        hook.next.store(head, Ordering::Relaxed);
        // Release: a walker that reads `me` from HOOKS also sees `me.next`. Hooks are never
        // unlinked, so there is no ABA: a head seen once is never a freed node.
        match HOOKS.compare_exchange_weak(head, me, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

/// Calls `f` on every registered hook, newest first.
fn each_hook(mut f: impl FnMut(&ChildHook)) {
    // Acquire: pairs with the Release of `register`, so each node's `next` is visible.
    let mut n = HOOKS.load(Ordering::Acquire);
    while !n.is_null() {
        // SAFETY: only `&'static ChildHook`s are ever linked, and never unlinked.
        let hook = unsafe { &*n };
        f(hook);
        n = hook.next.load(Ordering::Relaxed);
    }
}

/// What the child handler does: a new generation, then every hook.
///
/// # Safety
/// The caller is the only thread of a forked child, before `fork()` returns there.
unsafe fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    each_hook(|h| (h.run)());
}

/// Installs the child handler once per process (see the module comment for where to call it).
#[cfg(any(feature = "mmap", feature = "sbrk", feature = "shm"))]
pub fn install() {
    extern "C" fn child() {
        // SAFETY: a `pthread_atfork` child handler runs on the child's only thread, before
        // `fork()` returns there.
        unsafe { after_fork_in_child() };
    }
    // Relaxed: the flag only makes the call happen once (the RMW picks one winner) and guards no
    // data. A caller that loses returns at once, maybe before the winner's `pthread_atfork` has
    // returned; a fork in that window would miss the handler, which is why `install` belongs
    // where a thread or an arena is first set up, before there is fork-sensitive state.
    if INSTALLED.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: `child` is an `extern "C"` function that lives for the whole program.
    unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    static HOOK: ChildHook = ChildHook::new(|| {});

    #[test]
    fn a_hook_registered_twice_is_listed_once() {
        register(&HOOK);
        register(&HOOK);
        let mut seen = 0;
        each_hook(|h| seen += usize::from(ptr::eq(h, &HOOK)));
        assert_eq!(seen, 1);
    }
}
