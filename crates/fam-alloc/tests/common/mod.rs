//! Helpers shared by the integration tests: a deterministic PRNG, fill patterns that tell one
//! block's bytes from another's, resident-memory readings, and a lock that keeps the tests that
//! measure the whole process apart from the others of their binary.
//!
//! Each test binary compiles its own copy, and not every binary uses every helper.
#![allow(dead_code)]

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `release` in optimised builds, `debug` in debug builds (tests scale their work with it).
pub fn scaled(release: usize, debug: usize) -> usize {
    if cfg!(debug_assertions) {
        debug
    } else {
        release
    }
}

/// The splitmix64 finaliser: a bijective mix of 64 bits.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// xorshift64*: a small deterministic generator, so every run of a test does the same work.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Self(mix(seed) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A value in `0..n` as a `usize`.
    pub fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with a probability of `percent` in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Blocks up to this many bytes are filled and checked completely; larger ones in samples.
const FULL_BYTES: usize = 16 * 1024;
/// Words filled completely at each end of a sampled block.
const EDGE_WORDS: usize = 512;
/// Stride, in words, of the samples in the middle of a large block (odd, so the samples fall
/// at a different offset in each page).
const STRIDE_WORDS: usize = 61;

/// The word indices of a `len`-byte block that [`fill`] writes: every word of a small block;
/// for a large one, the first and last 4 KiB and every `STRIDE_WORDS`-th word in between.
fn for_each_word(len: usize, mut f: impl FnMut(usize) -> bool) -> bool {
    let n = len / 8;
    if len <= FULL_BYTES {
        return (0..n).all(f);
    }
    if !(0..EDGE_WORDS).all(&mut f) {
        return false;
    }
    let mut i = EDGE_WORDS;
    while i < n - EDGE_WORDS {
        if !f(i) {
            return false;
        }
        i += STRIDE_WORDS;
    }
    (n - EDGE_WORDS..n).all(f)
}

/// The pattern word at word index `i` of a block filled with `seed`.
fn word(seed: u64, i: usize) -> u64 {
    mix(seed ^ (i as u64).wrapping_mul(0xd6e8_feb8_6659_fd93))
}

/// Fills `len` bytes at `p` with the pattern of `seed` (see [`for_each_word`] for which words of
/// a large block), including the bytes past the last whole word.
///
/// # Safety
/// `p` is valid for writes of `len` bytes.
pub unsafe fn fill(p: *mut u8, len: usize, seed: u64) {
    for_each_word(len, |i| {
        // SAFETY: word `i` lies inside the `len` bytes the caller vouches for; unaligned writes
        // are allowed.
        unsafe { p.add(i * 8).cast::<u64>().write_unaligned(word(seed, i)) };
        true
    });
    let whole = len / 8;
    let tail = word(seed, whole).to_le_bytes();
    for (j, &b) in tail.iter().enumerate().take(len % 8) {
        // SAFETY: `whole * 8 + j < len`.
        unsafe { p.add(whole * 8 + j).write(b) };
    }
}

/// Checks the first `limit` bytes of a block that [`fill`] filled with `seed` when it was
/// `filled_len` bytes long (a block that was reallocated keeps its old prefix). Returns the
/// offset of the first wrong byte found.
///
/// # Safety
/// `p` is valid for reads of `limit.min(filled_len)` bytes.
pub unsafe fn check_prefix(
    p: *const u8,
    filled_len: usize,
    limit: usize,
    seed: u64,
) -> Option<usize> {
    let limit = limit.min(filled_len);
    let mut bad = None;
    for_each_word(filled_len, |i| {
        if (i + 1) * 8 > limit {
            return true;
        }
        // SAFETY: the word ends within `limit` bytes, which the caller vouches for.
        let w = unsafe { p.add(i * 8).cast::<u64>().read_unaligned() };
        if w != word(seed, i) {
            bad = Some(i * 8);
            return false;
        }
        true
    });
    if bad.is_some() {
        return bad;
    }
    let whole = filled_len / 8;
    let tail = word(seed, whole).to_le_bytes();
    for (j, &b) in tail.iter().enumerate().take(filled_len % 8) {
        let off = whole * 8 + j;
        // SAFETY: `off < limit` is checked first.
        if off < limit && unsafe { p.add(off).read() } != b {
            return Some(off);
        }
    }
    None
}

/// Checks a block that [`fill`] filled with `seed`; the offset of the first wrong byte.
///
/// # Safety
/// `p` is valid for reads of `len` bytes.
pub unsafe fn check(p: *const u8, len: usize, seed: u64) -> Option<usize> {
    // SAFETY: forwarded.
    unsafe { check_prefix(p, len, len, seed) }
}

/// A seed that ties a pattern to the block's address as well as to `seed`.
pub fn addr_seed(p: *const u8, seed: u64) -> u64 {
    mix(seed ^ (p as usize as u64).rotate_left(29))
}

/// Whether the `len` bytes at `p` are all zero (compared 64 KiB at a time with `memcmp`).
///
/// # Safety
/// `p` is valid for reads of `len` bytes.
pub unsafe fn is_zero(p: *const u8, len: usize) -> bool {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    // SAFETY: the caller vouches for the `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(p, len) };
    bytes.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// One field of `/proc/self/status`, in bytes.
pub fn status_field(name: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kib: usize = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Anonymous resident memory of the process in bytes (`RssAnon`, or `VmRSS` on kernels that do
/// not report it).
pub fn rss_anon() -> usize {
    status_field("RssAnon:")
        .or_else(|| status_field("VmRSS:"))
        .expect("/proc/self/status reports resident memory")
}

/// All chunks the global pool has on its lists (partial, empty committed, empty decommitted).
pub fn listed_chunks() -> usize {
    let c = fam_alloc::chunk_counts();
    c.partial + c.empty_committed + c.empty_decommitted
}

/// Mebibytes, for messages.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

static SERIAL: RwLock<()> = RwLock::new(());

/// Held by every test that only needs the process not to be measured while it runs.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

/// Held by a test that measures the whole process (resident memory, chunk counts): no other
/// test of the binary runs meanwhile.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SERIAL.write().unwrap_or_else(|e| e.into_inner())
}
