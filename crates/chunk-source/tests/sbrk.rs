//! Tests of `SbrkSource`.
//!
//! The break and the free list are process-wide, so every test here runs under `serial()`:
//! the reuse tests rely on no other test taking freed chunks in between.
#![cfg(feature = "sbrk")]

mod common;

use std::ptr::NonNull;

use chunk_source::{ChunkError, ChunkSource, SbrkSource, SourceProps, CHUNK_SIZE};
use common::{serial, Run};

#[test]
fn props() {
    assert_eq!(SbrkSource::new().props(), SourceProps::ZEROED);
}

#[test]
fn runs_are_aligned_zeroed_and_distinct() {
    let _s = serial();
    let source = SbrkSource::new();
    let mut runs = Vec::new();
    for n in [1, 3, 2, 1] {
        let mut run = Run::alloc(&source, n).expect("alloc");
        assert!(run.is_zero(), "fresh run of {n} chunks is not zero");
        run.stamp(n as u64);
        runs.push(run);
    }
    let spans: Vec<_> = runs.iter().map(|r| (r.addr(), r.len())).collect();
    common::assert_disjoint(&spans);
    for run in &runs {
        assert!(run.stamped(run.chunks() as u64));
    }
}

#[test]
fn freed_chunks_are_reused_and_read_as_zero() {
    let _s = serial();
    let source = SbrkSource::new();
    let mut run = Run::alloc(&source, 1).expect("alloc");
    run.stamp(0xDEAD);
    run.free().expect("dealloc");
    // A chunk comes back from the free list (this one or one freed earlier), and it is zero.
    let again = Run::alloc(&source, 1).expect("alloc");
    assert!(again.is_zero(), "a reused chunk is not zero");
    drop(again);

    // Chunks given back one by one merge into a run again. Hold a run of five, dirty it, give
    // back the middle three one at a time: the free list must then hold exactly [1, 4).
    let mut five = Run::alloc(&source, 5).expect("alloc");
    five.stamp(5);
    let (addr, _) = five.leak();
    for i in [1, 3, 2] {
        // SAFETY: chunk i of the run just leaked, given back once.
        unsafe { Run::from_raw(&source, addr + i * CHUNK_SIZE, 1) }
            .free()
            .expect("dealloc one chunk");
    }
    // Runs of three are taken first fit from the list; lower runs go first, then ours comes
    // back whole, before the break ever grows.
    let mut taken = Vec::new();
    loop {
        let run = Run::alloc(&source, 3).expect("alloc");
        assert!(run.is_zero(), "a reused run is not zero");
        let found = run.addr() == addr + CHUNK_SIZE;
        assert!(
            found || run.addr() + run.len() <= addr || run.addr() >= addr + 5 * CHUNK_SIZE,
            "a run overlapping held chunks was handed out"
        );
        taken.push(run);
        if found {
            break;
        }
        assert!(taken.len() < 1000, "the merged run never came back");
    }
    for i in [0, 4] {
        // SAFETY: the outer chunks of the leaked run, still held, given back once.
        let mut outer = unsafe { Run::from_raw(&source, addr + i * CHUNK_SIZE, 1) };
        assert!(!outer.is_zero(), "a held chunk was cleared");
        outer.stamp(0);
    }
}

#[test]
fn double_free_is_refused() {
    let _s = serial();
    let source = SbrkSource::new();
    let (addr, n) = Run::alloc(&source, 2).expect("alloc").leak();
    let p = NonNull::new(addr as *mut u8).unwrap();
    // SAFETY: the run was handed out; the later calls are refused before anything changes.
    unsafe {
        assert_eq!(source.dealloc(p, n), Ok(()));
        assert_eq!(source.dealloc(p, n), Err(ChunkError::NotOwned));
        let second = NonNull::new((addr + CHUNK_SIZE) as *mut u8).unwrap();
        assert_eq!(source.dealloc(second, 1), Err(ChunkError::NotOwned));
    }
}

#[test]
fn decommit_lowers_rss() {
    let _s = serial();
    common::decommit_lowers_rss(&SbrkSource::new(), "RssAnon");
}

#[test]
fn concurrent_alloc_from_four_threads() {
    let _s = serial();
    common::concurrent_alloc(&SbrkSource::new(), 16, 3);
}

#[test]
fn errors_are_values() {
    let _s = serial();
    let source = SbrkSource::new();
    common::argument_errors(&source);
    let mut run = Run::alloc(&source, 1).expect("alloc");
    assert_eq!(run.resize(2), Err(ChunkError::Unsupported));
}

#[test]
fn others_moving_the_break_in_between() {
    let _s = serial();
    let source = SbrkSource::new();
    let mut runs = Vec::new();
    let mut foreign = Vec::new();
    // Enough chunks that the free list runs dry and the break has to grow.
    for (i, bump) in [4096isize, 12_345, 1, 4 << 20, 65_536, 3 * 4096 + 7]
        .into_iter()
        .cycle()
        .take(24)
        .enumerate()
    {
        // SAFETY: growing the break hands the test fresh memory; nothing existing is touched.
        let got = unsafe { libc::sbrk(bump) };
        assert_ne!(got as usize, usize::MAX, "libc sbrk({bump})");
        // The foreign piece is writable and ours: mark it.
        // SAFETY: [got, got + bump) was just added to the break for this test.
        unsafe { got.cast::<u8>().write_bytes(0xEE, bump as usize) };
        foreign.push((got as usize, bump as usize));

        let mut run = Run::alloc(&source, 1 + i % 2).expect("alloc");
        run.stamp(i as u64);
        runs.push(run);
    }
    // The free list ran dry at some point: some run was placed by growing the break past a
    // piece that libc had just handed out.
    assert!(
        runs.iter().any(|r| r.addr() > foreign[0].0),
        "the break never grew"
    );
    let mut spans: Vec<_> = runs.iter().map(|r| (r.addr(), r.len())).collect();
    spans.extend(&foreign);
    common::assert_disjoint(&spans);
    for (i, run) in runs.iter().enumerate() {
        assert!(run.stamped(i as u64), "run {i} was overwritten");
    }
    for &(addr, len) in &foreign {
        // SAFETY: the test's own piece of the break.
        let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
        assert!(
            bytes.iter().all(|&b| b == 0xEE),
            "a foreign piece was overwritten"
        );
    }
}

/// A break that cannot grow (a mapping right above it, as a child forked while a thread grew
/// the break can find): runs come from anonymous mappings instead, zeroed and chunk aligned,
/// and are reused after they are given back. Runs in a forked child, whose break it blocks.
#[test]
fn a_blocked_break_falls_back_to_mappings() {
    let _s = serial();
    // SAFETY: the child only makes system calls and uses the source, then leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(|| {
            let page = chunk_source::page_size();
            // SAFETY: reading the break.
            let brk = unsafe { libc::sbrk(0) } as usize;
            let at = brk.next_multiple_of(page);
            // SAFETY: a fresh mapping where nothing is mapped (NOREPLACE refuses otherwise).
            let p = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    64 * CHUNK_SIZE,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            assert_eq!(p as usize, at, "could not block the break");
            // SAFETY: asking for more break, which must now fail.
            let grew = unsafe { libc::sbrk(CHUNK_SIZE as libc::intptr_t) } as isize;
            assert_eq!(grew, -1, "the break still grows");
            let source = SbrkSource::new();
            let mut run = Run::alloc(&source, 2).expect("a run despite the blocked break");
            assert!(run.is_zero(), "a mapped run reads as zero");
            run.stamp(9);
            assert!(run.stamped(9));
            let addr = run.addr();
            drop(run);
            let again = Run::alloc(&source, 2).expect("alloc again");
            assert_eq!(again.addr(), addr, "the given-back run is reused");
            assert!(again.is_zero(), "a reused run reads as zero");
        })
        .map_or(1, |()| 0);
        // SAFETY: `_exit` leaves without running the harness's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is writable.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed: status {status:#x}"
    );
}
