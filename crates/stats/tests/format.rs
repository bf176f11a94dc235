//! Choosing a report: `Format::from_env` and `write_report`.

mod common;

use common::{known, render, Writer};
use stats::{write_bmalloc, write_json, write_report, write_table, Format};

#[test]
fn from_env_values() {
    for v in ["1", "text", "table", "TABLE", "Text", " table\n"] {
        assert_eq!(Format::from_env(v), Some(Format::Table), "{v:?}");
    }
    for v in ["bmalloc", "BMALLOC", " bmalloc "] {
        assert_eq!(Format::from_env(v), Some(Format::Bmalloc), "{v:?}");
    }
    for v in ["json", "JSON", "Json"] {
        assert_eq!(Format::from_env(v), Some(Format::Json), "{v:?}");
    }
    for v in [
        "", "0", " ", "2", "yes", "true", "off", "tables", "jsonl", "bmalloc2", "t",
    ] {
        assert_eq!(Format::from_env(v), None, "{v:?}");
    }
}

#[test]
fn write_report_dispatches() {
    let (snap, heaps) = known();
    for (format, write) in [
        (Format::Table, write_table as Writer),
        (Format::Bmalloc, write_bmalloc),
        (Format::Json, write_json),
    ] {
        let mut s = String::new();
        write_report(&mut s, format, &snap, &mut heaps.iter().copied()).unwrap();
        assert_eq!(s, render(write, &snap, &heaps), "{format:?}");
    }
}

/// A writer that fails after `left` bytes.
struct Failing {
    left: usize,
}

impl core::fmt::Write for Failing {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.left = self.left.checked_sub(s.len()).ok_or(core::fmt::Error)?;
        Ok(())
    }
}

#[test]
fn writer_errors_are_passed_back() {
    let (snap, heaps) = known();
    for format in [Format::Table, Format::Bmalloc, Format::Json] {
        for left in [0, 10, 100] {
            let mut w = Failing { left };
            assert!(write_report(&mut w, format, &snap, &mut heaps.iter().copied()).is_err());
        }
    }
}
