//! From runs to numbers: medians, ratios, geometric means, and the report's markdown and CSV.
//!
//! Each (workload, allocator) cell keeps the median over its successful rounds of the
//! program's time, the process's wall time and the peak RSS, and, for the workloads that
//! report it (`rss-after-free`), of the resident set after the frees. Ratios compare medians
//! (fam-alloc's over another allocator's, or over the fastest peer's: whichever of the other
//! allocators has the least median time on that workload); the geometric mean of a ratio is
//! taken over the workloads where both sides have a number. The targets are fixed here:
//! fam-alloc's time geometric mean at most [`TIME_TARGET`] times the fastest peer's, no
//! workload above [`WORKLOAD_TIME_TARGET`] times it, and its peak RSS geometric mean at most
//! [`RSS_TARGET`] times mimalloc 2's.

use std::fmt::Write as _;

use super::allocators::Allocator;
use super::runner::Sample;
use super::workloads::{Workload, COMMON_DIFFERENCES};

/// The most fam-alloc's time may be, as a fraction of the fastest peer's (geometric mean).
pub const TIME_TARGET: f64 = 0.95;
/// The most fam-alloc's time may be on any one workload, as a fraction of the fastest peer's.
pub const WORKLOAD_TIME_TARGET: f64 = 1.05;
/// The most fam-alloc's peak RSS may be, as a fraction of mimalloc's (geometric mean).
pub const RSS_TARGET: f64 = 1.1;

/// One run of one workload on one allocator.
#[derive(Clone, Debug)]
pub struct Run {
    /// Round number, from 1.
    pub round: usize,
    /// The workload's name.
    pub workload: &'static str,
    /// The allocator's name.
    pub alloc: &'static str,
    /// What it measured, or why it failed.
    pub result: Result<Sample, String>,
}

/// The medians of one (workload, allocator) cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    /// Median of the program's own time, seconds.
    pub time_s: f64,
    /// Fastest and slowest round of the program's time, seconds.
    pub time_range: (f64, f64),
    /// Median wall time of the process, seconds.
    pub wall_s: f64,
    /// Median CPU time of the process (user + system, all threads), seconds.
    pub cpu_s: f64,
    /// Median peak RSS, KiB.
    pub rss_kib: f64,
    /// Median resident set after the frees, KiB, over the rounds that reported one; `None`
    /// for workloads that do not report it.
    pub rss_after_free_kib: Option<f64>,
    /// Successful rounds.
    pub ok: usize,
    /// Failed rounds.
    pub failed: usize,
}

/// A measured quantity of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// The program's own time.
    Time,
    /// The process's wall time.
    Wall,
    /// The process's CPU time.
    Cpu,
    /// Peak RSS.
    Rss,
    /// The resident set after the frees (NaN in a cell that has none, so no ratio is taken).
    RssAfterFree,
}

impl Cell {
    /// The value of `m`.
    pub fn get(&self, m: Metric) -> f64 {
        match m {
            Metric::Time => self.time_s,
            Metric::Wall => self.wall_s,
            Metric::Cpu => self.cpu_s,
            Metric::Rss => self.rss_kib,
            Metric::RssAfterFree => self.rss_after_free_kib.unwrap_or(f64::NAN),
        }
    }
}

/// Every cell of a run: `cells[w][a]` for `workloads[w]` and `allocs[a]`; `None` where no
/// round succeeded.
#[derive(Clone, Debug)]
pub struct Table {
    /// Workload names, in the suite's order.
    pub workloads: Vec<&'static str>,
    /// Allocator names, in the report's order.
    pub allocs: Vec<&'static str>,
    /// The cells.
    pub cells: Vec<Vec<Option<Cell>>>,
    /// Failed rounds per cell, also where no round succeeded.
    pub failures: Vec<Vec<usize>>,
}

/// The median of `v` (the mean of the middle two for an even count); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// The geometric mean of `v`; `None` when empty.
pub fn geomean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
}

impl Table {
    /// Gathers `runs` into cells.
    pub fn new(runs: &[Run], workloads: &[&'static str], allocs: &[&'static str]) -> Table {
        let mut cells = vec![vec![None; allocs.len()]; workloads.len()];
        let mut failures = vec![vec![0; allocs.len()]; workloads.len()];
        for (wi, w) in workloads.iter().enumerate() {
            for (ai, a) in allocs.iter().enumerate() {
                let mine = runs.iter().filter(|r| r.workload == *w && r.alloc == *a);
                let ok: Vec<Sample> = mine.clone().filter_map(|r| r.result.clone().ok()).collect();
                let failed = mine.filter(|r| r.result.is_err()).count();
                failures[wi][ai] = failed;
                let pick = |f: fn(&Sample) -> f64| ok.iter().map(f).collect::<Vec<f64>>();
                let times = pick(|s| s.time_s);
                if let Some(time_s) = median(&times) {
                    let lo = times.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = times.iter().copied().fold(0.0, f64::max);
                    cells[wi][ai] = Some(Cell {
                        time_s,
                        time_range: (lo, hi),
                        wall_s: median(&pick(|s| s.wall_s)).unwrap_or(f64::NAN),
                        cpu_s: median(&pick(|s| s.cpu_s)).unwrap_or(f64::NAN),
                        rss_kib: median(&pick(|s| s.rss_kib as f64)).unwrap_or(f64::NAN),
                        rss_after_free_kib: median(
                            &ok.iter()
                                .filter_map(|s| s.rss_after_free_kib.map(|k| k as f64))
                                .collect::<Vec<f64>>(),
                        ),
                        ok: ok.len(),
                        failed,
                    });
                }
            }
        }
        Table {
            workloads: workloads.to_vec(),
            allocs: allocs.to_vec(),
            cells,
            failures,
        }
    }

    fn alloc_index(&self, name: &str) -> Option<usize> {
        self.allocs.iter().position(|a| *a == name)
    }

    /// The cell of workload `w` (by index) on allocator `a` (by name).
    pub fn cell(&self, w: usize, a: &str) -> Option<Cell> {
        self.cells[w][self.alloc_index(a)?]
    }

    /// `a`'s value of `m` over `b`'s for workload `w`.
    pub fn ratio(&self, w: usize, a: &str, b: &str, m: Metric) -> Option<f64> {
        let (x, y) = (self.cell(w, a)?.get(m), self.cell(w, b)?.get(m));
        (x.is_finite() && y.is_finite() && y > 0.0 && x > 0.0).then(|| x / y)
    }

    /// The geometric mean over the workloads of `a`'s value of `m` over `b`'s.
    pub fn geomean_ratio(&self, a: &str, b: &str, m: Metric) -> Option<f64> {
        let v: Vec<f64> = (0..self.workloads.len())
            .filter_map(|w| self.ratio(w, a, b, m))
            .collect();
        geomean(&v)
    }

    /// The allocator other than fam-alloc with the least median time on workload `w`.
    pub fn fastest_peer(&self, w: usize) -> Option<&'static str> {
        self.allocs
            .iter()
            .copied()
            .filter(|a| *a != "fam")
            .filter_map(|a| Some((a, self.cell(w, a)?.get(Metric::Time))))
            .filter(|(_, t)| t.is_finite() && *t > 0.0)
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .map(|(a, _)| a)
    }

    /// fam-alloc's time over the fastest peer's on workload `w`.
    pub fn ratio_to_fastest(&self, w: usize) -> Option<f64> {
        self.ratio(w, "fam", self.fastest_peer(w)?, Metric::Time)
    }

    /// The geometric mean over the workloads of [`Table::ratio_to_fastest`].
    pub fn geomean_to_fastest(&self) -> Option<f64> {
        let v: Vec<f64> = (0..self.workloads.len())
            .filter_map(|w| self.ratio_to_fastest(w))
            .collect();
        geomean(&v)
    }

    /// Whether workload `w` reports the resident set after its frees (some cell has it).
    pub fn has_rss_after_free(&self, w: usize) -> bool {
        self.cells[w]
            .iter()
            .any(|c| c.is_some_and(|c| c.rss_after_free_kib.is_some()))
    }

    /// Whether every workload has a number for `a`, so its geometric means cover the suite.
    pub fn complete(&self, a: &str) -> bool {
        (0..self.workloads.len()).all(|w| self.cell(w, a).is_some())
    }
}

/// How far `r` is over `target`, in percent: "9.5 %", "24 %".
fn over(r: f64, target: f64) -> String {
    let p = (r / target - 1.0) * 100.0;
    if p < 10.0 {
        format!("{p:.1} %")
    } else {
        format!("{p:.0} %")
    }
}

fn ratio_text(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

/// The summary: fam-alloc's ratios per workload, their geometric means and the targets.
pub fn summary_markdown(t: &Table) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | time fam/fastest peer | fastest peer | time fam/mimalloc3 | time fam/mimalloc | time fam/jemalloc | time fam/tcmalloc | time fam/glibc | peak RSS fam/mimalloc | peak RSS fam/glibc | wall fam/mimalloc | cpu fam/mimalloc |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (w, name) in t.workloads.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ratio_text(t.ratio_to_fastest(w)),
            t.fastest_peer(w).unwrap_or("-"),
            ratio_text(t.ratio(w, "fam", "mimalloc3", Metric::Time)),
            ratio_text(t.ratio(w, "fam", "mimalloc", Metric::Time)),
            ratio_text(t.ratio(w, "fam", "jemalloc", Metric::Time)),
            ratio_text(t.ratio(w, "fam", "tcmalloc", Metric::Time)),
            ratio_text(t.ratio(w, "fam", "glibc", Metric::Time)),
            ratio_text(t.ratio(w, "fam", "mimalloc", Metric::Rss)),
            ratio_text(t.ratio(w, "fam", "glibc", Metric::Rss)),
            ratio_text(t.ratio(w, "fam", "mimalloc", Metric::Wall)),
            ratio_text(t.ratio(w, "fam", "mimalloc", Metric::Cpu)),
        );
    }
    let g = |b: &str, m: Metric| format!("**{}**", ratio_text(t.geomean_ratio("fam", b, m)));
    let _ = writeln!(
        s,
        "| **geometric mean** | **{}** | | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        ratio_text(t.geomean_to_fastest()),
        g("mimalloc3", Metric::Time),
        g("mimalloc", Metric::Time),
        g("jemalloc", Metric::Time),
        g("tcmalloc", Metric::Time),
        g("glibc", Metric::Time),
        g("mimalloc", Metric::Rss),
        g("glibc", Metric::Rss),
        g("mimalloc", Metric::Wall),
        g("mimalloc", Metric::Cpu),
    );
    s
}

/// The resident set after the frees, for the workloads that report it: every allocator's
/// median in MiB and fam-alloc's ratio to each of the others. Empty when no workload reports
/// it.
pub fn rss_after_free_markdown(t: &Table) -> String {
    let rows: Vec<usize> = (0..t.workloads.len())
        .filter(|&w| t.has_rss_after_free(w))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let peers: Vec<&str> = t.allocs.iter().copied().filter(|a| *a != "fam").collect();
    let mut s = String::new();
    s.push_str("| workload |");
    for a in &t.allocs {
        let _ = write!(s, " RSS after free {a} MiB |");
    }
    for b in &peers {
        let _ = write!(s, " after free fam/{b} |");
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(t.allocs.len() + peers.len()));
    s.push('\n');
    for w in rows {
        let _ = write!(s, "| {} |", t.workloads[w]);
        for a in &t.allocs {
            let mib = t
                .cell(w, a)
                .and_then(|c| c.rss_after_free_kib)
                .map_or_else(|| "-".to_owned(), |k| format!("{:.1}", k / 1024.0));
            let _ = write!(s, " {mib} |");
        }
        for b in &peers {
            let _ = write!(
                s,
                " {} |",
                ratio_text(t.ratio(w, "fam", b, Metric::RssAfterFree))
            );
        }
        s.push('\n');
    }
    s
}

/// Every allocator's geometric means over the workloads, normalised to glibc.
pub fn allocators_markdown(t: &Table) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| allocator | time / glibc | peak RSS / glibc | wall / glibc | cpu / glibc |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for a in &t.allocs {
        let _ = writeln!(
            s,
            "| {a} | {} | {} | {} | {} |",
            ratio_text(t.geomean_ratio(a, "glibc", Metric::Time)),
            ratio_text(t.geomean_ratio(a, "glibc", Metric::Rss)),
            ratio_text(t.geomean_ratio(a, "glibc", Metric::Wall)),
            ratio_text(t.geomean_ratio(a, "glibc", Metric::Cpu)),
        );
    }
    s
}

/// The verdict on the three targets, and every workload that misses one, by how much.
pub fn targets_markdown(t: &Table) -> String {
    let mut s = String::new();
    let covered = t.complete("fam") && (0..t.workloads.len()).all(|w| t.fastest_peer(w).is_some());
    let what = format!("- Time geometric mean at most {TIME_TARGET:.2}x the fastest peer's");
    let _ = writeln!(
        s,
        "{}",
        match t.geomean_to_fastest() {
            Some(g) if !covered => format!(
                "{what}: **not measurable** (some workloads lack a number; over the rest: \
                 {g:.2}x)"
            ),
            Some(g) if g <= TIME_TARGET => format!("{what}: **met** ({g:.2}x)"),
            Some(g) => format!(
                "{what}: **missed** ({g:.2}x, {} over)",
                over(g, TIME_TARGET)
            ),
            None => format!("{what}: **not measurable** (no fam-alloc or no peer numbers)"),
        }
    );
    let what = format!("- Peak RSS geometric mean at most {RSS_TARGET:.2}x mimalloc's");
    let _ = writeln!(
        s,
        "{}",
        match t.geomean_ratio("fam", "mimalloc", Metric::Rss) {
            Some(g) if !t.complete("fam") || !t.complete("mimalloc") => format!(
                "{what}: **not measurable** (some workloads lack a number; over the rest: \
                 {g:.2}x)"
            ),
            Some(g) if g <= RSS_TARGET => format!("{what}: **met** ({g:.2}x)"),
            Some(g) => format!("{what}: **missed** ({g:.2}x, {} over)", over(g, RSS_TARGET)),
            None => format!("{what}: **not measurable** (no mimalloc or no fam-alloc numbers)"),
        }
    );
    let mut misses = Vec::new();
    for (w, name) in t.workloads.iter().enumerate() {
        let mut parts = Vec::new();
        if let (Some(r), Some(peer)) = (t.ratio_to_fastest(w), t.fastest_peer(w)) {
            if r > WORKLOAD_TIME_TARGET {
                parts.push(format!(
                    "time {r:.2}x {peer}'s, the fastest peer ({} over the \
                     {WORKLOAD_TIME_TARGET:.2}x target)",
                    over(r, WORKLOAD_TIME_TARGET),
                ));
            }
        }
        if let Some(r) = t.ratio(w, "fam", "mimalloc", Metric::Rss) {
            if r > RSS_TARGET {
                parts.push(format!(
                    "peak RSS {r:.2}x mimalloc's ({} over the {RSS_TARGET:.2}x target)",
                    over(r, RSS_TARGET)
                ));
            }
        }
        if let Some(r) = t.ratio(w, "fam", "glibc", Metric::Time) {
            if r > 1.0 {
                parts.push(format!("slower than glibc ({r:.2}x)"));
            }
        }
        if !parts.is_empty() {
            misses.push(format!("- `{name}`: {}", parts.join("; ")));
        }
    }
    let measurable = (0..t.workloads.len()).any(|w| t.ratio_to_fastest(w).is_some());
    if !measurable {
        let _ = writeln!(
            s,
            "\nNo workload has both fam-alloc and peer numbers: the per-workload targets cannot \
             be checked."
        );
    } else if misses.is_empty() {
        let _ = writeln!(s, "\nEvery workload is within the per-workload targets.");
    } else {
        let _ = writeln!(s, "\nWorkloads that miss a per-workload target:\n");
        for m in misses {
            let _ = writeln!(s, "{m}");
        }
    }
    s
}

/// The table of one workload: every allocator's medians and its ratios to mimalloc and glibc.
///
/// A workload that reports the resident set after its frees gets three more columns: that
/// figure and its ratios to mimalloc and glibc.
pub fn workload_markdown(t: &Table, w: usize) -> String {
    let after_free = t.has_rss_after_free(w);
    let mut s = String::new();
    s.push_str(
        "| allocator | time s | range s | wall s | cpu s | peak RSS MiB | time / mimalloc | time / glibc | RSS / mimalloc | RSS / glibc |",
    );
    if after_free {
        s.push_str(" RSS after free MiB | after free / mimalloc | after free / glibc |");
    }
    s.push_str("\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if after_free {
        s.push_str("---:|---:|---:|");
    }
    s.push('\n');
    for (ai, a) in t.allocs.iter().enumerate() {
        let Some(c) = t.cells[w][ai] else {
            let why = if t.failures[w][ai] > 0 {
                format!("FAILED ({} runs)", t.failures[w][ai])
            } else {
                "not run".to_owned()
            };
            let extra = if after_free { " | | |" } else { "" };
            let _ = writeln!(s, "| {a} | {why} | | | | | | | | |{extra}");
            continue;
        };
        let failed = if c.failed > 0 {
            format!(" ({} FAILED)", c.failed)
        } else {
            String::new()
        };
        let _ = write!(
            s,
            "| {a}{failed} | {:.3} | {:.3}..{:.3} | {:.3} | {:.3} | {:.1} | {} | {} | {} | {} |",
            c.time_s,
            c.time_range.0,
            c.time_range.1,
            c.wall_s,
            c.cpu_s,
            c.rss_kib / 1024.0,
            ratio_text(t.ratio(w, a, "mimalloc", Metric::Time)),
            ratio_text(t.ratio(w, a, "glibc", Metric::Time)),
            ratio_text(t.ratio(w, a, "mimalloc", Metric::Rss)),
            ratio_text(t.ratio(w, a, "glibc", Metric::Rss)),
        );
        if after_free {
            let mib = c
                .rss_after_free_kib
                .map_or_else(|| "-".to_owned(), |k| format!("{:.1}", k / 1024.0));
            let _ = write!(
                s,
                " {mib} | {} | {} |",
                ratio_text(t.ratio(w, a, "mimalloc", Metric::RssAfterFree)),
                ratio_text(t.ratio(w, a, "glibc", Metric::RssAfterFree)),
            );
        }
        s.push('\n');
    }
    s
}

/// What the report says about the run itself.
#[derive(Clone, Debug)]
pub struct Meta {
    /// The command that reproduces the run.
    pub command: String,
    /// When it started, UTC.
    pub started: String,
    /// How long it took, seconds (builds included).
    pub duration_s: f64,
    /// CPU and kernel.
    pub machine: String,
    /// Load averages at the start and the end.
    pub load: (String, String),
    /// Rounds, threads, scale.
    pub rounds: usize,
    /// Threads per workload.
    pub threads: usize,
    /// Work scale.
    pub scale: f64,
    /// The allocators, measured or missing.
    pub allocators: Vec<Allocator>,
    /// The criterion summary table, or why there is none, when it was asked for.
    pub criterion: Option<String>,
}

/// The whole report.
pub fn report_markdown(meta: &Meta, t: &Table, workloads: &[&Workload], runs: &[Run]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Allocator benchmarks\n");
    let _ = writeln!(
        s,
        "`{}`: {} round{}, {} threads, scale {}; started {}, took {}.",
        meta.command,
        meta.rounds,
        if meta.rounds == 1 { "" } else { "s" },
        meta.threads,
        meta.scale,
        meta.started,
        duration_text(meta.duration_s)
    );
    let _ = writeln!(
        s,
        "Machine: {}; load average {} at the start, {} at the end.\n",
        meta.machine, meta.load.0, meta.load.1
    );
    let _ = writeln!(
        s,
        "Every workload ran once per allocator per round, each run a fresh process, the \
         allocator chosen by `LD_PRELOAD` (nothing preloaded for glibc); each round runs the \
         allocators in a rotated order. Every program checks the content of its blocks and \
         prints which library its `malloc` came from, which the suite checks. Numbers are \
         medians over the rounds: time is the program's measured part (`time_s`), wall the \
         whole process, cpu the process's user + system CPU time (all threads; it does not \
         grow while other programs hold the CPUs, so it is the steadier number on a busy \
         machine), peak RSS its `VmHWM`. A ratio below 1 means fam-alloc is faster or \
         smaller. Raw runs: `results.csv`.\n"
    );
    let _ = writeln!(s, "| allocator | build | library |");
    let _ = writeln!(s, "|---|---|---|");
    for a in &meta.allocators {
        let lib = a.preload.as_ref().map_or_else(
            || "(none: the C library's own)".to_owned(),
            |p| format!("`{}`", p.display()),
        );
        match &a.missing {
            None => {
                let _ = writeln!(s, "| {} | {} | {lib} |", a.name, a.version);
            }
            Some(why) => {
                let _ = writeln!(s, "| {} | **MISSING**: {why} | |", a.name);
            }
        }
    }
    let _ = writeln!(s, "\n## fam-alloc against mimalloc and glibc\n");
    s.push_str(&summary_markdown(t));
    let after_free = rss_after_free_markdown(t);
    if !after_free.is_empty() {
        let _ = writeln!(
            s,
            "\nResident set after the frees (`rss_after_free_kib`, read from `/proc/self/statm` \
             once the program has freed most of its blocks and waited for the allocator to give \
             memory back; medians), for the workloads that report it:\n"
        );
        s.push_str(&after_free);
    }
    let _ = writeln!(s, "\nTargets:\n");
    s.push_str(&targets_markdown(t));
    let _ = writeln!(
        s,
        "\nGeometric means over the workloads, normalised to glibc:\n"
    );
    s.push_str(&allocators_markdown(t));
    let _ = writeln!(
        s,
        "\n![time per workload, normalised to glibc](chart.svg)\n\n\
         ![peak RSS per workload, normalised to glibc](rss.svg)\n"
    );
    let _ = writeln!(s, "## Workloads\n\n{COMMON_DIFFERENCES}.\n");
    for (w, wl) in workloads.iter().enumerate() {
        let _ = writeln!(s, "### {}\n\n{}.\n", wl.name, wl.about);
        match &wl.classic {
            Some(c) => {
                let _ = writeln!(s, "Stands for {}. Differs: {}.\n", c.program, c.differs);
            }
            None => {
                let _ = writeln!(s, "The suite's own workload (no classic original).\n");
            }
        }
        s.push_str(&workload_markdown(t, w));
        s.push('\n');
    }
    let failed: Vec<&Run> = runs.iter().filter(|r| r.result.is_err()).collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "## Failed runs\n");
        for r in failed {
            if let Err(e) = &r.result {
                let _ = writeln!(
                    s,
                    "- round {}, `{}` on {}: {e}",
                    r.round, r.workload, r.alloc
                );
            }
        }
        s.push('\n');
    }
    if let Some(c) = &meta.criterion {
        let _ = writeln!(
            s,
            "## Criterion: the in-process benchmarks\n\n`cargo bench -p fam-benches --bench alloc`, \
             summarised by `fam-bench-summary` (the allocators called through Rust's \
             `GlobalAlloc`, side by side in one process; mimalloc and jemalloc there are the \
             Rust crates' builds, not the Debian libraries above).\n\n{c}"
        );
    }
    s
}

/// "3 min 12 s".
pub fn duration_text(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{secs:.1} s")
    }
}

/// The header of `results.csv`. `rss_after_free_kib` comes last, after `error`, so the
/// columns before it keep their places; it is empty for workloads that do not report it.
pub const CSV_HEADER: [&str; 12] = [
    "round",
    "workload",
    "allocator",
    "threads",
    "scale",
    "ok",
    "time_s",
    "wall_s",
    "cpu_s",
    "peak_rss_kib",
    "error",
    "rss_after_free_kib",
];

/// One record of `results.csv`, a field per column of [`CSV_HEADER`]; the `csv` writer quotes
/// what needs it. An error's line breaks become spaces, so each run stays on one line.
pub fn csv_record(r: &Run, threads: usize, scale: f64) -> [String; 12] {
    let (ok, [time_s, wall_s, cpu_s, rss, after_free], error) = match &r.result {
        Ok(s) => (
            "1",
            [
                format!("{:.6}", s.time_s),
                format!("{:.6}", s.wall_s),
                format!("{:.6}", s.cpu_s),
                s.rss_kib.to_string(),
                s.rss_after_free_kib
                    .map_or_else(String::new, |k| k.to_string()),
            ],
            String::new(),
        ),
        Err(e) => ("0", Default::default(), e.replace(['\r', '\n'], " ")),
    };
    [
        r.round.to_string(),
        r.workload.to_owned(),
        r.alloc.to_owned(),
        threads.to_string(),
        scale.to_string(),
        ok.to_owned(),
        time_s,
        wall_s,
        cpu_s,
        rss,
        error,
        after_free,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(round: usize, workload: &'static str, alloc: &'static str, t: f64, rss: u64) -> Run {
        Run {
            round,
            workload,
            alloc,
            result: Ok(Sample {
                time_s: t,
                wall_s: t + 0.01,
                cpu_s: 2.0 * t,
                rss_kib: rss,
                rss_after_free_kib: None,
            }),
        }
    }

    /// A run of a workload that reports the resident set after its frees.
    fn run_after_free(alloc: &'static str, rss: u64, after_free: u64) -> Run {
        let mut r = run(1, "r", alloc, 1.0, rss);
        if let Ok(s) = &mut r.result {
            s.rss_after_free_kib = Some(after_free);
        }
        r
    }

    fn table() -> Table {
        let mut runs = Vec::new();
        for round in 1..=3 {
            let slow = if round == 2 { 10.0 } else { 1.0 };
            runs.push(run(round, "a", "fam", 0.5 * slow, 2048));
            runs.push(run(round, "a", "mimalloc", 1.0, 1024));
            runs.push(run(round, "a", "glibc", 2.0, 4096));
            runs.push(run(round, "b", "fam", 2.0, 1024));
            runs.push(run(round, "b", "mimalloc", 1.0, 1024));
            runs.push(run(round, "b", "glibc", 1.0, 1024));
        }
        runs.push(Run {
            round: 4,
            workload: "b",
            alloc: "glibc",
            result: Err("exit status: 1: CHECK FAILED".into()),
        });
        Table::new(
            &runs,
            &["a", "b"],
            &["fam", "mimalloc", "jemalloc", "glibc"],
        )
    }

    #[test]
    fn medians_ignore_an_outlier_round() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let t = table();
        let c = t.cell(0, "fam").unwrap();
        assert_eq!(c.time_s, 0.5);
        assert_eq!(c.time_range, (0.5, 5.0));
        assert_eq!(c.ok, 3);
        assert_eq!(t.cell(1, "glibc").unwrap().failed, 1);
        assert_eq!(t.cell(0, "jemalloc"), None);
    }

    #[test]
    fn ratios_and_geometric_means() {
        let t = table();
        assert_eq!(t.ratio(0, "fam", "mimalloc", Metric::Time), Some(0.5));
        assert_eq!(t.ratio(1, "fam", "mimalloc", Metric::Time), Some(2.0));
        // sqrt(0.5 * 2) = 1.
        let g = t.geomean_ratio("fam", "mimalloc", Metric::Time).unwrap();
        assert!((g - 1.0).abs() < 1e-12);
        // RSS: 2.0 and 1.0 -> sqrt(2).
        let g = t.geomean_ratio("fam", "mimalloc", Metric::Rss).unwrap();
        assert!((g - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(t.geomean_ratio("jemalloc", "glibc", Metric::Time), None);
    }

    #[test]
    fn summary_and_targets_name_the_misses() {
        let t = table();
        let s = summary_markdown(&t);
        // Workload a: mimalloc (1.0) is the fastest peer; b: mimalloc and glibc tie at 1.0, and
        // the first listed wins.
        assert!(
            s.contains("| a | 0.50 | mimalloc | - | 0.50 | - | - | 0.25 | 2.00 | 0.50 |"),
            "{s}"
        );
        assert!(
            s.contains("| b | 2.00 | mimalloc | - | 2.00 | - | - | 2.00 | 1.00 | 1.00 |"),
            "{s}"
        );
        assert!(
            s.contains("| **geometric mean** | **1.00** | | **-** | **1.00** |"),
            "{s}"
        );
        let v = targets_markdown(&t);
        assert!(
            v.contains(
                "Time geometric mean at most 0.95x the fastest peer's: **missed** (1.00x, 5.3 % over)"
            ),
            "{v}"
        );
        assert!(
            v.contains("Peak RSS geometric mean at most 1.10x mimalloc's: **missed** (1.41x"),
            "{v}"
        );
        assert!(v.contains("- `a`: peak RSS 2.00x"), "{v}");
        assert!(v.contains("- `b`: time 2.00x mimalloc's, the fastest peer (90 % over the 1.05x target); slower than glibc (2.00x)"), "{v}");
        let w = workload_markdown(&t, 1);
        assert!(w.contains("| glibc (1 FAILED) | 1.000 |"), "{w}");
        assert!(w.contains("| 1.010 | 2.000 | 1.0 |"), "{w}");
        assert!(w.contains("| jemalloc | not run |"), "{w}");
        // No workload here reports the resident set after its frees: no such table or column.
        assert!(!w.contains("after free"), "{w}");
        assert_eq!(rss_after_free_markdown(&t), "");
    }

    #[test]
    fn the_fastest_peer_is_whichever_other_allocator_took_least() {
        let runs = vec![
            run(1, "a", "fam", 1.0, 1024),
            run(1, "a", "mimalloc3", 0.8, 1024),
            run(1, "a", "mimalloc", 1.0, 1024),
            run(1, "a", "glibc", 2.0, 1024),
            run(1, "b", "fam", 0.9, 1024),
            run(1, "b", "mimalloc", 1.0, 1024),
            run(1, "b", "glibc", 0.95, 1024),
        ];
        let t = Table::new(
            &runs,
            &["a", "b"],
            &["fam", "mimalloc3", "mimalloc", "glibc"],
        );
        assert_eq!(t.fastest_peer(0), Some("mimalloc3"));
        assert_eq!(t.ratio_to_fastest(0), Some(1.25));
        assert_eq!(t.fastest_peer(1), Some("glibc"));
        let g = t.geomean_to_fastest().unwrap();
        assert!((g - (1.25f64 * 0.9 / 0.95).sqrt()).abs() < 1e-12);
        let v = targets_markdown(&t);
        assert!(v.contains("**missed** (1.09x, 15 % over)"), "{v}");
        assert!(
            v.contains(
                "- `a`: time 1.25x mimalloc3's, the fastest peer (19 % over the 1.05x target)"
            ),
            "{v}"
        );
        assert!(!v.contains("- `b`"), "{v}");
    }

    #[test]
    fn rss_after_free_is_shown_where_a_workload_reports_it() {
        let mut runs = vec![
            run(1, "a", "fam", 1.0, 1024),
            run(1, "a", "mimalloc", 1.0, 1024),
            run_after_free("fam", 8192, 2048),
            run_after_free("mimalloc", 4096, 4096),
            run_after_free("glibc", 8192, 8192),
        ];
        // A second round where fam holds more: the median is of both rounds.
        runs.push(Run {
            round: 2,
            ..run_after_free("fam", 8192, 4096)
        });
        let t = Table::new(
            &runs,
            &["a", "r"],
            &["fam", "mimalloc", "jemalloc", "glibc"],
        );
        assert!(!t.has_rss_after_free(0) && t.has_rss_after_free(1));
        assert_eq!(t.cell(1, "fam").unwrap().rss_after_free_kib, Some(3072.0));
        assert_eq!(t.ratio(0, "fam", "mimalloc", Metric::RssAfterFree), None);
        assert_eq!(
            t.ratio(1, "fam", "mimalloc", Metric::RssAfterFree),
            Some(0.75)
        );
        let s = rss_after_free_markdown(&t);
        assert_eq!(
            s,
            "| workload | RSS after free fam MiB | RSS after free mimalloc MiB | RSS after free \
             jemalloc MiB | RSS after free glibc MiB | after free fam/mimalloc | after free \
             fam/jemalloc | after free fam/glibc |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n\
             | r | 3.0 | 4.0 | - | 8.0 | 0.75 | - | 0.38 |\n"
        );
        // The workload without the figure keeps the usual table; the one with it gets three
        // more columns.
        let a = workload_markdown(&t, 0);
        assert!(!a.contains("after free"), "{a}");
        let r = workload_markdown(&t, 1);
        assert!(
            r.starts_with(
                "| allocator | time s | range s | wall s | cpu s | peak RSS MiB | time / mimalloc \
                 | time / glibc | RSS / mimalloc | RSS / glibc | RSS after free MiB | after free \
                 / mimalloc | after free / glibc |\n|---|---:|---:|---:|---:|---:|---:|---:|---:\
                 |---:|---:|---:|---:|\n"
            ),
            "{r}"
        );
        assert!(
            r.contains("| 8.0 | 1.00 | 1.00 | 2.00 | 1.00 | 3.0 | 0.75 | 0.38 |\n"),
            "{r}"
        );
        assert!(r.contains("| glibc | 1.000 |"), "{r}");
        assert!(
            r.contains("| 8.0 | 1.00 | 1.00 | 2.00 | 1.00 | 8.0 | 2.00 | 1.00 |\n"),
            "{r}"
        );
        assert!(
            r.contains("| jemalloc | not run | | | | | | | | | | | |\n"),
            "{r}"
        );
        // The CSV field is the figure, empty for the others.
        let rec = csv_record(&runs[2], 1, 1.0);
        assert_eq!(rec[11], "2048");
        assert_eq!(csv_record(&runs[0], 1, 1.0)[11], "");
    }

    /// Each workload's section says which classic program it stands for and how it differs,
    /// or that it is the suite's own, after the differences every port shares.
    #[test]
    fn the_report_says_how_each_port_differs() {
        use super::super::workloads::Classic;
        let ported = Workload {
            name: "a",
            about: "does a",
            classic: Some(Classic {
                program: "`a.c`: `a 5`",
                differs: "fewer rounds",
            }),
        };
        let own = Workload {
            name: "b",
            about: "does b",
            classic: None,
        };
        let meta = Meta {
            command: "cargo xtask bench".into(),
            started: "now".into(),
            duration_s: 1.0,
            machine: "m".into(),
            load: ("0".into(), "0".into()),
            rounds: 3,
            threads: 2,
            scale: 1.0,
            allocators: Vec::new(),
            criterion: None,
        };
        let md = report_markdown(&meta, &table(), &[&ported, &own], &[]);
        let section = &md[md.find("## Workloads").expect("a workloads section")..];
        assert!(section.contains(COMMON_DIFFERENCES), "{section}");
        assert!(
            section
                .contains("### a\n\ndoes a.\n\nStands for `a.c`: `a 5`. Differs: fewer rounds.\n"),
            "{section}"
        );
        assert!(
            section
                .contains("### b\n\ndoes b.\n\nThe suite's own workload (no classic original).\n"),
            "{section}"
        );
    }

    #[test]
    fn allocators_table_has_every_metric() {
        let s = allocators_markdown(&table());
        assert!(
            s.starts_with(
                "| allocator | time / glibc | peak RSS / glibc | wall / glibc | cpu / glibc |"
            ),
            "{s}"
        );
        // fam over glibc: time 0.25 and 2.0, RSS 0.5 and 1.0, each mean 0.71; cpu is twice
        // the time in every run, so its ratios are the time's.
        assert!(s.contains("| fam | 0.71 | 0.71 | 0.71 | 0.71 |"), "{s}");
        assert!(s.contains("| jemalloc | - | - | - | - |"), "{s}");
    }

    #[test]
    fn csv_records_quote_errors_and_read_back() {
        let text = |records: &[[String; 12]]| {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(CSV_HEADER).unwrap();
            for r in records {
                w.write_record(r).unwrap();
            }
            String::from_utf8(w.into_inner().unwrap()).unwrap()
        };
        let t = run(1, "a", "fam", 0.5, 10);
        let f = Run {
            result: Err("said \"no\", twice\nthen stopped".into()),
            ..t
        };
        let out = text(&[csv_record(&t, 2, 1.0), csv_record(&f, 2, 0.3)]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert_eq!(lines[1], "1,a,fam,2,1,1,0.500000,0.510000,1.000000,10,,");
        assert_eq!(
            lines[2],
            "1,a,fam,2,0.3,0,,,,,\"said \"\"no\"\", twice then stopped\","
        );
        assert_eq!(lines.len(), 3);
        let mut reader = csv::Reader::from_reader(out.as_bytes());
        assert_eq!(reader.headers().unwrap(), CSV_HEADER.as_slice());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[1][10], "said \"no\", twice then stopped");
        assert_eq!(&rows[0][9], "10");
    }
}
