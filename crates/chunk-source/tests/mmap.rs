//! Tests of `MmapSource`.
#![cfg(feature = "mmap")]

mod common;

use chunk_source::{ChunkError, ChunkSource, MmapSource, SourceProps, CHUNK_SIZE};
use common::{serial, status_bytes, Run};

#[test]
fn props() {
    assert_eq!(
        MmapSource::new().props(),
        SourceProps::ZEROED | SourceProps::RESIZABLE
    );
}

#[test]
fn runs_are_aligned_writable_and_zeroed() {
    let _s = serial();
    let source = MmapSource::new();
    let mut runs = Vec::new();
    for n in [1, 2, 3, 5, 1, 4] {
        let mut run = Run::alloc(&source, n).expect("alloc");
        assert_eq!(run.chunks(), n);
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
fn reuse_after_dealloc_does_not_leak() {
    let _s = serial();
    let source = MmapSource::new();
    let before = status_bytes("VmSize");
    for i in 0..128 {
        let mut run = Run::alloc(&source, 1 + i % 4).expect("alloc");
        if i % 16 == 0 {
            assert!(run.is_zero(), "fresh run not zero");
        }
        run.stamp(i as u64);
        run.free().expect("dealloc");
    }
    // 128 runs of 1 to 4 chunks would be 1.25 GiB of address space if none were unmapped.
    let after = status_bytes("VmSize");
    assert!(
        after < before + 64 * CHUNK_SIZE,
        "VmSize grew from {before} to {after}"
    );
}

#[test]
fn decommit_lowers_rss() {
    let _s = serial();
    common::decommit_lowers_rss(&MmapSource::new(), "RssAnon");
}

#[test]
fn decommit_part_of_a_run() {
    let _s = serial();
    let source = MmapSource::new();
    let mut run = Run::alloc(&source, 2).expect("alloc");
    run.stamp(0x77);
    // Drop the second chunk's pages only: the first keeps its content.
    run.decommit(CHUNK_SIZE, CHUNK_SIZE).expect("decommit");
    assert_chunk0_stamped(&run, 0x77);
    assert_tail_zero(&run, CHUNK_SIZE);
}

#[test]
fn concurrent_alloc_from_four_threads() {
    let _s = serial();
    common::concurrent_alloc(&MmapSource::new(), 16, 3);
}

#[test]
fn errors_are_values() {
    let _s = serial();
    let source = MmapSource::new();
    common::argument_errors(&source);
    let run = Run::alloc(&source, 1).expect("alloc");
    // SAFETY: malformed arguments, refused before anything is touched.
    unsafe {
        assert_eq!(
            source.resize(run.ptr(), 0, 1),
            Err(ChunkError::InvalidArgument)
        );
        assert_eq!(
            source.resize(run.ptr(), 1, 0),
            Err(ChunkError::InvalidArgument)
        );
        let odd = std::ptr::NonNull::new(run.ptr().as_ptr().add(4096)).unwrap();
        assert_eq!(source.resize(odd, 1, 2), Err(ChunkError::InvalidArgument));
        assert_eq!(
            source.resize(run.ptr(), 1, usize::MAX),
            Err(ChunkError::OutOfMemory)
        );
        // Growing to an absurd but representable size fails without harming the run.
        assert!(source.resize(run.ptr(), 1, 1 << 30).is_err());
    }
    drop(run);
}

#[test]
fn resize_keeps_content() {
    let _s = serial();
    let source = MmapSource::new();
    let mut run = Run::alloc(&source, 1).expect("alloc");
    run.stamp(0xABCD);

    // Same size: nothing moves.
    let at = run.addr();
    run.resize(1).expect("resize to the same size");
    assert_eq!(run.addr(), at);

    // Grow: in place or moved, the first chunk keeps its content, the rest reads as zero.
    run.resize(3).expect("grow");
    assert_eq!(run.chunks(), 3);
    assert_chunk0_stamped(&run, 0xABCD);
    assert_tail_zero(&run, CHUNK_SIZE);
    run.stamp(0x1234);

    // Shrink: always in place.
    let at = run.addr();
    run.resize(2).expect("shrink");
    assert_eq!(run.addr(), at, "a shrink moved the run");
    assert!(run.stamped(0x1234));

    // Grow again, now with something mapped right after the run so that it has to move.
    let blocker_at = run.addr() + run.len();
    // SAFETY: MAP_FIXED_NOREPLACE maps a fresh page only if that address is free; nothing
    // existing is touched.
    let blocker = unsafe {
        libc::mmap(
            blocker_at as *mut libc::c_void,
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    let own_blocker = blocker != libc::MAP_FAILED && blocker as usize == blocker_at;
    if own_blocker {
        // SAFETY: `blocker` is our fresh page.
        unsafe { blocker.cast::<u64>().write(0xB10C) };
    }
    let old = run.addr();
    run.resize(4).expect("grow by moving");
    assert_eq!(run.chunks(), 4);
    if own_blocker {
        assert_ne!(run.addr(), old, "grew in place over a mapped page");
        // SAFETY: the page is still ours and must be untouched.
        assert_eq!(unsafe { blocker.cast::<u64>().read() }, 0xB10C);
        // SAFETY: our own page, unmapped once.
        assert_eq!(unsafe { libc::munmap(blocker, 4096) }, 0);
    }
    // The first two chunks were stamped with 0x1234 over a run of 3; check them page by page.
    for (i, w) in page_heads(&run, 2).into_iter().enumerate() {
        assert_eq!(
            w,
            0x1234 ^ i as u64,
            "page {i} lost its content in the move"
        );
    }
    assert_tail_zero(&run, 2 * CHUNK_SIZE);
}

/// The first word of every page of the run's first `chunks` chunks, in order.
fn page_heads(run: &Run<'_, MmapSource>, chunks: usize) -> Vec<u64> {
    let page = chunk_source::page_size();
    assert!(chunks <= run.chunks());
    // SAFETY: the run is owned by the caller and readable for its length.
    let words =
        unsafe { std::slice::from_raw_parts(run.ptr().as_ptr().cast::<u64>(), run.len() / 8) };
    words[..chunks * CHUNK_SIZE / 8]
        .iter()
        .step_by(page / 8)
        .copied()
        .collect()
}

/// The pages of the first chunk carry the stamp `tag` made over a one-chunk run.
fn assert_chunk0_stamped(run: &Run<'_, MmapSource>, tag: u64) {
    let page = chunk_source::page_size();
    // SAFETY: the run is owned by the caller and readable for its length.
    let words =
        unsafe { std::slice::from_raw_parts(run.ptr().as_ptr().cast::<u64>(), CHUNK_SIZE / 8) };
    for (i, w) in words.iter().step_by(page / 8).enumerate() {
        assert_eq!(*w, tag ^ i as u64, "page {i} lost its content");
    }
}

/// Everything from `off` to the end of the run reads as zero.
fn assert_tail_zero(run: &Run<'_, MmapSource>, off: usize) {
    // SAFETY: the run is owned by the caller and readable for its length.
    let words = unsafe {
        std::slice::from_raw_parts(
            run.ptr().as_ptr().add(off).cast::<u64>(),
            (run.len() - off) / 8,
        )
    };
    assert!(words.iter().all(|&w| w == 0), "grown part is not zero");
}

#[test]
fn references_are_sources_too() {
    fn alloc_one<S: ChunkSource>(source: S) -> std::ptr::NonNull<u8> {
        source.alloc(1).expect("alloc")
    }
    let source = MmapSource::new();
    #[allow(
        clippy::needless_borrows_for_generic_args,
        reason = "the impl for references is what is tested"
    )]
    let a = alloc_one(&source);
    let b = alloc_one(&source as &dyn ChunkSource);
    assert_ne!(a, b);
    // SAFETY: `a` and `b` are chunks just handed out, each given back once.
    unsafe {
        source.dealloc(a, 1).expect("dealloc");
        (&source as &dyn ChunkSource)
            .dealloc(b, 1)
            .expect("dealloc");
    }
}

/// Whether the page at `addr` is mapped at all (`mincore` refuses an unmapped range).
fn is_mapped(addr: usize) -> bool {
    let mut v = 0u8;
    // SAFETY: `mincore` only reads the page tables; `v` holds the one page's byte.
    unsafe { libc::mincore(addr as *mut libc::c_void, 4096, &mut v) == 0 }
}

/// `move_chunk` gathers the chunks of two runs into a third with their content, unmapping
/// where they were; the gathered run spans several mappings, so `resize` refuses to grow it
/// (and leaves it as it was), while shrinking and giving it back work as for any run.
#[test]
fn moved_chunks_bring_their_content_and_a_gathered_run_refuses_to_grow() {
    let _s = serial();
    let source = MmapSource::new();
    let mut a = Run::alloc(&source, 1).expect("alloc");
    let mut b = Run::alloc(&source, 1).expect("alloc");
    a.stamp(0xA);
    b.stamp(0xB);
    let mut run = Run::alloc(&source, 3).expect("alloc");
    let (a_at, b_at) = (a.addr(), b.addr());
    for (i, from) in [a, b].into_iter().enumerate() {
        let (src, _) = from.leak();
        // SAFETY: `src` is a chunk of ours, given up; chunk `i` of `run` is ours.
        unsafe {
            source.move_chunk(
                std::ptr::NonNull::new(src as *mut u8).unwrap(),
                run.ptr().add(i * CHUNK_SIZE),
            )
        }
        .expect("move");
    }
    assert!(
        !is_mapped(a_at) && !is_mapped(b_at),
        "a moved chunk stays mapped where it was"
    );
    let page = chunk_source::page_size();
    for (i, w) in page_heads(&run, 2).into_iter().enumerate() {
        let (tag, p) = if i < CHUNK_SIZE / page {
            (0xA, i)
        } else {
            (0xB, i - CHUNK_SIZE / page)
        };
        assert_eq!(w, tag ^ p as u64, "page {i} lost its content in the move");
    }
    assert_tail_zero(&run, 2 * CHUNK_SIZE);

    let at = run.addr();
    assert_eq!(run.resize(5), Err(ChunkError::Unsupported));
    assert_eq!(
        (run.addr(), run.chunks()),
        (at, 3),
        "a refused resize changed the run"
    );
    // SAFETY: the run is ours and readable for its length.
    assert_eq!(unsafe { run.ptr().as_ptr().cast::<u64>().read() }, 0xA);
    run.resize(2).expect("shrink");
    assert!(!is_mapped(at + 2 * CHUNK_SIZE));
    run.free().expect("dealloc");
    assert!(!is_mapped(at) && !is_mapped(at + CHUNK_SIZE));
}

#[test]
fn move_chunk_refuses_bad_arguments() {
    let _s = serial();
    let source = MmapSource::new();
    let run = Run::alloc(&source, 2).expect("alloc");
    // SAFETY: refused before anything is touched.
    unsafe {
        let odd = run.ptr().add(4096);
        assert_eq!(
            source.move_chunk(odd, run.ptr()),
            Err(ChunkError::InvalidArgument)
        );
        assert_eq!(
            source.move_chunk(run.ptr(), odd),
            Err(ChunkError::InvalidArgument)
        );
        assert_eq!(
            source.move_chunk(run.ptr(), run.ptr()),
            Err(ChunkError::InvalidArgument)
        );
    }
    assert!(run.is_zero());
}
