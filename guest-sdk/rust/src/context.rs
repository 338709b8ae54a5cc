//! What an operator sees while it runs: the record or timer at hand, its
//! key, time, and where outputs go.

use crate::codec::{Data, Encode};
use crate::host::{Host, LogLevel, TimeDomain};
use crate::state::{ListState, MapState, StateDescriptor, StateKind, ValueState};
use crate::wire::Writer;
use crate::{Error, Result};

/// An input record with typed key and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    pub key: K,
    pub value: V,
    /// Event time in ms since the Unix epoch, if the record has one.
    pub timestamp: Option<i64>,
    /// Which input it came from (the order of `input` in the job file).
    pub input: u32,
}

/// A timer that fired, for the key it was registered under.
#[derive(Debug, Clone, PartialEq)]
pub struct Timer<K> {
    pub key: K,
    pub timestamp: i64,
    pub domain: TimeDomain,
}

/// Who this operator instance is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorInfo {
    pub name: String,
    pub subtask_index: u32,
    pub parallelism: u32,
    pub config: Vec<(String, String)>,
}

/// Handed to [`crate::Operator::open`]: declare state, read configuration.
pub struct OpenContext {
    pub(crate) info: OperatorInfo,
    pub(crate) states: Vec<StateDescriptor>,
    /// Write-back caches: the runtime flushes them and prefetches for them.
    pub(crate) write_backs: crate::cache::WriteBacks,
}

impl OpenContext {
    pub fn info(&self) -> &OperatorInfo {
        &self.info
    }

    /// A value from the operator's `config` table in the job file.
    pub fn config(&self, name: &str) -> Option<&str> {
        self.info
            .config
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A config value parsed as `T`, or `default` when absent.
    pub fn config_or<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.config(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|e| Error::msg(format!("config `{name}` = {text:?}: {e}"))),
        }
    }

    fn declare(&mut self, name: &str, kind: StateKind, ttl_ms: Option<u64>) -> Result<u32> {
        if self.states.iter().any(|s| s.name == name) {
            return Err(Error::msg(format!("state `{name}` is declared twice")));
        }
        self.states.push(StateDescriptor {
            name: name.to_string(),
            kind,
            ttl_ms,
        });
        Ok(self.states.len() as u32 - 1)
    }

    pub fn value_state<T: Data>(&mut self, name: &str) -> Result<ValueState<T>> {
        Ok(ValueState::new(self.declare(
            name,
            StateKind::Value,
            None,
        )?))
    }

    /// A value state whose entries expire `ttl_ms` after their last write.
    pub fn value_state_with_ttl<T: Data>(
        &mut self,
        name: &str,
        ttl_ms: u64,
    ) -> Result<ValueState<T>> {
        Ok(ValueState::new(self.declare(
            name,
            StateKind::Value,
            Some(ttl_ms),
        )?))
    }

    pub fn list_state<T: Data>(&mut self, name: &str) -> Result<ListState<T>> {
        Ok(ListState::new(self.declare(name, StateKind::List, None)?))
    }

    pub fn map_state<K: Data, V: Data>(&mut self, name: &str) -> Result<MapState<K, V>> {
        Ok(MapState::new(self.declare(name, StateKind::Map, None)?))
    }
}

/// Handed to `process` and `on_timer`, scoped to one key.
pub struct Context<'a> {
    pub(crate) host: &'a mut dyn Host,
    pub(crate) key: &'a [u8],
    pub(crate) timestamp: Option<i64>,
    pub(crate) out: &'a mut Writer,
    /// The watermark, once asked for: the host moves it only between
    /// calls, so one host call serves a whole batch.
    pub(crate) watermark: &'a mut Option<i64>,
}

impl Context<'_> {
    /// The current key, as the bytes the host sees.
    pub fn key_bytes(&self) -> &[u8] {
        self.key
    }

    /// The event time of the record or timer being handled.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// Emits a record stamped with the current event time.
    pub fn emit<K: Encode + ?Sized, V: Encode + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<()> {
        self.emit_at(key, value, self.timestamp)
    }

    /// Emits a record with an explicit event time (`None`: no event time).
    pub fn emit_at<K: Encode + ?Sized, V: Encode + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
        timestamp: Option<i64>,
    ) -> Result<()> {
        self.out.begin(timestamp);
        self.out.field(|buf| key.encode(buf));
        self.out.field(|buf| value.encode(buf));
        Ok(())
    }

    /// The operator's event-time watermark.
    pub fn watermark(&mut self) -> i64 {
        *self.watermark.get_or_insert_with(|| self.host.watermark())
    }

    pub fn processing_time(&mut self) -> i64 {
        self.host.processing_time()
    }

    /// Fires `on_timer` for the current key once the watermark reaches `timestamp`.
    pub fn register_event_timer(&mut self, timestamp: i64) {
        self.host
            .register_timer(TimeDomain::EventTime, self.key, timestamp)
    }

    pub fn delete_event_timer(&mut self, timestamp: i64) {
        self.host
            .delete_timer(TimeDomain::EventTime, self.key, timestamp)
    }

    /// Fires `on_timer` for the current key once processing time reaches `timestamp`.
    pub fn register_processing_timer(&mut self, timestamp: i64) {
        self.host
            .register_timer(TimeDomain::ProcessingTime, self.key, timestamp)
    }

    pub fn delete_processing_timer(&mut self, timestamp: i64) {
        self.host
            .delete_timer(TimeDomain::ProcessingTime, self.key, timestamp)
    }

    pub fn log(&mut self, level: LogLevel, message: &str) {
        self.host.log(level, message)
    }
}
