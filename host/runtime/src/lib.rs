//! weir-runtime: runs a job graph on one machine, and the job master that
//! drives it there and on a cluster.
//!
//! [`plan`] turns a [`weir_core::job::JobSpec`] into tasks: source splits,
//! chains of operators joined by forward edges, and sinks, wired by bounded
//! channels (one per producer/consumer subtask pair, so a slow consumer
//! blocks its producers and memory stays bounded). Each task runs on its
//! own thread and handles one message at a time: data, watermarks, idleness
//! and end of input, so operator code never races with anything.
//!
//! Checkpoints follow Chandy-Lamport with aligned barriers, as in Flink:
//! the job master ([`master`]) triggers sources, every task aligns the
//! barrier on its inputs and snapshots ([`task_snapshot`]), and the
//! metadata written after the last acknowledgement is what makes a
//! checkpoint exist; sinks commit only then. The master also restarts a
//! failed job from its latest checkpoint, and carries out users' commands:
//! savepoint, stop, cancel, upgrade (an operator's code swapped at a
//! barrier, [`swaps`]) and rescale. Its decisions are a state machine with
//! no IO ([`master::machine`]); `weir run` drives it with local threads
//! ([`embedded`]), the cluster with workers.
//!
//! On a cluster, a worker runs its share of an attempt
//! ([`run_worker_attempt`]): it builds the whole plan, keeps the tasks
//! placed on it, and hands channels that cross workers to the network
//! ([`remote`]).
//!
//! This crate decides nothing about Wasm (that is `weir-wasm`), storage
//! (`weir-state`) or snapshot files (`weir-snapshot`).

mod alignment;
pub mod artifacts;
mod attempt;
mod channel;
mod control;
mod control_guard;
pub mod embedded;
pub mod events;
mod gate;
pub mod master;
mod message;
mod metrics;
mod operator_task;
mod plan;
pub mod registry;
pub mod remote;
pub mod rescale;
mod restore;
mod sink_task;
mod source_task;
mod state_root;
pub mod swaps;
mod task_snapshot;
pub mod telemetry;
pub mod ui;
mod worker_attempt;

use weir_core::job::JobSpec;
use weir_core::text::{MESSAGE_BYTES_MAX, cut};
use weir_snapshot::CheckpointStorage;

pub use control::{ControlOptions, client};
pub use embedded::{RunOptions, check_data_paths, run_job, sink_target, validate_job};
pub use events::{
    AckPart, OperatorPart, SinkCommand, SnapshotPlan, SourceCommand, Swap, TaskEvent,
};
pub use message::Barrier;
pub use metrics::{JobReport, NodeReport, Outcome};
pub use plan::check as check_plan;
pub use plan::{PlanSize, TaskId, chain_of, tasks};
pub use remote::{DataPlane, InboundChannels};
pub use restore::{check_snapshot, starting_snapshot};
pub use task_snapshot::SnapshotPlans;
/// Lives in weir-core so the cluster's nodes fold paths the same way.
pub use weir_core::data_roots::clean_job_paths;
pub use worker_attempt::{
    AttemptCancelled, OnStarted, StartedAttempt, WorkerAttempt, run_worker_attempt,
};

/// Longest error (a chain of contexts around a cause) printed or returned
/// for one attempt: room for a guest's message, already cut to
/// [`MESSAGE_BYTES_MAX`] where it entered the host, and what names it.
pub const ERROR_BYTES_MAX: usize = 2 * MESSAGE_BYTES_MAX;

/// `e` with its causes, cut to [`ERROR_BYTES_MAX`] with control characters
/// escaped: safe for a terminal, a log line or a reply.
pub fn cut_error(e: &anyhow::Error) -> String {
    cut(&format!("{e:#}"), ERROR_BYTES_MAX)
}

/// Where `job`'s checkpoints go, if it takes any: a directory, or an
/// object store (`s3://`). A job is checked with [`open_storage`] before
/// it starts, so a failure here (a broken environment since) is logged.
pub fn storage_of(job: &JobSpec) -> Option<CheckpointStorage> {
    open_storage(job).unwrap_or_else(|e| {
        tracing::error!(job = %job.name, "{e:#}");
        None
    })
}

/// Opens `job`'s checkpoint storage, or says why it cannot be used (an
/// object store whose settings do not make a client), naming the job
/// file's line: a job with checkpoints never runs without them.
pub fn open_storage(job: &JobSpec) -> anyhow::Result<Option<CheckpointStorage>> {
    let Some(c) = job.checkpoint.as_ref() else {
        return Ok(None);
    };
    CheckpointStorage::open(&c.dir, &job.name, &store_options(job))
        .map(Some)
        .map_err(|e| {
            anyhow::anyhow!(
                "{}:{}: checkpoint dir {}: {e}",
                job.file.display(),
                c.dir_line,
                c.dir.display()
            )
        })
}

/// The object store options of `job`'s `[checkpoint]` (the `AWS_*`
/// environment fills in the rest).
pub fn store_options(job: &JobSpec) -> weir_snapshot::StoreOptions {
    let Some(c) = &job.checkpoint else {
        return Default::default();
    };
    weir_snapshot::StoreOptions {
        endpoint: c.s3_endpoint.clone(),
        region: c.s3_region.clone(),
        allow_http: c.s3_allow_http,
        ..Default::default()
    }
}
