//! Checkpoints and savepoints on S3 through the real binary, against a real
//! S3 server (SeaweedFS, started per test): checkpoint and restore, the
//! kill loop, a savepoint restored at another parallelism, a damaged or
//! missing `_metadata` falling back to the previous checkpoint, and worker
//! failover on a cluster whose nodes share nothing but the object store.
//! The tests take one lock: each starts its own server, and the machine
//! runs them one at a time rather than starve them of CPU.

mod common;
#[path = "s3/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use common::cluster::{Cluster, straight_output};
use common::collect::{Job, assert_exactly_once, sorted};
use common::{committed_output, run_with_deadline, stderr, wait_while_running, weir};
use server::Weed;

const LIMIT: Duration = Duration::from_secs(180);

/// Serializes the tests and gives every process they start the S3
/// credentials (SeaweedFS without identities takes any).
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: set while holding the lock every test takes before it does
    // anything else, so no other thread of this binary reads the
    // environment meanwhile; the values never change.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "weir-test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "weir-test-secret");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    guard
}

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

/// The job's text with its checkpoints under `s3://<bucket>/chk`, the
/// endpoint given by the job file's overrides.
fn on_s3(job: &Job, weed: &Weed, retain: usize) -> String {
    let text = job.text();
    assert!(text.contains("dir = \"chk\"\nretain = 2"), "{text}");
    text.replace(
        "dir = \"chk\"\nretain = 2",
        &format!(
            "dir = \"{}\"\ns3_endpoint = \"{}\"\ns3_allow_http = true\nretain = {retain}",
            weed.url("chk"),
            weed.endpoint()
        ),
    )
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_ok(mut cmd: Command) -> String {
    cmd.arg("--jobs-dir")
        .arg(std::env::temp_dir().join("weir-test-jobs-unused"));
    let out = run_with_deadline(cmd, LIMIT);
    assert!(out.status.success(), "weir failed:\n{}", stderr(&out));
    stderr(&out)
}

/// The same job run straight through with local checkpoints.
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
    assert!(text.lines().count() > 10, "too little output");
    text
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts")
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("weir starts")
}

fn resume(file: &Path, weed: &Weed) -> Command {
    let mut cmd = weir();
    cmd.arg("run")
        .arg(file)
        .arg("--resume")
        .arg(weed.url("chk"));
    cmd
}

/// Complete checkpoints of job `collect` in the bucket, oldest first.
fn complete_checkpoints(weed: &Weed) -> Vec<String> {
    weed.keys("chk/collect/")
        .into_iter()
        .filter_map(|k| k.strip_suffix("/_metadata").map(String::from))
        .filter(|d| d.rsplit('/').next().unwrap().starts_with("chk-"))
        .collect()
}

/// Runs the job file until it completed `wanted` checkpoints on S3, then
/// SIGKILLs it.
fn run_until_checkpoints(file: &Path, weed: &Weed, wanted: usize) {
    let mut cmd = weir();
    cmd.arg("run").arg(file);
    let mut child = spawn(cmd);
    let started = Instant::now();
    while complete_checkpoints(weed).len() < wanted {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before {wanted} checkpoints; make it longer"
        );
        assert!(started.elapsed() < LIMIT, "no checkpoints on S3");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn killed_and_resumed_from_s3_gives_byte_identical_output() {
    let _one = exclusive();
    let weed = Weed::start();
    let mut random = Random::new("s3_killed_and_resumed");
    let job = Job {
        rate: Some(3000),
        ..Job::new(6000)
    };
    let expected = straight(&job);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), &on_s3(&job, &weed, 2));
    let mut cmd = weir();
    cmd.arg("run").arg(&file);
    let mut child = spawn(cmd);
    wait_while_running(&mut child, || !complete_checkpoints(&weed).is_empty());
    std::thread::sleep(Duration::from_millis(random.between(200, 900)));
    assert!(
        child.try_wait().unwrap().is_none(),
        "finished before the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !complete_checkpoints(&weed).is_empty(),
        "no checkpoint reached S3 before the kill"
    );
    // Nothing was written to the local disk beside the job file.
    assert!(!dir.path().join("chk").exists());
    run_ok(resume(&file, &weed));
    assert_eq!(committed_output(dir.path()), expected);
    // Retention keeps two complete checkpoints.
    assert_eq!(complete_checkpoints(&weed).len(), 2, "{:?}", weed.keys(""));
}

#[test]
fn kill_loop_on_s3_with_rocksdb_loses_and_duplicates_nothing() {
    let _one = exclusive();
    let weed = Weed::start();
    let mut random = Random::new("s3_kill_loop");
    let records = 30_000;
    let job = Job {
        rate: Some(3000),
        parallelism: 2,
        backend: "rocksdb",
        ..Job::new(records)
    };
    let expected = straight(&job);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), &on_s3(&job, &weed, 2));
    let mut kills = 0;
    let mut cmd = weir();
    cmd.arg("run").arg(&file);
    let log_of = |n: u32| dir.path().join(format!("run-{n}.log"));
    let mut child = spawn_logged(cmd, &log_of(0));
    let started = Instant::now();
    wait_while_running(&mut child, || !complete_checkpoints(&weed).is_empty());
    while kills < 8 {
        std::thread::sleep(Duration::from_millis(random.between(500, 1400)));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        child = spawn_logged(resume(&file, &weed), &log_of(kills));
        assert!(
            started.elapsed() < LIMIT,
            "kill loop is not making progress"
        );
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the last run (after {kills} kills) failed:\n{}",
        std::fs::read_to_string(log_of(kills)).unwrap_or_default()
    );
    assert!(kills >= 5, "only {kills} kills before the job finished");
    let text = committed_output(dir.path());
    assert_exactly_once(&text, records);
    assert_eq!(sorted(&text), sorted(&expected));
    let shared = weed.keys("chk/collect/shared/");
    assert!(!shared.is_empty(), "no SSTs were shared on S3");
}

#[test]
fn a_savepoint_on_s3_restores_at_another_parallelism() {
    let _one = exclusive();
    let weed = Weed::start();
    let mut random = Random::new("s3_savepoint");
    let job = Job {
        rate: Some(3000),
        ..Job::new(6000)
    };
    let expected = straight(&job);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), &on_s3(&job, &weed, 2));
    let jobs = dir.path().join("jobs");
    let mut cmd = weir();
    cmd.arg("run").arg(&file).arg("--jobs-dir").arg(&jobs);
    let mut child = spawn(cmd);
    let started = Instant::now();
    while !jobs.join("collect.json").exists() {
        assert!(started.elapsed() < LIMIT, "the job never registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(random.between(300, 1200)));
    // The default savepoint directory is `<checkpoint dir>/savepoints`.
    let mut stop = weir();
    stop.arg("stop").arg("collect").arg("--jobs-dir").arg(&jobs);
    let out = run_with_deadline(stop, LIMIT);
    assert!(out.status.success(), "weir stop failed: {}", stderr(&out));
    let savepoint = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(child.wait().unwrap().success());
    assert!(
        savepoint.starts_with(&weed.url("chk/savepoints/savepoint-collect-")),
        "{savepoint}"
    );
    let name = savepoint.strip_prefix(&weed.url("")).unwrap();
    assert!(weed.keys(name).contains(&format!("{name}/_metadata")));

    // Inspect reads it with the AWS_* environment alone.
    let mut inspect = weir();
    inspect
        .args(["savepoint", "inspect", &savepoint])
        .env("AWS_ENDPOINT", weed.endpoint())
        .env("AWS_ALLOW_HTTP", "true");
    let out = run_with_deadline(inspect, LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("operator collect"), "{text}");

    let mut cmd = weir();
    cmd.arg("run")
        .arg(&file)
        .arg("--from-savepoint")
        .arg(&savepoint)
        .args(["--parallelism", "3", "--state-backend", "rocksdb"])
        .env("AWS_ENDPOINT", weed.endpoint())
        .env("AWS_ALLOW_HTTP", "true");
    run_ok(cmd);
    assert_eq!(sorted(&committed_output(dir.path())), sorted(&expected));
}

#[test]
fn a_damaged_or_missing_metadata_on_s3_falls_back_to_the_previous_checkpoint() {
    let _one = exclusive();
    let weed = Weed::start();
    let job = Job {
        rate: Some(2000),
        ..Job::new(8000)
    };
    let expected = straight(&job);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), &on_s3(&job, &weed, 4));
    run_until_checkpoints(&file, &weed, 3);
    let complete = complete_checkpoints(&weed);
    assert!(complete.len() >= 3, "{complete:?}");
    let newest = &complete[complete.len() - 1];
    let second = &complete[complete.len() - 2];
    // The newest loses its _metadata (never completed, as far as anyone
    // can tell); the one before has it damaged.
    weed.delete(&format!("{newest}/_metadata"));
    let key = format!("{second}/_metadata");
    let mut bytes = weed.get(&key);
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    weed.put(&key, &bytes);
    let log = run_ok(resume(&file, &weed));
    assert!(log.contains("skipped damaged checkpoint"), "{log}");
    assert!(log.contains(&key), "the damaged object is not named: {log}");
    assert_eq!(committed_output(dir.path()), expected);
}

#[test]
fn a_worker_killed_on_a_cluster_sharing_only_s3_loses_and_duplicates_nothing() {
    let _one = exclusive();
    let weed = Weed::start();
    let records = 30_000;
    let expected = straight_output(records);
    let mut cluster = Cluster::start(3, 4, None);
    let work = tempfile::tempdir().unwrap();
    // As tests/cluster.rs's collect job: parallelism 6, checkpoints every
    // 200 ms, restarts; its checkpoints on S3.
    let job = Job {
        parallelism: 6,
        rate: Some(4_000),
        checkpoint_interval_ms: 200,
        restarts: Some(3),
        backend: "rocksdb",
        ..Job::new(records)
    };
    let file = write(work.path(), &on_s3(&job, &weed, 2));
    cluster.submit(&file);
    cluster.wait_for_checkpoint("collect", 3);
    assert!(!complete_checkpoints(&weed).is_empty());
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let victim = format!("worker-{}", 1 + (seed % 3) as u32);
    eprintln!("killing {victim} (seed {seed})");
    cluster.kill(&victim);
    let info = cluster.wait_for_end("collect");
    assert_eq!(info["state"], "finished", "{info}\n{}", cluster.logs());
    assert!(
        info["restarts"].as_u64().unwrap() >= 1,
        "the kill went unnoticed: {info}"
    );
    let text = committed_output(work.path());
    assert_exactly_once(&text, records);
    assert_eq!(sorted(&text), sorted(&expected));
    // No checkpoint was written to any node's disk.
    assert!(!work.path().join("chk").exists());
}
