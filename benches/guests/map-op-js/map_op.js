// The map operator of benches/polyglot.rs in JavaScript: upper-cases each
// value (ASCII) and keeps the key, like benches/guests/map-op.
import { exportOperator } from "weir";

class UpperCase {
  static key = "bytes";
  static value = "bytes";

  process(ctx, record) {
    const v = Uint8Array.from(record.value);
    for (let i = 0; i < v.length; i++) {
      if (v[i] >= 97 && v[i] <= 122) v[i] -= 32;
    }
    ctx.emit(record.key, v);
  }
}

export const hooks = exportOperator(UpperCase);
