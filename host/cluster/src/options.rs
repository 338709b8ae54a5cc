//! How a coordinator is set up: addresses, certificates, token, limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use weir_core::data_roots::DataRoots;

#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// The REST API's address.
    pub rest: SocketAddr,
    /// Where workers connect (QUIC).
    pub quic: SocketAddr,
    pub certs: PathBuf,
    /// This node's certificate name in `certs`.
    pub node: String,
    /// The bearer token every REST call but `/health` must carry.
    pub token: String,
    /// The file the token was read from, if any: kept out of jobs' reach.
    pub token_file: Option<PathBuf>,
    /// Artifacts, compiled code and state of the coordinator.
    pub data_dir: PathBuf,
    pub artifact_bytes_max: usize,
    /// All stored artifacts together; see [`ArtifactStore`].
    pub artifacts_total_bytes_max: u64,
    /// Names artifacts are kept under; an upload under a new name beyond
    /// them gets 507.
    pub artifact_names_max: usize,
    /// Uploads received and checked (compiled) at once; more get 503.
    pub uploads_max: usize,
    /// Finished jobs kept for `GET /jobs`, newest first.
    pub finished_jobs_max: usize,
    /// How long a finished job is kept.
    pub finished_job_retention: Duration,
    /// Where jobs may read and write.
    pub data_roots: DataRoots,
    /// Serve the REST API over plain HTTP (token and jobs in clear text).
    pub insecure_http: bool,
    /// Written once both listeners are up: `{"rest": ..., "quic": ...}`.
    pub ready_file: Option<PathBuf>,
    /// High availability: where job records and artifacts are kept (a
    /// directory or `s3://bucket/prefix`); see [`crate::ha`].
    pub ha_dir: Option<String>,
}

impl CoordinatorOptions {
    /// Weir's own directories and files on this node, carved out of the
    /// data roots (see [`crate::paths::without_own`]). The token file is
    /// carved out by itself, not its directory, which may be a data root.
    pub fn own_paths(&self) -> Vec<PathBuf> {
        let mut own = vec![
            self.certs.clone(),
            self.data_dir.clone(),
            self.data_dir.join("cache"),
        ];
        own.extend(self.token_file.clone());
        own
    }
}

/// Finished jobs kept by default.
pub const FINISHED_JOBS_MAX_DEFAULT: usize = 100;
/// How long a finished job is kept by default.
pub const FINISHED_JOB_RETENTION_DEFAULT: Duration = Duration::from_secs(24 * 3600);
/// Concurrent uploads by default: each holds its body and a compile.
pub const UPLOADS_MAX_DEFAULT: usize = 2;
