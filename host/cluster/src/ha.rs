//! Coordinator high availability (as Flink's JobManager HA): what a
//! coordinator keeps in durable storage so that one started again on the
//! same storage resumes every job that was running, without the user
//! submitting it again.
//!
//! The store (`weir coordinator --ha-dir`, a directory or `s3://...`)
//! holds one record per job, `jobs/<name>.json` ([`JobRecord`]: the job
//! file, its artifacts, how it started, its state and latest completed
//! checkpoint), and the artifacts the jobs run, `artifacts/<hex>.wasm`
//! (submitted and upgraded ones), so the coordinator's own data directory
//! may be lost. Checkpoints stay where the job file puts them; a resumed
//! job continues from the newest complete one there. A record is written
//! when a job is submitted and updated as it runs; a job in a terminal
//! state (finished, stopped, cancelled, failed) is never resumed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use weir_snapshot::store::{Store, StoreOptions};

use crate::artifacts::{digest_hex, digest_of};
use crate::cluster::Cluster;
use crate::job_master::Submission;
use crate::jobs::JobState;
use crate::rest::SubmitRequest;

/// What a coordinator needs to resume a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    pub job_toml: String,
    pub job_path: PathBuf,
    /// Operator → the digest (`sha256:<hex>`) it was submitted with.
    pub artifacts: BTreeMap<String, String>,
    /// Every artifact the job may run (submitted and upgrades), each kept
    /// in the store.
    pub digests: BTreeSet<String>,
    /// How it was first started: without a completed checkpoint it starts
    /// this way again.
    pub from_savepoint: Option<PathBuf>,
    pub resume: bool,
    pub allow_non_restored_state: bool,
    pub state: JobState,
    pub last_checkpoint: Option<u64>,
    pub submitted_unix_ms: u64,
    /// Times a coordinator took the job over after a restart.
    #[serde(default)]
    pub recoveries: u32,
}

/// The HA store of one coordinator.
#[derive(Clone, Debug)]
pub struct HaStore {
    store: Store,
}

fn job_key(name: &str) -> String {
    format!("jobs/{name}.json")
}

fn artifact_key(digest: &str) -> anyhow::Result<String> {
    let hex =
        digest_hex(digest).with_context(|| format!("`{digest}` is not an artifact digest"))?;
    Ok(format!("artifacts/{hex}.wasm"))
}

impl HaStore {
    /// Opens `location`: a local directory or `s3://bucket/prefix` (with the
    /// standard `AWS_*` environment variables).
    pub fn open(location: &str) -> anyhow::Result<HaStore> {
        let store = Store::open(location, &StoreOptions::default())
            .map_err(|e| anyhow::anyhow!("--ha-dir {location}: {e}"))?;
        Ok(HaStore { store })
    }

    pub fn describe(&self) -> String {
        self.store.describe("")
    }

    pub fn put_record(&self, record: &JobRecord) -> anyhow::Result<()> {
        let key = job_key(&record.name);
        let bytes = serde_json::to_vec_pretty(record).expect("a record serializes");
        self.store
            .put(&key, &bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.store.describe(&key)))
    }

    pub fn record(&self, name: &str) -> anyhow::Result<Option<JobRecord>> {
        let key = job_key(name);
        let Some(bytes) = self
            .store
            .get(&key)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", self.store.describe(&key)))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{}: not a job record", self.store.describe(&key)))
    }

    /// Every job record, by name. A record that cannot be read is reported
    /// in the second list (key, why) rather than failing the others.
    pub fn records(&self) -> anyhow::Result<(Vec<JobRecord>, Vec<(String, String)>)> {
        let keys = self
            .store
            .list("jobs")
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", self.store.describe("jobs")))?;
        let mut records = Vec::new();
        let mut broken = Vec::new();
        for key in keys {
            let Some(name) = key
                .strip_prefix("jobs/")
                .and_then(|k| k.strip_suffix(".json"))
            else {
                continue;
            };
            match self.record(name) {
                Ok(Some(record)) if record.name == name => records.push(record),
                Ok(Some(record)) => broken.push((
                    key.clone(),
                    format!("it names job `{}`", weir_core::text::cut(&record.name, 64)),
                )),
                Ok(None) => {} // deleted meanwhile
                Err(e) => broken.push((key.clone(), format!("{e:#}"))),
            }
        }
        Ok((records, broken))
    }

    pub fn delete_record(&self, name: &str) -> anyhow::Result<()> {
        let key = job_key(name);
        self.store
            .delete(&key)
            .map_err(|e| anyhow::anyhow!("cannot delete {}: {e}", self.store.describe(&key)))
    }

    /// Keeps artifact `digest` (its bytes are `bytes`) unless already kept.
    pub fn put_artifact(&self, digest: &str, bytes: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(
            digest_of(bytes) == digest,
            "artifact {digest}: the bytes given have another digest"
        );
        let key = artifact_key(digest)?;
        self.store
            .put_if_absent(&key, bytes)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.store.describe(&key)))
    }

    /// Artifact `digest`'s bytes, checked against the digest.
    pub fn artifact(&self, digest: &str) -> anyhow::Result<Vec<u8>> {
        let key = artifact_key(digest)?;
        let bytes = self
            .store
            .get(&key)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", self.store.describe(&key)))?
            .with_context(|| format!("{} is missing", self.store.describe(&key)))?;
        anyhow::ensure!(
            digest_of(&bytes) == digest,
            "{} does not hold artifact {digest} (its bytes have another digest)",
            self.store.describe(&key)
        );
        Ok(bytes)
    }

    /// Deletes kept artifacts that no record in `records` names.
    pub fn prune_artifacts(&self, records: &[JobRecord]) -> anyhow::Result<()> {
        let used: BTreeSet<String> = records
            .iter()
            .flat_map(|r| r.digests.iter())
            .filter_map(|d| artifact_key(d).ok())
            .collect();
        let keys = self.store.list("artifacts").map_err(|e| {
            anyhow::anyhow!("cannot list {}: {e}", self.store.describe("artifacts"))
        })?;
        for key in keys.into_iter().filter(|k| !used.contains(k)) {
            self.store
                .delete(&key)
                .map_err(|e| anyhow::anyhow!("cannot delete {}: {e}", self.store.describe(&key)))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The coordinator's side: recording jobs as they start and change, and
// taking them over after a restart.

/// A job whose record this coordinator keeps up to date: the record as
/// last written, and which job entry (its view) it stands for, so a job
/// submitted again under the same name is never mistaken for the old one.
pub(crate) struct Tracked {
    view: usize,
    record: JobRecord,
}

fn view_of(cluster: &Cluster, name: &str) -> Option<usize> {
    cluster
        .jobs
        .lock()
        .expect("not poisoned")
        .get(name)
        .map(|j| Arc::as_ptr(&j.view) as usize)
}

/// Starts `submission` and, with an HA store, records it (and keeps its
/// artifacts there) before anything else can change the record.
pub(crate) fn start_recorded(
    cluster: &Arc<Cluster>,
    submission: Submission,
    request: &SubmitRequest,
) -> anyhow::Result<()> {
    let Some(ha) = &cluster.ha else {
        return crate::job_master::start(cluster.clone(), submission);
    };
    let name = submission.job.name.clone();
    let artifacts = submission.artifacts.clone();
    let mut tracked = cluster.ha_tracked.lock().expect("not poisoned");
    crate::job_master::start(cluster.clone(), submission)?;
    let record = JobRecord {
        name: name.clone(),
        job_toml: request.job_toml.clone(),
        job_path: request.job_path.clone(),
        digests: artifacts.values().cloned().collect(),
        artifacts,
        from_savepoint: request.from_savepoint.clone(),
        resume: request.resume,
        allow_non_restored_state: request.allow_non_restored_state,
        state: JobState::Running,
        last_checkpoint: None,
        submitted_unix_ms: weir_snapshot::metadata::now_unix_ms(),
        recoveries: 0,
    };
    let written = record
        .digests
        .iter()
        .try_for_each(|d| ha.put_artifact(d, &cluster.artifacts.read(d)?))
        .and_then(|()| ha.put_record(&record));
    match written {
        Ok(()) => {
            if let Some(view) = view_of(cluster, &name) {
                tracked.insert(name, Tracked { view, record });
            }
        }
        // The job runs; only a coordinator restart would lose it.
        Err(e) => {
            tracing::error!(job = %name, "job not recorded for HA: {e:#}");
            eprintln!(
                "weir: ERROR: job `{name}` runs but is not recorded in {}: a coordinator restart would not resume it: {e:#}",
                ha.describe()
            );
        }
    }
    Ok(())
}

/// Brings every tracked record up to date with its job: new artifacts
/// (upgrades), the latest completed checkpoint, and the end. A job that
/// ended loses its record (it is never resumed), and artifacts no record
/// names leave the store. Blocking (the store may be remote): runs on a
/// thread of its own.
pub(crate) fn sync(cluster: &Cluster) {
    let Some(ha) = &cluster.ha else {
        return;
    };
    let mut tracked = cluster.ha_tracked.lock().expect("not poisoned");
    let mut ended = Vec::new();
    for (name, t) in tracked.iter_mut() {
        let info = {
            let jobs = cluster.jobs.lock().expect("not poisoned");
            match jobs.get(name) {
                Some(j) if Arc::as_ptr(&j.view) as usize == t.view => {
                    let digests = j.artifacts.lock().expect("not poisoned").clone();
                    Some((j.info(), digests))
                }
                // Pruned, or replaced by a new submission of the name
                // (which tracks itself): nothing more to record of it.
                _ => None,
            }
        };
        let Some((info, digests)) = info else {
            ended.push((name.clone(), false));
            continue;
        };
        if info.state.is_terminal() {
            ended.push((name.clone(), true));
            continue;
        }
        let mut record = t.record.clone();
        let new: Vec<String> = digests.difference(&record.digests).cloned().collect();
        for digest in new {
            let kept = cluster
                .artifacts
                .read(&digest)
                .and_then(|bytes| ha.put_artifact(&digest, &bytes));
            match kept {
                Ok(()) => {
                    record.digests.insert(digest);
                }
                Err(e) => tracing::warn!(job = %name, "artifact {digest} not kept for HA: {e:#}"),
            }
        }
        record.last_checkpoint = info.last_checkpoint.or(record.last_checkpoint);
        if record != t.record {
            match ha.put_record(&record) {
                Ok(()) => t.record = record,
                Err(e) => tracing::warn!(job = %name, "job record not updated: {e:#}"),
            }
        }
    }
    let mut pruned = false;
    for (name, delete) in ended {
        if delete {
            if let Err(e) = ha.delete_record(&name) {
                tracing::warn!(job = %name, "job record not deleted (retried): {e:#}");
                continue;
            }
            tracing::info!(job = %name, "job ended: its HA record is deleted");
            pruned = true;
        }
        tracked.remove(&name);
    }
    if pruned {
        let records: Vec<JobRecord> = tracked.values().map(|t| t.record.clone()).collect();
        if let Err(e) = ha.prune_artifacts(&records) {
            tracing::warn!("HA artifacts not pruned: {e:#}");
        }
    }
}

/// Takes over every job the HA store records as running: each resumes
/// from its latest completed checkpoint (or, without one, starts the way
/// it was first submitted), waiting for workers like any submission. A job
/// that cannot be taken over is reported and its record kept.
pub(crate) fn recover(cluster: &Arc<Cluster>) {
    let Some(ha) = &cluster.ha else {
        return;
    };
    let (records, broken) = match ha.records() {
        Ok(found) => found,
        Err(e) => {
            tracing::error!("cannot read the HA store: {e:#}");
            eprintln!(
                "weir: ERROR: cannot read the jobs in {}: {e:#}",
                ha.describe()
            );
            return;
        }
    };
    for (key, why) in broken {
        tracing::error!("HA job record {key} skipped: {why}");
        eprintln!("weir: ERROR: job record {key} skipped: {why}");
    }
    for record in records.into_iter().filter(|r| !r.state.is_terminal()) {
        let name = record.name.clone();
        match take_over(cluster, ha, record) {
            Ok(from) => {
                tracing::info!(job = %name, "job taken over: {from}");
                eprintln!("weir: job `{name}` taken over after a coordinator restart: {from}");
            }
            Err(e) => {
                tracing::error!(job = %name, "job not taken over: {e:#}");
                eprintln!("weir: ERROR: job `{name}` cannot be taken over: {e:#}");
            }
        }
    }
}

fn take_over(
    cluster: &Arc<Cluster>,
    ha: &HaStore,
    mut record: JobRecord,
) -> anyhow::Result<String> {
    for digest in &record.digests {
        if cluster.artifacts.resolve(digest).is_none() {
            let bytes = ha.artifact(digest)?;
            let path = cluster
                .artifacts
                .path_of(digest)
                .with_context(|| format!("`{digest}` is not an artifact digest"))?;
            crate::artifacts::write_atomically(&path, &bytes)?;
        }
    }
    let job = crate::paths::parse_job(&record.job_toml, &record.job_path)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let checkpointed = weir_runtime::storage_of(&job).is_some_and(|s| s.has_completed());
    let request = SubmitRequest {
        job_toml: record.job_toml.clone(),
        job_path: record.job_path.clone(),
        artifacts: record.artifacts.clone(),
        from_savepoint: record.from_savepoint.clone().filter(|_| !checkpointed),
        resume: checkpointed || record.resume,
        allow_non_restored_state: record.allow_non_restored_state,
    };
    let submission =
        crate::rest::prepare(cluster, request).map_err(|e| anyhow::anyhow!("{}", e.1))?;
    let from = match &submission.restore {
        Some(s) if checkpointed => format!("resumed from checkpoint {}", s.metadata.id),
        Some(_) => "restored from its savepoint again".to_string(),
        None => "started again from the beginning (no checkpoint completed)".to_string(),
    };
    let checkpoint = submission.restore.as_ref().map(|s| s.metadata.id);
    let mut tracked = cluster.ha_tracked.lock().expect("not poisoned");
    crate::job_master::start(cluster.clone(), submission)?;
    record.recoveries += 1;
    record.last_checkpoint = checkpoint
        .filter(|_| checkpointed)
        .or(record.last_checkpoint);
    ha.put_record(&record)?;
    if let Some(view) = view_of(cluster, &record.name) {
        tracked.insert(record.name.clone(), Tracked { view, record });
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, digest: &str) -> JobRecord {
        JobRecord {
            name: name.into(),
            job_toml: "[job]\nname = \"x\"\n".into(),
            job_path: "/jobs/x.toml".into(),
            artifacts: [("op".to_string(), digest.to_string())].into(),
            digests: [digest.to_string()].into(),
            from_savepoint: None,
            resume: false,
            allow_non_restored_state: false,
            state: JobState::Running,
            last_checkpoint: Some(3),
            submitted_unix_ms: 1,
            recoveries: 0,
        }
    }

    #[test]
    fn records_and_artifacts_round_trip_and_unused_artifacts_go() {
        let dir = tempfile::tempdir().unwrap();
        let ha = HaStore::open(dir.path().to_str().unwrap()).unwrap();
        let (a, b) = (b"artifact a".to_vec(), b"artifact b".to_vec());
        let (da, db) = (digest_of(&a), digest_of(&b));
        ha.put_artifact(&da, &a).unwrap();
        ha.put_artifact(&db, &b).unwrap();
        assert!(ha.put_artifact(&da, &b).is_err(), "digest checked");
        let one = record("one", &da);
        ha.put_record(&one).unwrap();
        ha.put_record(&record("two", &db)).unwrap();
        assert_eq!(ha.record("one").unwrap(), Some(one.clone()));
        assert_eq!(ha.artifact(&da).unwrap(), a);

        ha.delete_record("two").unwrap();
        let (records, broken) = ha.records().unwrap();
        assert_eq!(records, [one]);
        assert!(broken.is_empty());
        ha.prune_artifacts(&records).unwrap();
        assert!(ha.artifact(&db).is_err(), "no record uses b any more");
        assert_eq!(ha.artifact(&da).unwrap(), a);
    }

    #[test]
    fn a_damaged_record_is_reported_by_key_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let ha = HaStore::open(dir.path().to_str().unwrap()).unwrap();
        ha.put_record(&record("good", &digest_of(b"x"))).unwrap();
        std::fs::write(dir.path().join("jobs/bad.json"), b"{not json").unwrap();
        let (records, broken) = ha.records().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].0, "jobs/bad.json");
        assert!(broken[0].1.contains("not a job record"), "{broken:?}");
    }
}
