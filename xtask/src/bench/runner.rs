//! One run: a workload program in a fresh process on one allocator.
//!
//! The program is started with `--threads` and `--scale`, with `LD_PRELOAD` set to the
//! allocator's library (or removed, for the C library's own malloc). Its wall time is taken
//! around the process, from spawn to exit; its own time (`time_s=`, the measured part), its
//! CPU time (`cpu_s=`) and peak RSS (`peak_rss_kib=`) are read from its last lines, and the
//! resident set after its frees (`rss_after_free_kib=`) where the program prints one (only
//! some do; its absence is no failure). The run counts as failed if the program exits with an
//! error (its own checks failed, or it crashed), if its output lacks those lines (or has an
//! `rss_after_free_kib=` line that is not a number), if its `malloc` did not come from the
//! allocator meant (`malloc_from=`, so a preload that silently did not take is caught), or if
//! it runs past the time limit (it is then killed).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::allocators::Allocator;

/// What one successful run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// The program's own time for its measured part, seconds.
    pub time_s: f64,
    /// The process's wall time, spawn to exit, seconds.
    pub wall_s: f64,
    /// The process's user + system CPU time, seconds (all threads).
    pub cpu_s: f64,
    /// The process's peak resident set (VmHWM), KiB.
    pub rss_kib: u64,
    /// The resident set after the program freed most of its blocks, KiB
    /// (`rss_after_free_kib=`); `None` for programs that do not report it.
    pub rss_after_free_kib: Option<u64>,
}

/// Runs `exe` once on `alloc`; the sample, or why the run failed.
pub fn run_once(
    exe: &Path,
    alloc: &Allocator,
    threads: usize,
    scale: f64,
    timeout: Duration,
) -> Result<Sample, String> {
    let mut cmd = Command::new(exe);
    cmd.args([
        "--threads",
        &threads.to_string(),
        "--scale",
        &scale.to_string(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    match &alloc.preload {
        Some(lib) => cmd.env("LD_PRELOAD", lib),
        None => cmd.env_remove("LD_PRELOAD"),
    };
    let t0 = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let timed_out = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let timed_out = Arc::clone(&timed_out);
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
                timed_out.store(true, Ordering::SeqCst);
                // The child is still ours (not reaped until `wait` returns), so the pid is too.
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        })
    };
    let out = child.wait_with_output();
    let wall_s = t0.elapsed().as_secs_f64();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    let out = out.map_err(|e| format!("waiting for {}: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if timed_out.load(Ordering::SeqCst) {
        return Err(format!(
            "killed after the {} s time limit",
            timeout.as_secs()
        ));
    }
    if !out.status.success() {
        return Err(format!("{}: {}", out.status, tail(&stderr, 5)));
    }
    parse(&stdout, wall_s, alloc)
}

/// Reads the sample from a successful run's standard output.
pub fn parse(stdout: &str, wall_s: f64, alloc: &Allocator) -> Result<Sample, String> {
    let from = value(stdout, "malloc_from").ok_or("no malloc_from= line")?;
    if !alloc.owns_malloc_from(from) {
        return Err(format!(
            "malloc came from {from}, not from {}'s library (was the preload ignored?)",
            alloc.name
        ));
    }
    let time_s = value(stdout, "time_s")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0)
        .ok_or("no time_s= line")?;
    let cpu_s = value(stdout, "cpu_s")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or("no cpu_s= line")?;
    let rss_kib = value(stdout, "peak_rss_kib")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or("no peak_rss_kib= line")?;
    let rss_after_free_kib = match value(stdout, "rss_after_free_kib") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| format!("rss_after_free_kib={v} is not a count of KiB"))?,
        ),
    };
    Ok(Sample {
        time_s,
        wall_s,
        cpu_s,
        rss_kib,
        rss_after_free_kib,
    })
}

/// The value of the last line `key=value` of `text`.
fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
}

/// The last `n` non-empty lines of `text`, joined with " | ".
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glibc() -> Allocator {
        Allocator {
            name: "glibc",
            preload: None,
            version: String::new(),
            missing: None,
        }
    }

    #[test]
    fn parses_the_last_lines() {
        let out = "larson: 2 threads ...\nmalloc_from=/lib/x86_64-linux-gnu/libc.so.6\n\
                   cpu_s=2.5\ntime_s=1.250000\npeak_rss_kib=4096\n";
        let s = parse(out, 1.5, &glibc()).unwrap();
        assert_eq!(
            s,
            Sample {
                time_s: 1.25,
                wall_s: 1.5,
                cpu_s: 2.5,
                rss_kib: 4096,
                rss_after_free_kib: None,
            }
        );
    }

    #[test]
    fn reads_the_rss_after_free_line_where_there_is_one() {
        let out = "rss_after_free_kib=15396\nlive_kib=2065\n\
                   rss-after-free: 2 threads ...\nmalloc_from=/lib/x86_64-linux-gnu/libc.so.6\n\
                   cpu_s=0.2\ntime_s=0.125\npeak_rss_kib=133968\n";
        let s = parse(out, 1.25, &glibc()).unwrap();
        assert_eq!(
            s,
            Sample {
                time_s: 0.125,
                wall_s: 1.25,
                cpu_s: 0.2,
                rss_kib: 133_968,
                rss_after_free_kib: Some(15_396),
            }
        );
        // Absent: the other workloads, which still parse.
        let out = "malloc_from=/lib/libc.so.6\ncpu_s=1\ntime_s=1\npeak_rss_kib=1\n";
        assert_eq!(parse(out, 1.0, &glibc()).unwrap().rss_after_free_kib, None);
        // Present but not a number: a failed run, not a silently missing figure.
        let out = "rss_after_free_kib=lots\nmalloc_from=/lib/libc.so.6\ncpu_s=1\ntime_s=1\n\
                   peak_rss_kib=1\n";
        assert!(parse(out, 1.0, &glibc())
            .unwrap_err()
            .contains("rss_after_free_kib=lots"));
    }

    #[test]
    fn refuses_a_wrong_allocator_or_missing_lines() {
        let out = "malloc_from=/usr/lib/libjemalloc.so.2\ncpu_s=1\ntime_s=1\npeak_rss_kib=1\n";
        assert!(parse(out, 1.0, &glibc())
            .unwrap_err()
            .contains("libjemalloc"));
        let out = "malloc_from=/lib/libc.so.6\ncpu_s=1\npeak_rss_kib=1\n";
        assert!(parse(out, 1.0, &glibc()).unwrap_err().contains("time_s"));
    }

    #[test]
    fn a_hung_program_is_killed() {
        let sh = Path::new("/bin/sh");
        // `sh --threads ...` fails at once, which is a failed run, not a hang.
        let r = run_once(sh, &glibc(), 1, 1.0, Duration::from_secs(5));
        assert!(r.is_err());
        // A script that sleeps past the limit is killed.
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("hang");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        let mut perm = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&script, perm).unwrap();
        let t0 = Instant::now();
        let r = run_once(&script, &glibc(), 1, 1.0, Duration::from_secs(1));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(r.unwrap_err().contains("time limit"));
        assert!(t0.elapsed() < Duration::from_secs(20));
    }
}
