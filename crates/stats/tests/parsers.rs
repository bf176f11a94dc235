//! The readers on their own: the JSON grammar, and malformed input of both kinds.
#![cfg(feature = "std")]

use stats::parse::{self, Json};

fn v(s: &str) -> Json {
    parse::value(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn err(s: &str) -> String {
    match parse::value(s) {
        Ok(j) => panic!("{s:?} parsed as {j:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn json_values() {
    assert_eq!(v("null"), Json::Null);
    assert_eq!(v(" true "), Json::Bool(true));
    assert_eq!(v("false"), Json::Bool(false));
    assert_eq!(v("0"), Json::Int(0));
    assert_eq!(v("-0"), Json::Int(0));
    assert_eq!(v("18446744073709551615"), Json::Int(u64::MAX.into()));
    assert_eq!(v("-9223372036854775808"), Json::Int(i64::MIN.into()));
    assert_eq!(v("[]"), Json::Array(vec![]));
    assert_eq!(v("{}"), Json::Object(vec![]));
    assert_eq!(
        v(" {\"a\" : [1, -2, {\"b\": null}], \"c\": \"d\"}\n"),
        Json::Object(vec![
            (
                "a".into(),
                Json::Array(vec![
                    Json::Int(1),
                    Json::Int(-2),
                    Json::Object(vec![("b".into(), Json::Null)])
                ])
            ),
            ("c".into(), Json::Str("d".into())),
        ])
    );
    let o = v("{\"k\": 1, \"k\": 2}");
    assert_eq!(o.get("k"), Some(&Json::Int(1)));
    assert_eq!(o.get("x"), None);
    assert_eq!(Json::Int(3).get("k"), None);
}

#[test]
fn json_string_escapes() {
    assert_eq!(
        v(r#""q\" b\\ s\/ \b\f\n\r\t \u00e9\u20AC \ud834\udd1e é""#),
        Json::Str("q\" b\\ s/ \u{8}\u{c}\n\r\t é€ 𝄞 é".into())
    );
    assert_eq!(v(r#""""#), Json::Str(String::new()));
}

#[test]
fn json_errors() {
    for bad in [
        "",
        " ",
        "nul",
        "tru",
        "[1,]",
        "[1 2]",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "{a:1}",
        "{1:1}",
        "01",
        "-",
        "--1",
        "1.5",
        "1e3",
        "1E3",
        "+1",
        "\"abc",
        "\"a\nb\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\ud834\"",
        "\"\\udd1e\"",
        "\"\\ud834\\u0041\"",
        "[1] 2",
        "{} x",
        "170141183460469231731687303715884105728",
        "[",
        "{",
    ] {
        err(bad);
    }
    assert!(
        err("[1,\n2,\n]").starts_with("line 3: "),
        "{}",
        err("[1,\n2,\n]")
    );
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert!(err(&deep).contains("recursion limit"), "{}", err(&deep));
    let ok = "[".repeat(100) + &"]".repeat(100);
    v(&ok);
}

#[test]
fn json_report_fields_are_checked() {
    let good = r#"{"version": "1", "classes": [], "large": {"allocs": 0, "frees": 0, "bytes_in_use": 0, "peak_bytes": 0, "cached_chunks": 0},
 "chunks": {"mapped": 0, "active": 0, "empty_committed": 0, "empty_decommitted": 0, "large": 0},
 "memory": {"committed_bytes": 7, "decommitted_bytes": 0, "resident_bytes": 9},
 "threads": {"live": 1, "exited": 0}, "totals": {"allocs": 0, "frees": 0, "in_use_bytes": -5, "cached_bytes": 0}, "heaps": []}"#;
    let p = parse::json(good).unwrap();
    assert_eq!(
        (p.version.as_str(), p.threads_live, p.totals.in_use_bytes),
        ("1", 1, -5)
    );
    for (from, to) in [
        ("\"version\": \"1\"", "\"version\": 1"),
        ("\"live\": 1", "\"live\": -1"),
        ("\"live\": 1", "\"live\": 18446744073709551616"),
        ("\"live\": 1", "\"live\": true"),
        ("\"live\": 1", "\"alive\": 1"),
        (
            "\"in_use_bytes\": -5",
            "\"in_use_bytes\": -9223372036854775809",
        ),
        ("\"classes\": []", "\"classes\": {}"),
        ("\"classes\": []", "\"classes\": [{\"class\": 1}]"),
        ("\"heaps\": []", "\"heaps\": [1]"),
        ("\"resident_bytes\": 9", "\"resident\": 9"),
    ] {
        let bad = good.replace(from, to);
        assert!(parse::json(&bad).is_err(), "{to}");
    }
    assert!(parse::json("[]").is_err());
}

#[test]
fn bmalloc_reader_accepts_the_original_dump() {
    // The example dump the original documents: no L/C/T lines, any header text.
    let p = parse::bmalloc("\nV Memory Statistics (bmalloc: $Revision$)\nB 0/3(64) 5 10/5/5 320/320\nH 0 320/320\nS 320/320\n")
        .unwrap();
    assert_eq!(p.version, "bmalloc: $Revision$");
    assert_eq!(p.classes.len(), 1);
    assert_eq!(
        (
            p.classes[0].class,
            p.classes[0].block_size,
            p.classes[0].in_use
        ),
        (3, 64, 5)
    );
    assert_eq!((p.used, p.free), (320, 320));
    assert_eq!((p.large, p.chunks, p.threads), (None, None, None));
    assert_eq!(p.memory, None);
}

#[test]
fn bmalloc_reader_errors() {
    let head = "\nV Memory Statistics (fam-alloc 1)\n";
    for (bad, line) in [
        ("S 1/2\n", 0),                                           // no V
        ("\nV Memory Statistics (fam-alloc 1)\nH 1 0/0\n", 0),    // no S
        ("\nV Memory Statistics ()\nS 0/0\n", 2),                 // empty version
        ("\nV Memory Statistics (fam-alloc \nS 0/0\n", 2),        // unclosed
        ("\nV Memory Statistics (fam-alloc 1)\nX 1\nS 0/0\n", 3), // unknown kind
    ] {
        let e = parse::bmalloc(bad).unwrap_err();
        assert_eq!(e.line, line, "{bad:?}: {e}");
    }
    for body in [
        "B 1/2(24) 3 10/4/6 144\n",
        "B 1/2(24) 3 10/4/6/1 144/72\n",
        "B 1/2 3 10/4/6 144/72\n",
        "B 1/2(24 3 10/4/6 144/72\n",
        "B 1/2(24) 3 10/4/6 144/72 extra\n",
        "B 1/2(24) -3 10/4/6 144/72\n",
        "B 1/2(24) +3 10/4/6 144/72\n",
        "B 1/2(24) 3 10/4/18446744073709551615 144/72\n",
        "H 1 5\n",
        "H 1 5/-1\n",
        "S x/1\n",
        "L 1/2 3 4\n",
        "C 1/2/3/4\n",
        "T 1/2/3\n",
        "T 1//2\n",
    ] {
        let text = format!("{head}{body}S 0/0\n");
        let e = parse::bmalloc(&text).unwrap_err();
        assert_eq!(e.line, 3, "{body:?}: {e}");
        assert!(e.to_string().starts_with("line 3: "), "{e}");
    }
}

#[test]
fn parse_error_is_a_std_error() {
    let e: Box<dyn std::error::Error> = Box::new(parse::bmalloc("").unwrap_err());
    assert_eq!(e.to_string(), "no V line");
}
