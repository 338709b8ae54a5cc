//! [`Windows`]: the per-key window state machine (assign, accumulate,
//! fire, clean up, merge sessions).
//!
//! A key's live windows are one value in keyed state (binary, postcard),
//! behind a write-through [`StateCache`]: a record usually costs one state
//! write and no timer call.
//!
//! - Fixed windows (tumbling, sliding) are kept as *panes*: time cut into
//!   slices of `gcd(size, slide)`, each window a run of whole panes. A
//!   record updates one pane's accumulator, not `size / slide` windows';
//!   a window's result merges its panes when it fires. Timers are set when
//!   a pane is created (one per window it starts, plus its clean-up).
//! - Sessions each remember the time their pending timer is set for. A
//!   record that extends a session leaves that timer where it is; when it
//!   fires early, it is set again at the session's new end. So extending
//!   an open session, the common case, calls no timer at all.

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::aggregate::AggregateFunction;
use super::assigner::{Window, WindowAssigner};
use crate::cache::StateCache;
use crate::codec::{Decode, Encode, Json};
use crate::context::{Context, OpenContext, Timer};
use crate::host::TimeDomain;
use crate::state::ValueState;
use crate::{Error, Result};

/// Windows of one kind over the records of each key, with one aggregate.
/// Declare it in `open`, feed it in `process` ([`Windows::add`]) and let it
/// fire in `on_timer` ([`Windows::on_timer`]).
pub struct Windows<A: AggregateFunction> {
    spec: Spec<A>,
    state: ValueState<KeyWindows<A::Acc>>,
    /// In a cell so that `add` and `on_timer` take `&self`, like state
    /// handles do.
    cache: RefCell<StateCache<KeyWindows<A::Acc>>>,
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

/// One stored part of a key's windows: a pane of fixed windows, or a
/// session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slot<Acc> {
    start: i64,
    end: i64,
    /// Sessions: the event time their pending timer is set for (at most
    /// when it is due). Unused by panes.
    timer: i64,
    /// Sessions: fired, and kept for allowed lateness. Unused by panes.
    fired: bool,
    acc: Acc,
}

impl<Acc> Slot<Acc> {
    fn window(&self) -> Window {
        Window {
            start: self.start,
            end: self.end,
        }
    }
}

/// A key's slots by start (panes never overlap; stored sessions never
/// touch).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyWindows<Acc>(Vec<Slot<Acc>>);

impl<Acc: Serialize> Encode for KeyWindows<Acc> {
    fn encode(&self, out: &mut Vec<u8>) {
        // As with `Json`: an accumulator whose Serialize impl errors yields
        // no bytes, which decode then reports. Written straight into `out`
        // (on error what it held is dropped too; state values start empty).
        let buffer = std::mem::take(out);
        if let Ok(buffer) = postcard::to_extend(self, buffer) {
            *out = buffer;
        }
    }
}

impl<Acc: DeserializeOwned> Decode for KeyWindows<Acc> {
    fn decode(bytes: &[u8]) -> Result<Self> {
        postcard::from_bytes(bytes).map_err(|e| {
            Error::msg(format!(
                "not the window state of accumulator {}: {e} ({} bytes)",
                std::any::type_name::<Acc>(),
                bytes.len()
            ))
        })
    }
}

/// What the windows are, apart from their state.
struct Spec<A> {
    assigner: WindowAssigner,
    aggregate: A,
    lateness: i64,
}

impl<A: AggregateFunction> Windows<A> {
    /// Declares the windows' state (a value state named `name`) in `open`.
    /// No allowed lateness: see [`Windows::allowed_lateness`].
    pub fn new(
        ctx: &mut OpenContext,
        name: &str,
        assigner: WindowAssigner,
        aggregate: A,
    ) -> Result<Self> {
        Ok(Windows {
            spec: Spec {
                assigner,
                aggregate,
                lateness: 0,
            },
            state: ctx.value_state(name)?,
            cache: RefCell::new(StateCache::default()),
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
        self.spec.lateness = lateness_ms;
        Ok(self)
    }

    pub fn assigner(&self) -> WindowAssigner {
        self.spec.assigner
    }

    pub fn aggregate(&self) -> &A {
        &self.spec.aggregate
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
        let spec = &self.spec;
        let mut outputs = Vec::new();
        let mut cache = self.cache.borrow_mut();
        let added = cache.update(ctx, &self.state, |ctx, stored| {
            // Both add_to_* fail, if at all, before they change anything.
            let KeyWindows(slots) = stored.get_or_insert_with(|| KeyWindows(Vec::new()));
            let (added, changed) = if spec.assigner.is_merging() {
                let added =
                    spec.add_to_session(ctx, slots, timestamp, value, watermark, &mut outputs)?;
                (added, added)
            } else {
                spec.add_to_pane(ctx, slots, timestamp, value, watermark, &mut outputs)?
            };
            if slots.is_empty() {
                *stored = None;
            }
            Ok((added, changed))
        })?;
        if !added {
            outputs.push(WindowOutput::Late { timestamp });
        }
        Ok(outputs)
    }

    /// Handles a fired timer for the current key: returns the results of
    /// the windows it fires (if any) and drops what their allowed lateness
    /// no longer needs. Timers the windows did not set find nothing and
    /// return nothing, so an operator may use timers of its own too.
    pub fn on_timer<K>(
        &self,
        ctx: &mut Context,
        timer: &Timer<K>,
    ) -> Result<Vec<WindowResult<A::Out>>> {
        if timer.domain != TimeDomain::EventTime {
            return Ok(Vec::new());
        }
        let time = timer.timestamp;
        let spec = &self.spec;
        let mut cache = self.cache.borrow_mut();
        cache.update(ctx, &self.state, |ctx, stored| {
            let Some(KeyWindows(slots)) = stored else {
                return Ok((Vec::new(), false));
            };
            let (results, changed) = if spec.assigner.is_merging() {
                spec.fire_sessions(ctx, slots, time)
            } else {
                spec.fire_panes(slots, time)?
            };
            if slots.is_empty() {
                *stored = None;
            }
            Ok((results, changed))
        })
    }
}

impl<A: AggregateFunction> Spec<A> {
    /// Whether `window` has been cleaned up (or would be at once).
    fn is_late(&self, window: &Window, watermark: i64) -> bool {
        window.max_timestamp().saturating_add(self.lateness) <= watermark
    }

    /// The length of a pane: every window is a run of whole panes.
    fn pane(&self) -> i64 {
        match self.assigner {
            WindowAssigner::Tumbling { size } => size,
            WindowAssigner::Sliding { size, slide } => gcd(size, slide),
            WindowAssigner::Session { gap } => gap,
        }
    }

    fn result(&self, acc: &A::Acc, window: Window) -> WindowResult<A::Out> {
        WindowResult {
            window,
            value: self.aggregate.result(acc),
        }
    }

    /// The result of `window` from the panes within it, if it has any.
    fn merge_panes(&self, slots: &[Slot<A::Acc>], window: Window) -> Option<WindowResult<A::Out>> {
        let mut within = slots
            .iter()
            .filter(|s| s.start >= window.start && s.end <= window.end);
        let first = within.next()?;
        let Some(second) = within.next() else {
            return Some(self.result(&first.acc, window));
        };
        let mut acc = first.acc.clone();
        for pane in std::iter::once(second).chain(within) {
            self.aggregate.merge(&mut acc, pane.acc.clone());
        }
        Some(self.result(&acc, window))
    }

    /// Fixed windows: adds the record to its pane; a new pane sets the
    /// timers of the windows it is in. Says whether the record was added
    /// and whether the slots changed.
    fn add_to_pane(
        &self,
        ctx: &mut Context,
        slots: &mut Vec<Slot<A::Acc>>,
        timestamp: i64,
        value: &A::In,
        watermark: i64,
        outputs: &mut Vec<WindowOutput<A::Out>>,
    ) -> Result<(bool, bool)> {
        let pane = self.pane();
        let start = timestamp
            .checked_sub(timestamp.rem_euclid(pane))
            .ok_or_else(|| out_of_range(timestamp))?;
        // The common case: the pane exists and none of its windows has
        // fired, so their timers are set and only the accumulator changes.
        if let Ok(at) = slots.binary_search_by_key(&start, |s| s.start)
            && self.first_fire(start).is_some_and(|fire| fire > watermark)
        {
            let changed = self.aggregate.add_changed(&mut slots[at].acc, value);
            return Ok((true, changed));
        }
        // The pane's windows are the record's (windows are whole panes).
        let windows = self.assigner.assign(start)?;
        let live: Vec<Window> = windows
            .into_iter()
            .filter(|w| !self.is_late(w, watermark))
            .collect();
        let Some(last) = live.last() else {
            return Ok((false, false));
        };
        let (at, new) = match slots.binary_search_by_key(&start, |s| s.start) {
            Ok(at) => (at, false),
            Err(at) => {
                let end = start
                    .checked_add(pane)
                    .ok_or_else(|| out_of_range(timestamp))?;
                for window in &live {
                    // A window that holds a pane already got its timer with
                    // its first pane.
                    let fire = window.max_timestamp();
                    if fire > watermark
                        && !slots
                            .iter()
                            .any(|s| s.start >= window.start && s.end <= window.end)
                    {
                        ctx.register_event_timer(fire);
                    }
                }
                if self.lateness > 0 {
                    // The pane is dropped when its last window's lateness ends.
                    ctx.register_event_timer(last.max_timestamp().saturating_add(self.lateness));
                }
                slots.insert(
                    at,
                    Slot {
                        start,
                        end,
                        timer: 0,
                        fired: false,
                        acc: self.aggregate.create(),
                    },
                );
                (at, true)
            }
        };
        let changed = self.aggregate.add_changed(&mut slots[at].acc, value) || new;
        // Windows that already fired, within their lateness: fire again now.
        for window in live {
            if window.max_timestamp() <= watermark
                && let Some(result) = self.merge_panes(slots, window)
            {
                outputs.push(WindowOutput::Fired(result));
            }
        }
        Ok((true, changed))
    }

    /// When the earliest window holding the pane at `start` fires (none
    /// on overflow), without listing the windows.
    fn first_fire(&self, start: i64) -> Option<i64> {
        let (size, slide) = match self.assigner {
            WindowAssigner::Tumbling { size } => (size, size),
            WindowAssigner::Sliding { size, slide } => (size, slide),
            WindowAssigner::Session { .. } => return None,
        };
        let last_start = start.checked_sub(start.rem_euclid(slide))?;
        // Windows start every `slide` back from `last_start` while they
        // still reach past `start`.
        let back = (last_start.checked_add(size)?.checked_sub(start)? - 1) / slide;
        last_start
            .checked_sub(back.checked_mul(slide)?)?
            .checked_add(size - 1)
    }

    /// Fixed windows at event time `time`: the window ending at `time + 1`
    /// fires, and panes whose last window's lateness is over are dropped.
    fn fire_panes(
        &self,
        slots: &mut Vec<Slot<A::Acc>>,
        time: i64,
    ) -> Result<(Vec<WindowResult<A::Out>>, bool)> {
        let (size, slide) = match self.assigner {
            WindowAssigner::Tumbling { size } => (size, size),
            WindowAssigner::Sliding { size, slide } => (size, slide),
            WindowAssigner::Session { .. } => return Ok((Vec::new(), false)),
        };
        let mut results = Vec::new();
        if let Some(end) = time.checked_add(1)
            && let Some(start) = end.checked_sub(size)
            && start.rem_euclid(slide) == 0
            && let Some(result) = self.merge_panes(slots, Window { start, end })
        {
            results.push(result);
        }
        let before = slots.len();
        // A pane's last window starts at the slide boundary at or before it.
        slots.retain(|pane| {
            let last_start = pane.start - pane.start.rem_euclid(slide);
            let last_fire = last_start.saturating_add(size).saturating_sub(1);
            last_fire.saturating_add(self.lateness) > time
        });
        Ok((results, slots.len() != before))
    }

    /// Sessions: the record's session absorbs every stored session it
    /// overlaps or touches (their accumulators merged into one).
    fn add_to_session(
        &self,
        ctx: &mut Context,
        slots: &mut Vec<Slot<A::Acc>>,
        timestamp: i64,
        value: &A::In,
        watermark: i64,
        outputs: &mut Vec<WindowOutput<A::Out>>,
    ) -> Result<bool> {
        let WindowAssigner::Session { gap } = self.assigner else {
            return Ok(false);
        };
        // What `assign` gives, without its Vec.
        let own = Window {
            start: timestamp,
            end: timestamp
                .checked_add(gap)
                .ok_or_else(|| out_of_range(timestamp))?,
        };
        // The common case: the record falls in or extends one open session
        // that stays clear of its neighbours (stored sessions are sorted
        // and never touch, so only they could be reached). It grows in
        // place, its timer left where it is.
        if let Some(i) = slots.iter().position(|s| own.intersects(&s.window())) {
            let grown = own.cover(&slots[i].window());
            let clear = |j: usize| slots.get(j).is_none_or(|s| !grown.intersects(&s.window()));
            if !slots[i].fired
                && grown.max_timestamp() > watermark
                && (i == 0 || clear(i - 1))
                && clear(i + 1)
            {
                let slot = &mut slots[i];
                (slot.start, slot.end) = (grown.start, grown.end);
                self.aggregate.add(&mut slot.acc, value);
                return Ok(true);
            }
        }
        // Grow the window until nothing else touches it (stored sessions
        // never touch each other, so one pass nearly always suffices).
        let mut merged = own;
        let mut touching = vec![false; slots.len()];
        loop {
            let mut grew = false;
            for (i, slot) in slots.iter().enumerate() {
                let window = slot.window();
                if !touching[i] && window.intersects(&merged) {
                    touching[i] = true;
                    merged = merged.cover(&window);
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        if self.is_late(&merged, watermark) {
            return Ok(false);
        }
        let mut absorbed = Vec::new();
        let mut i = 0;
        slots.retain(|slot| {
            let keep = !touching[i];
            i += 1;
            if !keep {
                absorbed.push(slot.clone());
            }
            keep
        });
        let mut acc = self.aggregate.create();
        self.aggregate.add(&mut acc, value);
        for other in &absorbed {
            self.aggregate.merge(&mut acc, other.acc.clone());
        }
        let fire_at = merged.max_timestamp();
        let fired = fire_at <= watermark;
        if fired {
            // A late update (not late, so within the allowed lateness).
            outputs.push(WindowOutput::Fired(self.result(&acc, merged)));
        }
        let due = if fired {
            fire_at.saturating_add(self.lateness)
        } else {
            fire_at
        };
        // Keep the earliest pending timer of what was absorbed if it is not
        // after `due`: on_timer moves it on. Delete the others.
        let pending: Vec<i64> = absorbed
            .iter()
            .map(|s| s.timer)
            .filter(|&t| t > watermark)
            .collect();
        let timer = match pending.iter().min() {
            Some(&t) if t <= due => t,
            _ => {
                ctx.register_event_timer(due);
                due
            }
        };
        for &t in &pending {
            if t != timer && !slots.iter().any(|s| s.timer == t) {
                ctx.delete_event_timer(t);
            }
        }
        let at = slots.partition_point(|s| s.start < merged.start);
        slots.insert(
            at,
            Slot {
                start: merged.start,
                end: merged.end,
                timer,
                fired,
                acc,
            },
        );
        Ok(true)
    }

    /// Sessions at event time `time`: each session whose timer this is
    /// fires, moves its timer to where it is now due, or ends.
    fn fire_sessions(
        &self,
        ctx: &mut Context,
        slots: &mut Vec<Slot<A::Acc>>,
        time: i64,
    ) -> (Vec<WindowResult<A::Out>>, bool) {
        let mut results = Vec::new();
        let mut changed = false;
        slots.retain_mut(|slot| {
            if slot.timer != time {
                return true;
            }
            changed = true;
            let window = slot.window();
            let fire_at = window.max_timestamp();
            if !slot.fired && time >= fire_at {
                results.push(self.result(&slot.acc, window));
                if self.lateness == 0 {
                    return false;
                }
                slot.fired = true;
            }
            let due = if slot.fired {
                fire_at.saturating_add(self.lateness)
            } else {
                fire_at
            };
            if time >= due {
                return false;
            }
            // The session grew since its timer was set.
            ctx.register_event_timer(due);
            slot.timer = due;
            true
        });
        (results, changed)
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn out_of_range(timestamp: i64) -> Error {
    Error::msg(format!(
        "event time {timestamp} is too close to the ends of the i64 range for its windows"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Count;

    #[test]
    fn first_fire_is_the_earliest_window_of_the_pane() {
        for (size, slide) in [(10, 10), (10, 5), (300, 200), (500, 300), (7, 3)] {
            let assigner = WindowAssigner::sliding(size, slide).unwrap();
            let spec = Spec {
                assigner,
                aggregate: Count::<()>::new(),
                lateness: 0,
            };
            let pane = spec.pane();
            for start in (-50..50).map(|i| i * pane) {
                let first = assigner.assign(start).unwrap()[0];
                assert_eq!(
                    spec.first_fire(start),
                    Some(first.max_timestamp()),
                    "size {size} slide {slide} pane start {start}"
                );
            }
        }
    }
}
