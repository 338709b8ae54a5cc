// A JavaScript operator that misbehaves as its `behavior` config says, for
// tests/polyglot.rs: each misbehaviour must fail the job with a clear error
// naming the operator, within a deadline.
import { exportOperator } from "weir";

class Hostile {
  open(ctx) {
    this.behavior = ctx.config("behavior", "none");
    if (ctx.config("on") === "open") this.misbehave();
  }

  process(ctx, record) {
    this.misbehave();
    ctx.emit(record.key, record.value);
  }

  misbehave() {
    if (this.behavior === "exception") throw new RangeError("the javascript operator failed on purpose");
    if (this.behavior === "throw-string") throw "a bare string thrown on purpose";
    if (this.behavior === "infinite-loop") {
      let n = 0;
      for (;;) n++;
    }
  }
}

export const hooks = exportOperator(Hostile);
