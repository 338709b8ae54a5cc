//! The job file: parsing, validation and the resolved job graph.
//!
//! A job file is TOML with one `[job]` table and `[[source]]`, `[[operator]]`
//! and `[[sink]]` arrays. Every error names the file, the line and the field
//! at fault. Relative paths are resolved against the job file's directory.
//!
//! A job file comes from a tenant. Its text is bounded before parsing,
//! every number has an upper bound ([`bounds`]), names have one safe
//! character set ([`names`]), and line numbers are found by binary search,
//! so validating a job costs time and memory linear in the file's size and
//! nothing more.

mod bounds;
mod kafka;
mod lines;
mod names;
mod raw;
mod resolve;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use bounds::*;
pub use kafka::{KafkaDelivery, KafkaSinkSpec, KafkaSourceSpec, KafkaStart, KafkaTopics};
pub use names::{job_name_problem, node_name_problem};

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

/// Which stream of a node an input reads: its main output, the late
/// records an operator side-outputs (`name.late`), or the records a source
/// could not parse (`name.dead-letter`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamRef {
    pub node: String,
    pub late: bool,
    pub dead_letter: bool,
}

impl fmt::Display for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.late {
            write!(f, "{}.late", self.node)
        } else if self.dead_letter {
            write!(f, "{}.dead-letter", self.node)
        } else {
            write!(f, "{}", self.node)
        }
    }
}

/// What a source does with a record it cannot parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnParseError {
    /// Fail the job, naming the record (the default).
    #[default]
    Fail,
    /// Count the record and drop it.
    Skip,
    /// Count the record and send it, raw, with the reason, to the
    /// `<source>.dead-letter` stream.
    DeadLetter,
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
        /// A longer line fails the job (a line without a newline too).
        max_line_bytes: usize,
    },
    Generator(GeneratorSpec),
    Nexmark(NexmarkSpec),
    Kafka(KafkaSourceSpec),
}

/// The Nexmark benchmark's event stream (persons, auctions and bids in
/// proportions 1:3:46), deterministic from `seed`; see
/// `weir_connectors::nexmark` for the model and the JSON layout. Event `n`
/// (0-based) has event time `start_ms + n * 1000 / events_per_second`
/// minus a jitter of up to `disorder_ms`. Split `i` of `p` emits the
/// events with `n % p == i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexmarkSpec {
    pub events: u64,
    pub seed: u64,
    pub start_ms: i64,
    pub events_per_second: u64,
    pub disorder_ms: i64,
}

/// A Nexmark source's default `start_ms`: 2023-11-14T22:13:20Z.
pub const NEXMARK_START_MS_DEFAULT: i64 = 1_700_000_000_000;

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
    pub on_parse_error: OnParseError,
    pub line: usize,
    /// Line of the file source's `path` (the table's line otherwise).
    pub path_line: usize,
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
    /// Keyed state (keys plus values) a subtask may hold in the memory
    /// backend, which lives in the host's heap.
    pub state_memory_max_bytes: usize,
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
            state_memory_max_bytes: 1 << 30,
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
    pub wasm_line: usize,
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
    /// Records to a Kafka topic, at least or exactly once.
    Kafka(KafkaSinkSpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    pub name: String,
    pub kind: SinkKind,
    pub format: SinkFormat,
    pub inputs: Vec<StreamRef>,
    pub line: usize,
    /// Line of the file sink's `path` (the table's line otherwise).
    pub path_line: usize,
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
    /// Line of `state_dir` (the `[job]` line when it is absent).
    pub state_dir_line: usize,
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
    /// Line of `dir` (the `[checkpoint]` line when it came from the command line).
    pub dir_line: usize,
    /// Overrides of the `AWS_*` environment for an `s3://` `dir`.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_allow_http: Option<bool>,
}

impl CheckpointSpec {
    /// Whether `dir` is an object store URL (`s3://bucket/prefix`) rather
    /// than a directory: no data-root checks, nothing made on disk.
    pub fn is_remote(&self) -> bool {
        is_remote_location(&self.dir)
    }
}

/// Whether a snapshot location is an object store URL (`s3://...`).
pub fn is_remote_location(path: &std::path::Path) -> bool {
    path.to_str().is_some_and(|s| s.starts_with("s3://"))
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

/// Command-line settings that take precedence over the job file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `[job] parallelism` (operators with their own keep theirs)
    /// and is the parallelism of file sources that set none.
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

/// Reads and validates a job file, with command-line overrides. A file
/// longer than [`JOB_TEXT_BYTES_MAX`] is refused without reading it whole.
pub fn load_with(path: &Path, overrides: &Overrides) -> Result<JobSpec, JobError> {
    use std::io::Read;
    let error = |message: String| JobError {
        file: path.to_path_buf(),
        line: None,
        message,
    };
    let file =
        std::fs::File::open(path).map_err(|e| error(format!("cannot read job file: {e}")))?;
    let mut bytes = Vec::new();
    file.take(JOB_TEXT_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(format!("cannot read job file: {e}")))?;
    if bytes.len() > JOB_TEXT_BYTES_MAX {
        return Err(error(too_long_message()));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        error(format!(
            "the job file is not UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse_with(&text, path, overrides)
}

fn too_long_message() -> String {
    format!("the job file is longer than {JOB_TEXT_BYTES_MAX} bytes")
}

/// Parses and validates job file text; `path` names it in errors and anchors
/// relative paths.
pub fn parse(text: &str, path: &Path) -> Result<JobSpec, JobError> {
    parse_with(text, path, &Overrides::default())
}

pub fn parse_with(text: &str, path: &Path, overrides: &Overrides) -> Result<JobSpec, JobError> {
    if text.len() > JOB_TEXT_BYTES_MAX {
        return Err(JobError {
            file: path.to_path_buf(),
            line: None,
            message: too_long_message(),
        });
    }
    let cx = lines::Cx::new(text, path);
    let raw: raw::RawJobFile = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
    resolve::resolve(cx, raw, path, overrides)
}
