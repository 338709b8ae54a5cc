//! A whole job on a cluster against the same job embedded: generator (2
//! splits) -> hash -> Wasm map (p=2) -> discard, 100-byte records. On the
//! cluster the two slots are on two worker processes, so half of the
//! records cross between them over QUIC (with TLS), through the same
//! bridges every cluster job uses. Times run from submission to the end
//! (upload, deployment, start-up included), so records/s is a floor.
//!
//! Run: `cargo bench --bench cluster_pipeline` (after `bash scripts/build-guests.sh`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{guest, run_with_deadline, stderr, weir};

const RECORDS: u64 = 20_000_000;
const ROUNDS: usize = 3;
const LIMIT: Duration = Duration::from_secs(600);

fn job(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
[job]
name = "pipe"
parallelism = 2

[[source]]
name = "gen"
kind = "generator"
records = {RECORDS}
keys = 1000
value_bytes = 90
parallelism = 2

[[operator]]
name = "map"
wasm = "{wasm}"
input = "gen"
edge = "hash"

[[sink]]
name = "out"
kind = "discard"
input = "map"
"#,
        wasm = guest("map_op").display()
    );
    let path = dir.join("pipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn timed(cmd: std::process::Command) -> f64 {
    let started = Instant::now();
    let out = run_with_deadline(cmd, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    RECORDS as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let file = job(dir.path());
    let cluster = Cluster::start(2, 1, None);
    let (mut embedded, mut clustered) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let mut run = weir();
        run.arg("run").arg(&file);
        embedded.push(timed(run));
        let mut submit = cluster.cli(&["submit", "--wait"]);
        submit.arg(&file);
        clustered.push(timed(submit));
        println!(
            "round {round}: embedded {:.2} M rec/s, cluster of 2 workers {:.2} M rec/s",
            embedded[round - 1] / 1e6,
            clustered[round - 1] / 1e6
        );
    }
    let (e, c) = (median(embedded), median(clustered));
    println!(
        "generator -> hash -> Wasm map -> discard, {RECORDS} records of 100 bytes, p=2, median of {ROUNDS}: \
         embedded {:.2} M rec/s, cluster (2 worker processes, half the records over QUIC) {:.2} M rec/s; ratio {:.2}",
        e / 1e6,
        c / 1e6,
        c / e
    );
}
