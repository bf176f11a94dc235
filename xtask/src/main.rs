//! Developer and CI tasks for the fam-alloc workspace.
//!
//! `cargo xtask ci` runs every check that CI runs, in the same order, and prints how long each
//! took. `cargo xtask ci --skip tests` leaves out the test suite (CI runs it first on its own, as
//! the README's test command). `cargo xtask bench` runs the allocator benchmark suite (the
//! `bench` module). `cargo xtask fuzz` runs the cargo-fuzz targets (the `fuzz` module).
//! `cargo xtask help` lists the tasks.

mod bench;
mod fuzz;
mod install;

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::{exit, Command};
use std::time::Instant;

/// The README's test command: the whole workspace's tests.
const TEST_COMMAND: &[&str] = &["test", "--workspace"];

/// Crates that are `no_std` libraries and must build without std: package name, directory
/// under `crates/`.
const NO_STD_CRATES: &[(&str, &str)] = &[
    ("size-class", "size-class"),
    ("slab-bitmap", "slab-bitmap"),
    ("thread-heap", "thread-heap"),
    ("chunk-source", "chunk-source"),
    ("fam-slab-pool", "slab-pool"),
    ("large-alloc", "large-alloc"),
];
/// Each crate with cargo features, with the features that must build on their own.
const FEATURE_MATRIX: &[(&str, &[&str])] = &[
    ("chunk-source", &["mmap", "sbrk", "shm", "std"]),
    ("large-alloc", &["mmap", "sbrk", "shm"]),
    ("fam-alloc", &["mmap", "sbrk", "stats", "allocator-api2-04"]),
];

/// Workspace members with `publish = false`: tools and benchmarks, not packaged.
const UNPUBLISHED: &[&str] = &["xtask", "fam-benches", "fam-workloads"];

/// Backends that the allocator's own test suite also runs under (the default, mmap, runs in the
/// main test command).
const BACKEND_TESTS: &[(&str, &str)] = &[("fam-alloc", "sbrk,stats")];

struct Step {
    name: String,
    seconds: f64,
    outcome: &'static str,
}

fn main() {
    let mut args = lexopt::Parser::from_env();
    let task = match args.next() {
        Ok(None) => None,
        Ok(Some(lexopt::Arg::Value(task))) => Some(task.into_string().unwrap_or_else(|task| {
            fail_task(&format!("unknown task `{}`", task.to_string_lossy()))
        })),
        Ok(Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help"))) => None,
        Ok(Some(option)) => fail_task(&format!("unknown task `{}`", option_text(&option))),
        Err(e) => fail_task(&e.to_string()),
    };
    match task.as_deref() {
        Some("ci") => ci(args),
        Some("bench") => bench::main(args),
        Some("fuzz") => fuzz::main(args),
        Some("install") => install::main(args),
        Some("help") | None => help(),
        Some(other) => fail_task(&format!("unknown task `{other}`")),
    }
}

fn fail_task(msg: &str) -> ! {
    eprintln!("xtask: {msg}");
    help();
    exit(2);
}

/// An option as it was written: `-x` or `--name`; a positional value as is.
fn option_text(arg: &lexopt::Arg<'_>) -> String {
    match arg {
        lexopt::Arg::Short(c) => format!("-{c}"),
        lexopt::Arg::Long(name) => format!("--{name}"),
        lexopt::Arg::Value(v) => v.to_string_lossy().into_owned(),
    }
}

fn help() {
    println!("cargo xtask ci [--skip STEP]...   run every CI check in CI's order");
    println!(
        "    steps: fmt clippy doc tests features no-std backends loom package install miri fuzz"
    );
    println!("{}", bench::USAGE);
    println!("{}", fuzz::USAGE);
    println!("{}", install::USAGE);
}

fn ci(mut args: lexopt::Parser) {
    let mut skip: Vec<String> = Vec::new();
    loop {
        match args.next() {
            Ok(None) => break,
            Ok(Some(lexopt::Arg::Long("skip"))) => match args.value().map(|v| v.into_string()) {
                Ok(Ok(step)) => skip.push(step),
                _ => fail_usage("--skip needs a step name"),
            },
            Ok(Some(other)) => fail_usage(&format!("unknown argument `{}`", option_text(&other))),
            Err(e) => fail_usage(&e.to_string()),
        }
    }
    let started = Instant::now();
    let mut steps: Vec<Step> = Vec::new();
    let mut run_step = |name: &str, f: &dyn Fn() -> bool| {
        if skip.iter().any(|s| s == name) {
            steps.push(Step {
                name: name.to_string(),
                seconds: 0.0,
                outcome: "skipped",
            });
            return;
        }
        println!("\n==> xtask ci: {name}");
        let t = Instant::now();
        let ok = f();
        steps.push(Step {
            name: name.to_string(),
            seconds: t.elapsed().as_secs_f64(),
            outcome: if ok { "ok" } else { "FAILED" },
        });
        if !ok {
            summary(&steps, started.elapsed().as_secs_f64());
            exit(1);
        }
    };

    run_step("fmt", &|| cargo(&["fmt", "--all", "--", "--check"], &[]));
    run_step("clippy", &|| {
        cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )
    });
    // Every crate's docs, broken intra-doc links included, with warnings denied.
    run_step("doc", &|| {
        cargo(
            &[
                "doc",
                "--workspace",
                "--no-deps",
                "--all-features",
                "--exclude",
                "xtask",
            ],
            &[("RUSTDOCFLAGS", "-D warnings")],
        )
    });
    run_step("tests", &|| cargo(TEST_COMMAND, &[]));
    run_step("features", &|| {
        FEATURE_MATRIX.iter().all(|(krate, features)| {
            cargo(&["build", "-p", krate, "--no-default-features"], &[])
                && features.iter().all(|f| {
                    cargo(
                        &[
                            "build",
                            "-p",
                            krate,
                            "--no-default-features",
                            "--features",
                            f,
                        ],
                        &[],
                    )
                })
        })
    });
    run_step("no-std", &|| {
        NO_STD_CRATES.iter().all(|(krate, dir)| {
            no_std_declared(dir) && cargo(&["build", "-p", krate, "--no-default-features"], &[])
        })
    });
    run_step("backends", &|| {
        BACKEND_TESTS.iter().all(|(krate, feature)| {
            !crate_exists(krate)
                || cargo(
                    &[
                        "test",
                        "-p",
                        krate,
                        "--no-default-features",
                        "--features",
                        feature,
                    ],
                    &[],
                )
        })
    });
    run_step("loom", &|| {
        let env = [
            ("RUSTFLAGS", "--cfg loom"),
            ("CARGO_TARGET_DIR", "target/loom"),
        ];
        // The slot set's races, then the slab pool's membership protocol and the spin lock's
        // fork takeover (their models live in the libraries, next to the protocols).
        cargo(
            &["test", "-p", "slab-bitmap", "--test", "loom", "--release"],
            &env,
        ) && cargo(&["test", "-p", "fam-slab-pool", "--lib", "--release"], &env)
            && cargo(&["test", "-p", "chunk-source", "--lib", "--release"], &env)
    });
    // size-class is left out: its exhaustive tests walk every size up to 1 MiB, which takes
    // hours under miri, and it has no unsafe code.
    // Every publishable crate packaged and built from its package, against the others'
    // packages (`cargo package --workspace` resolves them locally before crates.io).
    run_step("package", &|| {
        forget_local_unpacks();
        let mut args = vec!["package", "--workspace", "--allow-dirty"];
        for unpublished in UNPUBLISHED {
            args.extend(["--exclude", unpublished]);
        }
        cargo(&args, &[])
    });
    // The C library installed into a scratch prefix, and a C program built against it with
    // pkg-config alone, run linked and preloaded.
    run_step("install", &install::check);
    run_step("miri", &|| {
        if !miri_available() {
            println!("miri: skipped (no nightly toolchain with the miri component is installed)");
            return true;
        }
        cargo(
            &[
                "+nightly",
                "miri",
                "test",
                "-p",
                "slab-bitmap",
                "-p",
                "thread-heap",
            ],
            &[
                ("CARGO_TARGET_DIR", "target/miri"),
                ("MIRIFLAGS", "-Zmiri-strict-provenance"),
            ],
        )
    });
    // A short run of each fuzz target, skipped (with a message) without a nightly toolchain;
    // `cargo xtask fuzz` runs them for longer.
    run_step("fuzz", &|| fuzz::run(fuzz::CI_SECONDS, fuzz::TARGETS));
    summary(&steps, started.elapsed().as_secs_f64());
}

fn fail_usage(msg: &str) -> ! {
    eprintln!("xtask ci: {msg}");
    help();
    exit(2);
}

fn summary(steps: &[Step], total: f64) {
    println!("\nxtask ci summary:");
    for s in steps {
        println!("  {:<10} {:>8.1} s  {}", s.name, s.seconds, s.outcome);
    }
    println!("  {:<10} {:>8.1} s", "total", total);
}

/// Runs `cargo ARGS` with extra environment variables; true when it exits 0.
fn cargo(args: &[&str], envs: &[(&str, &str)]) -> bool {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    // `+toolchain` only works through the rustup proxy, not a resolved cargo binary.
    let program = if args.first().is_some_and(|a| a.starts_with('+')) {
        "cargo"
    } else {
        &cargo
    };
    println!("$ {}cargo {}", render_env(envs), args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(workspace_root());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    if args.first().is_some_and(|a| a.starts_with('+')) {
        // Let the rustup proxy pick the requested toolchain instead of the pinned one.
        cmd.env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .env_remove("RUSTC");
    }
    match cmd.status() {
        Ok(status) => status.success(),
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            false
        }
    }
}

fn render_env(envs: &[(&str, &str)]) -> String {
    envs.iter().map(|(k, v)| format!("{k}={v:?} ")).collect()
}

fn workspace_root() -> std::path::PathBuf {
    let manifest = env!("CARGO_MANIFEST_DIR");
    std::path::Path::new(manifest)
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn crate_exists(krate: &str) -> bool {
    workspace_root()
        .join("crates")
        .join(krate)
        .join("Cargo.toml")
        .exists()
}

/// A `no_std` crate (in `crates/DIR`) says so at the top of its lib.rs; the build then proves
/// it needs no std.
fn no_std_declared(dir: &str) -> bool {
    let lib = workspace_root().join("crates").join(dir).join("src/lib.rs");
    match std::fs::read_to_string(&lib) {
        Ok(text) if text.contains("#![no_std]") || text.contains("#![cfg_attr(not(") => true,
        Ok(_) => {
            eprintln!("{}: not declared no_std", lib.display());
            false
        }
        Err(e) => {
            eprintln!("{}: {e}", lib.display());
            false
        }
    }
}

/// Removes what cargo unpacked from earlier runs' temporary package registries.
///
/// `cargo package --workspace` builds each package against the others' fresh packages, served
/// from a local registry under `target/package/`. Cargo unpacks a registry's crates once into
/// `$CARGO_HOME/registry/src/-HASH/` (a local registry has no name, hence the leading dash), keyed
/// by the registry's path and the crate's version, and never unpacks the same version again: a
/// second run from the same checkout path would verify against the first run's sources. Every
/// directory there whose name starts with a dash is such an unpack and safe to delete.
fn forget_local_unpacks() {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return;
    };
    let Ok(entries) = fs::read_dir(&src) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('-') {
            if let Err(e) = fs::remove_dir_all(entry.path()) {
                eprintln!("package: cannot remove {}: {e}", entry.path().display());
            }
        }
    }
}

fn miri_available() -> bool {
    Command::new("cargo")
        .args(["+nightly", "miri", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
