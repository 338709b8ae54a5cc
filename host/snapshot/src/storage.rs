//! A job's checkpoint directory: `chk-<id>/` per checkpoint, `shared/` for
//! SSTs several checkpoints use. Also loads savepoints, which are
//! self-contained directories.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::SnapshotError;
use crate::metadata::{METADATA_FILE, Metadata, StateHandle};

/// A snapshot whose metadata and files have all been checked.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub metadata: Metadata,
}

impl Snapshot {
    /// Reads `dir/_metadata` and verifies every file it names.
    pub fn load(dir: &Path) -> Result<Snapshot, SnapshotError> {
        let metadata = Metadata::read(dir)?;
        for file in metadata.files() {
            file.verify(dir)?;
        }
        Ok(Snapshot {
            dir: dir.to_path_buf(),
            metadata,
        })
    }
}

pub struct CheckpointStorage {
    root: PathBuf,
}

impl CheckpointStorage {
    /// The checkpoints of job `job` under `dir`. Job names are checked
    /// when a job file is parsed; a name that is not a safe path part
    /// anyway (see [`weir_core::job::job_name_problem`]) is hex-encoded, so
    /// the root is always one plain directory under `dir`.
    pub fn new(dir: &Path, job: &str) -> Self {
        let part = if weir_core::job::job_name_problem(job).is_none() {
            job.to_string()
        } else {
            let hex: String = job.bytes().map(|b| format!("{b:02x}")).collect();
            format!("job-{hex}")
        };
        CheckpointStorage {
            root: dir.join(part),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("chk-{id:08}"))
    }

    /// Creates the (empty) directory for checkpoint `id`.
    pub fn create(&self, id: u64) -> Result<PathBuf, SnapshotError> {
        let dir = self.checkpoint_dir(id);
        if dir.exists() {
            // Left over from an attempt that never completed.
            std::fs::remove_dir_all(&dir).map_err(|e| SnapshotError::io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| SnapshotError::io(&dir, e))?;
        Ok(dir)
    }

    /// Checkpoint ids with a directory, newest first (complete or not).
    pub fn ids(&self) -> Vec<u64> {
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
        self.ids()
            .iter()
            .any(|&id| self.checkpoint_dir(id).join(METADATA_FILE).exists())
    }

    /// The newest checkpoint that loads and verifies. Damaged ones are
    /// skipped with a warning; `Err` if checkpoints exist but none is whole.
    pub fn latest_valid(&self) -> Result<Option<Snapshot>, SnapshotError> {
        let mut problems = Vec::new();
        for id in self.ids() {
            let dir = self.checkpoint_dir(id);
            if !dir.join(METADATA_FILE).exists() {
                continue; // never completed: not a checkpoint
            }
            match Snapshot::load(&dir) {
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
                .map(|m| {
                    m.operators
                        .iter()
                        .flat_map(|o| &o.subtasks)
                        .filter_map(|s| match &s.state {
                            StateHandle::Rocksdb { files } => Some(files),
                            _ => None,
                        })
                        .flatten()
                        .filter_map(|f| f.file.path.strip_prefix("../shared/"))
                        // Only plain names: a damaged or planted metadata
                        // file must not make prune delete outside `shared/`.
                        .filter(|name| crate::is_plain_name(name))
                        .map(String::from)
                        .collect()
                })
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
