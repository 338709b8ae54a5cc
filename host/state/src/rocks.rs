//! State in an embedded RocksDB: larger than memory, on local disk.
//!
//! One database per operator subtask. The write-ahead log is off: durability
//! comes from checkpoints, not from the live database, as in Flink.
//!
//! State here is on disk, so the memory bound of the memory backend does
//! not apply to its total. It does apply to one list: RocksDB merges a
//! list's appended elements into one value in memory (on a read, and in
//! compaction), so the merge refuses to build a list over the bound (see
//! [`StateBackend::set_memory_max_bytes`]), and the store reports the
//! failure that follows (of that read; or of the compaction, after which
//! RocksDB refuses writes) as that limit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rocksdb::{DB, Direction, IteratorMode, MergeOperands, Options, WriteBatch, WriteOptions};

use crate::backend::{StateBackend, StateError};

pub struct RocksDbBackend {
    db: DB,
    path: PathBuf,
    write: WriteOptions,
    merge: Arc<MergeBound>,
}

/// What the merge operator may build, shared with it.
#[derive(Debug)]
struct MergeBound {
    max_bytes: AtomicUsize,
    /// A merge was refused: RocksDB's errors from then on are this limit.
    refused_bytes: AtomicUsize,
    refused: AtomicBool,
}

/// List append: concatenating encoded elements is associative. Refuses
/// (RocksDB then fails the read or the compaction) a list over the bound,
/// before allocating it.
fn concat_merge(
    bound: &MergeBound,
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let size = operands
        .iter()
        .fold(existing.map_or(0, <[u8]>::len), |n, op| {
            n.saturating_add(op.len())
        });
    if size > bound.max_bytes.load(Ordering::Relaxed) {
        bound.refused_bytes.store(size, Ordering::Relaxed);
        bound.refused.store(true, Ordering::Relaxed);
        return None;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(existing.unwrap_or_default());
    for op in operands {
        out.extend_from_slice(op);
    }
    Some(out)
}

impl RocksDbBackend {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let merge = Arc::new(MergeBound {
            max_bytes: AtomicUsize::new(usize::MAX),
            refused_bytes: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
        });
        let bound = merge.clone();
        opts.set_merge_operator_associative(
            "weir-list-append",
            move |_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands| {
                concat_merge(&bound, existing, operands)
            },
        );
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Small memtables. Keyed operator state is written over and over
        // (a window's accumulator per record, a window's key created and
        // cleared), and each write is a new skiplist entry until a flush:
        // in a 64 MB memtable (the default) inserting and looking up in
        // that skiplist took about 45% of a windowed count's time. 8 MB
        // memtables flush sooner, dropping the old versions, and made that
        // count 1.4x faster (`benches/pipeline.rs`); four of them let
        // writes go on while one is flushed.
        opts.set_write_buffer_size(8 << 20);
        opts.set_max_write_buffer_number(4);
        let db = DB::open(&opts, dir).map_err(|source| StateError::Rocks {
            path: dir.display().to_string(),
            source,
        })?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(RocksDbBackend {
            db,
            path: dir.to_path_buf(),
            write,
            merge,
        })
    }

    fn err(&self, source: rocksdb::Error) -> StateError {
        if self.merge.refused.load(Ordering::Relaxed) {
            // A refused merge fails the read, or the compaction and then
            // every write: the cause is the list over the bound.
            return StateError::ListTooLarge {
                list_bytes: self.merge.refused_bytes.load(Ordering::Relaxed),
                max_bytes: self.merge.max_bytes.load(Ordering::Relaxed),
            };
        }
        StateError::Rocks {
            path: self.path.display().to_string(),
            source,
        }
    }
}

impl StateBackend for RocksDbBackend {
    /// RocksDB's own estimates (in memory, no IO): keys, and live data
    /// plus what the memtables hold.
    fn size_estimate(&self) -> Option<(u64, u64)> {
        let property = |name: &str| self.db.property_int_value(name).ok().flatten();
        let keys = property("rocksdb.estimate-num-keys")?;
        let live = property("rocksdb.estimate-live-data-size")?;
        let memtables = property("rocksdb.cur-size-all-mem-tables").unwrap_or(0);
        Some((keys, live.saturating_add(memtables)))
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db
            .get_pinned(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.err(e))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.db
            .put_opt(key, value, &self.write)
            .map_err(|e| self.err(e))
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.db
            .delete_opt(key, &self.write)
            .map_err(|e| self.err(e))
    }

    fn append(&mut self, key: &[u8], element: &[u8]) -> Result<(), StateError> {
        self.db
            .merge_opt(key, element, &self.write)
            .map_err(|e| self.err(e))
    }

    fn get_with(&mut self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, StateError> {
        let value = self.db.get_pinned(key).map_err(|e| self.err(e))?;
        Ok(value.map(|v| visit(&v)).is_some())
    }

    fn scan_prefix_while(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) || !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn set_memory_max_bytes(&mut self, max_bytes: usize) {
        self.merge.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    fn native_checkpoint(&mut self, dir: &Path) -> Result<bool, StateError> {
        // Flushes the memtable (the WAL is off) and hard-links the SST files.
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|e| self.err(e))?;
        checkpoint.create_checkpoint(dir).map_err(|e| self.err(e))?;
        Ok(true)
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            batch.delete(k);
        }
        self.db
            .write_opt(batch, &self.write)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_over_the_bound_is_never_merged_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = RocksDbBackend::open(dir.path()).unwrap();
        db.set_memory_max_bytes(1 << 20);
        let element = vec![0u8; 100 << 10];
        for _ in 0..9 {
            db.append(b"list", &element).unwrap();
        }
        assert_eq!(db.get(b"list").unwrap().unwrap().len(), 900 << 10);
        for _ in 0..2 {
            db.append(b"list", &element).unwrap();
        }
        let err = db.get(b"list").unwrap_err();
        assert!(err.is_over_limit(), "{err}");
        assert_eq!(
            err.to_string(),
            "a list in keyed state has grown to 1.1 MiB (RocksDB builds it whole in memory to \
             read or compact it), over the limit of 1 MiB (state_memory_max_mb); raise \
             `state_memory_max_mb` in the job file"
        );
        // Compaction merges too: it fails with the same limit, not an abort.
        db.db.compact_range::<&[u8], &[u8]>(None, None);
        assert!(matches!(
            db.get(b"list").unwrap_err(),
            StateError::ListTooLarge { .. }
        ));
    }
}
