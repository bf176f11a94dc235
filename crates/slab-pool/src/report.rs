//! Reporting misuse without allocating: a one-line message on stderr, then abort.
//!
//! A free of a pointer the allocator does not own, of an interior pointer, or of a block that is
//! already free would corrupt the heap if obeyed. The allocator refuses it loudly instead, the way
//! glibc does: the message names the operation and the address, and the process aborts (SIGABRT).

/// Writes `fam-alloc: OP(0xADDR): WHAT` to stderr and aborts.
#[cold]
#[inline(never)]
pub fn bad_free(op: &str, addr: usize, what: &str) -> ! {
    let mut buf = [0u8; 256];
    let mut w = Writer {
        buf: &mut buf,
        len: 0,
    };
    w.put(b"fam-alloc: ");
    w.put(op.as_bytes());
    w.put(b"(0x");
    w.hex(addr);
    w.put(b"): ");
    w.put(what.as_bytes());
    w.put(b"\n");
    let len = w.len;
    // SAFETY: `buf[..len]` is initialised; write(2) and abort(3) have no other preconditions.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::abort();
    }
}

/// A fixed buffer that truncates instead of growing.
struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn hex(&mut self, v: usize) {
        let mut digits = [0u8; 16];
        let mut n = 0;
        let mut v = v;
        loop {
            digits[n] = b"0123456789abcdef"[v & 15];
            n += 1;
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        digits[..n].reverse();
        self.put(&digits[..n]);
    }
}
