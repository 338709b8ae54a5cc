//! Unit-test operators natively, without the weir host.
//!
//! [`Harness`] runs an operator through the same batch decoding and
//! encoding as inside a component, against an in-memory host that behaves
//! like weir's: keyed state per key, timers that fire once per (key, time)
//! when the watermark or processing time reaches them, in time order.

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{Data, Decode, Encode};
use crate::context::OperatorInfo;
use crate::host::{Host, LogLevel, TimeDomain};
use crate::runtime;
use crate::wire::{Reader, Writer};
use crate::{Error, Operator, Result};

/// A record the operator emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub timestamp: Option<i64>,
}

impl Emitted {
    pub fn key_as<T: Decode>(&self) -> Result<T> {
        T::decode(&self.key)
    }

    pub fn value_as<T: Decode>(&self) -> Result<T> {
        T::decode(&self.value)
    }

    /// Key and value as (lossy) text, handy in assertions.
    pub fn text(&self) -> (String, String) {
        (
            String::from_utf8_lossy(&self.key).into_owned(),
            String::from_utf8_lossy(&self.value).into_owned(),
        )
    }
}

#[derive(Default)]
pub(crate) struct MemoryHost {
    values: BTreeMap<(u32, Vec<u8>), Vec<u8>>,
    lists: BTreeMap<(u32, Vec<u8>), Vec<Vec<u8>>>,
    maps: BTreeMap<(u32, Vec<u8>), BTreeMap<Vec<u8>, Vec<u8>>>,
    timers: BTreeSet<(TimeDomain, i64, Vec<u8>)>,
    watermark: i64,
    processing_time: i64,
    logs: Vec<(LogLevel, String)>,
    /// `value-write-many` calls so far (tests of how writes are grouped).
    pub(crate) value_write_many_calls: usize,
}

impl Host for MemoryHost {
    fn value_get(&mut self, state: u32, key: &[u8]) -> Option<Vec<u8>> {
        self.values.get(&(state, key.to_vec())).cloned()
    }
    fn value_set(&mut self, state: u32, key: &[u8], value: &[u8]) {
        self.values.insert((state, key.to_vec()), value.to_vec());
    }
    fn list_append(&mut self, state: u32, key: &[u8], value: &[u8]) {
        self.lists
            .entry((state, key.to_vec()))
            .or_default()
            .push(value.to_vec());
    }
    fn list_get(&mut self, state: u32, key: &[u8]) -> Vec<Vec<u8>> {
        self.lists
            .get(&(state, key.to_vec()))
            .cloned()
            .unwrap_or_default()
    }
    fn map_get(&mut self, state: u32, key: &[u8], map_key: &[u8]) -> Option<Vec<u8>> {
        self.maps
            .get(&(state, key.to_vec()))
            .and_then(|m| m.get(map_key))
            .cloned()
    }
    fn map_put(&mut self, state: u32, key: &[u8], map_key: &[u8], value: &[u8]) {
        self.maps
            .entry((state, key.to_vec()))
            .or_default()
            .insert(map_key.to_vec(), value.to_vec());
    }
    fn map_remove(&mut self, state: u32, key: &[u8], map_key: &[u8]) {
        if let Some(m) = self.maps.get_mut(&(state, key.to_vec())) {
            m.remove(map_key);
        }
    }
    fn map_entries(&mut self, state: u32, key: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.maps
            .get(&(state, key.to_vec()))
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
    fn clear(&mut self, state: u32, key: &[u8]) {
        let k = (state, key.to_vec());
        self.values.remove(&k);
        self.lists.remove(&k);
        self.maps.remove(&k);
    }
    fn value_write_many(&mut self, state: u32, writes: &[u8]) {
        self.value_write_many_calls += 1;
        // The SDK built the list; a malformed one is a bug in it.
        let writes = crate::wire::value_writes(writes).expect("a well-formed value writes list");
        for (key, value) in writes {
            match value {
                Some(value) => self.value_set(state, key, value),
                None => self.clear(state, key),
            }
        }
    }
    fn register_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp_ms: i64) {
        self.timers.insert((domain, timestamp_ms, key.to_vec()));
    }
    fn register_timers(&mut self, timers: &[u8]) {
        // The SDK built the batch; a malformed one is a bug in it.
        for (domain, key, timestamp) in
            crate::wire::timers(timers).expect("a well-formed timer batch")
        {
            self.register_timer(domain, key, timestamp);
        }
    }
    fn delete_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp_ms: i64) {
        self.timers.remove(&(domain, timestamp_ms, key.to_vec()));
    }
    fn watermark(&mut self) -> i64 {
        self.watermark
    }
    fn processing_time(&mut self) -> i64 {
        self.processing_time
    }
    fn log(&mut self, level: LogLevel, message: &str) {
        self.logs.push((level, message.to_string()));
    }
}

/// Runs one operator instance natively with an in-memory host.
pub struct Harness<O: Operator> {
    instance: runtime::Instance<O>,
    info: OperatorInfo,
    host: MemoryHost,
}

impl<O: Operator> Harness<O> {
    pub fn new() -> Result<Self> {
        Self::with_info(OperatorInfo {
            name: "test".into(),
            subtask_index: 0,
            parallelism: 1,
            config: Vec::new(),
        })
    }

    /// Opens the operator with these `config` entries.
    pub fn with_config(config: &[(&str, &str)]) -> Result<Self> {
        let config = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::with_info(OperatorInfo {
            name: "test".into(),
            subtask_index: 0,
            parallelism: 1,
            config,
        })
    }

    /// Opens the operator with `info`. Like weir's host, the harness calls
    /// `prepare-snapshot` before it snapshots ([`Harness::restart`]) and
    /// says so in the config (`weir.prepare_snapshot` = `1`), unless
    /// `info` sets that entry itself (`0`: act as a host that does not).
    pub fn with_info(mut info: OperatorInfo) -> Result<Self> {
        if !info
            .config
            .iter()
            .any(|(k, _)| k == runtime::PREPARE_SNAPSHOT_CONFIG)
        {
            info.config
                .push((runtime::PREPARE_SNAPSHOT_CONFIG.into(), "1".into()));
        }
        let (instance, _states) = runtime::open::<O>(info.clone())?;
        Ok(Harness {
            instance,
            info,
            host: MemoryHost {
                watermark: i64::MIN,
                ..MemoryHost::default()
            },
        })
    }

    /// Snapshots and restores at once: prepares the instance for a
    /// snapshot (it writes back what it holds), then drops it and opens a
    /// new one over the same state and timers, as the host does when it
    /// restores that snapshot: whatever else the operator kept only in its
    /// own memory is gone.
    pub fn restart(&mut self) -> Result<()> {
        self.prepare_snapshot();
        let (instance, _states) = runtime::open::<O>(self.info.clone())?;
        self.instance = instance;
        Ok(())
    }

    /// What the host does right before a snapshot: the operator writes
    /// back the state it holds in its own memory.
    pub fn prepare_snapshot(&mut self) {
        self.instance.prepare_snapshot(&mut self.host);
    }

    /// Processes records (key, value, timestamp) from input 0 as one
    /// batch.
    pub fn process_records<K: Encode, V: Encode>(
        &mut self,
        records: &[(K, V, Option<i64>)],
    ) -> Result<Vec<Emitted>> {
        let mut batch = Writer::new();
        for (key, value, timestamp) in records {
            batch.begin(*timestamp);
            batch.field(|b| key.encode(b));
            batch.field(|b| value.encode(b));
        }
        self.process_batch(0, &batch.finish())
    }

    /// Processes one record from input 0.
    pub fn process<K: Encode + ?Sized, V: Encode + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
        timestamp: Option<i64>,
    ) -> Result<Vec<Emitted>> {
        self.process_input(0, key, value, timestamp)
    }

    pub fn process_input<K: Encode + ?Sized, V: Encode + ?Sized>(
        &mut self,
        input: u32,
        key: &K,
        value: &V,
        timestamp: Option<i64>,
    ) -> Result<Vec<Emitted>> {
        let mut batch = Writer::new();
        batch.begin(timestamp);
        batch.field(|b| key.encode(b));
        batch.field(|b| value.encode(b));
        self.process_batch(input, &batch.finish())
    }

    /// Processes an encoded batch, exactly as the host would hand it in.
    pub fn process_batch(&mut self, input: u32, batch: &[u8]) -> Result<Vec<Emitted>> {
        decode(&self.process_batch_encoded(input, batch)?)
    }

    /// As [`Harness::process_batch`], returning the encoded output batch
    /// (what a component returns to the host).
    pub fn process_batch_encoded(&mut self, input: u32, batch: &[u8]) -> Result<Vec<u8>> {
        self.instance.process(&mut self.host, input, batch)
    }

    /// Advances the watermark and fires due event-time timers, in order.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Vec<Emitted>> {
        self.host.watermark = self.host.watermark.max(watermark);
        self.fire(TimeDomain::EventTime, watermark)
    }

    /// Advances processing time and fires due processing-time timers.
    pub fn advance_processing_time(&mut self, now: i64) -> Result<Vec<Emitted>> {
        self.host.processing_time = self.host.processing_time.max(now);
        self.fire(TimeDomain::ProcessingTime, now)
    }

    /// How many keys have a value in value state `state` (its index in
    /// the order `open` declared states), as the host holds it now.
    pub fn value_state_len(&self, state: u32) -> usize {
        self.host.values.keys().filter(|(s, _)| *s == state).count()
    }

    /// Pending timers as (domain, timestamp, key).
    pub fn pending_timers(&self) -> Vec<(TimeDomain, i64, Vec<u8>)> {
        self.host.timers.iter().cloned().collect()
    }

    pub fn logs(&self) -> &[(LogLevel, String)] {
        &self.host.logs
    }

    pub fn operator(&mut self) -> &mut O {
        &mut self.instance.op
    }

    fn fire(&mut self, domain: TimeDomain, time: i64) -> Result<Vec<Emitted>> {
        let mut emitted = Vec::new();
        // One timer at a time: a timer may register another that is due too.
        loop {
            let due = self
                .host
                .timers
                .iter()
                .find(|(d, t, _)| *d == domain && *t <= time)
                .cloned();
            let Some(timer) = due else { break };
            self.host.timers.remove(&timer);
            let (_, timestamp, key) = timer;
            let mut encoded = Vec::new();
            encoded.extend_from_slice(&1u32.to_le_bytes());
            encoded.extend_from_slice(&timestamp.to_le_bytes());
            encoded.push(match domain {
                TimeDomain::EventTime => 0,
                TimeDomain::ProcessingTime => 1,
            });
            encoded.extend_from_slice(&(key.len() as u32).to_le_bytes());
            encoded.extend_from_slice(&key);
            let out = self.instance.on_timers(&mut self.host, &encoded)?;
            emitted.extend(decode(&out)?);
        }
        Ok(emitted)
    }
}

fn decode(batch: &[u8]) -> Result<Vec<Emitted>> {
    let mut reader = Reader::new(batch);
    let count = reader.u32()?;
    (0..count)
        .map(|_| {
            Ok(Emitted {
                timestamp: reader.timestamp()?,
                key: reader.bytes()?.to_vec(),
                value: reader.bytes()?.to_vec(),
            })
        })
        .collect::<Result<_, Error>>()
}

/// A state handle with an arbitrary index, for testing how hosts treat
/// operators that misuse state. Not for operators.
#[doc(hidden)]
pub fn rogue_value_state<T: Data>(index: u32) -> crate::ValueState<T> {
    crate::ValueState::new(index)
}
