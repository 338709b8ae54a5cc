//! weir-state: host-managed keyed state.
//!
//! A [`StateBackend`] is an ordered byte map with list appends (in memory or
//! RocksDB). [`KeyedStateStore`] lays an operator's declared value, list and
//! map states over it, keyed by (key group, state, key), with TTL. The
//! memory backend bounds what it holds, RocksDB the lists it merges in
//! memory, and list and map reads stop at a byte budget. A new version of
//! an operator's code keeps its state by name ([`plan_redeclare`],
//! [`KeyedStateStore::redeclare`]). This crate knows nothing of Wasm or
//! threads; snapshot files are weir-snapshot's job.

mod backend;
mod keyed;
mod memory;
mod redeclare;
mod rocks;

pub use backend::{StateBackend, StateError};
pub use keyed::{KeyedStateStore, STORAGE_KEY_HEADER, StateDescriptor, StateKind};
pub use memory::MemoryBackend;
pub use redeclare::{Redeclaration, plan_redeclare};
pub use rocks::RocksDbBackend;
