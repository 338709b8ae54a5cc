//! Operator artifacts a job may switch to, kept beside its checkpoints
//! (`<checkpoint dir>/<job>/artifacts/<sha256>.wasm`): a checkpoint records
//! each operator's digest, and a resume after the process died finds the
//! code there, whatever the job file names.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// Largest artifact an upgrade takes (Python components are ~20 MB).
pub const ARTIFACT_BYTES_MAX: u64 = 256 << 20;

fn dir(storage_root: &Path) -> PathBuf {
    storage_root.join("artifacts")
}

/// Where the artifact `digest` is kept, if it is.
pub fn find(storage_root: &Path, digest: &str) -> Option<PathBuf> {
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let path = dir(storage_root).join(format!("{digest}.wasm"));
    path.is_file().then_some(path)
}

/// Reads the artifact at `path` (at most [`ARTIFACT_BYTES_MAX`]), keeps a
/// copy under its digest, and returns the digest.
pub fn keep(storage_root: &Path, path: &Path) -> anyhow::Result<String> {
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
        let digest = keep(tmp.path(), &wasm).unwrap();
        assert_eq!(digest, weir_wasm::artifact_digest(b"not really wasm"));
        let found = find(tmp.path(), &digest).unwrap();
        assert_eq!(std::fs::read(found).unwrap(), b"not really wasm");
        assert!(find(tmp.path(), "../../etc/passwd").is_none());
        assert!(find(tmp.path(), &"0".repeat(64)).is_none());
    }
}
