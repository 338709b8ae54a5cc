//! A deterministic generator for tests, demos and benchmarks.

use weir_core::BatchBuilder;
use weir_core::job::GeneratorSpec;

use crate::{BATCH_BYTES_MAX, ConnectorError, Source, SourceStatus};

/// Split `split` of `splits`: emits the records whose sequence number is
/// congruent to `split` modulo `splits`.
pub struct GeneratorSource {
    spec: GeneratorSpec,
    next_seq: u64,
    stride: u64,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl GeneratorSource {
    pub fn new(spec: GeneratorSpec, split: u32, splits: u32) -> Self {
        GeneratorSource {
            spec,
            next_seq: u64::from(split),
            stride: u64::from(splits.max(1)),
            key: Vec::new(),
            value: Vec::new(),
        }
    }

    /// The event time of record `seq`: regular, minus a deterministic jitter.
    pub fn timestamp_of(spec: &GeneratorSpec, seq: u64) -> i64 {
        let base = spec
            .start_ms
            .saturating_add((seq as i64).saturating_mul(spec.interval_ms));
        if spec.disorder_ms == 0 {
            return base;
        }
        let jitter = (seq.wrapping_mul(0x9e3779b97f4a7c15) >> 33) % (spec.disorder_ms as u64 + 1);
        base - jitter as i64
    }
}

impl Source for GeneratorSource {
    fn next_batch(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
    ) -> Result<SourceStatus, ConnectorError> {
        for _ in 0..max_records {
            if self.next_seq >= self.spec.records {
                return Ok(SourceStatus::Finished);
            }
            if batch.encoded_bytes() >= BATCH_BYTES_MAX {
                break;
            }
            let seq = self.next_seq;
            let ts = Self::timestamp_of(&self.spec, seq);
            // By hand rather than `write!`: the formatting machinery took
            // half of this thread's time in the pipeline benchmark.
            let mut digits = itoa::Buffer::new();
            let key_number = digits.format(seq % self.spec.keys).as_bytes();
            self.key.clear();
            self.key.extend_from_slice(b"key-");
            self.key.extend_from_slice(key_number);
            self.value.clear();
            self.value.extend_from_slice(b"{\"seq\":");
            self.value
                .extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
            self.value.extend_from_slice(b",\"key\":\"");
            self.value.extend_from_slice(&self.key);
            self.value.extend_from_slice(b"\",\"ts\":");
            self.value
                .extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
            // `,"pad":"` + padding + `"}` brings the value to exactly value_bytes.
            if self.spec.value_bytes >= self.value.len() + 10 {
                let pad = self.spec.value_bytes - self.value.len() - 10;
                self.value.extend_from_slice(b",\"pad\":\"");
                self.value.resize(self.value.len() + pad, b'x');
                self.value.push(b'"');
            }
            self.value.push(b'}');
            batch.push(Some(ts), &self.key, &self.value);
            self.next_seq += self.stride;
        }
        Ok(if self.next_seq >= self.spec.records {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "next_seq": self.next_seq })
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), ConnectorError> {
        self.next_seq = strided_seek(
            "generator",
            position,
            "next_seq",
            self.next_seq,
            self.stride,
        )?;
        Ok(())
    }
}

/// The next record number in `position[field]` for a split that takes every
/// `stride`-th record starting from `current`'s residue: what generated
/// sources (the generator, Nexmark) checkpoint and seek to.
pub(crate) fn strided_seek(
    what: &str,
    position: &serde_json::Value,
    field: &str,
    current: u64,
    stride: u64,
) -> Result<u64, ConnectorError> {
    let next = position
        .get(field)
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| ConnectorError(format!("{what}: invalid position {position}")))?;
    if next % stride != current % stride {
        return Err(ConnectorError(format!(
            "{what}: position {next} does not belong to this split (numbers ≡ {} mod {stride})",
            current % stride
        )));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(records: u64) -> GeneratorSpec {
        GeneratorSpec {
            records,
            keys: 3,
            start_ms: 1000,
            interval_ms: 10,
            disorder_ms: 0,
            value_bytes: 0,
        }
    }

    fn drain(mut g: GeneratorSource) -> Vec<(Option<i64>, String, String)> {
        let mut b = BatchBuilder::default();
        while g.next_batch(&mut b, 4).unwrap() == SourceStatus::More {}
        b.take()
            .iter()
            .map(|r| {
                (
                    r.timestamp,
                    String::from_utf8_lossy(r.key).into(),
                    String::from_utf8_lossy(r.value).into(),
                )
            })
            .collect()
    }

    #[test]
    fn values_are_json_of_exactly_value_bytes() {
        let spec = GeneratorSpec {
            records: 50,
            keys: 7,
            start_ms: -123_456_789,
            interval_ms: 1_000_003,
            disorder_ms: 5,
            value_bytes: 100,
        };
        for (seq, (ts, key, value)) in drain(GeneratorSource::new(spec.clone(), 0, 1))
            .into_iter()
            .enumerate()
        {
            let ts = ts.unwrap();
            assert_eq!(ts, GeneratorSource::timestamp_of(&spec, seq as u64));
            assert_eq!(key, format!("key-{}", seq % 7));
            let head = format!("{{\"seq\":{seq},\"key\":\"{key}\",\"ts\":{ts},\"pad\":\"");
            assert_eq!(value.len(), 100, "{value}");
            assert!(
                value.starts_with(&head) && value.ends_with("x\"}"),
                "{value}"
            );
            let json: serde_json::Value = serde_json::from_str(&value).unwrap();
            assert_eq!(json["ts"], ts);
        }
    }

    #[test]
    fn splits_partition_the_sequence() {
        let all = drain(GeneratorSource::new(spec(10), 0, 1));
        assert_eq!(all.len(), 10);
        assert_eq!(
            all[4],
            (
                Some(1040),
                "key-1".into(),
                "{\"seq\":4,\"key\":\"key-1\",\"ts\":1040}".into()
            )
        );
        let mut split: Vec<_> = (0..3)
            .flat_map(|i| drain(GeneratorSource::new(spec(10), i, 3)))
            .collect();
        split.sort_by_key(|r| r.0);
        assert_eq!(split, all);
    }

    #[test]
    fn seeking_to_a_position_continues_the_sequence() {
        let all = drain(GeneratorSource::new(spec(10), 1, 2));
        let mut g = GeneratorSource::new(spec(10), 1, 2);
        let mut b = BatchBuilder::default();
        g.next_batch(&mut b, 2).unwrap();
        let position = g.position();
        let mut resumed = GeneratorSource::new(spec(10), 1, 2);
        resumed.seek(&position).unwrap();
        assert_eq!(drain(resumed), all[2..]);
        assert!(g.seek(&serde_json::json!({"next_seq": 4})).is_err());
    }

    #[test]
    fn a_batch_closes_at_the_byte_budget_whatever_max_records_allows() {
        let mut s = spec(20);
        s.value_bytes = 1 << 20;
        let mut g = GeneratorSource::new(s, 0, 1);
        let mut b = BatchBuilder::default();
        assert_eq!(g.next_batch(&mut b, 1_000_000).unwrap(), SourceStatus::More);
        // Four records pass 4 MiB with their headers; the batch closes there.
        assert_eq!(b.len(), 4);
        assert!(b.encoded_bytes() <= BATCH_BYTES_MAX + (1 << 20) + 64);
        b.take();
        let mut total = 4;
        while g.next_batch(&mut b, 1_000_000).unwrap() == SourceStatus::More {
            total += b.take().len();
        }
        total += b.take().len();
        assert_eq!(total, 20, "no record is lost across closed batches");
    }

    #[test]
    fn values_are_padded_to_value_bytes() {
        let mut s = spec(1);
        s.value_bytes = 100;
        let records = drain(GeneratorSource::new(s, 0, 1));
        assert_eq!(records[0].2.len(), 100);
        assert!(serde_json::from_str::<serde_json::Value>(&records[0].2).is_ok());
    }

    #[test]
    fn disorder_stays_within_bounds() {
        let mut s = spec(1000);
        s.disorder_ms = 50;
        for seq in 0..1000 {
            let t = GeneratorSource::timestamp_of(&s, seq);
            let regular = 1000 + seq as i64 * 10;
            assert!((regular - 50..=regular).contains(&t));
        }
    }
}
