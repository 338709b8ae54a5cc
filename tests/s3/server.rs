//! A real S3 server for the tests: SeaweedFS (`weed mini`, installed by
//! scripts/setup-test-systems.sh) on free loopback ports in a temporary
//! directory, its whole process group killed when dropped.
#![allow(dead_code)] // shared with benches/s3_checkpoint.rs, which lists nothing

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `weed mini` with one bucket.
pub struct Weed {
    child: Child,
    pub port: u16,
    pub bucket: String,
    dir: tempfile::TempDir,
}

/// The `weed` binary: `WEIR_WEED`, the set-up script's venv, or `PATH`.
fn weed_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_WEED") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".toolchains/seaweedfs/bin/weed");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("weed")
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so that they differ, then released for weed.
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Weed {
    pub fn start() -> Weed {
        let dir = tempfile::tempdir().unwrap();
        let bucket = "weir-test".to_string();
        let ports = free_ports(13);
        let names = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
            "admin.port",
            "admin.port.grpc",
            "webdav.port",
        ];
        let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
        let mut cmd = Command::new(weed_binary());
        // With AWS credentials in its environment weed mini makes them an
        // identity and refuses anonymous requests; without, it takes any
        // (the tests list and damage objects with plain HTTP).
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ] {
            cmd.env_remove(var);
        }
        // weed puts some of its volumes in the temporary directory, not
        // under -dir; they go with the test's directory this way.
        cmd.env("TMPDIR", dir.path());
        cmd.arg("mini")
            .arg(format!("-dir={}", dir.path().join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-bucket={bucket}"));
        for (name, port) in names.iter().zip(&ports) {
            cmd.arg(format!("-{name}={port}"));
        }
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start weed (run scripts/setup-test-systems.sh): {e}")
            });
        let weed = Weed {
            child,
            port: ports[6],
            bucket,
            dir,
        };
        // Ready once the bucket answers.
        let started = Instant::now();
        loop {
            let answer = ureq::get(&weed.bucket_url()).call();
            if answer.is_ok() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "weed did not come up ({answer:?}):\n{}",
                weed.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        weed
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn bucket_url(&self) -> String {
        format!("{}/{}", self.endpoint(), self.bucket)
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// Every key under `prefix`, sorted (the server allows anonymous
    /// requests, so plain HTTP does).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}?list-type=2&prefix={prefix}", self.bucket_url());
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={t}"));
            }
            let text = ureq::get(&url)
                .call()
                .unwrap()
                .into_body()
                .read_to_string()
                .unwrap();
            keys.extend(between_all(&text, "<Key>", "</Key>"));
            token = between_all(&text, "<NextContinuationToken>", "</NextContinuationToken>")
                .into_iter()
                .next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        ureq::get(&format!("{}/{key}", self.bucket_url()))
            .call()
            .unwrap()
            .into_body()
            .read_to_vec()
            .unwrap()
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        ureq::put(&format!("{}/{key}", self.bucket_url()))
            .send(bytes)
            .unwrap();
    }

    pub fn delete(&self, key: &str) {
        ureq::delete(&format!("{}/{key}", self.bucket_url()))
            .call()
            .unwrap();
    }
}

fn between_all(text: &str, open: &str, close: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(open) {
        rest = &rest[at + open.len()..];
        let Some(end) = rest.find(close) else { break };
        out.push(rest[..end].to_string());
        rest = &rest[end + close.len()..];
    }
    out
}

impl Drop for Weed {
    fn drop(&mut self) {
        // The whole group: weed mini runs its servers in one process today,
        // but nothing it may start must outlive the test.
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- weed ---\n{}", self.log());
        }
    }
}

/// SIGKILLs the process group `leader` leads (it was started with
/// `process_group(0)`). Not through `/bin/kill`: procps' `kill -KILL -PID`
/// without `--` reads the group as `-1`, every process on the machine.
pub fn kill_group(leader: u32) {
    if let Ok(pid) = i32::try_from(leader)
        && pid > 1
    {
        // SAFETY: kill(2) on a negative pid signals that process group only.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}
