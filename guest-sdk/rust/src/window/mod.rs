//! Event-time windows with incremental aggregation, on keyed state and
//! timers.
//!
//! [`Windows`] groups the records of each key into tumbling, sliding or
//! session windows ([`WindowAssigner`]), folds each record into its
//! windows' accumulators ([`AggregateFunction`]: [`Count`], [`Sum`],
//! [`Min`], [`Max`], [`Average`] or your own), and hands back a window's
//! result when the watermark passes its end. Everything it keeps is in
//! host keyed state (one value state per key: its live windows, or panes
//! of sliding windows, with their accumulators) and event-time timers, so
//! windows are checkpointed, restored and rescaled with the rest of the
//! job. The instance keeps only a write-through read cache of that state
//! ([`crate::cache::StateCache`]), which the host discards with the
//! instance on every restore, rescale or upgrade.
//!
//! Semantics follow Flink's event-time windows with an `EventTimeTrigger`:
//!
//! - a window `[start, end)` fires when the watermark reaches `end - 1`
//!   (an event-time timer at `end - 1`: weir fires a timer once the
//!   watermark is at or past its timestamp); its result is stamped
//!   `end - 1`;
//! - with [`Windows::allowed_lateness`] `L`, a window's state is kept until
//!   the watermark reaches `end - 1 + L`; a record for it that arrives
//!   after it fired but before then updates it and re-fires it at once
//!   (the result comes back from [`Windows::add`]);
//! - a record whose windows are all past `end - 1 + L` is not added:
//!   [`Windows::add`] returns [`WindowOutput::Late`] for it.
//!
//! Why a `Late` value rather than a late stream: the operator world has a
//! single output stream (`weir:operator` has no output tags), and the
//! host's own `op.late` side output carries only records the host
//! finds behind the watermark before the operator sees them. So the
//! operator decides what a record too late for its windows becomes (emit
//! it marked, count it, log it, drop it). To reach the library at all, a
//! record behind the watermark needs `late_records = "process"` on the
//! operator in the job file; with the default (`drop`) or `side-output`
//! the host handles it, and allowed lateness never comes into play.
//!
//! ```
//! use weir_guest::window::{Count, WindowAssigner, WindowOutput, Windows};
//! use weir_guest::{Context, OpenContext, Operator, Record, Result, Timer};
//!
//! /// Counts records per key in 10-second tumbling windows.
//! struct CountPerWindow {
//!     windows: Windows<Count>,
//! }
//!
//! impl Operator for CountPerWindow {
//!     type Key = String;
//!     type Value = ();
//!
//!     fn open(ctx: &mut OpenContext) -> Result<Self> {
//!         let assigner = WindowAssigner::tumbling(10_000)?;
//!         Ok(CountPerWindow {
//!             windows: Windows::new(ctx, "counts", assigner, Count::new())?,
//!         })
//!     }
//!
//!     fn process(&mut self, ctx: &mut Context, record: Record<String, ()>) -> Result<()> {
//!         let ts = record.timestamp.unwrap_or(0);
//!         for output in self.windows.add(ctx, ts, &())? {
//!             match output {
//!                 // A late update (only with allowed lateness).
//!                 WindowOutput::Fired(result) => result.emit(ctx, &record.key)?,
//!                 // Too late for every window: here, passed on unchanged.
//!                 WindowOutput::Late { .. } => ctx.emit(&record.key, "late")?,
//!             }
//!         }
//!         Ok(())
//!     }
//!
//!     fn on_timer(&mut self, ctx: &mut Context, timer: Timer<String>) -> Result<()> {
//!         for result in self.windows.on_timer(ctx, &timer)? {
//!             // key -> {"key":..,"window_start":..,"window_end":..,"value":..} at end - 1
//!             result.emit(ctx, &timer.key)?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! weir_guest::export_operator!(CountPerWindow);
//!
//! let mut h = weir_guest::testing::Harness::<CountPerWindow>::new().unwrap();
//! h.process("a", &(), Some(1_000)).unwrap();
//! h.process("a", &(), Some(9_999)).unwrap();
//! let out = h.advance_watermark(9_999).unwrap();
//! assert_eq!(
//!     out[0].text().1,
//!     r#"{"key":"a","window_start":0,"window_end":10000,"value":2}"#
//! );
//! assert_eq!(out[0].timestamp, Some(9_999));
//! ```

mod aggregate;
mod assigner;
mod windows;

pub use aggregate::{AggregateFunction, Average, Count, Max, Min, Number, Sum};
pub use assigner::{Window, WindowAssigner};
pub use windows::{Fired, WindowOutput, WindowRecord, WindowResult, Windows};

#[cfg(test)]
mod tests;
