//! Value, list and map state per key, laid over a [`StateBackend`].
//!
//! Storage key: `key_group:u16 BE | state:u16 BE | key_len:u32 BE | key [| map_key]`
//! (see [`STORAGE_KEY_HEADER`]).
//! Key group first, so a subtask's key-group range is one contiguous scan
//! (what rescaling moves); the key length makes every key's prefix unique,
//! so a map's entries are exactly the entries under its prefix.

use weir_core::{KeyGroupRange, key_group_of};

use crate::backend::{StateBackend, StateError, decode_list, encode_list_element};

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
        self.states = states;
        Ok(())
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

    pub fn list_get(&mut self, state: u32, key: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
        self.prefix(state, StateKind::List, key)?;
        match self.backend.get(&self.scratch)? {
            Some(bytes) => decode_list(&bytes),
            None => Ok(Vec::new()),
        }
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

    /// Live entries of a map, ordered by map key bytes.
    pub fn map_entries(
        &mut self,
        state: u32,
        key: &[u8],
        now_ms: i64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        let ttl = self.prefix(state, StateKind::Map, key)?;
        let prefix_len = self.scratch.len();
        let mut entries = Vec::new();
        let mut corrupt = false;
        self.backend.scan_prefix(&self.scratch, &mut |k, v| {
            let map_key = k[prefix_len..].to_vec();
            match ttl {
                None => entries.push((map_key, v.to_vec())),
                Some(_) if v.len() < TTL_HEADER_LEN => corrupt = true,
                Some(_) => {
                    let expires_at =
                        i64::from_le_bytes(v[..TTL_HEADER_LEN].try_into().expect("8 bytes"));
                    if now_ms < expires_at {
                        entries.push((map_key, v[TTL_HEADER_LEN..].to_vec()));
                    }
                }
            }
        })?;
        if corrupt {
            return Err(StateError::Corrupt(
                "TTL map value shorter than its header".into(),
            ));
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
            store.list_get(1, b"a").unwrap(),
            vec![b"x".to_vec(), vec![], b"yz".to_vec()]
        );
        assert!(store.list_get(1, b"b").unwrap().is_empty());

        store.map_put(2, b"a", b"2", b"two", 0).unwrap();
        store.map_put(2, b"a", b"1", b"one", 0).unwrap();
        // A key that extends "a" must not leak into a's entries.
        store.map_put(2, b"a\0", b"9", b"other", 0).unwrap();
        assert_eq!(
            store.map_get(2, b"a", b"1", 0).unwrap(),
            Some(b"one".to_vec())
        );
        assert_eq!(
            store.map_entries(2, b"a", 0).unwrap(),
            vec![
                (b"1".to_vec(), b"one".to_vec()),
                (b"2".to_vec(), b"two".to_vec())
            ]
        );
        store.map_remove(2, b"a", b"1").unwrap();
        assert_eq!(store.map_entries(2, b"a", 0).unwrap().len(), 1);
        store.clear(2, b"a").unwrap();
        assert!(store.map_entries(2, b"a", 0).unwrap().is_empty());
        assert_eq!(store.map_entries(2, b"a\0", 0).unwrap().len(), 1);

        store.value_set(3, b"k", b"v", 1000).unwrap();
        assert_eq!(store.value_get(3, b"k", 1099).unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            store.value_get(3, b"k", 1100).unwrap(),
            None,
            "expired at write time + ttl"
        );
        store.map_put(4, b"k", b"m", b"v", 1000).unwrap();
        assert_eq!(store.map_entries(4, b"k", 1050).unwrap().len(), 1);
        assert!(store.map_entries(4, b"k", 1100).unwrap().is_empty());
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
                .list_get(0, b"a")
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
