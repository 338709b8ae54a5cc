//! A human-readable summary of a snapshot: `weir savepoint inspect`.

use std::fmt::Write;

use crate::metadata::StateHandle;
use crate::storage::Snapshot;

pub fn describe(snapshot: &Snapshot) -> String {
    let m = &snapshot.metadata;
    let mut out = String::new();
    let kind = if m.savepoint {
        "savepoint"
    } else {
        "checkpoint"
    };
    let _ = writeln!(
        out,
        "{kind} {} of job `{}` (format {}, taken with {} state, max parallelism {})",
        m.id, m.job, m.format_version, m.state_backend, m.max_parallelism
    );
    let _ = writeln!(out, "  at {}", snapshot.dir.display());
    for s in &m.sources {
        let _ = writeln!(
            out,
            "  source {} split {}/{}: position {}",
            s.source, s.split, s.splits, s.position
        );
    }
    for op in &m.operators {
        let files: u64 = op
            .subtasks
            .iter()
            .map(|s| {
                let state = match &s.state {
                    StateHandle::None => 0,
                    StateHandle::Canonical { file } => file.size,
                    StateHandle::Rocksdb { files } => files.iter().map(|f| f.file.size).sum(),
                };
                state + s.timers.as_ref().map_or(0, |t| t.size)
            })
            .sum();
        let _ = writeln!(
            out,
            "  operator {} (parallelism {}): {} in files",
            op.name,
            op.parallelism,
            human_bytes(files)
        );
        for (i, state) in op.states.iter().enumerate() {
            let native = op
                .subtasks
                .iter()
                .any(|s| matches!(s.state, StateHandle::Rocksdb { .. }));
            if native {
                let _ = writeln!(
                    out,
                    "    state {} ({}): native RocksDB files",
                    state.name, state.kind
                );
                continue;
            }
            let (keys, entries, bytes) = op
                .subtasks
                .iter()
                .filter_map(|s| s.stats.get(i))
                .fold((0, 0, 0), |(k, e, b), s| {
                    (k + s.keys, e + s.entries, b + s.bytes)
                });
            let ttl = state
                .ttl_ms
                .map(|t| format!(", ttl {t} ms"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    state {} ({}{ttl}): {keys} keys, {entries} entries, {}",
                state.name,
                state.kind,
                human_bytes(bytes)
            );
        }
    }
    for s in &m.sinks {
        let _ = writeln!(out, "  sink {}: {}", s.sink, s.state);
    }
    out
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
