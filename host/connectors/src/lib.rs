//! weir-connectors: where records come from and where they go.
//!
//! Sources fill batches ([`Source::next_batch`]) and sinks write them
//! ([`Sink::write`]); both are plain blocking objects driven by the runtime,
//! which owns threads, watermarks and backpressure. Sources: files (lines,
//! JSON lines, CSV) and a deterministic generator; each reports a position
//! for checkpoints and can seek back to it. A file is read as byte-range
//! splits whose positions can be redistributed to another number of splits
//! ([`rescale_positions`]). Sinks: a file (cut back to the
//! checkpointed length on restore), an exactly-once directory of part files
//! committed per checkpoint, stdout, and a discarding sink for benchmarks.

mod file_sink;
mod file_source;
mod generator;
pub mod json_fields;
pub mod kafka;
pub mod nexmark;
mod parse_errors;
mod splits;
mod string_ends;
mod transactional_sink;

use weir_core::BatchBuilder;
use weir_core::job::{SinkKind, SinkSpec, SourceKind, SourceSpec};

pub use file_sink::{FileSink, format_record};
pub use file_source::FileSource;
pub use generator::GeneratorSource;
pub use nexmark::NexmarkSource;
pub use parse_errors::{ParseErrorCounts, ParseErrors};
pub use transactional_sink::TransactionalFileSink;

use serde_json::Value;

/// A connector failure, naming the file (and line) at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectorError(pub String);

/// Whether a source has more to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// Call again.
    More,
    /// The source is exhausted; the batch may still hold its last records.
    Finished,
}

/// A source closes its batch once it holds this many encoded bytes (after
/// at least one record), whatever `max_records` allows: the job file's
/// `batch_records_max` (up to 1 M) times a generator's `value_bytes` (up to
/// 16 MiB) would otherwise make one batch of 16 TiB. A batch is therefore
/// at most 4 MiB plus one record.
pub const BATCH_BYTES_MAX: usize = 4 << 20;

/// One split of a source.
pub trait Source: Send {
    /// Appends up to `max_records` records to `batch`, stopping early once
    /// it holds [`BATCH_BYTES_MAX`] bytes.
    fn next_batch(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
    ) -> Result<SourceStatus, ConnectorError>;
    /// Where the next record comes from, for a checkpoint.
    fn position(&self) -> Value;
    /// Continues from a [`Source::position`] of the same split.
    fn seek(&mut self, position: &Value) -> Result<(), ConnectorError>;
    /// An upper bound on the largest event time the split may claim to
    /// have seen, when it interleaves several inputs with their own event
    /// time (Kafka partitions): the smallest of their largest timestamps
    /// over inputs that are not idle. The runtime holds the split's
    /// watermark at `bound - watermark_delay_ms - 1`. `None`: no bound.
    fn max_timestamp_bound(&self) -> Option<i64> {
        None
    }
    /// Checkpoint `id`, whose snapshot held `position`, completed.
    fn checkpoint_complete(&mut self, _id: u64, _position: &Value) {}
    /// Moves the records this split could not parse since the last call
    /// into `out` (under `on_parse_error = "dead-letter"`); called after
    /// every [`Source::next_batch`], before the next barrier.
    fn drain_dead_letters(&mut self, _out: &mut weir_core::BatchBuilder) {}
    /// Records skipped or dead-lettered by this split so far.
    fn parse_error_counts(&self) -> ParseErrorCounts {
        ParseErrorCounts::default()
    }
}

/// One sink instance.
pub trait Sink: Send {
    fn write(&mut self, batch: &weir_core::Batch) -> Result<(), ConnectorError>;
    /// Flushes everything written and commits it; called once at the end of input.
    fn finish(&mut self) -> Result<(), ConnectorError>;
    /// At checkpoint `id`'s barrier: makes what was written so far durable
    /// (but not necessarily visible) and returns what a restore needs.
    fn snapshot(&mut self, id: u64) -> Result<Value, ConnectorError>;
    /// Checkpoint `id` completed: makes its output visible.
    fn commit(&mut self, _id: u64) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Opens split `split` of `spec`.
pub fn open_source(spec: &SourceSpec, split: u32) -> Result<Box<dyn Source>, ConnectorError> {
    match &spec.kind {
        SourceKind::File {
            path,
            format,
            timestamp_field,
            key_field,
            max_line_bytes,
        } => Ok(Box::new(
            FileSource::open_split(
                path,
                *format,
                timestamp_field.clone(),
                key_field.clone(),
                *max_line_bytes,
                split,
                spec.parallelism,
            )?
            .with_parse_errors(&spec.name, spec.on_parse_error),
        )),
        SourceKind::Generator(generator) => Ok(Box::new(GeneratorSource::new(
            generator.clone(),
            split,
            spec.parallelism,
        ))),
        SourceKind::Nexmark(nexmark) => Ok(Box::new(NexmarkSource::new(
            nexmark.clone(),
            split,
            spec.parallelism,
        ))),
        SourceKind::Kafka(kafka) => Ok(Box::new(kafka::KafkaSource::open(
            &spec.name,
            kafka,
            spec.idle_timeout_ms,
            spec.on_parse_error,
            split,
            spec.parallelism,
        )?)),
    }
}

/// Redistributes the positions of a checkpoint taken with `old.len()`
/// splits (`old[i]` from split `i`) to `new_splits` splits, for
/// [`Source::seek`] on the splits of `spec` opened with that parallelism.
/// A file source's remaining byte ranges are cut into `new_splits` shares
/// of about equal bytes; every line not yet read is read exactly once. A
/// generator's splits are fixed by its parallelism: it cannot be rescaled
/// (an unchanged split count returns `old` as is, for any source).
pub fn rescale_positions(
    spec: &SourceSpec,
    old: &[Value],
    new_splits: u32,
) -> Result<Vec<Value>, ConnectorError> {
    let name = &spec.name;
    if new_splits == 0 {
        return Err(ConnectorError(format!(
            "source `{name}`: cannot rescale to 0 splits"
        )));
    }
    if old.len() == new_splits as usize {
        return Ok(old.to_vec());
    }
    match &spec.kind {
        SourceKind::Kafka(_) => kafka::rescale_positions(spec, old, new_splits),
        SourceKind::Generator(_) | SourceKind::Nexmark(_) => Err(ConnectorError(format!(
            "source `{name}`: a generator source cannot be rescaled (its checkpoint has {} splits, the job {new_splits}); run it with parallelism {} or start without the checkpoint",
            old.len(),
            old.len()
        ))),
        SourceKind::File { path, .. } => {
            if old.is_empty() {
                return Err(ConnectorError(format!(
                    "source `{name}`: the checkpoint has no split positions to rescale"
                )));
            }
            // The file's length bounds every range (and ends the older
            // single-split form).
            let mut len = || {
                std::fs::metadata(path)
                    .map(|m| m.len())
                    .map_err(|e| format!("cannot read the size of {}: {e}", path.display()))
            };
            let positions = old
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    splits::FilePosition::parse(p, &mut len)
                        .map_err(|e| ConnectorError(format!("source `{name}` split {i}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let new = splits::rescale(&positions, new_splits)
                .map_err(|e| ConnectorError(format!("source `{name}`: {e}")))?;
            Ok(new.iter().map(splits::FilePosition::to_json).collect())
        }
    }
}

/// Opens `spec`, continuing from a checkpoint's sink state when `restore` is given.
pub fn open_sink(
    spec: &SinkSpec,
    restore: Option<&Value>,
) -> Result<Box<dyn Sink>, ConnectorError> {
    match &spec.kind {
        SinkKind::File { path } => Ok(Box::new(match restore {
            None => FileSink::create(path, spec.format)?,
            Some(state) => FileSink::reopen(path, spec.format, state)?,
        })),
        SinkKind::TransactionalFile { dir } => Ok(Box::new(TransactionalFileSink::open(
            dir,
            spec.format,
            restore,
        )?)),
        SinkKind::Stdout => Ok(Box::new(FileSink::stdout(spec.format))),
        SinkKind::Discard => Ok(Box::new(DiscardSink)),
        // A sink runs as one subtask: subtask 0.
        SinkKind::Kafka(kafka) => Ok(Box::new(kafka::KafkaSink::open(
            &spec.name,
            kafka,
            spec.format,
            0,
            restore,
        )?)),
    }
}

/// Drops everything; the runtime still counts what arrives.
pub struct DiscardSink;

impl Sink for DiscardSink {
    fn write(&mut self, _batch: &weir_core::Batch) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn snapshot(&mut self, _id: u64) -> Result<Value, ConnectorError> {
        Ok(Value::Null)
    }
}
