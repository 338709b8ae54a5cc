//! Operator artifacts stored by content: `<dir>/<hex sha-256>.wasm`, plus
//! `names.json` mapping the names users uploaded them under to digests.
//! A client's file name is only ever a key in that map, never a path.
//!
//! The store's size is bounded: an upload that would take the stored bytes
//! past `total_bytes_max` first evicts artifacts no name points to any
//! more (a name uploaded again points to the new bytes) and no running job
//! uses, oldest first, and is refused if that does not make room.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The largest artifact the coordinator accepts by default (a Python
/// component is about 20 MB).
pub const ARTIFACT_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// All stored artifacts together, by default.
pub const ARTIFACTS_TOTAL_BYTES_MAX_DEFAULT: u64 = 4 << 30;
/// Artifact names kept by default. Every upload under a new name adds one
/// and `names.json` is rewritten whole on each upload.
pub const ARTIFACT_NAMES_MAX_DEFAULT: usize = 1024;
/// Longest artifact name.
const NAME_CHARS_MAX: usize = 128;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArtifactInfo {
    pub name: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub bytes: u64,
}

/// Why an upload was refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(
        "artifact name `{0}` is not allowed: use a plain file name of letters, digits, `.`, `_` and `-` (no paths), at most 128 characters"
    )]
    BadName(String),
    #[error("artifact `{name}` is {bytes} bytes; the limit is {max} bytes")]
    TooLarge {
        name: String,
        bytes: usize,
        max: usize,
    },
    #[error(
        "artifact `{name}` ({bytes} bytes) does not fit: the store holds {stored} bytes of at most {max} (--artifacts-max-total-bytes), and every stored artifact is named or in use"
    )]
    StoreFull {
        name: String,
        bytes: usize,
        stored: u64,
        max: u64,
    },
    #[error(
        "artifact `{name}` would be a new name, and the coordinator keeps at most {max} artifact names (--artifact-names-max); upload under a name already used, or by digest"
    )]
    TooManyNames { name: String, max: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot store the artifact: {0:#}")]
    Storage(anyhow::Error),
}

/// Checks that a client-supplied name is a plain file name.
pub fn check_name(name: &str) -> Result<(), UploadError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_CHARS_MAX
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(UploadError::BadName(name.escape_debug().to_string()))
    }
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", weir_wasm::artifact_digest(bytes))
}

/// `sha256:<64 hex>` → the hex part, or `None` if it is not a digest.
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then_some(hex)
}

pub struct ArtifactStore {
    dir: PathBuf,
    bytes_max: usize,
    total_bytes_max: u64,
    names_max: usize,
    names: Mutex<BTreeMap<String, ArtifactInfo>>,
}

impl ArtifactStore {
    pub fn open(
        dir: &Path,
        bytes_max: usize,
        total_bytes_max: u64,
        names_max: usize,
    ) -> anyhow::Result<ArtifactStore> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let index = dir.join("names.json");
        let names = match std::fs::read(&index) {
            Ok(text) => serde_json::from_slice(&text)
                .with_context(|| format!("{}: not an artifact index", index.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", index.display())),
        };
        Ok(ArtifactStore {
            dir: dir.to_path_buf(),
            bytes_max,
            total_bytes_max,
            names_max,
            names: Mutex::new(names),
        })
    }

    /// Stored artifacts: (modified, digest, bytes), oldest first.
    fn stored(&self) -> Vec<(std::time::SystemTime, String, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut stored: Vec<_> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let hex = name.strip_suffix(".wasm")?;
                let digest = format!("sha256:{hex}");
                digest_hex(&digest)?;
                let meta = e.metadata().ok()?;
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                Some((modified, digest, meta.len()))
            })
            .collect();
        stored.sort();
        stored
    }

    /// Makes room for `bytes` more, evicting artifacts that no name in
    /// `names` and nothing in `in_use` refers to; false if it cannot.
    fn make_room(
        &self,
        bytes: u64,
        names: &BTreeMap<String, ArtifactInfo>,
        in_use: &BTreeSet<String>,
    ) -> Result<(), u64> {
        let stored = self.stored();
        let mut total: u64 = stored.iter().map(|(_, _, b)| b).sum();
        if total + bytes <= self.total_bytes_max {
            return Ok(());
        }
        let named: BTreeSet<&str> = names.values().map(|i| i.digest.as_str()).collect();
        for (_, digest, size) in stored {
            if named.contains(digest.as_str()) || in_use.contains(&digest) {
                continue;
            }
            if let Some(path) = self.path_of(&digest)
                && std::fs::remove_file(&path).is_ok()
            {
                tracing::info!("evicted artifact {digest} ({size} bytes): no name or job uses it");
                total -= size;
                if total + bytes <= self.total_bytes_max {
                    return Ok(());
                }
            }
        }
        Err(total)
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Stores `bytes` under `name` once `validate` accepted them. Artifacts
    /// in `in_use` (running jobs') are never evicted to make room.
    pub fn put(
        &self,
        name: &str,
        bytes: &[u8],
        in_use: &BTreeSet<String>,
        validate: impl FnOnce(&str, &[u8]) -> Result<(), String>,
    ) -> Result<ArtifactInfo, UploadError> {
        check_name(name)?;
        if bytes.len() > self.bytes_max {
            return Err(UploadError::TooLarge {
                name: name.to_string(),
                bytes: bytes.len(),
                max: self.bytes_max,
            });
        }
        // Before the costly validation; again under the lock below.
        self.check_name_room(&self.names.lock().expect("not poisoned"), name)?;
        validate(name, bytes).map_err(UploadError::Invalid)?;
        let digest = digest_of(bytes);
        let path = self.path_of(&digest).expect("a digest we made");
        let info = ArtifactInfo {
            name: name.to_string(),
            digest,
            bytes: bytes.len() as u64,
        };
        // One lock over room, write and index, so two uploads cannot both
        // count on the same free space.
        let mut names = self.names.lock().expect("not poisoned");
        self.check_name_room(&names, name)?;
        if !path.exists() {
            // The name about to point elsewhere no longer holds its old bytes.
            let mut after = names.clone();
            after.insert(name.to_string(), info.clone());
            self.make_room(bytes.len() as u64, &after, in_use)
                .map_err(|stored| UploadError::StoreFull {
                    name: name.to_string(),
                    bytes: bytes.len(),
                    stored,
                    max: self.total_bytes_max,
                })?;
            write_atomically(&path, bytes).map_err(UploadError::Storage)?;
        }
        names.insert(name.to_string(), info.clone());
        let index = serde_json::to_vec_pretty(&*names).expect("index serializes");
        write_atomically(&self.dir.join("names.json"), &index).map_err(UploadError::Storage)?;
        Ok(info)
    }

    /// A name already kept may point elsewhere; a new one needs room.
    fn check_name_room(
        &self,
        names: &BTreeMap<String, ArtifactInfo>,
        name: &str,
    ) -> Result<(), UploadError> {
        if names.contains_key(name) || names.len() < self.names_max {
            return Ok(());
        }
        Err(UploadError::TooManyNames {
            name: name.to_string(),
            max: self.names_max,
        })
    }

    pub fn list(&self) -> Vec<ArtifactInfo> {
        self.names
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// A digest, or a name uploaded earlier, to the stored digest.
    pub fn resolve(&self, reference: &str) -> Option<String> {
        if digest_hex(reference).is_some() {
            return self
                .path_of(reference)
                .filter(|p| p.exists())
                .map(|_| reference.to_string());
        }
        self.names
            .lock()
            .expect("not poisoned")
            .get(reference)
            .map(|i| i.digest.clone())
    }

    pub fn path_of(&self, digest: &str) -> Option<PathBuf> {
        digest_hex(digest).map(|hex| self.dir.join(format!("{hex}.wasm")))
    }

    pub fn read(&self, digest: &str) -> anyhow::Result<Vec<u8>> {
        let path = self
            .path_of(digest)
            .with_context(|| format!("`{digest}` is not an artifact digest"))?;
        std::fs::read(&path).with_context(|| format!("no artifact {digest}"))
    }
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    // A name of its own, so two writers of the same artifact never share one.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    let mut file = std::fs::File::create(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_file_names() {
        for good in ["tokenizer.wasm", "a-b_c.1.wasm"] {
            check_name(good).unwrap();
        }
        for bad in [
            "../x.wasm",
            "a/b.wasm",
            "/etc/passwd",
            ".hidden",
            "",
            "a\\b",
            "a\0b",
            "é.wasm",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn stores_by_content_and_resolves_names_and_digests() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path(), 100, 1000, 10).unwrap();
        let none = BTreeSet::new();
        let info = store
            .put("op.wasm", b"bytes", &none, |_, _| Ok(()))
            .unwrap();
        assert_eq!(
            store.resolve("op.wasm").as_deref(),
            Some(info.digest.as_str())
        );
        assert_eq!(
            store.resolve(&info.digest).as_deref(),
            Some(info.digest.as_str())
        );
        assert_eq!(store.read(&info.digest).unwrap(), b"bytes");
        assert!(store.resolve("other.wasm").is_none());
        // The index survives a restart.
        let again = ArtifactStore::open(dir.path(), 100, 1000, 10).unwrap();
        assert_eq!(again.list(), vec![info]);
        // Refusals write nothing.
        assert!(matches!(
            store.put("big.wasm", &[0; 101], &none, |_, _| Ok(())),
            Err(UploadError::TooLarge { .. })
        ));
        assert!(matches!(
            store.put("bad.wasm", b"x", &none, |_, _| Err("no".into())),
            Err(UploadError::Invalid(_))
        ));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "one artifact and the index"
        );
    }

    #[test]
    fn a_full_store_evicts_unnamed_unused_artifacts_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path(), 100, 250, 10).unwrap();
        let none = BTreeSet::new();
        let first = store
            .put("a.wasm", &[1; 100], &none, |_, _| Ok(()))
            .unwrap();
        store
            .put("b.wasm", &[2; 100], &none, |_, _| Ok(()))
            .unwrap();
        // `a.wasm` again with new bytes: its old bytes are unnamed now.
        store
            .put("a.wasm", &[3; 100], &none, |_, _| Ok(()))
            .unwrap();
        assert!(!store.path_of(&first.digest).unwrap().exists(), "evicted");
        // Everything left is named: no room.
        let error = store
            .put("c.wasm", &[4; 100], &none, |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("does not fit: the store holds 200 bytes of at most 250"),
            "{error}"
        );
        // An unnamed artifact a running job uses is kept too.
        let used: BTreeSet<String> = [store.resolve("b.wasm").unwrap()].into();
        store
            .put("b.wasm", &[5; 60], &used, |_, _| Ok(()))
            .unwrap_err();
    }

    #[test]
    fn new_names_beyond_the_limit_are_refused_and_known_ones_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path(), 100, 1000, 2).unwrap();
        let none = BTreeSet::new();
        store.put("a.wasm", b"a", &none, |_, _| Ok(())).unwrap();
        store.put("b.wasm", b"b", &none, |_, _| Ok(())).unwrap();
        let mut validated = false;
        let error = store
            .put("c.wasm", b"c", &none, |_, _| {
                validated = true;
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(error, UploadError::TooManyNames { .. }));
        assert_eq!(
            error.to_string(),
            "artifact `c.wasm` would be a new name, and the coordinator keeps at most 2 artifact names (--artifact-names-max); upload under a name already used, or by digest"
        );
        assert!(!validated, "refused before the costly check");
        assert!(store.resolve("c.wasm").is_none());
        // A kept name may point to new bytes.
        let info = store.put("a.wasm", b"a2", &none, |_, _| Ok(())).unwrap();
        assert_eq!(store.resolve("a.wasm"), Some(info.digest));
        assert_eq!(store.list().len(), 2);
    }
}
