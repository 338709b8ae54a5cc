//! Canonical keyed state and timer files.
//!
//! ```text
//! state  := "WEIRKS01" entry*      entry := len:u32 key len:u32 value
//! timers := "WEIRTM01" timer*      timer := domain:u8 timestamp:i64 len:u32 key
//! ```
//! (little-endian). State entries are the store's own storage entries
//! (`key_group | state | key_len | key [| map_key]` → value), so a restore
//! filters them by key group and renumbers the state field by state name.

use std::io::{BufReader, Read, Write};
use std::path::Path;

use weir_core::key_group_of;
use weir_core::timers::TimeDomain;
use weir_state::{KeyedStateStore, STORAGE_KEY_HEADER, StateBackend};

use crate::SnapshotError;
use crate::checksum::{FileRef, HashingWriter};
use crate::metadata::StateStats;

const STATE_MAGIC: &[u8; 8] = b"WEIRKS01";
const TIMERS_MAGIC: &[u8; 8] = b"WEIRTM01";

/// Encodes canonical state entry by entry, as the backend scans it (a
/// map's entries adjacent and in order, see `StateBackend::index_states`), into a
/// file or into memory, counting keys, entries and bytes per state.
pub struct StateFileWriter<W: Write = HashingWriter> {
    path: std::path::PathBuf,
    out: W,
    stats: Vec<StateStats>,
    last_key: Vec<u8>,
}

impl StateFileWriter<HashingWriter> {
    /// A new file at `path` for an operator that declared `states` states.
    pub fn create(path: &Path, states: usize) -> Result<Self, SnapshotError> {
        Self::over(HashingWriter::create(path)?, path, states)
    }

    /// Syncs the file; `relative` becomes its path in the metadata.
    pub fn finish(self, relative: String) -> Result<(FileRef, Vec<StateStats>), SnapshotError> {
        Ok((self.out.finish(relative)?, self.stats))
    }
}

impl StateFileWriter<Vec<u8>> {
    /// Encodes into memory: a snapshot's synchronous part can capture state
    /// this way (one buffer, no per-entry allocation) and write it later.
    pub fn in_memory(states: usize) -> Self {
        Self::over(Vec::new(), Path::new("<memory>"), states).expect("writing to memory")
    }

    /// The encoded file, ready for [`write_encoded`].
    pub fn into_encoded(self) -> (Vec<u8>, Vec<StateStats>) {
        (self.out, self.stats)
    }
}

impl<W: Write> StateFileWriter<W> {
    fn over(mut out: W, path: &Path, states: usize) -> Result<Self, SnapshotError> {
        out.write_all(STATE_MAGIC)
            .map_err(|e| SnapshotError::io(path, e))?;
        Ok(StateFileWriter {
            path: path.to_path_buf(),
            out,
            stats: vec![StateStats::default(); states],
            last_key: Vec::new(),
        })
    }

    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        if let Some((state, user_key_end)) = parse_storage_key(key)
            && let Some(s) = self.stats.get_mut(state as usize)
        {
            s.entries += 1;
            s.bytes += (key.len() + value.len()) as u64;
            // A map's entries arrive adjacent (`StateBackend::index_states`).
            if self.last_key.get(..user_key_end) != Some(&key[..user_key_end]) {
                s.keys += 1;
                self.last_key.clear();
                self.last_key.extend_from_slice(&key[..user_key_end]);
            }
        }
        let out = &mut self.out;
        out.write_all(&(key.len() as u32).to_le_bytes())
            .and_then(|_| out.write_all(key))
            .and_then(|_| out.write_all(&(value.len() as u32).to_le_bytes()))
            .and_then(|_| out.write_all(value))
            .map_err(|e| SnapshotError::io(&self.path, e))
    }
}

/// Writes state encoded by [`StateFileWriter::in_memory`] to `path`.
pub fn write_encoded(
    bytes: &[u8],
    path: &Path,
    relative: String,
) -> Result<FileRef, SnapshotError> {
    let mut out = HashingWriter::create(path)?;
    out.write_all(bytes)
        .map_err(|e| SnapshotError::io(path, e))?;
    out.finish(relative)
}

/// Writes every entry of `backend` to `path`; returns the file and
/// per-state statistics (`states` states were declared).
pub fn write_state(
    backend: &mut dyn StateBackend,
    states: usize,
    path: &Path,
    relative: String,
) -> Result<(FileRef, Vec<StateStats>), SnapshotError> {
    let mut writer = StateFileWriter::create(path, states)?;
    let mut failed = None;
    backend.scan_prefix(&[], &mut |key, value| {
        if failed.is_none()
            && let Err(e) = writer.push(key, value)
        {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    writer.finish(relative)
}

/// `(state index, end of the user key)` of a storage key.
fn parse_storage_key(key: &[u8]) -> Option<(u16, usize)> {
    let header = key.get(..STORAGE_KEY_HEADER)?;
    let state = u16::from_be_bytes([header[2], header[3]]);
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let end = STORAGE_KEY_HEADER.checked_add(len)?;
    (end <= key.len()).then_some((state, end))
}

/// Reads entries from a canonical state file.
pub struct StateReader {
    path: std::path::PathBuf,
    input: BufReader<std::fs::File>,
}

impl StateReader {
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let file = std::fs::File::open(path).map_err(|e| SnapshotError::io(path, e))?;
        let mut input = BufReader::with_capacity(1 << 16, file);
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|_| SnapshotError::damaged(path, "too short for a state file"))?;
        if &magic != STATE_MAGIC {
            return Err(SnapshotError::damaged(path, "not a weir state file"));
        }
        Ok(StateReader {
            path: path.to_path_buf(),
            input,
        })
    }

    /// The next `(storage key, value)`, or `None` at the end.
    pub fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>, SnapshotError> {
        let Some(key) = read_chunk(&mut self.input, &self.path, true)? else {
            return Ok(None);
        };
        let value = read_chunk(&mut self.input, &self.path, false)?
            .ok_or_else(|| SnapshotError::damaged(&self.path, "entry cut short"))?;
        Ok(Some((key, value)))
    }
}

const CHUNK_MAX: usize = 1 << 30;

fn read_chunk(
    input: &mut impl Read,
    path: &Path,
    eof_ok: bool,
) -> Result<Option<Vec<u8>>, SnapshotError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && eof_ok => {
            // A clean end only on a chunk boundary.
            return Ok(None);
        }
        Err(_) => return Err(SnapshotError::damaged(path, "entry cut short")),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > CHUNK_MAX {
        return Err(SnapshotError::damaged(
            path,
            format!("entry of {len} bytes"),
        ));
    }
    // Grown as bytes arrive, not allocated from the (untrusted) length: a
    // damaged length costs what the file holds, not what it claims.
    let mut buf = Vec::with_capacity(len.min(1 << 16));
    input
        .take(len as u64)
        .read_to_end(&mut buf)
        .map_err(|e| SnapshotError::damaged(path, format!("cannot read an entry: {e}")))?;
    if buf.len() != len {
        return Err(SnapshotError::damaged(path, "entry cut short"));
    }
    Ok(Some(buf))
}

/// How snapshot state indices map onto the restoring operator's states.
pub struct StateMapping {
    /// `new_index[old]`; `None` drops entries of that state.
    pub new_index: Vec<Option<u16>>,
}

/// Loads the entries of `file` that belong to `store`'s key groups,
/// renumbering states; returns how many entries were loaded.
pub fn restore_state(
    path: &Path,
    mapping: &StateMapping,
    store: &mut KeyedStateStore,
) -> Result<u64, SnapshotError> {
    let range = store.key_groups();
    let mut reader = StateReader::open(path)?;
    let mut loaded = 0;
    while let Some((mut key, value)) = reader.next_entry()? {
        let Some((state, _)) = parse_storage_key(&key) else {
            return Err(SnapshotError::damaged(path, "malformed storage key"));
        };
        let key_group = u32::from(u16::from_be_bytes([key[0], key[1]]));
        if !range.contains(key_group) {
            continue;
        }
        let Some(&new) = mapping.new_index.get(state as usize) else {
            return Err(SnapshotError::damaged(
                path,
                format!("entry for undeclared state #{state}"),
            ));
        };
        let Some(new) = new else { continue };
        key[2..4].copy_from_slice(&new.to_be_bytes());
        store.backend_mut().put(&key, &value)?;
        loaded += 1;
    }
    Ok(loaded)
}

/// Writes both timer queues' entries.
pub fn write_timers<'a>(
    timers: impl Iterator<Item = (TimeDomain, i64, &'a [u8])>,
    path: &Path,
    relative: String,
) -> Result<FileRef, SnapshotError> {
    let mut out = HashingWriter::create(path)?;
    let io = |e| SnapshotError::io(path, e);
    out.write_all(TIMERS_MAGIC).map_err(io)?;
    for (domain, timestamp, key) in timers {
        out.write_all(&[domain as u8]).map_err(io)?;
        out.write_all(&timestamp.to_le_bytes()).map_err(io)?;
        out.write_all(&(key.len() as u32).to_le_bytes())
            .map_err(io)?;
        out.write_all(key).map_err(io)?;
    }
    out.finish(relative)
}

/// Calls `each` with every timer of a timer file whose key falls in
/// `owns`, reading the file as it goes: nothing is allocated from a length
/// the file claims (a key grows as its bytes arrive, and is at most
/// [`TIMER_KEY_BYTES_MAX`]), so the caller's limits on pending timers bound
/// what a restore holds, whatever the file's size. `each` stops the read
/// with its own error.
pub fn for_each_timer<E: From<SnapshotError>>(
    path: &Path,
    max_parallelism: u32,
    owns: impl Fn(u32) -> bool,
    mut each: impl FnMut(TimeDomain, i64, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| SnapshotError::io(path, e))?;
    if !meta.is_file() {
        return Err(SnapshotError::damaged(path, "the timer file is not a regular file").into());
    }
    let file = std::fs::File::open(path).map_err(|e| SnapshotError::io(path, e))?;
    let mut input = BufReader::with_capacity(1 << 16, file);
    let mut magic = [0u8; 8];
    input
        .read_exact(&mut magic)
        .map_err(|_| SnapshotError::damaged(path, "not a weir timer file"))?;
    if &magic != TIMERS_MAGIC {
        return Err(SnapshotError::damaged(path, "not a weir timer file").into());
    }
    let cut = || SnapshotError::damaged(path, "timer cut short");
    let mut key = Vec::new();
    loop {
        let mut header = [0u8; 13];
        match read_full(&mut input, &mut header) {
            Ok(0) => return Ok(()),
            Ok(13) => {}
            Ok(_) => return Err(cut().into()),
            Err(e) => return Err(SnapshotError::io(path, e).into()),
        }
        let domain = match header[0] {
            0 => TimeDomain::EventTime,
            1 => TimeDomain::ProcessingTime,
            d => return Err(SnapshotError::damaged(path, format!("timer domain {d}")).into()),
        };
        let timestamp = i64::from_le_bytes(header[1..9].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes")) as usize;
        if len > TIMER_KEY_BYTES_MAX {
            return Err(SnapshotError::damaged(
                path,
                format!("a timer key of {len} bytes (at most {TIMER_KEY_BYTES_MAX})"),
            )
            .into());
        }
        key.clear();
        (&mut input)
            .take(len as u64)
            .read_to_end(&mut key)
            .map_err(|e| SnapshotError::io(path, e))?;
        if key.len() != len {
            return Err(cut().into());
        }
        if owns(key_group_of(&key, max_parallelism)) {
            each(domain, timestamp, &key)?;
        }
    }
}

/// Longest timer key read back: the largest `key_max_bytes` a job file may
/// set, so no key a guest could register is refused.
pub const TIMER_KEY_BYTES_MAX: usize = 16 << 20;

/// Fills `buf` unless the input ends first; returns how many bytes came.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// All timers of a timer file whose key falls in `owns` (for tools and
/// tests; a restore uses [`for_each_timer`] under its limits).
pub fn read_timers(
    path: &Path,
    max_parallelism: u32,
    owns: impl Fn(u32) -> bool,
) -> Result<Vec<(TimeDomain, i64, Vec<u8>)>, SnapshotError> {
    let mut timers = Vec::new();
    for_each_timer(path, max_parallelism, owns, |domain, timestamp, key| {
        timers.push((domain, timestamp, key.to_vec()));
        Ok::<(), SnapshotError>(())
    })?;
    Ok(timers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::KeyGroupRange;
    use weir_state::{MemoryBackend, StateDescriptor, StateKind};

    fn store(range: KeyGroupRange, states: &[&str]) -> KeyedStateStore {
        let mut s = KeyedStateStore::new(Box::new(MemoryBackend::new()), 128, range);
        s.declare(
            states
                .iter()
                .map(|n| StateDescriptor {
                    name: n.to_string(),
                    kind: StateKind::Value,
                    ttl_ms: None,
                })
                .collect(),
        )
        .unwrap();
        s
    }

    #[test]
    fn state_round_trips_across_parallelism_and_renumbering() {
        let dir = tempfile::tempdir().unwrap();
        let all = KeyGroupRange { start: 0, end: 128 };
        let mut old = store(all, &["a", "b"]);
        for i in 0..100 {
            let key = format!("k{i}");
            old.value_set(0, key.as_bytes(), b"A", 0).unwrap();
            old.value_set(1, key.as_bytes(), format!("B{i}").as_bytes(), 0)
                .unwrap();
        }
        let path = dir.path().join("s");
        let (file, stats) = write_state(old.backend_mut(), 2, &path, "s".into()).unwrap();
        file.verify(dir.path()).unwrap();
        assert_eq!(stats[0].keys, 100);
        assert_eq!(stats[1].entries, 100);

        // Two new subtasks, states declared in the other order.
        let mapping = StateMapping {
            new_index: vec![Some(1), Some(0)],
        };
        let mut restored = 0;
        for subtask in 0..2 {
            let range = KeyGroupRange::for_subtask(subtask, 2, 128);
            let mut new = store(range, &["b", "a"]);
            restored += restore_state(&path, &mapping, &mut new).unwrap();
            for i in 0..100 {
                let key = format!("k{i}");
                if range.contains(key_group_of(key.as_bytes(), 128)) {
                    assert_eq!(
                        new.value_get(0, key.as_bytes(), 0).unwrap(),
                        Some(format!("B{i}").into_bytes())
                    );
                    assert_eq!(
                        new.value_get(1, key.as_bytes(), 0).unwrap(),
                        Some(b"A".to_vec())
                    );
                }
            }
        }
        assert_eq!(restored, 200);
    }

    #[test]
    fn truncated_state_and_timer_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = store(KeyGroupRange { start: 0, end: 128 }, &["a"]);
        old.value_set(0, b"key", b"value", 0).unwrap();
        let path = dir.path().join("s");
        write_state(old.backend_mut(), 1, &path, "s".into()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        let mapping = StateMapping {
            new_index: vec![Some(0)],
        };
        let mut new = store(KeyGroupRange { start: 0, end: 128 }, &["a"]);
        let e = restore_state(&path, &mapping, &mut new)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cut short"), "{e}");

        let tpath = dir.path().join("t");
        let keys: Vec<Vec<u8>> = (0..10).map(|i| format!("k{i}").into_bytes()).collect();
        write_timers(
            keys.iter()
                .map(|k| (TimeDomain::EventTime, 5, k.as_slice())),
            &tpath,
            "t".into(),
        )
        .unwrap();
        assert_eq!(read_timers(&tpath, 128, |_| true).unwrap().len(), 10);
        let bytes = std::fs::read(&tpath).unwrap();
        std::fs::write(&tpath, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read_timers(&tpath, 128, |_| true).is_err());
    }

    #[test]
    fn a_timer_file_is_read_as_it_goes_and_stops_at_the_callers_error() {
        let dir = tempfile::tempdir().unwrap();
        let tpath = dir.path().join("t");
        let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("k{i}").into_bytes()).collect();
        write_timers(
            keys.iter()
                .map(|k| (TimeDomain::ProcessingTime, 7, k.as_slice())),
            &tpath,
            "t".into(),
        )
        .unwrap();
        let mut seen = 0;
        let e = for_each_timer(
            &tpath,
            128,
            |_| true,
            |_, _, _| {
                seen += 1;
                if seen == 3 {
                    return Err(SnapshotError::damaged(&tpath, "enough"));
                }
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(seen, 3);
        assert!(e.to_string().contains("enough"), "{e}");
        // A key claiming 4 GiB is refused from its header, not allocated.
        let mut claim = TIMERS_MAGIC.to_vec();
        claim.push(0);
        claim.extend_from_slice(&5i64.to_le_bytes());
        claim.extend_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&tpath, &claim).unwrap();
        let e = read_timers(&tpath, 128, |_| true).unwrap_err().to_string();
        assert!(e.contains("a timer key of 4294967295 bytes"), "{e}");
        // A claim within the bound but beyond the file is cut short.
        let len = claim.len();
        claim[len - 4..].copy_from_slice(&1000u32.to_le_bytes());
        std::fs::write(&tpath, &claim).unwrap();
        let e = read_timers(&tpath, 128, |_| true).unwrap_err().to_string();
        assert!(e.contains("timer cut short"), "{e}");
    }
}
