//! What the CLI shows of a running job: JSON logs (a task's lines name
//! its job, operator and subtask), plain status lines when stderr is not a terminal (`weir run`
//! and `weir submit --wait`), and `weir jobs` as a table and as JSON, on
//! this machine and on a cluster.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, LIMIT, wait_for};
use common::collect::Job;
use common::{guest, run_with_deadline, stderr, weir};
use serde_json::Value;

/// A generator -> map -> file job; `rate` throttles the generator.
fn map_job(dir: &Path, name: &str, records: u64, rate: Option<u64>) -> std::path::PathBuf {
    let rate = rate
        .map(|r| format!("records_per_second = {r}"))
        .unwrap_or_default();
    let text = format!(
        r#"
[job]
name = "{name}"
parallelism = 2
[checkpoint]
interval_ms = 300
dir = "chk"
[[source]]
name = "gen"
kind = "generator"
records = {records}
keys = 5
start_ms = 1700000000000
interval_ms = 10
{rate}
[[operator]]
name = "upper"
wasm = "{wasm}"
input = "gen"
[[sink]]
name = "out"
kind = "file"
path = "out.txt"
input = "upper"
"#,
        wasm = guest("map_op").display()
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The JSON lines of `text`; every line that looks like one must be one.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn json_logs_parse_and_a_short_run_prints_no_status_lines() {
    let dir = tempfile::tempdir().unwrap();
    let job = map_job(dir.path(), "json-logs", 2000, None);
    let mut cmd = weir();
    cmd.arg("--jobs-dir")
        .arg(dir.path().join("jobs"))
        .args(["--log-format", "json", "-vv", "run"])
        .arg(&job);
    let out = run_with_deadline(cmd, LIMIT);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let lines = json_lines(&err);
    assert!(lines.len() > 3, "few JSON lines:\n{err}");
    for line in &lines {
        for field in ["timestamp", "level", "target"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
    }
    assert!(
        lines.iter().any(|l| l["job"] == "json-logs"),
        "no line names the job:\n{err}"
    );
    // A job shorter than the status period prints no status line; the summary stays.
    assert!(!err.contains("weir: job json-logs: node"), "{err}");
    assert!(err.contains("job `json-logs` finished"), "{err}");
}

/// The cells of `weir jobs`'s table: one map per row, by column name
/// (columns start where their names start in the header).
fn table_rows(table: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let names = [
        "JOB",
        "STATE",
        "UPTIME",
        "RESTARTS",
        "LAST CHECKPOINT",
        "PARALLELISM",
        "WORKERS",
    ];
    let starts: Vec<usize> = names
        .iter()
        .map(|n| {
            header
                .find(n)
                .unwrap_or_else(|| panic!("no {n} column:\n{table}"))
        })
        .collect();
    lines
        .take_while(|l| !l.is_empty())
        .map(|line| {
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let end = starts
                        .get(i + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    let cell = line.get(starts[i].min(end)..end).unwrap_or_default();
                    (name.to_string(), cell.trim().to_string())
                })
                .collect()
        })
        .collect()
}

#[test]
fn json_log_lines_of_a_task_name_its_job_operator_and_subtask() {
    let (dir, job) = common::job_file(&format!(
        r#"
[job]
name = "panics"
parallelism = 2
[[source]]
name = "gen"
kind = "generator"
records = 100
keys = 5
[[operator]]
name = "bad"
wasm = "{}"
input = "gen"
config = {{ behavior = "panic" }}
[[sink]]
name = "out"
kind = "stdout"
input = "bad"
"#,
        guest("hostile").display()
    ));
    let mut cmd = weir();
    cmd.arg("--jobs-dir")
        .arg(dir.path().join("jobs"))
        .args(["--log-format", "json", "run"])
        .arg(&job);
    let out = run_with_deadline(cmd, LIMIT);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    // The guest's panic message is logged on its task's thread.
    let lines = json_lines(&err);
    let panic = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("panicked on purpose"))
        })
        .unwrap_or_else(|| panic!("the guest's panic is not logged:\n{err}"));
    assert_eq!(panic["job"], "panics", "{panic}");
    assert!(
        panic["operator"]
            .as_str()
            .is_some_and(|o| o.contains("bad")),
        "{panic}"
    );
    assert!(panic["subtask"].as_u64().is_some_and(|s| s < 2), "{panic}");
    assert_eq!(panic["level"], "ERROR", "{panic}");
}

/// Runs `weir <args>` and parses its stdout as JSON.
fn json_of(mut cmd: Command) -> Value {
    cmd.arg("--json");
    let out = run_with_deadline(cmd, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The stdout of `cmd`, which must succeed.
fn stdout_of(cmd: Command) -> String {
    let out = run_with_deadline(cmd, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits for `child` with a deadline; returns its stderr.
fn finish(mut child: Child) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weir did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, reader.join().unwrap())
}

/// Checks the periodic plain lines of job `job` in `err`: one per node
/// of `nodes` with a non-zero rate.
fn assert_plain_status(err: &str, job: &str, nodes: &[&str]) {
    for node in nodes {
        let prefix = format!("weir: job {job}: node {node}: ");
        let line = err
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no status line for {node}:\n{err}"));
        let rate: f64 = line[prefix.len()..]
            .split(' ')
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no rate in {line}"));
        assert!(rate > 0.0, "{line}");
        assert!(line.contains(", watermark "), "{line}");
    }
}

#[test]
fn a_long_run_prints_status_lines_and_is_listed_by_weir_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    // 3,600 records at 300/s: about 12 s, past the 10 s status period.
    let job = map_job(dir.path(), "slow", 3600, Some(300));
    let child = weir()
        .arg("--jobs-dir")
        .arg(&jobs)
        .arg("run")
        .arg(&job)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let listing = |json: bool| {
        let mut cmd = weir();
        cmd.arg("--jobs-dir").arg(&jobs).arg("jobs");
        if json {
            json_of(cmd).to_string()
        } else {
            stdout_of(cmd)
        }
    };
    let started = Instant::now();
    let table = loop {
        let table = listing(false);
        if table.contains("slow") && table.contains("running") {
            break table;
        }
        assert!(
            started.elapsed() < LIMIT,
            "slow never listed running:\n{table}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let rows = table_rows(&table);
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(rows[0]["JOB"], "slow", "{table}");
    assert_eq!(rows[0]["STATE"], "running", "{table}");
    assert_eq!(rows[0]["RESTARTS"], "0", "{table}");
    assert_eq!(rows[0]["PARALLELISM"], "2", "{table}");
    assert_eq!(rows[0]["WORKERS"], "local", "{table}");
    assert_ne!(rows[0]["UPTIME"], "-", "{table}");
    // Then the lines it printed before the table existed.
    assert!(table.contains("operator upper p=2: "), "{table}");
    let json: Value = serde_json::from_str(&listing(true)).unwrap();
    assert_eq!(json[0]["name"], "slow", "{json}");
    assert_eq!(json[0]["parallelism"]["upper"], 2, "{json}");

    let (status, err) = finish(child);
    assert!(status.success(), "{err}");
    assert_plain_status(&err, "slow", &["gen", "upper"]);
    assert!(err.contains("job `slow` finished"), "{err}");
}

#[test]
fn submit_wait_prints_status_lines_and_jobs_lists_the_cluster_job() {
    let cluster = Cluster::start(2, 3, None);
    let work = tempfile::tempdir_in(Cluster::data_root()).unwrap();
    // 2,400 records at 200/s: about 12 s.
    let job = Job {
        parallelism: 6,
        rate: Some(200),
        checkpoint_interval_ms: 200,
        ..Job::new(2400)
    }
    .write(work.path());
    let mut submit = cluster.cli(&["submit", "--wait"]);
    let child = submit
        .arg(&job)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let table = wait_for(
        || {
            let table = stdout_of(cluster.cli(&["jobs"]));
            table.contains("running").then_some(table)
        },
        "the job to run",
        &cluster,
    );
    let rows = table_rows(&table);
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(rows[0]["JOB"], "collect", "{table}");
    assert_eq!(rows[0]["STATE"], "running", "{table}");
    assert_eq!(rows[0]["PARALLELISM"], "6", "{table}");
    // Worker ids with the slots each gives.
    assert_eq!(rows[0]["WORKERS"], "1:3,2:3", "{table}");
    assert!(table.contains("operator collect p=6: "), "{table}");
    let json = json_of(cluster.cli(&["jobs"]));
    assert_eq!(json[0]["name"], "collect", "{json}");

    let (status, err) = finish(child);
    assert!(status.success(), "{err}\n{}", cluster.logs());
    assert_plain_status(&err, "collect", &["gen", "collect"]);
    assert!(err.contains("job `collect` finished"), "{err}");
}
