//! The job file: parsing, validation and the resolved job graph.
//!
//! A job file is TOML with one `[job]` table and `[[source]]`, `[[operator]]`
//! and `[[sink]]` arrays. Every error names the file, the line and the field
//! at fault. Relative paths are resolved against the job file's directory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::key_group::DEFAULT_MAX_PARALLELISM;

/// A job file that cannot be run, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for JobError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackendKind {
    Memory,
    Rocksdb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Edge {
    /// Subtask i sends to subtask i; needs equal parallelism.
    Forward,
    /// Round-robin over all downstream subtasks.
    Rebalance,
    /// By key group of the record's key; the downstream operator is keyed.
    Hash,
    /// Every record to every downstream subtask.
    Broadcast,
}

/// What happens to records that arrive behind a keyed operator's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatePolicy {
    /// Count them and drop them (the default).
    Drop,
    /// Count them and send them to the `<operator>.late` stream.
    SideOutput,
    /// Count them and hand them to the operator like any other record.
    Process,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    /// One record per line; the value is the line.
    Lines,
    /// One JSON object per line; the value is the object's JSON text.
    Jsonl,
    /// CSV with a header row; the value is a JSON object of the row.
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkFormat {
    /// The record's value as a line of text.
    Value,
    /// `key<TAB>value` per line.
    KeyValue,
    /// `{"key":..., "value":..., "timestamp":...}` per line.
    Jsonl,
}

/// Which stream of a node an input reads: its main output, or the late
/// records it side-outputs (`name.late`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamRef {
    pub node: String,
    pub late: bool,
}

impl fmt::Display for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.late {
            write!(f, "{}.late", self.node)
        } else {
            write!(f, "{}", self.node)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub stream: StreamRef,
    pub edge: Edge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    File {
        path: PathBuf,
        format: FileFormat,
        timestamp_field: Option<String>,
        key_field: Option<String>,
    },
    Generator(GeneratorSpec),
}

/// A deterministic generator: record `seq` (0-based) has key `key-{seq % keys}`,
/// event time `start_ms + seq * interval_ms` (minus a deterministic jitter of
/// up to `disorder_ms`), and value `{"seq":..,"key":..,"ts":..}` padded to
/// at least `value_bytes`. Split `i` of `p` emits the records with `seq % p == i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorSpec {
    pub records: u64,
    pub keys: u64,
    pub start_ms: i64,
    pub interval_ms: i64,
    pub disorder_ms: i64,
    pub value_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub name: String,
    pub parallelism: u32,
    pub kind: SourceKind,
    pub watermark_delay_ms: u64,
    pub idle_timeout_ms: Option<u64>,
    /// Throttles each split to this many records per second.
    pub records_per_second: Option<u64>,
    pub line: usize,
}

/// Sandbox limits of an operator: what one call may cost, and everything the
/// host keeps on the guest's behalf (per subtask). Exceeding one fails the
/// job with the operator's name and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    pub call_timeout_ms: u64,
    /// Sum of all linear memories and tables of the instance.
    pub memory_max_bytes: usize,
    pub output_max_bytes: usize,
    /// Longest key the guest may pass for state (including map keys) or timers.
    pub key_max_bytes: usize,
    /// Largest single state value (value put, list element, map value).
    pub state_value_max_bytes: usize,
    /// Bytes one call may read back from state (a list or map iteration).
    pub state_read_max_bytes: usize,
    /// Pending timers (event- and processing-time) per subtask.
    pub timers_max: usize,
    /// Host memory charged for pending timers per subtask (keys plus a fixed
    /// overhead per timer).
    pub timers_memory_max_bytes: usize,
    /// Guest log lines per second per subtask; the rest are dropped and counted.
    pub log_lines_per_second: u32,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            call_timeout_ms: 5_000,
            memory_max_bytes: 256 << 20,
            output_max_bytes: 64 << 20,
            key_max_bytes: 64 << 10,
            state_value_max_bytes: 16 << 20,
            state_read_max_bytes: 64 << 20,
            timers_max: 1_000_000,
            timers_memory_max_bytes: 128 << 20,
            log_lines_per_second: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperatorSpec {
    pub name: String,
    pub wasm: PathBuf,
    pub parallelism: u32,
    pub inputs: Vec<Input>,
    pub late_records: LatePolicy,
    pub limits: GuestLimits,
    pub config: Vec<(String, String)>,
    pub line: usize,
}

impl OperatorSpec {
    /// Keyed state and timers exist only behind hash edges.
    pub fn is_keyed(&self) -> bool {
        self.inputs.iter().all(|i| i.edge == Edge::Hash)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    /// Lines appended to one file; after a restore it is cut back to what
    /// the checkpoint saw, so readers may see output that is later undone.
    File {
        path: PathBuf,
    },
    /// Exactly-once: a directory of part files, each staged while a
    /// checkpoint interval runs and renamed into place when it completes.
    TransactionalFile {
        dir: PathBuf,
    },
    Stdout,
    /// Counts records and throws them away (for benchmarks).
    Discard,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    pub name: String,
    pub kind: SinkKind,
    pub format: SinkFormat,
    pub inputs: Vec<StreamRef>,
    pub line: usize,
}

/// A validated job, ready to schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub file: PathBuf,
    pub max_parallelism: u32,
    pub batch_records_max: usize,
    pub channel_batches_max: usize,
    pub state_backend: StateBackendKind,
    pub state_dir: Option<PathBuf>,
    pub checkpoint: Option<CheckpointSpec>,
    pub restart: RestartSpec,
    pub sources: Vec<SourceSpec>,
    /// In topological order: every operator comes after its inputs.
    pub operators: Vec<OperatorSpec>,
    pub sinks: Vec<SinkSpec>,
}

/// `[checkpoint]`: periodic aligned-barrier checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSpec {
    pub interval_ms: u64,
    /// Checkpoint storage; the job's checkpoints go to `dir/<job name>`.
    pub dir: PathBuf,
    /// Completed checkpoints kept; older ones are deleted.
    pub retain: usize,
    /// RocksDB: upload only SST files that earlier checkpoints lack.
    pub incremental: bool,
    /// A checkpoint not complete after this long is aborted.
    pub timeout_ms: u64,
}

/// `[restart]`: what happens when a task fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartSpec {
    /// Restarts allowed per run before the job fails (0 = fail at once).
    pub attempts: u32,
    pub delay_ms: u64,
}

impl Default for RestartSpec {
    fn default() -> Self {
        RestartSpec {
            attempts: 0,
            delay_ms: 1000,
        }
    }
}

impl JobSpec {
    pub fn parallelism_of(&self, node: &str) -> Option<u32> {
        self.sources
            .iter()
            .find(|s| s.name == node)
            .map(|s| s.parallelism)
            .or_else(|| {
                self.operators
                    .iter()
                    .find(|o| o.name == node)
                    .map(|o| o.parallelism)
            })
    }

    pub fn operator(&self, name: &str) -> Option<&OperatorSpec> {
        self.operators.iter().find(|o| o.name == name)
    }
}

// ---------------------------------------------------------------------------
// Raw TOML shapes.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobFile {
    job: Spanned<RawJob>,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
    #[serde(default)]
    operator: Vec<Spanned<RawOperator>>,
    #[serde(default)]
    sink: Vec<Spanned<RawSink>>,
    checkpoint: Option<Spanned<RawCheckpoint>>,
    restart: Option<Spanned<RawRestart>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckpoint {
    interval_ms: Spanned<u64>,
    dir: Option<String>,
    retain: Option<Spanned<usize>>,
    incremental: Option<bool>,
    timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawRestartStrategy {
    FixedDelay,
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    strategy: RawRestartStrategy,
    attempts: Option<u32>,
    delay_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    parallelism: Option<Spanned<u32>>,
    max_parallelism: Option<Spanned<u32>>,
    batch_records_max: Option<Spanned<usize>>,
    channel_batches_max: Option<Spanned<usize>>,
    state_backend: Option<StateBackendKind>,
    state_dir: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawSourceKind {
    File,
    Generator,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    kind: RawSourceKind,
    parallelism: Option<Spanned<u32>>,
    watermark_delay_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    records_per_second: Option<Spanned<u64>>,
    // file
    path: Option<Spanned<String>>,
    format: Option<FileFormat>,
    timestamp_field: Option<Spanned<String>>,
    key_field: Option<Spanned<String>>,
    // generator
    records: Option<Spanned<u64>>,
    keys: Option<Spanned<u64>>,
    start_ms: Option<Spanned<i64>>,
    interval_ms: Option<Spanned<i64>>,
    disorder_ms: Option<Spanned<i64>>,
    value_bytes: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    name: Spanned<String>,
    wasm: Spanned<String>,
    input: Spanned<OneOrMany>,
    edge: Option<Spanned<Edge>>,
    parallelism: Option<Spanned<u32>>,
    late_records: Option<LatePolicy>,
    call_timeout_ms: Option<Spanned<u64>>,
    memory_max_mb: Option<Spanned<u64>>,
    output_max_mb: Option<Spanned<u64>>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawSinkKind {
    File,
    Stdout,
    Discard,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: Spanned<String>,
    kind: RawSinkKind,
    input: Spanned<OneOrMany>,
    path: Option<Spanned<String>>,
    format: Option<SinkFormat>,
    exactly_once: Option<Spanned<bool>>,
}

// ---------------------------------------------------------------------------

/// Command-line settings that take precedence over the job file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `[job] parallelism` (operators with their own keep theirs).
    pub parallelism: Option<u32>,
    pub state_backend: Option<StateBackendKind>,
    /// Relative sink paths are resolved here instead of next to the job file.
    pub output_dir: Option<PathBuf>,
    /// Replaces `[checkpoint] dir`.
    pub checkpoint_dir: Option<PathBuf>,
}

/// Reads and validates a job file.
pub fn load(path: &Path) -> Result<JobSpec, JobError> {
    load_with(path, &Overrides::default())
}

/// Reads and validates a job file, with command-line overrides.
pub fn load_with(path: &Path, overrides: &Overrides) -> Result<JobSpec, JobError> {
    let text = std::fs::read_to_string(path).map_err(|e| JobError {
        file: path.to_path_buf(),
        line: None,
        message: format!("cannot read job file: {e}"),
    })?;
    parse_with(&text, path, overrides)
}

/// Parses and validates job file text; `path` names it in errors and anchors
/// relative paths.
pub fn parse(text: &str, path: &Path) -> Result<JobSpec, JobError> {
    parse_with(text, path, &Overrides::default())
}

pub fn parse_with(text: &str, path: &Path, overrides: &Overrides) -> Result<JobSpec, JobError> {
    let cx = Cx { text, file: path };
    let raw: RawJobFile = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Resolver {
        cx,
        base_dir,
        raw,
        overrides,
    }
    .resolve()
}

struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Cx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    fn err_at(&self, offset: usize, message: impl Into<String>) -> JobError {
        JobError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(offset)),
            message: message.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> JobError {
        let line = e.span().map(|s| self.line_of(s.start));
        JobError {
            file: self.file.to_path_buf(),
            line,
            message: e.message().trim().to_string(),
        }
    }
}

struct Resolver<'a> {
    cx: Cx<'a>,
    base_dir: PathBuf,
    raw: RawJobFile,
    overrides: &'a Overrides,
}

const PARALLELISM_MAX: u32 = 1024;

impl Resolver<'_> {
    fn resolve(self) -> Result<JobSpec, JobError> {
        let cx = &self.cx;
        let job = self.raw.job.get_ref();
        let job_line = self.raw.job.span().start;
        if job.name.trim().is_empty() {
            return Err(cx.err_at(job_line, "[job] name must not be empty"));
        }
        let max_parallelism = match &job.max_parallelism {
            Some(m) if !(1..=32768).contains(m.get_ref()) => {
                return Err(cx.err_at(
                    m.span().start,
                    "max_parallelism must be between 1 and 32768",
                ));
            }
            Some(m) => *m.get_ref(),
            None => DEFAULT_MAX_PARALLELISM,
        };
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
        let batch_records_max = positive(
            cx,
            job.batch_records_max.as_ref(),
            1024,
            "batch_records_max",
        )?;
        let channel_batches_max = positive(
            cx,
            job.channel_batches_max.as_ref(),
            8,
            "channel_batches_max",
        )?;

        let mut names: HashMap<String, usize> = HashMap::new();
        let mut claim = |name: &Spanned<String>, what: &str| -> Result<(), JobError> {
            let n = name.get_ref();
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(cx.err_at(
                    name.span().start,
                    format!("{what} name `{n}` must be non-empty and use only letters, digits, '-' and '_'"),
                ));
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

        let sources = self
            .raw
            .source
            .iter()
            .map(|s| self.source(s, max_parallelism))
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
                        attempts: raw.attempts.unwrap_or(3),
                        delay_ms: raw.delay_ms.unwrap_or(1000),
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
        Ok(JobSpec {
            name: job.name.clone(),
            file: cx.file.to_path_buf(),
            max_parallelism,
            batch_records_max,
            channel_batches_max,
            state_backend: self
                .overrides
                .state_backend
                .or(job.state_backend)
                .unwrap_or(StateBackendKind::Memory),
            state_dir: job.state_dir.as_ref().map(|d| self.base_dir.join(d)),
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
        let interval_ms = positive(cx, Some(&raw.interval_ms), 1, "interval_ms")?;
        let dir = match (&self.overrides.checkpoint_dir, &raw.dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => self.base_dir.join(dir),
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
            retain: positive(cx, raw.retain.as_ref(), 3, "retain")?,
            incremental: raw.incremental.unwrap_or(true),
            timeout_ms: positive(cx, raw.timeout_ms.as_ref(), 600_000, "timeout_ms")?,
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

    fn source(&self, s: &Spanned<RawSource>, max_parallelism: u32) -> Result<SourceSpec, JobError> {
        let cx = &self.cx;
        let raw = s.get_ref();
        let name = raw.name.get_ref().clone();
        let at = s.span().start;
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
                if let Some(p) = &raw.parallelism
                    && *p.get_ref() != 1
                {
                    return Err(cx.err_at(
                        p.span().start,
                        format!("source `{name}`: a file source has parallelism 1"),
                    ));
                }
                let path = raw.path.as_ref().ok_or_else(|| {
                    cx.err_at(at, format!("source `{name}`: a file source needs `path`"))
                })?;
                let format = raw.format.unwrap_or(FileFormat::Lines);
                if format == FileFormat::Lines {
                    if let Some(field) = [&raw.timestamp_field, &raw.key_field]
                        .into_iter()
                        .flatten()
                        .next()
                    {
                        return Err(cx.err_at(
                            field.span().start,
                            format!("source `{name}`: plain lines have no fields; use format = \"jsonl\" or \"csv\""),
                        ));
                    }
                }
                SourceKind::File {
                    path: self.base_dir.join(path.get_ref()),
                    format,
                    timestamp_field: raw.timestamp_field.as_ref().map(|f| f.get_ref().clone()),
                    key_field: raw.key_field.as_ref().map(|f| f.get_ref().clone()),
                }
            }
            RawSourceKind::Generator => {
                for (field, present) in [
                    ("path", raw.path.is_some()),
                    ("format", raw.format.is_some()),
                    ("timestamp_field", raw.timestamp_field.is_some()),
                    ("key_field", raw.key_field.is_some()),
                ] {
                    not_for(field, present, "generator")?;
                }
                let records = raw.records.as_ref().ok_or_else(|| {
                    cx.err_at(at, format!("source `{name}`: a generator needs `records`"))
                })?;
                let keys = positive(cx, raw.keys.as_ref(), 16, "keys")?;
                let interval_ms = match &raw.interval_ms {
                    Some(i) if *i.get_ref() < 0 => {
                        return Err(cx.err_at(i.span().start, "interval_ms must be >= 0"));
                    }
                    Some(i) => *i.get_ref(),
                    None => 1,
                };
                let disorder_ms = match &raw.disorder_ms {
                    Some(d) if *d.get_ref() < 0 => {
                        return Err(cx.err_at(d.span().start, "disorder_ms must be >= 0"));
                    }
                    Some(d) => *d.get_ref(),
                    None => 0,
                };
                SourceKind::Generator(GeneratorSpec {
                    records: *records.get_ref(),
                    keys,
                    start_ms: raw.start_ms.as_ref().map_or(0, |s| *s.get_ref()),
                    interval_ms,
                    disorder_ms,
                    value_bytes: raw.value_bytes.as_ref().map_or(0, |v| *v.get_ref()),
                })
            }
        };
        Ok(SourceSpec {
            name,
            parallelism: self.parallelism(raw.parallelism.as_ref(), 1, max_parallelism)?,
            kind,
            watermark_delay_ms: raw.watermark_delay_ms.unwrap_or(0),
            idle_timeout_ms: raw.idle_timeout_ms,
            records_per_second: match &raw.records_per_second {
                None => None,
                Some(_) => Some(positive(
                    cx,
                    raw.records_per_second.as_ref(),
                    1,
                    "records_per_second",
                )?),
            },
            line: cx.line_of(at),
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
        if names.is_empty() {
            return Err(cx.err_at(
                at,
                format!("`{owner}`: `input` must name at least one stream"),
            ));
        }
        let mut refs = Vec::new();
        for name in names {
            let (node, late) = match name.strip_suffix(".late") {
                Some(node) => (node.to_string(), true),
                None => (name.clone(), false),
            };
            if !parallelism.contains_key(&node) {
                let mut known: Vec<_> = parallelism.keys().cloned().collect();
                known.sort();
                return Err(cx.err_at(
                    at,
                    format!(
                        "`{owner}`: input `{name}` names no source or operator (known: {})",
                        known.join(", ")
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
            refs.push(StreamRef { node, late });
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
        if raw.wasm.get_ref().trim().is_empty() {
            return Err(cx.err_at(
                raw.wasm.span().start,
                format!("operator `{name}`: `wasm` is empty"),
            ));
        }
        let defaults = GuestLimits::default();
        let mb =
            |v: &Option<Spanned<u64>>, default: usize, field: &str| -> Result<usize, JobError> {
                match v {
                    None => Ok(default),
                    Some(v) if *v.get_ref() == 0 || *v.get_ref() > 4096 => Err(cx.err_at(
                        v.span().start,
                        format!("operator `{name}`: {field} must be between 1 and 4096"),
                    )),
                    Some(v) => Ok((*v.get_ref() as usize) << 20),
                }
            };
        let call_timeout_ms = match &raw.call_timeout_ms {
            None => defaults.call_timeout_ms,
            Some(t) if *t.get_ref() == 0 => {
                return Err(cx.err_at(
                    t.span().start,
                    format!("operator `{name}`: call_timeout_ms must be > 0"),
                ));
            }
            Some(t) => *t.get_ref(),
        };
        let limits = GuestLimits {
            call_timeout_ms,
            memory_max_bytes: mb(
                &raw.memory_max_mb,
                defaults.memory_max_bytes,
                "memory_max_mb",
            )?,
            output_max_bytes: mb(
                &raw.output_max_mb,
                defaults.output_max_bytes,
                "output_max_mb",
            )?,
            ..defaults
        };
        let config = raw
            .config
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        Ok(OperatorSpec {
            name,
            wasm: self.base_dir.join(raw.wasm.get_ref()),
            parallelism,
            inputs,
            late_records: raw.late_records.unwrap_or(LatePolicy::Drop),
            limits,
            config,
            line: cx.line_of(o.span().start),
        })
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
        let kind = match raw.kind {
            RawSinkKind::File => {
                let path = raw.path.as_ref().ok_or_else(|| {
                    cx.err_at(
                        s.span().start,
                        format!("sink `{name}`: a file sink needs `path`"),
                    )
                })?;
                let base = self.overrides.output_dir.as_ref().unwrap_or(&self.base_dir);
                let path = base.join(path.get_ref());
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
        })
    }
}

fn positive<T: Copy + PartialOrd + Default + fmt::Display>(
    cx: &Cx<'_>,
    value: Option<&Spanned<T>>,
    default: T,
    field: &str,
) -> Result<T, JobError> {
    match value {
        None => Ok(default),
        Some(v) if *v.get_ref() <= T::default() => {
            Err(cx.err_at(v.span().start, format!("{field} must be > 0")))
        }
        Some(v) => Ok(*v.get_ref()),
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[job]
name = "wc"
parallelism = 2

[[source]]
name = "lines"
kind = "file"
path = "in.txt"

[[operator]]
name = "count"
wasm = "count.wasm"
input = "split"
edge = "hash"
late_records = "side-output"

[[operator]]
name = "split"
wasm = "split.wasm"
input = "lines"

[[sink]]
name = "out"
kind = "file"
path = "out.txt"
input = "count"

[[sink]]
name = "late"
kind = "stdout"
input = "count.late"
"#;

    fn parse_str(text: &str) -> Result<JobSpec, JobError> {
        parse(text, Path::new("/jobs/job.toml"))
    }

    #[test]
    fn parses_and_orders_a_valid_job() {
        let job = parse_str(GOOD).unwrap();
        assert_eq!(
            job.operators
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>(),
            ["split", "count"]
        );
        let split = job.operator("split").unwrap();
        assert_eq!(
            split.inputs[0].edge,
            Edge::Rebalance,
            "parallelism 1 -> 2 defaults to rebalance"
        );
        assert_eq!(split.wasm, PathBuf::from("/jobs/split.wasm"));
        let count = job.operator("count").unwrap();
        assert!(count.is_keyed());
        assert_eq!(
            job.sinks[1].inputs[0],
            StreamRef {
                node: "count".into(),
                late: true
            }
        );
    }

    fn error_of(text: &str) -> JobError {
        parse_str(text).unwrap_err()
    }

    #[test]
    fn unknown_input_names_the_line_and_known_streams() {
        let e = error_of(&GOOD.replace("input = \"split\"", "input = \"splitt\""));
        assert_eq!(e.line, Some(14));
        assert!(
            e.message.contains("`splitt`") && e.message.contains("known: count, lines, split"),
            "{e}"
        );
    }

    #[test]
    fn type_errors_carry_the_line() {
        let e = error_of(&GOOD.replace("parallelism = 2", "parallelism = \"two\""));
        assert_eq!(e.line, Some(4), "{e}");
        let e = error_of(&GOOD.replace("edge = \"hash\"", "edge = \"hashed\""));
        assert_eq!(e.line, Some(15), "{e}");
        assert!(e.to_string().starts_with("/jobs/job.toml:15:"), "{e}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = error_of(&GOOD.replace("late_records", "lateness"));
        assert!(e.message.contains("lateness"), "{e}");
    }

    #[test]
    fn forward_edge_needs_equal_parallelism() {
        let e =
            error_of(&GOOD.replace("input = \"lines\"", "input = \"lines\"\nedge = \"forward\""));
        assert!(
            e.message.contains("forward edge needs equal parallelism"),
            "{e}"
        );
    }

    #[test]
    fn cycles_are_rejected() {
        let text = GOOD.replace("input = \"lines\"", "input = [\"lines\", \"count\"]");
        assert!(error_of(&text).message.contains("cycle"));
    }

    #[test]
    fn late_stream_needs_side_output() {
        let text = GOOD.replace("late_records = \"side-output\"", "");
        assert!(
            error_of(&text)
                .message
                .contains("late_records = \"side-output\"")
        );
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let text = GOOD.replace("name = \"late\"", "name = \"out\"");
        let e = error_of(&text);
        assert!(e.message.contains("already used on line 24"), "{e}");
    }

    #[test]
    fn generator_fields_are_checked() {
        let text = r#"
[job]
name = "g"
[[source]]
name = "gen"
kind = "generator"
path = "x"
records = 10
[[sink]]
name = "out"
kind = "stdout"
input = "gen"
"#;
        assert!(
            error_of(text)
                .message
                .contains("`path` does not apply to a generator")
        );
    }

    #[test]
    fn overrides_take_precedence() {
        let overrides = Overrides {
            parallelism: Some(4),
            state_backend: Some(StateBackendKind::Rocksdb),
            output_dir: Some(PathBuf::from("/tmp/out")),
            ..Overrides::default()
        };
        let job = parse_with(GOOD, Path::new("/jobs/job.toml"), &overrides).unwrap();
        assert!(job.operators.iter().all(|o| o.parallelism == 4));
        assert_eq!(job.state_backend, StateBackendKind::Rocksdb);
        assert_eq!(
            job.sinks[0].kind,
            SinkKind::File {
                path: PathBuf::from("/tmp/out/out.txt")
            }
        );
        let too_many = Overrides {
            parallelism: Some(999),
            ..Overrides::default()
        };
        assert!(
            parse_with(GOOD, Path::new("j.toml"), &too_many)
                .unwrap_err()
                .message
                .contains("--parallelism 999")
        );
    }

    #[test]
    fn checkpoint_and_restart_sections() {
        let text = format!(
            "{GOOD}\n[checkpoint]\ninterval_ms = 500\ndir = \"chk\"\n[restart]\nstrategy = \"fixed-delay\"\nattempts = 2\n"
        );
        let job = parse(&text, Path::new("/jobs/job.toml")).unwrap();
        let c = job.checkpoint.unwrap();
        assert_eq!((c.interval_ms, c.retain, c.incremental), (500, 3, true));
        assert_eq!(c.dir, PathBuf::from("/jobs/chk"));
        assert_eq!(job.restart.attempts, 2);
        let no_checkpoint = format!("{GOOD}\n[restart]\nstrategy = \"fixed-delay\"\n");
        let e = parse(&no_checkpoint, Path::new("j.toml")).unwrap_err();
        assert!(e.message.contains("[restart] needs [checkpoint]"), "{e}");
        let zero = text.replace("interval_ms = 500", "interval_ms = 0");
        let e = parse(&zero, Path::new("j.toml")).unwrap_err();
        assert!(e.message.contains("interval_ms must be > 0"), "{e}");
    }

    #[test]
    fn missing_job_table() {
        let e = error_of("[[source]]\nname='x'\nkind='file'\npath='a'\n");
        assert!(e.message.contains("job"), "{e}");
    }
}
