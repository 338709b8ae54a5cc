//! Counts words per event-time tumbling window (`window_ms`, default one
//! minute) with the SDK's window library: each window's count is kept in
//! host state and emitted once, when the watermark passes the window's end.

use serde::Serialize;
use weir_guest::window::{Sum, WindowAssigner, Windows};
use weir_guest::{Context, Json, OpenContext, Operator, Record, Result, Timer};

#[derive(Serialize)]
pub struct WindowCount {
    pub word: String,
    pub window_start: i64,
    pub window_end: i64,
    pub count: u64,
}

pub struct WindowCounter {
    counts: Windows<Sum<u64>>,
}

impl Operator for WindowCounter {
    type Key = String;
    type Value = u64;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        let window_ms = ctx.config_or("window_ms", 60_000i64)?;
        let assigner = WindowAssigner::tumbling(window_ms)
            .map_err(|e| weir_guest::Error::msg(format!("window_ms: {e}")))?;
        Ok(WindowCounter {
            counts: Windows::new(ctx, "counts", assigner, Sum::new())?,
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<String, u64>) -> Result<()> {
        let Some(ts) = record.timestamp else {
            return Err(weir_guest::Error::msg(format!(
                "word {:?} has no event time",
                record.key
            )));
        };
        // No allowed lateness, so nothing re-fires; and a word too late for
        // its window (only with `late_records = "process"`; by default the
        // host sends words behind the watermark to `count.late`) is dropped.
        self.counts.add(ctx, ts, &record.value)?;
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<String>) -> Result<()> {
        for result in self.counts.on_timer(ctx, &timer)? {
            let count = WindowCount {
                word: timer.key.clone(),
                window_start: result.window.start,
                window_end: result.window.end,
                count: result.value,
            };
            ctx.emit_at(&timer.key, &Json(count), Some(result.timestamp()))?;
        }
        Ok(())
    }
}

weir_guest::export_operator!(WindowCounter);
#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn emits_each_window_once_when_the_watermark_passes() {
        let mut h = Harness::<WindowCounter>::with_config(&[("window_ms", "1000")]).unwrap();
        let word = "fox".to_string();
        for ts in [10, 999, 1000] {
            assert!(h.process(&word, &1u64, Some(ts)).unwrap().is_empty());
        }
        assert!(h.advance_watermark(998).unwrap().is_empty());
        let out = h.advance_watermark(999).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].text().1,
            r#"{"word":"fox","window_start":0,"window_end":1000,"count":2}"#
        );
        assert_eq!(out[0].timestamp, Some(999));
        let out = h.advance_watermark(5000).unwrap();
        assert_eq!(
            out[0].text().1,
            r#"{"word":"fox","window_start":1000,"window_end":2000,"count":1}"#
        );
        assert!(h.pending_timers().is_empty());
    }

    #[test]
    fn rejects_a_bad_window_size() {
        let err = Harness::<WindowCounter>::with_config(&[("window_ms", "0")])
            .err()
            .unwrap();
        assert!(
            err.message()
                .contains("window_ms: window size must be a positive")
        );
    }
}
