"""Counts words per tumbling event-time window (config `window_ms`) on
keyed map state, and emits each window's count when the watermark passes
its end: the Rust window-count operator, in Python. Reads the Rust
tokenizer's output (key: the word, value: 1 as decimal text)."""

import weir


class WindowCount(weir.Operator):
    key = str
    value = int

    def open(self, ctx):
        self.window_ms = ctx.config("window_ms", 60_000, int)
        if self.window_ms <= 0:
            raise ValueError(f"window_ms must be positive, got {self.window_ms}")
        # window end (ms) -> count so far, per word
        self.counts = ctx.map_state("counts", int, int)

    def process(self, ctx, record):
        ts = record.timestamp
        if ts is None:
            raise ValueError(f"word {record.key!r} has no event time")
        end = ts - ts % self.window_ms + self.window_ms
        self.counts.put(ctx, end, self.counts.get(ctx, end, 0) + record.value)
        ctx.register_event_timer(end - 1)

    def on_timer(self, ctx, timer):
        end = timer.timestamp + 1
        count = self.counts.get(ctx, end)
        if count is not None:
            self.counts.remove(ctx, end)
            ctx.emit(timer.key, {"word": timer.key, "window_start": end - self.window_ms,
                                 "window_end": end, "count": count})


Hooks = weir.export(WindowCount)
