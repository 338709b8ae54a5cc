//! What a coordinator knows, shared by its QUIC side, its REST side and
//! the job masters: workers and their slots, jobs, artifacts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Sender;
use serde::Serialize;
use tokio::sync::mpsc;
use weir_net::stream::encode_message;
use weir_wasm::WasmEngine;

use weir_runtime::telemetry::JobMetrics;

use crate::artifacts::ArtifactStore;
use crate::jobs::{JobEntry, JobInput, prune_finished};
use crate::options::CoordinatorOptions;
use crate::placement::Offer;
use crate::protocol::{OUTBOX_MESSAGES_MAX, Queued, ToWorker, WorkerId, queue};

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WorkerInfo {
    pub id: WorkerId,
    pub name: String,
    pub slots: u32,
    pub free_slots: u32,
    pub data_addr: SocketAddr,
}

pub(crate) struct WorkerEntry {
    pub(crate) info: WorkerInfo,
    /// Encoded messages (see [`Cluster::send`]), at most
    /// [`OUTBOX_MESSAGES_MAX`] waiting.
    pub(crate) outbox: mpsc::Sender<Vec<u8>>,
    pub(crate) conn: quinn::Connection,
    pub(crate) last_heartbeat: Instant,
}

/// What the coordinator knows, shared by its QUIC side, REST side and job
/// masters.
pub struct Cluster {
    pub(crate) workers: Mutex<BTreeMap<WorkerId, WorkerEntry>>,
    pub(crate) next_worker: AtomicU32,
    pub(crate) next_attempt: AtomicU32,
    pub(crate) jobs: Mutex<BTreeMap<String, JobEntry>>,
    /// Each worker's latest metrics of the jobs it runs, and when they came.
    pub(crate) worker_metrics: Mutex<BTreeMap<WorkerId, (Instant, Vec<JobMetrics>)>>,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) engine: WasmEngine,
    /// Permits for uploads in flight.
    pub(crate) uploads: Arc<tokio::sync::Semaphore>,
    /// Permits for savepoint requests waiting for their answer.
    pub(crate) savepoints: Arc<tokio::sync::Semaphore>,
    pub(crate) options: CoordinatorOptions,
    /// Job records for a coordinator that restarts (`--ha-dir`).
    pub(crate) ha: Option<crate::ha::HaStore>,
    /// The jobs whose records this coordinator keeps up to date.
    pub(crate) ha_tracked: Mutex<BTreeMap<String, crate::ha::Tracked>>,
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

    pub(crate) fn to_job(&self, job: &str, input: JobInput) {
        if let Some(entry) = self.jobs.lock().expect("not poisoned").get(job) {
            let _ = entry.inbox.send(input);
        }
    }

    /// The metrics of `job` over every worker that reported it within the
    /// last few seconds (a lost or silent worker's samples drop out).
    pub(crate) fn job_metrics(&self, job: &str) -> JobMetrics {
        let fresh = std::time::Duration::from_secs(5);
        let samples: Vec<JobMetrics> = self
            .worker_metrics
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|(at, _)| at.elapsed() <= fresh)
            .flat_map(|(_, jobs)| jobs.iter().filter(|m| m.job == job).cloned())
            .collect();
        let mut merged = weir_runtime::telemetry::merge(samples);
        merged.job = job.to_string();
        merged
    }

    /// Forgets a worker and tells every job, once.
    pub(crate) fn lose(&self, worker: WorkerId, why: &str) {
        self.worker_metrics
            .lock()
            .expect("not poisoned")
            .remove(&worker);
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

#[cfg(test)]
pub(crate) fn test_cluster(dir: &std::path::Path, token: &str) -> Arc<Cluster> {
    use std::time::Duration;
    use weir_core::data_roots::DataRoots;
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
        ha_dir: None,
    };
    Arc::new(Cluster {
        workers: Mutex::new(BTreeMap::new()),
        next_worker: AtomicU32::new(1),
        next_attempt: AtomicU32::new(1),
        jobs: Mutex::new(BTreeMap::new()),
        worker_metrics: Mutex::new(BTreeMap::new()),
        artifacts: ArtifactStore::open(&dir.join("data/artifacts"), 8 << 20, 64 << 20, 8).unwrap(),
        engine: WasmEngine::new(None).unwrap(),
        uploads: Arc::new(tokio::sync::Semaphore::new(2)),
        savepoints: Arc::new(tokio::sync::Semaphore::new(
            crate::rest::SAVEPOINTS_IN_FLIGHT_MAX,
        )),
        options,
        ha: None,
        ha_tracked: Mutex::new(BTreeMap::new()),
    })
}
