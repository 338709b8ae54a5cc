//! The keyed aggregation of the benchmarks: counts records per key in
//! event-time tumbling windows of `window_ms` (default 10 s) and emits
//! `key -> count` when a window closes — the shape of Nexmark q5/q7.

use weir_guest::{Context, MapState, OpenContext, Operator, Record, Result, Timer};

pub struct WindowedCount {
    window_ms: i64,
    counts: MapState<i64, u64>,
}

impl Operator for WindowedCount {
    type Key = Vec<u8>;
    type Value = ();

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(WindowedCount {
            window_ms: ctx.config_or("window_ms", 10_000)?,
            counts: ctx.map_state("counts")?,
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<Vec<u8>, ()>) -> Result<()> {
        let ts = record.timestamp.unwrap_or(0);
        let end = ts - ts.rem_euclid(self.window_ms) + self.window_ms;
        let n = self.counts.get(ctx, &end)?.unwrap_or(0) + 1;
        self.counts.put(ctx, &end, &n)?;
        ctx.register_event_timer(end - 1);
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<Vec<u8>>) -> Result<()> {
        let end = timer.timestamp + 1;
        if let Some(n) = self.counts.get(ctx, &end)? {
            self.counts.remove(ctx, &end);
            ctx.emit(&timer.key, &n)?;
        }
        Ok(())
    }
}

weir_guest::export_operator!(WindowedCount);
