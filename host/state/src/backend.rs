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
    /// Visits every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(
        &mut self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError>;
    /// Deletes every entry whose key starts with `prefix`.
    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<(), StateError>;
    /// Writes a native, self-contained copy of the store into the new
    /// directory `dir` (hard links where the backend can), for an
    /// incremental checkpoint. `Ok(false)`: this backend has no native
    /// format, and snapshots go through [`StateBackend::scan_prefix`].
    fn native_checkpoint(&mut self, _dir: &std::path::Path) -> Result<bool, StateError> {
        Ok(false)
    }
}

/// Encodes one list element for [`StateBackend::append`].
pub(crate) fn encode_list_element(value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// Splits a stored list back into its elements.
pub(crate) fn decode_list(bytes: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
    let mut out = Vec::new();
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
        out.push(element.to_vec());
        at = start + len;
    }
    Ok(out)
}
