//! One thread per submitted job: places its tasks in slots, deploys them,
//! runs its checkpoint coordinator, and when a task fails or a worker is
//! lost, cancels the attempt everywhere and starts the next one from the
//! latest complete checkpoint on whatever slots are left (or on a
//! replacement worker, once one registers).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};
use weir_core::job::JobSpec;
use weir_core::text::cut_message;
use weir_runtime::{
    JobStatus, SavepointRequest, SourceCommand, TaskEvent, TaskId, check_snapshot,
    start_remote_coordinator,
};
use weir_snapshot::{CheckpointStorage, Snapshot};

use crate::coordinator::Cluster;
use crate::placement::slots_used;
use crate::protocol::{AttemptResult, Deployment, ToWorker, WorkerId};

/// How long a job waits for enough free slots before it fails.
pub const SLOT_WAIT: Duration = Duration::from_secs(60);
/// How long a cancelled attempt's workers get to wind down.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Scheduling,
    Running,
    Restarting,
    Finished,
    Stopped,
    Cancelled,
    Failed,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Stopped | JobState::Cancelled | JobState::Failed
        )
    }
}

/// What `GET /jobs` shows of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInfo {
    pub name: String,
    pub state: JobState,
    pub attempt: u32,
    pub restarts: u32,
    pub last_checkpoint: Option<u64>,
    /// Workers of the current attempt, with the number of slots each gives.
    pub workers: BTreeMap<WorkerId, u32>,
    pub savepoint: Option<PathBuf>,
    pub error: Option<String>,
    /// When the job reached a terminal state, for pruning.
    #[serde(skip)]
    pub ended_at: Option<Instant>,
}

pub(crate) enum JobInput {
    Event {
        attempt: u32,
        event: TaskEvent,
    },
    Ended {
        worker: WorkerId,
        attempt: u32,
        result: AttemptResult,
    },
    WorkerLost {
        worker: WorkerId,
    },
    Cancel,
}

pub(crate) struct JobEntry {
    pub(crate) inbox: Sender<JobInput>,
    pub(crate) info: Arc<Mutex<JobInfo>>,
    pub(crate) requests: Sender<SavepointRequest>,
    /// Default directory for savepoints.
    pub(crate) savepoint_dir: Option<PathBuf>,
    /// Digests of the artifacts it runs (kept while it runs).
    pub(crate) artifacts: BTreeSet<String>,
}

/// A job as submitted, with its artifacts resolved.
pub(crate) struct Submission {
    pub(crate) job: JobSpec,
    pub(crate) job_toml: String,
    pub(crate) job_path: PathBuf,
    pub(crate) artifacts: BTreeMap<String, String>,
    pub(crate) restore: Option<Snapshot>,
    pub(crate) allow_non_restored_state: bool,
}

pub(crate) fn start(cluster: Arc<Cluster>, s: Submission) -> anyhow::Result<()> {
    let (inbox, inputs) = crossbeam_channel::unbounded();
    let (requests_tx, requests) = crossbeam_channel::unbounded();
    let info = Arc::new(Mutex::new(JobInfo {
        name: s.job.name.clone(),
        state: JobState::Scheduling,
        attempt: 0,
        restarts: 0,
        last_checkpoint: s.restore.as_ref().map(|r| r.metadata.id),
        workers: BTreeMap::new(),
        savepoint: None,
        error: None,
        ended_at: None,
    }));
    let status = JobStatus::default();
    {
        let mut jobs = cluster.jobs.lock().expect("not poisoned");
        if let Some(existing) = jobs.get(&s.job.name)
            && !existing
                .info
                .lock()
                .expect("not poisoned")
                .state
                .is_terminal()
        {
            anyhow::bail!("a job named `{}` is already running", s.job.name);
        }
        jobs.insert(
            s.job.name.clone(),
            JobEntry {
                inbox,
                info: info.clone(),
                requests: requests_tx,
                savepoint_dir: s.job.checkpoint.as_ref().map(|c| c.dir.join("savepoints")),
                artifacts: s.artifacts.values().cloned().collect(),
            },
        );
    }
    cluster.prune_jobs();
    let master = JobMaster {
        cluster,
        s,
        inputs,
        requests,
        info,
        status,
    };
    std::thread::Builder::new()
        .name(format!("job-{}", master.s.job.name))
        .spawn(move || master.run())?;
    Ok(())
}

struct JobMaster {
    cluster: Arc<Cluster>,
    s: Submission,
    inputs: Receiver<JobInput>,
    requests: Receiver<SavepointRequest>,
    info: Arc<Mutex<JobInfo>>,
    status: JobStatus,
}

enum AttemptEnd {
    Finished,
    Stopped(PathBuf),
    Cancelled,
    Failed(String),
}

impl JobMaster {
    fn update(&self, f: impl FnOnce(&mut JobInfo)) {
        f(&mut self.info.lock().expect("not poisoned"));
    }

    fn run(self) {
        let job = &self.s.job;
        let storage = weir_runtime::storage_of(job);
        let mut restore = self.s.restore.clone();
        let mut attempt = 0;
        let mut restarts = 0;
        loop {
            let end = self.attempt(attempt, restore.as_ref());
            let (state, error) = match end {
                AttemptEnd::Finished => (JobState::Finished, None),
                AttemptEnd::Stopped(path) => {
                    self.update(|i| i.savepoint = Some(path));
                    (JobState::Stopped, None)
                }
                AttemptEnd::Cancelled => (JobState::Cancelled, None),
                AttemptEnd::Failed(e) if restarts < job.restart.attempts => {
                    restarts += 1;
                    attempt += 1;
                    if let Some(Ok(Some(latest))) =
                        storage.as_ref().map(CheckpointStorage::latest_valid)
                    {
                        restore = Some(latest);
                    }
                    let from = restore
                        .as_ref()
                        .map_or("the beginning".to_string(), |s| s.dir.display().to_string());
                    tracing::warn!(job = %job.name, "{e}; restart {restarts} of {} from {from}", job.restart.attempts);
                    eprintln!(
                        "weir: job `{}` failed ({e}); restarting ({restarts}/{}) from {from}",
                        job.name, job.restart.attempts
                    );
                    self.update(|i| {
                        i.state = JobState::Restarting;
                        i.restarts = restarts;
                        i.error = Some(cut_message(&e));
                    });
                    std::thread::sleep(Duration::from_millis(job.restart.delay_ms));
                    continue;
                }
                AttemptEnd::Failed(e) if restarts > 0 => (
                    JobState::Failed,
                    Some(format!(
                        "job `{}` failed after {restarts} restart(s): {e}",
                        job.name
                    )),
                ),
                AttemptEnd::Failed(e) => (
                    JobState::Failed,
                    Some(format!("job `{}` failed: {e}", job.name)),
                ),
            };
            tracing::info!(job = %job.name, "job ended: {state:?}");
            eprintln!(
                "weir: job `{}` {}",
                job.name,
                match &error {
                    Some(e) => e.clone(),
                    None => format!("{state:?}").to_lowercase(),
                }
            );
            self.update(|i| {
                i.state = state;
                i.error = error.as_deref().map(cut_message);
                i.workers.clear();
                i.ended_at = Some(Instant::now());
            });
            return;
        }
    }

    /// Waits for slots and reserves them.
    fn placement(&self, tasks: &[TaskId]) -> Result<Vec<(TaskId, WorkerId)>, AttemptEnd> {
        let deadline = Instant::now() + SLOT_WAIT;
        loop {
            match self.cluster.place_and_reserve(tasks) {
                Ok(p) => return Ok(p),
                Err(e) if Instant::now() >= deadline => {
                    return Err(AttemptEnd::Failed(format!(
                        "{e} after waiting {} s",
                        SLOT_WAIT.as_secs()
                    )));
                }
                Err(_) => {}
            }
            if let Ok(JobInput::Cancel) = self.inputs.recv_timeout(Duration::from_millis(200)) {
                return Err(AttemptEnd::Cancelled);
            }
        }
    }

    /// Runs attempt `number` of the job (0 first). On the wire an attempt
    /// is known by an id unique in this coordinator, so nothing of an
    /// earlier attempt or of an earlier job of the same name can be taken
    /// for this one's.
    fn attempt(&self, number: u32, restore: Option<&Snapshot>) -> AttemptEnd {
        let job = &self.s.job;
        let attempt = self.cluster.next_attempt_id();
        self.update(|i| {
            i.attempt = number;
            i.state = JobState::Scheduling;
        });
        if let Some(snapshot) = restore
            && let Err(e) = check_snapshot(job, snapshot, self.s.allow_non_restored_state)
        {
            return AttemptEnd::Failed(format!("{e:#}"));
        }
        let tasks = weir_runtime::tasks(job);
        let placement = match self.placement(&tasks) {
            Ok(p) => p,
            Err(end) => return end,
        };
        let slots = slots_used(&placement);
        let end = self.run_attempt(attempt, number, restore, &tasks, &placement, &slots);
        self.cluster.release(&slots);
        end
    }

    fn run_attempt(
        &self,
        attempt: u32,
        number: u32,
        restore: Option<&Snapshot>,
        tasks: &[TaskId],
        placement: &[(TaskId, WorkerId)],
        slots: &BTreeMap<WorkerId, u32>,
    ) -> AttemptEnd {
        let job = &self.s.job;
        let workers: BTreeSet<WorkerId> = slots.keys().copied().collect();
        let mut peers = BTreeMap::new();
        let mut peer_names = BTreeMap::new();
        for &w in &workers {
            match self.cluster.data_addr(w) {
                Some((addr, name)) => {
                    peers.insert(w, addr);
                    peer_names.insert(w, name);
                }
                None => {
                    return AttemptEnd::Failed(format!("worker {w} left before the job started"));
                }
            }
        }
        let count = |f: fn(&TaskId) -> bool| tasks.iter().filter(|t| f(t)).count();
        let coordinator = match start_remote_coordinator(
            job,
            restore.map_or(1, |s| s.metadata.id + 1),
            self.status.clone(),
            self.requests.clone(),
            count(|t| matches!(t, TaskId::Source { .. })),
            count(|t| matches!(t, TaskId::Chain { .. })),
            count(|t| matches!(t, TaskId::Sink { .. })),
        ) {
            Ok(c) => c,
            Err(e) => return AttemptEnd::Failed(format!("{e:#}")),
        };
        let owner: BTreeMap<TaskId, WorkerId> = placement.iter().copied().collect();
        let announced = Arc::new(Mutex::new(HashSet::new()));
        let sources = tasks.iter().filter(|t| matches!(t, TaskId::Source { .. }));
        for (task, commands) in sources.zip(coordinator.source_commands) {
            let forward = Forwarder {
                cluster: self.cluster.clone(),
                job: job.name.clone(),
                attempt,
                task: *task,
                worker: owner[task],
                workers: workers.clone(),
                dirs: coordinator.snapshot_dirs.clone(),
                announced: announced.clone(),
            };
            std::thread::spawn(move || forward.sources(commands));
        }
        let sinks = tasks.iter().filter(|t| matches!(t, TaskId::Sink { .. }));
        for (task, commands) in sinks.zip(coordinator.sink_commands) {
            let cluster = self.cluster.clone();
            let (name, worker, task) = (job.name.clone(), owner[task], *task);
            std::thread::spawn(move || {
                for command in commands.iter() {
                    let _ = cluster.send(
                        worker,
                        ToWorker::Sink {
                            job: name.clone(),
                            attempt,
                            task,
                            command,
                        },
                    );
                }
            });
        }
        let mut undeployed: BTreeMap<WorkerId, String> = BTreeMap::new();
        for &w in &workers {
            let deployment = Deployment {
                job: job.name.clone(),
                attempt,
                attempt_number: number,
                job_toml: self.s.job_toml.clone(),
                job_path: self.s.job_path.clone(),
                artifacts: self.s.artifacts.clone(),
                placement: placement.to_vec(),
                peers: peers.clone(),
                peer_names: peer_names.clone(),
                restore: restore.map(|s| s.dir.clone()),
                allow_non_restored_state: self.s.allow_non_restored_state,
            };
            if let Err(e) = self.cluster.send(w, ToWorker::Deploy(Box::new(deployment))) {
                undeployed.insert(w, e);
            }
        }
        tracing::info!(job = %job.name, "attempt {attempt} deployed on worker(s) {workers:?}");
        self.update(|i| {
            i.state = JobState::Running;
            i.workers = slots.clone();
        });

        let mut ended: BTreeMap<WorkerId, AttemptResult> = BTreeMap::new();
        let mut failure: Option<String> = None;
        let mut cancel_requested = false;
        let mut cancelled_at: Option<Instant> = None;
        let cancel_all = |cancelled_at: &mut Option<Instant>| {
            if cancelled_at.is_none() {
                *cancelled_at = Some(Instant::now());
                for &w in &workers {
                    let _ = self.cluster.send(
                        w,
                        ToWorker::Cancel {
                            job: job.name.clone(),
                            attempt,
                        },
                    );
                }
            }
        };
        // A worker the deployment never reached has nothing to end.
        for (w, e) in undeployed {
            failure.get_or_insert_with(|| cut_message(&format!("cannot deploy: {e}")));
            ended.insert(w, AttemptResult::Failed(e));
            cancel_all(&mut cancelled_at);
        }
        while ended.len() < workers.len() {
            let last = *self.status.last_checkpoint.lock().expect("not poisoned");
            self.update(|i| {
                if last.is_some() {
                    i.last_checkpoint = last;
                }
            });
            if let Some(at) = cancelled_at
                && at.elapsed() > CANCEL_WAIT
            {
                for &w in &workers {
                    ended
                        .entry(w)
                        .or_insert_with(|| AttemptResult::Failed("did not wind down".into()));
                }
                failure.get_or_insert_with(|| "workers did not wind down after a cancel".into());
                break;
            }
            let input = match self.inputs.recv_timeout(Duration::from_millis(200)) {
                Ok(input) => input,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            match input {
                JobInput::Event { attempt: a, event } if a == attempt => {
                    let _ = coordinator.events.send(event);
                }
                JobInput::Ended {
                    worker,
                    attempt: a,
                    result,
                } if a == attempt => {
                    if let AttemptResult::Failed(e) = &result {
                        failure.get_or_insert_with(|| {
                            cut_message(&format!("on worker {worker}: {e}"))
                        });
                        cancel_all(&mut cancelled_at);
                    }
                    ended.insert(worker, result);
                }
                JobInput::WorkerLost { worker }
                    if workers.contains(&worker) && !ended.contains_key(&worker) =>
                {
                    ended.insert(worker, AttemptResult::Failed("lost".into()));
                    failure.get_or_insert_with(|| format!("worker {worker} was lost"));
                    cancel_all(&mut cancelled_at);
                }
                JobInput::Cancel => {
                    cancel_requested = true;
                    cancel_all(&mut cancelled_at);
                }
                _ => {} // an earlier attempt's, or another worker's
            }
        }
        drop(coordinator.events);
        let _ = coordinator.thread.join();
        let last = *self.status.last_checkpoint.lock().expect("not poisoned");
        self.update(|i| {
            if last.is_some() {
                i.last_checkpoint = last;
            }
        });
        if cancel_requested {
            return AttemptEnd::Cancelled;
        }
        if let Some(e) = failure {
            return AttemptEnd::Failed(e);
        }
        if let Some(path) = self.status.stopped_at.lock().expect("not poisoned").take() {
            return AttemptEnd::Stopped(path);
        }
        if ended.values().all(|r| *r == AttemptResult::Finished) {
            AttemptEnd::Finished
        } else {
            AttemptEnd::Failed("the attempt was cancelled by a worker (a peer went away)".into())
        }
    }
}

/// Carries one source's commands to its worker. Before the first trigger
/// of a snapshot, every worker of the attempt learns where it goes.
struct Forwarder {
    cluster: Arc<Cluster>,
    job: String,
    attempt: u32,
    task: TaskId,
    worker: WorkerId,
    workers: BTreeSet<WorkerId>,
    dirs: weir_runtime::SnapshotDirs,
    announced: Arc<Mutex<HashSet<u64>>>,
}

impl Forwarder {
    fn sources(self, commands: Receiver<SourceCommand>) {
        for command in commands.iter() {
            let SourceCommand::Trigger { barrier, .. } = &command;
            if self
                .announced
                .lock()
                .expect("not poisoned")
                .insert(barrier.id)
            {
                let dir = self
                    .dirs
                    .lock()
                    .expect("not poisoned")
                    .get(&barrier.id)
                    .cloned()
                    .flatten();
                for &w in &self.workers {
                    let _ = self.cluster.send(
                        w,
                        ToWorker::SnapshotDir {
                            job: self.job.clone(),
                            attempt: self.attempt,
                            id: barrier.id,
                            dir: dir.clone(),
                        },
                    );
                }
            }
            let _ = self.cluster.send(
                self.worker,
                ToWorker::Source {
                    job: self.job.clone(),
                    attempt: self.attempt,
                    task: self.task,
                    command,
                },
            );
        }
        let _ = self.cluster.send(
            self.worker,
            ToWorker::SourceClosed {
                job: self.job.clone(),
                attempt: self.attempt,
                task: self.task,
            },
        );
    }
}
