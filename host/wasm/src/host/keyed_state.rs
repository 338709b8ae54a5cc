//! `weir:operator/keyed-state`: value, list and map state per key.
//!
//! Keys and map keys are at most `key_max_bytes`, each value written at
//! most `state_value_max_bytes`, and what one call reads back (a value, a
//! whole list, a map's entries) at most `state_read_max_bytes`: a read that
//! would return more fails the call rather than copy it into the guest (a
//! list or map read stops as soon as it passes the budget). What the
//! subtask holds in the memory backend is bounded by
//! `state_memory_max_bytes`, set on the store when the instance is made.

use weir_state::StateError;

use super::lists::ListReader;
use super::{GuestState, mib};
use crate::bindings::weir::operator::keyed_state::Host;

impl GuestState {
    fn state_error(&mut self, e: StateError) -> wasmtime::Error {
        if e.is_over_limit() {
            // Names the limit and its job-file key; quotes nothing the guest chose.
            return self.over_limit(e.to_string());
        }
        // Store errors quote the key, which the guest chose.
        let e = weir_core::text::cut_message(&e.to_string());
        wasmtime::format_err!("operator `{}`: keyed state: {e}", self.label)
    }

    /// Refuses a value over `state_value_max_bytes`.
    #[inline]
    fn check_value_len(&mut self, value: &[u8]) -> wasmtime::Result<()> {
        if value.len() <= self.limits.state_value_max_bytes {
            return Ok(());
        }
        let max = self.limits.state_value_max_bytes;
        Err(self.over_limit(format!(
            "a state value of {} bytes is over the limit of {} (state_value_max_mb); \
             raise `state_value_max_mb` in the job file",
            value.len(),
            mib(max)
        )))
    }

    /// Refuses a read of `bytes` over `state_read_max_bytes`.
    #[inline]
    fn check_read_len(&mut self, what: &str, bytes: usize) -> wasmtime::Result<()> {
        if bytes <= self.limits.state_read_max_bytes {
            return Ok(());
        }
        let max = self.limits.state_read_max_bytes;
        Err(self.over_limit(format!(
            "reading {what} of {bytes} bytes in one call is over the limit of {} (state_read_max_mb); \
             raise `state_read_max_mb` in the job file",
            mib(max)
        )))
    }

    fn with_state<T>(
        &mut self,
        run: impl FnOnce(&mut weir_state::KeyedStateStore, i64) -> Result<T, StateError>,
    ) -> wasmtime::Result<T> {
        let now = self.processing_time_ms;
        let keyed = self.keyed("keyed state")?;
        let result = run(&mut keyed.state, now);
        result.map_err(|e| self.state_error(e))
    }
}

impl Host for GuestState {
    fn value_get(&mut self, state: u32, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.check_key_len("state key", &key)?;
        let value = self.with_state(|s, now| s.value_get(state, &key, now))?;
        if let Some(v) = &value {
            self.check_read_len("a value", v.len())?;
        }
        Ok(value)
    }

    fn value_set(&mut self, state: u32, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.check_key_len("state key", &key)?;
        self.check_value_len(&value)?;
        self.with_state(|s, now| s.value_set(state, &key, &value, now))
    }

    fn list_append(&mut self, state: u32, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.check_key_len("state key", &key)?;
        self.check_value_len(&value)?;
        self.with_state(|s, _| s.list_append(state, &key, &value))
    }

    fn list_get(&mut self, state: u32, key: Vec<u8>) -> wasmtime::Result<Vec<Vec<u8>>> {
        self.check_key_len("state key", &key)?;
        // The store counts the list as the guest receives it ((pointer,
        // length) pairs plus the elements' bytes) and stops at the budget.
        let max = self.limits.state_read_max_bytes;
        self.with_state(|s, _| s.list_get(state, &key, max))
    }

    fn map_get(
        &mut self,
        state: u32,
        key: Vec<u8>,
        map_key: Vec<u8>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        self.check_key_len("state key", &key)?;
        self.check_key_len("map key", &map_key)?;
        let value = self.with_state(|s, now| s.map_get(state, &key, &map_key, now))?;
        if let Some(v) = &value {
            self.check_read_len("a map value", v.len())?;
        }
        Ok(value)
    }

    fn map_put(
        &mut self,
        state: u32,
        key: Vec<u8>,
        map_key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.check_key_len("state key", &key)?;
        self.check_key_len("map key", &map_key)?;
        self.check_value_len(&value)?;
        self.with_state(|s, now| s.map_put(state, &key, &map_key, &value, now))
    }

    fn map_remove(&mut self, state: u32, key: Vec<u8>, map_key: Vec<u8>) -> wasmtime::Result<()> {
        self.check_key_len("state key", &key)?;
        self.check_key_len("map key", &map_key)?;
        self.with_state(|s, _| s.map_remove(state, &key, &map_key))
    }

    fn map_entries(&mut self, state: u32, key: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        self.check_key_len("state key", &key)?;
        // The store stops at the budget, counting the encoding below.
        let max = self.limits.state_read_max_bytes;
        let entries = self.with_state(|s, now| s.map_entries(state, &key, now, max))?;
        let size = 4 + entries
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (k, v) in &entries {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
        Ok(out)
    }

    fn clear(&mut self, state: u32, key: Vec<u8>) -> wasmtime::Result<()> {
        self.check_key_len("state key", &key)?;
        self.with_state(|s, _| s.clear(state, &key))
    }

    fn value_write_many(&mut self, state: u32, writes: Vec<u8>) -> wasmtime::Result<()> {
        let mut reader = ListReader::new(&writes);
        let count = reader.u32().map_err(|e| self.malformed_writes(e))?;
        for _ in 0..count {
            let (key, value) = reader.value_write().map_err(|e| self.malformed_writes(e))?;
            self.check_key_len("state key", key)?;
            match value {
                Some(value) => {
                    self.check_value_len(value)?;
                    self.with_state(|s, now| s.value_set(state, key, value, now))?;
                }
                None => self.with_state(|s, _| s.clear(state, key))?,
            }
        }
        if !reader.is_done() {
            return Err(self.malformed_writes("bytes after the last entry"));
        }
        Ok(())
    }
}

impl GuestState {
    fn malformed_writes(&self, what: &str) -> wasmtime::Error {
        self.malformed_list("keyed state: value-write-many", what)
    }
}
