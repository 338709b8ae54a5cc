//! The job registry: one file per running job, `<jobs dir>/<job>.json`,
//! holding the address of its control API and the token that API requires.
//!
//! The token is the only thing between another local user and `weir stop`,
//! so the file is created with mode 0600 from the start
//! ([`weir_core::private_file::write_private`]: a new file opened with
//! `O_CREAT|O_EXCL` and that mode, then renamed into place; never a chmod
//! after a write, which would leave a window) in a directory made with mode
//! 0700. A job name becomes a file name only when it is a valid
//! job name, one plain path part.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use weir_core::job::job_name_problem;

/// Bytes of random token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Largest registry file read back (a registration is a few hundred bytes).
const REGISTRY_BYTES_MAX: u64 = 64 << 10;

/// What a running job writes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub job: String,
    /// The control API's base URL, e.g. `http://127.0.0.1:41234`.
    pub api: String,
    pub pid: u32,
    /// The bearer token the control API requires.
    pub token: String,
}

/// A fresh random token from the operating system's generator, as hex.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot get random bytes for the control API token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `<jobs_dir>/<job>.json`, if `job` is a valid job name (the job-file
/// parser's rule: one plain path part, no `..`, separator or NUL), which
/// also makes it one plain URL path segment.
pub fn registry_file(jobs_dir: &Path, job: &str) -> anyhow::Result<PathBuf> {
    if let Some(problem) = job_name_problem(job) {
        bail!("{problem}; it cannot name a registry file");
    }
    Ok(jobs_dir.join(format!("{job}.json")))
}

/// Writes `registration` as the registry file of its job, mode 0600,
/// replacing an earlier one atomically; returns its path.
pub fn write(jobs_dir: &Path, registration: &Registration) -> anyhow::Result<PathBuf> {
    let path = registry_file(jobs_dir, &registration.job)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(jobs_dir)
        .with_context(|| format!("cannot create the jobs directory {}", jobs_dir.display()))?;
    let bytes = serde_json::to_vec_pretty(registration)?;
    weir_core::private_file::write_private(&path, &bytes)
        .with_context(|| format!("cannot write the job registration {}", path.display()))?;
    Ok(path)
}

/// The registration of `job` under `jobs_dir`.
pub fn read(jobs_dir: &Path, job: &str) -> anyhow::Result<Registration> {
    let path = registry_file(jobs_dir, job)?;
    let file = std::fs::File::open(&path).with_context(|| {
        format!(
            "no running job `{job}` is registered in {} (is it running on this machine?)",
            jobs_dir.display()
        )
    })?;
    let mut text = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, REGISTRY_BYTES_MAX + 1),
        &mut text,
    )
    .with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() as u64 > REGISTRY_BYTES_MAX {
        bail!(
            "{}: over {REGISTRY_BYTES_MAX} bytes, not a job registration",
            path.display()
        );
    }
    let registration: Registration = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a job registration", path.display()))?;
    Ok(registration)
}

/// Removes `path` if it still holds `ours` (a later run of the same job may
/// have replaced it).
pub fn remove_if_ours(path: &Path, ours: &Registration) {
    let still_ours = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Registration>(&bytes).ok())
        .is_some_and(|r| r == *ours);
    if still_ours {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn registration(job: &str) -> Registration {
        Registration {
            job: job.into(),
            api: "http://127.0.0.1:1".into(),
            pid: 1,
            token: new_token().unwrap(),
        }
    }

    #[test]
    fn tokens_are_256_random_bits() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_file_is_private_from_its_creation_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("state/jobs");
        let ours = registration("wordcount");
        let path = write(&jobs, &ours).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&jobs), 0o700);
        assert_eq!(read(&jobs, "wordcount").unwrap(), ours);
        // A rewrite replaces the file (and stays private); no temp is left.
        let newer = registration("wordcount");
        write(&jobs, &newer).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_dir(&jobs).unwrap().count(), 1);
        remove_if_ours(&path, &ours);
        assert!(path.exists(), "a newer run's file is not removed");
        remove_if_ours(&path, &newer);
        assert!(!path.exists());
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("j.json")).unwrap();
        write(dir.path(), &registration("j")).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn names_that_are_not_one_plain_path_part_are_refused() {
        let dir = Path::new("/jobs");
        for bad in [
            "",
            "../x",
            "a/b",
            ".",
            "..",
            ".hidden",
            "a\0b",
            &"x".repeat(65),
        ] {
            let err = registry_file(dir, bad).unwrap_err().to_string();
            assert!(
                err.contains("cannot name a registry file"),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(
            registry_file(dir, "word-count_2.v1").unwrap(),
            Path::new("/jobs/word-count_2.v1.json")
        );
    }

    #[test]
    fn an_oversized_file_is_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.json"), vec![b' '; 1 << 20]).unwrap();
        let err = read(dir.path(), "big").unwrap_err().to_string();
        assert!(err.contains("not a job registration"), "{err}");
    }
}
