//! SinkWriter hands the same bytes on as writing into a String would, whatever its size.

mod common;

use core::fmt::Write;

use common::{known, random, render, Rng};
use stats::{write_bmalloc, write_json, write_table, SinkWriter};

/// What a `SinkWriter<N>` hands on while `f` writes to it, as the list of pieces.
fn pieces<const N: usize>(f: impl FnOnce(&mut SinkWriter<'_, N>)) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut sink = |b: &[u8]| out.push(b.to_vec());
    {
        let mut w = SinkWriter::<N>::new(&mut sink);
        f(&mut w);
    } // drop flushes
    out
}

fn check_pieces<const N: usize>(pieces: &[Vec<u8>]) {
    let (last, full) = pieces.split_last().unwrap();
    if N == 0 {
        assert!(pieces.iter().all(|p| !p.is_empty()));
    } else {
        assert!(
            full.iter().all(|p| p.len() == N),
            "every piece but the last is a full buffer"
        );
        assert!(!last.is_empty() && last.len() <= N);
    }
}

#[test]
fn reports_through_a_tiny_buffer_match_a_string() {
    let (snap, heaps) = known();
    for write in [write_bmalloc, write_table, write_json] {
        let expected = render(write, &snap, &heaps);
        let got = pieces::<7>(|w| write(w, &snap, &mut heaps.iter().copied()).unwrap());
        check_pieces::<7>(&got);
        assert_eq!(got.concat(), expected.as_bytes());
    }
}

#[test]
fn any_buffer_size_gives_the_same_bytes() {
    let mut rng = Rng(77);
    for _ in 0..20 {
        let (snap, heaps) = random(&mut rng);
        let expected = render(write_bmalloc, &snap, &heaps);
        let run = |w: &mut dyn Write| write_bmalloc(w, &snap, &mut heaps.iter().copied()).unwrap();
        let p0 = pieces::<0>(|w| run(w));
        let p1 = pieces::<1>(|w| run(w));
        let p7 = pieces::<7>(|w| run(w));
        let p4096 = pieces::<4096>(|w| run(w));
        check_pieces::<0>(&p0);
        check_pieces::<1>(&p1);
        check_pieces::<7>(&p7);
        check_pieces::<4096>(&p4096);
        for p in [p0, p1, p7, p4096] {
            assert_eq!(p.concat(), expected.as_bytes());
        }
    }
}

#[test]
fn a_line_longer_than_the_buffer_comes_out_whole() {
    let line: String = (0..1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let got = pieces::<7>(|w| {
        w.write_str("x").unwrap();
        writeln!(w, "{line}").unwrap();
        w.write_str("é€𝄞").unwrap(); // multi-byte characters may be split between pieces
    });
    check_pieces::<7>(&got);
    assert_eq!(got.concat(), format!("x{line}\né€𝄞").as_bytes());
}

#[test]
fn flush_hands_on_what_is_buffered_and_only_that() {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut sink = |b: &[u8]| out.push(b.to_vec());
    let mut w = SinkWriter::<16>::new(&mut sink);
    w.flush(); // nothing buffered: the sink is not called
    w.write_str("abc").unwrap();
    w.flush();
    w.flush();
    w.write_str("0123456789abcdef").unwrap(); // exactly full: handed on at once
    w.write_str("z").unwrap();
    drop(w);
    assert_eq!(
        out,
        [b"abc".to_vec(), b"0123456789abcdef".to_vec(), b"z".to_vec()]
    );
}

#[test]
fn nothing_written_means_the_sink_is_never_called() {
    assert!(pieces::<8>(|_| {}).is_empty());
    assert!(pieces::<8>(|w| w.write_str("").unwrap()).is_empty());
}
