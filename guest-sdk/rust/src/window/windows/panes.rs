//! Fixed windows (tumbling, sliding) kept as panes of `gcd(size, slide)`:
//! a record updates one pane, a window merges its panes when it fires.

use super::{Fired, Slot, Slots, Spec, WindowOutput, WindowResult};
use crate::Result;
use crate::context::Context;
use crate::window::aggregate::AggregateFunction;
use crate::window::assigner::{Window, WindowAssigner, out_of_range};

/// The length of a pane: every window is a run of whole panes.
pub(super) fn pane_of(assigner: WindowAssigner) -> i64 {
    match assigner {
        WindowAssigner::Tumbling { size } => size,
        WindowAssigner::Sliding { size, slide } => gcd(size, slide),
        WindowAssigner::Session { gap } => gap,
    }
}

impl<A: AggregateFunction> Spec<A> {
    /// `(size, slide)` of fixed windows; `None` for sessions.
    fn size_and_slide(&self) -> Option<(i64, i64)> {
        match self.assigner {
            WindowAssigner::Tumbling { size } => Some((size, size)),
            WindowAssigner::Sliding { size, slide } => Some((size, slide)),
            WindowAssigner::Session { .. } => None,
        }
    }

    /// The result of `window` from the panes within it, if it has any.
    fn merge_panes(&self, slots: &[Slot<A::Acc>], window: Window) -> Option<WindowResult<A::Out>> {
        let mut within = slots.iter().filter(|s| holds(window, s));
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
    pub(super) fn add_to_pane(
        &self,
        ctx: &mut Context,
        slots: &mut Slots<A::Acc>,
        timestamp: i64,
        value: &A::In,
        watermark: i64,
        outputs: &mut Vec<WindowOutput<A::Out>>,
    ) -> Result<(bool, bool)> {
        let pane = self.pane;
        let start = self.pane_start(timestamp)?;
        // The common case: the pane exists and none of its windows has
        // fired, so their timers are set and only the accumulator changes.
        if let Ok(at) = slots.binary_search_by_key(&start, |s| s.start)
            && self.first_fire(start).is_some_and(|fire| fire > watermark)
        {
            let changed = self.aggregate.add_changed(&mut slots[at].acc, value);
            return Ok((true, changed));
        }
        // The pane's windows are the record's (windows are whole panes).
        let mut live = self.assigner.assign(start)?;
        live.retain(|w| !self.is_late(w, watermark));
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
                    if fire > watermark && !slots.iter().any(|s| holds(*window, s)) {
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

    /// The start of the pane holding `timestamp`.
    fn pane_start(&self, timestamp: i64) -> Result<i64> {
        if let Some(last) = self.last_pane.get()
            && timestamp >= last
            && (timestamp.wrapping_sub(last) as u64) < self.pane as u64
        {
            return Ok(last);
        }
        let start = timestamp
            .checked_sub(timestamp.rem_euclid(self.pane))
            .ok_or_else(|| out_of_range(timestamp))?;
        self.last_pane.set(Some(start));
        Ok(start)
    }

    /// When the earliest window holding the pane at `start` fires (none
    /// on overflow), without listing the windows.
    fn first_fire(&self, start: i64) -> Option<i64> {
        let (size, slide) = self.size_and_slide()?;
        if size == slide {
            // Tumbling: the pane is the window.
            return start.checked_add(size - 1);
        }
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
    pub(super) fn fire_panes(&self, slots: &mut Slots<A::Acc>, time: i64) -> (Fired<A::Out>, bool) {
        let Some((size, slide)) = self.size_and_slide() else {
            return (Fired::new(), false);
        };
        let mut results = Fired::new();
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
            // Tumbling panes start where their window does.
            let last_start = if size == slide {
                pane.start
            } else {
                pane.start - pane.start.rem_euclid(slide)
            };
            let last_fire = last_start.saturating_add(size).saturating_sub(1);
            last_fire.saturating_add(self.lateness) > time
        });
        (results, slots.len() != before)
    }
}

/// Whether the pane `slot` lies within `window`.
fn holds<Acc>(window: Window, slot: &Slot<Acc>) -> bool {
    slot.start >= window.start && slot.end <= window.end
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Count;

    /// The remembered pane gives the same start as working it out, in
    /// and out of order, across zero and near the ends of the range.
    #[test]
    fn pane_start_is_the_aligned_start_whatever_came_before() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for (size, slide) in [(10, 10), (10, 5), (300, 200), (7, 3)] {
            let spec = Spec::new(
                WindowAssigner::sliding(size, slide).unwrap(),
                Count::<()>::new(),
            );
            let mut t = -40i64;
            for _ in 0..5000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                t = match seed % 8 {
                    0 => seed as i64,
                    1 => i64::MAX - (seed % 20) as i64,
                    2 => i64::MIN + (seed % 20) as i64,
                    3 => t - (seed % 15) as i64,
                    _ => t.saturating_add((seed % 4) as i64),
                };
                let expected = t.checked_sub(t.rem_euclid(spec.pane));
                assert_eq!(
                    spec.pane_start(t).ok(),
                    expected,
                    "{t} with pane {}",
                    spec.pane
                );
            }
        }
    }

    #[test]
    fn first_fire_is_the_earliest_window_of_the_pane() {
        for (size, slide) in [(10, 10), (10, 5), (300, 200), (500, 300), (7, 3)] {
            let assigner = WindowAssigner::sliding(size, slide).unwrap();
            let spec = Spec::new(assigner, Count::<()>::new());
            let pane = spec.pane;
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
