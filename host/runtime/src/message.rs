//! What travels on a channel between two subtasks.

use weir_core::Batch;

#[derive(Debug, Clone)]
pub(crate) enum Message {
    Data(Batch),
    /// No record with an earlier event time will follow on this channel.
    Watermark(i64),
    /// The producer has nothing to send for now; do not wait for its watermark.
    Idle,
    /// The producer is done; nothing follows.
    End,
    /// Everything before this belongs to snapshot `id`.
    Barrier(Barrier),
}

/// A checkpoint barrier, injected by sources and aligned by every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Barrier {
    pub id: u64,
    /// Savepoints store state in the canonical format, whatever the backend.
    pub savepoint: bool,
}

/// A task stopped because a neighbour went away (another task failed or the
/// job was cancelled); the root cause is reported by whoever failed first.
#[derive(Debug)]
pub(crate) struct Disconnected;

pub(crate) type TaskResult = Result<(), TaskError>;

#[derive(Debug)]
pub(crate) enum TaskError {
    Cancelled,
    Failed(anyhow::Error),
}

impl From<Disconnected> for TaskError {
    fn from(_: Disconnected) -> Self {
        TaskError::Cancelled
    }
}

impl From<anyhow::Error> for TaskError {
    fn from(e: anyhow::Error) -> Self {
        TaskError::Failed(e)
    }
}
