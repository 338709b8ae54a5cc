//! One split of a Kafka source: the partitions its subtask owns
//! ([`super::positions::owner`]), read with `assign()` (no group
//! rebalancing) from explicit offsets.
//!
//! Initial offsets come from `start`; partitions discovered later (or
//! missing from a restored position) start at their earliest offset, as
//! Flink's KafkaSource does. In bounded mode (`stop = "latest"`) each
//! partition ends at the end offset found at the first start; the stop
//! offsets travel in the position, so a restart ends at the same place.
//!
//! Per-partition event time: the split tracks the largest timestamp of each
//! partition and reports the smallest of them over partitions that are not
//! idle ([`Source::max_timestamp_bound`]); the runtime holds the split's
//! watermark at that bound, so a partition that lags does not see its
//! records made late by a partition that runs ahead.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Timestamp;
use serde_json::Value;
use weir_core::BatchBuilder;
use weir_core::job::{KafkaSourceSpec, KafkaStart, KafkaTopics, OnParseError};

use super::decode::Decoder;
use super::positions::{Offsets, Position, Tp, owner};
use super::{client_config, kafka_error};
use crate::{BATCH_BYTES_MAX, ConnectorError, ParseErrorCounts, ParseErrors, Source, SourceStatus};

/// How long a metadata or offset request may take before the source fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `next_batch` waits for the first record.
const POLL_WAIT: Duration = Duration::from_millis(50);

/// Event time of one partition.
#[derive(Debug, Clone, Copy)]
struct PartitionTime {
    max_seen: Option<i64>,
    last_record: Instant,
}

pub struct KafkaSource {
    name: String,
    spec: KafkaSourceSpec,
    split: u32,
    splits: u32,
    consumer: BaseConsumer,
    pattern: Option<regex::Regex>,
    decoder: Decoder,
    /// Next offset of every partition this split reads.
    offsets: Offsets,
    /// Bounded mode: where each partition ends.
    stop: Option<Offsets>,
    times: BTreeMap<Tp, PartitionTime>,
    idle_timeout: Option<Duration>,
    next_discovery: Instant,
    /// Transient errors seen since the last record, logged once each.
    warned: Option<String>,
    parse_errors: ParseErrors,
}

impl KafkaSource {
    /// Opens split `split` of `splits`: finds the partitions it owns and
    /// their start (and, bounded, stop) offsets.
    pub fn open(
        name: &str,
        spec: &KafkaSourceSpec,
        idle_timeout_ms: Option<u64>,
        on_parse_error: OnParseError,
        split: u32,
        splits: u32,
    ) -> Result<Self, ConnectorError> {
        let mut config = client_config(&spec.bootstrap_servers);
        config
            .set("group.id", &spec.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set(
                "isolation.level",
                if spec.read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            );
        for (k, v) in &spec.properties {
            config.set(k, v);
        }
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| ConnectorError(format!("cannot create a Kafka consumer: {e}")))?;
        let pattern = match &spec.topics {
            KafkaTopics::Pattern(p) => {
                Some(regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                    ConnectorError(format!(
                        "topic_pattern {p:?} is not a regular expression: {e}"
                    ))
                })?)
            }
            KafkaTopics::List(_) => None,
        };
        let mut source = KafkaSource {
            name: name.to_string(),
            spec: spec.clone(),
            split,
            splits,
            consumer,
            pattern,
            decoder: Decoder {
                format: spec.format,
                timestamp_field: spec.timestamp_field.clone(),
                key_field: spec.key_field.clone(),
            },
            offsets: Offsets::new(),
            stop: None,
            times: BTreeMap::new(),
            idle_timeout: idle_timeout_ms.map(Duration::from_millis),
            next_discovery: Instant::now(),
            warned: None,
            parse_errors: ParseErrors::new(name, on_parse_error),
        };
        let owned = source.owned_partitions(true)?;
        let offsets = source.start_offsets(&owned, spec.start)?;
        if spec.bounded {
            let mut stop = Offsets::new();
            for tp in &owned {
                stop.insert(tp.clone(), source.watermarks(tp)?.1);
            }
            source.stop = Some(stop);
        }
        source.assign(offsets)?;
        source.schedule_discovery();
        Ok(source)
    }

    fn schedule_discovery(&mut self) {
        let every = self.spec.partition_discovery_ms;
        self.next_discovery = Instant::now() + Duration::from_millis(every.max(1));
    }

    /// The partitions of the source's topics that this split owns, sorted.
    /// `strict`: a listed topic that does not exist is an error.
    fn owned_partitions(&self, strict: bool) -> Result<Vec<Tp>, ConnectorError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| {
                ConnectorError(format!(
                    "cannot read the topics of Kafka at {}: {}",
                    self.spec.bootstrap_servers,
                    kafka_error(&e)
                ))
            })?;
        let mut found = Vec::new();
        let mut seen = Vec::new();
        for topic in metadata.topics() {
            let wanted = match (&self.spec.topics, &self.pattern) {
                (KafkaTopics::List(list), _) => list.iter().any(|t| t == topic.name()),
                (_, Some(re)) => re.is_match(topic.name()),
                _ => false,
            };
            if !wanted || topic.error().is_some() {
                continue;
            }
            seen.push(topic.name().to_string());
            for p in topic.partitions() {
                if owner(topic.name(), p.id(), self.splits) == self.split {
                    found.push((topic.name().to_string(), p.id()));
                }
            }
        }
        if strict
            && let KafkaTopics::List(list) = &self.spec.topics
            && let Some(missing) = list.iter().find(|t| !seen.contains(t))
        {
            return Err(ConnectorError(format!(
                "topic `{missing}` does not exist on Kafka at {}",
                self.spec.bootstrap_servers
            )));
        }
        found.sort();
        Ok(found)
    }

    fn watermarks(&self, tp: &Tp) -> Result<(i64, i64), ConnectorError> {
        self.consumer
            .fetch_watermarks(&tp.0, tp.1, REQUEST_TIMEOUT)
            .map_err(|e| {
                ConnectorError(format!(
                    "cannot read the offsets of {}/{}: {}",
                    tp.0,
                    tp.1,
                    kafka_error(&e)
                ))
            })
    }

    /// Resolves `start` to a number for each of `partitions`.
    fn start_offsets(
        &self,
        partitions: &[Tp],
        start: KafkaStart,
    ) -> Result<Offsets, ConnectorError> {
        let mut offsets = Offsets::new();
        if partitions.is_empty() {
            return Ok(offsets);
        }
        let query = |offset: Offset| -> Result<TopicPartitionList, ConnectorError> {
            let mut tpl = TopicPartitionList::new();
            for tp in partitions {
                tpl.add_partition_offset(&tp.0, tp.1, offset)
                    .map_err(|e| ConnectorError(kafka_error(&e)))?;
            }
            Ok(tpl)
        };
        let answered = match start {
            KafkaStart::Earliest | KafkaStart::Latest => None,
            KafkaStart::Committed => Some(
                self.consumer
                    .committed_offsets(query(Offset::Invalid)?, REQUEST_TIMEOUT)
                    .map_err(|e| {
                        ConnectorError(format!(
                            "cannot read the committed offsets of group `{}`: {}",
                            self.spec.group_id,
                            kafka_error(&e)
                        ))
                    })?,
            ),
            KafkaStart::Timestamp(ts) => Some(
                self.consumer
                    .offsets_for_times(query(Offset::Offset(ts))?, REQUEST_TIMEOUT)
                    .map_err(|e| {
                        ConnectorError(format!(
                            "cannot find the offsets at timestamp {ts}: {}",
                            kafka_error(&e)
                        ))
                    })?,
            ),
        };
        for tp in partitions {
            let (low, high) = self.watermarks(tp)?;
            let found = answered
                .as_ref()
                .and_then(|tpl| tpl.find_partition(&tp.0, tp.1))
                .map(|e| e.offset());
            let offset = match (start, found) {
                (KafkaStart::Latest, _) => high,
                (_, Some(Offset::Offset(o))) => o.clamp(low, high),
                // No record at or after the timestamp: the end.
                (KafkaStart::Timestamp(_), _) => high,
                // No committed offset (or earliest): the start.
                _ => low,
            };
            offsets.insert(tp.clone(), offset);
        }
        Ok(offsets)
    }

    /// Reads `offsets` from now on (replacing any assignment); partitions
    /// already at their stop offset are left out.
    fn assign(&mut self, offsets: Offsets) -> Result<(), ConnectorError> {
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in &offsets {
            if !self.is_done(tp, *offset) {
                tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset))
                    .map_err(|e| ConnectorError(kafka_error(&e)))?;
            }
        }
        self.consumer.assign(&tpl).map_err(|e| {
            ConnectorError(format!("cannot assign partitions: {}", kafka_error(&e)))
        })?;
        let now = Instant::now();
        self.times = offsets
            .keys()
            .map(|tp| {
                (
                    tp.clone(),
                    PartitionTime {
                        max_seen: None,
                        last_record: now,
                    },
                )
            })
            .collect();
        self.offsets = offsets;
        Ok(())
    }

    fn is_done(&self, tp: &Tp, next: i64) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|stop| stop.get(tp).is_none_or(|s| next >= *s))
    }

    fn all_done(&self) -> bool {
        self.stop.is_some() && self.offsets.iter().all(|(tp, o)| self.is_done(tp, *o))
    }

    /// Picks up partitions that appeared since the last look (unbounded only).
    fn discover(&mut self) -> Result<(), ConnectorError> {
        self.schedule_discovery();
        let new: Vec<Tp> = self
            .owned_partitions(false)?
            .into_iter()
            .filter(|tp| !self.offsets.contains_key(tp))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let offsets = self.start_offsets(&new, KafkaStart::Earliest)?;
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in &offsets {
            tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset))
                .map_err(|e| ConnectorError(kafka_error(&e)))?;
            self.times.insert(
                tp.clone(),
                PartitionTime {
                    max_seen: None,
                    last_record: Instant::now(),
                },
            );
        }
        self.consumer.incremental_assign(&tpl).map_err(|e| {
            ConnectorError(format!("cannot assign new partitions: {}", kafka_error(&e)))
        })?;
        tracing::info!(source = %self.name, split = self.split, partitions = ?new, "Kafka partitions discovered");
        self.offsets.extend(offsets);
        Ok(())
    }

    /// Bounded mode: partitions whose fetch position passed their stop
    /// offset without a record there (transaction markers and aborted
    /// records take offsets but are never delivered).
    fn advance_to_positions(&mut self) {
        if self.stop.is_none() {
            return;
        }
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for e in positions.elements() {
            if let Offset::Offset(at) = e.offset()
                && let Some(next) = self
                    .offsets
                    .get_mut(&(e.topic().to_string(), e.partition()))
            {
                *next = (*next).max(at);
            }
        }
    }

    fn warn_once(&mut self, message: String) {
        if self.warned.as_ref() != Some(&message) {
            tracing::warn!(source = %self.name, split = self.split, "Kafka: {message}");
            self.warned = Some(message);
        }
    }
}

impl Source for KafkaSource {
    fn next_batch(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
    ) -> Result<SourceStatus, ConnectorError> {
        if self.all_done() {
            return Ok(SourceStatus::Finished);
        }
        if self.stop.is_none()
            && self.spec.partition_discovery_ms > 0
            && Instant::now() >= self.next_discovery
        {
            // A broker that is down now is retried at the next discovery.
            if let Err(e) = self.discover() {
                self.warn_once(e.0);
            }
        }
        let mut wait = POLL_WAIT;
        let mut eof = false;
        while batch.len() < max_records && batch.encoded_bytes() < BATCH_BYTES_MAX {
            let Some(result) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let message = match result {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(_)) => {
                    eof = true;
                    continue;
                }
                // Broker down, leader moving, ...: librdkafka retries on
                // its own; the job goes on when the cluster is back.
                Err(e) => {
                    self.warn_once(kafka_error(&e));
                    continue;
                }
            };
            let tp = (message.topic().to_string(), message.partition());
            let offset = message.offset();
            let Some(&next) = self.offsets.get(&tp) else {
                continue; // not ours (an assignment being replaced)
            };
            if offset < next || self.is_done(&tp, offset) {
                continue;
            }
            let value = message.payload().unwrap_or_default();
            let kafka_ts = match message.timestamp() {
                Timestamp::NotAvailable => None,
                Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
            };
            let decoded = match self.decoder.decode(value, message.key(), kafka_ts) {
                Ok(d) => d,
                Err(e) => {
                    // Skipped or dead-lettered (or the job fails here).
                    let at = format!("{}/{} offset {offset}", tp.0, tp.1);
                    self.parse_errors.reject(&at, value, &e)?;
                    self.offsets.insert(tp.clone(), offset + 1);
                    continue;
                }
            };
            batch.push(decoded.timestamp, &decoded.key, value);
            self.offsets.insert(tp.clone(), offset + 1);
            if let Some(time) = self.times.get_mut(&tp) {
                time.last_record = Instant::now();
                if let Some(ts) = decoded.timestamp {
                    time.max_seen = Some(time.max_seen.map_or(ts, |m| m.max(ts)));
                }
            }
            self.warned = None;
        }
        if eof || batch.is_empty() {
            self.advance_to_positions();
        }
        Ok(if self.all_done() {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self) -> Value {
        Position {
            offsets: self.offsets.clone(),
            stop: self.stop.clone(),
        }
        .to_json()
    }

    fn seek(&mut self, position: &Value) -> Result<(), ConnectorError> {
        let position = Position::parse(position).map_err(ConnectorError)?;
        // Partitions the checkpoint does not know are new since: earliest.
        let owned = self.owned_partitions(false)?;
        let unknown: Vec<Tp> = owned
            .iter()
            .filter(|tp| !position.offsets.contains_key(*tp))
            .cloned()
            .collect();
        let mut offsets = self.start_offsets(&unknown, KafkaStart::Earliest)?;
        offsets.extend(position.offsets);
        if let Some(stop) = position.stop {
            // Bounded: only the partitions the first start found.
            offsets.retain(|tp, _| stop.contains_key(tp));
            self.stop = Some(stop);
        } else {
            self.stop = None;
        }
        self.assign(offsets)
    }

    fn max_timestamp_bound(&self) -> Option<i64> {
        let now = Instant::now();
        let mut bound: Option<i64> = None;
        for (tp, time) in &self.times {
            let next = self.offsets.get(tp).copied().unwrap_or(0);
            if self.is_done(tp, next) {
                continue;
            }
            if self
                .idle_timeout
                .is_some_and(|t| now.duration_since(time.last_record) >= t)
            {
                continue;
            }
            let seen = time.max_seen.unwrap_or(i64::MIN);
            bound = Some(bound.map_or(seen, |b| b.min(seen)));
        }
        bound
    }

    fn drain_dead_letters(&mut self, out: &mut BatchBuilder) {
        self.parse_errors.drain_into(out);
    }

    fn parse_error_counts(&self) -> ParseErrorCounts {
        self.parse_errors.counts()
    }

    fn checkpoint_complete(&mut self, id: u64, position: &Value) {
        let Ok(position) = Position::parse(position) else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in &position.offsets {
            if tpl
                .add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset))
                .is_err()
            {
                return;
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // For monitoring only (as in Flink): a failed commit loses nothing.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(
                source = %self.name,
                split = self.split,
                checkpoint = id,
                "cannot commit offsets to group `{}`: {}",
                self.spec.group_id,
                kafka_error(&e)
            );
        }
    }
}
