//! Keeping keyed state across a new version of an operator's code.
//!
//! Stored entries name their state by its index in the list `open`
//! declared, so a new version that declares its states in another order
//! would read another state's bytes. [`plan_redeclare`] matches the old and
//! new declarations by name and refuses what cannot be kept;
//! [`renumber`] then moves stored entries to their new indices (only when
//! some index changed or a state is dropped: the common case costs no IO).

use weir_core::KeyGroupRange;

use crate::backend::{StateBackend, StateError};
use crate::keyed::{StateDescriptor, validate_declaration};

/// How an old declaration maps onto a new one: per old state (by index),
/// its index in the new list, or `None` when it is dropped. States only in
/// the new list start empty and need nothing here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeclaration {
    new_of_old: Vec<Option<u16>>,
}

impl Redeclaration {
    /// The new index of old state `old_index`; `None` if it is dropped (or
    /// was not declared).
    pub fn new_index(&self, old_index: usize) -> Option<usize> {
        self.new_of_old
            .get(old_index)
            .copied()
            .flatten()
            .map(usize::from)
    }

    /// How many states the old declaration had.
    pub fn old_len(&self) -> usize {
        self.new_of_old.len()
    }

    /// Old indices of the states the new declaration drops.
    pub fn dropped(&self) -> impl Iterator<Item = usize> + '_ {
        self.new_of_old
            .iter()
            .enumerate()
            .filter(|(_, new)| new.is_none())
            .map(|(old, _)| old)
    }

    /// Every old state keeps its index and none is dropped: stored entries
    /// stay as they are.
    pub fn is_in_place(&self) -> bool {
        self.new_of_old
            .iter()
            .enumerate()
            .all(|(old, new)| *new == Some(old as u16))
    }
}

/// Matches `old` and `new` by name. Refuses (naming the state) a state
/// whose kind changed, one that gained or lost a TTL (stored values carry
/// an 8-byte expiry header exactly when the state has a TTL; a changed
/// duration is fine), and one that `new` lacks unless
/// `allow_dropping_state`. `new` is checked as `declare` checks it.
pub fn plan_redeclare(
    old: &[StateDescriptor],
    new: &[StateDescriptor],
    allow_dropping_state: bool,
) -> Result<Redeclaration, StateError> {
    validate_declaration(new)?;
    let mut new_of_old = Vec::with_capacity(old.len());
    for was in old {
        let Some(index) = new.iter().position(|s| s.name == was.name) else {
            if !allow_dropping_state {
                return Err(StateError::Usage(format!(
                    "state `{}` is not declared by the new version, so its stored values \
                     would be lost; pass --allow-dropping-state to drop it",
                    was.name
                )));
            }
            new_of_old.push(None);
            continue;
        };
        let now = &new[index];
        if now.kind != was.kind {
            return Err(StateError::Usage(format!(
                "state `{}` was {:?} state and is now declared as {:?} state; a state's kind \
                 cannot change (declare the new state under another name)",
                was.name, was.kind, now.kind
            )));
        }
        match (was.ttl_ms, now.ttl_ms) {
            (None, Some(ttl)) => {
                return Err(StateError::Usage(format!(
                    "state `{}` had no TTL and is now declared with a TTL of {ttl} ms; a TTL \
                     cannot be added to a stored state (declare the new state under another name)",
                    was.name
                )));
            }
            (Some(ttl), None) => {
                return Err(StateError::Usage(format!(
                    "state `{}` had a TTL of {ttl} ms and is now declared without one; a TTL \
                     cannot be removed from a stored state (declare the new state under another name)",
                    was.name
                )));
            }
            _ => {}
        }
        // `validate_declaration` bounds `new` to u16::MAX states.
        let index = u16::try_from(index).map_err(|_| {
            StateError::Usage(format!("state `{}` has index {index}, over u16", now.name))
        })?;
        new_of_old.push(Some(index));
    }
    Ok(Redeclaration { new_of_old })
}

/// `key_group | state`, the prefix of every entry of one state in one key
/// group (see the storage key in `keyed.rs`).
fn state_prefix(key_group: u32, state: usize) -> [u8; 4] {
    let mut prefix = [0u8; 4];
    prefix[..2].copy_from_slice(&(key_group as u16).to_be_bytes());
    prefix[2..].copy_from_slice(&(state as u16).to_be_bytes());
    prefix
}

/// Moves the stored entries of `key_groups` to the indices `plan` gives and
/// deletes those of dropped states. One key group at a time, so what is held
/// in memory is one key group's moving entries: they are all read first,
/// then the old entries deleted, then the moved ones written, so a
/// permutation (a <-> b) cannot overwrite entries not yet moved.
pub(crate) fn renumber(
    backend: &mut dyn StateBackend,
    key_groups: KeyGroupRange,
    plan: &Redeclaration,
) -> Result<(), StateError> {
    let mut moved: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for key_group in key_groups.start..key_groups.end {
        moved.clear();
        let mut emptied = Vec::new();
        for old in 0..plan.old_len() {
            let prefix = state_prefix(key_group, old);
            match plan.new_index(old) {
                Some(new) if new == old => {}
                Some(new) => {
                    let to = state_prefix(key_group, new);
                    backend.scan_prefix(&prefix, &mut |k, v| {
                        let mut key = k.to_vec();
                        key[..to.len()].copy_from_slice(&to);
                        moved.push((key, v.to_vec()));
                    })?;
                    emptied.push(prefix);
                }
                None => emptied.push(prefix),
            }
        }
        // A kept state that does not move owns its index alone, so no
        // prefix deleted here holds entries that stay.
        for prefix in &emptied {
            backend.delete_prefix(prefix)?;
        }
        for (key, value) in &moved {
            backend.put(key, value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{KeyedStateStore, MemoryBackend, RocksDbBackend, StateKind};

    fn state(name: &str, kind: StateKind, ttl_ms: Option<u64>) -> StateDescriptor {
        StateDescriptor {
            name: name.into(),
            kind,
            ttl_ms,
        }
    }

    fn v1() -> Vec<StateDescriptor> {
        vec![
            state("count", StateKind::Value, None),
            state("events", StateKind::List, None),
            state("windows", StateKind::Map, None),
            state("session", StateKind::Value, Some(100)),
        ]
    }

    /// A backend that counts every call into it.
    struct Counting {
        inner: Box<dyn StateBackend>,
        calls: Arc<AtomicUsize>,
    }

    impl Counting {
        fn tick(&self) {
            self.calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl StateBackend for Counting {
        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            self.tick();
            self.inner.get(key)
        }
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
            self.tick();
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
            self.tick();
            self.inner.delete(key)
        }
        fn append(&mut self, key: &[u8], element: &[u8]) -> Result<(), StateError> {
            self.tick();
            self.inner.append(key, element)
        }
        fn scan_prefix_while(
            &mut self,
            prefix: &[u8],
            visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<(), StateError> {
            self.tick();
            self.inner.scan_prefix_while(prefix, visit)
        }
        fn index_states(&mut self, indexed: &[bool]) {
            self.inner.index_states(indexed)
        }
        fn delete_prefix(&mut self, prefix: &[u8]) -> Result<(), StateError> {
            self.tick();
            self.inner.delete_prefix(prefix)
        }
    }

    const KEYS: [&[u8]; 3] = [b"alice", b"bob", b"carol"];

    /// A store over `backend` declared with [`v1`], holding a value, a list
    /// element, two map entries and a TTL value per key in [`KEYS`];
    /// the counter counts backend calls.
    fn filled(backend: Box<dyn StateBackend>) -> (KeyedStateStore, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let backend = Counting {
            inner: backend,
            calls: calls.clone(),
        };
        let mut store =
            KeyedStateStore::new(Box::new(backend), 128, KeyGroupRange { start: 0, end: 128 });
        store.declare(v1()).unwrap();
        for key in KEYS {
            store.value_set(0, key, &[b"n-", key].concat(), 0).unwrap();
            store.list_append(1, key, &[b"e-", key].concat()).unwrap();
            store.map_put(2, key, b"w1", b"one", 0).unwrap();
            store
                .map_put(2, key, b"w2", &[b"two-", key].concat(), 0)
                .unwrap();
            store.value_set(3, key, &[b"s-", key].concat(), 0).unwrap();
        }
        (store, calls)
    }

    fn index(store: &KeyedStateStore, name: &str) -> u32 {
        store
            .descriptors()
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("`{name}` not declared")) as u32
    }

    /// What [`filled`] wrote, read through the store by state name.
    fn assert_readable_by_name(store: &mut KeyedStateStore, with_count: bool) {
        for key in KEYS {
            let count = store.descriptors().iter().position(|s| s.name == "count");
            match count {
                Some(i) if with_count => assert_eq!(
                    store.value_get(i as u32, key, 0).unwrap(),
                    Some([b"n-", key].concat())
                ),
                Some(_) => panic!("`count` still declared"),
                None => assert!(!with_count, "`count` lost"),
            }
            let events = index(store, "events");
            assert_eq!(
                store.list_get(events, key, usize::MAX).unwrap(),
                vec![[b"e-", key].concat()]
            );
            let windows = index(store, "windows");
            assert_eq!(
                store.map_entries(windows, key, 0, usize::MAX).unwrap(),
                vec![
                    (b"w1".to_vec(), b"one".to_vec()),
                    (b"w2".to_vec(), [b"two-", key].concat())
                ]
            );
            let session = index(store, "session");
            assert_eq!(
                store.value_get(session, key, 50).unwrap(),
                Some([b"s-", key].concat())
            );
        }
    }

    /// Every entry in the backend, to check what a refused plan left.
    fn entries(store: &mut KeyedStateStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all = Vec::new();
        store
            .backend_mut()
            .scan_prefix(&[], &mut |k, v| all.push((k.to_vec(), v.to_vec())))
            .unwrap();
        all
    }

    fn same_order_costs_no_io(backend: Box<dyn StateBackend>) {
        let (mut store, calls) = filled(backend);
        let mut next = v1();
        // A changed TTL duration and an appended state keep every index.
        next[3].ttl_ms = Some(500);
        next.push(state("fresh", StateKind::Map, None));
        calls.store(0, Ordering::Relaxed);
        store.redeclare(next.clone(), false).unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 0, "the in-place path did IO");
        assert_eq!(store.descriptors(), next.as_slice());
        assert_readable_by_name(&mut store, true);
        assert!(
            store
                .map_entries(4, b"alice", 0, usize::MAX)
                .unwrap()
                .is_empty()
        );
    }

    fn reorder_and_new_state(backend: Box<dyn StateBackend>) {
        let (mut store, _) = filled(backend);
        let old_entries = entries(&mut store).len();
        // A permutation (windows <-> count), a move, and a new state first.
        let next = vec![
            state("fresh", StateKind::Value, None),
            state("windows", StateKind::Map, None),
            state("session", StateKind::Value, Some(100)),
            state("count", StateKind::Value, None),
            state("events", StateKind::List, None),
        ];
        store.redeclare(next.clone(), false).unwrap();
        assert_eq!(store.descriptors(), next.as_slice());
        assert_readable_by_name(&mut store, true);
        assert_eq!(
            entries(&mut store).len(),
            old_entries,
            "entries lost or doubled"
        );
        for key in KEYS {
            assert_eq!(
                store.value_get(0, key, 0).unwrap(),
                None,
                "new state not empty"
            );
        }
        // Writes after the swap land where reads look.
        store.value_set(3, b"alice", b"after", 0).unwrap();
        assert_eq!(
            store.value_get(3, b"alice", 0).unwrap(),
            Some(b"after".to_vec())
        );
    }

    fn drops(backend: Box<dyn StateBackend>) {
        let (mut store, _) = filled(backend);
        let before = entries(&mut store);
        let next: Vec<_> = v1().into_iter().skip(1).collect();
        let err = store.redeclare(next.clone(), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "state `count` is not declared by the new version, so its stored values would be \
             lost; pass --allow-dropping-state to drop it"
        );
        assert_eq!(store.descriptors(), v1().as_slice(), "refused, yet changed");
        assert_eq!(entries(&mut store), before, "refused, yet entries changed");

        // Allowed: `count` goes (its index 0 is taken over by `events`).
        store.redeclare(next.clone(), true).unwrap();
        assert_eq!(store.descriptors(), next.as_slice());
        assert_readable_by_name(&mut store, false);
        assert_eq!(entries(&mut store).len(), before.len() - KEYS.len());
    }

    fn refusals_leave_the_store_unchanged(backend: Box<dyn StateBackend>) {
        let (mut store, calls) = filled(backend);
        let before = entries(&mut store);
        let mut kind = v1();
        kind.swap(0, 1);
        kind[0].kind = StateKind::Map;
        let mut gained = v1();
        gained.swap(0, 2);
        gained[0].ttl_ms = Some(10);
        let mut lost = v1();
        lost.swap(1, 3);
        lost[1].ttl_ms = None;
        let mut dup = v1();
        dup.push(dup[0].clone());
        let cases = [
            (
                kind,
                "state `events` was List state and is now declared as Map state; a state's \
                 kind cannot change (declare the new state under another name)",
            ),
            (
                gained,
                "state `windows` had no TTL and is now declared with a TTL of 10 ms; a TTL \
                 cannot be added to a stored state (declare the new state under another name)",
            ),
            (
                lost,
                "state `session` had a TTL of 100 ms and is now declared without one; a TTL \
                 cannot be removed from a stored state (declare the new state under another name)",
            ),
            (dup, "state `count` is declared twice"),
        ];
        for (next, message) in cases {
            calls.store(0, Ordering::Relaxed);
            let err = store.redeclare(next, true).unwrap_err();
            assert_eq!(err.to_string(), message);
            assert_eq!(calls.load(Ordering::Relaxed), 0, "a refused plan did IO");
            assert_eq!(store.descriptors(), v1().as_slice());
        }
        assert_eq!(entries(&mut store), before);
        assert_readable_by_name(&mut store, true);
    }

    /// Only this subtask's key groups are moved: another subtask's entries
    /// in the same backend (before a rescale cleaned up) are left alone.
    #[test]
    fn only_owned_key_groups_are_renumbered() {
        let mut backend = MemoryBackend::new();
        backend
            .put(&[0, 5, 0, 0, 0, 0, 0, 1, b'x'], b"mine")
            .unwrap();
        backend
            .put(&[0, 200, 0, 0, 0, 0, 0, 1, b'y'], b"theirs")
            .unwrap();
        let plan = plan_redeclare(&v1()[..2], &[v1()[1].clone(), v1()[0].clone()], false).unwrap();
        assert!(!plan.is_in_place());
        renumber(&mut backend, KeyGroupRange { start: 0, end: 128 }, &plan).unwrap();
        assert_eq!(
            backend.get(&[0, 5, 0, 1, 0, 0, 0, 1, b'x']).unwrap(),
            Some(b"mine".to_vec())
        );
        assert_eq!(backend.get(&[0, 5, 0, 0, 0, 0, 0, 1, b'x']).unwrap(), None);
        assert_eq!(
            backend.get(&[0, 200, 0, 0, 0, 0, 0, 1, b'y']).unwrap(),
            Some(b"theirs".to_vec())
        );
    }

    #[test]
    fn plans_match_by_name() {
        let next = vec![v1()[2].clone(), v1()[0].clone()];
        let plan = plan_redeclare(&v1(), &next, true).unwrap();
        assert_eq!(plan.new_index(0), Some(1));
        assert_eq!(plan.new_index(1), None);
        assert_eq!(plan.new_index(2), Some(0));
        assert_eq!(plan.dropped().collect::<Vec<_>>(), vec![1, 3]);
        assert!(!plan.is_in_place());
        assert!(plan_redeclare(&v1(), &v1(), false).unwrap().is_in_place());
        assert!(plan_redeclare(&[], &v1(), false).unwrap().is_in_place());
    }

    fn memory() -> Box<dyn StateBackend> {
        Box::new(MemoryBackend::new())
    }

    /// RocksDB in a temporary directory, kept alive by the returned guard.
    fn rocks() -> (Box<dyn StateBackend>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksDbBackend::open(dir.path()).unwrap();
        (Box::new(db), dir)
    }

    #[test]
    fn same_order_costs_no_io_in_memory() {
        same_order_costs_no_io(memory());
    }

    #[test]
    fn same_order_costs_no_io_in_rocksdb() {
        let (db, _dir) = rocks();
        same_order_costs_no_io(db);
    }

    #[test]
    fn reorder_and_new_state_in_memory() {
        reorder_and_new_state(memory());
    }

    #[test]
    fn reorder_and_new_state_in_rocksdb() {
        let (db, _dir) = rocks();
        reorder_and_new_state(db);
    }

    #[test]
    fn drops_in_memory() {
        drops(memory());
    }

    #[test]
    fn drops_in_rocksdb() {
        let (db, _dir) = rocks();
        drops(db);
    }

    #[test]
    fn refusals_leave_the_store_unchanged_in_memory() {
        refusals_leave_the_store_unchanged(memory());
    }

    #[test]
    fn refusals_leave_the_store_unchanged_in_rocksdb() {
        let (db, _dir) = rocks();
        refusals_leave_the_store_unchanged(db);
    }
}
