//! State in an embedded RocksDB: larger than memory, on local disk.
//!
//! One database per operator subtask. The write-ahead log is off: durability
//! comes from checkpoints, not from the live database, as in Flink.
//!
//! Value writes wait in a small map in front of RocksDB ([`Pending`]) and
//! go in as one write batch when it fills, or before anything reads past
//! it (scans, list appends, checkpoints). Keyed operator state is written
//! over and over (a window created, updated, cleared), and each write to
//! RocksDB is a skiplist insert into its memtable: writes to one key that
//! meet in the map become one insert, or one deletion.
//!
//! State here is on disk, so the memory bound of the memory backend does
//! not apply to its total. It does apply to one list: RocksDB merges a
//! list's appended elements into one value in memory (on a read, and in
//! compaction), so the merge refuses to build a list over the bound (see
//! [`StateBackend::set_memory_max_bytes`]), and the store reports the
//! failure that follows (of that read; or of the compaction, after which
//! RocksDB refuses writes) as that limit.

use std::collections::HashMap;
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
    pending: Pending,
}

/// What the pending writes may hold before they go to RocksDB: a few MB of
/// host memory per subtask, less than one memtable.
const PENDING_MAX_BYTES: usize = 4 << 20;
/// Charged per pending write beside its bytes: two `Vec`s and a hash-map
/// bucket.
const PENDING_ENTRY_BYTES: usize = 64;

/// Value writes not yet in RocksDB: the newest per key, `None` deleted.
#[derive(Default)]
struct Pending {
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
}

impl Pending {
    fn charge(key: &[u8], value: &Option<Vec<u8>>) -> usize {
        PENDING_ENTRY_BYTES + key.len() + value.as_ref().map_or(0, Vec::len)
    }

    /// Holds `value` (`None`: a deletion) as `key`'s newest write.
    fn write(&mut self, key: &[u8], value: Option<&[u8]>) {
        match self.writes.get_mut(key) {
            Some(held) => {
                self.bytes -= Self::charge(key, held);
                match (held.as_mut(), value) {
                    // The old buffer takes the new value.
                    (Some(old), Some(new)) => {
                        old.clear();
                        old.extend_from_slice(new);
                    }
                    (_, new) => *held = new.map(<[u8]>::to_vec),
                }
                self.bytes += Self::charge(key, held);
            }
            None => {
                let value = value.map(<[u8]>::to_vec);
                self.bytes += Self::charge(key, &value);
                self.writes.insert(key.to_vec(), value);
            }
        }
    }

    /// The held write of `key`: `Some(None)` if it was deleted.
    fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.writes.get(key).map(Option::as_deref)
    }

    fn is_full(&self) -> bool {
        self.bytes > PENDING_MAX_BYTES
    }
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
            pending: Pending::default(),
        })
    }

    /// Writes every pending write to RocksDB, in one batch.
    fn flush_pending(&mut self) -> Result<(), StateError> {
        if self.pending.writes.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (key, value) in self.pending.writes.drain() {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        self.pending.bytes = 0;
        self.db
            .write_opt(batch, &self.write)
            .map_err(|e| self.err(e))
    }

    /// Writes `key`'s pending write to RocksDB, if it has one (before an
    /// operation RocksDB does on the stored value, a list append).
    fn flush_key(&mut self, key: &[u8]) -> Result<(), StateError> {
        let Some(value) = self.pending.writes.remove(key) else {
            return Ok(());
        };
        self.pending.bytes -= Pending::charge(key, &value);
        match value {
            Some(value) => self.db.put_opt(key, value, &self.write),
            None => self.db.delete_opt(key, &self.write),
        }
        .map_err(|e| self.err(e))
    }

    fn hold(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StateError> {
        self.pending.write(key, value);
        if self.pending.is_full() {
            self.flush_pending()?;
        }
        Ok(())
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
        let pending = self.pending.bytes as u64;
        Some((keys, live.saturating_add(memtables).saturating_add(pending)))
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(held) = self.pending.get(key) {
            return Ok(held.map(<[u8]>::to_vec));
        }
        self.db
            .get_pinned(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.err(e))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.hold(key, Some(value))
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.hold(key, None)
    }

    fn append(&mut self, key: &[u8], element: &[u8]) -> Result<(), StateError> {
        self.flush_key(key)?;
        self.db
            .merge_opt(key, element, &self.write)
            .map_err(|e| self.err(e))
    }

    fn get_with(&mut self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, StateError> {
        if let Some(held) = self.pending.get(key) {
            return Ok(held.map(visit).is_some());
        }
        let value = self.db.get_pinned(key).map_err(|e| self.err(e))?;
        Ok(value.map(|v| visit(&v)).is_some())
    }

    fn scan_prefix_while(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        self.flush_pending()?;
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
        self.flush_pending()?;
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|e| self.err(e))?;
        checkpoint.create_checkpoint(dir).map_err(|e| self.err(e))?;
        Ok(true)
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<(), StateError> {
        self.flush_pending()?;
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

    fn scan(db: &mut RocksDbBackend, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        db.scan_prefix(prefix, &mut |k, v| out.push((k.to_vec(), v.to_vec())))
            .unwrap();
        out
    }

    #[test]
    fn pending_writes_read_back_before_and_after_they_reach_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = RocksDbBackend::open(dir.path()).unwrap();
        db.put(b"k", b"1").unwrap();
        db.put(b"k", b"22").unwrap();
        assert_eq!(db.get(b"k").unwrap(), Some(b"22".to_vec()));
        db.delete(b"k").unwrap();
        assert_eq!(db.get(b"k").unwrap(), None);
        assert!(!db.get_with(b"k", &mut |_| ()).unwrap());
        // A deletion held back still hides what RocksDB has.
        db.put(b"old", b"v").unwrap();
        db.flush_pending().unwrap();
        db.delete(b"old").unwrap();
        assert_eq!(db.get(b"old").unwrap(), None);
        assert_eq!(scan(&mut db, b"old"), vec![]);
        // A list append goes after the key's held write.
        db.put(b"list", b"ab").unwrap();
        db.append(b"list", b"cd").unwrap();
        assert_eq!(db.get(b"list").unwrap(), Some(b"abcd".to_vec()));
        // More than the map holds: every write is read back, from the map
        // or from RocksDB, and scans see them all in order.
        let key = |i: u32| format!("p{i:06}").into_bytes();
        let value = vec![7u8; 200];
        let n = 2 * PENDING_MAX_BYTES as u32 / 200;
        for i in 0..n {
            db.put(&key(i), &value).unwrap();
            if i % 3 == 0 {
                db.delete(&key(i)).unwrap();
            }
        }
        assert!(db.pending.bytes <= PENDING_MAX_BYTES + 300);
        for i in (0..n).step_by(97) {
            let expected = (i % 3 != 0).then(|| value.clone());
            assert_eq!(db.get(&key(i)).unwrap(), expected, "key {i}");
        }
        let scanned = scan(&mut db, b"p");
        assert_eq!(scanned.len(), (0..n).filter(|i| i % 3 != 0).count());
        assert!(scanned.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(db.pending.writes.is_empty());
    }

    #[test]
    fn a_checkpoint_holds_the_pending_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = RocksDbBackend::open(&dir.path().join("db")).unwrap();
        db.put(b"a", b"1").unwrap();
        db.put(b"b", b"2").unwrap();
        db.delete(b"b").unwrap();
        let copy = dir.path().join("checkpoint");
        assert!(db.native_checkpoint(&copy).unwrap());
        let mut restored = RocksDbBackend::open(&copy).unwrap();
        assert_eq!(restored.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(restored.get(b"b").unwrap(), None);
    }

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
