//! `fam-bench-summary`: the ratio table of a criterion run of the `alloc` benchmarks.
//!
//! Reads `<criterion dir>/<group>/<allocator>/new/estimates.json` for every group of the last
//! run and prints a markdown table: the median time of each allocator, and fam's time divided by
//! mimalloc's, jemalloc's, the system allocator's and the faster of mimalloc and jemalloc (below
//! 1 means fam-alloc is faster), closing with the geometric mean of each ratio over the groups.
//! Groups are listed in the order they ran.
//!
//! ```text
//! fam-bench-summary [--dir DIR]
//! ```
//!
//! `DIR` is criterion's output directory or the target directory holding it; by default
//! `$CARGO_TARGET_DIR/criterion`, else `target/criterion`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use fam_benches::ALLOCATORS;

/// One criterion group: its name, when it ran, and each allocator's median in nanoseconds
/// (in the order of `ALLOCATORS`).
struct Group {
    name: String,
    ran_at: SystemTime,
    median_ns: [Option<f64>; 4],
}

/// The `point_estimate` of the `median` object in criterion's `estimates.json`
/// (`{"mean":{...},"median":{"confidence_interval":{...},"point_estimate":X,...},...}`).
fn median_of(json: &str) -> Option<f64> {
    let estimates: serde_json::Value = serde_json::from_str(json).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

/// Every group under `dir` that has a result for at least one of the allocators.
fn read_groups(dir: &Path) -> std::io::Result<Vec<Group>> {
    let mut groups = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let mut group = Group {
            name: path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            ran_at: SystemTime::UNIX_EPOCH,
            median_ns: [None; 4],
        };
        let mut first: Option<SystemTime> = None;
        for (slot, alloc) in group.median_ns.iter_mut().zip(ALLOCATORS) {
            let file = path.join(alloc).join("new").join("estimates.json");
            let Ok(json) = fs::read_to_string(&file) else {
                continue;
            };
            *slot = median_of(&json);
            if slot.is_none() {
                eprintln!("warning: no median in {}", file.display());
            }
            if let Ok(t) = fs::metadata(&file).and_then(|m| m.modified()) {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
        }
        if group.median_ns.iter().any(Option::is_some) {
            group.ran_at = first.unwrap_or(SystemTime::UNIX_EPOCH);
            groups.push(group);
        }
    }
    groups.sort_by(|a, b| a.ran_at.cmp(&b.ran_at).then_with(|| a.name.cmp(&b.name)));
    Ok(groups)
}

/// A duration in nanoseconds with a unit that keeps three or four significant digits.
fn fmt_time(ns: f64) -> String {
    let (v, unit) = match ns {
        n if n < 1e3 => (n, "ns"),
        n if n < 1e6 => (n / 1e3, "µs"),
        n if n < 1e9 => (n / 1e6, "ms"),
        n => (n / 1e9, "s"),
    };
    let prec = if v < 10.0 {
        3
    } else if v < 100.0 {
        2
    } else {
        1
    };
    format!("{v:.prec$} {unit}")
}

/// The geometric mean, or `None` for no values.
fn geomean(values: &[f64]) -> Option<f64> {
    (!values.is_empty())
        .then(|| (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp())
}

/// The criterion directory to read: `--dir` (or the `criterion` folder inside it), else the
/// target directory's.
fn criterion_dir(arg: Option<PathBuf>) -> PathBuf {
    let base = arg.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"))
    });
    let inner = base.join("criterion");
    if inner.is_dir() {
        inner
    } else {
        base
    }
}

/// The markdown report for `groups`.
fn render(groups: &[Group]) -> String {
    let mut out = String::new();
    let ratio_names = [
        "fam/mimalloc",
        "fam/jemalloc",
        "fam/system",
        "fam/min(mimalloc, jemalloc)",
    ];
    let _ = writeln!(
        out,
        "| benchmark | {} | {} |",
        ALLOCATORS.join(" | "),
        ratio_names.join(" | ")
    );
    let _ = writeln!(out, "|---|{}", "---:|".repeat(ALLOCATORS.len() + 4));
    let mut ratios: [Vec<f64>; 4] = Default::default();
    for g in groups {
        let [fam, system, mi, je] = g.median_ns;
        let times: Vec<String> = g
            .median_ns
            .iter()
            .map(|t| t.map_or_else(|| "-".to_owned(), fmt_time))
            .collect();
        let fastest_other = match (mi, je) {
            (Some(m), Some(j)) => Some(m.min(j)),
            _ => None,
        };
        let row: Vec<String> = [mi, je, system, fastest_other]
            .iter()
            .zip(&mut ratios)
            .map(|(other, acc)| match (fam, other) {
                (Some(f), Some(o)) if *o > 0.0 => {
                    acc.push(f / o);
                    format!("{:.2}", f / o)
                }
                _ => "-".to_owned(),
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            g.name,
            times.join(" | "),
            row.join(" | ")
        );
    }
    let means: Vec<String> = ratios
        .iter()
        .map(|r| geomean(r).map_or_else(|| "-".to_owned(), |m| format!("**{m:.2}**")))
        .collect();
    let _ = writeln!(
        out,
        "| **geometric mean** |{} {} |",
        " |".repeat(ALLOCATORS.len()),
        means.join(" | ")
    );
    out
}

/// The usage text.
const USAGE: &str = "usage: fam-bench-summary [--dir CRITERION_OR_TARGET_DIR]";

/// Reads the arguments (without the program name): the `--dir` given, or `None` for `--help`.
fn parse_args<I>(args: I) -> Result<Option<Option<PathBuf>>, String>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::Arg::{Long, Short, Value};
    let mut parser = lexopt::Parser::from_args(args);
    let mut dir = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("dir") => {
                let v = parser.value().map_err(|_| "--dir needs a directory")?;
                dir = Some(PathBuf::from(v));
            }
            Short('h') | Long("help") => return Ok(None),
            Short(c) => return Err(format!("unknown argument \"-{c}\"")),
            Long(other) => return Err(format!("unknown argument \"--{other}\"")),
            Value(other) => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(dir))
}

fn main() -> ExitCode {
    let dir = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(dir)) => dir,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fam-bench-summary: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let dir = criterion_dir(dir);
    let groups = match read_groups(&dir) {
        Ok(g) if !g.is_empty() => g,
        Ok(_) => {
            eprintln!("no criterion results under {}", dir.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("cannot read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Median time per iteration ({} benchmarks; ratios below 1: fam-alloc is faster).\n",
        groups.len()
    );
    print!("{}", render(&groups));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_median_point_estimate() {
        let json = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":2.0,"standard_error":0.1},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":4.0,"upper_bound":6.0},"point_estimate":5.25e2,"standard_error":0.2},"median_abs_dev":{"point_estimate":9.0}}"#;
        assert_eq!(median_of(json), Some(525.0));
        assert_eq!(
            median_of(r#"{"median": {"point_estimate" : 7}}"#),
            Some(7.0)
        );
        assert_eq!(median_of(r#"{"mean":{"point_estimate":1}}"#), None);
        assert_eq!(median_of(r#"{"median": {"point_estimate": 7"#), None);
    }

    #[test]
    fn reads_the_command_line() {
        assert_eq!(
            parse_args(["--dir", "x"]),
            Ok(Some(Some(PathBuf::from("x"))))
        );
        assert_eq!(parse_args(["--dir=x"]), Ok(Some(Some(PathBuf::from("x")))));
        assert_eq!(parse_args::<[&str; 0]>([]), Ok(Some(None)));
        assert_eq!(parse_args(["-h"]), Ok(None));
        assert!(parse_args(["--dir"]).is_err());
        assert!(parse_args(["x"]).is_err());
    }

    #[test]
    fn formats_and_means() {
        assert_eq!(fmt_time(812.34), "812.3 ns");
        assert_eq!(fmt_time(1_500.0), "1.500 µs");
        assert_eq!(fmt_time(25_300_000.0), "25.30 ms");
        assert!((geomean(&[2.0, 8.0]).unwrap() - 4.0).abs() < 1e-12);
        assert_eq!(geomean(&[]), None);
    }

    #[test]
    fn table_has_a_row_per_group_and_a_mean() {
        let g = |name: &str, t: [f64; 4]| Group {
            name: name.into(),
            ran_at: SystemTime::UNIX_EPOCH,
            median_ns: t.map(Some),
        };
        let table = render(&[
            g("a", [100.0, 400.0, 200.0, 50.0]),
            g("b", [100.0, 100.0, 50.0, 100.0]),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[2].starts_with("| a | 100.0 ns |"));
        assert!(
            lines[2].ends_with("| 0.50 | 2.00 | 0.25 | 2.00 |"),
            "{}",
            lines[2]
        );
        assert!(lines[4].contains("**1.00**"), "{}", lines[4]);
    }
}
