//! The control protocol between the coordinator and its workers: JSON
//! messages on one bidirectional QUIC stream per worker (see
//! `weir_net::stream::{write_message, read_message}`). Artifacts travel on
//! a stream of their own, opened by the worker per artifact it lacks.
//!
//! Registration and the worker-to-worker hello carry [`PROTOCOL_VERSION`];
//! a peer of another version is refused with both versions named. A peer
//! from before versioning sends none, which reads as version 1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use weir_runtime::{SinkCommand, SourceCommand, Swap, TaskEvent, TaskId};

pub type WorkerId = u32;

/// The version of these messages; bump on any incompatible change.
/// Version 1 was the protocol before versioning, certificate roles and
/// data roots.
pub const PROTOCOL_VERSION: u32 = 4;

fn unversioned() -> u32 {
    1
}

/// Refusal of a peer that speaks another protocol version, naming both.
pub fn check_version(who: &str, theirs: u32) -> Result<(), String> {
    if theirs == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(format!(
            "{who} speaks cluster protocol version {theirs}, this node speaks version {PROTOCOL_VERSION}: run the same weir release on every node"
        ))
    }
}

/// Control messages queued for one peer (coordinator → a worker, a worker
/// → the coordinator) and not yet written. A peer that stops reading its
/// control stream stalls the writer on flow control; past this many
/// messages it is given up (its messages dropped with it), so a stalled
/// peer costs a bounded amount of memory.
pub const OUTBOX_MESSAGES_MAX: usize = 4096;

/// What became of a message put in a bounded outbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    Sent,
    /// The outbox is full: the peer is to be given up.
    Stalled,
    /// The peer is gone already.
    Gone,
}

/// Puts `message` in `outbox` without waiting.
pub fn queue<T>(outbox: &tokio::sync::mpsc::Sender<T>, message: T) -> Queued {
    match outbox.try_send(message) {
        Ok(()) => Queued::Sent,
        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => Queued::Stalled,
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Queued::Gone,
    }
}

/// Worker → coordinator.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FromWorker {
    /// The first message: who the worker is and what it offers.
    Register {
        #[serde(default = "unversioned")]
        protocol: u32,
        /// Must be the node name in the worker's certificate.
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
    /// This worker's metrics of every job it runs, every second (the
    /// coordinator's `GET /jobs/{job}/metrics` and dashboard merge them).
    Metrics {
        jobs: Vec<weir_runtime::telemetry::JobMetrics>,
    },
    /// The new version of an operator is open on every local subtask of
    /// it (or why not); see [`ToWorker::Prepare`].
    Prepared {
        job: String,
        attempt: u32,
        upgrade: u64,
        result: Result<(), String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptResult {
    Finished,
    Cancelled,
    Failed(String),
}

impl AttemptResult {
    /// The result with its error cut to a few KiB (it may hold a guest's
    /// error text).
    pub fn cut(self) -> AttemptResult {
        match self {
            AttemptResult::Failed(e) => AttemptResult::Failed(weir_core::text::cut_message(&e)),
            other => other,
        }
    }
}

/// Coordinator → worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToWorker {
    Registered {
        worker: WorkerId,
    },
    /// The registration was refused (another protocol version, or a name
    /// the worker's certificate does not carry); the coordinator closes
    /// the connection after this.
    Refused {
        reason: String,
    },
    Deploy(Box<Deployment>),
    /// Where snapshot `id` of an attempt is written (`None`: aborted).
    SnapshotDir {
        job: String,
        attempt: u32,
        id: u64,
        dir: Option<PathBuf>,
        /// Operators whose code is swapped at this snapshot's barrier.
        #[serde(default)]
        swaps: Vec<Swap>,
    },
    /// Fetch `artifact`, compile it and open it for every local subtask of
    /// `swap.operator`, ready for the barrier that swaps it in.
    Prepare {
        job: String,
        attempt: u32,
        upgrade: u64,
        swap: Swap,
        artifact: String,
    },
    /// Drop the prepared versions of an upgrade that will not happen.
    Discard {
        job: String,
        attempt: u32,
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
    /// Every worker of the attempt and its node (certificate) name.
    #[serde(default)]
    pub peer_names: BTreeMap<WorkerId, String>,
    pub restore: Option<PathBuf>,
    pub allow_non_restored_state: bool,
    /// Each source's and operator's parallelism in this attempt (a rescale
    /// changes it from what the job file says).
    #[serde(default)]
    pub parallelism: BTreeMap<String, u32>,
}

/// Worker → coordinator, on a stream of its own: send me this artifact.
#[derive(Debug, Serialize, Deserialize)]
pub struct FetchArtifact {
    pub digest: String,
}

/// Worker → worker, first message on a new peer connection.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerHello {
    #[serde(default = "unversioned")]
    pub protocol: u32,
    pub worker: WorkerId,
    /// The node name in the dialing worker's certificate.
    #[serde(default)]
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_outbox_says_stalled_and_a_dropped_one_gone() {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        assert_eq!(queue(&tx, 1), Queued::Sent);
        assert_eq!(queue(&tx, 2), Queued::Sent);
        assert_eq!(queue(&tx, 3), Queued::Stalled);
        drop(rx);
        assert_eq!(queue(&tx, 4), Queued::Gone);
    }

    #[test]
    fn a_registration_without_a_version_is_version_1_and_refused() {
        let old = r#"{"register":{"name":"w","slots":1,"data_addr":"127.0.0.1:1"}}"#;
        let FromWorker::Register { protocol, .. } = serde_json::from_str(old).unwrap() else {
            panic!("not a registration");
        };
        assert_eq!(protocol, 1);
        let error = check_version("worker `w`", protocol).unwrap_err();
        assert_eq!(
            error,
            format!(
                "worker `w` speaks cluster protocol version 1, this node speaks version {PROTOCOL_VERSION}: run the same weir release on every node"
            )
        );
        assert!(check_version("worker `w`", PROTOCOL_VERSION).is_ok());
    }
}
