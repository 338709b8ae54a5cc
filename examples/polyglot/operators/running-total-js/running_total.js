// Keeps a running total of each word's window counts on keyed value state
// and emits every window with the total so far. Reads the Python window
// counter's JSON output.
import { exportOperator } from "weir";

class RunningTotal {
  static key = "string";
  static value = "json"; // {"word", "window_start", "window_end", "count"}

  open(ctx) {
    this.total = ctx.valueState("total", "int");
    this.windows = ctx.listState("windows", "int");
  }

  process(ctx, record) {
    const w = record.value;
    const total = (this.total.get(ctx) ?? 0) + w.count;
    this.total.set(ctx, total);
    this.windows.add(ctx, w.window_end);
    ctx.emit(record.key, {
      word: w.word,
      window_end: w.window_end,
      count: w.count,
      total,
      windows: this.windows.get(ctx).length,
    });
  }
}

export const hooks = exportOperator(RunningTotal);
