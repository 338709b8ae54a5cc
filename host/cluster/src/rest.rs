//! The coordinator's REST API (JSON). Every route but `GET /health`
//! requires `Authorization: Bearer <token>`.
//!
//! - `GET  /health`
//! - `GET  /workers`
//! - `POST /artifacts?name=NAME` (body: the `.wasm` bytes) → `{name, digest, bytes}`
//! - `GET  /artifacts`
//! - `POST /jobs` `{job_toml, job_path, artifacts?, from_savepoint?, resume?, allow_non_restored_state?}`
//! - `GET  /jobs`, `GET /jobs/{job}`
//! - `POST /jobs/{job}/savepoints` `{dir?}`, `POST /jobs/{job}/stop` `{dir?}`
//! - `POST /jobs/{job}/cancel`
//! - `POST /jobs/{job}/upgrade` `{operator, artifact (an uploaded name or digest), allow_dropping_state?, rollback?}`
//! - `POST /jobs/{job}/rescale` `{parallelism, operator?, dir?}`
//!
//! Commands answer in the embedded control API's shape
//! ([`weir_runtime::master::command::CommandReply`]).
//!
//! Errors are `{"error": "..."}` with a status that says whose fault it is.
//!
//! Every path a job names (and every savepoint directory and snapshot a
//! request names) must lie under the coordinator's data roots; uploads are
//! throttled to `uploads_max` at once (503 beyond), each holding its body
//! and a compile.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
// Compares without an early exit, so timing says nothing about the token
// (the same crate the embedded control API uses).
use subtle::ConstantTimeEq as _;
use weir_core::data_roots::Access;
use weir_runtime::master::api::{CommandResponse, refusal, run_command};
use weir_runtime::master::command::{Command, CommandBody};

use crate::artifacts::UploadError;
use crate::cluster::Cluster;
use crate::job_master::Submission;

type Reply = Result<Response, ApiError>;

pub struct ApiError(StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Errors may quote the tenant (job files, guest errors): a few KiB.
        let error = weir_core::text::cut_message(&self.1);
        (self.0, Json(serde_json::json!({ "error": error }))).into_response()
    }
}

/// How much of a job's error `GET /jobs` shows per job (the full, already
/// cut error is at `GET /jobs/{job}`), so the list stays small however
/// many jobs failed.
const LISTED_ERROR_BYTES_MAX: usize = 1024;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// Largest JSON request body (a job file is bounded well below this).
pub const JSON_BODY_BYTES_MAX: usize = 2 << 20;
/// Savepoints (and stops) asked for over REST and not yet answered, over
/// all jobs; more get 503. Each holds a thread while it waits.
pub const SAVEPOINTS_IN_FLIGHT_MAX: usize = 16;

pub(crate) fn router(cluster: Arc<Cluster>) -> axum::Router {
    let body_max = cluster.artifacts.bytes_max();
    let token = Arc::new(cluster.options.token.clone());
    let uploads = cluster.uploads.clone();
    let throttled_upload = post(upload).layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let uploads = uploads.clone();
            async move { throttle(&uploads, request, next).await }
        },
    ));
    // Only an upload's body may be as large as an artifact.
    let protected = axum::Router::new()
        .route("/workers", get(workers))
        .route("/jobs", post(submit).get(jobs))
        .route("/jobs/{job}", get(job))
        .route("/jobs/{job}/savepoints", post(savepoint))
        .route("/jobs/{job}/stop", post(stop))
        .route("/jobs/{job}/cancel", post(cancel))
        .route("/jobs/{job}/upgrade", post(upgrade))
        .route("/jobs/{job}/rescale", post(rescale))
        .route("/jobs/{job}/metrics", get(job_metrics))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
        .merge(
            axum::Router::new()
                .route("/artifacts", throttled_upload.get(artifacts))
                .layer(DefaultBodyLimit::max(body_max)),
        )
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let token = token.clone();
                async move { authorize(&token, request, next).await }
            },
        ));
    axum::Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        // The dashboard's files are static and public; every data call it
        // makes carries the token (from the URL fragment).
        .merge(weir_runtime::ui::router())
        .merge(protected)
        .with_state(cluster)
}

async fn authorize(token: &str, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if bool::from(p.as_bytes().ct_eq(token.as_bytes())) => next.run(request).await,
        Some(_) => ApiError(StatusCode::UNAUTHORIZED, "wrong bearer token".into()).into_response(),
        None => ApiError(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer <token>`".into(),
        )
        .into_response(),
    }
}

/// Lets a request through only with an upload permit, taken before its
/// body is read, so at most `uploads_max` bodies and compiles are in
/// memory at once.
async fn throttle(uploads: &Arc<tokio::sync::Semaphore>, request: Request, next: Next) -> Response {
    match uploads.clone().try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the coordinator is busy checking other uploads (--uploads-max at once); try again shortly".into(),
        )
        .into_response(),
    }
}

async fn workers(State(cluster): State<Arc<Cluster>>) -> Reply {
    Ok(Json(cluster.workers()).into_response())
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

async fn upload(
    State(cluster): State<Arc<Cluster>>,
    Query(q): Query<UploadQuery>,
    body: Bytes,
) -> Reply {
    let name = q
        .name
        .ok_or_else(|| bad("missing `name` query parameter (the artifact's file name)"))?;
    let stored = tokio::task::spawn_blocking(move || {
        let in_use = cluster.artifacts_in_use();
        cluster.artifacts.put(&name, &body, &in_use, |name, bytes| {
            cluster
                .engine
                .load_bytes(name, bytes)
                .map(|_| ())
                .map_err(|e| weir_core::text::cut_message(&e))
        })
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match stored {
        Ok(info) => Ok((StatusCode::CREATED, Json(info)).into_response()),
        Err(e @ UploadError::BadName(_)) => Err(bad(e.to_string())),
        Err(e @ UploadError::TooLarge { .. }) => {
            Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))
        }
        Err(e @ (UploadError::StoreFull { .. } | UploadError::TooManyNames { .. })) => {
            Err(ApiError(StatusCode::INSUFFICIENT_STORAGE, e.to_string()))
        }
        Err(e @ UploadError::Invalid(_)) => {
            Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
        }
        Err(e @ UploadError::Storage(_)) => {
            Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
    }
}

async fn artifacts(State(cluster): State<Arc<Cluster>>) -> Reply {
    Ok(Json(cluster.artifacts.list()).into_response())
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SubmitRequest {
    /// The job file's text.
    pub job_toml: String,
    /// The job file's path: relative paths in it resolve against its
    /// directory, which must be on storage every node sees.
    pub job_path: PathBuf,
    /// Operator → uploaded artifact name or digest; operators not listed
    /// use their `wasm` value (a name or `sha256:` digest).
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
    #[serde(default)]
    pub from_savepoint: Option<PathBuf>,
    #[serde(default)]
    pub resume: bool,
    #[serde(default)]
    pub allow_non_restored_state: bool,
}

async fn submit(State(cluster): State<Arc<Cluster>>, Json(request): Json<SubmitRequest>) -> Reply {
    let name = tokio::task::spawn_blocking(move || {
        let submission = prepare(&cluster, request.clone())?;
        let name = submission.job.name.clone();
        // Recorded for a restarted coordinator (--ha-dir) as it starts.
        crate::ha::start_recorded(&cluster, submission, &request)
            .map_err(|e| ApiError(StatusCode::CONFLICT, format!("{e:#}")))?;
        Ok::<_, ApiError>(name)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "job": name })),
    )
        .into_response())
}

/// Parses the job, resolves its artifacts and the snapshot it starts from.
pub(crate) fn prepare(cluster: &Cluster, mut r: SubmitRequest) -> Result<Submission, ApiError> {
    crate::paths::check_job_path(&r.job_path).map_err(bad)?;
    let job = crate::paths::parse_job(&r.job_toml, &r.job_path).map_err(|e| bad(e.to_string()))?;
    let roots = &cluster.options.data_roots;
    crate::paths::check_job_paths(&job, roots).map_err(|e| bad(e.to_string()))?;
    if let Some(savepoint) = &r.from_savepoint {
        if !savepoint.is_absolute() {
            return Err(bad(format!(
                "from_savepoint: {} is relative; give an absolute path",
                weir_core::text::cut(&savepoint.display().to_string(), 256)
            )));
        }
        // The resolved path goes on, to the job master and the workers.
        r.from_savepoint = Some(
            crate::paths::check_dir(roots, "from_savepoint", savepoint, Access::Read)
                .map_err(bad)?,
        );
    }
    let mut artifacts = BTreeMap::new();
    for op in &job.operators {
        let reference = match r.artifacts.get(&op.name) {
            Some(reference) => reference.clone(),
            None => op
                .wasm
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let digest = cluster.artifacts.resolve(&reference).ok_or_else(|| {
            bad(format!(
                "{}:{}: operator `{}`: no artifact `{reference}` was uploaded (upload it with POST /artifacts, or use `weir submit`, which does)",
                r.job_path.display(),
                op.line,
                op.name
            ))
        })?;
        artifacts.insert(op.name.clone(), digest);
    }
    let options = weir_runtime::RunOptions {
        resume: r.resume,
        from_savepoint: r.from_savepoint.clone(),
        allow_non_restored_state: r.allow_non_restored_state,
        ..weir_runtime::RunOptions::default()
    };
    let restore =
        weir_runtime::starting_snapshot(&job, &options).map_err(|e| bad(format!("{e:#}")))?;
    Ok(Submission {
        job,
        job_toml: r.job_toml,
        job_path: r.job_path,
        artifacts,
        restore,
        resume: r.resume,
        allow_non_restored_state: r.allow_non_restored_state,
    })
}

async fn jobs(State(cluster): State<Arc<Cluster>>) -> Reply {
    let jobs: Vec<_> = cluster
        .jobs
        .lock()
        .expect("not poisoned")
        .values()
        .map(|j| {
            let mut info = j.info();
            info.error = info
                .error
                .map(|e| weir_core::text::cut(&e, LISTED_ERROR_BYTES_MAX));
            info
        })
        .collect();
    Ok(Json(jobs).into_response())
}

fn no_job(job: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no job `{job}` on this cluster"),
    )
}

async fn job(State(cluster): State<Arc<Cluster>>, UrlPath(job): UrlPath<String>) -> Reply {
    let jobs = cluster.jobs.lock().expect("not poisoned");
    let entry = jobs.get(&job).ok_or_else(|| no_job(&job))?;
    Ok(Json(entry.info()).into_response())
}

type Body = Option<Json<CommandBody>>;

async fn savepoint(state: State<Arc<Cluster>>, job: UrlPath<String>, body: Body) -> Reply {
    take_savepoint(state, job, body, false).await
}

async fn stop(state: State<Arc<Cluster>>, job: UrlPath<String>, body: Body) -> Reply {
    take_savepoint(state, job, body, true).await
}

/// The job master's command channel and default savepoint directory of a
/// running job.
fn running(
    cluster: &Cluster,
    job: &str,
) -> Result<
    (
        crossbeam_channel::Sender<weir_runtime::master::driver::CommandRequest>,
        Option<PathBuf>,
    ),
    ApiError,
> {
    let jobs = cluster.jobs.lock().expect("not poisoned");
    let entry = jobs.get(job).ok_or_else(|| no_job(job))?;
    if entry.info().state.is_terminal() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("job `{job}` is not running"),
        ));
    }
    Ok((entry.requests.clone(), entry.savepoint_dir.clone()))
}

/// A savepoint directory from the request or the job's default, checked
/// against the coordinator's roots (the resolved path goes on: the one
/// checked is the one written).
fn savepoint_dir(
    cluster: &Cluster,
    body: &CommandBody,
    default_dir: Option<PathBuf>,
) -> Result<PathBuf, ApiError> {
    let dir = body.dir.clone().or(default_dir).ok_or_else(|| {
        bad("the job has no [checkpoint] dir; say where the savepoint goes with `dir`")
    })?;
    crate::paths::check_savepoint_dir(&cluster.options.data_roots, &dir).map_err(bad)
}

/// Runs a command, holding one of the places for commands in flight.
async fn command(
    cluster: &Cluster,
    requests: &crossbeam_channel::Sender<weir_runtime::master::driver::CommandRequest>,
    command: Command,
) -> Reply {
    let _permit = savepoint_permit(&cluster.savepoints)?;
    let response: CommandResponse = run_command(requests, command).await;
    Ok(response.into_response())
}

async fn take_savepoint(
    State(cluster): State<Arc<Cluster>>,
    UrlPath(job): UrlPath<String>,
    body: Body,
    stop: bool,
) -> Reply {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let (requests, default_dir) = running(&cluster, &job)?;
    let dir = savepoint_dir(&cluster, &body, default_dir)?;
    command(&cluster, &requests, Command::Savepoint { dir, stop }).await
}

/// One of [`SAVEPOINTS_IN_FLIGHT_MAX`] places for a command waiting for
/// its answer, or 503.
fn savepoint_permit(
    savepoints: &Arc<tokio::sync::Semaphore>,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    savepoints.clone().try_acquire_owned().map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{SAVEPOINTS_IN_FLIGHT_MAX} commands are already waiting for their answers; try again once one is answered"
            ),
        )
    })
}

/// The coordinator's own metrics (its job masters: checkpoints, restarts,
/// versions); each worker serves its tasks' on `--metrics`.
async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            weir_runtime::telemetry::CONTENT_TYPE,
        )],
        weir_runtime::telemetry::render_prometheus(),
    )
        .into_response()
}

/// The job's metrics as its workers last reported them, merged.
async fn job_metrics(State(cluster): State<Arc<Cluster>>, UrlPath(job): UrlPath<String>) -> Reply {
    if !cluster
        .jobs
        .lock()
        .expect("not poisoned")
        .contains_key(&job)
    {
        return Err(no_job(&job));
    }
    Ok(Json(cluster.job_metrics(&job)).into_response())
}

async fn cancel(State(cluster): State<Arc<Cluster>>, UrlPath(job): UrlPath<String>) -> Reply {
    let requests = {
        let jobs = cluster.jobs.lock().expect("not poisoned");
        let entry = jobs.get(&job).ok_or_else(|| no_job(&job))?;
        entry.requests.clone()
    };
    // Not waited for: the job winds down on its own.
    let (reply, _answer) = crossbeam_channel::bounded(1);
    let _ = requests.send(weir_runtime::master::driver::CommandRequest {
        command: Command::Cancel,
        reply,
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "job": job, "cancelling": true })),
    )
        .into_response())
}

async fn upgrade(
    State(cluster): State<Arc<Cluster>>,
    UrlPath(job): UrlPath<String>,
    body: Body,
) -> Reply {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let (requests, _) = running(&cluster, &job)?;
    let operator = body
        .operator
        .clone()
        .ok_or_else(|| bad("name the operator to upgrade (`operator`)"))?;
    let allow_dropping_state = body.allow_dropping_state;
    if body.rollback {
        return command(
            &cluster,
            &requests,
            Command::Rollback {
                operator,
                allow_dropping_state,
            },
        )
        .await;
    }
    let reference = body
        .artifact
        .ok_or_else(|| bad("give the new version: `artifact`, an uploaded name or digest"))?;
    let digest = cluster.artifacts.resolve(&reference).ok_or_else(|| {
        bad(format!(
            "no artifact `{}` was uploaded (upload it with POST /artifacts, or use `weir upgrade`, which does)",
            weir_core::text::cut(&reference, 256)
        ))
    })?;
    // Kept while the job runs: a failover after the upgrade deploys it.
    if let Some(entry) = cluster.jobs.lock().expect("not poisoned").get(&job) {
        entry
            .artifacts
            .lock()
            .expect("not poisoned")
            .insert(digest.clone());
    }
    let hex = crate::artifacts::digest_hex(&digest)
        .ok_or_else(|| bad(format!("`{digest}` is not an artifact digest")))?
        .to_string();
    command(
        &cluster,
        &requests,
        Command::Upgrade {
            operator,
            digest: hex,
            allow_dropping_state,
        },
    )
    .await
}

async fn rescale(
    State(cluster): State<Arc<Cluster>>,
    UrlPath(job): UrlPath<String>,
    body: Body,
) -> Reply {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let (requests, default_dir) = running(&cluster, &job)?;
    let parallelism = body
        .parallelism
        .ok_or_else(|| bad("give the new `parallelism`"))?;
    let dir = savepoint_dir(&cluster, &body, default_dir)?;
    command(
        &cluster,
        &requests,
        Command::Rescale {
            parallelism,
            operator: body.operator,
            dir,
        },
    )
    .await
}

/// Keeps the unused-import lint honest where `refusal` is only needed by
/// handlers that build replies by hand.
#[allow(dead_code)]
fn refused(code: StatusCode, e: &str) -> CommandResponse {
    refusal(code, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savepoint_requests_beyond_the_cap_are_turned_away() {
        let savepoints = Arc::new(tokio::sync::Semaphore::new(SAVEPOINTS_IN_FLIGHT_MAX));
        let held: Vec<_> = (0..SAVEPOINTS_IN_FLIGHT_MAX)
            .map(|_| savepoint_permit(&savepoints).ok().unwrap())
            .collect();
        let ApiError(status, message) = savepoint_permit(&savepoints).unwrap_err();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            message,
            "16 commands are already waiting for their answers; try again once one is answered"
        );
        drop(held);
        drop(savepoint_permit(&savepoints).ok().unwrap());
    }

    /// Serves the REST API of a coordinator without workers over plain
    /// HTTP on loopback; calls return (status, body).
    struct Api {
        url: String,
        agent: ureq::Agent,
        _runtime: tokio::runtime::Runtime,
        cluster: Arc<Cluster>,
        dir: tempfile::TempDir,
    }

    impl Api {
        fn start() -> Api {
            let dir = tempfile::tempdir().unwrap();
            let cluster = crate::cluster::test_cluster(dir.path(), "secret");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let app = router(cluster.clone());
            runtime.spawn(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            Api {
                url,
                agent,
                _runtime: runtime,
                cluster,
                dir,
            }
        }

        fn post(&self, path: &str, token: &str, body: Vec<u8>) -> (u16, String) {
            let response = self
                .agent
                .post(format!("{}{path}", self.url))
                .header("Authorization", &format!("Bearer {token}"))
                .header("Content-Type", "application/json")
                .send(&body[..]);
            match response {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.into_body().read_to_string().unwrap_or_default())
                }
                // The server may answer 413 and close before the body is sent.
                Err(e) => (0, e.to_string()),
            }
        }
    }

    #[test]
    fn json_routes_take_small_bodies_and_uploads_large_ones() {
        let api = Api::start();
        let padding = " ".repeat(JSON_BODY_BYTES_MAX + 1);
        let body = format!("{{\"job_toml\": \"\", \"job_path\": \"/j.toml\"{padding}}}");
        let (status, reply) = api.post("/jobs", "secret", body.into_bytes());
        assert!(status == 413 || status == 0, "{status} {reply}");
        // An upload may still be larger than a JSON body: it is refused
        // for what it is (not wasm), not for its size.
        let (status, reply) = api.post(
            "/artifacts?name=big.wasm",
            "secret",
            vec![0u8; JSON_BODY_BYTES_MAX + 1],
        );
        assert_eq!(status, 422, "{reply}");
    }

    #[test]
    fn the_token_is_checked_and_job_paths_must_be_absolute() {
        let api = Api::start();
        let (status, reply) = api.post("/jobs", "secreT", b"{}".to_vec());
        assert_eq!(status, 401, "{reply}");
        assert!(reply.contains("wrong bearer token"), "{reply}");
        let request = serde_json::json!({ "job_toml": "", "job_path": "job.toml" });
        let (status, reply) = api.post("/jobs", "secret", request.to_string().into_bytes());
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply.contains("job_path job.toml is relative; send the job file's absolute path"),
            "{reply}"
        );
        let job_toml = "[job]\nname = \"j\"\n[[source]]\nname = \"s\"\nkind = \"generator\"\nrecords = 1\n[[operator]]\nname = \"op\"\nwasm = \"/nowhere/op.wasm\"\ninput = \"s\"\n[[sink]]\nname = \"k\"\nkind = \"discard\"\ninput = \"op\"\n";
        let request = serde_json::json!({
            "job_toml": job_toml,
            "job_path": "/jobs/job.toml",
            "from_savepoint": "savepoints/sp-1",
        });
        let (status, reply) = api.post("/jobs", "secret", request.to_string().into_bytes());
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply.contains("from_savepoint: savepoints/sp-1 is relative; give an absolute path"),
            "{reply}"
        );
    }

    #[test]
    fn a_relative_savepoint_dir_is_refused() {
        let api = Api::start();
        api.cluster
            .jobs
            .lock()
            .unwrap()
            .insert("j".into(), crate::jobs::tests::entry(None));
        let body = serde_json::json!({ "dir": "sp" }).to_string().into_bytes();
        let (status, reply) = api.post("/jobs/j/savepoints", "secret", body);
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply.contains("savepoint dir: sp is relative; give an absolute path"),
            "{reply}"
        );
        let outside = serde_json::json!({ "dir": "/etc/sp" })
            .to_string()
            .into_bytes();
        let (status, reply) = api.post("/jobs/j/savepoints", "secret", outside);
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply.contains("is outside the allowed data roots"),
            "{reply}"
        );
        assert!(api.dir.path().exists());
    }
}
