//! The readable table: version, one aligned row per active class, the labelled sections.

mod common;

use common::{known, random, render, Rng};
use stats::{write_table, ClassStats, Snapshot, CHUNK_BYTES};

const KNOWN: &str = "\
fam-alloc 0.1.0: memory statistics

class      size      allocs       frees      in use  in use bytes      cached        peak
    2        24          11           5           6         144 B           3          12
    5        48           6           3           3         144 B           1           6
    9        96           2           2           0           0 B           2           2

 heap        in use        cached
    1         432 B          72 B
    2        -144 B         240 B
    0           0 B           0 B

                               count        size           bytes
large blocks
  allocs                           3
  frees                            1
  in use                                 8.0 MiB         8388608
  peak                                  12.0 MiB        12582912
  cached chunks                    1     4.0 MiB         4194304
chunks (4 MiB each)
  mapped                           6    24.0 MiB        25165824
  active                           3    12.0 MiB        12582912
  empty, committed                 2     8.0 MiB         8388608
  empty, decommitted               1     4.0 MiB         4194304
  in large blocks                  4    16.0 MiB        16777216
memory (pages)
  committed                             30.0 MiB        31457280
  decommitted                            5.0 MiB         5242880
  resident (process)                    41.0 MiB        42991616
threads
  live                             2
  exited                           5
totals (small + large)
  allocs                          22
  frees                           11
  in use                                 8.0 MiB         8388896
  cached                                   312 B             312
";

#[test]
fn known_snapshot_exact_text() {
    let (snap, heaps) = known();
    assert_eq!(render(write_table, &snap, &heaps), KNOWN);
}

#[test]
fn no_heaps_no_heap_section_and_no_classes_says_so() {
    let snap = Snapshot::new("9.9.9", 10);
    let out = render(write_table, &snap, &[]);
    assert!(
        out.starts_with("fam-alloc 9.9.9: memory statistics\n\nclass "),
        "{out}"
    );
    assert!(out.contains("\n  (no small blocks)\n\n  "), "{out}");
    assert!(!out.contains(" heap "), "{out}");
}

/// Parses a human size (`"1.5"`, `"KiB"`) back to bytes, approximately.
fn human(n: &str, unit: &str) -> f64 {
    let n: f64 = n.parse().unwrap();
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024f64.powi(4),
        "PiB" => 1024f64.powi(5),
        "EiB" => 1024f64.powi(6),
        other => panic!("unit {other}"),
    };
    n * scale
}

#[test]
fn random_snapshots_rows_aligned_and_numbers_right() {
    let mut rng = Rng(0xdead_beef);
    for _ in 0..200 {
        let (snap, heaps) = random(&mut rng);
        let out = render(write_table, &snap, &heaps);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "fam-alloc 0.1.0-test: memory statistics");
        let header = lines[2];
        assert!(header.starts_with("class"));
        let active: Vec<(usize, &ClassStats)> = snap.active().collect();
        let rows = &lines[3..3 + active.len().max(1)];
        if active.is_empty() {
            assert_eq!(rows, ["  (no small blocks)"]);
        }
        for (row, (b, c)) in rows.iter().zip(&active) {
            // Right-aligned columns of fixed width: every row ends where the header ends, and
            // every column's last character sits under the header's.
            assert_eq!(row.len(), header.len(), "{row:?}");
            for end in [5, 15, 27, 39, 51, 65, 77, 89] {
                assert_ne!(
                    header.as_bytes()[end - 1],
                    b' ',
                    "header column ending at {end}"
                );
                assert_ne!(
                    row.as_bytes()[end - 1],
                    b' ',
                    "column ending at {end} in {row:?}"
                );
                if end < header.len() {
                    assert_eq!(
                        row.as_bytes()[end],
                        b' ',
                        "gap after column ending at {end} in {row:?}"
                    );
                }
            }
            let t: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(t.len(), 9, "{row:?}");
            let n = |i: usize| t[i].parse::<i128>().unwrap();
            assert_eq!(n(0), *b as i128);
            assert_eq!(n(1), i128::from(c.block_size));
            assert_eq!(n(2), i128::from(c.allocs));
            assert_eq!(n(3), i128::from(c.frees));
            assert_eq!(n(4), i128::from(c.allocs) - i128::from(c.frees));
            let bytes = c.in_use_bytes() as f64;
            let shown = human(t[5], t[6]);
            assert!(
                (shown - bytes).abs() <= bytes.abs() * 0.05 + 0.5,
                "{shown} vs {bytes}: {row:?}"
            );
            assert_eq!(n(7), i128::from(c.cached));
            assert_eq!(n(8), i128::from(c.peak_blocks));
        }
        // Labelled rows: count, human size, exact bytes.
        let row = |label: &str, nth: usize| -> Vec<&str> {
            let prefix = format!("  {label:<22}");
            let l = lines
                .iter()
                .filter(|l| l.starts_with(&prefix))
                .nth(nth)
                .unwrap_or_else(|| panic!("{label}"));
            l[prefix.len()..].split_whitespace().collect()
        };
        let chunks = snap.chunks;
        for (label, v) in [
            ("mapped", chunks.mapped),
            ("active", chunks.active),
            ("empty, committed", chunks.empty_committed),
            ("empty, decommitted", chunks.empty_decommitted),
            ("in large blocks", chunks.large),
        ] {
            let t = row(label, 0);
            assert_eq!(t[0], v.to_string(), "{label}");
            assert_eq!(
                t[3],
                (u128::from(v) * u128::from(CHUNK_BYTES)).to_string(),
                "{label}"
            );
        }
        assert_eq!(row("allocs", 0), [snap.large.allocs.to_string()]);
        assert_eq!(row("in use", 0)[2], snap.large.bytes_in_use.to_string());
        assert_eq!(row("live", 0), [snap.threads_live.to_string()]);
        assert_eq!(row("exited", 0), [snap.threads_exited.to_string()]);
        assert_eq!(row("allocs", 1), [snap.allocs().to_string()]);
        assert_eq!(row("frees", 1), [snap.frees().to_string()]);
        assert_eq!(
            row("in use", 1).get(2).copied(),
            Some(&*snap.in_use_bytes().to_string()),
            "{out}"
        );
        assert_eq!(
            row("cached", 0).get(2).copied(),
            Some(&*snap.cached_bytes().to_string()),
            "{out}"
        );
        assert!(!out.lines().any(|l| l.ends_with(' ')), "no trailing blanks");
        assert!(!out.contains("18446744073709551615"));
    }
}
