//! The bmalloc-style report: one record per line, the first letter naming the record (the
//! crate docs describe every field).

use core::fmt::{self, Write};

use crate::text::Version;
use crate::{HeapStats, Snapshot};

/// Writes the bmalloc-style lines: a blank line, `V`, then per heap (in the order `heaps`
/// yields them) its `B` lines and its `H` line, then `S`, `L`, `C` and `T`.
///
/// ```
/// let mut snap = stats::Snapshot::new("0.1.0", 4);
/// snap.classes[1] = stats::ClassStats { block_size: 16, allocs: 3, frees: 1, ..Default::default() };
/// let mut heap = stats::HeapStats::new(1, 4);
/// heap.classes[1] = stats::ClassStats { block_size: 16, allocs: 3, frees: 1, cached: 1, peak_blocks: 0 };
/// snap.classes[1].cached = 1;
/// let mut out = String::new();
/// stats::write_bmalloc(&mut out, &snap, &mut core::iter::once(heap)).unwrap();
/// assert!(out.starts_with("\nV Memory Statistics (fam-alloc 0.1.0)\nB 1/1(16) 1 3/1/2 32/16\nH 1 32/16\nS 32/16\n"));
/// ```
pub fn write_bmalloc(
    w: &mut dyn Write,
    snap: &Snapshot,
    heaps: &mut dyn Iterator<Item = HeapStats>,
) -> fmt::Result {
    writeln!(w)?;
    writeln!(
        w,
        "V Memory Statistics (fam-alloc {})",
        Version(snap.version)
    )?;
    for heap in heaps {
        for (b, c) in heap.active() {
            writeln!(
                w,
                "B {}/{}({}) {} {}/{}/{} {}/{}",
                heap.id,
                b,
                c.block_size,
                c.cached,
                c.allocs,
                c.frees,
                c.in_use(),
                c.in_use_bytes(),
                c.cached_bytes()
            )?;
        }
        writeln!(
            w,
            "H {} {}/{}",
            heap.id,
            heap.used_bytes(),
            heap.free_bytes()
        )?;
    }
    writeln!(w, "S {}/{}", snap.small_in_use_bytes(), snap.cached_bytes())?;
    let l = &snap.large;
    writeln!(
        w,
        "L {}/{} {} {} {}",
        l.allocs, l.frees, l.bytes_in_use, l.peak_bytes, l.cached_chunks
    )?;
    let c = &snap.chunks;
    writeln!(
        w,
        "C {}/{}/{}/{}/{}",
        c.mapped, c.active, c.empty_committed, c.empty_decommitted, c.large
    )?;
    let m = &snap.memory;
    writeln!(
        w,
        "M {}/{}/{}",
        m.committed_bytes, m.decommitted_bytes, m.resident_bytes
    )?;
    writeln!(w, "T {}/{}", snap.threads_live, snap.threads_exited)
}
