//! The same map operator (upper-case each 100-byte value, keep the key) in
//! Rust (benches/guests/map-op), Python (map-op-py) and JavaScript
//! (map-op-js), called through the host with the same batches of 1024
//! records: records/s and ns/record per language. Then start-up: a first
//! start that compiles the component (empty cache) against a cached start
//! that loads the compiled code from the disk cache, each with one
//! instantiation and `open`.
//!
//! Last, a windowed operator in a whole job (`weir_runtime::run_job`):
//! per-key sums in 10 s tumbling windows with each SDK's window library
//! (tests/guests/windows, windows-py, windows-js) over the same JSON-lines
//! file, records per CPU-second of the whole process.
//!
//! Run: cargo bench --bench polyglot   (guests: bash scripts/build-guests.sh)
//! WEIR_BENCH_COMPILE_ROUNDS (default 3) sets how many cold compiles to time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use weir_core::job::GuestLimits;
use weir_core::{Batch, BatchBuilder};
use weir_wasm::{OperatorInfo, OperatorInstance, WasmEngine};

const BATCH: usize = 1024;
const ROUNDS: usize = 11;

const GUESTS: [(&str, &str, usize); 3] = [
    // (language, artifact, records per round)
    ("Rust", "map_op", 400 * BATCH),
    ("Python", "map_op_py", 20 * BATCH),
    ("JavaScript", "map_op_js", 40 * BATCH),
];

fn batch() -> Batch {
    let mut b = BatchBuilder::default();
    for i in 0..BATCH {
        let mut value = format!("record {i} of the polyglot map benchmark: ");
        while value.len() < 100 {
            value.push_str("abcdefghij");
        }
        value.truncate(100);
        b.push(
            Some(i as i64),
            format!("key-{}", i % 100).as_bytes(),
            value.as_bytes(),
        );
    }
    b.take()
}

fn info() -> OperatorInfo {
    OperatorInfo {
        name: "map".into(),
        subtask_index: 0,
        parallelism: 1,
        config: vec![],
        limits: GuestLimits::default(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Time to a ready instance: engine, load (compile or cache), instantiate, open.
fn start(cache: &std::path::Path, wasm: &std::path::Path) -> (f64, f64, bool) {
    let started = Instant::now();
    let engine = WasmEngine::new(Some(cache.to_path_buf())).expect("engine");
    let compiled = engine.load("map", wasm).expect("loads");
    let loaded = started.elapsed();
    let instance = OperatorInstance::open(&compiled, &info(), None).expect("instance");
    let total = started.elapsed();
    drop(instance);
    (ms(loaded), ms(total), compiled.from_cache)
}

fn main() {
    let input = batch();
    println!(
        "map operator (upper-case 100-byte values), batches of {BATCH}, median of {ROUNDS} rounds"
    );
    println!(
        "{:>12} {:>12} {:>12} {:>10}",
        "language", "records/s", "ns/record", "vs Rust"
    );
    let mut rust_ns = None;
    let mut reference: Option<Batch> = None;
    let engine = WasmEngine::new(None).expect("engine");
    for (language, artifact, per_round) in GUESTS {
        let compiled = engine
            .load("map", &common::guest(artifact))
            .expect("guest loads");
        let mut instance = OperatorInstance::open(&compiled, &info(), None).expect("instance");
        let out = instance.process(0, &input).expect("process");
        match &reference {
            None => reference = Some(out),
            Some(r) => assert_eq!(&out, r, "{language} computes what Rust computes"),
        }
        let calls = per_round / BATCH;
        for _ in 0..calls.min(20) {
            std::hint::black_box(instance.process(0, &input).expect("warm up"));
        }
        let mut samples = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(instance.process(0, &input).expect("process"));
            }
            samples.push(started.elapsed().as_nanos() as f64 / (calls * BATCH) as f64);
        }
        let ns = median(samples);
        let base = *rust_ns.get_or_insert(ns);
        println!(
            "{language:>12} {:>12.0} {ns:>12.1} {:>9.1}x",
            1e9 / ns,
            ns / base
        );
    }

    windowed_jobs();

    let compile_rounds: usize = std::env::var("WEIR_BENCH_COMPILE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!();
    println!(
        "start-up to a ready instance (ms; median of {compile_rounds} cold and 5 cached starts)"
    );
    println!(
        "{:>12} {:>8} {:>14} {:>14} {:>14} {:>14}",
        "language", "MB", "first: load", "first: ready", "cached: load", "cached: ready"
    );
    for (language, artifact, _) in GUESTS {
        let wasm = common::guest(artifact);
        let size = std::fs::metadata(&wasm).expect("artifact").len() as f64 / 1e6;
        let (mut cold_load, mut cold_ready, mut warm_load, mut warm_ready) =
            (vec![], vec![], vec![], vec![]);
        let mut cache = tempfile::tempdir().expect("cache dir");
        for round in 0..compile_rounds.max(1) {
            if round > 0 {
                cache = tempfile::tempdir().expect("cache dir");
            }
            let (load, ready, from_cache) = start(cache.path(), &wasm);
            assert!(!from_cache, "an empty cache compiles");
            cold_load.push(load);
            cold_ready.push(ready);
        }
        for _ in 0..5 {
            let (load, ready, from_cache) = start(cache.path(), &wasm);
            assert!(from_cache, "the second start loads from the cache");
            warm_load.push(load);
            warm_ready.push(ready);
        }
        println!(
            "{language:>12} {size:>8.1} {:>14.0} {:>14.0} {:>14.1} {:>14.1}",
            median(cold_load),
            median(cold_ready),
            median(warm_load),
            median(warm_ready)
        );
    }
}

/// Window operators per language, each with the configuration that makes
/// it a per-key sum in 10 s tumbling windows, and records per run.
const WINDOWED: [(&str, &str, &str, usize); 3] = [
    (
        "Rust",
        "window_agg",
        "config = { assigner = \"tumbling:10000\", aggregate = \"sum\", lateness = 0 }",
        1_000_000,
    ),
    ("Python", "window_sum_py", "", 100_000),
    ("JavaScript", "window_sum_js", "", 100_000),
];

/// The windowed sum as whole jobs; the same input prefix for every
/// language (1,000 keys, 10 ms apart: each key has one record a window).
fn windowed_jobs() {
    const RUNS: usize = 3;
    let dir = tempfile::tempdir().expect("temp dir");
    println!();
    println!("windowed sum per key, 10 s tumbling windows, whole job (median of {RUNS} runs)");
    println!(
        "{:>12} {:>10} {:>14} {:>14} {:>10}",
        "language", "records", "records/s", "records/cpu-s", "vs Rust"
    );
    let mut rust = None;
    for (language, artifact, config, records) in WINDOWED {
        let input = dir.path().join(format!("in-{records}.jsonl"));
        if !input.exists() {
            let text: String = (0..records)
                .map(|i| {
                    format!(
                        "{{\"k\":\"k{}\",\"ts\":{},\"v\":{}}}\n",
                        i % 1000,
                        i * 10,
                        i % 13
                    )
                })
                .collect();
            std::fs::write(&input, text).expect("write input");
        }
        let job = dir.path().join(format!("{artifact}.toml"));
        std::fs::write(
            &job,
            format!(
                r#"
[job]
name = "{artifact}"

[[source]]
name = "in"
kind = "file"
path = "{input}"
format = "jsonl"
key_field = "k"
timestamp_field = "ts"
watermark_delay_ms = 0

[[operator]]
name = "sum"
wasm = "{wasm}"
input = "in"
edge = "hash"
{config}

[[sink]]
name = "out"
kind = "discard"
input = "sum"
"#,
                input = input.display(),
                wasm = common::guest(artifact).display(),
            ),
        )
        .expect("write job");
        let spec = weir_core::job::load(&job).expect("job parses");
        let options = weir_runtime::RunOptions {
            cache_dir: Some(dir.path().join("cache")),
            ..weir_runtime::RunOptions::default()
        };
        weir_runtime::run_job(&spec, &options).expect("warm-up run"); // compile + cache
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let cpu_before = common::cpu_seconds();
            let started = Instant::now();
            weir_runtime::run_job(&spec, &options).expect("run");
            let elapsed = started.elapsed().as_secs_f64();
            wall.push(records as f64 / elapsed);
            cpu.push(records as f64 / (common::cpu_seconds() - cpu_before).max(0.01));
        }
        let per_cpu = median(cpu);
        let base = *rust.get_or_insert(per_cpu);
        println!(
            "{language:>12} {records:>10} {:>14.0} {per_cpu:>14.0} {:>9.1}x",
            median(wall),
            base / per_cpu
        );
    }
}
