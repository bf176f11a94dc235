//! The fork protocol (`chunk_source::fork`) in real forked children: a lock held at the fork,
//! by another thread or by the forking thread itself, is taken over in the child and repaired
//! once; the parent's lock is untouched; child hooks run and the generation advances.
#![cfg(feature = "mmap")]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;

use chunk_source::fork::{self, ChildHook};
use chunk_source::SpinMutex;
use common::serial;

/// Repairs done (in whichever process) and a value the holders write.
type Repaired = (u32, u32);

fn count_repair(v: &mut Repaired) {
    v.0 += 1;
}

/// Runs `child` in a forked child (which exits with its result, 0 for success, within 10 s)
/// and returns the child's exit code.
fn in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only takes spin locks (which the protocol makes safe), reads atomics
    // and leaves with `_exit`, which runs no atexit handler of the parent's.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: alarm is async-signal-safe; the alarm turns a hang into a failure.
        unsafe { libc::alarm(10) };
        // A panic must not unwind into the copy of the test harness.
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: `_exit` leaves at once, running none of the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is writable.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child did not exit (hung or crashed): status {status:#x}"
    );
    libc::WEXITSTATUS(status)
}

#[test]
fn a_lock_another_thread_held_at_the_fork_is_taken_over_in_the_child() {
    static M: SpinMutex<Repaired> = SpinMutex::with_repair((0, 0), count_repair);
    let _s = serial();
    fork::install();
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        let mut g = M.lock();
        g.1 = 7;
        held_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        drop(g);
    });
    held_rx.recv().unwrap();
    let parent_generation = fork::generation();
    let code = in_child(|| {
        if fork::generation() != parent_generation + 1 {
            return 1;
        }
        let g = M.lock();
        if *g != (1, 7) {
            return 2; // not repaired once, or the holder's write lost
        }
        drop(g);
        if *M.lock() != (1, 7) {
            return 3; // repaired again by a lock that was free
        }
        0
    });
    go_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(code, 0, "child failed check {code}");
    assert_eq!(
        fork::generation(),
        parent_generation,
        "the parent's generation moved"
    );
    assert_eq!(*M.lock(), (0, 7), "the parent's lock was taken over");
}

/// A signal handler that forks while its own thread holds a lock: the child's handler code
/// must not wait for the lock its interrupted caller holds.
#[test]
fn a_lock_the_forking_thread_held_is_taken_over_in_the_child() {
    static M: SpinMutex<Repaired> = SpinMutex::with_repair((0, 0), count_repair);
    let _s = serial();
    fork::install();
    let mut g = M.lock();
    g.1 = 5;
    let code = in_child(|| {
        let mut g = M.lock();
        g.1 += 1;
        if *g == (1, 6) {
            0
        } else {
            1
        }
    });
    drop(g);
    assert_eq!(code, 0);
    assert_eq!(*M.lock(), (0, 5));
}

#[test]
fn child_hooks_run_in_every_child_and_not_in_the_parent() {
    static RAN: AtomicU32 = AtomicU32::new(0);
    static HOOK: ChildHook = ChildHook::new(|| {
        RAN.fetch_add(1, Ordering::Relaxed);
    });
    let _s = serial();
    fork::install();
    fork::register(&HOOK);
    fork::register(&HOOK);
    let before = RAN.load(Ordering::Relaxed);
    for _ in 0..3 {
        let code = in_child(|| i32::from(RAN.load(Ordering::Relaxed) != before + 1));
        assert_eq!(code, 0, "the hook did not run exactly once in the child");
    }
    assert_eq!(
        RAN.load(Ordering::Relaxed),
        before,
        "a hook ran in the parent"
    );
    // A grandchild: one more generation, the hook once more.
    let code = in_child(|| {
        let g = fork::generation();
        in_child(|| {
            i32::from(fork::generation() != g + 1 || RAN.load(Ordering::Relaxed) != before + 2)
        })
    });
    assert_eq!(code, 0, "grandchild saw the wrong generation or hook count");
}
