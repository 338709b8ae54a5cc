//! Renders the registry in the Prometheus text format (version 0.0.4,
//! which `promtool check metrics` and every Prometheus read).
//!
//! `prometheus-client` encodes the metrics (a [`Collector`] reads the
//! atomics at scrape time); it writes OpenMetrics, whose counter and info
//! families are named without their `_total`/`_info` suffix and which ends
//! with `# EOF`. [`to_prometheus_text`] renames those families to their
//! samples' names (info becomes a gauge of 1) and drops the EOF marker.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
    MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::registry::{self, Entry, JobStats};
use super::subtask::{NodeKind, SubtaskValues};

/// The `Content-Type` of [`render_prometheus`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric of this process in the Prometheus text format.
pub fn render_prometheus() -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Weir));
    let mut open_metrics = String::new();
    // Writing into a String cannot fail; a collector error would be a bug.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut open_metrics, &registry) {
        tracing::warn!("cannot render metrics: {e}");
    }
    to_prometheus_text(&open_metrics)
}

/// OpenMetrics text as written by `prometheus-client` → Prometheus text.
fn to_prometheus_text(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut suffix: &str = "";
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // HELP precedes TYPE: look ahead is not possible line by line,
            // so the suffix is decided from the family's name table below.
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            suffix = family_suffix(name);
            let _ = writeln!(out, "# HELP {name}{suffix} {help}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = if kind == "info" { "gauge" } else { kind };
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The suffix OpenMetrics adds to a family's samples.
fn family_suffix(name: &str) -> &'static str {
    match FAMILIES.iter().find(|f| f.name == name).map(|f| f.kind) {
        Some(Kind::Counter) => "_total",
        Some(Kind::Info) => "_info",
        _ => "",
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Info,
}

/// A metric family: the name OpenMetrics gives it (its samples add
/// `_total` for counters and `_info` for info), help, type.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
}

const fn family(name: &'static str, help: &'static str, kind: Kind) -> Family {
    Family { name, help, kind }
}

const RECORDS_IN: Family = family(
    "weir_records_in",
    "Records a subtask received.",
    Kind::Counter,
);
const RECORDS_OUT: Family = family(
    "weir_records_out",
    "Records a subtask emitted.",
    Kind::Counter,
);
const BYTES_IN: Family = family(
    "weir_bytes_in",
    "Encoded bytes of the records a subtask received.",
    Kind::Counter,
);
const BYTES_OUT: Family = family(
    "weir_bytes_out",
    "Encoded bytes of the records a subtask emitted.",
    Kind::Counter,
);
const LATE: Family = family(
    "weir_late_records",
    "Records that arrived at or behind their channel's watermark.",
    Kind::Counter,
);
const SKIPPED: Family = family(
    "weir_source_records_skipped",
    "Records a source could not parse and dropped (on_parse_error = \"skip\").",
    Kind::Counter,
);
const DEAD_LETTERED: Family = family(
    "weir_source_records_dead_lettered",
    "Records a source could not parse and sent to <source>.dead-letter.",
    Kind::Counter,
);
const BUSY: Family = family(
    "weir_busy_seconds",
    "Time the subtask's thread worked (guest calls and host work), not waiting or blocked.",
    Kind::Counter,
);
const IDLE: Family = family(
    "weir_idle_seconds",
    "Time the subtask's thread waited for input.",
    Kind::Counter,
);
const BACKPRESSURED: Family = family(
    "weir_backpressured_seconds",
    "Time the subtask's thread was blocked sending into a full channel.",
    Kind::Counter,
);
const WATERMARK: Family = family(
    "weir_input_watermark_seconds",
    "The subtask's input watermark (a source's: the one it emitted), seconds since the epoch.",
    Kind::Gauge,
);
const LAG: Family = family(
    "weir_event_time_lag_seconds",
    "Wall clock minus the input watermark at the time of the scrape.",
    Kind::Gauge,
);
const STATE_KEYS: Family = family(
    "weir_state_keys",
    "Entries of the subtask's keyed state (RocksDB: its estimate).",
    Kind::Gauge,
);
const STATE_BYTES: Family = family(
    "weir_state_bytes",
    "Bytes of the subtask's keyed state (memory: charged heap bytes; RocksDB: estimated live data).",
    Kind::Gauge,
);
const TIMERS: Family = family(
    "weir_timers_pending",
    "Event- and processing-time timers the subtask has pending.",
    Kind::Gauge,
);
const GUEST_MEMORY: Family = family(
    "weir_guest_memory_bytes",
    "Bytes of the Wasm instance's memories and tables.",
    Kind::Gauge,
);
const ALIGNMENT: Family = family(
    "weir_checkpoint_alignment_seconds",
    "How long the subtask's last checkpoint barrier took to align over its inputs.",
    Kind::Gauge,
);
const CALLS: Family = family(
    "weir_guest_call_duration_seconds",
    "Duration of each call into the guest (process, on-timers).",
    Kind::Histogram,
);
const CHECKPOINT_DURATION: Family = family(
    "weir_checkpoint_duration_seconds",
    "Duration of the last completed checkpoint or savepoint, trigger to metadata.",
    Kind::Gauge,
);
const CHECKPOINT_SIZE: Family = family(
    "weir_checkpoint_size_bytes",
    "Bytes of the files the last completed checkpoint or savepoint lists.",
    Kind::Gauge,
);
const LAST_CHECKPOINT: Family = family(
    "weir_last_checkpoint_id",
    "Id of the last completed checkpoint or savepoint.",
    Kind::Gauge,
);
const RESTARTS: Family = family(
    "weir_job_restarts",
    "Restarts of the job after a failure.",
    Kind::Counter,
);
const UPTIME: Family = family(
    "weir_job_uptime_seconds",
    "Time since the job master started.",
    Kind::Gauge,
);
const VERSIONS: Family = family(
    "weir_operator_version",
    "The artifact (sha256 digest) each operator runs.",
    Kind::Info,
);

const FAMILIES: [&Family; 24] = [
    &RECORDS_IN,
    &RECORDS_OUT,
    &BYTES_IN,
    &BYTES_OUT,
    &LATE,
    &SKIPPED,
    &DEAD_LETTERED,
    &BUSY,
    &IDLE,
    &BACKPRESSURED,
    &WATERMARK,
    &LAG,
    &STATE_KEYS,
    &STATE_BYTES,
    &TIMERS,
    &GUEST_MEMORY,
    &ALIGNMENT,
    &CALLS,
    &CHECKPOINT_DURATION,
    &CHECKPOINT_SIZE,
    &LAST_CHECKPOINT,
    &RESTARTS,
    &UPTIME,
    &VERSIONS,
];

/// Every metric family with the names of its samples, in the text format.
pub fn metric_names() -> Vec<String> {
    FAMILIES
        .iter()
        .map(|f| format!("{}{}", f.name, family_suffix(f.name)))
        .collect()
}

/// A label value, escaped as the text format wants (the encoder does not).
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// `(name, value)` labels.
struct Labels<'a>(Vec<(&'static str, &'a str)>);

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (name, value) in &self.0 {
            let mut label = encoder.encode_label();
            let mut key = label.encode_label_key()?;
            key.write_str(name)?;
            let mut v = key.encode_label_value()?;
            Escaped(value).encode(&mut v)?;
            v.finish()?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Weir;

/// One subtask's labels and values, read once per scrape.
struct Row<'a> {
    labels: Labels<'a>,
    kind: NodeKind,
    values: SubtaskValues,
    entry: &'a Entry,
}

fn metric_type(kind: Kind) -> MetricType {
    match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
        Kind::Info => MetricType::Info,
    }
}

fn counter(m: &mut MetricEncoder, labels: &Labels, v: f64) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, f64>(&v, None)
}

fn counter_u64(m: &mut MetricEncoder, labels: &Labels, v: u64) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(m: &mut MetricEncoder, labels: &Labels, v: f64) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?.encode_gauge(&v)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Writes one family from every row that has a value for it (a family
/// with no sample is left out entirely).
fn write_family<'r, T>(
    encoder: &mut DescriptorEncoder,
    family: &Family,
    rows: impl IntoIterator<Item = (&'r Labels<'r>, T)> + Clone,
    mut write: impl FnMut(&mut MetricEncoder, &Labels, T) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    if rows.clone().into_iter().next().is_none() {
        return Ok(());
    }
    let mut m =
        encoder.encode_descriptor(family.name, family.help, None, metric_type(family.kind))?;
    for (labels, value) in rows {
        write(&mut m, labels, value)?;
    }
    Ok(())
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Collector for Weir {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let registry = registry::lock();
        let subtask_numbers: Vec<String> = registry
            .subtasks
            .iter()
            .map(|e| e.subtask.to_string())
            .collect();
        let rows: Vec<Row> = registry
            .subtasks
            .iter()
            .zip(&subtask_numbers)
            .map(|(e, n)| Row {
                labels: Labels(vec![
                    ("job_name", &e.job),
                    ("node", &e.node),
                    ("subtask", n),
                ]),
                kind: e.metrics.kind,
                values: e.metrics.values(),
                entry: e,
            })
            .collect();
        let jobs = registry.job_stats();
        // Held while rendering (rows borrow the entries): only attempts
        // starting or ending and job masters wait for it, never a task.
        self.subtasks(&mut encoder, &rows)?;
        self.jobs(&mut encoder, &jobs)
    }
}

impl Weir {
    fn subtasks(&self, e: &mut DescriptorEncoder, rows: &[Row]) -> Result<(), std::fmt::Error> {
        let all = || rows.iter().map(|r| (&r.labels, &r.values));
        let operators = || {
            rows.iter()
                .filter(|r| r.kind == NodeKind::Operator)
                .map(|r| (&r.labels, &r.values))
        };
        write_family(e, &RECORDS_IN, all(), |m, l, v| {
            counter_u64(m, l, v.records_in)
        })?;
        write_family(e, &RECORDS_OUT, all(), |m, l, v| {
            counter_u64(m, l, v.records_out)
        })?;
        write_family(e, &BYTES_IN, all(), |m, l, v| counter_u64(m, l, v.bytes_in))?;
        write_family(e, &BYTES_OUT, all(), |m, l, v| {
            counter_u64(m, l, v.bytes_out)
        })?;
        write_family(e, &LATE, operators(), |m, l, v| {
            counter_u64(m, l, v.late_records)
        })?;
        let sources = || {
            rows.iter()
                .filter(|r| r.kind == NodeKind::Source)
                .map(|r| (&r.labels, &r.values))
        };
        write_family(e, &SKIPPED, sources(), |m, l, v| {
            counter_u64(m, l, v.records_skipped)
        })?;
        write_family(e, &DEAD_LETTERED, sources(), |m, l, v| {
            counter_u64(m, l, v.records_dead_lettered)
        })?;
        write_family(e, &BUSY, all(), |m, l, v| counter(m, l, secs(v.busy)))?;
        write_family(e, &IDLE, all(), |m, l, v| counter(m, l, secs(v.idle)))?;
        write_family(e, &BACKPRESSURED, all(), |m, l, v| {
            counter(m, l, secs(v.backpressured))
        })?;
        // A watermark at the end of input (i64::MAX) is no point in time.
        let timed = rows.iter().filter_map(|r| {
            r.values
                .watermark
                .filter(|&w| w != i64::MAX)
                .map(|w| (&r.labels, w))
        });
        write_family(e, &WATERMARK, timed.clone(), |m, l, w| {
            gauge(m, l, w as f64 / 1e3)
        })?;
        let now = now_unix_ms();
        write_family(e, &LAG, timed, |m, l, w| {
            gauge(m, l, now.saturating_sub(w) as f64 / 1e3)
        })?;
        let some = |f: fn(&SubtaskValues) -> Option<u64>| {
            rows.iter()
                .filter_map(move |r| f(&r.values).map(|v| (&r.labels, v)))
        };
        write_family(e, &STATE_KEYS, some(|v| v.state_keys), |m, l, v| {
            gauge(m, l, v as f64)
        })?;
        write_family(e, &STATE_BYTES, some(|v| v.state_bytes), |m, l, v| {
            gauge(m, l, v as f64)
        })?;
        write_family(e, &TIMERS, some(|v| v.timers), |m, l, v| {
            gauge(m, l, v as f64)
        })?;
        write_family(
            e,
            &GUEST_MEMORY,
            some(|v| v.guest_memory_bytes),
            |m, l, v| gauge(m, l, v as f64),
        )?;
        let aligned = rows
            .iter()
            .filter_map(|r| r.values.alignment.map(|d| (&r.labels, d)));
        write_family(e, &ALIGNMENT, aligned, |m, l, d| gauge(m, l, secs(d)))?;
        let calls = rows
            .iter()
            .filter(|r| r.kind == NodeKind::Operator)
            .map(|r| (&r.labels, r.entry));
        write_family(e, &CALLS, calls, |m, l, entry| {
            let (buckets, sum) = entry.metrics.calls.read();
            let count = buckets.last().map_or(0, |b| b.1);
            // The encoder sums the buckets itself: give it each one's own count.
            let mut below = 0;
            let bounds: Vec<(f64, u64)> = buckets
                .iter()
                .map(|&(bound, cumulative)| {
                    let own = cumulative.saturating_sub(below);
                    below = cumulative;
                    (bound.map_or(f64::INFINITY, |us| us as f64 / 1e6), own)
                })
                .collect();
            m.encode_family(l)?
                .encode_histogram::<NoLabelSet>(secs(sum), count, &bounds, None)
        })
    }

    fn jobs(
        &self,
        e: &mut DescriptorEncoder,
        jobs: &[(String, JobStats)],
    ) -> Result<(), std::fmt::Error> {
        let labelled: Vec<(Labels, &JobStats)> = jobs
            .iter()
            .map(|(name, stats)| (Labels(vec![("job_name", name.as_str())]), stats))
            .collect();
        let all = || labelled.iter().map(|(l, s)| (l, *s));
        write_family(
            e,
            &CHECKPOINT_DURATION,
            all().filter_map(|(l, s)| s.checkpoint_duration_ms.map(|v| (l, v))),
            |m, l, ms| gauge(m, l, ms as f64 / 1e3),
        )?;
        write_family(
            e,
            &CHECKPOINT_SIZE,
            all().filter_map(|(l, s)| s.checkpoint_bytes.map(|v| (l, v))),
            |m, l, v| gauge(m, l, v as f64),
        )?;
        write_family(
            e,
            &LAST_CHECKPOINT,
            all().filter_map(|(l, s)| s.last_checkpoint.map(|v| (l, v))),
            |m, l, v| gauge(m, l, v as f64),
        )?;
        write_family(e, &RESTARTS, all(), |m, l, s| {
            counter_u64(m, l, u64::from(s.restarts))
        })?;
        write_family(e, &UPTIME, all(), |m, l, s| {
            gauge(m, l, s.started.elapsed().as_secs_f64())
        })?;
        let versions: Vec<Labels> = jobs
            .iter()
            .flat_map(|(job, s)| {
                s.versions.iter().map(move |(operator, digest)| {
                    Labels(vec![
                        ("job_name", job.as_str()),
                        ("operator", operator.as_str()),
                        ("digest", digest.as_str()),
                    ])
                })
            })
            .collect();
        write_family(
            e,
            &VERSIONS,
            versions.iter().map(|l| (l, ())),
            |m, l, ()| m.encode_info(l),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::super::{AttemptRegistration, JobRegistration, NodeKind, TaskTimes};
    use super::*;

    /// Families (name → type) and samples (name, labels, value) of a page,
    /// refusing anything the text format does not allow.
    fn parse(text: &str) -> (BTreeMap<String, String>, Vec<(String, String, f64)>) {
        let mut types = BTreeMap::new();
        let mut helps = 0;
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(types.insert(name.to_string(), kind.to_string()).is_none());
            } else if line.starts_with("# HELP ") {
                helps += 1;
            } else {
                assert!(!line.starts_with('#'), "unexpected comment {line}");
                let (series, value) = line.rsplit_once(' ').expect("series value");
                let value: f64 = value.parse().expect(line);
                let (name, labels) = match series.split_once('{') {
                    Some((n, l)) => (n, l.strip_suffix('}').expect(line)),
                    None => (series, ""),
                };
                assert!(
                    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                let family = types
                    .keys()
                    .find(|f| {
                        name == f.as_str()
                            || (types[*f] == "histogram"
                                && ["_bucket", "_sum", "_count"]
                                    .iter()
                                    .any(|s| name == format!("{f}{s}")))
                    })
                    .unwrap_or_else(|| panic!("sample {name} has no TYPE"));
                assert!(family.starts_with("weir_"));
                samples.push((name.to_string(), labels.to_string(), value));
            }
        }
        assert_eq!(helps, types.len(), "every family has a HELP");
        (types, samples)
    }

    #[test]
    fn renders_the_text_format_with_names_labels_and_types() {
        let attempt = AttemptRegistration::new("render\"test");
        let times = Arc::new(TaskTimes::default());
        let src = attempt.add("events", NodeKind::Source, 0, Arc::default());
        let op = attempt.add("count", NodeKind::Operator, 1, times);
        let job = JobRegistration::new("render\"test");
        job.update(|s| {
            s.restarts = 2;
            s.last_checkpoint = Some(7);
            s.checkpoint_duration_ms = Some(1500);
            s.checkpoint_bytes = Some(4096);
            s.versions = vec![("count".into(), "ab12".into())];
        });
        src.add_out(10, 1000);
        src.add_parse_errors(2, 5);
        src.set_watermark(1_000);
        op.add_in(10, 1000);
        op.add_out(3, 30);
        op.set_sampled(Some((4, 400)), 2, 65536);
        op.calls.record(Duration::from_micros(30));
        op.set_alignment(Duration::from_millis(250));
        let text = render_prometheus();
        let (types, samples) = parse(&text);
        assert_eq!(types["weir_records_out_total"], "counter");
        assert_eq!(types["weir_guest_call_duration_seconds"], "histogram");
        assert_eq!(types["weir_operator_version_info"], "gauge");
        assert_eq!(types["weir_input_watermark_seconds"], "gauge");
        for name in metric_names() {
            assert!(types.contains_key(&name), "{name} missing from\n{text}");
        }
        let find = |name: &str, labels: &str| {
            samples
                .iter()
                .find(|(n, l, _)| n == name && l == labels)
                .map(|s| s.2)
                .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
        };
        let op_labels = r#"job_name="render\"test",node="count",subtask="1""#;
        assert_eq!(find("weir_records_out_total", op_labels), 3.0);
        assert_eq!(find("weir_bytes_in_total", op_labels), 1000.0);
        assert_eq!(find("weir_state_bytes", op_labels), 400.0);
        assert_eq!(find("weir_guest_memory_bytes", op_labels), 65536.0);
        assert_eq!(
            find(
                "weir_guest_call_duration_seconds_bucket",
                &format!(r#"le="0.00005",{op_labels}"#)
            ),
            1.0
        );
        assert_eq!(
            find("weir_guest_call_duration_seconds_count", op_labels),
            1.0
        );
        let src_labels = r#"job_name="render\"test",node="events",subtask="0""#;
        assert_eq!(find("weir_input_watermark_seconds", src_labels), 1.0);
        assert_eq!(find("weir_source_records_skipped_total", src_labels), 2.0);
        assert_eq!(
            find("weir_source_records_dead_lettered_total", src_labels),
            5.0
        );
        assert!(find("weir_event_time_lag_seconds", src_labels) > 1e9);
        let job_labels = r#"job_name="render\"test""#;
        assert_eq!(find("weir_job_restarts_total", job_labels), 2.0);
        assert_eq!(find("weir_last_checkpoint_id", job_labels), 7.0);
        assert_eq!(find("weir_checkpoint_duration_seconds", job_labels), 1.5);
        assert_eq!(
            find(
                "weir_operator_version_info",
                r#"job_name="render\"test",operator="count",digest="ab12""#
            ),
            1.0
        );
        // Sources have no guest: no histogram, no state for them.
        assert!(
            !samples
                .iter()
                .any(|(n, l, _)| n.starts_with("weir_guest_call") && l.contains("node=\"events\""))
        );
        drop(attempt);
        drop(job);
        assert!(!render_prometheus().contains("render\\\"test"));
    }

    /// `promtool check metrics` (Prometheus' own linter) accepts the page,
    /// where it is installed (the suite's machines have it).
    #[test]
    fn promtool_accepts_the_page() {
        let Ok(mut child) = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("promtool not installed: skipped");
            return;
        };
        let attempt = AttemptRegistration::new("promtool");
        let op = attempt.add("map", NodeKind::Operator, 0, Arc::default());
        op.calls.record(Duration::from_millis(2));
        op.set_watermark(5);
        op.set_sampled(Some((1, 2)), 0, 1);
        let job = JobRegistration::new("promtool");
        job.update(|s| s.versions = vec![("map".into(), "00ff".into())]);
        let text = render_prometheus();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .expect("promtool reads");
        let out = child.wait_with_output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn open_metrics_families_are_renamed_to_their_samples() {
        let text = "# HELP weir_records_in Records.\n# TYPE weir_records_in counter\n\
                    weir_records_in_total 1\n# HELP weir_operator_version V.\n\
                    # TYPE weir_operator_version info\nweir_operator_version_info{a=\"b\"} 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(text),
            "# HELP weir_records_in_total Records.\n# TYPE weir_records_in_total counter\n\
             weir_records_in_total 1\n# HELP weir_operator_version_info V.\n\
             # TYPE weir_operator_version_info gauge\nweir_operator_version_info{a=\"b\"} 1\n"
        );
    }
}
