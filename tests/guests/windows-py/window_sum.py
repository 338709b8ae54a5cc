"""Sums integer values per key in 10-second tumbling event-time windows with
the Python SDK's window library (tests/windows.rs checks it against a
model; the JavaScript twin is tests/guests/windows-js)."""

import weir
from weir.window import Late, Sum, Windows, tumbling


class WindowSum(weir.Operator):
    key = str
    value = weir.Json

    def open(self, ctx):
        self.windows = Windows(ctx, "sums", tumbling(10_000), Sum())

    def process(self, ctx, record):
        for out in self.windows.add(ctx, record.timestamp, record.value["v"]):
            if isinstance(out, Late):
                ctx.emit(record.key, "late")
            else:
                out.result.emit(ctx, record.key)

    def on_timer(self, ctx, timer):
        for result in self.windows.on_timer(ctx, timer):
            result.emit(ctx, timer.key)


Hooks = weir.export(WindowSum)
