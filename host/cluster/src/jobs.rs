//! The coordinator's jobs: what each job master shares with the REST API
//! and the workers' side (its inbox, view, placement), and how finished
//! jobs are pruned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use weir_runtime::TaskEvent;
use weir_runtime::master::command::CommandId;
use weir_runtime::master::driver::{CommandRequest, SharedView};
use weir_snapshot::OperatorVersion;

use crate::protocol::{AttemptResult, WorkerId};

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

    fn of(view: &str) -> JobState {
        match view {
            "running" => JobState::Running,
            "restarting" => JobState::Restarting,
            "finished" => JobState::Finished,
            "stopped" => JobState::Stopped,
            "cancelled" => JobState::Cancelled,
            "failed" => JobState::Failed,
            _ => JobState::Scheduling,
        }
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
    /// Each operator's artifact and the versions it ran before.
    #[serde(default)]
    pub versions: Vec<OperatorVersion>,
    /// Each operator's parallelism in the current attempt.
    #[serde(default)]
    pub parallelism: BTreeMap<String, u32>,
    /// When the job was submitted.
    #[serde(default)]
    pub started_unix_ms: u64,
    /// Sources, operators, sinks and the edges between them.
    #[serde(default)]
    pub graph: weir_runtime::master::driver::JobGraph,
    /// The newest checkpoints and savepoints (at most 50).
    #[serde(default)]
    pub checkpoints: Vec<weir_runtime::master::driver::CheckpointRecord>,
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
    Prepared {
        worker: WorkerId,
        attempt: u32,
        upgrade: CommandId,
        result: Result<(), String>,
    },
}

/// What the cluster adds to the job master's view.
#[derive(Default)]
pub(crate) struct Placement {
    pub(crate) workers: BTreeMap<WorkerId, u32>,
    pub(crate) ended_at: Option<Instant>,
}

pub(crate) struct JobEntry {
    pub(crate) inbox: Sender<JobInput>,
    pub(crate) view: SharedView,
    pub(crate) placement: Arc<Mutex<Placement>>,
    pub(crate) requests: Sender<CommandRequest>,
    /// Default directory for savepoints.
    pub(crate) savepoint_dir: Option<PathBuf>,
    /// Digests of the artifacts it may run (kept while it runs): the
    /// submitted ones and every upgrade's.
    pub(crate) artifacts: Arc<Mutex<BTreeSet<String>>>,
}

impl JobEntry {
    pub(crate) fn info(&self) -> JobInfo {
        let view = self.view.lock().expect("not poisoned").clone();
        let placement = self.placement.lock().expect("not poisoned");
        JobInfo {
            name: view.name,
            state: JobState::of(&view.state),
            attempt: view.attempt,
            restarts: view.restarts,
            last_checkpoint: view.last_checkpoint,
            workers: placement.workers.clone(),
            savepoint: view.savepoint,
            error: view.error,
            versions: view.versions,
            parallelism: view.parallelism,
            started_unix_ms: view.started_unix_ms,
            graph: view.graph,
            checkpoints: view.checkpoints,
            ended_at: placement.ended_at,
        }
    }
}

/// Removes finished jobs past the age bound, then the oldest finished ones
/// past the count bound. Running jobs are never removed.
pub(crate) fn prune_finished(
    jobs: &mut BTreeMap<String, JobEntry>,
    kept_max: usize,
    retention: Duration,
    now: Instant,
) {
    let ended = |j: &JobEntry| j.placement.lock().expect("not poisoned").ended_at;
    jobs.retain(|_, j| ended(j).is_none_or(|at| now.saturating_duration_since(at) <= retention));
    let mut finished: Vec<(Instant, String)> = jobs
        .iter()
        .filter_map(|(name, j)| ended(j).map(|at| (at, name.clone())))
        .collect();
    if finished.len() > kept_max {
        finished.sort();
        let excess = finished.len() - kept_max;
        for (_, name) in finished.into_iter().take(excess) {
            jobs.remove(&name);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(ended_at: Option<Instant>) -> JobEntry {
        let (inbox, _) = crossbeam_channel::unbounded();
        let (requests, _) = crossbeam_channel::unbounded();
        JobEntry {
            inbox,
            view: Arc::new(Mutex::new(weir_runtime::master::driver::JobView {
                state: if ended_at.is_some() {
                    "finished"
                } else {
                    "running"
                }
                .into(),
                ..Default::default()
            })),
            placement: Arc::new(Mutex::new(crate::jobs::Placement {
                workers: BTreeMap::new(),
                ended_at,
            })),
            requests,
            savepoint_dir: None,
            artifacts: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    #[test]
    fn finished_jobs_are_pruned_by_age_then_count_and_running_ones_kept() {
        let now = Instant::now() + Duration::from_secs(1000);
        let mut jobs = BTreeMap::new();
        jobs.insert("running".to_string(), entry(None));
        jobs.insert(
            "old".to_string(),
            entry(Some(now - Duration::from_secs(600))),
        );
        for (i, age) in [30, 20, 10].iter().enumerate() {
            jobs.insert(
                format!("recent-{i}"),
                entry(Some(now - Duration::from_secs(*age))),
            );
        }
        prune_finished(&mut jobs, 2, Duration::from_secs(300), now);
        let left: Vec<&str> = jobs.keys().map(String::as_str).collect();
        assert_eq!(left, ["recent-1", "recent-2", "running"]);
    }
}
