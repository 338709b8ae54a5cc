//! The keys of one pending timestamp: an append-only log until it fires.
//!
//! A window operator registers thousands of keys under each window end in
//! no particular order. Appending one writes next to the last: the hash
//! set this log replaced probed a random slot of a table that, with
//! 10,000 live keys, had left the CPU's cache, and that probe, the hashing
//! and the table's doublings were about 9% of a windowed count's samples.
//! Repeats and deletions are settled in bulk ([`Log::compact`]): when the
//! timestamp fires, when the log has grown to twice its distinct keys and
//! more, and when the queue needs exact answers (a limit, a gauge).

use std::collections::HashSet;

use super::{INLINE_KEY_MAX, TimerKey, words};

/// A log compacts once it holds this many entries more than twice its
/// distinct keys: rarely enough that a window end's keys (tens of
/// thousands at most, usually) are sorted once, when they fire; often
/// enough that a key registered over and over takes a bounded share of the
/// log. (The limits bound it too: near one, the queue compacts first.)
/// Small in tests, so they compact often.
pub(super) const COMPACT_AFTER: usize = if cfg!(test) { 8 } else { 1 << 16 };

/// What an operation changed in what a queue holds, for its totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tally {
    /// Keys in logs and firing lists, repeats included.
    pub entries: isize,
    /// Keys in the deleted sets.
    pub tombstones: isize,
    /// Of both, the keys too long to sit inline, and their bytes.
    pub heap_keys: isize,
    pub heap_bytes: isize,
}

impl Tally {
    fn heap(&mut self, key: &TimerKey, sign: isize) {
        if let TimerKey::Heap(bytes) = key {
            self.heap_keys += sign;
            self.heap_bytes += sign * bytes.len() as isize;
        }
    }

    fn entry(&mut self, key: &TimerKey, sign: isize) {
        self.entries += sign;
        self.heap(key, sign);
    }

    fn tombstone(&mut self, key: &TimerKey, sign: isize) {
        self.tombstones += sign;
        self.heap(key, sign);
    }

    pub(super) fn add(&mut self, other: Tally) {
        self.entries += other.entries;
        self.tombstones += other.tombstones;
        self.heap_keys += other.heap_keys;
        self.heap_bytes += other.heap_bytes;
    }
}

/// The keys of one pending timestamp.
#[derive(Debug, Clone)]
pub(super) enum Keys {
    /// Not firing yet.
    Open(Log),
    /// Firing: what is left, sorted with the smallest key last, so it
    /// comes off the end.
    Firing(Vec<TimerKey>),
}

impl Default for Keys {
    fn default() -> Self {
        Keys::Open(Log::default())
    }
}

impl Keys {
    /// Entries held (a log's repeats included).
    pub(super) fn len(&self) -> usize {
        match self {
            Keys::Open(log) => log.keys.len(),
            Keys::Firing(rest) => rest.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every entry is a distinct pending key.
    pub(super) fn is_compact(&self) -> bool {
        match self {
            Keys::Open(log) => log.is_compact(),
            Keys::Firing(_) => true,
        }
    }

    pub(super) fn insert(&mut self, key: TimerKey) -> Tally {
        match self {
            Keys::Open(log) => log.insert(key),
            // Rare: a timer set for a time that is firing right now.
            Keys::Firing(rest) => match rest.binary_search_by(|k| key.cmp(k)) {
                Ok(_) => Tally::default(),
                Err(at) => {
                    let mut tally = Tally::default();
                    tally.entry(&key, 1);
                    rest.insert(at, key);
                    tally
                }
            },
        }
    }

    pub(super) fn contains(&self, key: &TimerKey) -> bool {
        match self {
            Keys::Open(log) => log.contains(key),
            Keys::Firing(rest) => rest.binary_search_by(|k| key.cmp(k)).is_ok(),
        }
    }

    pub(super) fn remove(&mut self, key: TimerKey) -> Tally {
        match self {
            Keys::Open(log) => log.delete(key),
            Keys::Firing(rest) => match rest.binary_search_by(|k| key.cmp(k)) {
                Ok(at) => {
                    let mut tally = Tally::default();
                    tally.entry(&rest.remove(at), -1);
                    tally
                }
                Err(_) => Tally::default(),
            },
        }
    }

    pub(super) fn compact(&mut self) -> Tally {
        match self {
            Keys::Open(log) => log.compact(),
            Keys::Firing(_) => Tally::default(),
        }
    }

    /// Starts firing (settles the log) if it has not yet, and takes up to
    /// `max` of the smallest keys, smallest first.
    pub(super) fn take_first(
        &mut self,
        max: usize,
        tally: &mut Tally,
    ) -> impl Iterator<Item = TimerKey> {
        if let Keys::Open(log) = self {
            tally.add(log.compact());
            let mut keys = std::mem::take(&mut log.keys);
            keys.reverse();
            *self = Keys::Firing(keys);
        }
        let rest = match self {
            Keys::Firing(rest) => rest,
            Keys::Open(_) => unreachable!("just settled"),
        };
        let from = rest.len().saturating_sub(max);
        for key in &rest[from..] {
            tally.entry(key, -1);
        }
        rest.drain(from..).rev()
    }

    /// The pending keys in order.
    pub(super) fn sorted(&self) -> Vec<&TimerKey> {
        match self {
            Keys::Open(log) => {
                let mut keys: Vec<&TimerKey> = log
                    .keys
                    .iter()
                    .filter(|k| !log.deleted.contains(*k))
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                keys
            }
            Keys::Firing(rest) => rest.iter().rev().collect(),
        }
    }
}

/// A timestamp's keys before it fires.
#[derive(Debug, Clone, Default)]
pub(super) struct Log {
    /// `keys[..clean]` are sorted and distinct, none of them deleted; the
    /// rest were appended since, in any order, maybe repeated.
    keys: Vec<TimerKey>,
    clean: usize,
    /// Keys deleted since the last compaction. Every copy of one in `keys`
    /// was appended before it was deleted: registering it again takes it
    /// out of here. Boxed: most timestamps never see a deletion, and one
    /// with a single timer (a timeout per key) would otherwise carry an
    /// empty table's 40 bytes.
    deleted: Deleted,
}

#[derive(Debug, Clone, Default)]
struct Deleted(Option<Box<HashSet<TimerKey, foldhash::fast::RandomState>>>);

impl Deleted {
    fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|set| set.is_empty())
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |set| set.len())
    }

    fn contains(&self, key: &TimerKey) -> bool {
        self.0.as_ref().is_some_and(|set| set.contains(key))
    }

    fn take(&mut self, key: &TimerKey) -> Option<TimerKey> {
        self.0.as_mut()?.take(key)
    }

    fn insert(&mut self, key: TimerKey) {
        self.0.get_or_insert_default().insert(key);
    }

    /// Empties the set, handing back what it held.
    fn take_all(&mut self) -> HashSet<TimerKey, foldhash::fast::RandomState> {
        self.0.take().map(|set| *set).unwrap_or_default()
    }
}

impl Log {
    fn is_compact(&self) -> bool {
        self.clean == self.keys.len() && self.deleted.is_empty()
    }

    fn insert(&mut self, key: TimerKey) -> Tally {
        let mut tally = Tally::default();
        if !self.deleted.is_empty() {
            if let Some(old) = self.deleted.take(&key) {
                tally.tombstone(&old, -1);
            }
        } else if self.keys.last() == Some(&key) {
            // The same key again (one registered for every record): free.
            return tally;
        }
        tally.entry(&key, 1);
        self.keys.push(key);
        if self.keys.len() >= 2 * self.clean + COMPACT_AFTER {
            tally.add(self.compact());
        }
        tally
    }

    fn delete(&mut self, key: TimerKey) -> Tally {
        let mut tally = Tally::default();
        if self.keys.is_empty()
            || (self.is_compact() && self.keys.binary_search(&key).is_err())
            || self.deleted.contains(&key)
        {
            return tally;
        }
        tally.tombstone(&key, 1);
        self.deleted.insert(key);
        // So deletions hold at most as many keys as the log, and a
        // timestamp whose keys are all deleted soon leaves the queue.
        if 2 * self.deleted.len() >= self.keys.len() {
            tally.add(self.compact());
        }
        tally
    }

    fn contains(&self, key: &TimerKey) -> bool {
        !self.deleted.contains(key)
            && (self.keys[..self.clean].binary_search(key).is_ok()
                || self.keys[self.clean..].contains(key))
    }

    /// Sorts what was appended, drops repeats and deleted keys, and merges
    /// the rest into the sorted keys.
    fn compact(&mut self) -> Tally {
        let mut tally = Tally::default();
        if self.is_compact() {
            return tally;
        }
        let appended = if self.clean == 0 {
            // (`split_off(0)` would leave a new block as large behind.)
            std::mem::take(&mut self.keys)
        } else {
            self.keys.split_off(self.clean)
        };
        let mut tail = sort_distinct(appended, &mut tally);
        if !self.deleted.is_empty() {
            let deleted = self.deleted.take_all();
            let mut live = |key: &TimerKey| {
                let keep = !deleted.contains(key);
                if !keep {
                    tally.entry(key, -1);
                }
                keep
            };
            tail.retain(|k| live(k));
            self.keys.retain(|k| live(k));
            for key in &deleted {
                tally.tombstone(key, -1);
            }
        }
        // A few keys (a limit's check, a gauge): look each up rather than
        // walk the whole sorted run; most are there already.
        if tail.len() * 16 < self.keys.len() {
            tail.retain(|key| {
                let new = self.keys.binary_search(key).is_err();
                if !new {
                    tally.entry(key, -1);
                }
                new
            });
        }
        if self.keys.is_empty() {
            self.keys = tail;
        } else if !tail.is_empty() {
            self.keys = merge(std::mem::take(&mut self.keys), tail, &mut tally);
        } else if self.keys.capacity() > 2 * self.keys.len() + 4 {
            self.keys.shrink_to(self.keys.len());
        }
        self.clean = self.keys.len();
        tally
    }
}

/// Merges two sorted, distinct runs into one, dropping `b`'s keys that `a`
/// has.
fn merge(a: Vec<TimerKey>, b: Vec<TimerKey>, tally: &mut Tally) -> Vec<TimerKey> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => {
                    if let Some(repeat) = b.next() {
                        tally.entry(&repeat, -1);
                    }
                    continue;
                }
            },
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        out.extend(next);
    }
    out
}

/// `keys` sorted, each once. Inline keys are sorted as their order words,
/// worked out once per key rather than in every comparison (the sort was
/// about a fifth of a window operator's timer work), and by radix.
fn sort_distinct(mut keys: Vec<TimerKey>, tally: &mut Tally) -> Vec<TimerKey> {
    let words: Option<Vec<(u64, u64, u64, u8)>> = keys
        .iter()
        .map(|k| match k {
            TimerKey::Inline { len, bytes } => {
                let (a, b, c) = words(bytes);
                Some((a, b, c, *len))
            }
            TimerKey::Heap(_) => None,
        })
        .collect();
    let Some(mut words) = words else {
        keys.sort_unstable();
        keys.dedup_by(|next, kept| {
            let repeat = next == kept;
            if repeat {
                tally.entry(next, -1);
            }
            repeat
        });
        return keys;
    };
    drop(keys);
    // A radix sort: passes only over the bytes in which the keys differ
    // (the digits of `key-1234`), where a comparison sort took a dozen
    // tuple comparisons per key.
    radsort::sort_by_key(&mut words, |&(a, b, c, len)| (a, b, c, len));
    let before = words.len();
    words.dedup();
    // Inline keys: no heap bytes to count.
    tally.entries -= (before - words.len()) as isize;
    words
        .into_iter()
        .map(|(a, b, c, len)| {
            let mut bytes = [0; INLINE_KEY_MAX];
            bytes[..8].copy_from_slice(&a.to_be_bytes());
            bytes[8..16].copy_from_slice(&b.to_be_bytes());
            bytes[16..].copy_from_slice(&c.to_be_bytes()[..INLINE_KEY_MAX - 16]);
            TimerKey::Inline { len, bytes }
        })
        .collect()
}
