//! `fam-rss`: peak resident memory of each workload under each allocator.
//!
//! Every cell of the table is a fresh process: the tool runs itself again as
//! `fam-rss --child <allocator> <workload>`, the child runs the workload once against that
//! allocator (through `GlobalAlloc` calls on its instance, as the benchmarks do; the process's own
//! global allocator stays the system one) and prints its peak RSS, the `VmHWM` line of
//! `/proc/self/status`. `VmHWM` belongs to the child's own address space, so nothing of the
//! parent's footprint leaks into it. The parent prints a markdown table in MiB with each
//! allocator's ratio to mimalloc and the geometric means over the workloads (the `baseline` row,
//! a child that does nothing, is the floor every cell includes and is left out of the means).
//!
//! ```text
//! fam-rss [WORKLOAD ...]          # all workloads by default
//! fam-rss --child ALLOCATOR WORKLOAD
//! ```
//!
//! `FAM_BENCH_THREADS` sets the thread count of `thread_churn` (the largest listed; default 4).

use std::fmt::Write as _;
use std::process::{Command, ExitCode};

use fam_benches::{Via, Workload, ALLOCATORS, FAM, JEMALLOC, MIMALLOC, SYSTEM};
// The workload programs' reading of `VmHWM`, shared so the two tools measure alike.
use fam_workloads::peak_rss_kib;

/// The key the child prints its peak RSS under.
const KEY: &str = "peak_rss_kib=";

/// Runs `workload` once against `a` and reports the peak RSS on stdout.
fn child_run<A: core::alloc::GlobalAlloc + Sync>(a: &Via<A>, workload: Workload) -> ExitCode {
    workload.run(a);
    match peak_rss_kib() {
        Some(kib) => {
            println!("{KEY}{kib}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("cannot read VmHWM from /proc/self/status");
            ExitCode::FAILURE
        }
    }
}

/// The child side: `--child ALLOCATOR WORKLOAD`.
fn child(alloc: &str, workload: &str) -> ExitCode {
    let Some(w) = Workload::from_name(workload) else {
        eprintln!("unknown workload {workload:?}");
        return ExitCode::FAILURE;
    };
    match alloc {
        "fam" => child_run(&FAM, w),
        "system" => child_run(&SYSTEM, w),
        "mimalloc" => child_run(&MIMALLOC, w),
        "jemalloc" => child_run(&JEMALLOC, w),
        _ => {
            eprintln!("unknown allocator {alloc:?}; one of {ALLOCATORS:?}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one cell in a fresh process; its peak RSS in MiB, or why it failed.
fn measure(alloc: &str, workload: Workload) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .args(["--child", alloc, workload.name()])
        .output()
        .map_err(|e| format!("spawn: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{alloc}/{}: {} {}",
            workload.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(KEY))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kib| kib as f64 / 1024.0)
        .ok_or_else(|| format!("{alloc}/{}: no peak in {stdout:?}", workload.name()))
}

/// The geometric mean, or `None` for no values.
fn geomean(values: &[f64]) -> Option<f64> {
    (!values.is_empty())
        .then(|| (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp())
}

/// The markdown table: one row per workload, MiB per allocator, then each allocator's ratio to
/// mimalloc, then the geometric means (baseline excluded).
fn render(rows: &[(Workload, [Option<f64>; 4])]) -> String {
    let mi = ALLOCATORS
        .iter()
        .position(|&a| a == "mimalloc")
        .expect("mimalloc is measured");
    let others: Vec<usize> = (0..ALLOCATORS.len()).filter(|&i| i != mi).collect();
    let mut out = String::new();
    let ratio_heads: Vec<String> = others
        .iter()
        .map(|&i| format!("{}/mimalloc", ALLOCATORS[i]))
        .collect();
    let _ = writeln!(
        out,
        "| workload | {} | {} |",
        ALLOCATORS.map(|a| format!("{a} MiB")).join(" | "),
        ratio_heads.join(" | ")
    );
    let _ = writeln!(
        out,
        "|---|{}",
        "---:|".repeat(ALLOCATORS.len() + others.len())
    );
    let cell =
        |v: Option<f64>, prec: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"));
    let mut mib: Vec<Vec<f64>> = vec![Vec::new(); ALLOCATORS.len()];
    let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); ALLOCATORS.len()];
    for (w, values) in rows {
        let ratios: Vec<Option<f64>> = others
            .iter()
            .map(|&i| Some(values[i]? / values[mi]?))
            .collect();
        if *w != Workload::Baseline {
            for (i, v) in values.iter().enumerate() {
                mib[i].extend(*v);
            }
            for (&i, r) in others.iter().zip(&ratios) {
                ratio[i].extend(*r);
            }
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            w.name(),
            values.map(|v| cell(v, 1)).join(" | "),
            ratios
                .iter()
                .map(|&r| cell(r, 2))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let mean_mib: Vec<String> = mib.iter().map(|v| cell(geomean(v), 1)).collect();
    let mean_ratio: Vec<String> = others
        .iter()
        .map(|&i| cell(geomean(&ratio[i]), 2))
        .collect();
    let _ = writeln!(
        out,
        "| **geometric mean** | {} | {} |",
        mean_mib.join(" | "),
        mean_ratio.join(" | ")
    );
    out
}

/// The usage text.
const USAGE: &str = "usage: fam-rss [WORKLOAD ...]   (all workloads by default)
       fam-rss --child ALLOCATOR WORKLOAD";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Cli {
    /// The table over these workloads.
    Table(Vec<Workload>),
    /// One cell, in this process: `--child ALLOCATOR WORKLOAD`.
    Child(String, String),
    /// `--help`.
    Help,
}

/// Reads the arguments (without the program name).
fn parse_args<I>(args: I) -> Result<Cli, String>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::Arg::{Long, Short, Value};
    let text = |v: std::ffi::OsString| {
        v.into_string()
            .map_err(|v| format!("{v:?} is not valid UTF-8"))
    };
    let mut parser = lexopt::Parser::from_args(args);
    let mut workloads = Vec::new();
    let mut first = true;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("child") if first => {
                let mut operand = || {
                    parser
                        .value()
                        .map_err(|_| "--child needs ALLOCATOR WORKLOAD".to_owned())
                        .and_then(text)
                };
                let (alloc, workload) = (operand()?, operand()?);
                if parser.next().map_err(|e| e.to_string())?.is_some() {
                    return Err("--child takes ALLOCATOR WORKLOAD and nothing more".into());
                }
                return Ok(Cli::Child(alloc, workload));
            }
            Short('h') | Long("help") => return Ok(Cli::Help),
            Value(name) => {
                let name = text(name)?;
                let w = Workload::from_name(&name).ok_or_else(|| {
                    let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                    format!("unknown workload {name:?}; one of {names:?}")
                })?;
                workloads.push(w);
            }
            Short(c) => return Err(format!("unknown argument \"-{c}\"")),
            Long(other) => return Err(format!("unknown argument \"--{other}\"")),
        }
        first = false;
    }
    if workloads.is_empty() {
        workloads = Workload::ALL.to_vec();
    }
    Ok(Cli::Table(workloads))
}

fn main() -> ExitCode {
    let workloads = match parse_args(std::env::args_os().skip(1)) {
        Ok(Cli::Table(workloads)) => workloads,
        Ok(Cli::Child(alloc, workload)) => return child(&alloc, &workload),
        Ok(Cli::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fam-rss: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    let mut rows = Vec::new();
    for w in workloads {
        let mut values = [None; 4];
        for (v, alloc) in values.iter_mut().zip(ALLOCATORS) {
            match measure(alloc, w) {
                Ok(mib) => *v = Some(mib),
                Err(e) => {
                    eprintln!("{e}");
                    failed = true;
                }
            }
        }
        rows.push((w, values));
    }
    println!("Peak RSS (VmHWM) of a fresh process running the workload once, MiB.\n");
    print!("{}", render(&rows));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_command_line() {
        assert_eq!(
            parse_args(["mixed", "treap"]),
            Ok(Cli::Table(vec![Workload::Mixed, Workload::Treap]))
        );
        assert_eq!(
            parse_args::<[&str; 0]>([]),
            Ok(Cli::Table(Workload::ALL.to_vec()))
        );
        assert_eq!(
            parse_args(["--child", "fam", "mixed"]),
            Ok(Cli::Child("fam".into(), "mixed".into()))
        );
        assert_eq!(parse_args(["--help"]), Ok(Cli::Help));
        assert!(parse_args(["--child", "fam"]).is_err());
        assert!(parse_args(["--child", "fam", "mixed", "x"]).is_err());
        assert!(parse_args(["mixed", "--child", "fam", "mixed"]).is_err());
        assert!(parse_args(["nope"]).unwrap_err().contains("one of"));
        assert!(parse_args(["--bogus"]).is_err());
    }

    #[test]
    fn table_rows_ratios_and_means() {
        let rows = [
            (
                Workload::Baseline,
                [Some(2.0), Some(2.0), Some(2.0), Some(2.0)],
            ),
            (Workload::Mixed, [Some(20.0), Some(40.0), Some(10.0), None]),
            (
                Workload::Treap,
                [Some(5.0), Some(10.0), Some(20.0), Some(20.0)],
            ),
        ];
        let t = render(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[3],
            "| mixed | 20.0 | 40.0 | 10.0 | - | 2.00 | 4.00 | - |"
        );
        // fam/mimalloc: 2.0 and 0.25 -> 0.71; the baseline row is not in the means.
        assert!(lines[5].contains("| 0.71 |"), "{}", lines[5]);
        assert!(
            lines[5].starts_with("| **geometric mean** | 10.0 | 20.0 | 14.1 | 20.0 |"),
            "{}",
            lines[5]
        );
    }
}
