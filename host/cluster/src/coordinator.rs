//! `weir coordinator`: accepts workers over QUIC (mutual TLS), tracks
//! their slots and heartbeats, serves them artifacts, routes their task
//! events to the job masters, and serves the REST API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::Sender;
use serde::Serialize;
use tokio::sync::mpsc;
use weir_net::stream::{read_message, write_blob, write_message};
use weir_net::{Node, NodeIdentity};
use weir_wasm::WasmEngine;

use crate::artifacts::ArtifactStore;
use crate::job_master::{JobEntry, JobInput};
use crate::placement::Offer;
use crate::protocol::{FetchArtifact, FromWorker, ToWorker, WorkerId};

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
    /// Artifacts, compiled code and state of the coordinator.
    pub data_dir: PathBuf,
    pub artifact_bytes_max: usize,
    /// Written once both listeners are up: `{"rest": ..., "quic": ...}`.
    pub ready_file: Option<PathBuf>,
}

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
    outbox: mpsc::UnboundedSender<ToWorker>,
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

    pub(crate) fn data_addr(&self, worker: WorkerId) -> Option<SocketAddr> {
        self.workers
            .lock()
            .expect("not poisoned")
            .get(&worker)
            .map(|w| w.info.data_addr)
    }

    /// Sends to a worker; false if it is gone.
    pub(crate) fn send(&self, worker: WorkerId, message: ToWorker) -> bool {
        self.workers
            .lock()
            .expect("not poisoned")
            .get(&worker)
            .is_some_and(|w| w.outbox.send(message).is_ok())
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

/// Runs the coordinator until the process is killed.
pub fn run_coordinator(options: CoordinatorOptions) -> anyhow::Result<()> {
    let identity = NodeIdentity::load(&options.certs, &options.node)?;
    let artifacts = ArtifactStore::open(
        &options.data_dir.join("artifacts"),
        options.artifact_bytes_max,
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
        options: options.clone(),
    });
    runtime.block_on(async move {
        let node = Node::bind(options.quic, &identity)?;
        let quic = node.local_addr()?;
        let listener = tokio::net::TcpListener::bind(options.rest)
            .await
            .with_context(|| format!("REST API: cannot listen on {}", options.rest))?;
        let rest = listener.local_addr()?;
        tokio::spawn(watch_heartbeats(cluster.clone()));
        tokio::spawn(accept_workers(cluster.clone(), node));
        if let Some(path) = &options.ready_file {
            let ready =
                serde_json::json!({ "rest": format!("http://{rest}"), "quic": quic.to_string() });
            crate::artifacts::write_atomically(path, ready.to_string().as_bytes())?;
        }
        tracing::info!("coordinator: REST API on http://{rest}, workers connect to {quic}");
        eprintln!("weir: coordinator up: REST API on http://{rest}, workers connect to {quic}");
        axum::serve(listener, crate::rest::router(cluster))
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

async fn serve_worker(cluster: Arc<Cluster>, conn: quinn::Connection) -> anyhow::Result<()> {
    let (mut send, mut recv) = conn.accept_bi().await.context("no control stream")?;
    let (name, slots, data_addr) = match read_message::<FromWorker>(&mut recv).await? {
        Some(FromWorker::Register {
            name,
            slots,
            data_addr,
        }) => (name, slots, data_addr),
        other => anyhow::bail!("expected a registration, got {other:?}"),
    };
    let id = cluster.next_worker.fetch_add(1, Ordering::Relaxed);
    write_message(&mut send, &ToWorker::Registered { worker: id }).await?;
    let (outbox, mut outgoing) = mpsc::unbounded_channel::<ToWorker>();
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
            if write_message(&mut send, &message).await.is_err() {
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
        let message = match read_message::<FromWorker>(&mut recv).await {
            Ok(Some(m)) => m,
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
                    result,
                },
            ),
            FromWorker::Register { .. } => tracing::warn!("worker {id} registered twice"),
        }
    }
}
