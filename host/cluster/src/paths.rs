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

use weir_core::data_roots::{Access, DataRoots};
use weir_core::job::{JobError, JobSpec};

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
    Ok(())
}

/// Checks a snapshot a job starts from (read) or a directory a savepoint
/// goes to (written), given over REST or in a deployment.
pub fn check_dir(
    roots: &DataRoots,
    what: &str,
    dir: &std::path::Path,
    access: Access,
) -> Result<(), String> {
    roots
        .check(dir, access)
        .map(|_| ())
        .map_err(|reason| weir_core::text::cut_message(&format!("{what}: {reason}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &std::path::Path, sink: &str) -> JobSpec {
        let text = format!(
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
        );
        weir_core::job::parse(&text, &dir.join("job.toml")).unwrap()
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
