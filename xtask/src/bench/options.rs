//! The command line of `cargo xtask bench`.

use super::workloads::{Workload, WORKLOADS};

/// Rounds of a full run.
pub const FULL_ROUNDS: usize = 5;
/// Rounds of a `--quick` run.
pub const QUICK_ROUNDS: usize = 2;
/// Work scale of a `--quick` run (a full run uses 1.0).
pub const QUICK_SCALE: f64 = 0.5;
/// Seconds a single workload run may take before it is killed and counted as failed.
pub const DEFAULT_TIMEOUT_S: u64 = 120;

/// What `cargo xtask bench` was asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// `--quick`: fewer rounds, less work per run.
    pub quick: bool,
    /// Rounds: every workload runs once per allocator per round.
    pub rounds: usize,
    /// The workloads to run, in the suite's order.
    pub workloads: Vec<&'static Workload>,
    /// Thread counts: the suite runs once at each, in this order.
    pub threads: Vec<usize>,
    /// Work scale passed to each workload.
    pub scale: f64,
    /// Also run the criterion suite and include its summary.
    pub criterion: bool,
    /// Install missing allocator packages with apt-get.
    pub install: bool,
    /// Seconds one run may take.
    pub timeout_s: u64,
}

/// The usage text.
pub const USAGE: &str = "\
cargo xtask bench [OPTIONS]   the allocator benchmark suite (fam, mimalloc 3 and 2, jemalloc, tcmalloc, glibc)
    --quick              2 rounds at scale 0.5 (a minute or two); default 5 rounds at scale 1
    --rounds N           rounds (each runs every workload once per allocator)
    --only W[,W...]      only these workloads
    --threads N[,N...]   threads per workload (default: the CPUs available, at least 2);
                         several counts run the suite once at each (e.g. 1,2,4), each with its
                         own report under bench-report/threads-N/ and an index of all of them
    --scale F            work per run (default 1.0, --quick 0.5)
    --criterion          also run `cargo bench -p fam-benches --bench alloc` and add its summary
    --no-install         do not install missing allocators with apt-get
    --timeout S          seconds one run may take before it is killed (default 120)";

impl Options {
    /// Parses the arguments after `bench`; `Ok(None)` for `--help`.
    pub fn parse(mut args: lexopt::Parser) -> Result<Option<Options>, String> {
        use lexopt::Arg::{Long, Short};
        let mut quick = false;
        let mut rounds = None;
        let mut only: Option<Vec<&'static Workload>> = None;
        let mut threads = None;
        let mut scale = None;
        let mut criterion = false;
        let mut install = true;
        let mut timeout_s = DEFAULT_TIMEOUT_S;
        while let Some(arg) = args.next().map_err(|e| e.to_string())? {
            let key = crate::option_text(&arg);
            match arg {
                Long("quick") => quick = true,
                Long("criterion") => criterion = true,
                Long("no-install") => install = false,
                Long("rounds") => rounds = Some(positive(&key, &value(&mut args, &key)?)?),
                Long("threads") => {
                    let mut list: Vec<usize> = Vec::new();
                    for n in value(&mut args, &key)?.split(',').filter(|s| !s.is_empty()) {
                        let n = positive(&key, n)?;
                        if !list.contains(&n) {
                            list.push(n);
                        }
                    }
                    if list.is_empty() {
                        return Err(format!("{key}: no thread count named"));
                    }
                    threads = Some(list);
                }
                Long("timeout") => timeout_s = positive(&key, &value(&mut args, &key)?)? as u64,
                Long("scale") => {
                    let v = value(&mut args, &key)?;
                    scale = match v.parse::<f64>() {
                        Ok(f) if f.is_finite() && f > 0.0 => Some(f),
                        _ => return Err(format!("--scale: {v:?} is not a number > 0")),
                    };
                }
                Long("only") => {
                    let mut list = only.take().unwrap_or_default();
                    for name in value(&mut args, &key)?.split(',').filter(|s| !s.is_empty()) {
                        let w = WORKLOADS.iter().find(|w| w.name == name).ok_or_else(|| {
                            let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
                            format!("--only: no workload {name:?}; one of {}", names.join(", "))
                        })?;
                        if !list.iter().any(|x| x.name == w.name) {
                            list.push(w);
                        }
                    }
                    only = Some(list);
                }
                Short('h') | Long("help") => return Ok(None),
                _ => return Err(format!("unknown argument {key:?}")),
            }
        }
        let workloads = match only {
            Some(list) if list.is_empty() => return Err("--only: no workload named".into()),
            // Keep the suite's order whatever order they were named in.
            Some(list) => WORKLOADS
                .iter()
                .filter(|w| list.iter().any(|x| x.name == w.name))
                .collect(),
            None => WORKLOADS.iter().collect(),
        };
        Ok(Some(Options {
            quick,
            rounds: rounds.unwrap_or(if quick { QUICK_ROUNDS } else { FULL_ROUNDS }),
            workloads,
            threads: threads.unwrap_or_else(|| vec![default_threads()]),
            scale: scale.unwrap_or(if quick { QUICK_SCALE } else { 1.0 }),
            criterion,
            install,
            timeout_s,
        }))
    }

    /// The options as a command line that repeats this run (`cargo xtask bench ...`).
    pub fn command_line(&self) -> String {
        let mut s = String::from("cargo xtask bench");
        if self.quick {
            s.push_str(" --quick");
        }
        let default_rounds = if self.quick {
            QUICK_ROUNDS
        } else {
            FULL_ROUNDS
        };
        if self.rounds != default_rounds {
            s.push_str(&format!(" --rounds {}", self.rounds));
        }
        if self.workloads.len() != WORKLOADS.len() {
            let names: Vec<&str> = self.workloads.iter().map(|w| w.name).collect();
            s.push_str(&format!(" --only {}", names.join(",")));
        }
        if self.threads != [default_threads()] {
            let counts: Vec<String> = self.threads.iter().map(usize::to_string).collect();
            s.push_str(&format!(" --threads {}", counts.join(",")));
        }
        let default_scale = if self.quick { QUICK_SCALE } else { 1.0 };
        if self.scale != default_scale {
            s.push_str(&format!(" --scale {}", self.scale));
        }
        if self.criterion {
            s.push_str(" --criterion");
        }
        s
    }
}

/// The default thread count: the CPUs this process may run on, at least 2 (so the
/// multi-threaded shapes always have threads to hand objects between).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2)
}

/// The value of the option `key`, which `args` has just returned.
fn value(args: &mut lexopt::Parser, key: &str) -> Result<String, String> {
    args.value()
        .map_err(|_| format!("{key} needs a value"))?
        .into_string()
        .map_err(|v| format!("{key}: {v:?} is not valid UTF-8"))
}

fn positive(key: &str, v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{key}: {v:?} is not a count >= 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        Options::parse(lexopt::Parser::from_args(args))
    }

    #[test]
    fn defaults_quick_and_full() {
        let full = parse(&[]).unwrap().unwrap();
        assert_eq!(
            (full.rounds, full.scale, full.quick),
            (FULL_ROUNDS, 1.0, false)
        );
        assert_eq!(full.workloads.len(), WORKLOADS.len());
        assert!(full.threads.len() == 1 && full.threads[0] >= 2);
        assert_eq!(full.command_line(), "cargo xtask bench");
        let quick = parse(&["--quick"]).unwrap().unwrap();
        assert_eq!((quick.rounds, quick.scale), (QUICK_ROUNDS, QUICK_SCALE));
        assert_eq!(quick.command_line(), "cargo xtask bench --quick");
    }

    #[test]
    fn only_keeps_the_suite_order_and_refuses_unknown_names() {
        let o = parse(&["--only", "realloc,larson", "--rounds=3", "--threads", "4"])
            .unwrap()
            .unwrap();
        let names: Vec<&str> = o.workloads.iter().map(|w| w.name).collect();
        assert_eq!(names, ["larson", "realloc"]);
        assert_eq!(o.rounds, 3);
        assert_eq!(o.threads, [4]);
        let several = parse(&["--threads", "1,2,4,2"]).unwrap().unwrap();
        assert_eq!(several.threads, [1, 2, 4]);
        assert!(several.command_line().ends_with(" --threads 1,2,4"));
        assert!(parse(&["--threads", "1,0"]).is_err());
        assert!(parse(&["--threads", ","]).is_err());
        assert!(o.command_line().contains("--only larson,realloc"));
        assert!(parse(&["--only", "nope"]).unwrap_err().contains("larson"));
        assert!(parse(&["--only", ","]).is_err());
        assert!(parse(&["--rounds", "0"]).is_err());
        assert!(parse(&["--scale", "x"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["larson"]).unwrap_err().contains("unknown argument"));
        assert!(parse(&["--quick=yes"]).is_err());
        assert_eq!(parse(&["--rounds"]).unwrap_err(), "--rounds needs a value");
        assert_eq!(parse(&["--timeout=7"]).unwrap().unwrap().timeout_s, 7);
        assert!(parse(&["--no-install", "--criterion"])
            .unwrap()
            .is_some_and(|o| !o.install && o.criterion));
        assert_eq!(parse(&["--help"]).unwrap(), None);
    }
}
