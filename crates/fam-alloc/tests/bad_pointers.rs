//! Bad pointers to the free paths die of SIGABRT, never of SIGSEGV and never by being obeyed:
//! fixed cases for every kind of base, random ones (proptest), and the inputs kept in
//! `fuzz/regressions/bad_pointers/`, all through `common/bad_pointer.rs`, the module the
//! `bad_pointers` fuzz target runs. Each case forks a child (see that module).
//!
//! This binary keeps the system allocator as its global allocator: the only blocks of
//! fam-alloc's global heap are the ones the cases make, so the module knows every valid free.
//! `PROPTEST_CASES=<n>` runs `n` random cases instead of [`property::DEFAULT_CASES`].

#[path = "common/bad_pointer.rs"]
mod bad_pointer;
#[path = "common/property.rs"]
mod property;

use std::sync::{Mutex, MutexGuard};

use bad_pointer::{run, Base, Case, Path, Verdict, BLOCKS};
use proptest::prelude::*;

/// One case at a time: a fork while another test thread is inside the allocator would test
/// the allocator's fork handling, which is not what this binary is about.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn index_of(size: usize) -> usize {
    BLOCKS
        .iter()
        .position(|&(s, _)| s == size)
        .expect("a block of that size")
}

#[test]
fn fixed_cases_abort() {
    let _s = serial();
    let small = index_of(48);
    let tiny = index_of(8);
    let page = index_of(4096);
    let large = index_of(3 << 20);
    let aligned_large = index_of(2 << 20);
    let huge = index_of(9 << 20);
    let bases_offsets: &[(Base, i64)] = &[
        (Base::Live(small), 8),
        (Base::Live(small), -16),
        (Base::Live(tiny), 4),
        (Base::Live(page), 2048),
        (Base::Live(large), 4096),
        (Base::Live(large), -64),
        (Base::Live(large), 1),
        (Base::Live(aligned_large), -(1 << 20)),
        (Base::Live(huge), 5 << 20),
        (Base::Chunk(small), 0),
        // The last bitmap word before a slab chunk's first block: the block-start test sees it
        // wrapped to the end of the chunk, past the last block.
        (Base::Chunk(small), (128 << 10) - 8),
        (Base::Chunk(tiny), (128 << 10) - 8),
        (Base::Chunk(large), 0),
        (Base::Chunk(large), 32),
        (Base::Chunk(huge), 4 << 20),
        (Base::Freed(small), 0),
        (Base::Freed(large), 0),
        (Base::Freed(page), 16),
        // 8-byte blocks carry the free mark too: a double free of one, and a slot a refill
        // cached but never handed out.
        (Base::Freed(tiny), 0),
        (Base::Live(tiny), 512),
        (Base::Stack, 0),
        (Base::Static, 64),
        (Base::Value(0x1000), 0),
        (Base::Value(0x7fff_dead_b000), 0),
        (Base::Value(u64::MAX - 7), 0),
    ];
    for &(base, offset) in bases_offsets {
        for path in [Path::Free, Path::GlobalDealloc] {
            let case = Case { base, offset, path };
            assert_eq!(run(&case), Verdict::Aborted, "{case:?}");
        }
    }
}

#[test]
fn valid_frees_are_skipped() {
    let _s = serial();
    for (base, offset, why) in [
        (Base::Live(index_of(48)), 0, "the start of a live block"),
        (Base::Value(0), 0, "null (free's no-op)"),
    ] {
        let case = Case {
            base,
            offset,
            path: Path::Free,
        };
        assert_eq!(run(&case), Verdict::Skipped(why), "{case:?}");
    }
}

/// A slot that a bucket refill claimed but that was never handed out (the next 48-byte slot
/// after a fresh block): its bitmap bit says "out", so only the free mark a refill writes on the
/// blocks it caches tells it from a live block. Found by the `bad_pointers` fuzz target; before
/// the refill marked its blocks, the free was obeyed and the block then handed out twice.
#[test]
fn free_of_a_claimed_slot_never_handed_out_aborts() {
    let _s = serial();
    let case = Case {
        base: Base::Live(index_of(48)),
        offset: 48,
        path: Path::Free,
    };
    assert_eq!(bad_pointer::run(&case), Verdict::Aborted);
}

/// A block of a chunk that was retired to the empty pool and given back to the OS: its bitmap
/// says every block is out (a retired chunk's bits are all claimed) and its pages read zero, so
/// no free mark is left in it. Only the chunk's state tells the free it is a double free. Found
/// by `random_bad_pointers_abort` once purging decommitted chunks soon after they emptied.
#[test]
fn free_into_a_retired_chunk_aborts() {
    let _s = serial();
    let size = 12 << 10;
    assert!(fam_alloc::raw::block_size(size).is_some(), "a slab class");
    let p = fam_alloc::raw::alloc(size, 8);
    assert!(!p.is_null());
    // SAFETY: `p` is the live block allocated above, freed once here (the child frees it again).
    unsafe { fam_alloc::raw::free("free", p) };
    // The thread's bucket, its owned chunk and every empty chunk go back: the chunk of `p`
    // (nobody else uses its class in this binary) is retired and decommitted.
    fam_alloc::trim();
    let layout = core::alloc::Layout::from_size_align(2 << 20, 8).expect("a valid layout");
    let (status, stderr) = bad_pointer::in_child(p as usize, Path::Free, layout);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT,
        "status {status:#x}; stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "free({p:p}): double free (the block's chunk is empty)"
        )),
        "{stderr}"
    );
}

fn base() -> impl Strategy<Value = Base> {
    let n = BLOCKS.len();
    prop_oneof![
        3 => (0..n).prop_map(Base::Live),
        2 => (0..n).prop_map(Base::Chunk),
        2 => (0..n).prop_map(Base::Freed),
        1 => Just(Base::Stack),
        1 => Just(Base::Static),
        1 => any::<u64>().prop_map(Base::Value),
    ]
}

fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => -64..=64i64,
        2 => (-4096..=4096i64).prop_map(|o| o * 16),
        1 => (-2048..=2048i64).prop_map(|o| o * 4096),
        1 => any::<i64>(),
    ]
}

proptest! {
    #![proptest_config(property::config())]

    #[test]
    fn random_bad_pointers_abort(
        base in base(),
        offset in offset(),
        dealloc in any::<bool>(),
    ) {
        let _s = serial();
        let path = if dealloc { Path::GlobalDealloc } else { Path::Free };
        run(&Case { base, offset, path });
    }
}

/// The inputs in `fuzz/regressions/bad_pointers/`, decoded as the fuzz target decodes them.
#[test]
fn fuzz_regressions_replay() {
    let _s = serial();
    for (path, data) in property::inputs("bad_pointers") {
        match bad_pointer::decode(&data) {
            Ok(case) => {
                let v = run(&case);
                eprintln!("{}: {case:?}: {v:?}", path.display());
            }
            Err(e) => eprintln!("{}: too short for a case ({e})", path.display()),
        }
    }
}
