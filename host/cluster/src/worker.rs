//! `weir worker`: registers with the coordinator over QUIC (mutual TLS),
//! heartbeats, runs the tasks the coordinator deploys to it, and carries
//! channels to and from its peers: one QUIC connection per worker pair
//! (the worker with the lower id dials), one stream per channel.
//!
//! Whom it listens to: control messages only on its connection to the
//! coordinator, dialed expecting the coordinator's certificate role; peer
//! connections only from workers whose certificate names the worker they
//! introduce themselves as, in this protocol version; channel streams only
//! for attempts deployed here, from a worker of that attempt (see also
//! `weir_runtime::InboundChannels` for the streams no task expects).
//! A deployment whose paths leave this worker's data roots is refused and
//! reported as a failed attempt naming the worker and the path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use crossbeam_channel::Sender;
use tokio::sync::mpsc;
use weir_core::data_roots::{Access, DataRoots};
use weir_core::text::cut_message;
use weir_net::NetError;
use weir_net::stream::{
    ChannelHeader, FrameWriter, Received, open_channel, read_blob, read_control_message,
    read_message, write_message,
};
use weir_net::{Node, NodeIdentity, Role};
use weir_runtime::swaps::PreparedSwaps;
use weir_runtime::{
    AttemptCancelled, DataPlane, InboundChannels, SinkCommand, SnapshotPlan, SnapshotPlans,
    SourceCommand, StartedAttempt, Swap, TaskEvent, TaskId, WorkerAttempt, run_worker_attempt,
};
use weir_wasm::WasmEngine;

use crate::artifacts::{digest_hex, digest_of, write_atomically};
use crate::protocol::{
    AttemptResult, Deployment, FetchArtifact, FromWorker, OUTBOX_MESSAGES_MAX, PROTOCOL_VERSION,
    PeerHello, Queued, ToWorker, WorkerId, queue,
};

/// How often a worker tells the coordinator it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// Snapshot directories a worker remembers per attempt (older are pruned).
const SNAPSHOT_DIRS_KEPT: u64 = 16;
/// Fetched artifacts a worker keeps on disk (see `Worker::prune_artifacts`).
const ARTIFACTS_KEPT: usize = 64;
/// How long a worker waits for a peer to dial it.
const PEER_WAIT: Duration = Duration::from_secs(15);
/// How long a channel stream may wait for its attempt's deployment to
/// reach this worker (the coordinator deploys to all workers at once, so a
/// peer's stream can overtake this worker's own Deploy message).
const DEPLOYMENT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub coordinator: SocketAddr,
    /// Where peers reach this worker's data endpoint.
    pub bind: SocketAddr,
    pub certs: PathBuf,
    /// The node name: its certificate is `<certs>/<name>.pem`.
    pub name: String,
    pub slots: u32,
    /// Artifacts and compiled code are cached here.
    pub work_dir: PathBuf,
    /// Where deployed jobs may read and write.
    pub data_roots: DataRoots,
}

impl WorkerOptions {
    /// Weir's own directories on this node (certificates and keys, fetched
    /// artifacts, the compiled-code cache and its key), carved out of the
    /// data roots (see [`crate::paths::without_own`]).
    pub fn own_paths(&self) -> Vec<PathBuf> {
        vec![
            self.certs.clone(),
            self.work_dir.clone(),
            self.work_dir.join("cache"),
        ]
    }
}

type AttemptKey = (String, u32);

/// A running attempt's handles, once its tasks are built.
struct Started {
    sources: HashMap<TaskId, Sender<SourceCommand>>,
    sinks: HashMap<TaskId, Sender<SinkCommand>>,
    plans: SnapshotPlans,
    prepared: PreparedSwaps,
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
struct AttemptState {
    placement: HashMap<TaskId, WorkerId>,
    peers: BTreeMap<WorkerId, SocketAddr>,
    /// Each peer's node name (its certificate's).
    peer_names: BTreeMap<WorkerId, String>,
    /// Digests of the artifacts it runs (kept while it is deployed).
    artifacts: BTreeSet<String>,
    started: Option<Started>,
    /// The job as this attempt runs it (for preparing upgrades), and its
    /// attempt number.
    job: Option<(weir_core::job::JobSpec, u32)>,
    /// Commands that arrived before the tasks were built.
    pending: Vec<ToWorker>,
    cancelled: bool,
}

struct Worker {
    /// Itself, for tasks spawned from `&self` methods.
    this: std::sync::Weak<Worker>,
    id: WorkerId,
    runtime: tokio::runtime::Handle,
    node: Node,
    coordinator: quinn::Connection,
    outbox: Outbox,
    peers: Mutex<HashMap<WorkerId, quinn::Connection>>,
    /// The certificate-checked node name of each peer that dialed us.
    peer_names: Mutex<HashMap<WorkerId, String>>,
    peers_changed: Condvar,
    dialing: Mutex<()>,
    attempts: Mutex<HashMap<AttemptKey, AttemptState>>,
    inbound: Arc<InboundChannels>,
    /// One engine for every attempt: a component compiles once per worker.
    engine: Arc<WasmEngine>,
    options: WorkerOptions,
}

/// The coordinator could not be reached to register (it may be restarting).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CoordinatorUnreachable(pub String);

/// The coordinator went away after this worker registered. Tasks it
/// deployed may still run in this process: a worker that registers again
/// must be a fresh process (`weir worker --reconnect-secs` re-executes).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CoordinatorLost(pub String);

/// Runs a worker until the coordinator goes away.
pub fn run_worker(options: WorkerOptions) -> anyhow::Result<()> {
    run_worker_with(options, None)
}

/// [`run_worker`], serving its metrics on `metrics` if given.
pub fn run_worker_with(
    mut options: WorkerOptions,
    metrics: Option<crate::worker_metrics::MetricsListen>,
) -> anyhow::Result<()> {
    if let Some(listen) = &metrics {
        listen.check()?;
    }
    options.data_roots = crate::paths::without_own(&options.data_roots, &options.own_paths())?;
    let identity = NodeIdentity::load(&options.certs, &options.name)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weir-net")
        .build()
        .context("cannot start the network runtime")?;
    let handle = runtime.handle().clone();
    let engine = Arc::new(WasmEngine::new(Some(options.work_dir.join("cache")))?);
    runtime.block_on(async move {
        let node = Node::bind(options.bind, &identity)?;
        let data_addr = node.local_addr()?;
        let coordinator = node
            .connect_to(options.coordinator, Role::Coordinator)
            .await
            .with_context(|| {
                CoordinatorUnreachable(format!(
                    "cannot join the coordinator at {}",
                    options.coordinator
                ))
            })?;
        let (mut send, mut recv) = coordinator
            .open_bi()
            .await
            .context("cannot open the control stream")?;
        write_message(
            &mut send,
            &FromWorker::Register {
                protocol: PROTOCOL_VERSION,
                name: options.name.clone(),
                slots: options.slots,
                data_addr,
            },
        )
        .await?;
        let id = match read_message::<ToWorker>(&mut recv).await {
            Ok(Some(ToWorker::Registered { worker })) => worker,
            Ok(Some(ToWorker::Refused { reason })) => {
                bail!("the coordinator refused this worker: {}", cut_message(&reason))
            }
            Ok(other) => bail!(
                "the coordinator answered the registration with {}",
                cut_message(&format!("{other:?}"))
            ),
            Err(e) => bail!(
                "the coordinator did not answer the registration ({e}); is it another weir release? This worker speaks cluster protocol version {PROTOCOL_VERSION}"
            ),
        };
        tracing::info!(
            "registered with the coordinator at {} as worker {id} ({} slots, data on {data_addr})",
            options.coordinator,
            options.slots
        );
        eprintln!(
            "weir: worker {} registered as worker {id} with {} slot(s); data on {data_addr}",
            options.name, options.slots
        );
        let (outbox, mut outgoing) = mpsc::channel::<FromWorker>(OUTBOX_MESSAGES_MAX);
        let outbox = Outbox {
            messages: outbox,
            coordinator: coordinator.clone(),
        };
        tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                let mut result = write_message(&mut send, &message).await;
                if let Err(e @ (NetError::TooLong { .. } | NetError::Json { .. })) = &result {
                    // Nothing was written: the stream is intact. Send what
                    // can be said instead, so the job does not wait forever.
                    tracing::warn!("a control message to the coordinator was refused: {e}");
                    match replacement(message, e) {
                        Some(instead) => result = write_message(&mut send, &instead).await,
                        None => continue,
                    }
                }
                if let Err(e) = result {
                    tracing::warn!("control stream to the coordinator broke: {e}");
                    return;
                }
            }
        });
        let worker = Arc::new_cyclic(|this| Worker {
            this: this.clone(),
            id,
            runtime: handle.clone(),
            node,
            coordinator,
            outbox,
            peers: Mutex::new(HashMap::new()),
            peer_names: Mutex::new(HashMap::new()),
            peers_changed: Condvar::new(),
            dialing: Mutex::new(()),
            attempts: Mutex::new(HashMap::new()),
            inbound: InboundChannels::new(handle.clone()),
            engine: engine.clone(),
            options,
        });
        let heartbeat = worker.outbox.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
            loop {
                ticks.tick().await;
                if !heartbeat.send(FromWorker::Heartbeat) {
                    return;
                }
            }
        });
        let samples = worker.outbox.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(crate::worker_metrics::SAMPLE_INTERVAL);
            loop {
                ticks.tick().await;
                let jobs = weir_runtime::telemetry::all_job_metrics();
                if !jobs.is_empty() && !samples.send(FromWorker::Metrics { jobs }) {
                    return;
                }
            }
        });
        if let Some(listen) = metrics {
            let facts: Arc<dyn crate::worker_metrics::WorkerFacts> = worker.clone();
            crate::worker_metrics::serve(listen, worker.options.name.clone(), facts).await?;
        }
        tokio::spawn(accept_peers(worker.clone()));
        loop {
            match read_control_message::<ToWorker>(&mut recv).await {
                Ok(Some(Received::Message(message))) => worker.clone().handle(message),
                Ok(Some(Received::Refused(e))) => {
                    tracing::warn!("refused one control message from the coordinator: {e}")
                }
                Ok(None) => {
                    return Err(CoordinatorLost(
                        "the coordinator closed the control stream".into(),
                    )
                    .into());
                }
                Err(e) => return Err(CoordinatorLost(format!("lost the coordinator: {e}")).into()),
            }
        }
    })
}

/// Messages to the coordinator, at most [`OUTBOX_MESSAGES_MAX`] waiting.
#[derive(Clone)]
struct Outbox {
    messages: mpsc::Sender<FromWorker>,
    coordinator: quinn::Connection,
}

impl Outbox {
    /// Queues `message`; false once the coordinator is gone. A coordinator
    /// that stopped reading is given up (this worker then exits as if it
    /// had lost the coordinator), its queued messages dropped with it.
    fn send(&self, message: FromWorker) -> bool {
        match queue(&self.messages, message) {
            Queued::Sent => true,
            Queued::Gone => false,
            Queued::Stalled => {
                let why = format!(
                    "the coordinator stopped reading this worker's control stream ({OUTBOX_MESSAGES_MAX} messages waiting); giving it up and dropping them"
                );
                tracing::error!("{why}");
                eprintln!("weir: {why}");
                self.coordinator
                    .close(4u32.into(), b"control stream stalled");
                false
            }
        }
    }
}

/// What to send instead of a control message that could not be encoded
/// within the bound: an attempt's end still has to be reported.
fn replacement(message: FromWorker, error: &NetError) -> Option<FromWorker> {
    match message {
        FromWorker::AttemptEnded { job, attempt, .. } => Some(FromWorker::AttemptEnded {
            job,
            attempt,
            result: AttemptResult::Failed(format!(
                "the worker could not report how the attempt ended: {error}"
            )),
        }),
        // An event too large to send fails its snapshot by timeout, which
        // the checkpoint coordinator reports; heartbeats are small.
        _ => None,
    }
}

/// Checks a peer's introduction: this protocol version, and a worker
/// certificate naming the worker it claims to be.
fn check_hello(conn: &quinn::Connection, hello: &PeerHello) -> Result<(), String> {
    crate::protocol::check_version(&format!("worker {}", hello.worker), hello.protocol)?;
    weir_net::check_peer(conn, Role::Worker, &hello.name).map_err(|e| {
        format!(
            "worker {} (`{}`): {e:#}",
            hello.worker,
            cut_message(&hello.name)
        )
    })
}

/// Accepts peers' connections and the channel streams they open.
async fn accept_peers(worker: Arc<Worker>) {
    while let Some(incoming) = worker.node.accept().await {
        let worker = worker.clone();
        tokio::spawn(async move {
            let Ok(conn) = weir_net::endpoint::accept_incoming(incoming).await else {
                return; // logged by accept_incoming
            };
            let hello = async {
                let mut recv = conn.accept_uni().await?;
                Ok::<_, anyhow::Error>(read_message::<PeerHello>(&mut recv).await?)
            };
            match tokio::time::timeout(PEER_WAIT, hello).await {
                Ok(Ok(Some(hello))) => {
                    if let Err(reason) = check_hello(&conn, &hello) {
                        tracing::warn!("refused a peer at {}: {reason}", conn.remote_address());
                        conn.close(3u32.into(), b"refused");
                        return;
                    }
                    let peer = hello.worker;
                    let known = worker
                        .peer_names
                        .lock()
                        .expect("not poisoned")
                        .get(&peer)
                        .cloned();
                    let live_elsewhere =
                        live(&worker.peers.lock().expect("not poisoned"), peer).is_some();
                    if live_elsewhere && known.as_deref().is_some_and(|k| k != hello.name) {
                        tracing::warn!(
                            "refused a peer at {}: it claims worker {peer}, which is connected as `{}`",
                            conn.remote_address(),
                            known.unwrap_or_default()
                        );
                        conn.close(3u32.into(), b"refused");
                        return;
                    }
                    tracing::debug!(
                        "worker {peer} ({}) connected from {}",
                        hello.name,
                        conn.remote_address()
                    );
                    worker
                        .peer_names
                        .lock()
                        .expect("not poisoned")
                        .insert(peer, hello.name);
                    worker.add_peer(peer, conn);
                }
                _ => {
                    tracing::warn!(
                        "a peer at {} did not introduce itself",
                        conn.remote_address()
                    );
                    conn.close(1u32.into(), b"no hello");
                }
            }
        });
    }
}

impl Worker {
    fn add_peer(&self, peer: WorkerId, conn: quinn::Connection) {
        self.peers
            .lock()
            .expect("not poisoned")
            .insert(peer, conn.clone());
        self.peers_changed.notify_all();
        let Some(worker) = self.this.upgrade() else {
            return; // shutting down
        };
        self.runtime.spawn(async move {
            while let Ok(recv) = conn.accept_uni().await {
                let worker = worker.clone();
                tokio::spawn(async move {
                    match weir_net::stream::accept_channel(recv).await {
                        Ok((header, reader)) => match worker.stream_allowed(peer, &header).await {
                            Ok(()) => worker.inbound.deliver(header, reader),
                            Err(reason) => tracing::warn!(
                                "refused channel {} of job `{}` attempt {} from worker {peer}: {reason}",
                                header.channel,
                                cut_message(&header.job),
                                header.attempt
                            ),
                        },
                        Err(e) => {
                            tracing::warn!("a malformed channel stream from worker {peer}: {e}")
                        }
                    }
                });
            }
        });
    }

    /// A channel stream is taken only for an attempt deployed here, from a
    /// worker of that attempt under the name the coordinator knows it by.
    /// The deployment may lag a peer's stream by a moment; it gets
    /// [`DEPLOYMENT_WAIT`].
    async fn stream_allowed(&self, peer: WorkerId, header: &ChannelHeader) -> Result<(), String> {
        let key = (header.job.clone(), header.attempt);
        let deadline = Instant::now() + DEPLOYMENT_WAIT;
        loop {
            let known = {
                let attempts = self.attempts.lock().expect("not poisoned");
                attempts.get(&key).map(|s| {
                    (
                        s.peers.contains_key(&peer),
                        s.peer_names.get(&peer).cloned(),
                    )
                })
            };
            match known {
                Some((false, _)) => return Err("that worker is not part of the attempt".into()),
                Some((true, expected)) => {
                    let actual = self
                        .peer_names
                        .lock()
                        .expect("not poisoned")
                        .get(&peer)
                        .cloned();
                    // Only the dialing side introduces itself; a connection
                    // we dialed went to the address the coordinator gave.
                    return match (expected, actual) {
                        (Some(e), Some(a)) if e != a => Err(format!(
                            "the coordinator knows worker {peer} as `{e}`, its certificate says `{a}`"
                        )),
                        _ => Ok(()),
                    };
                }
                None if Instant::now() >= deadline => {
                    return Err(format!(
                        "no such attempt is deployed here (waited {} s)",
                        DEPLOYMENT_WAIT.as_secs()
                    ));
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The connection to `peer`: the lower id dials, the higher one waits.
    /// Waiting stops early once `attempt` (if given) is cancelled.
    fn peer_connection(
        &self,
        peer: WorkerId,
        addr: SocketAddr,
        attempt: Option<&AttemptKey>,
    ) -> anyhow::Result<quinn::Connection> {
        let deadline = Instant::now() + PEER_WAIT;
        loop {
            if let Some(key) = attempt
                && self
                    .attempts
                    .lock()
                    .expect("not poisoned")
                    .get(key)
                    .is_none_or(|s| s.cancelled)
            {
                bail!("the attempt was cancelled while waiting for worker {peer}");
            }
            let peers = self.peers.lock().expect("not poisoned");
            if let Some(conn) = live(&peers, peer) {
                return Ok(conn);
            }
            if self.id < peer {
                drop(peers);
                let _dialing = self.dialing.lock().expect("not poisoned");
                // Another thread may have dialed while we waited for the lock.
                if let Some(conn) = live(&self.peers.lock().expect("not poisoned"), peer) {
                    return Ok(conn);
                }
                let me = self.id;
                let name = self.options.name.clone();
                let node = self.node.clone();
                let conn = self
                    .runtime
                    .block_on(async move {
                        let conn = node.connect_to(addr, Role::Worker).await?;
                        let mut send = conn.open_uni().await?;
                        let hello = PeerHello {
                            protocol: PROTOCOL_VERSION,
                            worker: me,
                            name,
                        };
                        write_message(&mut send, &hello).await?;
                        send.finish()?;
                        Ok::<_, anyhow::Error>(conn)
                    })
                    .with_context(|| format!("cannot connect to worker {peer} at {addr}"))?;
                self.add_peer(peer, conn.clone());
                return Ok(conn);
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "worker {peer} at {addr} did not connect within {} s",
                    PEER_WAIT.as_secs()
                );
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            drop(
                self.peers_changed
                    .wait_timeout(peers, wait)
                    .expect("not poisoned"),
            );
        }
    }

    fn handle(self: Arc<Self>, message: ToWorker) {
        match message {
            ToWorker::Registered { .. } => {}
            ToWorker::Deploy(d) => {
                // Recorded before anything else is read from the control
                // stream, so a Cancel or command right behind it finds it.
                self.attempts.lock().expect("not poisoned").insert(
                    (d.job.clone(), d.attempt),
                    AttemptState {
                        placement: d.placement.iter().copied().collect(),
                        peers: d.peers.clone(),
                        peer_names: d.peer_names.clone(),
                        artifacts: d.artifacts.values().cloned().collect(),
                        ..AttemptState::default()
                    },
                );
                let worker = self.clone();
                let (job, attempt) = (d.job.clone(), d.attempt);
                let name = format!("deploy-{job}-{attempt}");
                if let Err(e) = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || worker.deploy(*d))
                {
                    self.end_attempt(
                        job,
                        attempt,
                        AttemptResult::Failed(format!("cannot start a deployment thread: {e}")),
                    );
                }
            }
            ToWorker::Cancel { job, attempt } => {
                let key = (job.clone(), attempt);
                if let Some(state) = self.attempts.lock().expect("not poisoned").get_mut(&key) {
                    state.cancelled = true;
                    if let Some(started) = &mut state.started {
                        started.cancel.store(true, Ordering::Relaxed);
                        started.sources.clear();
                        started.sinks.clear();
                    }
                }
                self.inbound.forget(&job, attempt);
            }
            ToWorker::SnapshotDir {
                job,
                attempt,
                id,
                dir: Some(dir),
                swaps,
            } => {
                // Checked on arrival against this worker's own roots: the
                // coordinator's roots are not this worker's operator's word.
                let dir = match crate::paths::check_snapshot_dir(
                    &self.options.data_roots,
                    &self.options.name,
                    &dir,
                ) {
                    Ok(resolved) => Some(resolved),
                    Err(reason) => {
                        tracing::warn!(job = %job, attempt, "snapshot {id}: {reason}");
                        let _ = self.outbox.send(FromWorker::Event {
                            job: job.clone(),
                            attempt,
                            event: TaskEvent::Declined { id, reason },
                        });
                        None // a tombstone: local tasks abort their part
                    }
                };
                self.handle_command(ToWorker::SnapshotDir {
                    job,
                    attempt,
                    id,
                    dir,
                    swaps,
                });
            }
            ToWorker::Prepare {
                job,
                attempt,
                upgrade,
                swap,
                artifact,
            } => {
                let worker = self.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("prepare-{upgrade}"))
                    .spawn(move || {
                        let result = worker.prepare(&job, attempt, &swap, &artifact);
                        let _ = worker.outbox.send(FromWorker::Prepared {
                            job,
                            attempt,
                            upgrade,
                            result: result.map_err(|e| cut_message(&e)),
                        });
                    });
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a thread to prepare an upgrade: {e}");
                }
            }
            ToWorker::Discard { job, attempt } => {
                let attempts = self.attempts.lock().expect("not poisoned");
                if let Some(started) = attempts
                    .get(&(job, attempt))
                    .and_then(|s| s.started.as_ref())
                {
                    weir_runtime::swaps::discard(&started.prepared);
                }
            }
            command => self.handle_command(command),
        }
    }

    /// A command for an attempt: applied, or kept until its tasks are built.
    fn handle_command(&self, command: ToWorker) {
        let (job, attempt) = match &command {
            ToWorker::SnapshotDir { job, attempt, .. }
            | ToWorker::Source { job, attempt, .. }
            | ToWorker::SourceClosed { job, attempt, .. }
            | ToWorker::Sink { job, attempt, .. } => (job.clone(), *attempt),
            _ => return,
        };
        let mut attempts = self.attempts.lock().expect("not poisoned");
        let Some(state) = attempts.get_mut(&(job, attempt)) else {
            return; // an attempt that already ended
        };
        match &mut state.started {
            Some(started) => apply(started, command),
            None => state.pending.push(command),
        }
    }

    fn deploy(self: Arc<Self>, d: Deployment) {
        // Dial the peers this worker is to dial, so they need not wait.
        for (&peer, &addr) in &d.peers {
            if peer > self.id {
                let worker = self.clone();
                std::thread::spawn(move || {
                    if let Err(e) = worker.peer_connection(peer, addr, None) {
                        tracing::warn!("{e:#}");
                    }
                });
            }
        }
        let cancelled_already = self
            .attempts
            .lock()
            .expect("not poisoned")
            .get(&(d.job.clone(), d.attempt))
            .is_none_or(|s| s.cancelled);
        let run = if cancelled_already {
            Err(anyhow::Error::new(AttemptCancelled { job: d.job.clone() }))
        } else {
            let worker = self.clone();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run_attempt(&d)))
                .unwrap_or_else(|_| {
                    Err(anyhow!(
                        "the deployment panicked (a bug in weir, please report it)"
                    ))
                })
        };
        let result = match run {
            Ok(()) => AttemptResult::Finished,
            Err(e) if e.downcast_ref::<AttemptCancelled>().is_some() => AttemptResult::Cancelled,
            Err(e) => AttemptResult::Failed(cut_message(&format!("{e:#}"))),
        };
        if let AttemptResult::Failed(e) = &result {
            tracing::warn!(job = %d.job, attempt = d.attempt, "attempt failed on this worker: {e}");
        }
        self.end_attempt(d.job, d.attempt, result);
    }

    fn end_attempt(&self, job: String, attempt: u32, result: AttemptResult) {
        self.inbound.forget(&job, attempt);
        self.attempts
            .lock()
            .expect("not poisoned")
            .remove(&(job.clone(), attempt));
        let _ = self.outbox.send(FromWorker::AttemptEnded {
            job,
            attempt,
            result,
        });
    }

    fn run_attempt(self: Arc<Self>, d: &Deployment) -> anyhow::Result<()> {
        let mut job =
            crate::paths::parse_job(&d.job_toml, &d.job_path).map_err(|e| anyhow!("{e}"))?;
        self.check_paths(&job, d)?;
        // A rescaled attempt: the coordinator checked the new shape.
        for source in &mut job.sources {
            if let Some(&p) = d.parallelism.get(&source.name) {
                source.parallelism = p;
            }
        }
        for op in &mut job.operators {
            if let Some(&p) = d.parallelism.get(&op.name) {
                op.parallelism = p;
            }
        }
        for op in &mut job.operators {
            let digest = d
                .artifacts
                .get(&op.name)
                .with_context(|| format!("no artifact was deployed for operator `{}`", op.name))?;
            op.wasm = self.artifact(digest)?;
        }
        let local: BTreeSet<TaskId> = d
            .placement
            .iter()
            .filter(|(_, w)| *w == self.id)
            .map(|(t, _)| *t)
            .collect();
        if let Some(state) = self
            .attempts
            .lock()
            .expect("not poisoned")
            .get_mut(&(d.job.clone(), d.attempt))
        {
            state.job = Some((job.clone(), d.attempt_number));
        }
        let worker = self.clone();
        let key = (d.job.clone(), d.attempt);
        let on_started = Box::new(move |started: StartedAttempt| worker.started(key, started));
        run_worker_attempt(WorkerAttempt {
            job,
            attempt: d.attempt_number,
            attempt_id: d.attempt,
            local,
            restore: d.restore.clone(),
            allow_non_restored_state: d.allow_non_restored_state,
            engine: self.engine.clone(),
            data_plane: self.clone(),
            inbound: self.inbound.clone(),
            on_started,
        })
    }

    /// Defence in depth: the coordinator checked the job against its
    /// roots; this worker checks it against its own.
    fn check_paths(&self, job: &weir_core::job::JobSpec, d: &Deployment) -> anyhow::Result<()> {
        let roots = &self.options.data_roots;
        let refuse = |reason: String| {
            anyhow!(
                "worker `{}` refuses the deployment: {reason}",
                self.options.name
            )
        };
        crate::paths::check_job_paths(job, roots).map_err(|e| refuse(e.to_string()))?;
        if let Some(restore) = &d.restore {
            crate::paths::check_dir(roots, "the snapshot to restore", restore, Access::Read)
                .map_err(refuse)?;
        }
        Ok(())
    }

    fn started(self: Arc<Self>, key: AttemptKey, s: StartedAttempt) {
        // Every local consumer is registered now: nothing else is expected.
        self.inbound.seal(&key.0, key.1);
        let outbox = self.outbox.clone();
        let (job, attempt) = key.clone();
        let events = s.events;
        std::thread::spawn(move || {
            for event in events.iter() {
                let event = match event {
                    TaskEvent::Declined { id, reason } => TaskEvent::Declined {
                        id,
                        reason: cut_message(&reason),
                    },
                    other => other,
                };
                let _ = outbox.send(FromWorker::Event {
                    job: job.clone(),
                    attempt,
                    event,
                });
            }
        });
        let mut started = Started {
            sources: s.source_commands.into_iter().collect(),
            sinks: s.sink_commands.into_iter().collect(),
            plans: s.snapshot_plans,
            prepared: s.prepared,
            cancel: s.cancel,
        };
        let mut attempts = self.attempts.lock().expect("not poisoned");
        let Some(state) = attempts.get_mut(&key) else {
            return;
        };
        if state.cancelled {
            // Cancelled while it was being built: its channels were
            // registered after the cancel forgot the attempt's.
            started.cancel.store(true, Ordering::Relaxed);
            drop(attempts);
            self.inbound.forget(&key.0, key.1);
            return;
        }
        for command in state.pending.drain(..) {
            apply(&mut started, command);
        }
        state.started = Some(started);
    }

    /// Opens the new version of `swap.operator` for every subtask of it
    /// that runs here, while the old version goes on processing.
    fn prepare(&self, job: &str, attempt: u32, swap: &Swap, artifact: &str) -> Result<(), String> {
        let path = self.artifact(artifact).map_err(|e| format!("{e:#}"))?;
        let compiled = self
            .engine
            .load(&swap.operator, &path)
            .map_err(|e| e.to_string())?;
        let key = (job.to_string(), attempt);
        let (spec, number, prepared, subtasks) = {
            let attempts = self.attempts.lock().expect("not poisoned");
            let state = attempts
                .get(&key)
                .ok_or("the attempt is no longer running on this worker")?;
            let (spec, number) = state
                .job
                .clone()
                .ok_or("the attempt is still starting on this worker")?;
            let started = state
                .started
                .as_ref()
                .ok_or("the attempt is still starting on this worker")?;
            let chain = weir_runtime::chain_of(&spec, &swap.operator)
                .ok_or_else(|| format!("the job has no operator `{}`", swap.operator))?;
            let subtasks: Vec<u32> = state
                .placement
                .iter()
                .filter(|(_, w)| **w == self.id)
                .filter_map(|(t, _)| match t {
                    TaskId::Chain { chain: c, subtask } if *c == chain => Some(*subtask),
                    _ => None,
                })
                .collect();
            (spec, number, started.prepared.clone(), subtasks)
        };
        weir_runtime::swaps::prepare(&spec, &compiled, swap, &subtasks, number, &prepared)
    }

    /// The local path of an artifact, fetched from the coordinator once.
    fn artifact(&self, digest: &str) -> anyhow::Result<PathBuf> {
        let hex =
            digest_hex(digest).with_context(|| format!("`{digest}` is not an artifact digest"))?;
        let dir = self.options.work_dir.join("artifacts");
        let path = dir.join(format!("{hex}.wasm"));
        match intact(&path, digest) {
            Some(true) => return Ok(path),
            Some(false) => tracing::warn!(
                "{} does not hold artifact {digest} (changed on disk); fetching it again",
                path.display()
            ),
            None => {}
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let conn = self.coordinator.clone();
        let request = FetchArtifact {
            digest: digest.to_string(),
        };
        let bytes = self
            .runtime
            .block_on(async move {
                let (mut send, mut recv) = conn.open_bi().await?;
                write_message(&mut send, &request).await?;
                send.finish()?;
                read_blob(&mut recv)
                    .await?
                    .context("the coordinator sent no artifact")
            })
            .with_context(|| format!("cannot fetch artifact {digest}"))?;
        if digest_of(&bytes) != digest {
            bail!("artifact {digest} arrived damaged (its digest does not match)");
        }
        write_atomically(&path, &bytes)?;
        self.prune_artifacts(&dir);
        Ok(path)
    }

    /// Keeps at most [`ARTIFACTS_KEPT`] fetched artifacts: the oldest that
    /// no attempt deployed here uses go first (a job resubmitted later
    /// fetches its artifact again).
    fn prune_artifacts(&self, dir: &std::path::Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf, String)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let digest = format!("sha256:{}", name.strip_suffix(".wasm")?);
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((modified, e.path(), digest))
            })
            .collect();
        if files.len() <= ARTIFACTS_KEPT {
            return;
        }
        let in_use: BTreeSet<String> = self
            .attempts
            .lock()
            .expect("not poisoned")
            .values()
            .flat_map(|a| a.artifacts.iter().cloned())
            .collect();
        files.sort();
        let mut excess = files.len() - ARTIFACTS_KEPT;
        for (_, path, digest) in files {
            if excess == 0 {
                break;
            }
            if !in_use.contains(&digest) && std::fs::remove_file(&path).is_ok() {
                excess -= 1;
            }
        }
    }
}

impl crate::worker_metrics::WorkerFacts for Worker {
    fn slots(&self) -> (u32, u32) {
        let attempts = self.attempts.lock().expect("not poisoned");
        // Slot sharing: subtask `i` of every node runs in slot `i`.
        let used: usize = attempts
            .values()
            .map(|a| {
                a.placement
                    .iter()
                    .filter(|(_, w)| **w == self.id)
                    .map(|(t, _)| t.subtask())
                    .collect::<BTreeSet<u32>>()
                    .len()
            })
            .sum();
        (self.options.slots, used as u32)
    }

    fn connections(&self) -> Vec<(String, quinn::Connection)> {
        let mut all = vec![("coordinator".to_string(), self.coordinator.clone())];
        let peers = self.peers.lock().expect("not poisoned");
        all.extend(
            peers
                .iter()
                .filter(|(_, c)| c.close_reason().is_none())
                .map(|(id, c)| (format!("worker-{id}"), c.clone())),
        );
        all
    }
}

/// Whether the file at `path` holds exactly the artifact `digest`
/// (`None`: there is no such file). A file in the work directory is
/// checked every time it is used: something may have overwritten it since
/// it was fetched (before jobs were kept out of work directories, a job
/// could), and a worker must run exactly the artifact deployed.
fn intact(path: &std::path::Path, digest: &str) -> Option<bool> {
    match std::fs::read(path) {
        Ok(bytes) => Some(digest_of(&bytes) == digest),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => Some(false),
    }
}

/// The open connection to `peer`, if any.
fn live(peers: &HashMap<WorkerId, quinn::Connection>, peer: WorkerId) -> Option<quinn::Connection> {
    peers
        .get(&peer)
        .filter(|c| c.close_reason().is_none())
        .cloned()
}

fn apply(started: &mut Started, command: ToWorker) {
    match command {
        ToWorker::SnapshotDir { id, dir, swaps, .. } => {
            let mut plans = started.plans.lock().expect("not poisoned");
            // One snapshot is in flight at a time; keep a few for stragglers.
            plans.retain(|&known, _| known + SNAPSHOT_DIRS_KEPT > id);
            plans.insert(id, dir.map(|dir| SnapshotPlan { dir, swaps }));
        }
        ToWorker::Source { task, command, .. } => {
            if let Some(tx) = started.sources.get(&task) {
                let _ = tx.send(command);
            }
        }
        ToWorker::SourceClosed { task, .. } => {
            started.sources.remove(&task);
        }
        ToWorker::Sink { task, command, .. } => {
            if let Some(tx) = started.sinks.get(&task) {
                let _ = tx.send(command);
            }
        }
        _ => {}
    }
}

impl DataPlane for Worker {
    fn open(&self, header: &ChannelHeader, consumer: TaskId) -> anyhow::Result<FrameWriter> {
        let (peer, addr, name) = {
            let attempts = self.attempts.lock().expect("not poisoned");
            let state = attempts
                .get(&(header.job.clone(), header.attempt))
                .context("the attempt is no longer deployed here")?;
            let peer = *state
                .placement
                .get(&consumer)
                .context("the consumer is not placed")?;
            let addr = *state
                .peers
                .get(&peer)
                .with_context(|| format!("worker {peer} has no address"))?;
            (peer, addr, state.peer_names.get(&peer).cloned())
        };
        let key = (header.job.clone(), header.attempt);
        let conn = self.peer_connection(peer, addr, Some(&key))?;
        // Data goes only to the worker the coordinator placed the consumer
        // on: whoever holds the connection must hold that worker's
        // certificate (a peer could claim another's id in its hello).
        if let Some(name) = &name {
            weir_net::check_peer(&conn, Role::Worker, name)
                .with_context(|| format!("the connection to worker {peer} at {addr}"))?;
        }
        let header = header.clone();
        Ok(self
            .runtime
            .block_on(async move { open_channel(&conn, &header).await })?)
    }

    fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_changed_on_disk_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = b"\0asm component bytes";
        let digest = digest_of(bytes);
        let path = dir
            .path()
            .join(format!("{}.wasm", digest_hex(&digest).unwrap()));
        assert_eq!(intact(&path, &digest), None);
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(intact(&path, &digest), Some(true));
        std::fs::write(&path, b"\0asm planted by a job").unwrap();
        assert_eq!(intact(&path, &digest), Some(false));
    }
}
