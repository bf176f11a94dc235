//! Bad pointers handed to the allocator's free paths, shared by the `bad_pointers` fuzz target
//! (`fuzz/fuzz_targets/bad_pointers.rs`, which includes this file by path) and
//! `tests/bad_pointers.rs`.
//!
//! A [`Case`] names a base address and an offset from it. The bases: a live block of one of
//! [`BLOCKS`] (1 B to 9 MiB, some aligned up to 1 MiB), the 4 MiB-aligned chunk base under such
//! a block, a block that was just freed, a stack address, a static, or a raw 64-bit value.
//! [`run`] allocates the blocks, works out the address, and hands it to a free path in a forked
//! child: `fam_alloc::raw::free` (what the C library's `free` calls) or `GlobalAlloc::dealloc`
//! with a large layout. The child must die of SIGABRT after the allocator's report naming that
//! address; a normal return (the free was obeyed), another signal (SIGSEGV: the allocator read
//! memory the pointer does not own) or a hang fails the case.
//!
//! What is skipped, because it is not a bad pointer: the exact start of a live block (a valid
//! free), and null (free's no-op).
//!
//! `GlobalAlloc::dealloc` with a small layout is left out: it trusts its layout (that is its
//! contract) and links the block into the thread's bucket before anything checks it, so a wild
//! pointer faults there. Its large path looks the pointer up before touching it, as the C path
//! does.
//!
//! The blocks come from `fam_alloc::raw`, and the process must make no other allocation from
//! fam-alloc's global heap (a program using it as its global allocator would have live blocks
//! this module does not know of, whose starts are valid frees), so a binary that includes this
//! module keeps the system allocator as its global allocator.

#![allow(dead_code)] // each binary that includes this file uses part of it

use core::alloc::{GlobalAlloc, Layout};

use arbitrary::Unstructured;
use fam_alloc::FamAlloc;

const MIB: usize = 1 << 20;

/// The blocks that are live during a case, as (size, alignment): every kind of slab block and
/// large blocks over one and several chunks.
pub const BLOCKS: &[(usize, usize)] = &[
    (1, 1),
    (8, 8),
    (16, 16),
    (24, 8),
    (48, 8),
    (100, 4),
    (256, 16),
    (1000, 8),
    (4096, 4096),
    (16 << 10, 8),
    (64 << 10, 64 << 10),
    (fam_alloc::MAX_SMALL_SIZE, 8),
    (fam_alloc::MAX_SMALL_SIZE + 1, 8),
    (2 * MIB, MIB),
    (3 * MIB, 16),
    (6 * MIB, 64),
    (9 * MIB, 4096),
];

/// Where a bad pointer starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The live block `BLOCKS[i]`.
    Live(usize),
    /// The 4 MiB-aligned chunk base of the live block `BLOCKS[i]`.
    Chunk(usize),
    /// A block of `BLOCKS[i]`'s layout, allocated after the live ones and freed again.
    Freed(usize),
    /// An address on the stack.
    Stack,
    /// An address in a static.
    Static,
    /// Any 64-bit value.
    Value(u64),
}

/// Which free path gets the pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// `fam_alloc::raw::free`, the C library's `free`.
    Free,
    /// `GlobalAlloc::dealloc` with a large layout (the block's own when the base is a large
    /// block, else 2 MiB).
    GlobalDealloc,
}

/// One bad pointer: `base` plus `offset` bytes (wrapping), to `path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub base: Base,
    pub offset: i64,
    pub path: Path,
}

/// What [`run`] did with a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a bad pointer, or a documented limit (the reason).
    Skipped(&'static str),
    /// The child died of SIGABRT after the allocator's report.
    Aborted,
}

/// A case from fuzz input.
pub fn decode(data: &[u8]) -> arbitrary::Result<Case> {
    let mut u = Unstructured::new(data);
    let base = match u.int_in_range(0u8..=5)? {
        0 => Base::Live(u.choose_index(BLOCKS.len())?),
        1 => Base::Chunk(u.choose_index(BLOCKS.len())?),
        2 => Base::Freed(u.choose_index(BLOCKS.len())?),
        3 => Base::Stack,
        4 => Base::Static,
        _ => Base::Value(u.arbitrary()?),
    };
    let offset = match u.int_in_range(0u8..=5)? {
        0 => i64::from(u.arbitrary::<i8>()?),
        1 => i64::from(u.arbitrary::<i16>()?),
        2 => i64::from(u.arbitrary::<i16>()?) * 16,
        3 => i64::from(u.arbitrary::<i16>()?) * 4096,
        4 => i64::from(u.arbitrary::<i32>()?),
        _ => u.arbitrary()?,
    };
    let path = if u.arbitrary::<bool>()? {
        Path::GlobalDealloc
    } else {
        Path::Free
    };
    Ok(Case { base, offset, path })
}

/// Memory the allocator never handed out.
static STATIC_TARGET: [u64; 512] = [0; 512];

/// What the child exits with when the free returned.
const RETURNED: i32 = 0x42;
/// The child is killed (SIGALRM) if it runs longer than this, in seconds.
const CHILD_SECONDS: u32 = 10;

/// Runs `case`: allocates [`BLOCKS`], computes the address, and (unless it is skipped) checks in
/// a forked child that the free path aborts on it. Panics, saying what happened, if the child
/// returns, dies of another signal or does not report the address. Frees the blocks again.
pub fn run(case: &Case) -> Verdict {
    let live: Vec<*mut u8> = BLOCKS
        .iter()
        .map(|&(size, align)| {
            let p = fam_alloc::raw::alloc(size, align);
            assert!(!p.is_null(), "out of memory for {size} B at {align}");
            p
        })
        .collect();
    let stack = [0u64; 64];
    let verdict = run_with(case, &live, stack.as_ptr() as usize);
    for &p in &live {
        // SAFETY: each block was allocated above and is freed once.
        unsafe { fam_alloc::raw::free("free", p) };
    }
    // Keep the stack array (and so its address) alive across the child.
    core::hint::black_box(&stack);
    verdict
}

fn run_with(case: &Case, live: &[*mut u8], stack: usize) -> Verdict {
    let chunk_mask = !(fam_alloc::CHUNK_SIZE - 1);
    // The freed block is allocated last, so nothing reuses its address before the child runs.
    let freed = match case.base {
        Base::Freed(i) => {
            let (size, align) = BLOCKS[i];
            let p = fam_alloc::raw::alloc(size, align);
            assert!(!p.is_null(), "out of memory for {size} B at {align}");
            // SAFETY: `p` is a live block of the global heap.
            let usable = unsafe { fam_alloc::raw::usable_size(p) };
            // SAFETY: `p` was allocated just above and is freed once (the child frees it again,
            // which is the misuse under test).
            unsafe { fam_alloc::raw::free("free", p) };
            Some((p as usize, usable))
        }
        _ => None,
    };
    let base = match case.base {
        Base::Live(i) => live[i] as usize,
        Base::Chunk(i) => live[i] as usize & chunk_mask,
        Base::Freed(_) => freed.expect("a freed block").0,
        Base::Stack => stack,
        Base::Static => STATIC_TARGET.as_ptr() as usize,
        Base::Value(v) => v as usize,
    };
    let addr = base.wrapping_add_signed(case.offset as isize);
    if addr == 0 {
        return Verdict::Skipped("null (free's no-op)");
    }
    if live.iter().any(|&p| p as usize == addr) {
        return Verdict::Skipped("the start of a live block");
    }
    let large_size = match case.base {
        Base::Live(i) | Base::Freed(i) if BLOCKS[i].0 > fam_alloc::MAX_SMALL_SIZE => BLOCKS[i].0,
        _ => 2 * MIB,
    };
    let layout = Layout::from_size_align(large_size, 8).expect("a valid layout");
    let (status, stderr) = in_child(addr, case.path, layout);
    let expected = format!("fam-alloc: free(0x{addr:x}): ");
    let what = if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        if sig == libc::SIGABRT && stderr.contains(&expected) {
            note_reason(&stderr);
            return Verdict::Aborted;
        }
        if sig == libc::SIGABRT {
            format!("aborted without reporting {expected:?}")
        } else {
            format!("died of signal {sig}")
        }
    } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == RETURNED {
        "returned: the free was obeyed".to_string()
    } else {
        format!("ended with status {status:#x}")
    };
    panic!(
        "{case:?}: {:?} of {addr:#x} (base {base:#x}) {what}; the child's stderr:\n{stderr}",
        case.path
    );
}

/// Gives each report the allocator makes a branch of its own: coverage of the child's code stays
/// in the child, so this is how a fuzzer (which sees the parent's) tells outcomes apart and
/// keeps an input for each.
fn note_reason(stderr: &str) {
    use core::hint::black_box;
    if stderr.contains("pointer not allocated by fam-alloc") {
        black_box(1);
    }
    if stderr.contains("not a live block of this allocator") {
        black_box(2);
    }
    if stderr.contains("not the start of a large block") {
        black_box(3);
    }
    if stderr.contains("pointer to the inside of a block") {
        black_box(4);
    }
    if stderr.contains("double free (block already free)") {
        black_box(5);
    }
    if stderr.contains("double free (the block's chunk is empty)") {
        black_box(6);
    }
    if stderr.contains("double free of a large block") {
        black_box(7);
    }
}

/// Forks a child that hands `addr` to `path`, and returns its wait status and what it wrote to
/// stderr.
pub fn in_child(addr: usize, path: Path, layout: Layout) -> (i32, String) {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    let [read_fd, write_fd] = fds;
    // SAFETY: the child only makes async-signal-safe calls and the allocator calls under test,
    // then leaves with `_exit`; the parent goes on as usual.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: in the child, which never returns from here.
        unsafe { child(addr, path, layout, read_fd, write_fd) }
    }
    // SAFETY: `write_fd` is ours and no longer needed here (the child has its copy).
    unsafe { libc::close(write_fd) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            out.extend_from_slice(&buf[..n as usize]);
        } else if n == 0
            || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
        {
            break;
        }
    }
    // SAFETY: `read_fd` is ours and read to its end.
    unsafe { libc::close(read_fd) };
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our child; `status` is valid for writes.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        assert_eq!(
            std::io::Error::last_os_error().kind(),
            std::io::ErrorKind::Interrupted,
            "waitpid"
        );
    }
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// The child's side: default signal actions (a fuzzer's handlers would turn a signal into an
/// exit), no core file, stderr into the pipe, a time limit, then the free.
///
/// # Safety
/// Called only in a freshly forked child, with the pipe's two ends.
unsafe fn child(addr: usize, path: Path, layout: Layout, read_fd: i32, write_fd: i32) -> ! {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on values owned here; each is async-signal-safe (setrlimit
    // too, as a system call without locks); the signal numbers are valid.
    unsafe {
        libc::close(read_fd);
        libc::dup2(write_fd, 2);
        libc::close(write_fd);
        for sig in [
            libc::SIGABRT,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGALRM,
        ] {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut none: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, core::ptr::null_mut());
        libc::setrlimit(libc::RLIMIT_CORE, &limit);
        libc::alarm(CHILD_SECONDS);
    }
    let p = addr as *mut u8;
    match path {
        // SAFETY: deliberately not: `p` is the bad pointer under test, in a child that is meant
        // to abort.
        Path::Free => unsafe { fam_alloc::raw::free("free", p) },
        // SAFETY: as above.
        Path::GlobalDealloc => unsafe { FamAlloc::new().dealloc(p, layout) },
    }
    // SAFETY: leaving the child without running the parent's exit handlers.
    unsafe { libc::_exit(RETURNED) }
}
