//! Keyed timer queues and the timer batch format handed to guests.
//!
//! A queue counts what it holds (timers, distinct timestamps, key bytes) so
//! the host can charge a guest for the memory its pending timers take
//! ([`TimerQueue::memory_bytes`]) with plain integer arithmetic.
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
    key_bytes: usize,
}

/// Host memory one distinct timestamp takes beyond its timers: its entry in
/// the timestamp map and the first node of its key set, with the
/// allocator's per-block overhead. Measured (see the tests below) on the
/// worst shape, distinct timestamps with one 8-byte key each: 386 bytes
/// per timer in all, of which this is the part beyond one timer.
pub const TIMESTAMP_OVERHEAD_BYTES: usize = 320;
/// Host memory one timer takes beyond its key bytes: its slot in a key-set
/// node (nodes are about half full) and the key's own heap block, rounded
/// up to the allocator's 16-byte granule. Measured on many keys under one
/// timestamp (the shape of a window operator): 68 bytes beyond the key.
pub const TIMER_OVERHEAD_BYTES: usize = 80;

impl TimerQueue {
    /// Adds the timer unless it is pending already. Takes the key by value
    /// where the caller owns it (a guest's call hands over a fresh `Vec`),
    /// so a new timer costs no copy of its key.
    pub fn register(&mut self, timestamp: i64, key: impl Into<Vec<u8>>) {
        let key = key.into();
        let len = key.len();
        let keys = self.pending.entry(timestamp).or_default();
        // One search: a known timer costs dropping its key, cheaper than
        // searching twice for a new one.
        if keys.insert(key) {
            self.len += 1;
            self.key_bytes += len;
        }
    }

    pub fn contains(&self, timestamp: i64, key: &[u8]) -> bool {
        self.pending
            .get(&timestamp)
            .is_some_and(|keys| keys.contains(key))
    }

    pub fn delete(&mut self, timestamp: i64, key: &[u8]) {
        if let Some(keys) = self.pending.get_mut(&timestamp)
            && keys.remove(key)
        {
            self.len -= 1;
            self.key_bytes -= key.len();
            if keys.is_empty() {
                self.pending.remove(&timestamp);
            }
        }
    }

    /// An upper estimate of the host memory the pending timers take.
    pub fn memory_bytes(&self) -> usize {
        self.pending.len() * TIMESTAMP_OVERHEAD_BYTES
            + self.len * TIMER_OVERHEAD_BYTES
            + self.key_bytes
    }

    /// What registering one more timer under a `key_len`-byte key may add
    /// to [`TimerQueue::memory_bytes`] (at most: its timestamp may be new).
    pub fn memory_bytes_of_one(key_len: usize) -> usize {
        TIMESTAMP_OVERHEAD_BYTES + TIMER_OVERHEAD_BYTES + key_len
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
                    Some(key) => {
                        self.key_bytes -= key.len();
                        due.push((timestamp, key));
                    }
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
    fn counts_key_bytes_through_register_delete_and_pop() {
        let mut q = TimerQueue::default();
        q.register(1, b"abc");
        q.register(1, b"abc");
        q.register(2, b"de");
        q.register(3, b"f");
        assert_eq!(q.key_bytes, 6);
        assert!(q.contains(1, b"abc") && !q.contains(2, b"abc"));
        q.delete(2, b"de");
        assert_eq!(q.key_bytes, 4);
        q.pop_due(1, 10);
        assert_eq!(q.key_bytes, 1);
        assert_eq!(
            q.memory_bytes(),
            TIMESTAMP_OVERHEAD_BYTES + TIMER_OVERHEAD_BYTES + 1
        );
        q.pop_due(10, 10);
        assert_eq!((q.key_bytes, q.memory_bytes()), (0, 0));
    }

    /// Counts the bytes this thread has allocated and not freed, plus a
    /// block overhead per live allocation (glibc malloc: 16 bytes), so the
    /// estimate is checked against what the process really holds.
    mod measure {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        const BLOCK_OVERHEAD_BYTES: isize = 16;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
        }

        struct Counting;

        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                LIVE.with(|l| l.set(l.get() + layout.size() as isize + BLOCK_OVERHEAD_BYTES));
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                LIVE.with(|l| l.set(l.get() - layout.size() as isize - BLOCK_OVERHEAD_BYTES));
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;

        pub fn live_bytes() -> isize {
            LIVE.with(Cell::get)
        }
    }

    /// Builds a queue with `register` and compares its estimate with the
    /// bytes the queue really holds.
    fn measured(register: impl Fn(&mut TimerQueue)) -> (usize, usize) {
        let before = measure::live_bytes();
        let mut q = TimerQueue::default();
        register(&mut q);
        let real = (measure::live_bytes() - before) as usize;
        let estimate = q.memory_bytes();
        drop(q);
        (real, estimate)
    }

    #[test]
    fn memory_estimate_covers_the_real_footprint() {
        let n = 100_000i64;
        let shapes: [(&str, Box<dyn Fn(&mut TimerQueue)>); 4] = [
            (
                "distinct timestamps, one key each",
                Box::new(move |q| (0..n).for_each(|t| q.register(t, b"key-0001"))),
            ),
            (
                "one timestamp, many keys",
                Box::new(move |q| {
                    (0..n).for_each(|k| q.register(7, format!("key-{k:08}").as_bytes()))
                }),
            ),
            (
                "descending timestamps",
                Box::new(move |q| (0..n).rev().for_each(|t| q.register(t, b"k"))),
            ),
            (
                "large keys",
                Box::new(move |q| (0..n / 100).for_each(|t| q.register(t, &[7u8; 4000]))),
            ),
        ];
        for (shape, register) in shapes {
            let (real, estimate) = measured(register);
            println!("{shape}: real {real} bytes, estimate {estimate} bytes");
            // Never under (a guest must not hold more than it is charged
            // for), and not so far over that legitimate operators hit the
            // limit early.
            assert!(
                estimate >= real,
                "{shape}: estimate {estimate} < real {real}"
            );
            assert!(
                estimate <= real + real / 4,
                "{shape}: estimate {estimate} > 1.25 × real {real}"
            );
        }
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
