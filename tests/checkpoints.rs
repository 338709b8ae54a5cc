//! Checkpoints, recovery and savepoints through the real binary: jobs are
//! SIGKILLed at random points and resumed, stopped with savepoints and
//! restored at other parallelisms, with the other backend and with an
//! upgraded operator, and their output is compared with a straight run.
//! Random delays are printed so a failure can be replayed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::collect::{Job, assert_exactly_once, sorted};
use common::{
    committed_output, has_complete_checkpoint, repo, run_with_deadline, stderr, wait_while_running,
    weir,
};

const LIMIT: Duration = Duration::from_secs(120);

/// A small xorshift generator seeded from the clock; the seed is printed.
struct Random(u64);

impl Random {
    fn new(test: &str) -> Random {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64
            | 1;
        eprintln!("{test}: random seed {seed}");
        Random(seed)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low)
    }
}

fn run_ok(mut cmd: Command) -> String {
    cmd.arg("--jobs-dir")
        .arg(std::env::temp_dir().join("weir-test-jobs-unused"));
    let out = run_with_deadline(cmd, LIMIT);
    assert!(out.status.success(), "weir failed:\n{}", stderr(&out));
    stderr(&out)
}

/// The reference: the same job, run straight through with nothing killed.
fn straight(job: &Job) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = Job {
        rate: None,
        wasm: job.wasm.clone(),
        ..*job
    }
    .write(dir.path());
    let mut cmd = weir();
    cmd.arg("run").arg(file);
    run_ok(cmd);
    let text = committed_output(dir.path());
    assert!(
        text.lines().count() > 10,
        "the job produced too little output"
    );
    text
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts")
}

/// Kills `child` after `delay`, checking it was still running.
fn kill_after(mut child: Child, delay: Duration) {
    std::thread::sleep(delay);
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        still_running,
        "the job finished before it could be killed; make it longer"
    );
}

/// Writes `job` into `dir`, runs it until its first complete checkpoint,
/// then SIGKILLs it after a further random delay between `low` and `high`
/// ms; returns the job file.
fn run_and_kill(random: &mut Random, job: &Job, dir: &Path, low: u64, high: u64) -> PathBuf {
    let file = job.write(dir);
    let mut cmd = weir();
    cmd.arg("run").arg(&file);
    let mut child = spawn(cmd);
    wait_while_running(&mut child, || has_complete_checkpoint(&dir.join("chk")));
    kill_after(child, Duration::from_millis(random.between(low, high)));
    file
}

fn resume(file: &Path, dir: &Path) -> Command {
    let mut cmd = weir();
    cmd.arg("run")
        .arg(file)
        .arg("--resume")
        .arg(dir.join("chk"));
    cmd
}

#[test]
fn killed_and_resumed_gives_byte_identical_output() {
    let mut random = Random::new("killed_and_resumed");
    let job = Job {
        rate: Some(3000),
        ..Job::new(6000)
    };
    let expected = straight(&job);
    let dir = tempfile::tempdir().unwrap();
    let file = run_and_kill(&mut random, &job, dir.path(), 200, 1000);
    run_ok(resume(&file, dir.path()));
    assert_eq!(committed_output(dir.path()), expected);
}

#[test]
fn killed_and_resumed_on_rocksdb_in_parallel() {
    let mut random = Random::new("rocksdb_parallel");
    let job = Job {
        rate: Some(3000),
        parallelism: 3,
        backend: "rocksdb",
        ..Job::new(6000)
    };
    let expected = straight(&job);
    let dir = tempfile::tempdir().unwrap();
    let file = run_and_kill(&mut random, &job, dir.path(), 200, 1000);
    run_ok(resume(&file, dir.path()));
    // Parallel subtasks interleave at the sink; the lines are the same.
    assert_eq!(sorted(&committed_output(dir.path())), sorted(&expected));
}

#[test]
fn kill_loop_loses_and_duplicates_nothing() {
    let mut random = Random::new("kill_loop");
    let records = 40_000;
    let job = Job {
        rate: Some(4000),
        parallelism: 2,
        backend: "rocksdb",
        ..Job::new(records)
    };
    let dir = tempfile::tempdir().unwrap();
    let file = job.write(dir.path());
    let mut kills = 0;
    let mut cmd = weir();
    cmd.arg("run").arg(&file);
    let mut child = spawn(cmd);
    let started = Instant::now();
    wait_while_running(&mut child, || {
        has_complete_checkpoint(&dir.path().join("chk"))
    });
    while kills < 12 {
        std::thread::sleep(Duration::from_millis(random.between(300, 900)));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        child = spawn(resume(&file, dir.path()));
        assert!(
            started.elapsed() < LIMIT,
            "kill loop is not making progress"
        );
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the last run failed");
    assert!(kills >= 10, "only {kills} kills before the job finished");
    assert_exactly_once(&committed_output(dir.path()), records);
}

#[test]
fn a_failing_task_restarts_from_the_latest_checkpoint() {
    let job = Job {
        rate: Some(4000),
        extra: ", fail_on_seq = 2500",
        ..Job::new(5000)
    };
    let expected = straight(&Job {
        extra: "",
        wasm: job.wasm.clone(),
        ..job
    });
    let dir = tempfile::tempdir().unwrap();
    let text =
        job.text() + "\n[restart]\nstrategy = \"fixed-delay\"\nattempts = 2\ndelay_ms = 10\n";
    let file = dir.path().join("job.toml");
    std::fs::write(&file, text).unwrap();
    let mut cmd = weir();
    cmd.arg("run").arg(&file);
    let log = run_ok(cmd);
    assert!(log.contains("injected failure at seq 2500"), "{log}");
    assert!(log.contains("after 1 restart(s)"), "{log}");
    assert_eq!(committed_output(dir.path()), expected);
}

#[test]
fn a_guest_that_always_fails_exhausts_the_restarts() {
    let dir = tempfile::tempdir().unwrap();
    // A zero window makes every record fail (division by zero in the guest).
    let text = Job::new(100)
        .text()
        .replace("window_ms = 1000", "window_ms = 0")
        + "\n[restart]\nstrategy = \"fixed-delay\"\nattempts = 2\ndelay_ms = 10\n";
    let file = dir.path().join("job.toml");
    std::fs::write(&file, text).unwrap();
    let mut cmd = weir();
    cmd.arg("run").arg(&file);
    let out = run_with_deadline(cmd, LIMIT);
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(log.contains("failed after 2 restart(s)"), "{log}");
    assert!(log.contains("operator `collect`"), "{log}");
}

fn wait_for_registration(jobs: &Path, job: &str) {
    let started = Instant::now();
    while !jobs.join(format!("{job}.json")).exists() {
        assert!(
            started.elapsed() < LIMIT,
            "the job never registered its control API"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `job` and stops it with a savepoint after a random delay; returns
/// the savepoint's path.
fn run_and_stop(random: &mut Random, job: &Job, dir: &Path) -> PathBuf {
    let jobs = dir.join("jobs");
    let file = job.write(dir);
    let mut cmd = weir();
    cmd.arg("run").arg(&file).arg("--jobs-dir").arg(&jobs);
    let mut child = spawn(cmd);
    wait_for_registration(&jobs, "collect");
    std::thread::sleep(Duration::from_millis(random.between(300, 1200)));
    let mut stop = weir();
    stop.arg("stop").arg("collect").arg("--jobs-dir").arg(&jobs);
    let out = run_with_deadline(stop, LIMIT);
    assert!(out.status.success(), "weir stop failed: {}", stderr(&out));
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let status = child.wait().unwrap();
    assert!(status.success(), "the stopped job should exit cleanly");
    assert!(
        path.join("_metadata").exists(),
        "no savepoint at {}",
        path.display()
    );
    path
}

#[test]
fn state_no_operator_takes_is_refused_unless_allowed() {
    let mut random = Random::new("non_restored");
    let job = Job {
        rate: Some(3000),
        ..Job::new(6000)
    };
    let dir = tempfile::tempdir().unwrap();
    let savepoint = run_and_stop(&mut random, &job, dir.path());
    let renamed = job
        .text()
        .replace("name = \"collect\"\nwasm", "name = \"gather\"\nwasm")
        .replace("input = \"collect\"", "input = \"gather\"");
    assert_ne!(renamed, job.text());
    let file = dir.path().join("renamed.toml");
    std::fs::write(&file, &renamed).unwrap();
    let run = |extra: &[&str]| {
        let mut cmd = weir();
        cmd.arg("run")
            .arg(&file)
            .arg("--from-savepoint")
            .arg(&savepoint)
            .args(extra);
        cmd.args([
            "--output-dir",
            &dir.path().join("renamed-out").display().to_string(),
        ]);
        run_with_deadline(cmd, LIMIT)
    };
    let out = run(&[]);
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(
        log.contains("operator `collect`") && log.contains("--allow-non-restored-state"),
        "{log}"
    );
    let out = run(&["--allow-non-restored-state"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_control_api_names_jobs_it_does_not_run() {
    let job = Job {
        rate: Some(2000),
        ..Job::new(6000)
    };
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    let file = job.write(dir.path());
    let mut cmd = weir();
    cmd.arg("run").arg(&file).arg("--jobs-dir").arg(&jobs);
    let mut child = spawn(cmd);
    wait_for_registration(&jobs, "collect");
    let registration: serde_json::Value =
        serde_json::from_slice(&std::fs::read(jobs.join("collect.json")).unwrap()).unwrap();
    let api = registration["api"].as_str().unwrap().to_string();
    let token = registration["token"].as_str().unwrap().to_string();
    // `other` has no registry file: the token comes from WEIR_TOKEN.
    let mut other = weir();
    other
        .args(["savepoint", "other", "--api", &api, "--jobs-dir"])
        .arg(&jobs)
        .env("WEIR_TOKEN", &token);
    let out = run_with_deadline(other, LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no running job `other`"),
        "{}",
        stderr(&out)
    );
    let mut missing = weir();
    missing
        .args(["stop", "collect", "--jobs-dir"])
        .arg(dir.path().join("elsewhere"));
    let out = run_with_deadline(missing, LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no running job `collect` is registered"),
        "{}",
        stderr(&out)
    );
    let mut savepoint = weir();
    savepoint
        .args(["savepoint", "collect", "--api", &api, "--jobs-dir"])
        .arg(&jobs);
    let out = run_with_deadline(savepoint, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.starts_with(dir.path().join("chk/savepoints")),
        "{}",
        path.display()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_savepoint_restores_at_another_parallelism_with_the_other_backend() {
    let mut random = Random::new("savepoint_rescale");
    let job = Job {
        rate: Some(3000),
        ..Job::new(6000)
    };
    let expected = straight(&job);
    let dir = tempfile::tempdir().unwrap();
    let savepoint = run_and_stop(&mut random, &job, dir.path());

    let mut inspect = weir();
    inspect.arg("savepoint").arg("inspect").arg(&savepoint);
    let out = run_with_deadline(inspect, LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("operator collect") && text.contains("state windows (map"),
        "{text}"
    );

    let file = dir.path().join("job.toml");
    let mut cmd = weir();
    cmd.arg("run")
        .arg(&file)
        .arg("--from-savepoint")
        .arg(&savepoint)
        .args(["--parallelism", "3", "--state-backend", "rocksdb"]);
    run_ok(cmd);
    assert_eq!(sorted(&committed_output(dir.path())), sorted(&expected));
}

#[test]
fn an_upgraded_operator_takes_over_the_state_from_the_savepoint_on() {
    let mut random = Random::new("upgrade");
    let job = Job {
        rate: Some(3000),
        ..Job::new(6000)
    };
    let expected = straight(&job);
    let dir = tempfile::tempdir().unwrap();
    let savepoint = run_and_stop(&mut random, &job, dir.path());
    let upgraded = Job {
        wasm: repo().join("target/wasm-v2/wasm32-wasip2/release/window_collect.wasm"),
        ..job
    };
    let file = upgraded.write(dir.path());
    let mut cmd = weir();
    cmd.arg("run")
        .arg(&file)
        .arg("--from-savepoint")
        .arg(&savepoint);
    run_ok(cmd);
    let text = committed_output(dir.path());
    let first_v2 = text
        .lines()
        .position(|l| l.starts_with("v2 "))
        .expect("v2 output");
    assert!(first_v2 > 0, "v1 wrote nothing before the savepoint");
    assert!(
        text.lines().skip(first_v2).all(|l| l.starts_with("v2 ")),
        "v1 output after the upgrade"
    );
    // Same state, same windows: only the format changed.
    let normalized: String = text
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("v2 ").unwrap_or(l)))
        .collect();
    assert_eq!(normalized, expected);
}

#[test]
fn a_damaged_checkpoint_falls_back_to_the_previous_one() {
    let mut random = Random::new("damaged");
    let job = Job {
        rate: Some(3000),
        ..Job::new(6000)
    };
    let expected = straight(&job);
    let dir = tempfile::tempdir().unwrap();
    let file = run_and_kill(&mut random, &job, dir.path(), 500, 1200);
    let root = dir.path().join("chk/collect");
    let mut complete: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("_metadata").exists())
        .collect();
    complete.sort();
    assert!(
        complete.len() >= 2,
        "need two checkpoints, have {complete:?}"
    );
    let latest = complete.last().unwrap();
    let state = latest.join("collect-0.state");
    let mut bytes = std::fs::read(&state).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&state, bytes).unwrap();
    let log = run_ok(resume(&file, dir.path()));
    assert!(log.contains("skipped damaged checkpoint"), "{log}");
    assert!(log.contains("collect-0.state"), "{log}");
    assert_eq!(committed_output(dir.path()), expected);
}

#[test]
fn restore_errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let file = Job::new(100).write(dir.path());
    let mut cmd = weir();
    cmd.arg("run")
        .arg(&file)
        .arg("--from-savepoint")
        .arg(dir.path().join("nowhere"));
    let out = run_with_deadline(cmd, LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nowhere/_metadata"),
        "{}",
        stderr(&out)
    );

    let mut cmd = weir();
    cmd.arg("run")
        .arg(&file)
        .arg("--resume")
        .arg(dir.path().join("chk"));
    let out = run_with_deadline(cmd, LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no complete checkpoint"),
        "{}",
        stderr(&out)
    );

    // A finished run leaves checkpoints; a fresh run refuses to mix with them.
    let job = Job {
        rate: Some(2000),
        ..Job::new(1000)
    };
    let file = job.write(dir.path());
    let mut cmd = weir();
    cmd.arg("run").arg(&file);
    run_ok(cmd);
    let _ = std::fs::remove_dir_all(dir.path().join("out"));
    let mut cmd = weir();
    cmd.arg("run").arg(&file);
    let out = run_with_deadline(cmd, LIMIT);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
}
