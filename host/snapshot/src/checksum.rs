//! Files a snapshot references, with their size and checksum.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::SnapshotError;

/// A file of a snapshot. `path` is relative to the snapshot's directory; it
/// may leave it only as `../shared/<name>` (SSTs shared between checkpoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub path: String,
    pub size: u64,
    /// xxh3-128 of the content, hex.
    pub xxh3: String,
}

impl FileRef {
    /// The file's location under `snapshot_dir`, refusing paths that escape
    /// it other than into the sibling `shared` directory, and that only when
    /// `snapshot_dir` is a checkpoint (see [`shared_dir_of`]).
    pub fn resolve(&self, snapshot_dir: &Path) -> Result<PathBuf, SnapshotError> {
        let relative = Path::new(&self.path);
        let mut components = relative.components().peekable();
        let mut shared = false;
        if components.peek() == Some(&Component::ParentDir) {
            components.next();
            if components.next() != Some(Component::Normal("shared".as_ref())) {
                return Err(bad_path(snapshot_dir, &self.path));
            }
            shared = true;
        }
        let rest: Vec<_> = components.collect();
        let plain = |c: &Component<'_>| match c {
            Component::Normal(name) => name.to_str().is_some_and(is_plain_name),
            _ => false,
        };
        if rest.is_empty() || !rest.iter().all(plain) || self.path.contains('\0') {
            return Err(bad_path(snapshot_dir, &self.path));
        }
        let base = if shared {
            shared_dir_of(snapshot_dir).ok_or_else(|| {
                SnapshotError::damaged(
                    snapshot_dir,
                    format!(
                        "metadata names a shared file `{}`, but only a checkpoint (a `chk-<id>` directory \
                         beside its storage's `shared`) has shared files; a savepoint holds all of its own",
                        self.path
                    ),
                )
            })?
        } else {
            snapshot_dir.to_path_buf()
        };
        Ok(rest.iter().fold(base, |p, c| p.join(c)))
    }

    /// Checks that the file exists with the recorded size and checksum.
    pub fn verify(&self, snapshot_dir: &Path) -> Result<(), SnapshotError> {
        let path = self.resolve(snapshot_dir)?;
        // Not followed: a snapshot holds only files weir wrote, and a
        // symlink (or FIFO, or device) planted in one must not be read.
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| SnapshotError::damaged(&path, format!("cannot read it: {e}")))?;
        if !meta.is_file() {
            return Err(SnapshotError::damaged(&path, "not a regular file"));
        }
        let size = meta.len();
        if size != self.size {
            return Err(SnapshotError::damaged(
                &path,
                format!("{size} bytes, but the metadata says {}", self.size),
            ));
        }
        let actual = hash_file(&path)?;
        if actual != self.xxh3 {
            return Err(SnapshotError::damaged(
                &path,
                format!(
                    "checksum {actual} does not match the metadata's {}",
                    self.xxh3
                ),
            ));
        }
        Ok(())
    }
}

/// Where the `../shared/...` files of the snapshot in `snapshot_dir` lie:
/// `<storage>/shared` when `snapshot_dir` is a checkpoint of a checkpoint
/// storage (`<storage>/chk-<digits>`), else `None` (a savepoint is
/// self-contained: savepoints never write native RocksDB files). Whoever
/// checks a snapshot directory against data roots checks this one too: it
/// lies outside the snapshot directory.
pub fn shared_dir_of(snapshot_dir: &Path) -> Option<PathBuf> {
    let name = snapshot_dir.file_name()?.to_str()?;
    let id = name.strip_prefix("chk-")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(snapshot_dir.parent()?.join("shared"))
}

/// Whether `name` is one plain file name: not empty, not `.` or `..`, no
/// separator, no NUL. Names read from metadata must be, before they are
/// joined to a directory.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

fn bad_path(dir: &Path, path: &str) -> SnapshotError {
    SnapshotError::damaged(dir, format!("metadata names an invalid file path `{path}`"))
}

pub fn hex128(value: u128) -> String {
    format!("{value:032x}")
}

pub fn hash_file(path: &Path) -> Result<String, SnapshotError> {
    let mut file = File::open(path).map_err(|e| SnapshotError::io(path, e))?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| SnapshotError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex128(hasher.digest128()))
}

/// Copies `from` to `to`, hashing on the way; returns the copy's reference
/// (with `path` set to `relative`).
pub fn copy_hashed(from: &Path, to: &Path, relative: String) -> Result<FileRef, SnapshotError> {
    let mut input = File::open(from).map_err(|e| SnapshotError::io(from, e))?;
    let mut out = HashingWriter::create(to)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| SnapshotError::io(from, e))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| SnapshotError::io(to, e))?;
    }
    out.finish(relative)
}

/// Writes a new file and computes its [`FileRef`] as it goes.
pub struct HashingWriter {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Xxh3,
    size: u64,
}

impl HashingWriter {
    pub fn create(path: &Path) -> Result<Self, SnapshotError> {
        let file = File::create(path).map_err(|e| SnapshotError::io(path, e))?;
        Ok(HashingWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, file),
            hasher: Xxh3::new(),
            size: 0,
        })
    }

    /// Flushes and syncs the file; `relative` becomes the reference's path.
    pub fn finish(mut self, relative: String) -> Result<FileRef, SnapshotError> {
        self.out
            .flush()
            .map_err(|e| SnapshotError::io(&self.path, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| SnapshotError::io(&self.path, e))?;
        Ok(FileRef {
            path: relative,
            size: self.size,
            xxh3: hex128(self.hasher.digest128()),
        })
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_verify_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HashingWriter::create(&dir.path().join("a")).unwrap();
        w.write_all(b"hello snapshot").unwrap();
        let file = w.finish("a".into()).unwrap();
        assert_eq!(file.size, 14);
        file.verify(dir.path()).unwrap();

        std::fs::write(dir.path().join("a"), b"hello snapshoT").unwrap();
        let e = file.verify(dir.path()).unwrap_err().to_string();
        assert!(e.contains("checksum") && e.contains("/a"), "{e}");
        std::fs::write(dir.path().join("a"), b"hello").unwrap();
        let e = file.verify(dir.path()).unwrap_err().to_string();
        assert!(e.contains("5 bytes"), "{e}");
        std::fs::remove_file(dir.path().join("a")).unwrap();
        assert!(file.verify(dir.path()).is_err());
    }

    #[test]
    fn paths_cannot_escape_the_snapshot() {
        let dir = Path::new("/chk/job/chk-1");
        let r = |p: &str| {
            FileRef {
                path: p.into(),
                size: 0,
                xxh3: String::new(),
            }
            .resolve(dir)
        };
        assert_eq!(r("op-0.state").unwrap(), dir.join("op-0.state"));
        assert_eq!(
            r("../shared/x.sst").unwrap(),
            Path::new("/chk/job/shared/x.sst")
        );
        // Outside a checkpoint storage, `../shared` would be any sibling.
        for savepoint in ["/srv/savepoints/sp-1", "/srv/chk-", "/srv/chk-1x"] {
            let e = FileRef {
                path: "../shared/x.sst".into(),
                size: 0,
                xxh3: String::new(),
            }
            .resolve(Path::new(savepoint))
            .unwrap_err()
            .to_string();
            assert!(e.contains("only a checkpoint"), "{savepoint}: {e}");
        }
        assert_eq!(shared_dir_of(dir), Some(PathBuf::from("/chk/job/shared")));
        assert_eq!(shared_dir_of(Path::new("/srv/sp-1")), None);
        for bad in [
            "../other/x",
            "/etc/passwd",
            "a/../../b",
            "",
            "../shared",
            "../shared/../x",
            "a\0b",
            "a\\..\\b",
        ] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }
}
