// Event-time windows with incremental aggregation, on keyed state and
// timers: the Rust SDK's `weir_guest::window` API (camelCase names), with
// the same semantics. A key's live windows are one value in keyed state
// (JSON: [[start, end, accumulator], ...] by end), kept in the instance
// (cache.js) and written back when the host is about to snapshot (or at the
// end of every call under a host that does not say it calls
// `prepare-snapshot`): a record costs no state call when its key was seen
// before, a key one write per checkpoint, and timers, one per window, go to
// the host in one call at the end of the call. Windows are checkpointed,
// restored and rescaled with the rest of the job. (The Rust SDK stores a
// key's windows as panes or sessions in its own binary layout: window state
// does not carry over when an operator is rewritten from JavaScript in Rust
// or back. Python's layout is this one.)
//
//     import { Windows, tumbling, Count, Late } from "weir/window";
//
//     class CountPerWindow {
//       static key = "string";
//       static value = "unit";
//       open(ctx) { this.windows = new Windows(ctx, "counts", tumbling(10000), new Count()); }
//       process(ctx, record) {
//         for (const out of this.windows.add(ctx, record.timestamp, record.value)) {
//           if (out instanceof Late) ctx.emit(record.key, "late");   // too late for every window
//           else out.result.emit(ctx, record.key);                   // a late update
//         }
//       }
//       onTimer(ctx, timer) {
//         // key -> {"key","window_start","window_end","value"} at end - 1
//         for (const result of this.windows.onTimer(ctx, timer)) result.emit(ctx, timer.key);
//       }
//     }
//
// Semantics (Flink's event-time windows with an EventTimeTrigger): a window
// [start, end) fires when the watermark reaches end - 1 and its result is
// stamped end - 1; with `allowedLateness: L` its state is kept until the
// watermark reaches end - 1 + L, and every record that arrives for it
// meanwhile updates it and re-fires it at once (`add` returns a `Fired`); a
// record whose windows are all past that is not added and `add` returns a
// `Late` for it. The operator world has one output stream, so the operator
// decides what a late record becomes. Records behind the watermark reach the
// operator only with `late_records = "process"` in the job file.
//
// Window arithmetic uses Numbers: event times must be safe integers (they
// are milliseconds; 2^53 ms is 285,000 years).
import { EVENT_TIME } from "./weir.js";
import { JSON_CODEC } from "./codec.js";
import { WriteBackCache } from "./cache.js";

export class Window {
  constructor(start, end) { this.start = start; this.end = end; }
  maxTimestamp() { return this.end - 1; }
  /** Flink's rule for sessions: overlapping or touching windows merge. */
  intersects(o) { return this.start <= o.end && this.end >= o.start; }
  cover(o) { return new Window(Math.min(this.start, o.start), Math.max(this.end, o.end)); }
}

function positive(what, ms) {
  if (!Number.isSafeInteger(ms) || ms <= 0) {
    throw new RangeError(`window ${what} must be a positive number of milliseconds, got ${ms}`);
  }
  return ms;
}

const mod = (a, b) => ((a % b) + b) % b;

class Assigner {
  constructor(kind, size, slide) { this.kind = kind; this.size = size; this.slide = slide; }
  get merging() { return this.kind === "session"; }
  /** The windows a record at `ts` belongs to, earliest start first. */
  assign(ts) {
    if (this.kind === "tumbling") {
      const start = ts - mod(ts, this.size);
      return [new Window(start, start + this.size)];
    }
    if (this.kind === "sliding") {
      const out = [];
      for (let s = ts - mod(ts, this.slide); s > ts - this.size; s -= this.slide) out.unshift(new Window(s, s + this.size));
      return out;
    }
    return [new Window(ts, ts + this.size)];
  }
}

/** Back-to-back windows of `sizeMs`, aligned to the epoch. */
export function tumbling(sizeMs) { return new Assigner("tumbling", positive("size", sizeMs)); }

/** Windows of `sizeMs` starting every `slideMs` (at most the size). */
export function sliding(sizeMs, slideMs) {
  const size = positive("size", sizeMs), slide = positive("slide", slideMs);
  if (slide > size) throw new RangeError(`window slide (${slide} ms) is larger than its size (${size} ms)`);
  return new Assigner("sliding", size, slide);
}

/** Per key, records less than `gapMs` apart share a window. */
export function session(gapMs) { return new Assigner("session", positive("gap", gapMs)); }

/** `create()` an accumulator, `add(acc, value)` and `merge(acc, other)`
 *  return the new one, `result(acc)` reads it. Accumulators are stored as
 *  JSON, and passed through it as they are stored (unless they are finite
 *  numbers, booleans, null or strings), so the aggregate sees what it would
 *  see after a restore from the first record on (a Map or Set becomes {},
 *  undefined null), and one JSON cannot hold (a BigInt, NaN or ±Infinity
 *  anywhere in it) fails the record
 *  that made it: use numbers, strings, booleans, null, arrays and plain
 *  objects. */
export class AggregateFunction {
  create() { throw new Error("AggregateFunction.create is not implemented"); }
  add() { throw new Error("AggregateFunction.add is not implemented"); }
  merge() { throw new Error("AggregateFunction.merge is not implemented"); }
  result(acc) { return acc; }
}

export class Count extends AggregateFunction {
  create() { return 0; }
  add(acc) { return acc + 1; }
  merge(acc, other) { return acc + other; }
}

export class Sum extends AggregateFunction {
  create() { return 0; }
  add(acc, v) { return acc + v; }
  merge(acc, other) { return acc + other; }
}

class Extreme extends AggregateFunction {
  create() { return null; }
  add(acc, v) { return acc === null || this.better(v, acc) ? v : acc; }
  merge(acc, other) { return other === null ? acc : this.add(acc, other); }
}

export class Min extends Extreme { better(a, b) { return a < b; } }
export class Max extends Extreme { better(a, b) { return a > b; } }

/** The mean; the accumulator is [sum, count]. */
export class Average extends AggregateFunction {
  create() { return [0, 0]; }
  add(acc, v) { return [acc[0] + v, acc[1] + 1]; }
  merge(acc, o) { return [acc[0] + o[0], acc[1] + o[1]]; }
  result(acc) { return acc[1] ? acc[0] / acc[1] : 0; }
}

/** A window's result: `window` and `value`. */
export class WindowResult {
  constructor(window, value) { this.window = window; this.value = value; }
  /** Results are stamped `window.end - 1`. */
  get timestamp() { return this.window.end - 1; }
  /** Emits key -> {"key","window_start","window_end","value"} (JSON) at `timestamp`. */
  emit(ctx, key) {
    ctx.emitAt(key, { key, window_start: this.window.start, window_end: this.window.end, value: this.value },
      this.timestamp);
  }
}

/** From `add`: a window updated within the allowed lateness after it fired. */
export class Fired { constructor(result) { this.result = result; } }

/** From `add`: the record came after all its windows were cleaned up. */
export class Late { constructor(timestamp) { this.timestamp = timestamp; } }

// What a window takes in the stored JSON besides its accumulator (two
// 13-digit times, brackets and commas), and about what a number takes: the
// cache's memory estimate for windows changed since their last write.
const WINDOW_BYTES = 32;
const NUMBER_BYTES = 20;

/** A finite number other than -0, or a boolean: the same after a JSON
 *  round trip. */
function number(x) {
  return typeof x === "number" ? Number.isFinite(x) && (x !== 0 || 1 / x > 0) : typeof x === "boolean";
}

/** A key's windows: Map end -> [start, acc, bytes] in memory (bytes: about
 *  what the window takes in the JSON), stored as JSON [[start, end, acc],
 *  ...] by end. */
const KEY_WINDOWS = {
  encode(windows) {
    const list = [...windows].sort(([a], [b]) => a - b).map(([end, [start, acc]]) => [start, end, acc]);
    return JSON_CODEC.encode(list);
  },
  decode(bytes) {
    const list = JSON_CODEC.decode(bytes);
    const each = Math.floor(bytes.length / Math.max(1, list.length));
    return new Map(list.map(([start, end, acc]) => [end, [start, acc, each]]));
  },
};

/** About what a key's windows take in the stored JSON. */
function sizeOf(windows) {
  let size = 2;
  for (const slot of windows.values()) size += slot[2];
  return size;
}

/** Windows of one kind over the records of each key, with one aggregate.
 *  Create it in `open`; call `add` in `process` and `onTimer` in `onTimer`. */
export class Windows {
  constructor(ctx, name, assigner, aggregate, { allowedLateness = 0 } = {}) {
    if (!Number.isSafeInteger(allowedLateness) || allowedLateness < 0) {
      throw new RangeError(`allowed lateness must not be negative, got ${allowedLateness} ms`);
    }
    this.assigner = assigner;
    this.aggregate = aggregate;
    this.lateness = allowedLateness;
    this.name = name;
    this._cache = new WriteBackCache(ctx, ctx.valueState(name, KEY_WINDOWS));
  }

  _isLate(w, wm) { return w.maxTimestamp() + this.lateness <= wm; }

  /** Adds a record to its windows for the current key; returns `Fired` late
   *  updates and `Late` (usually nothing). */
  add(ctx, timestamp, value) {
    if (timestamp === null || timestamp === undefined) throw new Error("a windowed record needs an event time");
    const wm = ctx.watermark();
    const entry = this._cache.entry(ctx);
    const stored = entry.value ?? new Map();
    const outputs = [];
    const added = this.assigner.merging
      ? this._addToSession(ctx, stored, timestamp, value, wm, outputs)
      : this._addToWindows(ctx, stored, timestamp, value, wm, outputs);
    if (added) this._cache.change(ctx, entry, stored, sizeOf(stored));
    else outputs.push(new Late(timestamp));
    return outputs;
  }

  _addToWindows(ctx, stored, timestamp, value, wm, outputs) {
    const live = this.assigner.assign(timestamp).filter((w) => !this._isLate(w, wm));
    // The aggregate (user code) runs, and its accumulators go through JSON,
    // before anything changes.
    const accs = live.map((w) => this._kept(this.aggregate.add(this._acc(stored, w), value)));
    live.forEach((w, i) => this._store(ctx, stored, w, accs[i], wm, outputs));
    return live.length > 0;
  }

  /** [acc as a restore would give it back, about what it takes in the
   *  stored JSON]. Finite numbers, booleans, null and strings are the same
   *  after the round trip, and so is Average's [sum, count]; anything else
   *  goes through JSON as it is stored (inside an array, so undefined
   *  becomes null as it does there), so the aggregate never sees an
   *  accumulator that a restore would change, and one that JSON cannot hold
   *  fails here, at the record that made it, not at a snapshot. */
  _kept(acc) {
    if (number(acc) || acc === null) return [acc, NUMBER_BYTES];
    if (typeof acc === "string") return [acc, acc.length + 2];
    if (Array.isArray(acc) && acc.length === 2 && number(acc[0]) && number(acc[1])) {
      return [[acc[0], acc[1]], 2 * NUMBER_BYTES];
    }
    let text;
    try {
      // JSON.stringify would write NaN and ±Infinity as null, silently.
      text = JSON.stringify([acc], (_, v) => {
        if (typeof v === "number" && !Number.isFinite(v)) throw new RangeError(`${v} is not a JSON number`);
        return v;
      });
    } catch (e) {
      const name = this.aggregate?.constructor?.name || "the aggregate";
      throw new TypeError(`window state "${this.name}": the accumulator of ${name} cannot be stored as JSON`
        + ` (${e?.name ?? "Error"}: ${e?.message ?? e}); window state is stored as JSON: use numbers, strings,`
        + " booleans, null, arrays and plain objects");
    }
    return [JSON.parse(text)[0], text.length - 2];
  }

  _acc(stored, w) {
    const slot = stored.get(w.end);
    return slot === undefined ? this.aggregate.create() : slot[1];
  }

  _store(ctx, stored, w, [acc, size], wm, outputs) {
    const fireAt = w.maxTimestamp();
    if (fireAt <= wm) outputs.push(new Fired(new WindowResult(w, this.aggregate.result(acc))));
    else ctx.registerEventTimer(fireAt);
    if (this.lateness > 0) ctx.registerEventTimer(fireAt + this.lateness);
    stored.set(w.end, [w.start, acc, WINDOW_BYTES + size]);
  }

  _addToSession(ctx, stored, timestamp, value, wm, outputs) {
    let merged = this.assigner.assign(timestamp)[0];
    // By end, so accumulators merge in the same order after a restore.
    let others = [...stored].sort(([a], [b]) => a - b).map(([end, [start, acc]]) => [new Window(start, end), acc]);
    const absorbed = [];
    for (;;) {
      const touching = others.filter(([w]) => w.intersects(merged));
      if (touching.length === 0) break;
      others = others.filter(([w]) => !w.intersects(merged));
      for (const [w, acc] of touching) {
        merged = merged.cover(w);
        absorbed.push([w, acc]);
      }
    }
    if (this._isLate(merged, wm)) return false;
    let acc = this.aggregate.add(this.aggregate.create(), value);
    for (const [, other] of absorbed) acc = this.aggregate.merge(acc, other);
    const kept = this._kept(acc);
    for (const [w] of absorbed) {
      if (w.end !== merged.end) {
        stored.delete(w.end);
        this._forgetTimers(ctx, w, [merged, ...others.map(([o]) => o)]);
      }
    }
    this._store(ctx, stored, merged, kept, wm, outputs);
    return true;
  }

  _forgetTimers(ctx, gone, remaining) {
    const times = (w) => [w.maxTimestamp(), w.maxTimestamp() + this.lateness];
    const needed = new Set(remaining.flatMap(times));
    for (const t of new Set(times(gone))) if (!needed.has(t)) ctx.deleteEventTimer(t);
  }

  /** Handles a fired timer for the current key: returns the result of the
   *  window it fires and drops windows whose lateness it ends. Other timers
   *  find no window and return nothing. */
  onTimer(ctx, timer) {
    if (timer.domain !== EVENT_TIME) return [];
    const entry = this._cache.entry(ctx);
    const stored = entry.value;
    if (stored === null) return [];
    const results = [];
    const end = Number(timer.timestamp) + 1;
    const slot = stored.get(end);
    if (slot !== undefined) results.push(new WindowResult(new Window(slot[0], end), this.aggregate.result(slot[1])));
    // Without lateness the window goes as it fires; with it, this is the
    // clean-up timer of the window that ended `lateness` earlier.
    if (stored.delete(end - this.lateness)) this._cache.change(ctx, entry, stored.size ? stored : null, sizeOf(stored));
    return results;
  }
}
