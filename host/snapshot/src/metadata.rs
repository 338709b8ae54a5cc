//! The `_metadata` file: what a snapshot holds and where.
//!
//! Stored as `{"checksum": <xxh3-128 of the metadata's JSON>, "metadata": ...}`
//! and written to a temporary name, synced, then renamed: a snapshot
//! without a valid `_metadata` does not exist.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::SnapshotError;
use crate::checksum::{FileRef, hex128};

/// Bumped on any change a reader of an older format could misread.
pub const FORMAT_VERSION: u32 = 1;
pub const METADATA_FILE: &str = "_metadata";
/// Largest `_metadata` file read (it lists files, not state).
pub const METADATA_BYTES_MAX: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format_version: u32,
    pub job: String,
    /// Checkpoint ids increase over a job's life, across restores.
    pub id: u64,
    /// A savepoint holds only canonical state: any backend, any parallelism.
    pub savepoint: bool,
    pub created_unix_ms: u64,
    pub max_parallelism: u32,
    /// `memory` or `rocksdb`: what took the snapshot.
    pub state_backend: String,
    pub sources: Vec<SourceSnapshot>,
    pub operators: Vec<OperatorSnapshot>,
    pub sinks: Vec<SinkSnapshot>,
    /// The code each operator runs after this snapshot's barrier, with the
    /// versions it ran before: a restore of this snapshot runs these.
    /// Empty in snapshots taken before versions were recorded.
    #[serde(default)]
    pub versions: Vec<OperatorVersion>,
}

/// Which artifact an operator runs, and which it ran before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorVersion {
    pub operator: String,
    /// SHA-256 of the artifact, hex.
    pub digest: String,
    /// Oldest first; the last entry is `digest`.
    pub history: Vec<VersionRecord>,
}

/// One version an operator ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// SHA-256 of the artifact, hex.
    pub digest: String,
    /// The checkpoint at whose barrier it took over; `None` for the
    /// version the job started with.
    pub checkpoint: Option<u64>,
    pub since_unix_ms: u64,
}

/// Where one source split was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSnapshot {
    pub source: String,
    pub split: u32,
    pub splits: u32,
    /// Connector-specific position (a file offset, a generator sequence).
    pub position: serde_json::Value,
    /// The largest event time seen (drives the split's watermark).
    pub max_timestamp: Option<i64>,
    pub sent_watermark: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateInfo {
    pub name: String,
    /// `value`, `list` or `map`.
    pub kind: String,
    pub ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    pub name: String,
    pub parallelism: u32,
    /// Declared states; storage keys refer to them by index.
    pub states: Vec<StateInfo>,
    pub subtasks: Vec<SubtaskSnapshot>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateStats {
    /// Distinct keys holding this state.
    pub keys: u64,
    /// Stored entries (one per key; one per map entry for map state).
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskSnapshot {
    pub subtask: u32,
    /// Key groups `start..end` this subtask owned.
    pub key_groups: (u32, u32),
    pub watermark: i64,
    pub timers: Option<FileRef>,
    pub state: StateHandle,
    /// Per declared state; empty when the handle is native.
    pub stats: Vec<StateStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StateHandle {
    None,
    Canonical { file: FileRef },
    Rocksdb { files: Vec<RocksFile> },
}

/// One file of a native RocksDB checkpoint and its name in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RocksFile {
    pub name: String,
    pub file: FileRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkSnapshot {
    pub sink: String,
    pub state: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    checksum: String,
    metadata: serde_json::Value,
}

impl Metadata {
    /// Every file the snapshot references.
    pub fn files(&self) -> Vec<&FileRef> {
        let mut files = Vec::new();
        for op in &self.operators {
            for sub in &op.subtasks {
                files.extend(sub.timers.iter());
                match &sub.state {
                    StateHandle::None => {}
                    StateHandle::Canonical { file } => files.push(file),
                    StateHandle::Rocksdb { files: f } => files.extend(f.iter().map(|r| &r.file)),
                }
            }
        }
        files
    }

    /// Writes `dir/_metadata` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), SnapshotError> {
        let metadata = serde_json::to_value(self).expect("metadata serializes");
        let body = serde_json::to_vec(&metadata).expect("json value serializes");
        let envelope = Envelope {
            checksum: hex128(xxhash_rust::xxh3::xxh3_128(&body)),
            metadata,
        };
        let text = serde_json::to_vec_pretty(&envelope).expect("envelope serializes");
        let tmp = dir.join(format!("{METADATA_FILE}.tmp"));
        let target = dir.join(METADATA_FILE);
        let mut file = std::fs::File::create(&tmp).map_err(|e| SnapshotError::io(&tmp, e))?;
        file.write_all(&text)
            .map_err(|e| SnapshotError::io(&tmp, e))?;
        file.sync_all().map_err(|e| SnapshotError::io(&tmp, e))?;
        std::fs::rename(&tmp, &target).map_err(|e| SnapshotError::io(&target, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads and checks `dir/_metadata` (not yet the files it names).
    pub fn read(dir: &Path) -> Result<Metadata, SnapshotError> {
        let path = dir.join(METADATA_FILE);
        let text = read_bounded(&path, METADATA_BYTES_MAX).map_err(|e| {
            SnapshotError::damaged(&path, format!("cannot read the snapshot's metadata: {e}"))
        })?;
        let envelope: Envelope = serde_json::from_slice(&text)
            .map_err(|e| SnapshotError::damaged(&path, format!("not valid metadata: {e}")))?;
        let body = serde_json::to_vec(&envelope.metadata).expect("json value serializes");
        let actual = hex128(xxhash_rust::xxh3::xxh3_128(&body));
        if actual != envelope.checksum {
            return Err(SnapshotError::damaged(
                &path,
                "checksum mismatch: the metadata was changed or damaged",
            ));
        }
        let version = envelope
            .metadata
            .get("format_version")
            .and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(SnapshotError::damaged(
                &path,
                format!("format version {version:?}; this weir reads version {FORMAT_VERSION}"),
            ));
        }
        serde_json::from_value(envelope.metadata)
            .map_err(|e| SnapshotError::damaged(&path, format!("unexpected metadata: {e}")))
    }
}

/// Reads a regular file (not followed if a symlink) of at most `max` bytes.
/// A savepoint directory may come from a user: its `_metadata` must not be
/// a FIFO that blocks, a device that never ends, or a huge file.
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::Error::other(format!(
            "{} bytes; at most {max} are read",
            meta.len()
        )));
    }
    // Grown as read: the length the file system reports may change (or
    // lie, for some special files) before the read.
    let mut bytes = Vec::with_capacity(meta.len().min(1 << 16) as usize);
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("more than {max} bytes")));
    }
    Ok(bytes)
}

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
pub(crate) fn sample(id: u64) -> Metadata {
    Metadata {
        format_version: FORMAT_VERSION,
        job: "j".into(),
        id,
        savepoint: false,
        created_unix_ms: 1,
        max_parallelism: 128,
        state_backend: "memory".into(),
        sources: vec![SourceSnapshot {
            source: "src".into(),
            split: 0,
            splits: 1,
            position: serde_json::json!({"offset": 10}),
            max_timestamp: Some(5),
            sent_watermark: 4,
        }],
        operators: vec![],
        sinks: vec![],
        versions: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_any_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample(7);
        m.write(dir.path()).unwrap();
        assert_eq!(Metadata::read(dir.path()).unwrap(), m);
        let path = dir.path().join(METADATA_FILE);
        let good = std::fs::read(&path).unwrap();
        for at in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            // Whitespace flips may still parse to the same metadata; any
            // change to the content must be refused.
            if let Ok(read) = Metadata::read(dir.path()) {
                assert_eq!(read, m, "byte {at} changed the metadata undetected");
            }
        }
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert!(Metadata::read(dir.path()).is_err());
    }
}
