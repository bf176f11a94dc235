//! Tests of `ShmSource`, including processes forked after it was made.
#![cfg(feature = "shm")]

mod common;

use std::ptr::NonNull;

use chunk_source::{ChunkError, ChunkSource, ShmSource, SourceProps, CHUNK_SIZE};
use common::{serial, status_bytes, Run};

/// Forks; the child runs `child` and leaves with `_exit(code)` (no destructors, no unwinding,
/// no allocation); the parent waits and returns the child's exit code.
fn in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `child`, which touches the shared mapping and atomics, and
    // then leaves with `_exit`, so nothing inherited from other threads (locks) is used.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // A panic must not unwind into the copy of the test harness in the child.
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: `_exit` ends the child at once, which is what we want.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid place to write to.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid");
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally: {status:#x}"
    );
    libc::WEXITSTATUS(status)
}

#[test]
fn props() {
    let source = ShmSource::new(1).unwrap();
    assert_eq!(
        source.props(),
        SourceProps::ZEROED | SourceProps::SHARED | SourceProps::FIXED
    );
}

#[test]
fn hands_out_every_chunk_once() {
    let _s = serial();
    let source = ShmSource::new(8).unwrap();
    assert_eq!(source.num_chunks(), 8);
    assert_eq!(source.chunks_free(), 8);
    let mut runs = Vec::new();
    for i in 0..8 {
        let mut run = Run::alloc(&source, 1).expect("alloc");
        assert!(run.is_zero(), "fresh chunk not zero");
        assert!(source.contains(run.ptr().as_ptr()));
        run.stamp(i);
        runs.push(run);
    }
    assert_eq!(source.alloc(1), Err(ChunkError::OutOfMemory));
    assert_eq!(source.chunks_free(), 0);
    let spans: Vec<_> = runs.iter().map(|r| (r.addr(), r.len())).collect();
    common::assert_disjoint(&spans);
    for (i, run) in runs.iter().enumerate() {
        assert!(run.stamped(i as u64));
    }
    let base = source.base().as_ptr();
    assert!(!source.contains(base.wrapping_sub(1)));
    assert!(!source.contains(base.wrapping_add(8 * CHUNK_SIZE)));
    assert!(source.contains(base.wrapping_add(8 * CHUNK_SIZE - 1)));
}

#[test]
fn freed_chunks_are_reused_and_read_as_zero() {
    let _s = serial();
    let source = ShmSource::new(1).unwrap();
    let mut run = Run::alloc(&source, 1).expect("alloc");
    let at = run.addr();
    run.stamp(0xFEED);
    run.free().expect("dealloc");
    assert_eq!(source.chunks_free(), 1);
    let again = Run::alloc(&source, 1).expect("alloc");
    assert_eq!(again.addr(), at, "the only chunk came back");
    assert!(again.is_zero(), "a reused chunk is not zero");
}

#[test]
fn runs_lie_in_one_word_of_the_set() {
    let _s = serial();
    let source = ShmSource::new(130).unwrap();
    let base = source.base().as_ptr() as usize;
    let index = |run: &Run<'_, ShmSource>| (run.addr() - base) / CHUNK_SIZE;
    assert_eq!(source.alloc(65), Err(ChunkError::OutOfMemory));
    let a = Run::alloc(&source, 64).expect("a whole word");
    let b = Run::alloc(&source, 64).expect("a whole word");
    assert_eq!(index(&a) % 64, 0);
    assert_eq!(index(&b) % 64, 0);
    assert_ne!(index(&a), index(&b));
    // Two slots are left, in the last word.
    assert_eq!(source.alloc(3), Err(ChunkError::OutOfMemory));
    let c = Run::alloc(&source, 2).expect("the last two");
    assert_eq!(index(&c), 128);
    assert!(c.is_zero() && a.is_zero() && b.is_zero());
    assert_eq!(source.alloc(1), Err(ChunkError::OutOfMemory));
    drop(b);
    assert_eq!(source.chunks_free(), 64);
    let d = Run::alloc(&source, 5).expect("a run in the freed word");
    assert!(d.is_zero());
}

#[test]
fn decommit_lowers_rss() {
    let _s = serial();
    let source = ShmSource::new(8).unwrap();
    // Shared anonymous pages are counted in RssShmem, not RssAnon.
    common::decommit_lowers_rss(&source, "RssShmem");
}

#[test]
fn dealloc_gives_shared_pages_back() {
    let _s = serial();
    let source = ShmSource::new(8).unwrap();
    let mut run = Run::alloc(&source, 4).expect("alloc");
    let before = status_bytes("RssShmem");
    run.touch();
    let touched = status_bytes("RssShmem");
    run.free().expect("dealloc");
    let after = status_bytes("RssShmem");
    let most = 12 * CHUNK_SIZE / 4;
    assert!(touched >= before + most, "RssShmem {before} -> {touched}");
    assert!(
        after + most <= touched,
        "RssShmem {touched} -> {after} after dealloc"
    );
}

#[test]
fn concurrent_alloc_from_four_threads() {
    let _s = serial();
    let source = ShmSource::new(96).unwrap();
    common::concurrent_alloc(&source, 16, 3);
    assert_eq!(source.chunks_free(), 96);
}

#[test]
fn errors_are_values() {
    let _s = serial();
    assert_eq!(ShmSource::new(0).err(), Some(ChunkError::InvalidArgument));
    for absurd in [usize::MAX, 1 << 40] {
        assert_eq!(ShmSource::new(absurd).err(), Some(ChunkError::OutOfMemory));
    }
    let source = ShmSource::new(4).unwrap();
    common::argument_errors(&source);
    let other = ShmSource::new(1).unwrap();
    let foreign = Run::alloc(&other, 1).unwrap();
    let mut run = Run::alloc(&source, 2).unwrap();
    assert_eq!(run.resize(3), Err(ChunkError::Unsupported));
    let base = source.base().as_ptr();
    // SAFETY: every call below is refused before anything changes.
    unsafe {
        assert_eq!(source.dealloc(foreign.ptr(), 1), Err(ChunkError::NotOwned));
        assert_eq!(
            source.decommit(foreign.ptr(), 4096),
            Err(ChunkError::NotOwned)
        );
        let last = NonNull::new(base.wrapping_add(3 * CHUNK_SIZE)).unwrap();
        assert_eq!(
            source.dealloc(last, 2),
            Err(ChunkError::NotOwned),
            "past the end"
        );
        assert_eq!(
            source.dealloc(last, 1),
            Err(ChunkError::NotOwned),
            "never handed out"
        );
    }
    let (addr, n) = run.leak();
    let p = NonNull::new(addr as *mut u8).unwrap();
    // SAFETY: the run was handed out; the second give-back is a double free and is refused.
    unsafe {
        assert_eq!(source.dealloc(p, n), Ok(()));
        assert_eq!(source.dealloc(p, n), Err(ChunkError::NotOwned));
    }
    assert_eq!(source.chunks_free(), 4);
}

#[test]
fn drop_unmaps_the_region() {
    let _s = serial();
    let before = status_bytes("VmSize");
    let source = ShmSource::new(64).unwrap();
    let mapped = status_bytes("VmSize");
    assert!(
        mapped >= before + 60 * CHUNK_SIZE,
        "VmSize {before} -> {mapped}"
    );
    drop(source);
    let after = status_bytes("VmSize");
    assert!(
        after + 60 * CHUNK_SIZE <= mapped,
        "VmSize {mapped} -> {after} after drop"
    );
}

#[test]
fn fork_child_writes_are_read_by_parent() {
    let _s = serial();
    let source = ShmSource::new(8).unwrap();
    let mut run = Run::alloc(&source, 2).expect("alloc");
    run.stamp(0x9A4E);
    let code = in_child(|| {
        if !run.stamped(0x9A4E) {
            return 2; // the child must see the parent's writes too
        }
        run.stamp(0xC41D);
        0
    });
    assert_eq!(code, 0, "child failed");
    assert!(
        run.stamped(0xC41D),
        "the parent does not see the child's writes"
    );
}

#[test]
fn chunks_claimed_in_a_child_are_claimed_in_the_parent() {
    let _s = serial();
    let source = ShmSource::new(8).unwrap();
    let mailbox = Run::alloc(&source, 1).expect("alloc");
    let held = Run::alloc(&source, 1).expect("alloc");
    let held_addr = held.addr();
    let box_addr = mailbox.addr();
    let code = in_child(|| {
        let mail = box_addr as *mut u64;
        // The child claims a run of three and a single chunk, writes into them, and posts
        // their addresses; it also gives back a chunk the parent claimed.
        let Ok(three) = source.alloc(3) else { return 3 };
        let Ok(one) = source.alloc(1) else { return 4 };
        // SAFETY: the runs were just handed out to the child; the mailbox chunk is shared
        // memory the parent set aside for these few words.
        unsafe {
            three.as_ptr().cast::<u64>().write(0x3333);
            one.as_ptr().cast::<u64>().write(0x1111);
            mail.write(three.as_ptr() as u64);
            mail.add(1).write(one.as_ptr() as u64);
        }
        let Some(h) = NonNull::new(held_addr as *mut u8) else {
            return 5;
        };
        // SAFETY: the parent's chunk, handed over to the child by the test.
        match unsafe { source.dealloc(h, 1) } {
            Ok(()) => 0,
            Err(_) => 6,
        }
    });
    assert_eq!(code, 0, "child failed");
    std::mem::forget(held); // the child gave it back
                            // SAFETY: the words the child wrote into the mailbox.
    let (three, one) = unsafe {
        let mail = mailbox.ptr().as_ptr().cast::<u64>();
        (mail.read() as usize, mail.add(1).read() as usize)
    };
    assert!(source.contains(three as *const u8) && source.contains(one as *const u8));
    // SAFETY: the child's runs, set up by the child, still claimed; read their first word.
    unsafe {
        assert_eq!((three as *const u64).read(), 0x3333);
        assert_eq!((one as *const u64).read(), 0x1111);
    }
    // 8 - mailbox - 3 - 1 claimed: 3 free (the held chunk came back).
    assert_eq!(source.chunks_free(), 3);
    let rest: Vec<_> = (0..3)
        .map(|_| Run::alloc(&source, 1).expect("alloc"))
        .collect();
    assert_eq!(source.alloc(1), Err(ChunkError::OutOfMemory));
    let mut spans: Vec<_> = rest.iter().map(|r| (r.addr(), r.len())).collect();
    spans.extend([
        (mailbox.addr(), CHUNK_SIZE),
        (three, 3 * CHUNK_SIZE),
        (one, CHUNK_SIZE),
    ]);
    common::assert_disjoint(&spans);
    assert!(
        rest.iter().any(|r| r.addr() == held_addr && r.is_zero()),
        "the chunk the child gave back did not come back zeroed"
    );
    // The parent may give back what the child claimed.
    // SAFETY: the child's runs, now owned by the test, each given back once.
    unsafe {
        drop(Run::from_raw(&source, three, 3));
        drop(Run::from_raw(&source, one, 1));
    }
}

#[test]
fn children_allocate_from_one_set() {
    let _s = serial();
    const CHILDREN: usize = 4;
    const EACH: usize = 6;
    let source = ShmSource::new(1 + CHILDREN * EACH).unwrap();
    let mailbox = Run::alloc(&source, 1).expect("alloc");
    let mail = mailbox.addr() as *mut u64;
    let mut pids = Vec::new();
    for c in 0..CHILDREN {
        // SAFETY: as in `in_child`: the child touches only the shared mapping and atomics,
        // then leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut code = 0;
            for k in 0..EACH {
                match source.alloc(1) {
                    Ok(p) => {
                        // SAFETY: the chunk was just handed out to this child; the mailbox
                        // word belongs to this child and this k.
                        unsafe {
                            p.as_ptr().cast::<u64>().write((c * EACH + k) as u64);
                            mail.add(c * EACH + k).write(p.as_ptr() as u64);
                        }
                    }
                    Err(_) => code = 1,
                }
            }
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(code) };
        }
        pids.push(pid);
    }
    for pid in pids {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid place to write to.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child failed"
        );
    }
    assert_eq!(
        source.chunks_free(),
        0,
        "every chunk was claimed by some child"
    );
    let mut addrs = Vec::new();
    for slot in 0..CHILDREN * EACH {
        // SAFETY: the mailbox words the children wrote; each names a chunk they claimed.
        let addr = unsafe { mail.add(slot).read() } as usize;
        assert!(source.contains(addr as *const u8));
        // SAFETY: as above; the chunk is still claimed and readable.
        assert_eq!(unsafe { (addr as *const u64).read() }, slot as u64);
        addrs.push((addr, CHUNK_SIZE));
    }
    addrs.push((mailbox.addr(), CHUNK_SIZE));
    common::assert_disjoint(&addrs);
    for &(addr, _) in &addrs[..CHILDREN * EACH] {
        // SAFETY: the children's chunks, now owned by the test, each given back once.
        drop(unsafe { Run::from_raw(&source, addr, 1) });
    }
    assert_eq!(source.chunks_free(), CHILDREN * EACH);
}
