//! Where snapshots live: a local directory or an S3-compatible object store
//! (`s3://bucket/prefix`), behind one blocking API of whole objects.
//!
//! Keys are `/`-separated relative paths (`job/chk-00000003/_metadata`),
//! checked before use: no empty part, no `.` or `..`, no backslash or NUL,
//! not absolute. A key therefore never leaves the store's root, whatever a
//! job name or a metadata file says.
//!
//! Object stores are reached through the `object_store` crate, which is
//! async. Every call here runs its future on one process-wide tokio runtime
//! owned by this module and waits for the result on a channel, so a call
//! works from plain threads (the tasks, the job master) and does not panic
//! when made from inside another tokio runtime (the cluster's coordinator
//! and workers). Such a caller still blocks its thread for the call; async
//! code should wrap a series of calls in `spawn_blocking`.
//!
//! Atomicity: [`Store::put`] replaces an object whole (a local file is
//! written under a temporary name, synced and renamed; an S3 PUT is atomic).
//! [`Store::put_if_absent`] is the commit point of a checkpoint: locally a
//! hard link, which fails if the name exists; on S3 the object is first
//! written under a temporary key and then copied with copy-if-not-exists
//! (configured as `multipart`: a multipart upload that copies the object and
//! completes only if the target does not exist, which SeaweedFS and AWS
//! support), so two writers cannot both succeed and no reader sees a half
//! object.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, S3CopyIfNotExists};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::SnapshotError;

/// Objects at least this large are uploaded in parts.
const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// Size of one part of a multipart upload (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Where snapshots live: a local directory or an object store URL
/// (`s3://bucket/prefix`).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Backend>,
}

/// Overrides of the standard `AWS_*` environment variables for an S3 store
/// (the job file's `[checkpoint] s3_endpoint`, `s3_region`, `s3_allow_http`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreOptions {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

enum Backend {
    Local {
        root: PathBuf,
    },
    Remote {
        store: Arc<dyn ObjectStore>,
        /// `s3://bucket`, for messages.
        url: String,
        /// The prefix every key is put under (no leading or trailing `/`).
        prefix: String,
    },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.describe(""))
    }
}

/// Whether `location` names an object store rather than a directory.
pub fn is_remote_location(location: &str) -> bool {
    location.starts_with("s3://")
}

impl Store {
    /// Opens `location`: `s3://bucket[/prefix]` or a local directory (made
    /// if missing only when something is written).
    pub fn open(location: &str, options: &StoreOptions) -> Result<Store, SnapshotError> {
        let Some(rest) = location.strip_prefix("s3://") else {
            if location.contains("://") {
                return Err(SnapshotError::Incompatible(format!(
                    "snapshot location `{location}`: only local directories and s3:// URLs are supported"
                )));
            }
            return Ok(Store::local(Path::new(location)));
        };
        // One client per location and options: connections are pooled
        // per client, and tasks open their store at every snapshot.
        static OPEN: OnceLock<Mutex<HashMap<String, Store>>> = OnceLock::new();
        let cache_key = format!("{location}\n{options:?}");
        let open = OPEN.get_or_init(Default::default);
        if let Some(store) = open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
        {
            return Ok(store.clone());
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        if bucket.is_empty() {
            return Err(SnapshotError::Incompatible(format!(
                "snapshot location `{location}`: no bucket (expected s3://bucket/prefix)"
            )));
        }
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|why| {
                SnapshotError::Incompatible(format!("snapshot location `{location}`: {why}"))
            })?;
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if let Some(allow) = options.allow_http {
            builder = builder.with_allow_http(allow);
        }
        if let Some(id) = &options.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| {
            SnapshotError::Incompatible(format!("snapshot location `{location}`: {e}"))
        })?;
        let store = Store {
            inner: Arc::new(Backend::Remote {
                store: Arc::new(store),
                url: format!("s3://{bucket}"),
                prefix: prefix.to_string(),
            }),
        };
        open.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cache_key, store.clone());
        Ok(store)
    }

    /// A store in the local directory `root`.
    pub fn local(root: &Path) -> Store {
        Store {
            inner: Arc::new(Backend::Local {
                root: root.to_path_buf(),
            }),
        }
    }

    /// The same store with every key under `prefix` (a key itself).
    pub fn child(&self, prefix: &str) -> Result<Store, SnapshotError> {
        validate_key(prefix).map_err(|why| self.bad_key(prefix, why))?;
        let inner = match &*self.inner {
            Backend::Local { root } => Backend::Local {
                root: join_key(root, prefix),
            },
            Backend::Remote {
                store,
                url,
                prefix: p,
            } => Backend::Remote {
                store: store.clone(),
                url: url.clone(),
                prefix: if p.is_empty() {
                    prefix.to_string()
                } else {
                    format!("{p}/{prefix}")
                },
            },
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    pub fn is_local(&self) -> bool {
        matches!(&*self.inner, Backend::Local { .. })
    }

    /// The local directory of a local store.
    pub fn local_root(&self) -> Option<&Path> {
        match &*self.inner {
            Backend::Local { root } => Some(root),
            Backend::Remote { .. } => None,
        }
    }

    /// The full path or URL of `key`, for messages (`""`: the root).
    pub fn describe(&self, key: &str) -> String {
        match &*self.inner {
            Backend::Local { root } if key.is_empty() => root.display().to_string(),
            Backend::Local { root } => root.join(key).display().to_string(),
            Backend::Remote { url, prefix, .. } => {
                let mut s = url.clone();
                for part in [prefix.as_str(), key] {
                    if !part.is_empty() {
                        s.push('/');
                        s.push_str(part);
                    }
                }
                s
            }
        }
    }

    /// Writes `bytes` as `key`, replacing any object there, atomically.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), SnapshotError> {
        validate_key(key).map_err(|why| self.bad_key(key, why))?;
        match &*self.inner {
            Backend::Local { root } => {
                let path = join_key(root, key);
                let tmp = write_temp(&path, bytes)?;
                std::fs::rename(&tmp, &path).map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    SnapshotError::io(&path, e)
                })?;
                sync_parent(&path);
                Ok(())
            }
            Backend::Remote { store, .. } => {
                let (store, path) = (store.clone(), self.object_path(key)?);
                let payload = PutPayload::from(bytes.to_vec());
                run(async move { store.put(&path, payload).await.map(|_| ()) })
                    .map_err(|e| self.remote_error(key, e))
            }
        }
    }

    /// Writes `bytes` as `key` unless an object is there already (then
    /// nothing changes and the answer is `false`). Atomic against readers
    /// and against other writers of the same key.
    pub fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, SnapshotError> {
        validate_key(key).map_err(|why| self.bad_key(key, why))?;
        match &*self.inner {
            Backend::Local { root } => {
                let path = join_key(root, key);
                let tmp = write_temp(&path, bytes)?;
                let linked = std::fs::hard_link(&tmp, &path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        sync_parent(&path);
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(SnapshotError::io(&path, e)),
                }
            }
            Backend::Remote { store, .. } => {
                let path = self.object_path(key)?;
                let tmp = self.object_path(&temp_name(key))?;
                let store = store.clone();
                let payload = PutPayload::from(bytes.to_vec());
                let done = run(async move {
                    store.put(&tmp, payload).await?;
                    let copied = store.copy_if_not_exists(&tmp, &path).await;
                    // The temporary object goes whatever the copy did.
                    let _ = store.delete(&tmp).await;
                    match copied {
                        Ok(()) => Ok(true),
                        Err(
                            object_store::Error::AlreadyExists { .. }
                            | object_store::Error::Precondition { .. },
                        ) => Ok(false),
                        Err(e) => Err(e),
                    }
                });
                done.map_err(|e| self.remote_error(key, e))
            }
        }
    }

    /// The object `key`, or `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SnapshotError> {
        validate_key(key).map_err(|why| self.bad_key(key, why))?;
        match &*self.inner {
            Backend::Local { root } => {
                let path = join_key(root, key);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(SnapshotError::io(&path, e)),
                }
            }
            Backend::Remote { store, .. } => {
                let (store, path) = (store.clone(), self.object_path(key)?);
                let got = run(async move {
                    match store.get(&path).await {
                        Ok(r) => Ok(Some(r.bytes().await?.to_vec())),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                });
                got.map_err(|e| self.remote_error(key, e))
            }
        }
    }

    /// Every key under `prefix` (a key, or `""` for the whole store), at
    /// any depth, sorted. Temporary objects of unfinished writes are left
    /// out.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, SnapshotError> {
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|why| self.bad_key(prefix, why))?;
        }
        let mut keys = match &*self.inner {
            Backend::Local { root } => {
                let mut keys = Vec::new();
                list_local(root, &join_key(root, prefix), &mut keys)?;
                keys
            }
            Backend::Remote {
                store,
                prefix: root,
                ..
            } => {
                let store = store.clone();
                let full = self.object_path_unchecked(prefix)?;
                let listed = run(async move {
                    let mut out = Vec::new();
                    let mut stream = store.list(full.as_ref().map(|p| p as &ObjectPath));
                    while let Some(meta) = stream.next().await {
                        out.push(meta?.location.to_string());
                    }
                    Ok(out)
                })
                .map_err(|e| self.remote_error(prefix, e))?;
                listed
                    .into_iter()
                    .filter_map(|k| {
                        if root.is_empty() {
                            Some(k)
                        } else {
                            k.strip_prefix(root.as_str())?
                                .strip_prefix('/')
                                .map(String::from)
                        }
                    })
                    .collect()
            }
        };
        keys.retain(|k| !k.rsplit('/').next().is_some_and(is_temp_name));
        keys.sort();
        Ok(keys)
    }

    /// Deletes `key`; a missing object is no error.
    pub fn delete(&self, key: &str) -> Result<(), SnapshotError> {
        validate_key(key).map_err(|why| self.bad_key(key, why))?;
        match &*self.inner {
            Backend::Local { root } => {
                let path = join_key(root, key);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(SnapshotError::io(&path, e)),
                }
            }
            Backend::Remote { store, .. } => {
                let (store, path) = (store.clone(), self.object_path(key)?);
                run(async move {
                    match store.delete(&path).await {
                        Err(object_store::Error::NotFound { .. }) => Ok(()),
                        other => other,
                    }
                })
                .map_err(|e| self.remote_error(key, e))
            }
        }
    }

    /// Deletes every object under `prefix` (a key; never the whole store).
    pub fn delete_prefix(&self, prefix: &str) -> Result<(), SnapshotError> {
        let prefix = prefix.trim_end_matches('/');
        validate_key(prefix).map_err(|why| self.bad_key(prefix, why))?;
        match &*self.inner {
            Backend::Local { root } => {
                let path = join_key(root, prefix);
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(SnapshotError::io(&path, e)),
                }
            }
            Backend::Remote { store, .. } => {
                let store = store.clone();
                let full = self.object_path(prefix)?;
                run(async move {
                    let locations = store.list(Some(&full)).map(|m| m.map(|m| m.location));
                    let mut deleted = store.delete_stream(locations.boxed());
                    while let Some(result) = deleted.next().await {
                        match result {
                            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                })
                .map_err(|e| self.remote_error(prefix, e))
            }
        }
    }

    /// Uploads the local file `path` as `key` (in parts when large),
    /// replacing any object there.
    pub fn upload_file(&self, key: &str, path: &Path) -> Result<(), SnapshotError> {
        validate_key(key).map_err(|why| self.bad_key(key, why))?;
        match &*self.inner {
            Backend::Local { root } => {
                let target = join_key(root, key);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| SnapshotError::io(parent, e))?;
                }
                let tmp = temp_path(&target);
                std::fs::copy(path, &tmp).map_err(|e| SnapshotError::io(path, e))?;
                std::fs::rename(&tmp, &target).map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    SnapshotError::io(&target, e)
                })
            }
            Backend::Remote { store, .. } => {
                let size = std::fs::metadata(path)
                    .map_err(|e| SnapshotError::io(path, e))?
                    .len();
                if size < MULTIPART_THRESHOLD {
                    let bytes = std::fs::read(path).map_err(|e| SnapshotError::io(path, e))?;
                    return self.put(key, &bytes);
                }
                let (store, object) = (store.clone(), self.object_path(key)?);
                let mut file = std::fs::File::open(path).map_err(|e| SnapshotError::io(path, e))?;
                let source = path.to_path_buf();
                run(async move {
                    let upload = store.put_multipart(&object).await?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                    let mut buf = vec![0u8; PART_SIZE];
                    loop {
                        let n = match file.read(&mut buf) {
                            Ok(n) => n,
                            Err(e) => {
                                let _ = writer.abort().await;
                                return Err(object_store::Error::Generic {
                                    store: "local file",
                                    source: format!("{}: {e}", source.display()).into(),
                                });
                            }
                        };
                        if n == 0 {
                            break;
                        }
                        writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                        writer.write(&buf[..n]);
                    }
                    writer.finish().await.map(|_| ())
                })
                .map_err(|e| self.remote_error(key, e))
            }
        }
    }

    /// Downloads `key` into the local file `path` (written under a
    /// temporary name and renamed). A missing object is an error.
    pub fn download_file(&self, key: &str, path: &Path) -> Result<(), SnapshotError> {
        validate_key(key).map_err(|why| self.bad_key(key, why))?;
        let tmp = temp_path(path);
        let result = match &*self.inner {
            Backend::Local { root } => {
                let from = join_key(root, key);
                std::fs::copy(&from, &tmp)
                    .map(|_| ())
                    .map_err(|e| SnapshotError::io(&from, e))
            }
            Backend::Remote { store, .. } => {
                let (store, object) = (store.clone(), self.object_path(key)?);
                let mut out =
                    std::fs::File::create(&tmp).map_err(|e| SnapshotError::io(&tmp, e))?;
                let target = tmp.clone();
                run(async move {
                    let mut stream = store.get(&object).await?.into_stream();
                    while let Some(chunk) = stream.next().await {
                        out.write_all(&chunk?)
                            .map_err(|e| object_store::Error::Generic {
                                store: "local file",
                                source: format!("{}: {e}", target.display()).into(),
                            })?;
                    }
                    Ok(())
                })
                .map_err(|e| self.remote_error(key, e))
            }
        };
        let result = result
            .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| SnapshotError::io(path, e)));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn object_path(&self, key: &str) -> Result<ObjectPath, SnapshotError> {
        self.object_path_unchecked(key)?
            .ok_or_else(|| self.bad_key(key, "empty key".into()))
    }

    /// The object path of `key` under the prefix; `None` for the root of a
    /// store without prefix.
    fn object_path_unchecked(&self, key: &str) -> Result<Option<ObjectPath>, SnapshotError> {
        let Backend::Remote { prefix, .. } = &*self.inner else {
            return Ok(None);
        };
        let full = match (prefix.is_empty(), key.is_empty()) {
            (true, true) => return Ok(None),
            (true, false) => key.to_string(),
            (false, true) => prefix.clone(),
            (false, false) => format!("{prefix}/{key}"),
        };
        ObjectPath::parse(&full)
            .map(Some)
            .map_err(|e| self.bad_key(key, e.to_string()))
    }

    fn bad_key(&self, key: &str, why: String) -> SnapshotError {
        SnapshotError::Incompatible(format!(
            "invalid object key `{key}` in {}: {why}",
            self.describe("")
        ))
    }

    fn remote_error(&self, key: &str, e: object_store::Error) -> SnapshotError {
        SnapshotError::Io {
            path: self.describe(key),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

/// Checks a key: `/`-separated plain names.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty key".into());
    }
    if key.starts_with('/') {
        return Err("absolute key".into());
    }
    for part in key.split('/') {
        if part.is_empty() {
            return Err("empty path part".into());
        }
        if part == "." || part == ".." {
            return Err(format!("`{part}` is not allowed"));
        }
        if part.contains(['\\', '\0']) {
            return Err("backslash or NUL".into());
        }
    }
    Ok(())
}

fn join_key(root: &Path, key: &str) -> PathBuf {
    key.split('/')
        .filter(|p| !p.is_empty())
        .fold(root.to_path_buf(), |p, part| p.join(part))
}

/// Temporary names end in this, after a unique stem.
const TEMP_SUFFIX: &str = ".weir-tmp";

fn is_temp_name(name: &str) -> bool {
    name.ends_with(TEMP_SUFFIX)
}

fn temp_name(key: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{key}.{}-{nanos}-{}{TEMP_SUFFIX}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(temp_name(&name))
}

/// Writes `bytes` to a synced temporary file beside `path`.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, SnapshotError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| SnapshotError::io(parent, e))?;
    }
    let tmp = temp_path(path);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(SnapshotError::io(&tmp, e));
    }
    Ok(tmp)
}

/// Makes a rename or link durable; best effort (not every file system lets
/// a directory be opened for sync).
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

fn list_local(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), SnapshotError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            // A prefix that names a file lists that file.
            if let Ok(rel) = dir.strip_prefix(root) {
                out.push(rel_key(rel));
            }
            return Ok(());
        }
        Err(e) => return Err(SnapshotError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| SnapshotError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| SnapshotError::io(&path, e))?;
        if kind.is_dir() {
            list_local(root, &path, out)?;
        } else if kind.is_file()
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel_key(rel));
        }
    }
    Ok(())
}

fn rel_key(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The runtime every object store call runs on (two threads: the calls
/// are IO-bound, and parts of one upload go out concurrently).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-store")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the object store runtime: {e}"))
    })
}

/// Runs `future` on the store's runtime and waits for it: works from any
/// thread, including one inside another tokio runtime.
fn run<T: Send + 'static>(
    future: impl Future<Output = Result<T, object_store::Error>> + Send + 'static,
) -> Result<T, object_store::Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(object_store::Error::Generic {
            store: "weir",
            source: "the object store call was dropped (its task panicked)".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_relative_paths() {
        for good in ["a", "job/chk-00000001/_metadata", "a.b/c-d_e"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/a", "a//b", "a/", "..", "a/../b", "./a", "a\\b", "a\0b",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        let store = Store::local(Path::new("/tmp/x"));
        let e = store.put("../etc/passwd", b"x").unwrap_err().to_string();
        assert!(e.contains("invalid object key `../etc/passwd`"), "{e}");
        assert!(store.get("/etc/passwd").is_err());
        assert!(store.delete_prefix("").is_err());
        assert!(store.child("a/../..").is_err());
    }

    #[test]
    fn locations_are_parsed() {
        assert!(
            Store::open("/tmp/x", &StoreOptions::default())
                .unwrap()
                .is_local()
        );
        assert!(Store::open("gs://b/p", &StoreOptions::default()).is_err());
        assert!(Store::open("s3:///p", &StoreOptions::default()).is_err());
        assert!(Store::open("s3://b/../p", &StoreOptions::default()).is_err());
        let options = StoreOptions {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: Some("us-east-1".into()),
            allow_http: Some(true),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
        };
        let s3 = Store::open("s3://bucket/some/prefix/", &options).unwrap();
        assert!(!s3.is_local());
        assert_eq!(
            s3.describe("job/_metadata"),
            "s3://bucket/some/prefix/job/_metadata"
        );
        assert_eq!(
            s3.child("job").unwrap().describe("x"),
            "s3://bucket/some/prefix/job/x"
        );
        // (a real server is exercised by tests/s3.rs)
        assert_eq!(
            Store::open("s3://bucket", &options).unwrap().describe("k"),
            "s3://bucket/k"
        );
    }

    #[test]
    fn local_store_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
        assert_eq!(store.get("a/b").unwrap(), None);
        store.put("a/b", b"one").unwrap();
        store.put("a/b", b"two").unwrap();
        assert_eq!(store.get("a/b").unwrap().unwrap(), b"two");
        assert!(store.put_if_absent("a/c", b"first").unwrap());
        assert!(!store.put_if_absent("a/c", b"second").unwrap());
        assert_eq!(store.get("a/c").unwrap().unwrap(), b"first");
        store.put("z", b"z").unwrap();
        assert_eq!(store.list("").unwrap(), vec!["a/b", "a/c", "z"]);
        assert_eq!(store.list("a").unwrap(), vec!["a/b", "a/c"]);
        assert_eq!(store.list("a/").unwrap(), vec!["a/b", "a/c"]);
        assert!(store.list("missing").unwrap().is_empty());

        let src = tmp.path().join("src");
        std::fs::write(&src, vec![7u8; 100_000]).unwrap();
        store.upload_file("files/big", &src).unwrap();
        let back = tmp.path().join("back");
        store.download_file("files/big", &back).unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), vec![7u8; 100_000]);
        let e = store
            .download_file("files/none", &tmp.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("files/none"), "{e}");
        assert!(!tmp.path().join("none").exists());

        store.delete("a/b").unwrap();
        store.delete("a/b").unwrap();
        store.delete_prefix("files").unwrap();
        store.delete_prefix("files").unwrap();
        assert_eq!(store.list("").unwrap(), vec!["a/c", "back", "src", "z"]);
    }

    #[test]
    fn calls_work_inside_a_tokio_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::local(tmp.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            store.put("k", b"v").unwrap();
            assert_eq!(store.get("k").unwrap().unwrap(), b"v");
        });
        // The remote path goes through `run`; it must not panic either.
        let out = rt.block_on(async { run(async { Ok(5) }) }).unwrap();
        assert_eq!(out, 5);
    }
}
