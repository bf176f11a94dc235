//! Out of memory is a null pointer or `AllocError`, never an abort, and the allocator works again
//! once memory is available.
//!
//! Failure is injected with `RLIMIT_AS` in a forked child (the limit is process-wide, and the
//! test harness must keep its own memory): every chunk, registry leaf and large mapping the
//! allocator asks the OS for beyond the limit is refused. The child exhausts the address space
//! through each entry point in turn (large and small `alloc`, `alloc_zeroed`, `realloc` that
//! grows, over-aligned `alloc`, a private arena's `allocate` and `grow`, a shared arena's
//! region), checks that each failed cleanly and that the blocks it holds are intact, gives
//! everything back, lifts the limit and allocates again. Blocks are chained through their own
//! first word, so the test needs no memory of its own while the limit is on.

mod common;

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, GlobalAlloc, Layout};
use std::ptr;

use allocator_api2::alloc::Allocator;
use fam_alloc::{Arena, FamAlloc};

#[global_allocator]
static A: FamAlloc = FamAlloc::new();

/// Runs `f` in a forked child and returns its exit code (0: every check passed).
fn in_child(f: impl FnOnce() -> Result<(), String>) -> i32 {
    // SAFETY: the child runs `f` on its only thread with a fork-safe allocator and leaves with
    // `_exit`; it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: alarm is async-signal-safe: a hang becomes a failure.
        unsafe { libc::alarm(60) };
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                // Straight to fd 2: the harness captures `eprintln!`, and the child never
                // hands the capture back.
                let line = format!("oom child: {msg}\n");
                // SAFETY: writes `line.len()` bytes of `line`.
                unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
                1
            }
            Err(_) => 2,
        };
        // SAFETY: `_exit` leaves at once, running none of the harness's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is writable.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child did not exit: status {status:#x} (an abort or a crash on out of memory)"
    );
    libc::WEXITSTATUS(status)
}

/// Bytes of address space the process uses now.
fn vm_size() -> u64 {
    common::status_field("VmSize:").expect("/proc/self/status reports VmSize") as u64
}

fn set_limit(bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `lim` is a valid rlimit; lowering or raising the soft limit under an infinite hard
    // limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
}

/// Blocks linked through their first word, each filled with a byte derived from its address.
struct Chain {
    head: *mut u8,
    layout: Layout,
    len: usize,
}

fn byte_of(p: *const u8) -> u8 {
    ((p as usize >> 4) as u8) | 1
}

impl Chain {
    fn new(layout: Layout) -> Self {
        assert!(layout.size() >= 16);
        Self {
            head: ptr::null_mut(),
            layout,
            len: 0,
        }
    }

    /// Allocates with `get` until it returns null; returns how many it got.
    fn fill(&mut self, mut get: impl FnMut(Layout) -> *mut u8, at_most: usize) -> usize {
        let mut got = 0;
        while got < at_most {
            let p = get(self.layout);
            if p.is_null() {
                break;
            }
            // SAFETY: `p` is a fresh block of `layout.size() >= 16` bytes: its first word holds
            // the link, the last byte the check byte.
            unsafe {
                p.cast::<*mut u8>().write(self.head);
                p.add(self.layout.size() - 1).write(byte_of(p));
            }
            self.head = p;
            self.len += 1;
            got += 1;
        }
        got
    }

    fn intact(&self) -> bool {
        let mut p = self.head;
        let mut n = 0;
        while !p.is_null() {
            // SAFETY: every chained block is live and was written by `fill`.
            unsafe {
                if p.add(self.layout.size() - 1).read() != byte_of(p) {
                    return false;
                }
                p = p.cast::<*mut u8>().read();
            }
            n += 1;
        }
        n == self.len
    }

    fn free_all(&mut self) {
        while !self.head.is_null() {
            let p = self.head;
            // SAFETY: `p` is a live block of `layout` from the global allocator.
            unsafe {
                self.head = p.cast::<*mut u8>().read();
                dealloc(p, self.layout);
            }
        }
        self.len = 0;
    }
}

/// Whether an allocation that the test then drops on the floor failed. The pointer escapes
/// through `black_box`: an allocation nobody uses may otherwise be removed by the optimiser,
/// which then takes it to have succeeded.
fn failed(p: *mut u8) -> bool {
    std::hint::black_box(p).is_null()
}

/// `alloc` for the chains, whose layouts all have a non-zero size.
fn global(l: Layout) -> *mut u8 {
    // SAFETY: `Chain::new` asserts a size of at least 16 bytes.
    unsafe { alloc(l) }
}

/// `alloc_zeroed` for the chains.
fn global_zeroed(l: Layout) -> *mut u8 {
    // SAFETY: as in `global`.
    unsafe { alloc_zeroed(l) }
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what.to_string())
    }
}

#[test]
fn every_entry_point_fails_cleanly_under_an_address_space_limit_and_recovers() {
    let code = in_child(|| {
        // Made before the limit: making an arena boxes its state through the global allocator,
        // which aborts on failure as every `Box::new` does.
        let private = Arena::new();
        let shared = Arena::shared(2).map_err(|e| format!("shared arena: {e:?}"))?;
        let small = Layout::from_size_align(64, 8).unwrap();
        let keep = private
            .allocate(small)
            .map_err(|_| "arena allocate before the limit")?;
        // SAFETY: `keep` is a fresh block of 64 bytes.
        unsafe { keep.cast::<u8>().as_ptr().write_bytes(0x5a, 64) };
        // SAFETY: a fresh 64-byte global block, filled below.
        let old = unsafe { alloc(small) };
        check(!old.is_null(), "small alloc before the limit")?;
        // SAFETY: `old` is 64 writable bytes.
        unsafe { old.write_bytes(0xa5, 64) };

        let big = Layout::from_size_align(3 << 20, 8).unwrap();
        // SAFETY: a non-zero size; filled below.
        let old_large = unsafe { alloc(big) };
        check(!old_large.is_null(), "large alloc before the limit")?;
        // SAFETY: `old_large` holds 3 MiB.
        unsafe { old_large.write_bytes(0x3c, 3 << 20) };

        // Blocks of 64 bytes in use, as the statistics count them: a failed allocation must not
        // count as one.
        let in_use_64 = || {
            fam_alloc::stats()
                .classes
                .iter()
                .find(|c| c.block_size == 64)
                .map(|c| c.in_use())
        };
        let in_use_before = in_use_64();

        set_limit(vm_size() + (256 << 20));
        let mut large = Chain::new(Layout::from_size_align(3 << 20, 8).unwrap());
        let n = large.fill(global, 1 << 20);
        check(n > 0 && n < (1 << 20), "large allocs never failed")?;
        let mut tiny = Chain::new(small);
        let n = tiny.fill(global, 1 << 26);
        check(n < (1 << 26), "small allocs never failed")?;
        let mut zeroed = Chain::new(small);
        zeroed.fill(global_zeroed, 1 << 26);
        // SAFETY: every layout below has a non-zero size; `old` and `old_large` are live blocks
        // of the layouts given.
        unsafe {
            check(
                failed(alloc_zeroed(Layout::from_size_align(3 << 20, 8).unwrap())),
                "large alloc_zeroed",
            )?;
            check(
                failed(alloc(Layout::from_size_align(64, 4096).unwrap())),
                "page-aligned alloc",
            )?;
            check(
                failed(alloc(Layout::from_size_align(1 << 20, 2 << 20).unwrap())),
                "2 MiB-aligned alloc",
            )?;
            // SAFETY: `old` is live with layout `small`; on failure it stays live.
            check(failed(realloc(old, small, 8 << 20)), "growing realloc")?;
            check(
                (0..64).all(|i| old.add(i).read() == 0xa5),
                "a failed realloc changed the block",
            )?;
            check(
                failed(A.alloc(Layout::from_size_align(64 << 20, 8).unwrap())),
                "64 MiB alloc",
            )?;
        }
        // SAFETY: `old_large` is live with layout `big`; on failure it stays live.
        unsafe {
            check(
                failed(realloc(old_large, big, 64 << 20)),
                "growing a large block",
            )?;
            check(
                (0..3 << 20)
                    .step_by(4096)
                    .all(|i| old_large.add(i).read() == 0x3c),
                "a failed large realloc changed the block",
            )?;
        }
        check(
            private
                .allocate(Layout::from_size_align(3 << 20, 8).unwrap())
                .is_err(),
            "private arena large allocate",
        )?;
        let mut arena_blocks = 0usize;
        while private.allocate(small).is_ok() {
            arena_blocks += 1;
            check(
                arena_blocks < 1 << 26,
                "private arena allocate never failed",
            )?;
        }
        // SAFETY: `keep` is live in `private` with layout `small`; a failed grow leaves it.
        let grown = unsafe {
            private.grow(
                keep.cast(),
                small,
                Layout::from_size_align(8 << 20, 8).unwrap(),
            )
        };
        check(grown.is_err(), "private arena grow")?;
        let kept = keep.cast::<u8>().as_ptr();
        check(
            // SAFETY: `keep` is still live, 64 bytes long.
            (0..64).all(|i| unsafe { kept.add(i).read() } == 0x5a),
            "a failed grow changed the block",
        )?;
        let mut shared_blocks = 0usize;
        while shared
            .allocate(Layout::from_size_align(1 << 16, 8).unwrap())
            .is_ok()
        {
            shared_blocks += 1;
            check(
                shared_blocks < 1 << 20,
                "a full shared arena kept allocating",
            )?;
        }
        check(
            large.intact() && tiny.intact() && zeroed.intact(),
            "blocks damaged",
        )?;

        // Everything back, the limit lifted: the allocator works again.
        large.free_all();
        tiny.free_all();
        zeroed.free_all();
        set_limit(libc::RLIM_INFINITY);
        check(
            in_use_64() == in_use_before,
            "failed small allocations were counted as blocks in use",
        )?;
        let mut again = Chain::new(Layout::from_size_align(3 << 20, 8).unwrap());
        check(again.fill(global, 8) == 8, "large allocs after")?;
        let mut again_small = Chain::new(small);
        check(
            again_small.fill(global, 10_000) == 10_000,
            "small allocs after",
        )?;
        check(again.intact() && again_small.intact(), "blocks after")?;
        again.free_all();
        again_small.free_all();
        let v: Vec<u64> = (0..1_000_000).collect();
        check(v.iter().sum::<u64>() == 499_999_500_000, "a vector after")?;
        let b = private
            .allocate(Layout::from_size_align(3 << 20, 8).unwrap())
            .map_err(|_| "private arena after")?;
        // SAFETY: `b` is a live 3 MiB block of `private`; `old` a live global block.
        unsafe {
            private.deallocate(b.cast(), Layout::from_size_align(3 << 20, 8).unwrap());
            dealloc(old, small);
            dealloc(old_large, big);
            private.deallocate(keep.cast(), small);
        }
        Ok(())
    });
    assert_eq!(code, 0, "the out-of-memory child failed (see its stderr)");
}
