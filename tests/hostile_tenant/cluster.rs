//! Attacks: cluster (see ../hostile_tenant.rs). Each test starts a real
//! coordinator and two workers (tests/common/cluster.rs: HTTPS REST, data
//! root the temporary directory, the repository read-only), runs a
//! neighbour job, attacks, and then checks that the attack got a clear
//! refusal, that the coordinator and both workers still run, and that the
//! neighbour finished with exactly the output of a straight run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::cluster::{Cluster, LIMIT, wait_for};
use crate::common::collect::{Job, assert_exactly_once, sorted};
use crate::common::*;

/// Records of the neighbour job, and its rate: it runs for a few seconds.
const NEIGHBOUR_RECORDS: u64 = 3000;
const NEIGHBOUR_RATE: u64 = 500;

fn neighbour_job(dir: &Path, rate: u64) -> PathBuf {
    Job {
        parallelism: 2,
        rate: Some(rate),
        checkpoint_interval_ms: 200,
        ..Job::new(NEIGHBOUR_RECORDS)
    }
    .write(dir)
}

/// A neighbour job running on the cluster, checked by [`Neighbour::finish`].
struct Neighbour {
    dir: tempfile::TempDir,
}

impl Neighbour {
    fn start(cluster: &Cluster) -> Neighbour {
        let dir = tempfile::tempdir().unwrap();
        cluster.submit(&neighbour_job(dir.path(), NEIGHBOUR_RATE));
        Neighbour { dir }
    }

    /// Waits for the neighbour's end; its output must equal a straight run's.
    fn finish(self, cluster: &Cluster) {
        let status = cluster.wait_for_end("collect");
        assert_eq!(status["state"], "finished", "{status}\n{}", cluster.logs());
        let reference = tempfile::tempdir().unwrap();
        let mut run = weir();
        run.current_dir(reference.path())
            .arg("run")
            .arg("--read-root")
            .arg(Cluster::read_root())
            .arg(neighbour_job(reference.path(), 1_000_000));
        let out = run_with_deadline(run, LIMIT);
        assert!(out.status.success(), "{}", stderr(&out));
        // Parts are per subtask, so compare lines in order.
        let got = sorted(&committed_output(self.dir.path()));
        let expected = sorted(&committed_output(reference.path()));
        assert!(
            got == expected,
            "the neighbour's output differs from a straight run"
        );
        assert_exactly_once(&committed_output(self.dir.path()), NEIGHBOUR_RECORDS);
    }
}

/// The coordinator and both workers still run and are registered.
fn assert_all_up(cluster: &mut Cluster) {
    for node in ["coordinator", "worker-1", "worker-2"] {
        assert!(
            cluster.is_running(node),
            "{node} exited\n{}",
            cluster.logs()
        );
    }
    let names: Vec<String> = cluster
        .workers()
        .iter()
        .filter_map(|w| w["name"].as_str().map(str::to_string))
        .collect();
    for worker in ["worker-1", "worker-2"] {
        assert!(
            names.iter().any(|n| n == worker),
            "{worker} not registered\n{}",
            cluster.logs()
        );
    }
}

/// A name no earlier run used, for probe files.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A job of a generator into a file sink, with `job` and `source`/`sink`
/// table lines added.
fn job_text(job: &str, source: &str, sink_path: &str) -> String {
    format!(
        "[job]\nname = \"attack\"\n{job}\n\n[[source]]\nname = \"gen\"\nkind = \"generator\"\nrecords = 10\n{source}\n\n[[sink]]\nname = \"out\"\nkind = \"file\"\ninput = \"gen\"\npath = \"{sink_path}\"\n"
    )
}

/// `weir submit` of `text`, expected to be refused; returns stderr.
fn submit_refused(cluster: &Cluster, text: &str) -> String {
    let (dir, path) = job_file(text);
    let mut submit = cluster.cli(&["submit"]);
    submit.arg(&path);
    let out = run_with_deadline(submit, LIMIT);
    let err = stderr(&out);
    assert!(!out.status.success(), "accepted:\n{err}");
    assert!(err.len() < 16 << 10, "{} bytes of stderr", err.len());
    println!("refused: {err}");
    drop(dir);
    err
}

#[test]
fn paths_outside_the_data_roots_and_a_huge_channel_capacity_are_refused_at_submit() {
    let mut cluster = Cluster::start(2, 4, None);
    let neighbour = Neighbour::start(&cluster);
    wait_for(
        || (cluster.job("collect")["state"] == "running").then_some(()),
        "the neighbour to run",
        &cluster,
    );

    // A savepoint of the running neighbour into a directory outside, over REST.
    let token = cluster.token();
    let savepoint = format!("/root/{}", unique(".savepoint"));
    let (status, body) = cluster.call(
        "POST",
        "/jobs/collect/savepoints",
        Some(token.trim()),
        Some(
            serde_json::json!({ "dir": savepoint })
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with(&format!(
            "savepoint dir: {savepoint} is outside the allowed data roots"
        )),
        "{body}"
    );
    assert!(!Path::new(&savepoint).exists());

    // Write: a sink outside the roots.
    let probe = PathBuf::from("/root").join(format!("{}.txt", unique(".probe")));
    let err = submit_refused(&cluster, &job_text("", "", &probe.display().to_string()));
    assert!(
        err.contains(&format!(
            "job.toml:15: sink `out` field `path`: {} is outside the allowed data roots (read-write: {}; read-only: {})",
            probe.display(),
            Cluster::data_root().canonicalize().unwrap().display(),
            Cluster::read_root().canonicalize().unwrap().display(),
        )),
        "{err}"
    );
    assert!(!probe.exists(), "{} was created", probe.display());

    // Write, by climbing out of the job's directory.
    // `..` is folded as `weir run` does; the path it leads to is checked.
    let err = submit_refused(&cluster, &job_text("", "", "../../../root/.probe.txt"));
    assert!(
        err.contains(
            "job.toml:15: sink `out` field `path`: /root/.probe.txt is outside the allowed data roots"
        ),
        "{err}"
    );

    // Read: a file source outside the roots (its lines would come back in
    // a guest's error message).
    let text = "[job]\nname = \"attack\"\n\n[[source]]\nname = \"keys\"\nkind = \"file\"\npath = \"/etc/shadow\"\n\n[[sink]]\nname = \"out\"\nkind = \"discard\"\ninput = \"keys\"\n";
    let err = submit_refused(&cluster, text);
    assert!(
        err.contains(
            "job.toml:7: source `keys` field `path`: /etc/shadow is outside the allowed data roots"
        ),
        "{err}"
    );

    // Read: weir's own files inside the data root (the cluster's token,
    // beside its CA key and node keys, lies under the temporary directory).
    let token_file = cluster.certs().join("token");
    let text = format!(
        "[job]\nname = \"attack\"\n\n[[source]]\nname = \"keys\"\nkind = \"file\"\npath = \"{}\"\n\n[[sink]]\nname = \"out\"\nkind = \"discard\"\ninput = \"keys\"\n",
        token_file.display()
    );
    let err = submit_refused(&cluster, &text);
    assert!(
        err.contains("job.toml:7: source `keys` field `path`: ")
            && err.contains("is inside weir's own directory"),
        "{err}"
    );

    // Write: state_dir outside.
    let state = format!("/root/{}", unique(".state"));
    let err = submit_refused(
        &cluster,
        &job_text(&format!("state_dir = \"{state}\""), "", "out.txt"),
    );
    assert!(
        err.contains(&format!(
            "job.toml:3: [job] field `state_dir`: {state} is outside the allowed data roots"
        )),
        "{err}"
    );
    assert!(!Path::new(&state).exists());

    // The huge channel capacity that aborted the coordinator.
    let err = submit_refused(
        &cluster,
        &job_text("channel_batches_max = 1000000000000", "", "out.txt"),
    );
    assert!(
        err.contains(
            "job.toml:3: [job] field `channel_batches_max` = 1000000000000 is out of range"
        ),
        "{err}"
    );
    // The CLI refuses that before sending; the coordinator does the same.
    let (greedy_dir, greedy) = job_file(&job_text(
        "channel_batches_max = 1000000000000",
        "",
        "out.txt",
    ));
    let request = serde_json::json!({
        "job_toml": std::fs::read_to_string(&greedy).unwrap(),
        "job_path": greedy,
    });
    let (status, body) = cluster.call(
        "POST",
        "/jobs",
        Some(cluster.token().trim()),
        Some(request.to_string().into_bytes()),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(
            "job.toml:3: [job] field `channel_batches_max` = 1000000000000 is out of range"
        ),
        "{body}"
    );
    drop(greedy_dir);

    // A job started from a snapshot outside, over REST.
    let token = cluster.token();
    let (dir, path) = job_file(&job_text("", "", "out.txt"));
    let request = serde_json::json!({
        "job_toml": std::fs::read_to_string(&path).unwrap(),
        "job_path": path,
        "from_savepoint": "/etc",
    });
    let (status, body) = cluster.call(
        "POST",
        "/jobs",
        Some(token.trim()),
        Some(request.to_string().into_bytes()),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("from_savepoint: /etc is outside the allowed data roots"),
        "{body}"
    );
    drop(dir);

    assert_all_up(&mut cluster);
    neighbour.finish(&cluster);
    assert_all_up(&mut cluster);
}

#[test]
fn a_worker_refuses_a_deployment_outside_its_own_roots() {
    // The coordinator allows /tmp; a third worker allows only a directory
    // of its own. A job placed on it is refused there, by name and path.
    let mut cluster = Cluster::start(2, 4, None);
    let neighbour = Neighbour::start(&cluster);
    let narrow = tempfile::tempdir().unwrap();
    let certs = cluster.certs();
    let mut init = weir();
    init.args(["cluster", "init", "--workers", "3", "--dir"])
        .arg(&certs);
    assert!(run_with_deadline(init, LIMIT).status.success());
    let mut cmd = weir();
    cmd.args([
        "worker",
        "--coordinator",
        cluster.quic(),
        "--name",
        "worker-3",
        "--slots",
        "8",
        "--certs",
    ])
    .arg(&certs)
    .arg("--work-dir")
    .arg(cluster.dir.path().join("worker-3"))
    .arg("--data-root")
    .arg(narrow.path());
    cluster.spawn("worker-3", cmd);
    wait_for(
        || (cluster.workers().len() == 3).then_some(()),
        "worker-3 to register",
        &cluster,
    );
    // Wait until the neighbour holds its slots, so the attack lands on the
    // worker with the most free slots: worker-3.
    wait_for(
        || (cluster.job("collect")["state"] == "running").then_some(()),
        "the neighbour to run",
        &cluster,
    );
    // Slots are dealt round-robin over the workers, so at parallelism 6
    // worker-3 gets some of the job's subtasks.
    let (dir, path) = job_file(&format!(
        "[job]\nname = \"attack\"\nparallelism = 6\n\n[[source]]\nname = \"gen\"\nkind = \"generator\"\nrecords = 10\n\n[[operator]]\nname = \"op\"\nwasm = \"{}\"\ninput = \"gen\"\nconfig = {{ behavior = \"nothing\" }}\n\n[[sink]]\nname = \"out\"\nkind = \"file\"\ninput = \"op\"\npath = \"out.txt\"\n",
        guest("hostile").display()
    ));
    cluster.submit(&path);
    let status = cluster.wait_for_end("attack");
    let error = status["error"].as_str().unwrap_or_default().to_string();
    assert_eq!(status["state"], "failed", "{status}");
    assert!(
        error.contains("worker `worker-3` refuses the deployment: ")
            && error.contains("job.toml:20: sink `out` field `path`")
            && error.contains("is outside the allowed data roots"),
        "{error}"
    );
    drop(dir);

    // A savepoint directory the coordinator allows (under /tmp) but
    // worker-3 does not: worker-3 declines it by name, the job runs on.
    let (dir, path) = job_file(&format!(
        "[job]\nname = \"quiet\"\nparallelism = 6\n\n[[source]]\nname = \"gen\"\nkind = \"generator\"\nrecords = 1000000\nrecords_per_second = 100\n\n[[operator]]\nname = \"op\"\nwasm = \"{}\"\ninput = \"gen\"\nconfig = {{ behavior = \"nothing\" }}\n\n[[sink]]\nname = \"out\"\nkind = \"discard\"\ninput = \"op\"\n",
        guest("hostile").display()
    ));
    cluster.submit(&path);
    wait_for(
        || (cluster.job("quiet")["state"] == "running").then_some(()),
        "the quiet job to run",
        &cluster,
    );
    let savepoint = Cluster::data_root().join(unique("sp"));
    let (status, body) = cluster.call(
        "POST",
        "/jobs/quiet/savepoints",
        Some(cluster.token().trim()),
        Some(
            serde_json::json!({ "dir": savepoint })
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(status, 409, "{body}\n{}", cluster.logs());
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "savepoint aborted: worker `worker-3` refuses to write the snapshot: snapshot dir: "
        ) && error.contains("is outside the allowed data roots"),
        "{body}"
    );
    assert_eq!(cluster.job("quiet")["state"], "running");
    let (status, body) = cluster.call(
        "POST",
        "/jobs/quiet/cancel",
        Some(cluster.token().trim()),
        None,
    );
    assert_eq!(status, 202, "{body}");
    wait_for(
        || (cluster.job("quiet")["state"] == "cancelled").then_some(()),
        "the quiet job to be cancelled",
        &cluster,
    );
    drop(dir);
    let _ = std::fs::remove_dir_all(&savepoint);

    assert_all_up(&mut cluster);
    assert!(cluster.is_running("worker-3"));
    neighbour.finish(&cluster);
}

#[test]
fn a_worker_certificate_registering_under_another_name_is_refused() {
    let mut cluster = Cluster::start(2, 4, None);
    let neighbour = Neighbour::start(&cluster);
    // worker-1's certificate and key, presented as worker-2's.
    let forged = cluster.dir.path().join("forged");
    std::fs::create_dir_all(&forged).unwrap();
    let certs = cluster.certs();
    std::fs::copy(certs.join("ca.pem"), forged.join("ca.pem")).unwrap();
    std::fs::copy(certs.join("worker-1.pem"), forged.join("worker-2.pem")).unwrap();
    std::fs::copy(certs.join("worker-1.key"), forged.join("worker-2.key")).unwrap();
    let out = run_with_deadline(cluster.worker_command("worker-2", &forged, 1), LIMIT);
    let err = stderr(&out);
    assert!(!out.status.success(), "the impostor joined: {err}");
    println!("impostor: {err}");
    assert!(
        err.contains(
            "the coordinator refused this worker: registration as `worker-2` refused: its certificate is not the worker certificate of `worker-2` (it does not name worker-2.worker.weir)"
        ),
        "{err}"
    );
    // The coordinator's certificate cannot register as a worker either.
    let out = run_with_deadline(cluster.worker_command("coordinator", &certs, 1), LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not the worker certificate of `coordinator`"),
        "{}",
        stderr(&out)
    );
    // The real worker-2 is still the one registered.
    let mut names: Vec<String> = cluster
        .workers()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["worker-1", "worker-2"]);
    assert_all_up(&mut cluster);
    neighbour.finish(&cluster);
}

#[test]
fn rest_over_plain_http_is_refused_and_over_https_served() {
    let mut cluster = Cluster::start(2, 4, None);
    let neighbour = Neighbour::start(&cluster);
    let https = cluster.rest().to_string();
    assert!(https.starts_with("https://"), "{https}");
    let plain = https.replacen("https://", "http://", 1);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let token = cluster.token();
    let refused = agent
        .get(&format!("{plain}/jobs"))
        .header("Authorization", &format!("Bearer {}", token.trim()))
        .call();
    match refused {
        Ok(response) => panic!("plain HTTP served: {}", response.status()),
        Err(e) => println!("plain HTTP: {e}"),
    }
    // A client that does not trust the cluster CA refuses the coordinator.
    let stranger = tempfile::tempdir().unwrap();
    let mut init = weir();
    init.args(["cluster", "init", "--workers", "0", "--dir"])
        .arg(stranger.path());
    assert!(run_with_deadline(init, LIMIT).status.success());
    let mut jobs = cluster.cli(&["jobs"]);
    jobs.env("WEIR_CA_FILE", stranger.path().join("ca.pem"));
    let out = run_with_deadline(jobs, LIMIT);
    assert!(
        !out.status.success(),
        "a client of another CA trusted the coordinator"
    );
    assert!(
        stderr(&out).contains("cannot reach the coordinator"),
        "{}",
        stderr(&out)
    );
    // The CLI over HTTPS with the cluster CA is served.
    let out = run_with_deadline(cluster.cli(&["jobs"]), LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("job `collect`"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_all_up(&mut cluster);
    neighbour.finish(&cluster);
}

#[test]
fn a_coordinator_with_an_empty_token_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let mut init = weir();
    init.args(["cluster", "init", "--workers", "1", "--dir"])
        .arg(&certs);
    assert!(run_with_deadline(init, LIMIT).status.success());
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
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
        .arg(&empty)
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let out = run_with_deadline(coordinator, LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("the token file {} is empty", empty.display())),
        "{}",
        stderr(&out)
    );
    let mut coordinator = weir();
    let missing = dir.path().join("no-such-token");
    coordinator
        .args(["coordinator", "--certs"])
        .arg(&certs)
        .arg("--token-file")
        .arg(&missing);
    let out = run_with_deadline(coordinator, LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("cannot read the token file {}", missing.display())),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_huge_guest_error_leaves_the_cluster_up_and_the_job_list_small() {
    let mut cluster = Cluster::start(2, 4, None);
    let neighbour = Neighbour::start(&cluster);
    let (dir, path) = job_file(&format!(
        "[job]\nname = \"villain\"\n\n[[source]]\nname = \"gen\"\nkind = \"generator\"\nrecords = 10\n\n[[operator]]\nname = \"villain\"\nwasm = \"{}\"\ninput = \"gen\"\nconfig = {{ behavior = \"huge-error\" }}\n\n[[sink]]\nname = \"out\"\nkind = \"discard\"\ninput = \"villain\"\n",
        guest("hostile").display()
    ));
    let started = Instant::now();
    cluster.submit(&path);
    let status = cluster.wait_for_end("villain");
    println!("failed after {:?}", started.elapsed());
    assert_eq!(status["state"], "failed", "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(error.len() < 8 << 10, "{} bytes of error", error.len());
    assert!(error.contains("more bytes cut)"), "{error}");
    assert!(
        !error.contains('\u{1}') && !error.contains('\u{1b}'),
        "control characters escaped"
    );
    let (code, jobs) = cluster.call("GET", "/jobs", Some(cluster.token().trim()), None);
    assert_eq!(code, 200);
    let bytes = jobs.to_string().len();
    println!("GET /jobs: {bytes} bytes");
    assert!(bytes < 32 << 10, "GET /jobs answers {bytes} bytes");
    let out = run_with_deadline(cluster.cli(&["jobs"]), LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_all_up(&mut cluster);
    neighbour.finish(&cluster);
    assert_all_up(&mut cluster);
    drop(dir);
}

/// A request body that trickles: `bytes` bytes over about `duration`.
struct Trickle {
    left: usize,
    pause: Duration,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        std::thread::sleep(self.pause);
        self.left -= 1;
        buf[0] = 0;
        Ok(1)
    }
}

#[test]
fn uploads_beyond_the_limit_are_turned_away_while_one_is_received() {
    let mut cluster = Cluster::start_with(2, 4, &["--uploads-max".to_string(), "1".to_string()]);
    let neighbour = Neighbour::start(&cluster);
    // One upload that takes about three seconds to arrive holds the only permit.
    let slow = {
        let agent = cluster.agent();
        let url = format!("{}/artifacts?name=slow.wasm", cluster.rest());
        let token = cluster.token().trim().to_string();
        std::thread::spawn(move || {
            let body = Trickle {
                left: 30,
                pause: Duration::from_millis(100),
            };
            let response = agent
                .post(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .header("Content-Length", "30")
                .send(ureq::SendBody::from_owned_reader(body))
                .unwrap();
            response.status().as_u16()
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    let (status, body) = cluster.call(
        "POST",
        "/artifacts?name=other.wasm",
        Some(cluster.token().trim()),
        Some(b"\0asm".to_vec()),
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"],
        "the coordinator is busy checking other uploads (--uploads-max at once); try again shortly"
    );
    // The slow one is checked in its turn (and refused: it is no component).
    assert_eq!(slow.join().unwrap(), 422);
    assert_all_up(&mut cluster);
    neighbour.finish(&cluster);
}

#[test]
fn a_worker_of_another_protocol_version_is_refused_naming_both() {
    use weir_cluster::protocol::{FromWorker, PROTOCOL_VERSION, ToWorker};
    use weir_net::stream::{read_message, write_message};
    let mut cluster = Cluster::start(2, 4, None);
    let neighbour = Neighbour::start(&cluster);
    // worker-1's own certificate, speaking protocol version 1.
    let identity = weir_net::NodeIdentity::load(&cluster.certs(), "worker-1").unwrap();
    let coordinator: std::net::SocketAddr = cluster.quic().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let reply = runtime.block_on(async {
        let node = weir_net::Node::client_only(&identity).unwrap();
        let conn = node
            .connect_to(coordinator, weir_net::Role::Coordinator)
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let register = FromWorker::Register {
            protocol: 1,
            name: "worker-1".into(),
            slots: 1,
            data_addr: "127.0.0.1:9".parse().unwrap(),
        };
        write_message(&mut send, &register).await.unwrap();
        read_message::<ToWorker>(&mut recv).await.unwrap()
    });
    match reply {
        Some(ToWorker::Refused { reason }) => {
            println!("old worker: {reason}");
            assert_eq!(
                reason,
                format!(
                    "worker `worker-1` speaks cluster protocol version 1, this node speaks version {PROTOCOL_VERSION}: run the same weir release on every node"
                )
            );
        }
        other => panic!("an old worker was answered {other:?}"),
    }
    // The real worker-1 was not replaced.
    assert_all_up(&mut cluster);
    neighbour.finish(&cluster);
}

#[test]
fn peer_connections_and_streams_are_refused_unless_certified_and_expected() {
    use weir_cluster::protocol::{PROTOCOL_VERSION, PeerHello};
    use weir_net::stream::{ChannelHeader, open_channel, write_message};
    let mut cluster = Cluster::start(2, 4, None);
    let neighbour = Neighbour::start(&cluster);
    let target: std::net::SocketAddr = cluster
        .workers()
        .iter()
        .find(|w| w["name"] == "worker-2")
        .and_then(|w| w["data_addr"].as_str()?.parse().ok())
        .unwrap();
    // worker-1's certificate, used by someone else.
    let identity = weir_net::NodeIdentity::load(&cluster.certs(), "worker-1").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let node = weir_net::Node::client_only(&identity).unwrap();
        let hello = |worker, name: &str| PeerHello {
            protocol: PROTOCOL_VERSION,
            worker,
            name: name.to_string(),
        };
        // Introducing itself as worker-2: the certificate says otherwise.
        let conn = node
            .connect_to(target, weir_net::Role::Worker)
            .await
            .unwrap();
        let mut send = conn.open_uni().await.unwrap();
        write_message(&mut send, &hello(77, "worker-2"))
            .await
            .unwrap();
        send.finish().unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
        assert!(
            closed.is_ok(),
            "a peer with a borrowed name stayed connected"
        );
        // Honest about its name, but streaming for an attempt nobody deployed.
        let conn = node
            .connect_to(target, weir_net::Role::Worker)
            .await
            .unwrap();
        let mut send = conn.open_uni().await.unwrap();
        write_message(&mut send, &hello(77, "worker-1"))
            .await
            .unwrap();
        send.finish().unwrap();
        let header = ChannelHeader {
            job: "ghost".into(),
            attempt: 99,
            channel: 0,
        };
        let mut writer = open_channel(&conn, &header).await.unwrap();
        writer.write(&weir_net::Frame::End).await.unwrap();
        writer.flush().await.unwrap();
        tokio::time::sleep(Duration::from_secs(7)).await;
    });
    let log = std::fs::read_to_string(cluster.dir.path().join("worker-2.log")).unwrap();
    assert!(
        log.contains(
            "worker 77 (`worker-2`): its certificate is not the worker certificate of `worker-2`"
        ),
        "{log}"
    );
    assert!(
        log.contains("refused channel 0 of job `ghost` attempt 99 from worker 77: no such attempt is deployed here (waited 5 s)"),
        "{log}"
    );
    assert_all_up(&mut cluster);
    neighbour.finish(&cluster);
}
