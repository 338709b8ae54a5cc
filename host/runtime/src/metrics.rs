//! Counters the tasks update and the report a finished job returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one node (source, operator or sink), shared by its subtasks.
#[derive(Debug, Default)]
pub(crate) struct NodeCounters {
    pub(crate) records_in: AtomicU64,
    pub(crate) records_out: AtomicU64,
    pub(crate) late_records: AtomicU64,
}

impl NodeCounters {
    pub(crate) fn add_in(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_out(&self, n: usize) {
        self.records_out.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_late(&self, n: usize) {
        self.late_records.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What one node did over a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub name: String,
    /// "source", "operator" or "sink".
    pub kind: &'static str,
    pub parallelism: u32,
    pub records_in: u64,
    pub records_out: u64,
    /// Records that arrived behind the watermark (operators fed by hash edges).
    pub late_records: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every source was exhausted and every sink committed.
    Finished,
    /// Stopped on request after this savepoint completed.
    Stopped { savepoint: std::path::PathBuf },
    /// Cancelled on request, without a savepoint.
    Cancelled,
}

/// What a job did (counts cover the last attempt only).
#[derive(Debug, Clone)]
pub struct JobReport {
    pub job: String,
    pub elapsed: Duration,
    pub nodes: Vec<NodeReport>,
    pub outcome: Outcome,
    /// How often the job restarted from a checkpoint after a failure.
    pub restarts: u32,
}

impl NodeReport {
    pub(crate) fn from_counters(
        name: &str,
        kind: &'static str,
        parallelism: u32,
        c: &NodeCounters,
    ) -> Self {
        NodeReport {
            name: name.to_string(),
            kind,
            parallelism,
            records_in: c.records_in.load(Ordering::Relaxed),
            records_out: c.records_out.load(Ordering::Relaxed),
            late_records: c.late_records.load(Ordering::Relaxed),
        }
    }
}
