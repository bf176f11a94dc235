//! `cargo xtask bench`: the allocator benchmark suite.
//!
//! 1. Builds, in release mode, `libfam_malloc.so` (the C ABI of fam-alloc) and the workload
//!    programs of `benches/workloads` (package `fam-workloads`), into the cargo target
//!    directory in use (`CARGO_TARGET_DIR`, or the workspace's `target/`).
//! 2. Finds the allocators: glibc (the C library's own malloc), fam-alloc (the library just
//!    built), mimalloc 2, jemalloc and tcmalloc (the Debian packages' shared libraries, installed
//!    with apt-get when missing) and mimalloc 3 (built once from the C sources of the
//!    `libmimalloc-sys` crate); an allocator that cannot be had is left out and marked missing.
//! 3. Runs every workload once per allocator per round, each run a fresh process with the
//!    allocator preloaded. Rounds interleave: for each round, for each workload, every
//!    allocator in an order rotated by one from the last, so a slow spell of a shared machine
//!    falls on different allocators. Each run's time, wall time and peak RSS (and, for the
//!    workloads that report it, the resident set after their frees) go into `results.csv` as
//!    soon as it ends.
//! 4. Writes `bench-report/report.md` under the target directory: the medians, fam-alloc's
//!    ratios to the fastest peer (the other allocator with the least time on that workload), to
//!    each allocator and to glibc per workload with their geometric means and the targets (time
//!    at most 0.95x the fastest peer's as a geometric mean and 1.05x on any workload, peak RSS
//!    at most 1.1x mimalloc 2's), the resident set after the frees
//!    of the workloads that report it (`rss-after-free`) with fam-alloc's ratio to each of the
//!    other allocators, a table per workload, and two charts (`chart.svg`: time normalised to
//!    glibc, `rss.svg`: peak RSS normalised to glibc).
//!    With `--criterion` it also runs the criterion suite and adds `fam-bench-summary`'s table.
//!
//! A run that fails (a workload's own content check, a crash, a time-out, or a `malloc` that
//! did not come from the allocator meant) is reported, and makes the command exit with 1
//! after the report is written.

mod allocators;
mod options;
mod report;
mod runner;
mod svg;
mod workloads;

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use allocators::Allocator;
use options::Options;
use report::{Metric, Run, Table};
use svg::{Chart, Series};

pub use options::USAGE;

/// Runs `cargo xtask bench ARGS`; never returns.
pub fn main(args: lexopt::Parser) -> ! {
    let opts = match Options::parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            exit(0)
        }
        Err(e) => {
            eprintln!("xtask bench: {e}\n{USAGE}");
            exit(2)
        }
    };
    let started = Instant::now();
    let root = crate::workspace_root();
    let target = target_dir(&root);
    let out_dir = target.join("bench-report");
    if let Err(e) = fs::create_dir_all(&out_dir) {
        fail(&format!("cannot create {}: {e}", out_dir.display()));
    }

    println!("==> xtask bench: building libfam_malloc and the workloads (release)");
    if !cargo(
        &root,
        &target,
        &[
            "build",
            "--release",
            "-p",
            "fam-malloc",
            "-p",
            "fam-workloads",
        ],
    ) {
        fail("the build failed");
    }
    let release = target.join("release");
    let allocs = allocators::discover(
        &root,
        &out_dir,
        &release.join("libfam_malloc.so"),
        fam_version(&root),
        opts.install,
    );
    for a in &allocs {
        match &a.missing {
            None => println!("    {:<9} {}", a.name, a.version),
            Some(why) => println!("    {:<9} MISSING: {why}", a.name),
        }
    }
    let measured: Vec<&Allocator> = allocs.iter().filter(|a| a.available()).collect();
    let criterion = opts.criterion.then(|| run_criterion(&root, &target));

    // One suite per thread count: its own rounds, report, charts and CSV (in a folder of its
    // own when there are several counts, with an index of their summaries on top).
    let several = opts.threads.len() > 1;
    let mut index = String::new();
    let mut failed = 0;
    for &threads in &opts.threads {
        let dir = if several {
            out_dir.join(format!("threads-{threads}"))
        } else {
            out_dir.clone()
        };
        if let Err(e) = fs::create_dir_all(&dir) {
            fail(&format!("cannot create {}: {e}", dir.display()));
        }
        let suite = Suite {
            opts: &opts,
            threads,
            dir: &dir,
            release: &release,
            allocs: &allocs,
            measured: &measured,
            criterion: criterion.clone(),
        };
        let (summary, runs_failed) = suite.run();
        failed += runs_failed;
        let _ = write!(
            index,
            "## {threads} thread{}\n\nThe report: [`threads-{threads}/report.md`](threads-{threads}/report.md).\n\n{summary}\n",
            if threads == 1 { "" } else { "s" }
        );
    }
    if several {
        let path = out_dir.join("report.md");
        write_file(
            &path,
            &format!(
                "# cargo xtask bench at {} threads\n\n`{}`\n\n{index}",
                opts.threads
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                opts.command_line()
            ),
        );
        println!("index:   {}", path.display());
    }
    println!(
        "xtask bench: took {}",
        report::duration_text(started.elapsed().as_secs_f64())
    );
    if failed > 0 {
        eprintln!("xtask bench: {failed} runs FAILED (see the report)");
        exit(1);
    }
    exit(0)
}

/// One run of the suite at one thread count.
struct Suite<'a> {
    opts: &'a Options,
    threads: usize,
    /// Where its report, charts and CSV go.
    dir: &'a Path,
    release: &'a Path,
    allocs: &'a [Allocator],
    measured: &'a [&'a Allocator],
    criterion: Option<String>,
}

impl Suite<'_> {
    /// Runs every round, writes the report, prints the summary; returns the summary and
    /// targets (markdown) and the number of runs that failed.
    fn run(&self) -> (String, usize) {
        let (opts, threads, out_dir, release) = (self.opts, self.threads, self.dir, self.release);
        let (allocs, measured) = (self.allocs, self.measured);
        let started = Instant::now();
        let started_utc = utc_now();
        let load_before = load_average();

        let csv_path = out_dir.join("results.csv");
        let mut csv = match csv::Writer::from_path(&csv_path) {
            Ok(w) => w,
            Err(e) => fail(&format!("cannot create {}: {e}", csv_path.display())),
        };
        let _ = csv.write_record(report::CSV_HEADER);
        let total = opts.rounds * opts.workloads.len() * measured.len();
        println!(
            "==> xtask bench: {} rounds x {} workloads x {} allocators = {total} runs \
             ({} threads, scale {})",
            opts.rounds,
            opts.workloads.len(),
            measured.len(),
            threads,
            opts.scale
        );
        let timeout = Duration::from_secs(opts.timeout_s);
        let mut runs: Vec<Run> = Vec::new();
        let n = measured.len().max(1);
        for round in 1..=opts.rounds {
            for (wi, w) in opts.workloads.iter().enumerate() {
                let exe = release.join(w.name);
                let rotation = (round - 1 + wi) % n;
                for k in 0..measured.len() {
                    let a = measured[(k + rotation) % n];
                    let result = runner::run_once(&exe, a, threads, opts.scale, timeout);
                    match &result {
                        Ok(s) => println!(
                            "[{round}/{}] {:<14} {:<9} {:>8.3} s  wall {:>7.3} s  cpu {:>7.3} s  {:>8.1} MiB{}",
                            opts.rounds,
                            w.name,
                            a.name,
                            s.time_s,
                            s.wall_s,
                            s.cpu_s,
                            s.rss_kib as f64 / 1024.0,
                            s.rss_after_free_kib.map_or_else(String::new, |k| format!(
                                "  after free {:>8.1} MiB",
                                k as f64 / 1024.0
                            ))
                        ),
                        Err(e) => println!(
                            "[{round}/{}] {:<14} {:<9} FAILED: {e}",
                            opts.rounds, w.name, a.name
                        ),
                    }
                    let run = Run {
                        round,
                        workload: w.name,
                        alloc: a.name,
                        result,
                    };
                    let _ = csv.write_record(report::csv_record(&run, threads, opts.scale));
                    let _ = csv.flush();
                    runs.push(run);
                }
            }
        }

        let names: Vec<&'static str> = opts.workloads.iter().map(|w| w.name).collect();
        let table = Table::new(&runs, &names, &allocators::NAMES);
        let meta = report::Meta {
            command: opts.command_line(),
            started: started_utc,
            duration_s: started.elapsed().as_secs_f64(),
            machine: machine(),
            load: (load_before, load_average()),
            rounds: opts.rounds,
            threads,
            scale: opts.scale,
            allocators: allocs.to_vec(),
            criterion: self.criterion.clone(),
        };
        let subtitle = format!(
            "{}: median of {} rounds, {} threads, scale {}",
            meta.command, opts.rounds, threads, opts.scale
        );
        let charts = [
            (
                "chart.svg",
                Metric::Time,
                "Time per workload, normalised to glibc (lower is better)",
                "time / glibc's time",
            ),
            (
                "rss.svg",
                Metric::Rss,
                "Peak RSS per workload, normalised to glibc (lower is better)",
                "peak RSS / glibc's peak RSS",
            ),
        ];
        for (file, metric, title, y_label) in charts {
            let svg = chart(&table, allocs, metric, title, &subtitle, y_label);
            write_file(&out_dir.join(file), &svg);
        }
        let md = report::report_markdown(&meta, &table, &opts.workloads, &runs);
        let report_path = out_dir.join("report.md");
        write_file(&report_path, &md);

        println!("\n{}", report::summary_markdown(&table));
        let after_free = report::rss_after_free_markdown(&table);
        if !after_free.is_empty() {
            println!("{after_free}");
        }
        println!("{}", report::targets_markdown(&table));
        println!("report:  {}", report_path.display());
        println!("charts:  {}", out_dir.join("chart.svg").display());
        println!("         {}", out_dir.join("rss.svg").display());
        println!("runs:    {}", csv_path.display());
        let failed = runs.iter().filter(|r| r.result.is_err()).count();
        if failed > 0 {
            eprintln!(
                "xtask bench: {failed} of {} runs at {threads} threads FAILED (see the report)",
                runs.len()
            );
        }
        let mut summary = report::summary_markdown(&table);
        summary.push('\n');
        summary.push_str(&report::targets_markdown(&table));
        (summary, failed)
    }
}

/// The chart of `metric` normalised to glibc: a group per workload and one for the geometric
/// mean, a bar per allocator that was measured.
fn chart(
    t: &Table,
    allocs: &[Allocator],
    metric: Metric,
    title: &str,
    subtitle: &str,
    y_label: &str,
) -> String {
    let shown: Vec<&Allocator> = allocs.iter().filter(|a| a.available()).collect();
    let series: Vec<Series> = shown
        .iter()
        .map(|a| Series {
            name: a.name,
            color: svg::color_of(a.name),
        })
        .collect();
    let mut groups: Vec<(String, Vec<Option<f64>>)> = t
        .workloads
        .iter()
        .enumerate()
        .map(|(w, name)| {
            let values = shown
                .iter()
                .map(|a| t.ratio(w, a.name, "glibc", metric))
                .collect();
            ((*name).to_owned(), values)
        })
        .collect();
    if t.workloads.len() > 1 {
        let means = shown
            .iter()
            .map(|a| t.geomean_ratio(a.name, "glibc", metric))
            .collect();
        groups.push(("geometric mean".to_owned(), means));
    }
    svg::render(&Chart {
        title,
        subtitle,
        y_label,
        reference: "glibc = 1.0",
        series: &series,
        groups: &groups,
    })
}

/// Runs the criterion suite and returns `fam-bench-summary`'s table (or why there is none).
fn run_criterion(root: &Path, target: &Path) -> String {
    println!("==> xtask bench: cargo bench -p fam-benches --bench alloc");
    if !cargo(
        root,
        target,
        &["bench", "-p", "fam-benches", "--bench", "alloc"],
    ) {
        return "The criterion run failed; see its output.".to_owned();
    }
    let out = Command::new(cargo_program())
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "fam-benches",
            "--bin",
            "fam-bench-summary",
            "--",
            "--dir",
        ])
        .arg(target)
        .env("CARGO_TARGET_DIR", target)
        .current_dir(root)
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => format!(
            "fam-bench-summary failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("cannot run fam-bench-summary: {e}"),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("xtask bench: {msg}");
    exit(1)
}

fn write_file(path: &Path, text: &str) {
    if let Err(e) = fs::write(path, text) {
        fail(&format!("cannot write {}: {e}", path.display()));
    }
}

fn cargo_program() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs `cargo ARGS` in the workspace with the target directory `target`; true on success.
fn cargo(root: &Path, target: &Path, args: &[&str]) -> bool {
    println!("$ cargo {}", args.join(" "));
    Command::new(cargo_program())
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .current_dir(root)
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo metadata --no-deps` of the workspace, parsed; `None` if cargo or its output fails.
fn cargo_metadata(root: &Path) -> Option<serde_json::Value> {
    let out = Command::new(cargo_program())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    serde_json::from_slice(&out.stdout).ok()
}

/// The version of the workspace package `name` in `cargo metadata` output.
fn package_version<'m>(metadata: &'m serde_json::Value, name: &str) -> Option<&'m str> {
    metadata["packages"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["version"]
        .as_str()
}

/// The cargo target directory in use, absolute: what `cargo metadata` says (it applies
/// `CARGO_TARGET_DIR`, relative to the current directory, and cargo's configuration), else
/// `CARGO_TARGET_DIR` or the workspace's `target/`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    let from_metadata =
        cargo_metadata(root).and_then(|m| m["target_directory"].as_str().map(PathBuf::from));
    let dir = from_metadata.unwrap_or_else(|| {
        env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
    });
    if dir.is_absolute() {
        dir
    } else {
        env::current_dir().map(|d| d.join(&dir)).unwrap_or(dir)
    }
}

/// "fam-alloc 0.1.0 (git 3a986fb, with uncommitted changes)".
fn fam_version(root: &Path) -> String {
    let version = cargo_metadata(root)
        .and_then(|m| package_version(&m, "fam-alloc").map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty =
                git(&["status", "--porcelain", "--", "crates"]).is_some_and(|s| !s.is_empty());
            let dirty = if dirty {
                ", with uncommitted changes in crates/"
            } else {
                ""
            };
            format!("fam-alloc {version} (git {rev}{dirty})")
        }
        None => format!("fam-alloc {version}"),
    }
}

/// "Intel(R) Xeon(R) ... (2 CPUs), Linux 6.1.0".
fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cpu} ({cpus} CPUs available), Linux {kernel}")
}

/// The 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

/// The current time, UTC, as "2024-05-01 12:34 UTC".
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn reads_cargo_metadata() {
        let m: serde_json::Value = serde_json::from_str(
            r#"{"packages":[{"name":"xtask","version":"9.9.9"},{"name":"fam-alloc","version":"0.1.0"}],
                "target_directory":"/a/b \"c\"\\d","version":1}"#,
        )
        .unwrap();
        assert_eq!(m["target_directory"].as_str(), Some("/a/b \"c\"\\d"));
        assert_eq!(package_version(&m, "fam-alloc"), Some("0.1.0"));
        assert_eq!(package_version(&m, "nope"), None);
        // This workspace's own metadata names the allocator and a target directory.
        let root = crate::workspace_root();
        let m = cargo_metadata(&root).expect("cargo metadata runs");
        assert_eq!(
            package_version(&m, "fam-alloc"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(target_dir(&root).is_absolute());
    }

    #[test]
    fn chart_has_a_bar_per_measured_allocator_and_a_mean_group() {
        let runs: Vec<Run> = ["fam", "mimalloc", "glibc"]
            .iter()
            .flat_map(|a| {
                ["larson", "large"].map(|w| Run {
                    round: 1,
                    workload: w,
                    alloc: a,
                    result: Ok(runner::Sample {
                        time_s: 1.0,
                        wall_s: 1.0,
                        cpu_s: 1.0,
                        rss_kib: 100,
                        rss_after_free_kib: None,
                    }),
                })
            })
            .collect();
        let t = Table::new(&runs, &["larson", "large"], &allocators::NAMES);
        let alloc = |name: &'static str, missing: Option<&str>| Allocator {
            name,
            preload: None,
            version: String::new(),
            missing: missing.map(str::to_owned),
        };
        let allocs = [
            alloc("fam", None),
            alloc("mimalloc", None),
            alloc("jemalloc", Some("not installed")),
            alloc("glibc", None),
        ];
        let svg = chart(&t, &allocs, Metric::Time, "t", "s", "y");
        assert!(svg.contains(">geometric<") && svg.contains(">mean<"));
        assert!(!svg.contains(">jemalloc<"));
        // 3 groups x 3 bars, the background, 3 legend swatches.
        assert_eq!(svg.matches("<rect").count(), 9 + 1 + 3);
    }
}
