//! The storage contract every state backend meets.

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("RocksDB at {path}: {source}")]
    Rocks {
        path: String,
        source: rocksdb::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
    /// A write would take the memory backend over its bound.
    #[error(
        "keyed state would hold {} with this write, over the limit of {} (state_memory_max_mb); \
         raise `state_memory_max_mb` in the job file",
        size(*held_bytes),
        size(*max_bytes)
    )]
    MemoryFull { held_bytes: usize, max_bytes: usize },
    /// RocksDB refused to merge a list over the memory bound into one value.
    #[error(
        "a list in keyed state has grown to {} (RocksDB builds it whole in memory to read or \
         compact it), over the limit of {} (state_memory_max_mb); raise `state_memory_max_mb` \
         in the job file",
        size(*list_bytes),
        size(*max_bytes)
    )]
    ListTooLarge { list_bytes: usize, max_bytes: usize },
    /// A list or map read stopped as soon as it passed its byte budget.
    #[error(
        "reading {what} in one call would return more than the limit of {} (state_read_max_mb); \
         raise `state_read_max_mb` in the job file",
        size(*max_bytes)
    )]
    ReadOverLimit {
        what: &'static str,
        max_bytes: usize,
    },
}

impl StateError {
    /// A guest went over one of its limits (as opposed to a misuse or a
    /// storage failure).
    pub fn is_over_limit(&self) -> bool {
        matches!(
            self,
            StateError::MemoryFull { .. }
                | StateError::ListTooLarge { .. }
                | StateError::ReadOverLimit { .. }
        )
    }
}

/// `n MiB` (rounded up to a tenth when not whole), or bytes below 1 MiB.
fn size(bytes: usize) -> String {
    const MIB: usize = 1 << 20;
    if bytes.is_multiple_of(MIB) && bytes > 0 {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= MIB {
        let tenths = (bytes as u128 * 10).div_ceil(MIB as u128);
        format!("{}.{} MiB", tenths / 10, tenths % 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// An ordered map from byte keys to byte values, owned by one subtask.
///
/// Lists are stored as a sequence of `len:u32 LE, bytes` elements so that an
/// append never reads the old value (RocksDB does it with a merge operator).
pub trait StateBackend: Send {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    fn delete(&mut self, key: &[u8]) -> Result<(), StateError>;
    /// Appends one encoded list element (`len:u32 LE, bytes`) to the value at `key`.
    fn append(&mut self, key: &[u8], element: &[u8]) -> Result<(), StateError>;
    /// Visits every entry whose key starts with `prefix`, in key order;
    /// but see [`StateBackend::index_states`].
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
    /// Like [`StateBackend::scan_prefix`], stopping as soon as `visit`
    /// returns `false` (a read that went over its budget).
    fn scan_prefix_while(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError>;
    /// Lends the value at `key` to `visit` without copying it where the
    /// backend can; `Ok(false)` when there is none.
    fn get_with(&mut self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, StateError> {
        Ok(self.get(key)?.map(|v| visit(&v)).is_some())
    }
    /// Bounds the bytes the backend may hold in host memory; a write that
    /// would pass it fails with [`StateError::MemoryFull`]. No-op for
    /// backends that keep state on disk.
    fn set_memory_max_bytes(&mut self, _max_bytes: usize) {}
    /// Says which states (by index, `true`: a map state) are prefix-scanned
    /// while records flow. A backend may keep the other states' keys out of
    /// an ordered index. Every scan still sees every entry, and the
    /// entries of indexed states in key order (so a map's entries are
    /// adjacent), but it may visit the other states' entries (one per key
    /// and state: nothing groups them) after those, in any order.
    fn index_states(&mut self, _indexed: &[bool]) {}
    /// Deletes every entry whose key starts with `prefix`.
    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<(), StateError>;
    /// Writes a native, self-contained copy of the store into the new
    /// directory `dir` (hard links where the backend can), for an
    /// incremental checkpoint. `Ok(false)`: this backend has no native
    /// format, and snapshots go through [`StateBackend::scan_prefix`].
    fn native_checkpoint(&mut self, _dir: &std::path::Path) -> Result<bool, StateError> {
        Ok(false)
    }
    /// Entries and bytes held, for metrics: exact or the backend's cheap
    /// estimate; `None` when it has none.
    fn size_estimate(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Encodes one list element for [`StateBackend::append`].
pub(crate) fn encode_list_element(value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// What a list element costs the guest receiving it: a (pointer, length)
/// pair plus its bytes.
pub(crate) const LIST_ELEMENT_READ_OVERHEAD: usize = 8;

/// Splits a stored list back into its elements, failing with
/// [`StateError::ReadOverLimit`] as soon as they would cost the guest more
/// than `read_max_bytes` (counted as it receives them, see
/// [`LIST_ELEMENT_READ_OVERHEAD`]), before copying more.
pub(crate) fn decode_list(bytes: &[u8], read_max_bytes: usize) -> Result<Vec<Vec<u8>>, StateError> {
    let over = || StateError::ReadOverLimit {
        what: "a list",
        max_bytes: read_max_bytes,
    };
    // Each element costs at least its stored bytes (its 4-byte header
    // included): a list stored larger than the budget fails before any copy.
    if bytes.len() > read_max_bytes {
        return Err(over());
    }
    let mut out = Vec::new();
    let mut read = 0usize;
    let mut at = 0;
    while at < bytes.len() {
        let len_bytes = bytes
            .get(at..at + 4)
            .ok_or_else(|| StateError::Corrupt(format!("list element header cut at byte {at}")))?;
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        let start = at + 4;
        let element = bytes.get(start..start + len).ok_or_else(|| {
            StateError::Corrupt(format!("list element at byte {at} runs past the end"))
        })?;
        read = read.saturating_add(LIST_ELEMENT_READ_OVERHEAD + len);
        if read > read_max_bytes {
            return Err(over());
        }
        out.push(element.to_vec());
        at = start + len;
    }
    Ok(out)
}
