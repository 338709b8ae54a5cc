//! weir-connectors: where records come from and where they go.
//!
//! Sources fill batches ([`Source::next_batch`]) and sinks write them
//! ([`Sink::write`]); both are plain blocking objects driven by the runtime,
//! which owns threads, watermarks and backpressure. Sources: files (lines,
//! JSON lines, CSV) and a deterministic generator. Sinks: a file, stdout, and a discarding sink for benchmarks.

mod file_sink;
mod file_source;
mod generator;

use weir_core::BatchBuilder;
use weir_core::job::{SinkKind, SinkSpec, SourceKind, SourceSpec};

pub use file_sink::{FileSink, format_record};
pub use file_source::FileSource;
pub use generator::GeneratorSource;

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

/// One split of a source.
pub trait Source: Send {
    /// Appends up to `max_records` records to `batch`.
    fn next_batch(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
    ) -> Result<SourceStatus, ConnectorError>;
}

/// One sink instance.
pub trait Sink: Send {
    fn write(&mut self, batch: &weir_core::Batch) -> Result<(), ConnectorError>;
    /// Flushes everything written; called once at the end of input.
    fn finish(&mut self) -> Result<(), ConnectorError>;
}

/// Opens split `split` of `spec`.
pub fn open_source(spec: &SourceSpec, split: u32) -> Result<Box<dyn Source>, ConnectorError> {
    match &spec.kind {
        SourceKind::File {
            path,
            format,
            timestamp_field,
            key_field,
        } => Ok(Box::new(FileSource::open(
            path,
            *format,
            timestamp_field.clone(),
            key_field.clone(),
        )?)),
        SourceKind::Generator(generator) => Ok(Box::new(GeneratorSource::new(
            generator.clone(),
            split,
            spec.parallelism,
        ))),
    }
}

pub fn open_sink(spec: &SinkSpec) -> Result<Box<dyn Sink>, ConnectorError> {
    match &spec.kind {
        SinkKind::File { path } => Ok(Box::new(FileSink::create(path, spec.format)?)),
        SinkKind::Stdout => Ok(Box::new(FileSink::stdout(spec.format))),
        SinkKind::Discard => Ok(Box::new(DiscardSink)),
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
}
