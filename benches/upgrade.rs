//! Live upgrade, stop/restore and rescale of a running job, through the
//! real `weir` binary (DESIGN bar: a live upgrade stalls output ≤ 100 ms).
//!
//! 1. Live upgrade stall. A generator throttled to 20,000 records/s feeds
//!    `versioned.wasm` (keyed running count behind a hash edge, emitting
//!    `{key},{count},{tag}`) into a stdout sink; checkpoints every 1 s. The
//!    bench reads the job's stdout as it arrives and timestamps every line.
//!    After ~10 s it runs `weir upgrade --wasm versioned_v2.wasm` and
//!    measures, in the window [min(command, swap − 2 s), swap + 2 s] (swap
//!    = arrival of the first `v2` line) and in an equally long window with
//!    no command (before the command in even rounds, after the swap in odd
//!    ones — alternating):
//!    - the longest gap between consecutive output arrivals;
//!    - p99 record latency. Each line gives back its record's sequence
//!      number (one source split, one operator subtask, so key `key-k` with
//!      count `c` is record `(c − 1) × keys + k`); its latency is its
//!      arrival − (t0 + seq / rate), t0 chosen so the fastest record of the
//!      run has latency 0. So it is latency *above the best record*, which
//!      includes the throttle's 10 ms batches and the stdout sink's 8 KiB
//!      buffer, equally in both windows;
//!    - command → completion: the `weir upgrade` process's exit.
//!
//!    Each round's job has a compile cache of its own, so the new version
//!    is compiled (in the background) after the command, as new code is.
//! 2. The same job stopped with `weir stop` and restarted with
//!    `weir run --from-savepoint` on v2: the output gap (last line of the old
//!    process → first line of the new one) and the total time (stop
//!    command → first line of the new process).
//! 3. Rescale 1 → 2 of a job holding keyed state in RocksDB: `versioned`
//!    over WEIR_BENCH_KEYS distinct keys (one value per key: the largest
//!    state an existing guest builds at full speed); time from
//!    `weir rescale` to its exit, and to the first checkpoint at
//!    parallelism 2; the state's size is the rescale savepoint's size
//!    (36 M keys ≈ 1.0 GB; filling it takes ~6 min on 2 cores).
//!
//! `cargo bench --bench upgrade` (after `bash scripts/build-guests.sh`).
//! WEIR_BENCH_REPS (default 5) and WEIR_BENCH_KEYS (default 36,000,000)
//! shorten it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{repo, run_with_deadline};

/// A guest built by scripts/build-guests.sh (not built here: the bench
/// measures, it does not compile guests behind the timings' back).
fn guest(name: &str) -> PathBuf {
    repo().join(format!("target/wasm/wasm32-wasip2/release/{name}.wasm"))
}

/// Records per second of the throttled generator (parts 1 and 2).
const RATE: u64 = 20_000;
/// Distinct keys of the throttled generator.
const KEYS: u64 = 1_000;
/// How long the job runs before the command.
const WARM_UP: Duration = Duration::from_secs(10);
/// Half the window around the swap.
const HALF_WINDOW: Duration = Duration::from_secs(2);
/// The bar for the upgrade's longest output gap.
const BAR_MS: f64 = 100.0;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Where the bench keeps its jobs, checkpoints and savepoints.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        // Beside the build (like benches/checkpoint.rs): room for a GB of state.
        let base = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target"));
        std::fs::create_dir_all(&base).expect("create the target dir");
        let dir = tempfile::Builder::new()
            .prefix("weir-bench-upgrade-")
            .tempdir_in(&base)
            .expect("create the work dir");
        Work { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The `weir` binary with the tests' compile cache, this bench's jobs
    /// dir and data root.
    fn weir(&self) -> Command {
        self.weir_cached(&common::cache_dir())
    }

    /// `weir run` for one round of parts 1 and 2, with a cache of its own:
    /// the new version is compiled while the job runs, as for a first
    /// upgrade to new code (and the restored job compiles it at start).
    fn run_cold(&self, round: &str) -> Command {
        let mut cmd = self.weir_cached(&self.path().join("cache").join(round));
        cmd.arg("run");
        cmd
    }

    fn weir_cached(&self, cache: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.current_dir(repo())
            .arg("--cache-dir")
            .arg(cache)
            .arg("--jobs-dir")
            .arg(self.path().join("jobs"))
            .env("WEIR_DATA_ROOTS", self.path())
            .env_remove("WEIR_READ_ROOTS");
        cmd
    }

    /// Runs a `weir` command line to its end (within `limit`): its time,
    /// stdout, and an error with its stderr when it failed.
    fn command(&self, args: &[&str], limit: Duration) -> (Duration, Result<String, String>) {
        let mut cmd = self.weir();
        cmd.args(args);
        let started = Instant::now();
        let out = run_with_deadline(cmd, limit);
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if out.status.success() {
            (took, Ok(format!("{stdout}{stderr}")))
        } else {
            (
                took,
                Err(format!("`weir {}` failed: {stderr}", args.join(" "))),
            )
        }
    }
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// The job of parts 1 and 2: throttled generator → `wasm` → stdout.
fn throttled_job(work: &Path, name: &str, wasm: &Path) -> PathBuf {
    let text = format!(
        r#"[job]
name = "{name}"
parallelism = 1

[checkpoint]
interval_ms = 1000
dir = {chk}

[[source]]
name = "gen"
kind = "generator"
records = 1000000000
keys = {KEYS}
records_per_second = {RATE}

[[operator]]
name = "count"
wasm = {wasm}
input = "gen"
edge = "hash"

[[sink]]
name = "out"
kind = "stdout"
input = "count"
"#,
        chk = toml_path(&work.join("chk")),
        wasm = toml_path(wasm),
    );
    let path = work.join(format!(
        "{name}-{}.toml",
        wasm.file_stem().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&path, text).expect("write the job file");
    path
}

/// One output line as it arrived.
struct Arrival {
    at: Instant,
    seq: u64,
    tag: String,
}

/// `key-{k},{count},{tag}` → (record sequence number, tag).
fn parse_line(line: &str) -> Option<(u64, String)> {
    let mut parts = line.trim_end().splitn(3, ',');
    let k: u64 = parts.next()?.strip_prefix("key-")?.parse().ok()?;
    let count: u64 = parts.next()?.parse().ok()?;
    let tag = parts.next()?.to_string();
    Some((count.checked_sub(1)? * KEYS + k, tag))
}

/// A `weir run` whose stdout lines are read and timestamped as they arrive.
struct RunningJob {
    child: Child,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    unparsed: Arc<Mutex<Vec<String>>>,
}

impl RunningJob {
    fn start(mut cmd: Command) -> RunningJob {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let unparsed = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout piped");
        let (a, u) = (arrivals.clone(), unparsed.clone());
        std::thread::spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 20, stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let at = Instant::now();
                match parse_line(&line) {
                    Some((seq, tag)) => a.lock().expect("lock").push(Arrival { at, seq, tag }),
                    None => u.lock().expect("lock").push(line.clone()),
                }
            }
        });
        let mut pipe = child.stderr.take().expect("stderr piped");
        let e = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        RunningJob {
            child,
            arrivals,
            stderr,
            unparsed,
        }
    }

    fn stderr(&self) -> String {
        let bytes = self.stderr.lock().expect("lock");
        let text = String::from_utf8_lossy(&bytes);
        // The tail: where an error would be.
        let start = text.len().saturating_sub(3000);
        text[text.floor_char_boundary(start)..].to_string()
    }

    /// Waits until an arrival satisfies `pred`; returns its time.
    fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Arrival) -> bool,
    ) -> Result<Instant, String> {
        let started = Instant::now();
        let mut checked = 0;
        loop {
            {
                let arrivals = self.arrivals.lock().expect("lock");
                if let Some(a) = arrivals[checked..].iter().find(|a| pred(a)) {
                    return Ok(a.at);
                }
                checked = arrivals.len();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // A last look: lines may have arrived just before the exit.
                std::thread::sleep(Duration::from_millis(200));
                let arrivals = self.arrivals.lock().expect("lock");
                if let Some(a) = arrivals[checked..].iter().find(|a| pred(a)) {
                    return Ok(a.at);
                }
                return Err(format!(
                    "weir run exited ({status}) before {what}; stderr:\n{}",
                    self.stderr()
                ));
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "no {what} within {limit:?}; stderr:\n{}",
                    self.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                return Ok(status);
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "weir run did not exit within {limit:?} (killed); stderr:\n{}",
                    self.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn take(&self) -> Vec<Arrival> {
        std::mem::take(&mut *self.arrivals.lock().expect("lock"))
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// Longest gap and p99 latency of the arrivals in [from, to].
#[derive(Clone, Copy)]
struct WindowStats {
    max_gap_ms: f64,
    p99_latency_ms: f64,
    lines: usize,
}

/// Gaps count when they overlap the window (a stall straddling an edge
/// counts whole). Latencies are relative to `t0` (see the module doc).
fn window_stats(arrivals: &[Arrival], from: Instant, to: Instant, t0: Instant) -> WindowStats {
    let mut max_gap = Duration::ZERO;
    for pair in arrivals.windows(2) {
        if pair[1].at >= from && pair[0].at <= to {
            max_gap = max_gap.max(pair[1].at - pair[0].at);
        }
    }
    let mut latencies: Vec<f64> = arrivals
        .iter()
        .filter(|a| a.at >= from && a.at <= to)
        .map(|a| latency_ms(a, t0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let p99 = if latencies.is_empty() {
        f64::NAN
    } else {
        latencies[(latencies.len() * 99).div_ceil(100).saturating_sub(1)]
    };
    WindowStats {
        max_gap_ms: ms(max_gap),
        p99_latency_ms: p99,
        lines: latencies.len(),
    }
}

/// When the throttle would have emitted record `seq`, after `t0`.
fn ideal(seq: u64) -> Duration {
    Duration::from_secs_f64(seq as f64 / RATE as f64)
}

fn latency_ms(a: &Arrival, t0: Instant) -> f64 {
    let due = t0 + ideal(a.seq);
    if a.at >= due {
        ms(a.at - due)
    } else {
        -ms(due - a.at)
    }
}

/// The t0 that makes the fastest record's latency 0.
fn fastest_t0(arrivals: &[Arrival]) -> Option<Instant> {
    arrivals
        .iter()
        .filter_map(|a| a.at.checked_sub(ideal(a.seq)))
        .min()
}

/// Records whose sequence number is not the previous one's + 1: lost,
/// repeated or reordered output (the pipeline keeps order at p = 1).
fn discontinuities(arrivals: &[Arrival]) -> usize {
    arrivals
        .windows(2)
        .filter(|p| p[1].seq != p[0].seq + 1)
        .count()
}

struct UpgradeRound {
    around: WindowStats,
    baseline: WindowStats,
    command_ms: f64,
    window_ms: f64,
}

/// Part 1, one round: a fresh job, 10 s on v1, `weir upgrade` to v2.
fn upgrade_round(work: &Work, round: usize, baseline_before: bool) -> Result<UpgradeRound, String> {
    let name = format!("upgrade-{round}");
    let job = throttled_job(work.path(), &name, &guest("versioned"));
    let mut cmd = work.run_cold(&name);
    cmd.arg(&job).args(["--api", "127.0.0.1:0"]);
    let mut running = RunningJob::start(cmd);
    let first = running.wait_for("first output", Duration::from_secs(60), |_| true)?;
    sleep_until(first + WARM_UP);
    let v2 = guest("versioned_v2");
    let command_at = Instant::now();
    let (took, result) = work.command(
        &[
            "upgrade",
            &name,
            "--operator",
            "count",
            "--wasm",
            &v2.display().to_string(),
        ],
        Duration::from_secs(120),
    );
    result?;
    let swap = running.wait_for("v2 output", Duration::from_secs(30), |a| {
        a.tag.starts_with("v2")
    })?;
    let from = command_at.min(swap - HALF_WINDOW);
    let to = swap + HALF_WINDOW;
    let length = to - from;
    let (b_from, b_to) = if baseline_before {
        let b_to = command_at - Duration::from_millis(500);
        (b_to - length, b_to)
    } else {
        let b_from = swap + Duration::from_secs(3);
        (b_from, b_from + length)
    };
    // Arrivals after the last window, so a stall at its edge is seen whole.
    sleep_until(to.max(b_to) + Duration::from_millis(500));
    let (_, cancelled) = work.command(&["cancel", &name], Duration::from_secs(60));
    let exit = running.wait_exit(Duration::from_secs(60));
    let arrivals = running.take();
    let unparsed = running.unparsed.lock().expect("lock").len();
    if let Err(e) = cancelled.and(exit.map(|_| String::new())) {
        eprintln!("  (round {round}: ending the job: {e})");
    }
    let t0 = fastest_t0(&arrivals).ok_or("no output")?;
    let around = window_stats(&arrivals, from, to, t0);
    let baseline = window_stats(&arrivals, b_from, b_to, t0);
    let v1 = arrivals.iter().filter(|a| a.tag == "v1").count();
    let v2_lines = arrivals.iter().filter(|a| a.tag.starts_with("v2")).count();
    let gaps = discontinuities(&arrivals);
    println!(
        "  round {}: upgrade command {:.0} ms (swap {:.0} ms after the command); around the swap ({:.1} s, {} lines): max gap {:.1} ms, p99 latency {:.1} ms; \
         baseline {} ({} lines): max gap {:.1} ms, p99 latency {:.1} ms; lines v1 {v1} / v2 {v2_lines}, seq breaks {gaps}, unparsed {unparsed}",
        round + 1,
        ms(took),
        ms(swap.saturating_duration_since(command_at)),
        length.as_secs_f64(),
        around.lines,
        around.max_gap_ms,
        around.p99_latency_ms,
        if baseline_before {
            "before the command"
        } else {
            "after the swap"
        },
        baseline.lines,
        baseline.max_gap_ms,
        baseline.p99_latency_ms,
    );
    Ok(UpgradeRound {
        around,
        baseline,
        command_ms: ms(took),
        window_ms: ms(length),
    })
}

struct RestoreRound {
    gap_ms: f64,
    total_ms: f64,
}

/// Part 2, one round: 10 s on v1, `weir stop`, `weir run --from-savepoint` on v2.
fn restore_round(work: &Work, round: usize) -> Result<RestoreRound, String> {
    let name = format!("restore-{round}");
    let job = throttled_job(work.path(), &name, &guest("versioned"));
    let mut cmd = work.run_cold(&name);
    cmd.arg(&job).args(["--api", "127.0.0.1:0"]);
    let mut old = RunningJob::start(cmd);
    let first = old.wait_for("first output", Duration::from_secs(60), |_| true)?;
    sleep_until(first + WARM_UP);
    let stop_at = Instant::now();
    let (stop_took, result) = work.command(&["stop", &name], Duration::from_secs(120));
    let out = result?;
    let savepoint = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('/'))
        .ok_or_else(|| format!("`weir stop` printed no savepoint path: {out}"))?
        .to_string();
    old.wait_exit(Duration::from_secs(60))?;
    let exited = Instant::now();
    let old_lines = old.take();
    let last_old = old_lines.last().ok_or("no output before the stop")?;

    let job_v2 = throttled_job(work.path(), &name, &guest("versioned_v2"));
    let mut cmd = work.run_cold(&name);
    cmd.arg(&job_v2)
        .args(["--api", "127.0.0.1:0", "--from-savepoint", &savepoint]);
    let restarted = Instant::now();
    let mut new = RunningJob::start(cmd);
    let first_new = new.wait_for("output after the restore", Duration::from_secs(60), |_| {
        true
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let (_, cancelled) = work.command(&["cancel", &name], Duration::from_secs(60));
    if let Err(e) = cancelled.and(
        new.wait_exit(Duration::from_secs(60))
            .map(|_| String::new()),
    ) {
        eprintln!("  (round {round}: ending the restored job: {e})");
    }
    let new_lines = new.take();
    let first_seq = new_lines.first().map_or(0, |a| a.seq);
    let first_tag = new_lines.first().map_or("?", |a| a.tag.as_str());
    let gap = first_new - last_old.at;
    let total = first_new - stop_at;
    println!(
        "  round {}: stop command {:.0} ms, old process gone {:.0} ms after the stop, new process to first line {:.0} ms; \
         output gap {:.0} ms, stop -> first new line {:.0} ms; last old seq {} -> first new seq {first_seq} ({first_tag})",
        round + 1,
        ms(stop_took),
        ms(exited - stop_at),
        ms(first_new - restarted),
        ms(gap),
        ms(total),
        last_old.seq,
    );
    Ok(RestoreRound {
        gap_ms: ms(gap),
        total_ms: ms(total),
    })
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        dir_size(&path)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The newest complete checkpoint's metadata under `dir` (`chk-*/_metadata`).
fn newest_checkpoint(dir: &Path) -> Option<serde_json::Value> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("chk-"))
        .collect();
    names.sort();
    // The newest may still be being written: fall back to older ones.
    names.iter().rev().find_map(|n| {
        let text = std::fs::read_to_string(dir.join(n).join("_metadata")).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(value["metadata"].clone())
    })
}

fn source_position(meta: &serde_json::Value) -> u64 {
    meta["sources"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["position"]["next_seq"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

fn operator_parallelism(meta: &serde_json::Value) -> Option<u64> {
    meta["operators"]
        .as_array()?
        .iter()
        .find(|o| o["name"] == "count")?["parallelism"]
        .as_u64()
}

struct RescaleResult {
    keys: u64,
    fill_s: f64,
    savepoint_bytes: u64,
    live_bytes: u64,
    command_s: f64,
    resumed_s: f64,
}

/// Part 3: fill RocksDB state over `keys` keys, then `weir rescale` 1 → 2.
fn rescale(work: &Work, keys: u64) -> Result<RescaleResult, String> {
    let name = "rescale";
    let chk = work.path().join("rescale-chk");
    let text = format!(
        r#"[job]
name = "{name}"
parallelism = 1
state_backend = "rocksdb"

[checkpoint]
interval_ms = 5000
dir = {chk}
incremental = true
timeout_ms = 600000

[[source]]
name = "gen"
kind = "generator"
records = 1000000000000
keys = {keys}

[[operator]]
name = "count"
wasm = {wasm}
input = "gen"
edge = "hash"

[[sink]]
name = "out"
kind = "discard"
input = "count"
"#,
        chk = toml_path(&chk),
        wasm = toml_path(&guest("versioned")),
    );
    let job = work.path().join("rescale.toml");
    std::fs::write(&job, text).expect("write the job file");
    let mut cmd = work.weir();
    cmd.arg("run").arg(&job).args(["--api", "127.0.0.1:0"]);
    let started = Instant::now();
    let mut running = RunningJob::start(cmd);
    let checkpoints = chk.join(name);
    // Every key is in the state once a checkpoint has seen `keys` records.
    let fill_limit = Duration::from_secs(900);
    let mut last_report = Instant::now();
    let live_bytes = loop {
        if let Some(meta) = newest_checkpoint(&checkpoints) {
            let position = source_position(&meta);
            if last_report.elapsed() > Duration::from_secs(20) {
                println!(
                    "  filling: {position} of {keys} records after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
            if position >= keys {
                break dir_size(&checkpoints.join("shared"));
            }
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!(
                "the job exited ({status}) while filling; stderr:\n{}",
                running.stderr()
            ));
        }
        if started.elapsed() > fill_limit {
            return Err(format!("state not filled within {fill_limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let fill = started.elapsed();
    println!(
        "  filled {keys} keys in {:.1} s (RocksDB checkpoint files: {} MB)",
        fill.as_secs_f64(),
        live_bytes >> 20
    );
    let savepoints = work.path().join("rescale-savepoint");
    let command_at = Instant::now();
    let (took, result) = work.command(
        &[
            "rescale",
            name,
            "--parallelism",
            "2",
            "--dir",
            &savepoints.display().to_string(),
        ],
        Duration::from_secs(900),
    );
    let out = result?;
    println!("  {}", out.trim());
    // Processing resumed: the first checkpoint with the operator at p = 2.
    let resumed = loop {
        if newest_checkpoint(&checkpoints)
            .as_ref()
            .and_then(operator_parallelism)
            == Some(2)
        {
            break command_at.elapsed();
        }
        if command_at.elapsed() > Duration::from_secs(900) {
            return Err("no checkpoint at parallelism 2 within 900 s".into());
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!(
                "the job exited ({status}) after the rescale; stderr:\n{}",
                running.stderr()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let savepoint_bytes = dir_size(&savepoints);
    // The directory holds the one savepoint the rescale took.
    let inspected = std::fs::read_dir(&savepoints)
        .map_err(|e| format!("{}: {e}", savepoints.display()))
        .and_then(|mut d| {
            d.find_map(|e| e.ok())
                .ok_or_else(|| format!("{} is empty", savepoints.display()))
        })
        .and_then(|e| {
            work.command(
                &["savepoint", "inspect", &e.path().display().to_string()],
                Duration::from_secs(60),
            )
            .1
        });
    match inspected {
        Ok(text) => {
            for line in text.lines().take(12) {
                println!("  | {line}");
            }
        }
        Err(e) => println!("  (savepoint inspect: {e})"),
    }
    let _ = work.command(&["cancel", name], Duration::from_secs(60));
    let _ = running.wait_exit(Duration::from_secs(120));
    Ok(RescaleResult {
        keys,
        fill_s: fill.as_secs_f64(),
        savepoint_bytes,
        live_bytes,
        command_s: took.as_secs_f64(),
        resumed_s: resumed.as_secs_f64(),
    })
}

fn main() {
    let bench_started = Instant::now();
    let reps = env_or("WEIR_BENCH_REPS", 5).max(1) as usize;
    let keys = env_or("WEIR_BENCH_KEYS", 36_000_000).max(1);
    let work = Work::new();
    for g in ["versioned", "versioned_v2"] {
        assert!(
            guest(g).exists(),
            "{} is missing: run bash scripts/build-guests.sh",
            guest(g).display()
        );
    }
    let mut failures = Vec::new();

    println!(
        "1. live upgrade: generator {RATE} records/s over {KEYS} keys -> versioned.wasm (hash) -> stdout, checkpoints every 1 s; {reps} rounds"
    );
    let mut upgrades = Vec::new();
    for round in 0..reps {
        match upgrade_round(&work, round, round % 2 == 0) {
            Ok(r) => upgrades.push(r),
            Err(e) => {
                println!("  round {}: FAILED: {e}", round + 1);
                failures.push(format!("upgrade round {}: {e}", round + 1));
            }
        }
    }

    println!("2. stop + restore from the savepoint with v2, same job; {reps} rounds");
    let mut restores = Vec::new();
    for round in 0..reps {
        match restore_round(&work, round) {
            Ok(r) => restores.push(r),
            Err(e) => {
                println!("  round {}: FAILED: {e}", round + 1);
                failures.push(format!("restore round {}: {e}", round + 1));
            }
        }
    }

    println!("3. rescale 1 -> 2 of versioned.wasm over {keys} keys, RocksDB backend");
    let rescaled = match rescale(&work, keys) {
        Ok(r) => Some(r),
        Err(e) => {
            println!("  FAILED: {e}");
            failures.push(format!("rescale: {e}"));
            None
        }
    };

    let stall = median(upgrades.iter().map(|r| r.around.max_gap_ms).collect());
    let base_gap = median(upgrades.iter().map(|r| r.baseline.max_gap_ms).collect());
    let p99 = median(upgrades.iter().map(|r| r.around.p99_latency_ms).collect());
    let base_p99 = median(upgrades.iter().map(|r| r.baseline.p99_latency_ms).collect());
    let command = median(upgrades.iter().map(|r| r.command_ms).collect());
    let window = median(upgrades.iter().map(|r| r.window_ms).collect());
    let restore_gap = median(restores.iter().map(|r| r.gap_ms).collect());
    let restore_total = median(restores.iter().map(|r| r.total_ms).collect());
    println!();
    println!(
        "medians of {} upgrade / {} stop-restore rounds (window around the swap: median {:.1} s)",
        upgrades.len(),
        restores.len(),
        window / 1000.0
    );
    println!(
        "| {:<38} | {:>14} | {:>14} | {:>14} | {:>10} |",
        "", "baseline", "live upgrade", "stop+restore", "restore/upg"
    );
    println!(
        "|{:-<40}|{:->16}|{:->16}|{:->16}|{:->12}|",
        "", "", "", "", ""
    );
    println!(
        "| {:<38} | {:>11.1} ms | {:>11.1} ms | {:>11.1} ms | {:>9.1}x |",
        "longest output gap (stall)",
        base_gap,
        stall,
        restore_gap,
        restore_gap / stall
    );
    println!(
        "| {:<38} | {:>11.1} ms | {:>11.1} ms | {:>14} | {:>10} |",
        "p99 latency above the fastest record", base_p99, p99, "-", "-"
    );
    println!(
        "| {:<38} | {:>14} | {:>11.0} ms | {:>11.0} ms | {:>9.1}x |",
        "command -> done / first output",
        "-",
        command,
        restore_total,
        restore_total / command
    );
    println!(
        "bar: live upgrade stall <= {BAR_MS:.0} ms: {} ({stall:.1} ms)",
        if stall <= BAR_MS { "MET" } else { "NOT MET" }
    );
    if let Some(r) = &rescaled {
        println!(
            "rescale 1 -> 2: {} keys, state {:.2} GB in the savepoint ({} MB of RocksDB checkpoint files), filled in {:.0} s; \
             weir rescale {:.1} s, first checkpoint at p=2 after {:.1} s",
            r.keys,
            r.savepoint_bytes as f64 / 1e9,
            r.live_bytes >> 20,
            r.fill_s,
            r.command_s,
            r.resumed_s
        );
    }
    for f in &failures {
        println!("FAILURE: {f}");
    }
    println!(
        "total bench time {:.0} s",
        bench_started.elapsed().as_secs_f64()
    );
}
