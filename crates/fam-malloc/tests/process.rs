//! The library as a process's malloc: the C library's own allocations come to it, threads that
//! exit and `fork()` without `exec` work, misuse aborts with a message, and the shared library
//! exports the malloc family and nothing else.

use core::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::thread;

use fam_malloc as fm;

#[test]
fn the_c_library_allocates_through_us() {
    // strdup and getline allocate inside the C library: the blocks must be ours, or
    // malloc_usable_size would abort on a foreign pointer.
    let s = c"an allocation made by the C library";
    // SAFETY: `s` is a NUL-terminated string.
    let dup = unsafe { libc::strdup(s.as_ptr()) };
    assert!(!dup.is_null());
    // SAFETY: `dup` is a live block (ours, as this call checks) holding a copy of `s`.
    unsafe {
        assert!(fm::malloc_usable_size(dup.cast()) > s.to_bytes().len());
        assert_eq!(CStr::from_ptr(dup), s);
        fm::free(dup.cast());
    }
    // And what we allocate, the C library frees (through our free, or it would corrupt glibc).
    let p = fm::malloc(64);
    // SAFETY: `p` is a live block of this allocator.
    unsafe { libc::free(p) };
}

#[test]
fn blocks_cross_threads_that_exit() {
    // Producers allocate and exit; a consumer frees what they made after they are gone.
    for _round in 0..4 {
        let (tx, rx) = mpsc::channel::<(usize, usize)>();
        let producers: Vec<_> = (0..8)
            .map(|t| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for i in 0..2000usize {
                        let size = 1 + (i * 37 + t * 11) % 3000;
                        let p = fm::malloc(size).cast::<u8>();
                        // SAFETY: `size` writable bytes.
                        unsafe { p.write_bytes((i % 251) as u8, size) };
                        tx.send((p as usize, size)).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        for p in producers {
            p.join().unwrap();
        }
        let consumer = thread::spawn(move || {
            for (i, (p, size)) in rx.into_iter().enumerate() {
                let p = p as *mut u8;
                // SAFETY: every block is live, `size` bytes, and freed here once.
                unsafe {
                    let want = *p;
                    assert!(core::slice::from_raw_parts(p, size)
                        .iter()
                        .all(|&b| b == want));
                    fm::free(p.cast());
                }
                let _ = i;
            }
        });
        consumer.join().unwrap();
    }
}

#[test]
fn fork_without_exec_keeps_a_working_heap() {
    // Other threads allocate while this one forks; the child allocates, checks and frees, using
    // blocks inherited from the parent too.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let p = fm::malloc(16 + (n + t) % 2000);
                    // SAFETY: a live block, freed once.
                    unsafe { fm::free(p) };
                    n += 1;
                }
            })
        })
        .collect();
    let inherited = fm::malloc(1000).cast::<u8>();
    // SAFETY: 1000 writable bytes.
    unsafe { inherited.write_bytes(0x5a, 1000) };
    for _ in 0..20 {
        // SAFETY: the child only runs the allocator and async-signal-safe calls, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: `inherited` is a live block copied into the child.
            let ok = unsafe { child_work(inherited) };
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is writable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    // SAFETY: the parent's copy is still live; freed once.
    unsafe {
        assert!(core::slice::from_raw_parts(inherited, 1000)
            .iter()
            .all(|&b| b == 0x5a));
        fm::free(inherited.cast());
    }
}

/// The child's side of the fork test: plain allocator calls, no Rust allocation.
///
/// # Safety
/// `inherited` is a live block of 1000 bytes.
unsafe fn child_work(inherited: *mut u8) -> bool {
    let mut blocks = [core::ptr::null_mut::<c_void>(); 64];
    for round in 0..50usize {
        for (i, b) in blocks.iter_mut().enumerate() {
            // SAFETY: `*b` is null or a live block; the result replaces it.
            *b = unsafe { fm::realloc(*b, 1 + (round * 64 + i) * 7 % 5000) };
            if b.is_null() {
                return false;
            }
            // SAFETY: the block holds at least one byte.
            unsafe { b.cast::<u8>().write(i as u8) };
        }
        for (i, &b) in blocks.iter().enumerate() {
            // SAFETY: live block written above.
            if unsafe { b.cast::<u8>().read() } != i as u8 {
                return false;
            }
        }
    }
    for b in blocks {
        // SAFETY: live blocks, freed once.
        unsafe { fm::free(b) };
    }
    // SAFETY: the caller guarantees a live 1000-byte block.
    let intact = (0..1000).all(|i| unsafe { inherited.add(i).read() } == 0x5a);
    // SAFETY: the child's copy of the block is live; freed once.
    unsafe { fm::free(inherited.cast()) };
    let _ = fm::malloc_trim(0);
    intact
}

/// The environment variable that makes this test binary commit one misuse (see `misuse_child`).
const MISUSE_VAR: &str = "FAM_MALLOC_MISUSE";

/// Runs in a child process started by `misuse_aborts_with_a_message`: commits the misuse named
/// by the environment variable. Does nothing in a normal test run.
#[test]
fn misuse_child() {
    let Ok(mode) = std::env::var(MISUSE_VAR) else {
        return;
    };
    let mut local = [0u8; 64];
    let local = std::hint::black_box(local.as_mut_ptr().cast::<c_void>());
    // SAFETY: none: each branch breaks the contract on purpose, and the allocator must catch it.
    unsafe {
        match mode.as_str() {
            "double-free" => {
                let p = fm::malloc(64);
                fm::free(p);
                fm::free(std::hint::black_box(p));
            }
            "free-stack" => fm::free(local),
            "free-interior" => {
                let p = fm::malloc(64).cast::<u8>();
                fm::free(std::hint::black_box(p.add(16)).cast());
            }
            "free-interior-large" => {
                let p = fm::malloc(8 << 20).cast::<u8>();
                fm::free(std::hint::black_box(p.add(4096)).cast());
            }
            "realloc-foreign" => {
                let _ = fm::realloc(local, 100);
            }
            "usable-size-foreign" => {
                let _ = fm::malloc_usable_size(local);
            }
            other => panic!("unknown misuse {other}"),
        }
    }
    // Reaching this line means the misuse was not caught.
    std::process::exit(3);
}

#[test]
fn misuse_aborts_with_a_message() {
    let exe = std::env::current_exe().unwrap();
    for (mode, op) in [
        ("double-free", "free"),
        ("free-stack", "free"),
        ("free-interior", "free"),
        ("free-interior-large", "free"),
        ("realloc-foreign", "realloc"),
        ("usable-size-foreign", "malloc_usable_size"),
    ] {
        let out = Command::new(&exe)
            .args(["--exact", "misuse_child", "--nocapture", "--test-threads=1"])
            .env(MISUSE_VAR, mode)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{mode}: {:?}, stderr: {stderr}",
            out.status
        );
        let line = stderr
            .lines()
            .find(|l| l.starts_with("fam-alloc: "))
            .unwrap_or_else(|| panic!("{mode}: no message in {stderr:?}"));
        assert!(
            line.starts_with(&format!("fam-alloc: {op}(0x")),
            "{mode}: {line}"
        );
    }
}

/// The environment variable that makes this test binary print its options (see `options_child`).
const OPTIONS_VAR: &str = "FAM_MALLOC_OPTIONS_CHILD";

/// Runs in a child process started by `options_come_from_the_environment`: prints the options as
/// `fam_option_get` reads them. Does nothing in a normal test run.
#[test]
fn options_child() {
    if std::env::var_os(OPTIONS_VAR).is_none() {
        return;
    }
    // An allocation registers the thread, which reads the environment if nothing did yet.
    let p = fm::malloc(100);
    // SAFETY: a live block of this allocator.
    unsafe { fm::free(p) };
    for name in [c"purge_delay", c"retain_empty", c"background_purge"] {
        let mut v = 0;
        // SAFETY: a NUL-terminated name and a writable value.
        assert_eq!(unsafe { fm::fam_option_get(name.as_ptr(), &mut v) }, 0);
        println!("option {}={v}", name.to_str().unwrap());
    }
    println!(
        "option running={}",
        fam_alloc::options::background_purge_running()
    );
}

/// Runs `options_child` with `env`; returns its stdout's option lines and its stderr.
fn options_with(env: &[(&str, &str)]) -> (Vec<String>, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .args([
            "--exact",
            "options_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(OPTIONS_VAR, "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        // libtest may print its "test options_child ... " before the first line.
        .filter_map(|l| l.split_once("option ").map(|(_, v)| v.to_string()))
        .collect();
    (lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn options_come_from_the_environment() {
    let (got, stderr) = options_with(&[
        ("FAM_PURGE_DELAY", "250"),
        ("FAM_RETAIN_EMPTY", "3"),
        ("FAM_BACKGROUND_PURGE", "1"),
    ]);
    assert_eq!(
        got,
        [
            "purge_delay=250",
            "retain_empty=3",
            "background_purge=1",
            "running=true"
        ],
        "{stderr}"
    );
    assert!(!stderr.contains("fam-alloc:"), "{stderr}");

    // Bad values: one warning line each, and the defaults.
    let (got, stderr) = options_with(&[
        ("FAM_PURGE_DELAY", "soon"),
        ("FAM_RETAIN_EMPTY", "-2"),
        ("FAM_BACKGROUND_PURGE", "yes"),
    ]);
    assert_eq!(
        got,
        [
            "purge_delay=100",
            "retain_empty=64",
            "background_purge=0",
            "running=false"
        ],
        "{stderr}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("fam-alloc: "))
        .collect();
    assert_eq!(
        warnings,
        [
            "fam-alloc: FAM_PURGE_DELAY ignored: expected an integer number of milliseconds, -1 for never; using the default",
            "fam-alloc: FAM_RETAIN_EMPTY ignored: expected a number of chunks, 0 or more; using the default",
            "fam-alloc: FAM_BACKGROUND_PURGE ignored: expected 0 or 1; using the default",
        ],
        "{stderr}"
    );
}

/// The shared library of the build profile this test binary belongs to
/// (`<target dir>/<profile>/libfam_malloc.so`), built on demand: `cargo test` builds the crate
/// as an rlib only.
fn shared_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target dir>/<profile>/deps/<test binary>
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    shared_library_of(profile_dir.ends_with("release"))
}

/// The shared library of the release profile or the dev one, built on demand.
fn shared_library_of(release: bool) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_dir = exe.parent().unwrap().parent().unwrap().parent().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", "fam-malloc", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building the shared library failed");
    let so = target_dir
        .join(if release { "release" } else { "debug" })
        .join("libfam_malloc.so");
    assert!(so.exists(), "{} was not built", so.display());
    so
}

/// The instructions of the exported function `name` in `so`, as objdump prints them.
fn disassembly(so: &std::path::Path, name: &str) -> Vec<String> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", "-M", "intel"])
        .arg(format!("--disassemble={name}"))
        .arg(so)
        .output()
        .expect("objdump (binutils) is needed to read the library's code");
    assert!(out.status.success(), "objdump failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<String> = text
        .lines()
        .skip_while(|l| !l.ends_with(&format!("<{name}>:")))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    assert!(!lines.is_empty(), "no code for {name} in {}", so.display());
    lines
}

/// The library's static TLS (its `PT_TLS` segment, which glibc carves out of every thread's
/// stack and out of the few hundred bytes it keeps for libraries with initial-exec TLS) stays
/// small: the thread heap is reached through a pointer there, not kept there. With the heap in
/// it (49 KiB), a thread with a 16 or 32 KiB stack could not be created.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn the_shared_library_keeps_little_static_tls() {
    let so = shared_library_of(true);
    let out = Command::new("readelf")
        .args(["-lW"])
        .arg(&so)
        .output()
        .expect("readelf (binutils) is needed to read the library's headers");
    assert!(out.status.success(), "readelf failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let tls = text
        .lines()
        .find(|l| l.trim_start().starts_with("TLS "))
        .unwrap_or_else(|| panic!("no TLS segment in {}:\n{text}", so.display()));
    // Type, offset, virtual address, physical address, file size, memory size, ...
    let memsz = tls.split_whitespace().nth(5).unwrap();
    let memsz = usize::from_str_radix(memsz.trim_start_matches("0x"), 16).unwrap();
    assert!(memsz <= 512, "{memsz} bytes of static TLS: {tls}");
}

/// The fast paths of `malloc` and `free` in the optimised library reach the thread's heap
/// through initial-exec TLS (in the `fs` segment) and never call `__tls_get_addr`, the
/// general-dynamic TLS call every access of a shared library's thread-local otherwise costs.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn malloc_and_free_reach_the_thread_heap_without_tls_get_addr() {
    let so = shared_library_of(true);
    for name in ["malloc", "free"] {
        let code = disassembly(&so, name);
        let calls: Vec<&String> = code
            .iter()
            .filter(|l| l.contains("__tls_get_addr"))
            .collect();
        assert!(calls.is_empty(), "{name} calls __tls_get_addr: {calls:?}");
        assert!(
            code.iter().any(|l| l.contains("fs:")),
            "{name} does not reach the thread's heap itself (not inlined?):\n{}",
            code.join("\n")
        );
    }
}

#[test]
fn the_shared_library_exports_the_family_and_nothing_else() {
    let so = shared_library();
    let out = Command::new("nm")
        .args(["-D", "--defined-only", "--format=posix"])
        .arg(&so)
        .output()
        .expect("nm (binutils) is needed to list the exported symbols");
    assert!(out.status.success(), "nm failed: {out:?}");
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    let mut want = vec![
        "aligned_alloc",
        "calloc",
        "fam_alloc",
        "fam_init_global_allocator",
        "fam_option_get",
        "fam_option_set",
        "fam_print_stats",
        "fam_release",
        "fam_resize",
        "fam_trim",
        "fam_version",
        "fam_write_stats",
        "free",
        "mallinfo",
        "mallinfo2",
        "malloc",
        "malloc_trim",
        "malloc_usable_size",
        "mallopt",
        "memalign",
        "posix_memalign",
        "pvalloc",
        "realloc",
        "reallocarray",
        "valloc",
    ];
    // C++ operator new and delete, every replaceable form, by mangled name.
    for op in ["_Znw", "_Zna"] {
        for args in [
            "m",
            "mRKSt9nothrow_t",
            "mSt11align_val_t",
            "mSt11align_val_tRKSt9nothrow_t",
        ] {
            want.push(String::leak(format!("{op}{args}")));
        }
    }
    for op in ["_Zdl", "_Zda"] {
        for args in [
            "Pv",
            "Pvm",
            "PvRKSt9nothrow_t",
            "PvSt11align_val_t",
            "PvmSt11align_val_t",
            "PvSt11align_val_tRKSt9nothrow_t",
        ] {
            want.push(String::leak(format!("{op}{args}")));
        }
    }
    want.sort();
    assert_eq!(names, want);

    // Preloaded into a shell that forks subshells and pipes through other programs, it runs them
    // all and changes nothing in their output.
    let script = "for i in 3 1 2; do (echo \"line $i\"); done | sort | tr a-z A-Z; echo $(seq 1 100 | wc -l)";
    let run = |preload: Option<&PathBuf>| {
        let mut sh = Command::new("/bin/sh");
        sh.args(["-c", script]);
        if let Some(so) = preload {
            sh.env("LD_PRELOAD", so);
        }
        let out = sh.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(out.stderr.is_empty(), "{out:?}");
        out.stdout
    };
    let plain = run(None);
    assert_eq!(plain, b"LINE 1\nLINE 2\nLINE 3\n100\n");
    assert_eq!(run(Some(&so)), plain);
}

#[test]
fn the_header_declares_the_library_functions() {
    let header = include_str!("../include/fam_malloc.h");
    assert!(header.contains("size_t fam_trim(void);"));
    assert!(header.contains("const char *fam_version(void);"));
    // SAFETY: `fam_version` returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(fm::fam_version().cast::<c_char>()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

/// Every function the header declares is listed in the crate README's export list.
#[test]
fn the_readme_lists_every_function_the_header_declares() {
    let header = include_str!("../include/fam_malloc.h");
    let readme = include_str!("../README.md");
    let start = readme
        .find("## What it exports")
        .expect("an export section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let declared: Vec<&str> = header
        .lines()
        .filter(|l| !l.trim_start().starts_with('*') && l.contains("fam_") && l.ends_with(");"))
        .filter_map(|l| {
            let name = l[..l.find('(')?].rsplit([' ', '*']).next()?;
            name.starts_with("fam_").then_some(name)
        })
        .collect();
    assert!(declared.len() >= 8, "header parse found {declared:?}");
    for name in declared {
        assert!(
            section.contains(&format!("`{name}`")),
            "README's export list leaves out {name}"
        );
    }
}
