// Runs an operator natively with an in-memory host, through the same batch
// encoding the weir host uses, so operators are unit-tested with `node --test`:
//
//   import { Harness } from "../guest-sdk/js/testing.js";
//   const h = new Harness(Count);
//   h.process("a", "x"); h.process("a", "y")[0].value === "2";

import { openOperator, processBatch, processTimers } from "./weir.js";
import { encodeAny } from "./codec.js";
import { readBatch, readEntries, writeBatch, writeTimers, NO_TIMESTAMP } from "./wire.js";

const hex = (b) => Buffer.from(b).toString("hex");
const dec = new TextDecoder();

/** The host's services in memory (no TTL, every key owned). */
export class MemoryHost {
  constructor() {
    this.values = new Map(); this.lists = new Map(); this.maps = new Map();
    this.timers = new Map(); // "domain|ts|hexkey" -> [domain, ts, key]
    this.currentWatermark = Number(NO_TIMESTAMP);
    this.now = 0;
    this.logs = [];
  }
  valueGet(s, k) { return this.values.get(`${s}|${hex(k)}`); }
  valueSet(s, k, v) { this.values.set(`${s}|${hex(k)}`, Uint8Array.from(v)); }
  listAppend(s, k, v) {
    const id = `${s}|${hex(k)}`;
    if (!this.lists.has(id)) this.lists.set(id, []);
    this.lists.get(id).push(Uint8Array.from(v));
  }
  listGet(s, k) { return [...(this.lists.get(`${s}|${hex(k)}`) ?? [])]; }
  mapGet(s, k, mk) { return this.maps.get(`${s}|${hex(k)}`)?.get(hex(mk))?.[1]; }
  mapPut(s, k, mk, v) {
    const id = `${s}|${hex(k)}`;
    if (!this.maps.has(id)) this.maps.set(id, new Map());
    this.maps.get(id).set(hex(mk), [Uint8Array.from(mk), Uint8Array.from(v)]);
  }
  mapRemove(s, k, mk) { this.maps.get(`${s}|${hex(k)}`)?.delete(hex(mk)); }
  mapEntries(s, k) {
    const m = this.maps.get(`${s}|${hex(k)}`) ?? new Map();
    // Ordered by map key bytes (hex order is byte order), as the host does.
    return readEntries(encodeEntries([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e)));
  }
  clear(s, k) { for (const t of [this.values, this.lists, this.maps]) t.delete(`${s}|${hex(k)}`); }
  registerTimer(domain, k, ts) { this.timers.set(`${domain}|${ts}|${hex(k)}`, [domain, ts, Uint8Array.from(k)]); }
  deleteTimer(domain, k, ts) { this.timers.delete(`${domain}|${ts}|${hex(k)}`); }
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

/** An operator instance on a MemoryHost. */
export class Harness {
  constructor(OperatorClass, { config = {}, name = "op" } = {}) {
    this.host = new MemoryHost();
    const info = { name, subtaskIndex: 0, parallelism: 1, config: new Map(Object.entries(config).map(([k, v]) => [k, String(v)])) };
    [this.instance, this.states] = openOperator(OperatorClass, info);
  }
  /** Feeds one record (key and value encoded like ctx.emit does). */
  process(key, value, timestamp = null, input = 0) { return this.processBatch([[timestamp, key, value]], input); }
  processBatch(records, input = 0) {
    const batch = writeBatch(records.map(([ts, k, v]) => [ts, encodeAny(k), encodeAny(v)]));
    return decode(processBatch(this.instance, this.host, input, batch));
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
    return decode(processTimers(this.instance, this.host, writeTimers(due.map(([, [d, ts, k]]) => [ts, d, k]))));
  }
}

function decode(batch) {
  return [...readBatch(batch)].map(([ts, k, v]) => new Emitted(ts, k, v));
}
