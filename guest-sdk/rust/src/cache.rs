//! A write-back cache of keyed state for the length of one host call (one
//! batch of records, or one batch of fired timers).
//!
//! Operators read and write the same few entries over and over within a
//! batch when keys repeat (a window per hot key, a running total): the cache
//! serves repeated reads without crossing into the host, keeps only the last
//! write of an entry, and registers each timer once per batch. Everything is
//! written back before the call returns, so the host's state is complete
//! whenever it can snapshot it: checkpoint barriers arrive between calls,
//! and timers fire in calls of their own. Nothing survives the call, so a
//! restart, restore or rescale never sees a stale entry, and state TTLs
//! (counted by the host per write) keep their meaning.
//!
//! Value and map state are cached; list state, `map_entries` and `clear`
//! go to the host (after writing back the entries they could observe).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

use crate::host::{Host, LogLevel, TimeDomain};

/// A fixed hasher: iteration (and so write-back) order does not depend on
/// a random seed, so a guest replays the same host calls on the same input.
type Fixed = BuildHasherDefault<FxHasher>;

/// The Fx hash (rustc's): a multiply and a rotate per word. Keys here are
/// short and come from the job's own data, and a batch bounds how many
/// there are, so SipHash's flooding resistance buys nothing here.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 56));
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One cached entry: the value as the host would return it (`None`:
/// absent) and whether the host has yet to be told.
struct Slot {
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// The cached entries of one (state, key).
#[derive(Default)]
struct Entries {
    value: Option<Slot>,
    map: HashMap<Vec<u8>, Slot, Fixed>,
    /// Map keys written since the last write-back, in first-write order.
    dirty_map: Vec<Vec<u8>>,
}

/// (state, key) as one buffer, so a lookup allocates once.
fn prefix(state: u32, key: &[u8]) -> Vec<u8> {
    let mut id = Vec::with_capacity(4 + key.len());
    id.extend_from_slice(&state.to_le_bytes());
    id.extend_from_slice(key);
    id
}

/// A [`Host`] that caches keyed state in front of another for one call.
pub(crate) struct CachingHost<'a> {
    inner: &'a mut dyn Host,
    entries: HashMap<Vec<u8>, Entries, Fixed>,
    /// (state, key) prefixes written since the last write-back, in
    /// first-write order (a prefix cleared and written again may appear
    /// twice; the second finds nothing left to write).
    queue: Vec<Vec<u8>>,
    timers: HashSet<(TimeDomain, i64, Vec<u8>), Fixed>,
    watermark: Option<i64>,
}

impl<'a> CachingHost<'a> {
    pub(crate) fn new(inner: &'a mut dyn Host) -> Self {
        CachingHost {
            inner,
            entries: HashMap::default(),
            queue: Vec::new(),
            timers: HashSet::default(),
            watermark: None,
        }
    }

    fn entries_of(&mut self, state: u32, key: &[u8]) -> &mut Entries {
        self.entries.entry(prefix(state, key)).or_default()
    }

    /// Marks (state, key) as having pending writes.
    fn enqueue(queue: &mut Vec<Vec<u8>>, e: &Entries, state: u32, key: &[u8]) {
        let pending = e.value.as_ref().is_some_and(|s| s.dirty) || !e.dirty_map.is_empty();
        if !pending {
            queue.push(prefix(state, key));
        }
    }

    /// Writes back the pending writes of one (state, key).
    fn write_back(inner: &mut dyn Host, id: &[u8], e: &mut Entries) {
        let (state, key) = id.split_at(4);
        let state = u32::from_le_bytes([state[0], state[1], state[2], state[3]]);
        if let Some(slot) = e.value.as_mut().filter(|s| s.dirty) {
            slot.dirty = false;
            if let Some(v) = &slot.value {
                inner.value_set(state, key, v);
            }
        }
        for map_key in std::mem::take(&mut e.dirty_map) {
            if let Some(slot) = e.map.get_mut(&map_key).filter(|s| s.dirty) {
                slot.dirty = false;
                match &slot.value {
                    Some(v) => inner.map_put(state, key, &map_key, v),
                    None => inner.map_remove(state, key, &map_key),
                }
            }
        }
    }

    /// Writes everything back; call before the host call returns.
    pub(crate) fn flush(&mut self) {
        for id in std::mem::take(&mut self.queue) {
            if let Some(e) = self.entries.get_mut(&id) {
                Self::write_back(&mut *self.inner, &id, e);
            }
        }
    }
}

impl Host for CachingHost<'_> {
    fn value_get(&mut self, state: u32, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(slot) = self.entries_of(state, key).value.as_ref() {
            return slot.value.clone();
        }
        let value = self.inner.value_get(state, key);
        self.entries_of(state, key).value = Some(Slot {
            value: value.clone(),
            dirty: false,
        });
        value
    }
    fn value_set(&mut self, state: u32, key: &[u8], value: &[u8]) {
        let e = self.entries.entry(prefix(state, key)).or_default();
        Self::enqueue(&mut self.queue, e, state, key);
        e.value = Some(Slot {
            value: Some(value.to_vec()),
            dirty: true,
        });
    }
    fn list_append(&mut self, state: u32, key: &[u8], value: &[u8]) {
        self.inner.list_append(state, key, value)
    }
    fn list_get(&mut self, state: u32, key: &[u8]) -> Vec<Vec<u8>> {
        self.inner.list_get(state, key)
    }
    fn map_get(&mut self, state: u32, key: &[u8], map_key: &[u8]) -> Option<Vec<u8>> {
        if let Some(slot) = self.entries_of(state, key).map.get(map_key) {
            return slot.value.clone();
        }
        let value = self.inner.map_get(state, key, map_key);
        self.entries_of(state, key).map.insert(
            map_key.to_vec(),
            Slot {
                value: value.clone(),
                dirty: false,
            },
        );
        value
    }
    fn map_put(&mut self, state: u32, key: &[u8], map_key: &[u8], value: &[u8]) {
        self.map_write(state, key, map_key, Some(value.to_vec()))
    }
    fn map_remove(&mut self, state: u32, key: &[u8], map_key: &[u8]) {
        self.map_write(state, key, map_key, None)
    }
    fn map_entries(&mut self, state: u32, key: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let id = prefix(state, key);
        if let Some(e) = self.entries.get_mut(&id) {
            Self::write_back(&mut *self.inner, &id, e);
        }
        self.inner.map_entries(state, key)
    }
    fn clear(&mut self, state: u32, key: &[u8]) {
        // Pending writes of the cleared state are moot; later reads go to
        // the (cleared) host.
        self.entries.remove(&prefix(state, key));
        self.inner.clear(state, key)
    }
    fn register_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp_ms: i64) {
        if self.timers.insert((domain, timestamp_ms, key.to_vec())) {
            self.inner.register_timer(domain, key, timestamp_ms)
        }
    }
    fn delete_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp_ms: i64) {
        self.timers.remove(&(domain, timestamp_ms, key.to_vec()));
        self.inner.delete_timer(domain, key, timestamp_ms)
    }
    fn watermark(&mut self) -> i64 {
        // The host moves the watermark between calls, never during one.
        *self.watermark.get_or_insert_with(|| self.inner.watermark())
    }
    fn processing_time(&mut self) -> i64 {
        self.inner.processing_time()
    }
    fn log(&mut self, level: LogLevel, message: &str) {
        self.inner.log(level, message)
    }
}

impl CachingHost<'_> {
    fn map_write(&mut self, state: u32, key: &[u8], map_key: &[u8], value: Option<Vec<u8>>) {
        let e = self.entries.entry(prefix(state, key)).or_default();
        Self::enqueue(&mut self.queue, e, state, key);
        match e.map.get_mut(map_key) {
            Some(slot) => {
                if !slot.dirty {
                    e.dirty_map.push(map_key.to_vec());
                }
                slot.value = value;
                slot.dirty = true;
            }
            None => {
                e.dirty_map.push(map_key.to_vec());
                e.map.insert(map_key.to_vec(), Slot { value, dirty: true });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A host that keeps value and map state and logs every call.
    #[derive(Default)]
    struct Recording {
        values: BTreeMap<(u32, Vec<u8>), Vec<u8>>,
        maps: BTreeMap<(u32, Vec<u8>, Vec<u8>), Vec<u8>>,
        calls: Vec<String>,
    }

    impl Host for Recording {
        fn value_get(&mut self, state: u32, key: &[u8]) -> Option<Vec<u8>> {
            self.calls.push(format!("value_get {state}"));
            self.values.get(&(state, key.to_vec())).cloned()
        }
        fn value_set(&mut self, state: u32, key: &[u8], value: &[u8]) {
            self.calls.push(format!("value_set {state}"));
            self.values.insert((state, key.to_vec()), value.to_vec());
        }
        fn list_append(&mut self, _: u32, _: &[u8], _: &[u8]) {}
        fn list_get(&mut self, _: u32, _: &[u8]) -> Vec<Vec<u8>> {
            Vec::new()
        }
        fn map_get(&mut self, state: u32, key: &[u8], m: &[u8]) -> Option<Vec<u8>> {
            self.calls.push("map_get".into());
            self.maps.get(&(state, key.to_vec(), m.to_vec())).cloned()
        }
        fn map_put(&mut self, state: u32, key: &[u8], m: &[u8], value: &[u8]) {
            self.calls.push("map_put".into());
            self.maps
                .insert((state, key.to_vec(), m.to_vec()), value.to_vec());
        }
        fn map_remove(&mut self, state: u32, key: &[u8], m: &[u8]) {
            self.calls.push("map_remove".into());
            self.maps.remove(&(state, key.to_vec(), m.to_vec()));
        }
        fn map_entries(&mut self, state: u32, key: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
            self.calls.push("map_entries".into());
            self.maps
                .iter()
                .filter(|((s, k, _), _)| *s == state && k == key)
                .map(|((_, _, m), v)| (m.clone(), v.clone()))
                .collect()
        }
        fn clear(&mut self, state: u32, key: &[u8]) {
            self.calls.push("clear".into());
            self.values.remove(&(state, key.to_vec()));
            self.maps.retain(|(s, k, _), _| !(*s == state && k == key));
        }
        fn register_timer(&mut self, _: TimeDomain, _: &[u8], t: i64) {
            self.calls.push(format!("register {t}"));
        }
        fn delete_timer(&mut self, _: TimeDomain, _: &[u8], t: i64) {
            self.calls.push(format!("delete {t}"));
        }
        fn watermark(&mut self) -> i64 {
            self.calls.push("watermark".into());
            7
        }
        fn processing_time(&mut self) -> i64 {
            0
        }
        fn log(&mut self, _: LogLevel, _: &str) {}
    }

    #[test]
    fn repeated_reads_and_writes_reach_the_host_once() {
        let mut host = Recording::default();
        let mut c = CachingHost::new(&mut host);
        for n in 0..5u8 {
            let v = c.value_get(0, b"k");
            assert_eq!(v, n.checked_sub(1).map(|p| vec![p]));
            c.value_set(0, b"k", &[n]);
            c.register_timer(TimeDomain::EventTime, b"k", 99);
            assert_eq!(c.watermark(), 7);
        }
        c.flush();
        assert_eq!(
            host.calls,
            ["value_get 0", "register 99", "watermark", "value_set 0"]
        );
        assert_eq!(host.values[&(0, b"k".to_vec())], vec![4]);
    }

    #[test]
    fn removals_clears_and_entries_see_pending_writes() {
        let mut host = Recording::default();
        host.maps
            .insert((1, b"k".to_vec(), b"a".to_vec()), b"old".to_vec());
        let mut c = CachingHost::new(&mut host);
        assert_eq!(c.map_get(1, b"k", b"a"), Some(b"old".to_vec()));
        c.map_remove(1, b"k", b"a");
        assert_eq!(c.map_get(1, b"k", b"a"), None);
        c.map_put(1, b"k", b"b", b"new");
        c.map_put(1, b"j", b"b", b"other key");
        // The listing reflects this key's pending writes, not only the host's.
        assert_eq!(
            c.map_entries(1, b"k"),
            vec![(b"b".to_vec(), b"new".to_vec())]
        );
        c.value_set(0, b"k", b"v");
        c.clear(0, b"k");
        assert_eq!(c.value_get(0, b"k"), None);
        c.register_timer(TimeDomain::EventTime, b"k", 5);
        c.delete_timer(TimeDomain::EventTime, b"k", 5);
        c.register_timer(TimeDomain::EventTime, b"k", 5);
        c.flush();
        assert_eq!(
            host.calls,
            [
                "map_get",
                "map_remove",
                "map_put",
                "map_entries",
                "clear",
                "value_get 0",
                "register 5",
                "delete 5",
                "register 5",
                "map_put"
            ]
        );
        assert_eq!(host.maps.len(), 2);
        assert!(host.values.is_empty());
    }
}
