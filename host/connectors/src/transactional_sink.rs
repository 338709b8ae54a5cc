//! An exactly-once file sink: a directory of part files, as Flink's
//! FileSink writes them.
//!
//! Records go to a hidden in-progress file. At checkpoint `n`'s barrier it is
//! synced and renamed `.part-<n>.pending` (pre-commit); when checkpoint `n`
//! completes, every pending part up to `n` is renamed `part-<n>` (commit).
//! Readers see only `part-*` files, and only output whose checkpoint
//! completed. After a crash, a restore from checkpoint `n` commits the parts
//! that checkpoint had pending (their data is in it) and deletes everything
//! staged after it, which the restarted job writes again.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use weir_core::Batch;
use weir_core::job::SinkFormat;

use crate::file_sink::format_record;
use crate::{ConnectorError, Sink};

const IN_PROGRESS: &str = ".part.inprogress";

pub struct TransactionalFileSink {
    dir: PathBuf,
    format: SinkFormat,
    current: Option<BufWriter<File>>,
    /// Sealed parts whose checkpoint has not completed, oldest first.
    pending: Vec<u64>,
    /// The id of the last checkpoint seen, so the final part sorts last.
    last_id: u64,
    line: Vec<u8>,
}

pub fn part_name(id: u64) -> String {
    format!("part-{id:010}")
}

fn pending_name(id: u64) -> String {
    format!(".part-{id:010}.pending")
}

impl TransactionalFileSink {
    pub fn open(
        dir: &Path,
        format: SinkFormat,
        restore: Option<&Value>,
    ) -> Result<Self, ConnectorError> {
        let err = |what: &str, e: std::io::Error| {
            ConnectorError(format!("exactly-once sink {}: {what}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| err("cannot create the directory", e))?;
        let mut sink = TransactionalFileSink {
            dir: dir.to_path_buf(),
            format,
            current: None,
            pending: Vec::new(),
            last_id: 0,
            line: Vec::new(),
        };
        let restored: Vec<u64> = match restore {
            None => {
                let existing = sink.committed_ids()?;
                if let Some(id) = existing.last() {
                    return Err(ConnectorError(format!(
                        "exactly-once sink {}: the directory already holds committed output ({}); \
                         resume the job that wrote it, or choose an empty directory",
                        dir.display(),
                        part_name(*id)
                    )));
                }
                Vec::new()
            }
            Some(state) => {
                sink.last_id = state.get("last_id").and_then(Value::as_u64).unwrap_or(0);
                state
                    .get("pending")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .ok_or_else(|| {
                        ConnectorError(format!(
                            "exactly-once sink {}: invalid checkpoint state {state}",
                            dir.display()
                        ))
                    })?
            }
        };
        // The checkpoint completed, so what it had pending is committed now.
        for id in restored {
            let staged = dir.join(pending_name(id));
            if staged.exists() {
                std::fs::rename(&staged, dir.join(part_name(id)))
                    .map_err(|e| err("cannot commit a restored part", e))?;
            } else if !dir.join(part_name(id)).exists() {
                tracing::warn!(
                    "exactly-once sink {}: output staged for checkpoint {id} is not here (restored into another directory?)",
                    dir.display()
                );
            }
        }
        // Everything staged after the checkpoint will be written again.
        for entry in std::fs::read_dir(dir).map_err(|e| err("cannot list", e))? {
            let entry = entry.map_err(|e| err("cannot list", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let later_part = parse_part(&name).is_some_and(|id| id > sink.last_id);
            if name.starts_with(".part") || later_part {
                std::fs::remove_file(entry.path()).map_err(|e| err("cannot clean up", e))?;
            }
        }
        sync_dir(dir);
        Ok(sink)
    }

    fn committed_ids(&self) -> Result<Vec<u64>, ConnectorError> {
        let mut ids: Vec<u64> = std::fs::read_dir(&self.dir)
            .map_err(|e| ConnectorError(format!("cannot list {}: {e}", self.dir.display())))?
            .filter_map(|e| e.ok())
            .filter_map(|e| parse_part(&e.file_name().to_string_lossy()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> ConnectorError {
        ConnectorError(format!(
            "exactly-once sink {}: {what}: {e}",
            self.dir.display()
        ))
    }

    /// Syncs and hides the in-progress part as pending for checkpoint `id`.
    fn seal(&mut self, id: u64) -> Result<(), ConnectorError> {
        if let Some(mut out) = self.current.take() {
            out.flush().map_err(|e| self.io_error("cannot write", e))?;
            out.get_ref()
                .sync_all()
                .map_err(|e| self.io_error("cannot sync", e))?;
            std::fs::rename(self.dir.join(IN_PROGRESS), self.dir.join(pending_name(id)))
                .map_err(|e| self.io_error("cannot stage a part", e))?;
            self.pending.push(id);
        }
        Ok(())
    }
}

fn parse_part(name: &str) -> Option<u64> {
    name.strip_prefix("part-")?.parse().ok()
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Sink for TransactionalFileSink {
    fn write(&mut self, batch: &Batch) -> Result<(), ConnectorError> {
        if self.current.is_none() {
            let file = File::create(self.dir.join(IN_PROGRESS))
                .map_err(|e| self.io_error("cannot create a part", e))?;
            self.current = Some(BufWriter::with_capacity(1 << 16, file));
        }
        let out = self.current.as_mut().expect("opened above");
        let mut result = Ok(());
        for record in batch {
            self.line.clear();
            format_record(&record, self.format, &mut self.line);
            result = out.write_all(&self.line);
            if result.is_err() {
                break;
            }
        }
        result.map_err(|e| self.io_error("cannot write", e))
    }

    fn snapshot(&mut self, id: u64) -> Result<Value, ConnectorError> {
        self.seal(id)?;
        self.last_id = id;
        sync_dir(&self.dir);
        Ok(json!({ "pending": self.pending, "last_id": id }))
    }

    fn commit(&mut self, id: u64) -> Result<(), ConnectorError> {
        let (done, later): (Vec<u64>, Vec<u64>) = self.pending.iter().partition(|&&p| p <= id);
        for p in done {
            std::fs::rename(self.dir.join(pending_name(p)), self.dir.join(part_name(p)))
                .map_err(|e| self.io_error("cannot commit a part", e))?;
        }
        self.pending = later;
        sync_dir(&self.dir);
        Ok(())
    }

    /// End of input: everything is final, as if a last checkpoint completed.
    fn finish(&mut self) -> Result<(), ConnectorError> {
        let last = self.last_id + 1;
        self.seal(last)?;
        self.commit(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::BatchBuilder;

    fn batch(values: &[&str]) -> Batch {
        let mut b = BatchBuilder::default();
        for v in values {
            b.push(None, b"", v.as_bytes());
        }
        b.take()
    }

    fn visible(dir: &Path) -> String {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("part-"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| std::fs::read_to_string(dir.join(n)).unwrap())
            .collect()
    }

    #[test]
    fn output_appears_only_when_its_checkpoint_completes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let mut sink = TransactionalFileSink::open(&dir, SinkFormat::Value, None).unwrap();
        sink.write(&batch(&["a", "b"])).unwrap();
        let state1 = sink.snapshot(1).unwrap();
        sink.write(&batch(&["c"])).unwrap();
        assert_eq!(visible(&dir), "", "nothing visible before a commit");
        sink.commit(1).unwrap();
        assert_eq!(visible(&dir), "a\nb\n");
        let state2 = sink.snapshot(2).unwrap();
        sink.write(&batch(&["d"])).unwrap();
        drop(sink); // crash: 2 pre-committed but never completed

        // Restore from checkpoint 1: "c" and "d" are written again.
        let mut sink = TransactionalFileSink::open(&dir, SinkFormat::Value, Some(&state1)).unwrap();
        assert_eq!(visible(&dir), "a\nb\n");
        sink.write(&batch(&["c", "d"])).unwrap();
        sink.finish().unwrap();
        assert_eq!(visible(&dir), "a\nb\nc\nd\n");
        let _ = state2;
    }

    #[test]
    fn a_restore_commits_what_its_checkpoint_had_staged() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let mut sink = TransactionalFileSink::open(&dir, SinkFormat::Value, None).unwrap();
        sink.write(&batch(&["a"])).unwrap();
        let state = sink.snapshot(1).unwrap();
        drop(sink); // crashed after the checkpoint completed, before the commit
        TransactionalFileSink::open(&dir, SinkFormat::Value, Some(&state)).unwrap();
        assert_eq!(visible(&dir), "a\n");
        let e = TransactionalFileSink::open(&dir, SinkFormat::Value, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("already holds committed output"), "{e}");
    }
}
