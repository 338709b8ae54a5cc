//! Which subtask reads which partition, and a split's position as JSON.
//!
//! Partitions are the Kafka source's splits. Subtask `owner(topic,
//! partition, n)` of `n` reads a partition, as Flink's KafkaSource assigns
//! them: a stable hash of the topic picks a start subtask and the
//! partitions of that topic follow round-robin. The owner of a partition
//! never depends on which other partitions exist, so partitions discovered
//! later never move an existing one to another subtask.
//!
//! A position is `{"offsets": {"topic/partition": next offset, ...},
//! "stop": {...}}` (`stop` only in bounded mode: where each partition
//! ends). Topic names cannot hold `/`, so the key splits at its last one.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A topic and partition.
pub type Tp = (String, i32);

/// Offsets by partition.
pub type Offsets = BTreeMap<Tp, i64>;

/// FNV-1a: a hash that every build and platform agrees on.
fn topic_hash(topic: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The subtask (of `subtasks`) that reads `partition` of `topic`.
pub fn owner(topic: &str, partition: i32, subtasks: u32) -> u32 {
    let subtasks = u64::from(subtasks.max(1));
    let start = topic_hash(topic) % subtasks;
    // Partition numbers are never negative in Kafka; a broker that says
    // otherwise still gets a deterministic owner.
    ((start + u64::from(partition.unsigned_abs())) % subtasks) as u32
}

/// A split's position: where each of its partitions goes on, and (bounded
/// mode) where each ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub offsets: Offsets,
    pub stop: Option<Offsets>,
}

fn key(tp: &Tp) -> String {
    format!("{}/{}", tp.0, tp.1)
}

fn parse_key(key: &str) -> Result<Tp, String> {
    let (topic, partition) = key
        .rsplit_once('/')
        .ok_or_else(|| format!("position key {key:?} is not topic/partition"))?;
    let partition = partition
        .parse::<i32>()
        .map_err(|_| format!("position key {key:?} has no partition number"))?;
    if topic.is_empty() || partition < 0 {
        return Err(format!("position key {key:?} is not topic/partition"));
    }
    Ok((topic.to_string(), partition))
}

fn offsets_to_json(offsets: &Offsets) -> Value {
    Value::Object(
        offsets
            .iter()
            .map(|(tp, offset)| (key(tp), Value::from(*offset)))
            .collect::<Map<_, _>>(),
    )
}

fn offsets_from_json(value: &Value, what: &str) -> Result<Offsets, String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("`{what}` of a Kafka position is not an object"))?;
    object
        .iter()
        .map(|(k, v)| {
            let offset = v
                .as_i64()
                .filter(|o| *o >= 0)
                .ok_or_else(|| format!("offset of {k} in a Kafka position is not a number >= 0"))?;
            Ok((parse_key(k)?, offset))
        })
        .collect()
}

impl Position {
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("offsets".into(), offsets_to_json(&self.offsets));
        if let Some(stop) = &self.stop {
            object.insert("stop".into(), offsets_to_json(stop));
        }
        Value::Object(object)
    }

    pub fn parse(value: &Value) -> Result<Position, String> {
        let offsets = value
            .get("offsets")
            .ok_or("a Kafka position has no `offsets`")?;
        Ok(Position {
            offsets: offsets_from_json(offsets, "offsets")?,
            stop: value
                .get("stop")
                .map(|s| offsets_from_json(s, "stop"))
                .transpose()?,
        })
    }
}

/// Merges the positions of all old splits and hands each partition to its
/// owner among `new_splits`. Bounded mode survives if any old split had it.
pub fn rescale(old: &[Position], new_splits: u32) -> Vec<Position> {
    let bounded = old.iter().any(|p| p.stop.is_some());
    let mut new: Vec<Position> = (0..new_splits)
        .map(|_| Position {
            offsets: Offsets::new(),
            stop: bounded.then(Offsets::new),
        })
        .collect();
    for position in old {
        for (tp, offset) in &position.offsets {
            let split = &mut new[owner(&tp.0, tp.1, new_splits) as usize];
            // A partition in two old maps (never, unless a checkpoint was
            // edited): the further offset, so nothing is read twice.
            let entry = split.offsets.entry(tp.clone()).or_insert(*offset);
            *entry = (*entry).max(*offset);
        }
        for (tp, stop) in position.stop.iter().flatten() {
            if let Some(map) = &mut new[owner(&tp.0, tp.1, new_splits) as usize].stop {
                map.insert(tp.clone(), *stop);
            }
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> Tp {
        (t.to_string(), p)
    }

    #[test]
    fn owners_are_stable_and_spread() {
        for n in 1..8 {
            let mut counts = vec![0; n as usize];
            for p in 0..(n as i32 * 4) {
                let o = owner("orders", p, n);
                assert!(o < n);
                assert_eq!(o, owner("orders", p, n));
                counts[o as usize] += 1;
            }
            // Consecutive partitions of one topic go round-robin.
            assert!(counts.iter().all(|c| *c == 4), "{counts:?}");
        }
        // Another topic does not change where `orders` partitions go.
        let before: Vec<u32> = (0..6).map(|p| owner("orders", p, 3)).collect();
        let _ = owner("payments", 0, 3);
        assert_eq!(
            before,
            (0..6).map(|p| owner("orders", p, 3)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn position_round_trips_and_rejects_nonsense() {
        let position = Position {
            offsets: [(tp("a.b-c", 0), 5), (tp("a.b-c", 12), 0)].into(),
            stop: Some([(tp("a.b-c", 0), 9)].into()),
        };
        let json = position.to_json();
        assert_eq!(json["offsets"]["a.b-c/12"], 0);
        assert_eq!(Position::parse(&json).unwrap(), position);
        let unbounded = Position {
            offsets: [(tp("t", 3), 7)].into(),
            stop: None,
        };
        assert_eq!(Position::parse(&unbounded.to_json()).unwrap(), unbounded);
        for bad in [
            serde_json::json!(null),
            serde_json::json!({"offsets": 3}),
            serde_json::json!({"offsets": {"t": 1}}),
            serde_json::json!({"offsets": {"t/x": 1}}),
            serde_json::json!({"offsets": {"t/-1": 1}}),
            serde_json::json!({"offsets": {"t/1": -4}}),
            serde_json::json!({"offsets": {"t/1": "4"}}),
            serde_json::json!({"offsets": {}, "stop": [1]}),
        ] {
            assert!(Position::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rescale_keeps_every_partition_once_with_its_offset() {
        let old: Vec<Position> = (0..3u32)
            .map(|split| {
                let offsets: Offsets = (0..12)
                    .filter(|p| owner("t", *p, 3) == split)
                    .map(|p| (tp("t", p), i64::from(p) * 10))
                    .collect();
                let stop = offsets.keys().map(|k| (k.clone(), 1000)).collect();
                Position {
                    offsets,
                    stop: Some(stop),
                }
            })
            .collect();
        for n in [1, 2, 3, 5, 12, 20] {
            let new = rescale(&old, n);
            assert_eq!(new.len(), n as usize);
            let mut all = Offsets::new();
            for (i, position) in new.iter().enumerate() {
                for (k, v) in &position.offsets {
                    assert_eq!(owner(&k.0, k.1, n), i as u32);
                    assert!(all.insert(k.clone(), *v).is_none(), "{k:?} twice");
                }
                let stop = position.stop.as_ref().unwrap();
                assert_eq!(
                    stop.keys().collect::<Vec<_>>(),
                    position.offsets.keys().collect::<Vec<_>>()
                );
            }
            assert_eq!(all.len(), 12);
            for p in 0..12 {
                assert_eq!(all[&tp("t", p)], i64::from(p) * 10);
            }
        }
        // Unbounded stays unbounded.
        let unbounded = [Position {
            offsets: [(tp("t", 0), 1)].into(),
            stop: None,
        }];
        assert!(rescale(&unbounded, 4).iter().all(|p| p.stop.is_none()));
    }
}
