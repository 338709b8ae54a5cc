//! What a source does with a record it cannot parse (`on_parse_error`).
//!
//! Under `fail` (the default) the first bad record fails the job with an
//! error naming the source, the record's place and the reason. Under `skip`
//! it is counted and dropped. Under `dead-letter` it is counted and kept
//! until the source task drains it into the `<source>.dead-letter` stream,
//! right after the batch it was found in, so dead letters travel between the
//! same barriers as the source's records and are exactly-once with them.

use serde_json::{Map, Value};
use weir_core::BatchBuilder;
use weir_core::job::OnParseError;

use crate::ConnectorError;

/// Records a source skipped or dead-lettered so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseErrorCounts {
    pub skipped: u64,
    pub dead_lettered: u64,
}

impl ParseErrorCounts {
    pub fn add(&mut self, other: ParseErrorCounts) {
        self.skipped += other.skipped;
        self.dead_lettered += other.dead_lettered;
    }
}

/// A record that could not be parsed, kept for the dead-letter stream.
struct DeadLetter {
    at: String,
    raw: Vec<u8>,
    reason: String,
}

/// One source split's parse-error policy, counts and pending dead letters.
pub struct ParseErrors {
    source: String,
    policy: OnParseError,
    counts: ParseErrorCounts,
    pending: Vec<DeadLetter>,
}

impl ParseErrors {
    pub fn new(source: &str, policy: OnParseError) -> Self {
        ParseErrors {
            source: source.to_string(),
            policy,
            counts: ParseErrorCounts::default(),
            pending: Vec::new(),
        }
    }

    pub fn policy(&self) -> OnParseError {
        self.policy
    }

    /// A record at `at` (e.g. "line 12", "partition 3 offset 17") that cannot be parsed for `reason`:
    /// under `fail` an error naming the source, place and reason; otherwise counted, and under
    /// `dead-letter` kept (raw bytes, reason, place) for the side output.
    pub fn reject(&mut self, at: &str, raw: &[u8], reason: &str) -> Result<(), ConnectorError> {
        match self.policy {
            OnParseError::Fail => Err(ConnectorError(format!(
                "source `{}`: {at}: {reason}",
                self.source
            ))),
            OnParseError::Skip => {
                self.counts.skipped += 1;
                Ok(())
            }
            OnParseError::DeadLetter => {
                self.counts.dead_lettered += 1;
                self.pending.push(DeadLetter {
                    at: at.to_string(),
                    raw: raw.to_vec(),
                    reason: reason.to_string(),
                });
                Ok(())
            }
        }
    }

    pub fn counts(&self) -> ParseErrorCounts {
        self.counts
    }

    /// Dead letters kept and not yet drained.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Moves the kept dead letters into `out` as records (value: JSON {"source","at","reason","raw"}).
    /// `raw` is the record's text; bytes that are not UTF-8 are replaced
    /// (U+FFFD) there and given exactly, as hex, in `raw_hex`.
    pub fn drain_into(&mut self, out: &mut BatchBuilder) {
        for letter in self.pending.drain(..) {
            let mut value = Map::new();
            value.insert("source".into(), Value::String(self.source.clone()));
            value.insert("at".into(), Value::String(letter.at));
            value.insert("reason".into(), Value::String(letter.reason));
            match std::str::from_utf8(&letter.raw) {
                Ok(text) => {
                    value.insert("raw".into(), Value::String(text.to_string()));
                }
                Err(_) => {
                    value.insert(
                        "raw".into(),
                        Value::String(String::from_utf8_lossy(&letter.raw).into_owned()),
                    );
                    value.insert("raw_hex".into(), Value::String(hex(&letter.raw)));
                }
            }
            let json = Value::Object(value).to_string();
            out.push(None, &[], json.as_bytes());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_names_the_source_place_and_reason_and_counts_nothing() {
        let mut errors = ParseErrors::new("events", OnParseError::Fail);
        let e = errors
            .reject("line 12", b"{oops", "not valid JSON")
            .unwrap_err();
        assert_eq!(e.0, "source `events`: line 12: not valid JSON");
        assert_eq!(errors.counts(), ParseErrorCounts::default());
        assert_eq!(errors.pending(), 0);
    }

    #[test]
    fn skip_counts_and_keeps_nothing() {
        let mut errors = ParseErrors::new("events", OnParseError::Skip);
        errors.reject("line 1", b"a", "bad").unwrap();
        errors.reject("line 2", b"b", "bad").unwrap();
        assert_eq!(
            errors.counts(),
            ParseErrorCounts {
                skipped: 2,
                dead_lettered: 0
            }
        );
        let mut out = BatchBuilder::default();
        errors.drain_into(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn dead_letters_drain_in_order_as_json_and_only_once() {
        let mut errors = ParseErrors::new("events", OnParseError::DeadLetter);
        errors.reject("line 3", b"{oops", "not valid JSON").unwrap();
        errors
            .reject("line 7", b"caf\xe9", "not UTF-8 (at byte 3)")
            .unwrap();
        assert_eq!(errors.counts().dead_lettered, 2);
        let mut out = BatchBuilder::default();
        errors.drain_into(&mut out);
        let batch = out.take();
        let values: Vec<Value> = batch
            .iter()
            .map(|r| {
                assert_eq!(r.key, b"");
                assert_eq!(r.timestamp, None);
                serde_json::from_slice(r.value).unwrap()
            })
            .collect();
        assert_eq!(
            values,
            [
                serde_json::json!({"source": "events", "at": "line 3", "reason": "not valid JSON", "raw": "{oops"}),
                serde_json::json!({"source": "events", "at": "line 7", "reason": "not UTF-8 (at byte 3)", "raw": "caf\u{fffd}", "raw_hex": "636166e9"}),
            ]
        );
        let mut again = BatchBuilder::default();
        errors.drain_into(&mut again);
        assert!(again.is_empty(), "drained letters are gone");
        assert_eq!(errors.counts().dead_lettered, 2, "counts stay");
    }
}
