//! End-to-end tests of `weir rescale` and `weir upgrade` on running jobs,
//! through the real binaries: an embedded job (`weir run --api`) and a
//! 3-worker cluster. Every job reads a JSONL file of keyed records at a
//! throttled rate into the `versioned` operator (a running count per key)
//! and an exactly-once file sink, so the answer is known in advance: per
//! key, the counts are exactly 1..n, each once.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{committed_output, guest, run_with_deadline, stderr, weir};

/// How long one CLI call or one wait may take before the test fails.
const LIMIT: Duration = Duration::from_secs(60);

/// Writes `n` JSONL records over `keys` keys to `<dir>/in.jsonl`; returns
/// how many records each key has.
fn write_input(dir: &Path, n: u64, keys: u64) -> BTreeMap<String, u64> {
    let mut text = String::new();
    let mut expected = BTreeMap::new();
    for seq in 0..n {
        // Uneven key sizes: a lost or doubled record shows in one key's tail.
        let key = format!("key-{:02}", (seq * seq + seq / 7) % keys);
        text.push_str(&format!("{{\"k\":\"{key}\",\"seq\":{seq}}}\n"));
        *expected.entry(key).or_insert(0) += 1;
    }
    std::fs::write(dir.join("in.jsonl"), text).unwrap();
    expected
}

/// A job file: the file source (throttled to `rate` per split), optionally
/// an upper-casing map on a forward edge, the `versioned` count behind a
/// hash edge, an exactly-once sink. Checkpoints every 200 ms.
struct Spec {
    name: &'static str,
    backend: &'static str,
    rate: u64,
    /// Put `upper` (map_op, forward edge from the source) before `count`.
    with_map: bool,
}

impl Spec {
    fn write(&self, dir: &Path) -> PathBuf {
        let (map, count_input) = if self.with_map {
            (
                format!(
                    "[[operator]]\nname = \"upper\"\nwasm = \"{}\"\ninput = \"src\"\n",
                    guest("map_op").display()
                ),
                "upper",
            )
        } else {
            (String::new(), "src")
        };
        let text = format!(
            r#"
[job]
name = "{name}"
parallelism = 1
state_backend = "{backend}"

[checkpoint]
interval_ms = 200
dir = "chk"
retain = 2

[[source]]
name = "src"
kind = "file"
path = "{input}"
format = "jsonl"
key_field = "k"
records_per_second = {rate}

{map}
[[operator]]
name = "count"
wasm = "{wasm}"
input = "{count_input}"
edge = "hash"

[[sink]]
name = "out"
kind = "file"
exactly_once = true
path = "out"
input = "count"
"#,
            name = self.name,
            backend = self.backend,
            input = dir.join("in.jsonl").display(),
            rate = self.rate,
            wasm = guest("versioned").display(),
        );
        let path = dir.join("job.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Checks the committed output against `expected` (records per key): each
/// key's counts are exactly 1..=n, each once, and once a key shows a tag
/// other than `v1` it never shows `v1` again. Returns every tag seen and
/// how often.
fn check_exact(text: &str, expected: &BTreeMap<String, u64>, logs: &str) -> BTreeMap<String, u64> {
    let mut seen: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let mut tags = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(',').collect();
        let (key, count, tag) = match parts.as_slice() {
            [k, c, t] => (k, c, t),
            _ => panic!("bad output line {line:?}\n{logs}"),
        };
        let count: u64 = count
            .parse()
            .unwrap_or_else(|_| panic!("bad count in {line:?}\n{logs}"));
        seen.entry(key.to_string())
            .or_default()
            .push((count, tag.to_string()));
        *tags.entry(tag.to_string()).or_insert(0) += 1;
    }
    let keys: Vec<&String> = seen.keys().collect();
    let wanted: Vec<&String> = expected.keys().collect();
    assert_eq!(keys, wanted, "keys in the output\n{logs}");
    for (key, mut counts) in seen {
        counts.sort();
        let numbers: Vec<u64> = counts.iter().map(|(c, _)| *c).collect();
        let n = expected[&key];
        let want: Vec<u64> = (1..=n).collect();
        if numbers != want {
            let missing: Vec<u64> = want
                .iter()
                .filter(|c| !numbers.contains(c))
                .copied()
                .collect();
            let mut doubled = numbers.clone();
            doubled.dedup();
            panic!(
                "key {key}: {} lines for {n} records; missing counts {missing:?}, {} duplicated\n{logs}",
                numbers.len(),
                numbers.len() - doubled.len()
            );
        }
        if let Some(first_new) = counts.iter().position(|(_, t)| t != "v1") {
            assert!(
                counts[first_new..].iter().all(|(_, t)| t != "v1"),
                "key {key}: v1 output after a newer version: {counts:?}\n{logs}"
            );
        }
    }
    tags
}

/// Runs `cmd`; `None` if it takes over `limit` (it is killed then).
fn run_or_timeout(mut cmd: std::process::Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().expect("output"))
}

/// Polls `probe` every 50 ms until it gives a value, at most [`LIMIT`].
fn wait_until<T>(mut probe: impl FnMut() -> Option<T>, what: &str, logs: impl Fn() -> String) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed() < LIMIT,
            "timed out waiting for {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An embedded job: `weir run JOB --api 127.0.0.1:0` in the background,
/// registered in a jobs directory of its own; killed when dropped, its log
/// printed when a test fails.
struct Embedded {
    name: String,
    work: PathBuf,
    jobs: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
}

impl Embedded {
    fn start(name: &str, job: &Path, work: &Path) -> Embedded {
        let jobs = tempfile::tempdir().unwrap();
        let log = work.join("weir-run.log");
        let mut run = weir();
        run.arg("--jobs-dir")
            .arg(jobs.path())
            .arg("run")
            .arg(job)
            .args(["--api", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = run.spawn().expect("weir run starts");
        let job = Embedded {
            name: name.to_string(),
            work: work.to_path_buf(),
            jobs,
            log,
            child: Some(child),
        };
        let registry = job.jobs.path().join(format!("{name}.json"));
        wait_until(
            || registry.exists().then_some(()),
            "the job's registry file",
            || job.logs(),
        );
        job
    }

    fn logs(&self) -> String {
        format!(
            "--- weir run log ---\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// `weir --jobs-dir DIR <args>`.
    fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = weir();
        cmd.arg("--jobs-dir").arg(self.jobs.path()).args(args);
        run_with_deadline(cmd, LIMIT)
    }

    /// `weir jobs --jobs-dir DIR`: its stdout.
    fn listing(&self) -> String {
        let out = self.cli(&["jobs"]);
        assert!(
            out.status.success(),
            "weir jobs: {}\n{}",
            stderr(&out),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last completed checkpoint `weir jobs` shows.
    fn last_checkpoint(&self) -> Option<u64> {
        let listing = self.listing();
        let at = listing.find("last checkpoint ")? + "last checkpoint ".len();
        listing[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    /// Waits until a checkpoint after `after` completed.
    fn wait_for_checkpoint_after(&self, after: u64) -> u64 {
        wait_until(
            || self.last_checkpoint().filter(|&c| c > after),
            &format!("a checkpoint after {after}"),
            || format!("{}\n{}", self.listing(), self.logs()),
        )
    }

    /// `weir rescale NAME --parallelism P [--operator OP]`, which must succeed.
    fn rescale(&self, parallelism: u32, operator: Option<&str>) -> String {
        let out = self.try_rescale(parallelism, operator);
        assert!(
            out.status.success(),
            "weir rescale to {parallelism} ({operator:?}) failed: {}\n{}",
            stderr(&out),
            self.logs()
        );
        stderr(&out)
    }

    fn try_rescale(&self, parallelism: u32, operator: Option<&str>) -> Output {
        let p = parallelism.to_string();
        let mut args = vec!["rescale", self.name.as_str(), "--parallelism", p.as_str()];
        if let Some(op) = operator {
            args.extend(["--operator", op]);
        }
        self.cli(&args)
    }

    /// Asserts `weir jobs` lists `operator` at `parallelism`.
    fn assert_parallelism(&self, operator: &str, parallelism: u32) {
        let listing = self.listing();
        assert!(
            listing.contains(&format!("operator {operator} p={parallelism}:")),
            "`weir jobs` should show operator {operator} at p={parallelism}:\n{listing}\n{}",
            self.logs()
        );
    }

    /// Waits for `weir run` to exit; asserts it finished.
    fn wait_for_finish(&mut self) -> String {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the job did not finish within {LIMIT:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let logs = self.logs();
        assert!(status.success(), "weir run failed: {status}\n{logs}");
        assert!(
            logs.contains(&format!("job `{}` finished", self.name)),
            "{logs}"
        );
        committed_output(&self.work)
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Test 1 and 2: a whole-job rescale up 1 -> 3 and down 3 -> 2 while the
/// job runs, on `backend`.
fn rescale_up_and_down(backend: &'static str) {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let expected = write_input(work.path(), 4_000, 13);
    let job = Spec {
        name: "rescale",
        backend,
        rate: 250,
        with_map: false,
    }
    .write(work.path());
    let mut run = Embedded::start("rescale", &job, work.path());
    let first = run.wait_for_checkpoint_after(1);
    run.assert_parallelism("count", 1);

    let said = run.rescale(3, None);
    assert!(said.contains("at parallelism 3"), "{said}");
    run.assert_parallelism("count", 3);
    let after_up = run.wait_for_checkpoint_after(first + 2);

    run.rescale(2, None);
    run.assert_parallelism("count", 2);
    run.wait_for_checkpoint_after(after_up + 1);

    let text = run.wait_for_finish();
    let tags = check_exact(&text, &expected, &run.logs());
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["v1"], "{tags:?}");
    eprintln!("{backend}: {:?}", started.elapsed());
}

#[test]
fn embedded_memory_rescale_up_then_down_gives_the_exact_answer() {
    rescale_up_and_down("memory");
}

#[test]
fn embedded_rocksdb_rescale_up_then_down_gives_the_exact_answer() {
    rescale_up_and_down("rocksdb");
}

/// Test 3: `count` (behind a hash edge) rescales alone; `upper` (on a
/// forward edge from the source) stays where it was.
#[test]
fn one_operator_behind_a_hash_edge_rescales_alone() {
    let work = tempfile::tempdir().unwrap();
    let expected = write_input(work.path(), 3_000, 11);
    let job = Spec {
        name: "one-op",
        backend: "memory",
        rate: 300,
        with_map: true,
    }
    .write(work.path());
    let mut run = Embedded::start("one-op", &job, work.path());
    let first = run.wait_for_checkpoint_after(1);

    let said = run.rescale(3, Some("count"));
    assert!(said.contains("operator `count`"), "{said}");
    run.assert_parallelism("count", 3);
    run.assert_parallelism("upper", 1);
    run.wait_for_checkpoint_after(first + 1);

    let text = run.wait_for_finish();
    check_exact(&text, &expected, &run.logs());
}

/// Test 3, the refusal: `upper` reads the source over a forward edge, so
/// rescaling it alone is refused with an error naming the edge, and the
/// job goes on as it was.
#[test]
fn a_forward_edge_operator_rescaled_alone_is_refused_and_the_job_goes_on() {
    let work = tempfile::tempdir().unwrap();
    let expected = write_input(work.path(), 3_000, 11);
    let job = Spec {
        name: "fwd",
        backend: "memory",
        rate: 300,
        with_map: true,
    }
    .write(work.path());
    let mut run = Embedded::start("fwd", &job, work.path());
    let first = run.wait_for_checkpoint_after(1);

    let mut cmd = weir();
    cmd.arg("--jobs-dir").arg(run.jobs.path()).args([
        "rescale",
        "fwd",
        "--parallelism",
        "2",
        "--operator",
        "upper",
    ]);
    let out = run_or_timeout(cmd, Duration::from_secs(20)).unwrap_or_else(|| {
        panic!(
            "`weir rescale fwd --parallelism 2 --operator upper` got no answer in 20 s\n{}",
            run.logs()
        )
    });
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "rescaling `upper` alone should be refused: {err}"
    );
    assert!(
        err.contains("forward edge") && err.contains("upper"),
        "the refusal should name the forward edge: {err}\n{}",
        run.logs()
    );
    // The job goes on as it was, and still checkpoints.
    let listing = run.listing();
    assert!(listing.contains("running"), "{listing}\n{}", run.logs());
    run.assert_parallelism("count", 1);
    run.assert_parallelism("upper", 1);
    run.wait_for_checkpoint_after(first + 1);

    let text = run.wait_for_finish();
    check_exact(&text, &expected, &run.logs());
}

/// A rescale of one operator keeps what an earlier whole-job rescale did:
/// after `--parallelism 2` and then `--operator count --parallelism 3`,
/// `upper` still runs at 2.
#[test]
fn rescaling_one_operator_keeps_an_earlier_whole_job_rescale() {
    let work = tempfile::tempdir().unwrap();
    let expected = write_input(work.path(), 3_000, 11);
    let job = Spec {
        name: "compose",
        backend: "memory",
        rate: 250,
        with_map: true,
    }
    .write(work.path());
    let mut run = Embedded::start("compose", &job, work.path());
    let first = run.wait_for_checkpoint_after(1);
    run.rescale(2, None);
    run.assert_parallelism("upper", 2);
    run.assert_parallelism("count", 2);
    let after = run.wait_for_checkpoint_after(first);
    run.rescale(3, Some("count"));
    run.assert_parallelism("count", 3);
    run.assert_parallelism("upper", 2);
    run.wait_for_checkpoint_after(after);
    let text = run.wait_for_finish();
    check_exact(&text, &expected, &run.logs());
}

/// Test 4: a 3-worker cluster; a job at parallelism 1 rescaled to 3 (on
/// every worker) and then to 2 while it runs, then upgraded live to v2.
#[test]
fn cluster_rescale_up_down_and_live_upgrade() {
    let started = Instant::now();
    let cluster = Cluster::start(3, 2, None);
    let logs = || cluster.logs();
    let work = tempfile::tempdir().unwrap();
    let expected = write_input(work.path(), 6_000, 17);
    let name = "crescale";
    let job = Spec {
        name,
        backend: "memory",
        rate: 150,
        with_map: false,
    }
    .write(work.path());
    cluster.submit(&job);
    cluster.wait_for_checkpoint(name, 2);
    let info = cluster.job(name);
    assert_eq!(info["parallelism"]["count"], 1, "{info}");

    let savepoints = work.path().join("savepoints");
    let rescale = |p: &str| {
        let mut cmd = cluster.cli(&["rescale", name, "--parallelism", p, "--dir"]);
        cmd.arg(&savepoints);
        let out = run_with_deadline(cmd, LIMIT);
        assert!(
            out.status.success(),
            "rescale to {p}: {}\n{}",
            stderr(&out),
            logs()
        );
    };
    let workers_of = |info: &serde_json::Value| info["workers"].as_object().map_or(0, |w| w.len());

    rescale("3");
    let info = cluster.job(name);
    assert_eq!(info["state"], "running", "{info}\n{}", logs());
    assert_eq!(info["parallelism"]["count"], 3, "{info}");
    assert_eq!(
        workers_of(&info),
        3,
        "the p=3 attempt should use every worker: {info}"
    );
    let at = info["last_checkpoint"].as_u64().unwrap_or(0);
    cluster.wait_for_checkpoint(name, at + 2);

    rescale("2");
    let info = cluster.job(name);
    assert_eq!(info["state"], "running", "{info}\n{}", logs());
    assert_eq!(info["parallelism"]["count"], 2, "{info}");
    assert!(
        (1..=2).contains(&workers_of(&info)),
        "the p=2 attempt runs on at most 2 workers: {info}"
    );
    let at = info["last_checkpoint"].as_u64().unwrap_or(0);
    cluster.wait_for_checkpoint(name, at + 2);

    let mut upgrade = cluster.cli(&["upgrade", name, "--operator", "count", "--wasm"]);
    upgrade.arg(guest("versioned_v2"));
    let out = run_with_deadline(upgrade, LIMIT);
    assert!(
        out.status.success(),
        "upgrade: {}\n{}",
        stderr(&out),
        logs()
    );
    let info = cluster.job(name);
    assert_eq!(
        info["state"], "running",
        "the upgrade should not stop the job: {info}"
    );

    let end = cluster.wait_for_end(name);
    assert_eq!(end["state"], "finished", "{end}\n{}", logs());
    assert_eq!(end["restarts"], 0, "{end}");
    let versions = end["versions"].as_array().cloned().unwrap_or_default();
    let count = versions
        .iter()
        .find(|v| v["operator"] == "count")
        .unwrap_or_else(|| panic!("no versions of `count`: {end}"));
    assert_eq!(
        count["history"].as_array().map(Vec::len),
        Some(2),
        "history of `count`: {end}"
    );
    let text = committed_output(work.path());
    let tags = check_exact(&text, &expected, &logs());
    assert!(
        tags.contains_key("v1") && tags.contains_key("v2m"),
        "{tags:?}"
    );
    assert_eq!(tags.len(), 2, "only v1 then v2m: {tags:?}");
    eprintln!("cluster: {:?}", started.elapsed());
}
