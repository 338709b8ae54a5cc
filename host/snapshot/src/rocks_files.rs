//! Native RocksDB checkpoints: SST files are immutable and uniquely named
//! within one database, so a checkpoint copies into `shared/` only the SSTs
//! no earlier checkpoint of this database copied (incremental), plus the
//! small private files (MANIFEST, CURRENT, OPTIONS) every time.

use std::collections::HashMap;
use std::path::Path;

use crate::SnapshotError;
use crate::checksum::{FileRef, copy_hashed};
use crate::metadata::RocksFile;

/// SSTs of one database already in shared storage, by their name in the
/// database. The prefix makes shared names unique across databases and
/// across restores (file numbers restart from a restored MANIFEST).
#[derive(Debug, Default)]
pub struct SharedFiles {
    prefix: String,
    uploaded: HashMap<String, FileRef>,
}

impl SharedFiles {
    pub fn new(prefix: String) -> Self {
        SharedFiles {
            prefix,
            uploaded: HashMap::new(),
        }
    }

    /// Seeds the set with the SSTs a restored checkpoint already shares.
    pub fn seed(&mut self, files: &[RocksFile]) {
        for f in files {
            if f.file.path.starts_with("../shared/") {
                self.uploaded.insert(f.name.clone(), f.file.clone());
            }
        }
    }
}

/// Copies the native checkpoint in `local` into the snapshot directory
/// `snapshot_dir`: private files under `private_name/`, SSTs into
/// `../shared` (all of them when `incremental` is false). Returns what the
/// metadata must list.
pub fn upload(
    local: &Path,
    snapshot_dir: &Path,
    private_name: &str,
    shared: &mut SharedFiles,
    incremental: bool,
) -> Result<Vec<RocksFile>, SnapshotError> {
    let private_dir = snapshot_dir.join(private_name);
    std::fs::create_dir_all(&private_dir).map_err(|e| SnapshotError::io(&private_dir, e))?;
    let shared_dir = snapshot_dir
        .parent()
        .ok_or_else(|| SnapshotError::damaged(snapshot_dir, "no parent directory"))?
        .join("shared");
    std::fs::create_dir_all(&shared_dir).map_err(|e| SnapshotError::io(&shared_dir, e))?;
    let mut names: Vec<String> = std::fs::read_dir(local)
        .map_err(|e| SnapshotError::io(local, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut files = Vec::new();
    for name in names {
        let from = local.join(&name);
        let file = if name.ends_with(".sst") {
            match shared.uploaded.get(&name) {
                // Reuse only what is still there (an aborted checkpoint's
                // uploads may have been cleaned up).
                Some(done) if incremental && done.resolve(snapshot_dir)?.exists() => done.clone(),
                _ => {
                    let shared_name = if incremental {
                        format!("{}-{name}", shared.prefix)
                    } else {
                        let id = snapshot_dir
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned());
                        format!("{}-{}-{name}", shared.prefix, id.unwrap_or_default())
                    };
                    let file = copy_hashed(
                        &from,
                        &shared_dir.join(&shared_name),
                        format!("../shared/{shared_name}"),
                    )?;
                    if incremental {
                        shared.uploaded.insert(name.clone(), file.clone());
                    }
                    file
                }
            }
        } else {
            copy_hashed(
                &from,
                &private_dir.join(&name),
                format!("{private_name}/{name}"),
            )?
        };
        files.push(RocksFile { name, file });
    }
    Ok(files)
}

/// [`upload`] to a snapshot on an object store: every file is hashed
/// where the native checkpoint left it and uploaded from there (SSTs to
/// `shared/`, in parts when large), with no local copy. An SST this
/// database already uploaded is not checked for again: on an object store
/// only pruning deletes shared files, and only those no kept checkpoint
/// uses.
pub fn upload_to_store(
    local: &Path,
    remote: &crate::remote::Remote,
    private_name: &str,
    shared: &mut SharedFiles,
    incremental: bool,
) -> Result<Vec<RocksFile>, SnapshotError> {
    let mut names: Vec<String> = std::fs::read_dir(local)
        .map_err(|e| SnapshotError::io(local, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut files = Vec::new();
    for name in names {
        let from = local.join(&name);
        let file = match shared.uploaded.get(&name) {
            Some(done) if incremental && name.ends_with(".sst") => done.clone(),
            _ => {
                let path = if !name.ends_with(".sst") {
                    format!("{private_name}/{name}")
                } else if incremental {
                    format!("../shared/{}-{name}", shared.prefix)
                } else {
                    format!("../shared/{}-{}-{name}", shared.prefix, remote.name)
                };
                let size = std::fs::metadata(&from)
                    .map_err(|e| SnapshotError::io(&from, e))?
                    .len();
                let file = FileRef {
                    xxh3: crate::checksum::hash_file(&from)?,
                    path,
                    size,
                };
                remote
                    .store
                    .upload_file(&remote.key_of(&file.path), &from)?;
                if incremental && name.ends_with(".sst") {
                    shared.uploaded.insert(name.clone(), file.clone());
                }
                file
            }
        };
        files.push(RocksFile { name, file });
    }
    Ok(files)
}

/// Rebuilds a database directory from a checkpoint's files.
pub fn download(
    files: &[RocksFile],
    snapshot_dir: &Path,
    target: &Path,
) -> Result<(), SnapshotError> {
    std::fs::create_dir_all(target).map_err(|e| SnapshotError::io(target, e))?;
    for f in files {
        if !crate::is_plain_name(&f.name) {
            return Err(SnapshotError::damaged(
                snapshot_dir,
                format!("invalid RocksDB file name `{}`", f.name),
            ));
        }
        let from = f.file.resolve(snapshot_dir)?;
        let to = target.join(&f.name);
        // SSTs are immutable, so a hard link is safe and free; RocksDB
        // appends to the MANIFEST, which must stay a private copy.
        if !f.name.ends_with(".sst") || std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| SnapshotError::io(&to, e))?;
        }
    }
    Ok(())
}
