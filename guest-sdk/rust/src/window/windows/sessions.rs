//! Session windows: a record's session absorbs every stored session it
//! overlaps or touches; a session's timer moves only when it fires.

use super::{Fired, Slot, Slots, Spec, WindowOutput};
use crate::Result;
use crate::context::Context;
use crate::window::aggregate::AggregateFunction;
use crate::window::assigner::{Window, WindowAssigner, out_of_range};

impl<A: AggregateFunction> Spec<A> {
    /// Sessions: the record's session absorbs every stored session it
    /// overlaps or touches (their accumulators merged into one).
    pub(super) fn add_to_session(
        &self,
        ctx: &mut Context,
        slots: &mut Slots<A::Acc>,
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
        // Moved out, not cloned: their accumulators merge into the new one.
        let (absorbed, kept): (Vec<_>, Vec<_>) = std::mem::take(slots)
            .into_iter()
            .zip(touching)
            .partition(|(_, touches)| *touches);
        *slots = kept.into_iter().map(|(slot, _)| slot).collect();
        let mut acc = self.aggregate.create();
        self.aggregate.add(&mut acc, value);
        let mut pending = Vec::new();
        for (other, _) in absorbed {
            if other.timer > watermark {
                pending.push(other.timer);
            }
            self.aggregate.merge(&mut acc, other.acc);
        }
        let fired = merged.max_timestamp() <= watermark;
        if fired {
            // A late update (not late, so within the allowed lateness).
            outputs.push(WindowOutput::Fired(self.result(&acc, merged)));
        }
        let due = self.session_due(merged, fired);
        // Keep the earliest pending timer of what was absorbed if it is not
        // after `due`: on_timer moves it on. Delete the others.
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

    /// When a session's timer is due: when it fires, or once it has
    /// fired, when its allowed lateness is over (and it is dropped).
    fn session_due(&self, window: Window, fired: bool) -> i64 {
        let fire_at = window.max_timestamp();
        if fired {
            fire_at.saturating_add(self.lateness)
        } else {
            fire_at
        }
    }

    /// Sessions at event time `time`: each session whose timer this is
    /// fires, moves its timer to where it is now due, or ends.
    pub(super) fn fire_sessions(
        &self,
        ctx: &mut Context,
        slots: &mut Slots<A::Acc>,
        time: i64,
    ) -> (Fired<A::Out>, bool) {
        let mut results = Fired::new();
        let mut changed = false;
        slots.retain_mut(|slot| {
            if slot.timer != time {
                return true;
            }
            changed = true;
            let window = slot.window();
            if !slot.fired && time >= window.max_timestamp() {
                results.push(self.result(&slot.acc, window));
                if self.lateness == 0 {
                    return false;
                }
                slot.fired = true;
            }
            let due = self.session_due(window, slot.fired);
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
