//! What users ask of a running job, and what they get back: one shape for
//! the embedded control API and the cluster's REST API.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Numbers the commands of one job master, so replies find their caller.
pub type CommandId = u64;

/// A user's command to a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Take a savepoint into `dir`; with `stop`, end the job after it.
    Savepoint { dir: PathBuf, stop: bool },
    /// Swap `operator`'s code for the artifact `digest` at the next
    /// checkpoint barrier, keeping its state.
    Upgrade {
        operator: String,
        digest: String,
        allow_dropping_state: bool,
    },
    /// Swap `operator` back to the version it ran before its last upgrade.
    Rollback {
        operator: String,
        allow_dropping_state: bool,
    },
    /// Stop with a savepoint into `dir` and restore from it at once with
    /// the new parallelism (of every operator and source, or of one operator).
    Rescale {
        parallelism: u32,
        operator: Option<String>,
        dir: PathBuf,
    },
    /// End the job now, without a savepoint.
    Cancel,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Savepoint { stop: false, .. } => "savepoint",
            Command::Savepoint { stop: true, .. } => "stop",
            Command::Upgrade { .. } => "upgrade",
            Command::Rollback { .. } => "rollback",
            Command::Rescale { .. } => "rescale",
            Command::Cancel => "cancel",
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CommandReply {
    /// The savepoint taken (savepoint, stop, rescale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The checkpoint at whose barrier the new version took over (upgrade,
    /// rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    /// The artifact digest now running (upgrade, rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The job's attempt after a rescale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub type CommandResult = Result<CommandReply, String>;

/// The body of a command request over HTTP (every field optional; which
/// apply depends on the route).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommandBody {
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default)]
    pub operator: Option<String>,
    /// The artifact to upgrade to: a digest (cluster: an uploaded
    /// artifact's name or digest; embedded: a `.wasm` path).
    #[serde(default)]
    pub artifact: Option<String>,
    #[serde(default)]
    pub allow_dropping_state: bool,
    #[serde(default)]
    pub rollback: bool,
    #[serde(default)]
    pub parallelism: Option<u32>,
}
