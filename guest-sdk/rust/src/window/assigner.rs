//! Which event-time windows a record belongs to.
//!
//! Windows are half-open intervals `[start, end)` of event time in
//! milliseconds, aligned to the Unix epoch like Flink's (no offset).

use crate::{Error, Result};

/// One window: event times `start <= t < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The last event time inside the window (`end - 1`): its results are
    /// stamped with it, and it fires when the watermark reaches it.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }

    /// Flink's rule for session windows: windows that overlap or touch
    /// merge.
    pub(crate) fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    pub(crate) fn cover(&self, other: &Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// How records are grouped into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    /// Back-to-back windows of `size` ms: each record is in exactly one.
    Tumbling { size: i64 },
    /// Windows of `size` ms starting every `slide` ms: a record is in
    /// about `size / slide` of them.
    Sliding { size: i64, slide: i64 },
    /// Per key, records less than `gap` ms apart share a window: each
    /// record opens `[t, t + gap)`, which merges with every window of the
    /// key it overlaps or touches.
    Session { gap: i64 },
}

fn positive(what: &str, ms: i64) -> Result<i64> {
    if ms > 0 {
        Ok(ms)
    } else {
        Err(Error::msg(format!(
            "window {what} must be a positive number of milliseconds, got {ms}"
        )))
    }
}

pub(super) fn out_of_range(timestamp: i64) -> Error {
    Error::msg(format!(
        "event time {timestamp} is too close to the ends of the i64 range for its windows"
    ))
}

impl WindowAssigner {
    /// Tumbling windows of `size_ms`; an error unless `size_ms > 0`.
    pub fn tumbling(size_ms: i64) -> Result<WindowAssigner> {
        Ok(WindowAssigner::Tumbling {
            size: positive("size", size_ms)?,
        })
    }

    /// Sliding windows of `size_ms` every `slide_ms`; both must be
    /// positive, and the slide at most the size (a larger slide would drop
    /// records between windows).
    pub fn sliding(size_ms: i64, slide_ms: i64) -> Result<WindowAssigner> {
        let (size, slide) = (positive("size", size_ms)?, positive("slide", slide_ms)?);
        if slide > size {
            return Err(Error::msg(format!(
                "window slide ({slide} ms) is larger than its size ({size} ms)"
            )));
        }
        Ok(WindowAssigner::Sliding { size, slide })
    }

    /// Session windows closed after `gap_ms` without records for the key.
    pub fn session(gap_ms: i64) -> Result<WindowAssigner> {
        Ok(WindowAssigner::Session {
            gap: positive("gap", gap_ms)?,
        })
    }

    /// Whether windows merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, WindowAssigner::Session { .. })
    }

    /// The windows a record at `timestamp` belongs to, earliest start
    /// first. For sessions this is the record's own window before merging.
    pub fn assign(&self, timestamp: i64) -> Result<Vec<Window>> {
        let window = |start: i64, size: i64| -> Result<Window> {
            let end = start
                .checked_add(size)
                .ok_or_else(|| out_of_range(timestamp))?;
            Ok(Window { start, end })
        };
        let align = |step: i64| -> Result<i64> {
            timestamp
                .checked_sub(timestamp.rem_euclid(step))
                .ok_or_else(|| out_of_range(timestamp))
        };
        match *self {
            WindowAssigner::Tumbling { size } => Ok(vec![window(align(size)?, size)?]),
            WindowAssigner::Sliding { size, slide } => {
                let last = align(slide)?;
                let mut windows = Vec::with_capacity((size / slide) as usize + 1);
                let mut start = last;
                // Every start in (timestamp - size, last], stepping by slide.
                loop {
                    windows.push(window(start, size)?);
                    match start.checked_sub(slide) {
                        Some(s) if s > timestamp.saturating_sub(size) => start = s,
                        _ => break,
                    }
                }
                windows.reverse();
                Ok(windows)
            }
            WindowAssigner::Session { gap } => Ok(vec![window(timestamp, gap)?]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    #[test]
    fn tumbling_windows_align_to_the_epoch() {
        let t = WindowAssigner::tumbling(1000).unwrap();
        assert_eq!(t.assign(0).unwrap(), vec![w(0, 1000)]);
        assert_eq!(t.assign(999).unwrap(), vec![w(0, 1000)]);
        assert_eq!(t.assign(1000).unwrap(), vec![w(1000, 2000)]);
        assert_eq!(t.assign(-1).unwrap(), vec![w(-1000, 0)]);
    }

    #[test]
    fn sliding_windows_cover_every_start_within_size() {
        let s = WindowAssigner::sliding(1000, 250).unwrap();
        assert_eq!(
            s.assign(1100).unwrap(),
            vec![w(250, 1250), w(500, 1500), w(750, 1750), w(1000, 2000)]
        );
        // Size not a multiple of the slide.
        let s = WindowAssigner::sliding(300, 200).unwrap();
        assert_eq!(s.assign(450).unwrap(), vec![w(200, 500), w(400, 700)]);
        assert_eq!(s.assign(550).unwrap(), vec![w(400, 700)]);
    }

    #[test]
    fn sessions_start_at_the_record() {
        let s = WindowAssigner::session(30).unwrap();
        assert_eq!(s.assign(7).unwrap(), vec![w(7, 37)]);
        assert!(s.is_merging());
        assert!(w(0, 10).intersects(&w(10, 20)));
        assert!(!w(0, 10).intersects(&w(11, 20)));
    }

    #[test]
    fn bad_sizes_and_extreme_times_are_errors_not_panics() {
        assert!(WindowAssigner::tumbling(0).is_err());
        assert!(WindowAssigner::sliding(10, 0).is_err());
        assert!(WindowAssigner::sliding(10, 20).is_err());
        assert!(WindowAssigner::session(-5).is_err());
        let t = WindowAssigner::tumbling(1000).unwrap();
        assert!(t.assign(i64::MAX).is_err());
        assert!(t.assign(i64::MIN + 5).is_err());
        let s = WindowAssigner::sliding(1000, 10).unwrap();
        assert!(s.assign(i64::MAX - 5).is_err());
        assert!(s.assign(i64::MIN + 5).is_err());
    }
}
