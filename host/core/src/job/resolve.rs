//! From the raw TOML shapes to a validated [`JobSpec`]: defaults, bounds,
//! names, stream references, edges and the operators' topological order.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::bounds::*;
use super::lines::Cx;
use super::names::{job_name_problem, node_name_problem};
use super::raw::*;
use super::{
    CheckpointSpec, Edge, FileFormat, GeneratorSpec, GuestLimits, Input, JobError, JobSpec,
    LatePolicy, NEXMARK_START_MS_DEFAULT, NexmarkSpec, OnParseError, OperatorSpec, Overrides,
    RestartSpec, SinkFormat, SinkKind, SinkSpec, SourceKind, SourceSpec, StateBackendKind,
    StreamRef,
};
use crate::key_group::DEFAULT_MAX_PARALLELISM;

pub(super) fn resolve(
    cx: Cx<'_>,
    raw: RawJobFile,
    path: &Path,
    overrides: &Overrides,
) -> Result<JobSpec, JobError> {
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Resolver {
        cx,
        base_dir,
        raw,
        overrides,
    }
    .resolve()
}

struct Resolver<'a> {
    cx: Cx<'a>,
    base_dir: PathBuf,
    raw: RawJobFile,
    overrides: &'a Overrides,
}

impl Resolver<'_> {
    fn resolve(self) -> Result<JobSpec, JobError> {
        let cx = &self.cx;
        let job = self.raw.job.get_ref();
        let job_line = self.raw.job.span().start;
        if let Some(problem) = job_name_problem(job.name.get_ref()) {
            return Err(cx.err_at(job.name.span().start, format!("[job] {problem}")));
        }
        let max_parallelism = bounded(
            cx,
            job.max_parallelism.as_ref(),
            DEFAULT_MAX_PARALLELISM,
            1..=MAX_PARALLELISM_MAX,
            "[job] ",
            "max_parallelism",
        )?;
        let default_parallelism = match self.overrides.parallelism {
            Some(p) if p == 0 || p > max_parallelism.min(PARALLELISM_MAX) => {
                return Err(cx.err_at(
                    job_line,
                    format!(
                        "--parallelism {p} is out of range: 1 to {}",
                        max_parallelism.min(PARALLELISM_MAX)
                    ),
                ));
            }
            Some(p) => p,
            None => self.parallelism(job.parallelism.as_ref(), 1, max_parallelism)?,
        };
        let batch_records_max = bounded(
            cx,
            job.batch_records_max.as_ref(),
            1024,
            1..=BATCH_RECORDS_MAX,
            "[job] ",
            "batch_records_max",
        )?;
        // Unset, this is settled once the channels are counted
        // (`check_channels`).
        let channel_batches_max = bounded(
            cx,
            job.channel_batches_max.as_ref(),
            CHANNEL_BATCHES_DEFAULT,
            1..=CHANNEL_BATCHES_MAX,
            "[job] ",
            "channel_batches_max",
        )?;
        let nodes = self.raw.source.len() + self.raw.operator.len() + self.raw.sink.len();
        if nodes > NODES_MAX {
            return Err(cx.err_at(
                job_line,
                format!("the job has {nodes} sources, operators and sinks; at most {NODES_MAX} are allowed"),
            ));
        }

        let mut names: HashMap<String, usize> = HashMap::new();
        let mut claim = |name: &Spanned<String>, what: &str| -> Result<(), JobError> {
            let n = name.get_ref();
            if let Some(problem) = node_name_problem(what, n) {
                return Err(cx.err_at(name.span().start, problem));
            }
            if let Some(prev) = names.insert(n.clone(), cx.line_of(name.span().start)) {
                return Err(cx.err_at(
                    name.span().start,
                    format!("name `{n}` is already used on line {prev}"),
                ));
            }
            Ok(())
        };
        for s in &self.raw.source {
            claim(&s.get_ref().name, "source")?;
        }
        for o in &self.raw.operator {
            claim(&o.get_ref().name, "operator")?;
        }
        for s in &self.raw.sink {
            claim(&s.get_ref().name, "sink")?;
        }

        if self.raw.source.is_empty() {
            return Err(cx.err_at(job_line, "the job has no [[source]]"));
        }
        if self.raw.sink.is_empty() {
            return Err(cx.err_at(job_line, "the job has no [[sink]]"));
        }

        // `--parallelism`, checked above, is what a file source naming none
        // runs at.
        let file_default = self.overrides.parallelism.map(|_| default_parallelism);
        let sources = self
            .raw
            .source
            .iter()
            .map(|s| self.source(s, max_parallelism, file_default))
            .collect::<Result<Vec<_>, _>>()?;
        let mut parallelism: HashMap<String, u32> = sources
            .iter()
            .map(|s| (s.name.clone(), s.parallelism))
            .collect();
        let mut late_outputs = HashSet::new();
        let mut unordered = Vec::new();
        for o in &self.raw.operator {
            let raw = o.get_ref();
            let p = match &raw.parallelism {
                Some(_) => self.parallelism(raw.parallelism.as_ref(), 1, max_parallelism)?,
                None => default_parallelism,
            };
            parallelism.insert(raw.name.get_ref().clone(), p);
            if raw.late_records == Some(LatePolicy::SideOutput) {
                late_outputs.insert(raw.name.get_ref().clone());
            }
            unordered.push((o, p));
        }
        let mut operators = Vec::new();
        for (o, p) in unordered {
            operators.push(self.operator(o, p, &parallelism, &late_outputs)?);
        }
        let operators = topological_order(cx, operators, &self.raw.operator)?;
        let sinks = self
            .raw
            .sink
            .iter()
            .map(|s| self.sink(s, &parallelism, &late_outputs))
            .collect::<Result<Vec<_>, _>>()?;

        let checkpoint = self.checkpoint()?;
        let restart = match &self.raw.restart {
            None => RestartSpec::default(),
            Some(r) => {
                let raw = r.get_ref();
                match raw.strategy {
                    RawRestartStrategy::None => RestartSpec {
                        attempts: 0,
                        ..RestartSpec::default()
                    },
                    RawRestartStrategy::FixedDelay => RestartSpec {
                        attempts: bounded(
                            cx,
                            raw.attempts.as_ref(),
                            3,
                            0..=RESTART_ATTEMPTS_MAX,
                            "[restart] ",
                            "attempts",
                        )?,
                        delay_ms: bounded(
                            cx,
                            raw.delay_ms.as_ref(),
                            1000,
                            0..=DURATION_MS_MAX,
                            "[restart] ",
                            "delay_ms",
                        )?,
                    },
                }
            }
        };
        if restart.attempts > 0 && checkpoint.is_none() {
            let at = self
                .raw
                .restart
                .as_ref()
                .map_or(job_line, |r| r.span().start);
            return Err(cx.err_at(
                at,
                "[restart] needs [checkpoint]: a restarted job resumes from its latest checkpoint",
            ));
        }
        let channel_batches_max =
            check_channels(cx, &sources, &operators, &sinks, job, channel_batches_max)?;
        let (state_dir, state_dir_line) = match &job.state_dir {
            Some(d) => (
                Some(self.base_dir.join(bounded_text(
                    cx,
                    d,
                    PATH_BYTES_MAX,
                    "[job] ",
                    "state_dir",
                )?)),
                cx.line_of(d.span().start),
            ),
            None => (None, cx.line_of(job_line)),
        };
        Ok(JobSpec {
            name: job.name.get_ref().clone(),
            file: cx.file.to_path_buf(),
            max_parallelism,
            batch_records_max,
            channel_batches_max,
            state_backend: self
                .overrides
                .state_backend
                .or(job.state_backend)
                .unwrap_or(StateBackendKind::Memory),
            state_dir,
            state_dir_line,
            checkpoint,
            restart,
            sources,
            operators,
            sinks,
        })
    }

    fn checkpoint(&self) -> Result<Option<CheckpointSpec>, JobError> {
        let cx = &self.cx;
        let Some(c) = &self.raw.checkpoint else {
            if let Some(dir) = &self.overrides.checkpoint_dir {
                return Err(cx.err_at(
                    self.raw.job.span().start,
                    format!(
                        "--checkpoint-dir {} given, but the job file has no [checkpoint] section",
                        dir.display()
                    ),
                ));
            }
            return Ok(None);
        };
        let raw = c.get_ref();
        let owner = "[checkpoint] ";
        let interval_ms = bounded(
            cx,
            Some(&raw.interval_ms),
            1,
            1..=DURATION_MS_MAX,
            owner,
            "interval_ms",
        )?;
        let (dir, dir_line) = match (&self.overrides.checkpoint_dir, &raw.dir) {
            (Some(dir), _) => (dir.clone(), cx.line_of(c.span().start)),
            (None, Some(dir)) => {
                let text = bounded_text(cx, dir, PATH_BYTES_MAX, owner, "dir")?;
                // An object store URL is taken as it is, never joined to
                // the job file's directory.
                let path = if let Some(rest) = text.strip_prefix("s3://") {
                    // s3://bucket[/prefix]: plain parts only, so the store
                    // opens and keys cannot climb out of the prefix.
                    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
                    if parts.iter().any(|p| {
                        p.is_empty() || *p == "." || *p == ".." || p.contains(['\\', '\0'])
                    }) {
                        return Err(cx.err_at(
                            dir.span().start,
                            format!(
                                "[checkpoint] `dir = \"{text}\"`: expected s3://bucket/prefix with plain path parts"
                            ),
                        ));
                    }
                    PathBuf::from(text)
                } else {
                    self.base_dir.join(text)
                };
                (path, cx.line_of(dir.span().start))
            }
            (None, None) => {
                return Err(cx.err_at(
                    c.span().start,
                    "[checkpoint] needs `dir` (or pass --checkpoint-dir)",
                ));
            }
        };
        Ok(Some(CheckpointSpec {
            interval_ms,
            dir,
            retain: bounded(cx, raw.retain.as_ref(), 3, 1..=RETAIN_MAX, owner, "retain")?,
            incremental: raw.incremental.unwrap_or(true),
            timeout_ms: bounded(
                cx,
                raw.timeout_ms.as_ref(),
                600_000,
                1..=DURATION_MS_MAX,
                owner,
                "timeout_ms",
            )?,
            dir_line,
            s3_endpoint: match &raw.s3_endpoint {
                Some(e) => {
                    let text = bounded_text(cx, e, PATH_BYTES_MAX, owner, "s3_endpoint")?;
                    // Caught here, not as a failed upload at the first checkpoint.
                    let scheme_ok = ["http://", "https://"].iter().any(|s| {
                        text.strip_prefix(s).is_some_and(|host| {
                            !host.is_empty() && !host.contains(char::is_whitespace)
                        })
                    });
                    if !scheme_ok {
                        return Err(cx.err_at(
                            e.span().start,
                            format!(
                                "{owner} field `s3_endpoint`: {text:?} is not an http:// or https:// URL"
                            ),
                        ));
                    }
                    Some(text.to_string())
                }
                None => None,
            },
            s3_region: match &raw.s3_region {
                Some(r) => {
                    Some(bounded_text(cx, r, PATH_BYTES_MAX, owner, "s3_region")?.to_string())
                }
                None => None,
            },
            s3_allow_http: raw.s3_allow_http,
        }))
    }

    fn parallelism(
        &self,
        value: Option<&Spanned<u32>>,
        default: u32,
        max_parallelism: u32,
    ) -> Result<u32, JobError> {
        match value {
            None => Ok(default),
            Some(p) => {
                let v = *p.get_ref();
                if v == 0 || v > PARALLELISM_MAX || v > max_parallelism {
                    Err(self.cx.err_at(
                        p.span().start,
                        format!(
                            "parallelism {v} is out of range: it must be between 1 and {} (max_parallelism)",
                            max_parallelism.min(PARALLELISM_MAX)
                        ),
                    ))
                } else {
                    Ok(v)
                }
            }
        }
    }

    /// `file_default`: the parallelism of a file source that names none
    /// (`--parallelism`; otherwise 1).
    fn source(
        &self,
        s: &Spanned<RawSource>,
        max_parallelism: u32,
        file_default: Option<u32>,
    ) -> Result<SourceSpec, JobError> {
        let cx = &self.cx;
        let raw = s.get_ref();
        let name = raw.name.get_ref().clone();
        let at = s.span().start;
        let owner = format!("source `{name}`: ");
        let owner = owner.as_str();
        let not_for = |field: &str, present: bool, kind: &str| -> Result<(), JobError> {
            if present {
                Err(cx.err_at(
                    at,
                    format!("source `{name}`: field `{field}` does not apply to a {kind} source"),
                ))
            } else {
                Ok(())
            }
        };
        let mut path_line = cx.line_of(at);
        let kind = match raw.kind {
            RawSourceKind::File => {
                for (field, present) in [
                    ("records", raw.records.is_some()),
                    ("keys", raw.keys.is_some()),
                    ("start_ms", raw.start_ms.is_some()),
                    ("interval_ms", raw.interval_ms.is_some()),
                    ("disorder_ms", raw.disorder_ms.is_some()),
                    ("value_bytes", raw.value_bytes.is_some()),
                ] {
                    not_for(field, present, "file")?;
                }
                let path = raw.path.as_ref().ok_or_else(|| {
                    cx.err_at(at, format!("source `{name}`: a file source needs `path`"))
                })?;
                path_line = cx.line_of(path.span().start);
                let path = bounded_text(cx, path, PATH_BYTES_MAX, owner, "path")?;
                let format = raw.format.unwrap_or(FileFormat::Lines);
                if format == FileFormat::Lines
                    && let Some(field) = [&raw.timestamp_field, &raw.key_field]
                        .into_iter()
                        .flatten()
                        .next()
                {
                    return Err(cx.err_at(
                        field.span().start,
                        format!("source `{name}`: plain lines have no fields; use format = \"jsonl\" or \"csv\""),
                    ));
                }
                let field_name = |value: &Option<Spanned<String>>, field: &str| {
                    value
                        .as_ref()
                        .map(|v| {
                            bounded_text(cx, v, FIELD_NAME_BYTES_MAX, owner, field)
                                .map(String::from)
                        })
                        .transpose()
                };
                SourceKind::File {
                    path: self.base_dir.join(path),
                    format,
                    timestamp_field: field_name(&raw.timestamp_field, "timestamp_field")?,
                    key_field: field_name(&raw.key_field, "key_field")?,
                    max_line_bytes: bounded(
                        cx,
                        raw.max_line_bytes.as_ref(),
                        LINE_BYTES_DEFAULT as u64,
                        1..=LINE_BYTES_MAX,
                        owner,
                        "max_line_bytes",
                    )? as usize,
                }
            }
            RawSourceKind::Generator => {
                for (field, present) in [
                    ("path", raw.path.is_some()),
                    ("format", raw.format.is_some()),
                    ("timestamp_field", raw.timestamp_field.is_some()),
                    ("key_field", raw.key_field.is_some()),
                    ("max_line_bytes", raw.max_line_bytes.is_some()),
                ] {
                    not_for(field, present, "generator")?;
                }
                let records = raw.records.as_ref().ok_or_else(|| {
                    cx.err_at(at, format!("source `{name}`: a generator needs `records`"))
                })?;
                let records = bounded(
                    cx,
                    Some(records),
                    0,
                    0..=GENERATOR_RECORDS_MAX,
                    owner,
                    "records",
                )?;
                let keys = bounded(
                    cx,
                    raw.keys.as_ref(),
                    16,
                    1..=GENERATOR_KEYS_MAX,
                    owner,
                    "keys",
                )?;
                let duration = 0..=DURATION_MS_MAX as i64;
                let interval_ms = bounded(
                    cx,
                    raw.interval_ms.as_ref(),
                    1,
                    duration.clone(),
                    owner,
                    "interval_ms",
                )?;
                let disorder_ms = bounded(
                    cx,
                    raw.disorder_ms.as_ref(),
                    0,
                    duration,
                    owner,
                    "disorder_ms",
                )?;
                let start_ms = bounded(
                    cx,
                    raw.start_ms.as_ref(),
                    0,
                    -EVENT_TIME_MS_MAX..=EVENT_TIME_MS_MAX,
                    owner,
                    "start_ms",
                )?;
                // The last record's event time must stay in range too:
                // start_ms + (records - 1) × interval_ms, computed wide.
                let last = i128::from(start_ms)
                    + i128::from(records.saturating_sub(1)) * i128::from(interval_ms);
                if last > i128::from(EVENT_TIME_MS_MAX) {
                    let at = raw.interval_ms.as_ref().map_or(at, |i| i.span().start);
                    return Err(cx.err_at(
                        at,
                        format!(
                            "{owner}start_ms + (records - 1) × interval_ms = {last} exceeds the largest event time {EVENT_TIME_MS_MAX}"
                        ),
                    ));
                }
                SourceKind::Generator(GeneratorSpec {
                    records,
                    keys,
                    start_ms,
                    interval_ms,
                    disorder_ms,
                    value_bytes: bounded(
                        cx,
                        raw.value_bytes.as_ref(),
                        0,
                        0..=GENERATOR_VALUE_BYTES_MAX,
                        owner,
                        "value_bytes",
                    )?,
                })
            }
            RawSourceKind::Nexmark => self.nexmark(raw, at, owner)?,
            RawSourceKind::Kafka => {
                SourceKind::Kafka(super::kafka::source(cx, raw, &name, at, owner)?)
            }
        };
        if !matches!(raw.kind, RawSourceKind::Kafka) {
            super::kafka::reject_source_fields(cx, raw, at, owner)?;
        }
        if !matches!(raw.kind, RawSourceKind::Nexmark) {
            for (field, present) in [
                ("events", raw.events.is_some()),
                ("seed", raw.seed.is_some()),
                ("events_per_second", raw.events_per_second.is_some()),
            ] {
                if present {
                    return Err(cx.err_at(
                        at,
                        format!(
                            "source `{name}`: field `{field}` applies only to a nexmark source"
                        ),
                    ));
                }
            }
        }
        let duration = 0..=DURATION_MS_MAX;
        // As Flink's default parallelism covers sources, `--parallelism`
        // reads a file as that many byte ranges; `[job] parallelism` does
        // not, since ranges of a time-ordered file hold the watermark back
        // to the slowest. A generator deals its sequence out by split
        // count: it keeps its own.
        let parallelism = match (&raw.parallelism, file_default, &kind) {
            (None, Some(p), SourceKind::File { .. }) => p,
            _ => self.parallelism(raw.parallelism.as_ref(), 1, max_parallelism)?,
        };
        Ok(SourceSpec {
            name: name.clone(),
            parallelism,
            kind,
            watermark_delay_ms: bounded(
                cx,
                raw.watermark_delay_ms.as_ref(),
                0,
                duration.clone(),
                owner,
                "watermark_delay_ms",
            )?,
            idle_timeout_ms: bounded_opt(
                cx,
                raw.idle_timeout_ms.as_ref(),
                duration,
                owner,
                "idle_timeout_ms",
            )?,
            records_per_second: bounded_opt(
                cx,
                raw.records_per_second.as_ref(),
                1..=RECORDS_PER_SECOND_MAX,
                owner,
                "records_per_second",
            )?,
            on_parse_error: raw.on_parse_error.unwrap_or_default(),
            line: cx.line_of(at),
            path_line,
        })
    }

    /// `kind = "nexmark"`: the Nexmark event generator.
    fn nexmark(&self, raw: &RawSource, at: usize, owner: &str) -> Result<SourceKind, JobError> {
        let cx = &self.cx;
        none_of(
            cx,
            at,
            owner,
            "nexmark",
            &[
                ("path", raw.path.is_some()),
                ("format", raw.format.is_some()),
                ("timestamp_field", raw.timestamp_field.is_some()),
                ("key_field", raw.key_field.is_some()),
                ("max_line_bytes", raw.max_line_bytes.is_some()),
                ("records", raw.records.is_some()),
                ("keys", raw.keys.is_some()),
                ("interval_ms", raw.interval_ms.is_some()),
                ("value_bytes", raw.value_bytes.is_some()),
            ],
        )?;
        let events = raw
            .events
            .as_ref()
            .ok_or_else(|| cx.err_at(at, format!("{owner}a nexmark source needs `events`")))?;
        let events = bounded(
            cx,
            Some(events),
            0,
            0..=GENERATOR_RECORDS_MAX,
            owner,
            "events",
        )?;
        let events_per_second = bounded(
            cx,
            raw.events_per_second.as_ref(),
            10_000,
            1..=RECORDS_PER_SECOND_MAX,
            owner,
            "events_per_second",
        )?;
        let start_ms = bounded(
            cx,
            raw.start_ms.as_ref(),
            NEXMARK_START_MS_DEFAULT,
            -EVENT_TIME_MS_MAX..=EVENT_TIME_MS_MAX,
            owner,
            "start_ms",
        )?;
        let disorder_ms = bounded(
            cx,
            raw.disorder_ms.as_ref(),
            0,
            0..=DURATION_MS_MAX as i64,
            owner,
            "disorder_ms",
        )?;
        // The last event's time, computed wide, must stay in range.
        let last = i128::from(start_ms)
            + i128::from(events.saturating_sub(1)) * 1000 / i128::from(events_per_second);
        if last > i128::from(EVENT_TIME_MS_MAX) {
            return Err(cx.err_at(
                at,
                format!("{owner}the last event's time {last} exceeds the largest event time {EVENT_TIME_MS_MAX}"),
            ));
        }
        Ok(SourceKind::Nexmark(NexmarkSpec {
            events,
            seed: raw.seed.as_ref().map_or(0, |s| *s.get_ref()),
            start_ms,
            events_per_second,
            disorder_ms,
        }))
    }

    /// Whether source `node` sends the records it cannot parse to `node.dead-letter`.
    fn dead_letters(&self, node: &str) -> bool {
        self.raw.source.iter().any(|s| {
            let s = s.get_ref();
            s.name.get_ref() == node && s.on_parse_error == Some(OnParseError::DeadLetter)
        })
    }

    fn stream_refs(
        &self,
        owner: &str,
        input: &Spanned<OneOrMany>,
        parallelism: &HashMap<String, u32>,
        late_outputs: &HashSet<String>,
    ) -> Result<Vec<StreamRef>, JobError> {
        let cx = &self.cx;
        let at = input.span().start;
        let names = input.get_ref().to_vec();
        if names.len() > INPUTS_MAX {
            return Err(cx.err_at(
                at,
                format!(
                    "`{owner}`: `input` names {} streams; at most {INPUTS_MAX} are allowed",
                    names.len()
                ),
            ));
        }
        if names.is_empty() {
            return Err(cx.err_at(
                at,
                format!("`{owner}`: `input` must name at least one stream"),
            ));
        }
        let mut refs = Vec::new();
        for name in names {
            let (node, late, dead_letter) = if let Some(node) = name.strip_suffix(".late") {
                (node.to_string(), true, false)
            } else if let Some(node) = name.strip_suffix(".dead-letter") {
                (node.to_string(), false, true)
            } else {
                (name.clone(), false, false)
            };
            if !parallelism.contains_key(&node) {
                let mut known: Vec<_> = parallelism.keys().cloned().collect();
                known.sort();
                return Err(cx.err_at(
                    at,
                    format!(
                        "`{owner}`: input `{}` names no source or operator (known: {})",
                        crate::text::cut(&name, 2 * NAME_CHARS_MAX),
                        crate::text::cut(&known.join(", "), 1024)
                    ),
                ));
            }
            if node == owner {
                return Err(cx.err_at(at, format!("`{owner}` cannot read its own output")));
            }
            if late && !late_outputs.contains(&node) {
                return Err(cx.err_at(
                    at,
                    format!("`{owner}`: `{name}` needs late_records = \"side-output\" on operator `{node}`"),
                ));
            }
            if dead_letter && !self.dead_letters(&node) {
                return Err(cx.err_at(
                    at,
                    format!("`{owner}`: `{name}` needs on_parse_error = \"dead-letter\" on source `{node}`"),
                ));
            }
            refs.push(StreamRef {
                node,
                late,
                dead_letter,
            });
        }
        Ok(refs)
    }

    fn operator(
        &self,
        o: &Spanned<RawOperator>,
        parallelism: u32,
        all_parallelism: &HashMap<String, u32>,
        late_outputs: &HashSet<String>,
    ) -> Result<OperatorSpec, JobError> {
        let cx = &self.cx;
        let raw = o.get_ref();
        let name = raw.name.get_ref().clone();
        let streams = self.stream_refs(&name, &raw.input, all_parallelism, late_outputs)?;
        let mut inputs = Vec::new();
        for stream in streams {
            let upstream = all_parallelism[&stream.node];
            let edge = match &raw.edge {
                Some(e) => {
                    let edge = *e.get_ref();
                    if edge == Edge::Forward && upstream != parallelism {
                        return Err(cx.err_at(
                            e.span().start,
                            format!(
                                "operator `{name}`: a forward edge needs equal parallelism, but `{}` has {upstream} and `{name}` has {parallelism}",
                                stream.node
                            ),
                        ));
                    }
                    edge
                }
                None if upstream == parallelism => Edge::Forward,
                None => Edge::Rebalance,
            };
            inputs.push(Input { stream, edge });
        }
        let owner = format!("operator `{name}`: ");
        let owner = owner.as_str();
        let wasm = bounded_text(cx, &raw.wasm, PATH_BYTES_MAX, owner, "wasm")?;
        if wasm.trim().is_empty() {
            return Err(cx.err_at(
                raw.wasm.span().start,
                format!("operator `{name}`: `wasm` is empty"),
            ));
        }
        let limits = guest_limits(cx, raw, owner)?;
        let config = self.config(raw, owner)?;
        Ok(OperatorSpec {
            name,
            wasm: self.base_dir.join(wasm),
            parallelism,
            inputs,
            late_records: raw.late_records.unwrap_or(LatePolicy::Drop),
            limits,
            config,
            line: cx.line_of(o.span().start),
            wasm_line: cx.line_of(raw.wasm.span().start),
        })
    }

    /// The `config` table as (key, text) pairs for `open`, bounded in
    /// entries and bytes, without the host's reserved keys.
    fn config(&self, raw: &RawOperator, owner: &str) -> Result<Vec<(String, String)>, JobError> {
        let Some(table) = &raw.config else {
            return Ok(Vec::new());
        };
        let cx = &self.cx;
        let at = table.span().start;
        if table.get_ref().len() > CONFIG_ENTRIES_MAX {
            return Err(cx.err_at(
                at,
                format!(
                    "{owner}`config` has {} entries; at most {CONFIG_ENTRIES_MAX} are allowed",
                    table.get_ref().len()
                ),
            ));
        }
        let mut bytes = 0usize;
        let mut config = Vec::with_capacity(table.get_ref().len());
        for (key, value) in table.get_ref() {
            if key.starts_with(RESERVED_CONFIG_PREFIX) {
                // The host tells the guest things under these (attempt,
                // version, whether it calls `prepare-snapshot`); a job file
                // that set them could make a guest hold state back that the
                // host never asks for.
                return Err(cx.err_at(
                    at,
                    format!(
                        "{owner}`config` key `{key}` is reserved: keys starting with \
                         `{RESERVED_CONFIG_PREFIX}` are set by the host"
                    ),
                ));
            }
            let text = match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            bytes += key.len() + text.len();
            if bytes > CONFIG_BYTES_MAX {
                return Err(cx.err_at(
                    at,
                    format!("{owner}`config` holds more than {CONFIG_BYTES_MAX} bytes"),
                ));
            }
            config.push((key.clone(), text));
        }
        Ok(config)
    }

    fn sink(
        &self,
        s: &Spanned<RawSink>,
        parallelism: &HashMap<String, u32>,
        late_outputs: &HashSet<String>,
    ) -> Result<SinkSpec, JobError> {
        let cx = &self.cx;
        let raw = s.get_ref();
        let name = raw.name.get_ref().clone();
        let inputs = self.stream_refs(&name, &raw.input, parallelism, late_outputs)?;
        let mut path_line = cx.line_of(s.span().start);
        if !matches!(raw.kind, RawSinkKind::Kafka) {
            super::kafka::reject_sink_fields(cx, raw, s.span().start, &format!("sink `{name}`: "))?;
        }
        let kind = match raw.kind {
            RawSinkKind::Kafka => {
                SinkKind::Kafka(super::kafka::sink(cx, raw, &name, s.span().start)?)
            }
            RawSinkKind::File => {
                let path = raw.path.as_ref().ok_or_else(|| {
                    cx.err_at(
                        s.span().start,
                        format!("sink `{name}`: a file sink needs `path`"),
                    )
                })?;
                path_line = cx.line_of(path.span().start);
                let path = bounded_text(
                    cx,
                    path,
                    PATH_BYTES_MAX,
                    &format!("sink `{name}`: "),
                    "path",
                )?;
                let base = self.overrides.output_dir.as_ref().unwrap_or(&self.base_dir);
                let path = base.join(path);
                if raw.exactly_once.as_ref().is_some_and(|e| *e.get_ref()) {
                    SinkKind::TransactionalFile { dir: path }
                } else {
                    SinkKind::File { path }
                }
            }
            RawSinkKind::Stdout | RawSinkKind::Discard => {
                if let Some(p) = &raw.path {
                    return Err(cx.err_at(
                        p.span().start,
                        format!("sink `{name}`: only a file sink takes a `path`"),
                    ));
                }
                if let Some(e) = &raw.exactly_once {
                    return Err(cx.err_at(
                        e.span().start,
                        format!("sink `{name}`: only a file sink takes `exactly_once`"),
                    ));
                }
                if matches!(raw.kind, RawSinkKind::Stdout) {
                    SinkKind::Stdout
                } else {
                    SinkKind::Discard
                }
            }
        };
        Ok(SinkSpec {
            name,
            kind,
            format: raw.format.unwrap_or(SinkFormat::Value),
            inputs,
            line: cx.line_of(s.span().start),
            path_line,
        })
    }
}

/// Orders operators so each comes after the operators it reads; rejects cycles.
fn topological_order(
    cx: &Cx<'_>,
    operators: Vec<OperatorSpec>,
    raw: &[Spanned<RawOperator>],
) -> Result<Vec<OperatorSpec>, JobError> {
    let index: HashMap<&str, usize> = operators
        .iter()
        .enumerate()
        .map(|(i, o)| (o.name.as_str(), i))
        .collect();
    let mut state = vec![0u8; operators.len()]; // 0 new, 1 on stack, 2 done
    let mut order = Vec::with_capacity(operators.len());
    fn visit(
        i: usize,
        operators: &[OperatorSpec],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
    ) -> Result<(), usize> {
        match state[i] {
            2 => return Ok(()),
            1 => return Err(i),
            _ => {}
        }
        state[i] = 1;
        for input in &operators[i].inputs {
            if let Some(&j) = index.get(input.stream.node.as_str()) {
                visit(j, operators, index, state, order)?;
            }
        }
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..operators.len() {
        visit(i, &operators, &index, &mut state, &mut order).map_err(|at| {
            cx.err_at(
                raw[at].span().start,
                format!(
                    "operator `{}` is part of a cycle: its inputs lead back to itself",
                    operators[at].name
                ),
            )
        })?;
    }
    let mut slots: Vec<Option<OperatorSpec>> = operators.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|i| slots[i].take().expect("each operator ordered once"))
        .collect())
}

/// The operator's sandbox limits: defaults, overridden per field.
fn guest_limits(cx: &Cx<'_>, raw: &RawOperator, owner: &str) -> Result<GuestLimits, JobError> {
    let d = GuestLimits::default();
    let mb = |v: &Option<Spanned<u64>>, default: usize, range, field| -> Result<usize, JobError> {
        let mb = bounded_opt(cx, v.as_ref(), range, owner, field)?;
        Ok(mb.map_or(default, |mb| (mb as usize) << 20))
    };
    let count = |v: &Option<Spanned<u64>>, default: u64, range, field| {
        bounded(cx, v.as_ref(), default, range, owner, field)
    };
    Ok(GuestLimits {
        call_timeout_ms: count(
            &raw.call_timeout_ms,
            d.call_timeout_ms,
            1..=CALL_TIMEOUT_MS_MAX,
            "call_timeout_ms",
        )?,
        memory_max_bytes: mb(
            &raw.memory_max_mb,
            d.memory_max_bytes,
            MEMORY_MAX_MB,
            "memory_max_mb",
        )?,
        output_max_bytes: mb(
            &raw.output_max_mb,
            d.output_max_bytes,
            OUTPUT_MAX_MB,
            "output_max_mb",
        )?,
        key_max_bytes: count(
            &raw.key_max_bytes,
            d.key_max_bytes as u64,
            KEY_MAX_BYTES,
            "key_max_bytes",
        )? as usize,
        state_value_max_bytes: mb(
            &raw.state_value_max_mb,
            d.state_value_max_bytes,
            STATE_VALUE_MAX_MB,
            "state_value_max_mb",
        )?,
        state_read_max_bytes: mb(
            &raw.state_read_max_mb,
            d.state_read_max_bytes,
            STATE_READ_MAX_MB,
            "state_read_max_mb",
        )?,
        state_memory_max_bytes: mb(
            &raw.state_memory_max_mb,
            d.state_memory_max_bytes,
            STATE_MEMORY_MAX_MB,
            "state_memory_max_mb",
        )?,
        timers_max: count(
            &raw.timers_max,
            d.timers_max as u64,
            TIMERS_MAX,
            "timers_max",
        )? as usize,
        timers_memory_max_bytes: mb(
            &raw.timers_memory_max_mb,
            d.timers_memory_max_bytes,
            TIMERS_MEMORY_MAX_MB,
            "timers_memory_max_mb",
        )?,
        log_lines_per_second: count(
            &raw.log_lines_per_second,
            u64::from(d.log_lines_per_second),
            LOG_LINES_PER_SECOND,
            "log_lines_per_second",
        )? as u32,
    })
}

/// Refuses a job whose channels (and the batch slots they allocate up
/// front) exceed [`CHANNELS_MAX`] / [`CHANNEL_SLOTS_MAX`], before anything
/// builds them. Counted like the planner: a forward edge has one channel
/// per subtask, any other edge one per producer × consumer subtask; a sink
/// is one consumer.
fn check_channels(
    cx: &Cx<'_>,
    sources: &[SourceSpec],
    operators: &[OperatorSpec],
    sinks: &[SinkSpec],
    job: &RawJob,
    channel_batches_max: usize,
) -> Result<usize, JobError> {
    let parallelism: HashMap<&str, u64> = sources
        .iter()
        .map(|s| (s.name.as_str(), u64::from(s.parallelism)))
        .chain(
            operators
                .iter()
                .map(|o| (o.name.as_str(), u64::from(o.parallelism))),
        )
        .collect();
    let of = |node: &str| parallelism.get(node).copied().unwrap_or(1);
    let mut channels: u64 = 0;
    for o in operators {
        for input in &o.inputs {
            channels += match input.edge {
                Edge::Forward => u64::from(o.parallelism),
                _ => of(&input.stream.node) * u64::from(o.parallelism),
            };
        }
    }
    for s in sinks {
        channels += s.inputs.iter().map(|i| of(&i.node)).sum::<u64>();
    }
    let channel_batches_max = match job.channel_batches_max {
        Some(_) => channel_batches_max,
        None => default_channel_batches(channels),
    };
    let slots = channels.saturating_mul(channel_batches_max as u64);
    let at = job
        .channel_batches_max
        .as_ref()
        .map_or(job.name.span().start, |c| c.span().start);
    if channels > CHANNELS_MAX {
        return Err(cx.err_at(
            at,
            format!("the job needs {channels} channels between subtasks; at most {CHANNELS_MAX} are allowed (lower the parallelism)"),
        ));
    }
    if slots > CHANNEL_SLOTS_MAX {
        return Err(cx.err_at(
            at,
            format!("[job] field `channel_batches_max` = {channel_batches_max} over {channels} channels makes {slots} batch slots; at most {CHANNEL_SLOTS_MAX} are allowed"),
        ));
    }
    Ok(channel_batches_max)
}

/// `channel_batches_max` when the job does not set it.
fn default_channel_batches(channels: u64) -> usize {
    if channels.saturating_mul(CHANNEL_BATCHES_DEFAULT as u64) <= CHANNEL_SLOTS_MAX {
        CHANNEL_BATCHES_DEFAULT
    } else {
        CHANNEL_BATCHES_FALLBACK
    }
}
