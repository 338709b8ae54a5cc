//! `weir coordinator`: accepts workers over QUIC (mutual TLS), tracks
//! their slots and heartbeats, serves them artifacts, routes their task
//! events to the job masters, and serves the REST API (HTTPS with the
//! coordinator's certificate, unless plain HTTP is asked for).
//!
//! A worker is registered only under the node name its certificate carries
//! in the worker role, and only if it speaks this protocol version. A
//! message from a worker that is too long or does not decode is refused on
//! its own; only a broken stream costs the worker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use weir_core::text::cut_message;
use weir_net::stream::{
    Received, read_control_message, read_message, write_blob, write_encoded, write_message,
};
use weir_net::{Node, NodeIdentity, Role};
use weir_wasm::WasmEngine;

use crate::artifacts::ArtifactStore;
use crate::cluster::{Cluster, WorkerEntry, WorkerInfo};
use crate::jobs::JobInput;
pub use crate::options::{
    CoordinatorOptions, FINISHED_JOB_RETENTION_DEFAULT, FINISHED_JOBS_MAX_DEFAULT,
    UPLOADS_MAX_DEFAULT,
};
use crate::protocol::{FetchArtifact, FromWorker, OUTBOX_MESSAGES_MAX, ToWorker, WorkerId};

/// How often job records follow their jobs (checkpoints, upgrades, ends).
const HA_SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// A worker that has not sent a heartbeat for this long is lost.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

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
    let ha = options
        .ha_dir
        .as_deref()
        .map(crate::ha::HaStore::open)
        .transpose()?;
    // Attempt numbers of an earlier coordinator on the same store may
    // still be known to workers or in logs: a restarted one starts past
    // them (seconds since the epoch only grow).
    let first_attempt = match &ha {
        Some(_) => {
            (weir_snapshot::metadata::now_unix_ms() / 1000).clamp(1, u32::MAX as u64 / 2) as u32
        }
        None => 1,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weir-coordinator")
        .build()
        .context("cannot start the coordinator's runtime")?;
    let cluster = Arc::new(Cluster {
        workers: Mutex::new(BTreeMap::new()),
        next_worker: AtomicU32::new(1),
        next_attempt: AtomicU32::new(first_attempt),
        jobs: Mutex::new(BTreeMap::new()),
        worker_metrics: Mutex::new(BTreeMap::new()),
        artifacts,
        engine,
        uploads: Arc::new(tokio::sync::Semaphore::new(options.uploads_max.max(1))),
        savepoints: Arc::new(tokio::sync::Semaphore::new(
            crate::rest::SAVEPOINTS_IN_FLIGHT_MAX,
        )),
        options: options.clone(),
        ha,
        ha_tracked: Mutex::new(BTreeMap::new()),
    });
    if let Some(ha) = &cluster.ha {
        eprintln!(
            "weir: coordinator HA: job records in {}; running jobs recorded there are taken over",
            ha.describe()
        );
    }
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
        if cluster.ha.is_some() {
            // Jobs are taken over before the REST API answers (clients wait
            // in the listen backlog): a restarted coordinator never lists no
            // jobs while it still has some to take over, and a resubmission
            // cannot race the takeover. Workers can already join meanwhile.
            let recovering = cluster.clone();
            tokio::task::spawn_blocking(move || crate::ha::recover(&recovering))
                .await
                .context("the HA takeover failed")?;
            let syncing = cluster.clone();
            std::thread::Builder::new()
                .name("ha-sync".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(HA_SYNC_INTERVAL);
                        crate::ha::sync(&syncing);
                    }
                })
                .context("cannot start the HA thread")?;
        }
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
            FromWorker::Metrics { jobs } => {
                cluster
                    .worker_metrics
                    .lock()
                    .expect("not poisoned")
                    .insert(id, (Instant::now(), jobs));
            }
            FromWorker::Register { .. } => tracing::warn!("worker {id} registered twice"),
        }
    }
}
