//! Choosing a report.

use core::fmt::{self, Write};

use crate::{write_bmalloc, write_json, write_table, HeapStats, Snapshot};

/// Which report to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The readable table ([`write_table`]).
    Table,
    /// The bmalloc-style lines ([`write_bmalloc`]).
    Bmalloc,
    /// One JSON object ([`write_json`]).
    Json,
}

impl Format {
    /// The format named by an environment variable's value (as in `FAM_STATS=json`):
    /// `1`, `text` or `table` give [`Format::Table`], `bmalloc` gives [`Format::Bmalloc`],
    /// `json` gives [`Format::Json`]. Letter case and surrounding whitespace do not matter.
    /// Anything else, `0` and the empty string included, gives `None` (no report).
    pub fn from_env(value: &str) -> Option<Format> {
        let v = value.trim();
        if v == "1" || v.eq_ignore_ascii_case("text") || v.eq_ignore_ascii_case("table") {
            Some(Format::Table)
        } else if v.eq_ignore_ascii_case("bmalloc") {
            Some(Format::Bmalloc)
        } else if v.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else {
            None
        }
    }
}

/// Writes the report `format` names. `heaps` lists the per-heap views (possibly none).
pub fn write_report(
    w: &mut dyn Write,
    format: Format,
    snap: &Snapshot,
    heaps: &mut dyn Iterator<Item = HeapStats>,
) -> fmt::Result {
    match format {
        Format::Table => write_table(w, snap, heaps),
        Format::Bmalloc => write_bmalloc(w, snap, heaps),
        Format::Json => write_json(w, snap, heaps),
    }
}
