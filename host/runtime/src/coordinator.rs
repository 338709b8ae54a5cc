//! The checkpoint coordinator: triggers barriers at the sources, collects
//! every task's acknowledgement, writes the metadata (which is what makes a
//! checkpoint exist), tells sinks to commit, and serves savepoint and stop
//! requests. One snapshot is in flight at a time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select, unbounded};
use serde::{Deserialize, Serialize};
use weir_core::job::JobSpec;
use weir_snapshot::metadata::now_unix_ms;
use weir_snapshot::{
    CheckpointStorage, FORMAT_VERSION, Metadata, OperatorSnapshot, SinkSnapshot, SourceSnapshot,
    StateInfo, SubtaskSnapshot,
};

use crate::message::Barrier;
use crate::task_snapshot::SnapshotDirs;

/// What a task reports to the coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub enum TaskEvent {
    /// The task's part of snapshot `id` is written.
    Ack { id: u64, part: AckPart },
    /// The task could not snapshot; the snapshot is aborted.
    Declined { id: u64, reason: String },
    /// A sink committed checkpoint `id`'s output.
    Committed { id: u64 },
    /// The task reached the end of its input: no further snapshot can complete.
    Finished,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum AckPart {
    Source(SourceSnapshot),
    /// One chain subtask: each operator's part.
    Chain(Vec<OperatorPart>),
    Sink(SinkSnapshot),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OperatorPart {
    pub operator: String,
    pub parallelism: u32,
    pub states: Vec<StateInfo>,
    pub subtask: SubtaskSnapshot,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum SourceCommand {
    /// Snapshot the position, emit the barrier; with `stop`, then emit nothing more.
    Trigger { barrier: Barrier, stop: bool },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum SinkCommand {
    Commit(u64),
}

/// A user's request, from the control API.
pub struct SavepointRequest {
    pub dir: PathBuf,
    pub stop: bool,
    pub reply: Sender<Result<PathBuf, String>>,
}

/// What the rest of the process may ask of a running job.
#[derive(Clone, Default)]
pub struct JobStatus {
    pub last_checkpoint: Arc<Mutex<Option<u64>>>,
    /// Set once a stop-with-savepoint completed: the job ends by request.
    pub stopped_at: Arc<Mutex<Option<PathBuf>>>,
}

pub(crate) struct Coordinator {
    pub(crate) job: JobSpec,
    pub(crate) storage: Option<CheckpointStorage>,
    pub(crate) next_id: u64,
    pub(crate) events: Receiver<TaskEvent>,
    pub(crate) requests: Receiver<SavepointRequest>,
    pub(crate) sources: Vec<Sender<SourceCommand>>,
    pub(crate) sinks: Vec<Sender<SinkCommand>>,
    /// Chain subtasks that acknowledge each snapshot.
    pub(crate) chain_tasks: usize,
    /// Where tasks write their part of each snapshot.
    pub(crate) snapshot_dirs: SnapshotDirs,
    pub(crate) status: JobStatus,
}

struct Pending {
    id: u64,
    dir: PathBuf,
    savepoint: bool,
    started: Instant,
    sources: Vec<SourceSnapshot>,
    chains: Vec<Vec<OperatorPart>>,
    sinks: Vec<SinkSnapshot>,
    request: Option<SavepointRequest>,
}

/// A stop waiting for the sinks to commit its savepoint.
struct Stopping {
    id: u64,
    path: PathBuf,
    commits_left: usize,
    request: SavepointRequest,
}

const TICK: Duration = Duration::from_millis(20);
/// Savepoint requests waiting behind the one in flight; more are refused
/// (each holds an API connection open until it is answered).
const SAVEPOINT_REQUESTS_QUEUED_MAX: usize = 16;

impl Coordinator {
    /// Runs the coordinator on a thread of its own.
    pub(crate) fn spawn(self) -> anyhow::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("coordinator-{}", self.job.name))
            .spawn(move || self.run())
            .map_err(|e| anyhow::anyhow!("cannot start the checkpoint coordinator: {e}"))
    }

    pub(crate) fn run(mut self) {
        let interval = self
            .job
            .checkpoint
            .as_ref()
            .map(|c| Duration::from_millis(c.interval_ms));
        let timeout = self
            .job
            .checkpoint
            .as_ref()
            .map_or(Duration::from_secs(600), |c| {
                Duration::from_millis(c.timeout_ms)
            });
        let mut next_due = interval.map(|i| Instant::now() + i);
        let mut pending: Option<Pending> = None;
        let mut stopping: Option<Stopping> = None;
        let mut finished = false;
        let mut queued: Vec<SavepointRequest> = Vec::new();
        loop {
            select! {
                recv(self.events) -> event => match event {
                    Err(_) => break, // every task is gone
                    Ok(TaskEvent::Finished) => {
                        finished = true;
                        if let Some(p) = pending.take() {
                            self.abort(p, "the job reached the end of its input");
                        }
                        for r in queued.drain(..) {
                            let _ = r.reply.send(Err("the job reached the end of its input".into()));
                        }
                    }
                    Ok(TaskEvent::Declined { id, reason }) => {
                        if pending.as_ref().is_some_and(|p| p.id == id) {
                            let p = pending.take().expect("checked");
                            self.abort(p, &reason);
                        }
                    }
                    Ok(TaskEvent::Ack { id, part }) => {
                        let Some(p) = pending.as_mut().filter(|p| p.id == id) else { continue };
                        match part {
                            AckPart::Source(s) => p.sources.push(s),
                            AckPart::Chain(c) => p.chains.push(c),
                            AckPart::Sink(s) => p.sinks.push(s),
                        }
                        if p.sources.len() == self.sources.len()
                            && p.chains.len() == self.chain_tasks
                            && p.sinks.len() == self.sinks.len()
                        {
                            let p = pending.take().expect("checked");
                            stopping = self.complete(p);
                            if let Some(s) = &stopping && s.commits_left == 0 {
                                self.finish_stop(stopping.take().expect("checked"));
                                return; // dropping `self` closes every command channel
                            }
                        }
                    }
                    Ok(TaskEvent::Committed { id }) => {
                        if let Some(s) = stopping.as_mut().filter(|s| s.id == id) {
                            s.commits_left -= 1;
                            if s.commits_left == 0 {
                                self.finish_stop(stopping.take().expect("checked"));
                                return; // dropping `self` closes every command channel
                            }
                        }
                    }
                },
                recv(self.requests) -> request => match request {
                    Ok(r) if finished => {
                        let _ = r.reply.send(Err("the job reached the end of its input".into()));
                    }
                    Ok(r) if queued.len() >= SAVEPOINT_REQUESTS_QUEUED_MAX => {
                        let _ = r.reply.send(Err(format!(
                            "{SAVEPOINT_REQUESTS_QUEUED_MAX} savepoint requests are already waiting; try again later"
                        )));
                    }
                    Ok(r) => queued.push(r),
                    // The control API went away; stop listening to it.
                    Err(_) => self.requests = crossbeam_channel::never(),
                },
                default(TICK) => {}
            }
            if let Some(p) = &pending
                && p.started.elapsed() > timeout
            {
                let p = pending.take().expect("checked");
                self.abort(p, "timed out");
            }
            if pending.is_some() || stopping.is_some() || finished {
                continue;
            }
            if !queued.is_empty() {
                let request = queued.remove(0);
                pending = self.trigger(true, Some(request));
            } else if let (Some(due), Some(interval)) = (next_due, interval)
                && Instant::now() >= due
            {
                pending = self.trigger(false, None);
                next_due = Some(Instant::now() + interval);
            }
        }
    }

    fn trigger(&mut self, savepoint: bool, request: Option<SavepointRequest>) -> Option<Pending> {
        let id = self.next_id;
        self.next_id += 1;
        let dir = match (&request, &self.storage) {
            (Some(r), _) => {
                let dir = r.dir.join(format!("savepoint-{}-{id}", self.job.name));
                std::fs::create_dir_all(&dir).map(|_| dir)
            }
            (None, Some(storage)) => storage.create(id).map_err(std::io::Error::other),
            (None, None) => return None,
        };
        let dir = match dir {
            Ok(dir) => dir,
            Err(e) => {
                let message = format!("cannot create the snapshot directory: {e}");
                tracing::warn!(job = %self.job.name, "snapshot {id}: {message}");
                if let Some(r) = request {
                    let _ = r.reply.send(Err(message));
                }
                return None;
            }
        };
        self.snapshot_dirs
            .lock()
            .expect("not poisoned")
            .insert(id, Some(dir.clone()));
        let stop = request.as_ref().is_some_and(|r| r.stop);
        let barrier = Barrier { id, savepoint };
        tracing::debug!(job = %self.job.name, "triggering {} {id}", if savepoint { "savepoint" } else { "checkpoint" });
        for source in &self.sources {
            // A source that already ended cannot answer; the snapshot then
            // aborts when its `Finished` arrives.
            let _ = source.send(SourceCommand::Trigger { barrier, stop });
        }
        Some(Pending {
            id,
            dir,
            savepoint,
            started: Instant::now(),
            sources: Vec::new(),
            chains: Vec::new(),
            sinks: Vec::new(),
            request,
        })
    }

    fn abort(&mut self, p: Pending, reason: &str) {
        // A task's reason may carry a guest's text (a failed snapshot hook).
        let reason = weir_core::text::cut_message(reason);
        tracing::warn!(job = %self.job.name, "snapshot {} aborted: {reason}", p.id);
        // A tombstone: a barrier still in flight must not wait for it.
        self.snapshot_dirs
            .lock()
            .expect("not poisoned")
            .insert(p.id, None);
        let _ = std::fs::remove_dir_all(&p.dir);
        if let Some(r) = p.request {
            let _ = r.reply.send(Err(format!("savepoint aborted: {reason}")));
        }
    }

    fn complete(&mut self, p: Pending) -> Option<Stopping> {
        let mut operators: BTreeMap<String, OperatorSnapshot> = BTreeMap::new();
        for part in p.chains.into_iter().flatten() {
            operators
                .entry(part.operator.clone())
                .or_insert_with(|| OperatorSnapshot {
                    name: part.operator.clone(),
                    parallelism: part.parallelism,
                    states: part.states.clone(),
                    subtasks: Vec::new(),
                })
                .subtasks
                .push(part.subtask);
        }
        let mut operators: Vec<OperatorSnapshot> = operators.into_values().collect();
        for op in &mut operators {
            op.subtasks.sort_by_key(|s| s.subtask);
        }
        let mut sources = p.sources;
        sources.sort_by(|a, b| (&a.source, a.split).cmp(&(&b.source, b.split)));
        let metadata = Metadata {
            format_version: FORMAT_VERSION,
            job: self.job.name.clone(),
            id: p.id,
            savepoint: p.savepoint,
            created_unix_ms: now_unix_ms(),
            max_parallelism: self.job.max_parallelism,
            state_backend: format!("{:?}", self.job.state_backend).to_lowercase(),
            sources,
            operators,
            sinks: p.sinks,
        };
        self.snapshot_dirs
            .lock()
            .expect("not poisoned")
            .remove(&p.id);
        if let Err(e) = metadata.write(&p.dir) {
            let reason = format!("cannot write its metadata: {e}");
            self.abort(
                Pending {
                    sources: Vec::new(),
                    chains: Vec::new(),
                    sinks: Vec::new(),
                    ..p
                },
                &reason,
            );
            return None;
        }
        tracing::info!(
            job = %self.job.name,
            "{} {} complete in {} ms: {}",
            if p.savepoint { "savepoint" } else { "checkpoint" },
            p.id,
            p.started.elapsed().as_millis(),
            p.dir.display()
        );
        *self.status.last_checkpoint.lock().expect("not poisoned") = Some(p.id);
        if let (Some(storage), Some(spec)) = (&self.storage, &self.job.checkpoint)
            && !p.savepoint
            && let Err(e) = storage.prune(spec.retain, p.id)
        {
            tracing::warn!(job = %self.job.name, "cannot delete old checkpoints: {e}");
        }
        for sink in &self.sinks {
            let _ = sink.send(SinkCommand::Commit(p.id));
        }
        match p.request {
            Some(r) if r.stop => Some(Stopping {
                id: p.id,
                path: p.dir,
                commits_left: self.sinks.len(),
                request: r,
            }),
            Some(r) => {
                let _ = r.reply.send(Ok(p.dir));
                None
            }
            None => None,
        }
    }

    /// The stop's savepoint is complete and committed: the job may end.
    /// Sources parked after the stop barrier end when the coordinator drops
    /// their command channels, and the job winds down behind them.
    fn finish_stop(&mut self, s: Stopping) {
        *self.status.stopped_at.lock().expect("not poisoned") = Some(s.path.clone());
        let _ = s.request.reply.send(Ok(s.path));
    }
}

/// Where `job`'s checkpoints go, if it takes any.
pub fn storage_of(job: &JobSpec) -> Option<CheckpointStorage> {
    job.checkpoint
        .as_ref()
        .map(|c| CheckpointStorage::new(&c.dir, &job.name))
}

/// A checkpoint coordinator running on its own thread for a job whose tasks
/// run elsewhere (on a cluster's workers): the caller carries the commands
/// to the tasks and the tasks' events back.
pub struct RemoteCoordinator {
    /// Feed every task's events here.
    pub events: Sender<TaskEvent>,
    /// One command channel per source task, in plan order (see `tasks`).
    pub source_commands: Vec<Receiver<SourceCommand>>,
    /// One command channel per sink task, in plan order.
    pub sink_commands: Vec<Receiver<SinkCommand>>,
    /// Where each snapshot in flight is written; tasks must be told.
    pub snapshot_dirs: SnapshotDirs,
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the checkpoint coordinator of one attempt of `job`, whose next
/// snapshot gets id `next_id`. It ends when every event sender is dropped,
/// or when a stop-with-savepoint completed (then it drops the command
/// channels, which ends the parked sources).
pub fn start_remote_coordinator(
    job: &JobSpec,
    next_id: u64,
    status: JobStatus,
    requests: Receiver<SavepointRequest>,
    source_tasks: usize,
    chain_tasks: usize,
    sink_tasks: usize,
) -> anyhow::Result<RemoteCoordinator> {
    let (events_tx, events) = unbounded();
    let (sources, source_commands): (Vec<_>, Vec<_>) =
        (0..source_tasks).map(|_| unbounded()).unzip();
    let (sinks, sink_commands): (Vec<_>, Vec<_>) = (0..sink_tasks).map(|_| unbounded()).unzip();
    let snapshot_dirs = Arc::new(Mutex::new(BTreeMap::new()));
    let coordinator = Coordinator {
        job: job.clone(),
        storage: storage_of(job),
        next_id,
        events,
        requests,
        sources,
        sinks,
        chain_tasks,
        snapshot_dirs: snapshot_dirs.clone(),
        status,
    };
    let thread = coordinator.spawn()?;
    Ok(RemoteCoordinator {
        events: events_tx,
        source_commands,
        sink_commands,
        snapshot_dirs,
        thread,
    })
}
