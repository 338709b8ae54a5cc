//! The cluster commands: `cluster init|up`, `coordinator`, `worker`,
//! `submit`, `jobs`, `cancel`, and the cluster side of `savepoint`/`stop`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use weir_cluster::client::Client;
use weir_cluster::jobs::{JobInfo, JobState};
use weir_cluster::rest::SubmitRequest;

use crate::status;

/// Where `weir cluster init` puts certificates and the token by default.
pub const DEFAULT_CLUSTER_DIR: &str = ".weir/cluster";

/// How the CLI reaches a cluster's REST API.
#[derive(clap::Args, Clone)]
pub struct ClusterTarget {
    /// The coordinator's REST API, e.g. https://127.0.0.1:8080 [env: WEIR_CLUSTER].
    #[arg(long, value_name = "URL", env = "WEIR_CLUSTER")]
    pub cluster: Option<String>,
    /// File holding the bearer token [env: WEIR_TOKEN_FILE; or the token itself in WEIR_TOKEN].
    #[arg(long, value_name = "FILE", env = "WEIR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The cluster CA the coordinator's HTTPS certificate must chain to
    /// [env: WEIR_CA_FILE; default: ca.pem beside the token file, else .weir/cluster/ca.pem].
    #[arg(long = "ca", value_name = "FILE", env = "WEIR_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl ClusterTarget {
    pub fn client(&self) -> anyhow::Result<Client> {
        let Some(api) = &self.cluster else {
            bail!(
                "which cluster? pass --cluster URL or set WEIR_CLUSTER (`weir cluster up` prints both)"
            );
        };
        let token = read_token(self.token_file.as_deref())?;
        Client::new(api, &token, &self.ca())
    }

    /// The CA the coordinator's certificate must chain to.
    fn ca(&self) -> PathBuf {
        match (&self.ca_file, &self.token_file) {
            (Some(ca), _) => ca.clone(),
            (None, Some(token)) => token.with_file_name("ca.pem"),
            (None, None) => Path::new(DEFAULT_CLUSTER_DIR).join("ca.pem"),
        }
    }
}

pub fn read_token(file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(file) = file {
        let token = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the token file {}", file.display()))?;
        if token.trim().is_empty() {
            bail!(
                "the token file {} is empty: a REST API with an empty token would let anyone in (`weir cluster init` writes a random one)",
                file.display()
            );
        }
        return Ok(token.trim().to_string());
    }
    match std::env::var("WEIR_TOKEN") {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_string()),
        _ => bail!("no bearer token: pass --token-file FILE, or set WEIR_TOKEN_FILE or WEIR_TOKEN"),
    }
}

/// `weir cluster init`: the CA, a certificate per node, and a token. The
/// coordinator's certificate also names `rest_names` (host names or IP
/// addresses clients reach its HTTPS API at; localhost and 127.0.0.1
/// always).
pub fn init(dir: &Path, workers: u32, rest_names: &[String]) -> anyhow::Result<()> {
    let mut nodes = vec![weir_net::NodeCert {
        extra_names: rest_names.to_vec(),
        ..weir_net::NodeCert::named("coordinator")
    }];
    nodes.extend((1..=workers).map(|i| weir_net::NodeCert::named(&format!("worker-{i}"))));
    let written = weir_net::init_cluster_with(dir, &nodes)?;
    let nodes: Vec<String> = nodes.into_iter().map(|n| n.node).collect();
    let token = dir.join("token");
    if !token.exists() {
        weir_core::private_file::write_private(&token, weir_cluster::new_token()?.as_bytes())?;
    }
    eprintln!(
        "cluster files in {}: CA, {} node certificate(s) ({}), token",
        dir.display(),
        nodes.len(),
        nodes.join(", ")
    );
    tracing::debug!("wrote {written:?}");
    Ok(())
}

/// `weir coordinator`'s flags.
#[derive(clap::Args)]
pub struct CoordinatorArgs {
    /// Directory with the cluster CA and this node's certificate (`weir cluster init`).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CLUSTER_DIR)]
    pub certs: PathBuf,
    /// This node's certificate name.
    #[arg(long, default_value = "coordinator")]
    pub node: String,
    /// File holding the bearer token the REST API requires [env: WEIR_TOKEN_FILE; or WEIR_TOKEN].
    #[arg(long, value_name = "FILE", env = "WEIR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Address of the REST API (HTTPS with the coordinator's certificate).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub rest: std::net::SocketAddr,
    /// Serve the REST API over plain HTTP: the token and jobs cross the
    /// network in clear text. For a loopback-only setup that wants no TLS.
    #[arg(long)]
    pub insecure_http: bool,
    /// Address workers connect to (QUIC, UDP).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub quic: std::net::SocketAddr,
    /// Where artifacts and compiled code are kept.
    #[arg(long, value_name = "DIR", default_value = ".weir/coordinator")]
    pub data_dir: PathBuf,
    /// A directory tree jobs may read and write (sinks, state, checkpoints,
    /// savepoints); repeat for several. Without any, jobs may use no files.
    #[arg(long = "data-root", value_name = "DIR")]
    pub data_roots: Vec<PathBuf>,
    /// A directory tree jobs may only read (file sources, snapshots to start from).
    #[arg(long = "read-root", value_name = "DIR")]
    pub read_roots: Vec<PathBuf>,
    /// Largest artifact accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = weir_cluster::artifacts::ARTIFACT_BYTES_MAX_DEFAULT)]
    pub artifact_max_bytes: usize,
    /// All stored artifacts together, in bytes (unnamed, unused ones are evicted first).
    #[arg(long, value_name = "BYTES", default_value_t = weir_cluster::artifacts::ARTIFACTS_TOTAL_BYTES_MAX_DEFAULT)]
    pub artifacts_max_total_bytes: u64,
    /// Names artifacts are kept under (an upload under a new name beyond them is refused).
    #[arg(long, value_name = "N", default_value_t = weir_cluster::artifacts::ARTIFACT_NAMES_MAX_DEFAULT)]
    pub artifact_names_max: usize,
    /// Uploads received and checked at once; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = weir_cluster::coordinator::UPLOADS_MAX_DEFAULT)]
    pub uploads_max: usize,
    /// Finished jobs `weir jobs` keeps showing (the oldest go first).
    #[arg(long, value_name = "N", default_value_t = weir_cluster::coordinator::FINISHED_JOBS_MAX_DEFAULT)]
    pub finished_jobs_max: usize,
    /// How long a finished job is kept, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = weir_cluster::coordinator::FINISHED_JOB_RETENTION_DEFAULT.as_secs())]
    pub finished_job_retention_secs: u64,
    /// Write the REST and QUIC addresses (JSON) here once listening.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// High availability: keep job records and artifacts in this directory
    /// or `s3://bucket/prefix` (AWS_* environment variables), and take over
    /// the running jobs recorded there on start.
    #[arg(long, value_name = "DIR|URL")]
    pub ha_dir: Option<String>,
}

/// `weir coordinator`.
pub fn coordinator(a: &CoordinatorArgs) -> anyhow::Result<()> {
    let token = read_token(a.token_file.as_deref())?;
    let data_roots = weir_core::data_roots::DataRoots::new(&a.data_roots, &a.read_roots)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    weir_cluster::run_coordinator(weir_cluster::CoordinatorOptions {
        rest: a.rest,
        quic: a.quic,
        certs: a.certs.clone(),
        node: a.node.clone(),
        token,
        token_file: a.token_file.clone(),
        data_dir: a.data_dir.clone(),
        artifact_bytes_max: a.artifact_max_bytes,
        artifacts_total_bytes_max: a.artifacts_max_total_bytes,
        artifact_names_max: a.artifact_names_max,
        uploads_max: a.uploads_max,
        finished_jobs_max: a.finished_jobs_max,
        finished_job_retention: Duration::from_secs(a.finished_job_retention_secs),
        data_roots,
        insecure_http: a.insecure_http,
        ready_file: a.ready_file.clone(),
        ha_dir: a.ha_dir.clone(),
    })
}

/// `weir worker`'s flags.
#[derive(clap::Args)]
pub struct WorkerArgs {
    /// The coordinator's QUIC address.
    #[arg(long, value_name = "ADDR")]
    pub coordinator: std::net::SocketAddr,
    /// Directory with the cluster CA and this node's certificate.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CLUSTER_DIR)]
    pub certs: PathBuf,
    /// This node's certificate name (e.g. worker-1); the coordinator
    /// registers it under this name only if its certificate carries it.
    #[arg(long)]
    pub name: String,
    /// Task slots this worker offers.
    #[arg(long, default_value_t = 4)]
    pub slots: u32,
    /// Address peers send data to (QUIC, UDP).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub bind: std::net::SocketAddr,
    /// Where artifacts and compiled code are cached [default: .weir/<name>].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// A directory tree deployed jobs may read and write; repeat for
    /// several. Checked again here whatever the coordinator allowed.
    #[arg(long = "data-root", value_name = "DIR")]
    pub data_roots: Vec<PathBuf>,
    /// A directory tree deployed jobs may only read.
    #[arg(long = "read-root", value_name = "DIR")]
    pub read_roots: Vec<PathBuf>,
    /// Serve this worker's metrics (its tasks', slots, QUIC traffic) as
    /// Prometheus text at http://ADDR/metrics; loopback only unless
    /// --metrics-bind-any.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Let --metrics listen on a non-loopback address (no token guards it).
    #[arg(long, requires = "metrics")]
    pub metrics_bind_any: bool,
    /// Keep trying to reach the coordinator for this long, at start and
    /// after losing it (a coordinator with --ha-dir that restarts): the
    /// worker then starts afresh (its tasks stop) and registers again.
    /// 0: exit when the coordinator goes away.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub reconnect_secs: u64,
}

/// `weir worker`.
pub fn worker(a: &WorkerArgs) -> anyhow::Result<()> {
    let data_roots = weir_core::data_roots::DataRoots::new(&a.data_roots, &a.read_roots)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = a.metrics.map(|addr| weir_cluster::MetricsListen {
        addr,
        bind_any: a.metrics_bind_any,
    });
    let options = weir_cluster::WorkerOptions {
        coordinator: a.coordinator,
        bind: a.bind,
        certs: a.certs.clone(),
        name: a.name.clone(),
        slots: a.slots,
        work_dir: a
            .work_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".weir").join(&a.name)),
        data_roots,
    };
    let patience = Duration::from_secs(a.reconnect_secs);
    let started = std::time::Instant::now();
    loop {
        let Err(e) = weir_cluster::run_worker_with(options.clone(), metrics.clone()) else {
            return Ok(());
        };
        if patience.is_zero() {
            return Err(e);
        }
        if e.downcast_ref::<weir_cluster::worker::CoordinatorLost>()
            .is_some()
        {
            // Tasks of the lost coordinator's jobs still run on threads of
            // this process; a fresh process image ends them all at once.
            eprintln!("weir: {e:#}; starting afresh to register again");
            return Err(reexec()).context("cannot start the worker afresh");
        }
        if e.downcast_ref::<weir_cluster::worker::CoordinatorUnreachable>()
            .is_none()
            || started.elapsed() >= patience
        {
            return Err(e);
        }
        tracing::info!("{e:#}; trying again");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Replaces this process with a fresh `weir` with the same arguments; only
/// returns on failure.
fn reexec() -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return e,
    };
    std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec()
}

pub struct UpOptions {
    pub dir: PathBuf,
    pub workers: u32,
    pub slots: u32,
    pub rest: std::net::SocketAddr,
    pub quic: std::net::SocketAddr,
}

/// `weir cluster up`: a coordinator and N workers as processes of this
/// machine, until interrupted (or until one of them exits).
pub fn up(o: &UpOptions, global_args: &[String]) -> anyhow::Result<()> {
    let missing = (1..=o.workers).any(|i| !o.dir.join(format!("worker-{i}.pem")).exists())
        || !o.dir.join("token").exists();
    if missing {
        init(&o.dir, o.workers, &[])?;
    }
    // Jobs may use this directory's tree, as `weir run` allows by default.
    let root = std::env::current_dir().context("cannot find the current directory")?;
    let exe = std::env::current_exe().context("cannot find the weir binary")?;
    let ready = o.dir.join("coordinator.ready");
    let _ = std::fs::remove_file(&ready);
    let mut children = Children(Vec::new());
    let mut coordinator = Process::new(&exe);
    coordinator
        .args(global_args)
        .args(["coordinator", "--certs"]);
    coordinator
        .arg(&o.dir)
        .arg("--token-file")
        .arg(o.dir.join("token"))
        .arg("--rest")
        .arg(o.rest.to_string())
        .arg("--quic")
        .arg(o.quic.to_string())
        .arg("--data-dir")
        .arg(o.dir.join("coordinator-data"))
        .arg("--data-root")
        .arg(&root)
        .arg("--ready-file")
        .arg(&ready);
    children.0.push((
        "coordinator".into(),
        coordinator
            .spawn()
            .context("cannot start the coordinator")?,
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let addresses: serde_json::Value = loop {
        if let Ok(text) = std::fs::read(&ready) {
            break serde_json::from_slice(&text).context("unreadable ready file")?;
        }
        children.check()?;
        if Instant::now() > deadline {
            bail!("the coordinator did not come up within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let quic = addresses["quic"].as_str().unwrap_or_default().to_string();
    let rest = addresses["rest"].as_str().unwrap_or_default().to_string();
    for i in 1..=o.workers {
        let name = format!("worker-{i}");
        let mut worker = Process::new(&exe);
        worker
            .args(global_args)
            .args([
                "worker",
                "--coordinator",
                &quic,
                "--name",
                &name,
                "--slots",
                &o.slots.to_string(),
                "--certs",
            ])
            .arg(&o.dir)
            .arg("--work-dir")
            .arg(o.dir.join(&name))
            .arg("--data-root")
            .arg(&root);
        children.0.push((
            name.clone(),
            worker
                .spawn()
                .with_context(|| format!("cannot start {name}"))?,
        ));
    }
    eprintln!(
        "weir: cluster up: coordinator and {} worker(s) with {} slot(s) each; jobs may read and write under {} except in {} (certificates, keys, token, work dirs)",
        o.workers,
        o.slots,
        root.display(),
        o.dir.display()
    );
    println!(
        "export WEIR_CLUSTER={rest} WEIR_TOKEN_FILE={} WEIR_CA_FILE={}",
        o.dir.join("token").display(),
        o.dir.join("ca.pem").display()
    );
    loop {
        children.check()?;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Child processes, killed when this process leaves `up`.
struct Children(Vec<(String, Child)>);

impl Children {
    /// Fails once the coordinator exits; a worker that exits is reported
    /// and left out (the cluster carries on without it, as in production).
    fn check(&mut self) -> anyhow::Result<()> {
        let mut exited = Vec::new();
        for (i, (name, child)) in self.0.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()? {
                if name == "coordinator" {
                    bail!("the coordinator exited ({status})");
                }
                eprintln!("weir: {name} exited ({status})");
                exited.push(i);
            }
        }
        for i in exited.into_iter().rev() {
            self.0.remove(i);
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct SubmitOptions {
    pub job: PathBuf,
    pub from_savepoint: Option<PathBuf>,
    pub resume: bool,
    pub allow_non_restored_state: bool,
    pub wait: bool,
}

/// `weir submit`: uploads the job's artifacts (with progress), submits
/// it, and with `wait` follows it to its end.
pub fn submit(target: &ClusterTarget, o: &SubmitOptions) -> anyhow::Result<()> {
    let client = target.client()?;
    let job_path = o
        .job
        .canonicalize()
        .with_context(|| format!("cannot find {}", o.job.display()))?;
    let spec = weir_core::job::load(&job_path)?;
    let job_toml = std::fs::read_to_string(&job_path)?;
    let mut artifacts = std::collections::BTreeMap::new();
    let mut uploaded: std::collections::BTreeMap<PathBuf, String> = Default::default();
    for op in &spec.operators {
        if let Some(digest) = uploaded.get(&op.wasm) {
            artifacts.insert(op.name.clone(), digest.clone());
            continue;
        }
        let name = op
            .wasm
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let len = std::fs::metadata(&op.wasm)
            .with_context(|| {
                format!(
                    "{}:{}: operator `{}`: cannot read {}",
                    job_path.display(),
                    op.line,
                    op.name,
                    op.wasm.display()
                )
            })?
            .len();
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("uploading {name}"));
        let progress = bar.clone();
        let info = client
            .upload(&name, &op.wasm, move |sent| progress.set_position(sent))
            .with_context(|| format!("operator `{}`", op.name))?;
        bar.finish_and_clear();
        eprintln!(
            "uploaded {name} ({} bytes) as {}",
            info.bytes,
            &info.digest[..19]
        );
        uploaded.insert(op.wasm.clone(), info.digest.clone());
        artifacts.insert(op.name.clone(), info.digest);
    }
    let name = client.submit(&SubmitRequest {
        job_toml,
        job_path,
        artifacts,
        // Relative to this shell, not the coordinator's working directory.
        from_savepoint: o
            .from_savepoint
            .as_deref()
            .map(std::path::absolute)
            .transpose()
            .context("cannot resolve --from-savepoint")?,
        resume: o.resume,
        allow_non_restored_state: o.allow_non_restored_state,
    })?;
    eprintln!("submitted job `{name}`");
    if !o.wait {
        return Ok(());
    }
    let info = follow(&client, &spec, &name)?;
    eprintln!("{}", describe(&info));
    match info.state {
        JobState::Finished | JobState::Stopped => Ok(()),
        _ => bail!(
            "{}",
            info.error
                .unwrap_or_else(|| format!("job `{name}` {:?}", info.state))
        ),
    }
}

/// Follows job `name` to its end, showing its line and, from `GET
/// /jobs/{name}/metrics`, its nodes' (see [`crate::status`]).
fn follow(client: &Client, spec: &weir_core::job::JobSpec, name: &str) -> anyhow::Result<JobInfo> {
    use std::io::IsTerminal as _;
    let mut status = status::Status::new(
        name,
        status::input_sizes(spec),
        std::io::stderr().is_terminal(),
    );
    let result = loop {
        let info = match client.job(name) {
            Ok(info) => info,
            Err(e) => break Err(e),
        };
        // A job not deployed yet has no metrics; the line shows regardless.
        let sample = client
            .job_metrics(name)
            .ok()
            .and_then(|m| status::parse(&m));
        status.update(&describe(&info), sample);
        if info.state.is_terminal() {
            break Ok(info);
        }
        std::thread::sleep(status::POLL);
    };
    status.finish();
    result
}

fn describe(info: &JobInfo) -> String {
    let state = serde_json::to_value(info.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = format!("job `{}` {state}", info.name);
    if info.restarts > 0 {
        line.push_str(&format!(", {} restart(s)", info.restarts));
    }
    if let Some(c) = info.last_checkpoint {
        line.push_str(&format!(", last checkpoint {c}"));
    }
    if !info.workers.is_empty() {
        let workers: Vec<String> = info
            .workers
            .iter()
            .map(|(w, s)| format!("{w}:{s}"))
            .collect();
        line.push_str(&format!(", worker:slots {}", workers.join(" ")));
    }
    if let Some(p) = &info.savepoint {
        line.push_str(&format!(", savepoint {}", p.display()));
    }
    line
}

/// `weir jobs`: a table, then each job's line and operator versions; or
/// the coordinator's JSON array with `json`.
pub fn jobs(target: &ClusterTarget, json: bool) -> anyhow::Result<()> {
    let raw = target.client()?.get_json("/jobs")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(());
    }
    let rows = raw
        .as_array()
        .context("the coordinator's job list is not a JSON array")?;
    let jobs: Vec<JobInfo> = serde_json::from_value(raw.clone())
        .context("the coordinator's job list has unexpected fields")?;
    if jobs.is_empty() {
        eprintln!("no jobs");
        return Ok(());
    }
    println!("{}", crate::jobs_table::render(rows, status::now_ms()));
    for info in jobs {
        println!("{}", describe(&info));
        print!(
            "{}",
            crate::jobs_table::version_lines(&info.versions, &info.parallelism)
        );
        if let Some(e) = &info.error {
            println!("  error: {e}");
        }
    }
    Ok(())
}

/// `weir cancel JOB`.
pub fn cancel(target: &ClusterTarget, job: &str) -> anyhow::Result<()> {
    target.client()?.cancel(job)?;
    eprintln!("cancelling job `{job}`");
    Ok(())
}
