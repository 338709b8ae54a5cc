//! One attempt at running a job on this process: builds its tasks from
//! the plan (restoring their state), starts a thread per task, and reports
//! how they ended. On a cluster worker only the tasks placed here are
//! built, and channels to other workers are handed to the network.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::anyhow;
use crossbeam_channel::{Receiver, Sender, unbounded};
use weir_core::KeyGroupRange;
use weir_core::job::{JobSpec, OperatorSpec};
use weir_net::stream::ChannelHeader;
use weir_snapshot::rocks_files::SharedFiles;
use weir_snapshot::{Snapshot, SourceSnapshot, StateHandle};
use weir_state::KeyedStateStore;
use weir_wasm::{CompiledOperator, Keyed, OperatorInfo, OperatorInstance};

use crate::events::{SinkCommand, SourceCommand, TaskEvent};
use crate::master::machine::Shape;
use crate::message::{TaskError, TaskResult};
use crate::metrics::NodeCounters;
use crate::operator_task::{ChainLink, ChainTask};
use crate::plan::{self, ChannelPlan, Plan, TaskId};
use crate::remote::{DataPlane, InboundChannels, write_channel};
use crate::restore::source_positions;
use crate::sink_task::SinkTask;
use crate::source_task::SourceTask;
use crate::state_root::StateRoot;
use crate::swaps::{PreparedSwaps, operator_config};
use crate::task_snapshot::{
    LinkIdentity, NativeState, RestoreSettings, SnapshotContext, SnapshotPlans, restore_link,
};
use crate::telemetry::{AttemptRegistration, NodeKind, TaskTimes};

/// A worker's share of one attempt.
pub(crate) struct WorkerScope {
    /// The attempt's id on the wire (unique per coordinator).
    pub(crate) attempt_id: u32,
    pub(crate) local: BTreeSet<TaskId>,
    pub(crate) data_plane: Arc<dyn DataPlane>,
    pub(crate) inbound: Arc<InboundChannels>,
}

/// What one attempt at running the job needs and shares.
pub(crate) struct Attempt<'a> {
    pub(crate) job: &'a JobSpec,
    /// Each operator's component (the version it runs in this attempt).
    pub(crate) compiled: &'a HashMap<String, CompiledOperator>,
    pub(crate) state: &'a StateRoot,
    pub(crate) restore: Option<&'a Snapshot>,
    pub(crate) allow_non_restored: bool,
    pub(crate) number: u32,
    /// On a cluster worker: which tasks run here, and how to reach the rest.
    pub(crate) scope: Option<&'a WorkerScope>,
}

/// A started attempt: the handles its master uses, and its threads.
pub(crate) struct LiveAttempt {
    pub(crate) source_commands: Vec<(TaskId, Sender<SourceCommand>)>,
    pub(crate) sink_commands: Vec<(TaskId, Sender<SinkCommand>)>,
    pub(crate) events: Receiver<TaskEvent>,
    pub(crate) plans: SnapshotPlans,
    pub(crate) prepared: PreparedSwaps,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) shape: Shape,
    pub(crate) threads: AttemptThreads,
}

/// The running tasks of an attempt.
pub(crate) struct AttemptThreads {
    handles: Vec<(String, JoinHandle<TaskResult>)>,
    pub(crate) counters: HashMap<String, Arc<NodeCounters>>,
    /// The subtasks' metrics in this process's registry, until the
    /// attempt ends (dropped when joined).
    metrics: AttemptRegistration,
}

/// How the tasks of an attempt ended.
pub(crate) struct Ended {
    /// The first real failure.
    pub(crate) failure: Option<anyhow::Error>,
    /// Some task stopped because a neighbour went away.
    pub(crate) cancelled: bool,
    pub(crate) counters: HashMap<String, Arc<NodeCounters>>,
}

impl AttemptThreads {
    pub(crate) fn join(self) -> Ended {
        let mut failure: Option<anyhow::Error> = None;
        let mut cancelled = false;
        for (name, handle) in self.handles {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(TaskError::Cancelled)) => cancelled = true,
                Ok(Err(TaskError::Failed(e))) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert_with(|| {
                        anyhow!("task {name} panicked (a bug in weir, please report it)")
                    });
                }
            }
        }
        drop(self.metrics); // the next attempt starts counting from zero
        Ended {
            failure,
            cancelled,
            counters: self.counters,
        }
    }
}

type Task = Box<dyn FnOnce() -> TaskResult + Send>;

#[derive(Default)]
struct BuiltTasks {
    /// Thread name, what its log lines name (node and subtask), the work.
    tasks: Vec<(String, (String, u32), Task)>,
    source_commands: Vec<(TaskId, Sender<SourceCommand>)>,
    sink_commands: Vec<(TaskId, Sender<SinkCommand>)>,
}

impl Attempt<'_> {
    /// Builds every task (opening guests and restoring state) and starts
    /// them. Nothing runs if building fails.
    pub(crate) fn start(self) -> anyhow::Result<LiveAttempt> {
        let job = self.job;
        let mut plan = plan::build(job)?;
        let channels = std::mem::take(&mut plan.channels);
        if let Some(scope) = self.scope {
            plan.sources.retain(|t| scope.local.contains(&t.id()));
            plan.chains.retain(|t| scope.local.contains(&t.id()));
            plan.sinks.retain(|t| scope.local.contains(&t.id()));
        }
        for chain in &plan.chain_names {
            tracing::debug!(job = %job.name, "operator chain: {}", chain.join(" -> "));
        }
        let counters = plan.counters.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let (event_tx, events) = unbounded();
        let snapshots = SnapshotContext {
            plans: Arc::new(Mutex::new(BTreeMap::new())),
            events: event_tx,
            incremental: job.checkpoint.as_ref().is_none_or(|c| c.incremental),
            store_options: crate::store_options(job),
            prepared: Arc::new(Mutex::new(HashMap::new())),
        };
        let shape = Shape {
            sources: plan.sources.len(),
            chains: plan.chains.len(),
            sinks: plan.sinks.len(),
        };
        let restored_sources = match self.restore {
            Some(s) => source_positions(job, s)?,
            None => Vec::new(),
        };
        let metrics = AttemptRegistration::new(&job.name);
        let mut built = self.build_tasks(plan, &cancel, &snapshots, &restored_sources, &metrics)?;
        match self.scope {
            Some(scope) => self.bridge(scope, channels, &mut built),
            None => drop(channels), // every end is in a task now
        }
        let mut handles = Vec::new();
        for (name, (node, subtask), task) in built.tasks {
            let job_name = job.name.clone();
            let cancel_on_failure = cancel.clone();
            let spawned = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    // Every log line of the task names its job, node and
                    // subtask. At error level so no log filter that lets
                    // any line through drops the span (and its fields).
                    let span =
                        tracing::error_span!("task", job = %job_name, operator = %node, subtask);
                    let _entered = span.enter();
                    let result = task();
                    if matches!(result, Err(TaskError::Failed(_))) {
                        cancel_on_failure.store(true, Ordering::Relaxed);
                    }
                    result
                });
            match spawned {
                Ok(handle) => handles.push((name, handle)),
                Err(e) => {
                    // Stop what started; their ends disconnect the rest.
                    cancel.store(true, Ordering::Relaxed);
                    drop(built.source_commands);
                    drop(built.sink_commands);
                    drop(snapshots);
                    let _ = AttemptThreads {
                        handles,
                        counters,
                        metrics,
                    }
                    .join();
                    return Err(anyhow!("cannot start thread for {name}: {e}"));
                }
            }
        }
        Ok(LiveAttempt {
            source_commands: built.source_commands,
            sink_commands: built.sink_commands,
            events,
            plans: snapshots.plans.clone(),
            prepared: snapshots.prepared.clone(),
            cancel,
            shape,
            threads: AttemptThreads {
                handles,
                counters,
                metrics,
            },
        })
    }

    /// Hands the ends of channels that cross workers to the network:
    /// local producer → outbound bridge task; local consumer → the stream
    /// a peer opens. Ends of channels between two remote tasks are dropped.
    fn bridge(&self, scope: &WorkerScope, channels: Vec<ChannelPlan>, built: &mut BuiltTasks) {
        for (number, channel) in channels.into_iter().enumerate() {
            let header = ChannelHeader {
                job: self.job.name.clone(),
                attempt: scope.attempt_id,
                channel: number as u32,
            };
            match (
                scope.local.contains(&channel.producer),
                scope.local.contains(&channel.consumer),
            ) {
                (true, false) => {
                    let data_plane = scope.data_plane.clone();
                    let consumer = channel.consumer;
                    let rx = channel.rx;
                    built.tasks.push((
                        format!("net-out-{number}"),
                        (format!("net-out-{number}"), 0),
                        Box::new(move || write_channel(data_plane, header, consumer, rx)),
                    ));
                }
                (false, true) => {
                    scope
                        .inbound
                        .expect(&header.job, header.attempt, header.channel, channel.tx)
                }
                _ => {}
            }
        }
    }

    fn build_tasks(
        &self,
        plan: Plan,
        cancel: &Arc<AtomicBool>,
        snapshots: &SnapshotContext,
        restored_sources: &[SourceSnapshot],
        metrics: &AttemptRegistration,
    ) -> anyhow::Result<BuiltTasks> {
        let job = self.job;
        let counters = &plan.counters;
        let mut built = BuiltTasks::default();
        let uid = format!(
            "{:x}",
            xxhash_rust::xxh3::xxh3_64(
                format!("{:?}{}{}", Instant::now(), std::process::id(), self.number).as_bytes()
            )
        );
        for mut source_plan in plan.sources {
            let spec = job.sources[source_plan.source].clone();
            let times = Arc::new(TaskTimes::default());
            let subtask = metrics.add(
                &spec.name,
                NodeKind::Source,
                source_plan.split,
                times.clone(),
            );
            counters[&spec.name].attach(subtask.clone());
            source_plan.gate.times = Some(times.clone());
            source_plan.dead_letter_gate.times = Some(times);
            let source = weir_connectors::open_source(&spec, source_plan.split).map_err(|e| {
                anyhow!(
                    "{}:{}: source `{}`: {e}",
                    job.file.display(),
                    spec.line,
                    spec.name
                )
            })?;
            let (command_tx, command_rx) = unbounded();
            built.source_commands.push((source_plan.id(), command_tx));
            let restore = restored_sources
                .iter()
                .find(|r| r.source == spec.name && r.split == source_plan.split)
                .cloned();
            let task = SourceTask {
                split: source_plan.split,
                source,
                gate: source_plan.gate,
                dead_letter_gate: source_plan.dead_letter_gate,
                batch_records_max: job.batch_records_max,
                metrics: subtask,
                cancel: cancel.clone(),
                commands: command_rx,
                snapshots: snapshots.clone(),
                restore,
                spec,
                pending: Default::default(),
            };
            built.tasks.push((
                format!("source-{}-{}", task.spec.name, task.split),
                (task.spec.name.clone(), task.split),
                Box::new(move || task.run()),
            ));
        }
        for mut chain in plan.chains {
            // One thread: its links share its times (busy, idle, blocked).
            let times = Arc::new(TaskTimes::default());
            let mut links = Vec::new();
            for mut link in chain.links {
                let spec = &job.operators[link.operator];
                let subtask =
                    metrics.add(&spec.name, NodeKind::Operator, chain.subtask, times.clone());
                counters[&spec.name].attach(subtask.clone());
                link.late_gate.times = Some(times.clone());
                links.push(self.open_link(spec, chain.subtask, &uid, link.late_gate, subtask)?);
            }
            let name = format!("chain-{}-{}", links[0].instance.label(), chain.subtask);
            let head = (links[0].identity.operator.clone(), chain.subtask);
            chain.gate.times = Some(times.clone());
            let task = ChainTask {
                links,
                inputs: chain.inputs,
                gate: chain.gate,
                batch_records_max: job.batch_records_max,
                snapshots: snapshots.clone(),
                times,
            };
            built.tasks.push((name, head, Box::new(move || task.run())));
        }
        for sink_plan in plan.sinks {
            let spec = &job.sinks[sink_plan.sink];
            let restored = self.restore.and_then(|s| {
                s.metadata
                    .sinks
                    .iter()
                    .find(|r| r.sink == spec.name)
                    .map(|r| &r.state)
            });
            let sink = weir_connectors::open_sink(spec, restored).map_err(|e| {
                anyhow!(
                    "{}:{}: sink `{}`: {e}",
                    job.file.display(),
                    spec.line,
                    spec.name
                )
            })?;
            let (command_tx, command_rx) = unbounded();
            built.sink_commands.push((sink_plan.id(), command_tx));
            let subtask = metrics.add(&spec.name, NodeKind::Sink, 0, Arc::default());
            counters[&spec.name].attach(subtask.clone());
            let task = SinkTask {
                name: spec.name.clone(),
                sink,
                inputs: sink_plan.inputs,
                metrics: subtask,
                commands: command_rx,
                snapshots: snapshots.clone(),
            };
            built.tasks.push((
                format!("sink-{}", spec.name),
                (spec.name.clone(), 0),
                Box::new(move || task.run()),
            ));
        }
        Ok(built)
    }

    fn open_link(
        &self,
        spec: &OperatorSpec,
        subtask: u32,
        uid: &str,
        late_gate: crate::gate::Gate,
        metrics: Arc<crate::telemetry::SubtaskMetrics>,
    ) -> anyhow::Result<ChainLink> {
        let job = self.job;
        let key_groups = KeyGroupRange::for_subtask(subtask, spec.parallelism, job.max_parallelism);
        let restored = self.restore.and_then(|s| {
            s.metadata
                .operators
                .iter()
                .find(|o| o.name == spec.name)
                .map(|o| (s, o))
        });
        let native_files = restored.and_then(|(s, o)| {
            o.subtasks
                .iter()
                .find(|st| st.subtask == subtask)
                .and_then(|st| match &st.state {
                    StateHandle::Rocksdb { files } => Some((s.dir.as_path(), files.as_slice())),
                    _ => None,
                })
        });
        let mut native = None;
        let keyed = if spec.is_keyed() {
            let (backend, db_dir) = self.state.backend(job, &spec.name, subtask, native_files)?;
            if let Some(db_dir) = db_dir {
                let mut shared = SharedFiles::new(format!("{}-{subtask}-{uid}", spec.name));
                if let Some((_, files)) = native_files {
                    shared.seed(files);
                }
                native = Some(NativeState {
                    local_dir: db_dir.with_extension("checkpoints"),
                    shared: Arc::new(Mutex::new(shared)),
                });
            }
            Some(Keyed {
                state: KeyedStateStore::new(backend, job.max_parallelism, key_groups),
                key_groups,
                max_parallelism: job.max_parallelism,
            })
        } else {
            None
        };
        let compiled = &self.compiled[&spec.name];
        let previous = restored.and_then(|(s, _)| wrote_the_state(s, &spec.name, &compiled.digest));
        let info = OperatorInfo {
            name: spec.name.clone(),
            subtask_index: subtask,
            parallelism: spec.parallelism,
            config: operator_config(&spec.config, self.number, &compiled.digest, previous),
            limits: spec.limits,
        };
        let mut instance = OperatorInstance::open(compiled, &info, keyed)?;
        let identity = LinkIdentity {
            operator: spec.name.clone(),
            parallelism: spec.parallelism,
            subtask,
            key_groups,
            native,
        };
        if let Some((snapshot, op)) = restored {
            restore_link(
                &mut instance,
                &identity,
                op,
                &snapshot.dir,
                &RestoreSettings {
                    max_parallelism: job.max_parallelism,
                    allow_non_restored: self.allow_non_restored,
                    native_restored: native_files.is_some(),
                    limits: &spec.limits,
                },
            )?;
        }
        Ok(ChainLink {
            instance,
            identity,
            late_policy: spec.late_records,
            keyed: spec.is_keyed(),
            late_gate,
            metrics,
        })
    }
}

/// The digest of the version whose state `operator` restores from
/// `snapshot`, when that is not `running`: the state came from a savepoint
/// of other code, or the snapshot is the barrier where a new version took
/// over (its state was written just before). A guest sees it as
/// `weir.previous_version` and may migrate.
fn wrote_the_state<'s>(snapshot: &'s Snapshot, operator: &str, running: &str) -> Option<&'s str> {
    let v = snapshot
        .metadata
        .versions
        .iter()
        .find(|v| v.operator == operator)?;
    if v.digest != running {
        return Some(&v.digest);
    }
    match v.history.as_slice() {
        [.., before, last] if last.checkpoint == Some(snapshot.metadata.id) => Some(&before.digest),
        _ => None,
    }
}
