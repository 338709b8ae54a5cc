//! The report a finished job returns, summed from its subtasks' metrics
//! ([`crate::telemetry`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::telemetry::SubtaskMetrics;

/// The subtasks of one node (source, operator or sink) in an attempt, for
/// the run's report; they outlive the attempt's registration.
#[derive(Debug, Default)]
pub(crate) struct NodeCounters {
    subtasks: Mutex<Vec<Arc<SubtaskMetrics>>>,
}

impl NodeCounters {
    pub(crate) fn attach(&self, subtask: Arc<SubtaskMetrics>) {
        self.subtasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(subtask);
    }

    fn sum(&self, f: impl Fn(&SubtaskMetrics) -> u64) -> u64 {
        self.subtasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| f(s))
            .sum()
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
    /// Sources: records that could not be parsed and were skipped.
    pub records_skipped: u64,
    /// Sources: records that could not be parsed, sent to `<source>.dead-letter`.
    pub records_dead_lettered: u64,
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
            records_in: c.sum(SubtaskMetrics::records_in),
            records_out: c.sum(SubtaskMetrics::records_out),
            late_records: c.sum(SubtaskMetrics::late_records),
            records_skipped: c.sum(SubtaskMetrics::records_skipped),
            records_dead_lettered: c.sum(SubtaskMetrics::records_dead_lettered),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::NodeKind;

    #[test]
    fn a_node_report_sums_its_subtasks() {
        let node = NodeCounters::default();
        for n in [3, 4] {
            let m = Arc::new(SubtaskMetrics::new(NodeKind::Operator, Arc::default()));
            m.add_in(n, 0);
            m.add_out(n * 2, 0);
            m.add_late(1);
            node.attach(m);
        }
        let r = NodeReport::from_counters("op", "operator", 2, &node);
        assert_eq!((r.records_in, r.records_out, r.late_records), (7, 14, 2));
    }
}
