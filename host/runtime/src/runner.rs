//! Starts a job's tasks, waits for them, restarts them from the latest
//! checkpoint when one fails, and reports what happened.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use crossbeam_channel::{Receiver, unbounded};
use weir_core::KeyGroupRange;
use weir_core::data_roots::{Access, DataRoots, check_dir, check_paths};
use weir_core::job::{JobSpec, SinkKind, StateBackendKind};
use weir_core::text::{MESSAGE_BYTES_MAX, cut};
use weir_snapshot::rocks_files::{SharedFiles, download};
use weir_snapshot::{CheckpointStorage, Snapshot, StateHandle};
use weir_state::{KeyedStateStore, MemoryBackend, RocksDbBackend, StateBackend};
use weir_wasm::{CompiledOperator, Keyed, OperatorInfo, OperatorInstance, WasmEngine};

use crate::control::{ControlOptions, ControlServer};
use crate::coordinator::{
    Coordinator, JobStatus, SavepointRequest, SinkCommand, SourceCommand, TaskEvent, storage_of,
};
use crate::message::{TaskError, TaskResult};
use crate::metrics::{JobReport, NodeReport, Outcome};
use crate::operator_task::{ChainLink, ChainTask};
use crate::plan::{self, Plan};
use crate::plan::{ChannelPlan, TaskId};
use crate::remote::{DataPlane, InboundChannels, write_channel};
use crate::sink_task::SinkTask;
use crate::source_task::SourceTask;
use crate::task_snapshot::SnapshotDirs;
use crate::task_snapshot::{
    LinkIdentity, NativeState, RestoreSettings, SnapshotContext, restore_link,
};
use weir_net::stream::ChannelHeader;

/// Longest error (a chain of contexts around a cause) printed or returned
/// for one attempt: room for a guest's message, already cut to
/// [`MESSAGE_BYTES_MAX`] where it entered the host, and what names it.
pub const ERROR_BYTES_MAX: usize = 2 * MESSAGE_BYTES_MAX;

/// `e` with its causes, cut to [`ERROR_BYTES_MAX`] with control characters
/// escaped: safe for a terminal, a log line or a reply.
pub fn cut_error(e: &anyhow::Error) -> String {
    cut(&format!("{e:#}"), ERROR_BYTES_MAX)
}

/// How to run a job, beyond what its file says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where compiled components are cached across runs; `None` disables
    /// the on-disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Continue from the newest complete checkpoint in the job's checkpoint
    /// directory (after the whole process was killed).
    pub resume: bool,
    /// Start from this savepoint (or checkpoint) directory.
    pub from_savepoint: Option<PathBuf>,
    /// Drop snapshot state that no operator of the job takes.
    pub allow_non_restored_state: bool,
    /// Serve the control API (savepoint, stop) while the job runs.
    pub control: Option<ControlOptions>,
    /// The only trees the job's paths (sources, sinks, artifacts, state,
    /// checkpoints) and savepoint directories may lie in; checked before
    /// anything starts. `None` checks nothing (a caller that trusts the
    /// job, such as a benchmark).
    pub data_roots: Option<DataRoots>,
}

/// `options.data_roots` with the directories this run keeps its own files
/// in carved out: the compiled-code cache (its key authenticates machine
/// code) and the jobs directory (control tokens). Whoever builds the roots
/// may have denied them already; this holds for every caller.
fn roots_without_own(options: &RunOptions) -> anyhow::Result<Option<DataRoots>> {
    let Some(roots) = &options.data_roots else {
        return Ok(None);
    };
    let mut roots = roots.clone();
    let jobs_dir = options.control.as_ref().and_then(|c| c.jobs_dir.as_ref());
    for dir in options.cache_dir.iter().chain(jobs_dir) {
        roots
            .deny(dir)
            .map_err(|e| anyhow!("cannot keep jobs out of {}: {e}", dir.display()))?;
    }
    Ok(Some(roots))
}

/// Refuses, before anything starts, a path of `job` or of `options` that
/// leaves the data roots (or enters weir's own directories); the error names the job-file line and field, or
/// the flag.
pub fn check_data_paths(job: &JobSpec, options: &RunOptions) -> anyhow::Result<()> {
    let Some(roots) = &roots_without_own(options)? else {
        return Ok(());
    };
    check_paths(job, roots)?;
    if let Some(path) = &options.from_savepoint {
        roots
            .check(path, Access::Read)
            .map_err(|reason| anyhow!("--from-savepoint: {reason}"))?;
        // A checkpoint's shared files lie beside it, outside the directory
        // just checked.
        if let Some(shared) = weir_snapshot::shared_dir_of(path) {
            roots.check(&shared, Access::Read).map_err(|reason| {
                anyhow!("--from-savepoint: the checkpoint's shared files: {reason}")
            })?;
        }
    }
    if let Some(dir) = options
        .control
        .as_ref()
        .and_then(|c| c.savepoint_dir.as_ref())
    {
        check_dir(roots, dir).map_err(|reason| anyhow!("--savepoint-dir: {reason}"))?;
    }
    Ok(())
}

/// Loads and checks every operator's component without running anything.
pub fn validate_job(
    job: &JobSpec,
    options: &RunOptions,
) -> anyhow::Result<Vec<(String, CompiledOperator)>> {
    check_data_paths(job, options)?;
    crate::plan::check(job)?;
    let engine = WasmEngine::new(options.cache_dir.clone())?;
    compile_all(&engine, job)
}

fn compile_all(
    engine: &WasmEngine,
    job: &JobSpec,
) -> anyhow::Result<Vec<(String, CompiledOperator)>> {
    job.operators
        .iter()
        .map(|op| {
            let compiled = engine
                .load(&op.name, &op.wasm)
                .map_err(|e| anyhow!("{}:{}: {e}", job.file.display(), op.line))?;
            Ok((op.name.clone(), compiled))
        })
        .collect()
}

/// What one attempt at running the job needs and shares.
struct Attempt<'a> {
    job: &'a JobSpec,
    compiled: &'a HashMap<String, CompiledOperator>,
    state: &'a StateRoot,
    restore: Option<&'a Snapshot>,
    allow_non_restored: bool,
    number: u32,
    status: JobStatus,
    requests: Receiver<SavepointRequest>,
    /// On a cluster worker: which tasks run here, and how to reach the rest.
    scope: Option<&'a WorkerScope>,
}

/// A worker's share of one attempt.
pub(crate) struct WorkerScope {
    /// The attempt's id on the wire (unique per coordinator).
    pub(crate) attempt_id: u32,
    pub(crate) local: BTreeSet<TaskId>,
    pub(crate) data_plane: Arc<dyn DataPlane>,
    pub(crate) inbound: Arc<InboundChannels>,
    pub(crate) on_started: Mutex<Option<OnStarted>>,
}

/// Called once a worker's tasks are built, before they start.
pub type OnStarted = Box<dyn FnOnce(StartedAttempt) + Send>;

/// What a worker needs of a started attempt to connect it to the cluster's
/// checkpoint coordinator, and to cancel it.
pub struct StartedAttempt {
    pub source_commands: Vec<(TaskId, crossbeam_channel::Sender<SourceCommand>)>,
    pub sink_commands: Vec<(TaskId, crossbeam_channel::Sender<SinkCommand>)>,
    pub events: Receiver<TaskEvent>,
    pub snapshot_dirs: SnapshotDirs,
    pub cancel: Arc<AtomicBool>,
}

/// Runs `job` until its sources are exhausted (or it is stopped with a
/// savepoint), restarting it from its latest checkpoint as `[restart]` allows.
pub fn run_job(job: &JobSpec, options: &RunOptions) -> anyhow::Result<JobReport> {
    let started = Instant::now();
    if let Some(control) = &options.control {
        control.check()?;
    }
    check_data_paths(job, options)?;
    crate::plan::check(job)?;
    let engine = WasmEngine::new(options.cache_dir.clone())?;
    let compiled: HashMap<String, CompiledOperator> =
        compile_all(&engine, job)?.into_iter().collect();
    let storage = storage_of(job);
    let mut restore = starting_snapshot(job, options)?;
    if let Some(snapshot) = &restore {
        tracing::info!(job = %job.name, "restoring from {}", snapshot.dir.display());
    }
    let state = StateRoot::new(job)?;
    let status = JobStatus::default();
    let (request_tx, request_rx) = unbounded();
    let _control = match &options.control {
        Some(control) => Some(ControlServer::start(
            control,
            roots_without_own(options)?,
            job,
            request_tx,
            status.clone(),
        )?),
        None => None,
    };
    let mut restarts = 0;
    loop {
        let attempt = Attempt {
            job,
            compiled: &compiled,
            state: &state,
            restore: restore.as_ref(),
            allow_non_restored: options.allow_non_restored_state,
            number: restarts,
            status: status.clone(),
            requests: request_rx.clone(),
            scope: None,
        };
        match attempt.run() {
            Ok((outcome, counters)) => {
                let mut report = report(job, &counters, started);
                report.outcome = outcome;
                report.restarts = restarts;
                return Ok(report);
            }
            Err(e) if restarts < job.restart.attempts => {
                restarts += 1;
                let from = match storage
                    .as_ref()
                    .map(CheckpointStorage::latest_valid)
                    .transpose()?
                {
                    Some(Some(latest)) => Some(latest),
                    _ => restore.clone(),
                };
                // The cause may carry a guest's text (an error it returned):
                // a few KiB per attempt reach the terminal, never all of it.
                let cause = cut_error(&e);
                // The terminal gets the cause once (below); the log only
                // the restart, so one attempt prints one copy of it.
                tracing::info!(
                    job = %job.name,
                    "restart {restarts} of {} in {} ms from {}",
                    job.restart.attempts,
                    job.restart.delay_ms,
                    from.as_ref().map_or("the beginning".to_string(), |s| s.dir.display().to_string())
                );
                eprintln!(
                    "weir: job `{}` failed ({cause}); restarting ({restarts}/{})",
                    job.name, job.restart.attempts
                );
                std::thread::sleep(Duration::from_millis(job.restart.delay_ms));
                restore = from;
            }
            // Cut here so no caller holds (or prints) a guest's megabytes.
            Err(e) if restarts > 0 => {
                return Err(anyhow!(
                    "job `{}` failed after {restarts} restart(s): {}",
                    job.name,
                    cut_error(&e)
                ));
            }
            Err(e) => {
                return Err(anyhow!("job `{}` failed: {}", job.name, cut_error(&e)));
            }
        }
    }
}

/// An attempt ended because it was cancelled (a neighbour or a peer went
/// away, or the coordinator cancelled it), not because a task failed.
#[derive(Debug)]
pub struct AttemptCancelled {
    pub job: String,
}

impl std::fmt::Display for AttemptCancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job `{}` was cancelled", self.job)
    }
}

impl std::error::Error for AttemptCancelled {}

/// One worker's share of one attempt of a job running on a cluster.
pub struct WorkerAttempt {
    /// The job, its operators' `wasm` pointing at this worker's copies.
    pub job: JobSpec,
    /// The job's attempt number, which guests see (0 first).
    pub attempt: u32,
    /// The attempt's id, which its channel streams carry.
    pub attempt_id: u32,
    /// The tasks placed on this worker.
    pub local: BTreeSet<TaskId>,
    /// The snapshot every worker of this attempt restores from.
    pub restore: Option<PathBuf>,
    pub allow_non_restored_state: bool,
    pub cache_dir: Option<PathBuf>,
    pub data_plane: Arc<dyn DataPlane>,
    pub inbound: Arc<InboundChannels>,
    /// Called once the tasks are built, before they start.
    pub on_started: OnStarted,
}

/// Runs this worker's tasks of one attempt until they end. An error that
/// downcasts to [`AttemptCancelled`] means the attempt was cancelled.
pub fn run_worker_attempt(w: WorkerAttempt) -> anyhow::Result<()> {
    let job = &w.job;
    let engine = WasmEngine::new(w.cache_dir.clone())?;
    let compiled: HashMap<String, CompiledOperator> =
        compile_all(&engine, job)?.into_iter().collect();
    let restore = match &w.restore {
        Some(path) => Some(
            Snapshot::load(path)
                .with_context(|| format!("cannot restore from {}", path.display()))?,
        ),
        None => None,
    };
    let state = StateRoot::new(job)?;
    let scope = WorkerScope {
        attempt_id: w.attempt_id,
        local: w.local,
        data_plane: w.data_plane,
        inbound: w.inbound,
        on_started: Mutex::new(Some(w.on_started)),
    };
    // Savepoint requests reach the cluster's coordinator, never a worker.
    let (_requests_tx, requests) = unbounded();
    let attempt = Attempt {
        job,
        compiled: &compiled,
        state: &state,
        restore: restore.as_ref(),
        allow_non_restored: w.allow_non_restored_state,
        number: w.attempt,
        status: JobStatus::default(),
        requests,
        scope: Some(&scope),
    };
    attempt.run().map(|_| ())
}

/// Checks that a job can start from `snapshot` (the cluster's coordinator
/// does this before any worker starts).
pub fn check_snapshot(
    job: &JobSpec,
    snapshot: &Snapshot,
    allow_non_restored: bool,
) -> anyhow::Result<()> {
    check_restore(job, snapshot, allow_non_restored)
}

/// The snapshot a run of `job` starts from, if any (`--from-savepoint`,
/// `--resume`), checked against the job before anything starts. A fresh
/// run over a directory with checkpoints of an earlier run is refused.
pub fn starting_snapshot(job: &JobSpec, options: &RunOptions) -> anyhow::Result<Option<Snapshot>> {
    let restore = initial_restore(job, options, storage_of(job).as_ref())?;
    if let Some(snapshot) = &restore {
        check_restore(job, snapshot, options.allow_non_restored_state)?;
    }
    Ok(restore)
}

fn initial_restore(
    job: &JobSpec,
    options: &RunOptions,
    storage: Option<&CheckpointStorage>,
) -> anyhow::Result<Option<Snapshot>> {
    if let Some(path) = &options.from_savepoint {
        if options.resume {
            bail!("--resume and --from-savepoint exclude each other");
        }
        return Ok(Some(Snapshot::load(path).with_context(|| {
            format!("cannot restore from savepoint {}", path.display())
        })?));
    }
    let Some(storage) = storage else {
        if options.resume {
            bail!("--resume needs checkpoints: the job file has no [checkpoint] section");
        }
        return Ok(None);
    };
    if options.resume {
        return match storage.latest_valid()? {
            Some(s) => Ok(Some(s)),
            None => bail!(
                "--resume: no complete checkpoint of job `{}` in {}",
                job.name,
                storage.root().display()
            ),
        };
    }
    if storage.has_completed() {
        bail!(
            "{} holds checkpoints of an earlier run of job `{}`; continue it with --resume, \
             or delete that directory to start over",
            storage.root().display(),
            job.name
        );
    }
    Ok(None)
}

/// Refuses, before anything starts, a snapshot this job cannot take.
fn check_restore(
    job: &JobSpec,
    snapshot: &Snapshot,
    allow_non_restored: bool,
) -> anyhow::Result<()> {
    let m = &snapshot.metadata;
    let at = snapshot.dir.display();
    if m.max_parallelism != job.max_parallelism {
        bail!(
            "{at}: taken with max_parallelism {}, but the job has {}; key groups cannot be remapped",
            m.max_parallelism,
            job.max_parallelism
        );
    }
    for s in &m.sources {
        match job.sources.iter().find(|j| j.name == s.source) {
            Some(j) if j.parallelism == s.splits => {}
            Some(j) => bail!(
                "{at}: source `{}` had {} split(s), the job now has {}; sources cannot be rescaled",
                s.source,
                s.splits,
                j.parallelism
            ),
            None if allow_non_restored => {}
            None => bail!(
                "{at}: the snapshot has a position for source `{}`, which the job no longer has; \
                 pass --allow-non-restored-state to drop it",
                s.source
            ),
        }
    }
    for op in &m.operators {
        let Some(spec) = job.operator(&op.name) else {
            if allow_non_restored {
                continue;
            }
            bail!(
                "{at}: the snapshot has state for operator `{}`, which the job no longer has; \
                 pass --allow-non-restored-state to drop it",
                op.name
            );
        };
        let native = op
            .subtasks
            .iter()
            .any(|s| matches!(s.state, StateHandle::Rocksdb { .. }));
        if native
            && (job.state_backend != StateBackendKind::Rocksdb
                || spec.parallelism != op.parallelism)
        {
            bail!(
                "{at}: checkpoint {} holds operator `{}`'s state as native RocksDB files at parallelism {}; \
                 it restores only into RocksDB at that parallelism. Take a savepoint to change the backend or parallelism",
                m.id,
                op.name,
                op.parallelism
            );
        }
    }
    Ok(())
}

impl Attempt<'_> {
    fn run(self) -> anyhow::Result<(Outcome, HashMap<String, Arc<crate::metrics::NodeCounters>>)> {
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
        let (event_tx, event_rx) = unbounded();
        let snapshots = SnapshotContext {
            dirs: Arc::new(Mutex::new(BTreeMap::new())),
            events: event_tx,
            incremental: job.checkpoint.as_ref().is_none_or(|c| c.incremental),
        };
        let chain_tasks = plan.chains.len();
        let mut built = self.build_tasks(plan, &cancel, &snapshots)?;
        let coordinator = if let Some(scope) = self.scope {
            self.bridge(scope, channels, &mut built);
            let started = StartedAttempt {
                source_commands: std::mem::take(&mut built.source_commands),
                sink_commands: std::mem::take(&mut built.sink_commands),
                events: event_rx,
                snapshot_dirs: snapshots.dirs.clone(),
                cancel: cancel.clone(),
            };
            drop(snapshots);
            if let Some(on_started) = scope.on_started.lock().expect("not poisoned").take() {
                on_started(started);
            }
            None
        } else {
            drop(channels); // every end is in a task now
            let coordinator = Coordinator {
                job: job.clone(),
                storage: storage_of(job),
                next_id: self.restore.map_or(1, |s| s.metadata.id + 1),
                events: event_rx,
                requests: self.requests.clone(),
                sources: std::mem::take(&mut built.source_commands)
                    .into_iter()
                    .map(|(_, tx)| tx)
                    .collect(),
                sinks: std::mem::take(&mut built.sink_commands)
                    .into_iter()
                    .map(|(_, tx)| tx)
                    .collect(),
                chain_tasks,
                snapshot_dirs: snapshots.dirs.clone(),
                status: self.status.clone(),
            };
            drop(snapshots); // tasks hold the only event senders now
            Some(coordinator.spawn()?)
        };
        let mut handles = Vec::new();
        for (name, task) in built.tasks {
            let cancel = cancel.clone();
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let result = task();
                    if matches!(result, Err(TaskError::Failed(_))) {
                        cancel.store(true, Ordering::Relaxed);
                    }
                    result
                })
                .with_context(|| format!("cannot start thread for {name}"))?;
            handles.push((name, handle));
        }
        let mut failure: Option<anyhow::Error> = None;
        let mut cancelled = false;
        for (name, handle) in handles {
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
        if let Some(coordinator) = coordinator {
            let _ = coordinator.join();
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(path) = self.status.stopped_at.lock().expect("not poisoned").clone() {
            return Ok((Outcome::Stopped { savepoint: path }, counters));
        }
        if cancelled {
            return Err(anyhow::Error::new(AttemptCancelled {
                job: job.name.clone(),
            }));
        }
        Ok((Outcome::Finished, counters))
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
        for source_plan in plan.sources {
            let spec = job.sources[source_plan.source].clone();
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
            let restore = self.restore.and_then(|s| {
                s.metadata
                    .sources
                    .iter()
                    .find(|r| r.source == spec.name && r.split == source_plan.split)
                    .cloned()
            });
            let task = SourceTask {
                split: source_plan.split,
                source,
                gate: source_plan.gate,
                batch_records_max: job.batch_records_max,
                counters: counters[&spec.name].clone(),
                cancel: cancel.clone(),
                commands: command_rx,
                snapshots: snapshots.clone(),
                restore,
                spec,
            };
            built.tasks.push((
                format!("source-{}-{}", task.spec.name, task.split),
                Box::new(move || task.run()),
            ));
        }
        for chain in plan.chains {
            let mut links = Vec::new();
            for link in chain.links {
                links.push(self.open_link(
                    &job.operators[link.operator],
                    chain.subtask,
                    &uid,
                    link.late_gate,
                    counters,
                )?);
            }
            let name = format!("chain-{}-{}", links[0].instance.label(), chain.subtask);
            let task = ChainTask {
                links,
                inputs: chain.inputs,
                gate: chain.gate,
                batch_records_max: job.batch_records_max,
                snapshots: snapshots.clone(),
            };
            built.tasks.push((name, Box::new(move || task.run())));
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
            let task = SinkTask {
                name: spec.name.clone(),
                sink,
                inputs: sink_plan.inputs,
                counters: counters[&spec.name].clone(),
                commands: command_rx,
                snapshots: snapshots.clone(),
            };
            built
                .tasks
                .push((format!("sink-{}", spec.name), Box::new(move || task.run())));
        }
        Ok(built)
    }

    fn open_link(
        &self,
        spec: &weir_core::job::OperatorSpec,
        subtask: u32,
        uid: &str,
        late_gate: crate::gate::Gate,
        counters: &HashMap<String, Arc<crate::metrics::NodeCounters>>,
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
        let mut config = spec.config.clone();
        config.push(("weir.attempt".into(), self.number.to_string()));
        let info = OperatorInfo {
            name: spec.name.clone(),
            subtask_index: subtask,
            parallelism: spec.parallelism,
            config,
            limits: spec.limits,
        };
        let mut instance = OperatorInstance::open(&self.compiled[&spec.name], &info, keyed)?;
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
            counters: counters[&spec.name].clone(),
        })
    }
}

type Task = Box<dyn FnOnce() -> TaskResult + Send>;

#[derive(Default)]
struct BuiltTasks {
    tasks: Vec<(String, Task)>,
    source_commands: Vec<(TaskId, crossbeam_channel::Sender<SourceCommand>)>,
    sink_commands: Vec<(TaskId, crossbeam_channel::Sender<SinkCommand>)>,
}

/// Where keyed state lives for this run; a temporary directory is removed
/// when the run ends.
struct StateRoot {
    dir: Option<PathBuf>,
    _temp: Option<tempfile::TempDir>,
}

impl StateRoot {
    fn new(job: &JobSpec) -> anyhow::Result<StateRoot> {
        let needs_disk = job.state_backend == StateBackendKind::Rocksdb
            && job.operators.iter().any(|o| o.is_keyed());
        if !needs_disk {
            return Ok(StateRoot {
                dir: None,
                _temp: None,
            });
        }
        match &job.state_dir {
            Some(dir) => Ok(StateRoot {
                dir: Some(dir.join(&job.name)),
                _temp: None,
            }),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix(&format!("weir-{}-", job.name))
                    .tempdir()
                    .context("cannot create a temporary state directory")?;
                Ok(StateRoot {
                    dir: Some(temp.path().to_path_buf()),
                    _temp: Some(temp),
                })
            }
        }
    }

    /// A fresh backend for one operator subtask (with a restored native
    /// checkpoint's files in place), and the RocksDB directory if any.
    fn backend(
        &self,
        job: &JobSpec,
        operator: &str,
        subtask: u32,
        native: Option<(&Path, &[weir_snapshot::metadata::RocksFile])>,
    ) -> anyhow::Result<(Box<dyn StateBackend>, Option<PathBuf>)> {
        match (job.state_backend, &self.dir) {
            (StateBackendKind::Rocksdb, Some(root)) => {
                let dir = root.join(operator).join(subtask.to_string());
                // The live database is a cache: state comes from snapshots.
                for stale in [dir.clone(), dir.with_extension("checkpoints")] {
                    if stale.exists() {
                        std::fs::remove_dir_all(&stale).with_context(|| {
                            format!("cannot clear old state in {}", stale.display())
                        })?;
                    }
                }
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                if let Some((snapshot_dir, files)) = native {
                    download(files, snapshot_dir, &dir).with_context(|| {
                        format!("operator `{operator}`: cannot restore its RocksDB files")
                    })?;
                }
                Ok((Box::new(RocksDbBackend::open(&dir)?), Some(dir)))
            }
            _ => Ok((Box::new(MemoryBackend::new()), None)),
        }
    }
}

/// The sink paths a user reads, for the run summary.
pub fn sink_target(kind: &SinkKind) -> Option<&Path> {
    match kind {
        SinkKind::File { path } => Some(path),
        SinkKind::TransactionalFile { dir } => Some(dir),
        _ => None,
    }
}

fn report(
    job: &JobSpec,
    counters: &HashMap<String, Arc<crate::metrics::NodeCounters>>,
    started: Instant,
) -> JobReport {
    let node = |name: &str, kind, parallelism| {
        NodeReport::from_counters(name, kind, parallelism, &counters[name])
    };
    let nodes = job
        .sources
        .iter()
        .map(|s| node(&s.name, "source", s.parallelism))
        .chain(
            job.operators
                .iter()
                .map(|o| node(&o.name, "operator", o.parallelism)),
        )
        .chain(job.sinks.iter().map(|s| node(&s.name, "sink", 1)))
        .collect();
    JobReport {
        job: job.name.clone(),
        elapsed: started.elapsed(),
        nodes,
        outcome: Outcome::Finished,
        restarts: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_and_jobs_dirs_are_denied_whoever_built_the_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let job_for = |path: &str| {
            let text = format!(
                "[job]\nname = \"j\"\n[[source]]\nname = \"s\"\nkind = \"file\"\npath = \"{path}\"\n[[sink]]\nname = \"k\"\nkind = \"discard\"\ninput = \"s\"\n"
            );
            weir_core::job::parse(&text, &root.join("job.toml")).unwrap()
        };
        let options = RunOptions {
            cache_dir: Some(root.join("cache")),
            control: Some(ControlOptions {
                bind: "127.0.0.1:0".parse().unwrap(),
                bind_any: false,
                jobs_dir: Some(root.join("jobs")),
                savepoint_dir: None,
            }),
            data_roots: Some(DataRoots::new(std::slice::from_ref(&root), &[]).unwrap()),
            ..RunOptions::default()
        };
        for own in ["cache/key", "jobs/other.json"] {
            let e = check_data_paths(&job_for(own), &options)
                .unwrap_err()
                .to_string();
            assert!(e.contains("is inside weir's own directory"), "{e}");
        }
        check_data_paths(&job_for("data/in.txt"), &options).unwrap();
    }
}
