//! [`Windows`]: the per-key window state machine (assign, accumulate,
//! fire, clean up, merge sessions).

use serde::{Deserialize, Serialize};

use super::aggregate::AggregateFunction;
use super::assigner::{Window, WindowAssigner};
use crate::codec::{Encode, Json};
use crate::context::{Context, OpenContext, Timer};
use crate::host::TimeDomain;
use crate::state::MapState;
use crate::{Error, Result};

/// One window's stored state: its start and its accumulator, under its end.
/// Ends identify windows: fixed-size windows have one start per end, and
/// merged sessions of a key never overlap.
type Slot<Acc> = Json<(i64, Acc)>;

/// Windows of one kind over the records of each key, with one aggregate.
/// Declare it in `open`, feed it in `process` ([`Windows::add`]) and let it
/// fire in `on_timer` ([`Windows::on_timer`]).
pub struct Windows<A: AggregateFunction> {
    assigner: WindowAssigner,
    aggregate: A,
    lateness: i64,
    slots: MapState<i64, Slot<A::Acc>>,
}

/// A window's result.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult<Out> {
    pub window: Window,
    pub value: Out,
}

/// What [`Windows::add`] hands back besides storing the record.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowOutput<Out> {
    /// A window updated by a record that came after the window fired, but
    /// within the allowed lateness: its new result (Flink re-fires too).
    Fired(WindowResult<Out>),
    /// The record came after every window it belongs to was cleaned up
    /// (`end - 1 + allowed lateness` at or behind the watermark) and was
    /// not added anywhere. `timestamp` is its event time.
    Late { timestamp: i64 },
}

/// The record [`WindowResult::emit`] writes, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord<K, V> {
    pub key: K,
    pub window_start: i64,
    pub window_end: i64,
    pub value: V,
}

impl<Out> WindowResult<Out> {
    /// The event time results are stamped with: `window.end - 1`.
    pub fn timestamp(&self) -> i64 {
        self.window.max_timestamp()
    }

    /// Emits `key -> {"key", "window_start", "window_end", "value"}` (JSON)
    /// at [`WindowResult::timestamp`].
    pub fn emit<K>(&self, ctx: &mut Context, key: &K) -> Result<()>
    where
        K: Encode + Serialize + ?Sized,
        Out: Serialize,
    {
        let record = WindowRecord {
            key,
            window_start: self.window.start,
            window_end: self.window.end,
            value: &self.value,
        };
        ctx.emit_at(key, &Json(record), Some(self.timestamp()))
    }
}

impl<A: AggregateFunction> Windows<A> {
    /// Declares the windows' state (a map state named `name`) in `open`.
    /// No allowed lateness: see [`Windows::allowed_lateness`].
    pub fn new(
        ctx: &mut OpenContext,
        name: &str,
        assigner: WindowAssigner,
        aggregate: A,
    ) -> Result<Self> {
        Ok(Windows {
            assigner,
            aggregate,
            lateness: 0,
            slots: ctx.map_state(name)?,
        })
    }

    /// Keeps each window `lateness_ms` past its end for records that come
    /// late (each re-fires it). Negative values are an error.
    pub fn allowed_lateness(mut self, lateness_ms: i64) -> Result<Self> {
        if lateness_ms < 0 {
            return Err(Error::msg(format!(
                "allowed lateness must not be negative, got {lateness_ms} ms"
            )));
        }
        self.lateness = lateness_ms;
        Ok(self)
    }

    pub fn assigner(&self) -> WindowAssigner {
        self.assigner
    }

    pub fn aggregate(&self) -> &A {
        &self.aggregate
    }

    /// Whether `window` has been cleaned up (or would be at once).
    fn is_late(&self, window: &Window, watermark: i64) -> bool {
        window.max_timestamp().saturating_add(self.lateness) <= watermark
    }

    /// Adds a record with event time `timestamp` to its windows for the
    /// current key. Returns late re-firings and, if the record was too late
    /// for all its windows, [`WindowOutput::Late`]; usually nothing.
    pub fn add(
        &self,
        ctx: &mut Context,
        timestamp: i64,
        value: &A::In,
    ) -> Result<Vec<WindowOutput<A::Out>>> {
        let watermark = ctx.watermark();
        let mut outputs = Vec::new();
        let added = if self.assigner.is_merging() {
            self.add_to_session(ctx, timestamp, value, watermark, &mut outputs)?
        } else {
            let mut added = false;
            for window in self.assigner.assign(timestamp)? {
                if self.is_late(&window, watermark) {
                    continue;
                }
                added = true;
                let mut acc = match self.slots.get(ctx, &window.end)? {
                    Some(Json((_, acc))) => acc,
                    None => self.aggregate.create(),
                };
                self.aggregate.add(&mut acc, value);
                self.store(ctx, window, acc, watermark, &mut outputs)?;
            }
            added
        };
        if !added {
            outputs.push(WindowOutput::Late { timestamp });
        }
        Ok(outputs)
    }

    /// Stores `acc` as `window`'s state and schedules its firing and
    /// clean-up; a window already due fires at once (a late update).
    fn store(
        &self,
        ctx: &mut Context,
        window: Window,
        acc: A::Acc,
        watermark: i64,
        outputs: &mut Vec<WindowOutput<A::Out>>,
    ) -> Result<()> {
        let fire_at = window.max_timestamp();
        if fire_at <= watermark {
            outputs.push(WindowOutput::Fired(WindowResult {
                window,
                value: self.aggregate.result(&acc),
            }));
        } else {
            ctx.register_event_timer(fire_at);
        }
        if self.lateness > 0 {
            // Not late, so this is still ahead of the watermark.
            ctx.register_event_timer(fire_at.saturating_add(self.lateness));
        }
        self.slots.put(ctx, &window.end, &Json((window.start, acc)))
    }

    /// Session windows: the record's window absorbs every stored window it
    /// overlaps or touches (their accumulators merged into one).
    fn add_to_session(
        &self,
        ctx: &mut Context,
        timestamp: i64,
        value: &A::In,
        watermark: i64,
        outputs: &mut Vec<WindowOutput<A::Out>>,
    ) -> Result<bool> {
        let Some(own) = self.assigner.assign(timestamp)?.into_iter().next() else {
            return Ok(false);
        };
        let mut others: Vec<(Window, A::Acc)> = self
            .slots
            .entries(ctx)?
            .into_iter()
            .map(|(end, Json((start, acc)))| (Window { start, end }, acc))
            .collect();
        // Grow the window until nothing else touches it (stored sessions
        // never touch each other, so one pass nearly always suffices).
        let mut merged = own;
        let mut absorbed: Vec<(Window, A::Acc)> = Vec::new();
        loop {
            let before = absorbed.len();
            let mut i = 0;
            while i < others.len() {
                if others[i].0.intersects(&merged) {
                    let (window, acc) = others.swap_remove(i);
                    merged = merged.cover(&window);
                    absorbed.push((window, acc));
                } else {
                    i += 1;
                }
            }
            if absorbed.len() == before {
                break;
            }
        }
        if self.is_late(&merged, watermark) {
            return Ok(false);
        }
        let mut acc = self.aggregate.create();
        self.aggregate.add(&mut acc, value);
        for (window, other) in absorbed {
            self.aggregate.merge(&mut acc, other);
            if window.end != merged.end {
                self.slots.remove(ctx, &window.end);
                self.forget_timers(ctx, window, merged, &others);
            }
        }
        self.store(ctx, merged, acc, watermark, outputs)?;
        Ok(true)
    }

    /// Deletes the timers of a session absorbed into `merged`, unless
    /// `merged` or a remaining session of the key needs the same time.
    fn forget_timers(
        &self,
        ctx: &mut Context,
        gone: Window,
        merged: Window,
        others: &[(Window, A::Acc)],
    ) {
        let times = |w: &Window| {
            let fire = w.max_timestamp();
            [fire, fire.saturating_add(self.lateness)]
        };
        for time in times(&gone) {
            let needed = std::iter::once(&merged)
                .chain(others.iter().map(|(w, _)| w))
                .any(|w| times(w).contains(&time));
            if !needed {
                ctx.delete_event_timer(time);
            }
        }
    }

    /// Handles a fired timer for the current key: returns the result of
    /// the window it fires (if any) and drops windows whose allowed
    /// lateness it ends. Timers the windows did not set find nothing and
    /// return nothing, so an operator may use timers of its own too.
    pub fn on_timer<K>(
        &self,
        ctx: &mut Context,
        timer: &Timer<K>,
    ) -> Result<Vec<WindowResult<A::Out>>> {
        let mut results = Vec::new();
        if timer.domain != TimeDomain::EventTime {
            return Ok(results);
        }
        let time = timer.timestamp;
        if let Some(end) = time.checked_add(1)
            && let Some(Json((start, acc))) = self.slots.get(ctx, &end)?
        {
            results.push(WindowResult {
                window: Window { start, end },
                value: self.aggregate.result(&acc),
            });
            if self.lateness == 0 {
                self.slots.remove(ctx, &end);
            }
        }
        if self.lateness > 0
            && let Some(end) = time
                .checked_sub(self.lateness)
                .and_then(|t| t.checked_add(1))
        {
            self.slots.remove(ctx, &end);
        }
        Ok(results)
    }
}
