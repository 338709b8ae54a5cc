//! Data roots on cluster nodes: which paths of a job a node checks.
//!
//! The coordinator checks a job's paths at submission (and every savepoint
//! directory given over REST); each worker checks them again against its
//! own roots before it runs its share (defence in depth: a worker's roots
//! are its operator's word, whatever the coordinator allowed).
//!
//! Operator `wasm` paths are left out: on a cluster nobody opens them. The
//! CLI uploads each operator's bytes from the submitter's machine, the
//! coordinator resolves artifacts by name or digest in its own store, and a
//! worker runs the copy it fetched into its work directory.

use std::path::{Path, PathBuf};

use weir_core::data_roots::{Access, DataRoots};
use weir_core::job::{JobError, JobSpec};

/// Longest job-file path a submission may name (Linux's `PATH_MAX`).
pub const JOB_PATH_BYTES_MAX: usize = 4096;

/// `roots` with weir's own directories and files on this node carved out
/// (certificates and keys, the token file, data and work directories with
/// artifacts and the compiled-code cache and its key). They often lie
/// inside a root: `weir cluster up` keeps `.weir/cluster` under the
/// directory it allows jobs to use.
pub fn without_own(roots: &DataRoots, own: &[PathBuf]) -> anyhow::Result<DataRoots> {
    let mut roots = roots.clone();
    for path in own {
        roots
            .deny(path)
            .map_err(|e| anyhow::anyhow!("cannot keep jobs out of {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// Checks the job file's path a submission names: relative paths in the
/// job resolve against its directory, which must mean the same on every
/// node, so it must be absolute (and of a sane length).
pub fn check_job_path(path: &Path) -> Result<(), String> {
    let bytes = path.as_os_str().len();
    if bytes > JOB_PATH_BYTES_MAX {
        return Err(format!(
            "job_path is {bytes} bytes; the limit is {JOB_PATH_BYTES_MAX}"
        ));
    }
    if !path.is_absolute() {
        return Err(format!(
            "job_path {} is relative; send the job file's absolute path (its directory must be on storage every node sees)",
            weir_core::text::cut(&path.display().to_string(), 256)
        ));
    }
    Ok(())
}

/// Parses a job file sent to this node and folds `.` and `..` in its
/// paths lexically, as `weir run` does before it checks them (a job in
/// `examples/x` names `../../target/...`): the same job file passes or
/// fails the data-root check alike embedded and on a cluster, and the
/// path a connector opens is the path that was checked.
pub fn parse_job(text: &str, job_path: &Path) -> Result<JobSpec, JobError> {
    let mut job = weir_core::job::parse(text, job_path)?;
    weir_core::data_roots::clean_job_paths(&mut job);
    Ok(job)
}

/// The first path of `spec` (besides operator artifacts) outside `roots`,
/// as a job-file error naming the line and field.
pub fn check_job_paths(spec: &JobSpec, roots: &DataRoots) -> Result<(), JobError> {
    for u in spec.path_uses() {
        if u.field.starts_with("operator ") {
            continue;
        }
        roots.check(&u.path, u.access).map_err(|reason| JobError {
            file: spec.file.clone(),
            line: Some(u.line),
            message: weir_core::text::cut_message(&format!("{}: {reason}", u.field)),
        })?;
    }
    // An object store the coordinator cannot make a client for fails the
    // submission, not the first checkpoint.
    if let Some(c) = &spec.checkpoint
        && let Err(e) = weir_snapshot::CheckpointStorage::open(
            &c.dir,
            &spec.name,
            &weir_runtime::store_options(spec),
        )
    {
        return Err(JobError {
            file: spec.file.clone(),
            line: Some(c.dir_line),
            message: weir_core::text::cut_message(&format!(
                "checkpoint dir {}: {e}",
                c.dir.display()
            )),
        });
    }
    Ok(())
}

/// Checks a snapshot a job starts from (read) or a directory a savepoint
/// goes to (written), given over REST or in a deployment; returns it
/// resolved (symlinks followed), which is what the node then uses.
pub fn check_dir(
    roots: &DataRoots,
    what: &str,
    dir: &Path,
    access: Access,
) -> Result<PathBuf, String> {
    roots
        .check(dir, access)
        .map_err(|reason| weir_core::text::cut_message(&format!("{what}: {reason}")))
}

/// A savepoint directory asked for over REST: absolute (a relative one
/// would mean the coordinator's working directory here and each worker's
/// there), inside the coordinator's roots. Returns the resolved path, the
/// one sent on to the workers.
pub fn check_savepoint_dir(roots: &DataRoots, dir: &Path) -> Result<PathBuf, String> {
    if !dir.is_absolute() && !weir_snapshot::remote::is_remote(dir) {
        return Err(weir_core::text::cut_message(&format!(
            "savepoint dir: {} is relative; give an absolute path (workers resolve paths against their own working directories)",
            dir.display()
        )));
    }
    check_dir(roots, "savepoint dir", dir, Access::ReadWrite)
}

/// A snapshot directory the coordinator sent to worker `worker`: it must
/// be absolute and inside this worker's own roots, whatever the
/// coordinator allowed.
pub fn check_snapshot_dir(roots: &DataRoots, worker: &str, dir: &Path) -> Result<PathBuf, String> {
    let refuse = |reason: String| {
        weir_core::text::cut_message(&format!(
            "worker `{worker}` refuses to write the snapshot: {reason}"
        ))
    };
    // An object store URL (`s3://`) is checked by `roots.check` alone.
    if !dir.is_absolute() && !weir_snapshot::remote::is_remote(dir) {
        return Err(refuse(format!(
            "snapshot dir {} is relative",
            dir.display()
        )));
    }
    roots
        .check(dir, Access::ReadWrite)
        .map_err(|reason| refuse(format!("snapshot dir: {reason}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &std::path::Path, sink: &str) -> JobSpec {
        weir_core::job::parse(&job_text(sink), &dir.join("job.toml")).unwrap()
    }

    fn job_text(sink: &str) -> String {
        format!(
            r#"[job]
name = "j"

[[source]]
name = "in"
kind = "generator"
records = 1

[[operator]]
name = "op"
wasm = "/nowhere/op.wasm"
input = "in"

[[sink]]
name = "out"
kind = "file"
input = "op"
path = "{sink}"
"#
        )
    }

    #[test]
    fn a_sink_outside_the_roots_is_refused_with_line_and_field() {
        let root = tempfile::tempdir().unwrap();
        let roots = DataRoots::new(&[root.path().to_path_buf()], &[]).unwrap();
        let inside = root.path().join("out.txt");
        // The operator's wasm path is outside, and not checked.
        check_job_paths(&job(root.path(), &inside.display().to_string()), &roots).unwrap();
        let error = check_job_paths(&job(root.path(), "/root/.probe.txt"), &roots)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("job.toml:18: sink `out` field `path`: /root/.probe.txt"),
            "{error}"
        );
        assert!(error.contains("outside the allowed data roots"), "{error}");
    }

    #[test]
    fn weir_own_files_inside_a_root_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let certs = root.path().join(".weir/cluster");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::write(certs.join("token"), "secret").unwrap();
        let roots = DataRoots::new(&[root.path().to_path_buf()], &[]).unwrap();
        let token = certs.join("token");
        // Without the carve-out, the root lets a job at the token.
        check_job_paths(&job(root.path(), &token.display().to_string()), &roots).unwrap();
        let roots = without_own(&roots, &[certs.clone(), root.path().join("work")]).unwrap();
        let error = check_job_paths(&job(root.path(), &token.display().to_string()), &roots)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is inside weir's own directory"), "{error}");
        // Not even a directory holding them may be written (or pruned).
        let error = check_dir(&roots, "savepoint dir", root.path(), Access::ReadWrite).unwrap_err();
        assert!(error.contains("contains weir's own directory"), "{error}");
        // A work dir not made yet is carved out as well.
        let error = check_dir(
            &roots,
            "savepoint dir",
            &root.path().join("work/artifacts"),
            Access::ReadWrite,
        )
        .unwrap_err();
        assert!(error.contains("is inside weir's own directory"), "{error}");
        let beside = root.path().join("out.txt");
        check_job_paths(&job(root.path(), &beside.display().to_string()), &roots).unwrap();
    }

    #[test]
    fn a_job_path_must_be_absolute_and_bounded() {
        check_job_path(std::path::Path::new("/srv/jobs/job.toml")).unwrap();
        let error = check_job_path(std::path::Path::new("jobs/job.toml")).unwrap_err();
        assert!(
            error.starts_with("job_path jobs/job.toml is relative"),
            "{error}"
        );
        let long = format!("/{}", "a".repeat(JOB_PATH_BYTES_MAX));
        let error = check_job_path(std::path::Path::new(&long)).unwrap_err();
        assert_eq!(error, "job_path is 4097 bytes; the limit is 4096");
    }

    #[test]
    fn savepoint_dirs_must_be_absolute_and_are_sent_on_resolved() {
        let root = tempfile::tempdir().unwrap();
        let roots = DataRoots::new(&[root.path().to_path_buf()], &[]).unwrap();
        let error = check_savepoint_dir(&roots, std::path::Path::new("sp")).unwrap_err();
        assert!(
            error.starts_with("savepoint dir: sp is relative"),
            "{error}"
        );
        std::fs::create_dir(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink(root.path().join("real"), root.path().join("link")).unwrap();
        let resolved = check_savepoint_dir(&roots, &root.path().join("link/sp")).unwrap();
        assert_eq!(
            resolved,
            root.path().canonicalize().unwrap().join("real/sp")
        );
    }

    #[test]
    fn a_worker_refuses_a_snapshot_dir_outside_its_roots_by_name() {
        let root = tempfile::tempdir().unwrap();
        let roots = DataRoots::new(&[root.path().to_path_buf()], &[]).unwrap();
        check_snapshot_dir(&roots, "worker-1", &root.path().join("chk-1")).unwrap();
        let error =
            check_snapshot_dir(&roots, "worker-1", std::path::Path::new("/etc/sp")).unwrap_err();
        assert!(
            error.starts_with(
                "worker `worker-1` refuses to write the snapshot: snapshot dir: /etc/sp is outside the allowed data roots"
            ),
            "{error}"
        );
        let error = check_snapshot_dir(&roots, "worker-1", std::path::Path::new("sp")).unwrap_err();
        assert_eq!(
            error,
            "worker `worker-1` refuses to write the snapshot: snapshot dir sp is relative"
        );
    }

    #[test]
    fn dot_dots_are_folded_as_embedded_runs_do_before_the_check() {
        let root = tempfile::tempdir().unwrap();
        let jobs = root.path().join("jobs/wordcount");
        std::fs::create_dir_all(&jobs).unwrap();
        let roots = DataRoots::new(&[root.path().to_path_buf()], &[]).unwrap();
        let source = job_text("../../out/words.txt");
        let raw = weir_core::job::parse(&source, &jobs.join("job.toml")).unwrap();
        assert!(check_job_paths(&raw, &roots).is_err());
        let cleaned = parse_job(&source, &jobs.join("job.toml")).unwrap();
        check_job_paths(&cleaned, &roots).unwrap();
        // Climbing out of the root is still refused.
        let cleaned = parse_job(&job_text("../../../out.txt"), &jobs.join("job.toml")).unwrap();
        let error = check_job_paths(&cleaned, &roots).unwrap_err().to_string();
        assert!(
            error.contains("is outside the allowed data roots"),
            "{error}"
        );
    }

    #[test]
    fn a_savepoint_dir_outside_is_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        let roots = DataRoots::new(&[root.path().to_path_buf()], &[]).unwrap();
        check_dir(
            &roots,
            "savepoint dir",
            &root.path().join("sp"),
            Access::ReadWrite,
        )
        .unwrap();
        let error = check_dir(
            &roots,
            "savepoint dir",
            std::path::Path::new("/tmp/../etc"),
            Access::ReadWrite,
        )
        .unwrap_err();
        assert!(
            error.starts_with("savepoint dir: /tmp/../etc contains `..`"),
            "{error}"
        );
    }
}
