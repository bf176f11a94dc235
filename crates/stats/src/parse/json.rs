//! A small JSON reader: a recursive-descent parser into [`Json`], then the report's fields.
//!
//! The grammar is RFC 8259 minus fractions and exponents (the report writes integers only):
//! objects, arrays, strings with every escape (surrogate pairs included), integers with an
//! optional `-` and no leading zeros, `true`, `false`, `null`. Nesting deeper than
//! [`MAX_DEPTH`] is refused so hostile input cannot exhaust the stack.

use std::string::String;
use std::vec::Vec;

use super::ParseError;
use crate::{ChunkStats, ClassStats, LargeStats};

/// Deepest nesting of arrays and objects [`value`] accepts.
const MAX_DEPTH: usize = 128;

/// A JSON value (integers only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer; `i128` holds every `u64` and `i64`.
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

/// The parser's state: the whole text and the byte position reached.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, message: &str) -> ParseError {
        let end = self.pos.min(self.text.len());
        let line = self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ParseError::new(line, message)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                self.skip_ws();
                if self.eat(b'}') {
                    return Ok(Json::Object(members));
                }
                loop {
                    self.skip_ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.err("expected a key"));
                    }
                    let key = self.string()?;
                    self.skip_ws();
                    if !self.eat(b':') {
                        return Err(self.err("expected ':'"));
                    }
                    members.push((key, self.value(depth + 1)?));
                    self.skip_ws();
                    if self.eat(b'}') {
                        return Ok(Json::Object(members));
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected ',' or '}'"));
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.eat(b']') {
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    if self.eat(b']') {
                        return Ok(Json::Array(items));
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected ',' or ']'"));
                    }
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b'-' | b'0'..=b'9') => self.number().map(Json::Int),
            _ => {
                for (word, v) in [
                    ("true", Json::Bool(true)),
                    ("false", Json::Bool(false)),
                    ("null", Json::Null),
                ] {
                    if self.text[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return Ok(v);
                    }
                }
                Err(self.err("expected a value"))
            }
        }
    }

    /// A string; `pos` is at its opening quote.
    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            // Copy the run of plain characters; it starts and ends at ASCII bytes, so the
            // slice is on character boundaries.
            let start = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(_) => return Err(self.err("control character in string")),
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    /// The character of a `\uXXXX` escape (`pos` just past the `u`), joining a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.text[self.pos..].starts_with("\\u") {
                return Err(self.err("lone surrogate"));
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.err("lone surrogate"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.err("lone surrogate"))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("expected 4 hex digits"))?;
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.err("expected 4 hex digits"))
    }

    /// An integer: `-`?, then `0` or a non-zero digit followed by digits.
    fn number(&mut self) -> Result<i128, ParseError> {
        let negative = self.eat(b'-');
        let start = self.pos;
        let mut n: i128 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(i128::from(d - b'0')))
                .ok_or_else(|| self.err("number too large"))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        if digits == 0 {
            return Err(self.err("expected digits"));
        }
        if digits > 1 && self.text.as_bytes()[start] == b'0' {
            return Err(self.err("leading zero"));
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(self.err("only integers are supported"));
        }
        Ok(if negative { -n } else { n })
    }
}

/// Parses one JSON value filling the whole text (surrounding whitespace allowed).
pub fn value(text: &str) -> Result<Json, ParseError> {
    let mut p = Parser { text, pos: 0 };
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
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
        threads_live: int(t, "live")?,
        threads_exited: int(t, "exited")?,
        totals,
        heaps,
    })
}
