//! The Nexmark benchmark's event stream, as a source (`kind = "nexmark"`)
//! and as JSON lines (`weir nexmark`, [`write_jsonl`]).
//!
//! The model follows the Apache Beam / Flink Nexmark generators (see
//! [`model`]): of every 50 events, 1 is a new person, 3 new auctions and
//! 46 bids; ids count up from 1000; bids go mostly to the latest "hot"
//! auction and bidders, otherwise to one of the 100 auctions in flight;
//! categories are 10 to 14; prices are cents, log-uniform between 1 and
//! 1,000,000 dollars. Event `n` happens at `start_ms + n * 1000 /
//! events_per_second`, minus a jitter of up to `disorder_ms`: event time
//! is out of order by at most `disorder_ms`.
//!
//! # Layout
//!
//! Each event is one flat JSON object (one line in a file), with the
//! columns of its type and no others, so Flink SQL's filesystem connector
//! (`format = 'json'`) reads the file as one table whose absent columns
//! are NULL:
//!
//! ```text
//! {"event_type":0,"ts":..,"id":..,"name":"..","email":"..","credit_card":"..","city":"..","state":".."}
//! {"event_type":1,"ts":..,"id":..,"item_name":"..","description":"..","initial_bid":..,"reserve":..,"expires":..,"seller":..,"category":..}
//! {"event_type":2,"ts":..,"auction":..,"bidder":..,"price":..,"channel":"..","url":".."}
//! ```
//!
//! `event_type` is 0 person, 1 auction, 2 bid (as in Flink's Nexmark);
//! `ts` and `expires` are milliseconds since the Unix epoch. The source's
//! record value is that object's text, its timestamp `ts`, and its key
//! the decimal id a query most often groups by: a person's or auction's
//! `id`, a bid's `auction`. The file holds the same objects in event
//! order, so a file source with `timestamp_field = "ts"` reads the same
//! values and times.

pub mod model;

use std::io::Write;

use weir_core::BatchBuilder;
use weir_core::job::NexmarkSpec;

use crate::{BATCH_BYTES_MAX, ConnectorError, Source, SourceStatus};

/// Split `split` of `splits`: the events whose number is congruent to
/// `split` modulo `splits` (so every split moves through event time at the
/// same pace and their watermarks stay together).
pub struct NexmarkSource {
    spec: NexmarkSpec,
    next: u64,
    stride: u64,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl NexmarkSource {
    pub fn new(spec: NexmarkSpec, split: u32, splits: u32) -> Self {
        NexmarkSource {
            spec,
            next: u64::from(split),
            stride: u64::from(splits.max(1)),
            key: Vec::new(),
            value: Vec::new(),
        }
    }
}

impl Source for NexmarkSource {
    fn next_batch(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
    ) -> Result<SourceStatus, ConnectorError> {
        for _ in 0..max_records {
            if self.next >= self.spec.events || batch.encoded_bytes() >= BATCH_BYTES_MAX {
                break;
            }
            let ts = model::write_event(&self.spec, self.next, &mut self.key, &mut self.value);
            batch.push(Some(ts), &self.key, &self.value);
            self.next += self.stride;
        }
        Ok(if self.next >= self.spec.events {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "next_event": self.next })
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), ConnectorError> {
        self.next = crate::generator::strided_seek(
            "nexmark",
            position,
            "next_event",
            self.next,
            self.stride,
        )?;
        Ok(())
    }
}

/// Writes events `0..spec.events` to `out` as JSON lines, in event order.
pub fn write_jsonl(spec: &NexmarkSpec, out: &mut impl Write) -> std::io::Result<()> {
    let (mut key, mut value) = (Vec::new(), Vec::new());
    for n in 0..spec.events {
        model::write_event(spec, n, &mut key, &mut value);
        value.push(b'\n');
        out.write_all(&value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::model::*;
    use super::*;
    use serde_json::Value;

    fn spec(events: u64, disorder_ms: i64) -> NexmarkSpec {
        NexmarkSpec {
            events,
            seed: 7,
            start_ms: 1_000_000,
            events_per_second: 1000,
            disorder_ms,
        }
    }

    fn drain(mut s: NexmarkSource) -> Vec<(Option<i64>, String, String)> {
        let mut b = BatchBuilder::default();
        while s.next_batch(&mut b, 7).unwrap() == SourceStatus::More {}
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

    fn events(spec: &NexmarkSpec) -> Vec<(i64, Value)> {
        let mut text = Vec::new();
        write_jsonl(spec, &mut text).unwrap();
        String::from_utf8(text)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["ts"].as_i64().unwrap(), v)
            })
            .collect()
    }

    #[test]
    fn proportions_are_1_3_46_per_50() {
        let all = events(&spec(5000, 0));
        let count = |t: u64| all.iter().filter(|(_, v)| v["event_type"] == t).count();
        assert_eq!((count(0), count(1), count(2)), (100, 300, 4600));
    }

    #[test]
    fn ids_count_up_and_bids_refer_to_plausible_auctions_and_persons() {
        let all = events(&spec(5000, 0));
        let ids = |t: u64| -> Vec<u64> {
            all.iter()
                .filter(|(_, v)| v["event_type"] == t)
                .map(|(_, v)| v["id"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(ids(0), (1000..1100).collect::<Vec<_>>());
        assert_eq!(ids(1), (1000..1300).collect::<Vec<_>>());
        let (mut auctions, mut persons) = (0u64, 0u64);
        for (_, v) in &all {
            match v["event_type"].as_u64().unwrap() {
                0 => persons += 1,
                1 => {
                    auctions += 1;
                    let category = v["category"].as_u64().unwrap();
                    assert!((10..15).contains(&category), "{v}");
                    assert!(v["expires"].as_i64() > v["ts"].as_i64(), "{v}");
                    assert!(v["reserve"].as_u64() > v["initial_bid"].as_u64(), "{v}");
                    let seller = v["seller"].as_u64().unwrap();
                    assert!(seller < 1000 + persons + 10, "{v}");
                    assert!(US_STATES.iter().all(|s| !s.is_empty()));
                }
                _ => {
                    let auction = v["auction"].as_u64().unwrap();
                    assert!(auction >= 1000 && auction < 1000 + auctions + 10, "{v}");
                    let bidder = v["bidder"].as_u64().unwrap();
                    assert!(bidder >= 1000 && bidder < 1000 + persons + 10, "{v}");
                    let price = v["price"].as_u64().unwrap();
                    assert!((100..=100_000_000).contains(&price), "{v}");
                }
            }
        }
        // Hot auctions: about half the bids go to a few auctions.
        let mut per_auction = std::collections::HashMap::<u64, u64>::new();
        for (_, v) in all.iter().filter(|(_, v)| v["event_type"] == 2) {
            *per_auction
                .entry(v["auction"].as_u64().unwrap())
                .or_default() += 1;
        }
        assert!(per_auction.values().max().unwrap() > &20);
    }

    #[test]
    fn event_time_is_out_of_order_by_at_most_disorder_ms() {
        let all = events(&spec(20_000, 50));
        let mut max_seen = 0;
        let mut out_of_order = 0;
        for (n, (ts, _)) in all.iter().enumerate() {
            let regular = 1_000_000 + n as i64;
            assert!((regular - 50..=regular).contains(ts));
            assert!(*ts >= max_seen - 50, "event {n} is more than 50 ms late");
            if *ts < max_seen {
                out_of_order += 1;
            }
            max_seen = max_seen.max(*ts);
        }
        assert!(out_of_order > 1000, "the jitter disorders events");
        let ordered = events(&spec(1000, 0));
        assert!(ordered.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_others() {
        let a = events(&spec(500, 10));
        assert_eq!(a, events(&spec(500, 10)));
        let mut other = spec(500, 10);
        other.seed = 8;
        assert_ne!(a, events(&other));
    }

    #[test]
    fn the_source_emits_the_files_objects_with_keys_and_times() {
        let s = spec(300, 20);
        let file = events(&s);
        let records = drain(NexmarkSource::new(s.clone(), 0, 1));
        assert_eq!(records.len(), 300);
        for ((ts, key, value), (file_ts, object)) in records.iter().zip(&file) {
            assert_eq!(*ts, Some(*file_ts));
            assert_eq!(&serde_json::from_str::<Value>(value).unwrap(), object);
            let expected_key = match object["event_type"].as_u64().unwrap() {
                2 => object["auction"].to_string(),
                _ => object["id"].to_string(),
            };
            assert_eq!(key, &expected_key);
        }
    }

    #[test]
    fn splits_partition_the_events_and_seek_resumes() {
        let s = spec(200, 5);
        let all = drain(NexmarkSource::new(s.clone(), 0, 1));
        let mut split: Vec<_> = (0..3)
            .flat_map(|i| drain(NexmarkSource::new(s.clone(), i, 3)))
            .collect();
        let mut sorted_all = all.clone();
        split.sort();
        sorted_all.sort();
        assert_eq!(split, sorted_all);

        let whole = drain(NexmarkSource::new(s.clone(), 1, 2));
        let mut g = NexmarkSource::new(s.clone(), 1, 2);
        let mut b = BatchBuilder::default();
        g.next_batch(&mut b, 10).unwrap();
        let mut resumed = NexmarkSource::new(s.clone(), 1, 2);
        resumed.seek(&g.position()).unwrap();
        assert_eq!(drain(resumed), whole[10..]);
        assert!(g.seek(&serde_json::json!({"next_event": 4})).is_err());
        assert!(g.seek(&serde_json::json!({"next": 3})).is_err());
    }

    #[test]
    fn kinds_follow_the_proportions_within_each_group_of_50() {
        let kinds: Vec<_> = (0..50).map(kind_of).collect();
        assert_eq!(kinds[0], EventKind::Person);
        assert!(kinds[1..4].iter().all(|k| *k == EventKind::Auction));
        assert!(kinds[4..].iter().all(|k| *k == EventKind::Bid));
    }
}
