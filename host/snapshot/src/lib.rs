//! weir-snapshot: what checkpoints and savepoints look like on disk.
//!
//! A snapshot is a directory with a `_metadata` file (JSON, checksummed,
//! versioned, written last and atomically) that lists every file the
//! snapshot needs with its size and xxh3-128 checksum. Keyed state is
//! stored either in weir's canonical format ([`keyed_file`]: storage
//! entries plus the state names they belong to, independent of backend and
//! parallelism; always used by savepoints and by the memory backend) or as
//! native RocksDB files, whose SSTs are shared between checkpoints so that
//! each checkpoint uploads only new ones ([`rocks_files`]).
//!
//! Loading checks everything before anything is used: a truncated, flipped,
//! missing or unreferenced file is an error naming the file, and
//! [`storage::CheckpointStorage::latest_valid`] falls back to the previous
//! complete checkpoint.

pub mod checksum;
pub mod inspect;
pub mod keyed_file;
pub mod metadata;
pub mod remote;
pub mod rocks_files;
pub mod storage;
pub mod store;

pub use checksum::{FileRef, is_plain_name, shared_dir_of};
pub use metadata::{
    FORMAT_VERSION, Metadata, OperatorSnapshot, OperatorVersion, SinkSnapshot, SourceSnapshot,
    StateHandle, StateInfo, StateStats, SubtaskSnapshot, VersionRecord,
};
pub use storage::{CheckpointStorage, Snapshot};
pub use store::{Store, StoreOptions, is_remote_location};

/// Why a snapshot cannot be written or used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: damaged snapshot: {message}")]
    Damaged { path: String, message: String },
    #[error("{0}")]
    Incompatible(String),
    #[error(transparent)]
    State(#[from] weir_state::StateError),
}

impl SnapshotError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SnapshotError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn damaged(path: &std::path::Path, message: impl Into<String>) -> Self {
        SnapshotError::Damaged {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}
