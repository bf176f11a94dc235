//! The readable report: a table of the active classes, the heaps' sums, then large blocks,
//! chunks, threads and totals as labelled rows. Columns are right-aligned at fixed widths with
//! at least one blank between them (a value wider than its column pushes the rest of its row
//! right); sizes are shown in binary units (`1.5 KiB`) next to exact byte counts where both
//! help.

use core::fmt::{self, Write};

use crate::text::{Bytes, Version};
use crate::{HeapStats, Snapshot, CHUNK_BYTES};

/// Width of the label column of the labelled rows, indent included.
const LABEL: usize = 24;

/// Writes a labelled row: `count` and/or a byte figure (human and exact). No trailing blanks.
fn row(w: &mut dyn Write, label: &str, count: Option<u64>, bytes: Option<i128>) -> fmt::Result {
    write!(w, "  {label:<width$}", width = LABEL - 2)?;
    match (count, bytes) {
        (Some(n), None) => write!(w, " {n:>11}")?,
        (Some(n), Some(b)) => write!(w, " {n:>11} {:>11} {b:>15}", Bytes(b))?,
        (None, Some(b)) => write!(w, "{:12} {:>11} {b:>15}", "", Bytes(b))?,
        (None, None) => {}
    }
    writeln!(w)
}

/// Bytes in `n` chunks.
fn chunk_bytes(n: u64) -> Option<i128> {
    Some(i128::from(n) * i128::from(CHUNK_BYTES))
}

/// Writes the table report.
///
/// ```text
/// fam-alloc 0.1.0: memory statistics
///
/// class      size      allocs       frees      in use  in use bytes      cached        peak
///     2        24          11           5           6         144 B           3          12
///     5        48           6           3           3         144 B           1           6
///
///  heap        in use        cached
///     1         432 B          72 B
///     2        -144 B         240 B
///
///                                count        size           bytes
/// large blocks
///   allocs                           3
///   frees                            1
///   in use                                 8.0 MiB         8388608
/// ...
/// chunks (4 MiB each)
///   mapped                           6    24.0 MiB        25165824
/// ...
/// ```
pub fn write_table(
    w: &mut dyn Write,
    snap: &Snapshot,
    heaps: &mut dyn Iterator<Item = HeapStats>,
) -> fmt::Result {
    writeln!(w, "fam-alloc {}: memory statistics", Version(snap.version))?;
    writeln!(w)?;
    writeln!(
        w,
        "{:>5} {:>9} {:>11} {:>11} {:>11} {:>13} {:>11} {:>11}",
        "class", "size", "allocs", "frees", "in use", "in use bytes", "cached", "peak"
    )?;
    let mut any = false;
    for (b, c) in snap.active() {
        any = true;
        writeln!(
            w,
            "{b:>5} {:>9} {:>11} {:>11} {:>11} {:>13} {:>11} {:>11}",
            c.block_size,
            c.allocs,
            c.frees,
            c.in_use(),
            Bytes(i128::from(c.in_use_bytes())),
            c.cached,
            c.peak_blocks
        )?;
    }
    if !any {
        writeln!(w, "  (no small blocks)")?;
    }

    let mut first = true;
    for heap in heaps {
        if first {
            writeln!(w)?;
            writeln!(w, "{:>5} {:>13} {:>13}", "heap", "in use", "cached")?;
            first = false;
        }
        writeln!(
            w,
            "{:>5} {:>13} {:>13}",
            heap.id,
            Bytes(i128::from(heap.used_bytes())),
            Bytes(i128::from(heap.free_bytes()))
        )?;
    }

    writeln!(w)?;
    writeln!(
        w,
        "{:LABEL$}{:>12}{:>12}{:>16}",
        "", "count", "size", "bytes"
    )?;
    let l = &snap.large;
    writeln!(w, "large blocks")?;
    row(w, "allocs", Some(l.allocs), None)?;
    row(w, "frees", Some(l.frees), None)?;
    row(w, "in use", None, Some(i128::from(l.bytes_in_use)))?;
    row(w, "peak", None, Some(i128::from(l.peak_bytes)))?;
    row(
        w,
        "cached chunks",
        Some(l.cached_chunks),
        chunk_bytes(l.cached_chunks),
    )?;
    let c = &snap.chunks;
    writeln!(w, "chunks ({} MiB each)", CHUNK_BYTES >> 20)?;
    row(w, "mapped", Some(c.mapped), chunk_bytes(c.mapped))?;
    row(w, "active", Some(c.active), chunk_bytes(c.active))?;
    row(
        w,
        "empty, committed",
        Some(c.empty_committed),
        chunk_bytes(c.empty_committed),
    )?;
    row(
        w,
        "empty, decommitted",
        Some(c.empty_decommitted),
        chunk_bytes(c.empty_decommitted),
    )?;
    row(w, "in large blocks", Some(c.large), chunk_bytes(c.large))?;
    let m = &snap.memory;
    writeln!(w, "memory (pages)")?;
    row(w, "committed", None, Some(i128::from(m.committed_bytes)))?;
    row(
        w,
        "decommitted",
        None,
        Some(i128::from(m.decommitted_bytes)),
    )?;
    row(
        w,
        "resident (process)",
        None,
        Some(i128::from(m.resident_bytes)),
    )?;
    writeln!(w, "threads")?;
    row(w, "live", Some(snap.threads_live), None)?;
    row(w, "exited", Some(snap.threads_exited), None)?;
    writeln!(w, "totals (small + large)")?;
    row(w, "allocs", Some(snap.allocs()), None)?;
    row(w, "frees", Some(snap.frees()), None)?;
    row(w, "in use", None, Some(i128::from(snap.in_use_bytes())))?;
    row(w, "cached", None, Some(i128::from(snap.cached_bytes())))
}
