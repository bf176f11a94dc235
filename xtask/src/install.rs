//! `cargo xtask install --prefix DIR`: the C library installed the way C projects find
//! `libjemalloc` or `libmimalloc`, and the CI check that a C program builds against such an
//! install with `pkg-config` alone.
//!
//! Layout under the prefix (`--libdir` and `--includedir` move the two directories):
//!
//! ```text
//! lib/libfam_malloc.so.VERSION        the shared library (soname libfam_malloc.so.0)
//! lib/libfam_malloc.so.0 -> libfam_malloc.so.VERSION
//! lib/libfam_malloc.so   -> libfam_malloc.so.0
//! lib/libfam_malloc.a                 the static library
//! lib/pkgconfig/fam-malloc.pc
//! include/fam_malloc.h
//! ```

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

use crate::{bench, cargo, workspace_root};

pub const USAGE: &str = "\
cargo xtask install --prefix DIR [--libdir DIR] [--includedir DIR]
    build the C library in release mode and install it with its header and fam-malloc.pc";

/// The ABI's major version: the soname's number (set in crates/fam-malloc/build.rs).
const SONAME: &str = "libfam_malloc.so.0";

/// Where the files go.
struct Dirs {
    prefix: PathBuf,
    libdir: PathBuf,
    includedir: PathBuf,
}

pub fn main(mut args: lexopt::Parser) -> ! {
    use lexopt::Arg::Long;
    let mut prefix = None;
    let mut libdir = None;
    let mut includedir = None;
    loop {
        let arg = match args.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => fail(&format!("{e}\n{USAGE}")),
        };
        let key = crate::option_text(&arg);
        let slot = match arg {
            Long("prefix") => &mut prefix,
            Long("libdir") => &mut libdir,
            Long("includedir") => &mut includedir,
            _ => fail(&format!("unknown argument `{key}`\n{USAGE}")),
        };
        match args.value() {
            Ok(v) => *slot = Some(absolute(Path::new(&v))),
            Err(_) => fail(&format!("{key} needs a directory")),
        }
    }
    let Some(prefix) = prefix else {
        fail(&format!("--prefix is required\n{USAGE}"))
    };
    let dirs = Dirs {
        libdir: libdir.unwrap_or_else(|| prefix.join("lib")),
        includedir: includedir.unwrap_or_else(|| prefix.join("include")),
        prefix,
    };
    match install(&dirs) {
        Ok(()) => exit(0),
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("xtask install: {msg}");
    exit(2)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Builds the release library and installs it under `dirs`.
fn install(dirs: &Dirs) -> Result<(), String> {
    if !cargo(&["build", "--release", "-p", "fam-malloc"], &[]) {
        return Err("the release build of fam-malloc failed".into());
    }
    let root = workspace_root();
    let built = bench::target_dir(&root).join("release");
    let version = env!("CARGO_PKG_VERSION");
    let crate_dir = root.join("crates/fam-malloc");
    let pkgconfig = dirs.libdir.join("pkgconfig");
    for d in [&dirs.libdir, &dirs.includedir, &pkgconfig] {
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let real = format!("libfam_malloc.so.{version}");
    copy(&built.join("libfam_malloc.so"), &dirs.libdir.join(&real))?;
    link(&real, &dirs.libdir.join(SONAME))?;
    link(SONAME, &dirs.libdir.join("libfam_malloc.so"))?;
    copy(
        &built.join("libfam_malloc.a"),
        &dirs.libdir.join("libfam_malloc.a"),
    )?;
    copy(
        &crate_dir.join("include/fam_malloc.h"),
        &dirs.includedir.join("fam_malloc.h"),
    )?;
    let template = fs::read_to_string(crate_dir.join("fam-malloc.pc.in"))
        .map_err(|e| format!("cannot read fam-malloc.pc.in: {e}"))?;
    let pc = template
        .replace("@PREFIX@", &dirs.prefix.display().to_string())
        .replace("@LIBDIR@", &dirs.libdir.display().to_string())
        .replace("@INCLUDEDIR@", &dirs.includedir.display().to_string())
        .replace("@VERSION@", version);
    let pc_path = pkgconfig.join("fam-malloc.pc");
    fs::write(&pc_path, pc).map_err(|e| format!("cannot write {}: {e}", pc_path.display()))?;
    println!(
        "installed fam-malloc {version} under {}",
        dirs.prefix.display()
    );
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    // Remove first: the destination may be a library a running program has mapped, which a
    // write in place would change under it.
    let _ = fs::remove_file(to);
    fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

fn link(target: &str, at: &Path) -> Result<(), String> {
    let _ = fs::remove_file(at);
    symlink(target, at).map_err(|e| format!("cannot link {}: {e}", at.display()))
}

/// The CI check: install into a scratch prefix, build `tests/c/installed.c` with nothing but
/// `pkg-config --cflags --libs fam-malloc`, and run it linked, then build it without the library
/// and run it with the installed library preloaded. True when both runs pass.
pub fn check() -> bool {
    let root = workspace_root();
    let scratch = bench::target_dir(&root).join("install-check");
    let _ = fs::remove_dir_all(&scratch);
    let dirs = Dirs {
        libdir: scratch.join("prefix/lib"),
        includedir: scratch.join("prefix/include"),
        prefix: scratch.join("prefix"),
    };
    if let Err(e) = install(&dirs) {
        eprintln!("install check: {e}");
        return false;
    }
    let pc_path = dirs.libdir.join("pkgconfig");
    let flags = |what: &str| -> Option<Vec<String>> {
        let out = Command::new("pkg-config")
            .args([what, "fam-malloc"])
            .env("PKG_CONFIG_PATH", &pc_path)
            .output()
            .map_err(|e| eprintln!("install check: cannot run pkg-config: {e}"))
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "install check: pkg-config {what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect(),
        )
    };
    let (Some(cflags), Some(libs), Some(libdir)) = (
        flags("--cflags"),
        flags("--libs"),
        flags("--variable=libdir"),
    ) else {
        return false;
    };
    let source = root.join("crates/fam-malloc/tests/c/installed.c");
    let linked = scratch.join("installed-linked");
    let plain = scratch.join("installed-plain");
    let rpath = format!("-Wl,-rpath,{}", libdir.join(" "));
    let built = cc(
        &source,
        &linked,
        &cflags,
        &[&libs[..], &[rpath]].concat(),
        "-DLINKED",
    ) && cc(&source, &plain, &[], &["-ldl".to_string()], "-DPRELOADED");
    if !built {
        return false;
    }
    let so = dirs.libdir.join(SONAME);
    run(Command::new(&linked), "linked") && {
        let mut c = Command::new(&plain);
        c.env("LD_PRELOAD", &so);
        run(c, "preloaded")
    }
}

fn cc(source: &Path, out: &Path, cflags: &[String], libs: &[String], define: &str) -> bool {
    let mut c = Command::new("cc");
    c.args(["-O1", "-Wall", "-Wextra", "-Werror", define])
        .args(cflags)
        .arg(source)
        .arg("-o")
        .arg(out)
        .args(libs);
    println!("$ {c:?}");
    c.status().is_ok_and(|s| s.success())
}

fn run(mut c: Command, how: &str) -> bool {
    match c.output() {
        Ok(o) if o.status.success() => {
            print!("{}", String::from_utf8_lossy(&o.stdout));
            true
        }
        Ok(o) => {
            eprintln!(
                "install check ({how}) failed: {}\n{}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            false
        }
        Err(e) => {
            eprintln!("install check ({how}): cannot run: {e}");
            false
        }
    }
}
