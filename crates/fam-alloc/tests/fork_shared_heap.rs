//! The shared global heap across many short-lived children, as a pre-fork server that replaces
//! its workers uses it: what a child released must stay usable after the child exits.
//!
//! This binary sets up the shared global heap with a size of its own, so it is separate from
//! the other fork tests.

use std::sync::Once;

/// Chunks of the shared global heap here: few, so a stranded block shows quickly.
const CHUNKS: usize = 4;

static INIT: Once = Once::new();

/// Forks `10 * CHUNKS` children one after the other; each allocates one block of the largest
/// slab class (a chunk holds 3 of them), releases it, and leaves through `leave`. With every
/// released block back in the shared pool every child succeeds; a released block stranded in an
/// exited child's bucket is lost, and after about `3 * CHUNKS` children the heap would be full.
fn children_release_into_the_shared_heap(leave: fn(i32) -> !) {
    INIT.call_once(|| fam_alloc::init_global_allocator(CHUNKS).expect("shared heap"));
    for child in 0..10 * CHUNKS {
        // SAFETY: the child only calls the shared heap and leaves through `leave`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let p = fam_alloc::alloc(1 << 20);
            let code = i32::from(p.is_null());
            if !p.is_null() {
                // SAFETY: a live block of the shared heap, not used again.
                unsafe { fam_alloc::release(p) };
            }
            leave(code);
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child {child} found the shared heap full: {:?}",
            fam_alloc::shared_usage()
        );
    }
}

#[test]
fn children_that_flush_then_exit_immediately_give_their_blocks_back() {
    children_release_into_the_shared_heap(|code| {
        fam_alloc::flush_thread_cache();
        // SAFETY: leaves the child without returning into the test harness.
        unsafe { libc::_exit(code) }
    });
}

#[test]
fn children_that_exit_normally_give_their_blocks_back() {
    // `exit` runs the atexit handlers, among them the shared heap's flush.
    children_release_into_the_shared_heap(|code| std::process::exit(code));
}
