//! Where keyed state lives for a run.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use weir_core::job::{JobSpec, StateBackendKind};
use weir_snapshot::rocks_files::download;
use weir_state::{MemoryBackend, RocksDbBackend, StateBackend};

/// Where keyed state lives for this run; a temporary directory is removed
/// when the run ends.
pub(crate) struct StateRoot {
    dir: Option<PathBuf>,
    _temp: Option<tempfile::TempDir>,
}

impl StateRoot {
    pub(crate) fn new(job: &JobSpec) -> anyhow::Result<StateRoot> {
        let needs_disk = job.state_backend == StateBackendKind::Rocksdb
            && job.operators.iter().any(|o| o.is_keyed());
        if !needs_disk {
            return Ok(StateRoot {
                dir: None,
                _temp: None,
            });
        }
        match &job.state_dir {
            Some(dir) => Ok(StateRoot {
                dir: Some(dir.join(&job.name)),
                _temp: None,
            }),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix(&format!("weir-{}-", job.name))
                    .tempdir()
                    .context("cannot create a temporary state directory")?;
                Ok(StateRoot {
                    dir: Some(temp.path().to_path_buf()),
                    _temp: Some(temp),
                })
            }
        }
    }

    /// A fresh backend for one operator subtask (with a restored native
    /// checkpoint's files in place), and the RocksDB directory if any.
    pub(crate) fn backend(
        &self,
        job: &JobSpec,
        operator: &str,
        subtask: u32,
        native: Option<(&Path, &[weir_snapshot::metadata::RocksFile])>,
    ) -> anyhow::Result<(Box<dyn StateBackend>, Option<PathBuf>)> {
        match (job.state_backend, &self.dir) {
            (StateBackendKind::Rocksdb, Some(root)) => {
                let dir = root.join(operator).join(subtask.to_string());
                // The live database is a cache: state comes from snapshots.
                for stale in [dir.clone(), dir.with_extension("checkpoints")] {
                    if stale.exists() {
                        std::fs::remove_dir_all(&stale).with_context(|| {
                            format!("cannot clear old state in {}", stale.display())
                        })?;
                    }
                }
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                if let Some((snapshot_dir, files)) = native {
                    download(files, snapshot_dir, &dir).with_context(|| {
                        format!("operator `{operator}`: cannot restore its RocksDB files")
                    })?;
                }
                Ok((Box::new(RocksDbBackend::open(&dir)?), Some(dir)))
            }
            _ => Ok((Box::new(MemoryBackend::new()), None)),
        }
    }
}
