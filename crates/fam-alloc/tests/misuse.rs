//! Misuse is refused loudly: a double free or a free of memory the allocator does not own prints
//! `fam-alloc: OP(0xADDR): WHAT` and aborts the process.
//!
//! Each death test re-runs this test binary on itself (`--exact <test>`) with
//! [`MISUSE_VAR`] naming the misuse; the child does it and is expected to die of SIGABRT. The
//! child prints the address it misuses first, and the parent checks that the allocator's
//! message names that very address. Also here: [`fam_alloc::owns`] for memory that is and is
//! not the allocator's.

use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use fam_alloc::FamAlloc;

#[global_allocator]
static A: FamAlloc = FamAlloc::new();

/// The environment variable that tells a child which misuse to commit.
const MISUSE_VAR: &str = "FAM_ALLOC_MISUSE";
/// What a child prints before the misuse: the address it is about to hand to the allocator.
const TARGET_TAG: &str = "misuse target: 0x";

/// The misuse this process is to commit, if it is a child.
fn misuse() -> Option<String> {
    std::env::var(MISUSE_VAR).ok()
}

/// In the child: no core file for the expected abort, then announce the address.
fn prepare_child(target: *const u8) {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit; lowering RLIMIT_CORE has no other effect.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) };
    eprintln!("{TARGET_TAG}{:x}", target as usize);
}

/// Runs test `test` of this binary in a child that commits `case`.
fn run_child(test: &str, case: &str) -> Output {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([
            "--exact",
            test,
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(MISUSE_VAR, case)
        .output()
        .expect("the test binary runs")
}

/// Asserts that the child died of SIGABRT after the allocator reported `op` on the address the
/// child announced, and that the report contains `what`.
fn assert_aborted(out: &Output, op: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "the child should die of SIGABRT; status {:?}, stderr:\n{stderr}",
        out.status
    );
    let target = stderr
        .lines()
        .find_map(|l| l.strip_prefix(TARGET_TAG))
        .unwrap_or_else(|| panic!("the child announced no target; stderr:\n{stderr}"));
    let report = stderr
        .lines()
        .find(|l| l.starts_with("fam-alloc:"))
        .unwrap_or_else(|| panic!("no fam-alloc report; stderr:\n{stderr}"));
    let expected = format!("fam-alloc: {op}(0x{target}): ");
    assert!(
        report.starts_with(&expected),
        "report {report:?} should start with {expected:?}"
    );
    assert!(
        report.contains(what),
        "report {report:?} should say {what:?}"
    );
}

/// Frees `p` a second time after it reached the central pool.
///
/// # Safety
/// `p` is a live block of `layout`. The second free is the misuse under test and is undefined
/// behaviour: call this only in a child process that is meant to abort.
unsafe fn free_twice_through_pool(p: *mut u8, layout: Layout) {
    prepare_child(p);
    // SAFETY: `p` is a live block of `layout`.
    unsafe { A.dealloc(p, layout) };
    fam_alloc::flush_thread_cache();
    // SAFETY: deliberately not: the second free is the misuse under test.
    unsafe { A.dealloc(p, layout) };
    fam_alloc::flush_thread_cache();
}

#[test]
fn double_free_of_small_block_aborts() {
    const TEST: &str = "double_free_of_small_block_aborts";
    if misuse().as_deref() == Some(TEST) {
        let layout = Layout::from_size_align(48, 8).unwrap();
        // A neighbour in the same chunk stays allocated, so the chunk stays a slab of this class.
        // SAFETY: a non-zero layout.
        let keep = unsafe { A.alloc(layout) };
        let p = loop {
            // SAFETY: a non-zero layout.
            let p = unsafe { A.alloc(layout) };
            assert!(!p.is_null() && !keep.is_null());
            if p as usize >> 22 == keep as usize >> 22 {
                break p;
            }
        };
        // SAFETY: deliberately unsound: the misuse under test.
        unsafe { free_twice_through_pool(p, layout) };
        return;
    }
    let out = run_child(TEST, TEST);
    assert_aborted(&out, "free", "double free");
}

#[test]
fn double_free_of_lone_small_block_aborts() {
    const TEST: &str = "double_free_of_lone_small_block_aborts";
    if misuse().as_deref() == Some(TEST) {
        // The largest class: no other block of it exists in this process, so the block is
        // alone in its chunk and the first free empties the chunk.
        let layout = Layout::from_size_align(fam_alloc::MAX_SMALL_SIZE, 8).unwrap();
        // SAFETY: a non-zero layout.
        let p = unsafe { A.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: deliberately unsound: the misuse under test.
        unsafe { free_twice_through_pool(p, layout) };
        return;
    }
    let out = run_child(TEST, TEST);
    assert_aborted(&out, "free", "double free");
}

#[test]
fn double_free_of_large_block_aborts() {
    const TEST: &str = "double_free_of_large_block_aborts";
    if misuse().as_deref() == Some(TEST) {
        let layout = Layout::from_size_align(3 << 20, 64).unwrap();
        // SAFETY: a non-zero layout.
        let p = unsafe { A.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: deliberately unsound: the misuse under test.
        unsafe { free_twice_through_pool(p, layout) };
        return;
    }
    let out = run_child(TEST, TEST);
    assert_aborted(&out, "free", "");
}

/// Memory the allocator never handed out.
static mut FOREIGN: [u64; 1024] = [0; 1024];

#[test]
fn free_of_foreign_pointer_with_large_layout_aborts() {
    const TEST: &str = "free_of_foreign_pointer_with_large_layout_aborts";
    if misuse().as_deref() == Some(TEST) {
        // SAFETY: only the address is taken; nothing reads or writes the static here.
        let p = unsafe { (&raw mut FOREIGN).cast::<u8>().add(64) };
        prepare_child(p);
        let layout = Layout::from_size_align(2 << 20, 8).unwrap();
        // SAFETY: deliberately unsound: the misuse under test.
        unsafe { A.dealloc(p, layout) };
        return;
    }
    let out = run_child(TEST, TEST);
    assert_aborted(&out, "free", "not a live block of this allocator");
}

#[test]
fn free_of_foreign_pointer_with_small_layout_aborts() {
    const TEST: &str = "free_of_foreign_pointer_with_small_layout_aborts";
    if misuse().as_deref() == Some(TEST) {
        // SAFETY: only the address is taken; nothing reads or writes the static here.
        let p = unsafe { (&raw mut FOREIGN).cast::<u8>().add(64) };
        prepare_child(p);
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: deliberately unsound: the misuse under test.
        unsafe { A.dealloc(p, layout) };
        fam_alloc::flush_thread_cache();
        return;
    }
    let out = run_child(TEST, TEST);
    assert_aborted(&out, "free", "");
}

#[test]
fn free_of_interior_pointer_of_large_block_aborts() {
    const TEST: &str = "free_of_interior_pointer_of_large_block_aborts";
    if misuse().as_deref() == Some(TEST) {
        let layout = Layout::from_size_align(2 << 20, 8).unwrap();
        // SAFETY: a non-zero layout.
        let p = unsafe { A.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: inside the block.
        let inner = unsafe { p.add(4096) };
        prepare_child(inner);
        // SAFETY: deliberately unsound: the misuse under test.
        unsafe { A.dealloc(inner, layout) };
        return;
    }
    let out = run_child(TEST, TEST);
    assert_aborted(&out, "free", "not the start of a large block");
}

#[test]
fn free_of_a_large_blocks_run_base_is_reported_not_a_crash() {
    // The chunk-aligned start of a large block's run is registered as the allocator's, but a
    // block's header lies before the block: reading it for the run's base would read before the
    // run. Each size is its own child (the first misuse aborts).
    const TEST: &str = "free_of_a_large_blocks_run_base_is_reported_not_a_crash";
    if let Some(case) = misuse().and_then(|m| m.strip_prefix(TEST).map(str::to_owned)) {
        let mib: usize = case.trim_start_matches(':').parse().unwrap();
        let p = fam_alloc::raw::alloc(mib << 20, 16);
        assert!(!p.is_null());
        let base = (p as usize & !(fam_alloc::CHUNK_SIZE - 1)) as *mut u8;
        assert!(fam_alloc::owns(base));
        prepare_child(base);
        // SAFETY: deliberately unsound: the misuse under test.
        unsafe { fam_alloc::raw::free("free", base) };
        return;
    }
    for mib in [5, 9, 17, 64] {
        let out = run_child(TEST, &format!("{TEST}:{mib}"));
        assert_aborted(&out, "free", "not the start of a large block");
    }
}

/// A child that misuses nothing exits normally: the death tests above fail for the right reason.
#[test]
fn child_without_misuse_exits_cleanly() {
    const TEST: &str = "child_without_misuse_exits_cleanly";
    if misuse().as_deref() == Some(TEST) {
        let layout = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: a non-zero layout; the block is freed once.
        unsafe {
            let p = A.alloc(layout);
            assert!(!p.is_null());
            A.dealloc(p, layout);
        }
        fam_alloc::flush_thread_cache();
        return;
    }
    let out = run_child(TEST, TEST);
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

#[test]
fn owns_knows_its_memory() {
    let on_stack = 7u64;
    assert!(!fam_alloc::owns(std::ptr::from_ref(&on_stack).cast()));
    static STATIC: u64 = 9;
    assert!(!fam_alloc::owns(std::ptr::from_ref(&STATIC).cast()));
    assert!(!fam_alloc::owns(std::ptr::null()));
    assert!(!fam_alloc::owns(usize::MAX as *const u8));
    let fn_addr = owns_knows_its_memory as *const u8;
    assert!(!fam_alloc::owns(fn_addr));

    let small = Box::new([1u8; 100]);
    assert!(fam_alloc::owns(small.as_ptr()));
    assert!(fam_alloc::owns(small.as_ptr().wrapping_add(99)));
    let aligned = Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: a non-zero layout; freed below.
    let page = unsafe { A.alloc(aligned) };
    assert!(!page.is_null() && fam_alloc::owns(page));

    let large_layout = Layout::from_size_align(5 << 20, 8).unwrap();
    // SAFETY: a non-zero layout; freed below.
    let large = unsafe { A.alloc(large_layout) };
    assert!(!large.is_null());
    assert!(fam_alloc::owns(large));
    assert!(fam_alloc::owns(large.wrapping_add((5 << 20) - 1)));
    let big_align = Layout::from_size_align(100, 1 << 16).unwrap();
    // SAFETY: a non-zero layout; freed below.
    let aligned_large = unsafe { A.alloc(big_align) };
    assert!(!aligned_large.is_null() && fam_alloc::owns(aligned_large));

    // SAFETY: each block was allocated above with the same layout and is freed once.
    unsafe {
        A.dealloc(page, aligned);
        A.dealloc(large, large_layout);
        A.dealloc(aligned_large, big_align);
    }
    // A large run given back (to the OS or to the run cache) is no longer the allocator's.
    assert!(!fam_alloc::owns(large));
    drop(small);
}

#[test]
fn wild_free_below_the_first_chunk_of_an_unowned_class_aborts() {
    const TEST: &str = "wild_free_below_the_first_chunk_of_an_unowned_class_aborts";
    if misuse().as_deref() == Some(TEST) {
        // The largest class: this thread owns no chunk of it, so its flush has no chunk of its
        // own to compare with. The address lies below the first chunk (its header would be at
        // 0) where the first block of a chunk would start, so only the chunk check refuses it.
        let layout = Layout::from_size_align(fam_alloc::MAX_SMALL_SIZE, 8).unwrap();
        let wild = (128 << 10) as *mut u8;
        prepare_child(wild);
        // SAFETY: deliberately not: a pointer this allocator never returned.
        unsafe { A.dealloc(wild, layout) };
        fam_alloc::flush_thread_cache();
        return;
    }
    let out = run_child(TEST, TEST);
    assert_aborted(&out, "free", "pointer not allocated by fam-alloc");
}

#[test]
fn a_block_freed_twice_into_one_flush_of_its_owners_chunk_aborts() {
    const TEST: &str = "a_block_freed_twice_into_one_flush_of_its_owners_chunk_aborts";
    if misuse().as_deref() == Some(TEST) {
        // Both frees land in this thread's bucket (`GlobalAlloc` trusts its layouts and checks
        // nothing there); the flush that follows gives the block back to the chunk this thread
        // refills from, where the second copy is caught within the same run of blocks.
        let layout = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: a non-zero layout.
        let blocks: Vec<*mut u8> = (0..4).map(|_| unsafe { A.alloc(layout) }).collect();
        let p = blocks[1];
        assert!(blocks.iter().all(|b| !b.is_null()));
        prepare_child(p);
        for &b in &blocks {
            // SAFETY: live blocks of `layout`, each freed once here.
            unsafe { A.dealloc(b, layout) };
        }
        // SAFETY: deliberately not: the second free is the misuse under test.
        unsafe { A.dealloc(p, layout) };
        fam_alloc::flush_thread_cache();
        return;
    }
    let out = run_child(TEST, TEST);
    assert_aborted(&out, "free", "double free (block returned twice)");
}

#[test]
fn an_interior_pointer_flushed_into_its_owners_chunk_aborts() {
    const TEST: &str = "an_interior_pointer_flushed_into_its_owners_chunk_aborts";
    if misuse().as_deref() == Some(TEST) {
        let layout = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: a non-zero layout.
        let blocks: Vec<*mut u8> = (0..4).map(|_| unsafe { A.alloc(layout) }).collect();
        assert!(blocks.iter().all(|b| !b.is_null()));
        // SAFETY: inside the block: 8 of its 48 bytes.
        let inner = unsafe { blocks[2].add(8) };
        prepare_child(inner);
        for &b in &blocks[..2] {
            // SAFETY: live blocks of `layout`, freed once.
            unsafe { A.dealloc(b, layout) };
        }
        // SAFETY: deliberately not: a pointer into the middle of a block.
        unsafe { A.dealloc(inner, layout) };
        fam_alloc::flush_thread_cache();
        return;
    }
    let out = run_child(TEST, TEST);
    assert_aborted(&out, "free", "not the start of a block");
}
