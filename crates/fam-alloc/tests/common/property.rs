//! What the stable property tests share: proptest's settings, and the fuzz targets' regression
//! inputs (`fuzz/regressions/TARGET/`), which they replay through the same decoders.

use std::path::PathBuf;

use proptest::test_runner::{Config, FileFailurePersistence};

/// Random cases per property when `PROPTEST_CASES` is not set.
pub const DEFAULT_CASES: u32 = 256;

/// proptest's default settings (which read `PROPTEST_CASES` and its other variables), with
/// [`DEFAULT_CASES`] when the environment names no count, and failing cases kept in a
/// `.proptest-regressions` file beside the test's source.
pub fn config() -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = DEFAULT_CASES;
    }
    c.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )));
    c
}

/// Every input of `target`'s regression folder, sorted by name, with its bytes. Empty when the
/// folder is not there: it belongs to the repository, and a packaged copy of this crate has none.
pub fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "{}: not here (a packaged crate); nothing to replay",
                dir.display()
            );
            return Vec::new();
        }
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{} holds at least the seed inputs",
        dir.display()
    );
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, data)
        })
        .collect()
}
