//! Readers for the reports (feature `std`): they turn the bmalloc lines and the JSON object
//! back into numbers, for tests and tools.
//!
//! [`bmalloc`] reads every line kind; it also reads the original bmalloc dump (any `V` header,
//! no `L`/`C`/`T` lines) as long as no value wrapped past the signed range. [`json`] reads the
//! JSON report with `serde_json` into a [`Json`] tree ([`value`]) and then picks the fields out.
//! Neither checks that the figures agree with each other (`inuse = nmalloc - nfree`, ...): they
//! return what the text says.

use std::fmt;
use std::string::String;
use std::vec::Vec;

use crate::{ChunkStats, LargeStats, MemoryStats};

mod json;

pub use json::{json, value, Json, ParsedClass, ParsedHeap, ParsedJson, Totals};

/// Why a report could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line where the problem was found; 0 when it concerns the document as a whole
    /// (a missing line or field).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// A `B` line: one class of one heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BLine {
    /// Heap id `k`.
    pub heap: u64,
    /// Class index `b`.
    pub class: usize,
    /// Block size in bytes.
    pub block_size: u64,
    /// Blocks cached in the heap's bucket (`c`).
    pub cached: u64,
    /// Allocations (`nmalloc`).
    pub allocs: u64,
    /// Frees (`nfree`).
    pub frees: u64,
    /// `inuse` (signed).
    pub in_use: i64,
    /// `used` bytes (signed).
    pub used: i64,
    /// `free` bytes.
    pub free: u64,
}

/// An `H` line: one heap's sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HLine {
    /// Heap id `k`.
    pub heap: u64,
    /// Bytes in use (signed).
    pub used: i64,
    /// Bytes cached.
    pub free: u64,
}

/// Everything a bmalloc-style report says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedBmalloc {
    /// The version in the `V` line (the text inside the parentheses, `fam-alloc ` removed).
    pub version: String,
    /// The `B` lines, in order.
    pub classes: Vec<BLine>,
    /// The `H` lines, in order.
    pub heaps: Vec<HLine>,
    /// The `S` line: small bytes in use (signed).
    pub used: i64,
    /// The `S` line: bytes cached.
    pub free: u64,
    /// The `L` line, if present.
    pub large: Option<LargeStats>,
    /// The `C` line, if present.
    pub chunks: Option<ChunkStats>,
    /// The `M` line, if present.
    pub memory: Option<MemoryStats>,
    /// The `T` line (live, exited), if present.
    pub threads: Option<(u64, u64)>,
}

/// Splits `s` at every `sep` into exactly `N` parts.
fn split<const N: usize>(s: &str, sep: char, line: usize) -> Result<[&str; N], ParseError> {
    let mut out = [""; N];
    let mut parts = s.split(sep);
    for slot in &mut out {
        *slot = parts
            .next()
            .ok_or_else(|| ParseError::new(line, std::format!("expected {N} values in {s:?}")))?;
    }
    if parts.next().is_some() {
        return Err(ParseError::new(
            line,
            std::format!("expected {N} values in {s:?}"),
        ));
    }
    Ok(out)
}

/// Parses an integer of type `T` (decimal, `-` sign for signed types only).
fn num<T: std::str::FromStr>(s: &str, line: usize) -> Result<T, ParseError> {
    // `FromStr` for integers accepts a leading `+`; the writers never produce one.
    if s.starts_with('+') {
        return Err(ParseError::new(line, std::format!("bad number {s:?}")));
    }
    s.parse()
        .map_err(|_| ParseError::new(line, std::format!("bad number {s:?}")))
}

/// Parses a list of `N` numbers joined by `sep`.
fn nums<const N: usize>(s: &str, sep: char, line: usize) -> Result<[u64; N], ParseError> {
    let parts = split::<N>(s, sep, line)?;
    let mut out = [0; N];
    for (o, p) in out.iter_mut().zip(parts) {
        *o = num(p, line)?;
    }
    Ok(out)
}

/// Reads a bmalloc-style report. Blank lines are skipped; `V` and `S` must be present, `L`,
/// `C` and `T` may be missing; an unknown line kind or a malformed line is an error.
pub fn bmalloc(text: &str) -> Result<ParsedBmalloc, ParseError> {
    let mut out = ParsedBmalloc::default();
    let (mut seen_v, mut seen_s) = (false, false);
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let (kind, rest) = raw.split_once(' ').unwrap_or((raw, ""));
        let fields: Vec<&str> = rest.split(' ').collect();
        let want = |k: usize| -> Result<(), ParseError> {
            if fields.len() == k {
                Ok(())
            } else {
                Err(ParseError::new(
                    n,
                    std::format!("{kind} line needs {k} fields"),
                ))
            }
        };
        match kind {
            "V" => {
                let inner = rest
                    .strip_prefix("Memory Statistics (")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| ParseError::new(n, "malformed V line"))?;
                let version = inner.strip_prefix("fam-alloc ").unwrap_or(inner);
                if version.is_empty() {
                    return Err(ParseError::new(n, "empty version"));
                }
                out.version = version.into();
                seen_v = true;
            }
            "B" => {
                want(4)?;
                let (heap, class) = fields[0]
                    .split_once('/')
                    .ok_or_else(|| ParseError::new(n, "expected k/b(size)"))?;
                let (class, size) = class
                    .strip_suffix(')')
                    .and_then(|c| c.split_once('('))
                    .ok_or_else(|| ParseError::new(n, "expected k/b(size)"))?;
                let [allocs, frees, in_use] = split::<3>(fields[2], '/', n)?;
                let [used, free] = split::<2>(fields[3], '/', n)?;
                out.classes.push(BLine {
                    heap: num(heap, n)?,
                    class: num(class, n)?,
                    block_size: num(size, n)?,
                    cached: num(fields[1], n)?,
                    allocs: num(allocs, n)?,
                    frees: num(frees, n)?,
                    in_use: num(in_use, n)?,
                    used: num(used, n)?,
                    free: num(free, n)?,
                });
            }
            "H" => {
                want(2)?;
                let [used, free] = split::<2>(fields[1], '/', n)?;
                out.heaps.push(HLine {
                    heap: num(fields[0], n)?,
                    used: num(used, n)?,
                    free: num(free, n)?,
                });
            }
            "S" => {
                want(1)?;
                let [used, free] = split::<2>(fields[0], '/', n)?;
                out.used = num(used, n)?;
                out.free = num(free, n)?;
                seen_s = true;
            }
            "L" => {
                want(4)?;
                let [allocs, frees] = nums::<2>(fields[0], '/', n)?;
                out.large = Some(LargeStats {
                    allocs,
                    frees,
                    bytes_in_use: num(fields[1], n)?,
                    peak_bytes: num(fields[2], n)?,
                    cached_chunks: num(fields[3], n)?,
                });
            }
            "C" => {
                want(1)?;
                let [mapped, active, empty_committed, empty_decommitted, large] =
                    nums::<5>(fields[0], '/', n)?;
                out.chunks = Some(ChunkStats {
                    mapped,
                    active,
                    empty_committed,
                    empty_decommitted,
                    large,
                });
            }
            "M" => {
                want(1)?;
                let [committed_bytes, decommitted_bytes, resident_bytes] =
                    nums::<3>(fields[0], '/', n)?;
                out.memory = Some(MemoryStats {
                    committed_bytes,
                    decommitted_bytes,
                    resident_bytes,
                });
            }
            "T" => {
                want(1)?;
                let [live, exited] = nums::<2>(fields[0], '/', n)?;
                out.threads = Some((live, exited));
            }
            _ => {
                return Err(ParseError::new(
                    n,
                    std::format!("unknown line kind {kind:?}"),
                ))
            }
        }
    }
    if !seen_v {
        return Err(ParseError::new(0, "no V line"));
    }
    if !seen_s {
        return Err(ParseError::new(0, "no S line"));
    }
    Ok(out)
}
