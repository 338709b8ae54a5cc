//! The job file's TOML shapes, as written. Every number and every field
//! that names a path keeps its span so errors can name its line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{Edge, FileFormat, LatePolicy, OnParseError, SinkFormat, StateBackendKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJobFile {
    pub(super) job: Spanned<RawJob>,
    #[serde(default)]
    pub(super) source: Vec<Spanned<RawSource>>,
    #[serde(default)]
    pub(super) operator: Vec<Spanned<RawOperator>>,
    #[serde(default)]
    pub(super) sink: Vec<Spanned<RawSink>>,
    pub(super) checkpoint: Option<Spanned<RawCheckpoint>>,
    pub(super) restart: Option<Spanned<RawRestart>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheckpoint {
    pub(super) interval_ms: Spanned<u64>,
    pub(super) dir: Option<Spanned<String>>,
    pub(super) retain: Option<Spanned<usize>>,
    pub(super) incremental: Option<bool>,
    pub(super) timeout_ms: Option<Spanned<u64>>,
    pub(super) s3_endpoint: Option<Spanned<String>>,
    pub(super) s3_region: Option<Spanned<String>>,
    pub(super) s3_allow_http: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawRestartStrategy {
    FixedDelay,
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRestart {
    pub(super) strategy: RawRestartStrategy,
    pub(super) attempts: Option<Spanned<u32>>,
    pub(super) delay_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub(super) name: Spanned<String>,
    pub(super) parallelism: Option<Spanned<u32>>,
    pub(super) max_parallelism: Option<Spanned<u32>>,
    pub(super) batch_records_max: Option<Spanned<usize>>,
    pub(super) channel_batches_max: Option<Spanned<usize>>,
    pub(super) state_backend: Option<StateBackendKind>,
    pub(super) state_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawSourceKind {
    File,
    Generator,
    Nexmark,
    Kafka,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) name: Spanned<String>,
    pub(super) kind: RawSourceKind,
    pub(super) parallelism: Option<Spanned<u32>>,
    pub(super) watermark_delay_ms: Option<Spanned<u64>>,
    pub(super) idle_timeout_ms: Option<Spanned<u64>>,
    pub(super) records_per_second: Option<Spanned<u64>>,
    pub(super) on_parse_error: Option<OnParseError>,
    // file
    pub(super) path: Option<Spanned<String>>,
    pub(super) format: Option<FileFormat>,
    pub(super) timestamp_field: Option<Spanned<String>>,
    pub(super) key_field: Option<Spanned<String>>,
    pub(super) max_line_bytes: Option<Spanned<u64>>,
    // generator
    pub(super) records: Option<Spanned<u64>>,
    pub(super) keys: Option<Spanned<u64>>,
    pub(super) start_ms: Option<Spanned<i64>>,
    pub(super) interval_ms: Option<Spanned<i64>>,
    pub(super) disorder_ms: Option<Spanned<i64>>,
    pub(super) value_bytes: Option<Spanned<usize>>,
    // nexmark (also start_ms, disorder_ms)
    pub(super) events: Option<Spanned<u64>>,
    pub(super) seed: Option<Spanned<u64>>,
    pub(super) events_per_second: Option<Spanned<u64>>,
    // kafka (also format, timestamp_field, key_field)
    pub(super) bootstrap_servers: Option<Spanned<String>>,
    pub(super) topics: Option<Spanned<Vec<String>>>,
    pub(super) topic_pattern: Option<Spanned<String>>,
    pub(super) group_id: Option<Spanned<String>>,
    pub(super) start: Option<Spanned<String>>,
    pub(super) start_timestamp_ms: Option<Spanned<i64>>,
    pub(super) stop: Option<Spanned<String>>,
    pub(super) isolation: Option<Spanned<String>>,
    pub(super) partition_discovery_ms: Option<Spanned<u64>>,
    pub(super) properties: Option<Spanned<BTreeMap<String, toml::Value>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOperator {
    pub(super) name: Spanned<String>,
    pub(super) wasm: Spanned<String>,
    pub(super) input: Spanned<OneOrMany>,
    pub(super) edge: Option<Spanned<Edge>>,
    pub(super) parallelism: Option<Spanned<u32>>,
    pub(super) late_records: Option<LatePolicy>,
    pub(super) call_timeout_ms: Option<Spanned<u64>>,
    pub(super) memory_max_mb: Option<Spanned<u64>>,
    pub(super) output_max_mb: Option<Spanned<u64>>,
    pub(super) key_max_bytes: Option<Spanned<u64>>,
    pub(super) state_value_max_mb: Option<Spanned<u64>>,
    pub(super) state_read_max_mb: Option<Spanned<u64>>,
    pub(super) state_memory_max_mb: Option<Spanned<u64>>,
    pub(super) timers_max: Option<Spanned<u64>>,
    pub(super) timers_memory_max_mb: Option<Spanned<u64>>,
    pub(super) log_lines_per_second: Option<Spanned<u64>>,
    pub(super) config: Option<Spanned<BTreeMap<String, toml::Value>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawSinkKind {
    File,
    Stdout,
    Discard,
    Kafka,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub(super) name: Spanned<String>,
    pub(super) kind: RawSinkKind,
    pub(super) input: Spanned<OneOrMany>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) format: Option<SinkFormat>,
    pub(super) exactly_once: Option<Spanned<bool>>,
    // kafka
    pub(super) bootstrap_servers: Option<Spanned<String>>,
    pub(super) topic: Option<Spanned<String>>,
    pub(super) delivery: Option<Spanned<String>>,
    pub(super) transactional_id_prefix: Option<Spanned<String>>,
    pub(super) properties: Option<Spanned<BTreeMap<String, toml::Value>>>,
}
