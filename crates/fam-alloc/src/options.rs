//! The allocator's options: read once from the environment when the first thread registers, and
//! settable from the program at any time (they take effect at the next pool operation).
//!
//! | option | environment | default | meaning |
//! |---|---|---|---|
//! | purge delay | `FAM_PURGE_DELAY` | 100 | milliseconds free memory keeps its pages; 0 at once, -1 never |
//! | empty chunks kept | `FAM_RETAIN_EMPTY` | 16 | empty 4 MiB chunks kept committed |
//! | statistics at exit | `FAM_STATS`, `FAM_STATS_FILE` | off | see [`crate::print_stats`] |
//!
//! A value that does not parse gets a one-line warning on stderr and the default.

use slab_pool::POLICY;

pub use slab_pool::policy::{DEFAULT_PURGE_DELAY_MS, DEFAULT_RETAIN_EMPTY};

/// Sets how long, in milliseconds, freed memory keeps its pages before they go back to the OS
/// (free pages of slab chunks and empty chunks): 0 at the next pool operation, -1 (or any
/// negative value) never, only at [`crate::trim`].
pub fn set_purge_delay_ms(ms: i64) {
    POLICY.set_purge_delay_ms(ms);
}

/// The purge delay in milliseconds (negative: never).
pub fn purge_delay_ms() -> i64 {
    POLICY.purge_delay_ms()
}

/// Sets how many empty chunks keep their pages at most (beyond them the oldest is decommitted).
pub fn set_retain_empty(chunks: usize) {
    POLICY.set_retain_empty(chunks);
}

/// How many empty chunks keep their pages at most.
pub fn retain_empty() -> usize {
    POLICY.retain_empty()
}

/// Reads the options from the environment (once, at the first thread's registration).
pub(crate) fn read_env() {
    if let Some(v) = env_value(
        c"FAM_PURGE_DELAY",
        "an integer number of milliseconds, -1 for never",
    ) {
        set_purge_delay_ms(v);
    }
    if let Some(v) = env_value(c"FAM_RETAIN_EMPTY", "a number of chunks, 0 or more") {
        match usize::try_from(v) {
            Ok(n) => set_retain_empty(n),
            Err(_) => warn(c"FAM_RETAIN_EMPTY", "a number of chunks, 0 or more"),
        }
    }
}

/// The integer value of environment variable `name`, or `None` (with a warning when it is set
/// but does not parse).
fn env_value(name: &core::ffi::CStr, what: &str) -> Option<i64> {
    let raw = crate::statistics::getenv(name)?;
    let parsed = core::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    if parsed.is_none() {
        warn(name, what);
    }
    parsed
}

/// One line on stderr: the variable is ignored. Written piece by piece (no allocation).
fn warn(name: &core::ffi::CStr, what: &str) {
    let parts: [&[u8]; 5] = [
        b"fam-alloc: ",
        name.to_bytes(),
        b" ignored: expected ",
        what.as_bytes(),
        b"; using the default\n",
    ];
    for p in parts {
        // SAFETY: `p` is valid for reads of its length; a failed write to stderr is ignored.
        let _ = unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
}
