//! weir-runtime: runs a job graph on one machine.
//!
//! [`plan`] turns a [`weir_core::job::JobSpec`] into tasks: source splits,
//! chains of operators joined by forward edges, and sinks, wired by bounded
//! channels (one per producer/consumer subtask pair, so a slow consumer
//! blocks its producers and memory stays bounded). Each task runs on its
//! own thread and handles one message at a time: data, watermarks, idleness
//! and end of input, so operator code never races with anything.
//!
//! Checkpoints follow Chandy-Lamport with aligned barriers, as in Flink:
//! the [`coordinator`] triggers sources, every task aligns the barrier on its
//! inputs and snapshots ([`task_snapshot`]), and the metadata written after
//! the last acknowledgement is what makes a checkpoint exist; sinks commit
//! only then. A failed task restarts the job from the latest complete
//! checkpoint; the [`control`] API takes savepoints and stops jobs.
//!
//! On a cluster, a worker runs its share of an attempt
//! ([`run_worker_attempt`]): it builds the whole plan, keeps the tasks
//! placed on it, and hands channels that cross workers to the network
//! ([`remote`]); the cluster's coordinator runs the checkpoint coordinator
//! ([`start_remote_coordinator`]) and carries commands and events.
//!
//! This crate decides nothing about Wasm (that is `weir-wasm`), storage
//! (`weir-state`) or snapshot files (`weir-snapshot`).

mod alignment;
mod control;
mod control_guard;
mod coordinator;
mod gate;
mod message;
mod metrics;
mod operator_task;
mod plan;
pub mod registry;
pub mod remote;
mod runner;
mod sink_task;
mod source_task;
mod task_snapshot;

pub use control::{ControlOptions, client};
pub use coordinator::{
    AckPart, JobStatus, OperatorPart, RemoteCoordinator, SavepointRequest, SinkCommand,
    SourceCommand, TaskEvent, start_remote_coordinator, storage_of,
};
pub use message::Barrier;
pub use metrics::{JobReport, NodeReport, Outcome};
pub use plan::check as check_plan;
pub use plan::{PlanSize, TaskId, tasks};
pub use remote::{DataPlane, InboundChannels};
pub use runner::{
    AttemptCancelled, ERROR_BYTES_MAX, RunOptions, StartedAttempt, WorkerAttempt, check_data_paths,
    check_snapshot, cut_error, run_job, run_worker_attempt, sink_target, starting_snapshot,
    validate_job,
};
pub use task_snapshot::SnapshotDirs;
/// Lives in weir-core so the cluster's nodes fold paths the same way.
pub use weir_core::data_roots::clean_job_paths;
