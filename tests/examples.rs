//! Golden-output tests: each example, at parallelism 1 and 4, on both state
//! backends, through the real `weir` binary.

mod common;

use std::time::Duration;

use common::*;

fn run_example(example: &str, parallelism: u32, backend: &str) -> (tempfile::TempDir, String) {
    guest_dir();
    let out = tempfile::tempdir().unwrap();
    let mut cmd = weir();
    cmd.arg("run")
        .arg(repo().join("examples").join(example).join("job.toml"))
        .args([
            "--parallelism",
            &parallelism.to_string(),
            "--state-backend",
            backend,
        ])
        .arg("--output-dir")
        .arg(out.path());
    let output = run_with_deadline(cmd, Duration::from_secs(120));
    let err = stderr(&output);
    assert!(
        output.status.success(),
        "{example} p={parallelism} {backend} failed:\n{err}"
    );
    (out, err)
}

fn assert_golden(example: &str, out: &std::path::Path, file: &str) {
    let expected = sorted_lines(
        &repo()
            .join("examples")
            .join(example)
            .join("expected")
            .join(file),
    );
    let actual = sorted_lines(&out.join("output").join(file));
    assert_eq!(
        actual, expected,
        "{example}: output/{file} differs from expected/{file}"
    );
}

fn wordcount(parallelism: u32, backend: &str) {
    let (out, summary) = run_example("wordcount", parallelism, backend);
    assert_golden("wordcount", out.path(), "counts.jsonl");
    assert_golden("wordcount", out.path(), "late.txt");
    assert!(
        summary.contains("late 5 (sent to .late)"),
        "summary reports late records:\n{summary}"
    );
}

fn fraud(parallelism: u32, backend: &str) {
    let (out, summary) = run_example("fraud-detection", parallelism, backend);
    assert_golden("fraud-detection", out.path(), "alerts.jsonl");
    assert!(
        summary.contains("late 1 (dropped)"),
        "summary reports the late transaction:\n{summary}"
    );
}

#[test]
fn wordcount_p1_memory() {
    wordcount(1, "memory");
}

#[test]
fn wordcount_p4_memory() {
    wordcount(4, "memory");
}

#[test]
fn wordcount_p1_rocksdb() {
    wordcount(1, "rocksdb");
}

#[test]
fn wordcount_p4_rocksdb() {
    wordcount(4, "rocksdb");
}

#[test]
fn fraud_detection_p1_memory() {
    fraud(1, "memory");
}

#[test]
fn fraud_detection_p4_memory() {
    fraud(4, "memory");
}

#[test]
fn fraud_detection_p1_rocksdb() {
    fraud(1, "rocksdb");
}

#[test]
fn fraud_detection_p4_rocksdb() {
    fraud(4, "rocksdb");
}
