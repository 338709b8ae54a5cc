//! Writing a private file (keys, tokens, certificates' keys, registry
//! entries) atomically: readers see the old content or the new, never a
//! part, and the file is never readable by anyone but its owner, not even
//! for a moment.
//!
//! The content goes to a fresh temporary name in the same directory,
//! created with `O_CREAT|O_EXCL` and mode 0600 (so it never follows a
//! planted symlink, never opens a file someone else made, and is never
//! chmod-ed after the fact), synced, then renamed over the target.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tries at most this many temporary names that exist already (left by a
/// crash, or planted) before giving up.
const TEMP_NAMES_MAX: u32 = 16;

/// Writes `bytes` to `path` atomically with mode 0600 (see the module
/// docs). The directory must exist. On error nothing is left behind and
/// `path` is untouched; the error names `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let (temp, mut file) = create_temp(path).map_err(named)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(named(e));
    }
    // The rename is durable once the directory is synced; a failure here
    // leaves the new content in place, so it is not an error.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A new file beside `path`, `.<name>.<unique>.tmp`, made with O_EXCL and
/// mode 0600.
fn create_temp(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut last = None;
    for _ in 0..TEMP_NAMES_MAX {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let unique = format!(
            "{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let temp = path.with_file_name(format!(".{}.{unique}.tmp", name.to_string_lossy()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_file_is_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write_private(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(mode(&path), 0o600);
        // An existing world-readable file is replaced by a private one.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(mode(&path), 0o600);
        // Nothing but the file is left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join("key");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_private(&path, b"secret").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let e = write_private(Path::new("/no/such/dir/key"), b"x").unwrap_err();
        assert!(e.to_string().starts_with("/no/such/dir/key: "), "{e}");
    }
}
