//! Wasm against native, per record: the same map operator (benches/guests/
//! map-op: upper-case each value) called with the same encoded batches, as a
//! component through the host, and compiled natively through the SDK's
//! harness, in the same run. The DESIGN.md bar: Wasm costs at most 1.5x
//! native per record at the default batch size (1024).
//!
//! A further column runs the same component on an engine without epoch
//! checks (`WasmEngine::without_call_timeouts`): what is left of the gap
//! when the guest cannot be stopped mid-call, i.e. what weir's call
//! timeout costs. Ratios are medians of per-round ratios (each round times
//! every build back to back), steadier on a busy machine than a ratio of
//! medians.
//!
//! A last column runs the same logic on typed records (`list<rec>`,
//! benches/guests/typed-map) instead of weir's one-`list<u8>` batch, the
//! comparison DESIGN.md §3 asks for; the host side gets typed records ready
//! made, so only the boundary crossing and the guest's work are timed.
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

/// ns per record of each call in each round (`[call][round]`), over rounds
/// of about RECORDS_PER_ROUND records each, interleaved so that drift in
/// machine speed hits all alike.
fn measure(batch_records: usize, calls: &mut [&mut dyn FnMut()]) -> Vec<Vec<f64>> {
    let repeats = (RECORDS_PER_ROUND / batch_records).max(1);
    for call in calls.iter_mut() {
        for _ in 0..repeats.min(50) {
            call(); // warm up
        }
    }
    let mut samples = vec![Vec::new(); calls.len()];
    for _ in 0..ROUNDS {
        for (call, samples) in calls.iter_mut().zip(&mut samples) {
            let started = Instant::now();
            for _ in 0..repeats {
                call();
            }
            samples.push(started.elapsed().as_nanos() as f64 / (repeats * batch_records) as f64);
        }
    }
    samples
}

/// The median over rounds of `a[round] / b[round]`.
fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(a, b)| a / b).collect())
}

mod typed {
    wasmtime::component::bindgen!({ path: "benches/wit/typed.wit", world: "typed-map" });
}

struct TypedHost {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for TypedHost {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The typed-records guest, on an engine configured like weir's.
fn typed_guest() -> (wasmtime::Store<TypedHost>, typed::TypedMap) {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    let engine = wasmtime::Engine::new(&config).expect("engine");
    let component = wasmtime::component::Component::from_file(&engine, common::guest("typed_map"))
        .expect("typed-map");
    let mut linker = wasmtime::component::Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
    let host = TypedHost {
        wasi: wasmtime_wasi::WasiCtx::builder().build(),
        table: Default::default(),
    };
    let mut store = wasmtime::Store::new(&engine, host);
    store.set_epoch_deadline(u64::MAX);
    let bindings =
        typed::TypedMap::instantiate(&mut store, &component, &linker).expect("instantiate");
    (store, bindings)
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
    let unchecked_engine = WasmEngine::without_call_timeouts().expect("engine");
    let unchecked = unchecked_engine.load("map", &wasm).expect("map-op loads");
    let mut unchecked = OperatorInstance::open(&unchecked, &info, None).expect("instance");

    let (mut typed_store, typed_map) = typed_guest();

    println!("map operator, ns/record (median of {ROUNDS} rounds of ~{RECORDS_PER_ROUND} records)");
    println!(
        "{:>8} {:>9} {:>9} {:>12} {:>11} {:>12} {:>11} {:>12}",
        "batch",
        "native",
        "wasm",
        "wasm/native",
        "no epoch",
        "/native",
        "wasm typed",
        "typed/bytes"
    );
    for batch_records in [1, 16, 256, 1024, 4096] {
        let input = batch(batch_records);
        let records: Vec<typed::exports::weir::typed_bench::typed_hooks::Rec> = input
            .iter()
            .map(|r| typed::exports::weir::typed_bench::typed_hooks::Rec {
                timestamp: r.timestamp,
                key: r.key.to_vec(),
                value: r.value.to_vec(),
            })
            .collect();
        // Both sides end with the host's validation of the returned batch.
        let wasm_out = instance.process(0, &input).expect("wasm");
        let native_out = Batch::from_bytes(
            native
                .process_batch_encoded(0, input.as_bytes())
                .expect("native"),
        )
        .unwrap();
        assert_eq!(wasm_out, native_out, "both builds compute the same thing");
        assert_eq!(unchecked.process(0, &input).expect("wasm"), wasm_out);
        let hooks = typed_map.weir_typed_bench_typed_hooks();
        let typed_out = hooks
            .call_process(&mut typed_store, &records)
            .expect("typed");
        assert!(
            typed_out
                .iter()
                .zip(&wasm_out)
                .all(|(t, w)| t.value == w.value),
            "typed computes the same"
        );
        let times = measure(
            batch_records,
            &mut [
                &mut || {
                    let out = native
                        .process_batch_encoded(0, input.as_bytes())
                        .expect("native");
                    std::hint::black_box(Batch::from_bytes(out).expect("valid"));
                },
                &mut || {
                    std::hint::black_box(instance.process(0, &input).expect("wasm"));
                },
                &mut || {
                    std::hint::black_box(unchecked.process(0, &input).expect("wasm"));
                },
                &mut || {
                    std::hint::black_box(
                        hooks
                            .call_process(&mut typed_store, &records)
                            .expect("typed"),
                    );
                },
            ],
        );
        let [native, wasm, no_epoch, typed] = &times[..] else {
            unreachable!("four calls measured")
        };
        let (native_ns, wasm_ns, no_epoch_ns, typed_ns) = (
            median(native.clone()),
            median(wasm.clone()),
            median(no_epoch.clone()),
            median(typed.clone()),
        );
        let marker = if batch_records == 1024 {
            "  <- default batch size"
        } else {
            ""
        };
        println!(
            "{batch_records:>8} {native_ns:>9.1} {wasm_ns:>9.1} {:>12.2} {no_epoch_ns:>11.1} {:>12.2} {typed_ns:>11.1} {:>12.2}{marker}",
            paired_ratio(wasm, native),
            paired_ratio(no_epoch, native),
            paired_ratio(typed, wasm)
        );
    }
}
