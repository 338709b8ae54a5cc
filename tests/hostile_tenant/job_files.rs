//! Attacks: job files (see ../hostile_tenant.rs). A job file that asks for
//! unbounded resources, smuggles a NUL or a path into a name, or points a
//! source at a device or at a file with an endless line is refused with the
//! file, the line and the field, without a panic and within seconds.
//!
//! Each command runs with the job's temporary directory as its current
//! directory, so the job's own paths lie inside the default data root.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `weir <args...> job.toml` in the job's directory and expects it to
/// fail cleanly; returns its stderr.
fn refused(dir: &Path, args: &[&str]) -> String {
    let mut cmd = weir();
    cmd.current_dir(dir).args(args).arg("job.toml");
    let out: Output = run_with_deadline(cmd, DEADLINE);
    let err = stderr(&out);
    assert!(!out.status.success(), "accepted:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.len() < 16 << 10, "{} bytes of stderr", err.len());
    println!("weir {}: {err}", args.join(" "));
    err
}

/// A job reading `source` (a TOML table body) into a discarding sink.
fn job(job_table: &str, source: &str) -> String {
    format!(
        "[job]\n{job_table}\n\n[[source]]\nname = \"input\"\n{source}\n\n[[sink]]\nname = \"out\"\nkind = \"discard\"\ninput = \"input\"\n"
    )
}

#[test]
fn a_huge_channel_capacity_is_refused_with_line_and_field() {
    let (dir, _) = job_file(&job(
        "name = \"greedy\"\nchannel_batches_max = 1000000000000",
        "kind = \"generator\"\nrecords = 10",
    ));
    for command in ["validate", "run"] {
        let err = refused(dir.path(), &[command]);
        assert!(
            err.contains("job.toml:3: [job] field `channel_batches_max` = 1000000000000 is out of range: it must be between 1 and 1024"),
            "{err}"
        );
    }
}

#[test]
fn a_nul_or_a_path_in_a_job_name_is_refused() {
    for (name, shown) in [("a\\u0000b", "a\\u{0}b"), ("../x", "../x")] {
        let (dir, _) = job_file(&job(
            &format!("name = \"{name}\""),
            "kind = \"generator\"\nrecords = 10",
        ));
        for command in ["validate", "run"] {
            let err = refused(dir.path(), &[command]);
            assert!(
                err.contains(&format!(
                    "job.toml:2: [job] job name `{shown}` must be 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
                )),
                "{err}"
            );
        }
    }
}

#[test]
fn a_file_source_on_a_device_is_refused() {
    let (dir, _) = job_file(&job(
        "name = \"zeros\"",
        "kind = \"file\"\npath = \"/dev/zero\"",
    ));
    // Outside the data roots, the path itself is refused first.
    let err = refused(dir.path(), &["run"]);
    assert!(
        err.contains(
            "job.toml:7: source `input` field `path`: /dev/zero is outside the allowed data roots"
        ),
        "{err}"
    );
    // Allowed to read /dev, the source still opens regular files only.
    let err = refused(dir.path(), &["run", "--read-root", "/dev"]);
    assert!(
        err.contains("source file /dev/zero is a device, not a regular file; a file source reads regular files only"),
        "{err}"
    );
}

#[test]
fn a_large_file_whose_last_line_has_no_newline_is_refused() {
    let (dir, _) = job_file(&job(
        "name = \"endless\"",
        "kind = \"file\"\npath = \"in.txt\"",
    ));
    let mut text = "a short line\n".repeat(10);
    text.push_str(&"x".repeat(20 << 20));
    std::fs::write(dir.path().join("in.txt"), text).unwrap();
    let err = refused(dir.path(), &["run"]);
    assert!(
        err.contains("in.txt:11: line longer than max_line_bytes (1048576)"),
        "{err}"
    );
    // With a larger bound, the same file is read to its end.
    let (dir2, _) = job_file(&job(
        "name = \"endless\"",
        "kind = \"file\"\npath = \"in.txt\"\nmax_line_bytes = 33554432",
    ));
    std::fs::rename(dir.path().join("in.txt"), dir2.path().join("in.txt")).unwrap();
    let mut cmd = weir();
    cmd.current_dir(dir2.path()).args(["run", "job.toml"]);
    let out = run_with_deadline(cmd, DEADLINE);
    assert!(out.status.success(), "{}", stderr(&out));
}
