//! `weir:operator/log`: guest messages into the host's log, cut and
//! rate-limited.
//!
//! Each message is cut and escaped ([`weir_core::text::cut_message`]) before
//! anything else sees it, and each subtask may log `log_lines_per_second`
//! lines (a token bucket with a small burst); the rest are dropped, counted,
//! and reported as one line now and then, so a guest logging in a loop
//! cannot fill the host's disk or terminal.

use weir_core::text::cut_message;

use super::GuestState;
use crate::bindings::LogLevel;
use crate::bindings::weir::operator::log::Host;

/// Lines a subtask may log at once after a quiet spell (fewer if its rate
/// is lower).
const LOG_BURST_LINES: u64 = 20;
/// Dropped lines are reported at most this often (and when the instance
/// goes away).
const DROPPED_REPORT_INTERVAL_MS: i64 = 2_000;
/// The bucket counts thousandths of a line, so refills stay exact in
/// integers at any rate and millisecond clock.
const MILLI: u64 = 1_000;

/// A token bucket over log lines. Time comes from the caller (the
/// processing time the runtime sets before each call), never from a clock
/// read in here, so it is deterministic and testable.
pub(crate) struct LogRate {
    lines_per_second: u32,
    burst_millilines: u64,
    millilines: u64,
    last_ms: i64,
    dropped: u64,
    last_report_ms: i64,
}

impl LogRate {
    pub(crate) fn new(lines_per_second: u32) -> Self {
        let burst_millilines = u64::from(lines_per_second).min(LOG_BURST_LINES) * MILLI;
        LogRate {
            lines_per_second,
            burst_millilines,
            millilines: burst_millilines,
            last_ms: i64::MIN,
            dropped: 0,
            last_report_ms: i64::MIN,
        }
    }

    /// Whether a line logged at `now_ms` may go out; if not, it is counted.
    pub(crate) fn admit(&mut self, now_ms: i64) -> bool {
        if self.last_report_ms == i64::MIN {
            // The first report comes an interval after the first line.
            self.last_report_ms = now_ms;
        }
        if now_ms > self.last_ms {
            // A clock that goes back refills nothing.
            let elapsed_ms = if self.last_ms == i64::MIN {
                0
            } else {
                now_ms.abs_diff(self.last_ms)
            };
            self.last_ms = now_ms;
            let refill = elapsed_ms.saturating_mul(u64::from(self.lines_per_second));
            self.millilines = self
                .millilines
                .saturating_add(refill)
                .min(self.burst_millilines);
        }
        if self.millilines >= MILLI {
            self.millilines -= MILLI;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// The dropped lines not yet reported, if a report is due at `now_ms`.
    pub(crate) fn take_dropped(&mut self, now_ms: i64) -> Option<u64> {
        let due = now_ms.saturating_sub(self.last_report_ms) >= DROPPED_REPORT_INTERVAL_MS;
        if self.dropped == 0 || !due {
            return None;
        }
        self.last_report_ms = now_ms;
        Some(std::mem::take(&mut self.dropped))
    }

    /// Logs the lines dropped since the last report, if any.
    pub(crate) fn report_dropped(&mut self, label: &str) {
        let dropped = std::mem::take(&mut self.dropped);
        if dropped > 0 {
            self.warn_dropped(label, dropped);
        }
    }

    fn warn_dropped(&self, label: &str, dropped: u64) {
        tracing::warn!(
            "operator `{label}`: {dropped} log lines dropped (log_lines_per_second = {})",
            self.lines_per_second
        );
    }
}

impl Host for GuestState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        let now = self.processing_time_ms;
        if let Some(dropped) = self.log_rate.take_dropped(now) {
            self.log_rate.warn_dropped(&self.label, dropped);
        }
        if matches!(level, LogLevel::Error) {
            // Kept even when the line is dropped: SDK panic hooks log the
            // panic message just before trapping, and the trap report
            // shows it.
            self.last_guest_error = Some(cut_message(&message));
        }
        let enabled = match level {
            LogLevel::Trace => tracing::enabled!(tracing::Level::TRACE),
            LogLevel::Debug => tracing::enabled!(tracing::Level::DEBUG),
            LogLevel::Info => tracing::enabled!(tracing::Level::INFO),
            LogLevel::Warn => tracing::enabled!(tracing::Level::WARN),
            LogLevel::Error => tracing::enabled!(tracing::Level::ERROR),
        };
        if !enabled || !self.log_rate.admit(now) {
            return Ok(());
        }
        let message = match (level, &self.last_guest_error) {
            (LogLevel::Error, Some(cut)) => cut.clone(),
            _ => cut_message(&message),
        };
        let operator = &*self.label;
        match level {
            LogLevel::Trace => tracing::trace!(operator, "{message}"),
            LogLevel::Debug => tracing::debug!(operator, "{message}"),
            LogLevel::Info => tracing::info!(operator, "{message}"),
            LogLevel::Warn => tracing::warn!(operator, "{message}"),
            LogLevel::Error => tracing::error!(operator, "{message}"),
        }
        Ok(())
    }
}

impl crate::bindings::weir::operator::types::Host for GuestState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut rate = LogRate::new(100);
        let admitted = (0..1000).filter(|_| rate.admit(5_000)).count();
        assert_eq!(admitted, LOG_BURST_LINES as usize, "a burst at one instant");
        // 100 lines per second: one line per 10 ms.
        assert!(!rate.admit(5_009));
        assert!(rate.admit(5_010));
        assert!(!rate.admit(5_010));
        // A long quiet spell refills the burst, not more.
        let admitted = (0..1000).filter(|_| rate.admit(60_000)).count();
        assert_eq!(admitted, LOG_BURST_LINES as usize);
    }

    #[test]
    fn steady_logging_is_held_to_the_rate() {
        let mut rate = LogRate::new(100);
        // 10 lines per millisecond for 10 seconds.
        let admitted = (0..10_000i64)
            .flat_map(|ms| std::iter::repeat_n(ms, 10))
            .filter(|&ms| rate.admit(ms))
            .count();
        assert!(
            (1000..=1000 + LOG_BURST_LINES as usize).contains(&admitted),
            "{admitted}"
        );
    }

    #[test]
    fn dropped_lines_are_counted_and_reported_now_and_then() {
        let mut rate = LogRate::new(2);
        for _ in 0..10 {
            rate.admit(0);
        }
        assert_eq!(rate.take_dropped(1), None, "not due yet");
        assert_eq!(rate.take_dropped(DROPPED_REPORT_INTERVAL_MS), Some(8));
        // The burst of 2 refilled, the third line dropped.
        for _ in 0..3 {
            rate.admit(DROPPED_REPORT_INTERVAL_MS);
        }
        assert_eq!(
            rate.take_dropped(DROPPED_REPORT_INTERVAL_MS + 1),
            None,
            "not due again yet"
        );
        assert_eq!(rate.take_dropped(2 * DROPPED_REPORT_INTERVAL_MS), Some(1));
        assert_eq!(
            rate.take_dropped(10 * DROPPED_REPORT_INTERVAL_MS),
            None,
            "none dropped"
        );
    }

    #[test]
    fn a_clock_going_back_refills_nothing_and_zero_drops_everything() {
        let mut rate = LogRate::new(1);
        assert!(rate.admit(10_000));
        assert!(!rate.admit(0));
        assert!(!rate.admit(10_000));
        let mut silent = LogRate::new(0);
        assert!(!silent.admit(0) && !silent.admit(1_000_000));
    }
}
