//! Event-time watermarks: how sources make them and how tasks combine them.

/// The watermark before any has been seen: nothing is known about event time.
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The watermark after an input ended: every event-time timer may fire.
pub const END_OF_TIME: i64 = i64::MAX;

/// Bounded out-of-orderness: records may arrive up to `delay_ms` late.
///
/// The watermark is `max_timestamp_seen - delay_ms - 1`, as in Flink.
#[derive(Debug, Clone)]
pub struct BoundedOutOfOrderness {
    delay_ms: i64,
    max_seen: Option<i64>,
}

impl BoundedOutOfOrderness {
    pub fn new(delay_ms: u64) -> Self {
        BoundedOutOfOrderness {
            delay_ms: delay_ms.min(i64::MAX as u64) as i64,
            max_seen: None,
        }
    }

    /// The largest timestamp seen, for snapshots.
    pub fn max_seen(&self) -> Option<i64> {
        self.max_seen
    }

    /// Resumes where a snapshot taken with [`Self::max_seen`] left off.
    pub fn restore(&mut self, max_seen: Option<i64>) {
        self.max_seen = max_seen;
    }

    pub fn observe(&mut self, timestamp: i64) {
        self.max_seen = Some(self.max_seen.map_or(timestamp, |m| m.max(timestamp)));
    }

    pub fn current(&self) -> i64 {
        self.max_seen.map_or(MIN_WATERMARK, |m| {
            m.saturating_sub(self.delay_ms).saturating_sub(1)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputStatus {
    Active,
    Idle,
    Ended,
}

/// Combines the watermarks of a task's inputs: the task's watermark is the
/// minimum over inputs that are neither idle nor ended, and never goes back.
#[derive(Debug, Clone)]
pub struct InputWatermarks {
    inputs: Vec<(i64, InputStatus)>,
    combined: i64,
}

impl InputWatermarks {
    pub fn new(inputs: usize) -> Self {
        InputWatermarks {
            inputs: vec![(MIN_WATERMARK, InputStatus::Active); inputs],
            combined: MIN_WATERMARK,
        }
    }

    pub fn current(&self) -> i64 {
        self.combined
    }

    /// Continues after a restore: inputs re-announce watermarks up to
    /// `combined`, which must not count as progress (timers up to it have
    /// fired already, and the rest fire on the next real advance).
    pub fn resume_at(&mut self, combined: i64) {
        self.combined = combined;
    }

    /// The last watermark announced on one input: records arriving on it
    /// at or behind this broke their producer's promise, so they are late.
    pub fn input_watermark(&self, input: usize) -> i64 {
        self.inputs[input].0
    }

    /// Records a watermark from `input`; returns the new combined watermark
    /// if it advanced.
    pub fn on_watermark(&mut self, input: usize, watermark: i64) -> Option<i64> {
        let slot = &mut self.inputs[input];
        if slot.1 == InputStatus::Ended {
            return None;
        }
        slot.0 = slot.0.max(watermark);
        slot.1 = InputStatus::Active;
        self.recompute()
    }

    /// Data arrived on `input`: it is active again.
    pub fn on_activity(&mut self, input: usize) {
        let slot = &mut self.inputs[input];
        if slot.1 == InputStatus::Idle {
            slot.1 = InputStatus::Active;
        }
    }

    pub fn on_idle(&mut self, input: usize) -> Option<i64> {
        let slot = &mut self.inputs[input];
        if slot.1 == InputStatus::Ended {
            return None;
        }
        slot.1 = InputStatus::Idle;
        self.recompute()
    }

    pub fn on_end(&mut self, input: usize) -> Option<i64> {
        self.inputs[input] = (END_OF_TIME, InputStatus::Ended);
        self.recompute()
    }

    pub fn all_ended(&self) -> bool {
        self.inputs
            .iter()
            .all(|(_, status)| *status == InputStatus::Ended)
    }

    fn recompute(&mut self) -> Option<i64> {
        let active = self
            .inputs
            .iter()
            .filter(|(_, s)| *s == InputStatus::Active)
            .map(|(w, _)| *w)
            .min();
        let candidate = match active {
            Some(w) => w,
            // Every input ended: event time is over.
            None if self.all_ended() => END_OF_TIME,
            // Only idle (and ended) inputs: hold the watermark where it is.
            None => return None,
        };
        if candidate > self.combined {
            self.combined = candidate;
            Some(candidate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_trails_max_seen() {
        let mut generator = BoundedOutOfOrderness::new(1000);
        assert_eq!(generator.current(), MIN_WATERMARK);
        generator.observe(5000);
        generator.observe(3000);
        assert_eq!(generator.current(), 3999);
    }

    #[test]
    fn combined_watermark_is_minimum_of_active_inputs() {
        let mut w = InputWatermarks::new(2);
        assert_eq!(w.on_watermark(0, 10), None, "input 1 still at MIN");
        assert_eq!(w.on_watermark(1, 5), Some(5));
        assert_eq!(w.on_watermark(1, 20), Some(10));
        assert_eq!(w.on_watermark(0, 8), None, "watermarks never go back");
        assert_eq!(w.current(), 10);
    }

    #[test]
    fn idle_inputs_do_not_hold_back_the_watermark() {
        let mut w = InputWatermarks::new(2);
        w.on_watermark(0, 100);
        assert_eq!(w.on_idle(1), Some(100));
        w.on_activity(1);
        assert_eq!(w.on_watermark(0, 200), None, "input 1 active again at MIN");
        assert_eq!(w.on_watermark(1, 150), Some(150));
    }

    #[test]
    fn ended_inputs_release_event_time() {
        let mut w = InputWatermarks::new(2);
        w.on_watermark(0, 7);
        assert_eq!(w.on_end(1), Some(7));
        assert_eq!(w.on_end(0), Some(END_OF_TIME));
        assert!(w.all_ended());
        assert_eq!(w.on_watermark(0, 9), None);
    }

    #[test]
    fn all_idle_holds_the_watermark() {
        let mut w = InputWatermarks::new(1);
        w.on_watermark(0, 3);
        assert_eq!(w.on_idle(0), None);
        assert_eq!(w.current(), 3);
    }
}
