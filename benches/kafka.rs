//! Kafka → Wasm map → Kafka throughput, at-least-once and exactly-once,
//! against the same job from a file to a file, in the same run.
//!
//! One noida-db broker (as the tests start it). WEIR_BENCH_RECORDS
//! (default 300,000) JSON records of ~100 bytes are produced once into a
//! 4-partition topic and written to a file. Each round runs, through the
//! real `weir` binary, the same job (parallelism 2, `map_op.wasm`, which
//! upper-cases each value, checkpoints every second) three ways:
//! Kafka (bounded: `stop = "latest"`) → Kafka at-least-once, Kafka →
//! Kafka exactly-once (transactions per checkpoint), and file → file. The
//! rate is records / wall time of `weir run` (start-up included, the same
//! for all three). Every Kafka run's output is read back
//! (`read_committed`) and counted. Medians of WEIR_BENCH_REPS (default 3)
//! rounds and the ratios against file → file are printed.
//!
//! `cargo bench --bench kafka` (after `bash scripts/build-guests.sh` and
//! `bash scripts/setup-test-systems.sh`).

#[path = "../tests/kafka/broker.rs"]
mod broker;
#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use broker::Broker;
use common::{repo, run_with_deadline};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

const FETCH: &str = r#"properties = { "receive.message.max.bytes" = "1000000000", "fetch.max.bytes" = "999999000" }"#;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    AtLeastOnce,
    ExactlyOnce,
    Files,
}

fn job(mode: Mode, servers: &str, input: &Path, out_topic: &str) -> String {
    let wasm = repo().join("target/wasm/wasm32-wasip2/release/map_op.wasm");
    let source = match mode {
        Mode::Files => format!(
            "kind = \"file\"\npath = \"{}\"\nformat = \"jsonl\"\nkey_field = \"key\"",
            input.display()
        ),
        _ => format!(
            "kind = \"kafka\"\nbootstrap_servers = \"{servers}\"\ntopics = [\"in\"]\nstop = \"latest\"\nformat = \"jsonl\"\nkey_field = \"key\"\n{FETCH}"
        ),
    };
    let sink = match mode {
        Mode::Files => "kind = \"file\"\npath = \"out.txt\"".to_string(),
        Mode::AtLeastOnce => {
            format!("kind = \"kafka\"\nbootstrap_servers = \"{servers}\"\ntopic = \"{out_topic}\"")
        }
        Mode::ExactlyOnce => format!(
            "kind = \"kafka\"\nbootstrap_servers = \"{servers}\"\ntopic = \"{out_topic}\"\ndelivery = \"exactly-once\"\ntransactional_id_prefix = \"{out_topic}\""
        ),
    };
    format!(
        r#"
[job]
name = "kafka-bench"
parallelism = 2

[checkpoint]
interval_ms = 1000
dir = "chk"

[[source]]
name = "in"
parallelism = 2
{source}

[[operator]]
name = "map"
wasm = "{wasm}"
input = "in"

[[sink]]
name = "out"
input = "map"
{sink}
"#,
        wasm = wasm.display()
    )
}

/// Runs one job; returns records per second of its wall time.
fn run(mode: Mode, broker: &Broker, input: &Path, records: u64, round: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("out-{round}-{}", mode as u8);
    if mode != Mode::Files {
        broker.create_topic(&topic, 2);
    }
    let file: PathBuf = dir.path().join("job.toml");
    std::fs::write(&file, job(mode, &broker.servers(), input, &topic)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("--cache-dir")
        .arg(repo().join("target/wasm/component-cache"))
        .env("WEIR_DATA_ROOTS", std::env::temp_dir())
        .arg("run")
        .arg(&file)
        .arg("--jobs-dir")
        .arg(dir.path().join("jobs"));
    let started = Instant::now();
    let out = run_with_deadline(cmd, Duration::from_secs(1800));
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "weir failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = match mode {
        Mode::Files => std::fs::read_to_string(dir.path().join("out.txt"))
            .unwrap()
            .lines()
            .count() as u64,
        _ => broker.read_committed(&topic).len() as u64,
    };
    assert_eq!(
        written, records,
        "the job wrote {written} of {records} records"
    );
    records as f64 / elapsed
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name us skips.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"kafka".contains(&*a))
    {
        return;
    }
    let records = env_or("WEIR_BENCH_RECORDS", 300_000);
    let reps = env_or("WEIR_BENCH_REPS", 3).max(1);
    let broker = Broker::start();
    broker.create_topic("in", 4);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    let lines: Vec<String> = (0..records)
        .map(|i| {
            format!(
                r#"{{"key":"key-{}","seq":{i},"payload":"the quick brown fox jumps over the lazy dog {i:08}"}}"#,
                i % 1000
            )
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let batch: Vec<_> = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| ((i % 4) as i32, None, l, None))
        .collect();
    broker.produce("in", &batch);
    println!("kafka bench: {records} records, {reps} rounds, parallelism 2, map_op.wasm");
    let (mut alo, mut eos, mut files) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..reps {
        // Interleaved, so drift on the machine hits all three alike.
        files.push(run(Mode::Files, &broker, &input, records, round));
        alo.push(run(Mode::AtLeastOnce, &broker, &input, records, round));
        eos.push(run(Mode::ExactlyOnce, &broker, &input, records, round));
        println!(
            "round {round}: file->file {:.0}/s, kafka->kafka at-least-once {:.0}/s, exactly-once {:.0}/s",
            files[round as usize], alo[round as usize], eos[round as usize]
        );
    }
    let (f, a, e) = (median(files), median(alo), median(eos));
    println!(
        "median records/s: file->file {f:.0}, kafka at-least-once {a:.0}, kafka exactly-once {e:.0}"
    );
    println!(
        "ratios: at-least-once / file {:.2}, exactly-once / file {:.2}, exactly-once / at-least-once {:.2}",
        a / f,
        e / f,
        e / a
    );
}
