//! One thread per submitted job, running the runtime's job master
//! ([`weir_runtime::master`]) with a [`ClusterDeployer`]: each attempt is
//! placed in slots and deployed to workers; commands and events cross the
//! workers' control streams; a lost worker or a failed task cancels the
//! attempt everywhere, and the master starts the next one from the newest
//! checkpoint on whatever slots are left (or on a replacement worker, once
//! one registers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, never};
use weir_core::job::JobSpec;
use weir_core::text::cut_message;
use weir_runtime::master::command::CommandId;
use weir_runtime::master::driver::{
    AttemptInputs, AttemptPlan, Deployer, Driver, JobView, SnapshotPlan, Starting, apply_rescales,
};
use weir_runtime::master::machine::{AttemptEnd, Input, JobEnd, Shape};
use weir_runtime::{Barrier, SinkCommand, SourceCommand, Swap, TaskId};
use weir_snapshot::{OperatorVersion, Snapshot, VersionRecord};

use crate::artifacts::digest_hex;
use crate::cluster::Cluster;
use crate::jobs::{JobEntry, JobInput, Placement};
use crate::placement::slots_used;
use crate::protocol::{AttemptResult, Deployment, ToWorker, WorkerId};

/// How long a job waits for enough free slots before it fails.
pub const SLOT_WAIT: Duration = Duration::from_secs(60);
/// How long a cancelled attempt's workers get to wind down.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

/// A job as submitted, with its artifacts resolved.
pub(crate) struct Submission {
    pub(crate) job: JobSpec,
    pub(crate) job_toml: String,
    pub(crate) job_path: PathBuf,
    /// Operator → artifact digest (`sha256:<hex>`).
    pub(crate) artifacts: BTreeMap<String, String>,
    pub(crate) restore: Option<Snapshot>,
    /// The restore continues the job (`--resume`): its recorded versions
    /// win over the submitted artifacts.
    pub(crate) resume: bool,
    pub(crate) allow_non_restored_state: bool,
}

pub(crate) fn start(cluster: Arc<Cluster>, s: Submission) -> anyhow::Result<()> {
    let (inbox, inputs) = crossbeam_channel::unbounded();
    let (requests_tx, requests) = crossbeam_channel::unbounded();
    let view = Arc::new(Mutex::new(JobView {
        name: s.job.name.clone(),
        state: "scheduling".into(),
        last_checkpoint: s.restore.as_ref().map(|r| r.metadata.id),
        ..JobView::default()
    }));
    let placement = Arc::new(Mutex::new(Placement::default()));
    let artifacts = Arc::new(Mutex::new(s.artifacts.values().cloned().collect()));
    {
        let mut jobs = cluster.jobs.lock().expect("not poisoned");
        if let Some(existing) = jobs.get(&s.job.name)
            && !existing.info().state.is_terminal()
        {
            anyhow::bail!("a job named `{}` is already running", s.job.name);
        }
        jobs.insert(
            s.job.name.clone(),
            JobEntry {
                inbox,
                view: view.clone(),
                placement: placement.clone(),
                requests: requests_tx,
                savepoint_dir: s.job.checkpoint.as_ref().map(|c| c.dir.join("savepoints")),
                artifacts,
            },
        );
    }
    cluster.prune_jobs();
    let now = weir_snapshot::metadata::now_unix_ms();
    let initial_versions = s
        .job
        .operators
        .iter()
        .filter_map(|op| {
            // `sha256:<hex>` (the artifact store's names) → `<hex>` (versions).
            let digest = digest_hex(s.artifacts.get(&op.name)?)?.to_string();
            Some(OperatorVersion {
                operator: op.name.clone(),
                digest: digest.clone(),
                history: vec![VersionRecord {
                    digest,
                    checkpoint: None,
                    since_unix_ms: now,
                }],
            })
        })
        .collect();
    let deployer = ClusterDeployer {
        cluster: cluster.clone(),
        job: s.job.name.clone(),
        job_toml: s.job_toml,
        job_path: s.job_path,
        inputs,
        placement: placement.clone(),
        current: None,
        waiting: None,
        reports: Vec::new(),
    };
    let driver = Driver {
        job: s.job.clone(),
        deployer,
        storage: weir_runtime::storage_of(&s.job),
        initial_restore: s.restore,
        initial_versions_from_snapshot: s.resume,
        allow_non_restored_state: s.allow_non_restored_state,
        commands: requests,
        view,
        reshape: Box::new(|job: &JobSpec, inputs: &AttemptInputs| {
            apply_rescales(job, inputs.rescales)
        }),
        initial_versions,
    };
    let name = s.job.name.clone();
    let ha_cluster = cluster.clone();
    std::thread::Builder::new()
        .name(format!("job-{name}"))
        .spawn(move || {
            let end = driver.run();
            // Drop the HA record now rather than at the next periodic sync:
            // a coordinator that dies in between would resume an ended job.
            crate::ha::sync(&ha_cluster);
            let message = match &end.end {
                JobEnd::Failed(e) => format!("{e}"),
                JobEnd::Finished => "finished".into(),
                JobEnd::Stopped { savepoint } => {
                    format!("stopped with savepoint {}", savepoint.display())
                }
                JobEnd::Cancelled => "cancelled".into(),
            };
            tracing::info!(job = %name, "job ended: {message}");
            eprintln!("weir: job `{name}` {message}");
            let mut placement = placement.lock().expect("not poisoned");
            placement.workers.clear();
            placement.ended_at = Some(Instant::now());
        })?;
    Ok(())
}

/// One attempt deployed on workers.
struct ClusterAttempt {
    /// The attempt's id on the wire, unique in this coordinator, so nothing
    /// of an earlier attempt (or an earlier job of the same name) is taken
    /// for this one's.
    id: u32,
    workers: BTreeSet<WorkerId>,
    slots: BTreeMap<WorkerId, u32>,
    sources: Vec<(TaskId, WorkerId)>,
    sinks: Vec<(TaskId, WorkerId)>,
    /// Workers that run a subtask of each operator's chain.
    chain_workers: BTreeMap<u32, BTreeSet<WorkerId>>,
    ended: BTreeMap<WorkerId, AttemptResult>,
    failure: Option<String>,
    cancelled_at: Option<Instant>,
    /// An upgrade being prepared: the workers still to answer, and the
    /// first refusal.
    preparing: Option<(CommandId, BTreeSet<WorkerId>, Option<String>)>,
}

/// Runs attempts on the cluster's workers.
struct ClusterDeployer {
    cluster: Arc<Cluster>,
    job: String,
    job_toml: String,
    job_path: PathBuf,
    inputs: Receiver<JobInput>,
    placement: Arc<Mutex<Placement>>,
    current: Option<ClusterAttempt>,
    /// An attempt waiting for slots, and until when it may wait.
    waiting: Option<(AttemptPlan, Instant)>,
    /// What the next tick reports (a wait that was cancelled).
    reports: Vec<Input>,
}

impl ClusterDeployer {
    fn send_all(&self, message: impl Fn() -> ToWorker) {
        if let Some(a) = &self.current {
            for &w in &a.workers {
                let _ = self.cluster.send(w, message());
            }
        }
    }

    fn cancel_all(&mut self) {
        let Some(a) = &mut self.current else { return };
        if a.cancelled_at.is_some() {
            return;
        }
        a.cancelled_at = Some(Instant::now());
        for &w in &a.workers {
            let _ = self.cluster.send(
                w,
                ToWorker::Cancel {
                    job: self.job.clone(),
                    attempt: a.id,
                },
            );
        }
    }

    /// The attempt's end, once every worker has ended its share.
    fn check_ended(&mut self) -> Vec<Input> {
        let Some(a) = &self.current else {
            return Vec::new();
        };
        if a.ended.len() < a.workers.len() {
            return Vec::new();
        }
        let a = self.current.take().expect("checked");
        self.cluster.release(&a.slots);
        self.placement.lock().expect("not poisoned").workers.clear();
        let end = match a.failure {
            Some(e) => AttemptEnd::Failed(e),
            None if a.ended.values().all(|r| *r == AttemptResult::Finished) => AttemptEnd::Finished,
            None => AttemptEnd::Cancelled,
        };
        vec![Input::AttemptEnded(end)]
    }
}

impl ClusterDeployer {
    /// Places and deploys the attempt if there are slots for it
    /// (`Ok(None)`: not yet).
    fn deploy(&mut self, plan: &AttemptPlan) -> Result<Option<Shape>, String> {
        let job = &plan.job;
        let tasks = weir_runtime::tasks(job);
        let Ok(placement) = self.cluster.place_and_reserve(&tasks) else {
            return Ok(None);
        };
        let id = self.cluster.next_attempt_id();
        let slots = slots_used(&placement);
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
                    self.cluster.release(&slots);
                    return Err(format!("worker {w} left before the job started"));
                }
            }
        }
        let artifacts: BTreeMap<String, String> = plan
            .versions
            .iter()
            .map(|v| (v.operator.clone(), format!("sha256:{}", v.digest)))
            .collect();
        let owner: BTreeMap<TaskId, WorkerId> = placement.iter().copied().collect();
        let mut chain_workers: BTreeMap<u32, BTreeSet<WorkerId>> = BTreeMap::new();
        for (task, worker) in &placement {
            if let TaskId::Chain { chain, .. } = task {
                chain_workers.entry(*chain).or_default().insert(*worker);
            }
        }
        let count = |f: fn(&TaskId) -> bool| tasks.iter().filter(|t| f(t)).count();
        let shape = Shape {
            sources: count(|t| matches!(t, TaskId::Source { .. })),
            chains: count(|t| matches!(t, TaskId::Chain { .. })),
            sinks: count(|t| matches!(t, TaskId::Sink { .. })),
        };
        let parallelism: BTreeMap<String, u32> = job
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.parallelism))
            .chain(
                job.operators
                    .iter()
                    .map(|o| (o.name.clone(), o.parallelism)),
            )
            .collect();
        let mut attempt = ClusterAttempt {
            id,
            workers: workers.clone(),
            slots: slots.clone(),
            sources: tasks
                .iter()
                .filter(|t| matches!(t, TaskId::Source { .. }))
                .map(|t| (*t, owner[t]))
                .collect(),
            sinks: tasks
                .iter()
                .filter(|t| matches!(t, TaskId::Sink { .. }))
                .map(|t| (*t, owner[t]))
                .collect(),
            chain_workers,
            ended: BTreeMap::new(),
            failure: None,
            cancelled_at: None,
            preparing: None,
        };
        let mut undeployed = false;
        for &w in &workers {
            let deployment = Deployment {
                job: job.name.clone(),
                attempt: id,
                attempt_number: plan.number,
                job_toml: self.job_toml.clone(),
                job_path: self.job_path.clone(),
                artifacts: artifacts.clone(),
                placement: placement.clone(),
                peers: peers.clone(),
                peer_names: peer_names.clone(),
                restore: plan.restore.as_ref().map(|s| s.location.clone()),
                allow_non_restored_state: plan.allow_non_restored_state,
                parallelism: parallelism.clone(),
            };
            if let Err(e) = self.cluster.send(w, ToWorker::Deploy(Box::new(deployment))) {
                // A worker the deployment never reached has nothing to end.
                attempt
                    .failure
                    .get_or_insert_with(|| cut_message(&format!("cannot deploy: {e}")));
                attempt.ended.insert(w, AttemptResult::Failed(e));
                undeployed = true;
            }
        }
        tracing::info!(job = %job.name, "attempt {id} deployed on worker(s) {workers:?}");
        self.placement.lock().expect("not poisoned").workers = slots;
        self.current = Some(attempt);
        if undeployed {
            self.cancel_all();
        }
        // Task events arrive as notes, through the coordinator.
        Ok(Some(shape))
    }
}

impl Deployer for ClusterDeployer {
    type Note = JobInput;

    fn notes(&self) -> Receiver<JobInput> {
        self.inputs.clone()
    }

    fn note(&mut self, note: JobInput, _now: Instant) -> Vec<Input> {
        let Some(current) = self.current.as_ref().map(|a| a.id) else {
            return Vec::new();
        };
        match note {
            JobInput::Event { attempt, event } if attempt == current => vec![Input::Task(event)],
            JobInput::Ended {
                worker,
                attempt,
                result,
            } if attempt == current => {
                let failed = matches!(result, AttemptResult::Failed(_));
                if let Some(a) = &mut self.current {
                    if let AttemptResult::Failed(e) = &result {
                        a.failure.get_or_insert_with(|| {
                            cut_message(&format!("on worker {worker}: {e}"))
                        });
                    }
                    a.ended.insert(worker, result);
                }
                if failed {
                    self.cancel_all();
                }
                self.check_ended()
            }
            JobInput::WorkerLost { worker } => {
                let Some(a) = &mut self.current else {
                    return Vec::new();
                };
                if !a.workers.contains(&worker) || a.ended.contains_key(&worker) {
                    return Vec::new();
                }
                a.ended.insert(worker, AttemptResult::Failed("lost".into()));
                a.failure
                    .get_or_insert_with(|| format!("worker {worker} was lost"));
                self.cancel_all();
                self.check_ended()
            }
            JobInput::Prepared {
                worker,
                attempt,
                upgrade,
                result,
            } if attempt == current => {
                let Some(a) = &mut self.current else {
                    return Vec::new();
                };
                let Some((id, waiting, refusal)) = &mut a.preparing else {
                    return Vec::new();
                };
                if *id != upgrade {
                    return Vec::new();
                }
                waiting.remove(&worker);
                if let Err(e) = result {
                    refusal.get_or_insert(format!("on worker {worker}: {e}"));
                }
                if !waiting.is_empty() {
                    return Vec::new();
                }
                let Some((upgrade, _, refusal)) = a.preparing.take() else {
                    return Vec::new();
                };
                vec![Input::Prepared {
                    upgrade,
                    result: refusal.map_or(Ok(()), Err),
                }]
            }
            _ => Vec::new(), // an earlier attempt's, or another worker's
        }
    }

    fn tick(&mut self, now: Instant) -> Vec<Input> {
        if !self.reports.is_empty() {
            return std::mem::take(&mut self.reports);
        }
        if let Some((plan, deadline)) = self.waiting.take() {
            return match self.deploy(&plan) {
                Ok(Some(shape)) => vec![Input::AttemptStarted { shape }],
                Ok(None) if now < deadline => {
                    self.waiting = Some((plan, deadline));
                    Vec::new()
                }
                Ok(None) => {
                    let free = self
                        .cluster
                        .place_and_reserve(&weir_runtime::tasks(&plan.job));
                    let why = free.err().unwrap_or_else(|| "no slots".into());
                    vec![Input::AttemptEnded(AttemptEnd::Failed(format!(
                        "{why} after waiting {} s",
                        SLOT_WAIT.as_secs()
                    )))]
                }
                Err(e) => vec![Input::AttemptEnded(AttemptEnd::Failed(e))],
            };
        }
        let Some(a) = &mut self.current else {
            return Vec::new();
        };
        if let Some(at) = a.cancelled_at
            && at.elapsed() > CANCEL_WAIT
        {
            for &w in &a.workers {
                a.ended
                    .entry(w)
                    .or_insert_with(|| AttemptResult::Failed("did not wind down".into()));
            }
            a.failure
                .get_or_insert_with(|| "workers did not wind down after a cancel".into());
        }
        self.check_ended()
    }

    fn start(&mut self, plan: &AttemptPlan) -> Result<Starting, String> {
        match self.deploy(plan)? {
            // Task events arrive as notes, through the coordinator.
            Some(shape) => Ok(Starting::Ready(shape, never())),
            None => {
                // Not enough slots: a tick deploys once there are (a
                // replacement worker registers), or gives up after SLOT_WAIT.
                self.waiting = Some((plan.clone(), Instant::now() + SLOT_WAIT));
                Ok(Starting::Pending)
            }
        }
    }

    fn trigger(&mut self, barrier: Barrier, stop: bool, plan: &SnapshotPlan) {
        let Some(a) = &self.current else { return };
        let (job, attempt) = (self.job.clone(), a.id);
        // Before the first trigger: every worker learns where the snapshot
        // goes (a barrier from another worker may still overtake it; tasks wait).
        self.send_all(|| ToWorker::SnapshotDir {
            job: job.clone(),
            attempt,
            id: barrier.id,
            dir: Some(plan.dir.clone()),
            swaps: plan.swaps.clone(),
        });
        for &(task, worker) in &a.sources {
            let _ = self.cluster.send(
                worker,
                ToWorker::Source {
                    job: job.clone(),
                    attempt,
                    task,
                    command: SourceCommand::Trigger { barrier, stop },
                },
            );
        }
    }

    fn abort(&mut self, id: u64) {
        let Some(a) = &self.current else { return };
        let (job, attempt) = (self.job.clone(), a.id);
        self.send_all(|| ToWorker::SnapshotDir {
            job: job.clone(),
            attempt,
            id,
            dir: None,
            swaps: Vec::new(),
        });
    }

    fn commit(&mut self, id: u64) {
        let Some(a) = &self.current else { return };
        for &(task, worker) in &a.sinks {
            let _ = self.cluster.send(
                worker,
                ToWorker::Sink {
                    job: self.job.clone(),
                    attempt: a.id,
                    task,
                    command: SinkCommand::Commit(id),
                },
            );
        }
        for &(task, worker) in &a.sources {
            let _ = self.cluster.send(
                worker,
                ToWorker::Source {
                    job: self.job.clone(),
                    attempt: a.id,
                    task,
                    command: SourceCommand::Completed(id),
                },
            );
        }
    }

    fn release_sources(&mut self) {
        let Some(a) = &self.current else { return };
        for &(task, worker) in &a.sources {
            let _ = self.cluster.send(
                worker,
                ToWorker::SourceClosed {
                    job: self.job.clone(),
                    attempt: a.id,
                    task,
                },
            );
        }
    }

    fn prepare(
        &mut self,
        upgrade: CommandId,
        swap: &Swap,
        plan: &AttemptPlan,
    ) -> Result<(), String> {
        let Some(a) = &mut self.current else {
            return Err("the job is not running".into());
        };
        let workers = weir_runtime::chain_of(&plan.job, &swap.operator)
            .and_then(|chain| a.chain_workers.get(&chain).cloned())
            .unwrap_or_default();
        if workers.is_empty() {
            return Err(format!("no worker runs operator `{}`", swap.operator));
        }
        for &w in &workers {
            self.cluster
                .send(
                    w,
                    ToWorker::Prepare {
                        job: self.job.clone(),
                        attempt: a.id,
                        upgrade,
                        swap: swap.clone(),
                        artifact: format!("sha256:{}", swap.digest),
                    },
                )
                .map_err(|e| format!("worker {w}: {e}"))?;
        }
        a.preparing = Some((upgrade, workers, None));
        Ok(())
    }

    fn discard(&mut self, _upgrade: CommandId) {
        let Some(a) = &self.current else { return };
        let (job, attempt) = (self.job.clone(), a.id);
        self.send_all(|| ToWorker::Discard {
            job: job.clone(),
            attempt,
        });
    }

    fn cancel(&mut self) {
        if self.waiting.take().is_some() {
            self.reports
                .push(Input::AttemptEnded(AttemptEnd::Cancelled));
        }
        self.cancel_all();
    }
}
