//! The control API a running job serves (JSON over HTTP):
//!
//! - `GET  /health`
//! - `GET  /jobs` — the job, its status, graph and checkpoints
//! - `GET  /jobs/{job}/metrics` — its subtasks' metrics
//!   ([`crate::telemetry::JobMetrics`])
//! - `GET  /metrics` — this process's metrics in the Prometheus text format
//! - `POST /jobs/{job}/savepoints` `{"dir": optional}` — take a savepoint
//! - `POST /jobs/{job}/stop` `{"dir": optional}` — savepoint, then stop
//! - `POST /jobs/{job}/cancel` — end the job, no savepoint
//! - `POST /jobs/{job}/upgrade` `{"operator", "artifact": path to a .wasm,
//!   "allow_dropping_state", "rollback"}` — swap an operator's code live
//! - `POST /jobs/{job}/rescale` `{"parallelism", "operator": optional,
//!   "dir": optional}` — savepoint, and go on at another parallelism
//!
//! The same API the cluster coordinator serves. It listens on loopback
//! unless the operator explicitly asks for another address. Every request
//! must name a loopback `Host` (see [`crate::control_guard`]), and every
//! route but `/health` needs the bearer token that the job keeps, with its
//! address, in the mode-0600 registry file `<jobs dir>/<job>.json`
//! ([`crate::registry`]), where `weir savepoint JOB` finds both.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use axum::Json;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use crossbeam_channel::Sender;
use weir_core::data_roots::{Access, DataRoots, check_dir};
use weir_core::job::JobSpec;

use crate::control_guard::{BearerRefusal, HostCheck, check_bearer};
use crate::master::api::{CommandResponse, refusal as command_refusal, run_command};
use crate::master::command::{Command, CommandBody, CommandReply};
use crate::master::driver::{CommandRequest, JobView, SharedView};
use crate::registry::{self, Registration};

/// Where the control API listens and announces itself.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub bind: SocketAddr,
    /// Listen on `bind` even though it is not a loopback address (the
    /// operator asked for it; the token then crosses the network in plain
    /// HTTP).
    pub bind_any: bool,
    /// Where `<job>.json` with the API address and token is written; with
    /// none there is no way to learn the token, so the API is not served.
    pub jobs_dir: Option<PathBuf>,
    /// Default savepoint directory (else `<checkpoint dir>/savepoints`).
    pub savepoint_dir: Option<PathBuf>,
}

#[derive(Clone)]
struct AppState {
    job: String,
    default_dir: Option<PathBuf>,
    /// Where upgrades keep artifacts: `<checkpoint dir>/<job>`.
    storage_root: Option<PathBuf>,
    /// Options for a storage root on an object store.
    store_options: weir_snapshot::StoreOptions,
    /// Where a requested directory or artifact must lie (`None`: anywhere).
    roots: Option<DataRoots>,
    requests: Sender<CommandRequest>,
    view: SharedView,
}

/// The running server; dropping it shuts the server down and removes the
/// job's registry file.
pub(crate) struct ControlServer {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    registry: Option<(PathBuf, Registration)>,
}

impl ControlOptions {
    /// Refuses, before the job starts, an address the operator did not
    /// explicitly open to the network.
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.bind.ip().is_loopback() && !self.bind_any {
            bail!(
                "control API: {} is not a loopback address, so the API would be reachable from \
                 other machines; use --api 127.0.0.1:PORT, or pass --api-bind-any to listen there \
                 anyway",
                self.bind
            );
        }
        Ok(())
    }
}

impl ControlServer {
    pub(crate) fn start(
        options: &ControlOptions,
        roots: Option<DataRoots>,
        job: &JobSpec,
        requests: Sender<CommandRequest>,
        view: SharedView,
    ) -> anyhow::Result<ControlServer> {
        options.check()?;
        let Some(jobs_dir) = &options.jobs_dir else {
            tracing::warn!(
                job = %job.name,
                "no jobs directory (HOME is not set): the control API is off; pass --jobs-dir DIR"
            );
            return Ok(ControlServer {
                shutdown: None,
                thread: None,
                registry: None,
            });
        };
        // Checked before anything listens: the name becomes a file name.
        registry::registry_file(jobs_dir, &job.name)?;
        if !options.bind.ip().is_loopback() {
            tracing::warn!(
                job = %job.name,
                "control API on the non-loopback address {} (--api-bind-any): reachable from the \
                 network, and its token travels in plain HTTP",
                options.bind
            );
        }
        let listener = std::net::TcpListener::bind(options.bind)
            .with_context(|| format!("control API: cannot listen on {}", options.bind))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let token = registry::new_token()?;
        let state = AppState {
            job: job.name.clone(),
            default_dir: options
                .savepoint_dir
                .clone()
                .or_else(|| job.checkpoint.as_ref().map(|c| c.dir.join("savepoints"))),
            storage_root: crate::storage_of(job).map(|s| s.root().to_path_buf()),
            store_options: crate::store_options(job),
            roots,
            requests,
            view,
        };
        let hosts = HostCheck::new(addr);
        let protected = axum::Router::new()
            .route("/jobs", get(list_jobs))
            .route("/jobs/{job}/metrics", get(job_metrics))
            .route("/metrics", get(prometheus_metrics))
            .route("/jobs/{job}/savepoints", post(savepoint))
            .route("/jobs/{job}/stop", post(stop))
            .route("/jobs/{job}/cancel", post(cancel))
            .route("/jobs/{job}/upgrade", post(upgrade))
            .route("/jobs/{job}/rescale", post(rescale))
            .layer(axum::middleware::from_fn({
                let token = token.clone();
                move |request: Request, next: Next| {
                    let token = token.clone();
                    async move { authorize(&token, request, next).await }
                }
            }));
        let app = axum::Router::new()
            .route("/health", get(|| async { "ok" }))
            // The dashboard's files are static and public; every data call
            // it makes carries the token (from the URL fragment).
            .merge(crate::ui::router())
            .merge(protected)
            // Outermost: a foreign Host is refused before the token is looked at.
            .layer(axum::middleware::from_fn(
                move |request: Request, next: Next| {
                    let hosts = hosts.clone();
                    async move { check_host(&hosts, request, next).await }
                },
            ))
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
        let mut server = ControlServer {
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
            registry: None,
        };
        tracing::info!(job = %job.name, "control API on http://{addr}");
        let registration = Registration {
            job: job.name.clone(),
            api: format!("http://{addr}"),
            pid: std::process::id(),
            token,
        };
        // On an error `server` is dropped, which stops the listener.
        let path = registry::write(jobs_dir, &registration)?;
        server.registry = Some((path, registration));
        Ok(server)
    }
}

/// Serves only requests whose `Host` names this server by a loopback name.
async fn check_host(hosts: &HostCheck, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    match host {
        Some(host) if hosts.allows(host) => next.run(request).await,
        _ => refusal(
            StatusCode::FORBIDDEN,
            format!(
                "Host header {} is not this job's control API: address it as 127.0.0.1, \
                 localhost or [::1] with its port",
                host.map_or("(missing)".to_string(), |h| format!(
                    "`{}`",
                    weir_core::text::cut(h, 256)
                ))
            ),
        ),
    }
}

async fn authorize(token: &str, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match check_bearer(presented, token) {
        Ok(()) => next.run(request).await,
        Err(BearerRefusal::Missing) => refusal(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer <token>` with the token from the \
             job's registry file (weir savepoint/stop JOB does)"
                .into(),
        ),
        Err(BearerRefusal::Wrong) => refusal(StatusCode::UNAUTHORIZED, "wrong bearer token".into()),
    }
}

fn refusal(code: StatusCode, error: String) -> Response {
    command_refusal(code, error).into_response()
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some((path, ours)) = &self.registry {
            registry::remove_if_ours(path, ours);
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
    let view = state.view.lock().expect("not poisoned").clone();
    Json(serde_json::json!([view]))
}

async fn job_metrics(State(state): State<AppState>, UrlPath(job): UrlPath<String>) -> Response {
    if let Err(refused) = this_job(&state, &job) {
        return refused.into_response();
    }
    match crate::telemetry::job_metrics(&job) {
        Some(metrics) => Json(metrics).into_response(),
        // The job has no subtasks between attempts: an empty sample.
        None => Json(crate::telemetry::JobMetrics {
            job,
            unix_ms: weir_snapshot::metadata::now_unix_ms(),
            nodes: Vec::new(),
        })
        .into_response(),
    }
}

async fn prometheus_metrics() -> Response {
    (
        [(header::CONTENT_TYPE, crate::telemetry::CONTENT_TYPE)],
        crate::telemetry::render_prometheus(),
    )
        .into_response()
}

type Body = Option<Json<CommandBody>>;

async fn savepoint(state: State<AppState>, job: UrlPath<String>, body: Body) -> CommandResponse {
    take_savepoint(state, job, body, false).await
}

async fn stop(state: State<AppState>, job: UrlPath<String>, body: Body) -> CommandResponse {
    take_savepoint(state, job, body, true).await
}

/// Refuses a request for another job than the one this API serves.
fn this_job(state: &AppState, job: &str) -> Result<(), CommandResponse> {
    if job == state.job {
        return Ok(());
    }
    Err(command_refusal(
        StatusCode::NOT_FOUND,
        format!(
            "no running job `{}` here (this is `{}`)",
            weir_core::text::cut(job, 256),
            state.job
        ),
    ))
}

/// The directory a savepoint goes to: the request's or the default, inside
/// a read-write data root of this node (the client may be any token
/// holder, so it gets no more than a job file does).
fn savepoint_dir(state: &AppState, body: &CommandBody) -> Result<PathBuf, CommandResponse> {
    let Some(dir) = body.dir.clone().or(state.default_dir.clone()) else {
        return Err(command_refusal(
            StatusCode::BAD_REQUEST,
            "no savepoint directory: give one (weir savepoint JOB --dir DIR)",
        ));
    };
    // An object store URL is no path on this node: data roots do not apply.
    if let Some(roots) = &state.roots
        && !weir_snapshot::remote::is_remote(&dir)
        && let Err(reason) = check_dir(roots, &dir)
    {
        return Err(command_refusal(
            StatusCode::FORBIDDEN,
            format!("savepoint directory: {reason}"),
        ));
    }
    Ok(dir)
}

async fn take_savepoint(
    State(state): State<AppState>,
    UrlPath(job): UrlPath<String>,
    body: Body,
    stop: bool,
) -> CommandResponse {
    let body = body.map(|b| b.0).unwrap_or_default();
    if let Err(refused) = this_job(&state, &job) {
        return refused;
    }
    let dir = match savepoint_dir(&state, &body) {
        Ok(dir) => dir,
        Err(refused) => return refused,
    };
    run_command(&state.requests, Command::Savepoint { dir, stop }).await
}

async fn cancel(State(state): State<AppState>, UrlPath(job): UrlPath<String>) -> CommandResponse {
    if let Err(refused) = this_job(&state, &job) {
        return refused;
    }
    run_command(&state.requests, Command::Cancel).await
}

async fn upgrade(
    State(state): State<AppState>,
    UrlPath(job): UrlPath<String>,
    body: Body,
) -> CommandResponse {
    let body = body.map(|b| b.0).unwrap_or_default();
    if let Err(refused) = this_job(&state, &job) {
        return refused;
    }
    let Some(operator) = body.operator.clone() else {
        return command_refusal(StatusCode::BAD_REQUEST, "name the operator to upgrade");
    };
    let allow_dropping_state = body.allow_dropping_state;
    if body.rollback {
        return run_command(
            &state.requests,
            Command::Rollback {
                operator,
                allow_dropping_state,
            },
        )
        .await;
    }
    let Some(artifact) = body.artifact.map(PathBuf::from) else {
        return command_refusal(
            StatusCode::BAD_REQUEST,
            "give the new version's .wasm (weir upgrade JOB --operator NAME --wasm FILE)",
        );
    };
    if let Some(roots) = &state.roots
        && let Err(reason) = roots.check(&artifact, Access::Read)
    {
        return command_refusal(StatusCode::FORBIDDEN, format!("artifact: {reason}"));
    }
    let options = state.store_options.clone();
    let Some(storage_root) = state.storage_root.clone() else {
        return command_refusal(
            StatusCode::CONFLICT,
            "an upgrade needs checkpoints: add a [checkpoint] section to the job file",
        );
    };
    // Kept beside the checkpoints, which record its digest: a resume after
    // the process died finds it there.
    let kept = tokio::task::spawn_blocking(move || {
        crate::artifacts::keep(&storage_root, &artifact, &options).map_err(|e| format!("{e:#}"))
    })
    .await;
    let digest = match kept {
        Ok(Ok(digest)) => digest,
        Ok(Err(e)) => return command_refusal(StatusCode::BAD_REQUEST, e),
        Err(e) => return command_refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    run_command(
        &state.requests,
        Command::Upgrade {
            operator,
            digest,
            allow_dropping_state,
        },
    )
    .await
}

async fn rescale(
    State(state): State<AppState>,
    UrlPath(job): UrlPath<String>,
    body: Body,
) -> CommandResponse {
    let body = body.map(|b| b.0).unwrap_or_default();
    if let Err(refused) = this_job(&state, &job) {
        return refused;
    }
    let Some(parallelism) = body.parallelism else {
        return command_refusal(StatusCode::BAD_REQUEST, "give the new parallelism");
    };
    let dir = match savepoint_dir(&state, &body) {
        Ok(dir) => dir,
        Err(refused) => return refused,
    };
    run_command(
        &state.requests,
        Command::Rescale {
            parallelism,
            operator: body.operator,
            dir,
        },
    )
    .await
}

/// The CLI's side of the control API.
pub mod client {
    use super::*;

    /// Largest reply read from a control API.
    const REPLY_BYTES_MAX: u64 = 1 << 20;

    /// The API address and token a running job registered under `jobs_dir`.
    pub fn find(jobs_dir: &Path, job: &str) -> anyhow::Result<Registration> {
        registry::read(jobs_dir, job)
    }

    /// Takes a savepoint (and stops the job with `stop`) through the API at
    /// `api` with `token`; returns the savepoint's path.
    pub fn savepoint(
        api: &str,
        token: &str,
        job: &str,
        dir: Option<&Path>,
        stop: bool,
    ) -> anyhow::Result<PathBuf> {
        let body = CommandBody {
            dir: dir.map(Path::to_path_buf),
            ..CommandBody::default()
        };
        let reply = command(
            api,
            token,
            job,
            if stop { "stop" } else { "savepoints" },
            &body,
        )?;
        reply
            .path
            .ok_or_else(|| anyhow::anyhow!("{api}: the reply names no savepoint"))
    }

    /// What the job's API says about it (`GET /jobs`).
    pub fn jobs(api: &str, token: &str) -> anyhow::Result<Vec<JobView>> {
        let url = format!("{}/jobs", api.trim_end_matches('/'));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .into();
        let mut response = agent
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .with_context(|| format!("cannot reach the job's control API at {api}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("{url}: HTTP {status}");
        }
        Ok(response
            .body_mut()
            .with_config()
            .limit(REPLY_BYTES_MAX)
            .read_json()?)
    }

    /// Sends the command `action` (`savepoints`, `stop`, `cancel`,
    /// `upgrade`, `rescale`) with `body` and returns the job's answer.
    pub fn command(
        api: &str,
        token: &str,
        job: &str,
        action: &str,
        body: &CommandBody,
    ) -> anyhow::Result<CommandReply> {
        // The name goes into the URL: only names a job can have.
        registry::registry_file(Path::new(""), job)?;
        let url = format!("{}/jobs/{job}/{action}", api.trim_end_matches('/'));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(crate::master::api::COMMAND_WAIT))
            .build()
            .into();
        let mut response = agent
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(body)
            .with_context(|| format!("cannot reach the job's control API at {api}"))?;
        let status = response.status();
        let reply: CommandReply = response
            .body_mut()
            .with_config()
            .limit(REPLY_BYTES_MAX)
            .read_json()
            .with_context(|| format!("{url}: unexpected reply (HTTP {status})"))?;
        match (&reply.error, status.is_success()) {
            (Some(e), _) => bail!("{}", weir_core::text::cut_message(e)),
            (None, true) => Ok(reply),
            (None, false) => bail!("{url}: HTTP {status}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::driver::JobView;
    use std::sync::{Arc, Mutex};

    fn get(url: &str, token: Option<&str>) -> (u16, String, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent.get(url);
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().expect("the API answers");
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let status = response.status().as_u16();
        (status, kind, response.body_mut().read_to_string().unwrap())
    }

    #[test]
    fn metrics_are_served_behind_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(
            &path,
            "[job]\nname = \"served\"\n[[source]]\nname = \"events\"\nkind = \"generator\"\n\
             records = 1\n[[sink]]\nname = \"out\"\nkind = \"discard\"\ninput = \"events\"\n",
        )
        .unwrap();
        let job = weir_core::job::load(&path).unwrap();
        let options = ControlOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            bind_any: false,
            jobs_dir: Some(dir.path().join("jobs")),
            savepoint_dir: None,
        };
        let (requests, _keep) = crossbeam_channel::unbounded();
        let view = Arc::new(Mutex::new(JobView::default()));
        let _server = ControlServer::start(&options, None, &job, requests, view).unwrap();
        let attempt = crate::telemetry::AttemptRegistration::new("served");
        let sink = attempt.add("out", crate::telemetry::NodeKind::Sink, 0, Arc::default());
        sink.add_in(4, 40);
        let reg = registry::read(&dir.path().join("jobs"), "served").unwrap();
        let (status, _, _) = get(&format!("{}/metrics", reg.api), None);
        assert_eq!(status, 401, "no token, no metrics");
        let (status, kind, text) = get(&format!("{}/metrics", reg.api), Some(&reg.token));
        assert_eq!(status, 200);
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        assert!(
            text.contains(r#"weir_records_in_total{job_name="served",node="out",subtask="0"} 4"#),
            "{text}"
        );
        let (status, _, json) = get(
            &format!("{}/jobs/served/metrics", reg.api),
            Some(&reg.token),
        );
        assert_eq!(status, 200);
        let m: crate::telemetry::JobMetrics = serde_json::from_str(&json).unwrap();
        assert_eq!(m.nodes[0].subtasks[0].bytes_in, 40);
        let (status, _, _) = get(&format!("{}/jobs/other/metrics", reg.api), Some(&reg.token));
        assert_eq!(status, 404);
    }
}
