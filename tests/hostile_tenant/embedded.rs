//! Attacks on embedded `weir run`: a job file whose paths leave the data
//! roots (write, read, state, checkpoints, a symlink out of the tree, a
//! savepoint directory given to `weir savepoint`), and requests to the
//! control API without its token, under a foreign `Host`, or on a
//! non-loopback address; weir's own directories (job registry, compiled
//! code cache) inside a root, and the home directory as a default root.
//!
//! Each run is confined: its current directory is a fresh temporary `work`
//! directory (the default read-write root), the guests are granted with
//! `--read-root`, and a second temporary directory plays "outside".

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::collect::Job;
use crate::common::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// A confined run's directories.
struct Sandbox {
    work: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        guest_dir();
        Sandbox {
            work: tempfile::tempdir().unwrap(),
            outside: tempfile::tempdir().unwrap(),
        }
    }

    fn work(&self) -> &Path {
        self.work.path()
    }

    fn outside(&self) -> &Path {
        self.outside.path()
    }

    fn jobs(&self) -> PathBuf {
        self.work().join("jobs")
    }

    /// `weir ARGS` in `work`; `run` and `validate` may read the guests,
    /// nothing else is granted.
    fn weir(&self, args: &[&str]) -> Command {
        let mut cmd = weir_confined();
        cmd.current_dir(self.work())
            .arg("--jobs-dir")
            .arg(self.jobs())
            .args(args);
        if matches!(args.first(), Some(&"run") | Some(&"validate")) {
            cmd.arg("--read-root").arg(guest_dir());
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        run_with_deadline(self.weir(args), DEADLINE)
    }

    fn write_job(&self, text: &str) -> PathBuf {
        let path = self.work().join("job.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn outside_is_empty(&self) -> bool {
        std::fs::read_dir(self.outside()).unwrap().next().is_none()
    }
}

/// A small job: a generator through the upper-casing guest into a file sink
/// at `sink_path`; `job_extra` lands in `[job]`, `tail` at the end.
fn job_text(sink_path: &str, job_extra: &str, tail: &str) -> String {
    format!(
        r#"[job]
name = "probe"
{job_extra}

[[source]]
name = "gen"
kind = "generator"
records = 10

[[operator]]
name = "upper"
wasm = "{wasm}"
input = "gen"

[[sink]]
name = "out"
kind = "file"
path = "{sink_path}"
input = "upper"
{tail}"#,
        wasm = guest("map_op").display()
    )
}

/// The 1-based line of the first line of `text` starting with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}"))
        + 1
}

/// Asserts `out` failed cleanly with every fragment in its stderr.
fn refused(out: &Output, fragments: &[&str]) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "expected a refusal:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    for f in fragments {
        assert!(err.contains(f), "stderr lacks {f:?}:\n{err}");
    }
    eprintln!("refused as expected: {}", err.trim());
    err
}

#[test]
fn a_sink_outside_the_roots_is_refused_before_anything_runs() {
    let sb = Sandbox::new();
    let target = sb.outside().join("probe.txt");
    let text = job_text(&target.display().to_string(), "", "");
    let job = sb.write_job(&text);
    let at = format!("job.toml:{}:", line_of(&text, "path ="));
    for command in ["run", "validate"] {
        let out = sb.run(&[command, job.to_str().unwrap()]);
        refused(
            &out,
            &[
                &at,
                "sink `out` field `path`",
                &format!("{} is outside the allowed data roots", target.display()),
            ],
        );
    }
    assert!(!target.exists(), "the sink wrote outside its roots");
    assert!(sb.outside_is_empty());
}

#[test]
fn a_sink_that_climbs_out_with_dot_dot_is_refused() {
    let sb = Sandbox::new();
    let text = job_text("out/../../escaped.txt", "", "");
    let job = sb.write_job(&text);
    let escaped = sb.work().parent().unwrap().join("escaped.txt");
    refused(
        &sb.run(&["run", job.to_str().unwrap()]),
        &[
            &format!("job.toml:{}:", line_of(&text, "path =")),
            "sink `out` field `path`",
            &format!("{} is outside the allowed data roots", escaped.display()),
        ],
    );
    assert!(!escaped.exists());
}

#[test]
fn data_root_widens_where_a_job_may_write() {
    let sb = Sandbox::new();
    let target = sb.outside().join("probe.txt");
    let job = sb.write_job(&job_text(&target.display().to_string(), "", ""));
    let mut cmd = sb.weir(&["run", job.to_str().unwrap()]);
    cmd.arg("--data-root").arg(sb.outside());
    let out = run_with_deadline(cmd, DEADLINE);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(target.exists(), "the widened root was not writable");
    // A read-only root is not enough for a sink.
    std::fs::remove_file(&target).unwrap();
    let mut cmd = sb.weir(&["run", job.to_str().unwrap()]);
    cmd.arg("--read-root").arg(sb.outside());
    refused(
        &run_with_deadline(cmd, DEADLINE),
        &["is under a read-only data root; writing needs a read-write root"],
    );
    assert!(!target.exists());
}

/// A file-source job reading `path` (a source is read before any sink
/// writes, and a read is what would leak a key or a token).
fn reading_job(path: &Path) -> String {
    format!(
        r#"[job]
name = "probe"

[[source]]
name = "secrets"
kind = "file"
path = "{}"

[[sink]]
name = "out"
kind = "file"
path = "out.txt"
input = "secrets"
"#,
        path.display()
    )
}

#[test]
fn weirs_own_directories_are_out_of_reach_inside_a_root() {
    let sb = Sandbox::new();
    // The job registry (control tokens) lies inside the current directory,
    // the default read-write root.
    std::fs::create_dir_all(sb.jobs()).unwrap();
    let token = sb.jobs().join("other-job.json");
    std::fs::write(&token, "{\"token\":\"secret\"}\n").unwrap();
    let jobs = std::fs::canonicalize(sb.jobs()).unwrap();
    let job = sb.write_job(&reading_job(&token));
    for command in ["run", "validate"] {
        refused(
            &sb.run(&[command, job.to_str().unwrap()]),
            &[
                "source `secrets` field `path`",
                &format!(
                    "is inside weir's own directory {} (certificates, caches, work dirs), which jobs may never use",
                    jobs.display()
                ),
            ],
        );
    }
    // A sink writing into it, or a directory sink holding it.
    let text = job_text("jobs/probe.json", "", "");
    refused(
        &sb.run(&["run", sb.write_job(&text).to_str().unwrap()]),
        &["sink `out` field `path`", "is inside weir's own directory"],
    );
    let text = job_text("out", "state_dir = \".\"", "");
    refused(
        &sb.run(&["run", sb.write_job(&text).to_str().unwrap()]),
        &[
            "[job] field `state_dir`",
            &format!("contains weir's own directory {}", jobs.display()),
        ],
    );
    // The compiled-code cache (its key authenticates machine code), even
    // with its parent granted explicitly.
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).unwrap();
    let job = sb.write_job(&reading_job(&cache.join("key")));
    let mut cmd = sb.weir(&["run", job.to_str().unwrap()]);
    cmd.arg("--read-root").arg(cache.parent().unwrap());
    refused(
        &run_with_deadline(cmd, DEADLINE),
        &[&format!(
            "is inside weir's own directory {}",
            std::fs::canonicalize(&cache).unwrap().display()
        )],
    );
    assert!(!sb.work().join("out.txt").exists());
}

#[test]
fn the_home_directory_is_not_a_default_root() {
    let sb = Sandbox::new();
    let job = sb.write_job(&job_text("out.txt", "", ""));
    // `work` plays the home directory.
    let mut cmd = sb.weir(&["run", job.to_str().unwrap()]);
    cmd.env("HOME", sb.work());
    refused(
        &run_with_deadline(cmd, DEADLINE),
        &[
            "is your home directory, too wide to let a job read and write all of it",
            "pass --data-root DIR",
        ],
    );
    assert!(!sb.work().join("out.txt").exists());
    let mut cmd = sb.weir(&["validate", job.to_str().unwrap()]);
    cmd.env("HOME", sb.work()).current_dir("/");
    refused(
        &run_with_deadline(cmd, DEADLINE),
        &["the current directory / is the root of the file system"],
    );
    // Naming the roots explicitly is the way out.
    let mut cmd = sb.weir(&["run", job.to_str().unwrap()]);
    cmd.env("HOME", sb.work()).arg("--data-root").arg(sb.work());
    let out = run_with_deadline(cmd, DEADLINE);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sb.work().join("out.txt").exists());
}

#[test]
fn a_checkpoints_shared_files_are_checked_against_the_roots_too() {
    let sb = Sandbox::new();
    // `chk-00000001` lies inside the root, but its `../shared` files would
    // be read from wherever the sibling `shared` leads.
    let storage = sb.work().join("storage");
    std::fs::create_dir_all(storage.join("chk-00000001")).unwrap();
    std::os::unix::fs::symlink(sb.outside(), storage.join("shared")).unwrap();
    let job = sb.write_job(&job_text("out.txt", "", ""));
    let from = storage.join("chk-00000001");
    refused(
        &sb.run(&[
            "run",
            job.to_str().unwrap(),
            "--from-savepoint",
            from.to_str().unwrap(),
        ]),
        &[
            "--from-savepoint: the checkpoint's shared files: ",
            "is outside the allowed data roots",
        ],
    );
    assert!(!sb.work().join("out.txt").exists());
}

#[test]
fn a_source_outside_the_roots_is_refused() {
    let sb = Sandbox::new();
    let secret = sb.outside().join("secret.txt");
    std::fs::write(&secret, "the operator's secret\n").unwrap();
    let text = format!(
        r#"[job]
name = "reader"

[[source]]
name = "lines"
kind = "file"
path = "{}"

[[sink]]
name = "out"
kind = "stdout"
input = "lines"
"#,
        secret.display()
    );
    let job = sb.write_job(&text);
    let out = sb.run(&["run", job.to_str().unwrap()]);
    let err = refused(
        &out,
        &[
            &format!("job.toml:{}:", line_of(&text, "path =")),
            "source `lines` field `path`",
            "is outside the allowed data roots",
        ],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !printed.contains("secret") && !err.contains("the operator's secret"),
        "the file was read: {printed}"
    );
}

#[test]
fn state_and_checkpoint_directories_outside_the_roots_are_refused() {
    let sb = Sandbox::new();
    let state = sb.outside().join("state");
    let text = job_text(
        "out.txt",
        &format!(
            "state_backend = \"rocksdb\"\nstate_dir = \"{}\"",
            state.display()
        ),
        "",
    );
    let job = sb.write_job(&text);
    refused(
        &sb.run(&["run", job.to_str().unwrap()]),
        &[
            &format!("job.toml:{}:", line_of(&text, "state_dir =")),
            "[job] field `state_dir`",
            "is outside the allowed data roots",
        ],
    );
    let chk = sb.outside().join("chk");
    let text = job_text(
        "out.txt",
        "",
        &format!(
            "\n[checkpoint]\ninterval_ms = 100\ndir = \"{}\"\n",
            chk.display()
        ),
    );
    let job = sb.write_job(&text);
    refused(
        &sb.run(&["run", job.to_str().unwrap()]),
        &[
            &format!("job.toml:{}:", line_of(&text, "dir =")),
            "[checkpoint] field `dir`",
            "is outside the allowed data roots",
        ],
    );
    // The same directory given as --resume is refused by its flag.
    let text = job_text(
        "out.txt",
        "",
        "\n[checkpoint]\ninterval_ms = 100\ndir = \"chk\"\n",
    );
    let job = sb.write_job(&text);
    refused(
        &sb.run(&[
            "run",
            job.to_str().unwrap(),
            "--resume",
            chk.to_str().unwrap(),
        ]),
        &["--resume: ", "is outside the allowed data roots"],
    );
    assert!(sb.outside_is_empty(), "something was created outside");
    assert!(!sb.work().join("out.txt").exists(), "the job ran");
}

#[test]
fn a_symlink_in_the_tree_that_leads_out_is_refused() {
    let sb = Sandbox::new();
    std::os::unix::fs::symlink(sb.outside(), sb.work().join("link")).unwrap();
    let text = job_text("link/probe.txt", "", "");
    let job = sb.write_job(&text);
    refused(
        &sb.run(&["run", job.to_str().unwrap()]),
        &[
            &format!("job.toml:{}:", line_of(&text, "path =")),
            "sink `out` field `path`",
            &format!("(resolved: {})", sb.outside().join("probe.txt").display()),
            "is outside the allowed data roots",
        ],
    );
    assert!(sb.outside_is_empty());
}

/// A long-running job (a rate-limited generator) in `sb`'s work directory,
/// registered in its jobs directory; `args` go to `weir run`.
struct Running {
    child: Child,
    registration: serde_json::Value,
}

impl Running {
    fn start(sb: &Sandbox, args: &[&str]) -> Running {
        let job = Job {
            rate: Some(500),
            ..Job::new(1_000_000)
        }
        .write(sb.work());
        let mut cmd = sb.weir(&["run", job.to_str().unwrap()]);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().expect("weir starts");
        let file = sb.jobs().join("collect.json");
        let started = Instant::now();
        let registration = loop {
            if let Ok(bytes) = std::fs::read(&file)
                && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes)
            {
                break value;
            }
            assert!(started.elapsed() < DEADLINE, "the job never registered");
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the registry file holds the token");
        Running {
            child,
            registration,
        }
    }

    fn field(&self, name: &str) -> String {
        self.registration[name].as_str().unwrap().to_string()
    }

    /// `host:port` of the API.
    fn addr(&self) -> String {
        self.field("api").trim_start_matches("http://").to_string()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request, written by hand so the `Host` header is exactly
/// what the test says; returns the status and body.
fn http(addr: &str, method: &str, path: &str, host: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply}"));
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn the_control_api_wants_its_token_and_a_loopback_host() {
    let sb = Sandbox::new();
    let job = Running::start(&sb, &[]);
    let (addr, token) = (job.addr(), job.field("token"));
    assert!(token.len() >= 32, "a token of at least 128 bits: {token}");
    let port = addr.rsplit(':').next().unwrap().to_string();

    let (status, body) = http(&addr, "GET", "/jobs", &addr, None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing bearer token"), "{body}");
    eprintln!("no token: {status} {body}");
    let (status, body) = http(&addr, "GET", "/jobs", &addr, Some("0".repeat(64).as_str()));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("wrong bearer token"), "{body}");

    // DNS rebinding: a page's own name resolved to 127.0.0.1.
    let foreign = format!("attacker.example:{port}");
    let (status, body) = http(&addr, "GET", "/jobs", &foreign, Some(&token));
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("Host header `attacker.example:")
            && body.contains("is not this job's control API"),
        "{body}"
    );
    eprintln!("foreign Host: {status} {body}");
    let (status, _) = http(&addr, "POST", "/jobs/collect/stop", &foreign, Some(&token));
    assert_eq!(status, 403, "a foreign Host cannot stop the job");

    for host in [addr.clone(), format!("localhost:{port}")] {
        let (status, body) = http(&addr, "GET", "/jobs", &host, Some(&token));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"collect\""), "{body}");
    }
    let (status, _) = http(&addr, "GET", "/health", &addr, None);
    assert_eq!(status, 200, "health needs no token");
}

#[test]
fn a_savepoint_directory_outside_the_roots_is_refused() {
    let sb = Sandbox::new();
    let _job = Running::start(&sb, &[]);
    let outside = sb.outside().join("sp");
    let out = sb.run(&["savepoint", "collect", "--dir", outside.to_str().unwrap()]);
    refused(
        &out,
        &[
            "savepoint directory: ",
            &format!("{} is outside the allowed data roots", outside.display()),
        ],
    );
    assert!(sb.outside_is_empty(), "the savepoint was written outside");
    // Inside the tree, the same command (token from the registry) works.
    let out = sb.run(&["savepoint", "collect", "--dir", "sp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(path.starts_with(sb.work().join("sp")), "{}", path.display());
    assert!(path.join("_metadata").exists());
}

#[test]
fn upgrade_and_rescale_take_no_artifact_or_shape_a_job_file_could_not() {
    let sb = Sandbox::new();
    let _job = Running::start(&sb, &[]);
    // An artifact outside the roots is never read (nor copied beside the
    // checkpoints), whatever it holds.
    let outside = sb.outside().join("evil.wasm");
    std::fs::write(&outside, b"\0asm not really").unwrap();
    let wasm = outside.to_str().unwrap();
    let out = sb.run(&[
        "upgrade",
        "collect",
        "--operator",
        "collect",
        "--wasm",
        wasm,
    ]);
    refused(
        &out,
        &[
            "artifact: ",
            &format!("{wasm} is outside the allowed data roots"),
        ],
    );
    // An operator the job does not have, and shapes it cannot take, are
    // refused by name before anything is snapshotted.
    let inside = sb.work().join("same.wasm");
    std::fs::copy(guest("window_collect"), &inside).unwrap();
    let out = sb.run(&[
        "upgrade",
        "collect",
        "--operator",
        "nope\u{1b}[31m",
        "--wasm",
        inside.to_str().unwrap(),
    ]);
    let e = refused(&out, &["the job has no operator `nope"]);
    assert!(
        !e.contains('\u{1b}'),
        "a terminal escape reached the terminal: {e}"
    );
    for bad in ["0", "100000"] {
        let out = sb.run(&["rescale", "collect", "--parallelism", bad, "--dir", "sp"]);
        refused(&out, &[&format!("parallelism {bad} is out of range")]);
    }
    assert!(
        !sb.work().join("sp").exists(),
        "a refused rescale took a savepoint"
    );
    // The job is still there and answers.
    let out = sb.run(&["savepoint", "collect", "--dir", "sp"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_savepoint_dir_flag_outside_the_roots_is_refused_at_start() {
    let sb = Sandbox::new();
    let text = job_text("out.txt", "", "");
    let job = sb.write_job(&text);
    let outside = sb.outside().to_str().unwrap().to_string();
    refused(
        &sb.run(&["run", job.to_str().unwrap(), "--savepoint-dir", &outside]),
        &["--savepoint-dir: ", "is outside the allowed data roots"],
    );
    refused(
        &sb.run(&["run", job.to_str().unwrap(), "--from-savepoint", &outside]),
        &["--from-savepoint: ", "is outside the allowed data roots"],
    );
    assert!(!sb.work().join("out.txt").exists(), "the job ran");
}

#[test]
fn the_control_api_listens_beyond_loopback_only_when_asked() {
    let sb = Sandbox::new();
    let job = sb.write_job(&job_text("out.txt", "", ""));
    let out = sb.run(&["run", job.to_str().unwrap(), "--api", "0.0.0.0:0"]);
    let err = refused(
        &out,
        &[
            "control API: 0.0.0.0:0 is not a loopback address",
            "--api-bind-any",
        ],
    );
    assert!(
        !err.contains("compiled") && !err.contains("loaded"),
        "refused before any operator was loaded:\n{err}"
    );
    assert!(!sb.work().join("out.txt").exists(), "the job ran");
    assert!(!sb.jobs().join("probe.json").exists());

    let out = sb.run(&[
        "run",
        job.to_str().unwrap(),
        "--api",
        "0.0.0.0:0",
        "--api-bind-any",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("non-loopback address 0.0.0.0:0 (--api-bind-any)"),
        "a warning says the API is reachable from the network:\n{err}"
    );
}
