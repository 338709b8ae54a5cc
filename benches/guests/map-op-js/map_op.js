// The map operator of benches/polyglot.rs in JavaScript: upper-cases each
// value and keeps the key, like benches/guests/map-op. Idiomatic JS works
// on the value as a string (the engine runs toUpperCase natively; a loop
// over the bytes is interpreted, about 0.5 us per byte); for the ASCII
// values of the benchmark the output is the same bytes, which the bench
// checks.
import { exportOperator } from "weir";

class UpperCase {
  static key = "bytes";
  static value = "string";

  process(ctx, record) {
    ctx.emit(record.key, record.value.toUpperCase());
  }
}

export const hooks = exportOperator(UpperCase);
