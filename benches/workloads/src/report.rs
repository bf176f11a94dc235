//! What a workload prints at the end, and how it fails.
//!
//! The last four lines of a successful run are machine-readable (`cargo xtask bench` reads
//! them):
//!
//! ```text
//! malloc_from=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
//! cpu_s=2.345678
//! time_s=1.234567
//! peak_rss_kib=56789
//! ```
//!
//! A workload may print lines of its own before them; `cargo xtask bench` also reads
//! `rss_after_free_kib=` (the resident set after the workload freed most of what it
//! allocated, [`current_rss_kib`]) where a program prints it (`rss-after-free` does).
//!
//! `cpu_s` is the user and system CPU time of the whole process (all its threads, set-up
//! included): unlike the elapsed time, it does not grow while other programs hold the CPUs.

use std::ffi::CStr;
use std::fmt;
use std::io::Write as _;
use std::process::exit;
use std::time::Duration;

use crate::Args;

/// What a workload did in its measured part, for the throughput line.
#[derive(Clone, Copy, Debug)]
pub struct Work {
    /// Operations done (what an operation is, `unit` says).
    pub ops: u64,
    /// The operation's name, plural: `"malloc/free pairs"`, `"replacements"`, ...
    pub unit: &'static str,
    /// How long the measured part took.
    pub elapsed: Duration,
}

/// Prints that a check failed (naming the program) and exits with status 1.
pub fn fail(msg: fmt::Arguments<'_>) -> ! {
    let name = std::env::args()
        .next()
        .and_then(|p| p.rsplit('/').next().map(str::to_owned))
        .unwrap_or_default();
    // Flush what the program printed so far so the message comes after it.
    let _ = std::io::stdout().flush();
    eprintln!("{name}: CHECK FAILED: {msg}");
    exit(1)
}

/// The process's peak resident set size in KiB (`VmHWM` of `/proc/self/status`).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The process's current resident set size in KiB: the second field of `/proc/self/statm`
/// (resident pages) times the page size. Unlike [`peak_rss_kib`], this falls when the
/// allocator gives memory back to the OS.
pub fn current_rss_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads the system's configuration.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = u64::try_from(page).ok().filter(|&p| p > 0)?;
    Some(pages * page / 1024)
}

/// The path of the shared object (or program) that defines the `malloc` this process calls,
/// as the dynamic linker resolved it: the C library's, or a preloaded allocator's.
pub fn malloc_from() -> Option<String> {
    let malloc: unsafe extern "C" fn(libc::size_t) -> *mut libc::c_void = libc::malloc;
    // SAFETY: an all-zero `Dl_info` is a valid value (null pointers); dladdr fills it in.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr reads no memory at the address, it looks it up in the loaded objects;
    // `info` is a valid place to write the answer.
    let found = unsafe { libc::dladdr(malloc as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr set `dli_fname` to a NUL-terminated path owned by the dynamic linker,
    // which lives as long as the object stays loaded (for the process's life here).
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(name.to_string_lossy().into_owned())
}

/// The user plus system CPU time of the whole process so far, seconds.
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: an all-zero `rusage` is a valid value; getrusage overwrites it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid place for getrusage to write to.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    Some(secs(ru.ru_utime) + secs(ru.ru_stime))
}

/// Prints the throughput line and the machine-readable lines that end every run:
/// `malloc_from=`, `cpu_s=`, `time_s=` and, last, `peak_rss_kib=`.
pub fn finish(name: &str, args: &Args, work: Work) {
    let secs = work.elapsed.as_secs_f64();
    let rate = work.ops as f64 / secs.max(1e-9);
    println!(
        "{name}: {} threads, scale {}: {} {} in {secs:.3} s, {:.3} M/s",
        args.threads,
        args.scale,
        work.ops,
        work.unit,
        rate / 1e6
    );
    println!(
        "malloc_from={}",
        malloc_from().unwrap_or_else(|| "?".to_owned())
    );
    match cpu_seconds() {
        Some(cpu) => println!("cpu_s={cpu:.6}"),
        None => fail(format_args!("getrusage failed")),
    }
    println!("time_s={secs:.6}");
    match peak_rss_kib() {
        Some(kib) => println!("peak_rss_kib={kib}"),
        None => fail(format_args!("cannot read VmHWM from /proc/self/status")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_peak_and_finds_malloc() {
        assert!(peak_rss_kib().is_some_and(|k| k > 0));
        let now = current_rss_kib().expect("statm is readable");
        assert!(now > 0 && now <= peak_rss_kib().unwrap(), "{now}");
        let from = malloc_from().expect("dladdr knows malloc");
        assert!(!from.is_empty());
        assert!(cpu_seconds().is_some_and(|c| c >= 0.0));
    }
}
