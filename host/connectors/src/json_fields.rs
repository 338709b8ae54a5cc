//! Reads the key and event time out of a JSON object without building it.
//!
//! A source that takes its key and timestamp from JSON fields needs two
//! values of each record; parsing the whole object into a
//! `serde_json::Value` (a map of owned strings per record) cost most of a
//! JSON-lines source's time. Here the object is still checked from end to
//! end, but every other field is skipped without allocating, and the two
//! named fields are borrowed as raw JSON text.
//!
//! The results equal what reading the same fields from a parsed `Value`
//! gives: a string key is its text, any other key is its compact JSON
//! form; a timestamp is integer milliseconds, as a number or a string;
//! when a field appears twice, the last one counts.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::string_ends::StringEnds;

/// The key and event time of one JSON object, as the job named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAndTime {
    /// Event time in milliseconds; `None` when no timestamp field is named.
    pub timestamp: Option<i64>,
    /// The key's bytes; empty when no key field is named.
    pub key: Vec<u8>,
}

/// Which fields to read; built once per source.
#[derive(Debug, Clone, Default)]
pub struct JsonFields {
    pub timestamp_field: Option<String>,
    pub key_field: Option<String>,
}

impl JsonFields {
    pub fn new(timestamp_field: Option<String>, key_field: Option<String>) -> Self {
        JsonFields {
            timestamp_field,
            key_field,
        }
    }

    /// Checks that `text` is one JSON object and reads the named fields.
    /// The error says what is wrong (without where: the caller knows that).
    pub fn extract(&self, text: &str) -> Result<KeyAndTime, String> {
        if !text.trim_start().starts_with('{') {
            return Err(match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => "expected a JSON object".to_string(),
                Err(e) => format!("invalid JSON: {e}"),
            });
        }
        let (timestamp, key) = match scan_flat(text, self) {
            Some(found) => found,
            None => {
                let mut de = serde_json::Deserializer::from_str(text);
                let raw = de
                    .deserialize_map(FieldsVisitor { wanted: self })
                    .and_then(|raw| de.end().map(|()| raw))
                    .map_err(|e| format!("invalid JSON: {e}"))?;
                (raw.timestamp.map(RawValue::get), raw.key.map(RawValue::get))
            }
        };
        let timestamp = match &self.timestamp_field {
            None => None,
            Some(field) => Some(match timestamp {
                Some(value) => timestamp_of(field, value)?,
                None => return Err(format!("timestamp field `{field}` is missing")),
            }),
        };
        let key = match &self.key_field {
            None => Vec::new(),
            Some(field) => match key {
                Some(value) => key_of(value)?,
                None => return Err(format!("key field `{field}` is missing")),
            },
        };
        Ok(KeyAndTime { timestamp, key })
    }
}

/// The raw text of the timestamp and key fields of a flat object, found
/// in one pass over the bytes without serde. Only for objects whose values
/// are strings without escapes, integers, `true`, `false` or `null`, and
/// that are valid JSON from end to end; anything else (nesting, escapes,
/// floats, bad syntax) is `None`, and serde_json reads the line instead,
/// with the same results and its error messages. Most event lines are
/// flat.
fn scan_flat<'a>(text: &'a str, wanted: &JsonFields) -> Option<(Option<&'a str>, Option<&'a str>)> {
    let bytes = text.as_bytes();
    let mut strings = StringEnds::new(bytes);
    let mut at = skip_ws(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(bytes, at + 1);
    let wanted_timestamp = wanted.timestamp_field.as_deref().map(str::as_bytes);
    let wanted_key = wanted.key_field.as_deref().map(str::as_bytes);
    // Byte ranges: a `&str` is cut only for the fields found, not for
    // every name and value (each cut checks its char boundaries).
    let (mut timestamp, mut key) = (None, None);
    if bytes.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            if bytes.get(at) != Some(&b'"') {
                return None;
            }
            let name_end = strings.string_end(at)?;
            let name = bytes.get(at + 1..name_end - 1)?;
            at = skip_ws(bytes, name_end);
            if bytes.get(at) != Some(&b':') {
                return None;
            }
            at = skip_ws(bytes, at + 1);
            let value_start = at;
            at = flat_value_end(bytes, at, &mut strings)?;
            let value = value_start..at;
            // The last of a repeated field counts, as in serde_json.
            if wanted_timestamp == Some(name) {
                timestamp = Some(value.clone());
            }
            if wanted_key == Some(name) {
                key = Some(value);
            }
            at = skip_ws(bytes, at);
            match bytes.get(at) {
                Some(b',') => at = skip_ws(bytes, at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    if skip_ws(bytes, at) != bytes.len() {
        return None;
    }
    // A value starts and ends at ASCII bytes (quotes, digits, literals),
    // so these cuts are at char boundaries.
    let cut = |range: Option<std::ops::Range<usize>>| match range {
        Some(range) => text.get(range).map(Some),
        None => Some(None),
    };
    Some((cut(timestamp)?, cut(key)?))
}

/// Past JSON whitespace from `at`.
fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Past the value that starts at `at`: an escape-free string, an integer
/// (what follows it is checked by the caller, so `1.5`, `1e3` and `01`
/// are refused there), `true`, `false` or `null`.
fn flat_value_end(bytes: &[u8], at: usize, strings: &mut StringEnds) -> Option<usize> {
    match *bytes.get(at)? {
        b'"' => strings.string_end(at),
        b'-' | b'0'..=b'9' => {
            let mut end = at + usize::from(bytes[at] == b'-');
            match *bytes.get(end)? {
                b'0' => end += 1,
                b'1'..=b'9' => end = digits_end(bytes, end + 1),
                _ => return None,
            }
            Some(end)
        }
        _ => [&b"true"[..], b"false", b"null"]
            .into_iter()
            .find(|literal| bytes[at..].starts_with(literal))
            .map(|literal| at + literal.len()),
    }
}

/// Past the ASCII digits from `at`, eight bytes to a step (timestamps
/// have 13 digits; a loop per byte showed in the source's profile).
fn digits_end(bytes: &[u8], mut at: usize) -> usize {
    const LOW: u64 = 0x0f0f_0f0f_0f0f_0f0f;
    while let Some(word) = bytes.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
        // Per byte, t = b ^ '0' is 0..=9 for a digit: nothing in the high
        // nibble, and the low nibble + 6 does not reach 0x10 (no carries
        // cross bytes: each low nibble + 6 stays below 0x100).
        let t = u64::from_le_bytes(*word) ^ 0x3030_3030_3030_3030;
        let not_digit = (t & !LOW) | (((t & LOW) + 0x0606_0606_0606_0606) & 0x1010_1010_1010_1010);
        if not_digit != 0 {
            return at + (not_digit.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

/// The raw JSON text of the two fields, borrowed from the line.
#[derive(Default)]
struct RawFields<'a> {
    timestamp: Option<&'a RawValue>,
    key: Option<&'a RawValue>,
}

struct FieldsVisitor<'w> {
    wanted: &'w JsonFields,
}

impl<'de> Visitor<'de> for FieldsVisitor<'_> {
    type Value = RawFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFields<'de>, A::Error> {
        let mut raw = RawFields::default();
        // Keys with escapes arrive owned; most arrive borrowed.
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let is_time = self.wanted.timestamp_field.as_deref() == Some(&*name);
            let is_key = self.wanted.key_field.as_deref() == Some(&*name);
            if is_time || is_key {
                let value: &'de RawValue = map.next_value_seed(BorrowRaw)?;
                if is_time {
                    raw.timestamp = Some(value);
                }
                if is_key {
                    raw.key = Some(value);
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(raw)
    }
}

struct BorrowRaw;

impl<'de> DeserializeSeed<'de> for BorrowRaw {
    type Value = &'de RawValue;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'de RawValue, D::Error> {
        serde::Deserialize::deserialize(d)
    }
}

fn timestamp_of(field: &str, raw: &str) -> Result<i64, String> {
    let not_ms =
        |shown: &str| format!("timestamp field `{field}` = {shown} is not integer milliseconds");
    if raw.starts_with('"') {
        let text: String = serde_json::from_str(raw).map_err(|e| format!("invalid JSON: {e}"))?;
        return text
            .trim()
            .parse()
            .map_err(|_| not_ms(&format!("{text:?}")));
    }
    raw.parse().map_err(|_| {
        // Show numbers as a parsed value would print them.
        let shown = serde_json::from_str::<serde_json::Value>(raw)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| raw.to_string());
        not_ms(&shown)
    })
}

fn key_of(raw: &str) -> Result<Vec<u8>, String> {
    if let Some(body) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"'))
        && !body.contains('\\')
    {
        return Ok(body.as_bytes().to_vec());
    }
    // Integers in canonical form print as written; anything else (escaped
    // strings, floats, objects, arrays) goes through `Value` so the bytes
    // equal its display.
    let canonical_integer = raw.parse::<i64>().is_ok_and(|n| n.to_string() == raw)
        || raw.parse::<u64>().is_ok_and(|n| n.to_string() == raw);
    if canonical_integer {
        return Ok(raw.as_bytes().to_vec());
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::String(s)) => Ok(s.into_bytes()),
        Ok(other) => Ok(other.to_string().into_bytes()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    /// What the source computed before: parse into a `Value`, then read.
    fn via_value(fields: &JsonFields, text: &str) -> Result<KeyAndTime, String> {
        let object: Map<String, Value> = match serde_json::from_str(text) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err("expected a JSON object".into()),
            Err(e) => return Err(format!("invalid JSON: {e}")),
        };
        let timestamp = match &fields.timestamp_field {
            None => None,
            Some(f) => Some(match object.get(f) {
                Some(Value::Number(n)) => n.as_i64().ok_or("not ms")?,
                Some(Value::String(s)) => s.trim().parse().map_err(|_| "not ms")?,
                Some(_) => return Err("not ms".into()),
                None => return Err("missing".into()),
            }),
        };
        let key = match &fields.key_field {
            None => Vec::new(),
            Some(f) => match object.get(f) {
                Some(Value::String(s)) => s.as_bytes().to_vec(),
                Some(other) => other.to_string().into_bytes(),
                None => return Err("missing".into()),
            },
        };
        Ok(KeyAndTime { timestamp, key })
    }

    fn both() -> JsonFields {
        JsonFields::new(Some("ts".into()), Some("k".into()))
    }

    #[test]
    fn reads_fields_and_skips_the_rest() {
        let got = both()
            .extract(r#"{"a":[1,{"b":"x"}],"k":"auction-7","ts":1700000000123,"z":null}"#)
            .unwrap();
        assert_eq!(got.timestamp, Some(1700000000123));
        assert_eq!(got.key, b"auction-7");
    }

    #[test]
    fn agrees_with_a_parsed_value() {
        let cases = [
            r#"{"k":12,"ts":"17"}"#,
            r#"{"k":-3,"ts":5}"#,
            r#"{"k":1.50,"ts":5}"#,
            r#"{"k":"a\"b\u00e9","ts":5}"#,
            r#"{"k":{"y":1,"x":[true,null]},"ts":5}"#,
            r#"{"k":true,"ts":5}"#,
            r#"{"k":null,"ts":5}"#,
            r#"{"k":"x","ts":5,"k":"last"}"#,
            r#"{"\u006b":"escaped-name","ts":5}"#,
            r#"  {"k":"x","ts":" 42 "}  "#,
        ];
        for text in cases {
            assert_eq!(both().extract(text), via_value(&both(), text), "{text}");
        }
    }

    #[test]
    fn rejects_what_a_parsed_value_rejects() {
        let cases = [
            r#"{"k":"x","ts":1.5}"#,
            r#"{"k":"x","ts":1e3}"#,
            r#"{"k":"x","ts":99999999999999999999}"#,
            r#"{"k":"x","ts":"soon"}"#,
            r#"{"k":"x","ts":[1]}"#,
            r#"{"k":"x"}"#,
            r#"{"ts":1}"#,
            r#"{"k":"x","ts":1"#,
            r#"{"k":"x","ts":1} trailing"#,
            r#"[1,2]"#,
            r#"42"#,
            r#"not json"#,
            r#"{"k":"x","ts":1,"bad":tru}"#,
        ];
        for text in cases {
            assert!(both().extract(text).is_err(), "{text}");
            assert!(via_value(&both(), text).is_err(), "{text}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = both().extract(r#"{"k":"x","ts":1.5}"#).unwrap_err();
        assert_eq!(e, "timestamp field `ts` = 1.5 is not integer milliseconds");
        let e = both().extract(r#"{"ts":1}"#).unwrap_err();
        assert_eq!(e, "key field `k` is missing");
        let e = both().extract("[1]").unwrap_err();
        assert_eq!(e, "expected a JSON object");
        assert!(both().extract("{").unwrap_err().starts_with("invalid JSON"));
    }

    /// The raw fields as serde_json finds them (the path `scan_flat`
    /// steps aside for).
    fn via_serde(fields: &JsonFields, text: &str) -> Option<(Option<String>, Option<String>)> {
        let mut de = serde_json::Deserializer::from_str(text);
        let raw = de
            .deserialize_map(FieldsVisitor { wanted: fields })
            .and_then(|raw| de.end().map(|()| raw))
            .ok()?;
        let text_of = |v: Option<&RawValue>| v.map(|v| v.get().to_string());
        Some((text_of(raw.timestamp), text_of(raw.key)))
    }

    /// Whatever the scanner accepts, serde_json accepts with the same
    /// fields; what it refuses goes to serde_json.
    fn scanner_agrees(text: &str) -> bool {
        let fields = both();
        match scan_flat(text, &fields) {
            Some((ts, key)) => {
                let found = (ts.map(str::to_string), key.map(str::to_string));
                assert_eq!(Some(found), via_serde(&fields, text), "{text:?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_scanner_takes_flat_objects_and_leaves_the_rest() {
        for text in [
            r#"{"k":"x","ts":5}"#,
            " {\t\"k\" : -0 ,\r\n\"ts\":17, \"b\":true,\"n\":null,\"f\":false} ",
            r#"{}"#,
            r#"{"k":"x","ts":5,"k":"last"}"#,
            r#"{"k":"é ü","ts":"5"}"#,
        ] {
            assert!(scanner_agrees(text), "{text}");
        }
        for text in [
            r#"{"k":"a\"b","ts":5}"#,
            r#"{"k":1.5,"ts":5}"#,
            r#"{"k":1e3,"ts":5}"#,
            r#"{"k":01,"ts":5}"#,
            r#"{"k":-,"ts":5}"#,
            r#"{"k":[1],"ts":5}"#,
            r#"{"k":{},"ts":5}"#,
            r#"{"k":tru,"ts":5}"#,
            r#"{"k":truex,"ts":5}"#,
            r#"{"k":"x",}"#,
            r#"{"k":"x" "ts":5}"#,
            r#"{"k":"x","ts":5} x"#,
            r#"{"k":"x","ts":5"#,
            "{\"k\":\"a\u{1}b\",\"ts\":5}",
            r#"[1]"#,
            "",
        ] {
            assert!(!scanner_agrees(text), "{text}");
        }
    }

    proptest::proptest! {
        /// Token soup: the scanner never accepts what serde_json refuses,
        /// and agrees on what both accept.
        #[test]
        fn the_scanner_never_disagrees_with_serde(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "{", "}", "\"k\"", "\"ts\"", "\"x\"", ":", ",", " ", "\n", "0", "1", "-",
                    "12", ".5", "e3", "true", "null", "fals", "[", "]", "\"a\\\"b\"", "\"\u{1}\"",
                    "é",
                ]),
                0..24,
            )
        ) {
            scanner_agrees(&parts.concat());
        }

        /// Generated flat objects: the scanner takes them all.
        #[test]
        fn the_scanner_reads_every_flat_object(
            members in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["k", "ts", "other", "k2"]),
                    proptest::sample::select(vec![
                        "\"text\"", "\"\"", "0", "-7", "1700000000123", "true", "false", "null",
                    ]),
                    proptest::sample::select(vec!["", " ", "\t", "\r\n"]),
                ),
                0..8,
            )
        ) {
            let body: Vec<String> = members
                .iter()
                .map(|(name, value, ws)| format!("{ws}\"{name}\"{ws}:{ws}{value}{ws}"))
                .collect();
            let text = format!("{{{}}}", body.join(","));
            proptest::prop_assert!(scanner_agrees(&text), "{}", text);
        }
    }

    proptest::proptest! {
        #[test]
        fn digits_end_equals_a_byte_loop(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'0', b'5', b'9', b'/', b':', b'a', 0xb0, b' ']),
                0..40,
            ),
            at in 0usize..40,
        ) {
            let mut slow = at;
            while bytes.get(slow).is_some_and(u8::is_ascii_digit) {
                slow += 1;
            }
            proptest::prop_assert_eq!(digits_end(&bytes, at), slow.max(at));
        }
    }

    #[test]
    fn no_fields_named_still_checks_the_object() {
        let none = JsonFields::default();
        assert_eq!(
            none.extract(r#"{"a":1}"#).unwrap(),
            KeyAndTime {
                timestamp: None,
                key: Vec::new()
            }
        );
        assert!(none.extract(r#"{"a":}"#).is_err());
    }
}
