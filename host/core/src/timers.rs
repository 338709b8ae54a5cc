//! Keyed timer queues and the timer batch format handed to guests.
//!
//! ```text
//! timers := count:u32 timer{count}
//! timer  := timestamp:i64 domain:u8 key-len:u32 key     (little-endian)
//! ```

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    EventTime = 0,
    ProcessingTime = 1,
}

/// Pending timers of one domain, each (timestamp, key) at most once.
///
/// Grouped by timestamp so that re-registering a known timer (a window
/// operator does it for every record) is a lookup, not an allocation.
#[derive(Debug, Default, Clone)]
pub struct TimerQueue {
    pending: BTreeMap<i64, BTreeSet<Vec<u8>>>,
    len: usize,
}

impl TimerQueue {
    pub fn register(&mut self, timestamp: i64, key: &[u8]) {
        let keys = self.pending.entry(timestamp).or_default();
        if !keys.contains(key) {
            keys.insert(key.to_vec());
            self.len += 1;
        }
    }

    pub fn delete(&mut self, timestamp: i64, key: &[u8]) {
        if let Some(keys) = self.pending.get_mut(&timestamp)
            && keys.remove(key)
        {
            self.len -= 1;
            if keys.is_empty() {
                self.pending.remove(&timestamp);
            }
        }
    }

    /// The earliest pending timestamp.
    pub fn next_timestamp(&self) -> Option<i64> {
        self.pending.first_key_value().map(|(t, _)| *t)
    }

    /// Removes and returns up to `max` timers with timestamp <= `time`, in
    /// (timestamp, key) order.
    pub fn pop_due(&mut self, time: i64, max: usize) -> Vec<(i64, Vec<u8>)> {
        let mut due = Vec::new();
        while due.len() < max {
            let Some(mut entry) = self.pending.first_entry() else {
                break;
            };
            let timestamp = *entry.key();
            if timestamp > time {
                break;
            }
            let keys = entry.get_mut();
            while due.len() < max {
                match keys.pop_first() {
                    Some(key) => due.push((timestamp, key)),
                    None => break,
                }
            }
            if keys.is_empty() {
                entry.remove();
            }
        }
        self.len -= due.len();
        due
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every pending timer, in (timestamp, key) order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.pending
            .iter()
            .flat_map(|(t, keys)| keys.iter().map(move |k| (*t, k.as_slice())))
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Encodes fired timers in the timer batch format.
pub fn encode_timers(domain: TimeDomain, timers: &[(i64, Vec<u8>)]) -> Vec<u8> {
    let size = 4 + timers.iter().map(|(_, k)| 13 + k.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(timers.len() as u32).to_le_bytes());
    for (timestamp, key) in timers {
        out.extend_from_slice(&timestamp.to_le_bytes());
        out.push(domain as u8);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_once_in_order() {
        let mut q = TimerQueue::default();
        q.register(20, b"a");
        q.register(10, b"b");
        q.register(10, b"b");
        q.register(30, b"c");
        q.delete(30, b"c");
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(15, 10), vec![(10, b"b".to_vec())]);
        assert_eq!(q.pop_due(100, 10), vec![(20, b"a".to_vec())]);
        assert!(q.is_empty());
    }

    #[test]
    fn pop_due_respects_max() {
        let mut q = TimerQueue::default();
        for i in 0..5 {
            q.register(i, b"k");
        }
        assert_eq!(q.pop_due(10, 2).len(), 2);
        assert_eq!(q.next_timestamp(), Some(2));
    }

    #[test]
    fn deleting_unknown_timers_is_harmless() {
        let mut q = TimerQueue::default();
        q.register(5, b"a");
        q.delete(5, b"b");
        q.delete(6, b"a");
        assert_eq!(q.len(), 1);
        q.delete(5, b"a");
        assert!(q.is_empty());
        assert_eq!(q.next_timestamp(), None);
    }

    #[test]
    fn encodes_timer_batch() {
        let bytes = encode_timers(TimeDomain::ProcessingTime, &[(7, b"ab".to_vec())]);
        assert_eq!(
            bytes,
            [
                &1u32.to_le_bytes()[..],
                &7i64.to_le_bytes(),
                &[1],
                &2u32.to_le_bytes(),
                b"ab"
            ]
            .concat()
        );
    }
}
