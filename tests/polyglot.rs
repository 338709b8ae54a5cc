//! Python and JavaScript operators (guest-sdk/python, guest-sdk/js) on the
//! real `weir` binary: the Python fraud detector gives the Rust one's output,
//! the JavaScript tokenizer the Rust one's word counts, a Rust → Python →
//! JavaScript job its golden output at parallelism 1 and 4, and misbehaving
//! Python and JavaScript guests fail their job with the operator's name and
//! the guest's message, within the call deadline.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// An example's job file with some lines replaced and its relative paths
/// made absolute, written to a temp dir; outputs go under `out`.
fn example_job(example: &str, replace: &[(&str, String)]) -> (tempfile::TempDir, PathBuf) {
    let dir = repo().join("examples").join(example);
    let mut text = std::fs::read_to_string(dir.join("job.toml")).expect("job file");
    for (from, to) in replace {
        assert!(text.contains(from), "{example}/job.toml has no {from:?}");
        text = text.replace(from, to);
    }
    // Sources and operators are read relative to the job file.
    let text = text
        .replace(
            "path = \"input.jsonl\"",
            &format!("path = \"{}\"", dir.join("input.jsonl").display()),
        )
        .replace(
            "path = \"transactions.jsonl\"",
            &format!("path = \"{}\"", dir.join("transactions.jsonl").display()),
        )
        .replace(
            "wasm = \"../../target/wasm/wasm32-wasip2/release/",
            &format!("wasm = \"{}/", guest_dir().display()),
        );
    job_file(&text)
}

fn run_job(job: &Path, out: &Path, parallelism: u32, backend: &str) -> String {
    let mut cmd = weir();
    cmd.arg("run")
        .arg(job)
        .args([
            "--parallelism",
            &parallelism.to_string(),
            "--state-backend",
            backend,
        ])
        .arg("--output-dir")
        .arg(out);
    let output = run_with_deadline(cmd, Duration::from_secs(300));
    let err = stderr(&output);
    assert!(
        output.status.success(),
        "{} p={parallelism} failed:\n{err}",
        job.display()
    );
    err
}

fn fraud_alerts(wasm: &str, parallelism: u32) -> Vec<String> {
    let (_dir, job) = example_job(
        "fraud-detection",
        &[("fraud_detector.wasm\"", format!("{wasm}.wasm\""))],
    );
    let out = tempfile::tempdir().unwrap();
    let summary = run_job(&job, out.path(), parallelism, "memory");
    assert!(summary.contains("late 1 (dropped)"), "{summary}");
    sorted_lines(&out.path().join("output/alerts.jsonl"))
}

#[test]
fn python_fraud_detector_gives_the_rust_ones_output() {
    guest_dir();
    let expected = sorted_lines(&repo().join("examples/fraud-detection/expected/alerts.jsonl"));
    let rust = fraud_alerts("fraud_detector", 1);
    assert_eq!(rust, expected, "the Rust detector's golden output");
    for parallelism in [1, 4] {
        let python = fraud_alerts("fraud_detector_py", parallelism);
        // Byte for byte: same JSON field order, same number formatting.
        assert_eq!(python, rust, "Python detector at p={parallelism}");
    }
}

#[test]
fn javascript_tokenizer_gives_the_rust_word_counts() {
    guest_dir();
    for parallelism in [1, 4] {
        let (_dir, job) = example_job(
            "wordcount",
            &[("tokenizer.wasm\"", "tokenizer_js.wasm\"".to_string())],
        );
        let out = tempfile::tempdir().unwrap();
        let summary = run_job(&job, out.path(), parallelism, "memory");
        assert!(summary.contains("late 5 (sent to .late)"), "{summary}");
        for file in ["counts.jsonl", "late.txt"] {
            assert_eq!(
                sorted_lines(&out.path().join("output").join(file)),
                sorted_lines(&repo().join("examples/wordcount/expected").join(file)),
                "JS tokenizer at p={parallelism}: {file}"
            );
        }
    }
}

fn polyglot(parallelism: u32, backend: &str) {
    guest_dir();
    let (_dir, job) = example_job("polyglot", &[]);
    let out = tempfile::tempdir().unwrap();
    let summary = run_job(&job, out.path(), parallelism, backend);
    assert_eq!(
        sorted_lines(&out.path().join("output/totals.jsonl")),
        sorted_lines(&repo().join("examples/polyglot/expected/totals.jsonl")),
        "polyglot p={parallelism} {backend}"
    );
    assert!(summary.contains("operator total"), "{summary}");
}

#[test]
fn polyglot_job_p1_memory() {
    polyglot(1, "memory");
}

#[test]
fn polyglot_job_p4_memory() {
    polyglot(4, "memory");
}

#[test]
fn polyglot_job_p4_rocksdb() {
    polyglot(4, "rocksdb");
}

/// A generator feeding guest `wasm` as operator `villain`; the job must
/// fail, naming the operator, without a host panic. Returns stderr.
fn villain_fails(wasm: &str, extra: &str) -> String {
    let job = format!(
        r#"
[job]
name = "hostile"

[[source]]
name = "numbers"
kind = "generator"
records = 100
keys = 4

[[operator]]
name = "villain"
wasm = "{wasm}"
input = "numbers"
{extra}

[[sink]]
name = "out"
kind = "stdout"
input = "villain"
"#,
        wasm = guest(wasm).display()
    );
    let (_dir, path) = job_file(&job);
    let mut cmd = weir();
    cmd.arg("run").arg(&path);
    let out = run_with_deadline(cmd, Duration::from_secs(120));
    let err = stderr(&out);
    assert!(!out.status.success(), "the job should fail:\n{err}");
    assert!(!err.contains("thread '"), "the host must not panic:\n{err}");
    assert!(
        err.contains("`villain"),
        "the error names the operator:\n{err}"
    );
    err
}

#[test]
fn python_exception_reports_operator_and_message() {
    let err = villain_fails("hostile_py", "config = { behavior = \"exception\" }");
    assert!(
        err.contains(
            "failed in `process`: ValueError: the python operator failed on purpose (at hostile.py:"
        ),
        "{err}"
    );
    let err = villain_fails(
        "hostile_py",
        "config = { behavior = \"exception\", on = \"open\" }",
    );
    assert!(
        err.contains("failed in `open`: ValueError: the python operator failed on purpose"),
        "{err}"
    );
}

#[test]
fn javascript_exception_reports_operator_and_message() {
    let err = villain_fails("hostile_js", "config = { behavior = \"exception\" }");
    assert!(
        err.contains(
            "failed in `process`: RangeError: the javascript operator failed on purpose (at "
        ),
        "{err}"
    );
    let err = villain_fails("hostile_js", "config = { behavior = \"throw-string\" }");
    assert!(
        err.contains("failed in `process`: uncaught exception: a bare string thrown on purpose"),
        "{err}"
    );
}

#[test]
fn python_infinite_loop_is_stopped_by_the_deadline() {
    let err = villain_fails(
        "hostile_py",
        "call_timeout_ms = 300\nconfig = { behavior = \"infinite-loop\" }",
    );
    assert!(err.contains("call deadline of 300 ms"), "{err}");
}

#[test]
fn javascript_infinite_loop_is_stopped_by_the_deadline() {
    let err = villain_fails(
        "hostile_js",
        "call_timeout_ms = 300\nconfig = { behavior = \"infinite-loop\" }",
    );
    assert!(err.contains("call deadline of 300 ms"), "{err}");
}

#[test]
fn python_sleep_is_refused() {
    let err = villain_fails("hostile_py", "config = { behavior = \"sleep\" }");
    assert!(err.contains("tried to sleep or wait on a clock"), "{err}");
}

#[test]
fn compile_time_is_logged_and_the_second_start_loads_from_the_cache() {
    let wasm = guest("hostile_js");
    let cache = tempfile::tempdir().unwrap();
    let start = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.arg("--cache-dir").arg(cache.path());
        let (_dir, job) = job_file(&format!(
            "[job]\nname = \"v\"\n[[source]]\nname = \"s\"\nkind = \"generator\"\nrecords = 1\n\
             [[operator]]\nname = \"op\"\nwasm = \"{}\"\ninput = \"s\"\n\
             [[sink]]\nname = \"o\"\nkind = \"stdout\"\ninput = \"op\"\n",
            wasm.display()
        ));
        cmd.arg("run").arg(&job);
        let out = run_with_deadline(cmd, Duration::from_secs(300));
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    let first = start();
    assert!(
        first.contains(&format!("compiled {}", wasm.display())) && first.contains(" ms"),
        "{first}"
    );
    let second = start();
    assert!(
        second.contains(&format!("loaded {}", wasm.display())) && second.contains("from cache in"),
        "{second}"
    );
}
