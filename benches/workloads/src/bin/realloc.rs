//! `realloc`: many buffers grown by small steps.
//!
//! Each thread keeps a set of buffers and, again and again, picks one at random and grows it
//! with `realloc` by 1..=64 bytes, writing the new bytes; a buffer that reaches its target
//! length (log-uniform, 64 B .. 256 KiB) is checked byte by byte and freed, and a new one
//! starts from nothing (`realloc(NULL, n)`). Buffers grow side by side, as a program's
//! strings and vectors do, so an allocator that grows in place saves the copies, and one that
//! moves every time pays for them. After every `realloc` the first and the last old byte are
//! checked, so a move that loses content is caught at once.
//!
//! Measured: from the start of the threads to their end, the final frees included.

use fam_workloads::block::{free, realloc, tag};
use fam_workloads::{fail, finish, timed_threads, Args, Rng, Work};

/// Buffers per thread.
const BUFFERS: usize = 64;
/// Growth steps per thread at scale 1.
const OPS: usize = 7_000_000;
const MAX_STEP: usize = 64;
const MIN_TARGET: usize = 64;
const MAX_TARGET: usize = 256 * 1024;

/// The byte at offset `i` of the buffer whose tag is `tag`.
#[inline]
fn byte(tag: u64, i: usize) -> u8 {
    ((tag ^ i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
}

/// A buffer being grown.
struct Buffer {
    ptr: *mut u8,
    len: usize,
    target: usize,
    tag: u64,
}

impl Buffer {
    /// Checks the bytes `range` of the buffer; ends the program on a mismatch.
    fn check(&self, range: std::ops::Range<usize>, what: &str) {
        for i in range {
            // SAFETY: callers pass offsets below `len`, inside the buffer.
            let got = unsafe { self.ptr.add(i).read() };
            if got != byte(self.tag, i) {
                fail(format_args!(
                    "realloc: {what}: buffer {:p} of {} bytes differs at offset {i}",
                    self.ptr, self.len
                ));
            }
        }
    }

    /// Checks every byte and frees the buffer; it is empty afterwards, with a new tag and
    /// target.
    fn finish(&mut self, tag: u64, target: usize) {
        self.check(0..self.len, "full check before free");
        // SAFETY: `ptr` is null or a live block of this thread; it is not used again.
        unsafe { free(self.ptr) };
        *self = Buffer {
            ptr: std::ptr::null_mut(),
            len: 0,
            target,
            tag,
        };
    }
}

fn main() {
    let args = Args::from_env(
        "realloc",
        "threads grow many buffers by small realloc steps, checking content",
    );
    let ops = args.scaled(OPS);
    let elapsed = timed_threads(args.threads, |t, start| {
        let mut rng = Rng::new(t as u64 + 1);
        let mut n = 0u64;
        let mut bufs: Vec<Buffer> = (0..BUFFERS)
            .map(|_| {
                n += 1;
                Buffer {
                    ptr: std::ptr::null_mut(),
                    len: 0,
                    target: rng.log_uniform(MIN_TARGET, MAX_TARGET),
                    tag: tag(t, n),
                }
            })
            .collect();
        start.wait();
        for _ in 0..ops {
            let b = &mut bufs[rng.below(BUFFERS)];
            let old = b.len;
            let new = old + rng.range(1, MAX_STEP);
            // SAFETY: `b.ptr` is null or this thread's live block; it is replaced by
            // the result.
            b.ptr = unsafe { realloc(b.ptr, new) };
            if old > 0 {
                b.check(0..1, "first byte after realloc");
                b.check(old - 1..old, "last byte after realloc");
            }
            for i in old..new {
                // SAFETY: `i < new`, inside the grown block.
                unsafe { b.ptr.add(i).write(byte(b.tag, i)) };
            }
            b.len = new;
            if new >= b.target {
                n += 1;
                b.finish(tag(t, n), rng.log_uniform(MIN_TARGET, MAX_TARGET));
            }
        }
        for b in &mut bufs {
            b.finish(0, 0);
        }
    });
    finish(
        "realloc",
        &args,
        Work {
            ops: (ops * args.threads) as u64,
            unit: "reallocs",
            elapsed,
        },
    );
}
