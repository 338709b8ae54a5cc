//! Live status of a running job for the terminal: one line per source and
//! operator (records/s, share of the input read, watermark) under a line
//! for the job (state, uptime, last checkpoint). On a terminal the lines
//! are indicatif bars redrawn every poll; elsewhere a plain log line per
//! node is printed every [`PLAIN_EVERY`] (nothing for a shorter job).
//!
//! Samples are the telemetry JSON (`JobMetrics`: `{"job", "unix_ms",
//! "nodes": [{"name", "kind", "subtasks": [...]}]}`), read from the
//! process's registry (`weir run`) or a coordinator's REST API (`weir
//! submit --wait`) alike; counters are cumulative, so a rate takes two
//! samples.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;
use weir_core::job::{JobSpec, SourceKind};

/// How often the display is refreshed.
pub const POLL: Duration = Duration::from_millis(500);
/// How often plain lines are printed when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);
/// Rates on a terminal cover about this much time (smoother than one poll).
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// One node's counters summed over its subtasks.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSample {
    pub name: String,
    pub kind: String,
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_out: u64,
    /// The lowest input watermark of its subtasks (ms); `None` while any
    /// subtask has none yet.
    pub watermark: Option<i64>,
}

/// A job's metrics at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub unix_ms: u64,
    pub nodes: Vec<NodeSample>,
}

/// Reads a `JobMetrics` JSON value; `None` if it is not one.
pub fn parse(metrics: &Value) -> Option<Sample> {
    let unix_ms = metrics.get("unix_ms")?.as_u64()?;
    let nodes = metrics
        .get("nodes")?
        .as_array()?
        .iter()
        .filter_map(|node| {
            let subtasks = node.get("subtasks").and_then(Value::as_array);
            let subtasks = subtasks.map(Vec::as_slice).unwrap_or_default();
            let sum = |field: &str| -> u64 {
                subtasks
                    .iter()
                    .filter_map(|s| s.get(field).and_then(Value::as_u64))
                    .fold(0, u64::saturating_add)
            };
            let watermarks: Option<Vec<i64>> = subtasks
                .iter()
                .map(|s| s.get("watermark").and_then(Value::as_i64))
                .collect();
            Some(NodeSample {
                name: node.get("name")?.as_str()?.to_string(),
                kind: node.get("kind")?.as_str()?.to_string(),
                records_in: sum("records_in"),
                records_out: sum("records_out"),
                bytes_out: sum("bytes_out"),
                watermark: watermarks.and_then(|w| w.into_iter().min()),
            })
        })
        .collect();
    Some(Sample { unix_ms, nodes })
}

/// How much input a source has in all, to show the share read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputSize {
    /// A file source: its size in bytes.
    Bytes(u64),
    /// A generator: the records it emits.
    Records(u64),
}

/// The input size of each source of `spec` that has a known one.
pub fn input_sizes(spec: &JobSpec) -> BTreeMap<String, InputSize> {
    spec.sources
        .iter()
        .filter_map(|source| {
            let size = match &source.kind {
                SourceKind::File { path, .. } => {
                    InputSize::Bytes(std::fs::metadata(path).ok()?.len())
                }
                SourceKind::Generator(g) => InputSize::Records(g.records),
                SourceKind::Nexmark(n) => InputSize::Records(n.events),
                // Unbounded, or bounded by offsets found only when it starts.
                SourceKind::Kafka(_) => return None,
            };
            Some((source.name.clone(), size))
        })
        .collect()
}

/// What one status line says about a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLine {
    pub name: String,
    pub kind: String,
    /// Records per second: out of a source, into an operator.
    pub rate: Option<f64>,
    /// Share of the input read, 0..=1 (sources with a known size).
    pub read: Option<f64>,
    pub watermark: Option<i64>,
}

/// The lines for the sources and operators of `now`, with rates since `before`.
pub fn node_lines(
    before: Option<&Sample>,
    now: &Sample,
    inputs: &BTreeMap<String, InputSize>,
) -> Vec<NodeLine> {
    let count = |n: &NodeSample| {
        if n.kind == "source" {
            n.records_out
        } else {
            n.records_in
        }
    };
    now.nodes
        .iter()
        .filter(|n| n.kind == "source" || n.kind == "operator")
        .map(|n| {
            let rate = before.and_then(|before| {
                let then = before.nodes.iter().find(|b| b.name == n.name)?;
                let ms = now
                    .unix_ms
                    .checked_sub(before.unix_ms)
                    .filter(|&ms| ms > 0)?;
                // A restarted attempt counts from zero: no negative rate.
                Some(count(n).saturating_sub(count(then)) as f64 * 1000.0 / ms as f64)
            });
            let read = match inputs.get(&n.name) {
                Some(InputSize::Bytes(total)) if *total > 0 => {
                    Some((n.bytes_out as f64 / *total as f64).min(1.0))
                }
                Some(InputSize::Records(total)) if *total > 0 => {
                    Some((n.records_out as f64 / *total as f64).min(1.0))
                }
                _ => None,
            };
            NodeLine {
                name: n.name.clone(),
                kind: n.kind.clone(),
                rate,
                read,
                watermark: n.watermark,
            }
        })
        .collect()
}

/// A node's terminal line; `name_width` aligns the columns.
pub fn render(line: &NodeLine, name_width: usize, now_ms: u64) -> String {
    let rate = line
        .rate
        .map_or("-".to_string(), |r| group_digits(r.round() as u64));
    let mut out = format!(
        "{:<8} {:<name_width$} {rate:>11} rec/s",
        line.kind, line.name
    );
    if let Some(read) = line.read {
        out.push_str(&format!("  read {:>5.1}%", read * 100.0));
    }
    if let Some(w) = line.watermark {
        out.push_str(&format!("  watermark {}", watermark(w, now_ms)));
    }
    out
}

/// A node's plain log line (stderr not a terminal).
pub fn render_plain(job: &str, line: &NodeLine, now_ms: u64) -> String {
    let rate = line.rate.map_or("-".to_string(), |r| format!("{r:.0}"));
    let mut out = format!("weir: job {job}: node {}: {rate} records/s", line.name);
    if let Some(read) = line.read {
        out.push_str(&format!(", {:.1}% read", read * 100.0));
    }
    out.push_str(&format!(
        ", watermark {}",
        line.watermark
            .map_or("-".to_string(), |w| watermark(w, now_ms))
    ));
    out
}

/// `1234567` as `1,234,567`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A watermark: as a UTC time with its lag behind now when it looks like
/// one (years 2000 to 2100), else the bare milliseconds.
pub fn watermark(ms: i64, now_ms: u64) -> String {
    const Y2000: i64 = 946_684_800_000;
    const Y2100: i64 = 4_102_444_800_000;
    if !(Y2000..Y2100).contains(&ms) {
        return format!("{ms} ms");
    }
    let lag = (now_ms as i64).saturating_sub(ms);
    let lag = if lag >= 0 {
        format!(" (lag {})", duration(Duration::from_millis(lag as u64)))
    } else {
        String::new()
    };
    format!("{}{lag}", utc(ms))
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (whole seconds: a
/// status line is short).
pub fn utc(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60
    )
}

/// A duration for people: `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

/// Bytes for people: `512 B`, `12.0 KiB`, `3.4 MiB`, `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The last checkpoint of a job view (embedded `JobView` or cluster
/// `JobInfo` as JSON): from its `checkpoints` history when it has one (id,
/// size, duration, age), else its `last_checkpoint` id.
pub fn last_checkpoint(view: &Value, now_ms: u64) -> Option<String> {
    let completed = view
        .get("checkpoints")
        .and_then(Value::as_array)
        .and_then(|all| {
            all.iter()
                .rev()
                .find(|c| c.get("status").and_then(Value::as_str) == Some("completed"))
        });
    if let Some(c) = completed
        && let Some(id) = c.get("id").and_then(Value::as_u64)
    {
        let mut out = id.to_string();
        let mut about = Vec::new();
        if let Some(b) = c.get("bytes").and_then(Value::as_u64) {
            about.push(bytes(b));
        }
        if let Some(ms) = c.get("duration_ms").and_then(Value::as_u64) {
            about.push(format!("took {}", duration(Duration::from_millis(ms))));
        }
        if let Some(started) = c.get("started_unix_ms").and_then(Value::as_u64) {
            let done = started + c.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
            let ago = Duration::from_millis(now_ms.saturating_sub(done));
            about.push(format!("{} ago", duration(ago)));
        }
        if !about.is_empty() {
            out.push_str(&format!(" ({})", about.join(", ")));
        }
        return Some(out);
    }
    view.get("last_checkpoint")
        .and_then(Value::as_u64)
        .map(|id| id.to_string())
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The live display of one job, fed a sample every [`POLL`].
pub struct Status {
    job: String,
    inputs: BTreeMap<String, InputSize>,
    mode: Mode,
}

enum Mode {
    /// Bars on a terminal; recent samples for the rates.
    Bars {
        multi: MultiProgress,
        header: ProgressBar,
        nodes: Vec<ProgressBar>,
        recent: VecDeque<(Instant, Sample)>,
    },
    /// Plain lines: the sample of the last print (or the first one).
    Plain { base: Option<(Instant, Sample)> },
}

impl Status {
    /// Bars if `terminal`, else plain lines.
    pub fn new(job: &str, inputs: BTreeMap<String, InputSize>, terminal: bool) -> Status {
        let mode = if terminal {
            let multi = MultiProgress::new();
            let header = multi.add(ProgressBar::new_spinner());
            // `wide_msg` cuts a line at the terminal's width instead of wrapping it.
            header.set_style(style("{spinner} {wide_msg}"));
            crate::logging::set_bars(Some(multi.clone()));
            Mode::Bars {
                multi,
                header,
                nodes: Vec::new(),
                recent: VecDeque::new(),
            }
        } else {
            Mode::Plain { base: None }
        };
        Status {
            job: job.to_string(),
            inputs,
            mode,
        }
    }

    /// Shows `header` (the job's line) and the nodes of `sample`.
    pub fn update(&mut self, header: &str, sample: Option<Sample>) {
        let now = Instant::now();
        let now_ms = now_ms();
        match &mut self.mode {
            Mode::Bars {
                multi,
                header: bar,
                nodes,
                recent,
            } => {
                bar.set_message(header.to_string());
                bar.tick();
                // A coordinator repeats its workers' last report until the
                // next: a sample no newer than the last one shown adds nothing.
                let Some(sample) = sample.filter(|s| {
                    !s.nodes.is_empty()
                        && recent
                            .back()
                            .is_none_or(|(_, last)| s.unix_ms > last.unix_ms)
                }) else {
                    return;
                };
                // The oldest sample within the window (or the newest older one).
                while recent.len() > 1 && now.duration_since(recent[1].0) >= RATE_WINDOW {
                    recent.pop_front();
                }
                let lines = node_lines(recent.front().map(|(_, s)| s), &sample, &self.inputs);
                recent.push_back((now, sample));
                let width = lines.iter().map(|l| l.name.len()).max().unwrap_or(0);
                while nodes.len() < lines.len() {
                    let node = multi.add(ProgressBar::new_spinner());
                    node.set_style(style("  {wide_msg}"));
                    nodes.push(node);
                }
                for (node, line) in nodes.iter().zip(&lines) {
                    node.set_message(render(line, width, now_ms));
                }
            }
            Mode::Plain { base } => {
                // Rates need a base the nodes are in (a cluster job's
                // first samples may precede its workers' reports).
                let Some(sample) = sample.filter(|s| !s.nodes.is_empty()) else {
                    return;
                };
                match base {
                    Some((at, before)) if now.duration_since(*at) >= PLAIN_EVERY => {
                        for line in node_lines(Some(before), &sample, &self.inputs) {
                            eprintln!("{}", render_plain(&self.job, &line, now_ms));
                        }
                        *base = Some((now, sample));
                    }
                    Some(_) => {}
                    None => *base = Some((now, sample)),
                }
            }
        }
    }

    /// Clears the bars (the summary follows in their place).
    pub fn finish(self) {
        if let Mode::Bars {
            multi,
            header,
            nodes,
            ..
        } = self.mode
        {
            crate::logging::set_bars(None);
            for bar in nodes.iter().chain([&header]) {
                bar.finish_and_clear();
            }
            let _ = multi.clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metrics(unix_ms: u64, source_out: u64, op_in: u64, wm: Option<i64>) -> Value {
        json!({"job": "j", "unix_ms": unix_ms, "nodes": [
            {"name": "lines", "kind": "source", "subtasks": [
                {"subtask": 0, "records_out": source_out, "bytes_out": source_out * 10, "watermark": null}]},
            {"name": "count", "kind": "operator", "subtasks": [
                {"subtask": 0, "records_in": op_in / 2, "watermark": wm},
                {"subtask": 1, "records_in": op_in - op_in / 2, "watermark": wm.map(|w| w + 5)}]},
            {"name": "out", "kind": "sink", "subtasks": [{"subtask": 0, "records_in": op_in}]}
        ]})
    }

    #[test]
    fn parse_sums_subtasks_and_takes_the_lowest_watermark() {
        let s = parse(&metrics(1000, 40, 30, Some(700))).unwrap();
        assert_eq!(s.unix_ms, 1000);
        assert_eq!(s.nodes.len(), 3);
        assert_eq!(s.nodes[1].records_in, 30);
        assert_eq!(s.nodes[1].watermark, Some(700));
        assert_eq!(s.nodes[0].bytes_out, 400);
        assert_eq!(s.nodes[0].watermark, None);
        assert!(parse(&json!({"nodes": []})).is_none());
        assert!(parse(&json!([1, 2])).is_none());
    }

    #[test]
    fn a_subtask_without_watermark_hides_the_nodes() {
        let mut v = metrics(1000, 40, 30, Some(700));
        v["nodes"][1]["subtasks"][1]["watermark"] = Value::Null;
        assert_eq!(parse(&v).unwrap().nodes[1].watermark, None);
    }

    #[test]
    fn rates_come_from_two_samples_and_shares_from_input_sizes() {
        let before = parse(&metrics(1000, 100, 50, None)).unwrap();
        let now = parse(&metrics(3000, 300, 450, Some(9))).unwrap();
        let inputs = BTreeMap::from([("lines".to_string(), InputSize::Bytes(6000))]);
        let lines = node_lines(Some(&before), &now, &inputs);
        // Sinks have no line.
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].rate, Some(100.0));
        assert_eq!(lines[0].read, Some(0.5));
        assert_eq!(lines[1].rate, Some(200.0));
        assert_eq!(lines[1].read, None);
        assert_eq!(lines[1].watermark, Some(9));
        // One sample: no rate yet; a restart (counters back to zero): no negative rate.
        assert_eq!(node_lines(None, &now, &inputs)[0].rate, None);
        let restarted = parse(&metrics(4000, 10, 0, None)).unwrap();
        assert_eq!(
            node_lines(Some(&now), &restarted, &inputs)[0].rate,
            Some(0.0)
        );
        // A generator's share counts records; more than the size reads as all.
        let inputs = BTreeMap::from([("lines".to_string(), InputSize::Records(200))]);
        assert_eq!(node_lines(None, &now, &inputs)[0].read, Some(1.0));
    }

    #[test]
    fn lines_render_rate_share_and_watermark() {
        let line = NodeLine {
            name: "lines".into(),
            kind: "source".into(),
            rate: Some(12345.4),
            read: Some(0.425),
            watermark: Some(1_700_000_000_000),
        };
        let text = render(&line, 6, 1_700_000_003_000);
        assert!(
            text.starts_with("source   lines       12,345 rec/s"),
            "{text}"
        );
        assert!(text.contains("read  42.5%"), "{text}");
        assert!(
            text.contains("watermark 2023-11-14T22:13:20Z (lag 3.0s)"),
            "{text}"
        );
        let plain = render_plain("wc", &line, 1_700_000_003_000);
        assert!(
            plain.starts_with("weir: job wc: node lines: 12345 records/s, 42.5% read, watermark 2023-11-14T22:13:20Z"),
            "{plain}"
        );
        let bare = NodeLine {
            rate: None,
            read: None,
            watermark: None,
            ..line
        };
        assert_eq!(
            render_plain("wc", &bare, 0),
            "weir: job wc: node lines: - records/s, watermark -"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1234567), "1,234,567");
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
        assert_eq!(watermark(42, 0), "42 ms");
        assert_eq!(watermark(-5, 0), "-5 ms");
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(duration(Duration::from_secs(7380)), "2h03m");
        assert_eq!(
            duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d04h"
        );
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12 * 1024), "12.0 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
    }

    #[test]
    fn last_checkpoint_prefers_the_history() {
        let view = json!({"last_checkpoint": 7, "checkpoints": [
            {"id": 6, "status": "completed", "bytes": 2048, "duration_ms": 30, "started_unix_ms": 1000},
            {"id": 7, "status": "aborted", "bytes": 0, "duration_ms": 5, "started_unix_ms": 2000}]});
        assert_eq!(
            last_checkpoint(&view, 4030).as_deref(),
            Some("6 (2.0 KiB, took 30ms, 3.0s ago)")
        );
        assert_eq!(
            last_checkpoint(&json!({"last_checkpoint": 7}), 0).as_deref(),
            Some("7")
        );
        assert_eq!(last_checkpoint(&json!({"last_checkpoint": null}), 0), None);
    }
}
