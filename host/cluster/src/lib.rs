//! weir-cluster: the coordinator and the worker of a weir cluster.
//!
//! - [`coordinator`]: `weir coordinator` accepts workers over QUIC with
//!   mutual TLS, tracks their slots and heartbeats, stores artifacts by
//!   content ([`artifacts`]) and serves the REST API ([`rest`], bearer
//!   token). Each submitted job gets a [`job_master`] thread that places
//!   its tasks ([`placement`], slot sharing as in Flink), deploys them,
//!   runs the job's checkpoint coordinator, and on a failure or a lost
//!   worker restarts the job from its latest checkpoint on the slots left.
//! - [`worker`]: `weir worker` registers with its slots, heartbeats, runs
//!   the tasks deployed to it through `weir-runtime`, and carries channels
//!   that cross workers over one QUIC connection per worker pair.
//! - [`protocol`]: the control messages between the two.
//! - [`client`]: the REST client the CLI uses (HTTPS, trusting the cluster CA).
//! - [`paths`]: which of a job's paths a node checks against its data roots.
//! - [`ha`]: with `--ha-dir`, job records and artifacts in durable storage
//!   (a directory or S3), so a restarted coordinator resumes running jobs
//!   from their latest checkpoints without their being submitted again.

pub mod artifacts;
pub mod client;
pub mod cluster;
pub mod coordinator;
pub mod ha;
pub mod job_master;
pub mod jobs;
pub mod options;
pub mod paths;
pub mod placement;
pub mod protocol;
pub mod rest;
pub mod worker;
pub mod worker_metrics;

pub use coordinator::{CoordinatorOptions, run_coordinator};
pub use worker::{WorkerOptions, run_worker, run_worker_with};
pub use worker_metrics::MetricsListen;

/// A fresh random bearer token (32 bytes from the OS, hex).
pub fn new_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| anyhow::anyhow!("cannot read random bytes for a token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
