//! Metrics of the jobs this process runs, for Prometheus (`/metrics`) and
//! for the dashboard and terminal (`/jobs/{job}/metrics`, [`JobMetrics`]).
//!
//! Each subtask owns plain atomics ([`subtask`]) that its thread updates
//! once per batch or message; an attempt registers them when it builds its
//! tasks and unregisters them when it ends ([`registry`]), so counters are
//! cumulative per attempt (a restart resets them, which Prometheus'
//! `rate()` treats as a counter reset). A job master registers its job's
//! own figures (checkpoints, restarts, uptime, versions). Rendering reads
//! the atomics; nothing on a hot path locks, allocates or looks up a map.

mod prometheus;
pub(crate) mod registry;
pub(crate) mod subtask;

use serde::{Deserialize, Serialize};

pub use prometheus::{CONTENT_TYPE, metric_names, render_prometheus};
pub(crate) use registry::{AttemptRegistration, JobRegistration};
pub(crate) use subtask::{NodeKind, SubtaskMetrics, TaskClock, TaskTimes};

/// One sample of a job's subtasks on this process (or, after [`merge`],
/// on every worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMetrics {
    pub job: String,
    /// When the sample was taken.
    pub unix_ms: u64,
    pub nodes: Vec<NodeMetrics>,
}

/// A source, operator or sink and the subtasks of it sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMetrics {
    pub name: String,
    /// "source", "operator" or "sink".
    pub kind: String,
    pub subtasks: Vec<SubtaskSample>,
}

/// One subtask. Counters are cumulative since its attempt started; a
/// client computes rates from two samples. `None` (JSON null): not known
/// yet, or not applicable to this kind of node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubtaskSample {
    pub subtask: u32,
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub late_records: u64,
    /// Sources: records that could not be parsed, skipped or sent to
    /// `<source>.dead-letter` (`on_parse_error`).
    #[serde(default)]
    pub records_skipped: u64,
    #[serde(default)]
    pub records_dead_lettered: u64,
    pub busy_ms: u64,
    pub idle_ms: u64,
    pub backpressured_ms: u64,
    /// Input watermark in ms (a source's: the watermark it emitted).
    pub watermark: Option<i64>,
    /// Entries of the keyed state (RocksDB: its estimate).
    pub state_keys: Option<u64>,
    pub state_bytes: Option<u64>,
    /// Pending event- and processing-time timers.
    pub timers: Option<u64>,
    pub guest_memory_bytes: Option<u64>,
    /// Upper bound of the latency bucket of the 99th percentile guest call.
    pub call_p99_us: Option<u64>,
    /// How long the last checkpoint barrier took to align over the
    /// subtask's inputs (first to last arrival); sources: null.
    #[serde(default)]
    pub alignment_ms: Option<u64>,
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn sample(subtask: u32, m: &SubtaskMetrics) -> SubtaskSample {
    let v = m.values();
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    SubtaskSample {
        subtask,
        records_in: v.records_in,
        records_out: v.records_out,
        bytes_in: v.bytes_in,
        bytes_out: v.bytes_out,
        late_records: v.late_records,
        records_skipped: v.records_skipped,
        records_dead_lettered: v.records_dead_lettered,
        busy_ms: ms(v.busy),
        idle_ms: ms(v.idle),
        backpressured_ms: ms(v.backpressured),
        watermark: v.watermark,
        state_keys: v.state_keys,
        state_bytes: v.state_bytes,
        timers: v.timers,
        guest_memory_bytes: v.guest_memory_bytes,
        call_p99_us: m.calls.p99_us(),
        alignment_ms: v.alignment.map(ms),
    }
}

/// The subtasks of `job` that run in this process, or `None` if none does
/// and no job master of it runs here.
pub fn job_metrics(job: &str) -> Option<JobMetrics> {
    let registry = registry::lock();
    let mut found = registry.job_names().iter().any(|j| j == job);
    let mut nodes: Vec<NodeMetrics> = Vec::new();
    for e in registry.subtasks.iter().filter(|e| &*e.job == job) {
        found = true;
        let s = sample(e.subtask, &e.metrics);
        match nodes.iter_mut().find(|n| n.name == *e.node) {
            Some(node) => node.subtasks.push(s),
            None => nodes.push(NodeMetrics {
                name: e.node.to_string(),
                kind: e.metrics.kind.as_str().to_string(),
                subtasks: vec![s],
            }),
        }
    }
    drop(registry);
    for node in &mut nodes {
        node.subtasks.sort_by_key(|s| s.subtask);
    }
    found.then(|| JobMetrics {
        job: job.to_string(),
        unix_ms: now_unix_ms(),
        nodes,
    })
}

/// Every job of this process ([`job_metrics`] of each).
pub fn all_job_metrics() -> Vec<JobMetrics> {
    let names = registry::lock().job_names();
    names.iter().filter_map(|j| job_metrics(j)).collect()
}

/// Combines samples of one job from several processes: each node's
/// subtasks from all of them, in subtask order; nodes in the order they
/// first appear; the newest sample time.
pub fn merge(samples: Vec<JobMetrics>) -> JobMetrics {
    let mut merged = JobMetrics {
        job: samples.first().map(|s| s.job.clone()).unwrap_or_default(),
        unix_ms: samples.iter().map(|s| s.unix_ms).max().unwrap_or(0),
        nodes: Vec::new(),
    };
    for node in samples.into_iter().flat_map(|s| s.nodes) {
        match merged.nodes.iter_mut().find(|n| n.name == node.name) {
            Some(into) => into.subtasks.extend(node.subtasks),
            None => merged.nodes.push(node),
        }
    }
    for node in &mut merged.nodes {
        node.subtasks.sort_by_key(|s| s.subtask);
    }
    merged
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn job_metrics_json_has_the_agreed_shape_and_round_trips() {
        let attempt = AttemptRegistration::new("json-shape");
        let times = Arc::new(TaskTimes::default());
        let op = attempt.add("count", NodeKind::Operator, 1, times.clone());
        attempt.add("count", NodeKind::Operator, 0, times);
        op.add_in(10, 100);
        op.set_watermark(42);
        let m = job_metrics("json-shape").expect("registered");
        let json = serde_json::to_value(&m).unwrap();
        let node = &json["nodes"][0];
        assert_eq!(node["name"], "count");
        assert_eq!(node["kind"], "operator");
        let sub = &node["subtasks"][1];
        assert_eq!(sub["subtask"], 1);
        assert_eq!(sub["records_in"], 10);
        assert_eq!(sub["bytes_in"], 100);
        assert_eq!(sub["watermark"], 42);
        assert!(sub["state_keys"].is_null());
        assert!(sub["call_p99_us"].is_null());
        let keys: Vec<&str> = sub
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        for k in [
            "subtask",
            "records_in",
            "records_out",
            "bytes_in",
            "bytes_out",
            "late_records",
            "records_skipped",
            "records_dead_lettered",
            "busy_ms",
            "idle_ms",
            "backpressured_ms",
            "watermark",
            "state_keys",
            "state_bytes",
            "timers",
            "guest_memory_bytes",
            "call_p99_us",
            "alignment_ms",
        ] {
            assert!(keys.contains(&k), "missing {k}");
        }
        assert_eq!(keys.len(), 18);
        assert!(json["unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
        let back: JobMetrics = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        assert!(job_metrics("no-such-job").is_none());
    }

    #[test]
    fn an_ended_attempt_unregisters_its_subtasks() {
        let attempt = AttemptRegistration::new("unregisters");
        let m = attempt.add("src", NodeKind::Source, 0, Arc::default());
        m.add_out(5, 50);
        assert_eq!(
            job_metrics("unregisters").unwrap().nodes[0].subtasks[0].records_out,
            5
        );
        let next = AttemptRegistration::new("unregisters");
        next.add("src", NodeKind::Source, 0, Arc::default());
        drop(attempt);
        let after = job_metrics("unregisters").unwrap();
        assert_eq!(after.nodes[0].subtasks.len(), 1, "only the new attempt's");
        assert_eq!(after.nodes[0].subtasks[0].records_out, 0);
        drop(next);
        assert!(job_metrics("unregisters").is_none());
        assert!(all_job_metrics().iter().all(|j| j.job != "unregisters"));
    }

    /// A throttled generator feeding a sink, run by `run_job`: while it
    /// runs its subtasks' counters move; once it ended they are gone.
    #[test]
    fn a_running_job_publishes_moving_counters_and_unregisters_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(
            &path,
            r#"
[job]
name = "telemetry-run"

[[source]]
name = "events"
kind = "generator"
records = 3000
keys = 10
interval_ms = 1
value_bytes = 10
records_per_second = 5000
parallelism = 2

[[sink]]
name = "out"
kind = "discard"
input = "events"
"#,
        )
        .unwrap();
        let spec = weir_core::job::load(&path).expect("job parses");
        let watcher = std::thread::spawn(|| {
            let started = std::time::Instant::now();
            while started.elapsed() < std::time::Duration::from_secs(20) {
                if let Some(m) = job_metrics("telemetry-run")
                    && let Some(sink) = m.nodes.iter().find(|n| n.name == "out")
                    && sink.subtasks[0].records_in > 0
                {
                    return Some(m);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            None
        });
        let options = crate::RunOptions {
            data_roots: None,
            ..crate::RunOptions::default()
        };
        let report = crate::run_job(&spec, &options).expect("runs");
        let seen = watcher
            .join()
            .unwrap()
            .expect("counters moved while it ran");
        let source = seen.nodes.iter().find(|n| n.name == "events").unwrap();
        assert_eq!(source.kind, "source");
        assert_eq!(source.subtasks.len(), 2);
        let sink = &seen
            .nodes
            .iter()
            .find(|n| n.name == "out")
            .unwrap()
            .subtasks[0];
        assert!(sink.bytes_in > sink.records_in, "bytes counted too");
        assert!(source.subtasks.iter().any(|s| s.watermark.is_some()));
        assert_eq!(
            report.nodes[0].records_out, 3000,
            "the report sums subtasks"
        );
        assert_eq!(report.nodes[1].records_in, 3000);
        assert!(
            job_metrics("telemetry-run").is_none(),
            "the ended attempt unregistered"
        );
    }

    #[test]
    fn merge_concatenates_subtasks_per_node() {
        let sub = |subtask| SubtaskSample {
            subtask,
            ..SubtaskSample::default()
        };
        let node = |name: &str, subtasks| NodeMetrics {
            name: name.into(),
            kind: "operator".into(),
            subtasks,
        };
        let a = JobMetrics {
            job: "j".into(),
            unix_ms: 5,
            nodes: vec![node("map", vec![sub(1)]), node("count", vec![sub(0)])],
        };
        let b = JobMetrics {
            job: "j".into(),
            unix_ms: 7,
            nodes: vec![node("map", vec![sub(0)]), node("sink", vec![sub(0)])],
        };
        let m = merge(vec![a, b]);
        assert_eq!(m.unix_ms, 7);
        let names: Vec<&str> = m.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["map", "count", "sink"]);
        let map: Vec<u32> = m.nodes[0].subtasks.iter().map(|s| s.subtask).collect();
        assert_eq!(map, [0, 1]);
    }
}
