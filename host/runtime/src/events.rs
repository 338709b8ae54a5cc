//! What tasks and the job master tell each other about snapshots: the
//! commands sources and sinks receive, and the events every task reports.
//! These cross the network on a cluster (serde), so they hold no handles.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use weir_snapshot::{SinkSnapshot, SourceSnapshot, StateInfo, SubtaskSnapshot};

use crate::message::Barrier;

/// What a task reports to the job master.
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
    /// Set when this snapshot's barrier was to swap the operator's code:
    /// `Ok(digest)` of the version now running, or why the subtask kept
    /// the old one.
    #[serde(default)]
    pub swapped: Option<Result<String, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum SourceCommand {
    /// Snapshot the position, emit the barrier; with `stop`, then emit nothing more.
    Trigger { barrier: Barrier, stop: bool },
    /// Checkpoint `id` completed (a Kafka source commits its offsets).
    Completed(u64),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum SinkCommand {
    Commit(u64),
}

/// An operator whose code is swapped at a barrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swap {
    pub operator: String,
    /// SHA-256 of the new artifact, hex.
    pub digest: String,
    /// The digest it runs before the barrier (the new version's `open`
    /// sees it as `weir.previous_version`).
    pub previous: String,
    pub allow_dropping_state: bool,
}

/// Where a snapshot goes and what changes at its barrier; every task of
/// the attempt learns it before (or while) the barrier reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPlan {
    pub dir: PathBuf,
    #[serde(default)]
    pub swaps: Vec<Swap>,
}
