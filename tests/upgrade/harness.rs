//! One upgrade test's job: its directory, the `weir run` process (stderr
//! kept in a file per run, so a failure can show it), and the commands
//! sent to it through `weir upgrade` / `weir jobs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{guest, run_with_deadline, stderr, weir};

/// The job's name, and the upgraded operator's.
pub const JOB: &str = "upg";
pub const OPERATOR: &str = "counter";

/// How long any one `weir` command or run may take.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The job: a throttled generator, the keyed `versioned` counter at
/// parallelism 2 behind a hash edge, an exactly-once file sink. (The
/// operator is not named `count`, so an error naming the state `count` is
/// told apart from one naming the operator.)
#[derive(Clone, Copy)]
pub struct Spec {
    pub records: u64,
    pub keys: u64,
    pub rate: u64,
}

impl Spec {
    pub fn text(&self, wasm: &Path) -> String {
        format!(
            r#"
[job]
name = "{JOB}"
parallelism = 1

[checkpoint]
interval_ms = 200
dir = "chk"
retain = 3

[restart]
strategy = "fixed-delay"
attempts = 3
delay_ms = 100

[[source]]
name = "gen"
kind = "generator"
records = {records}
keys = {keys}
records_per_second = {rate}

[[operator]]
name = "{OPERATOR}"
wasm = "{wasm}"
input = "gen"
edge = "hash"
parallelism = 2

[[sink]]
name = "out"
kind = "file"
exactly_once = true
path = "out"
input = "{OPERATOR}"
"#,
            records = self.records,
            keys = self.keys,
            rate = self.rate,
            wasm = wasm.display(),
        )
    }
}

pub struct Harness {
    pub spec: Spec,
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub jobs: PathBuf,
    child: Option<Child>,
    runs: usize,
    /// What each command sent to the job said on stderr.
    commands: Vec<String>,
}

impl Harness {
    /// Writes the job file, starting with `versioned.wasm`.
    pub fn new(spec: Spec) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("job.toml");
        std::fs::write(&file, spec.text(&guest("versioned"))).expect("write job");
        let jobs = dir.path().join("jobs");
        Harness {
            spec,
            dir,
            file,
            jobs,
            child: None,
            runs: 0,
            commands: Vec::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Starts `weir run` (with `--resume` from the job's checkpoints) and
    /// waits until it registered its control API.
    pub fn start(&mut self, resume: bool) {
        assert!(self.child.is_none(), "a run is already going");
        let log = self.path(&format!("run-{}.log", self.runs));
        self.runs += 1;
        let mut cmd = weir();
        cmd.arg("run").arg(&self.file);
        if resume {
            cmd.arg("--resume").arg(self.path("chk"));
        }
        cmd.args(["--api", "127.0.0.1:0", "--jobs-dir"])
            .arg(&self.jobs)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        // A killed run leaves its registry file; wait for the new one.
        let _ = std::fs::remove_file(self.registry());
        self.child = Some(cmd.spawn().expect("weir starts"));
        self.wait_until("the job registered its control API", |h| {
            h.registry().exists()
        });
    }

    fn registry(&self) -> PathBuf {
        self.jobs.join(format!("{JOB}.json"))
    }

    /// Everything the runs and commands wrote to stderr, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for run in 0..self.runs {
            let log =
                std::fs::read_to_string(self.path(&format!("run-{run}.log"))).unwrap_or_default();
            text.push_str(&format!("--- stderr of run {run}:\n{log}\n"));
        }
        for (i, c) in self.commands.iter().enumerate() {
            text.push_str(&format!("--- command {i}:\n{c}\n"));
        }
        text
    }

    /// Whether the current run is still going.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// Polls `done` until it holds; fails (with the logs) if the run ends
    /// first or it takes over [`LIMIT`].
    pub fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Harness) -> bool) {
        let started = Instant::now();
        loop {
            if done(self) {
                return;
            }
            assert!(
                self.running(),
                "the job ended before {what}; make it longer\n{}",
                self.logs()
            );
            assert!(
                started.elapsed() < LIMIT,
                "timed out waiting until {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until the committed output holds at least `lines` lines.
    pub fn wait_committed(&mut self, lines: usize) {
        self.wait_until(&format!("{lines} lines were committed"), |h| {
            crate::output::read_parts(&h.path("out"))
                .map(|parts| parts.iter().map(|p| p.lines.len()).sum::<usize>() >= lines)
                .unwrap_or(false)
        });
    }

    /// Waits until the committed output holds a line tagged `tag`.
    pub fn wait_for_tag(&mut self, tag: &str) {
        self.wait_until(&format!("a line tagged `{tag}` was committed"), |h| {
            crate::output::read_parts(&h.path("out"))
                .is_ok_and(|parts| parts.iter().flat_map(|p| &p.lines).any(|l| l.tag == tag))
        });
    }

    /// The `weir upgrade` command for this job, with `args` after it.
    pub fn upgrade_command(&self, args: &[&str]) -> Command {
        let mut cmd = weir();
        cmd.args(["upgrade", JOB, "--operator", OPERATOR, "--jobs-dir"])
            .arg(&self.jobs)
            .args(args);
        cmd
    }

    /// Runs `weir upgrade JOB --operator count ARGS` to its end.
    pub fn upgrade(&mut self, args: &[&str]) -> Output {
        let out = run_with_deadline(self.upgrade_command(args), LIMIT);
        let said = format!(
            "weir upgrade {} -> {}\n{}",
            args.join(" "),
            out.status,
            stderr(&out)
        );
        // Shown with --nocapture: what the command answered, pass or fail.
        eprintln!("{said}");
        self.commands.push(said);
        out
    }

    /// `weir upgrade ... --wasm <guest>.wasm ARGS`, which must succeed.
    pub fn upgrade_ok(&mut self, guest_name: &str, args: &[&str]) -> String {
        let wasm = guest(guest_name).display().to_string();
        let mut all = vec!["--wasm", &wasm];
        all.extend_from_slice(args);
        let out = self.upgrade(&all);
        assert!(
            out.status.success(),
            "upgrading to {guest_name} failed\n{}",
            self.logs()
        );
        stderr(&out)
    }

    /// `weir jobs --jobs-dir DIR`: its stdout.
    pub fn jobs(&mut self) -> String {
        let mut cmd = weir();
        cmd.arg("jobs").arg("--jobs-dir").arg(&self.jobs);
        let out = run_with_deadline(cmd, LIMIT);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        self.commands.push(format!(
            "weir jobs -> {}\n{text}{}",
            out.status,
            stderr(&out)
        ));
        assert!(out.status.success(), "weir jobs failed\n{}", self.logs());
        text
    }

    /// Waits for the run to end and checks it succeeded.
    pub fn finish(&mut self) {
        let mut child = self.child.take().expect("a run is going");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the job did not finish within {LIMIT:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "the job failed: {status}\n{}",
            self.logs()
        );
    }

    /// SIGKILLs the run, checking it was still going.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("a run is going");
        let still_running = child.try_wait().expect("try_wait").is_none();
        child.kill().expect("kill"); // SIGKILL
        child.wait().expect("wait");
        assert!(
            still_running,
            "the job finished before it could be killed; make it longer\n{}",
            self.logs()
        );
    }

    /// The id of the newest complete checkpoint (the one `--resume` takes).
    pub fn newest_checkpoint(&self) -> u64 {
        let root = self.path(&format!("chk/{JOB}"));
        std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", root.display(), self.logs()))
            .filter_map(Result::ok)
            .filter(|e| e.path().join("_metadata").exists())
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_prefix("chk-")?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or_else(|| {
                panic!(
                    "no complete checkpoint in {}\n{}",
                    root.display(),
                    self.logs()
                )
            })
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // A failed test must not leave its job running.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The hex SHA-256 of guest `name`'s component (the digest weir names it by).
pub fn digest_of(name: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(guest(name))
        .output()
        .expect("sha256sum runs");
    assert!(out.status.success(), "sha256sum failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}
