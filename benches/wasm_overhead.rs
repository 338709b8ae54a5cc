//! Wasm against native, per record: the same map operator (benches/guests/
//! map-op: upper-case each value) called with the same encoded batches, as a
//! component through the host, and compiled natively through the SDK's
//! harness, in the same run. The DESIGN.md bar: Wasm costs at most 1.5x
//! native per record at the default batch size (1024).
//!
//! Run: cargo bench --bench wasm_overhead

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use weir_core::job::GuestLimits;
use weir_core::{Batch, BatchBuilder};
use weir_guest::testing::Harness;
use weir_wasm::{OperatorInfo, OperatorInstance, WasmEngine};

const ROUNDS: usize = 21;
const RECORDS_PER_ROUND: usize = 200_000;

fn batch(records: usize) -> Batch {
    let mut b = BatchBuilder::default();
    for i in 0..records {
        let value = format!(
            "{{\"seq\":{i},\"bidder\":\"person-{}\",\"price\":{},\"pad\":\"{}\"}}",
            i % 997,
            i * 7 % 10_000,
            "x".repeat(40)
        );
        b.push(
            Some(i as i64),
            format!("key-{}", i % 1000).as_bytes(),
            value.as_bytes(),
        );
    }
    b.take()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// ns per record of `a` and of `b`, over rounds of about RECORDS_PER_ROUND
/// records each, alternating so that drift in machine speed hits both alike.
fn measure_pair(batch_records: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let calls = (RECORDS_PER_ROUND / batch_records).max(1);
    for _ in 0..calls.min(50) {
        a(); // warm up
        b();
    }
    let mut time = |call: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..calls {
            call();
        }
        started.elapsed().as_nanos() as f64 / (calls * batch_records) as f64
    };
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        sa.push(time(&mut a));
        sb.push(time(&mut b));
    }
    (median(sa), median(sb))
}

fn main() {
    let wasm = common::guest("map_op");
    let engine = WasmEngine::new(None).expect("engine");
    let compiled = engine.load("map", &wasm).expect("map-op loads");
    let info = OperatorInfo {
        name: "map".into(),
        subtask_index: 0,
        parallelism: 1,
        config: vec![],
        limits: GuestLimits::default(),
    };
    let mut instance = OperatorInstance::open(&compiled, &info, None).expect("instance");
    let mut native = Harness::<map_op::UpperCase>::new().expect("native");

    println!("map operator, ns/record (median of {ROUNDS} rounds of ~{RECORDS_PER_ROUND} records)");
    println!(
        "{:>12} {:>12} {:>12} {:>8}",
        "batch", "native", "wasm", "ratio"
    );
    for batch_records in [1, 16, 256, 1024, 4096] {
        let input = batch(batch_records);
        // Both sides end with the host's validation of the returned batch.
        let wasm_out = instance.process(0, &input).expect("wasm");
        let native_out = Batch::from_bytes(
            native
                .process_batch_encoded(0, input.as_bytes())
                .expect("native"),
        )
        .unwrap();
        assert_eq!(wasm_out, native_out, "both builds compute the same thing");
        let (native_ns, wasm_ns) = measure_pair(
            batch_records,
            || {
                let out = native.process_batch_encoded(0, input.as_bytes()).expect("native");
                std::hint::black_box(Batch::from_bytes(out).expect("valid"));
            },
            || {
                std::hint::black_box(instance.process(0, &input).expect("wasm"));
            },
        );
        let marker = if batch_records == 1024 {
            "  <- default batch size"
        } else {
            ""
        };
        println!(
            "{batch_records:>12} {native_ns:>12.1} {wasm_ns:>12.1} {:>8.2}{marker}",
            wasm_ns / native_ns
        );
    }
}
