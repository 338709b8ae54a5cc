//! Two builds of one stateless operator, A and B, on the same input, in one
//! process: time per record of each, measured in alternating rounds, and
//! the median over rounds of B's time / A's. A whole `weir run` moves by
//! ±10% from run to run on a 2-core machine (its source thread, the sink
//! and everything else share the cores); timing only the operator's calls,
//! interleaved, sees changes of a few percent.
//!
//! The input is a JSON-lines file; each line is a record's value (no key),
//! its event time taken from `timestamp_field` if the line has one. Both
//! builds must produce the same output, which is checked first.
//!
//! Run:
//!   WEIR_AB_A=old.wasm WEIR_AB_B=new.wasm WEIR_AB_INPUT=events.jsonl \
//!     cargo bench --bench guest_ab
//! Optional: WEIR_AB_LINES (records read, default 200,000),
//! WEIR_AB_ROUNDS (default 21), WEIR_AB_TIMESTAMP_FIELD (default `ts`).

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use weir_core::batch::{Batch, BatchBuilder};
use weir_core::job::GuestLimits;
use weir_wasm::{OperatorInfo, OperatorInstance, WasmEngine};

const BATCH_RECORDS: usize = 1024;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> PathBuf {
    env(name).map(PathBuf::from).unwrap_or_else(|| {
        eprintln!("guest_ab: set {name} (see benches/guest_ab.rs)");
        std::process::exit(2)
    })
}

/// A count of at least 1 (a median of nothing has no value).
fn count(name: &str, default: usize) -> usize {
    env(name).map_or(default, |v| match v.parse() {
        Ok(n) if n >= 1 => n,
        _ => {
            eprintln!("guest_ab: {name}={v} is not a whole number of at least 1");
            std::process::exit(2)
        }
    })
}

fn batches(path: &PathBuf, lines: usize, timestamp_field: &str) -> Vec<Batch> {
    let file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let fields = weir_connectors::json_fields::JsonFields::new(Some(timestamp_field.into()), None);
    let mut out = Vec::new();
    let mut builder = BatchBuilder::default();
    for line in std::io::BufReader::new(file).lines().take(lines) {
        let line = line.expect("read input");
        let timestamp = fields.extract(&line).ok().and_then(|kt| kt.timestamp);
        builder.push(timestamp, b"", line.as_bytes());
        if builder.len() == BATCH_RECORDS {
            out.push(builder.take());
        }
    }
    if builder.len() > 0 {
        out.push(builder.take());
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn main() {
    let (a, b, input) = (
        required("WEIR_AB_A"),
        required("WEIR_AB_B"),
        required("WEIR_AB_INPUT"),
    );
    let lines = count("WEIR_AB_LINES", 200_000);
    let rounds = count("WEIR_AB_ROUNDS", 21);
    let timestamp_field = env("WEIR_AB_TIMESTAMP_FIELD").unwrap_or_else(|| "ts".into());
    let input = batches(&input, lines, &timestamp_field);
    let records: usize = input.iter().map(Batch::len).sum();
    if records == 0 {
        eprintln!("guest_ab: WEIR_AB_INPUT has no lines");
        std::process::exit(2)
    }

    let engine = WasmEngine::new(None).expect("engine");
    let info = OperatorInfo {
        name: "ab".into(),
        subtask_index: 0,
        parallelism: 1,
        config: vec![],
        limits: GuestLimits::default(),
    };
    let open = |path: &PathBuf| {
        let compiled = engine
            .load("ab", path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        OperatorInstance::open(&compiled, &info, None)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let mut builds = [open(&a), open(&b)];
    let run = |instance: &mut OperatorInstance| -> usize {
        input
            .iter()
            .map(|batch| instance.process(0, batch).expect("process").len())
            .sum()
    };
    for batch in &input {
        let [x, y] = &mut builds;
        assert_eq!(
            x.process(0, batch).expect("A processes"),
            y.process(0, batch).expect("B processes"),
            "A and B must compute the same output"
        );
    }
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (instance, times) in builds.iter_mut().zip(&mut times) {
            let started = Instant::now();
            std::hint::black_box(run(instance));
            times.push(started.elapsed().as_nanos() as f64 / records as f64);
        }
    }
    let ratios: Vec<f64> = times[1].iter().zip(&times[0]).map(|(b, a)| b / a).collect();
    println!(
        "{records} records, {rounds} alternating rounds, batches of {BATCH_RECORDS}\n\
         A {:.1} ns/record (median), B {:.1} ns/record, B/A {:.3} (median of per-round ratios)",
        median(times[0].clone()),
        median(times[1].clone()),
        median(ratios)
    );
}
