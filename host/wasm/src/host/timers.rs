//! `weir:operator/timers`: keyed event- and processing-time timers.
//!
//! Pending timers live in the host, so they are bounded per subtask, in
//! count (`timers_max`) and in the memory they take
//! (`timers_memory_max_bytes`, keys plus the queues' own overhead), over
//! both time domains together. Re-registering a pending timer is always
//! allowed: a window operator does it for every record.

use weir_core::timers::TimerQueue;

use super::lists::ListReader;
use super::{GuestState, mib};
use crate::bindings::TimeDomain;
use crate::bindings::weir::operator::timers::Host;

impl GuestState {
    /// The queue for `domain`, once the key is known to belong here.
    fn timer_queue(&mut self, domain: TimeDomain, key: &[u8]) -> wasmtime::Result<&mut TimerQueue> {
        self.check_key_len("timer key", key)?;
        self.check_key_owned(key)?;
        Ok(self.queue_mut(domain))
    }

    fn queue_mut(&mut self, domain: TimeDomain) -> &mut TimerQueue {
        match domain {
            TimeDomain::EventTime => &mut self.event_timers,
            TimeDomain::ProcessingTime => &mut self.processing_timers,
        }
    }

    /// Refuses a new pending timer over `timers_max` or
    /// `timers_memory_max_bytes`; says whether the timer is pending already
    /// (then it need not be registered again). Two additions and two
    /// comparisons on the common path. Near a limit the queues' counts are
    /// upper bounds (a key registered twice counts twice until its
    /// timestamp compacts), so they are made exact first.
    #[inline]
    fn check_timer_room(
        &mut self,
        domain: TimeDomain,
        key: &[u8],
        timestamp: i64,
    ) -> wasmtime::Result<bool> {
        if !self.timers_full(key) {
            return Ok(false);
        }
        self.event_timers.compact();
        self.processing_timers.compact();
        if self.queue_mut(domain).contains(timestamp, key) {
            return Ok(true);
        }
        if !self.timers_full(key) {
            return Ok(false);
        }
        let count = self.event_timers.len() + self.processing_timers.len();
        let limits = &self.limits;
        let what = if count >= limits.timers_max {
            format!(
                "{} pending timers (timers_max) reached; raise `timers_max` in the job file",
                limits.timers_max
            )
        } else {
            format!(
                "{count} pending timers reached the timer memory limit of {} (timers_memory_max_mb); \
                 raise `timers_memory_max_mb` in the job file",
                mib(limits.timers_memory_max_bytes)
            )
        };
        Err(self.over_limit(what))
    }

    /// Whether one more timer under `key` would pass a limit, by the
    /// queues' counts.
    #[inline]
    fn timers_full(&self, key: &[u8]) -> bool {
        let count = self.event_timers.len() + self.processing_timers.len();
        let memory = self.event_timers.memory_bytes() + self.processing_timers.memory_bytes();
        let limits = &self.limits;
        count >= limits.timers_max
            || memory + TimerQueue::memory_bytes_of_one(key.len()) > limits.timers_memory_max_bytes
    }
}

impl Host for GuestState {
    fn register_timer(
        &mut self,
        domain: TimeDomain,
        key: Vec<u8>,
        timestamp_ms: i64,
    ) -> wasmtime::Result<()> {
        self.timer_queue(domain, &key)?;
        if !self.check_timer_room(domain, &key, timestamp_ms)? {
            self.queue_mut(domain).register(timestamp_ms, &key);
        }
        Ok(())
    }

    fn register_timers(&mut self, timers: Vec<u8>) -> wasmtime::Result<()> {
        let malformed = |g: &GuestState, what| g.malformed_list("timers: register-timers", what);
        let mut reader = ListReader::new(&timers);
        let count = reader.u32().map_err(|e| malformed(self, e))?;
        for _ in 0..count {
            let (domain, key, timestamp) = reader.timer().map_err(|e| malformed(self, e))?;
            self.timer_queue(domain, key)?;
            if !self.check_timer_room(domain, key, timestamp)? {
                self.queue_mut(domain).register(timestamp, key);
            }
        }
        if !reader.is_done() {
            return Err(malformed(self, "bytes after the last entry"));
        }
        Ok(())
    }

    fn delete_timer(
        &mut self,
        domain: TimeDomain,
        key: Vec<u8>,
        timestamp_ms: i64,
    ) -> wasmtime::Result<()> {
        self.timer_queue(domain, &key)?.delete(timestamp_ms, &key);
        Ok(())
    }

    fn current_watermark(&mut self) -> wasmtime::Result<i64> {
        Ok(self.watermark)
    }

    fn current_processing_time(&mut self) -> wasmtime::Result<i64> {
        Ok(self.processing_time_ms)
    }
}
