//! What the SDK needs from the host, so the same operator code runs inside
//! the weir host (through the WIT imports) and in the native test harness.

/// Which clock a timer runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    EventTime,
    ProcessingTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

use crate::wire::TimerBatch;

/// The host services an operator call can use.
pub(crate) trait Host {
    fn value_get(&mut self, state: u32, key: &[u8]) -> Option<Vec<u8>>;
    fn value_set(&mut self, state: u32, key: &[u8], value: &[u8]);
    fn list_append(&mut self, state: u32, key: &[u8], value: &[u8]);
    fn list_get(&mut self, state: u32, key: &[u8]) -> Vec<Vec<u8>>;
    fn map_get(&mut self, state: u32, key: &[u8], map_key: &[u8]) -> Option<Vec<u8>>;
    fn map_put(&mut self, state: u32, key: &[u8], map_key: &[u8], value: &[u8]);
    fn map_remove(&mut self, state: u32, key: &[u8], map_key: &[u8]);
    /// Entries ordered by map key bytes.
    fn map_entries(&mut self, state: u32, key: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
    fn clear(&mut self, state: u32, key: &[u8]);
    /// Sets or clears many keys' value state: a `value-write-many` list
    /// (`wire::ValueWrites`).
    fn value_write_many(&mut self, state: u32, writes: &[u8]);
    fn register_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp_ms: i64);
    /// Registers a timer batch (`wire::TimerBatch`).
    fn register_timers(&mut self, timers: &[u8]);
    fn delete_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp_ms: i64);
    fn watermark(&mut self) -> i64;
    fn processing_time(&mut self) -> i64;
    fn log(&mut self, level: LogLevel, message: &str);
}

/// What [`TimerBuffer`] holds back at most before it hands it over.
const TIMER_BATCH_BYTES_MAX: usize = 64 << 10;

/// A host whose timer registrations wait for [`TimerBuffer::flush`] and
/// then go over in one `register-timers` call: every call into the host
/// has a fixed cost, and a window operator registers a timer per window.
/// Holding them until the end of the guest call changes nothing the
/// operator can see, since timers fire only between calls. A deletion
/// first flushes, so a timer registered and deleted in one call is gone.
pub(crate) struct TimerBuffer<'a> {
    host: &'a mut dyn Host,
    timers: &'a mut TimerBatch,
}

impl<'a> TimerBuffer<'a> {
    pub(crate) fn new(host: &'a mut dyn Host, timers: &'a mut TimerBatch) -> Self {
        timers.reset();
        TimerBuffer { host, timers }
    }

    pub(crate) fn flush(&mut self) {
        if !self.timers.is_empty() {
            self.host.register_timers(self.timers.get());
            self.timers.reset();
        }
    }
}

impl Host for TimerBuffer<'_> {
    fn value_get(&mut self, state: u32, key: &[u8]) -> Option<Vec<u8>> {
        self.host.value_get(state, key)
    }
    fn value_set(&mut self, state: u32, key: &[u8], value: &[u8]) {
        self.host.value_set(state, key, value)
    }
    fn list_append(&mut self, state: u32, key: &[u8], value: &[u8]) {
        self.host.list_append(state, key, value)
    }
    fn list_get(&mut self, state: u32, key: &[u8]) -> Vec<Vec<u8>> {
        self.host.list_get(state, key)
    }
    fn map_get(&mut self, state: u32, key: &[u8], map_key: &[u8]) -> Option<Vec<u8>> {
        self.host.map_get(state, key, map_key)
    }
    fn map_put(&mut self, state: u32, key: &[u8], map_key: &[u8], value: &[u8]) {
        self.host.map_put(state, key, map_key, value)
    }
    fn map_remove(&mut self, state: u32, key: &[u8], map_key: &[u8]) {
        self.host.map_remove(state, key, map_key)
    }
    fn map_entries(&mut self, state: u32, key: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.host.map_entries(state, key)
    }
    fn clear(&mut self, state: u32, key: &[u8]) {
        self.host.clear(state, key)
    }
    fn value_write_many(&mut self, state: u32, writes: &[u8]) {
        self.host.value_write_many(state, writes)
    }
    fn register_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp_ms: i64) {
        self.timers.push(domain, key, timestamp_ms);
        // Bounded: an operator that registers without end meets the host's
        // timer limits (and their message), not the guest memory limit.
        if self.timers.byte_len() >= TIMER_BATCH_BYTES_MAX {
            self.flush();
        }
    }
    fn register_timers(&mut self, timers: &[u8]) {
        self.flush();
        self.host.register_timers(timers)
    }
    fn delete_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp_ms: i64) {
        self.flush();
        self.host.delete_timer(domain, key, timestamp_ms)
    }
    fn watermark(&mut self) -> i64 {
        self.host.watermark()
    }
    fn processing_time(&mut self) -> i64 {
        self.host.processing_time()
    }
    fn log(&mut self, level: LogLevel, message: &str) {
        self.host.log(level, message)
    }
}

/// The real host, through the component's imports.
#[cfg(target_arch = "wasm32")]
pub(crate) struct WitHost;

#[cfg(target_arch = "wasm32")]
mod wit {
    use super::{Host, LogLevel, TimeDomain, WitHost};
    use crate::bindings::weir::operator::{keyed_state as ks, log, timers, types};

    fn domain(d: TimeDomain) -> types::TimeDomain {
        match d {
            TimeDomain::EventTime => types::TimeDomain::EventTime,
            TimeDomain::ProcessingTime => types::TimeDomain::ProcessingTime,
        }
    }

    impl Host for WitHost {
        fn value_get(&mut self, state: u32, key: &[u8]) -> Option<Vec<u8>> {
            ks::value_get(state, key)
        }
        fn value_set(&mut self, state: u32, key: &[u8], value: &[u8]) {
            ks::value_set(state, key, value)
        }
        fn list_append(&mut self, state: u32, key: &[u8], value: &[u8]) {
            ks::list_append(state, key, value)
        }
        fn list_get(&mut self, state: u32, key: &[u8]) -> Vec<Vec<u8>> {
            ks::list_get(state, key)
        }
        fn map_get(&mut self, state: u32, key: &[u8], map_key: &[u8]) -> Option<Vec<u8>> {
            ks::map_get(state, key, map_key)
        }
        fn map_put(&mut self, state: u32, key: &[u8], map_key: &[u8], value: &[u8]) {
            ks::map_put(state, key, map_key, value)
        }
        fn map_remove(&mut self, state: u32, key: &[u8], map_key: &[u8]) {
            ks::map_remove(state, key, map_key)
        }
        fn map_entries(&mut self, state: u32, key: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
            decode_entries(&ks::map_entries(state, key))
        }
        fn clear(&mut self, state: u32, key: &[u8]) {
            ks::clear(state, key)
        }
        fn value_write_many(&mut self, state: u32, writes: &[u8]) {
            ks::value_write_many(state, writes)
        }
        fn register_timer(&mut self, d: TimeDomain, key: &[u8], timestamp_ms: i64) {
            timers::register_timer(domain(d), key, timestamp_ms)
        }
        fn register_timers(&mut self, batch: &[u8]) {
            timers::register_timers(batch)
        }
        fn delete_timer(&mut self, d: TimeDomain, key: &[u8], timestamp_ms: i64) {
            timers::delete_timer(domain(d), key, timestamp_ms)
        }
        fn watermark(&mut self) -> i64 {
            timers::current_watermark()
        }
        fn processing_time(&mut self) -> i64 {
            timers::current_processing_time()
        }
        fn log(&mut self, level: LogLevel, message: &str) {
            let level = match level {
                LogLevel::Trace => types::LogLevel::Trace,
                LogLevel::Debug => types::LogLevel::Debug,
                LogLevel::Info => types::LogLevel::Info,
                LogLevel::Warn => types::LogLevel::Warn,
                LogLevel::Error => types::LogLevel::Error,
            };
            log::log(level, message)
        }
    }

    /// The host encodes map entries like a batch without timestamps.
    fn decode_entries(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut reader = crate::wire::Reader::new(bytes);
        let count = reader.u32().unwrap_or(0);
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            match (reader.bytes(), reader.bytes()) {
                (Ok(k), Ok(v)) => out.push((k.to_vec(), v.to_vec())),
                _ => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::Harness;
    use crate::{Context, OpenContext, Operator, Record, Result, TimeDomain};

    /// "set T" registers an event timer at T, "both T" registers and then
    /// deletes it, "drop T" deletes it: all within one call each.
    struct Timers;

    impl Operator for Timers {
        type Key = String;
        type Value = String;
        fn open(_: &mut OpenContext) -> Result<Self> {
            Ok(Timers)
        }
        fn process(&mut self, ctx: &mut Context, r: Record<String, String>) -> Result<()> {
            let (what, at) = r.value.split_once(' ').unwrap_or_default();
            let at: i64 = at.parse().unwrap_or_default();
            match what {
                "set" => ctx.register_event_timer(at),
                "both" => {
                    ctx.register_event_timer(at);
                    ctx.register_event_timer(at + 1);
                    ctx.delete_event_timer(at);
                }
                _ => ctx.delete_event_timer(at),
            }
            Ok(())
        }
    }

    #[test]
    fn held_back_timers_reach_the_host_in_order_with_deletions() {
        let mut h = Harness::<Timers>::new().unwrap();
        let key = "k".to_string();
        h.process(&key, &"set 5".to_string(), None).unwrap();
        h.process(&key, &"both 7".to_string(), None).unwrap();
        let pending = |h: &Harness<Timers>| -> Vec<i64> {
            h.pending_timers().iter().map(|(_, t, _)| *t).collect()
        };
        assert_eq!(pending(&h), [5, 8]);
        h.process(&key, &"drop 5".to_string(), None).unwrap();
        assert_eq!(pending(&h), [8]);
        assert!(
            h.pending_timers()
                .iter()
                .all(|(d, _, k)| *d == TimeDomain::EventTime && k == b"k")
        );
    }
}
