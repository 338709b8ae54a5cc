//! Snapshots on an object store (`s3://bucket/prefix/<job>/chk-<id>`).
//!
//! Everything that reads or writes snapshot files keeps working on local
//! directories: a task writes its files into a local staging directory and
//! uploads them ([`stage`], [`upload_files`]; RocksDB SSTs go straight from
//! the native checkpoint, see [`crate::rocks_files::upload_to_store`]); the
//! job master writes `_metadata` last with a conditional put
//! ([`write_metadata`]), so a snapshot exists only once all its files do;
//! a restore downloads the snapshot into a local cache and loads it from
//! there ([`fetch`]), verifying every file as for a local snapshot. Files
//! already in the cache with the right size and checksum (SSTs shared by
//! successive checkpoints) are not downloaded again.
//!
//! A location is named by a `Path` holding the URL, as local snapshot
//! directories are, so plans, protocol messages and job specs carry either
//! without knowing which.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::metadata::{METADATA_FILE, Metadata};
use crate::storage::Snapshot;
use crate::store::{Store, StoreOptions};
use crate::{FileRef, SnapshotError, is_plain_name};

/// A snapshot on an object store: the store of its parent location and
/// the snapshot's name in it (`chk-00000005`, `savepoint-wc-7`).
#[derive(Clone, Debug)]
pub struct Remote {
    pub store: Store,
    pub name: String,
}

impl Remote {
    /// The key of a file of this snapshot (`path` as its [`FileRef`]
    /// names it: relative, or `../shared/<name>`).
    pub fn key_of(&self, path: &str) -> String {
        match path.strip_prefix("../") {
            Some(shared) => shared.to_string(),
            None => format!("{}/{path}", self.name),
        }
    }
}

/// Whether `location` is an object store URL.
pub fn is_remote(location: &Path) -> bool {
    location
        .to_str()
        .is_some_and(crate::store::is_remote_location)
}

/// The remote snapshot at `location`, or `None` for a local directory.
pub fn split(location: &Path, options: &StoreOptions) -> Result<Option<Remote>, SnapshotError> {
    if !is_remote(location) {
        return Ok(None);
    }
    let text = location.to_str().unwrap_or_default().trim_end_matches('/');
    let bad = |why: &str| SnapshotError::Incompatible(format!("snapshot location `{text}`: {why}"));
    let (parent, name) = text
        .rsplit_once('/')
        .ok_or_else(|| bad("no snapshot name"))?;
    if !is_plain_name(name) || parent == "s3:" || parent == "s3:/" {
        return Err(bad("expected s3://bucket[/prefix]/<snapshot name>"));
    }
    Ok(Some(Remote {
        store: Store::open(parent, options)?,
        name: name.to_string(),
    }))
}

/// A local directory for the files of the snapshot at `location` before
/// they are uploaded: the location itself when local, else a directory in
/// this process's staging area (created).
pub fn stage(
    location: &Path,
    options: &StoreOptions,
) -> Result<(PathBuf, Option<Remote>), SnapshotError> {
    match split(location, options)? {
        None => Ok((location.to_path_buf(), None)),
        Some(remote) => {
            let dir = staging_dir(location);
            std::fs::create_dir_all(&dir).map_err(|e| SnapshotError::io(&dir, e))?;
            Ok((dir, Some(remote)))
        }
    }
}

fn process_dir(kind: &str) -> PathBuf {
    std::env::temp_dir().join(format!("weir-{kind}-{}", std::process::id()))
}

fn hashed(text: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// Where a task stages the files of the remote snapshot `location`.
pub fn staging_dir(location: &Path) -> PathBuf {
    let text = location.to_string_lossy();
    let name = text.rsplit('/').next().unwrap_or_default();
    process_dir("staging")
        .join(hashed(&text))
        .join(if is_plain_name(name) {
            name
        } else {
            "snapshot"
        })
}

/// Uploads the files of a task's part (written under `local`) and deletes
/// the local copies; shared files (`../shared/...`) are already there.
pub fn upload_files(
    remote: &Remote,
    local: &Path,
    files: &[&FileRef],
) -> Result<(), SnapshotError> {
    for f in files {
        if f.path.starts_with("../") {
            continue;
        }
        let path = f.resolve(local)?;
        remote.store.upload_file(&remote.key_of(&f.path), &path)?;
        let _ = std::fs::remove_file(&path);
    }
    // Several tasks stage into the same directory: the last one removes it.
    let _ = std::fs::remove_dir(local);
    Ok(())
}

/// Makes the snapshot directory at `location` (nothing for an object
/// store: an earlier attempt's objects under the name are deleted).
pub fn create(location: &Path, options: &StoreOptions) -> Result<(), SnapshotError> {
    match split(location, options)? {
        None => std::fs::create_dir_all(location).map_err(|e| SnapshotError::io(location, e)),
        Some(remote) => remote.store.delete_prefix(&remote.name),
    }
}

/// Deletes the snapshot at `location` (an aborted one): its own files,
/// not shared ones.
pub fn remove(location: &Path, options: &StoreOptions) -> Result<(), SnapshotError> {
    match split(location, options)? {
        None => match std::fs::remove_dir_all(location) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(SnapshotError::io(location, e))
            }
            _ => Ok(()),
        },
        Some(remote) => {
            let _ = std::fs::remove_dir_all(staging_dir(location));
            remote.store.delete_prefix(&remote.name)
        }
    }
}

/// Writes the snapshot's `_metadata`, which completes it: atomically, and
/// on an object store only if no `_metadata` is there yet.
pub fn write_metadata(
    metadata: &Metadata,
    location: &Path,
    options: &StoreOptions,
) -> Result<(), SnapshotError> {
    let Some(remote) = split(location, options)? else {
        return metadata.write(location);
    };
    let stage = staging_dir(location);
    std::fs::create_dir_all(&stage).map_err(|e| SnapshotError::io(&stage, e))?;
    metadata.write(&stage)?;
    let path = stage.join(METADATA_FILE);
    let bytes = std::fs::read(&path).map_err(|e| SnapshotError::io(&path, e))?;
    let _ = std::fs::remove_dir_all(&stage);
    let key = format!("{}/{METADATA_FILE}", remote.name);
    if remote.store.put_if_absent(&key, &bytes)? {
        Ok(())
    } else {
        Err(SnapshotError::Incompatible(format!(
            "{} already exists; another job master wrote this snapshot",
            remote.store.describe(&key)
        )))
    }
}

/// Reads the `_metadata` of snapshot `name` in `store`, if it is there.
pub fn read_metadata(store: &Store, name: &str) -> Result<Option<Metadata>, SnapshotError> {
    let key = format!("{name}/{METADATA_FILE}");
    let Some(bytes) = store.get(&key)? else {
        return Ok(None);
    };
    let dir = process_dir("metadata").join(hashed(&store.describe(&key)));
    std::fs::create_dir_all(&dir).map_err(|e| SnapshotError::io(&dir, e))?;
    let path = dir.join(METADATA_FILE);
    let written = std::fs::write(&path, &bytes).map_err(|e| SnapshotError::io(&path, e));
    let read = written.and_then(|()| Metadata::read(&dir)).map_err(|e| {
        // Name the object, not the local copy.
        SnapshotError::Damaged {
            path: store.describe(&key),
            message: e.to_string(),
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    read.map(Some)
}

/// Downloads the snapshot at the remote `location` into this process's
/// cache (what is already there and verifies is kept) and loads it from
/// there. The snapshot's `dir` is the local copy, its `location` the URL.
pub fn fetch(location: &Path, options: &StoreOptions) -> Result<Snapshot, SnapshotError> {
    // One fetch at a time: fetches of one store share the cache.
    static FETCH: Mutex<()> = Mutex::new(());
    let _one = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let remote = split(location, options)?.ok_or_else(|| {
        SnapshotError::Incompatible(format!("{} is not remote", location.display()))
    })?;
    let cache = process_dir("cache").join(hashed(&remote.store.describe("")));
    let local = cache.join(&remote.name);
    std::fs::create_dir_all(&local).map_err(|e| SnapshotError::io(&local, e))?;
    let metadata_key = format!("{}/{METADATA_FILE}", remote.name);
    let metadata = match read_metadata(&remote.store, &remote.name)? {
        Some(m) => m,
        None => {
            return Err(SnapshotError::Damaged {
                path: remote.store.describe(&metadata_key),
                message: "no such object: the snapshot is not complete".into(),
            });
        }
    };
    let mut wanted = HashSet::new();
    for f in metadata.files() {
        let path = f.resolve(&local)?;
        wanted.insert(path.clone());
        if f.verify(&local).is_ok() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| SnapshotError::io(parent, e))?;
        }
        let key = remote.key_of(&f.path);
        remote
            .store
            .download_file(&key, &path)
            .map_err(|e| SnapshotError::Damaged {
                path: remote.store.describe(&key),
                message: format!("cannot download it: {e}"),
            })?;
        f.verify(&local).map_err(|e| SnapshotError::Damaged {
            path: remote.store.describe(&key),
            message: e.to_string(),
        })?;
    }
    metadata.write(&local)?;
    forget_others(&cache, &remote.name, &wanted);
    Ok(Snapshot {
        dir: local,
        location: location.to_path_buf(),
        metadata,
    })
}

/// Deletes what the cache holds beyond the snapshot just fetched: other
/// snapshots, and shared files it does not use.
fn forget_others(cache: &Path, keep: &str, wanted: &HashSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "shared" {
            for file in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                if !wanted.contains(&file.path()) {
                    let _ = std::fs::remove_file(file.path());
                }
            }
        } else if name != keep {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    let own = cache.join(keep);
    for file in std::fs::read_dir(&own).into_iter().flatten().flatten() {
        let p = file.path();
        if p.is_file() && !wanted.contains(&p) && file.file_name() != METADATA_FILE {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_split_into_store_and_name() {
        let o = StoreOptions::default();
        assert!(
            split(Path::new("/srv/chk/wc/chk-00000001"), &o)
                .unwrap()
                .is_none()
        );
        let r = split(Path::new("s3://b/p/wc/chk-00000001"), &o)
            .unwrap()
            .unwrap();
        assert_eq!(r.name, "chk-00000001");
        assert_eq!(r.store.describe(""), "s3://b/p/wc");
        assert_eq!(r.key_of("op-0.state"), "chk-00000001/op-0.state");
        assert_eq!(r.key_of("../shared/a.sst"), "shared/a.sst");
        assert!(split(Path::new("s3://bucket"), &o).is_err());
        assert!(split(Path::new("s3://b/.."), &o).is_err());
    }

    #[test]
    fn local_locations_write_metadata_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("chk-00000001");
        create(&dir, &StoreOptions::default()).unwrap();
        let (local, remote) = stage(&dir, &StoreOptions::default()).unwrap();
        assert_eq!(local, dir);
        assert!(remote.is_none());
        write_metadata(&crate::metadata::sample(1), &dir, &StoreOptions::default()).unwrap();
        assert_eq!(Metadata::read(&dir).unwrap().id, 1);
        remove(&dir, &StoreOptions::default()).unwrap();
        assert!(!dir.exists());
    }
}
