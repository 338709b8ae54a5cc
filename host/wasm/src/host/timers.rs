//! `weir:operator/timers`: keyed event- and processing-time timers.

use weir_core::timers::TimerQueue;

use super::GuestState;
use crate::bindings::TimeDomain;
use crate::bindings::weir::operator::timers::Host;

impl GuestState {
    /// The queue for `domain`, once the key is known to belong here.
    fn timer_queue(&mut self, domain: TimeDomain, key: &[u8]) -> wasmtime::Result<&mut TimerQueue> {
        self.check_key_owned(key)?;
        Ok(match domain {
            TimeDomain::EventTime => &mut self.event_timers,
            TimeDomain::ProcessingTime => &mut self.processing_timers,
        })
    }
}

impl Host for GuestState {
    fn register_timer(
        &mut self,
        domain: TimeDomain,
        key: Vec<u8>,
        timestamp_ms: i64,
    ) -> wasmtime::Result<()> {
        self.timer_queue(domain, &key)?.register(timestamp_ms, &key);
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
