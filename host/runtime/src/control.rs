//! The control API a running job serves on localhost (JSON over HTTP):
//!
//! - `GET  /health`
//! - `GET  /jobs` — the job, its status and last checkpoint
//! - `POST /jobs/{job}/savepoints` `{"dir": optional}` — take a savepoint
//! - `POST /jobs/{job}/stop` `{"dir": optional}` — savepoint, then stop
//!
//! The same API the cluster coordinator serves. The address is written to
//! `<jobs dir>/<job>.json` so `weir savepoint JOB` can find it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use crossbeam_channel::{Sender, bounded};
use serde::{Deserialize, Serialize};
use weir_core::job::JobSpec;

use crate::coordinator::{JobStatus, SavepointRequest};

/// Where the control API listens and announces itself.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub bind: SocketAddr,
    /// Where `<job>.json` with the API address is written.
    pub jobs_dir: Option<PathBuf>,
    /// Default savepoint directory (else `<checkpoint dir>/savepoints`).
    pub savepoint_dir: Option<PathBuf>,
}

#[derive(Clone)]
struct AppState {
    job: String,
    default_dir: Option<PathBuf>,
    requests: Sender<SavepointRequest>,
    status: JobStatus,
}

/// The running server; dropping it shuts the server down and removes the
/// job's registry file.
pub(crate) struct ControlServer {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    registry: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
pub struct Registration {
    pub job: String,
    pub api: String,
    pub pid: u32,
}

#[derive(Deserialize, Default)]
struct SavepointBody {
    dir: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct SavepointReply {
    path: Option<PathBuf>,
    error: Option<String>,
}

impl ControlServer {
    pub(crate) fn start(
        options: &ControlOptions,
        job: &JobSpec,
        requests: Sender<SavepointRequest>,
        status: JobStatus,
    ) -> anyhow::Result<ControlServer> {
        let listener = std::net::TcpListener::bind(options.bind)
            .with_context(|| format!("control API: cannot listen on {}", options.bind))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = AppState {
            job: job.name.clone(),
            default_dir: options
                .savepoint_dir
                .clone()
                .or_else(|| job.checkpoint.as_ref().map(|c| c.dir.join("savepoints"))),
            requests,
            status,
        };
        let app = axum::Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/jobs", get(list_jobs))
            .route("/jobs/{job}/savepoints", post(savepoint))
            .route("/jobs/{job}/stop", post(stop))
            .with_state(state);
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("control API: cannot start its runtime")?;
        let thread = std::thread::Builder::new()
            .name("control-api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = shutdown_rx.await;
                        })
                        .await;
                });
            })?;
        tracing::info!(job = %job.name, "control API on http://{addr}");
        let registry = match &options.jobs_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let path = dir.join(format!("{}.json", job.name));
                let registration = Registration {
                    job: job.name.clone(),
                    api: format!("http://{addr}"),
                    pid: std::process::id(),
                };
                std::fs::write(&path, serde_json::to_vec_pretty(&registration)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Some(path)
            }
            None => None,
        };
        Ok(ControlServer {
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
            registry,
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some(path) = &self.registry {
            let _ = std::fs::remove_file(path);
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn list_jobs(State(state): State<AppState>) -> Json<serde_json::Value> {
    let last = *state.status.last_checkpoint.lock().expect("not poisoned");
    Json(serde_json::json!([{ "name": state.job, "status": "running", "last_checkpoint": last }]))
}

async fn savepoint(
    state: State<AppState>,
    job: UrlPath<String>,
    body: Option<Json<SavepointBody>>,
) -> (StatusCode, Json<SavepointReply>) {
    take_savepoint(state, job, body, false).await
}

async fn stop(
    state: State<AppState>,
    job: UrlPath<String>,
    body: Option<Json<SavepointBody>>,
) -> (StatusCode, Json<SavepointReply>) {
    take_savepoint(state, job, body, true).await
}

async fn take_savepoint(
    State(state): State<AppState>,
    UrlPath(job): UrlPath<String>,
    body: Option<Json<SavepointBody>>,
    stop: bool,
) -> (StatusCode, Json<SavepointReply>) {
    let fail = |code, error: String| {
        (
            code,
            Json(SavepointReply {
                path: None,
                error: Some(error),
            }),
        )
    };
    if job != state.job {
        return fail(
            StatusCode::NOT_FOUND,
            format!("no running job `{job}` here (this is `{}`)", state.job),
        );
    }
    let Some(dir) = body.and_then(|b| b.0.dir).or(state.default_dir.clone()) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "no savepoint directory: give one (weir savepoint JOB --dir DIR)".into(),
        );
    };
    let (reply_tx, reply_rx) = bounded(1);
    let request = SavepointRequest {
        dir,
        stop,
        reply: reply_tx,
    };
    if state.requests.send(request).is_err() {
        return fail(StatusCode::CONFLICT, "the job is no longer running".into());
    }
    let waited =
        tokio::task::spawn_blocking(move || reply_rx.recv_timeout(Duration::from_secs(3600))).await;
    match waited {
        Ok(Ok(Ok(path))) => (
            StatusCode::OK,
            Json(SavepointReply {
                path: Some(path),
                error: None,
            }),
        ),
        Ok(Ok(Err(e))) => fail(StatusCode::CONFLICT, e),
        _ => fail(
            StatusCode::CONFLICT,
            "the job ended before the savepoint completed".into(),
        ),
    }
}

/// The CLI's side of the control API.
pub mod client {
    use super::*;

    /// The API address a running job registered under `jobs_dir`.
    pub fn find(jobs_dir: &Path, job: &str) -> anyhow::Result<String> {
        let path = jobs_dir.join(format!("{job}.json"));
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "no running job `{job}` is registered in {} (is it running on this machine?)",
                jobs_dir.display()
            )
        })?;
        let registration: Registration = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a job registration", path.display()))?;
        Ok(registration.api)
    }

    /// Takes a savepoint (and stops the job with `stop`); returns its path.
    pub fn savepoint(
        api: &str,
        job: &str,
        dir: Option<&Path>,
        stop: bool,
    ) -> anyhow::Result<PathBuf> {
        let action = if stop { "stop" } else { "savepoints" };
        let url = format!("{}/jobs/{job}/{action}", api.trim_end_matches('/'));
        let body = serde_json::json!({ "dir": dir });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3600)))
            .build()
            .into();
        let mut response = agent
            .post(&url)
            .send_json(&body)
            .with_context(|| format!("cannot reach the job's control API at {api}"))?;
        let reply: SavepointReply = response
            .body_mut()
            .read_json()
            .with_context(|| format!("{url}: unexpected reply"))?;
        match (reply.path, reply.error) {
            (Some(path), _) => Ok(path),
            (None, Some(e)) => anyhow::bail!("{e}"),
            (None, None) => anyhow::bail!("{url}: empty reply"),
        }
    }
}
