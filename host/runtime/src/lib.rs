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
//! This crate decides nothing about Wasm (that is `weir-wasm`), storage
//! (`weir-state`) or snapshot files (`weir-snapshot`).

mod alignment;
mod control;
mod coordinator;
mod gate;
mod message;
mod metrics;
mod operator_task;
mod plan;
mod runner;
mod sink_task;
mod source_task;
mod task_snapshot;

pub use control::{ControlOptions, client};
pub use metrics::{JobReport, NodeReport, Outcome};
pub use runner::{RunOptions, run_job, sink_target, validate_job};
