//! A `fmt::Write` over a fixed buffer, for writing reports where allocating is not allowed
//! (inside the allocator, at process exit).

use core::fmt;

/// A [`fmt::Write`] that collects text in a `[u8; N]` buffer and hands it to a sink: each time
/// the buffer fills, and for the rest on [`flush`](SinkWriter::flush) or drop.
///
/// The sink sees the bytes in order, in pieces of exactly `N` bytes except the last one; a
/// piece can end inside a line or inside a UTF-8 character, so a sink should treat them as
/// bytes (a `write(2)` to a file descriptor, say). Text longer than `N`, a long line included,
/// comes out whole over several pieces. With `N == 0` every `write_str` goes straight to the
/// sink.
///
/// ```
/// use core::fmt::Write;
/// let mut out = Vec::new();
/// let mut sink = |b: &[u8]| out.extend_from_slice(b);
/// {
///     let mut w = stats::SinkWriter::<8>::new(&mut sink);
///     write!(w, "{} and {}", "one", 2).unwrap();
/// } // dropped: the rest is flushed
/// assert_eq!(out, b"one and 2");
/// ```
pub struct SinkWriter<'a, const N: usize> {
    /// Invariant: `buf[..len]` holds the bytes not yet handed to the sink, `len < N` between
    /// calls (a full buffer is handed on at once) unless `N == 0`.
    buf: [u8; N],
    len: usize,
    sink: &'a mut dyn FnMut(&[u8]),
}

impl<'a, const N: usize> SinkWriter<'a, N> {
    /// A writer with an empty buffer over `sink`.
    pub fn new(sink: &'a mut dyn FnMut(&[u8])) -> Self {
        SinkWriter {
            buf: [0; N],
            len: 0,
            sink,
        }
    }

    /// Hands the buffered bytes, if any, to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<const N: usize> fmt::Write for SinkWriter<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        if N == 0 {
            if !bytes.is_empty() {
                (self.sink)(bytes);
            }
            return Ok(());
        }
        while !bytes.is_empty() {
            let take = (N - self.len).min(bytes.len());
            self.buf[self.len..self.len + take].copy_from_slice(&bytes[..take]);
            self.len += take;
            bytes = &bytes[take..];
            if self.len == N {
                self.flush();
            }
        }
        Ok(())
    }
}

impl<const N: usize> Drop for SinkWriter<'_, N> {
    fn drop(&mut self) {
        self.flush();
    }
}
