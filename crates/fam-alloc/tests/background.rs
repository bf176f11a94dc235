//! The background purge thread, end to end: with it on, the free pages of a chunk go back to the
//! OS after the purge delay while the program makes no allocator call; in a forked child the
//! thread is gone, starts again at the child's first slow path and purges there too; turned off,
//! it ends. The blocks come from `fam_alloc::raw` (the C library's paths); the binary keeps the
//! system allocator for everything else, so only the test's own blocks are in the pool. One
//! test, because the options and the thread are process-wide.

use std::thread::sleep;
use std::time::{Duration, Instant};

use fam_alloc::options;

const DELAY_MS: i64 = 40;
const BLOCK: usize = 64;

/// Resident pages of the block area of the 4 MiB chunk holding `p` (its header and bitmaps
/// always stay).
fn resident_pages(p: usize) -> usize {
    let area = (p & !(fam_alloc::CHUNK_SIZE - 1)) + slab_pool::class::SLOT_OFFSET;
    let len = fam_alloc::CHUNK_SIZE - slab_pool::class::SLOT_OFFSET;
    let mut vec = vec![0u8; len / 4096];
    // SAFETY: the block area is part of a mapping of the allocator, `len` bytes long; `vec` has
    // one byte per page of it.
    let r = unsafe { libc::mincore(area as *mut _, len, vec.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore");
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

/// A chunk of 64-byte blocks, touched, then all freed but its first block by a thread that
/// exits: the chunk is listed with one live block and about 4 MiB of free pages. Returns the
/// live block.
fn listed_chunk_with_free_pages() -> usize {
    std::thread::spawn(|| {
        let blocks: Vec<usize> = (0..60_000)
            .map(|_| {
                let p = fam_alloc::raw::alloc(BLOCK, 8);
                assert!(!p.is_null());
                // SAFETY: a fresh block of BLOCK bytes.
                unsafe { p.write_bytes(7, BLOCK) };
                p as usize
            })
            .collect();
        let first = blocks[0];
        let chunk = first & !(fam_alloc::CHUNK_SIZE - 1);
        for &p in &blocks[1..] {
            // The rest of the chunk's blocks; those of later chunks too.
            // SAFETY: each block was allocated above and is freed once.
            unsafe { fam_alloc::raw::free("free", p as *mut u8) };
        }
        assert!(resident_pages(chunk) > 500, "the chunk was touched");
        first
    })
    .join()
    .expect("the allocating thread")
}

/// Waits up to `limit` for `cond`, without any allocator call (the checks use the system
/// allocator and system calls only).
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        sleep(Duration::from_millis(5));
    }
    cond()
}

/// The scenario: a listed chunk gives its free pages back with no allocator call.
fn purges_without_calls(what: &str) {
    let live = listed_chunk_with_free_pages();
    let limit = Duration::from_secs(5);
    assert!(
        wait_for(limit, || resident_pages(live) <= 1),
        "{what}: {} pages still resident",
        resident_pages(live)
    );
    // The statistics see it at page level (at least this chunk's pages; the scenario's refills
    // may have taken back pages purged before, so the figure need not have grown). The purge
    // counts the pages once it has given back all of the chunk's runs, so the count may trail
    // the resident set for a moment.
    assert!(
        wait_for(limit, || fam_alloc::stats().memory.decommitted_bytes
            >= 3 << 20),
        "{what}: {:?}",
        fam_alloc::stats().memory
    );
    let m = fam_alloc::stats().memory;
    assert!(
        m.resident_bytes > 0 && m.committed_bytes > 0,
        "{what}: {m:?}"
    );
    // SAFETY: the live block, untouched by the purge, holds what was written into it.
    assert_eq!(unsafe { *(live as *const u8).add(BLOCK - 1) }, 7);
    // SAFETY: the block was allocated by the scenario and is freed once.
    unsafe { fam_alloc::raw::free("free", live as *mut u8) };
}

#[test]
fn background_purge_gives_memory_back_without_calls_and_across_fork() {
    options::set_purge_delay_ms(DELAY_MS);
    assert!(!options::background_purge());
    // Off: nothing purges a process that makes no call.
    let live = listed_chunk_with_free_pages();
    sleep(Duration::from_millis(5 * DELAY_MS as u64));
    assert!(
        resident_pages(live) > 500,
        "no pass without a thread or a call"
    );
    // SAFETY: the block was allocated above and is freed once.
    unsafe { fam_alloc::raw::free("free", live as *mut u8) };

    options::set_background_purge(true);
    assert!(options::background_purge() && options::background_purge_running());
    purges_without_calls("parent");

    // SAFETY: the child makes only allocator calls and system calls, then leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let code = std::panic::catch_unwind(|| {
            assert!(
                !options::background_purge_running(),
                "no thread in the child"
            );
            // A large block is a start point outside any thread heap.
            let big = fam_alloc::raw::alloc(8 << 20, 8);
            assert!(!big.is_null());
            // SAFETY: allocated just above, freed once.
            unsafe { fam_alloc::raw::free("free", big) };
            assert!(
                options::background_purge_running(),
                "the child's own thread"
            );
            purges_without_calls("child");
        })
        .map_or(1, |()| 0);
        // SAFETY: leaving the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is valid for writes.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed: status {status:#x}"
    );
    // The parent's thread was not disturbed by the fork.
    assert!(options::background_purge_running());
    purges_without_calls("parent after the fork");

    options::set_background_purge(false);
    assert!(
        wait_for(Duration::from_secs(2), || {
            !options::background_purge_running()
        }),
        "the thread ends when the purge is turned off"
    );
    options::set_purge_delay_ms(options::DEFAULT_PURGE_DELAY_MS);
}
