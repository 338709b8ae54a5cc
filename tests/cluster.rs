//! End-to-end tests of a cluster: a real coordinator and real worker
//! processes on loopback, driven through the `weir` CLI and the REST API.
//! Fault tests SIGKILL a worker process.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::cluster::{Cluster, LIMIT, collect_job, committed_output, straight_output, wait_for};
use common::collect::{assert_exactly_once, sorted};
use common::{guest, repo, run_with_deadline, sorted_lines, stderr, weir};

/// The wordcount example at parallelism 6, with absolute paths, writing
/// into `dir`.
fn wordcount_job(dir: &Path) -> PathBuf {
    let example = repo().join("examples/wordcount");
    let text = std::fs::read_to_string(example.join("job.toml"))
        .unwrap()
        // The job's default (its first line of that text); the source
        // stays pinned at 1, as the example sets it.
        .replacen("parallelism = 1", "parallelism = 6", 1)
        .replace(
            "path = \"input.jsonl\"",
            &format!("path = \"{}\"", example.join("input.jsonl").display()),
        )
        .replace(
            "../../target/wasm/wasm32-wasip2/release/tokenizer.wasm",
            &guest("tokenizer").display().to_string(),
        )
        .replace(
            "../../target/wasm/wasm32-wasip2/release/window_count.wasm",
            &guest("window_count").display().to_string(),
        );
    assert!(text.contains("name = \"wordcount\"\nparallelism = 6"));
    let path = dir.join("wordcount.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_job_across_three_workers_gives_the_golden_output() {
    let cluster = Cluster::start(3, 2, None);
    let work = tempfile::tempdir().unwrap();
    let job = wordcount_job(work.path());
    let mut submit = cluster.cli(&["submit", "--wait"]);
    submit.arg(&job);
    let out = run_with_deadline(submit, LIMIT);
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "submit failed: {err}\n{}",
        cluster.logs()
    );
    assert!(
        err.contains("uploaded tokenizer.wasm") && err.contains("job `wordcount` finished"),
        "{err}"
    );
    // Slot sharing spreads the 6 subtasks of each node over all 3 workers,
    // so the hash edge between tokenize and count crosses workers.
    let logs = cluster.logs();
    for worker in ["worker-1", "worker-2", "worker-3"] {
        let log =
            std::fs::read_to_string(cluster.dir.path().join(format!("{worker}.log"))).unwrap();
        assert!(
            log.contains("compiled") || log.contains("loaded"),
            "{worker} ran nothing\n{logs}"
        );
    }
    let expected = repo().join("examples/wordcount/expected");
    for file in ["counts.jsonl", "late.txt"] {
        assert_eq!(
            sorted_lines(&work.path().join("output").join(file)),
            sorted_lines(&expected.join(file)),
            "output/{file} differs from the golden file"
        );
    }
    let (status, jobs) = cluster.call("GET", "/jobs", Some(cluster.token().trim()), None);
    assert_eq!(status, 200);
    assert_eq!(jobs[0]["state"], "finished", "{jobs}");
}

#[test]
fn a_worker_killed_mid_run_loses_and_duplicates_nothing() {
    let records = 30_000;
    let expected = straight_output(records);

    let mut cluster = Cluster::start(3, 4, None);
    let work = tempfile::tempdir().unwrap();
    // 4,000 records/s: about 7 s of input, so the kill comes mid-run.
    let job = collect_job(work.path(), records, 4_000);
    cluster.submit(&job);
    cluster.wait_for_checkpoint("collect", 3);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let victim = format!("worker-{}", 1 + (seed % 3) as u32);
    eprintln!("killing {victim} (seed {seed})");
    let killed_at = Instant::now();
    cluster.kill(&victim);
    let info = cluster.wait_for_end("collect");
    eprintln!(
        "the job ended {:?} after the kill: {info}",
        killed_at.elapsed()
    );
    assert_eq!(info["state"], "finished", "{info}\n{}", cluster.logs());
    assert!(
        info["restarts"].as_u64().unwrap() >= 1,
        "the kill went unnoticed: {info}"
    );
    let text = committed_output(work.path());
    assert_exactly_once(&text, records);
    assert_eq!(
        sorted(&text),
        sorted(&expected),
        "the output differs from the straight run"
    );
}

#[test]
fn rest_calls_without_the_token_are_refused() {
    let cluster = Cluster::start(1, 1, None);
    let (status, body) = cluster.call("GET", "/health", None, None);
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "health needs no token"
    );
    for (method, path) in [
        ("GET", "/jobs"),
        ("GET", "/workers"),
        ("GET", "/artifacts"),
        ("POST", "/jobs"),
        ("POST", "/artifacts?name=a.wasm"),
        ("POST", "/jobs/x/cancel"),
        ("POST", "/jobs/x/savepoints"),
    ] {
        let (status, body) = cluster.call(method, path, None, Some(b"{}".to_vec()));
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("missing bearer token"),
            "{body}"
        );
        let (status, body) =
            cluster.call(method, path, Some("not-the-token"), Some(b"{}".to_vec()));
        assert_eq!(status, 401, "{method} {path} with a wrong token: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("wrong bearer token"),
            "{body}"
        );
    }
    // The CLI says the same.
    let wrong = cluster.dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let mut jobs = cluster.cli(&["jobs"]);
    jobs.env("WEIR_TOKEN_FILE", &wrong);
    let out = run_with_deadline(jobs, LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("401") && stderr(&out).contains("bearer token"),
        "{}",
        stderr(&out)
    );
    // An empty token file is refused before anything is sent.
    let mut jobs = cluster.cli(&["jobs"]);
    jobs.env("WEIR_TOKEN_FILE", "/dev/null");
    let out = run_with_deadline(jobs, LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the token file /dev/null is empty"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_uploads_are_refused_and_store_nothing() {
    let cluster = Cluster::start(1, 1, Some(400_000));
    let token = cluster.token();
    let token = Some(token.trim());
    let store = cluster.dir.path().join("coordinator/artifacts");
    let stored = || std::fs::read_dir(&store).map(|d| d.count()).unwrap_or(0);
    let before = stored();

    let big = vec![0u8; 500_000];
    let (status, body) = cluster.call("POST", "/artifacts?name=big.wasm", token, Some(big));
    assert_eq!(status, 413, "oversized: {body}");

    let (status, body) = cluster.call(
        "POST",
        "/artifacts?name=junk.wasm",
        token,
        Some(b"not wasm at all".to_vec()),
    );
    assert_eq!(status, 422, "malformed: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("junk.wasm"),
        "names the artifact: {body}"
    );

    let wrong = std::fs::read(guest("wrong_world")).unwrap();
    let (status, body) = cluster.call("POST", "/artifacts?name=wrong.wasm", token, Some(wrong));
    assert_eq!(status, 422, "wrong world: {body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("wrong.wasm") && error.contains("world"),
        "{error}"
    );

    let good = std::fs::read(guest("window_count")).unwrap();
    for name in [
        "../evil.wasm",
        "..%2F..%2Fevil.wasm",
        "a%2Fb.wasm",
        "%2Ftmp%2Fevil.wasm",
        ".hidden.wasm",
    ] {
        let (status, body) = cluster.call(
            "POST",
            &format!("/artifacts?name={name}"),
            token,
            Some(good.clone()),
        );
        assert_eq!(status, 400, "name {name}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("not allowed"),
            "{body}"
        );
    }
    let (status, _) = cluster.call("POST", "/artifacts", token, Some(good.clone()));
    assert_eq!(status, 400, "no name");
    assert_eq!(stored(), before, "a refused upload left something behind");
    assert!(
        !cluster.dir.path().join("evil.wasm").exists() && !Path::new("/tmp/evil.wasm").exists()
    );

    // A good one is stored by content and resolvable by name.
    let (status, body) = cluster.call("POST", "/artifacts?name=count.wasm", token, Some(good));
    assert_eq!(status, 201, "{body}");
    let digest = body["digest"].as_str().unwrap();
    assert!(
        store
            .join(format!("{}.wasm", digest.trim_start_matches("sha256:")))
            .exists()
    );

    // A job naming an artifact nobody uploaded is refused, naming it.
    let request = serde_json::json!({
        "job_toml": "[job]\nname = \"j\"\n[[source]]\nname = \"s\"\nkind = \"generator\"\nrecords = 1\n[[operator]]\nname = \"op\"\nwasm = \"missing.wasm\"\ninput = \"s\"\n[[sink]]\nname = \"k\"\nkind = \"discard\"\ninput = \"op\"\n",
        "job_path": cluster.dir.path().join("j.toml"),
    });
    let (status, body) = cluster.call(
        "POST",
        "/jobs",
        token,
        Some(request.to_string().into_bytes()),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("operator `op`: no artifact `missing.wasm`"),
        "{body}"
    );
}

#[test]
fn nodes_without_a_certificate_of_the_cluster_ca_are_refused() {
    let mut cluster = Cluster::start(1, 1, None);
    // A worker whose certificate comes from another CA.
    let stranger = cluster.dir.path().join("stranger-certs");
    let mut init = weir();
    init.args(["cluster", "init", "--workers", "1", "--dir"])
        .arg(&stranger);
    let out = run_with_deadline(init, LIMIT);
    assert!(out.status.success());
    let out = run_with_deadline(cluster.worker_command("worker-1", &stranger, 1), LIMIT);
    assert!(!out.status.success(), "a worker of another CA joined");
    let err = stderr(&out);
    assert!(err.contains("cannot join the coordinator"), "{err}");
    // It is refused in the handshake, before any message: it never registers.
    assert_eq!(cluster.workers().len(), 1);
    let log = std::fs::read_to_string(cluster.dir.path().join("coordinator.log")).unwrap();
    assert!(log.contains("refused connection from 127.0.0.1"), "{log}");

    // A node with no certificate at all cannot even start.
    let empty = cluster.dir.path().join("no-certs");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run_with_deadline(cluster.worker_command("worker-1", &empty, 1), LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("weir cluster init"),
        "{}",
        stderr(&out)
    );

    // A second worker with a certificate of the cluster's CA joins (init
    // reuses the CA and adds worker-2's certificate).
    let certs = cluster.certs();
    let mut init = weir();
    init.args(["cluster", "init", "--workers", "2", "--dir"])
        .arg(&certs);
    assert!(run_with_deadline(init, LIMIT).status.success());
    let cmd = cluster.worker_command("worker-2", &certs, 1);
    cluster.spawn("worker-2", cmd);
    wait_for(
        || (cluster.workers().len() == 2).then_some(()),
        "the second worker",
        &cluster,
    );
}

#[test]
fn savepoint_stop_resume_and_cancel_through_the_cli() {
    let records = 24_000;
    let expected = straight_output(records);

    let cluster = Cluster::start(2, 3, None);
    let work = tempfile::tempdir().unwrap();
    let job = collect_job(work.path(), records, 3_000);
    cluster.submit(&job);
    cluster.wait_for_checkpoint("collect", 2);
    let savepoints = work.path().join("savepoints");
    let mut savepoint = cluster.cli(&["savepoint", "collect", "--dir"]);
    savepoint.arg(&savepoints);
    let out = run_with_deadline(savepoint, LIMIT);
    assert!(
        out.status.success(),
        "savepoint: {}\n{}",
        stderr(&out),
        cluster.logs()
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        Path::new(&path).join("_metadata").exists(),
        "no savepoint at {path:?}"
    );

    let mut stop = cluster.cli(&["stop", "collect", "--dir"]);
    stop.arg(&savepoints);
    let out = run_with_deadline(stop, LIMIT);
    assert!(
        out.status.success(),
        "stop: {}\n{}",
        stderr(&out),
        cluster.logs()
    );
    let stopped_at = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let info = wait_for(
        || Some(cluster.job("collect")).filter(|j| j["state"] != "running"),
        "the job to stop",
        &cluster,
    );
    assert_eq!(info["state"], "stopped", "{info}");
    assert_eq!(info["savepoint"].as_str(), Some(stopped_at.as_str()));

    // Resubmitted from the savepoint it finishes, and the output over both
    // runs is exactly the straight run's.
    let mut resume = cluster.cli(&["submit", "--wait", "--from-savepoint", &stopped_at]);
    resume.arg(&job);
    let out = run_with_deadline(resume, LIMIT);
    assert!(
        out.status.success(),
        "resume: {}\n{}",
        stderr(&out),
        cluster.logs()
    );
    assert_eq!(sorted(&committed_output(work.path())), sorted(&expected));

    // Cancel: a slow job (in a directory of its own: the exactly-once sink
    // refuses one with committed output) ends as cancelled, and `jobs` says so.
    let fresh = tempfile::tempdir().unwrap();
    let slow = collect_job(fresh.path(), 1_000_000, 1_000);
    cluster.submit(&slow);
    cluster.wait_for_checkpoint("collect", 1);
    wait_for(
        || (cluster.job("collect")["state"] == "running").then_some(()),
        "the job to run",
        &cluster,
    );
    let out = run_with_deadline(cluster.cli(&["cancel", "collect"]), LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        || (cluster.job("collect")["state"] == "cancelled").then_some(()),
        "the job to cancel",
        &cluster,
    );
    let out = run_with_deadline(cluster.cli(&["jobs"]), LIMIT);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("job `collect` cancelled"),
        "{:?}",
        out
    );
}

#[test]
fn a_job_without_enough_slots_left_waits_for_a_replacement_worker() {
    let records = 20_000;
    let expected = straight_output(records);

    // 2 workers x 3 slots for a job of parallelism 6: after a kill, the
    // 3 slots left are not enough until a replacement registers.
    let mut cluster = Cluster::start(2, 3, None);
    let work = tempfile::tempdir().unwrap();
    let job = collect_job(work.path(), records, 3_000);
    cluster.submit(&job);
    cluster.wait_for_checkpoint("collect", 3);
    cluster.kill("worker-2");
    wait_for(
        || (cluster.job("collect")["state"] == "scheduling").then_some(()),
        "the job to wait for slots",
        &cluster,
    );
    let certs = cluster.certs();
    let replacement = cluster.worker_command("worker-2", &certs, 3);
    cluster.spawn("worker-2-replacement", replacement);
    let info = cluster.wait_for_end("collect");
    assert_eq!(info["state"], "finished", "{info}\n{}", cluster.logs());
    let text = committed_output(work.path());
    assert_exactly_once(&text, records);
    assert_eq!(sorted(&text), sorted(&expected));
}
