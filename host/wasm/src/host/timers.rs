//! `weir:operator/timers`: keyed event- and processing-time timers.

use super::GuestState;
use crate::bindings::TimeDomain;
use crate::bindings::weir::operator::timers::Host;

impl Host for GuestState {
    fn register_timer(
        &mut self,
        domain: TimeDomain,
        key: Vec<u8>,
        timestamp_ms: i64,
    ) -> wasmtime::Result<()> {
        self.check_key_owned(&key)?;
        match domain {
            TimeDomain::EventTime => self.event_timers.register(timestamp_ms, &key),
            TimeDomain::ProcessingTime => self.processing_timers.register(timestamp_ms, &key),
        }
        Ok(())
    }

    fn delete_timer(
        &mut self,
        domain: TimeDomain,
        key: Vec<u8>,
        timestamp_ms: i64,
    ) -> wasmtime::Result<()> {
        self.check_key_owned(&key)?;
        match domain {
            TimeDomain::EventTime => self.event_timers.delete(timestamp_ms, &key),
            TimeDomain::ProcessingTime => self.processing_timers.delete(timestamp_ms, &key),
        }
        Ok(())
    }

    fn current_watermark(&mut self) -> wasmtime::Result<i64> {
        Ok(self.watermark)
    }

    fn current_processing_time(&mut self) -> wasmtime::Result<i64> {
        Ok(self.processing_time_ms)
    }
}
