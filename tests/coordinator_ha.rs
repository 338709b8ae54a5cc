//! Coordinator high availability, end to end: a coordinator with
//! `--ha-dir` and two workers with `--reconnect-secs`; the coordinator is
//! SIGKILLed while a checkpointed job with an exactly-once sink runs, and
//! started again on the same storage. The job is taken over without being
//! submitted again and finishes exactly once; `weir jobs` shows it; jobs
//! that had finished or were cancelled before the kill are not run again.
//! Once with the HA store and checkpoints in a local directory, once with
//! both on S3 (SeaweedFS), where the nodes share nothing else.

mod common;
#[path = "s3/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::collect::{Job, assert_exactly_once};
use common::{committed_output, run_with_deadline, stderr, weir};
use server::Weed;

const LIMIT: Duration = Duration::from_secs(180);

/// A coordinator and workers on fixed loopback ports (a restarted
/// coordinator must be found where the workers look), killed when dropped.
struct Ha {
    dir: tempfile::TempDir,
    rest: String,
    quic: String,
    children: Vec<(String, Child)>,
    /// The S3 server holding the HA store and checkpoints, if not local.
    s3: Option<Weed>,
}

fn free_ports() -> (u16, u16) {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    (
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    )
}

impl Ha {
    fn start(workers: u32, s3: Option<Weed>) -> Ha {
        let dir = tempfile::tempdir().unwrap();
        let mut init = weir();
        init.args([
            "cluster",
            "init",
            "--workers",
            &workers.to_string(),
            "--dir",
        ])
        .arg(dir.path().join("certs"));
        let out = run_with_deadline(init, LIMIT);
        assert!(out.status.success(), "{}", stderr(&out));
        let (rest, quic) = free_ports();
        let mut ha = Ha {
            dir,
            rest: format!("127.0.0.1:{rest}"),
            quic: format!("127.0.0.1:{quic}"),
            children: Vec::new(),
            s3,
        };
        ha.start_coordinator("coordinator");
        for i in 1..=workers {
            let name = format!("worker-{i}");
            let mut worker = weir();
            worker
                .args(["worker", "--coordinator", &ha.quic, "--name", &name])
                .args(["--slots", "4", "--reconnect-secs", "120", "--certs"])
                .arg(ha.certs())
                .arg("--work-dir")
                .arg(ha.dir.path().join(&name))
                .arg("--data-root")
                .arg(std::env::temp_dir())
                .arg("--read-root")
                .arg(env!("CARGO_MANIFEST_DIR"));
            ha.with_s3_env(&mut worker);
            ha.spawn(&name, worker);
        }
        ha.wait_for(
            || (ha.workers() == workers as usize).then_some(()),
            "every worker to register",
        );
        ha
    }

    fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Where the HA store is: a directory, or `s3://<bucket>/ha`.
    fn ha_location(&self) -> String {
        match &self.s3 {
            None => self.dir.path().join("ha").display().to_string(),
            Some(weed) => weed.url("ha"),
        }
    }

    /// The HA record of job `name`, if the store holds one.
    fn record(&self, name: &str) -> Option<serde_json::Value> {
        let key = format!("jobs/{name}.json");
        let bytes = match &self.s3 {
            None => std::fs::read(self.dir.path().join("ha").join(&key)).ok()?,
            Some(weed) => {
                let key = format!("ha/{key}");
                if !weed.keys(&key).contains(&key) {
                    return None;
                }
                weed.get(&key)
            }
        };
        serde_json::from_slice(&bytes).ok()
    }

    /// The S3 endpoint and credentials, from the environment as in
    /// production (SeaweedFS without identities takes any credentials).
    fn with_s3_env(&self, cmd: &mut Command) {
        if let Some(weed) = &self.s3 {
            cmd.env("AWS_ACCESS_KEY_ID", "weir-test")
                .env("AWS_SECRET_ACCESS_KEY", "weir-test-secret")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ENDPOINT", weed.endpoint())
                .env("AWS_ALLOW_HTTP", "true");
        }
    }

    /// Starts a coordinator (again) on the same ports, data and HA store;
    /// `log` names its log file.
    fn start_coordinator(&mut self, log: &str) {
        let mut coordinator = weir();
        coordinator
            .args(["coordinator", "--rest", &self.rest, "--quic", &self.quic])
            .arg("--certs")
            .arg(self.certs())
            .arg("--token-file")
            .arg(self.certs().join("token"))
            .arg("--data-dir")
            .arg(self.dir.path().join("coordinator"))
            .arg("--data-root")
            .arg(std::env::temp_dir())
            .arg("--read-root")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .arg("--ha-dir")
            .arg(self.ha_location());
        self.with_s3_env(&mut coordinator);
        self.spawn(log, coordinator);
        self.wait_for(
            || self.call("/health").map(|_| ()),
            "the coordinator's REST API",
        );
    }

    fn spawn(&mut self, name: &str, mut cmd: Command) {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    fn kill(&mut self, name: &str) {
        let (_, child) = self.children.iter_mut().find(|(n, _)| n == name).unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for (name, _) in &self.children {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            text.push_str(&format!("--- {name} ---\n{log}\n"));
        }
        text
    }

    /// `GET path` with the token: the JSON body of a 200, else `None`.
    fn call(&self, path: &str) -> Option<serde_json::Value> {
        let agent =
            weir_cluster::client::agent(&self.certs().join("ca.pem"), Duration::from_secs(10))
                .unwrap();
        let token = std::fs::read_to_string(self.certs().join("token")).unwrap();
        let response = agent
            .get(&format!("https://{}{path}", self.rest))
            .header("Authorization", &format!("Bearer {}", token.trim()))
            .call()
            .ok()?;
        let text = response.into_body().read_to_string().ok()?;
        serde_json::from_str(&text).ok()
    }

    fn workers(&self) -> usize {
        self.call("/workers")
            .and_then(|w| w.as_array().map(Vec::len))
            .unwrap_or(0)
    }

    fn state(&self, job: &str) -> Option<String> {
        self.call(&format!("/jobs/{job}"))
            .and_then(|j| j["state"].as_str().map(str::to_string))
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = weir();
        cmd.args(args)
            .env("WEIR_CLUSTER", format!("https://{}", self.rest))
            .env("WEIR_TOKEN_FILE", self.certs().join("token"))
            .env("WEIR_CA_FILE", self.certs().join("ca.pem"));
        let out = run_with_deadline(cmd, LIMIT);
        assert!(
            out.status.success(),
            "weir {args:?} failed: {}\n{}",
            stderr(&out),
            self.logs()
        );
        out
    }

    fn wait_for<T>(&self, mut probe: impl FnMut() -> Option<T>, what: &str) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = probe() {
                return value;
            }
            assert!(
                started.elapsed() < LIMIT,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The collect job named `name` in a directory of its own under the
/// nodes' data root.
fn job(ha: &Ha, name: &str, records: u64, rate: Option<u64>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        parallelism: 4,
        rate,
        checkpoint_interval_ms: 200,
        restarts: Some(3),
        ..Job::new(records)
    };
    // The first `name = "collect"` is the job's (the operator's follows).
    let mut text = job
        .text()
        .replacen("name = \"collect\"", &format!("name = \"{name}\""), 1);
    if let Some(weed) = &ha.s3 {
        let local = "dir = \"chk\"\n";
        assert!(text.contains(local), "{text}");
        text = text.replacen(
            local,
            &format!(
                "dir = \"{}\"\ns3_endpoint = \"{}\"\ns3_allow_http = true\n",
                weed.url("chk"),
                weed.endpoint()
            ),
            1,
        );
    }
    let file = dir.path().join("job.toml");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

fn submit(ha: &Ha, file: &Path) {
    ha.cli(&["submit", file.to_str().unwrap()]);
}

#[test]
fn a_restarted_coordinator_takes_over_its_running_job_and_it_finishes_exactly_once() {
    takeover(None);
}

#[test]
fn a_coordinator_with_its_store_and_checkpoints_on_s3_takes_over_after_a_restart() {
    takeover(Some(Weed::start()));
}

fn takeover(s3: Option<Weed>) {
    common::guest("window_collect");
    let mut ha = Ha::start(2, s3);

    // A job that finishes and one that is cancelled before the kill.
    let (short_dir, short) = job(&ha, "short", 300, None);
    submit(&ha, &short);
    ha.wait_for(
        || (ha.state("short")? == "finished").then_some(()),
        "job `short` to finish",
    );
    let short_output = committed_output(short_dir.path());
    assert_exactly_once(&short_output, 300);
    let (_cancelled_dir, cancelled) = job(&ha, "cancelled", 1_000_000, Some(1000));
    submit(&ha, &cancelled);
    ha.wait_for(
        || (ha.state("cancelled")? == "running").then_some(()),
        "job `cancelled` to run",
    );
    ha.cli(&["cancel", "cancelled"]);
    ha.wait_for(
        || (ha.state("cancelled")? == "cancelled").then_some(()),
        "job `cancelled` to end",
    );

    // The job under test runs ~8 s at this rate.
    let records = 20_000;
    let (dir, file) = job(&ha, "ha", records, Some(2500));
    submit(&ha, &file);
    ha.wait_for(
        || {
            let job = ha.call("/jobs/ha")?;
            (job["state"] == "running" && job["last_checkpoint"].as_u64()? >= 3).then_some(())
        },
        "checkpoint 3 of job `ha`",
    );
    // Every record change (the checkpoint above included) is written
    // within a few sync rounds; the ended jobs' records are gone.
    ha.wait_for(
        || (ha.record("ha")?["last_checkpoint"].as_u64()? >= 3).then_some(()),
        "the HA record of job `ha` to show checkpoint 3",
    );
    assert!(ha.record("short").is_none());
    assert!(ha.record("cancelled").is_none());

    ha.kill("coordinator");
    assert_ne!(
        ha.state("ha"),
        Some("finished".into()),
        "the job must still be running when the coordinator dies"
    );
    ha.start_coordinator("coordinator-2");

    // Not submitted again: the new coordinator knows the job by itself.
    let listed = ha.cli(&["jobs", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(names, ["ha"], "only the running job is taken over");
    ha.wait_for(
        || {
            let state = ha.state("ha")?;
            assert_ne!(state, "failed", "{}", ha.logs());
            (state == "finished").then_some(())
        },
        "job `ha` to finish after the takeover",
    );
    let log = std::fs::read_to_string(ha.dir.path().join("coordinator-2.log")).unwrap();
    assert!(
        log.contains("job `ha` taken over after a coordinator restart: resumed from checkpoint"),
        "{log}"
    );
    assert_exactly_once(&committed_output(dir.path()), records);
    assert_eq!(
        committed_output(short_dir.path()),
        short_output,
        "the finished job did not run again"
    );
    ha.wait_for(
        || ha.record("ha").is_none().then_some(()),
        "the finished job's HA record to go",
    );
}
