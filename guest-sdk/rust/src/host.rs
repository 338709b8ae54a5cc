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
    fn register_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp_ms: i64);
    fn delete_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp_ms: i64);
    fn watermark(&mut self) -> i64;
    fn processing_time(&mut self) -> i64;
    fn log(&mut self, level: LogLevel, message: &str);
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
        fn register_timer(&mut self, d: TimeDomain, key: &[u8], timestamp_ms: i64) {
            timers::register_timer(domain(d), key, timestamp_ms)
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
