//! Checkpoints of RocksDB state (~1 GB by default) to S3, incremental
//! against full, with the local directory as the baseline, in one run.
//!
//! Fills a RocksDB backend (1 KiB values LZ4 cannot shrink), then per mode
//! takes a first checkpoint and, round after round, updates 1% of the keys
//! and takes another. Reports per mode the first checkpoint and the median
//! over the rounds of the whole checkpoint (native checkpoint + copy or
//! upload; for S3 the SSTs are hashed and uploaded straight from the
//! native checkpoint, multipart when large) and of the bytes written.
//! S3 is a real SeaweedFS (`weed mini`, scripts/setup-test-systems.sh) on
//! loopback, so the numbers show weir's cost plus a local server's, not a
//! network's.
//!
//! `cargo bench --bench s3_checkpoint` (WEIR_BENCH_MB overrides the 1024 MB).

#[path = "../tests/s3/server.rs"]
mod server;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use weir_snapshot::remote::Remote;
use weir_snapshot::rocks_files::{SharedFiles, upload, upload_to_store};
use weir_snapshot::{Store, StoreOptions};
use weir_state::{RocksDbBackend, StateBackend};

const VALUE_BYTES: usize = 1024;
const ROUNDS: usize = 3;

fn value(seed: u64, out: &mut Vec<u8>) {
    out.clear();
    let mut x = seed | 1;
    while out.len() < VALUE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn key(i: u64) -> Vec<u8> {
    let k = format!("key-{i:010}");
    let mut out = Vec::new();
    out.extend_from_slice(&((i % 128) as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(k.as_bytes());
    out
}

fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

enum Target {
    Local(std::path::PathBuf),
    S3(Store),
}

/// One checkpoint; returns its duration and the bytes it wrote.
fn checkpoint(
    db: &mut RocksDbBackend,
    work: &Path,
    target: &Target,
    id: u64,
    shared: &mut SharedFiles,
    incremental: bool,
    seen: &mut HashSet<String>,
) -> (Duration, u64) {
    let local = work.join(format!("native-{id}"));
    let name = format!("chk-{id:08}");
    let started = Instant::now();
    db.native_checkpoint(&local).unwrap();
    let files = match target {
        Target::Local(root) => {
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            upload(&local, &dir, "db", shared, incremental).unwrap()
        }
        Target::S3(store) => {
            let remote = Remote {
                store: store.clone(),
                name,
            };
            upload_to_store(&local, &remote, "db", shared, incremental).unwrap()
        }
    };
    let took = started.elapsed();
    std::fs::remove_dir_all(&local).unwrap();
    let written = files
        .iter()
        .filter(|f| !f.file.path.starts_with("../shared/") || seen.insert(f.file.path.clone()))
        .map(|f| f.file.size)
        .sum();
    (took, written)
}

fn main() {
    let mb: u64 = std::env::var("WEIR_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let keys = mb * 1024 * 1024 / VALUE_BYTES as u64;
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&base).unwrap();
    let work = tempfile::Builder::new()
        .prefix("weir-bench-s3-")
        .tempdir_in(&base)
        .unwrap();
    let weed = server::Weed::start();
    let options = StoreOptions {
        endpoint: Some(weed.endpoint()),
        region: Some("us-east-1".into()),
        allow_http: Some(true),
        access_key_id: Some("bench".into()),
        secret_access_key: Some("bench".into()),
    };
    let mut db = RocksDbBackend::open(&work.path().join("db")).unwrap();
    let fill = Instant::now();
    let mut v = Vec::with_capacity(VALUE_BYTES);
    for i in 0..keys {
        value(i, &mut v);
        db.put(&key(i), &v).unwrap();
    }
    println!(
        "filled {keys} keys x {VALUE_BYTES} B ({mb} MB of values) in {:.1} s",
        fill.elapsed().as_secs_f64()
    );
    let mut round_no = 0u64;
    let mut summary = Vec::new();
    for (mode, s3, incremental) in [
        ("local incremental", false, true),
        ("s3 incremental", true, true),
        ("local full", false, false),
        ("s3 full", true, false),
    ] {
        let target = if s3 {
            let prefix = mode.replace(' ', "-");
            Target::S3(Store::open(&weed.url(&prefix), &options).unwrap())
        } else {
            Target::Local(work.path().join(mode.replace(' ', "-")))
        };
        let mut shared = SharedFiles::new(format!("bench-{}", mode.replace(' ', "-")));
        let mut seen = HashSet::new();
        let (first, first_bytes) = checkpoint(
            &mut db,
            work.path(),
            &target,
            0,
            &mut shared,
            incremental,
            &mut seen,
        );
        println!(
            "{mode}: first checkpoint {:.2} s, {} MB written",
            first.as_secs_f64(),
            first_bytes >> 20
        );
        let mut times = Vec::new();
        let mut bytes = Vec::new();
        for round in 1..=ROUNDS as u64 {
            round_no += 1;
            for j in 0..keys / 100 {
                let i = (j * 97 + round_no * 7919) % keys;
                value(i ^ (round_no << 40), &mut v);
                db.put(&key(i), &v).unwrap();
            }
            let (t, b) = checkpoint(
                &mut db,
                work.path(),
                &target,
                round,
                &mut shared,
                incremental,
                &mut seen,
            );
            times.push(t);
            bytes.push(b);
        }
        let (t, b) = (median(times), median(bytes));
        println!(
            "{mode}: after 1% updates, median over {ROUNDS}: {:.2} s, {} MB written",
            t.as_secs_f64(),
            b >> 20
        );
        summary.push((mode, first, t, b));
        if let Target::Local(dir) = &target {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
    let time_of = |m: &str| summary.iter().find(|s| s.0 == m).unwrap().2.as_secs_f64();
    println!(
        "ratios (median checkpoint after 1% updates): s3/local incremental {:.2}x, s3/local full {:.2}x, s3 full/incremental {:.2}x",
        time_of("s3 incremental") / time_of("local incremental"),
        time_of("s3 full") / time_of("local full"),
        time_of("s3 full") / time_of("s3 incremental"),
    );
}
