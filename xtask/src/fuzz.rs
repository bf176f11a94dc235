//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/` (see `fuzz/README.md`).
//!
//! Needs a nightly toolchain (libFuzzer's instrumentation is unstable): without one the task
//! says it is skipped and succeeds. With nightly but without cargo-fuzz, it installs cargo-fuzz
//! (`cargo install cargo-fuzz --locked`). Each target runs for the given seconds on its corpus
//! (`fuzz/corpus/NAME`, kept between runs, not committed) and its regression inputs
//! (`fuzz/regressions/NAME`, committed; every one of them runs first). A crash fails the task
//! and names the input libFuzzer wrote to `fuzz/artifacts/NAME/`.

use std::io::{BufRead, BufReader};
use std::process::{exit, Command, Stdio};
use std::time::Instant;

use super::{cargo, workspace_root};

pub const USAGE: &str = "\
cargo xtask fuzz [--seconds N] [--target NAME]   the cargo-fuzz targets (nightly; skipped without)
    --seconds N          seconds per target (default 600)
    --target NAME        only this target (ops, bad_pointers); default all";

/// The fuzz targets, in the order they run.
pub const TARGETS: &[&str] = &["ops", "bad_pointers"];
/// Seconds per target for `cargo xtask fuzz`.
const DEFAULT_SECONDS: u64 = 600;
/// Seconds per target for the `fuzz` step of `cargo xtask ci`.
pub const CI_SECONDS: u64 = 20;

/// Runs `cargo xtask fuzz ARGS`; never returns.
pub fn main(mut args: lexopt::Parser) -> ! {
    use lexopt::Arg::{Long, Short};
    let mut seconds = DEFAULT_SECONDS;
    let mut targets: Vec<&str> = TARGETS.to_vec();
    loop {
        let arg = match args.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => usage(&e.to_string()),
        };
        match arg {
            Long("seconds") => match args
                .value()
                .ok()
                .and_then(|s| s.into_string().ok()?.parse().ok())
            {
                Some(n) if n > 0 => seconds = n,
                _ => usage("--seconds needs a number of seconds above 0"),
            },
            Long("target") => match args.value().map(|t| t.into_string()) {
                Ok(Ok(t)) => match TARGETS.iter().find(|&&known| known == t) {
                    Some(&known) => targets = vec![known],
                    None => usage(&format!("unknown target `{t}`")),
                },
                Ok(Err(t)) => usage(&format!("unknown target `{}`", t.to_string_lossy())),
                Err(_) => usage("--target needs a target name"),
            },
            Long("help") | Short('h') => {
                println!("{USAGE}");
                exit(0);
            }
            other => usage(&format!(
                "unknown argument `{}`",
                crate::option_text(&other)
            )),
        }
    }
    exit(if run(seconds, &targets) { 0 } else { 1 })
}

fn usage(msg: &str) -> ! {
    eprintln!("xtask fuzz: {msg}\n{USAGE}");
    exit(2)
}

/// Fuzzes each of `targets` for `seconds`; true when nothing crashed (or fuzzing is skipped).
pub fn run(seconds: u64, targets: &[&str]) -> bool {
    if !nightly(&["--version"]) {
        println!("fuzz: skipped (no nightly toolchain is installed)");
        return true;
    }
    if !nightly(&["fuzz", "--version"]) {
        println!("fuzz: cargo-fuzz is missing; installing it");
        if !cargo(&["install", "cargo-fuzz", "--locked"], &[]) {
            eprintln!("fuzz: installing cargo-fuzz failed");
            return false;
        }
    }
    let root = workspace_root();
    // The allocator replaces the heap that AddressSanitizer would watch, so the targets are
    // built without a sanitizer (fuzz/README.md says why).
    let common = ["--fuzz-dir", "fuzz", "--sanitizer", "none"];
    let mut build = vec!["+nightly", "fuzz", "build"];
    build.extend(common);
    if !cargo(&build, &[]) {
        return false;
    }
    let mut ok = true;
    let mut results = Vec::new();
    for &target in targets {
        let corpus = format!("fuzz/corpus/{target}");
        let regressions = format!("fuzz/regressions/{target}");
        for dir in [&corpus, &regressions] {
            if let Err(e) = std::fs::create_dir_all(root.join(dir)) {
                eprintln!("fuzz: cannot create {dir}: {e}");
                return false;
            }
        }
        let max_time = format!("-max_total_time={seconds}");
        let mut args = vec!["+nightly", "fuzz", "run"];
        args.extend(common);
        args.extend([target, &corpus, &regressions, "--"]);
        args.extend([
            max_time.as_str(),
            "-timeout=60",
            "-rss_limit_mb=4096",
            "-print_final_stats=1",
        ]);
        println!("\n==> xtask fuzz: {target} for {seconds} s");
        let started = Instant::now();
        let outcome = libfuzzer(&args);
        let secs = started.elapsed().as_secs_f64();
        match &outcome.crash {
            None if outcome.success => {}
            None => {
                ok = false;
                eprintln!("fuzz: {target} failed without writing a crash input");
            }
            Some(artifact) => {
                ok = false;
                eprintln!(
                    "fuzz: {target} crashed on {artifact}\n  reproduce: cargo +nightly fuzz run \
                     --fuzz-dir fuzz --sanitizer none {target} {artifact}\n  then keep it: \
                     copy it into {regressions}/ (the tests replay that folder too)"
                );
            }
        }
        results.push((target, secs, outcome));
    }
    println!("\nxtask fuzz summary:");
    for (target, secs, o) in &results {
        let status = match (&o.crash, o.success) {
            (Some(a), _) => format!("CRASHED: {a}"),
            (None, true) => "ok".to_string(),
            (None, false) => "FAILED".to_string(),
        };
        let runs = o.runs.map_or("? runs".to_string(), |n| format!("{n} runs"));
        println!("  {target:<14} {secs:>7.1} s  {runs:>14}  {status}");
    }
    ok
}

/// What a libFuzzer run said about itself.
struct Outcome {
    success: bool,
    /// The input it wrote for a crash, if any.
    crash: Option<String>,
    /// Its final count of runs.
    runs: Option<u64>,
}

/// Runs `cargo ARGS` (a `cargo fuzz run`), passing libFuzzer's output through without its
/// line per new corpus input, and reads the run count and any crash input from it.
fn libfuzzer(args: &[&str]) -> Outcome {
    println!("$ cargo {}", args.join(" "));
    let child = nightly_command(args)
        .current_dir(workspace_root())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            return Outcome {
                success: false,
                crash: None,
                runs: None,
            };
        }
    };
    let mut crash = None;
    let mut runs = None;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(path) = line.split("Test unit written to ").nth(1) {
                crash = Some(path.trim().to_string());
            }
            if let Some(n) = line
                .strip_prefix("Done ")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
            {
                runs = Some(n);
            }
            let noise = line.contains(" NEW    cov:")
                || line.contains(" REDUCE cov:")
                || (line.starts_with('"') && line.contains("# Uses:"));
            if !noise {
                eprintln!("{line}");
            }
        }
    }
    let success = child.wait().is_ok_and(|s| s.success());
    Outcome {
        success,
        crash,
        runs,
    }
}

/// `cargo ARGS` through the rustup proxy, free to pick the toolchain `ARGS` names.
fn nightly_command(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(args)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC");
    cmd
}

/// Whether `cargo +nightly ARGS` runs and succeeds (quietly).
fn nightly(args: &[&str]) -> bool {
    let mut full = vec!["+nightly"];
    full.extend(args);
    nightly_command(&full)
        .current_dir(workspace_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
