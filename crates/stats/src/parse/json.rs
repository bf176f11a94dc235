//! The JSON report read with `serde_json` into a [`Json`] tree, then the report's fields.
//!
//! `serde_json` does the grammar (RFC 8259, every string escape, surrogate pairs joined, a
//! nesting limit of 128 levels so hostile input cannot exhaust the stack); [`Json`]'s
//! deserializer keeps what the report needs to be read exactly: integers only (a fraction or an
//! exponent is refused; the report writes integers), and an object's members in document order
//! with duplicate keys kept.

use core::fmt;
use std::string::{String, ToString};
use std::vec::Vec;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ParseError;
use crate::{ChunkStats, ClassStats, LargeStats, MemoryStats};

/// A JSON value (integers only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer in the range of `i64` or `u64` (`i128` holds both).
    Int(i128),
    /// A string, escapes resolved.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object's members in document order (duplicate keys kept; [`Json::get`] finds the first).
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object; `None` for a missing key or a value that is no object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i128> {
        match self {
            Json::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// Builds a [`Json`] from whatever value the deserializer meets.
struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value whose numbers are integers")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
        Ok(Json::Int(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
        Ok(Json::Int(n.into()))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Json, E> {
        // `serde_json` reads `-0` as the float -0.0; as an integer it is 0.
        if x == 0.0 && x.is_sign_negative() {
            return Ok(Json::Int(0));
        }
        // A fraction, an exponent, or an integer past the 64-bit range.
        Err(E::custom("only integers in the 64-bit range are supported"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::Str(s.into()))
    }

    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Json>()? {
            members.push(member);
        }
        Ok(Json::Object(members))
    }
}

/// A `serde_json` error as a [`ParseError`]: its line, and its message with the column.
fn parse_error(e: &serde_json::Error) -> ParseError {
    let full = e.to_string();
    if e.line() == 0 {
        return ParseError::new(0, full);
    }
    let position = std::format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    ParseError::new(e.line(), std::format!("{message} at column {}", e.column()))
}

/// Parses one JSON value filling the whole text (surrounding whitespace allowed).
pub fn value(text: &str) -> Result<Json, ParseError> {
    serde_json::from_str(text).map_err(|e| parse_error(&e))
}

/// A class object of the JSON report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParsedClass {
    /// `class`: the class index.
    pub class: usize,
    /// `block_size`.
    pub block_size: u64,
    /// `allocs`.
    pub allocs: u64,
    /// `frees`.
    pub frees: u64,
    /// `in_use` (signed).
    pub in_use: i64,
    /// `in_use_bytes` (signed).
    pub in_use_bytes: i64,
    /// `cached`.
    pub cached: u64,
    /// `peak_blocks`; 0 in a heap's classes, which do not carry it.
    pub peak_blocks: u64,
}

impl ParsedClass {
    /// The counters as a [`ClassStats`] (the derived `in_use` figures dropped).
    pub fn stats(&self) -> ClassStats {
        ClassStats {
            block_size: self.block_size,
            allocs: self.allocs,
            frees: self.frees,
            cached: self.cached,
            peak_blocks: self.peak_blocks,
        }
    }
}

/// A heap object of the JSON report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedHeap {
    /// `id`.
    pub id: u64,
    /// `in_use_bytes` (signed).
    pub in_use_bytes: i64,
    /// `cached_bytes`.
    pub cached_bytes: u64,
    /// `classes`.
    pub classes: Vec<ParsedClass>,
}

/// The `totals` object of the JSON report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// `allocs`, small and large.
    pub allocs: u64,
    /// `frees`, small and large.
    pub frees: u64,
    /// `in_use_bytes`, small and large (signed).
    pub in_use_bytes: i64,
    /// `cached_bytes`.
    pub cached_bytes: u64,
}

/// Everything the JSON report says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedJson {
    /// `version`.
    pub version: String,
    /// `classes`.
    pub classes: Vec<ParsedClass>,
    /// `large`.
    pub large: LargeStats,
    /// `chunks`.
    pub chunks: ChunkStats,
    /// `memory`.
    pub memory: MemoryStats,
    /// `threads.live`.
    pub threads_live: u64,
    /// `threads.exited`.
    pub threads_exited: u64,
    /// `totals`.
    pub totals: Totals,
    /// `heaps`.
    pub heaps: Vec<ParsedHeap>,
}

fn field<'j>(obj: &'j Json, key: &str) -> Result<&'j Json, ParseError> {
    if !matches!(obj, Json::Object(_)) {
        return Err(ParseError::new(
            0,
            std::format!("expected an object holding {key:?}"),
        ));
    }
    obj.get(key)
        .ok_or_else(|| ParseError::new(0, std::format!("missing field {key:?}")))
}

/// An integer field that fits `T`.
fn int<T: TryFrom<i128>>(obj: &Json, key: &str) -> Result<T, ParseError> {
    field(obj, key)?
        .as_int()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| ParseError::new(0, std::format!("field {key:?}: integer out of range")))
}

fn array<'j>(obj: &'j Json, key: &str) -> Result<&'j [Json], ParseError> {
    field(obj, key)?
        .as_array()
        .ok_or_else(|| ParseError::new(0, std::format!("field {key:?}: expected an array")))
}

fn class(c: &Json, peak: bool) -> Result<ParsedClass, ParseError> {
    Ok(ParsedClass {
        class: int(c, "class")?,
        block_size: int(c, "block_size")?,
        allocs: int(c, "allocs")?,
        frees: int(c, "frees")?,
        in_use: int(c, "in_use")?,
        in_use_bytes: int(c, "in_use_bytes")?,
        cached: int(c, "cached")?,
        peak_blocks: if peak { int(c, "peak_blocks")? } else { 0 },
    })
}

/// Reads the JSON report ([`crate::write_json`]). Extra fields are ignored; a missing field,
/// or a value of the wrong type or range, is an error.
pub fn json(text: &str) -> Result<ParsedJson, ParseError> {
    let doc = value(text)?;
    let version = field(&doc, "version")?
        .as_str()
        .ok_or_else(|| ParseError::new(0, "field \"version\": expected a string"))?
        .into();
    let classes = array(&doc, "classes")?
        .iter()
        .map(|c| class(c, true))
        .collect::<Result<_, _>>()?;
    let l = field(&doc, "large")?;
    let large = LargeStats {
        allocs: int(l, "allocs")?,
        frees: int(l, "frees")?,
        bytes_in_use: int(l, "bytes_in_use")?,
        peak_bytes: int(l, "peak_bytes")?,
        cached_chunks: int(l, "cached_chunks")?,
    };
    let c = field(&doc, "chunks")?;
    let chunks = ChunkStats {
        mapped: int(c, "mapped")?,
        active: int(c, "active")?,
        empty_committed: int(c, "empty_committed")?,
        empty_decommitted: int(c, "empty_decommitted")?,
        large: int(c, "large")?,
    };
    let m = field(&doc, "memory")?;
    let memory = MemoryStats {
        committed_bytes: int(m, "committed_bytes")?,
        decommitted_bytes: int(m, "decommitted_bytes")?,
        resident_bytes: int(m, "resident_bytes")?,
    };
    let t = field(&doc, "threads")?;
    let s = field(&doc, "totals")?;
    let totals = Totals {
        allocs: int(s, "allocs")?,
        frees: int(s, "frees")?,
        in_use_bytes: int(s, "in_use_bytes")?,
        cached_bytes: int(s, "cached_bytes")?,
    };
    let heaps = array(&doc, "heaps")?
        .iter()
        .map(|h| {
            Ok(ParsedHeap {
                id: int(h, "id")?,
                in_use_bytes: int(h, "in_use_bytes")?,
                cached_bytes: int(h, "cached_bytes")?,
                classes: array(h, "classes")?
                    .iter()
                    .map(|c| class(c, false))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, ParseError>>()?;
    Ok(ParsedJson {
        version,
        classes,
        large,
        chunks,
        memory,
        threads_live: int(t, "live")?,
        threads_exited: int(t, "exited")?,
        totals,
        heaps,
    })
}
