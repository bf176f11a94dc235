//! The command line every workload takes: `--threads N --scale F`.

use std::ffi::OsString;
use std::process::exit;

/// What a workload was asked to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Args {
    /// Threads to run (at least 1). Default: the CPUs available.
    pub threads: usize,
    /// Multiplies the amount of work (greater than 0). Default 1.0, which takes a second or a
    /// few on two cores.
    pub scale: f64,
}

impl Args {
    /// Parses the process's arguments; prints the usage (with `about`, one line on what the
    /// workload does) and exits on `--help` or a bad argument.
    pub fn from_env(name: &str, about: &str) -> Args {
        match Self::parse(std::env::args_os().skip(1)) {
            Ok(Some(a)) => a,
            Ok(None) => {
                println!("{name}: {about}\n\n{}", usage(name));
                exit(0)
            }
            Err(e) => {
                eprintln!("{name}: {e}\n{}", usage(name));
                exit(2)
            }
        }
    }

    /// Parses `args` (without the program name): `Ok(None)` for `--help`.
    pub fn parse<I>(args: I) -> Result<Option<Args>, String>
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        use lexopt::Arg::{Long, Short, Value};
        let mut a = Args {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            scale: 1.0,
        };
        let mut parser = lexopt::Parser::from_args(args);
        while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
            match arg {
                Long("threads") => {
                    let v = value(&mut parser, "--threads")?;
                    a.threads = match v.parse::<usize>() {
                        Ok(n) if n >= 1 => n,
                        _ => return Err(format!("--threads: {v:?} is not a count >= 1")),
                    };
                }
                Long("scale") => {
                    let v = value(&mut parser, "--scale")?;
                    a.scale = match v.parse::<f64>() {
                        Ok(f) if f.is_finite() && f > 0.0 => f,
                        _ => return Err(format!("--scale: {v:?} is not a number > 0")),
                    };
                }
                Short('h') | Long("help") => return Ok(None),
                Short(c) => return Err(format!("unknown argument \"-{c}\"")),
                Long(other) => return Err(format!("unknown argument \"--{other}\"")),
                Value(other) => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Some(a))
    }

    /// `n` scaled by [`Args::scale`], rounded, at least 1.
    pub fn scaled(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1)
    }
}

/// The value of the option `key`, which `parser` has just returned.
fn value(parser: &mut lexopt::Parser, key: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|_| format!("{key} needs a value"))?
        .into_string()
        .map_err(|v| format!("{key}: {v:?} is not valid UTF-8"))
}

fn usage(name: &str) -> String {
    format!(
        "usage: {name} [--threads N] [--scale F]\n  \
         --threads N  threads to run (default: the CPUs available)\n  \
         --scale F    multiply the work by F (default 1.0)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        Args::parse(args)
    }

    #[test]
    fn reads_threads_and_scale() {
        let a = parse(&["--threads", "3", "--scale=0.5"]).unwrap().unwrap();
        assert_eq!((a.threads, a.scale), (3, 0.5));
        assert_eq!(a.scaled(1000), 500);
        assert_eq!(a.scaled(1), 1);
        assert_eq!(parse(&["--help"]).unwrap(), None);
    }

    #[test]
    fn refuses_bad_values() {
        assert!(parse(&["--threads", "0"]).is_err());
        assert!(parse(&["--scale", "-1"]).is_err());
        assert!(parse(&["--scale"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(parse(&["--threads=2", "extra"]).is_err());
        assert_eq!(
            parse(&["--threads"]).unwrap_err(),
            "--threads needs a value"
        );
    }
}
