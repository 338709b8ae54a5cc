//! The process-wide registry: which subtasks of which job run here (an
//! attempt registers its subtasks when it builds them and unregisters them
//! when it ends, so a restarted attempt never counts twice), and what the
//! job masters of this process know of their jobs.
//!
//! Locked only when an attempt starts or ends, a job master records a
//! checkpoint, or someone renders: never on a task's hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use super::subtask::{NodeKind, SubtaskMetrics, TaskTimes};

/// One registered subtask.
pub(crate) struct Entry {
    registration: u64,
    pub(crate) job: Arc<str>,
    pub(crate) node: Arc<str>,
    pub(crate) subtask: u32,
    pub(crate) metrics: Arc<SubtaskMetrics>,
}

/// What a job master tells about its job.
#[derive(Debug, Clone)]
pub(crate) struct JobStats {
    pub(crate) started: Instant,
    pub(crate) restarts: u32,
    pub(crate) last_checkpoint: Option<u64>,
    /// Of the last completed checkpoint or savepoint.
    pub(crate) checkpoint_duration_ms: Option<u64>,
    pub(crate) checkpoint_bytes: Option<u64>,
    /// (operator, artifact digest) each operator runs.
    pub(crate) versions: Vec<(String, String)>,
}

struct Job {
    registration: u64,
    name: String,
    stats: JobStats,
}

#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) subtasks: Vec<Entry>,
    jobs: Vec<Job>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);
static NEXT_REGISTRATION: AtomicU64 = AtomicU64::new(1);

/// The registry, also when a thread panicked while holding it (what it
/// holds stays consistent: every change is one push or retain).
pub(crate) fn lock() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// Jobs of this process, by name (a job master's name, or a job with
    /// subtasks here).
    pub(crate) fn job_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .jobs
            .iter()
            .map(|j| j.name.clone())
            .chain(self.subtasks.iter().map(|e| e.job.to_string()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub(crate) fn job_stats(&self) -> Vec<(String, JobStats)> {
        self.jobs
            .iter()
            .map(|j| (j.name.clone(), j.stats.clone()))
            .collect()
    }
}

/// The subtasks one attempt registered here; dropping it unregisters them.
pub(crate) struct AttemptRegistration {
    id: u64,
    job: Arc<str>,
}

impl AttemptRegistration {
    pub(crate) fn new(job: &str) -> Self {
        AttemptRegistration {
            id: NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed),
            job: job.into(),
        }
    }

    /// Registers subtask `subtask` of `node`, timed by `times` (its task's).
    pub(crate) fn add(
        &self,
        node: &str,
        kind: NodeKind,
        subtask: u32,
        times: Arc<TaskTimes>,
    ) -> Arc<SubtaskMetrics> {
        let metrics = Arc::new(SubtaskMetrics::new(kind, times));
        lock().subtasks.push(Entry {
            registration: self.id,
            job: self.job.clone(),
            node: node.into(),
            subtask,
            metrics: metrics.clone(),
        });
        metrics
    }
}

impl Drop for AttemptRegistration {
    fn drop(&mut self) {
        lock().subtasks.retain(|e| e.registration != self.id);
    }
}

/// A job master's entry; dropping it removes the job's own metrics.
pub(crate) struct JobRegistration {
    id: u64,
}

impl JobRegistration {
    pub(crate) fn new(job: &str) -> Self {
        let id = NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed);
        lock().jobs.push(Job {
            registration: id,
            name: job.to_string(),
            stats: JobStats {
                started: Instant::now(),
                restarts: 0,
                last_checkpoint: None,
                checkpoint_duration_ms: None,
                checkpoint_bytes: None,
                versions: Vec::new(),
            },
        });
        JobRegistration { id }
    }

    /// Changes what is known of the job.
    pub(crate) fn update(&self, change: impl FnOnce(&mut JobStats)) {
        if let Some(job) = lock().jobs.iter_mut().find(|j| j.registration == self.id) {
            change(&mut job.stats);
        }
    }
}

impl Drop for JobRegistration {
    fn drop(&mut self) {
        lock().jobs.retain(|j| j.registration != self.id);
    }
}
