//! State on the heap: fastest, bounded by memory, lost with the process
//! unless snapshotted.
//!
//! Point reads and writes go to a hash map (SipHash: keys come from user
//! data); a sorted index of the keys serves prefix scans. A write to an
//! existing key touches only the hash map, which is what keyed operators
//! do most.

use std::collections::{BTreeSet, HashMap};

use crate::backend::{StateBackend, StateError};

#[derive(Debug, Default)]
pub struct MemoryBackend {
    entries: HashMap<Vec<u8>, Vec<u8>>,
    order: BTreeSet<Vec<u8>>,
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

    fn keys_with_prefix<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        self.order
            .range(prefix.to_vec()..)
            .take_while(move |k| k.starts_with(prefix))
    }
}

impl StateBackend for MemoryBackend {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.entries.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        match self.entries.get_mut(key) {
            Some(existing) => {
                existing.clear();
                existing.extend_from_slice(value);
            }
            None => {
                self.entries.insert(key.to_vec(), value.to_vec());
                self.order.insert(key.to_vec());
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        if self.entries.remove(key).is_some() {
            self.order.remove(key);
        }
        Ok(())
    }

    fn append(&mut self, key: &[u8], element: &[u8]) -> Result<(), StateError> {
        match self.entries.get_mut(key) {
            Some(existing) => existing.extend_from_slice(element),
            None => {
                self.entries.insert(key.to_vec(), element.to_vec());
                self.order.insert(key.to_vec());
            }
        }
        Ok(())
    }

    fn scan_prefix(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError> {
        for key in self.keys_with_prefix(prefix) {
            if let Some(value) = self.entries.get(key) {
                visit(key, value);
            }
        }
        Ok(())
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<(), StateError> {
        let doomed: Vec<Vec<u8>> = self.keys_with_prefix(prefix).cloned().collect();
        for key in doomed {
            self.entries.remove(&key);
            self.order.remove(&key);
        }
        Ok(())
    }
}
