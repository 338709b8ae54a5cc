//! Checkpoints of ~1 GB of RocksDB state: full against incremental.
//!
//! Fills a RocksDB backend with about 1 GB (1 KiB values that LZ4 cannot
//! shrink), then, round after round, updates 1% of the keys and takes a
//! checkpoint. Reports per mode the median of:
//! - the stall: the synchronous part, during which the task processes
//!   nothing (RocksDB flush + hard links of its files);
//! - the whole checkpoint, including the copy to checkpoint storage, which
//!   runs off the task's thread;
//! - the bytes copied.
//!
//! The baseline in the same run is a canonical full snapshot written on the
//! task's thread (what a RocksDB savepoint does), which stalls for its whole
//! write. Last, the memory backend with the same data: its stall is copying
//! the entries, and the file is written asynchronously.
//!
//! `cargo bench --bench checkpoint` (WEIR_BENCH_MB overrides the 1024 MB).

use std::path::Path;
use std::time::{Duration, Instant};

use weir_snapshot::keyed_file::{StateFileWriter, write_encoded, write_state};
use weir_snapshot::rocks_files::{SharedFiles, upload};
use weir_state::{MemoryBackend, RocksDbBackend, StateBackend};

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
    // The store's layout: key group, state, key length, key.
    let k = format!("key-{i:010}");
    let mut out = Vec::new();
    out.extend_from_slice(&((i % 128) as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(k.as_bytes());
    out
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Round {
    stall: Duration,
    total: Duration,
    copied: u64,
}

fn checkpoint(
    db: &mut RocksDbBackend,
    work: &Path,
    storage: &Path,
    id: u64,
    shared: &mut SharedFiles,
    incremental: bool,
) -> Round {
    let local = work.join(format!("local-{id}"));
    let snapshot_dir = storage.join(format!("chk-{id:08}"));
    std::fs::create_dir_all(&snapshot_dir).unwrap();
    let before = dir_size(storage);
    let started = Instant::now();
    db.native_checkpoint(&local).unwrap();
    let stall = started.elapsed();
    upload(&local, &snapshot_dir, "db", shared, incremental).unwrap();
    let total = started.elapsed();
    std::fs::remove_dir_all(&local).unwrap();
    Round {
        stall,
        total,
        copied: dir_size(storage) - before,
    }
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
        .prefix("weir-bench-checkpoint-")
        .tempdir_in(&base)
        .unwrap();
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

    let mut results = Vec::new();
    for (mode, incremental) in [("incremental", true), ("full", false)] {
        let storage = work.path().join(format!("storage-{mode}"));
        let mut shared = SharedFiles::new(format!("bench-{mode}"));
        // The first checkpoint copies everything in both modes.
        let first = checkpoint(&mut db, work.path(), &storage, 0, &mut shared, incremental);
        println!(
            "{mode}: first checkpoint {:.2} s (stall {} ms), {} MB copied",
            first.total.as_secs_f64(),
            first.stall.as_millis(),
            first.copied >> 20
        );
        let mut rounds = Vec::new();
        for round in 1..=ROUNDS as u64 {
            // 1% of the keys change between checkpoints.
            for j in 0..keys / 100 {
                let i = (j * 97 + round * 7919) % keys;
                value(i ^ (round << 40), &mut v);
                db.put(&key(i), &v).unwrap();
            }
            rounds.push(checkpoint(
                &mut db,
                work.path(),
                &storage,
                round,
                &mut shared,
                incremental,
            ));
        }
        let stall = median(rounds.iter().map(|r| r.stall).collect());
        let total = median(rounds.iter().map(|r| r.total).collect());
        let mut copied: Vec<u64> = rounds.iter().map(|r| r.copied).collect();
        copied.sort();
        println!(
            "{mode}: after 1% updates, median over {ROUNDS}: checkpoint {:.3} s, stall {} ms, {} MB copied",
            total.as_secs_f64(),
            stall.as_millis(),
            copied[copied.len() / 2] >> 20
        );
        results.push((mode, total, stall));
        std::fs::remove_dir_all(&storage).unwrap();
    }

    // Baseline: a canonical full snapshot, written on the task's thread.
    let path = work.path().join("canonical.state");
    let started = Instant::now();
    let (file, _) = write_state(&mut db, 1, &path, "canonical.state".into()).unwrap();
    let canonical = started.elapsed();
    println!(
        "canonical full snapshot (savepoint format): {:.2} s, all of it a stall, {} MB",
        canonical.as_secs_f64(),
        file.size >> 20
    );
    drop(db);

    let mut memory = MemoryBackend::new();
    // As the store declares it: one value state, kept out of the order index.
    memory.index_states(&[false]);
    for i in 0..keys {
        value(i, &mut v);
        memory.put(&key(i), &v).unwrap();
    }
    // As the runtime does it: encode into memory (the stall), write later.
    let started = Instant::now();
    let mut writer = StateFileWriter::in_memory(1);
    memory
        .scan_prefix(&[], &mut |k, v| writer.push(k, v).unwrap())
        .unwrap();
    let (encoded, _) = writer.into_encoded();
    let copy = started.elapsed();
    let path = work.path().join("memory.state");
    write_encoded(&encoded, &path, "memory.state".into()).unwrap();
    let memory_total = started.elapsed();
    println!(
        "memory backend full snapshot: {:.2} s, of which the stall (encoding into memory) {} ms",
        memory_total.as_secs_f64(),
        copy.as_millis()
    );
    let (_, inc_total, inc_stall) = results[0];
    let (_, full_total, full_stall) = results[1];
    println!(
        "ratio full/incremental: checkpoint {:.1}x, stall {:.1}x; canonical stall / incremental stall: {:.0}x",
        full_total.as_secs_f64() / inc_total.as_secs_f64(),
        full_stall.as_secs_f64() / inc_stall.as_secs_f64().max(1e-6),
        canonical.as_secs_f64() / inc_stall.as_secs_f64().max(1e-6)
    );
}
