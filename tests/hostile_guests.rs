//! Hostile guests: each must fail its job with a clear error naming the
//! operator, within a deadline, without a host panic.

mod common;

use std::time::Duration;

use common::*;

/// A generator feeding the hostile operator; `extra` lands in its table.
fn hostile_job(edge: &str, extra: &str) -> String {
    format!(
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
edge = "{edge}"
{extra}

[[sink]]
name = "out"
kind = "stdout"
input = "villain"
"#,
        wasm = guest("hostile").display()
    )
}

/// Runs the job, expects failure, returns stderr.
fn fails(job: &str) -> String {
    let (_dir, path) = job_file(job);
    let mut cmd = weir();
    cmd.arg("run").arg(&path);
    let out = run_with_deadline(cmd, Duration::from_secs(60));
    let err = stderr(&out);
    assert!(!out.status.success(), "the job should fail:\n{err}");
    assert!(!err.contains("thread '"), "the host must not panic:\n{err}");
    assert!(
        err.contains("`villain"),
        "the error names the operator:\n{err}"
    );
    err
}

/// Runs a job that must succeed within `limit`; its standard output.
fn succeeds(job: &str, limit: Duration) -> String {
    let (_dir, path) = job_file(job);
    let mut cmd = weir();
    cmd.arg("run").arg(&path);
    let out = run_with_deadline(cmd, limit);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    let err = fails(&hostile_job(
        "rebalance",
        "call_timeout_ms = 300\nconfig = { behavior = \"infinite-loop\" }",
    ));
    assert!(err.contains("call deadline of 300 ms"), "{err}");
}

#[test]
fn infinite_loop_in_open_is_stopped_too() {
    let err = fails(&hostile_job(
        "rebalance",
        "call_timeout_ms = 300\nconfig = { behavior = \"infinite-loop\", on = \"open\" }",
    ));
    assert!(
        err.contains("in `open`") && err.contains("call deadline"),
        "{err}"
    );
}

#[test]
fn sleeping_is_refused_rather_than_hanging_the_host() {
    let err = fails(&hostile_job(
        "rebalance",
        "config = { behavior = \"sleep\" }",
    ));
    assert!(err.contains("tried to sleep or wait on a clock"), "{err}");
}

#[test]
fn memory_bomb_is_stopped_by_the_cap() {
    let err = fails(&hostile_job(
        "rebalance",
        "memory_max_mb = 64\nconfig = { behavior = \"memory-bomb\" }",
    ));
    assert!(
        err.contains(
            "stopped in `process`: guest memory limit of 64 MiB reached (memories and tables \
             together); raise `memory_max_mb` in the job file"
        ),
        "{err}"
    );
}

#[test]
fn panic_reports_the_guest_message() {
    let err = fails(&hostile_job(
        "rebalance",
        "config = { behavior = \"panic\" }",
    ));
    assert!(err.contains("trapped in `process`"), "{err}");
    assert!(
        err.contains("the hostile operator panicked on purpose"),
        "{err}"
    );
}

#[test]
fn returned_error_reports_the_guest_message() {
    let err = fails(&hostile_job(
        "rebalance",
        "config = { behavior = \"error\" }",
    ));
    assert!(
        err.contains("failed in `process`: the hostile operator returned an error on purpose"),
        "{err}"
    );
}

#[test]
fn trap_in_open_is_reported() {
    let err = fails(&hostile_job(
        "rebalance",
        "config = { behavior = \"panic\", on = \"open\" }",
    ));
    assert!(
        err.contains("trapped in `open`") && err.contains("panicked on purpose"),
        "{err}"
    );
}

#[test]
fn trap_in_on_timers_is_reported() {
    let err = fails(&hostile_job(
        "hash",
        "config = { behavior = \"panic\", on = \"timer\", keyed = \"yes\" }",
    ));
    assert!(
        err.contains("trapped in `on-timers`") && err.contains("panicked on purpose"),
        "{err}"
    );
}

#[test]
fn a_timer_that_re_registers_itself_forever_is_stopped() {
    let err = fails(
        &hostile_job(
            "hash",
            "config = { behavior = \"nothing\", on = \"timer\", keyed = \"yes\" }",
        )
        .replace(
            "behavior = \"nothing\", on = \"timer\"",
            "behavior = \"nothing\", on = \"refire\"",
        ),
    );
    assert!(
        err.contains("keeps registering timers that are already due"),
        "{err}"
    );
}

#[test]
fn many_timers_that_each_set_one_due_follow_up_are_not_a_loop() {
    // 150,000 keys, one timer each, all due at once at the end of input
    // (the watermark is held back until then), and each sets a follow-up
    // that is due too: more than the 100,000 re-registrations allowed to a
    // step whatever its size, but one per pending timer.
    let job = hostile_job(
        "hash",
        "config = { behavior = \"nothing\", on = \"follow-up\", keyed = \"yes\" }",
    )
    .replace(
        "records = 100\nkeys = 4\n",
        "records = 150000\nkeys = 150000\nstart_ms = 0\ninterval_ms = 2\nwatermark_delay_ms = 1000000000\n",
    );
    let followed = succeeds(&job, Duration::from_secs(120))
        .lines()
        .filter(|l| l.contains("followed up"))
        .count();
    assert_eq!(followed, 150_000);
}

#[test]
fn huge_output_is_refused() {
    let err = fails(&hostile_job(
        "rebalance",
        "output_max_mb = 16\nconfig = { behavior = \"huge-output\" }",
    ));
    assert!(err.contains("over its output cap of 16 MiB"), "{err}");
}

#[test]
fn undeclared_state_is_refused() {
    let err = fails(&hostile_job(
        "hash",
        "config = { behavior = \"bad-state\", keyed = \"yes\" }",
    ));
    assert!(err.contains("state index 7 was not declared"), "{err}");
}

#[test]
fn keyed_state_without_a_hash_edge_is_refused() {
    let err = fails(&hostile_job(
        "rebalance",
        "config = { behavior = \"bad-state\" }",
    ));
    assert!(err.contains("not keyed"), "{err}");
}

#[test]
fn declaring_state_without_a_hash_edge_is_refused() {
    let err = fails(&hostile_job(
        "rebalance",
        "config = { behavior = \"nothing\", keyed = \"yes\" }",
    ));
    assert!(
        err.contains("declares keyed state (`n`), but it is not keyed"),
        "{err}"
    );
}

fn fails_to_load(wasm: &std::path::Path) -> String {
    let job = hostile_job("rebalance", "").replace(
        &guest("hostile").display().to_string(),
        &wasm.display().to_string(),
    );
    let (_dir, path) = job_file(&job);
    let mut cmd = weir();
    cmd.arg("validate").arg(&path);
    let out = run_with_deadline(cmd, Duration::from_secs(60));
    let err = stderr(&out);
    assert!(!out.status.success(), "validation should fail:\n{err}");
    assert!(
        err.contains("operator `villain`") && err.contains("job.toml:11"),
        "names operator and line:\n{err}"
    );
    err
}

#[test]
fn component_of_another_world_is_refused() {
    let err = fails_to_load(&guest("wrong_world"));
    assert!(
        err.contains("component of another world") && err.contains("exports: greet"),
        "{err}"
    );
}

#[test]
fn core_module_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let err = fails_to_load(&path);
    assert!(
        err.contains("core WebAssembly module, not a component"),
        "{err}"
    );
}

#[test]
fn garbage_and_missing_artifacts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.wasm");
    std::fs::write(&path, b"definitely not wasm").unwrap();
    assert!(fails_to_load(&path).contains("not WebAssembly"));
    let truncated = dir.path().join("truncated.wasm");
    let bytes = std::fs::read(guest("hostile")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(fails_to_load(&truncated).contains("not a valid component"));
    assert!(fails_to_load(&dir.path().join("missing.wasm")).contains("cannot read wasm artifact"));
}

#[test]
fn processing_time_timers_fire() {
    // Not hostile: the same guest registering a processing-time timer for
    // "now" per record; each (key, time) fires once, between messages.
    let job = hostile_job(
        "hash",
        "config = { behavior = \"nothing\", on = \"processing-timer\", keyed = \"yes\" }",
    )
    .replace(
        "kind = \"stdout\"",
        "kind = \"stdout\"\nformat = \"key-value\"",
    );
    let stdout = succeeds(&job, Duration::from_secs(60));
    let fired: Vec<&str> = stdout.lines().collect();
    assert!(
        !fired.is_empty() && fired.len() <= 100,
        "between 1 and 100 firings: {fired:?}"
    );
    assert!(
        fired
            .iter()
            .all(|l| l.starts_with("key-") && l.ends_with("\tfired")),
        "{fired:?}"
    );
}
