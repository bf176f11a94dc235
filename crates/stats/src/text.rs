//! Small formatting pieces shared by the writers, none of which allocates.

use core::fmt::{self, Display, Write};

/// A version string fit for one line: `unknown` when empty, control characters shown as `?`.
pub(crate) struct Version<'a>(pub &'a str);

impl Display for Version<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("unknown");
        }
        for c in self.0.chars() {
            f.write_char(if c.is_control() { '?' } else { c })?;
        }
        Ok(())
    }
}

/// Writes `s` as a JSON string literal, quotes included: `"` and `\` escaped, control
/// characters as `\n`-style or `\u00XX` escapes, everything else as it is (JSON is UTF-8).
pub(crate) fn json_string(w: &mut dyn Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    let mut rest = s;
    // Copy runs of plain characters in one call; escape the rest one by one.
    while let Some(i) = rest.find(|c: char| c == '"' || c == '\\' || c.is_control()) {
        w.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or('\0');
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            '\u{8}' => w.write_str("\\b")?,
            '\u{c}' => w.write_str("\\f")?,
            // Other controls (C0, DEL, C1) all lie below U+10000: one \u escape each.
            c => write!(w, "\\u{:04x}", u32::from(c))?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    w.write_str(rest)?;
    w.write_char('"')
}

/// A fixed-capacity string, for formatting a piece before padding it with
/// [`fmt::Formatter::pad`]. Writes past the capacity fail.
struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    const fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the bytes are UTF-8.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        if end > N {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A byte count in human units: `512 B`, `1.5 KiB`, `-3.0 MiB`, rounded to a tenth. Honours
/// width and alignment (`{:>10}`).
pub(crate) struct Bytes(pub i128);

impl Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut s = StackStr::<48>::new();
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        if abs < 1024 {
            write!(s, "{sign}{abs} B")?;
        } else {
            // The largest unit not above the value; then tenths, rounded half up. Rounding can
            // reach 1024.0 of a unit: move up one unit then.
            let mut unit = 0;
            while unit + 1 < UNITS.len() && abs >= 1u128 << (10 * (unit + 2)) {
                unit += 1;
            }
            let scale = 1u128 << (10 * (unit + 1));
            let mut tenths = (abs * 10 + scale / 2) / scale;
            if tenths >= 10240 && unit + 1 < UNITS.len() {
                unit += 1;
                tenths = (tenths + 512) / 1024;
            }
            write!(s, "{sign}{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])?;
        }
        f.pad(s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn human(n: i128) -> String {
        std::format!("{}", Bytes(n))
    }

    #[test]
    fn human_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(-1023), "-1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(-1536), "-1.5 KiB");
        assert_eq!(human(4 << 20), "4.0 MiB");
        assert_eq!(human((1 << 20) - 1), "1.0 MiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(human(i128::from(u64::MAX)), "16.0 EiB");
        assert_eq!(human(i128::from(i64::MIN)), "-8.0 EiB");
        assert_eq!(std::format!("[{:>10}]", Bytes(1536)), "[   1.5 KiB]");
        assert_eq!(std::format!("[{:<8}]", Bytes(5)), "[5 B     ]");
    }

    #[test]
    fn versions_and_strings() {
        assert_eq!(std::format!("{}", Version("")), "unknown");
        assert_eq!(std::format!("{}", Version("1.2\n3")), "1.2?3");
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\u{1}é\u{7f}").unwrap();
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\\u007f\"");
    }
}
