//! Shared helpers for the end-to-end tests: build guests once, run the real
//! `weir` binary with a deadline, compare outputs with golden files.
#![allow(dead_code)]

pub mod cluster;
pub mod collect;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds every guest component once per test binary (a no-op when
/// `scripts/build-guests.sh` already ran) and returns their directory.
pub fn guest_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // The same script the README and CI use, so the list of guests lives
        // in one place; cargo makes it a no-op when they are up to date.
        let status = Command::new("bash")
            .arg(repo().join("scripts/build-guests.sh"))
            .status()
            .expect("bash runs");
        assert!(
            status.success(),
            "building guests failed; are the wasm32-wasip2 target and the Python/JavaScript component toolchains installed? (bash scripts/setup.sh)"
        );
        repo().join("target/wasm/wasm32-wasip2/release")
    })
}

pub fn guest(name: &str) -> PathBuf {
    guest_dir().join(format!("{name}.wasm"))
}

/// The component cache the tests share (entries are written atomically, so
/// concurrent tests may fill it); it lives under target/ and is reused.
pub fn cache_dir() -> PathBuf {
    repo().join("target/wasm/component-cache")
}

/// The `weir` binary with the tests' shared cache. Tests keep their jobs in
/// temporary directories, so `weir run` and `weir validate` get the system
/// temp directory as a read-write data root besides the current directory
/// (the repository, which holds the guests); [`weir_confined`] leaves it out.
pub fn weir() -> Command {
    let mut cmd = weir_confined();
    cmd.env("WEIR_DATA_ROOTS", std::env::temp_dir());
    cmd
}

/// The `weir` binary with only the data roots its arguments and current
/// directory give (for tests of those roots).
pub fn weir_confined() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("--cache-dir").arg(cache_dir());
    for var in ["WEIR_DATA_ROOTS", "WEIR_READ_ROOTS"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` to completion, failing the test if it takes over `limit`:
/// a hung host is a bug, not a slow test. Output is drained while it runs
/// so a chatty process never blocks on a full pipe.
pub fn run_with_deadline(mut cmd: Command, limit: Duration) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr piped")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "weir did not finish within {limit:?}\nstderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Lines of a file, sorted: parallel runs emit in nondeterministic order.
pub fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Writes `text` as a job file in a fresh directory and returns both.
pub fn job_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("job.toml");
    std::fs::write(&path, text).expect("write job");
    (dir, path)
}

/// The committed output of an exactly-once file sink writing to
/// `<dir>/out`: every part file, in order.
pub fn committed_output(dir: &Path) -> String {
    let out = dir.join("out");
    let mut parts: Vec<_> = std::fs::read_dir(&out)
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-"))
        .collect();
    parts.sort();
    parts
        .iter()
        .map(|p| std::fs::read_to_string(out.join(p)).unwrap())
        .collect()
}

/// Whether a local checkpoint root (`<dir>/<job>/chk-N/_metadata`) holds a
/// complete checkpoint of any job.
pub fn has_complete_checkpoint(root: &Path) -> bool {
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    dirs(root)
        .iter()
        .flat_map(|job| dirs(job))
        .any(|chk| chk.join("_metadata").exists())
}

/// Waits until `ready` holds while `child` runs: a kill loop's first kill
/// must come after a checkpoint to resume from, however slow the machine.
pub fn wait_while_running(child: &mut std::process::Child, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before its first checkpoint"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint in 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// User and system time of this whole process so far (all threads), in
/// seconds: the benches' "per core" figures.
pub fn cpu_seconds() -> f64 {
    // Fields 14 and 15 of /proc/self/stat: utime and stime in clock ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
