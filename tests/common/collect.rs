//! The window-collect job the checkpoint and cluster tests share, and how
//! to check its output.

use std::path::{Path, PathBuf};

use super::guest;

/// The window-collect job: a generator (sequence numbers as values), keyed
/// 1-second windows collecting them, an exactly-once file sink to `out`.
/// Its output shows every input record once, so loss and duplication can
/// be counted.
pub struct Job {
    pub records: u64,
    pub parallelism: u32,
    pub backend: &'static str,
    pub rate: Option<u64>,
    pub wasm: PathBuf,
    pub extra: &'static str,
    pub checkpoint_interval_ms: u64,
    /// Add `[restart]` with this many attempts.
    pub restarts: Option<u32>,
}

impl Job {
    pub fn new(records: u64) -> Job {
        Job {
            records,
            parallelism: 1,
            backend: "memory",
            rate: None,
            wasm: guest("window_collect"),
            extra: "",
            checkpoint_interval_ms: 100,
            restarts: None,
        }
    }

    pub fn text(&self) -> String {
        let rate = self
            .rate
            .map(|r| format!("records_per_second = {r}"))
            .unwrap_or_default();
        let restart = self
            .restarts
            .map(|n| {
                format!("[restart]\nstrategy = \"fixed-delay\"\nattempts = {n}\ndelay_ms = 100\n")
            })
            .unwrap_or_default();
        format!(
            r#"
[job]
name = "collect"
parallelism = {p}
state_backend = "{backend}"

[checkpoint]
interval_ms = {interval}
dir = "chk"
retain = 2

{restart}
[[source]]
name = "gen"
kind = "generator"
records = {records}
keys = 20
interval_ms = 10
disorder_ms = 300
watermark_delay_ms = 300
{rate}

[[operator]]
name = "collect"
wasm = "{wasm}"
input = "gen"
edge = "hash"
config = {{ window_ms = 1000 {extra} }}

[[sink]]
name = "out"
kind = "file"
exactly_once = true
path = "out"
input = "collect"
"#,
            p = self.parallelism,
            backend = self.backend,
            records = self.records,
            wasm = self.wasm.display(),
            extra = self.extra,
            interval = self.checkpoint_interval_ms,
        )
    }

    /// Writes the job file into `dir` (the checkpoint and output directories
    /// are relative to it).
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("job.toml");
        std::fs::write(&path, self.text()).unwrap();
        path
    }
}

pub fn sorted(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.sort();
    lines
}

/// Counts every sequence number in the output; each input record carries one.
pub fn seq_counts(text: &str, records: u64) -> Vec<u32> {
    let mut counts = vec![0u32; records as usize];
    for line in text.lines() {
        let seqs = line.rsplit(": ").next().unwrap();
        for seq in seqs.split(',') {
            let seq: usize = seq.parse().unwrap_or_else(|_| panic!("bad line {line:?}"));
            counts[seq] += 1;
        }
    }
    counts
}

pub fn assert_exactly_once(text: &str, records: u64) {
    let counts = seq_counts(text, records);
    let lost = counts.iter().filter(|&&c| c == 0).count();
    let duplicated = counts.iter().filter(|&&c| c > 1).count();
    assert_eq!((lost, duplicated), (0, 0), "records lost, duplicated");
}
