//! Statistics as data ([`stats()`]), as text ([`write_stats`], [`print_stats`]), and at exit.
//!
//! Counts of allocations and frees per class need the `stats` cargo feature (they cost a few
//! instructions on the fast paths); without it those fields read 0 and everything else (large
//! blocks, chunks) is still counted. Counts are exact when no other thread is allocating.
//!
//! At exit: when the environment variable `FAM_STATS` is `1`, `text` or `table` (a table for
//! people), `bmalloc` (the classic `V`/`B`/`H`/`S` lines) or `json`, the report is written to
//! stderr when the process exits, or to the file named by `FAM_STATS_FILE`. The handler is
//! installed the first time a thread registers with the allocator (its first allocation or
//! free). Writing it allocates nothing: the snapshot lives on the stack and the text goes through
//! a fixed buffer straight to `write(2)`.

use core::fmt;
use core::sync::atomic::Ordering::Relaxed;

use stats::{Format, HeapStats, SinkWriter, Snapshot};

use crate::class::{CLASSES, NUM_CLASSES};
use crate::counters;
use crate::global::{chunk_counts, large_cached_chunks, pool};
use chunk_source::{page_size, CHUNK_SIZE};

/// The version string every report carries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A snapshot of the process-wide statistics of the global heap.
pub fn stats() -> Snapshot {
    let mut s = Snapshot::new(VERSION, NUM_CLASSES);
    let totals = counters::class_totals();
    for class in 0..NUM_CLASSES {
        let c = &mut s.classes[class];
        c.block_size = CLASSES[class].size as u64;
        c.allocs = totals[class].allocs;
        c.frees = totals[class].frees;
        c.cached = totals[class].cached;
        c.peak_blocks = totals[class].peak;
    }
    s.large.allocs = counters::LARGE_ALLOCS.load(Relaxed);
    s.large.frees = counters::LARGE_FREES.load(Relaxed);
    s.large.bytes_in_use = counters::LARGE_BYTES.load(Relaxed);
    s.large.peak_bytes = counters::LARGE_PEAK.load(Relaxed);
    s.large.cached_chunks = large_cached_chunks() as u64;
    let counts = chunk_counts();
    s.chunks.mapped = pool().mapped() as u64;
    s.chunks.active = pool().active() as u64;
    s.chunks.empty_committed = counts.empty_committed as u64;
    s.chunks.empty_decommitted = counts.empty_decommitted as u64;
    s.chunks.large = counters::LARGE_CHUNKS.load(Relaxed);
    s.memory = memory(&s.chunks, s.large.cached_chunks, counts.purged_pages);
    s.threads_live = counters::threads_live();
    s.threads_exited = counters::THREADS_EXITED.load(Relaxed);
    s
}

/// Page-level memory from the chunk counts: what the allocator decommitted (free pages of active
/// chunks, block areas of empty chunks), what stays committed of what it mapped, and the
/// process's resident set.
fn memory(c: &stats::ChunkStats, large_cached: u64, purged_pages: usize) -> stats::MemoryStats {
    let chunk = CHUNK_SIZE as u64;
    let area = (CHUNK_SIZE - slab_pool::class::SLOT_OFFSET) as u64;
    let decommitted = c.empty_decommitted * area + (purged_pages * page_size()) as u64;
    stats::MemoryStats {
        committed_bytes: ((c.mapped + c.large + large_cached) * chunk).saturating_sub(decommitted),
        decommitted_bytes: decommitted,
        resident_bytes: resident_bytes(),
    }
}

/// The process's resident set in bytes, from `/proc/self/statm` (its second field, in pages);
/// 0 where that cannot be read. Allocates nothing.
fn resident_bytes() -> u64 {
    let mut buf = [0u8; 128];
    // SAFETY: a NUL-terminated path; the descriptor is ours and closed below; `buf` is valid for
    // writes of its length.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/statm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let Ok(n) = usize::try_from(n) else {
        return 0;
    };
    core::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|t| t.split_ascii_whitespace().nth(1))
        .and_then(|pages| pages.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_size() as u64)
}

/// Starts the peak counters (per-class peaks and the large-block peak) again from the present.
pub fn reset_peaks() {
    counters::reset_peaks();
    counters::LARGE_PEAK.store(counters::LARGE_BYTES.load(Relaxed), Relaxed);
}

/// Writes the report in `format` to `w`, with a view per thread heap when counting is on.
///
/// The thread list is locked while the per-heap views are written: `w` must not block on
/// another thread that is starting or exiting.
pub fn write_stats(w: &mut dyn fmt::Write, format: Format) -> fmt::Result {
    // `w` may allocate; a thread's first allocation registers it, which takes the lock held
    // below. Register first.
    crate::local::ensure_registered();
    let snap = stats();
    let mut heaps = counters::heaps();
    stats::write_report(
        w,
        format,
        &snap,
        &mut heaps as &mut dyn Iterator<Item = HeapStats>,
    )
}

/// Writes the report in `format` to file descriptor `fd` without allocating.
pub fn print_stats_to_fd(fd: i32, format: Format) {
    let mut sink = |bytes: &[u8]| write_all(fd, bytes);
    let mut w = SinkWriter::<2048>::new(&mut sink);
    let _ = write_stats(&mut w, format);
    w.flush();
}

/// Writes the report in `format` to stderr without allocating.
pub fn print_stats(format: Format) {
    print_stats_to_fd(2, format);
}

fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid, initialised slice for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            // SAFETY: reading errno has no preconditions.
            if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// A copy of stderr taken when the exit report was arranged: some programs close their standard
/// streams in their own exit handlers (coreutils' `close_stdout`), which run before ours.
static EXIT_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(2);

/// Reads `FAM_STATS` and, if it asks for a report, arranges for one at exit.
pub(crate) fn install_exit_report() {
    if exit_format().is_some() {
        // SAFETY: duplicating a descriptor has no memory-safety preconditions; -1 is checked.
        let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
        if fd >= 0 {
            EXIT_FD.store(fd, Relaxed);
        }
        // SAFETY: the handler is an `extern "C"` fn that lives for the whole program.
        unsafe { libc::atexit(report_at_exit) };
    }
}

/// The format `FAM_STATS` asks for, if any. Reads the environment without allocating.
fn exit_format() -> Option<Format> {
    let value = getenv(c"FAM_STATS")?;
    Format::from_env(core::str::from_utf8(value).ok()?)
}

pub(crate) fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a NUL-terminated string that stays
    // valid while the environment is not modified (it is not, at exit).
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a NUL-terminated C string (see above).
    Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
}

extern "C" fn report_at_exit() {
    let Some(format) = exit_format() else { return };
    match getenv(c"FAM_STATS_FILE") {
        Some(_) => {
            // SAFETY: the name is the NUL-terminated environment string read above.
            let path = unsafe { libc::getenv(c"FAM_STATS_FILE".as_ptr()) };
            // SAFETY: `path` is a valid C string; flags and mode are plain integers.
            let fd = unsafe {
                libc::open(
                    path,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd >= 0 {
                print_stats_to_fd(fd, format);
                // SAFETY: `fd` was opened above and is closed once.
                unsafe { libc::close(fd) };
            } else {
                print_stats_to_fd(EXIT_FD.load(Relaxed), format);
            }
        }
        None => print_stats_to_fd(EXIT_FD.load(Relaxed), format),
    }
}
