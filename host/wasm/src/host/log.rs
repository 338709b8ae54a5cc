//! `weir:operator/log`: guest messages into the host's log.

use super::{GuestState, truncate_message};
use crate::bindings::LogLevel;
use crate::bindings::weir::operator::log::Host;

impl Host for GuestState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        let message = truncate_message(message);
        let operator = &*self.label;
        match level {
            LogLevel::Trace => tracing::trace!(operator, "{message}"),
            LogLevel::Debug => tracing::debug!(operator, "{message}"),
            LogLevel::Info => tracing::info!(operator, "{message}"),
            LogLevel::Warn => tracing::warn!(operator, "{message}"),
            LogLevel::Error => {
                tracing::error!(operator, "{message}");
                self.last_guest_error = Some(message);
            }
        }
        Ok(())
    }
}

impl crate::bindings::weir::operator::types::Host for GuestState {}
