//! The SDK's window library end to end: real `weir run` jobs with the
//! window-agg test operator (tests/guests/windows/window-agg) over a
//! generated JSON-lines file, compared with windows computed here in plain
//! Rust over the same input (Flink's event-time window semantics).
//!
//! Why the answers are deterministic: a file source sends, ahead of any
//! record at or behind its watermark, the watermark as of that record's
//! position (`max timestamp before it - delay - 1`). So whether a record is
//! late for the host, and what the operator's watermark is when a late
//! record reaches it, depend only on the order of the input, never on
//! batching or timing. The model below advances its watermark to that
//! value before every record; for records that are not late this fires
//! windows earlier than the real job may, but no such record can belong to
//! the windows concerned, so the outputs are the same.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{committed_output, guest, run_with_deadline, stderr, weir};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Rec {
    key: String,
    ts: i64,
    v: i64,
}

/// A small xorshift generator: the input is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `n` records over 5 keys, about 10 ms apart with bursts separated by
/// quiet gaps (so sessions end), disorder under `delay` for most records
/// and, one in `late_every`, a record far behind (late for the host).
/// Timestamps are even, so no two differ by an odd session gap exactly.
fn input(n: usize, delay: i64, late_every: u64) -> Vec<Rec> {
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let mut base = 10_000i64;
    (0..n)
        .map(|i| {
            base += 10;
            if i % 40 == 39 {
                base += 600;
            }
            let back = if late_every > 0 && rng.below(late_every) == 0 {
                delay + rng.below(2_500) as i64
            } else {
                rng.below(delay as u64 / 2) as i64
            };
            Rec {
                key: format!("k{}", rng.below(5)),
                ts: (base - back) & !1,
                v: rng.below(150) as i64 - 50,
            }
        })
        .collect()
}

fn write_input(dir: &Path, recs: &[Rec]) {
    let text: String = recs
        .iter()
        .map(|r| format!("{}\n", json!({"k": r.key, "ts": r.ts, "v": r.v})))
        .collect();
    std::fs::write(dir.join("input.jsonl"), text).unwrap();
}

/// One operator of a test job: its config and the sink file it writes.
struct Op {
    name: &'static str,
    assigner: &'static str,
    aggregate: &'static str,
    lateness: i64,
    /// `late_records` for the operator (`drop` or `process`).
    late_records: &'static str,
}

struct JobOptions {
    delay: i64,
    parallelism: u32,
    backend: &'static str,
    /// Throttle and checkpoint (for the kill test): records/s.
    rate: Option<u64>,
}

fn job_text(ops: &[Op], o: &JobOptions) -> String {
    let mut text = format!(
        r#"
[job]
name = "windows"
parallelism = {p}
state_backend = "{backend}"
"#,
        p = o.parallelism,
        backend = o.backend
    );
    if o.rate.is_some() {
        text += "\n[checkpoint]\ninterval_ms = 200\ndir = \"chk\"\nretain = 2\n";
    }
    text += &format!(
        r#"
[[source]]
name = "events"
kind = "file"
path = "input.jsonl"
format = "jsonl"
timestamp_field = "ts"
key_field = "k"
parallelism = 1
watermark_delay_ms = {delay}
{rate}
"#,
        delay = o.delay,
        rate = o
            .rate
            .map(|r| format!("records_per_second = {r}"))
            .unwrap_or_default()
    );
    for op in ops {
        text += &format!(
            r#"
[[operator]]
name = "{name}"
wasm = "{wasm}"
input = "events"
edge = "hash"
late_records = "{late}"
config = {{ assigner = "{assigner}", aggregate = "{aggregate}", lateness = {lateness} }}

[[sink]]
name = "{name}-out"
kind = "file"
path = "{path}"
input = "{name}"
{exactly_once}
"#,
            name = op.name,
            wasm = guest("window_agg").display(),
            late = op.late_records,
            assigner = op.assigner,
            aggregate = op.aggregate,
            lateness = op.lateness,
            // The kill test reads the committed parts of `out`.
            path = if o.rate.is_some() {
                "out".to_string()
            } else {
                format!("{}.jsonl", op.name)
            },
            exactly_once = if o.rate.is_some() {
                "exactly_once = true"
            } else {
                ""
            },
        );
    }
    text
}

/// Output lines as canonical JSON (keys sorted), sorted. The model's lines
/// go through the same parse too: serde_json's float parsing may be one
/// ulp off, which must not count as a difference.
fn canonical(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("output line {l:?} is not JSON: {e}"))
                .to_string()
        })
        .collect();
    lines.sort();
    lines
}

#[derive(Debug, Clone, Copy)]
enum Assigner {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

fn parse_assigner(spec: &str) -> Assigner {
    let n: Vec<i64> = spec
        .split(':')
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    match spec.split(':').next().unwrap() {
        "tumbling" => Assigner::Tumbling(n[0]),
        "sliding" => Assigner::Sliding(n[0], n[1]),
        "session" => Assigner::Session(n[0]),
        other => panic!("unknown assigner {other}"),
    }
}

/// The aggregate of a window's values, as the operator writes it.
fn aggregate(name: &str, values: &[i64]) -> Value {
    let sum: i64 = values.iter().sum();
    let (min, max) = (values.iter().min().unwrap(), values.iter().max().unwrap());
    match name {
        "count" => json!(values.len()),
        "sum" => json!(sum),
        "min" => json!(min),
        "max" => json!(max),
        "avg" => json!(values.iter().map(|v| *v as f64).sum::<f64>() / values.len() as f64),
        "range" => json!([min, max]),
        other => panic!("unknown aggregate {other}"),
    }
}

fn result_line(key: &str, start: i64, end: i64, value: Value) -> String {
    json!({"key": key, "window_start": start, "window_end": end, "value": value}).to_string()
}

fn late_line(r: &Rec) -> String {
    json!({"late": r.ts, "key": r.key, "v": r.v}).to_string()
}

/// The host's watermark as of each record's position, and whether the
/// record is late for the host (at or behind it).
fn host_watermarks(recs: &[Rec], delay: i64) -> Vec<(i64, bool)> {
    let mut max = None::<i64>;
    recs.iter()
        .map(|r| {
            let wm = max.map_or(i64::MIN, |m| m - delay - 1);
            max = Some(max.map_or(r.ts, |m| m.max(r.ts)));
            (wm, r.ts <= wm)
        })
        .collect()
}

/// Tumbling and sliding windows with allowed lateness, record by record.
fn model_fixed(recs: &[Rec], op: &Op, delay: i64) -> Vec<String> {
    let (size, slide) = match parse_assigner(op.assigner) {
        Assigner::Tumbling(size) => (size, size),
        Assigner::Sliding(size, slide) => (size, slide),
        Assigner::Session(_) => unreachable!("sessions have their own model"),
    };
    struct State {
        values: Vec<i64>,
        fired: bool,
    }
    // (key, start) -> state; windows of a key are cleaned up in end order.
    let mut windows: BTreeMap<(String, i64), State> = BTreeMap::new();
    let mut out = Vec::new();
    let fire_due =
        |windows: &mut BTreeMap<(String, i64), State>, wm: i64, out: &mut Vec<String>| {
            windows.retain(|(key, start), state| {
                let max_ts = start + size - 1;
                if !state.fired && max_ts <= wm {
                    state.fired = true;
                    out.push(result_line(
                        key,
                        *start,
                        start + size,
                        aggregate(op.aggregate, &state.values),
                    ));
                }
                max_ts + op.lateness > wm
            });
        };
    for (r, (wm, host_late)) in recs.iter().zip(host_watermarks(recs, delay)) {
        fire_due(&mut windows, wm, &mut out);
        if host_late && op.late_records == "drop" {
            continue;
        }
        let mut added = false;
        let mut start = r.ts - r.ts.rem_euclid(slide);
        let mut starts = Vec::new();
        while start > r.ts - size {
            starts.push(start);
            start -= slide;
        }
        for start in starts {
            let max_ts = start + size - 1;
            if max_ts + op.lateness <= wm {
                continue;
            }
            added = true;
            let state = windows.entry((r.key.clone(), start)).or_insert(State {
                values: Vec::new(),
                fired: false,
            });
            state.values.push(r.v);
            if max_ts <= wm {
                state.fired = true;
                out.push(result_line(
                    &r.key,
                    start,
                    start + size,
                    aggregate(op.aggregate, &state.values),
                ));
            }
        }
        if !added {
            out.push(late_line(r));
        }
    }
    fire_due(&mut windows, i64::MAX, &mut out);
    out.sort();
    out
}

/// Session windows over the records the host does not drop as late (the
/// session jobs use `late_records = "drop"`): per key, records at most
/// `gap` apart share a session `[first, last + gap)`.
fn model_sessions(recs: &[Rec], op: &Op, delay: i64) -> Vec<String> {
    let Assigner::Session(gap) = parse_assigner(op.assigner) else {
        unreachable!()
    };
    assert_eq!(op.late_records, "drop");
    let mut by_key: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for (r, (_, host_late)) in recs.iter().zip(host_watermarks(recs, delay)) {
        if !host_late {
            by_key.entry(&r.key).or_default().push((r.ts, r.v));
        }
    }
    let mut out = Vec::new();
    for (key, mut recs) in by_key {
        recs.sort();
        let mut session: Vec<i64> = Vec::new();
        let (mut start, mut last) = (recs[0].0, recs[0].0);
        for (ts, v) in recs {
            if ts > last + gap {
                out.push(result_line(
                    key,
                    start,
                    last + gap,
                    aggregate(op.aggregate, &session),
                ));
                session.clear();
                start = ts;
            }
            last = ts;
            session.push(v);
        }
        out.push(result_line(
            key,
            start,
            last + gap,
            aggregate(op.aggregate, &session),
        ));
    }
    out.sort();
    out
}

fn model(recs: &[Rec], op: &Op, delay: i64) -> Vec<String> {
    let lines = match parse_assigner(op.assigner) {
        Assigner::Session(_) => model_sessions(recs, op, delay),
        _ => model_fixed(recs, op, delay),
    };
    canonical(&lines.join("\n"))
}

/// Compares output lines with the model's, showing the first differences
/// (the whole lists are too long to read).
fn assert_same(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let missing: Vec<&String> = want.iter().filter(|l| !got.contains(l)).take(10).collect();
    let extra: Vec<&String> = got.iter().filter(|l| !want.contains(l)).take(10).collect();
    panic!(
        "{what}: {} lines, expected {}\nmissing (first 10): {missing:#?}\nunexpected (first 10): {extra:#?}",
        got.len(),
        want.len()
    );
}

fn run_ok(dir: &Path, ops: &[Op], o: &JobOptions) {
    let file = dir.join("job.toml");
    std::fs::write(&file, job_text(ops, o)).unwrap();
    let mut cmd = weir();
    cmd.arg("run").arg(&file);
    let out = run_with_deadline(cmd, LIMIT);
    assert!(out.status.success(), "weir failed:\n{}", stderr(&out));
}

/// Runs `ops` over `recs` and checks every operator's output against the
/// model.
fn check(recs: &[Rec], ops: &[Op], o: &JobOptions) {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), recs);
    run_ok(dir.path(), ops, o);
    for op in ops {
        let got = canonical(
            &std::fs::read_to_string(dir.path().join(format!("{}.jsonl", op.name))).unwrap(),
        );
        let want = model(recs, op, o.delay);
        assert!(
            want.len() > 20,
            "{}: the input makes too few windows",
            op.name
        );
        assert_same(
            &got,
            &want,
            &format!("operator {} ({}, {})", op.name, op.assigner, op.aggregate),
        );
    }
}

fn fixed(name: &'static str, assigner: &'static str, aggregate: &'static str) -> Op {
    Op {
        name,
        assigner,
        aggregate,
        lateness: 700,
        late_records: "process",
    }
}

fn session(name: &'static str, aggregate: &'static str) -> Op {
    Op {
        name,
        assigner: "session:151",
        aggregate,
        lateness: 0,
        late_records: "drop",
    }
}

const DELAY: i64 = 200;

#[test]
fn tumbling_windows_with_every_aggregate_and_lateness() {
    let recs = input(3000, DELAY, 25);
    let late = host_watermarks(&recs, DELAY)
        .iter()
        .filter(|(_, l)| *l)
        .count();
    assert!(late > 50, "the input has only {late} late records");
    let ops = [
        fixed("count", "tumbling:1000", "count"),
        fixed("sum", "tumbling:1000", "sum"),
        fixed("min", "tumbling:1000", "min"),
        fixed("max", "tumbling:1000", "max"),
        fixed("avg", "tumbling:1000", "avg"),
        fixed("range", "tumbling:1000", "range"),
    ];
    let o = JobOptions {
        delay: DELAY,
        parallelism: 1,
        backend: "memory",
        rate: None,
    };
    // The model must see re-firings and records too late for the library.
    let want = model(&recs, &ops[0], DELAY);
    assert!(want.iter().any(|l| l.contains("\"late\"")));
    check(&recs, &ops, &o);
}

#[test]
fn sliding_and_session_windows() {
    let recs = input(3000, DELAY, 25);
    let ops = [
        fixed("sliding-sum", "sliding:1000:300", "sum"),
        Op {
            lateness: 0,
            ..fixed("sliding-max", "sliding:500:500", "max")
        },
        session("session-count", "count"),
        session("session-range", "range"),
    ];
    let o = JobOptions {
        delay: DELAY,
        parallelism: 1,
        backend: "memory",
        rate: None,
    };
    check(&recs, &ops, &o);
}

#[test]
fn parallelism_two_on_rocksdb() {
    let recs = input(3000, DELAY, 25);
    let ops = [
        fixed("sliding-avg", "sliding:1000:250", "avg"),
        session("session-sum", "sum"),
    ];
    let o = JobOptions {
        delay: DELAY,
        parallelism: 2,
        backend: "rocksdb",
        rate: None,
    };
    check(&recs, &ops, &o);
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts")
}

#[test]
fn killed_and_resumed_from_a_checkpoint() {
    let recs = input(12_000, DELAY, 25);
    let ops = [fixed("win", "tumbling:1000", "sum")];
    let o = JobOptions {
        delay: DELAY,
        parallelism: 1,
        backend: "rocksdb",
        rate: Some(3000),
    };
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), &recs);
    let file = dir.path().join("job.toml");
    std::fs::write(&file, job_text(&ops, &o)).unwrap();
    let before = run_and_kill_after_parts(&file, dir.path(), 2, "job");
    resume(&file, dir.path(), "job");
    let got = canonical(&committed_output(dir.path()));
    assert!(got.len() > before, "the resumed run added nothing");
    assert_same(&got, &model(&recs, &ops[0], DELAY), "resumed job");
}

/// `n` records over 7 keys as JSON lines (record `i`: event time `ts(i)`,
/// value `v(i)`), and the per-key sums of their 10 s tumbling windows as
/// the output lines the window-sum test operators write.
fn ten_second_sums(
    n: i64,
    ts: impl Fn(i64) -> i64,
    v: impl Fn(i64) -> i64,
) -> (String, Vec<String>) {
    let mut lines = String::new();
    let mut sums: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for i in 0..n {
        let (key, ts, v) = (format!("k{}", i % 7), ts(i), v(i));
        lines.push_str(&json!({"k": key, "ts": ts, "v": v}).to_string());
        lines.push('\n');
        *sums.entry((key, ts - ts % 10_000)).or_default() += v;
    }
    let want = sums
        .iter()
        .map(|((k, start), sum)| result_line(k, *start, start + 10_000, json!(sum)))
        .collect();
    (lines, want)
}

/// The Python and JavaScript window libraries, built into real components
/// and run by `weir run`: per-key sums in 10 s tumbling windows equal a
/// model computed here. (A JavaScript host once read the "no watermark
/// yet" value as +9.2e18 and found every window closed.)
#[test]
fn python_and_javascript_windows_sum_like_the_model() {
    // Out of order, within the watermark delay.
    let (lines, want) = ten_second_sums(600, |i| i * 97 % 60_000, |i| i % 11 - 3);
    for guest_name in ["window_sum_py", "window_sum_js"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.jsonl"), &lines).unwrap();
        let job = format!(
            r#"
[job]
name = "{guest_name}"

[[source]]
name = "in"
kind = "file"
path = "in.jsonl"
format = "jsonl"
key_field = "k"
timestamp_field = "ts"
watermark_delay_ms = 60000

[[operator]]
name = "sum"
wasm = "{wasm}"
input = "in"
edge = "hash"

[[sink]]
name = "out"
kind = "file"
path = "out.jsonl"
input = "sum"
"#,
            wasm = guest(guest_name).display()
        );
        std::fs::write(dir.path().join("job.toml"), job).unwrap();
        let out = weir()
            .arg("run")
            .arg(dir.path().join("job.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{guest_name}: {}", stderr(&out));
        let got = canonical(&std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
        assert_same(&got, &canonical(&want.join("\n")), guest_name);
    }
}

/// The Python and JavaScript window libraries hold each key's windows in
/// guest memory until the host calls their `prepare-snapshot` export: a
/// job killed (SIGKILL) after checkpoints and resumed from the last one
/// must still sum every window exactly once. A guest that held state back
/// past a snapshot would lose those records' values here.
#[test]
fn python_and_javascript_windows_resume_from_a_checkpoint_with_nothing_lost() {
    // 5 minutes of event time: 30 windows per key.
    let (lines, want) = ten_second_sums(6_000, |i| i * 50, |i| i % 13 - 4);
    for guest_name in ["window_sum_py", "window_sum_js"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.jsonl"), &lines).unwrap();
        let job = format!(
            r#"
[job]
name = "{guest_name}"
state_backend = "rocksdb"

[checkpoint]
interval_ms = 200
dir = "chk"
retain = 2

[[source]]
name = "in"
kind = "file"
path = "in.jsonl"
format = "jsonl"
key_field = "k"
timestamp_field = "ts"
watermark_delay_ms = 0
records_per_second = 1500

[[operator]]
name = "sum"
wasm = "{wasm}"
input = "in"
edge = "hash"

[[sink]]
name = "out"
kind = "file"
path = "out"
input = "sum"
exactly_once = true
"#,
            wasm = guest(guest_name).display()
        );
        let file = dir.path().join("job.toml");
        std::fs::write(&file, job).unwrap();
        let before = run_and_kill_after_parts(&file, dir.path(), 3, guest_name);
        assert!(
            before > 0,
            "{guest_name}: nothing committed before the kill"
        );
        resume(&file, dir.path(), guest_name);
        let got = canonical(&committed_output(dir.path()));
        assert!(
            got.len() > before,
            "{guest_name}: the resumed run added nothing"
        );
        assert_same(&got, &canonical(&want.join("\n")), guest_name);
    }
}

/// Starts `weir run file`, waits until the exactly-once sink in `dir/out`
/// has committed `parts` parts (that many completed checkpoints), SIGKILLs
/// it, and returns how many output lines were committed by then.
fn run_and_kill_after_parts(file: &Path, dir: &Path, parts: usize, what: &str) -> usize {
    let mut cmd = weir();
    cmd.arg("run").arg(file);
    let mut child = spawn(cmd);
    let out = dir.join("out");
    let started = std::time::Instant::now();
    while committed_parts(&out) < parts {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{what}: the job ended before it was killed"
        );
        assert!(started.elapsed() < LIMIT, "{what}: no checkpoint completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "{what}: the job ended before it was killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    committed_output(dir).lines().count()
}

/// Runs `file` to its end, resumed from the checkpoints in `dir/chk`.
fn resume(file: &Path, dir: &Path, what: &str) {
    let mut cmd = weir();
    cmd.arg("run")
        .arg(file)
        .arg("--resume")
        .arg(dir.join("chk"));
    let run = run_with_deadline(cmd, LIMIT);
    assert!(
        run.status.success(),
        "{what}: resume failed:\n{}",
        stderr(&run)
    );
}

fn committed_parts(out: &Path) -> usize {
    std::fs::read_dir(out)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
                .count()
        })
        .unwrap_or(0)
}
