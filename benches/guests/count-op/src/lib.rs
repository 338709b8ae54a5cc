//! The keyed aggregation of the benchmarks: counts records per key in
//! event-time tumbling windows of `window_ms` (default 10 s) with the SDK's
//! window library, and emits `key -> count` when a window closes — the
//! shape of Nexmark q5/q7.

use weir_guest::window::{Count, WindowAssigner, Windows};
use weir_guest::{Context, OpenContext, Operator, Record, Result, Timer};

pub struct WindowedCount {
    windows: Windows<Count<()>>,
}

impl Operator for WindowedCount {
    type Key = Vec<u8>;
    type Value = ();

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        let assigner = WindowAssigner::tumbling(ctx.config_or("window_ms", 10_000)?)?;
        Ok(WindowedCount {
            windows: Windows::new(ctx, "counts", assigner, Count::new())?,
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<Vec<u8>, ()>) -> Result<()> {
        // Late records are dropped by the host before they get here.
        self.windows.add(ctx, record.timestamp.unwrap_or(0), &())?;
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<Vec<u8>>) -> Result<()> {
        for result in self.windows.on_timer(ctx, &timer)? {
            ctx.emit(&timer.key, &result.value)?;
        }
        Ok(())
    }
}

weir_guest::export_operator!(WindowedCount);
