//! Kafka source and sink (`kind = "kafka"`), on librdkafka (the `rdkafka`
//! crate, built from its bundled sources). Only standard Kafka protocol
//! features are used: `assign()` with explicit offsets, offset commits,
//! idempotent and transactional producers, `read_committed` fetches.
//!
//! **Source** ([`KafkaSource`]): partitions are splits; weir assigns them
//! to subtasks itself ([`positions::owner`]); a split's position is its
//! partitions' next offsets, restored by `seek` and redistributed on
//! rescale ([`rescale_positions`]); offsets are committed to the group when
//! a checkpoint completes, for monitoring only.
//!
//! **Exactly-once sink** ([`KafkaSink`]), one transactional id per sink
//! subtask, `<transactional_id_prefix>-<subtask>`, stable across restarts
//! so a new instance fences the old one. librdkafka cannot resume another
//! producer's transaction, and a checkpoint completes in the job master
//! before its commit reaches the sink: a sink that dies in between must
//! still get that checkpoint's records into Kafka. So:
//!
//! 1. Records between two barriers form a *segment*. The sink keeps every
//!    segment not yet committed in memory; only the oldest (the head) is
//!    produced into the open transaction, the later ones wait.
//! 2. At barrier `n` the open segment is closed (labelled `n`), the
//!    producer is flushed, and the snapshot state holds the closed
//!    segments' records.
//! 3. `commit(n)` (checkpoint `n` completed) commits, one transaction each,
//!    every closed segment labelled `<= n`; each transaction also commits
//!    a *progress marker* through `send_offsets_to_transaction`: group
//!    `<transactional id>`, partition 0 of the topic, offset = label + 1.
//!    Marker and records become visible atomically.
//! 4. On restore, `init_transactions` fences any zombie and aborts its open
//!    transaction; the sink reads the marker and produces (and commits)
//!    the restored segments the marker does not cover. A fresh start
//!    (no restore) resets the marker to 0.
//!
//! Every record of a completed checkpoint thus becomes visible exactly
//! once: either its segment's transaction committed (the marker says so)
//! or the restored state still holds it. Records after the last barrier
//! are replayed by the sources. The cost: a checkpoint stores the records
//! of the intervals whose commit is pending (usually one interval), and
//! transactions must not outlive `transaction.timeout.ms` (librdkafka's
//! default is 60 s), so checkpoints must come more often than that.

mod decode;
mod positions;
mod sink;
mod source;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use serde_json::Value;
use weir_core::job::SourceSpec;

pub use positions::owner as partition_owner;
pub use sink::KafkaSink;
pub use source::KafkaSource;

use crate::ConnectorError;

/// Settings every client of weir's gets.
fn client_config(bootstrap_servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", "weir")
        .set("log_level", "3");
    config
}

/// A Kafka error as a sentence.
fn kafka_error(e: &KafkaError) -> String {
    e.to_string()
}

/// Rescales the positions of a Kafka source: every partition goes, with its
/// offset, to its owner among `new_splits`.
pub(crate) fn rescale_positions(
    spec: &SourceSpec,
    old: &[Value],
    new_splits: u32,
) -> Result<Vec<Value>, ConnectorError> {
    let old = old
        .iter()
        .enumerate()
        .map(|(i, p)| {
            positions::Position::parse(p)
                .map_err(|e| ConnectorError(format!("source `{}` split {i}: {e}", spec.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(positions::rescale(&old, new_splits)
        .iter()
        .map(positions::Position::to_json)
        .collect())
}
