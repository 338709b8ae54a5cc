//! A cluster worker's share of one attempt: the tasks placed on this
//! worker, wired to their peers over the network; the job master runs in
//! the coordinator and reaches them through [`StartedAttempt`].

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context as _, anyhow};
use crossbeam_channel::{Receiver, Sender};
use weir_core::job::JobSpec;
use weir_snapshot::Snapshot;
use weir_wasm::{CompiledOperator, WasmEngine};

use crate::attempt::{Attempt, WorkerScope};
use crate::embedded::compile_all;
use crate::events::{SinkCommand, SourceCommand, TaskEvent};
use crate::plan::TaskId;
use crate::remote::{DataPlane, InboundChannels};
use crate::state_root::StateRoot;
use crate::swaps::PreparedSwaps;
use crate::task_snapshot::SnapshotPlans;

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

/// Called once a worker's tasks are built, before they start.
pub type OnStarted = Box<dyn FnOnce(StartedAttempt) + Send>;

/// What a worker needs of a started attempt to connect it to the job
/// master, and to cancel it.
pub struct StartedAttempt {
    pub source_commands: Vec<(TaskId, Sender<SourceCommand>)>,
    pub sink_commands: Vec<(TaskId, Sender<SinkCommand>)>,
    pub events: Receiver<TaskEvent>,
    pub snapshot_plans: SnapshotPlans,
    /// Where new versions of operators wait for their barrier.
    pub prepared: PreparedSwaps,
    pub cancel: Arc<AtomicBool>,
}

/// One worker's share of one attempt of a job running on a cluster.
pub struct WorkerAttempt {
    /// The job, its operators' `wasm` pointing at this worker's copies of
    /// the version each runs.
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
    pub engine: Arc<WasmEngine>,
    pub data_plane: Arc<dyn DataPlane>,
    pub inbound: Arc<InboundChannels>,
    /// Called once the tasks are built, before they start.
    pub on_started: OnStarted,
}

/// Runs this worker's tasks of one attempt until they end. An error that
/// downcasts to [`AttemptCancelled`] means the attempt was cancelled.
pub fn run_worker_attempt(w: WorkerAttempt) -> anyhow::Result<()> {
    let job = &w.job;
    let compiled: HashMap<String, CompiledOperator> =
        compile_all(&w.engine, job)?.into_iter().collect();
    let restore = match &w.restore {
        Some(path) => Some(
            Snapshot::load_with(path, &crate::store_options(job))
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
    };
    let attempt = Attempt {
        job,
        compiled: &compiled,
        state: &state,
        restore: restore.as_ref(),
        allow_non_restored: w.allow_non_restored_state,
        number: w.attempt,
        scope: Some(&scope),
    };
    let live = attempt.start()?;
    (w.on_started)(StartedAttempt {
        source_commands: live.source_commands,
        sink_commands: live.sink_commands,
        events: live.events,
        snapshot_plans: live.plans,
        prepared: live.prepared,
        cancel: live.cancel,
    });
    let ended = live.threads.join();
    if let Some(e) = ended.failure {
        return Err(e);
    }
    if ended.cancelled {
        return Err(anyhow!(AttemptCancelled {
            job: job.name.clone(),
        }));
    }
    Ok(())
}
