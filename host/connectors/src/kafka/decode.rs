//! Turns a Kafka record into a weir record, as the file source turns a
//! line into one: `lines` keeps the value as it is; `jsonl` requires a JSON
//! object and may take the key and the event time from named fields.
//! Without a named field the Kafka key and the Kafka record timestamp are
//! used.

use serde_json::{Map, Value};
use weir_core::job::FileFormat;

/// How one source decodes its records.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub format: FileFormat,
    pub timestamp_field: Option<String>,
    pub key_field: Option<String>,
}

/// A decoded record; `value` borrows or replaces the Kafka value.
pub struct Decoded {
    pub timestamp: Option<i64>,
    pub key: Vec<u8>,
}

impl Decoder {
    /// Decodes `value`; `kafka_key` and `kafka_ts` are the record's own.
    /// The error says what is wrong with the value (the caller names the
    /// topic, partition and offset).
    pub fn decode(
        &self,
        value: &[u8],
        kafka_key: Option<&[u8]>,
        kafka_ts: Option<i64>,
    ) -> Result<Decoded, String> {
        let mut decoded = Decoded {
            timestamp: kafka_ts,
            key: kafka_key.unwrap_or_default().to_vec(),
        };
        if self.format != FileFormat::Jsonl {
            return Ok(decoded);
        }
        let text = std::str::from_utf8(value)
            .map_err(|e| format!("not UTF-8 (at byte {})", e.valid_up_to()))?;
        let object: Map<String, Value> = match serde_json::from_str(text) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err("expected a JSON object".into()),
            Err(e) => return Err(format!("invalid JSON: {e}")),
        };
        if let Some(field) = &self.timestamp_field {
            let bad = |v: &dyn std::fmt::Display| {
                format!("timestamp field `{field}` = {v} is not integer milliseconds")
            };
            decoded.timestamp = Some(match object.get(field) {
                Some(Value::Number(n)) => n.as_i64().ok_or_else(|| bad(n))?,
                Some(Value::String(s)) => s.trim().parse().map_err(|_| bad(&format!("{s:?}")))?,
                Some(other) => return Err(bad(other)),
                None => return Err(format!("timestamp field `{field}` is missing")),
            });
        }
        if let Some(field) = &self.key_field {
            decoded.key = match object.get(field) {
                Some(Value::String(s)) => s.as_bytes().to_vec(),
                Some(other) => other.to_string().into_bytes(),
                None => return Err(format!("key field `{field}` is missing")),
            };
        }
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonl(ts: Option<&str>, key: Option<&str>) -> Decoder {
        Decoder {
            format: FileFormat::Jsonl,
            timestamp_field: ts.map(String::from),
            key_field: key.map(String::from),
        }
    }

    #[test]
    fn lines_keep_kafka_key_and_time() {
        let d = Decoder {
            format: FileFormat::Lines,
            timestamp_field: None,
            key_field: None,
        };
        let r = d.decode(b"not json", Some(b"k"), Some(7)).unwrap();
        assert_eq!((r.timestamp, r.key.as_slice()), (Some(7), &b"k"[..]));
        let r = d.decode(b"", None, None).unwrap();
        assert_eq!((r.timestamp, r.key.len()), (None, 0));
    }

    #[test]
    fn json_fields_replace_kafka_key_and_time() {
        let d = jsonl(Some("ts"), Some("user"));
        let r = d
            .decode(br#"{"ts": 12, "user": "ann"}"#, Some(b"k"), Some(7))
            .unwrap();
        assert_eq!((r.timestamp, r.key.as_slice()), (Some(12), &b"ann"[..]));
        let r = d.decode(br#"{"ts": "13", "user": 5}"#, None, None).unwrap();
        assert_eq!((r.timestamp, r.key.as_slice()), (Some(13), &b"5"[..]));
        // Without fields, JSON still has to be an object; key and time stay Kafka's.
        let r = jsonl(None, None)
            .decode(br#"{"a":1}"#, Some(b"k"), Some(7))
            .unwrap();
        assert_eq!((r.timestamp, r.key.as_slice()), (Some(7), &b"k"[..]));
    }

    #[test]
    fn bad_values_say_why() {
        let d = jsonl(Some("ts"), Some("user"));
        for (value, why) in [
            (&b"[1]"[..], "expected a JSON object"),
            (b"{", "invalid JSON"),
            (b"\xff", "not UTF-8"),
            (br#"{"user": "a"}"#, "timestamp field `ts` is missing"),
            (br#"{"ts": 1.5, "user": "a"}"#, "not integer milliseconds"),
            (br#"{"ts": "x", "user": "a"}"#, "not integer milliseconds"),
            (br#"{"ts": 1}"#, "key field `user` is missing"),
        ] {
            let e = d.decode(value, None, None).err().unwrap();
            assert!(e.contains(why), "{e} lacks {why}");
        }
    }
}
