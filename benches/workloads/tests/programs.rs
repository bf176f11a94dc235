//! Every workload program runs (small scale, two threads), passes its own checks and ends with
//! the lines `cargo xtask bench` reads (`rss-after-free` also with its `rss_after_free_kib=`).

use std::process::Command;

/// Each program with the path cargo built it at.
const PROGRAMS: &[(&str, &str)] = &[
    ("larson", env!("CARGO_BIN_EXE_larson")),
    ("xmalloc", env!("CARGO_BIN_EXE_xmalloc")),
    ("cache-thrash", env!("CARGO_BIN_EXE_cache-thrash")),
    ("cache-scratch", env!("CARGO_BIN_EXE_cache-scratch")),
    ("mstress", env!("CARGO_BIN_EXE_mstress")),
    ("mixed", env!("CARGO_BIN_EXE_mixed")),
    ("glibc-simple", env!("CARGO_BIN_EXE_glibc-simple")),
    ("glibc-thread", env!("CARGO_BIN_EXE_glibc-thread")),
    ("large", env!("CARGO_BIN_EXE_large")),
    ("realloc", env!("CARGO_BIN_EXE_realloc")),
    ("malloc-large", env!("CARGO_BIN_EXE_malloc-large")),
    ("rss-after-free", env!("CARGO_BIN_EXE_rss-after-free")),
];

/// The value of the last line starting with `key=`.
fn value<'a>(stdout: &'a str, key: &str) -> Option<&'a str> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn every_program_runs_checks_and_reports() {
    for (name, exe) in PROGRAMS {
        let out = Command::new(exe)
            .args(["--threads", "2", "--scale", "0.01"])
            .output()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(lines.len() >= 4, "{name}: {stdout}");
        assert!(
            lines[lines.len() - 1].starts_with("peak_rss_kib="),
            "{name}"
        );
        assert!(lines[lines.len() - 2].starts_with("time_s="), "{name}");
        let time: f64 = value(&stdout, "time_s").unwrap().parse().unwrap();
        assert!(time > 0.0 && time < 60.0, "{name}: {time}");
        let cpu: f64 = value(&stdout, "cpu_s").unwrap().parse().unwrap();
        assert!(cpu > 0.0, "{name}: cpu {cpu}");
        let rss: u64 = value(&stdout, "peak_rss_kib").unwrap().parse().unwrap();
        assert!(rss > 0, "{name}");
        let from = value(&stdout, "malloc_from").unwrap();
        assert!(from.contains("libc.so"), "{name}: malloc from {from}");
        // The throughput line comes just before the machine-readable ones (a program may print
        // lines of its own before it).
        let summary = lines[lines.len() - 5];
        assert!(
            summary.starts_with(&format!("{name}: 2 threads")),
            "{name}: {summary}"
        );
        if *name == "rss-after-free" {
            let after: u64 = value(&stdout, "rss_after_free_kib")
                .unwrap()
                .parse()
                .unwrap();
            let live: u64 = value(&stdout, "live_kib").unwrap().parse().unwrap();
            assert!(
                after > 0 && after <= rss,
                "{name}: {after} after free, peak {rss}"
            );
            assert!(
                live > 0 && live < after,
                "{name}: {live} live, {after} resident"
            );
        } else {
            assert_eq!(value(&stdout, "rss_after_free_kib"), None, "{name}");
        }
    }
}

#[test]
fn bad_arguments_are_refused_and_help_is_printed() {
    let (_, exe) = PROGRAMS[0];
    let out = Command::new(exe).args(["--threads", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
    let out = Command::new(exe).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--scale F"));
}
