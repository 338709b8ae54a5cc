//! `weir coordinator`: accepts workers over QUIC (mutual TLS), tracks
//! their slots and heartbeats, serves them artifacts, routes their task
//! events to the job masters, and serves the REST API (HTTPS with the
//! coordinator's certificate, unless plain HTTP is asked for).
//!
//! A worker is registered only under the node name its certificate carries
//! in the worker role, and only if it speaks this protocol version. A
//! message from a worker that is too long or does not decode is refused on
//! its own; only a broken stream costs the worker.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::Sender;
use serde::Serialize;
use tokio::sync::mpsc;
use weir_core::data_roots::DataRoots;
use weir_core::text::cut_message;
use weir_net::stream::{
    Received, encode_message, read_control_message, read_message, write_blob, write_encoded,
    write_message,
};
use weir_net::{Node, NodeIdentity, Role};
use weir_wasm::WasmEngine;

use crate::artifacts::ArtifactStore;
use crate::job_master::{JobEntry, JobInput};
use crate::placement::Offer;
use crate::protocol::{
    FetchArtifact, FromWorker, OUTBOX_MESSAGES_MAX, Queued, ToWorker, WorkerId, queue,
};

/// A worker that has not sent a heartbeat for this long is lost.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

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

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WorkerInfo {
    pub id: WorkerId,
    pub name: String,
    pub slots: u32,
    pub free_slots: u32,
    pub data_addr: SocketAddr,
}

struct WorkerEntry {
    info: WorkerInfo,
    /// Encoded messages (see [`Cluster::send`]), at most
    /// [`OUTBOX_MESSAGES_MAX`] waiting.
    outbox: mpsc::Sender<Vec<u8>>,
    conn: quinn::Connection,
    last_heartbeat: Instant,
}

/// What the coordinator knows, shared by its QUIC side, REST side and job
/// masters.
pub struct Cluster {
    workers: Mutex<BTreeMap<WorkerId, WorkerEntry>>,
    next_worker: AtomicU32,
    next_attempt: AtomicU32,
    pub(crate) jobs: Mutex<BTreeMap<String, JobEntry>>,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) engine: WasmEngine,
    /// Permits for uploads in flight.
    pub(crate) uploads: Arc<tokio::sync::Semaphore>,
    /// Permits for savepoint requests waiting for their answer.
    pub(crate) savepoints: Arc<tokio::sync::Semaphore>,
    pub(crate) options: CoordinatorOptions,
}

impl Cluster {
    pub(crate) fn next_attempt_id(&self) -> u32 {
        self.next_attempt.fetch_add(1, Ordering::Relaxed)
    }

    /// Places `tasks` on free slots and takes those slots, in one step so
    /// that two jobs never get the same slot.
    pub(crate) fn place_and_reserve(
        &self,
        tasks: &[weir_runtime::TaskId],
    ) -> Result<Vec<(weir_runtime::TaskId, WorkerId)>, String> {
        let mut workers = self.workers.lock().expect("not poisoned");
        let offers: Vec<Offer> = workers
            .values()
            .map(|w| Offer {
                worker: w.info.id,
                free_slots: w.info.free_slots,
            })
            .collect();
        let placement = crate::placement::place(tasks, &offers)?;
        for (id, n) in crate::placement::slots_used(&placement) {
            if let Some(w) = workers.get_mut(&id) {
                w.info.free_slots -= n;
            }
        }
        Ok(placement)
    }

    /// Gives back slots of workers that a job held.
    pub(crate) fn release(&self, slots: &BTreeMap<WorkerId, u32>) {
        let mut workers = self.workers.lock().expect("not poisoned");
        for (id, n) in slots {
            if let Some(w) = workers.get_mut(id) {
                w.info.free_slots += n;
            }
        }
    }

    /// A worker's data address and node name.
    pub(crate) fn data_addr(&self, worker: WorkerId) -> Option<(SocketAddr, String)> {
        self.workers
            .lock()
            .expect("not poisoned")
            .get(&worker)
            .map(|w| (w.info.data_addr, w.info.name.clone()))
    }

    /// Sends to a worker. A message that cannot be encoded within the
    /// control message bound is refused here, before it is queued, so the
    /// worker's control stream never sees it.
    pub(crate) fn send(&self, worker: WorkerId, message: ToWorker) -> Result<(), String> {
        let bytes = encode_message(&message)
            .map_err(|e| format!("cannot send a control message to worker {worker}: {e}"))?;
        let queued = match self.workers.lock().expect("not poisoned").get(&worker) {
            Some(w) => queue(&w.outbox, bytes),
            None => Queued::Gone,
        };
        match queued {
            Queued::Sent => Ok(()),
            Queued::Gone => Err(format!("worker {worker} is gone")),
            Queued::Stalled => {
                let why = format!(
                    "it stopped reading its control stream ({OUTBOX_MESSAGES_MAX} messages waiting); they are dropped with it"
                );
                self.lose(worker, &why);
                Err(format!("worker {worker} was given up: {why}"))
            }
        }
    }

    /// Digests of artifacts that jobs not yet ended use.
    pub(crate) fn artifacts_in_use(&self) -> BTreeSet<String> {
        self.jobs
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|j| j.placement.lock().expect("not poisoned").ended_at.is_none())
            .flat_map(|j| j.artifacts.lock().expect("not poisoned").clone())
            .collect()
    }

    /// Forgets finished jobs beyond the retention: older than
    /// `finished_job_retention`, and all but the newest `finished_jobs_max`.
    pub(crate) fn prune_jobs(&self) {
        prune_finished(
            &mut self.jobs.lock().expect("not poisoned"),
            self.options.finished_jobs_max,
            self.options.finished_job_retention,
            Instant::now(),
        );
    }

    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.workers
            .lock()
            .expect("not poisoned")
            .values()
            .map(|w| w.info.clone())
            .collect()
    }

    fn to_job(&self, job: &str, input: JobInput) {
        if let Some(entry) = self.jobs.lock().expect("not poisoned").get(job) {
            let _ = entry.inbox.send(input);
        }
    }

    /// Forgets a worker and tells every job, once.
    fn lose(&self, worker: WorkerId, why: &str) {
        let Some(entry) = self.workers.lock().expect("not poisoned").remove(&worker) else {
            return;
        };
        tracing::warn!("worker {worker} ({}) lost: {why}", entry.info.name);
        eprintln!("weir: worker {worker} ({}) lost: {why}", entry.info.name);
        entry.conn.close(2u32.into(), b"lost");
        let inboxes: Vec<Sender<JobInput>> = self
            .jobs
            .lock()
            .expect("not poisoned")
            .values()
            .map(|j| j.inbox.clone())
            .collect();
        for inbox in inboxes {
            let _ = inbox.send(JobInput::WorkerLost { worker });
        }
    }
}

/// Removes finished jobs past the age bound, then the oldest finished ones
/// past the count bound. Running jobs are never removed.
fn prune_finished(
    jobs: &mut BTreeMap<String, JobEntry>,
    kept_max: usize,
    retention: Duration,
    now: Instant,
) {
    let ended = |j: &JobEntry| j.placement.lock().expect("not poisoned").ended_at;
    jobs.retain(|_, j| ended(j).is_none_or(|at| now.saturating_duration_since(at) <= retention));
    let mut finished: Vec<(Instant, String)> = jobs
        .iter()
        .filter_map(|(name, j)| ended(j).map(|at| (at, name.clone())))
        .collect();
    if finished.len() > kept_max {
        finished.sort();
        let excess = finished.len() - kept_max;
        for (_, name) in finished.into_iter().take(excess) {
            jobs.remove(&name);
        }
    }
}

/// Runs the coordinator until the process is killed.
pub fn run_coordinator(mut options: CoordinatorOptions) -> anyhow::Result<()> {
    if options.token.trim().is_empty() {
        anyhow::bail!("the REST token is empty: refusing to serve an API anyone could use");
    }
    options.data_roots = crate::paths::without_own(&options.data_roots, &options.own_paths())?;
    let identity = NodeIdentity::load(&options.certs, &options.node)?;
    let artifacts = ArtifactStore::open(
        &options.data_dir.join("artifacts"),
        options.artifact_bytes_max,
        options.artifacts_total_bytes_max,
        options.artifact_names_max,
    )?;
    let engine = WasmEngine::new(Some(options.data_dir.join("cache")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weir-coordinator")
        .build()
        .context("cannot start the coordinator's runtime")?;
    let cluster = Arc::new(Cluster {
        workers: Mutex::new(BTreeMap::new()),
        next_worker: AtomicU32::new(1),
        next_attempt: AtomicU32::new(1),
        jobs: Mutex::new(BTreeMap::new()),
        artifacts,
        engine,
        uploads: Arc::new(tokio::sync::Semaphore::new(options.uploads_max.max(1))),
        savepoints: Arc::new(tokio::sync::Semaphore::new(
            crate::rest::SAVEPOINTS_IN_FLIGHT_MAX,
        )),
        options: options.clone(),
    });
    runtime.block_on(async move {
        let node = Node::bind(options.quic, &identity)?;
        let quic = node.local_addr()?;
        let listener = std::net::TcpListener::bind(options.rest)
            .with_context(|| format!("REST API: cannot listen on {}", options.rest))?;
        listener.set_nonblocking(true)?;
        let rest = listener.local_addr()?;
        let scheme = if options.insecure_http { "http" } else { "https" };
        tokio::spawn(watch_heartbeats(cluster.clone()));
        tokio::spawn(accept_workers(cluster.clone(), node));
        if let Some(path) = &options.ready_file {
            let ready = serde_json::json!({ "rest": format!("{scheme}://{rest}"), "quic": quic.to_string() });
            crate::artifacts::write_atomically(path, ready.to_string().as_bytes())?;
        }
        tracing::info!("coordinator: REST API on {scheme}://{rest}, workers connect to {quic}");
        eprintln!(
            "weir: coordinator up: REST API on {scheme}://{rest}, workers connect to {quic}; jobs may use {}",
            options.data_roots.describe()
        );
        let app = crate::rest::router(cluster);
        if options.insecure_http {
            tracing::warn!("the REST API serves plain HTTP: the token and jobs cross the network in clear text");
            eprintln!(
                "weir: WARNING: the REST API serves plain HTTP (--insecure-http): the bearer token and every job travel in clear text"
            );
            let listener = tokio::net::TcpListener::from_std(listener)?;
            return axum::serve(listener, app).await.context("REST API failed");
        }
        let tls = weir_net::tls::https_server_config(&identity)?;
        let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
        axum_server::from_tcp_rustls(listener, config)
            .context("REST API: cannot serve HTTPS")?
            .serve(app.into_make_service())
            .await
            .context("REST API failed")
    })
}

async fn watch_heartbeats(cluster: Arc<Cluster>) {
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    loop {
        ticks.tick().await;
        let late: Vec<WorkerId> = cluster
            .workers
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|w| w.last_heartbeat.elapsed() > HEARTBEAT_TIMEOUT)
            .map(|w| w.info.id)
            .collect();
        for worker in late {
            cluster.lose(
                worker,
                &format!("no heartbeat for {} s", HEARTBEAT_TIMEOUT.as_secs()),
            );
        }
        cluster.prune_jobs();
    }
}

async fn accept_workers(cluster: Arc<Cluster>, node: Node) {
    while let Some(incoming) = node.accept().await {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let Ok(conn) = weir_net::endpoint::accept_incoming(incoming).await else {
                return; // logged by accept_incoming
            };
            if let Err(e) = serve_worker(cluster, conn.clone()).await {
                tracing::warn!("worker at {}: {e:#}", conn.remote_address());
            }
        });
    }
}

/// Checks a registration: this protocol version, and a worker certificate
/// that names the node it registers as.
fn check_registration(conn: &quinn::Connection, protocol: u32, name: &str) -> Result<(), String> {
    crate::protocol::check_version(&format!("worker `{name}`"), protocol)?;
    weir_net::check_peer(conn, Role::Worker, name).map_err(|e| {
        format!(
            "registration as `{name}` refused: {e:#}; a worker registers under the name in its certificate (--name)"
        )
    })
}

async fn serve_worker(cluster: Arc<Cluster>, conn: quinn::Connection) -> anyhow::Result<()> {
    let (mut send, mut recv) = conn.accept_bi().await.context("no control stream")?;
    let (protocol, name, slots, data_addr) = match read_message::<FromWorker>(&mut recv).await? {
        Some(FromWorker::Register {
            protocol,
            name,
            slots,
            data_addr,
        }) => (protocol, name, slots, data_addr),
        other => anyhow::bail!(
            "expected a registration, got {}",
            cut_message(&format!("{other:?}"))
        ),
    };
    let name = cut_message(&name);
    if let Err(reason) = check_registration(&conn, protocol, &name) {
        tracing::warn!("worker at {}: {reason}", conn.remote_address());
        eprintln!(
            "weir: refused a worker at {}: {reason}",
            conn.remote_address()
        );
        let _ = write_message(
            &mut send,
            &ToWorker::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        let _ = send.finish();
        // Give the refusal a moment to arrive before the close overtakes it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.close(3u32.into(), b"registration refused");
        return Ok(());
    }
    // The certificate is the identity: a second registration under one
    // name replaces the first (a restarted worker), never runs beside it.
    let previous: Vec<WorkerId> = cluster
        .workers
        .lock()
        .expect("not poisoned")
        .values()
        .filter(|w| w.info.name == name)
        .map(|w| w.info.id)
        .collect();
    for old in previous {
        cluster.lose(old, "a new worker registered under its name");
    }
    let id = cluster.next_worker.fetch_add(1, Ordering::Relaxed);
    write_message(&mut send, &ToWorker::Registered { worker: id }).await?;
    let (outbox, mut outgoing) = mpsc::channel::<Vec<u8>>(OUTBOX_MESSAGES_MAX);
    cluster.workers.lock().expect("not poisoned").insert(
        id,
        WorkerEntry {
            info: WorkerInfo {
                id,
                name: name.clone(),
                slots,
                free_slots: slots,
                data_addr,
            },
            outbox,
            conn: conn.clone(),
            last_heartbeat: Instant::now(),
        },
    );
    tracing::info!(
        "worker {id} ({name}) joined from {} with {slots} slot(s)",
        conn.remote_address()
    );
    eprintln!("weir: worker {id} ({name}) joined with {slots} slot(s)");
    tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if write_encoded(&mut send, &message).await.is_err() {
                return;
            }
        }
    });
    // Artifact requests come on streams of their own.
    let artifacts = cluster.clone();
    let artifact_conn = conn.clone();
    tokio::spawn(async move {
        while let Ok((mut send, mut recv)) = artifact_conn.accept_bi().await {
            let cluster = artifacts.clone();
            tokio::spawn(async move {
                let Ok(Some(FetchArtifact { digest })) =
                    read_message::<FetchArtifact>(&mut recv).await
                else {
                    return;
                };
                match cluster.artifacts.read(&digest) {
                    Ok(bytes) => {
                        let _ = write_blob(&mut send, &bytes).await;
                        let _ = send.finish();
                    }
                    Err(e) => {
                        tracing::warn!("worker {id} asked for {digest}: {e:#}");
                        let _ = send.reset(1u32.into());
                    }
                }
            });
        }
    });
    loop {
        let message = match read_control_message::<FromWorker>(&mut recv).await {
            Ok(Some(Received::Message(m))) => m,
            Ok(Some(Received::Refused(e))) => {
                tracing::warn!("worker {id} ({name}): refused one control message: {e}");
                continue;
            }
            Ok(None) => {
                cluster.lose(id, "it closed its control stream");
                return Ok(());
            }
            Err(e) => {
                cluster.lose(id, &format!("{e}"));
                return Ok(());
            }
        };
        match message {
            FromWorker::Heartbeat => {
                if let Some(w) = cluster.workers.lock().expect("not poisoned").get_mut(&id) {
                    w.last_heartbeat = Instant::now();
                }
            }
            FromWorker::Event {
                job,
                attempt,
                event,
            } => cluster.to_job(&job, JobInput::Event { attempt, event }),
            FromWorker::AttemptEnded {
                job,
                attempt,
                result,
            } => cluster.to_job(
                &job,
                JobInput::Ended {
                    worker: id,
                    attempt,
                    // Cut here too: the worker cuts, but it is not trusted
                    // to keep a job's status small for every REST client.
                    result: result.cut(),
                },
            ),
            FromWorker::Prepared {
                job,
                attempt,
                upgrade,
                result,
            } => cluster.to_job(
                &job,
                JobInput::Prepared {
                    worker: id,
                    attempt,
                    upgrade,
                    result: result.map_err(|e| cut_message(&e)),
                },
            ),
            FromWorker::Register { .. } => tracing::warn!("worker {id} registered twice"),
        }
    }
}

/// A coordinator's state without its listeners, for tests of the REST API.
#[cfg(test)]
pub(crate) fn test_cluster(dir: &std::path::Path, token: &str) -> Arc<Cluster> {
    let options = CoordinatorOptions {
        rest: "127.0.0.1:0".parse().unwrap(),
        quic: "127.0.0.1:0".parse().unwrap(),
        certs: dir.join("certs"),
        node: "coordinator".into(),
        token: token.into(),
        token_file: None,
        data_dir: dir.join("data"),
        artifact_bytes_max: 8 << 20,
        artifacts_total_bytes_max: 64 << 20,
        artifact_names_max: 8,
        uploads_max: 2,
        finished_jobs_max: 10,
        finished_job_retention: Duration::from_secs(60),
        data_roots: DataRoots::new(&[dir.to_path_buf()], &[]).unwrap(),
        insecure_http: true,
        ready_file: None,
    };
    Arc::new(Cluster {
        workers: Mutex::new(BTreeMap::new()),
        next_worker: AtomicU32::new(1),
        next_attempt: AtomicU32::new(1),
        jobs: Mutex::new(BTreeMap::new()),
        artifacts: ArtifactStore::open(&dir.join("data/artifacts"), 8 << 20, 64 << 20, 8).unwrap(),
        engine: WasmEngine::new(None).unwrap(),
        uploads: Arc::new(tokio::sync::Semaphore::new(2)),
        savepoints: Arc::new(tokio::sync::Semaphore::new(
            crate::rest::SAVEPOINTS_IN_FLIGHT_MAX,
        )),
        options,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(ended_at: Option<Instant>) -> JobEntry {
        let (inbox, _) = crossbeam_channel::unbounded();
        let (requests, _) = crossbeam_channel::unbounded();
        JobEntry {
            inbox,
            view: Arc::new(Mutex::new(weir_runtime::master::driver::JobView {
                state: if ended_at.is_some() {
                    "finished"
                } else {
                    "running"
                }
                .into(),
                ..Default::default()
            })),
            placement: Arc::new(Mutex::new(crate::job_master::Placement {
                workers: BTreeMap::new(),
                ended_at,
            })),
            requests,
            savepoint_dir: None,
            artifacts: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    #[test]
    fn finished_jobs_are_pruned_by_age_then_count_and_running_ones_kept() {
        let now = Instant::now() + Duration::from_secs(1000);
        let mut jobs = BTreeMap::new();
        jobs.insert("running".to_string(), entry(None));
        jobs.insert(
            "old".to_string(),
            entry(Some(now - Duration::from_secs(600))),
        );
        for (i, age) in [30, 20, 10].iter().enumerate() {
            jobs.insert(
                format!("recent-{i}"),
                entry(Some(now - Duration::from_secs(*age))),
            );
        }
        prune_finished(&mut jobs, 2, Duration::from_secs(300), now);
        let left: Vec<&str> = jobs.keys().map(String::as_str).collect();
        assert_eq!(left, ["recent-1", "recent-2", "running"]);
    }
}
