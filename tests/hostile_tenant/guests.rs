//! Attacks: guests (see ../hostile_tenant.rs). A guest that tries to make
//! the host allocate without bound (memories and tables, pending timers,
//! huge keys, a huge error string, a log flood) fails its job with an error
//! naming the operator and the limit, quickly, without a panic and without
//! flooding the terminal.
//!
//! Runs `weir run` from the repository root: its default data root is the
//! current directory's tree, which holds the guests under target/.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;

/// Generous: each attack is stopped within a few seconds.
const DEADLINE: Duration = Duration::from_secs(60);
/// What one failed attempt may print: the error, a few log lines. Every
/// job here has two attempts (one restart).
const STDERR_BYTES_PER_ATTEMPT_MAX: usize = 16 << 10;
const STDERR_BYTES_MAX: usize = 2 * STDERR_BYTES_PER_ATTEMPT_MAX;

/// A generator feeding the hostile operator; `extra` lands in its table.
/// Restarts resume from checkpoints, kept under target/ (inside the data
/// root) in a directory removed when the test ends.
fn job(
    wasm: &std::path::Path,
    edge: &str,
    extra: &str,
    attempts: u32,
) -> (tempfile::TempDir, String) {
    let parent = repo().join("target/hostile-tenant");
    std::fs::create_dir_all(&parent).unwrap();
    let checkpoints = tempfile::tempdir_in(&parent).unwrap();
    let text = format!(
        r#"
[job]
name = "hostile"

[checkpoint]
interval_ms = 1000
dir = "{checkpoint_dir}"

[restart]
strategy = "fixed-delay"
attempts = {attempts}
delay_ms = 100

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
kind = "discard"
input = "villain"
"#,
        wasm = wasm.display(),
        checkpoint_dir = checkpoints.path().display()
    );
    (checkpoints, text)
}

/// The start and end of a long text, for messages.
fn shorten(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 8000 {
        return text.to_string();
    }
    let head: String = chars[..4000].iter().collect();
    let tail: String = chars[chars.len() - 4000..].iter().collect();
    format!("{head}\n[…]\n{tail}")
}

struct Failure {
    stderr: String,
    elapsed: Duration,
}

/// Runs the job, expects it to fail cleanly (with at most `stderr_max`
/// bytes of output), and returns what it printed.
fn fails((_checkpoints, job): (tempfile::TempDir, String), stderr_max: usize) -> Failure {
    let (_dir, path) = job_file(&job);
    let mut cmd = weir();
    cmd.current_dir(repo()).arg("run").arg(&path);
    let started = Instant::now();
    let out = run_with_deadline(cmd, DEADLINE);
    let elapsed = started.elapsed();
    let err = stderr(&out);
    let shown = || shorten(&err);
    assert!(!out.status.success(), "the job should fail:\n{}", shown());
    assert!(
        !err.contains("thread '"),
        "the host must not panic:\n{}",
        shown()
    );
    assert!(
        err.contains("operator `villain"),
        "names the operator:\n{}",
        shown()
    );
    assert!(
        err.len() < stderr_max,
        "{} bytes of stderr (max {stderr_max}):\n{}",
        err.len(),
        shown()
    );
    // The refusal texts, for --nocapture.
    println!(
        "--- {} bytes of stderr in {elapsed:?}:\n{}",
        err.len(),
        shown()
    );
    Failure {
        stderr: err,
        elapsed,
    }
}

/// A WAT component from tests/guests/bombs, as a .wasm under target/ (inside
/// the default data root).
fn bomb(name: &str) -> PathBuf {
    let source = repo().join(format!("tests/guests/bombs/{name}.wat"));
    let bytes = wat::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    let dir = repo().join("target/wasm/bombs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn hostile(behavior: &str, edge: &str, extra: &str) -> (tempfile::TempDir, String) {
    let keyed = if edge == "hash" {
        ", keyed = \"yes\""
    } else {
        ""
    };
    job(
        &guest("hostile"),
        edge,
        &format!("{extra}\nconfig = {{ behavior = \"{behavior}\"{keyed} }}"),
        1,
    )
}

#[test]
fn multi_memory_bomb_is_capped_over_all_memories() {
    let failure = fails(
        job(&bomb("multi_memory"), "rebalance", "", 1),
        STDERR_BYTES_MAX,
    );
    assert!(
        failure.stderr.contains(
            "operator `villain` was stopped in `instantiate`: guest memory limit of 256 MiB \
             reached (memories and tables together); raise `memory_max_mb` in the job file"
        ),
        "{}",
        failure.stderr
    );
}

#[test]
fn table_grow_bomb_is_stopped() {
    let failure = fails(
        job(&bomb("table_grow"), "rebalance", "", 1),
        STDERR_BYTES_MAX,
    );
    assert!(
        failure.stderr.contains(
            "operator `villain` was stopped in `instantiate`: table limit of 1048576 elements \
             reached (all tables together)"
        ),
        "{}",
        failure.stderr
    );
}

#[test]
fn timer_flood_is_stopped_by_the_timer_memory_limit() {
    let failure = fails(hostile("timer-flood", "hash", ""), STDERR_BYTES_MAX);
    assert!(
        failure
            .stderr
            .contains("operator `villain` was stopped in `process`: ")
            && failure.stderr.contains(
                "pending timers reached the timer memory limit of 128 MiB (timers_memory_max_mb); \
                 raise `timers_memory_max_mb` in the job file"
            ),
        "{}",
        failure.stderr
    );
}

#[test]
fn timer_flood_is_stopped_by_the_timer_count_limit() {
    let failure = fails(
        hostile("timer-flood", "hash", "timers_max = 50000"),
        STDERR_BYTES_MAX,
    );
    assert!(
        failure.stderr.contains(
            "operator `villain` was stopped in `process`: 50000 pending timers (timers_max) \
             reached; raise `timers_max` in the job file"
        ),
        "{}",
        failure.stderr
    );
}

#[test]
fn huge_timer_key_is_refused() {
    let failure = fails(hostile("huge-key", "hash", ""), STDERR_BYTES_MAX);
    assert!(
        failure.stderr.contains(
            "operator `villain` was stopped in `process`: a timer key of 1048576 bytes is over \
             the key limit of 65536 bytes (key_max_bytes); raise `key_max_bytes` in the job file"
        ),
        "{}",
        failure.stderr
    );
}

#[test]
fn huge_state_key_is_refused() {
    let (checkpoints, job) = hostile("huge-key", "hash", "");
    let job = job.replace("keyed = \"yes\"", "keyed = \"yes\", target = \"state\"");
    let failure = fails((checkpoints, job), STDERR_BYTES_MAX);
    assert!(
        failure.stderr.contains(
            "operator `villain` was stopped in `process`: a state key of 1048576 bytes is over \
             the key limit of 65536 bytes (key_max_bytes)"
        ),
        "{}",
        failure.stderr
    );
}

/// For the state floods: a call deadline that only a hung guest reaches.
const FLOOD_DEADLINE: &str = "call_timeout_ms = 120000";

#[test]
fn state_flood_is_stopped_by_the_state_memory_limit() {
    // 16 MiB list elements in a loop, under the default limits: the memory
    // backend refuses the write that would take it past 1 GiB.
    // The call deadline is raised out of the way: on a loaded machine a
    // GiB of 16 MiB appends can take longer than the default 5 s, and this
    // test is about the memory limit.
    let failure = fails(
        hostile("state-flood", "hash", FLOOD_DEADLINE),
        STDERR_BYTES_MAX,
    );
    assert!(
        failure
            .stderr
            .contains("operator `villain` was stopped in `process`: keyed state would hold ")
            && failure.stderr.contains(
                " with this write, over the limit of 1024 MiB (state_memory_max_mb); \
                 raise `state_memory_max_mb` in the job file"
            ),
        "{}",
        failure.stderr
    );
}

#[test]
fn state_flood_is_stopped_at_a_lower_state_memory_limit() {
    let failure = fails(
        hostile(
            "state-flood",
            "hash",
            &format!("state_memory_max_mb = 64\n{FLOOD_DEADLINE}"),
        ),
        STDERR_BYTES_MAX,
    );
    assert!(
        failure.stderr.contains(
            " with this write, over the limit of 64 MiB (state_memory_max_mb); \
             raise `state_memory_max_mb` in the job file"
        ),
        "{}",
        failure.stderr
    );
}

#[test]
fn state_flood_on_rocksdb_is_stopped_before_a_list_is_merged_whole() {
    // On disk the total is not bounded, but RocksDB merges a list into one
    // value in memory to read or compact it: that merge is refused.
    let (checkpoints, job) = hostile(
        "state-flood",
        "hash",
        &format!("state_memory_max_mb = 64\n{FLOOD_DEADLINE}"),
    );
    let job = job.replace(
        "name = \"hostile\"\n",
        "name = \"hostile\"\nstate_backend = \"rocksdb\"\n",
    );
    assert!(job.contains("rocksdb"));
    let failure = fails((checkpoints, job), STDERR_BYTES_MAX);
    assert!(
        failure.stderr.contains(
            "operator `villain` was stopped in `process`: a list in keyed state has grown to "
        ) && failure.stderr.contains(
            "over the limit of 64 MiB (state_memory_max_mb); raise `state_memory_max_mb` in the job file"
        ),
        "{}",
        failure.stderr
    );
}

#[test]
fn huge_error_string_is_cut_and_escaped() {
    // Two attempts, each reporting the error: both cut to a few KiB.
    let failure = fails(hostile("huge-error", "rebalance", ""), STDERR_BYTES_MAX);
    let err = &failure.stderr;
    assert!(
        err.contains("operator `villain` failed in `process`: \\u{1}\\u{1b}[2J\\u{7}\n\\u{d}"),
        "{err}"
    );
    assert!(err.contains("more bytes cut)"), "{err}");
    assert!(
        !err.contains('\u{1}') && !err.contains('\u{1b}'),
        "control characters escaped"
    );
}

#[test]
fn log_flood_is_rate_limited_and_the_drops_reported() {
    // Two attempts of three seconds of flooding each: a burst of 20 lines
    // of at most 4 KiB per attempt, not gigabytes.
    let failure = fails(
        hostile("log-flood", "rebalance", "call_timeout_ms = 3000"),
        2 * 20 * (5 << 10) + STDERR_BYTES_MAX,
    );
    let err = &failure.stderr;
    assert!(err.contains("call deadline of 3000 ms"), "{}", shorten(err));
    assert!(
        err.contains(" log lines dropped (log_lines_per_second = 100)"),
        "{}",
        shorten(err)
    );
    assert!(!err.contains('\u{1b}'), "control characters escaped");
    assert!(
        failure.elapsed < Duration::from_secs(30),
        "{:?}",
        failure.elapsed
    );
}

/// Runs a job that succeeds with its own component cache; returns stderr.
fn run_with_cache(cache: &std::path::Path) -> String {
    let (checkpoints, text) = hostile("nothing", "rebalance", "");
    let (_dir, path) = job_file(&text);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.current_dir(repo())
        .arg("--cache-dir")
        .arg(cache)
        .arg("run")
        .arg(&path);
    let out = run_with_deadline(cmd, DEADLINE);
    drop(checkpoints);
    let err = stderr(&out);
    assert!(out.status.success(), "{}", shorten(&err));
    err
}

#[test]
fn planted_cwasm_is_not_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let first = run_with_cache(cache.path());
    assert!(first.contains("compiled "), "{first}");
    let entry = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("the first run caches the compiled component");
    assert!(run_with_cache(cache.path()).contains("from cache"));

    // Native code someone else wrote, under the name weir would load: it
    // must be refused (with a warning naming the file), recompiled and
    // replaced, never deserialized.
    std::fs::write(&entry, vec![0xccu8; 64 << 10]).unwrap();
    let planted = run_with_cache(cache.path());
    assert!(
        planted
            .contains("refusing cached component, recompiling: authentication tag does not match")
            && planted.contains(&entry.display().to_string()),
        "{planted}"
    );
    assert!(planted.contains("compiled "), "{planted}");
    assert!(
        run_with_cache(cache.path()).contains("from cache"),
        "replaced by a good entry"
    );
}
