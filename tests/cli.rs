//! The command line as a newcomer meets it: help, validation, and errors in
//! job files that point at the line at fault.

mod common;

use std::time::Duration;

use common::*;

fn run(args: &[&str]) -> std::process::Output {
    let mut cmd = weir();
    cmd.args(args);
    run_with_deadline(cmd, Duration::from_secs(60))
}

#[test]
fn help_explains_the_commands() {
    let out = run(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in ["run", "validate", "job file"] {
        assert!(text.contains(word), "--help mentions {word}:\n{text}");
    }
}

#[test]
fn validate_accepts_the_examples() {
    guest_dir();
    for example in ["wordcount", "fraud-detection"] {
        let job = repo().join("examples").join(example).join("job.toml");
        let out = run(&["validate", job.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("is valid"));
    }
}

fn job_error(text: &str) -> String {
    let (_dir, path) = job_file(text);
    let out = run(&["validate", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn job_file_errors_name_the_line_and_field() {
    let err = job_error("[job]\nname = \"x\"\nparallelism = \"four\"\n");
    assert!(err.contains("job.toml:3:"), "{err}");
    let err = job_error(
        "[job]\nname = \"x\"\n[[source]]\nname = \"s\"\nkind = \"file\"\npath = \"in\"\n[[sink]]\nname = \"o\"\nkind = \"stdout\"\ninput = \"nope\"\n",
    );
    assert!(
        err.contains("job.toml:10:") && err.contains("input `nope` names no source or operator"),
        "{err}"
    );
    let err = job_error("this is not toml");
    assert!(err.contains("job.toml:1:"), "{err}");
}

#[test]
fn missing_job_file_is_a_clear_error() {
    let out = run(&["run", "/nonexistent/job.toml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/job.toml: cannot read job file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_input_data_names_the_file_and_line() {
    let (dir, path) = job_file(&format!(
        r#"
[job]
name = "bad-input"
[[source]]
name = "lines"
kind = "file"
path = "input.jsonl"
format = "jsonl"
timestamp_field = "ts"
[[operator]]
name = "tokenize"
wasm = "{}"
input = "lines"
[[sink]]
name = "out"
kind = "stdout"
input = "tokenize"
"#,
        guest("tokenizer").display()
    ));
    std::fs::write(
        dir.path().join("input.jsonl"),
        "{\"ts\": 1, \"text\": \"ok\"}\n{\"text\": \"no time\"}\n",
    )
    .unwrap();
    let out = run(&["run", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("input.jsonl:2: timestamp field `ts` is missing"),
        "{}",
        stderr(&out)
    );
}
