//! Watching a running job from outside: the web dashboard in a real
//! (headless) Chromium, a real Prometheus scraping `/metrics`, and
//! `promtool check metrics` on every metrics page. Each test starts and
//! stops its own processes on loopback.

#[path = "observe/cdp.rs"]
mod cdp;
mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{guest, repo, weir};

const JOB: &str = "watched";

/// A job that runs for about a minute: a throttled generator, a map, a
/// keyed count behind a hash edge, an exactly-once sink.
fn job_text(dir: &Path) -> String {
    format!(
        r#"
[job]
name = "{JOB}"
parallelism = 2

[checkpoint]
interval_ms = 300
dir = "{dir}/chk"

[[source]]
name = "events"
kind = "generator"
records = 90000
keys = 50
records_per_second = 1000
# Event time starts now and advances 1 ms per record, as fast as the wall
# clock, so the watermark lag the dashboard shows means something.
start_ms = {now}
interval_ms = 1

[[operator]]
name = "shape"
wasm = "{map}"
input = "events"

[[operator]]
name = "count"
wasm = "{count}"
input = "shape"
edge = "hash"

[[sink]]
name = "out"
kind = "file"
exactly_once = true
path = "{dir}/out"
input = "count"
"#,
        dir = dir.display(),
        now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        map = guest("map_op").display(),
        count = guest("versioned").display(),
    )
}

const NODES: [&str; 4] = ["events", "shape", "count", "out"];

/// A `weir run` of [`job_text`] with its control API on; killed on drop.
struct Embedded {
    child: Child,
    api: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Embedded {
    fn start() -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("job.toml");
        std::fs::write(&file, job_text(dir.path())).unwrap();
        let jobs = dir.path().join("jobs");
        let mut cmd = weir();
        cmd.arg("--jobs-dir")
            .arg(&jobs)
            .args(["run", "--api", "127.0.0.1:0"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("run.log")).unwrap(),
            ));
        let child = cmd.spawn().expect("weir run starts");
        let registry = jobs.join(format!("{JOB}.json"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let entry: serde_json::Value = loop {
            if let Ok(text) = std::fs::read_to_string(&registry)
                && let Ok(value) = serde_json::from_str(&text)
            {
                break value;
            }
            assert!(
                Instant::now() < deadline,
                "the job did not register its API: {}",
                std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        Embedded {
            child,
            api: entry["api"].as_str().unwrap().to_string(),
            token: entry["token"].as_str().unwrap().to_string(),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run.log")).unwrap_or_default()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url` with the bearer token; the body as text.
fn get(agent: &ureq::Agent, url: &str, token: &str) -> String {
    let mut response = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let mut body = String::new();
    response
        .body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .unwrap();
    assert!(response.status().is_success(), "GET {url}: {body}");
    body
}

fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn screenshot_path(name: &str) -> PathBuf {
    repo().join("target/screenshots").join(name)
}

/// Loads the dashboard at `url`, waits until every node shows a non-zero
/// rate and the checkpoint table fills, saves a screenshot, then takes a
/// savepoint from the page and returns the path the page reports.
fn drive_dashboard(url: &str, screenshot: &str, log: &dyn Fn() -> String) -> String {
    let mut browser = cdp::Browser::start();
    browser.navigate(url);
    let names = serde_json::to_string(&NODES).unwrap();
    let all_moving = format!(
        "{names}.every(n => {{ const e = document.querySelector('[data-node=\"' + n + '\"] .rate'); \
         return e !== null && parseFloat(e.textContent.replace(/[^0-9.]/g, '')) > 0; }})"
    );
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        browser.wait_for(
            &all_moving,
            Duration::from_secs(60),
            "every node to show a rate",
        );
        browser.wait_for(
            "document.querySelectorAll('#checkpoints tr').length >= 2",
            Duration::from_secs(60),
            "the checkpoint table to fill",
        );
    }));
    if let Err(e) = ok {
        eprintln!("--- job log ---\n{}", log());
        std::panic::resume_unwind(e);
    }
    // A few more seconds of history for the charts, then the picture.
    std::thread::sleep(Duration::from_secs(6));
    browser.screenshot(&screenshot_path(screenshot));
    // The page asks before it acts; say yes.
    browser.eval(
        "window.confirm = () => true; document.getElementById('action-savepoint').click(); true",
    );
    let reply = browser.wait_for(
        "(() => { const t = document.getElementById('last-action').textContent; \
         return t.includes('savepoint-') ? t : ''; })()",
        Duration::from_secs(60),
        "the savepoint's path on the page",
    );
    let text = reply.as_str().unwrap().to_string();
    let start = text.find('/').expect("a path in the reply");
    let path: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    path
}

#[test]
fn the_dashboard_of_an_embedded_job_shows_it_live_and_takes_a_savepoint() {
    if cdp::chromium().is_none() {
        panic!("chromium is not installed: run bash scripts/setup-test-systems.sh");
    }
    let job = Embedded::start();
    let url = format!("{}/ui#token={}", job.api, job.token);
    let savepoint = drive_dashboard(&url, "dashboard-embedded.png", &|| job.log());
    assert!(
        Path::new(&savepoint).join("_metadata").is_file(),
        "the page reported {savepoint}, which holds no complete savepoint\n{}",
        job.log()
    );
}

#[test]
fn the_dashboard_of_a_cluster_job_shows_it_live_and_takes_a_savepoint() {
    if cdp::chromium().is_none() {
        panic!("chromium is not installed: run bash scripts/setup-test-systems.sh");
    }
    let cluster = Cluster::start(2, 2, None);
    let work = tempfile::Builder::new()
        .prefix("observe-")
        .tempdir_in(Cluster::data_root())
        .unwrap();
    let file = work.path().join("job.toml");
    std::fs::write(&file, job_text(work.path())).unwrap();
    cluster.submit(&file);
    let url = format!("{}/ui#token={}", cluster.rest(), cluster.token());
    let savepoint = drive_dashboard(&url, "dashboard-cluster.png", &|| cluster.logs());
    assert!(
        Path::new(&savepoint).join("_metadata").is_file(),
        "the page reported {savepoint}, which holds no complete savepoint\n{}",
        cluster.logs()
    );
}

/// A Prometheus server scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str, token: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: weir\n    \
                 metrics_path: /metrics\n    authorization:\n      type: Bearer\n      \
                 credentials_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
                token_file.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("prometheus.log")).unwrap(),
            ))
            .spawn()
            .expect("prometheus starts (bash scripts/setup-test-systems.sh installs it)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The sum of `metric` over every series Prometheus has now, if any.
    fn sum(&self, agent: &ureq::Agent, metric: &str) -> Option<f64> {
        let url = format!("{}/api/v1/query?query=sum({metric})", self.url);
        let mut response = agent.get(&url).call().ok()?;
        let mut body = String::new();
        response
            .body_mut()
            .as_reader()
            .read_to_string(&mut body)
            .ok()?;
        let value: serde_json::Value = serde_json::from_str(&body).ok()?;
        value["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn prometheus_scrapes_a_running_job_and_sees_records_move() {
    let job = Embedded::start();
    let target = job.api.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(&target, &job.token);
    let agent = plain_agent();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some(v) = prometheus.sum(&agent, "weir_records_out_total")
            && v > 0.0
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no weir_records_out_total\n--- prometheus ---\n{}\n--- job ---\n{}",
            prometheus.log(),
            job.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let later = loop {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(v) = prometheus.sum(&agent, "weir_records_out_total")
            && v > first
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "weir_records_out_total stayed at {first}\n{}",
            job.log()
        );
    };
    assert!(later > first);
}

/// Runs `promtool check metrics` on `text`; its complaints if any.
fn promtool(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts (bash scripts/setup-test-systems.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn promtool_accepts_every_metrics_page() {
    let agent = plain_agent();
    let job = Embedded::start();
    // Wait until the job has moved, so every family has samples.
    std::thread::sleep(Duration::from_secs(3));
    let embedded = get(&agent, &format!("{}/metrics", job.api), &job.token);
    assert!(embedded.contains("weir_records_out_total"), "{embedded}");
    promtool(&embedded).unwrap_or_else(|e| panic!("embedded /metrics: {e}\n{embedded}"));

    let cluster = Cluster::start(1, 2, None);
    let work = tempfile::Builder::new()
        .prefix("observe-")
        .tempdir_in(Cluster::data_root())
        .unwrap();
    let file = work.path().join("job.toml");
    std::fs::write(&file, job_text(work.path())).unwrap();
    cluster.submit(&file);
    cluster.wait_for_checkpoint(JOB, 2);
    let tls = cluster.agent();
    let coordinator = get(
        &tls,
        &format!("{}/metrics", cluster.rest()),
        &cluster.token(),
    );
    promtool(&coordinator).unwrap_or_else(|e| panic!("coordinator /metrics: {e}\n{coordinator}"));
    let worker_url = cluster
        .worker_metrics("worker-1")
        .expect("the worker serves /metrics (--metrics)");
    let worker = get(&agent, &format!("{worker_url}/metrics"), "");
    assert!(worker.contains("weir_records_out_total"), "{worker}");
    promtool(&worker).unwrap_or_else(|e| panic!("worker /metrics: {e}\n{worker}"));
}
