//! weir-runtime: runs a job graph on one machine.
//!
//! [`plan`] turns a [`weir_core::job::JobSpec`] into tasks: source splits,
//! chains of operators joined by forward edges, and sinks, wired by bounded
//! channels (one per producer/consumer subtask pair, so a slow consumer
//! blocks its producers and memory stays bounded). Each task runs on its
//! own thread and handles one message at a time: data, watermarks, idleness
//! and end of input, so operator code never races with anything.
//!
//! This crate decides nothing about Wasm (that is `weir-wasm`) or storage
//! (`weir-state`); it does not yet checkpoint (planned: barrier alignment
//! in the operator task's input loop).

mod gate;
mod message;
mod metrics;
mod operator_task;
mod plan;
mod runner;
mod sink_task;
mod source_task;

pub use metrics::{JobReport, NodeReport};
pub use runner::{RunOptions, run_job, validate_job};
