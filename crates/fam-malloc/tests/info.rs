//! `mallinfo`, `mallinfo2`, `malloc_trim` and `fam_trim` on a heap whose state the test
//! controls. One test function, so no other test thread changes the figures meanwhile.

use core::ffi::c_void;

use fam_malloc as fm;

const CHUNK: usize = 4 << 20;

#[test]
fn figures_follow_the_heap() {
    // Fill several chunks of one class, then free everything: the chunks come back empty.
    let blocks: Vec<*mut c_void> = (0..400).map(|_| fm::malloc(100_000)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    let busy = fm::mallinfo2();
    assert!(busy.arena >= CHUNK, "{busy:?}");
    assert!(
        busy.uordblks >= 400 * 100_000,
        "the blocks are in use: {busy:?}"
    );
    assert!(busy.arena >= busy.uordblks && busy.fordblks == busy.arena - busy.uordblks);
    for &p in &blocks {
        // SAFETY: live blocks, freed once.
        unsafe { fm::free(p) };
    }
    // The calling thread's bucket keeps some of them: they count in `fsmblks` (all threads').
    let cached = fm::mallinfo2();
    assert!(
        busy.uordblks - cached.uordblks >= 400 * 100_000,
        "{cached:?}"
    );
    assert!(
        cached.fsmblks >= 100_000 && cached.smblks >= 1,
        "{cached:?}"
    );

    // Trimming hands this thread's cache back and gives the empty chunks' memory to the OS.
    assert_eq!(fm::malloc_trim(0), 1);
    let trimmed = fm::mallinfo2();
    assert!(trimmed.fsmblks < cached.fsmblks, "{trimmed:?}");
    assert_eq!(trimmed.keepcost, 0, "{trimmed:?}");
    assert!(
        trimmed.ordblks >= 5,
        "the empty chunks wait for reuse: {trimmed:?}"
    );
    // Nothing left to give back.
    assert_eq!(fm::fam_trim(), 0);
    assert_eq!(fm::malloc_trim(0), 0);

    // The int version carries the same figures.
    let small = fm::malloc(64);
    // SAFETY: live block, freed once.
    unsafe { fm::free(small) };
    let m2 = fm::mallinfo2();
    let m = fm::mallinfo();
    assert!(m2.fsmblks >= 64);
    assert!(m2.hblks == 0 || m2.hblkhd >= CHUNK);
    for (a, b) in [
        (m.arena, m2.arena),
        (m.ordblks, m2.ordblks),
        (m.smblks, m2.smblks),
        (m.hblks, m2.hblks),
        (m.hblkhd, m2.hblkhd),
        (m.usmblks, m2.usmblks),
        (m.fsmblks, m2.fsmblks),
        (m.uordblks, m2.uordblks),
        (m.fordblks, m2.fordblks),
        (m.keepcost, m2.keepcost),
    ] {
        assert_eq!(a as usize, b.min(i32::MAX as usize));
    }
}
