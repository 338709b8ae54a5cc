//! Value, list and map state per key, laid over a [`StateBackend`].
//!
//! Storage key: `key_group:u16 BE | state:u16 BE | key_len:u32 BE | key [| map_key]`
//! (see [`STORAGE_KEY_HEADER`]).
//! Key group first, so a subtask's key-group range is one contiguous scan
//! (what rescaling moves); the key length makes every key's prefix unique,
//! so a map's entries are exactly the entries under its prefix.

use weir_core::{KeyGroupRange, key_group_of};

use crate::backend::{StateBackend, StateError, decode_list, encode_list_element};
use crate::redeclare::{plan_redeclare, renumber};

/// What a map's entries cost the guest receiving them: a 4-byte count, then
/// per entry two 4-byte lengths and the bytes (the encoding of
/// `map-entries`).
const MAP_ENTRIES_READ_HEADER: usize = 4;
const MAP_ENTRY_READ_OVERHEAD: usize = 8;

/// A map's (map key, value) pairs.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Value,
    List,
    Map,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDescriptor {
    pub name: String,
    pub kind: StateKind,
    pub ttl_ms: Option<u64>,
}

/// The keyed state of one operator subtask.
pub struct KeyedStateStore {
    backend: Box<dyn StateBackend>,
    states: Vec<StateDescriptor>,
    max_parallelism: u32,
    key_groups: KeyGroupRange,
    scratch: Vec<u8>,
}

const STATES_MAX: usize = u16::MAX as usize;
/// Bytes before the user key in a storage key: key group, state, key length.
pub const STORAGE_KEY_HEADER: usize = 8;
const TTL_HEADER_LEN: usize = 8;

/// Checks a declaration as `open` returned it: at most [`STATES_MAX`]
/// states, named, each name once, no TTL on a list.
pub(crate) fn validate_declaration(states: &[StateDescriptor]) -> Result<(), StateError> {
    if states.len() > STATES_MAX {
        return Err(StateError::Usage(format!(
            "declared {} states; at most {STATES_MAX} are allowed",
            states.len()
        )));
    }
    for (i, s) in states.iter().enumerate() {
        if s.name.is_empty() {
            return Err(StateError::Usage(format!("state #{i} has an empty name")));
        }
        if states[..i].iter().any(|earlier| earlier.name == s.name) {
            return Err(StateError::Usage(format!(
                "state `{}` is declared twice",
                s.name
            )));
        }
        if s.kind == StateKind::List && s.ttl_ms.is_some() {
            return Err(StateError::Usage(format!(
                "state `{}`: a TTL is supported on value and map state, not on list state",
                s.name
            )));
        }
    }
    Ok(())
}

impl KeyedStateStore {
    pub fn new(
        backend: Box<dyn StateBackend>,
        max_parallelism: u32,
        key_groups: KeyGroupRange,
    ) -> Self {
        KeyedStateStore {
            backend,
            states: Vec::new(),
            max_parallelism,
            key_groups,
            scratch: Vec::with_capacity(64),
        }
    }

    /// Registers the states an operator declared in `open`.
    pub fn declare(&mut self, states: Vec<StateDescriptor>) -> Result<(), StateError> {
        validate_declaration(&states)?;
        self.states = states;
        self.index_map_states();
        Ok(())
    }

    /// Replaces the declared states with `new` (a new version of the
    /// operator's code), keeping every state by name: see
    /// [`plan_redeclare`] for what is refused. When every kept state keeps
    /// its index and none is dropped, only the list changes (no IO);
    /// otherwise the stored entries of this subtask's key groups are
    /// renumbered and those of dropped states deleted.
    ///
    /// A refused plan leaves the store unchanged. A backend error while
    /// moving entries leaves them partly moved under the old declaration:
    /// the store must then be dropped and restored from a checkpoint.
    pub fn redeclare(
        &mut self,
        new: Vec<StateDescriptor>,
        allow_dropping_state: bool,
    ) -> Result<(), StateError> {
        let plan = plan_redeclare(&self.states, &new, allow_dropping_state)?;
        if !plan.is_in_place() {
            renumber(self.backend.as_mut(), self.key_groups, &plan)?;
        }
        self.states = new;
        self.index_map_states();
        Ok(())
    }

    /// Only map states are prefix-scanned while records flow.
    fn index_map_states(&mut self) {
        let maps: Vec<bool> = self
            .states
            .iter()
            .map(|s| s.kind == StateKind::Map)
            .collect();
        self.backend.index_states(&maps);
    }

    /// The states declared in `open`, by index.
    pub fn descriptors(&self) -> &[StateDescriptor] {
        &self.states
    }

    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// Bounds the bytes the backend may hold in host memory (the memory
    /// backend; on-disk backends ignore it). Writes that would pass it fail
    /// with [`StateError::MemoryFull`].
    pub fn set_memory_max_bytes(&mut self, max_bytes: usize) {
        self.backend.set_memory_max_bytes(max_bytes);
    }

    /// Entries and bytes of the store (see [`StateBackend::size_estimate`]).
    pub fn size_estimate(&self) -> Option<(u64, u64)> {
        self.backend.size_estimate()
    }

    /// The backend, for snapshots: every stored entry, in the layout above.
    pub fn backend_mut(&mut self) -> &mut dyn StateBackend {
        self.backend.as_mut()
    }

    /// Checks the call and writes the key's storage prefix into `scratch`.
    fn prefix(
        &mut self,
        state: u32,
        kind: StateKind,
        key: &[u8],
    ) -> Result<Option<u64>, StateError> {
        let descriptor = self.states.get(state as usize).ok_or_else(|| {
            StateError::Usage(format!(
                "state index {state} was not declared in open ({} declared)",
                self.states.len()
            ))
        })?;
        if descriptor.kind != kind {
            return Err(StateError::Usage(format!(
                "state `{}` is {:?} state, used as {:?} state",
                descriptor.name, descriptor.kind, kind
            )));
        }
        let key_group = key_group_of(key, self.max_parallelism);
        if !self.key_groups.contains(key_group) {
            return Err(StateError::Usage(format!(
                "key {:?} is in key group {key_group}, which this subtask does not own ({}..{}); \
                 keyed state may only be used for the key being processed",
                String::from_utf8_lossy(key),
                self.key_groups.start,
                self.key_groups.end
            )));
        }
        let ttl = descriptor.ttl_ms;
        self.scratch.clear();
        self.scratch
            .extend_from_slice(&(key_group as u16).to_be_bytes());
        self.scratch
            .extend_from_slice(&(state as u16).to_be_bytes());
        self.scratch
            .extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.scratch.extend_from_slice(key);
        Ok(ttl)
    }

    fn read_live(&mut self, ttl: Option<u64>, now_ms: i64) -> Result<Option<Vec<u8>>, StateError> {
        let Some(stored) = self.backend.get(&self.scratch)? else {
            return Ok(None);
        };
        if ttl.is_none() {
            return Ok(Some(stored));
        }
        let header = stored
            .get(..TTL_HEADER_LEN)
            .ok_or_else(|| StateError::Corrupt("TTL state value shorter than its header".into()))?;
        let expires_at = i64::from_le_bytes(header.try_into().expect("8 bytes"));
        if now_ms >= expires_at {
            self.backend.delete(&self.scratch)?;
            return Ok(None);
        }
        Ok(Some(stored[TTL_HEADER_LEN..].to_vec()))
    }

    fn write_live(
        &mut self,
        ttl: Option<u64>,
        value: &[u8],
        now_ms: i64,
    ) -> Result<(), StateError> {
        match ttl {
            None => self.backend.put(&self.scratch, value),
            Some(ttl) => {
                let expires_at = now_ms.saturating_add(ttl.min(i64::MAX as u64) as i64);
                let mut stored = Vec::with_capacity(TTL_HEADER_LEN + value.len());
                stored.extend_from_slice(&expires_at.to_le_bytes());
                stored.extend_from_slice(value);
                self.backend.put(&self.scratch, &stored)
            }
        }
    }

    pub fn value_get(
        &mut self,
        state: u32,
        key: &[u8],
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let ttl = self.prefix(state, StateKind::Value, key)?;
        self.read_live(ttl, now_ms)
    }

    pub fn value_set(
        &mut self,
        state: u32,
        key: &[u8],
        value: &[u8],
        now_ms: i64,
    ) -> Result<(), StateError> {
        let ttl = self.prefix(state, StateKind::Value, key)?;
        self.write_live(ttl, value, now_ms)
    }

    pub fn list_append(&mut self, state: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.prefix(state, StateKind::List, key)?;
        let mut element = Vec::with_capacity(4 + value.len());
        encode_list_element(value, &mut element);
        self.backend.append(&self.scratch, &element)
    }

    /// The list's elements, or [`StateError::ReadOverLimit`] as soon as they
    /// would cost the guest more than `read_max_bytes` (8 bytes per element
    /// plus its bytes), before they are copied.
    pub fn list_get(
        &mut self,
        state: u32,
        key: &[u8],
        read_max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StateError> {
        self.prefix(state, StateKind::List, key)?;
        let mut list = Ok(Vec::new());
        self.backend.get_with(&self.scratch, &mut |bytes| {
            list = decode_list(bytes, read_max_bytes);
        })?;
        list
    }

    pub fn map_get(
        &mut self,
        state: u32,
        key: &[u8],
        map_key: &[u8],
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let ttl = self.prefix(state, StateKind::Map, key)?;
        self.scratch.extend_from_slice(map_key);
        self.read_live(ttl, now_ms)
    }

    pub fn map_put(
        &mut self,
        state: u32,
        key: &[u8],
        map_key: &[u8],
        value: &[u8],
        now_ms: i64,
    ) -> Result<(), StateError> {
        let ttl = self.prefix(state, StateKind::Map, key)?;
        self.scratch.extend_from_slice(map_key);
        self.write_live(ttl, value, now_ms)
    }

    pub fn map_remove(&mut self, state: u32, key: &[u8], map_key: &[u8]) -> Result<(), StateError> {
        self.prefix(state, StateKind::Map, key)?;
        self.scratch.extend_from_slice(map_key);
        self.backend.delete(&self.scratch)
    }

    /// Live entries of a map, ordered by map key bytes, or
    /// [`StateError::ReadOverLimit`] as soon as they would cost the guest
    /// more than `read_max_bytes` (see [`MAP_ENTRY_READ_OVERHEAD`]): the
    /// scan stops there, before copying more.
    pub fn map_entries(
        &mut self,
        state: u32,
        key: &[u8],
        now_ms: i64,
        read_max_bytes: usize,
    ) -> Result<MapEntries, StateError> {
        let ttl = self.prefix(state, StateKind::Map, key)?;
        let prefix_len = self.scratch.len();
        let mut entries = Vec::new();
        let mut read = MAP_ENTRIES_READ_HEADER;
        let mut corrupt = false;
        let mut over = false;
        self.backend.scan_prefix_while(&self.scratch, &mut |k, v| {
            let v = match ttl {
                None => v,
                Some(_) if v.len() < TTL_HEADER_LEN => {
                    corrupt = true;
                    return false;
                }
                Some(_) => {
                    let expires_at =
                        i64::from_le_bytes(v[..TTL_HEADER_LEN].try_into().expect("8 bytes"));
                    if now_ms >= expires_at {
                        return true;
                    }
                    &v[TTL_HEADER_LEN..]
                }
            };
            let map_key = &k[prefix_len..];
            read = read.saturating_add(MAP_ENTRY_READ_OVERHEAD + map_key.len() + v.len());
            if read > read_max_bytes {
                over = true;
                return false;
            }
            entries.push((map_key.to_vec(), v.to_vec()));
            true
        })?;
        if corrupt {
            return Err(StateError::Corrupt(
                "TTL map value shorter than its header".into(),
            ));
        }
        if over {
            return Err(StateError::ReadOverLimit {
                what: "a map's entries",
                max_bytes: read_max_bytes,
            });
        }
        Ok(entries)
    }

    /// Removes a state of any kind for `key`.
    pub fn clear(&mut self, state: u32, key: &[u8]) -> Result<(), StateError> {
        let kind = self
            .states
            .get(state as usize)
            .map(|s| s.kind)
            .ok_or_else(|| {
                StateError::Usage(format!("state index {state} was not declared in open"))
            })?;
        self.prefix(state, kind, key)?;
        match kind {
            StateKind::Map => self.backend.delete_prefix(&self.scratch),
            StateKind::Value | StateKind::List => self.backend.delete(&self.scratch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::{MemoryBackend, RocksDbBackend};

    fn descriptors() -> Vec<StateDescriptor> {
        vec![
            StateDescriptor {
                name: "count".into(),
                kind: StateKind::Value,
                ttl_ms: None,
            },
            StateDescriptor {
                name: "events".into(),
                kind: StateKind::List,
                ttl_ms: None,
            },
            StateDescriptor {
                name: "windows".into(),
                kind: StateKind::Map,
                ttl_ms: None,
            },
            StateDescriptor {
                name: "session".into(),
                kind: StateKind::Value,
                ttl_ms: Some(100),
            },
            StateDescriptor {
                name: "seen".into(),
                kind: StateKind::Map,
                ttl_ms: Some(100),
            },
        ]
    }

    fn all_groups() -> KeyGroupRange {
        KeyGroupRange { start: 0, end: 128 }
    }

    /// The same behaviour, whichever backend is underneath.
    fn exercise(backend: Box<dyn StateBackend>) {
        let mut store = KeyedStateStore::new(backend, 128, all_groups());
        store.declare(descriptors()).unwrap();

        assert_eq!(store.value_get(0, b"a", 0).unwrap(), None);
        store.value_set(0, b"a", b"1", 0).unwrap();
        store.value_set(0, b"ab", b"2", 0).unwrap();
        assert_eq!(store.value_get(0, b"a", 0).unwrap(), Some(b"1".to_vec()));
        store.clear(0, b"a").unwrap();
        assert_eq!(store.value_get(0, b"a", 0).unwrap(), None);
        assert_eq!(store.value_get(0, b"ab", 0).unwrap(), Some(b"2".to_vec()));

        store.list_append(1, b"a", b"x").unwrap();
        store.list_append(1, b"a", b"").unwrap();
        store.list_append(1, b"a", b"yz").unwrap();
        assert_eq!(
            store.list_get(1, b"a", usize::MAX).unwrap(),
            vec![b"x".to_vec(), vec![], b"yz".to_vec()]
        );
        assert!(store.list_get(1, b"b", usize::MAX).unwrap().is_empty());

        store.map_put(2, b"a", b"2", b"two", 0).unwrap();
        store.map_put(2, b"a", b"1", b"one", 0).unwrap();
        // A key that extends "a" must not leak into a's entries.
        store.map_put(2, b"a\0", b"9", b"other", 0).unwrap();
        assert_eq!(
            store.map_get(2, b"a", b"1", 0).unwrap(),
            Some(b"one".to_vec())
        );
        assert_eq!(
            store.map_entries(2, b"a", 0, usize::MAX).unwrap(),
            vec![
                (b"1".to_vec(), b"one".to_vec()),
                (b"2".to_vec(), b"two".to_vec())
            ]
        );
        store.map_remove(2, b"a", b"1").unwrap();
        assert_eq!(store.map_entries(2, b"a", 0, usize::MAX).unwrap().len(), 1);
        store.clear(2, b"a").unwrap();
        assert!(
            store
                .map_entries(2, b"a", 0, usize::MAX)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.map_entries(2, b"a\0", 0, usize::MAX).unwrap().len(),
            1
        );

        store.value_set(3, b"k", b"v", 1000).unwrap();
        assert_eq!(store.value_get(3, b"k", 1099).unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            store.value_get(3, b"k", 1100).unwrap(),
            None,
            "expired at write time + ttl"
        );
        store.map_put(4, b"k", b"m", b"v", 1000).unwrap();
        assert_eq!(
            store.map_entries(4, b"k", 1050, usize::MAX).unwrap().len(),
            1
        );
        assert!(
            store
                .map_entries(4, b"k", 1100, usize::MAX)
                .unwrap()
                .is_empty()
        );
    }

    /// A backend that counts the entries a scan visits.
    struct Counting<B> {
        inner: B,
        visited: Arc<AtomicUsize>,
    }

    impl<B: StateBackend> StateBackend for Counting<B> {
        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            self.inner.get(key)
        }
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
            self.inner.delete(key)
        }
        fn append(&mut self, key: &[u8], element: &[u8]) -> Result<(), StateError> {
            self.inner.append(key, element)
        }
        fn scan_prefix(
            &mut self,
            prefix: &[u8],
            visit: &mut dyn FnMut(&[u8], &[u8]),
        ) -> Result<(), StateError> {
            self.inner.scan_prefix(prefix, visit)
        }
        fn scan_prefix_while(
            &mut self,
            prefix: &[u8],
            visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<(), StateError> {
            let visited = &self.visited;
            self.inner.scan_prefix_while(prefix, &mut |k, v| {
                visited.fetch_add(1, Ordering::Relaxed);
                visit(k, v)
            })
        }
        fn index_states(&mut self, indexed: &[bool]) {
            self.inner.index_states(indexed)
        }
        fn delete_prefix(&mut self, prefix: &[u8]) -> Result<(), StateError> {
            self.inner.delete_prefix(prefix)
        }
    }

    /// Reads over their budget fail, and a map scan stops at the entry that
    /// passes it.
    fn reads_stop_at_their_budget(backend: impl StateBackend + 'static) {
        let visited = Arc::new(AtomicUsize::new(0));
        let backend = Counting {
            inner: backend,
            visited: visited.clone(),
        };
        let mut store = KeyedStateStore::new(Box::new(backend), 128, all_groups());
        store.declare(descriptors()).unwrap();
        for i in 0..100u8 {
            store.list_append(1, b"k", &[i; 1000]).unwrap();
            store.map_put(2, b"k", &[i], &[i; 1000], 0).unwrap();
        }
        // Stored: 100 x (4 + 1000) bytes; received: 100 x (8 + 1000).
        assert_eq!(store.list_get(1, b"k", 100_800).unwrap().len(), 100);
        let err = store.list_get(1, b"k", 100_799).unwrap_err();
        assert!(matches!(
            err,
            StateError::ReadOverLimit { what: "a list", .. }
        ));
        let err = store.list_get(1, b"k", 10_000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reading a list in one call would return more than the limit of 10000 bytes \
             (state_read_max_mb); raise `state_read_max_mb` in the job file"
        );
        // Received: 4 + 100 x (8 + 1 + 1000).
        assert_eq!(store.map_entries(2, b"k", 0, 100_904).unwrap().len(), 100);
        visited.store(0, Ordering::Relaxed);
        let err = store.map_entries(2, b"k", 0, 10 * 1009).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reading a map's entries in one call")
        );
        assert_eq!(
            visited.load(Ordering::Relaxed),
            10,
            "the scan went on past the budget"
        );
    }

    #[test]
    fn reads_stop_at_their_budget_in_memory() {
        reads_stop_at_their_budget(MemoryBackend::new());
    }

    #[test]
    fn reads_stop_at_their_budget_in_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        reads_stop_at_their_budget(RocksDbBackend::open(dir.path()).unwrap());
    }

    #[test]
    fn the_memory_bound_fails_writes_through_the_store() {
        let mut store = KeyedStateStore::new(Box::new(MemoryBackend::new()), 128, all_groups());
        store.declare(descriptors()).unwrap();
        store.set_memory_max_bytes(1 << 20);
        let err = (0..100)
            .find_map(|_| store.list_append(1, b"k", &[0; 100 << 10]).err())
            .expect("refused before 10 MiB");
        assert!(err.is_over_limit());
        assert!(
            err.to_string().starts_with("keyed state would hold 1."),
            "{err}"
        );
        // Clearing makes room.
        store.clear(1, b"k").unwrap();
        store.list_append(1, b"k", &[0; 100 << 10]).unwrap();
    }

    #[test]
    fn memory_backend_semantics() {
        exercise(Box::new(MemoryBackend::new()));
    }

    #[test]
    fn rocksdb_backend_semantics() {
        let dir = tempfile::tempdir().unwrap();
        exercise(Box::new(RocksDbBackend::open(dir.path()).unwrap()));
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let mut store = KeyedStateStore::new(Box::new(MemoryBackend::new()), 128, all_groups());
        store.declare(descriptors()).unwrap();
        assert!(
            store
                .value_get(9, b"a", 0)
                .unwrap_err()
                .to_string()
                .contains("not declared")
        );
        assert!(
            store
                .list_get(0, b"a", usize::MAX)
                .unwrap_err()
                .to_string()
                .contains("`count` is Value state")
        );
        let mut dup = descriptors();
        dup.push(dup[0].clone());
        assert!(
            store
                .declare(dup)
                .unwrap_err()
                .to_string()
                .contains("declared twice")
        );
    }

    #[test]
    fn keys_outside_the_subtask_key_groups_are_refused() {
        let key = b"somebody-elses";
        let group = key_group_of(key, 128);
        let mine = if group == 0 {
            KeyGroupRange { start: 1, end: 128 }
        } else {
            KeyGroupRange {
                start: 0,
                end: group,
            }
        };
        let mut store = KeyedStateStore::new(Box::new(MemoryBackend::new()), 128, mine);
        store.declare(descriptors()).unwrap();
        let err = store.value_set(0, key, b"v", 0).unwrap_err();
        assert!(err.to_string().contains("does not own"), "{err}");
    }
}
