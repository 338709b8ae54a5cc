//! Whole-pipeline throughput through `weir_runtime::run_job`, in one run:
//!
//! - source -> discard (no operator): the runtime's own ceiling, the baseline;
//! - source -> Wasm map -> discard: a stateless pipeline (Nexmark q0-q2 shape);
//! - source -> hash -> Wasm windowed count -> discard, with the in-memory and
//!   RocksDB backends (q5/q7 shape).
//!
//! Reports median records/s over wall time, and records per CPU-second
//! (user+system time of the whole process, all threads): the "per core"
//! figure DESIGN.md's bars are stated in.
//!
//! Run: cargo bench --bench pipeline

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use weir_runtime::RunOptions;

const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn job(name: &str, records: u64, operators: &str, sink_input: &str, backend: &str) -> String {
    format!(
        r#"
[job]
name = "{name}"
state_backend = "{backend}"

[[source]]
name = "events"
kind = "generator"
records = {records}
keys = 10000
interval_ms = 1
value_bytes = 100
watermark_delay_ms = 1000
{operators}
[[sink]]
name = "out"
kind = "discard"
input = "{sink_input}"
"#
    )
}

fn bench(label: &str, text: &str, records: u64, dir: &Path) {
    let path = dir.join(format!("{label}.toml"));
    std::fs::write(&path, text).expect("write job");
    let spec = weir_core::job::load(&path).expect("job parses");
    let options = RunOptions {
        cache_dir: Some(dir.join("cache")),
        ..RunOptions::default()
    };
    weir_runtime::run_job(&spec, &options).expect("warm-up run"); // compile + cache
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let cpu_before = common::cpu_seconds();
        let started = Instant::now();
        let report = weir_runtime::run_job(&spec, &options).expect("run");
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_used = (common::cpu_seconds() - cpu_before).max(0.01);
        assert_eq!(report.nodes[0].records_out, records);
        wall.push(records as f64 / elapsed);
        cpu.push(records as f64 / cpu_used);
    }
    println!("{label:<28} {:>14.0} {:>16.0}", median(wall), median(cpu));
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let map = common::guest("map_op");
    let count = common::guest("count_op");
    let stateless: u64 = 2_000_000;
    let keyed: u64 = 1_000_000;
    println!("median of {RUNS} runs; 100-byte values, batch_records_max = 1024");
    println!(
        "{:<28} {:>14} {:>16}",
        "pipeline", "records/s", "records/cpu-s"
    );
    bench(
        "source->discard",
        &job("baseline", stateless, "", "events", "memory"),
        stateless,
        dir.path(),
    );
    let map_op = format!(
        "[[operator]]\nname = \"map\"\nwasm = \"{}\"\ninput = \"events\"\n",
        map.display()
    );
    bench(
        "source->wasm map->discard",
        &job("map", stateless, &map_op, "map", "memory"),
        stateless,
        dir.path(),
    );
    let count_op = format!(
        "[[operator]]\nname = \"count\"\nwasm = \"{}\"\ninput = \"events\"\nedge = \"hash\"\n",
        count.display()
    );
    for backend in ["memory", "rocksdb"] {
        let label = format!("windowed count ({backend})");
        bench(
            &label,
            &job("count", keyed, &count_op, "count", backend),
            keyed,
            dir.path(),
        );
    }
}
