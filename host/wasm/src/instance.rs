//! One live operator instance and the guarded calls into it.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::TypedFunc;
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
    /// `snapshots.prepare-snapshot`, for guests that hold state back.
    prepare_snapshot: Option<TypedFunc<(), (Result<(), String>,)>>,
    label: Arc<str>,
    limits: weir_core::job::GuestLimits,
}

/// An instance whose `open` has run, not yet given its keyed state: what a
/// new version of the code is before it takes over a running instance's
/// state ([`OperatorInstance::swap`]), or before [`PreparedInstance::attach`].
/// Built on any thread and handed to the task's.
pub struct PreparedInstance {
    instance: OperatorInstance,
    /// The states its `open` declared, by index.
    declared: Vec<StateDescriptor>,
}

// The runtime prepares a new version off the task thread.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<PreparedInstance>();
};

impl PreparedInstance {
    /// The states the guest's `open` declared, by index.
    pub fn declared(&self) -> &[StateDescriptor] {
        &self.declared
    }

    pub fn label(&self) -> &str {
        &self.instance.label
    }

    /// Declares the states in `keyed` (when the operator is keyed) and
    /// attaches it: the instance is then ready for `process`. Refuses
    /// declared state without `keyed`.
    pub fn attach(self, keyed: Option<Keyed>) -> Result<OperatorInstance, GuestError> {
        let PreparedInstance {
            mut instance,
            declared,
        } = self;
        match keyed {
            Some(mut keyed) => {
                // Attached after `open`, so not bounded by `GuestState::new`;
                // before any restore writes into it (restored state counts).
                keyed
                    .state
                    .set_memory_max_bytes(instance.limits.state_memory_max_bytes);
                keyed
                    .state
                    .declare(declared)
                    .map_err(|e| instance.open_failed(format!("invalid state declaration: {e}")))?;
                instance.store.data_mut().keyed = Some(keyed);
            }
            None if !declared.is_empty() => {
                return Err(instance.open_failed(not_keyed(&declared)));
            }
            None => {}
        }
        Ok(instance)
    }
}

/// Why an operator that is not keyed cannot declare state.
fn not_keyed(declared: &[StateDescriptor]) -> String {
    format!(
        "it declares keyed state (`{}`), but it is not keyed: give it a hash edge (edge = \"hash\")",
        weir_core::text::cut(&declared[0].name, 256)
    )
}

impl OperatorInstance {
    /// Instantiates `compiled`, calls its `open`, and declares the states it
    /// returns in `keyed` (when the operator is keyed): [`Self::prepare`]
    /// then [`PreparedInstance::attach`].
    pub fn open(
        compiled: &CompiledOperator,
        info: &OperatorInfo,
        keyed: Option<Keyed>,
    ) -> Result<OperatorInstance, GuestError> {
        Self::prepare(compiled, info)?.attach(keyed)
    }

    /// Instantiates `compiled` and calls its `open`, keeping the states it
    /// declares; no keyed state is attached (`open` cannot touch state).
    pub fn prepare(
        compiled: &CompiledOperator,
        info: &OperatorInfo,
    ) -> Result<PreparedInstance, GuestError> {
        let label: Arc<str> = if info.parallelism > 1 {
            format!("{}[{}]", info.name, info.subtask_index).into()
        } else {
            info.name.clone().into()
        };
        let seed = seed_for(&info.name, info.subtask_index);
        let mut store = Store::new(
            &compiled.engine,
            GuestState::new(label.clone(), None, info.limits, seed),
        );
        store.limiter(|state| &mut state.limiter);
        store.set_max_component_handles(COMPONENT_HANDLES_MAX);
        store.set_hostcall_fuel(hostcall_bytes_max(&info.limits));
        store.set_epoch_deadline(deadline_ticks(info.limits.call_timeout_ms));
        let instantiated = compiled
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .and_then(|instance| {
                let bindings = Operator::new(&mut store, &instance)?;
                let prepare_snapshot = match &compiled.prepare_snapshot {
                    Some(index) => Some(instance.get_typed_func(&mut store, index)?),
                    None => None,
                };
                Ok((bindings, prepare_snapshot))
            });
        let (bindings, prepare_snapshot) =
            instantiated.map_err(|e| classify(&store, "instantiate", info.limits, e, &label))?;
        let mut config = info.config.clone();
        // Only the host makes this promise, whatever the config it was given.
        config.retain(|(key, _)| key != PREPARE_SNAPSHOT_CONFIG);
        if prepare_snapshot.is_some() {
            // The promise the guest may hold state back on (see
            // `snapshots` in wit/operator.wit).
            config.push((PREPARE_SNAPSHOT_CONFIG.into(), "1".into()));
        }
        let mut instance = OperatorInstance {
            store,
            bindings,
            prepare_snapshot,
            label,
            limits: info.limits,
        };
        let wit_info = WitOperatorInfo {
            name: info.name.clone(),
            subtask_index: info.subtask_index,
            parallelism: info.parallelism,
            config,
        };
        instance.arm();
        let declared = instance
            .bindings
            .weir_operator_hooks()
            .call_open(&mut instance.store, &wit_info);
        let declared = instance
            .finish("open", declared)?
            .map_err(|message| GuestError {
                operator: instance.label.to_string(),
                kind: GuestErrorKind::Failed {
                    export: "open",
                    message: cut_message(&message),
                },
            })?;
        let declared = declared
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
        Ok(PreparedInstance { instance, declared })
    }

    /// Replaces this instance with `next` (a new version of the code, or
    /// the same one afresh), handing it this instance's host state: keyed
    /// state (redeclared to `next`'s states by name, see
    /// [`weir_state::plan_redeclare`]), event and processing timers,
    /// watermark and processing time. The old instance is dropped.
    ///
    /// A refusal (state that cannot be kept, state declared by an operator
    /// that is not keyed) leaves `self` unchanged and usable; a failure of
    /// the old version's `prepare-snapshot` poisons it like any trap. A backend
    /// error while renumbering stored entries leaves them partly moved:
    /// `self` must then be dropped and the task restored from a checkpoint.
    pub fn swap(
        &mut self,
        next: PreparedInstance,
        allow_dropping_state: bool,
    ) -> Result<(), GuestError> {
        let PreparedInstance {
            instance: mut next,
            declared,
        } = next;
        // The runtime snapshots right before a swap, so this finds nothing
        // held back; but what the old code holds must not be left behind.
        self.prepare_snapshot()?;
        let refused = |reason: String| GuestError {
            operator: self.label.to_string(),
            kind: GuestErrorKind::Failed {
                export: "open",
                message: format!("the new version cannot take over: {}", cut_message(&reason)),
            },
        };
        let old = self.store.data_mut();
        match &mut old.keyed {
            None if !declared.is_empty() => return Err(refused(not_keyed(&declared))),
            None => {}
            Some(keyed) => {
                // `redeclare` plans before it moves anything: a refusal
                // leaves the store as it was.
                keyed
                    .state
                    .redeclare(declared, allow_dropping_state)
                    .map_err(|e| refused(e.to_string()))?;
                keyed
                    .state
                    .set_memory_max_bytes(next.limits.state_memory_max_bytes);
            }
        }
        let new = next.store.data_mut();
        new.keyed = old.keyed.take();
        new.event_timers = std::mem::take(&mut old.event_timers);
        new.processing_timers = std::mem::take(&mut old.processing_timers);
        new.watermark = old.watermark;
        new.processing_time_ms = old.processing_time_ms;
        *self = next;
        Ok(())
    }

    /// The states of this instance's keyed state, by index (empty when it
    /// is not keyed).
    pub fn declared(&self) -> &[StateDescriptor] {
        self.store
            .data()
            .keyed
            .as_ref()
            .map_or(&[], |keyed| keyed.state.descriptors())
    }

    /// A refusal of what `open` returned, naming this operator.
    fn open_failed(&self, message: String) -> GuestError {
        GuestError {
            operator: self.label.to_string(),
            kind: GuestErrorKind::Failed {
                export: "open",
                message: cut_message(&message),
            },
        }
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

    /// Has the guest write back the state it holds in its own memory (a
    /// no-op for guests without `snapshots`). Call it right before
    /// reading the instance's keyed state for a snapshot; after it the
    /// host holds all of it.
    pub fn prepare_snapshot(&mut self) -> Result<(), GuestError> {
        let Some(func) = self.prepare_snapshot else {
            return Ok(());
        };
        self.arm();
        let result = func.call(&mut self.store, ()).map(|(returned,)| returned);
        self.finish(PREPARE_SNAPSHOT_EXPORT, result)?
            .map_err(|message| GuestError {
                operator: self.label.to_string(),
                kind: GuestErrorKind::Failed {
                    export: PREPARE_SNAPSHOT_EXPORT,
                    message: cut_message(&message),
                },
            })
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

/// The config entry that tells a guest this host calls `prepare-snapshot`.
const PREPARE_SNAPSHOT_CONFIG: &str = "weir.prepare_snapshot";
const PREPARE_SNAPSHOT_EXPORT: &str = "prepare-snapshot";

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

    mod swap {
        //! Swapping in new code keeps the host state, on real guests
        //! (built by `scripts/build-guests.sh`).

        use std::path::PathBuf;
        use std::sync::OnceLock;

        use weir_core::timers::{TimeDomain, encode_timers};
        use weir_core::{BatchBuilder, KeyGroupRange};
        use weir_state::{KeyedStateStore, MemoryBackend, StateKind};

        use super::super::*;
        use crate::WasmEngine;

        const MAX_PARALLELISM: u32 = 128;

        /// One engine for every test: each guest is compiled once.
        fn engine() -> &'static WasmEngine {
            static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
            ENGINE.get_or_init(|| WasmEngine::new(None).unwrap())
        }

        fn compiled(dir: &str, name: &str) -> CompiledOperator {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(dir)
                .join("wasm32-wasip2/release")
                .join(format!("{name}.wasm"));
            assert!(
                path.exists(),
                "{} is missing: run `bash scripts/build-guests.sh`",
                path.display()
            );
            engine().load(name, &path).unwrap()
        }

        fn guest(name: &str) -> CompiledOperator {
            compiled("target/wasm", name)
        }

        fn info() -> OperatorInfo {
            OperatorInfo {
                name: "op".into(),
                subtask_index: 0,
                parallelism: 1,
                config: vec![("window_ms".into(), "100".into())],
                limits: weir_core::job::GuestLimits::default(),
            }
        }

        fn keyed() -> Keyed {
            let key_groups = KeyGroupRange::for_subtask(0, 1, MAX_PARALLELISM);
            Keyed {
                state: KeyedStateStore::new(
                    Box::new(MemoryBackend::new()),
                    MAX_PARALLELISM,
                    key_groups,
                ),
                key_groups,
                max_parallelism: MAX_PARALLELISM,
            }
        }

        fn process(op: &mut OperatorInstance, records: &[(&str, &str, i64)]) {
            let mut batch = BatchBuilder::default();
            for (key, value, ts) in records {
                batch.push(Some(*ts), key.as_bytes(), value.as_bytes());
            }
            let out = op.process(0, &batch.take()).unwrap();
            assert!(out.is_empty(), "{out:?}");
        }

        /// Advances the watermark to `watermark` and fires the event timers
        /// due, as the runtime does: what the guest emitted, as text.
        fn fire(op: &mut OperatorInstance, watermark: i64) -> Vec<(String, String)> {
            let state = op.state();
            state.watermark = watermark;
            let due = state.event_timers.pop_due(watermark, usize::MAX);
            let out = op
                .on_timers(&encode_timers(TimeDomain::EventTime, &due))
                .unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let mut out: Vec<_> = out.iter().map(|r| (text(r.key), text(r.value))).collect();
            out.sort();
            out
        }

        fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
            expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }

        #[test]
        fn keyed_state_timers_and_watermark_survive_a_swap() {
            let count = guest("count_op");
            let mut op = OperatorInstance::open(&count, &info(), Some(keyed())).unwrap();
            // Window [0, 100): `a` only before the swap, `b` before and after.
            process(&mut op, &[("a", "", 10), ("a", "", 20), ("b", "", 30)]);
            op.state().watermark = 50;
            op.state().processing_time_ms = 7;
            op.state().processing_timers.register(1000, b"a");
            assert_eq!(op.state().event_timers.len(), 2);

            op.swap(OperatorInstance::prepare(&count, &info()).unwrap(), false)
                .unwrap();
            assert_eq!(op.state().watermark, 50);
            assert_eq!(op.state().processing_time_ms, 7);
            assert_eq!(op.state().event_timers.len(), 2, "event timers lost");
            assert!(op.state().processing_timers.contains(1000, b"a"));
            assert_eq!(op.declared()[0].name, "counts");

            process(&mut op, &[("b", "", 40), ("b", "", 99)]);
            assert_eq!(fire(&mut op, 99), pairs(&[("a", "2"), ("b", "3")]));
        }

        #[test]
        fn an_engine_without_call_timeouts_runs_guests_alike() {
            // First: it says how to build the guest when it is missing.
            let checked = guest("count_op");
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/wasm/wasm32-wasip2/release/count_op.wasm");
            let unchecked = WasmEngine::without_call_timeouts().unwrap();
            let fast = unchecked.load("count_op", &path).unwrap();
            let mut fired = Vec::new();
            for compiled in [&checked, &fast] {
                let mut op = OperatorInstance::open(compiled, &info(), Some(keyed())).unwrap();
                process(&mut op, &[("a", "", 10), ("b", "", 30), ("a", "", 120)]);
                fired.push((fire(&mut op, 99), fire(&mut op, 199)));
            }
            assert_eq!(fired[0], fired[1]);
            assert_eq!(fired[1].0, pairs(&[("a", "1"), ("b", "1")]));
            assert_eq!(fired[1].1, pairs(&[("a", "1")]));
        }

        /// Whether the host holds window state for `key` (state 0).
        fn host_holds(op: &mut OperatorInstance, key: &str) -> bool {
            let keyed = op.state().keyed.as_mut().unwrap();
            keyed
                .state
                .value_get(0, key.as_bytes(), 0)
                .unwrap()
                .is_some()
        }

        #[test]
        fn a_buffering_guest_hands_over_its_state_when_a_snapshot_is_prepared() {
            let count = guest("count_op");
            let mut op = OperatorInstance::open(&count, &info(), Some(keyed())).unwrap();
            assert!(
                op.prepare_snapshot.is_some(),
                "the Rust SDK exports snapshots"
            );
            process(&mut op, &[("a", "", 10), ("b", "", 30)]);
            assert!(!host_holds(&mut op, "a"), "held back until a snapshot");
            op.prepare_snapshot().unwrap();
            assert!(host_holds(&mut op, "a") && host_holds(&mut op, "b"));
            // Written back once: a second call finds nothing to do, and
            // the guest goes on from where it was.
            op.prepare_snapshot().unwrap();
            process(&mut op, &[("a", "", 20)]);
            assert_eq!(fire(&mut op, 99), pairs(&[("a", "2"), ("b", "1")]));
            op.prepare_snapshot().unwrap();
            assert!(!host_holds(&mut op, "a"), "fired windows are cleared");
        }

        #[test]
        fn a_new_version_takes_over_state_and_timers() {
            let v1 = guest("window_collect");
            let v2 = compiled("target/wasm-v2", "window_collect");
            let mut op = OperatorInstance::open(&v1, &info(), Some(keyed())).unwrap();
            process(&mut op, &[("k", r#"{"seq":1}"#, 10)]);
            op.swap(OperatorInstance::prepare(&v2, &info()).unwrap(), false)
                .unwrap();
            process(&mut op, &[("k", r#"{"seq":2}"#, 20)]);
            assert_eq!(fire(&mut op, 99), pairs(&[("k", "v2 k 100: 1,2")]));
        }

        #[test]
        fn a_refused_swap_leaves_the_old_instance_working() {
            let count = guest("count_op");
            let mut op = OperatorInstance::open(&count, &info(), Some(keyed())).unwrap();
            process(&mut op, &[("a", "", 10)]);
            op.state().watermark = 5;

            // window-collect declares `windows`, not `counts`.
            let other = guest("window_collect");
            let next = OperatorInstance::prepare(&other, &info()).unwrap();
            assert_eq!(next.label(), "op");
            assert_eq!(next.declared().len(), 1);
            let err = op.swap(next, false).unwrap_err();
            assert_eq!(
                err.to_string(),
                "operator `op` failed in `open`: the new version cannot take over: state \
                 `counts` is not declared by the new version, so its stored values would be \
                 lost; pass --allow-dropping-state to drop it"
            );
            assert_eq!(op.declared()[0].name, "counts");
            assert_eq!(op.state().watermark, 5);
            process(&mut op, &[("a", "", 20)]);
            assert_eq!(fire(&mut op, 99), pairs(&[("a", "2")]));

            // Allowed, the counts go and the new version starts empty.
            process(&mut op, &[("a", "", 110)]);
            let next = OperatorInstance::prepare(&other, &info()).unwrap();
            op.swap(next, true).unwrap();
            assert_eq!(op.declared().len(), 1);
            assert_eq!(op.declared()[0].name, "windows");
            assert_eq!(op.declared()[0].kind, StateKind::Map);
            process(&mut op, &[("a", r#"{"seq":7}"#, 120)]);
            assert_eq!(fire(&mut op, 199), pairs(&[("a", "a 200: 7")]));
        }

        #[test]
        fn state_cannot_be_swapped_into_an_operator_that_is_not_keyed() {
            let map = guest("map_op");
            let mut op = OperatorInstance::open(&map, &info(), None).unwrap();
            assert!(op.declared().is_empty());
            let next = OperatorInstance::prepare(&guest("count_op"), &info()).unwrap();
            let err = op.swap(next, true).unwrap_err();
            assert_eq!(
                err.to_string(),
                "operator `op` failed in `open`: the new version cannot take over: it declares \
                 keyed state (`counts`), but it is not keyed: give it a hash edge (edge = \"hash\")"
            );
            let mut batch = BatchBuilder::default();
            batch.push(None, b"k", b"up");
            let out = op.process(0, &batch.take()).unwrap();
            assert_eq!(out.iter().next().unwrap().value, b"UP");
            // And `open` refuses the same.
            let err = OperatorInstance::open(&guest("count_op"), &info(), None)
                .err()
                .unwrap();
            assert!(
                err.to_string()
                    .ends_with("it declares keyed state (`counts`), but it is not keyed: give it a hash edge (edge = \"hash\")"),
                "{err}"
            );
        }

        #[test]
        fn prepared_then_attached_is_open() {
            let count = guest("count_op");
            let prepared = OperatorInstance::prepare(&count, &info()).unwrap();
            assert_eq!(prepared.declared()[0].name, "counts");
            // Built on one thread, attached on another.
            let mut op = std::thread::spawn(move || prepared.attach(Some(keyed())).unwrap())
                .join()
                .unwrap();
            process(&mut op, &[("a", "", 10)]);
            assert_eq!(fire(&mut op, 99), pairs(&[("a", "1")]));
        }
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
