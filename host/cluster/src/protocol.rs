//! The control protocol between the coordinator and its workers: JSON
//! messages on one bidirectional QUIC stream per worker (see
//! `weir_net::stream::{write_message, read_message}`). Artifacts travel on
//! a stream of their own, opened by the worker per artifact it lacks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use weir_runtime::{SinkCommand, SourceCommand, TaskEvent, TaskId};

pub type WorkerId = u32;

/// Worker → coordinator.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FromWorker {
    /// The first message: who the worker is and what it offers.
    Register {
        name: String,
        slots: u32,
        /// Where peers open data connections to it.
        data_addr: SocketAddr,
    },
    Heartbeat,
    /// A task's checkpoint event, for the job's checkpoint coordinator.
    Event {
        job: String,
        attempt: u32,
        event: TaskEvent,
    },
    /// The worker's share of an attempt ended.
    AttemptEnded {
        job: String,
        attempt: u32,
        result: AttemptResult,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptResult {
    Finished,
    Cancelled,
    Failed(String),
}

/// Coordinator → worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToWorker {
    Registered {
        worker: WorkerId,
    },
    Deploy(Box<Deployment>),
    /// Where snapshot `id` of an attempt is written (`None`: aborted).
    SnapshotDir {
        job: String,
        attempt: u32,
        id: u64,
        dir: Option<PathBuf>,
    },
    Source {
        job: String,
        attempt: u32,
        task: TaskId,
        command: SourceCommand,
    },
    /// The coordinator dropped a source's command channel (after a stop).
    SourceClosed {
        job: String,
        attempt: u32,
        task: TaskId,
    },
    Sink {
        job: String,
        attempt: u32,
        task: TaskId,
        command: SinkCommand,
    },
    Cancel {
        job: String,
        attempt: u32,
    },
}

/// One worker's share of one attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub job: String,
    /// The attempt's id, unique in the coordinator's lifetime: every
    /// message and channel of the attempt carries it.
    pub attempt: u32,
    /// The job's attempt number (0 first), which guests see.
    pub attempt_number: u32,
    /// The job file as submitted, and the path relative paths in it are
    /// resolved against (the shared file system every node sees).
    pub job_toml: String,
    pub job_path: PathBuf,
    /// Operator name → artifact digest (`sha256:<hex>`).
    pub artifacts: BTreeMap<String, String>,
    /// Where every task of the attempt runs.
    pub placement: Vec<(TaskId, WorkerId)>,
    /// Every worker of the attempt and its data address.
    pub peers: BTreeMap<WorkerId, SocketAddr>,
    pub restore: Option<PathBuf>,
    pub allow_non_restored_state: bool,
}

/// Worker → coordinator, on a stream of its own: send me this artifact.
#[derive(Debug, Serialize, Deserialize)]
pub struct FetchArtifact {
    pub digest: String,
}

/// Worker → worker, first message on a new peer connection.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerHello {
    pub worker: WorkerId,
}
