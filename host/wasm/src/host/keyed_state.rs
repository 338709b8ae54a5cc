//! `weir:operator/keyed-state`: value, list and map state per key.

use weir_state::StateError;

use super::GuestState;
use crate::bindings::weir::operator::keyed_state::Host;

impl GuestState {
    fn state_error(&self, e: StateError) -> wasmtime::Error {
        wasmtime::format_err!("operator `{}`: keyed state: {e}", self.label)
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
        self.with_state(|s, now| s.value_get(state, &key, now))
    }

    fn value_set(&mut self, state: u32, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.with_state(|s, now| s.value_set(state, &key, &value, now))
    }

    fn list_append(&mut self, state: u32, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.with_state(|s, _| s.list_append(state, &key, &value))
    }

    fn list_get(&mut self, state: u32, key: Vec<u8>) -> wasmtime::Result<Vec<Vec<u8>>> {
        self.with_state(|s, _| s.list_get(state, &key))
    }

    fn map_get(
        &mut self,
        state: u32,
        key: Vec<u8>,
        map_key: Vec<u8>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        self.with_state(|s, now| s.map_get(state, &key, &map_key, now))
    }

    fn map_put(
        &mut self,
        state: u32,
        key: Vec<u8>,
        map_key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.with_state(|s, now| s.map_put(state, &key, &map_key, &value, now))
    }

    fn map_remove(&mut self, state: u32, key: Vec<u8>, map_key: Vec<u8>) -> wasmtime::Result<()> {
        self.with_state(|s, _| s.map_remove(state, &key, &map_key))
    }

    fn map_entries(&mut self, state: u32, key: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        let entries = self.with_state(|s, now| s.map_entries(state, &key, now))?;
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
        self.with_state(|s, _| s.clear(state, &key))
    }
}
