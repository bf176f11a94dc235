//! Every report read back gives the numbers it was written from.
#![cfg(feature = "std")]

mod common;

use common::{known, random, render, Rng};
use stats::parse::{self, BLine, HLine, ParsedClass, ParsedHeap, Totals};
use stats::{write_bmalloc, write_json, ClassStats, HeapStats, Snapshot};

fn parsed_class(b: usize, c: &ClassStats) -> ParsedClass {
    ParsedClass {
        class: b,
        block_size: c.block_size,
        allocs: c.allocs,
        frees: c.frees,
        in_use: c.in_use(),
        in_use_bytes: c.in_use_bytes(),
        cached: c.cached,
        peak_blocks: c.peak_blocks,
    }
}

fn check_bmalloc(snap: &Snapshot, heaps: &[HeapStats]) {
    let out = render(write_bmalloc, snap, heaps);
    let p = parse::bmalloc(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(p.version, snap.version);
    let b: Vec<BLine> = heaps
        .iter()
        .flat_map(|h| {
            h.active().map(|(b, c)| BLine {
                heap: h.id,
                class: b,
                block_size: c.block_size,
                cached: c.cached,
                allocs: c.allocs,
                frees: c.frees,
                in_use: c.in_use(),
                used: c.in_use_bytes(),
                free: c.cached_bytes(),
            })
        })
        .collect();
    assert_eq!(p.classes, b);
    let h: Vec<HLine> = heaps
        .iter()
        .map(|h| HLine {
            heap: h.id,
            used: h.used_bytes(),
            free: h.free_bytes(),
        })
        .collect();
    assert_eq!(p.heaps, h);
    assert_eq!(
        (p.used, p.free),
        (snap.small_in_use_bytes(), snap.cached_bytes())
    );
    assert_eq!(p.large, Some(snap.large));
    assert_eq!(p.chunks, Some(snap.chunks));
    assert_eq!(p.memory, Some(snap.memory));
    assert_eq!(p.threads, Some((snap.threads_live, snap.threads_exited)));
}

fn check_json(snap: &Snapshot, heaps: &[HeapStats]) {
    let out = render(write_json, snap, heaps);
    let p = parse::json(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(p.version, snap.version);
    let classes: Vec<ParsedClass> = snap.active().map(|(b, c)| parsed_class(b, c)).collect();
    assert_eq!(p.classes, classes);
    assert!(p.classes.iter().all(|c| c.stats() == snap.classes[c.class]));
    assert_eq!(p.large, snap.large);
    assert_eq!(p.chunks, snap.chunks);
    assert_eq!(p.memory, snap.memory);
    assert_eq!(
        (p.threads_live, p.threads_exited),
        (snap.threads_live, snap.threads_exited)
    );
    assert_eq!(
        p.totals,
        Totals {
            allocs: snap.allocs(),
            frees: snap.frees(),
            in_use_bytes: snap.in_use_bytes(),
            cached_bytes: snap.cached_bytes(),
        }
    );
    let hs: Vec<ParsedHeap> = heaps
        .iter()
        .map(|h| ParsedHeap {
            id: h.id,
            in_use_bytes: h.used_bytes(),
            cached_bytes: h.free_bytes(),
            classes: h
                .active()
                .map(|(b, c)| ParsedClass {
                    peak_blocks: 0,
                    ..parsed_class(b, c)
                })
                .collect(),
        })
        .collect();
    assert_eq!(p.heaps, hs);
}

#[test]
fn known_snapshot_round_trips() {
    let (snap, heaps) = known();
    check_bmalloc(&snap, &heaps);
    check_json(&snap, &heaps);
}

#[test]
fn random_snapshots_round_trip() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..400 {
        let (snap, heaps) = random(&mut rng);
        check_bmalloc(&snap, &heaps);
        check_json(&snap, &heaps);
    }
}

#[test]
fn extreme_values_round_trip() {
    let mut snap = Snapshot::new("x", 3);
    snap.classes[0] = ClassStats {
        block_size: u64::MAX,
        allocs: u64::MAX,
        frees: 0,
        cached: u64::MAX,
        peak_blocks: u64::MAX,
    };
    snap.classes[1] = ClassStats {
        block_size: 1 << 20,
        allocs: 0,
        frees: u64::MAX,
        cached: 1,
        peak_blocks: 0,
    };
    snap.large.bytes_in_use = u64::MAX;
    snap.large.allocs = u64::MAX;
    snap.threads_exited = u64::MAX;
    let mut heap = HeapStats::new(u64::MAX, 3);
    heap.classes = snap.classes;
    heap.classes[0].peak_blocks = 0;
    let heaps = [heap, HeapStats::new(0, 3)];
    check_bmalloc(&snap, &heaps);
    check_json(&snap, &heaps);
}

#[test]
fn known_json_text() {
    let (snap, heaps) = known();
    let out = render(write_json, &snap, &heaps);
    let expected = r#"{"version": "0.1.0",
 "classes": [
  {"class": 2, "block_size": 24, "allocs": 11, "frees": 5, "in_use": 6, "in_use_bytes": 144, "cached": 3, "peak_blocks": 12},
  {"class": 5, "block_size": 48, "allocs": 6, "frees": 3, "in_use": 3, "in_use_bytes": 144, "cached": 1, "peak_blocks": 6},
  {"class": 9, "block_size": 96, "allocs": 2, "frees": 2, "in_use": 0, "in_use_bytes": 0, "cached": 2, "peak_blocks": 2}],
 "large": {"allocs": 3, "frees": 1, "bytes_in_use": 8388608, "peak_bytes": 12582912, "cached_chunks": 1},
 "chunks": {"mapped": 6, "active": 3, "empty_committed": 2, "empty_decommitted": 1, "large": 4},
 "memory": {"committed_bytes": 31457280, "decommitted_bytes": 5242880, "resident_bytes": 42991616},
 "threads": {"live": 2, "exited": 5},
 "totals": {"allocs": 22, "frees": 11, "in_use_bytes": 8388896, "cached_bytes": 312},
 "heaps": [
  {"id": 1, "in_use_bytes": 432, "cached_bytes": 72, "classes": [
   {"class": 2, "block_size": 24, "allocs": 10, "frees": 4, "in_use": 6, "in_use_bytes": 144, "cached": 3},
   {"class": 5, "block_size": 48, "allocs": 6, "frees": 0, "in_use": 6, "in_use_bytes": 288, "cached": 0}]},
  {"id": 2, "in_use_bytes": -144, "cached_bytes": 240, "classes": [
   {"class": 5, "block_size": 48, "allocs": 0, "frees": 3, "in_use": -3, "in_use_bytes": -144, "cached": 1},
   {"class": 9, "block_size": 96, "allocs": 2, "frees": 2, "in_use": 0, "in_use_bytes": 0, "cached": 2}]},
  {"id": 0, "in_use_bytes": 0, "cached_bytes": 0, "classes": [
   {"class": 2, "block_size": 24, "allocs": 1, "frees": 1, "in_use": 0, "in_use_bytes": 0, "cached": 0}]}]}
"#;
    assert_eq!(out, expected);
}

#[test]
fn empty_report_is_valid_json() {
    let snap = Snapshot::new("1", 0);
    let out = render(write_json, &snap, &[]);
    let p = parse::json(&out).unwrap();
    assert!(p.classes.is_empty() && p.heaps.is_empty());
    let v = parse::value(&out).unwrap();
    assert_eq!(
        v.get("classes").and_then(|c| c.as_array()).map(<[_]>::len),
        Some(0)
    );
}

#[test]
fn odd_version_strings_survive_json_and_stay_on_the_v_line() {
    for version in [
        "",
        "1.0 \"beta\"",
        "a\\b",
        "tab\there\nnewline\r",
        "\u{1}\u{1f}\u{7f}\u{85}",
        "é€𝄞",
        "))((",
    ] {
        let mut snap = Snapshot::new("x", 1);
        snap.version = version;
        let expected = if version.is_empty() {
            "unknown"
        } else {
            version
        };
        let json = render(write_json, &snap, &[]);
        assert_eq!(parse::json(&json).unwrap().version, expected, "{json}");
        let text = render(write_bmalloc, &snap, &[]);
        let shown: String = expected
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        assert_eq!(parse::bmalloc(&text).unwrap().version, shown, "{text}");
    }
}
