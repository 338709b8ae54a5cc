//! Operator artifacts a job may switch to, kept beside its checkpoints
//! (`<checkpoint dir>/<job>/artifacts/<sha256>.wasm`): a checkpoint records
//! each operator's digest, and a resume after the process died finds the
//! code there, whatever the job file names. With checkpoints on an object
//! store the artifact is an object there, downloaded (and checked against
//! its digest) into this process's cache when needed.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use weir_snapshot::{Store, StoreOptions};

/// Largest artifact an upgrade takes (Python components are ~20 MB).
pub const ARTIFACT_BYTES_MAX: u64 = 256 << 20;

fn dir(storage_root: &Path) -> PathBuf {
    storage_root.join("artifacts")
}

fn is_digest(digest: &str) -> bool {
    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The object store at `storage_root`, when it is one.
fn remote(storage_root: &Path, options: &StoreOptions) -> anyhow::Result<Option<Store>> {
    if !weir_snapshot::remote::is_remote(storage_root) {
        return Ok(None);
    }
    Ok(Some(Store::open(&storage_root.to_string_lossy(), options)?))
}

/// Where the artifact `digest` is kept, if it is (for an object store, a
/// local copy whose content matches the digest).
pub fn find(storage_root: &Path, digest: &str, options: &StoreOptions) -> Option<PathBuf> {
    if !is_digest(digest) {
        return None;
    }
    let name = format!("{digest}.wasm");
    match remote(storage_root, options) {
        Ok(None) => {
            let path = dir(storage_root).join(name);
            path.is_file().then_some(path)
        }
        Ok(Some(store)) => {
            let cache = std::env::temp_dir().join(format!("weir-artifacts-{}", std::process::id()));
            let path = cache.join(&name);
            if path.is_file() {
                return Some(path);
            }
            let bytes = match store.get(&format!("artifacts/{name}")) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!("artifact {digest}: {e}");
                    return None;
                }
            };
            if weir_wasm::artifact_digest(&bytes) != digest {
                tracing::warn!(
                    "artifact {digest} in {}: its content has another digest",
                    store.describe("")
                );
                return None;
            }
            let temp = cache.join(format!(".{name}.tmp"));
            std::fs::create_dir_all(&cache)
                .and_then(|()| std::fs::write(&temp, &bytes))
                .and_then(|()| std::fs::rename(&temp, &path))
                .ok()?;
            Some(path)
        }
        Err(e) => {
            tracing::warn!("artifact {digest}: {e:#}");
            None
        }
    }
}

/// Reads the artifact at `path` (at most [`ARTIFACT_BYTES_MAX`]), keeps a
/// copy under its digest, and returns the digest.
pub fn keep(storage_root: &Path, path: &Path, options: &StoreOptions) -> anyhow::Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > ARTIFACT_BYTES_MAX {
        bail!(
            "{} is {size} bytes; an artifact may have at most {ARTIFACT_BYTES_MAX}",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let digest = weir_wasm::artifact_digest(&bytes);
    if let Some(store) = remote(storage_root, options)? {
        // Content-addressed: whoever wrote it first wrote the same bytes.
        store.put_if_absent(&format!("artifacts/{digest}.wasm"), &bytes)?;
        return Ok(digest);
    }
    let dir = dir(storage_root);
    let target = dir.join(format!("{digest}.wasm"));
    if !target.is_file() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let temp = dir.join(format!(".{digest}.{}.tmp", std::process::id()));
        std::fs::write(&temp, &bytes)
            .and_then(|()| std::fs::rename(&temp, &target))
            .with_context(|| format!("cannot keep the artifact in {}", dir.display()))?;
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_is_kept_under_its_digest_and_found_again() {
        let tmp = tempfile::tempdir().unwrap();
        let wasm = tmp.path().join("op.wasm");
        std::fs::write(&wasm, b"not really wasm").unwrap();
        let o = StoreOptions::default();
        let digest = keep(tmp.path(), &wasm, &o).unwrap();
        assert_eq!(digest, weir_wasm::artifact_digest(b"not really wasm"));
        let found = find(tmp.path(), &digest, &o).unwrap();
        assert_eq!(std::fs::read(found).unwrap(), b"not really wasm");
        assert!(find(tmp.path(), "../../etc/passwd", &o).is_none());
        assert!(find(tmp.path(), &"0".repeat(64), &o).is_none());
    }
}
