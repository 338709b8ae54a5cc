//! weir-wasm: runs user operators as sandboxed WebAssembly components.
//!
//! [`WasmEngine`] compiles components once (in memory and in an on-disk
//! cache of native code) and checks that they target the `weir:operator`
//! world. [`OperatorInstance`] is one live instance: it calls the guest's
//! exports with encoded batches under a deadline, a memory cap and an output
//! cap, and serves the guest's imports (keyed state, timers, log) from
//! [`GuestState`], one host module per WIT interface under `host/`. A new
//! version of the code ([`OperatorInstance::prepare`] -> [`PreparedInstance`])
//! takes over a running instance's host state with [`OperatorInstance::swap`].
//! Every
//! memory, table and host-side structure a guest can grow is bounded by its
//! operator's `GuestLimits` (`limiter` for memories and tables); every
//! message from a guest is cut before it leaves the crate.
//!
//! Guests get no ambient authority: no files, network, environment or
//! arguments; WASI clocks read 0 and WASI randomness is seeded per subtask,
//! so a replay after a failure sees the same values. This crate owns no
//! threads but the epoch ticker, and knows nothing of channels or jobs.

mod bindings;
mod cache;
mod engine;
mod error;
mod host;
mod instance;
mod limiter;

pub use engine::{CompiledOperator, WasmEngine, artifact_digest};
pub use error::GuestError;
pub use host::{GuestState, Keyed};
pub use instance::{OperatorInfo, OperatorInstance, PreparedInstance};
