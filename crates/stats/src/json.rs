//! The JSON report: one object, one class or heap per line.
//!
//! Shape (numbers are integers; `in_use` and `in_use_bytes` may be negative in a heap):
//!
//! ```text
//! {"version": "0.1.0",
//!  "classes": [
//!   {"class": 2, "block_size": 24, "allocs": 11, "frees": 5, "in_use": 6, "in_use_bytes": 144, "cached": 3, "peak_blocks": 12},
//!   {"class": 5, "block_size": 48, "allocs": 6, "frees": 3, "in_use": 3, "in_use_bytes": 144, "cached": 1, "peak_blocks": 6}],
//!  "large": {"allocs": 3, "frees": 1, "bytes_in_use": 8388608, "peak_bytes": 12582912, "cached_chunks": 1},
//!  "chunks": {"mapped": 6, "active": 3, "empty_committed": 2, "empty_decommitted": 1, "large": 4},
//!  "threads": {"live": 2, "exited": 5},
//!  "totals": {"allocs": 20, "frees": 9, "in_use_bytes": 8388896, "cached_bytes": 120},
//!  "heaps": [
//!   {"id": 1, "in_use_bytes": 432, "cached_bytes": 72, "classes": [
//!    {"class": 2, "block_size": 24, "allocs": 10, "frees": 4, "in_use": 6, "in_use_bytes": 144, "cached": 3},
//!    {"class": 5, "block_size": 48, "allocs": 6, "frees": 0, "in_use": 6, "in_use_bytes": 288, "cached": 0}]},
//!   {"id": 2, "in_use_bytes": -144, "cached_bytes": 48, "classes": [
//!    {"class": 5, "block_size": 48, "allocs": 0, "frees": 3, "in_use": -3, "in_use_bytes": -144, "cached": 1}]}]}
//! ```
//!
//! `classes` lists the snapshot's active classes; `totals` counts small and large blocks
//! together ([`Snapshot::allocs`], [`Snapshot::frees`], [`Snapshot::in_use_bytes`]) and the
//! bytes cached in buckets ([`Snapshot::cached_bytes`]). Each heap lists its active classes
//! without `peak_blocks`, after its own sums ([`HeapStats::used_bytes`],
//! [`HeapStats::free_bytes`]).

use core::fmt::{self, Write};

use crate::text::json_string;
use crate::{ClassStats, HeapStats, Snapshot};

/// Writes one class object; `peak` adds `peak_blocks`.
fn class(w: &mut dyn Write, b: usize, c: &ClassStats, peak: bool) -> fmt::Result {
    write!(
        w,
        "{{\"class\": {b}, \"block_size\": {}, \"allocs\": {}, \"frees\": {}, \"in_use\": {}, \
         \"in_use_bytes\": {}, \"cached\": {}",
        c.block_size,
        c.allocs,
        c.frees,
        c.in_use(),
        c.in_use_bytes(),
        c.cached
    )?;
    if peak {
        write!(w, ", \"peak_blocks\": {}", c.peak_blocks)?;
    }
    w.write_char('}')
}

/// Writes the active classes of `classes` as the elements of an array, each on its own line
/// after `indent`.
fn classes<'a>(
    w: &mut dyn Write,
    classes: impl Iterator<Item = (usize, &'a ClassStats)>,
    indent: &str,
    peak: bool,
) -> fmt::Result {
    for (i, (b, c)) in classes.enumerate() {
        if i > 0 {
            w.write_char(',')?;
        }
        w.write_char('\n')?;
        w.write_str(indent)?;
        class(w, b, c, peak)?;
    }
    Ok(())
}

/// Writes the JSON report: one object, followed by a newline. Strings are escaped, so the
/// output is valid JSON whatever the version string holds.
pub fn write_json(
    w: &mut dyn Write,
    snap: &Snapshot,
    heaps: &mut dyn Iterator<Item = HeapStats>,
) -> fmt::Result {
    w.write_str("{\"version\": ")?;
    json_string(
        w,
        if snap.version.is_empty() {
            "unknown"
        } else {
            snap.version
        },
    )?;
    w.write_str(",\n \"classes\": [")?;
    classes(w, snap.active(), "  ", true)?;
    let l = &snap.large;
    write!(
        w,
        "],\n \"large\": {{\"allocs\": {}, \"frees\": {}, \"bytes_in_use\": {}, \"peak_bytes\": {}, \
         \"cached_chunks\": {}}}",
        l.allocs, l.frees, l.bytes_in_use, l.peak_bytes, l.cached_chunks
    )?;
    let c = &snap.chunks;
    write!(
        w,
        ",\n \"chunks\": {{\"mapped\": {}, \"active\": {}, \"empty_committed\": {}, \
         \"empty_decommitted\": {}, \"large\": {}}}",
        c.mapped, c.active, c.empty_committed, c.empty_decommitted, c.large
    )?;
    let m = &snap.memory;
    write!(
        w,
        ",\n \"memory\": {{\"committed_bytes\": {}, \"decommitted_bytes\": {}, \"resident_bytes\": {}}}",
        m.committed_bytes, m.decommitted_bytes, m.resident_bytes
    )?;
    write!(
        w,
        ",\n \"threads\": {{\"live\": {}, \"exited\": {}}}",
        snap.threads_live, snap.threads_exited
    )?;
    write!(
        w,
        ",\n \"totals\": {{\"allocs\": {}, \"frees\": {}, \"in_use_bytes\": {}, \"cached_bytes\": {}}}",
        snap.allocs(),
        snap.frees(),
        snap.in_use_bytes(),
        snap.cached_bytes()
    )?;
    w.write_str(",\n \"heaps\": [")?;
    for (i, heap) in heaps.enumerate() {
        if i > 0 {
            w.write_char(',')?;
        }
        write!(
            w,
            "\n  {{\"id\": {}, \"in_use_bytes\": {}, \"cached_bytes\": {}, \"classes\": [",
            heap.id,
            heap.used_bytes(),
            heap.free_bytes()
        )?;
        classes(w, heap.active(), "   ", false)?;
        w.write_str("]}")?;
    }
    w.write_str("]}\n")
}
