//! The on-disk cache of compiled native code, authenticated.
//!
//! Loading a `.cwasm` file is an `unsafe` deserialize of machine code:
//! whoever can put a file in the cache directory could run native code in
//! every weir process that uses it. So each file starts with an
//! HMAC-SHA256 tag over its name and the native code, under a random key
//! that this host created in the cache directory (`cache.key`, a regular
//! file of mode 0600 owned by this user, made with `O_EXCL`). A file whose
//! tag does not verify is never deserialized: the caller recompiles and
//! overwrites it. The bytes that are verified are the bytes that are
//! deserialized (read once into memory), so the file cannot change between
//! the check and the load. Before that read, a file larger than its entry
//! can be (see [`CodeCache::load`]) or not a regular file is refused, and
//! it is opened without blocking (a FIFO under an entry's name would
//! otherwise hang the loader) and without following a symlink.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const KEY_FILE: &str = "cache.key";
const KEY_BYTES: usize = 32;
const TAG_BYTES: usize = 32;
/// Native code of one entry, at most, whatever the artifact: the largest
/// artifact (256 MiB) compiles to well under this.
pub(crate) const NATIVE_BYTES_MAX: u64 = 1 << 30;

/// The native code an artifact of `artifact_bytes` may compile to, at
/// most: Rust guests compile to about 2 to 4 times their size, Python and
/// JavaScript components less; 16 times plus 64 MiB leaves room for both.
pub(crate) fn native_bytes_max(artifact_bytes: usize) -> u64 {
    (artifact_bytes as u64)
        .saturating_mul(16)
        .saturating_add(64 << 20)
        .min(NATIVE_BYTES_MAX)
}

/// A cache directory and the key that authenticates its entries.
pub(crate) struct CodeCache {
    dir: PathBuf,
    key: [u8; KEY_BYTES],
}

impl CodeCache {
    /// Opens the cache in `dir`, creating the directory and its key on
    /// first use. Fails (and the caller compiles without a cache) when the
    /// key file exists but is not a 0600 regular file of ours.
    pub(crate) fn open(dir: &Path) -> Result<CodeCache, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create component cache {}: {e}", dir.display()))?;
        let key = read_or_create_key(&dir.join(KEY_FILE))?;
        Ok(CodeCache {
            dir: dir.to_path_buf(),
            key,
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn tag(&self, name: &str, native: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        // The name binds the entry to its artifact digest and engine: a
        // valid entry copied under another name does not verify.
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        mac.update(native);
        mac
    }

    /// The native code cached under `name`, if there is an entry of at
    /// most `native_max_bytes` (plus its tag) and it verifies. `Err`
    /// explains a rejected entry (for a warning); a missing entry is
    /// `Ok(None)`.
    pub(crate) fn load(
        &self,
        name: &str,
        native_max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, String> {
        let path = self.path(name);
        let mut file = match OpenOptions::new()
            .read(true)
            // Non-blocking: opening a FIFO for reading waits for a writer.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open: {e}")),
        };
        let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        let max_bytes = native_max_bytes.saturating_add(TAG_BYTES as u64);
        if meta.len() > max_bytes {
            return Err(format!(
                "{} bytes, more than an entry for this artifact can be ({max_bytes} bytes)",
                meta.len()
            ));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // The file may grow after the check: read one byte past the bound
        // at most.
        (&mut file)
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read: {e}"))?;
        if bytes.len() as u64 > max_bytes {
            return Err(format!("grew past {max_bytes} bytes while being read"));
        }
        if bytes.len() < TAG_BYTES {
            return Err("too short to carry an authentication tag".into());
        }
        let native = bytes.split_off(TAG_BYTES);
        self.tag(name, &native)
            .verify_slice(&bytes)
            .map_err(|_| "authentication tag does not match (not written by this host's weir)")?;
        Ok(Some(native))
    }

    /// Writes `native` under `name` with its tag, atomically (a temporary
    /// file renamed into place).
    pub(crate) fn store(&self, name: &str, native: &[u8]) -> Result<(), String> {
        let path = self.path(name);
        let tag = self.tag(name, native).finalize().into_bytes();
        let tmp = temp_path(&path);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&tag)?;
                f.write_all(native)
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
    }
}

/// Reads the cache key, or creates it if there is none. Creation writes a
/// private temporary file and links it into place, which fails if another
/// process got there first (then its key is read): no process ever reads a
/// half-written key.
fn read_or_create_key(path: &Path) -> Result<[u8; KEY_BYTES], String> {
    match read_key(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        other => return other.map_err(|e| format!("cache key {}: {e}", path.display())),
    }
    let mut key = [0u8; KEY_BYTES];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("cannot read /dev/urandom for a cache key: {e}"))?;
    let tmp = temp_path(path);
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
    let linked = created.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(path).map_err(|e| format!("cache key {}: {e}", path.display()))
        }
        Err(e) => Err(format!("cannot create cache key {}: {e}", path.display())),
    }
}

/// A fresh name beside `path` for a file written and then renamed or
/// linked into place (unique per process and call).
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_extension(format!("tmp{}-{n}", std::process::id()))
}

fn read_key(path: &Path) -> std::io::Result<[u8; KEY_BYTES]> {
    let refuse = |why: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why);
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse("is not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode != 0o600 {
        return Err(refuse(format!("has mode {mode:o}, not 600")));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(refuse(format!(
            "is owned by uid {}, not by this process's uid {uid}",
            meta.uid()
        )));
    }
    let mut key = [0u8; KEY_BYTES];
    file.read_exact(&mut key)?;
    if file.read(&mut [0u8; 1])? != 0 {
        return Err(refuse(format!("is longer than {KEY_BYTES} bytes")));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_a_forged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::open(dir.path()).unwrap();
        assert_eq!(cache.load("a.cwasm", 1 << 20).unwrap(), None);
        cache.store("a.cwasm", b"native code").unwrap();
        assert_eq!(
            cache.load("a.cwasm", 1 << 20).unwrap().unwrap(),
            b"native code"
        );

        // Another process of the same host shares the key.
        let again = CodeCache::open(dir.path()).unwrap();
        assert_eq!(
            again.load("a.cwasm", 1 << 20).unwrap().unwrap(),
            b"native code"
        );

        // Planted bytes, a valid entry under another name, a flipped bit.
        std::fs::write(dir.path().join("b.cwasm"), [7u8; 100]).unwrap();
        std::fs::copy(dir.path().join("a.cwasm"), dir.path().join("c.cwasm")).unwrap();
        let mut flipped = std::fs::read(dir.path().join("a.cwasm")).unwrap();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(dir.path().join("d.cwasm"), flipped).unwrap();
        std::fs::write(dir.path().join("e.cwasm"), b"short").unwrap();
        for name in ["b.cwasm", "c.cwasm", "d.cwasm", "e.cwasm"] {
            let err = cache.load(name, 1 << 20).unwrap_err();
            assert!(err.contains("tag"), "{name}: {err}");
        }
    }

    #[test]
    fn a_key_file_that_is_not_private_and_ours_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join(KEY_FILE);
        std::fs::write(&key, [1u8; KEY_BYTES]).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CodeCache::open(dir.path()).err().unwrap();
        assert!(err.contains("has mode 644, not 600"), "{err}");

        std::fs::remove_file(&key).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, [1u8; KEY_BYTES]).unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &key).unwrap();
        assert!(CodeCache::open(dir.path()).is_err(), "a symlinked key");

        std::fs::remove_file(&key).unwrap();
        std::fs::create_dir(&key).unwrap();
        assert!(CodeCache::open(dir.path()).is_err(), "a directory");
    }

    #[test]
    fn a_new_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        CodeCache::open(dir.path()).unwrap();
        let meta = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_BYTES as u64);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left");
    }

    const NAME: &str = "0123-abcd.cwasm";

    #[test]
    fn an_oversized_entry_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::open(dir.path()).unwrap();
        // Sparse: 64 GiB that would be read into memory whole.
        let file = File::create(cache.path(NAME)).unwrap();
        file.set_len(64 << 30).unwrap();
        let err = cache.load(NAME, 1 << 20).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{} bytes, more than an entry for this artifact can be ({} bytes)",
                64u64 << 30,
                (1 << 20) + TAG_BYTES
            )
        );
        // A genuine entry at the bound loads.
        cache.store(NAME, &vec![7u8; 1 << 20]).unwrap();
        assert!(cache.load(NAME, 1 << 20).unwrap().is_some());
        assert!(cache.load(NAME, (1 << 20) - 1).is_err());
    }

    #[test]
    fn a_fifo_or_directory_under_an_entry_name_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::open(dir.path()).unwrap();
        let fifo =
            std::ffi::CString::new(cache.path(NAME).into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(cache.load(NAME, 1 << 20).unwrap_err(), "not a regular file");
        std::fs::create_dir(cache.path("dir.cwasm")).unwrap();
        assert!(cache.load("dir.cwasm", 1 << 20).is_err());
    }

    #[test]
    fn the_native_bound_follows_the_artifact_up_to_a_ceiling() {
        assert_eq!(native_bytes_max(0), 64 << 20);
        assert_eq!(native_bytes_max(1 << 20), 80 << 20);
        assert_eq!(native_bytes_max(256 << 20), NATIVE_BYTES_MAX);
        assert_eq!(native_bytes_max(usize::MAX), NATIVE_BYTES_MAX);
    }
}
