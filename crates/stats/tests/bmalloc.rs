//! The bmalloc-style report: exact text for a known case, and the rules every line follows
//! (checked with a hand-written reader, so these run without the `std` feature).

mod common;

use common::{known, random, render, Rng};
use stats::{write_bmalloc, ClassStats, HeapStats, Snapshot};

const KNOWN: &str = "
V Memory Statistics (fam-alloc 0.1.0)
B 1/2(24) 3 10/4/6 144/72
B 1/5(48) 0 6/0/6 288/0
H 1 432/72
B 2/5(48) 1 0/3/-3 -144/48
B 2/9(96) 2 2/2/0 0/192
H 2 -144/240
B 0/2(24) 0 1/1/0 0/0
H 0 0/0
S 288/312
L 3/1 8388608 12582912 1
C 6/3/2/1/4
M 31457280/5242880/42991616
T 2/5
";

#[test]
fn known_snapshot_exact_text() {
    let (snap, heaps) = known();
    assert_eq!(render(write_bmalloc, &snap, &heaps), KNOWN);
}

#[test]
fn totals_come_from_the_snapshot_not_the_heaps_listed() {
    let (snap, heaps) = known();
    // Only heap 2 listed: S still covers every heap.
    let out = render(write_bmalloc, &snap, &heaps[1..2]);
    assert_eq!(
        out,
        "\nV Memory Statistics (fam-alloc 0.1.0)\nB 2/5(48) 1 0/3/-3 -144/48\n\
         B 2/9(96) 2 2/2/0 0/192\nH 2 -144/240\nS 288/312\nL 3/1 8388608 12582912 1\n\
         C 6/3/2/1/4\nM 31457280/5242880/42991616\nT 2/5\n"
    );
    // No heaps at all.
    let out = render(write_bmalloc, &snap, &[]);
    assert!(
        out.contains("\nV Memory Statistics (fam-alloc 0.1.0)\nS 288/312\nL "),
        "{out}"
    );
}

#[test]
fn inactive_classes_are_skipped_but_cached_only_classes_are_not() {
    let mut snap = Snapshot::new("1", 4);
    let mut heap = HeapStats::new(7, 4);
    for (b, c) in heap.classes[..4].iter_mut().enumerate() {
        c.block_size = 16 << b;
    }
    heap.classes[1].cached = 2; // no allocs or frees, but blocks in the bucket
    heap.classes[3].frees = 1;
    snap.classes = heap.classes;
    let out = render(write_bmalloc, &snap, &[heap]);
    let b: Vec<&str> = out.lines().filter(|l| l.starts_with("B ")).collect();
    assert_eq!(b, ["B 7/1(32) 2 0/0/0 0/64", "B 7/3(128) 0 0/1/-1 -128/0"]);
    assert!(out.contains("\nH 7 -128/64\nS -128/64\n"), "{out}");
}

#[test]
fn a_heap_with_no_activity_still_gets_its_h_line() {
    let snap = Snapshot::new("1", 4);
    let out = render(write_bmalloc, &snap, &[HeapStats::new(3, 4)]);
    assert_eq!(
        out,
        "\nV Memory Statistics (fam-alloc 1)\nH 3 0/0\nS 0/0\nL 0/0 0 0 0\nC 0/0/0/0/0\nM 0/0/0\nT 0/0\n"
    );
}

#[test]
fn the_version_is_never_empty_and_stays_on_its_line() {
    let mut snap = Snapshot::new("", 1);
    assert_eq!(snap.version, "unknown");
    assert!(render(write_bmalloc, &snap, &[])
        .starts_with("\nV Memory Statistics (fam-alloc unknown)\n"));
    snap.version = ""; // set directly, bypassing `new`
    assert!(render(write_bmalloc, &snap, &[])
        .starts_with("\nV Memory Statistics (fam-alloc unknown)\n"));
    snap.version = "1.0\nB 0/0(0) 0 0/0/0 0/0\r";
    let out = render(write_bmalloc, &snap, &[]);
    assert!(
        out.starts_with("\nV Memory Statistics (fam-alloc 1.0?B 0/0(0) 0 0/0/0 0/0?)\nS "),
        "{out}"
    );
}

#[test]
fn extreme_counters_saturate_instead_of_wrapping() {
    let mut snap = Snapshot::new("x", 2);
    snap.classes[0] = ClassStats {
        block_size: 16,
        allocs: u64::MAX,
        frees: 0,
        cached: u64::MAX,
        peak_blocks: 1,
    };
    snap.classes[1] = ClassStats {
        block_size: 16,
        allocs: 0,
        frees: u64::MAX,
        cached: 0,
        peak_blocks: 0,
    };
    let mut heap = HeapStats::new(1, 2);
    heap.classes = snap.classes;
    let out = render(write_bmalloc, &snap, &[heap]);
    let max = i64::MAX;
    let min = i64::MIN;
    let umax = u64::MAX;
    assert!(
        out.contains(&format!("B 1/0(16) {umax} {umax}/0/{max} {max}/{umax}\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("B 1/1(16) 0 0/{umax}/{min} {min}/0\n")),
        "{out}"
    );
    // The sum of MAX and MIN is -1 (exact in i128), not a wrapped value.
    assert!(
        out.contains(&format!("H 1 -1/{umax}\nS -1/{umax}\n")),
        "{out}"
    );
}

/// Numbers of a line after its kind letter, split at spaces, `/`, `(` and `)`.
fn numbers(line: &str) -> Vec<i128> {
    line[2..]
        .split([' ', '/', '(', ')'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("not a number: {s:?} in {line:?}"))
        })
        .collect()
}

#[test]
fn random_snapshots_follow_the_line_rules() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let (snap, heaps) = random(&mut rng);
        let out = render(write_bmalloc, &snap, &heaps);
        assert!(out.starts_with("\nV Memory Statistics (fam-alloc 0.1.0-test)\n"));
        assert!(out.ends_with('\n'));
        let mut heaps_seen = heaps.iter();
        let mut used = 0i128;
        let mut free = 0i128;
        let mut expect_b = Vec::new();
        for line in out.lines().skip(2) {
            // Every input is below 2^40 (allocs below 2^32): nothing near 2^63 or 2^64 may show.
            assert!(
                !line.contains("18446744073709551615") && !line.contains("922337203685477"),
                "{line}"
            );
            let v = numbers(line);
            assert!(
                v.iter().all(|&x| x.abs() < 1 << 62),
                "wrapped value in {line:?}"
            );
            match &line[..1] {
                "B" => {
                    let [k, b, size, c, nm, nf, inuse, u, f] = v[..] else {
                        panic!("{line}")
                    };
                    assert_eq!(inuse, nm - nf, "{line}");
                    assert_eq!(u, inuse * size, "{line}");
                    assert_eq!(f, c * size, "{line}");
                    expect_b.push((k, b));
                    used += u;
                    free += f;
                }
                "H" => {
                    let h = heaps_seen.next().expect("one H line per heap");
                    assert_eq!(v, [i128::from(h.id), used, free], "{line}");
                    let active: Vec<(i128, i128)> = h
                        .active()
                        .map(|(b, _)| (i128::from(h.id), b as i128))
                        .collect();
                    assert_eq!(expect_b, active, "B lines of heap {}", h.id);
                    (used, free, expect_b) = (0, 0, Vec::new());
                }
                "S" => {
                    assert!(
                        heaps_seen.next().is_none(),
                        "S before every heap was listed"
                    );
                    assert_eq!(
                        v,
                        [
                            i128::from(snap.small_in_use_bytes()),
                            i128::from(snap.cached_bytes())
                        ]
                    );
                }
                "L" => {
                    let l = snap.large;
                    assert_eq!(
                        v,
                        [
                            l.allocs,
                            l.frees,
                            l.bytes_in_use,
                            l.peak_bytes,
                            l.cached_chunks
                        ]
                        .map(i128::from)
                    );
                }
                "C" => {
                    let c = snap.chunks;
                    assert_eq!(
                        v,
                        [
                            c.mapped,
                            c.active,
                            c.empty_committed,
                            c.empty_decommitted,
                            c.large
                        ]
                        .map(i128::from)
                    );
                }
                "M" => {
                    let m = snap.memory;
                    assert_eq!(
                        v,
                        [m.committed_bytes, m.decommitted_bytes, m.resident_bytes].map(i128::from)
                    );
                }
                "T" => assert_eq!(v, [snap.threads_live, snap.threads_exited].map(i128::from)),
                _ => panic!("unexpected line {line:?}"),
            }
        }
    }
}

#[test]
fn cross_thread_frees_show_negative_in_use_per_heap() {
    let mut rng = Rng(12345);
    let mut negatives = 0;
    for _ in 0..100 {
        let (snap, heaps) = random(&mut rng);
        let out = render(write_bmalloc, &snap, &heaps);
        negatives += out
            .lines()
            .filter(|l| l.starts_with("B ") && l.contains("/-"))
            .count();
    }
    assert!(
        negatives > 100,
        "the random snapshots should exercise negative in-use: {negatives}"
    );
}
