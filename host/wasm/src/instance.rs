//! One live operator instance and the guarded calls into it.

use std::sync::Arc;

use wasmtime::Store;
use weir_core::Batch;
use weir_state::{StateDescriptor, StateKind};

use crate::bindings::{self, Operator, WitOperatorInfo};
use crate::engine::{CompiledOperator, EPOCH_TICK_MS};
use crate::error::{GuestError, GuestErrorKind};
use crate::host::{GuestState, Keyed};
use crate::limiter::{
    COMPONENT_HANDLES_MAX, INSTANCES_MAX, MEMORIES_MAX, TABLES_MAX, hostcall_bytes_max,
};
use weir_core::text::cut_message;

/// Who an instance is, handed to the guest's `open`.
#[derive(Debug, Clone)]
pub struct OperatorInfo {
    pub name: String,
    pub subtask_index: u32,
    pub parallelism: u32,
    pub config: Vec<(String, String)>,
    pub limits: weir_core::job::GuestLimits,
}

/// A guest instance with its store. A trap poisons it: after any error the
/// instance must be dropped, never called again.
pub struct OperatorInstance {
    store: Store<GuestState>,
    bindings: Operator,
    label: Arc<str>,
    limits: weir_core::job::GuestLimits,
}

impl OperatorInstance {
    /// Instantiates `compiled`, calls its `open`, and declares the states it
    /// returns in `keyed` (when the operator is keyed).
    pub fn open(
        compiled: &CompiledOperator,
        info: &OperatorInfo,
        keyed: Option<Keyed>,
    ) -> Result<OperatorInstance, GuestError> {
        let label: Arc<str> = if info.parallelism > 1 {
            format!("{}[{}]", info.name, info.subtask_index).into()
        } else {
            info.name.clone().into()
        };
        let error = |kind| GuestError {
            operator: label.to_string(),
            kind,
        };
        let seed = seed_for(&info.name, info.subtask_index);
        let declared_keyed = keyed;
        let mut store = Store::new(
            &compiled.engine,
            GuestState::new(label.clone(), None, info.limits, seed),
        );
        store.limiter(|state| &mut state.limiter);
        store.set_max_component_handles(COMPONENT_HANDLES_MAX);
        store.set_hostcall_fuel(hostcall_bytes_max(&info.limits));
        store.set_epoch_deadline(deadline_ticks(info.limits.call_timeout_ms));
        let bindings = compiled
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, "instantiate", info.limits, e, &label))?;
        let mut instance = OperatorInstance {
            store,
            bindings,
            label: label.clone(),
            limits: info.limits,
        };
        let wit_info = WitOperatorInfo {
            name: info.name.clone(),
            subtask_index: info.subtask_index,
            parallelism: info.parallelism,
            config: info.config.clone(),
        };
        instance.arm();
        let declared = instance
            .bindings
            .weir_operator_hooks()
            .call_open(&mut instance.store, &wit_info);
        let declared = instance.finish("open", declared)?.map_err(|message| {
            error(GuestErrorKind::Failed {
                export: "open",
                message: cut_message(&message),
            })
        })?;
        let descriptors: Vec<StateDescriptor> = declared
            .into_iter()
            .map(|d| StateDescriptor {
                name: d.name,
                kind: match d.kind {
                    bindings::StateKind::Value => StateKind::Value,
                    bindings::StateKind::List => StateKind::List,
                    bindings::StateKind::Map => StateKind::Map,
                },
                ttl_ms: d.ttl_ms,
            })
            .collect();
        match declared_keyed {
            Some(mut keyed) => {
                // Attached after `open`, so not bounded by `GuestState::new`;
                // before any restore writes into it (restored state counts).
                keyed
                    .state
                    .set_memory_max_bytes(info.limits.state_memory_max_bytes);
                keyed.state.declare(descriptors).map_err(|e| {
                    error(GuestErrorKind::Failed {
                        export: "open",
                        message: cut_message(&format!("invalid state declaration: {e}")),
                    })
                })?;
                instance.store.data_mut().keyed = Some(keyed);
            }
            None if !descriptors.is_empty() => {
                return Err(error(GuestErrorKind::Failed {
                    export: "open",
                    message: format!(
                        "it declares keyed state (`{}`), but it is not keyed: give it a hash edge (edge = \"hash\")",
                        weir_core::text::cut(&descriptors[0].name, 256)
                    ),
                }));
            }
            None => {}
        }
        Ok(instance)
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Host state: timers, watermark, keyed state.
    pub fn state(&mut self) -> &mut GuestState {
        self.store.data_mut()
    }

    /// Calls `process` with one batch from input number `input`.
    pub fn process(&mut self, input: u32, batch: &Batch) -> Result<Batch, GuestError> {
        self.arm();
        let result = self.bindings.weir_operator_hooks().call_process(
            &mut self.store,
            input,
            batch.as_vec(),
        );
        self.output("process", result)
    }

    /// Calls `on-timers` with timers encoded in the timer batch format.
    pub fn on_timers(&mut self, timers: &[u8]) -> Result<Batch, GuestError> {
        self.arm();
        let result = self
            .bindings
            .weir_operator_hooks()
            .call_on_timers(&mut self.store, timers);
        self.output("on-timers", result)
    }

    fn arm(&mut self) {
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call_timeout_ms));
        self.store.data_mut().last_guest_error = None;
    }

    fn finish<T>(
        &mut self,
        export: &'static str,
        result: wasmtime::Result<T>,
    ) -> Result<T, GuestError> {
        result.map_err(|e| classify(&self.store, export, self.limits, e, &self.label))
    }

    fn output(
        &mut self,
        export: &'static str,
        result: wasmtime::Result<Result<Vec<u8>, String>>,
    ) -> Result<Batch, GuestError> {
        let returned = self.finish(export, result)?;
        let error = |kind| GuestError {
            operator: self.label.to_string(),
            kind,
        };
        let bytes = returned.map_err(|message| {
            error(GuestErrorKind::Failed {
                export,
                message: cut_message(&message),
            })
        })?;
        if bytes.len() > self.limits.output_max_bytes {
            return Err(error(GuestErrorKind::OutputTooLarge {
                export,
                bytes: bytes.len(),
                cap_bytes: self.limits.output_max_bytes,
            }));
        }
        Batch::from_bytes(bytes).map_err(|e| {
            error(GuestErrorKind::BadOutput {
                export,
                message: cut_message(&e.to_string()),
            })
        })
    }
}

fn deadline_ticks(timeout_ms: u64) -> u64 {
    timeout_ms.div_ceil(EPOCH_TICK_MS).max(1)
}

/// Stable per (operator, subtask), so WASI randomness replays identically.
fn seed_for(name: &str, subtask: u32) -> u64 {
    let mut seed = 0xcbf29ce484222325u64;
    for byte in name.bytes().chain(subtask.to_le_bytes()) {
        seed = (seed ^ u64::from(byte)).wrapping_mul(0x100000001b3);
    }
    seed
}

/// Turns a wasmtime error from a call into a message for the operator's author.
fn classify(
    store: &Store<GuestState>,
    export: &'static str,
    limits: weir_core::job::GuestLimits,
    e: wasmtime::Error,
    label: &str,
) -> GuestError {
    let state = store.data();
    let limit = state
        .limit_reached
        .as_ref()
        .or(state.limiter.refused.as_ref());
    let kind = match (e.downcast_ref::<wasmtime::Trap>(), limit) {
        (Some(wasmtime::Trap::Interrupt), _) => GuestErrorKind::Deadline {
            export,
            timeout_ms: limits.call_timeout_ms,
        },
        (_, Some(limit)) => GuestErrorKind::Limit {
            export,
            message: limit.clone(),
        },
        _ => {
            let wasm = cut_message(&format!("{e:#}"));
            // wasmtime's own count limits (memories, tables, instances).
            if wasm.contains("resource limit exceeded") {
                return GuestError {
                    operator: label.to_string(),
                    kind: GuestErrorKind::Limit {
                        export,
                        message: format!(
                            "{wasm} (an operator may have at most {MEMORIES_MAX} memories, \
                             {TABLES_MAX} tables and {INSTANCES_MAX} core instances)"
                        ),
                    },
                };
            }
            let message = match &state.last_guest_error {
                Some(logged) => format!("{logged}\n  (wasm: {wasm})"),
                None => wasm,
            };
            GuestErrorKind::Trap { export, message }
        }
    };
    GuestError {
        operator: label.to_string(),
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WasmEngine;

    fn open_bomb(name: &str) -> GuestError {
        let path = format!(
            "{}/../../tests/guests/bombs/{name}.wat",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = wat::parse_file(&path).unwrap();
        let engine = WasmEngine::new(None).unwrap();
        let compiled = engine.load_bytes(name, &bytes).unwrap();
        let info = OperatorInfo {
            name: "villain".into(),
            subtask_index: 0,
            parallelism: 1,
            config: Vec::new(),
            limits: weir_core::job::GuestLimits::default(),
        };
        OperatorInstance::open(&compiled, &info, None)
            .err()
            .unwrap()
    }

    #[test]
    fn a_multi_memory_bomb_is_refused_with_the_limit() {
        let err = open_bomb("multi_memory").to_string();
        assert_eq!(
            err,
            "operator `villain` was stopped in `instantiate`: guest memory limit of 256 MiB reached \
             (memories and tables together); raise `memory_max_mb` in the job file"
        );
    }

    #[test]
    fn a_table_grow_bomb_is_refused_with_the_limit() {
        let err = open_bomb("table_grow").to_string();
        assert!(
            err.starts_with(
                "operator `villain` was stopped in `instantiate`: table limit of 1048576 elements"
            ),
            "{err}"
        );
    }
}
