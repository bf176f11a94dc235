//! The allocator's options: read once from the environment when the first thread registers, and
//! settable from the program at any time (they take effect at the next pool operation).
//!
//! | option | environment | default | meaning |
//! |---|---|---|---|
//! | purge delay | `FAM_PURGE_DELAY` | 100 | milliseconds free memory keeps its pages; 0 at once, -1 never |
//! | empty chunks kept | `FAM_RETAIN_EMPTY` | 64 | empty 4 MiB chunks kept committed |
//! | background purge | `FAM_BACKGROUND_PURGE` | 0 | 1: a thread gives memory back while the program makes no allocator call |
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

/// Turns the background purge thread on or off (see the crate's README): on starts it now,
/// off lets it end within half a purge delay.
pub fn set_background_purge(on: bool) {
    crate::background::set_enabled(on);
}

/// Whether the background purge is on.
pub fn background_purge() -> bool {
    crate::background::enabled()
}

/// Whether the background purge thread runs in this process now (it starts when the purge is
/// turned on, and again in a forked child at the child's first allocator slow path).
pub fn background_purge_running() -> bool {
    crate::background::running()
}

/// Sets the option called `name` (`purge_delay` in milliseconds, `retain_empty` in chunks,
/// `background_purge` 0 or 1: the names the C library's `fam_option_set` takes). False, changing
/// nothing, for an unknown name or a value out of the option's range.
pub fn set(name: &str, value: i64) -> bool {
    match (name, value) {
        ("purge_delay", ms) => set_purge_delay_ms(ms),
        ("retain_empty", n) => match usize::try_from(n) {
            Ok(n) => set_retain_empty(n),
            Err(_) => return false,
        },
        ("background_purge", v @ (0 | 1)) => set_background_purge(v == 1),
        _ => return false,
    }
    true
}

/// The value of the option called `name` (as for [`set`]), or `None` for an unknown name.
pub fn get(name: &str) -> Option<i64> {
    Some(match name {
        "purge_delay" => purge_delay_ms(),
        "retain_empty" => i64::try_from(retain_empty()).unwrap_or(i64::MAX),
        "background_purge" => i64::from(background_purge()),
        _ => return None,
    })
}

/// Reads the options from the environment (once, at the first thread's registration; the C
/// library does it in its load-time constructor).
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
    const BOOL: &str = "0 or 1";
    if let Some(v) = env_value(c"FAM_BACKGROUND_PURGE", BOOL) {
        match v {
            // Only the request: this runs inside the allocator; a start point starts it.
            0 | 1 => crate::background::request(v == 1),
            _ => warn(c"FAM_BACKGROUND_PURGE", BOOL),
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

/// One line on stderr: the variable is ignored.
fn warn(name: &core::ffi::CStr, what: &str) {
    warn_line(&[
        b"fam-alloc: ",
        name.to_bytes(),
        b" ignored: expected ",
        what.as_bytes(),
        b"; using the default\n",
    ]);
}

/// Writes `parts` to stderr, piece by piece (no allocation).
pub(crate) fn warn_line(parts: &[&[u8]]) {
    for p in parts {
        // SAFETY: `p` is valid for reads of its length; a failed write to stderr is ignored.
        let _ = unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
}
