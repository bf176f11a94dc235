//! The allocators under test, and how each is put under a workload.
//!
//! All six are the C ABI: the workloads call `malloc`, and `LD_PRELOAD` decides whose it is.
//! glibc's is the process's own (nothing preloaded); fam-alloc's is `libfam_malloc.so`, built
//! by the suite in release mode; mimalloc 2's, jemalloc's and tcmalloc's (gperftools' minimal
//! build, without the heap profiler) are the Debian packages' shared libraries, installed with
//! apt-get when missing. mimalloc 3 has no Debian package: it is built here, once, from the C
//! sources the `libmimalloc-sys` crate ships (the workspace's criterion benches depend on it, so
//! cargo has them), with the flags of mimalloc's own CMake build of its shared override library
//! (`static.c` as one unit, `-O3`, hidden visibility, initial-exec TLS). An allocator that
//! cannot be found, installed or built is left out of the run and marked missing in the report.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The allocators, in the order the report lists them.
pub const NAMES: [&str; 6] = [
    "fam",
    "mimalloc3",
    "mimalloc",
    "jemalloc",
    "tcmalloc",
    "glibc",
];

/// One allocator under test.
#[derive(Clone, Debug)]
pub struct Allocator {
    /// Its short name: one of [`NAMES`].
    pub name: &'static str,
    /// The library to preload; `None` runs on the C library's own malloc.
    pub preload: Option<PathBuf>,
    /// Which build or package it is, for the report.
    pub version: String,
    /// Why it is not measured, if it is not.
    pub missing: Option<String>,
}

impl Allocator {
    /// Whether the runs use it.
    pub fn available(&self) -> bool {
        self.missing.is_none()
    }

    /// Whether `malloc_from` (the object a workload's `malloc` was resolved in, as it printed
    /// it) is this allocator's. Compared by file name, since the same library can be reached
    /// through `/lib` and `/usr/lib`.
    pub fn owns_malloc_from(&self, malloc_from: &str) -> bool {
        let file = Path::new(malloc_from)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        match &self.preload {
            Some(lib) => lib.file_name().is_some_and(|f| *f == *file),
            None => file.starts_with("libc.so"),
        }
    }
}

/// A shared library from a Debian package.
struct Packaged {
    name: &'static str,
    /// The library's file name (its soname).
    soname: &'static str,
    /// Package names to try, in order.
    packages: &'static [&'static str],
    /// An apt-cache search pattern that finds the package under another version's name.
    search: &'static str,
}

const PACKAGED: [Packaged; 3] = [
    Packaged {
        name: "mimalloc",
        soname: "libmimalloc.so.2",
        packages: &["libmimalloc2.0"],
        search: "^libmimalloc[0-9.]+$",
    },
    Packaged {
        name: "jemalloc",
        soname: "libjemalloc.so.2",
        packages: &["libjemalloc2"],
        search: "^libjemalloc[0-9]+$",
    },
    Packaged {
        name: "tcmalloc",
        soname: "libtcmalloc_minimal.so.4",
        packages: &["libtcmalloc-minimal4"],
        search: "^libtcmalloc-minimal[0-9]+$",
    },
];

/// Finds (and, with `install`, installs) the allocators. `fam_lib` is the freshly built
/// `libfam_malloc.so`; `fam_version` says which build it is. mimalloc 3 is built into `out`
/// from the sources cargo fetched for the workspace rooted at `root`.
pub fn discover(
    root: &Path,
    out: &Path,
    fam_lib: &Path,
    fam_version: String,
    install: bool,
) -> Vec<Allocator> {
    let mut found: Vec<(&Packaged, Option<PathBuf>)> = PACKAGED
        .iter()
        .map(|p| (p, find_library(p.soname)))
        .collect();
    let wanted: Vec<&Packaged> = found
        .iter()
        .filter(|(_, path)| path.is_none())
        .map(|(p, _)| *p)
        .collect();
    let mut install_error = None;
    if !wanted.is_empty() {
        let names: Vec<&str> = wanted.iter().map(|p| p.name).collect();
        if install {
            println!(
                "xtask bench: {} not installed; installing with apt-get",
                names.join(" and ")
            );
            if let Err(e) = apt_install(&wanted) {
                eprintln!(
                    "xtask bench: WARNING: could not install {}: {e}",
                    names.join(", ")
                );
                eprintln!(
                    "xtask bench: WARNING: going on without them; the report marks them missing"
                );
                install_error = Some(e);
            }
            for (p, path) in &mut found {
                if path.is_none() {
                    *path = find_library(p.soname);
                }
            }
        } else {
            println!(
                "xtask bench: {} not installed (--no-install)",
                names.join(" and ")
            );
        }
    }
    let mut all = Vec::new();
    for name in NAMES {
        let a = match name {
            "fam" => Allocator {
                name,
                preload: Some(fam_lib.to_path_buf()),
                version: fam_version.clone(),
                missing: (!fam_lib.exists())
                    .then(|| format!("{} was not built", fam_lib.display())),
            },
            "glibc" => Allocator {
                name,
                preload: None,
                version: glibc_version(),
                missing: None,
            },
            "mimalloc3" => match build_mimalloc3(root, out) {
                Ok((lib, version)) => Allocator {
                    name,
                    preload: Some(lib),
                    version,
                    missing: None,
                },
                Err(why) => Allocator {
                    name,
                    preload: None,
                    version: String::new(),
                    missing: Some(why),
                },
            },
            _ => {
                let (p, path) = found
                    .iter()
                    .find(|(p, _)| p.name == name)
                    .expect("every packaged allocator is listed");
                match path {
                    Some(path) => Allocator {
                        name,
                        preload: Some(path.clone()),
                        version: package_version(path),
                        missing: None,
                    },
                    None => Allocator {
                        name,
                        preload: None,
                        version: String::new(),
                        missing: Some(match &install_error {
                            Some(e) => format!(
                                "{} not found; installing {} failed: {e}",
                                p.soname, p.packages[0]
                            ),
                            None if install => {
                                format!("{} not found after installing {}", p.soname, p.packages[0])
                            }
                            None => format!("{} not found (not installed: --no-install)", p.soname),
                        }),
                    },
                }
            }
        };
        all.push(a);
    }
    all
}

/// Builds mimalloc 3's shared override library into `out` (once per version) from the sources
/// of the `libmimalloc-sys` package the workspace depends on; returns it and its version.
fn build_mimalloc3(root: &Path, out: &Path) -> Result<(PathBuf, String), String> {
    let meta = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !meta.status.success() {
        return Err(format!("cargo metadata failed ({})", meta.status));
    }
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout)
        .map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    let sys = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "libmimalloc-sys")
        .ok_or("the workspace does not depend on libmimalloc-sys")?;
    let crate_dir = Path::new(sys["manifest_path"].as_str().unwrap_or_default())
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let src = crate_dir.join("c_src/mimalloc/v3");
    let header = std::fs::read_to_string(src.join("include/mimalloc.h")).map_err(|e| {
        format!(
            "libmimalloc-sys {} has no mimalloc 3 sources ({e})",
            sys["version"].as_str().unwrap_or("?")
        )
    })?;
    let number: u32 = header
        .lines()
        .find_map(|l| l.strip_prefix("#define MI_MALLOC_VERSION"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("mimalloc.h has no MI_MALLOC_VERSION")?;
    let version = format!("{}.{}.{}", number / 10000, number / 100 % 100, number % 100);
    let lib = out.join(format!("libmimalloc-{version}.so"));
    let described = format!(
        "{version}, built from libmimalloc-sys {}'s sources",
        sys["version"].as_str().unwrap_or("?")
    );
    if lib.exists() {
        return Ok((lib, described));
    }
    println!("    building mimalloc {version} into {}", lib.display());
    let status = Command::new("cc")
        .args([
            "-O3",
            "-DNDEBUG",
            "-fPIC",
            "-shared",
            "-fvisibility=hidden",
            "-ftls-model=initial-exec",
            "-fno-builtin-malloc",
            "-Wno-unknown-pragmas",
            "-DMI_SHARED_LIB",
            "-DMI_SHARED_LIB_EXPORT",
            "-DMI_MALLOC_OVERRIDE",
        ])
        .arg("-I")
        .arg(src.join("include"))
        .arg(src.join("src/static.c"))
        .arg("-o")
        .arg(&lib)
        .arg("-lpthread")
        .status()
        .map_err(|e| format!("cannot run cc to build mimalloc {version}: {e}"))?;
    if !status.success() {
        let _ = std::fs::remove_file(&lib);
        return Err(format!("building mimalloc {version} failed ({status})"));
    }
    Ok((lib, described))
}

/// The path of the shared library `soname`, from the dynamic linker's cache or the usual
/// library directories.
pub fn find_library(soname: &str) -> Option<PathBuf> {
    for ldconfig in ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"] {
        let Ok(out) = Command::new(ldconfig).arg("-p").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let hit = text.lines().find_map(|l| {
            let (lib, path) = l.trim().split_once(" => ")?;
            let lib = lib.split_whitespace().next()?;
            (lib == soname && Path::new(path).exists()).then(|| PathBuf::from(path))
        });
        if hit.is_some() {
            return hit;
        }
    }
    let multiarch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    [
        multiarch.as_str(),
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ]
    .iter()
    .map(|d| Path::new(d).join(soname))
    .find(|p| p.exists())
}

/// Installs the packages of `wanted` with apt-get (as root, or through `sudo -n`).
fn apt_install(wanted: &[&Packaged]) -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let prefix: Vec<&str> = if root {
        vec![]
    } else if Command::new("sudo")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        vec!["sudo", "-n"]
    } else {
        return Err("not root, and sudo needs a password".into());
    };
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut all: Vec<&str> = prefix.clone();
        all.extend(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        all.extend(args);
        println!("$ {}", all.join(" "));
        // dpkg's progress goes to stdout; errors still reach stderr.
        let status = Command::new(all[0])
            .args(&all[1..])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {}: {e}", all[0]))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`apt-get {}` failed ({status})", args.join(" ")))
        }
    };
    apt(&["update", "-qq"])?;
    let mut packages: Vec<String> = Vec::new();
    for p in wanted {
        // The package under its known name, else whatever name this release gives it.
        let known = p.packages.iter().find(|name| apt_has(name));
        match known {
            Some(name) => packages.push((*name).to_owned()),
            None => match apt_search(p.search) {
                Some(name) => packages.push(name),
                None => return Err(format!("no package provides {}", p.soname)),
            },
        }
    }
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(packages.iter().map(String::as_str));
    apt(&args)
}

/// Whether apt knows the package `name`.
fn apt_has(name: &str) -> bool {
    Command::new("apt-cache")
        .args(["show", "--no-all-versions", name])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

/// The first package whose name matches `pattern`.
fn apt_search(pattern: &str) -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["search", "--names-only", pattern])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_whitespace().next().map(str::to_owned))
}

/// "jemalloc 5.3.0-1 (libjemalloc2)": the Debian package that owns `lib`, with its version.
fn package_version(lib: &Path) -> String {
    let resolved = std::fs::canonicalize(lib).unwrap_or_else(|_| lib.to_path_buf());
    for path in [lib, resolved.as_path()] {
        let Ok(out) = Command::new("dpkg").arg("-S").arg(path).output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(pkg) = text.lines().next().and_then(|l| l.split(':').next()) else {
            continue;
        };
        if let Ok(v) = Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}", pkg])
            .output()
        {
            let v = String::from_utf8_lossy(&v.stdout).trim().to_owned();
            if !v.is_empty() {
                return format!("Debian {pkg} {v}");
            }
        }
    }
    resolved.display().to_string()
}

/// "glibc 2.36".
fn glibc_version() -> String {
    Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "the C library's malloc".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malloc_from_is_matched_by_file_name() {
        let je = Allocator {
            name: "jemalloc",
            preload: Some("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2".into()),
            version: String::new(),
            missing: None,
        };
        assert!(je.owns_malloc_from("/lib/x86_64-linux-gnu/libjemalloc.so.2"));
        assert!(!je.owns_malloc_from("/lib/x86_64-linux-gnu/libc.so.6"));
        let glibc = Allocator {
            name: "glibc",
            preload: None,
            ..je.clone()
        };
        assert!(glibc.owns_malloc_from("/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(!glibc.owns_malloc_from("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"));
    }

    #[test]
    fn finds_the_c_library() {
        // Every glibc system has libc.so.6 in the linker's cache or a library directory.
        assert!(find_library("libc.so.6").is_some());
        assert!(find_library("libdoes-not-exist.so.9").is_none());
    }
}
