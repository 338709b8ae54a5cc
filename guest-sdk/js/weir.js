// weir: write weir stream operators in JavaScript.
//
// Write a class with `process(ctx, record)` (and optionally `open(ctx)` and
// `onTimer(ctx, timer)`), say how keys and values decode with static
// `key`/`value` fields, and export it:
//
//     import { exportOperator } from "weir";
//
//     /** Counts records per key and emits the running count. */
//     class Count {
//       static key = "string";
//       static value = "string";
//       open(ctx) { this.seen = ctx.valueState("seen", "int"); }
//       process(ctx, record) {
//         const n = (this.seen.get(ctx) ?? 0) + 1;
//         this.seen.set(ctx, n);
//         ctx.emit(record.key, n);
//       }
//     }
//
//     export const hooks = exportOperator(Count);
//
// `scripts/build-operator.sh count.js -o count.wasm` turns the file into a
// component of the weir:operator world `buffering-operator` with
// componentize-js (build.mjs exports `snapshots` below beside `hooks`); `weir run`
// loads it like a Rust operator. The SDK hides the batch format and uses the
// Rust SDK's encodings (codec.js), so JavaScript, Rust and Python operators
// mix in one job. State lives in the host, scoped to the key at hand;
// fields of your object are a cache. An exception thrown by your code fails
// the job with the operator's name and the exception's message.
//
// Inside a component the host is reached through the WIT imports (host.js);
// natively (`node --test`) testing.js supplies an in-memory host instead.

import { codec, encodeAny, DecodeError, Json } from "./codec.js";
import { BatchReader, readTimers, TimerBatch, Writer, MalformedBatch } from "./wire.js";

export { Json, DecodeError, codec, encodeAny } from "./codec.js";

export const EVENT_TIME = "event-time";
export const PROCESSING_TIME = "processing-time";
export const LogLevel = Object.freeze({ TRACE: "trace", DEBUG: "debug", INFO: "info", WARN: "warn", ERROR: "error" });

/** Handed to `open`: declare state, read configuration. */
export class OpenContext {
  constructor(info) {
    /** { name, subtaskIndex, parallelism, config: Map<string,string> } */
    this.info = info;
    this._states = [];
    // Write-back caches (the window library's), flushed by the runtime.
    this._flushers = [];
  }

  /** A value of the operator's `config` table (a string), or `fallback`. */
  config(name, fallback = undefined) {
    const v = this.info.config.get(name);
    return v === undefined ? fallback : v;
  }

  _declare(name, kind, ttlMs) {
    if (this._states.some((s) => s.name === name)) throw new Error(`state \`${name}\` is declared twice`);
    this._states.push({ name, kind, ttlMs });
    return this._states.length - 1;
  }

  /** One value per key; with `ttlMs` entries expire after their last write. */
  valueState(name, type = "string", { ttlMs } = {}) {
    return new ValueState(this._declare(name, "value", ttlMs), codec(type));
  }

  /** A list per key; appends never read the existing list. */
  listState(name, type = "string") {
    return new ListState(this._declare(name, "list", undefined), codec(type));
  }

  /** A map per key, iterated in the byte order of the encoded map keys. */
  mapState(name, keyType = "string", valueType = "string") {
    return new MapState(this._declare(name, "map", undefined), codec(keyType), codec(valueType));
  }
}

/** Handed to `process` and `onTimer`, scoped to one key. */
export class Context {
  constructor(host, keyBytes, timestamp, out) {
    this._host = host;
    /** The current key, as the bytes the host sees. */
    this.keyBytes = keyBytes;
    /** Event time (ms) of the record or timer at hand, or null. */
    this.timestamp = timestamp;
    this._out = out;
  }

  /** Emits a record stamped with the current event time. Keys and values are
   * encoded by type: string, Uint8Array, number/bigint (decimal text),
   * boolean, null/undefined (no bytes), plain object/array (JSON), Json(x). */
  emit(key, value) {
    this._out.record(this.timestamp, encodeAny(key), encodeAny(value));
  }

  /** Emits a record with an explicit event time (null: no event time). */
  emitAt(key, value, timestamp) {
    this._out.record(timestamp, encodeAny(key), encodeAny(value));
  }

  watermark() { return this._host.watermark(); }
  processingTime() { return this._host.processingTime(); }
  /** Fires `onTimer` for the current key once the watermark reaches `ts`. */
  registerEventTimer(ts) { this._host.registerTimer(EVENT_TIME, this.keyBytes, ts); }
  deleteEventTimer(ts) { this._host.deleteTimer(EVENT_TIME, this.keyBytes, ts); }
  /** Fires `onTimer` for the current key once processing time reaches `ts`. */
  registerProcessingTimer(ts) { this._host.registerTimer(PROCESSING_TIME, this.keyBytes, ts); }
  deleteProcessingTimer(ts) { this._host.deleteTimer(PROCESSING_TIME, this.keyBytes, ts); }
  /** Logs into the host's log, tagged with the operator's name. */
  log(level, message) { this._host.log(level, String(message)); }
}

export class ValueState {
  constructor(index, c) { this.index = index; this.codec = c; }
  /** The value for the current key, or `undefined`. */
  get(ctx) {
    const b = ctx._host.valueGet(this.index, ctx.keyBytes);
    return b === undefined ? undefined : this.codec.decode(b);
  }
  set(ctx, value) { ctx._host.valueSet(this.index, ctx.keyBytes, this.codec.encode(value)); }
  clear(ctx) { ctx._host.clear(this.index, ctx.keyBytes); }
}

export class ListState {
  constructor(index, c) { this.index = index; this.codec = c; }
  add(ctx, value) { ctx._host.listAppend(this.index, ctx.keyBytes, this.codec.encode(value)); }
  get(ctx) { return ctx._host.listGet(this.index, ctx.keyBytes).map((b) => this.codec.decode(b)); }
  clear(ctx) { ctx._host.clear(this.index, ctx.keyBytes); }
}

export class MapState {
  constructor(index, k, v) { this.index = index; this.keys = k; this.values = v; }
  get(ctx, mapKey) {
    const b = ctx._host.mapGet(this.index, ctx.keyBytes, this.keys.encode(mapKey));
    return b === undefined ? undefined : this.values.decode(b);
  }
  put(ctx, mapKey, value) {
    ctx._host.mapPut(this.index, ctx.keyBytes, this.keys.encode(mapKey), this.values.encode(value));
  }
  remove(ctx, mapKey) { ctx._host.mapRemove(this.index, ctx.keyBytes, this.keys.encode(mapKey)); }
  /** [mapKey, value] pairs in the byte order of the encoded map keys. */
  entries(ctx) {
    return ctx._host.mapEntries(this.index, ctx.keyBytes).map(([k, v]) => [this.keys.decode(k), this.values.decode(v)]);
  }
  clear(ctx) { ctx._host.clear(this.index, ctx.keyBytes); }
}

/** What a host that calls `prepare-snapshot` puts in the config. */
export const PREPARE_SNAPSHOT_CONFIG = "weir.prepare_snapshot";

/** What a TimerBuffer holds back at most before it hands it over. */
export const TIMER_BATCH_BYTES_MAX = 64 << 10;

/** Creates the operator on `host` and runs its `open`; returns
 *  [Instance, states]. */
export function openOperator(OperatorClass, info, host) {
  const ctx = new OpenContext(info);
  const op = new OperatorClass();
  if (typeof op.process !== "function") throw new TypeError(`${OperatorClass.name} has no process(ctx, record) method`);
  if (typeof op.open === "function") op.open(ctx);
  const runtime = { key: codec(OperatorClass.key ?? "string"), value: codec(OperatorClass.value ?? "string") };
  const holdBack = info.config.get(PREPARE_SNAPSHOT_CONFIG) === "1";
  return [new Instance({ op, runtime }, host, ctx._flushers, holdBack), ctx._states];
}

/** One opened operator on its host, with the write-back caches it declared.
 *  They are flushed when the host is about to take a snapshot
 *  (`prepareSnapshot`) if it said it calls that, else at the end of every
 *  call (an older host may snapshot between any two calls). */
export class Instance {
  constructor(operator, host, flushers, holdBack) {
    this.operator = operator;
    this.host = host;
    this.flushers = flushers;
    this.holdBack = holdBack;
    this.timers = new TimerBuffer(host);
  }

  /** Runs one call with timer registrations held back, then hands the host
   *  what the call left: write-back state, then the timers. A call that
   *  throws hands over nothing (the host fails the job). */
  call(run, ...args) {
    const timers = this.timers;
    timers.batch.reset();
    const out = run(this.operator, timers, ...args);
    if (!this.holdBack) this.flush(timers);
    timers.flush();
    return out;
  }

  process(input, batch) { return this.call(processBatch, input, batch); }
  onTimers(timers) { return this.call(processTimers, timers); }
  /** The host is about to snapshot: hands it everything held back. */
  prepareSnapshot() { this.flush(this.host); }
  flush(host) { for (const cache of this.flushers) cache.flush(host); }
}

const FORWARDED = ["valueGet", "valueSet", "valueWriteMany", "listAppend", "listGet", "mapGet", "mapPut",
  "mapRemove", "mapEntries", "clear", "watermark", "processingTime", "log"];

/** The host, with timer registrations held back until `flush` and then
 *  handed over in one `register-timers` call: every call into the host has a
 *  fixed cost, and a window operator registers a timer per window. Holding
 *  them until the end of the guest call changes nothing the operator can
 *  see, since timers fire only between calls. A deletion first flushes, so a
 *  timer registered and deleted in one call is gone. */
class TimerBuffer {
  constructor(host) {
    this.host = host;
    this.batch = new TimerBatch();
    for (const name of FORWARDED) this[name] = host[name].bind(host);
  }
  registerTimer(domain, key, ts) {
    this.batch.push(domain, key, ts);
    // Bounded: an operator that registers without end meets the host's
    // timer limits (and their message), not the guest memory limit.
    if (this.batch.at >= TIMER_BATCH_BYTES_MAX) this.flush();
  }
  registerTimers(timers) {
    this.flush();
    this.host.registerTimers(timers);
  }
  deleteTimer(domain, key, ts) {
    this.flush();
    this.host.deleteTimer(domain, key, ts);
  }
  flush() {
    if (this.batch.count === 0) return;
    this.host.registerTimers(this.batch.finish());
    this.batch.reset();
  }
}

/** Decodes `batch`, calls `process` per record, returns the encoded output.
 *  One Context serves the whole batch, re-pointed at each record's key: keep
 *  no reference to it past the call. */
function processBatch({ op, runtime }, host, input, batch) {
  const keyCodec = runtime.key, valueCodec = runtime.value;
  const out = new Writer(batch.length);
  const ctx = new Context(host, null, null, out);
  const r = new BatchReader(batch);
  let index = 0;
  while (r.next()) {
    let key, value;
    try { key = keyCodec.decode(r.key); } catch (e) { throw new DecodeError(`record ${index}: key: ${e.message}`); }
    try { value = valueCodec.decode(r.value); } catch (e) { throw new DecodeError(`record ${index}: value: ${e.message}`); }
    ctx.keyBytes = r.key;
    ctx.timestamp = r.timestamp;
    op.process(ctx, { key, value, timestamp: r.timestamp, input });
    index++;
  }
  return out.finish();
}

/** Decodes fired timers, calls `onTimer` per timer, returns the output. */
function processTimers({ op, runtime }, host, timers) {
  const out = new Writer(64);
  for (const [ts, domain, keyBytes] of readTimers(timers)) {
    let key;
    try { key = runtime.key.decode(keyBytes); } catch (e) { throw new DecodeError(`timer key: ${e.message}`); }
    if (typeof op.onTimer === "function") {
      op.onTimer(new Context(host, keyBytes, ts, out), { key, timestamp: ts, domain });
    }
  }
  return out.finish();
}

/** `Type: message (at file:line)` for an exception thrown by operator code. */
export function describe(e) {
  if (e instanceof MalformedBatch || e instanceof DecodeError) return e.message;
  if (!(e instanceof Error)) return `uncaught exception: ${String(e)}`;
  let text = `${e.name}: ${e.message}`;
  // The innermost frame outside the SDK (SpiderMonkey: `fn@file:line:col`,
  // V8: `    at fn (file:line:col)`) says where the operator failed.
  const frame = String(e.stack ?? "").split("\n").map((l) => l.trim().replace(/^at /, ""))
    .find((l) => /:\d+(:\d+)?\)?$/.test(l) && !/(weir|codec|wire|host|testing|cache|window)\.js:/.test(l));
  if (frame) text += ` (at ${frame})`;
  return text;
}

let hostFactory = null;
/** Used by host.js (the component) and testing.js (native tests). */
export function setHostFactory(factory) { hostFactory = factory; }

// componentize-js turns a thrown value into the `err` of the result; a
// plain string becomes the host's error message.
function guard(run) {
  try {
    return run();
  } catch (e) {
    throw describe(e);
  }
}

/** The instance the host opened last (a component opens one), for
 *  `snapshots`. */
let opened = null;

/** Exports `OperatorClass` as the component's operator:
 *  `export const hooks = exportOperator(MyOperator);` */
export function exportOperator(OperatorClass) {
  if (typeof OperatorClass !== "function") throw new TypeError("exportOperator takes a class");
  let instance = null;
  const current = () => {
    if (!instance) throw new Error("the host called the operator before `open`");
    return instance;
  };
  return {
    open(info) {
      return guard(() => {
        const [inst, states] = openOperator(OperatorClass, {
          name: info.name,
          subtaskIndex: info.subtaskIndex,
          parallelism: info.parallelism,
          config: new Map(info.config),
        }, hostFactory());
        instance = inst;
        opened = inst;
        return states.map((s) => ({ name: s.name, kind: s.kind, ttlMs: s.ttlMs === undefined ? undefined : BigInt(s.ttlMs) }));
      });
    },
    process(input, records) {
      return guard(() => current().process(input, records));
    },
    onTimers(timers) {
      return guard(() => current().onTimers(timers));
    },
  };
}

/** The `snapshots` export (world `buffering-operator`): hands the host what
 *  the opened operator holds back; build.mjs exports it beside the
 *  operator's `hooks`. Before any `open` nothing is held back, so there is
 *  nothing to do. */
export const snapshots = {
  prepareSnapshot() {
    if (opened !== null) guard(() => opened.prepareSnapshot());
  },
};
