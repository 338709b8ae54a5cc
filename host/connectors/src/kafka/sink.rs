//! The Kafka sink: every record to one topic, keyed by the operator's
//! record key, its value formatted like a file sink's line, its event time
//! as the Kafka timestamp.
//!
//! At-least-once: records are produced as they come; the barrier flushes
//! (waits for every acknowledgement) before the sink acknowledges the
//! checkpoint. Exactly-once: see [`super`] for the protocol; this file
//! holds the segments of records per checkpoint interval and the
//! transactions that make them visible.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{Value, json};
use weir_core::Batch;
use weir_core::job::{KafkaDelivery, KafkaSinkSpec, SinkFormat};

use super::{client_config, kafka_error};
use crate::{ConnectorError, Sink, format_record};

/// How long a flush, transaction call or offset request may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at a transaction call that fails with a retriable error.
const RETRIES: u32 = 20;

/// Keeps the first delivery failure for the sink thread to report.
#[derive(Default)]
struct Deliveries {
    failure: Mutex<Option<String>>,
}

struct Context(Arc<Deliveries>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failure = self.0.failure.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert_with(|| kafka_error(e));
        }
    }
}

/// Records between two barriers; `closed_by` is the checkpoint whose
/// barrier ended them.
struct Segment {
    closed_by: Option<u64>,
    batches: Vec<Batch>,
    /// Whether the records are in the open transaction.
    produced: bool,
}

/// Exactly-once state.
struct Transactions {
    transactional_id: String,
    /// Reads and writes the progress marker: the committed offset of group
    /// `transactional_id` on partition 0 of the topic is one more than the
    /// last checkpoint whose records were committed.
    marker: BaseConsumer,
    /// Oldest first; the last one is open. Only the head is ever produced.
    segments: VecDeque<Segment>,
    in_transaction: bool,
    last_barrier: Option<u64>,
}

pub struct KafkaSink {
    name: String,
    spec: KafkaSinkSpec,
    format: SinkFormat,
    producer: BaseProducer<Context>,
    deliveries: Arc<Deliveries>,
    txn: Option<Transactions>,
    value: Vec<u8>,
}

impl KafkaSink {
    /// Opens the sink (subtask `subtask`); with `restore`, first makes
    /// visible whatever the restored checkpoint holds that is not yet.
    pub fn open(
        name: &str,
        spec: &KafkaSinkSpec,
        format: SinkFormat,
        subtask: u32,
        restore: Option<&Value>,
    ) -> Result<Self, ConnectorError> {
        let deliveries = Arc::new(Deliveries::default());
        let mut config = client_config(&spec.bootstrap_servers);
        config.set("enable.idempotence", "true");
        let transactional_id = format!("{}-{subtask}", spec.transactional_id_prefix);
        if spec.delivery == KafkaDelivery::ExactlyOnce {
            config.set("transactional.id", &transactional_id);
        }
        for (k, v) in &spec.properties {
            config.set(k, v);
        }
        let producer: BaseProducer<Context> = config
            .create_with_context(Context(deliveries.clone()))
            .map_err(|e| ConnectorError(format!("cannot create a Kafka producer: {e}")))?;
        let mut sink = KafkaSink {
            name: name.to_string(),
            spec: spec.clone(),
            format,
            producer,
            deliveries,
            txn: None,
            value: Vec::new(),
        };
        if spec.delivery == KafkaDelivery::ExactlyOnce {
            let mut marker_config = client_config(&spec.bootstrap_servers);
            marker_config
                .set("group.id", &transactional_id)
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed");
            let marker: BaseConsumer = marker_config
                .create()
                .map_err(|e| ConnectorError(format!("cannot create a Kafka consumer: {e}")))?;
            // Fences every earlier producer with this id and aborts its
            // open transaction: what it held is in `restore`, if it counts.
            sink.producer
                .init_transactions(TIMEOUT)
                .map_err(|e| sink.error("cannot initialize transactions", &e))?;
            sink.txn = Some(Transactions {
                transactional_id,
                marker,
                segments: VecDeque::new(),
                in_transaction: false,
                last_barrier: None,
            });
            match restore {
                Some(state) => sink.recover(state)?,
                // A new lineage of checkpoints, whose ids start again:
                // a marker left by an earlier run must not cover them.
                None => sink.reset_marker()?,
            }
            sink.start_open_segment()?;
        }
        Ok(sink)
    }

    fn error(&self, what: &str, e: &KafkaError) -> ConnectorError {
        ConnectorError(format!(
            "topic `{}` on Kafka at {}: {what}: {}",
            self.spec.topic,
            self.spec.bootstrap_servers,
            kafka_error(e)
        ))
    }

    fn check_deliveries(&self) -> Result<(), ConnectorError> {
        let failure = self
            .deliveries
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failure {
            Some(e) => Err(ConnectorError(format!(
                "topic `{}`: a record was not delivered: {e}",
                self.spec.topic
            ))),
            None => Ok(()),
        }
    }

    /// Produces every record of `batch` (not waiting for acknowledgements).
    fn produce(&mut self, batch: &Batch) -> Result<(), ConnectorError> {
        for record in batch {
            self.value.clear();
            format_record(&record, self.format, &mut self.value);
            // A line's newline ends a line in a file, not a Kafka value.
            if self.value.last() == Some(&b'\n') {
                self.value.pop();
            }
            let mut out = BaseRecord::to(&self.spec.topic).payload(&self.value[..]);
            if !record.key.is_empty() {
                out = out.key(record.key);
            }
            if let Some(ts) = record.timestamp {
                out = out.timestamp(ts);
            }
            loop {
                match self.producer.send(out) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's queue is full: let it send some.
                        self.producer.poll(Duration::from_millis(10));
                        out = back;
                    }
                    Err((e, _)) => {
                        return Err(ConnectorError(format!(
                            "topic `{}`: cannot produce: {}",
                            self.spec.topic,
                            kafka_error(&e)
                        )));
                    }
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        self.producer
            .flush(TIMEOUT)
            .map_err(|e| self.error("cannot flush", &e))?;
        self.check_deliveries()
    }
}

/// Exactly-once: transactions.
impl KafkaSink {
    fn txn(&mut self) -> &mut Transactions {
        self.txn
            .as_mut()
            .expect("only called on an exactly-once sink")
    }

    fn marker_partition(&self) -> Result<TopicPartitionList, ConnectorError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.spec.topic, 0);
        Ok(tpl)
    }

    /// The first checkpoint id whose records are not known committed.
    fn committed_marker(&self) -> Result<u64, ConnectorError> {
        let txn = self.txn.as_ref().expect("exactly-once");
        let tpl = txn
            .marker
            .committed_offsets(self.marker_partition()?, TIMEOUT)
            .map_err(|e| self.error("cannot read the sink's progress marker", &e))?;
        Ok(
            match tpl.find_partition(&self.spec.topic, 0).map(|e| e.offset()) {
                Some(Offset::Offset(n)) if n > 0 => n as u64,
                _ => 0,
            },
        )
    }

    fn begin(&mut self) -> Result<(), ConnectorError> {
        self.producer
            .begin_transaction()
            .map_err(|e| self.error("cannot begin a transaction", &e))?;
        self.txn().in_transaction = true;
        Ok(())
    }

    /// Produces the head segment into the open transaction.
    fn produce_head(&mut self) -> Result<(), ConnectorError> {
        let batches = match self.txn().segments.front_mut() {
            Some(head) if !head.produced => {
                head.produced = true;
                std::mem::take(&mut head.batches)
            }
            _ => return Ok(()),
        };
        for batch in &batches {
            self.produce(batch)?;
        }
        if let Some(head) = self.txn().segments.front_mut() {
            head.batches = batches;
        }
        Ok(())
    }

    /// Commits the open transaction with the marker saying checkpoint
    /// `through` is visible. An abortable failure aborts and produces the
    /// head segment again (it is still in memory); a retriable one retries.
    fn commit_transaction(&mut self, through: u64) -> Result<(), ConnectorError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let result = self.send_marker(through as i64 + 1).and_then(|()| {
                self.producer
                    .commit_transaction(TIMEOUT)
                    .map_err(Retry::Kafka)
            });
            match result {
                Ok(()) => {
                    self.txn().in_transaction = false;
                    return Ok(());
                }
                Err(Retry::Fatal(e)) => return Err(e),
                Err(Retry::Kafka(e)) => {
                    let txn_error = match &e {
                        KafkaError::Transaction(t) => {
                            Some((t.is_retriable(), t.txn_requires_abort()))
                        }
                        _ => None,
                    };
                    match txn_error {
                        Some((true, _)) if tries < RETRIES => {
                            tracing::warn!(sink = %self.name, "Kafka commit failed, retrying: {}", kafka_error(&e));
                            std::thread::sleep(Duration::from_millis(100 * u64::from(tries)));
                        }
                        Some((_, true)) if tries < RETRIES => {
                            tracing::warn!(sink = %self.name, "Kafka transaction aborted, producing it again: {}", kafka_error(&e));
                            self.producer
                                .abort_transaction(TIMEOUT)
                                .map_err(|e| self.error("cannot abort a transaction", &e))?;
                            self.deliveries
                                .failure
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .take();
                            self.begin()?;
                            if let Some(head) = self.txn().segments.front_mut() {
                                head.produced = false;
                            }
                            self.produce_head()?;
                        }
                        _ => return Err(self.error("cannot commit a transaction", &e)),
                    }
                }
            }
        }
    }

    /// Adds the progress marker (`offset`) to the open transaction.
    fn send_marker(&mut self, offset: i64) -> Result<(), Retry> {
        let txn = self.txn.as_ref().expect("exactly-once");
        let group = txn.marker.group_metadata().ok_or_else(|| {
            Retry::Fatal(ConnectorError(format!(
                "sink `{}`: no group metadata for the progress marker",
                self.name
            )))
        })?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.spec.topic, 0, Offset::Offset(offset))
            .map_err(|e| Retry::Fatal(ConnectorError(kafka_error(&e))))?;
        self.producer
            .send_offsets_to_transaction(&tpl, &group, TIMEOUT)
            .map_err(Retry::Kafka)?;
        self.check_deliveries().map_err(Retry::Fatal)
    }

    /// Makes every closed segment up to checkpoint `id` visible, each in its
    /// own transaction, then opens one for the (new) head.
    fn commit_through(&mut self, id: u64) -> Result<(), ConnectorError> {
        while let Some(closed) = self
            .txn()
            .segments
            .front()
            .and_then(|s| s.closed_by)
            .filter(|closed| *closed <= id)
        {
            if !self.txn().in_transaction {
                self.begin()?;
            }
            self.produce_head()?;
            self.commit_transaction(closed)?;
            self.txn().segments.pop_front();
        }
        self.start_open_segment()
    }

    /// Ensures an open segment at the tail and a transaction holding the head.
    fn start_open_segment(&mut self) -> Result<(), ConnectorError> {
        let txn = self.txn();
        if txn.segments.back().is_none_or(|s| s.closed_by.is_some()) {
            txn.segments.push_back(Segment {
                closed_by: None,
                batches: Vec::new(),
                produced: false,
            });
        }
        if !self.txn().in_transaction {
            self.begin()?;
        }
        self.produce_head()
    }

    fn reset_marker(&mut self) -> Result<(), ConnectorError> {
        self.begin()?;
        match self.send_marker(0) {
            Ok(()) => {}
            Err(Retry::Fatal(e)) => return Err(e),
            Err(Retry::Kafka(e)) => return Err(self.error("cannot reset the progress marker", &e)),
        }
        self.producer
            .commit_transaction(TIMEOUT)
            .map_err(|e| self.error("cannot reset the progress marker", &e))?;
        self.txn().in_transaction = false;
        Ok(())
    }

    /// After a restart: produces what the restored checkpoint holds and the
    /// marker says is not committed, and commits it.
    fn recover(&mut self, state: &Value) -> Result<(), ConnectorError> {
        let segments = decode_state(state)
            .map_err(|e| ConnectorError(format!("sink `{}`: cannot restore: {e}", self.name)))?;
        let committed_before = self.committed_marker()?;
        let pending: Vec<(u64, Vec<Batch>)> = segments
            .into_iter()
            .filter(|(id, _)| *id >= committed_before)
            .collect();
        tracing::info!(
            sink = %self.name,
            pending = pending.len(),
            "Kafka sink restored: producing checkpointed records not yet committed"
        );
        for (id, batches) in pending {
            self.txn().segments.push_back(Segment {
                closed_by: Some(id),
                batches,
                produced: false,
            });
            self.txn().last_barrier = Some(id);
        }
        if let Some(last) = self.txn().last_barrier {
            self.commit_through(last)?;
        }
        Ok(())
    }
}

enum Retry {
    Kafka(KafkaError),
    Fatal(ConnectorError),
}

/// The snapshot of the closed segments: `{"transactional_id": ..,
/// "segments": [{"checkpoint": id, "batches": [base64, ..]}, ..]}`.
fn encode_state(txn: &Transactions) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let segments: Vec<Value> = txn
        .segments
        .iter()
        .filter_map(|s| {
            s.closed_by.map(|id| {
                json!({
                    "checkpoint": id,
                    "batches": s.batches.iter().map(|b| b64.encode(b.as_bytes())).collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    json!({"transactional_id": txn.transactional_id, "segments": segments})
}

fn decode_state(state: &Value) -> Result<Vec<(u64, Vec<Batch>)>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let segments = state
        .get("segments")
        .and_then(Value::as_array)
        .ok_or("the sink state has no `segments` list")?;
    segments
        .iter()
        .map(|s| {
            let id = s
                .get("checkpoint")
                .and_then(Value::as_u64)
                .ok_or("a segment has no checkpoint id")?;
            let batches = s
                .get("batches")
                .and_then(Value::as_array)
                .ok_or("a segment has no `batches`")?
                .iter()
                .map(|b| {
                    let bytes = b
                        .as_str()
                        .and_then(|t| b64.decode(t).ok())
                        .ok_or("a batch is not base64")?;
                    Batch::from_bytes(bytes).map_err(|e| format!("a batch is damaged: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok((id, batches))
        })
        .collect()
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &Batch) -> Result<(), ConnectorError> {
        let Some(txn) = &mut self.txn else {
            return self.produce(batch);
        };
        let head_is_open = txn.segments.len() == 1;
        let tail = txn.segments.back_mut().expect("an open segment");
        tail.batches.push(batch.clone());
        if head_is_open {
            self.produce(batch)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        if self.txn.is_none() {
            return self.flush();
        }
        // Nothing follows: everything left becomes visible now.
        let through = self.txn().last_barrier.map_or(0, |b| b + 1);
        if let Some(open) = self.txn().segments.back_mut() {
            open.closed_by = Some(through);
        }
        self.commit_through(through)?;
        // `commit_through` opened a transaction for a new, empty segment.
        self.producer
            .abort_transaction(TIMEOUT)
            .map_err(|e| self.error("cannot end the last transaction", &e))?;
        self.txn().in_transaction = false;
        Ok(())
    }

    fn snapshot(&mut self, id: u64) -> Result<Value, ConnectorError> {
        let Some(txn) = &mut self.txn else {
            self.flush()?;
            return Ok(Value::Null);
        };
        txn.last_barrier = Some(id);
        let tail = txn.segments.back_mut().expect("an open segment");
        tail.closed_by = Some(id);
        txn.segments.push_back(Segment {
            closed_by: None,
            batches: Vec::new(),
            produced: false,
        });
        // The head's records are in Kafka before the checkpoint counts on
        // them (the state holds them too, for a restore).
        self.flush()?;
        Ok(encode_state(self.txn.as_ref().expect("exactly-once")))
    }

    fn commit(&mut self, id: u64) -> Result<(), ConnectorError> {
        if self.txn.is_some() {
            self.commit_through(id)?;
        }
        Ok(())
    }
}
