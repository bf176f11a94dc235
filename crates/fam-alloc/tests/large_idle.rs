//! Cached large runs go back to the OS once no large block was allocated or freed for a purge
//! delay, at the next refill or flush of a thread heap, with the background purge off: a
//! program that goes on with small blocks only does not keep the large runs it stopped using.
//! The blocks come from `fam_alloc::raw`; the binary keeps the system allocator for everything
//! else. One test, because the options and the cache are process-wide.

use std::thread::sleep;
use std::time::Duration;

use fam_alloc::options;

/// Long enough that the small work right after the frees runs well within it.
const DELAY_MS: i64 = 2000;

fn cached_chunks() -> u64 {
    fam_alloc::stats().large.cached_chunks
}

/// Small blocks only: enough of them that the thread heap refills and flushes.
fn small_work() {
    for _ in 0..20 {
        let blocks: Vec<*mut u8> = (0..2000).map(|_| fam_alloc::raw::alloc(64, 8)).collect();
        for p in blocks {
            assert!(!p.is_null());
            // SAFETY: a live block from `raw::alloc`, freed once.
            unsafe { fam_alloc::raw::free("free", p) };
        }
    }
    fam_alloc::flush_thread_cache();
}

#[test]
fn cached_large_runs_go_back_after_a_delay_of_small_blocks_only() {
    options::set_background_purge(false);
    options::set_purge_delay_ms(DELAY_MS);
    let large: Vec<*mut u8> = (0..3).map(|_| fam_alloc::raw::alloc(8 << 20, 8)).collect();
    for p in large {
        assert!(!p.is_null());
        // SAFETY: a live large block, written then freed once.
        unsafe {
            p.write_bytes(1, 8 << 20);
            fam_alloc::raw::free("free", p);
        }
    }
    assert!(cached_chunks() > 0, "freed large runs are cached");
    small_work();
    assert!(
        cached_chunks() > 0,
        "small work within the delay keeps the cached runs"
    );
    sleep(Duration::from_millis(DELAY_MS as u64 + 200));
    assert!(
        cached_chunks() > 0,
        "nothing gives them back without a call"
    );
    small_work();
    assert_eq!(
        cached_chunks(),
        0,
        "small work after the delay gives the cached runs back"
    );
}
