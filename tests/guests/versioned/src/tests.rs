//! Native tests with the SDK's Harness, per variant (`cargo test -p
//! versioned [--features v2|fail-open|map-state|no-state]`).

use super::*;
use weir_guest::testing::{Emitted, Harness};

#[cfg_attr(feature = "fail-open", allow(dead_code))]
fn values(out: &[Emitted]) -> Vec<String> {
    out.iter().map(|e| e.text().1).collect()
}

#[cfg(not(feature = "fail-open"))]
mod opens {
    use super::*;

    /// Count the stateful variants emit for the n-th record of a key.
    fn expected_count(n: u64) -> u64 {
        if cfg!(feature = "no-state") { 0 } else { n }
    }

    #[test]
    fn counts_continue_per_key_with_key_and_timestamp_kept() {
        let mut h = Harness::<Versioned>::new().unwrap();
        let mut got = Vec::new();
        for (key, ts) in [("a", 10), ("b", 11), ("a", 12), ("a", 13), ("b", 14)] {
            let out = h.process(key, "ignored", Some(ts)).unwrap();
            assert_eq!(out.len(), 1, "one output per input");
            assert_eq!(out[0].key, key.as_bytes());
            assert_eq!(out[0].timestamp, Some(ts));
            got.extend(values(&out));
        }
        let c = expected_count;
        let want: Vec<String> = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]
            .iter()
            .map(|(k, n)| format!("{k},{},{VERSION}", c(*n)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn record_without_timestamp_emits_without_one() {
        let mut h = Harness::<Versioned>::new().unwrap();
        let out = h.process("k", "", None).unwrap();
        assert_eq!(out[0].timestamp, None);
    }

    #[test]
    fn previous_version_in_config_marks_the_tag_migrated() {
        let mut h = Harness::<Versioned>::with_config(&[(PREVIOUS_VERSION, "sha256:abc")]).unwrap();
        let out = h.process("a", "x", Some(1)).unwrap();
        let tag = if cfg!(feature = "no-state") {
            VERSION.to_string()
        } else {
            format!("{VERSION}m")
        };
        assert_eq!(values(&out), [format!("a,{},{tag}", expected_count(1))]);
    }

    #[test]
    fn other_config_does_not_mark_the_tag() {
        let mut h = Harness::<Versioned>::with_config(&[("weir.attempt", "1")]).unwrap();
        let out = h.process("a", "x", Some(1)).unwrap();
        assert_eq!(values(&out), [format!("a,{},{VERSION}", expected_count(1))]);
    }

    #[test]
    fn non_utf8_key_is_kept_as_bytes_and_written_lossily() {
        let mut h = Harness::<Versioned>::new().unwrap();
        let key: &[u8] = b"k\xff";
        let out = h.process(key, "x", Some(5)).unwrap();
        assert_eq!(out[0].key, key);
        assert_eq!(
            out[0].value,
            format!("k\u{fffd},{},{VERSION}", expected_count(1)).into_bytes()
        );
    }
}

#[cfg(not(any(
    feature = "v2",
    feature = "fail-open",
    feature = "map-state",
    feature = "no-state"
)))]
#[test]
fn default_build_is_v1() {
    let mut h = Harness::<Versioned>::with_config(&[(PREVIOUS_VERSION, "d")]).unwrap();
    h.process("a", "x", Some(1)).unwrap();
    let out = h.process("a", "x", Some(2)).unwrap();
    assert_eq!(values(&out), ["a,2,v1m"]);
}

#[cfg(all(
    feature = "v2",
    not(any(feature = "fail-open", feature = "map-state", feature = "no-state"))
))]
#[test]
fn v2_build_is_v2() {
    let mut h = Harness::<Versioned>::with_config(&[(PREVIOUS_VERSION, "d")]).unwrap();
    let out = h.process("a", "x", Some(1)).unwrap();
    assert_eq!(values(&out), ["a,1,v2m"]);
}

#[cfg(feature = "no-state")]
#[test]
fn stateless_build_emits_zero_and_v0() {
    let mut h = Harness::<Versioned>::new().unwrap();
    h.process("a", "x", Some(1)).unwrap();
    let out = h.process("a", "x", Some(2)).unwrap();
    assert_eq!(values(&out), ["a,0,v0"]);
}

#[cfg(feature = "fail-open")]
#[test]
fn fail_open_build_refuses_to_open() {
    match Harness::<Versioned>::new() {
        Ok(_) => panic!("the fail-open build opened"),
        Err(e) => assert_eq!(e.message(), REFUSAL),
    }
}

#[test]
fn line_formats_key_count_and_tag() {
    assert_eq!(line(b"user-7", 42, "v2m"), "user-7,42,v2m");
}
