//! `weir jobs`'s table: one aligned row per job (embedded `JobView`s or a
//! cluster's `JobInfo`s, both read as JSON).

use std::time::Duration;

use serde_json::Value;

use crate::status;

const TERMINAL_STATES: [&str; 4] = ["finished", "stopped", "cancelled", "failed"];

/// One line per operator: its parallelism and the versions it ran,
/// oldest first (`<digest> (start) -> <digest> (checkpoint N)`).
pub fn version_lines(
    versions: &[weir_snapshot::OperatorVersion],
    parallelism: &std::collections::BTreeMap<String, u32>,
) -> String {
    let mut out = String::new();
    for v in versions {
        let p = parallelism.get(&v.operator).copied().unwrap_or(0);
        let history: Vec<String> = v
            .history
            .iter()
            .map(|r| {
                let at = r
                    .checkpoint
                    .map_or("start".to_string(), |c| format!("checkpoint {c}"));
                format!("{} ({at})", &r.digest[..r.digest.len().min(12)])
            })
            .collect();
        out.push_str(&format!(
            "  operator {} p={p}: {}\n",
            v.operator,
            history.join(" -> ")
        ));
    }
    out
}

/// The table of `jobs`, with uptimes and checkpoint ages at `now_ms`.
pub fn render(jobs: &[Value], now_ms: u64) -> String {
    let header = [
        "JOB",
        "STATE",
        "UPTIME",
        "RESTARTS",
        "LAST CHECKPOINT",
        "PARALLELISM",
        "WORKERS",
    ];
    let rows: Vec<[String; 7]> = jobs.iter().map(|job| row(job, now_ms)).collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_string);
    for cells in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One job's cells.
fn row(job: &Value, now_ms: u64) -> [String; 7] {
    let text = |field: &str| job.get(field).and_then(Value::as_str).unwrap_or("-");
    let state = text("state").to_string();
    let uptime = match job.get("started_unix_ms").and_then(Value::as_u64) {
        Some(started) if started > 0 && !TERMINAL_STATES.contains(&state.as_str()) => {
            status::duration(Duration::from_millis(now_ms.saturating_sub(started)))
        }
        _ => "-".to_string(),
    };
    let restarts = job
        .get("restarts")
        .and_then(Value::as_u64)
        .map_or("-".to_string(), |r| r.to_string());
    let checkpoint = status::last_checkpoint(job, now_ms).unwrap_or_else(|| "-".to_string());
    [
        text("name").to_string(),
        state,
        uptime,
        restarts,
        checkpoint,
        parallelism(job),
        workers(job),
    ]
}

/// Operators' parallelism: one number, or the range they span.
fn parallelism(job: &Value) -> String {
    let all: Vec<u64> = job
        .get("parallelism")
        .and_then(Value::as_object)
        .map(|p| p.values().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    match (all.iter().min(), all.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => lo.to_string(),
        (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
        _ => "-".to_string(),
    }
}

/// A cluster job's workers with their slots; an embedded job runs here.
fn workers(job: &Value) -> String {
    match job.get("workers").and_then(Value::as_object) {
        Some(workers) if !workers.is_empty() => workers
            .iter()
            .map(|(w, slots)| format!("{w}:{}", slots.as_u64().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(","),
        Some(_) => "-".to_string(),
        None => "local".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_aligns_embedded_and_cluster_jobs() {
        let jobs = [
            json!({"name": "wordcount", "state": "running", "restarts": 1, "last_checkpoint": 4,
                   "started_unix_ms": 1_000, "parallelism": {"count": 2, "split": 2},
                   "error": null}),
            json!({"name": "f", "state": "failed", "restarts": 0, "last_checkpoint": null,
                   "started_unix_ms": 1_000, "parallelism": {"a": 1, "b": 3},
                   "workers": {"worker-1": 2, "worker-2": 1}, "versions": [], "error": "boom"}),
        ];
        let text = render(&jobs, 66_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "JOB        STATE    UPTIME  RESTARTS  LAST CHECKPOINT  PARALLELISM  WORKERS"
        );
        assert_eq!(
            lines[1],
            "wordcount  running  1m05s   1         4                2            local"
        );
        // A failed job has no uptime.
        assert_eq!(
            lines[2],
            "f          failed   -       0         -                1-3          worker-1:2,worker-2:1"
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn missing_fields_show_dashes() {
        let text = render(&[json!({"name": "x"})], 0);
        assert_eq!(
            text.lines().nth(1),
            Some("x    -      -       -         -                -            local")
        );
    }
}
