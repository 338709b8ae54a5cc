// Sums integer values per key in 10-second tumbling event-time windows with
// the JavaScript SDK's window library (tests/windows.rs checks it against
// a model; the Python twin is tests/guests/windows-py).
import { exportOperator } from "weir";
import { Windows, tumbling, Sum, Late } from "weir/window";

class WindowSum {
  static key = "string";
  static value = "json";
  open(ctx) { this.windows = new Windows(ctx, "sums", tumbling(10000), new Sum()); }
  process(ctx, record) {
    for (const out of this.windows.add(ctx, record.timestamp, record.value.v)) {
      if (out instanceof Late) ctx.emit(record.key, "late");
      else out.result.emit(ctx, record.key);
    }
  }
  onTimer(ctx, timer) {
    for (const result of this.windows.onTimer(ctx, timer)) result.emit(ctx, timer.key);
  }
}

export const hooks = exportOperator(WindowSum);
