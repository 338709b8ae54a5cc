// Runs an operator natively with an in-memory host, through the same batch
// encoding the weir host uses, so operators are unit-tested with `node --test`:
//
//   import { Harness } from "../guest-sdk/js/testing.js";
//   const h = new Harness(Count);
//   h.process("a", "x"); h.process("a", "y")[0].value === "2";

import { openOperator, PREPARE_SNAPSHOT_CONFIG } from "./weir.js";
import { encodeAny } from "./codec.js";
import { readBatch, readEntries, readTimers, readValueWrites, writeBatch, writeTimers, NO_TIMESTAMP } from "./wire.js";

const hex = (b) => Buffer.from(b).toString("hex");
const dec = new TextDecoder();

/** The host's services in memory (no TTL, every key owned). `called(name)`
 *  counts the calls of a keyed-state or timer registration function by its
 *  WIT name; `timerBatches` and `writeBatches` hold what each
 *  `register-timers` and `value-write-many` call carried. */
export class MemoryHost {
  constructor() {
    this.values = new Map(); this.lists = new Map(); this.maps = new Map();
    this.timers = new Map(); // "domain|ts|hexkey" -> [domain, ts, key]
    this.currentWatermark = Number(NO_TIMESTAMP);
    this.now = 0;
    this.logs = [];
    this.calls = new Map();
    this.timerBatches = []; // [[domain, ts, key as text]] per call
    this.writeBatches = []; // [state, [[key as text, value as text or null]]] per call
  }
  count(name) { this.calls.set(name, (this.calls.get(name) ?? 0) + 1); }
  called(name) { return this.calls.get(name) ?? 0; }
  valueGet(s, k) { this.count("value-get"); return this.values.get(`${s}|${hex(k)}`); }
  valueSet(s, k, v) { this.count("value-set"); this.values.set(`${s}|${hex(k)}`, Uint8Array.from(v)); }
  valueWriteMany(s, writes) {
    this.count("value-write-many");
    const decoded = readValueWrites(writes);
    this.writeBatches.push([s, decoded.map(([k, v]) => [dec.decode(k), v === null ? null : dec.decode(v)])]);
    for (const [k, v] of decoded) {
      if (v === null) this.drop(s, k);
      else this.values.set(`${s}|${hex(k)}`, Uint8Array.from(v));
    }
  }
  listAppend(s, k, v) {
    this.count("list-append");
    const id = `${s}|${hex(k)}`;
    if (!this.lists.has(id)) this.lists.set(id, []);
    this.lists.get(id).push(Uint8Array.from(v));
  }
  listGet(s, k) { this.count("list-get"); return [...(this.lists.get(`${s}|${hex(k)}`) ?? [])]; }
  mapGet(s, k, mk) { this.count("map-get"); return this.maps.get(`${s}|${hex(k)}`)?.get(hex(mk))?.[1]; }
  mapPut(s, k, mk, v) {
    this.count("map-put");
    const id = `${s}|${hex(k)}`;
    if (!this.maps.has(id)) this.maps.set(id, new Map());
    this.maps.get(id).set(hex(mk), [Uint8Array.from(mk), Uint8Array.from(v)]);
  }
  mapRemove(s, k, mk) { this.count("map-remove"); this.maps.get(`${s}|${hex(k)}`)?.delete(hex(mk)); }
  mapEntries(s, k) {
    this.count("map-entries");
    const m = this.maps.get(`${s}|${hex(k)}`) ?? new Map();
    // Ordered by map key bytes (hex order is byte order), as the host does.
    return readEntries(encodeEntries([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e)));
  }
  clear(s, k) { this.count("clear"); this.drop(s, k); }
  drop(s, k) { for (const t of [this.values, this.lists, this.maps]) t.delete(`${s}|${hex(k)}`); }
  registerTimer(domain, k, ts) { this.count("register-timer"); this.addTimer(domain, k, ts); }
  registerTimers(batch) {
    this.count("register-timers");
    const timers = [...readTimers(batch)];
    this.timerBatches.push(timers.map(([ts, d, k]) => [d, ts, dec.decode(k)]));
    for (const [ts, d, k] of timers) this.addTimer(d, k, ts);
  }
  addTimer(domain, k, ts) { this.timers.set(`${domain}|${ts}|${hex(k)}`, [domain, ts, Uint8Array.from(k)]); }
  deleteTimer(domain, k, ts) { this.count("delete-timer"); this.timers.delete(`${domain}|${ts}|${hex(k)}`); }
  watermark() { return this.currentWatermark; }
  processingTime() { return this.now; }
  log(level, message) { this.logs.push([level, message]); }
}

function encodeEntries(entries) {
  const parts = [];
  const u32 = (n) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n, true); return b; };
  parts.push(u32(entries.length));
  for (const [k, v] of entries) parts.push(u32(k.length), k, u32(v.length), v);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** An output record: key and value as text (keyBytes/valueBytes raw). */
export class Emitted {
  constructor(timestamp, keyBytes, valueBytes) {
    Object.assign(this, { timestamp, keyBytes, valueBytes, key: dec.decode(keyBytes), value: dec.decode(valueBytes) });
  }
  json() { return JSON.parse(this.value); }
}

/** An operator instance on a MemoryHost. Like weir's host, the harness calls
 *  `prepare-snapshot` before it snapshots (`restart`) and says so in the
 *  config (`weir.prepare_snapshot` = `1`), unless `config` sets that entry
 *  itself (`0`: act as a host that does not, so write-back state reaches the
 *  host by the end of every call). */
export class Harness {
  constructor(OperatorClass, { config = {}, name = "op" } = {}) {
    this.host = new MemoryHost();
    const entries = Object.entries({ [PREPARE_SNAPSHOT_CONFIG]: "1", ...config }).map(([k, v]) => [k, String(v)]);
    this.OperatorClass = OperatorClass;
    this.info = { name, subtaskIndex: 0, parallelism: 1, config: new Map(entries) };
    [this.instance, this.states] = openOperator(OperatorClass, this.info, this.host);
  }
  /** The operator object. */
  get operator() { return this.instance.operator.op; }
  /** What the host does right before a snapshot: the operator writes back
   *  the state it holds in its own memory. */
  prepareSnapshot() { this.instance.prepareSnapshot(); }
  /** Snapshots and restores at once: prepares a snapshot, then opens a new
   *  instance over the same state and timers, as the host does when it
   *  restores that snapshot: whatever else the operator kept only in its own
   *  memory is gone. `{ prepare: false }` snapshots without calling
   *  `prepare-snapshot`, as a host from before it does (pair it with
   *  `weir.prepare_snapshot` = `0` in the config, which such a host never
   *  sets). */
  restart({ prepare = true } = {}) {
    if (prepare) this.prepareSnapshot();
    [this.instance, this.states] = openOperator(this.OperatorClass, this.info, this.host);
  }
  /** Feeds one record (key and value encoded like ctx.emit does). */
  process(key, value, timestamp = null, input = 0) { return this.processBatch([[timestamp, key, value]], input); }
  processBatch(records, input = 0) {
    const batch = writeBatch(records.map(([ts, k, v]) => [ts, encodeAny(k), encodeAny(v)]));
    return decode(this.instance.process(input, batch));
  }
  /** Moves the watermark and fires due event-time timers in order. */
  advanceWatermark(wm) { this.host.currentWatermark = wm; return this.fire("event-time", wm); }
  advanceProcessingTime(now) { this.host.now = now; return this.fire("processing-time", now); }
  pendingTimers() { return [...this.host.timers.values()].map(([d, ts, k]) => [d, ts, dec.decode(k)]); }
  fire(domain, upto) {
    const due = [...this.host.timers.entries()].filter(([, [d, ts]]) => d === domain && ts <= upto)
      .sort(([, a], [, b]) => a[1] - b[1] || (hex(a[2]) < hex(b[2]) ? -1 : 1));
    for (const [id] of due) this.host.timers.delete(id);
    if (!due.length) return [];
    return decode(this.instance.onTimers(writeTimers(due.map(([, [d, ts, k]]) => [ts, d, k]))));
  }
}

function decode(batch) {
  return [...readBatch(batch)].map(([ts, k, v]) => new Emitted(ts, k, v));
}
