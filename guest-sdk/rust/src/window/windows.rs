//! [`Windows`]: the per-key window state machine (assign, accumulate,
//! fire, clean up, merge sessions).
//!
//! A key's live windows are one value in keyed state (binary, postcard),
//! behind a write-back [`StateCache`]: a record usually costs no host call
//! at all, and a key usually one state write per checkpoint.
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

mod panes;
mod sessions;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

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
    /// Write-back (the runtime flushes it after every call), shared with
    /// the runtime, and in a cell so that `add` and `on_timer` take
    /// `&self`, like state handles do.
    cache: Rc<RefCell<StateCache<KeyWindows<A::Acc>>>>,
}

/// A window's result.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult<Out> {
    pub window: Window,
    pub value: Out,
}

/// The results of the windows a timer fired, in window order: usually
/// one or none, kept without a heap allocation. Iterate it, or use it as
/// a slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired<Out>(SmallVec<[WindowResult<Out>; 1]>);

impl<Out> Fired<Out> {
    fn new() -> Self {
        Fired(SmallVec::new())
    }

    fn push(&mut self, result: WindowResult<Out>) {
        self.0.push(result);
    }

    pub fn into_vec(self) -> Vec<WindowResult<Out>> {
        self.0.into_vec()
    }
}

impl<Out> std::ops::Deref for Fired<Out> {
    type Target = [WindowResult<Out>];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<Out> IntoIterator for Fired<Out> {
    type Item = WindowResult<Out>;
    type IntoIter = smallvec::IntoIter<[WindowResult<Out>; 1]>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, Out> IntoIterator for &'a Fired<Out> {
    type Item = &'a WindowResult<Out>;
    type IntoIter = std::slice::Iter<'a, WindowResult<Out>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
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
struct KeyWindows<Acc>(Slots<Acc>);

/// Most keys have one live pane or session at a time (tumbling windows,
/// sessions): it is kept in the cache slot itself, so opening and firing
/// it allocates nothing and reads no second cache line from the heap.
/// Serialized as a sequence, like the `Vec` it replaced.
type Slots<Acc> = SmallVec<[Slot<Acc>; 1]>;

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
    /// Fixed windows: the pane length, `gcd(size, slide)`, worked out
    /// once (a record needs it, and it takes divisions).
    pane: i64,
    /// The start of the pane the last record fell in: the next record,
    /// of whatever key, is usually in it too, and then needs no division
    /// to find its pane.
    last_pane: Cell<Option<i64>>,
}

impl<A> Spec<A> {
    fn new(assigner: WindowAssigner, aggregate: A) -> Self {
        Spec {
            pane: panes::pane_of(assigner),
            last_pane: Cell::new(None),
            assigner,
            aggregate,
            lateness: 0,
        }
    }
}

impl<A: AggregateFunction> Windows<A> {
    /// Declares the windows' state (a value state named `name`) in `open`.
    /// No allowed lateness: see [`Windows::allowed_lateness`].
    pub fn new(
        ctx: &mut OpenContext,
        name: &str,
        assigner: WindowAssigner,
        aggregate: A,
    ) -> Result<Self>
    where
        A::Acc: 'static,
    {
        let state = ctx.value_state(name)?;
        let cache = StateCache::write_back(ctx, &state);
        Ok(Windows {
            spec: Spec::new(assigner, aggregate),
            state,
            cache,
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
            let KeyWindows(slots) = stored.get_or_insert_with(|| KeyWindows(SmallVec::new()));
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
    pub fn on_timer<K>(&self, ctx: &mut Context, timer: &Timer<K>) -> Result<Fired<A::Out>> {
        if timer.domain != TimeDomain::EventTime {
            return Ok(Fired::new());
        }
        let time = timer.timestamp;
        let spec = &self.spec;
        let mut cache = self.cache.borrow_mut();
        cache.update(ctx, &self.state, |ctx, stored| {
            let Some(KeyWindows(slots)) = stored else {
                return Ok((Fired::new(), false));
            };
            let (results, changed) = if spec.assigner.is_merging() {
                spec.fire_sessions(ctx, slots, time)
            } else {
                spec.fire_panes(slots, time)
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

    fn result(&self, acc: &A::Acc, window: Window) -> WindowResult<A::Out> {
        WindowResult {
            window,
            value: self.aggregate.result(acc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pane(start: i64, count: u64) -> Slot<u64> {
        Slot {
            start,
            end: start + 10,
            timer: 0,
            fired: false,
            acc: count,
        }
    }

    /// Savepoints taken while the slots were a `Vec` restore: the stored
    /// bytes are the same for none, one (inline) and several (spilled).
    #[test]
    fn key_windows_encode_as_the_vec_they_replaced() {
        for n in [0, 1, 2, 5] {
            let panes: Vec<Slot<u64>> = (0..n).map(|i| pane(i * 10, i as u64 + 1)).collect();
            let as_vec = postcard::to_allocvec(&panes).unwrap();
            let mut bytes = Vec::new();
            KeyWindows(panes.iter().cloned().collect()).encode(&mut bytes);
            assert_eq!(bytes, as_vec, "{n} panes");
            let KeyWindows(back) = KeyWindows::<u64>::decode(&as_vec).unwrap();
            assert_eq!(back.len(), n as usize);
            assert!(
                back.iter()
                    .zip(&panes)
                    .all(|(a, b)| a.start == b.start && a.acc == b.acc)
            );
        }
    }
}
