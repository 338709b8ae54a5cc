//! A job's checkpoint directory: `chk-<id>/` per checkpoint, `shared/` for
//! SSTs several checkpoints use. Also loads savepoints, which are
//! self-contained directories.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::SnapshotError;
use crate::metadata::{METADATA_FILE, Metadata, StateHandle};
use crate::store::{Store, StoreOptions};

/// A snapshot whose metadata and files have all been checked.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The local directory its files are read from (for a snapshot on an
    /// object store, the local copy).
    pub dir: PathBuf,
    /// Where it lives: `dir`, or the object store URL.
    pub location: PathBuf,
    pub metadata: Metadata,
}

impl Snapshot {
    /// Reads `dir/_metadata` and verifies every file it names; an `s3://`
    /// location is downloaded first, with the `AWS_*` environment.
    pub fn load(dir: &Path) -> Result<Snapshot, SnapshotError> {
        Snapshot::load_with(dir, &StoreOptions::default())
    }

    /// [`Snapshot::load`] with object store options (the job file's).
    pub fn load_with(dir: &Path, options: &StoreOptions) -> Result<Snapshot, SnapshotError> {
        if crate::remote::is_remote(dir) {
            return crate::remote::fetch(dir, options);
        }
        let metadata = Metadata::read(dir)?;
        for file in metadata.files() {
            file.verify(dir)?;
        }
        Ok(Snapshot {
            dir: dir.to_path_buf(),
            location: dir.to_path_buf(),
            metadata,
        })
    }
}

pub struct CheckpointStorage {
    root: PathBuf,
    /// The store at `root` when it is an object store.
    remote: Option<(Store, StoreOptions)>,
}

impl CheckpointStorage {
    /// The checkpoints of job `job` under `dir`. Job names are checked
    /// when a job file is parsed; a name that is not a safe path part
    /// anyway (see [`weir_core::job::job_name_problem`]) is hex-encoded, so
    /// the root is always one plain directory under `dir`.
    pub fn new(dir: &Path, job: &str) -> Self {
        CheckpointStorage {
            root: dir.join(job_part(job)),
            remote: None,
        }
    }

    /// The checkpoints of job `job` under `dir`, a directory or an object
    /// store URL (`s3://bucket/prefix`).
    pub fn open(dir: &Path, job: &str, options: &StoreOptions) -> Result<Self, SnapshotError> {
        if !crate::remote::is_remote(dir) {
            return Ok(CheckpointStorage::new(dir, job));
        }
        let location = dir.to_string_lossy();
        let store = Store::open(&location, options)?.child(&job_part(job))?;
        Ok(CheckpointStorage {
            root: PathBuf::from(format!(
                "{}/{}",
                location.trim_end_matches('/'),
                job_part(job)
            )),
            remote: Some((store, options.clone())),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The object store options, when the storage is remote.
    pub fn store_options(&self) -> Option<&StoreOptions> {
        self.remote.as_ref().map(|(_, o)| o)
    }

    pub fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.root.join(chk_name(id))
    }

    /// Creates the (empty) directory for checkpoint `id`.
    pub fn create(&self, id: u64) -> Result<PathBuf, SnapshotError> {
        let dir = self.checkpoint_dir(id);
        if let Some((store, _)) = &self.remote {
            // Left over from an attempt that never completed.
            store.delete_prefix(&chk_name(id))?;
            return Ok(dir);
        }
        if dir.exists() {
            // Left over from an attempt that never completed.
            std::fs::remove_dir_all(&dir).map_err(|e| SnapshotError::io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| SnapshotError::io(&dir, e))?;
        Ok(dir)
    }

    /// Checkpoint ids with a directory, newest first (complete or not).
    pub fn ids(&self) -> Vec<u64> {
        if let Some((store, _)) = &self.remote {
            return match remote_ids(store) {
                Ok(ids) => ids.into_iter().map(|(id, _)| id).collect(),
                Err(e) => {
                    tracing::warn!("cannot list checkpoints: {e}");
                    Vec::new()
                }
            };
        }
        let mut ids: Vec<u64> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }

    /// Whether any checkpoint was ever completed here.
    pub fn has_completed(&self) -> bool {
        if let Some((store, _)) = &self.remote {
            return remote_ids(store).is_ok_and(|ids| ids.iter().any(|(_, complete)| *complete));
        }
        self.ids()
            .iter()
            .any(|&id| self.checkpoint_dir(id).join(METADATA_FILE).exists())
    }

    /// The newest checkpoint that loads and verifies. Damaged ones are
    /// skipped with a warning; `Err` if checkpoints exist but none is whole.
    pub fn latest_valid(&self) -> Result<Option<Snapshot>, SnapshotError> {
        let mut problems = Vec::new();
        let candidates: Vec<u64> = match &self.remote {
            Some((store, _)) => remote_ids(store)?
                .into_iter()
                .filter(|(_, complete)| *complete)
                .map(|(id, _)| id)
                .collect(),
            None => self
                .ids()
                .into_iter()
                // Never completed: not a checkpoint.
                .filter(|&id| self.checkpoint_dir(id).join(METADATA_FILE).exists())
                .collect(),
        };
        for id in candidates {
            let dir = self.checkpoint_dir(id);
            let loaded = match &self.remote {
                Some((_, options)) => Snapshot::load_with(&dir, options),
                None => Snapshot::load(&dir),
            };
            match loaded {
                Ok(snapshot) => {
                    for p in &problems {
                        tracing::warn!("skipped damaged checkpoint: {p}");
                    }
                    return Ok(Some(snapshot));
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        if problems.is_empty() {
            Ok(None)
        } else {
            Err(SnapshotError::Incompatible(format!(
                "no usable checkpoint in {}: {}",
                self.root.display(),
                problems.join("; ")
            )))
        }
    }

    /// Keeps the newest `retain` complete checkpoints, deletes older and
    /// incomplete ones older than `newest`, and shared files only they used.
    pub fn prune(&self, retain: usize, newest: u64) -> Result<(), SnapshotError> {
        if let Some((store, _)) = &self.remote {
            return prune_remote(store, retain, newest);
        }
        let mut kept = Vec::new();
        let mut doomed = Vec::new();
        for id in self.ids() {
            if id > newest {
                continue; // in progress
            }
            let dir = self.checkpoint_dir(id);
            let complete = dir.join(METADATA_FILE).exists();
            if complete && kept.len() < retain {
                kept.push(dir);
            } else {
                doomed.push(dir);
            }
        }
        let shared_of = |dir: &Path| -> HashSet<String> {
            Metadata::read(dir)
                .map(|m| shared_files(&m))
                .unwrap_or_default()
        };
        let live: HashSet<String> = kept.iter().flat_map(|d| shared_of(d)).collect();
        for dir in doomed {
            for name in shared_of(&dir) {
                if !live.contains(&name) {
                    let path = self.root.join("shared").join(&name);
                    if let Err(e) = std::fs::remove_file(&path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        return Err(SnapshotError::io(&path, e));
                    }
                }
            }
            std::fs::remove_dir_all(&dir).map_err(|e| SnapshotError::io(&dir, e))?;
        }
        Ok(())
    }
}

/// The directory part of a job's checkpoints. Job names are checked
/// when a job file is parsed; a name that is not a safe path part anyway
/// (see [`weir_core::job::job_name_problem`]) is hex-encoded, so the root is
/// always one plain directory under the storage.
fn job_part(job: &str) -> String {
    if weir_core::job::job_name_problem(job).is_none() {
        job.to_string()
    } else {
        let hex: String = job.bytes().map(|b| format!("{b:02x}")).collect();
        format!("job-{hex}")
    }
}

fn chk_name(id: u64) -> String {
    format!("chk-{id:08}")
}

/// The shared files a checkpoint's metadata uses, by name in `shared/`.
fn shared_files(m: &Metadata) -> HashSet<String> {
    m.operators
        .iter()
        .flat_map(|o| &o.subtasks)
        .filter_map(|s| match &s.state {
            StateHandle::Rocksdb { files } => Some(files),
            _ => None,
        })
        .flatten()
        .filter_map(|f| f.file.path.strip_prefix("../shared/"))
        // Only plain names: a damaged or planted metadata file must not
        // make prune delete outside `shared/`.
        .filter(|name| crate::is_plain_name(name))
        .map(String::from)
        .collect()
}

/// Checkpoint ids in an object store, newest first, with whether each has
/// its `_metadata` (is complete).
fn remote_ids(store: &Store) -> Result<Vec<(u64, bool)>, SnapshotError> {
    let mut ids = std::collections::BTreeMap::new();
    for key in store.list("")? {
        let mut parts = key.split('/');
        let (Some(dir), Some(file)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let Some(id) = dir.strip_prefix("chk-").and_then(|d| d.parse::<u64>().ok()) {
            let complete = ids.entry(id).or_insert(false);
            *complete |= file == METADATA_FILE && parts.next().is_none();
        }
    }
    Ok(ids.into_iter().rev().collect())
}

/// [`CheckpointStorage::prune`] on an object store.
fn prune_remote(store: &Store, retain: usize, newest: u64) -> Result<(), SnapshotError> {
    let mut kept = Vec::new();
    let mut doomed = Vec::new();
    for (id, complete) in remote_ids(store)? {
        if id > newest {
            continue; // in progress
        }
        if complete && kept.len() < retain {
            kept.push(id);
        } else {
            doomed.push((id, complete));
        }
    }
    let shared_of = |id: u64| -> Result<HashSet<String>, SnapshotError> {
        Ok(crate::remote::read_metadata(store, &chk_name(id))
            .ok()
            .flatten()
            .map(|m| shared_files(&m))
            .unwrap_or_default())
    };
    let mut live = HashSet::new();
    for &id in &kept {
        live.extend(shared_of(id)?);
    }
    for (id, complete) in doomed {
        let name = chk_name(id);
        if complete {
            // The metadata goes first: a reader never finds a checkpoint
            // whose files are being deleted.
            let shared = shared_of(id)?;
            store.delete(&format!("{name}/{METADATA_FILE}"))?;
            for file in shared.difference(&live) {
                store.delete(&format!("shared/{file}"))?;
            }
        }
        store.delete_prefix(&name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::HashingWriter;
    use crate::metadata::{OperatorSnapshot, SubtaskSnapshot, sample};
    use std::io::Write;

    fn checkpoint(storage: &CheckpointStorage, id: u64) -> PathBuf {
        let dir = storage.create(id).unwrap();
        let mut w = HashingWriter::create(&dir.join("op-0.state")).unwrap();
        w.write_all(format!("state {id}").as_bytes()).unwrap();
        let file = w.finish("op-0.state".into()).unwrap();
        let mut m = sample(id);
        m.operators.push(OperatorSnapshot {
            name: "op".into(),
            parallelism: 1,
            states: vec![],
            subtasks: vec![SubtaskSnapshot {
                subtask: 0,
                key_groups: (0, 128),
                watermark: 0,
                timers: None,
                state: StateHandle::Canonical { file },
                stats: vec![],
            }],
        });
        m.write(&dir).unwrap();
        dir
    }

    #[test]
    fn damaged_checkpoints_fall_back_to_the_previous_one() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(tmp.path(), "job");
        for id in 1..=5 {
            checkpoint(&storage, id);
        }
        // 5: a state file flipped; 4: truncated; 3: missing.
        let flip = storage.checkpoint_dir(5).join("op-0.state");
        let mut bytes = std::fs::read(&flip).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&flip, bytes).unwrap();
        let cut = storage.checkpoint_dir(4).join("op-0.state");
        std::fs::write(&cut, b"st").unwrap();
        std::fs::remove_file(storage.checkpoint_dir(3).join("op-0.state")).unwrap();
        // 6: started, never completed.
        storage.create(6).unwrap();
        let latest = storage.latest_valid().unwrap().unwrap();
        assert_eq!(latest.metadata.id, 2);

        std::fs::remove_file(storage.checkpoint_dir(2).join(METADATA_FILE)).unwrap();
        std::fs::write(storage.checkpoint_dir(1).join(METADATA_FILE), b"{}").unwrap();
        let e = storage.latest_valid().unwrap_err().to_string();
        assert!(e.contains("no usable checkpoint"), "{e}");
        assert!(e.contains("chk-00000005/op-0.state"), "{e}");
    }

    #[test]
    fn storage_roots_and_prune_stay_inside_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(tmp.path(), "../x");
        assert_eq!(storage.root(), tmp.path().join("job-2e2e2f78"));
        assert_eq!(
            CheckpointStorage::new(tmp.path(), "wc").root(),
            tmp.path().join("wc")
        );

        // A metadata file naming a shared file outside `shared/`.
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let storage = CheckpointStorage::new(&root, "job");
        for id in 1..=2 {
            let dir = storage.create(id).unwrap();
            let mut m = sample(id);
            m.operators.push(OperatorSnapshot {
                name: "op".into(),
                parallelism: 1,
                states: vec![],
                subtasks: vec![SubtaskSnapshot {
                    subtask: 0,
                    key_groups: (0, 128),
                    watermark: 0,
                    timers: None,
                    state: StateHandle::Rocksdb {
                        files: vec![crate::metadata::RocksFile {
                            name: "1.sst".into(),
                            file: crate::FileRef {
                                path: "../shared/../../../victim".into(),
                                size: 7,
                                xxh3: String::new(),
                            },
                        }],
                    },
                    stats: vec![],
                }],
            });
            m.write(&dir).unwrap();
        }
        storage.prune(1, 2).unwrap();
        assert_eq!(storage.ids(), vec![2]);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let e = Snapshot::load(&storage.checkpoint_dir(2))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid file path `../shared/../../../victim`"),
            "{e}"
        );
    }

    #[test]
    fn prune_keeps_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(tmp.path(), "job");
        for id in 1..=5 {
            checkpoint(&storage, id);
        }
        storage.create(6).unwrap();
        storage.prune(2, 5).unwrap();
        assert_eq!(storage.ids(), vec![6, 5, 4]);
    }
}
