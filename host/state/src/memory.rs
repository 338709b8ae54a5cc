//! State on the heap: fastest, bounded by memory, lost with the process
//! unless snapshotted.
//!
//! Point reads and writes go to a hash map (SipHash: keys come from user
//! data); a sorted index of the keys serves prefix scans. A write to an
//! existing key touches only the hash map, which is what keyed operators
//! do most.
//!
//! Only map states are prefix-scanned while records flow (`map-entries`,
//! clearing a map), so once the store says which states those are
//! ([`StateBackend::index_states`]), the keys of value and list states stay
//! out of the index: creating and clearing such a key (a window opening
//! and firing) is then one hash-map operation, not a B-tree one too. Scans
//! that can meet unindexed keys (snapshots, renumbering on upgrade) visit
//! those after the indexed ones, in hash order. The state of a key is read
//! from its storage key's bytes 2..4 (see `keyed.rs`).
//!
//! The backend lives in the host's heap, so it counts what it holds
//! (see [`MemoryBackend::held_bytes`]) and refuses a write that would take
//! it over its bound: the count is kept on every write and delete, so the
//! check is one compare.

use std::collections::{BTreeSet, HashMap};

use crate::backend::{StateBackend, StateError};

/// Estimated heap bytes of one entry besides its key and value bytes: a
/// hash-map bucket (two `Vec` headers, control byte, load factor), a B-tree
/// slot (one `Vec` header, node overhead) and the allocator's headers of
/// three allocations. Without it a flood of empty entries would cost the
/// host several times what it is charged.
pub const ENTRY_OVERHEAD_BYTES: usize = 160;

#[derive(Debug)]
pub struct MemoryBackend {
    entries: HashMap<Vec<u8>, Vec<u8>>,
    /// The keys of `indexed` states, sorted.
    order: BTreeSet<Vec<u8>>,
    /// Which states' keys `order` holds, by state index; `None`: every key
    /// (until the store declares its states, and for plain byte keys).
    indexed: Option<Vec<bool>>,
    /// Heap bytes charged: for each entry its key twice (map and index),
    /// its value's capacity, and [`ENTRY_OVERHEAD_BYTES`].
    held_bytes: usize,
    max_bytes: usize,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend {
            entries: HashMap::new(),
            order: BTreeSet::new(),
            indexed: None,
            held_bytes: 0,
            max_bytes: usize::MAX,
        }
    }
}

/// What an entry with this key and value capacity is charged.
fn entry_bytes(key_len: usize, value_capacity: usize) -> usize {
    ENTRY_OVERHEAD_BYTES
        .saturating_add(key_len.saturating_mul(2))
        .saturating_add(value_capacity)
}

/// Refuses a write that takes one entry's charge from `old` to `new` bytes
/// if the total would pass `max_bytes`. Shrinking is always allowed.
fn check_growth(
    held_bytes: usize,
    max_bytes: usize,
    old: usize,
    new: usize,
) -> Result<(), StateError> {
    if new <= old {
        return Ok(());
    }
    let held = held_bytes.saturating_add(new - old);
    if held > max_bytes {
        return Err(StateError::MemoryFull {
            held_bytes: held,
            max_bytes,
        });
    }
    Ok(())
}

/// The capacity a value grows to when `extra` bytes are appended: doubling
/// (amortised appends), but never less than needed. Reserved exactly, so
/// the charge checked up front is the allocation made.
fn grown_capacity(len: usize, capacity: usize, extra: usize) -> usize {
    let needed = len.saturating_add(extra);
    if needed <= capacity {
        capacity
    } else {
        needed.max(capacity.saturating_mul(2))
    }
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Heap bytes the entries are charged (keys, values, per-entry overhead).
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Whether `key` (or every key starting with it) is in the index. A
    /// prefix too short to name its state is not: a scan over it walks
    /// every key.
    fn is_indexed(&self, key: &[u8]) -> bool {
        let Some(indexed) = &self.indexed else {
            return true;
        };
        match key.get(2..4) {
            Some(state) => {
                let state = u16::from_be_bytes([state[0], state[1]]) as usize;
                indexed.get(state).copied().unwrap_or(true)
            }
            None => false,
        }
    }

    fn indexed_with_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        self.order
            .range(prefix.to_vec()..)
            .take_while(move |k| k.starts_with(prefix))
    }

    /// Every key starting with `prefix`: the indexed ones in order, then
    /// (when the prefix can hold any) the unindexed ones in no order.
    /// Not sorting those keeps a snapshot of a large value state at one
    /// pass; each of them is a whole state of one key, so nothing needs
    /// them adjacent or ordered.
    fn keys_with_prefix<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        let unindexed = (!self.is_indexed(prefix)).then(|| {
            self.entries
                .keys()
                .filter(move |k| k.starts_with(prefix) && !self.is_indexed(k))
        });
        self.indexed_with_prefix(prefix)
            .chain(unindexed.into_iter().flatten())
    }

    fn recharge(&mut self, old: usize, new: usize) {
        // `old` was added when charged, so it is at most `held_bytes`.
        self.held_bytes = self.held_bytes.saturating_sub(old).saturating_add(new);
    }

    /// Writes into `key`'s value: `replace` overwrites it, otherwise `bytes`
    /// are appended. Checked against the bound before anything allocates.
    fn write(&mut self, key: &[u8], bytes: &[u8], replace: bool) -> Result<(), StateError> {
        match self.entries.get_mut(key) {
            Some(existing) => {
                let capacity = if replace {
                    existing.capacity().max(bytes.len())
                } else {
                    grown_capacity(existing.len(), existing.capacity(), bytes.len())
                };
                let old = entry_bytes(key.len(), existing.capacity());
                let new = entry_bytes(key.len(), capacity);
                check_growth(self.held_bytes, self.max_bytes, old, new)?;
                if replace {
                    existing.clear();
                }
                existing.reserve_exact(capacity - existing.len());
                existing.extend_from_slice(bytes);
                let new = entry_bytes(key.len(), existing.capacity());
                // `old` was added when charged, so it is at most `held_bytes`.
                self.held_bytes = self.held_bytes.saturating_sub(old).saturating_add(new);
            }
            None => {
                let new = entry_bytes(key.len(), bytes.len());
                check_growth(self.held_bytes, self.max_bytes, 0, new)?;
                let value = bytes.to_vec();
                let new = entry_bytes(key.len(), value.capacity());
                self.entries.insert(key.to_vec(), value);
                if self.is_indexed(key) {
                    self.order.insert(key.to_vec());
                }
                self.recharge(0, new);
            }
        }
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(value) = self.entries.remove(key) {
            if self.is_indexed(key) {
                self.order.remove(key);
            }
            self.recharge(entry_bytes(key.len(), value.capacity()), 0);
        }
    }
}

impl StateBackend for MemoryBackend {
    fn size_estimate(&self) -> Option<(u64, u64)> {
        Some((self.entries.len() as u64, self.held_bytes as u64))
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.entries.get(key).cloned())
    }

    fn get_with(&mut self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, StateError> {
        Ok(self.entries.get(key).map(|v| visit(v)).is_some())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.write(key, value, true)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.remove(key);
        Ok(())
    }

    fn append(&mut self, key: &[u8], element: &[u8]) -> Result<(), StateError> {
        self.write(key, element, false)
    }

    fn scan_prefix_while(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        for key in self.keys_with_prefix(prefix) {
            if let Some(value) = self.entries.get(key)
                && !visit(key, value)
            {
                break;
            }
        }
        Ok(())
    }

    fn set_memory_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    fn index_states(&mut self, indexed: &[bool]) {
        self.indexed = Some(indexed.to_vec());
        let keys: Vec<Vec<u8>> = self
            .entries
            .keys()
            .filter(|k| self.is_indexed(k))
            .cloned()
            .collect();
        self.order = keys.into_iter().collect();
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<(), StateError> {
        let doomed: Vec<Vec<u8>> = self.keys_with_prefix(prefix).cloned().collect();
        for key in doomed {
            self.remove(&key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The charge recomputed from scratch.
    fn recount(b: &MemoryBackend) -> usize {
        b.entries
            .iter()
            .map(|(k, v)| entry_bytes(k.len(), v.capacity()))
            .sum()
    }

    #[test]
    fn the_charge_follows_every_write_and_delete() {
        let mut b = MemoryBackend::new();
        b.put(b"a", b"12345").unwrap();
        b.append(b"l", &[7; 100]).unwrap();
        for _ in 0..50 {
            b.append(b"l", &[7; 33]).unwrap();
            assert_eq!(b.held_bytes(), recount(&b));
        }
        b.put(b"a", &[1; 1000]).unwrap();
        b.put(b"a", b"x").unwrap();
        assert_eq!(b.held_bytes(), recount(&b));
        b.put(b"p1", b"v").unwrap();
        b.put(b"p2", b"v").unwrap();
        b.delete_prefix(b"p").unwrap();
        b.delete(b"missing").unwrap();
        assert_eq!(b.held_bytes(), recount(&b));
        b.delete(b"a").unwrap();
        b.delete(b"l").unwrap();
        assert_eq!(b.held_bytes(), 0);
    }

    #[test]
    fn appends_stop_at_the_bound_and_leave_state_unchanged() {
        let mut b = MemoryBackend::new();
        b.set_memory_max_bytes(1 << 20);
        let element = vec![0u8; 64 << 10];
        let mut appended = 0;
        let err = loop {
            match b.append(b"list", &element) {
                Ok(()) => appended += 1,
                Err(e) => break e,
            }
            assert!(appended < 1000, "never refused");
        };
        assert!(b.held_bytes() <= 1 << 20, "{}", b.held_bytes());
        // Doubling reserves ahead: at least half the bound was usable.
        assert!(appended >= 8, "{appended}");
        let before = b.get(b"list").unwrap().unwrap().len();
        assert_eq!(before, appended * element.len());
        assert!(
            err.to_string().ends_with(
                "over the limit of 1 MiB (state_memory_max_mb); raise `state_memory_max_mb` in the job file"
            ),
            "{err}"
        );
        assert!(matches!(err, StateError::MemoryFull { .. }));
        // Deleting makes room again.
        b.delete(b"list").unwrap();
        b.append(b"list", &element).unwrap();
    }

    #[test]
    fn many_small_entries_are_charged_their_overhead() {
        let mut b = MemoryBackend::new();
        b.set_memory_max_bytes(1 << 20);
        let mut n = 0u32;
        while b.put(&n.to_be_bytes(), b"").is_ok() {
            n += 1;
            assert!(n < 1 << 20, "never refused");
        }
        let per_entry = (1 << 20) / n as usize;
        assert!(per_entry >= ENTRY_OVERHEAD_BYTES, "{per_entry}");
    }

    #[test]
    fn restored_state_counts_against_the_bound() {
        let mut b = MemoryBackend::new();
        b.set_memory_max_bytes(8192);
        // A restore writes through `put` like any other write.
        assert!(b.put(b"big", &[0; 7000]).is_ok());
        assert!(matches!(
            b.put(b"more", &[0; 1000]),
            Err(StateError::MemoryFull { .. })
        ));
    }

    /// A storage key: key group, state, user key, and a map key for state 1.
    fn storage_key(group: u8, state: u8, user: u8, map_key: Option<u8>) -> Vec<u8> {
        let mut key = vec![0, group, 0, state, 0, 0, 0, 1, user];
        key.extend(map_key);
        key
    }

    fn scan(b: &mut MemoryBackend, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut seen = Vec::new();
        b.scan_prefix(prefix, &mut |k, v| seen.push((k.to_vec(), v.to_vec())))
            .unwrap();
        seen
    }

    fn sorted_model(
        model: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        prefix: &[u8],
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        model
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    proptest::proptest! {
        /// With only state 1 (a map) indexed, every scan still sees exactly
        /// the entries the model holds, a map's in order, whenever the
        /// declaration comes.
        #[test]
        fn scans_see_every_entry_in_order_whatever_is_indexed(
            ops in proptest::collection::vec(
                (0u8..3, 0u8..3, 0u8..4, 0u8..4, 0u8..3, proptest::prelude::any::<u8>()),
                1..200,
            ),
            declare_at in 0usize..200,
        ) {
            let mut b = MemoryBackend::new();
            let mut model = std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new();
            for (i, &(op, group, state, user, map_key, byte)) in ops.iter().enumerate() {
                if i == declare_at {
                    b.index_states(&[false, true, false]);
                }
                let key = storage_key(group, state, user, (state == 1).then_some(map_key));
                match op {
                    0 => {
                        b.put(&key, &[byte]).unwrap();
                        model.insert(key, vec![byte]);
                    }
                    1 => {
                        b.delete(&key).unwrap();
                        model.remove(&key);
                    }
                    _ => {
                        // Clear a whole map (or whatever is under the user key).
                        let prefix = &key[..9];
                        b.delete_prefix(prefix).unwrap();
                        model.retain(|k, _| !k.starts_with(prefix));
                    }
                }
            }
            for prefix in [&[][..], &[0u8, 1], &[0, 1, 0, 0], &[0, 2, 0, 1], &[0, 0, 0, 1, 0, 0, 0, 1, 2]] {
                let expected: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let seen = scan(&mut b, prefix);
                // Map (state 1) entries: in order, so each map's adjacent.
                let maps: Vec<_> = seen.iter().filter(|(k, _)| k[3] == 1).collect();
                proptest::prop_assert!(maps.windows(2).all(|w| w[0].0 < w[1].0));
                let mut sorted = seen.clone();
                sorted.sort();
                proptest::prop_assert_eq!(sorted, expected);
                if prefix.len() >= 4 && prefix[3] == 1 {
                    proptest::prop_assert_eq!(seen, sorted_model(&model, prefix));
                }
            }
            proptest::prop_assert_eq!(b.held_bytes(), recount(&b));
        }
    }

    #[test]
    fn only_indexed_states_keys_are_in_the_order_index() {
        let mut b = MemoryBackend::new();
        b.put(&storage_key(0, 0, 1, None), b"v").unwrap();
        b.put(&storage_key(0, 1, 1, Some(7)), b"m").unwrap();
        assert_eq!(b.order.len(), 2);
        b.index_states(&[false, true]);
        assert_eq!(b.order.len(), 1);
        b.put(&storage_key(0, 0, 2, None), b"v").unwrap();
        b.put(&storage_key(0, 1, 2, Some(7)), b"m").unwrap();
        assert_eq!(b.order.len(), 2);
        b.delete(&storage_key(0, 1, 1, Some(7))).unwrap();
        b.delete(&storage_key(0, 0, 1, None)).unwrap();
        assert_eq!(b.order.len(), 1);
        assert_eq!(b.len(), 2);
    }
}
