//! A real cluster for tests and benches: a coordinator and worker
//! processes of the `weir` binary on loopback, killed when dropped. Their
//! logs go to files, printed when a test fails. The REST API is HTTPS
//! (trusting the cluster's CA) and every node's data root is the system
//! temporary directory, where tests keep their jobs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::collect::Job;
pub use super::committed_output;
use super::{run_with_deadline, stderr, weir};

pub const LIMIT: Duration = Duration::from_secs(180);

/// A coordinator and workers, killed when dropped. Their logs go to files
/// in `dir`, printed when a test fails.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    rest: String,
    quic: String,
    children: Vec<(String, Child)>,
}

impl Cluster {
    pub fn start(workers: u32, slots: u32, artifact_max_bytes: Option<usize>) -> Cluster {
        let mut extra = Vec::new();
        if let Some(max) = artifact_max_bytes {
            extra.extend(["--artifact-max-bytes".to_string(), max.to_string()]);
        }
        Cluster::start_with(workers, slots, &extra)
    }

    /// The data root every node of a test cluster allows.
    pub fn data_root() -> PathBuf {
        std::env::temp_dir()
    }

    /// The read-only root every node allows: the repository, whose
    /// examples hold the inputs of some jobs.
    pub fn read_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// A cluster whose coordinator gets `coordinator_args` besides the usual.
    pub fn start_with(workers: u32, slots: u32, coordinator_args: &[String]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let mut init = weir();
        init.args([
            "cluster",
            "init",
            "--workers",
            &workers.to_string(),
            "--dir",
        ])
        .arg(&certs);
        let out = run_with_deadline(init, LIMIT);
        assert!(
            out.status.success(),
            "cluster init failed: {}",
            stderr(&out)
        );
        let ready = dir.path().join("ready.json");
        let mut coordinator = weir();
        coordinator
            .args([
                "coordinator",
                "--rest",
                "127.0.0.1:0",
                "--quic",
                "127.0.0.1:0",
                "--certs",
            ])
            .arg(&certs)
            .arg("--token-file")
            .arg(certs.join("token"))
            .arg("--data-dir")
            .arg(dir.path().join("coordinator"))
            .arg("--data-root")
            .arg(Cluster::data_root())
            .arg("--read-root")
            .arg(Cluster::read_root())
            .arg("--ready-file")
            .arg(&ready)
            .args(coordinator_args);
        let mut cluster = Cluster {
            rest: String::new(),
            quic: String::new(),
            children: Vec::new(),
            dir,
        };
        cluster.spawn("coordinator", coordinator);
        let ready_bytes = wait_for(
            || std::fs::read(&ready).ok(),
            "the coordinator's ready file",
            &cluster,
        );
        let addresses: serde_json::Value = serde_json::from_slice(&ready_bytes).unwrap();
        cluster.rest = addresses["rest"].as_str().unwrap().to_string();
        cluster.quic = addresses["quic"].as_str().unwrap().to_string();
        for i in 1..=workers {
            cluster.add_worker(&format!("worker-{i}"), &certs, slots);
        }
        wait_for(
            || (cluster.workers().len() == workers as usize).then_some(()),
            "every worker to register",
            &cluster,
        );
        cluster
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn spawn(&mut self, name: &str, mut cmd: Command) {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    pub fn worker_command(&self, name: &str, certs: &Path, slots: u32) -> Command {
        let mut worker = weir();
        worker
            .args([
                "worker",
                "--coordinator",
                &self.quic,
                "--name",
                name,
                "--slots",
                &slots.to_string(),
                "--certs",
            ])
            .arg(certs)
            .arg("--work-dir")
            .arg(self.dir.path().join(name))
            .arg("--data-root")
            .arg(Cluster::data_root())
            .arg("--read-root")
            .arg(Cluster::read_root())
            .args(["--metrics", "127.0.0.1:0"]);
        worker
    }

    /// The base URL of worker `name`'s metrics listener, from its log.
    pub fn worker_metrics(&self, name: &str) -> Option<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            if let Some(at) = log.find("metrics on http://") {
                let url: String = log[at + "metrics on ".len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                return Some(url.trim_end_matches("/metrics").to_string());
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn add_worker(&mut self, name: &str, certs: &Path, slots: u32) {
        let cmd = self.worker_command(name, certs, slots);
        self.spawn(name, cmd);
    }

    /// The REST API's URL (`https://...`).
    pub fn rest(&self) -> &str {
        &self.rest
    }

    /// The coordinator's QUIC address, where workers join.
    pub fn quic(&self) -> &str {
        &self.quic
    }

    /// Whether the process `name` (coordinator, worker-1, ...) still runs.
    pub fn is_running(&mut self, name: &str) -> bool {
        self.children
            .iter_mut()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, child)| matches!(child.try_wait(), Ok(None)))
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.certs().join("token")).unwrap()
    }

    pub fn logs(&self) -> String {
        let mut text = String::new();
        for (name, _) in &self.children {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            text.push_str(&format!("--- {name} ---\n{log}\n"));
        }
        text
    }

    /// `weir <args>` against this cluster.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = weir();
        cmd.args(args)
            .env("WEIR_CLUSTER", &self.rest)
            .env("WEIR_TOKEN_FILE", self.certs().join("token"))
            .env("WEIR_CA_FILE", self.certs().join("ca.pem"));
        cmd
    }

    /// An HTTP agent trusting this cluster's CA.
    pub fn agent(&self) -> ureq::Agent {
        weir_cluster::client::agent(&self.certs().join("ca.pem"), Duration::from_secs(60)).unwrap()
    }

    /// A REST call: (status, JSON body).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.rest);
        let agent = self.agent();
        let response = match (method, body) {
            ("GET", _) => {
                let mut request = agent.get(&url);
                if let Some(t) = token {
                    request = request.header("Authorization", &format!("Bearer {t}"));
                }
                request.call()
            }
            (_, body) => {
                let kind = if path.starts_with("/artifacts") {
                    "application/octet-stream"
                } else {
                    "application/json"
                };
                let mut request = agent.post(&url).header("Content-Type", kind);
                if let Some(t) = token {
                    request = request.header("Authorization", &format!("Bearer {t}"));
                }
                request.send(body.unwrap_or_default())
            }
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    pub fn workers(&self) -> Vec<serde_json::Value> {
        match self.call("GET", "/workers", Some(self.token().trim()), None) {
            (200, serde_json::Value::Array(workers)) => workers,
            _ => Vec::new(),
        }
    }

    pub fn job(&self, job: &str) -> serde_json::Value {
        self.call(
            "GET",
            &format!("/jobs/{job}"),
            Some(self.token().trim()),
            None,
        )
        .1
    }

    /// `weir submit JOB` (without waiting for the job).
    pub fn submit(&self, job: &Path) {
        let mut submit = self.cli(&["submit"]);
        submit.arg(job);
        let out = run_with_deadline(submit, LIMIT);
        assert!(
            out.status.success(),
            "submit failed: {}\n{}",
            stderr(&out),
            self.logs()
        );
    }

    /// Waits until `job` completed checkpoint `id` (or a later one).
    pub fn wait_for_checkpoint(&self, job: &str, id: u64) {
        wait_for(
            || {
                self.job(job)["last_checkpoint"]
                    .as_u64()
                    .filter(|&c| c >= id)
            },
            &format!("checkpoint {id} of job `{job}`"),
            self,
        );
    }

    /// Waits until `job` finished or failed; returns its status.
    pub fn wait_for_end(&self, job: &str) -> serde_json::Value {
        wait_for(
            || Some(self.job(job)).filter(|j| j["state"] == "finished" || j["state"] == "failed"),
            &format!("job `{job}` to end"),
            self,
        )
    }

    pub fn kill(&mut self, name: &str) {
        let (_, child) = self.children.iter_mut().find(|(n, _)| n == name).unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
}

impl Drop for Cluster {
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

pub fn wait_for<T>(mut probe: impl FnMut() -> Option<T>, what: &str, cluster: &Cluster) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed() < LIMIT,
            "timed out waiting for {what}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The collect job at parallelism 6 with checkpoints every 200 ms and
/// restarts, throttled to `rate` records/s so that it runs for a while.
pub fn collect_job(dir: &Path, records: u64, rate: u64) -> PathBuf {
    Job {
        parallelism: 6,
        rate: Some(rate),
        checkpoint_interval_ms: 200,
        restarts: Some(3),
        ..Job::new(records)
    }
    .write(dir)
}

/// The collect job's output run straight through on one machine: the
/// reference the cluster runs are compared with.
pub fn straight_output(records: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut run = weir();
    run.arg("run")
        .arg(collect_job(dir.path(), records, 1_000_000));
    let out = run_with_deadline(run, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    committed_output(dir.path())
}
