//! Runs a [`JobMachine`] on the calling thread: feeds it events, commands
//! and the clock, and carries out its actions with files (snapshot
//! directories, metadata, pruning) and a [`Deployer`] (the tasks).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, never, select};
use serde::{Deserialize, Serialize};
use weir_core::job::JobSpec;
use weir_snapshot::metadata::now_unix_ms;
use weir_snapshot::{CheckpointStorage, OperatorVersion, Snapshot};

use super::command::{Command, CommandId, CommandResult};
use super::machine::{
    Action, AttemptEnd, Input, JobEnd, JobMachine, Parts, Phase, Restore, Settings, Shape, Swap,
    Target,
};
use super::metadata::assemble;
pub use crate::events::SnapshotPlan;
use crate::events::TaskEvent;
use crate::message::Barrier;
use crate::telemetry::JobRegistration;

/// What one attempt runs.
#[derive(Clone)]
pub struct AttemptPlan {
    /// 0 first; guests see it as `weir.attempt`.
    pub number: u32,
    /// The job at this attempt's parallelism.
    pub job: JobSpec,
    pub restore: Option<Snapshot>,
    pub allow_non_restored_state: bool,
    /// The artifact each operator runs.
    pub versions: Vec<OperatorVersion>,
}

/// Where the tasks of an attempt run, and how to reach them.
pub trait Deployer {
    /// What the nodes tell the driver besides task events (an attempt
    /// ended, an upgrade was prepared, a worker was lost).
    type Note: Send + 'static;

    fn notes(&self) -> Receiver<Self::Note>;
    /// Turns a note into what the master needs to know.
    fn note(&mut self, note: Self::Note, now: Instant) -> Vec<Input>;
    /// Called at least every [`TICK`]: a deployer's own deadlines.
    fn tick(&mut self, _now: Instant) -> Vec<Input> {
        Vec::new()
    }
    /// Deploys the attempt. Once this returns `Ok`, the attempt's end must
    /// arrive as exactly one note (or tick) that becomes
    /// [`Input::AttemptEnded`]; after an `Err` nothing of it may be left
    /// running, and no note follows. [`Starting::Pending`]: the deployer
    /// waits for resources and reports [`Input::AttemptStarted`] (or the
    /// end) from a later note or tick; a cancel meanwhile ends it.
    fn start(&mut self, plan: &AttemptPlan) -> Result<Starting, String>;
    /// Tells every node where snapshot `barrier.id` goes, then triggers
    /// every source.
    fn trigger(&mut self, barrier: Barrier, stop: bool, plan: &SnapshotPlan);
    /// Snapshot `id` was aborted: no task may wait for it.
    fn abort(&mut self, id: u64);
    fn commit(&mut self, id: u64);
    /// A stop's savepoint is committed: the parked sources may end.
    fn release_sources(&mut self);
    /// Builds and opens the new version on every node that runs the
    /// operator; the result arrives as a note (after an `Err` here, none).
    fn prepare(
        &mut self,
        upgrade: CommandId,
        swap: &Swap,
        plan: &AttemptPlan,
    ) -> Result<(), String>;
    fn discard(&mut self, upgrade: CommandId);
    fn cancel(&mut self);
}

/// How a deployment began.
pub enum Starting {
    /// The tasks run; their events arrive here.
    Ready(Shape, Receiver<TaskEvent>),
    /// Waiting (for slots); the start is reported later.
    Pending,
}

/// How often the driver looks at the clock when nothing happens.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(20);

/// A user's command and where its answer goes.
pub struct CommandRequest {
    pub command: Command,
    pub reply: Sender<CommandResult>,
}

/// What the APIs show of a running job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobView {
    pub name: String,
    pub state: String,
    pub attempt: u32,
    pub restarts: u32,
    pub last_checkpoint: Option<u64>,
    /// Each operator's artifact and the versions it ran before.
    pub versions: Vec<OperatorVersion>,
    /// Each operator's parallelism in the current attempt.
    pub parallelism: BTreeMap<String, u32>,
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<PathBuf>,
    /// When the job master started.
    #[serde(default)]
    pub started_unix_ms: u64,
    /// The current attempt's graph.
    #[serde(default)]
    pub graph: JobGraph,
    /// The last [`CHECKPOINTS_KEPT`] snapshots tried, newest last.
    #[serde(default)]
    pub checkpoints: Vec<CheckpointRecord>,
}

/// How many snapshots [`JobView::checkpoints`] remembers.
pub const CHECKPOINTS_KEPT: usize = 50;

/// Sources, operators and sinks, and the streams between them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobGraph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    pub name: String,
    /// "source", "operator" or "sink".
    pub kind: String,
    pub parallelism: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    /// "forward", "rebalance", "hash" or "broadcast".
    pub kind: String,
    /// The edge carries `from`'s late records (its side output).
    pub late: bool,
}

/// One checkpoint or savepoint the job master started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub id: u64,
    pub savepoint: bool,
    pub started_unix_ms: u64,
    /// Trigger to metadata written (completed) or to the abort.
    pub duration_ms: u64,
    /// Bytes of the files its metadata lists (0 when aborted).
    pub bytes: u64,
    /// "completed" or "aborted".
    pub status: String,
    /// Why it was aborted.
    pub reason: Option<String>,
}

impl JobGraph {
    /// The graph of `job` at its parallelism.
    pub fn of(job: &JobSpec) -> JobGraph {
        let node = |name: &str, kind: &str, parallelism| GraphNode {
            name: name.to_string(),
            kind: kind.to_string(),
            parallelism,
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
        let mut edges = Vec::new();
        for op in &job.operators {
            for input in &op.inputs {
                edges.push(GraphEdge {
                    from: input.stream.node.clone(),
                    to: op.name.clone(),
                    kind: edge_name(input.edge).into(),
                    late: input.stream.late,
                });
            }
        }
        for sink in &job.sinks {
            for stream in &sink.inputs {
                // A sink has one subtask: every producer subtask feeds it
                // (the plan round-robins over that one), forward from one.
                let producers = job.parallelism_of(&stream.node).unwrap_or(1);
                edges.push(GraphEdge {
                    from: stream.node.clone(),
                    to: sink.name.clone(),
                    kind: if producers > 1 {
                        "rebalance"
                    } else {
                        "forward"
                    }
                    .into(),
                    late: stream.late,
                });
            }
        }
        JobGraph { nodes, edges }
    }
}

fn edge_name(edge: weir_core::job::Edge) -> &'static str {
    use weir_core::job::Edge;
    match edge {
        Edge::Forward => "forward",
        Edge::Rebalance => "rebalance",
        Edge::Hash => "hash",
        Edge::Broadcast => "broadcast",
    }
}

pub type SharedView = Arc<Mutex<JobView>>;

/// Rewrites the job for an attempt: parallelism, and the artifact each
/// operator runs. Embedded and cluster resolve artifacts differently.
pub type Reshape = dyn Fn(&JobSpec, &AttemptInputs) -> Result<JobSpec, String> + Send;

/// What shapes an attempt's job besides the submitted file.
pub struct AttemptInputs<'a> {
    /// Every rescale so far, oldest first: (operator or all, parallelism).
    pub rescales: &'a [(Option<String>, u32)],
    pub versions: &'a [OperatorVersion],
}

/// The submitted job after `rescales`, applied in order.
pub fn apply_rescales(
    job: &JobSpec,
    rescales: &[(Option<String>, u32)],
) -> Result<JobSpec, String> {
    let mut job = job.clone();
    for (operator, parallelism) in rescales {
        job = crate::rescale::rescaled(&job, operator.as_deref(), *parallelism)?;
    }
    Ok(job)
}

pub struct Driver<D: Deployer> {
    pub job: JobSpec,
    pub deployer: D,
    pub storage: Option<CheckpointStorage>,
    /// The snapshot the first attempt restores from (`--from-savepoint`,
    /// `--resume`, or a submission's).
    pub initial_restore: Option<Snapshot>,
    /// Whether the initial snapshot's recorded versions replace the job
    /// file's artifacts (a resume; not a savepoint restored into a new
    /// job file, whose artifacts are what the user asks for).
    pub initial_versions_from_snapshot: bool,
    pub allow_non_restored_state: bool,
    pub commands: Receiver<CommandRequest>,
    pub view: SharedView,
    /// Builds an attempt's job (parallelism, artifacts).
    pub reshape: Box<Reshape>,
    /// The artifact each operator of the submitted job runs.
    pub initial_versions: Vec<OperatorVersion>,
}

/// How the job ended, with the attempt count.
#[derive(Debug, Clone)]
pub struct DriverEnd {
    pub end: JobEnd,
    pub restarts: u32,
}

struct Running {
    events: Receiver<TaskEvent>,
    plan: AttemptPlan,
}

impl<D: Deployer> Driver<D> {
    pub fn run(self) -> DriverEnd {
        let Driver {
            job,
            mut deployer,
            storage,
            initial_restore,
            initial_versions_from_snapshot,
            allow_non_restored_state,
            commands,
            view,
            reshape,
            initial_versions,
        } = self;
        let settings = Settings {
            checkpoint_interval: job
                .checkpoint
                .as_ref()
                .map(|c| std::time::Duration::from_millis(c.interval_ms)),
            checkpoint_timeout: job
                .checkpoint
                .as_ref()
                .map_or(std::time::Duration::from_secs(600), |c| {
                    std::time::Duration::from_millis(c.timeout_ms)
                }),
            checkpoints: storage.is_some(),
            restart_attempts: job.restart.attempts,
            restart_delay: std::time::Duration::from_millis(job.restart.delay_ms),
            operators: job
                .operators
                .iter()
                .map(|o| (o.name.clone(), o.parallelism))
                .collect(),
        };
        let mut versions = initial_versions;
        if let Some(s) = &initial_restore {
            versions = carry_versions(versions, s, initial_versions_from_snapshot);
        }
        let mut machine = JobMachine::new(
            settings,
            initial_restore.as_ref().map_or(1, |s| s.metadata.id + 1),
            versions,
        );
        if let Some(s) = &initial_restore {
            machine.restored_from(s.metadata.id);
        }
        let mut state = DriverState {
            job: &job,
            storage: storage.as_ref(),
            previous_restore: initial_restore,
            allow_non_restored_state,
            reshape: &*reshape,
            running: None,
            dirs: HashMap::new(),
            aborted_dirs: Vec::new(),
            replies: HashMap::new(),
            next_command: 1,
            view: &view,
            started: HashMap::new(),
            checkpoints: VecDeque::new(),
            metrics: JobRegistration::new(&job.name),
        };
        view.lock().expect("not poisoned").started_unix_ms = now_unix_ms();
        let notes = deployer.notes();
        let mut commands = commands;
        loop {
            if let Some(end) = state.execute(&mut machine, &mut deployer) {
                // The attempt's tasks are gone: nothing writes there now.
                state.remove_aborted_dirs(true);
                state.publish(&machine, Some(&end));
                for (_, reply) in state.replies.drain() {
                    let _ = reply.send(Err("the job has ended".into()));
                }
                return DriverEnd {
                    end,
                    restarts: machine.restarts(),
                };
            }
            state.publish(&machine, None);
            let events = state
                .running
                .as_ref()
                .map_or_else(never, |r| r.events.clone());
            let wait = machine
                .next_wakeup()
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(TICK)
                .min(TICK);
            let mut inputs = Vec::new();
            select! {
                recv(events) -> event => match event {
                    Ok(event) => inputs.push(Input::Task(event)),
                    // Every task of the attempt is gone; its end follows as a note.
                    Err(_) => if let Some(r) = &mut state.running { r.events = never() },
                },
                recv(notes) -> note => if let Ok(note) = note {
                    inputs.extend(deployer.note(note, Instant::now()));
                },
                recv(commands) -> request => match request {
                    Ok(CommandRequest { command, reply }) => {
                        // A shape the job cannot take is refused before
                        // any savepoint is taken for it.
                        if let Command::Rescale { parallelism, operator, .. } = &command {
                            let mut rescales = machine.rescales().to_vec();
                            rescales.push((operator.clone(), *parallelism));
                            let inputs = AttemptInputs { rescales: &rescales, versions: &[] };
                            if let Err(e) = (state.reshape)(state.job, &inputs) {
                                let _ = reply.send(Err(e));
                                continue;
                            }
                        }
                        let id = state.next_command;
                        state.next_command += 1;
                        state.replies.insert(id, reply);
                        inputs.push(Input::Command { id, command });
                    }
                    Err(_) => commands = never(),
                },
                default(wait) => {}
            }
            let now = Instant::now();
            inputs.extend(deployer.tick(now));
            for input in inputs {
                machine.handle(input, now);
            }
            machine.poll(now);
        }
    }
}

struct DriverState<'a> {
    job: &'a JobSpec,
    storage: Option<&'a CheckpointStorage>,
    /// What the last attempt restored from: a failover with no newer
    /// checkpoint restores from it again.
    previous_restore: Option<Snapshot>,
    allow_non_restored_state: bool,
    reshape: &'a Reshape,
    running: Option<Running>,
    dirs: HashMap<u64, PathBuf>,
    /// Directories of aborted snapshots, and whether they were deleted: a
    /// task may still be writing its part when the abort is decided (a
    /// snapshot cut short by the end of the input), so deleting can fail,
    /// or succeed before the task writes again.
    aborted_dirs: Vec<(u64, PathBuf, bool)>,
    replies: HashMap<CommandId, Sender<CommandResult>>,
    next_command: CommandId,
    view: &'a SharedView,
    /// Snapshots in flight: when each was triggered (clock, wall ms) and
    /// whether it is a savepoint.
    started: HashMap<u64, (Instant, u64, bool)>,
    checkpoints: VecDeque<CheckpointRecord>,
    metrics: JobRegistration,
}

impl DriverState<'_> {
    /// Carries out everything the machine decided (and what that leads
    /// to); returns how the job ended once it has.
    fn execute<D: Deployer>(
        &mut self,
        machine: &mut JobMachine,
        deployer: &mut D,
    ) -> Option<JobEnd> {
        let mut ended = None;
        loop {
            let actions = machine.drain();
            if actions.is_empty() {
                return ended;
            }
            for action in actions {
                if let Action::JobEnded(end) = action {
                    ended = Some(end);
                    continue;
                }
                if let Some(input) = self.act(action, machine, deployer) {
                    if let Input::AttemptEnded(_) = &input {
                        self.running = None;
                    }
                    machine.handle(input, Instant::now());
                }
            }
        }
    }

    fn reply(&mut self, command: CommandId, result: CommandResult) {
        if let Some(reply) = self.replies.remove(&command) {
            let _ = reply.send(result);
        }
    }

    fn act<D: Deployer>(
        &mut self,
        action: Action,
        machine: &mut JobMachine,
        deployer: &mut D,
    ) -> Option<Input> {
        let job = self.job;
        match action {
            Action::StartAttempt {
                number,
                restore,
                rescales,
                versions,
            } => {
                {
                    let mut view = self.view.lock().expect("not poisoned");
                    view.state = "scheduling".into();
                    view.attempt = number;
                }
                self.start(number, restore, rescales, versions, machine, deployer)
            }
            Action::CancelAttempt => {
                deployer.cancel();
                None
            }
            Action::Trigger {
                id,
                savepoint,
                stop,
                target,
                swaps,
            } => {
                let dir = match (&target, self.storage) {
                    (Target::Savepoint(root), _) => {
                        let dir = root.join(format!("savepoint-{}-{id}", job.name));
                        weir_snapshot::remote::create(&dir, &crate::store_options(job))
                            .map(|_| dir)
                            .map_err(|e| e.to_string())
                    }
                    (Target::Checkpoint, Some(storage)) => {
                        storage.create(id).map_err(|e| e.to_string())
                    }
                    (Target::Checkpoint, None) => Err("the job has no checkpoint storage".into()),
                };
                match dir {
                    Ok(dir) => {
                        tracing::debug!(job = %job.name, "triggering {} {id}", if savepoint { "savepoint" } else { "checkpoint" });
                        self.started
                            .insert(id, (Instant::now(), now_unix_ms(), savepoint));
                        self.dirs.insert(id, dir.clone());
                        deployer.trigger(
                            Barrier { id, savepoint },
                            stop,
                            &SnapshotPlan { dir, swaps },
                        );
                        None
                    }
                    Err(reason) => Some(Input::SnapshotFailed { id, reason }),
                }
            }
            Action::Abort { id, reason } => {
                if machine.input_ended() {
                    // A bounded job ending between barriers: nothing wrong.
                    tracing::info!(job = %job.name, "snapshot {id} aborted: {reason}");
                } else {
                    tracing::warn!(job = %job.name, "snapshot {id} aborted: {reason}");
                }
                self.finished_snapshot(id, 0, Some(reason));
                deployer.abort(id);
                if let Some(dir) = self.dirs.remove(&id) {
                    self.aborted_dirs.push((id, dir, false));
                    self.remove_aborted_dirs(false);
                }
                None
            }
            Action::WriteMetadata {
                id,
                savepoint,
                parts,
                versions,
            } => Some(self.write_metadata(id, savepoint, parts, versions)),
            Action::Prune { id } => {
                self.remove_aborted_dirs(false);
                if let (Some(storage), Some(spec)) = (self.storage, &job.checkpoint)
                    && let Err(e) = storage.prune(spec.retain, id)
                {
                    tracing::warn!(job = %job.name, "cannot delete old checkpoints: {e}");
                }
                None
            }
            Action::CommitSinks { id } => {
                deployer.commit(id);
                None
            }
            Action::ReleaseSources => {
                deployer.release_sources();
                None
            }
            Action::Prepare { upgrade, swap } => {
                let result = match &self.running {
                    Some(running) => deployer.prepare(upgrade, &swap, &running.plan),
                    None => Err("the job is not running".into()),
                };
                result.err().map(|e| Input::Prepared {
                    upgrade,
                    result: Err(e),
                })
            }
            Action::DiscardPrepared { upgrade } => {
                deployer.discard(upgrade);
                None
            }
            Action::Reply { command, result } => {
                if let Err(e) = &result {
                    tracing::warn!(job = %job.name, "command failed: {e}");
                }
                self.reply(command, result);
                None
            }
            Action::Restarting { restarts, reason } => {
                let reason = weir_core::text::cut_message(&reason);
                tracing::info!(job = %job.name, "restart {restarts} of {} in {} ms", job.restart.attempts, job.restart.delay_ms);
                eprintln!(
                    "weir: job `{}` failed ({reason}); restarting ({restarts}/{})",
                    job.name, job.restart.attempts
                );
                let mut view = self.view.lock().expect("not poisoned");
                view.error = Some(reason);
                None
            }
            Action::JobEnded(_) => None, // `execute` takes it
        }
    }

    /// Deletes what aborted snapshots left. One that cannot be deleted yet
    /// is tried again after the next completed checkpoint; at the end
    /// (`last`, when no task is left to write), every one is deleted
    /// again and a failure is reported.
    fn remove_aborted_dirs(&mut self, last: bool) {
        let job = self.job;
        let options = crate::store_options(job);
        for (id, dir, deleted) in &mut self.aborted_dirs {
            if *deleted && !last {
                continue;
            }
            match weir_snapshot::remote::remove(dir, &options) {
                Ok(()) => *deleted = true,
                Err(e) if last => {
                    tracing::warn!(job = %job.name, "cannot delete aborted snapshot {id}: {e}")
                }
                Err(e) => {
                    tracing::debug!(job = %job.name, "aborted snapshot {id} not deleted yet: {e}")
                }
            }
        }
        if last {
            self.aborted_dirs.clear();
        }
    }

    fn start<D: Deployer>(
        &mut self,
        number: u32,
        restore: Restore,
        rescales: Vec<(Option<String>, u32)>,
        versions: Vec<OperatorVersion>,
        machine: &mut JobMachine,
        deployer: &mut D,
    ) -> Option<Input> {
        let failed = |e: String| Some(Input::AttemptEnded(AttemptEnd::Failed(e)));
        let snapshot = match restore {
            Restore::Savepoint(path) => {
                match Snapshot::load_with(&path, &crate::store_options(self.job)) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        return failed(format!("cannot restore from {}: {e}", path.display()));
                    }
                }
            }
            // The first attempt starts from what the run was given.
            Restore::Latest if number == 0 => self.previous_restore.clone(),
            // The newest snapshot: a checkpoint, or what the previous
            // attempt restored (a rescale's savepoint is newer than every
            // checkpoint before it, and holds the new shape).
            Restore::Latest => match self.storage.map(CheckpointStorage::latest_valid) {
                Some(Ok(Some(latest)))
                    if self
                        .previous_restore
                        .as_ref()
                        .is_none_or(|p| p.metadata.id < latest.metadata.id) =>
                {
                    Some(latest)
                }
                Some(Err(e)) => return failed(format!("cannot look for checkpoints: {e}")),
                _ => self.previous_restore.clone(),
            },
        };
        // What a failover of this attempt falls back to, whether or not
        // it gets to run.
        self.previous_restore = snapshot.clone();
        let mut versions = versions;
        if let Some(s) = &snapshot
            && number > 0
        {
            // A failover: the snapshot says which code its state belongs to.
            versions = carry_versions(versions, s, true);
            machine.set_versions(versions.clone());
            machine.restored_from(s.metadata.id);
        }
        let inputs = AttemptInputs {
            rescales: &rescales,
            versions: &versions,
        };
        let job = match (self.reshape)(self.job, &inputs) {
            Ok(job) => job,
            Err(e) => return failed(e),
        };
        if let Some(s) = &snapshot
            && let Err(e) = crate::restore::check_restore(&job, s, self.allow_non_restored_state)
        {
            return failed(crate::cut_error(&e));
        }
        if number > 0 {
            tracing::info!(
                job = %job.name,
                "attempt {number} from {}",
                snapshot.as_ref().map_or("the beginning".to_string(), |s| s.location.display().to_string())
            );
        }
        let plan = AttemptPlan {
            number,
            job,
            restore: snapshot,
            allow_non_restored_state: self.allow_non_restored_state,
            versions,
        };
        {
            let mut view = self.view.lock().expect("not poisoned");
            view.parallelism = plan
                .job
                .operators
                .iter()
                .map(|o| (o.name.clone(), o.parallelism))
                .collect();
            view.graph = JobGraph::of(&plan.job);
        }
        match deployer.start(&plan) {
            Ok(Starting::Ready(shape, events)) => {
                self.running = Some(Running { events, plan });
                Some(Input::AttemptStarted { shape })
            }
            Ok(Starting::Pending) => {
                self.running = Some(Running {
                    events: never(),
                    plan,
                });
                None
            }
            Err(e) => {
                tracing::warn!(job = %plan.job.name, "attempt {number} could not start: {e}");
                Some(Input::AttemptEnded(AttemptEnd::Failed(e)))
            }
        }
    }

    fn write_metadata(
        &mut self,
        id: u64,
        savepoint: bool,
        parts: Parts,
        mut versions: Vec<OperatorVersion>,
    ) -> Input {
        let unix_ms = now_unix_ms();
        for v in &mut versions {
            for record in &mut v.history {
                if record.checkpoint == Some(id) && record.since_unix_ms == 0 {
                    record.since_unix_ms = unix_ms;
                }
            }
        }
        let Some(dir) = self.dirs.remove(&id) else {
            return Input::MetadataWritten {
                id,
                dir: PathBuf::new(),
                unix_ms,
                result: Err("no directory was created for it".into()),
            };
        };
        let metadata = assemble(self.job, id, savepoint, parts, versions, unix_ms);
        let result =
            weir_snapshot::remote::write_metadata(&metadata, &dir, &crate::store_options(self.job))
                .map_err(|e| e.to_string());
        if result.is_ok() {
            let bytes = metadata.files().iter().map(|f| f.size).sum();
            self.finished_snapshot(id, bytes, None);
            tracing::info!(
                job = %self.job.name,
                "{} {id} complete: {}",
                if savepoint { "savepoint" } else { "checkpoint" },
                dir.display()
            );
        } else {
            // Keep the directory known so the abort that follows deletes it.
            self.dirs.insert(id, dir.clone());
        }
        Input::MetadataWritten {
            id,
            dir,
            unix_ms,
            result,
        }
    }

    /// Records how snapshot `id` ended: completed with `bytes` of files,
    /// or aborted for `reason`.
    fn finished_snapshot(&mut self, id: u64, bytes: u64, reason: Option<String>) {
        let Some((started, started_unix_ms, savepoint)) = self.started.remove(&id) else {
            return; // aborted before it was triggered, or already recorded
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        if reason.is_none() {
            self.metrics.update(|stats| {
                stats.checkpoint_duration_ms = Some(duration_ms);
                stats.checkpoint_bytes = Some(bytes);
            });
        }
        if self.checkpoints.len() == CHECKPOINTS_KEPT {
            self.checkpoints.pop_front();
        }
        self.checkpoints.push_back(CheckpointRecord {
            id,
            savepoint,
            started_unix_ms,
            duration_ms,
            bytes,
            status: if reason.is_none() {
                "completed"
            } else {
                "aborted"
            }
            .into(),
            reason: reason.map(|r| weir_core::text::cut_message(&r)),
        });
    }

    fn publish(&self, machine: &JobMachine, end: Option<&JobEnd>) {
        self.metrics.update(|stats| {
            stats.restarts = machine.restarts();
            stats.last_checkpoint = machine.last_checkpoint();
            stats.versions = machine
                .versions()
                .into_iter()
                .map(|v| (v.operator, v.digest))
                .collect();
        });
        let mut view = self.view.lock().expect("not poisoned");
        if view.checkpoints.len() != self.checkpoints.len()
            || view.checkpoints.last() != self.checkpoints.back()
        {
            view.checkpoints = self.checkpoints.iter().cloned().collect();
        }
        view.name = self.job.name.clone();
        view.attempt = machine.attempt();
        view.restarts = machine.restarts();
        view.last_checkpoint = machine.last_checkpoint();
        view.versions = machine.versions();
        view.state = match (end, machine.phase()) {
            (Some(JobEnd::Finished), _) => "finished",
            (Some(JobEnd::Stopped { savepoint }), _) => {
                view.savepoint = Some(savepoint.clone());
                "stopped"
            }
            (Some(JobEnd::Cancelled), _) => "cancelled",
            (Some(JobEnd::Failed(e)), _) => {
                view.error = Some(weir_core::text::cut_message(e));
                "failed"
            }
            (None, Phase::Starting) => "scheduling",
            (None, Phase::Running) => "running",
            (None, Phase::Restarting) => "restarting",
            (None, Phase::Ended) => "ended",
        }
        .to_string();
    }
}

/// The versions an attempt starting from `snapshot` runs: the snapshot's
/// (when `from_snapshot`: a resume or failover) or the job file's, with the
/// snapshot's history before them.
pub fn carry_versions(
    current: Vec<OperatorVersion>,
    snapshot: &Snapshot,
    from_snapshot: bool,
) -> Vec<OperatorVersion> {
    let recorded: BTreeMap<&str, &OperatorVersion> = snapshot
        .metadata
        .versions
        .iter()
        .map(|v| (v.operator.as_str(), v))
        .collect();
    current
        .into_iter()
        .map(|mine| match recorded.get(mine.operator.as_str()) {
            Some(theirs) if from_snapshot => (*theirs).clone(),
            Some(theirs) if theirs.digest == mine.digest => (*theirs).clone(),
            Some(theirs) => {
                let mut v = (*theirs).clone();
                v.digest = mine.digest.clone();
                v.history.push(weir_snapshot::VersionRecord {
                    digest: mine.digest,
                    checkpoint: Some(snapshot.metadata.id),
                    since_unix_ms: now_unix_ms(),
                });
                v
            }
            None => mine,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(text: &str) -> JobSpec {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(&path, text).unwrap();
        weir_core::job::load(&path).expect("job parses")
    }

    #[test]
    fn the_graph_has_every_node_and_edge_with_its_kind() {
        let spec = job(r#"
[job]
name = "graph"

[[source]]
name = "events"
kind = "generator"
records = 10
parallelism = 2

[[operator]]
name = "count"
wasm = "count.wasm"
input = "events"
edge = "hash"
parallelism = 3
late_records = "side-output"

[[sink]]
name = "out"
kind = "discard"
input = "count"

[[sink]]
name = "late"
kind = "discard"
input = "count.late"
"#);
        let graph = JobGraph::of(&spec);
        let nodes: Vec<(&str, &str, u32)> = graph
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.kind.as_str(), n.parallelism))
            .collect();
        assert_eq!(
            nodes,
            [
                ("events", "source", 2),
                ("count", "operator", 3),
                ("out", "sink", 1),
                ("late", "sink", 1)
            ]
        );
        let edges: Vec<(&str, &str, &str, bool)> = graph
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.kind.as_str(), e.late))
            .collect();
        assert_eq!(
            edges,
            [
                ("events", "count", "hash", false),
                ("count", "out", "rebalance", false),
                ("count", "late", "rebalance", true)
            ]
        );
        let view = JobView {
            graph,
            started_unix_ms: 5,
            checkpoints: vec![CheckpointRecord {
                id: 3,
                savepoint: false,
                started_unix_ms: 6,
                duration_ms: 7,
                bytes: 8,
                status: "completed".into(),
                reason: None,
            }],
            ..JobView::default()
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["graph"]["edges"][2]["late"], true);
        assert_eq!(json["checkpoints"][0]["status"], "completed");
        assert!(json["checkpoints"][0]["reason"].is_null());
        let back: JobView = serde_json::from_value(json).unwrap();
        assert_eq!(back.checkpoints, view.checkpoints);
        // A reply from an older node, without the new fields, still reads.
        let old: JobView = serde_json::from_str(
            r#"{"name":"j","state":"running","attempt":0,"restarts":0,"last_checkpoint":null,
                "versions":[],"parallelism":{},"error":null}"#,
        )
        .unwrap();
        assert!(old.checkpoints.is_empty());
    }
}
