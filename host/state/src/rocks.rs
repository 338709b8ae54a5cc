//! State in an embedded RocksDB: larger than memory, on local disk.
//!
//! One database per operator subtask. The write-ahead log is off: durability
//! comes from checkpoints, not from the live database, as in Flink.

use std::path::{Path, PathBuf};

use rocksdb::{DB, Direction, IteratorMode, MergeOperands, Options, WriteBatch, WriteOptions};

use crate::backend::{StateBackend, StateError};

pub struct RocksDbBackend {
    db: DB,
    path: PathBuf,
    write: WriteOptions,
}

/// List append: concatenating encoded elements is associative.
fn concat_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let size = existing.map_or(0, <[u8]>::len) + operands.iter().map(<[u8]>::len).sum::<usize>();
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
        opts.set_merge_operator_associative("weir-list-append", concat_merge);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
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
        })
    }

    fn err(&self, source: rocksdb::Error) -> StateError {
        StateError::Rocks {
            path: self.path.display().to_string(),
            source,
        }
    }
}

impl StateBackend for RocksDbBackend {
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

    fn scan_prefix(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError> {
        self.scan_prefix_while(prefix, &mut |k, v| {
            visit(k, v);
            true
        })
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
