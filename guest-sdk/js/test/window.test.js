// Unit tests of window.js through the native harness: every assigner and
// aggregate, allowed lateness, late records, session merges, state held in
// the instance until a snapshot, and windows compared with a brute-force
// computation over a shuffled input (in batches, with restarts and a cache
// small enough to evict).
// Run: node --test guest-sdk/js/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { Harness } from "../testing.js";
import { writeValueWrites } from "../wire.js";
import { Json } from "../weir.js";
import {
  AggregateFunction, Average, Count, Late, Max, Min, Sum, Window, Windows, session, sliding, tumbling,
} from "../window.js";

function assignerOf(spec) {
  const [kind, ...n] = spec.split(":");
  return { tumbling, sliding, session }[kind](...n.map(Number));
}

/** A user aggregate: the sorted distinct values. */
class Distinct extends AggregateFunction {
  create() { return []; }
  add(acc, v) { return [...new Set([...acc, v])].sort((a, b) => a - b); }
  merge(acc, o) { return [...new Set([...acc, ...o])].sort((a, b) => a - b); }
}

/** A user aggregate written carelessly for JSON: value -> count in a Map
 *  with the values (numbers) as keys, which JSON stores as {}. */
class Histogram extends AggregateFunction {
  create() { return new Map(); }
  add(acc, v) {
    const m = new Map(acc instanceof Map ? acc : Object.entries(acc));
    m.set(v, (m.get(v) ?? 0) + 1);
    return m;
  }
  merge(acc, o) {
    const m = new Map(acc instanceof Map ? acc : Object.entries(acc));
    for (const [v, n] of o instanceof Map ? o : Object.entries(o)) m.set(v, (m.get(v) ?? 0) + n);
    return m;
  }
  result(acc) { return acc instanceof Map ? [...acc] : Object.entries(acc); }
}

/** The same with a plain object: its keys are strings before JSON too. */
class ObjectHistogram extends AggregateFunction {
  create() { return {}; }
  add(acc, v) { return { ...acc, [v]: (acc[v] ?? 0) + 1 }; }
  merge(acc, o) {
    const out = { ...acc };
    for (const [v, n] of Object.entries(o)) out[v] = (out[v] ?? 0) + n;
    return out;
  }
}

/** A user aggregate JSON cannot hold: a BigInt. */
class BigSum extends AggregateFunction {
  create() { return 0n; }
  add(acc, v) { return acc + BigInt(v); }
  merge(acc, o) { return acc + o; }
  result(acc) { return Number(acc); }
}

/** The values (strings) one after the other. */
class Text extends AggregateFunction {
  create() { return ""; }
  add(acc, v) { return acc + v; }
  merge(acc, o) { return acc + o; }
}

const AGGREGATES = {
  count: Count, sum: Sum, min: Min, max: Max, avg: Average, distinct: Distinct,
  histogram: Histogram, objectHistogram: ObjectHistogram, bigSum: BigSum, text: Text,
};

/** Configured by `assigner`, `aggregate`, `lateness`, `cacheKeys` and
 *  `cacheBytes` (how many keys and bytes the window state cache holds); late
 *  records become key -> "late:TS". */
class WinOp {
  static key = "string";
  static value = "json";
  open(ctx) {
    this.windows = new Windows(ctx, "windows", assignerOf(ctx.config("assigner", "tumbling:1000")),
      new AGGREGATES[ctx.config("aggregate", "count")](), { allowedLateness: Number(ctx.config("lateness", "0")) });
    const keys = ctx.config("cacheKeys");
    if (keys !== undefined) this.windows._cache.keysMax = Number(keys);
    const bytes = ctx.config("cacheBytes");
    if (bytes !== undefined) this.windows._cache.bytesMax = Number(bytes);
  }
  process(ctx, record) {
    for (const out of this.windows.add(ctx, record.timestamp, record.value)) {
      if (out instanceof Late) ctx.emit(record.key, `late:${out.timestamp}`);
      else out.result.emit(ctx, record.key);
    }
  }
  onTimer(ctx, timer) {
    for (const result of this.windows.onTimer(ctx, timer)) result.emit(ctx, timer.key);
  }
}

/** `holdBack` false acts as a host that does not call `prepare-snapshot`,
 *  so window state is written back after every call (restart such a
 *  harness with `restart({ prepare: holdBack })`). */
const harness = (assigner, aggregate = "count", lateness = 0, { holdBack = true, cacheKeys, cacheBytes } = {}) => {
  const config = { assigner, aggregate, lateness, "weir.prepare_snapshot": holdBack ? "1" : "0" };
  if (cacheKeys !== undefined) config.cacheKeys = cacheKeys;
  if (cacheBytes !== undefined) config.cacheBytes = cacheBytes;
  return new Harness(WinOp, { config });
};

/** The window state the host holds: key -> stored JSON. */
const values = (h) => Object.fromEntries([...h.host.values].filter(([id]) => id.startsWith("0|"))
  .map(([id, v]) => [Buffer.from(id.slice(2), "hex").toString(), new TextDecoder().decode(v)]));

const results = (out) => out.map((e) => {
  const j = e.json();
  return [e.key, j.window_start, j.window_end, j.value, Number(e.timestamp)];
});

const timers = (h) => h.pendingTimers().map(([, ts]) => Number(ts)).sort((a, b) => a - b);

test("assigners", () => {
  assert.deepEqual(tumbling(1000).assign(-1), [new Window(-1000, 0)]);
  assert.deepEqual(sliding(1000, 250).assign(1100),
    [new Window(250, 1250), new Window(500, 1500), new Window(750, 1750), new Window(1000, 2000)]);
  assert.deepEqual(sliding(300, 200).assign(450), [new Window(200, 500), new Window(400, 700)]);
  assert.deepEqual(session(30).assign(7), [new Window(7, 37)]);
  for (const bad of [() => tumbling(0), () => sliding(10, 20), () => session(-1), () => tumbling("5")]) {
    assert.throws(bad, /window/);
  }
  assert.throws(() => harness("tumbling:10", "count", -1), /lateness/);
});

test("tumbling count fires once at end - 1", () => {
  const h = harness("tumbling:1000");
  for (const [k, ts] of [["a", 10], ["b", 500], ["a", 999], ["a", 1000]]) assert.deepEqual(h.process(k, 1, ts), []);
  assert.deepEqual(h.advanceWatermark(998), []);
  assert.deepEqual(results(h.advanceWatermark(999)), [["a", 0, 1000, 2, 999], ["b", 0, 1000, 1, 999]]);
  assert.deepEqual(results(h.advanceWatermark(5000)), [["a", 1000, 2000, 1, 1999]]);
  assert.deepEqual(h.pendingTimers(), []);
});

test("each aggregate", () => {
  const want = { count: 4, sum: 11, min: -3, max: 8, avg: 2.75, distinct: [-3, 1, 5, 8] };
  for (const [name, expected] of Object.entries(want)) {
    const h = harness("tumbling:100", name);
    [5, -3, 8, 1].forEach((v, i) => h.process("k", v, i * 30));
    assert.deepEqual(results(h.advanceWatermark(99))[0][3], expected, name);
  }
});

test("sessions merge and drop the absorbed timers", () => {
  const h = harness("session:100", "distinct");
  h.process("k", 1, 0);
  h.process("k", 2, 300);
  h.process("j", 3, 50);
  h.process("k", 4, 100);
  assert.deepEqual(timers(h), [149, 199, 399]);
  h.process("k", 5, 200);
  assert.equal(h.pendingTimers().length, 2);
  assert.deepEqual(results(h.advanceWatermark(1000)), [["j", 50, 150, [3], 149], ["k", 0, 400, [1, 2, 4, 5], 399]]);
});

test("allowed lateness re-fires, cleans up, then reports late", () => {
  const h = harness("tumbling:1000", "count", 500);
  h.process("k", 1, 100);
  assert.deepEqual(results(h.advanceWatermark(999)), [["k", 0, 1000, 1, 999]]);
  assert.deepEqual(results(h.process("k", 1, 400)), [["k", 0, 1000, 2, 999]]);
  h.advanceWatermark(1999);
  assert.deepEqual(results(h.process("k", 1, 1500)), [["k", 1000, 2000, 1, 1999]]);
  assert.deepEqual(h.process("k", 1, 10).map((e) => [e.key, e.value]), [["k", "late:10"]]);
  assert.equal(h.pendingTimers().length, 1);
  assert.deepEqual(h.advanceWatermark(3000), []);
  assert.deepEqual(h.pendingTimers(), []);
});

test("the state layout is the Python SDK's: one JSON value per key", () => {
  const h = harness("sliding:1000:500", "avg");
  h.process("k", 3, 700);
  h.prepareSnapshot();
  assert.deepEqual(values(h), { k: "[[0,1000,[3,1]],[500,1500,[3,1]]]" });
});

test("window state stays in the guest until the host prepares a snapshot", () => {
  for (const holdBack of [true, false]) {
    const h = harness("tumbling:1000", "count", 0, { holdBack });
    for (const [k, ts] of [["a", 10], ["b", 500], ["a", 999]]) h.process(k, 1, ts);
    // A host that snapshots only after `prepare-snapshot` holds nothing yet;
    // one that may snapshot between any two calls holds it all, written
    // once per call.
    assert.equal(Object.keys(values(h)).length, holdBack ? 0 : 2);
    assert.equal(h.host.called("value-write-many"), holdBack ? 0 : 3);
    h.prepareSnapshot();
    assert.deepEqual(values(h), { a: "[[0,1000,2]]", b: "[[0,1000,1]]" });
    assert.equal(h.host.called("value-set") + h.host.called("clear"), 0);
    // A restore from that snapshot fires the windows as if none happened.
    h.restart({ prepare: holdBack });
    assert.deepEqual(results(h.advanceWatermark(999)), [["a", 0, 1000, 2, 999], ["b", 0, 1000, 1, 999]]);
    // Fired: the next snapshot clears both keys.
    h.prepareSnapshot();
    assert.deepEqual(values(h), {});
    assert.deepEqual(h.host.writeBatches.at(-1), [0, [["a", null], ["b", null]]]);
  }
});

test("a call writes all its changed keys in one call", () => {
  const h = harness("tumbling:1000", "count", 0, { holdBack: false });
  h.processBatch([[1, "a", 1], [2, "b", 1], [3, "a", 1], [4, "c", 1]]);
  assert.equal(h.host.called("value-write-many"), 1);
  assert.deepEqual(h.host.writeBatches[0][1].map(([k]) => k), ["a", "b", "c"]);
  // Keys seen before are not read again.
  assert.equal(h.host.called("value-get"), 3);
  h.process("a", 1, 5);
  assert.equal(h.host.called("value-get"), 3);
  assert.deepEqual(h.host.writeBatches.at(-1), [0, [["a", "[[0,1000,3]]"]]]);
});

test("a window opened and fired between snapshots is written as a clear", () => {
  const h = harness("session:100");
  h.process("a", 1, 10);
  assert.deepEqual(results(h.advanceWatermark(200)), [["a", 10, 110, 1, 109]]);
  assert.equal(h.host.called("value-write-many"), 0);
  h.prepareSnapshot();
  assert.deepEqual(h.host.writeBatches, [[0, [["a", null]]]]);
  // Nothing changed since: nothing to write.
  h.prepareSnapshot();
  assert.equal(h.host.called("value-write-many"), 1);
});

test("a full cache writes back the least recently used keys", () => {
  const h = harness("tumbling:1000", "count", 0, { cacheKeys: 8 });
  for (let i = 0; i < 8; i++) h.process(`k${i}`, 1, 10);
  assert.equal(h.host.called("value-write-many"), 0);
  h.process("k0", 1, 20); // k1 is now the least recently used
  h.process("k8", 1, 30); // the ninth key evicts one eighth: k1
  assert.deepEqual(h.host.writeBatches, [[0, [["k1", "[[0,1000,1]]"]]]]);
  assert.equal(h.operator.windows._cache.entries.size, 8);
  // An evicted key is read back from the host.
  const reads = h.host.called("value-get");
  h.process("k1", 1, 40);
  assert.equal(h.host.called("value-get"), reads + 1);
  const out = results(h.advanceWatermark(999)).sort(cmp);
  assert.deepEqual(out, [...Array(9).keys()].map((i) => [`k${i}`, 0, 1000, i < 2 ? 2 : 1, 999]));
  h.prepareSnapshot();
  assert.deepEqual(values(h), {});
});

test("the timers of a call reach the host in one call", () => {
  const h = harness("sliding:1000:500", "count", 100);
  h.processBatch([[700, "a", 1], [800, "b", 1], [900, "a", 1]]);
  assert.equal(h.host.called("register-timer"), 0);
  assert.equal(h.host.called("register-timers"), 1);
  // Fire and clean-up timers of windows [0,1000) and [500,1500), per
  // registration, repeats included (the host keeps each once).
  const perRecord = (k) => [999, 1099, 1499, 1599].map((t) => ["event-time", t, k]);
  assert.deepEqual(h.host.timerBatches, [[...perRecord("a"), ...perRecord("b"), ...perRecord("a")]]);
  assert.equal(h.pendingTimers().length, 8);
});

const RECORDS = [["k", 1, 10], ["k", 2, 20], ["j", 1, 30], ["k", 1, 40], ["k", 1, 1500], ["k", 2, 1600]];

/** The results of RECORDS, restarting after every `restartEvery`th (0:
 *  never). */
function runRecords(restartEvery, { holdBack = true, spec = "tumbling:1000", aggregate = "histogram" } = {}) {
  const h = harness(spec, aggregate, 0, { holdBack });
  let out = [];
  RECORDS.forEach(([k, v, ts], i) => {
    out = out.concat(h.process(k, v, ts));
    if (restartEvery && i % restartEvery === 0) h.restart({ prepare: holdBack });
  });
  return results(out.concat(h.advanceWatermark(10000)));
}

test("a Map with number keys gives the same results with and without restarts", () => {
  for (const aggregate of ["histogram", "objectHistogram"]) {
    for (const spec of ["tumbling:1000", "session:100"]) {
      const want = runRecords(0, { spec, aggregate });
      for (const [every, holdBack] of [[1, true], [2, true], [1, false], [3, false]]) {
        assert.deepEqual(runRecords(every, { holdBack, spec, aggregate }), want, `${aggregate} ${spec} ${every} ${holdBack}`);
      }
    }
  }
  // The Map is {} from the first record on, as after a restore.
  assert.deepEqual(runRecords(0), [["j", 0, 1000, [], 999], ["k", 0, 1000, [], 999], ["k", 1000, 2000, [], 1999]]);
  assert.deepEqual(runRecords(0, { aggregate: "objectHistogram" }),
    [["j", 0, 1000, { 1: 1 }, 999], ["k", 0, 1000, { 1: 2, 2: 1 }, 999], ["k", 1000, 2000, { 1: 1, 2: 1 }, 1999]]);
});

test("an accumulator JSON cannot hold fails its record, not the snapshot", () => {
  const h = harness("tumbling:1000", "bigSum");
  assert.throws(() => h.process("k", 1, 10), (e) => e instanceof TypeError && e.message.startsWith(
    'window state "windows": the accumulator of BigSum cannot be stored as JSON (TypeError: '));
  h.prepareSnapshot();
  assert.deepEqual(values(h), {});
});

test("an accumulator holding NaN or ±Infinity fails its record, as in Python", () => {
  // JSON.stringify would make them null: Average of [Infinity, 1] would fire 0.5.
  for (const [aggregate, name] of [["sum", "Sum"], ["avg", "Average"]]) {
    const h = harness("tumbling:1000", aggregate);
    h.process("k", 1e308, 10);
    assert.throws(() => h.process("k", 1e308, 20), (e) => e instanceof TypeError && e.message.startsWith(
      `window state "windows": the accumulator of ${name} cannot be stored as JSON (RangeError: Infinity `));
    h.prepareSnapshot();
    assert.deepEqual(values(h), { k: aggregate === "sum" ? "[[0,1000,1e+308]]" : "[[0,1000,[1e+308,1]]]" });
  }
  const windows = harness("tumbling:1000").operator.windows;
  for (const acc of [NaN, -Infinity, [Infinity, "x"], { a: [1, NaN] }]) {
    assert.throws(() => windows._kept(acc), /cannot be stored as JSON \(RangeError: (NaN|-?Infinity) is not a JSON number\)/);
  }
});

test("numbers, strings and averages are kept as they are; the rest as JSON gives them back", () => {
  const windows = harness("tumbling:1000").operator.windows;
  for (const acc of [0, -7, 2.5, true, null, "text"]) assert.equal(windows._kept(acc)[0], acc);
  const average = [1.5, 2];
  const [kept] = windows._kept(average);
  assert.deepEqual(kept, average);
  assert.notEqual(kept, average);
  assert.ok(Object.is(windows._kept(-0)[0], 0));
  assert.deepEqual(windows._kept(undefined)[0], null);
  assert.deepEqual(windows._kept([1, undefined, new Set([1])])[0], [1, null, {}]);
  assert.deepEqual(windows._kept({ a: undefined, d: new Date(0) })[0], { d: "1970-01-01T00:00:00.000Z" });
});

test("the window state cache stays within its bytes", () => {
  const limit = 64 << 10;
  const h = harness("tumbling:1000", "text", 0, { cacheBytes: limit });
  const cache = h.operator.windows._cache;
  const held = () => [...cache.entries.values()].reduce((n, e) => n + e.size, 0);
  for (let i = 0; i < 40; i++) {
    h.process(`k${i}`, new Json("x".repeat(5000)), 10);
    assert.ok(cache.bytes <= limit, `${cache.bytes}`);
    assert.equal(cache.bytes, held());
  }
  // Far fewer than 65,536 keys: the bytes bound them.
  assert.ok(cache.entries.size <= 13, `${cache.entries.size}`);
  const written = new Set(h.host.writeBatches.flatMap(([, w]) => w.map(([k]) => k)));
  assert.ok(written.size >= 27, `${written.size}`);
  // One representation of the key per entry: the id string.
  assert.deepEqual(Object.keys(cache.entries.get("k39")), ["id", "value", "size"]);
  // An evicted key is read back; a written one counts at its exact size.
  const reads = h.host.called("value-get");
  h.process("k0", new Json("y"), 20);
  assert.equal(h.host.called("value-get"), reads + 1);
  h.prepareSnapshot();
  assert.equal(cache.entries.get("k0").size, 2 + `[[0,1000,"${"x".repeat(5000)}y"]]`.length);
  assert.equal(cache.bytes, held());
  const out = results(h.advanceWatermark(999));
  assert.deepEqual(out.map(([k]) => k).sort(), [...Array(40).keys()].map((i) => `k${i}`).sort());
  assert.equal(out.find(([k]) => k === "k0")[3], `${"x".repeat(5000)}y`);
  h.prepareSnapshot();
  assert.deepEqual(values(h), {});
});

test("a key bigger than the bound is kept while it is at hand", () => {
  const h = harness("tumbling:1000", "text", 0, { cacheBytes: 1000 });
  const cache = h.operator.windows._cache;
  h.process("small", new Json("s"), 10);
  h.process("big", new Json("b".repeat(2000)), 10);
  assert.deepEqual([...cache.entries.keys()], ["big"]);
  h.process("big", new Json("b"), 20);
  assert.equal(h.host.called("value-get"), 2);
  assert.deepEqual(results(h.advanceWatermark(999)).sort(cmp),
    [["big", 0, 1000, "b".repeat(2001), 999], ["small", 0, 1000, "s", 999]]);
});

test("a big flush goes over in calls of at most 4 MiB", () => {
  const h = harness("tumbling:1000", "text");
  const keys = [...Array(40).keys()].map((i) => `k${i}`);
  const big = (k) => k.at(-1).repeat(300000);
  for (const k of keys) h.process(k, new Json(big(k)), 10);
  assert.equal(h.host.called("value-write-many"), 0);
  h.prepareSnapshot();
  const batches = h.host.writeBatches.map(([, w]) => w);
  // 13 keys of 300,017 bytes and their lengths fit in 4 MiB.
  assert.deepEqual(batches.map((w) => w.length), [13, 13, 13, 1]);
  const enc = new TextEncoder();
  for (const w of batches) {
    assert.ok(writeValueWrites(w.map(([k, v]) => [enc.encode(k), enc.encode(v)])).length <= 4 << 20);
  }
  assert.deepEqual(batches.flat().map(([k]) => k), keys);
  assert.deepEqual(values(h), Object.fromEntries(keys.map((k) => [k, `[[0,1000,"${big(k)}"]]`])));
  // Through a restore, every window is there.
  h.restart();
  const out = results(h.advanceWatermark(999));
  assert.deepEqual(out.map(([k, , , v]) => [k, v]), keys.map((k) => [k, big(k)]).sort(cmp));
});

test("an eviction write-back is split too", () => {
  const h = harness("tumbling:1000", "text", 0, { cacheKeys: 16 });
  const cache = h.operator.windows._cache;
  cache.writeBytesMax = 10000;
  const key = (i) => `k${String(i).padStart(2, "0")}`;
  for (let i = 0; i < 16; i++) h.process(key(i), new Json("v".repeat(3000)), 10);
  // Two eighths of 16 keys go: 2 keys a call.
  h.process("k16", new Json("v"), 10);
  assert.deepEqual(h.host.writeBatches.map(([, w]) => w.map(([k]) => k)), [["k00", "k01"]]);
  cache.keysMax = 8;
  h.process("k17", new Json("v"), 10);
  assert.deepEqual(h.host.writeBatches.slice(1).map(([, w]) => w.map(([k]) => k)),
    [["k02", "k03", "k04"], ["k05", "k06", "k07"], ["k08", "k09"]]);
});

test("under an older host, state written every call survives a snapshot taken without preparing", () => {
  const h = harness("tumbling:1000", "count", 0, { holdBack: false });
  h.process("a", 1, 10);
  h.process("a", 1, 20);
  h.restart({ prepare: false });
  h.process("a", 1, 30);
  h.restart({ prepare: false });
  assert.deepEqual(results(h.advanceWatermark(999)), [["a", 0, 1000, 3, 999]]);
  // What hold-back would lose under such a host: why the SDK holds nothing
  // back unless the host says it calls `prepare-snapshot`.
  const held = harness("tumbling:1000");
  held.process("a", 1, 10);
  held.restart({ prepare: false });
  assert.equal(held.host.called("value-write-many"), 0);
  assert.deepEqual(results(held.advanceWatermark(999)), []);
});

function bruteForce(spec, records) {
  const [kind, ...n] = spec.split(":").map((x, i) => (i ? Number(x) : x));
  const sums = new Map();
  const add = (k, s, e, v) => { const id = JSON.stringify([k, s, e]); sums.set(id, (sums.get(id) ?? 0) + v); };
  if (kind === "session") {
    const gap = n[0];
    const out = [];
    for (const key of new Set(records.map(([k]) => k))) {
      const recs = records.filter(([k]) => k === key).map(([, ts, v]) => [ts, v]).sort((a, b) => a[0] - b[0]);
      let start = recs[0][0], last = start, sum = 0;
      for (const [ts, v] of recs) {
        if (ts > last + gap) { out.push([key, start, last + gap, sum, last + gap - 1]); start = ts; sum = 0; }
        last = ts;
        sum += v;
      }
      out.push([key, start, last + gap, sum, last + gap - 1]);
    }
    return out.sort(cmp);
  }
  const [size, slide] = kind === "tumbling" ? [n[0], n[0]] : n;
  for (const [k, ts, v] of records) {
    for (let s = ts - (ts % slide); s > ts - size; s -= slide) add(k, s, s + size, v);
  }
  return [...sums].map(([id, v]) => { const [k, s, e] = JSON.parse(id); return [k, s, e, v, e - 1]; }).sort(cmp);
}

const cmp = (a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]);

/** Feeds a shuffled input; `batched` sends it in batches of 1-64 records to
 *  a cache of 16 keys, restarting every 7th batch: what the cache held must
 *  have reached the state by then. */
function check(spec, { delay = 300, keys = 5, batched = false, holdBack = true } = {}) {
  let seed = 7;
  const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  const h = harness(spec, "sum", 0, { holdBack, cacheKeys: batched ? 16 : undefined });
  const records = [];
  let out = [], maxTs = 0, batch = [], size = 1, batches = 0;
  for (let i = 0; i < 1500; i++) {
    const ts = Math.max(0, i * 7 - rand(delay));
    const key = `k${rand(keys)}`, v = rand(100);
    batch.push([ts, key, v]);
    records.push([key, ts, v]);
    maxTs = Math.max(maxTs, ts);
    if (batch.length >= size) {
      out = out.concat(h.processBatch(batch));
      batch = [];
      batches++;
      if (batched) {
        size = 1 + rand(64);
        if (batches % 7 === 0) h.restart({ prepare: holdBack });
      }
    }
    if (i % 50 === 0 && batch.length === 0) out = out.concat(h.advanceWatermark(maxTs - delay));
  }
  out = out.concat(h.processBatch(batch));
  out = out.concat(h.advanceWatermark(2 ** 52));
  assert.deepEqual(results(out).sort(cmp), bruteForce(spec, records), spec);
  assert.deepEqual(h.pendingTimers(), []);
  h.prepareSnapshot();
  assert.deepEqual(values(h), {});
}

test("tumbling windows match brute force", () => check("tumbling:500"));
test("sliding windows match brute force", () => { check("sliding:600:200"); check("sliding:500:300", { delay: 100 }); });
test("session windows match brute force", () => check("session:40"));
test("batches with evictions and restarts match brute force", () => {
  for (const holdBack of [true, false]) {
    for (const [spec, keys] of [["tumbling:500", 5], ["tumbling:500", 60], ["sliding:600:200", 60],
      ["session:40", 60], ["session:40", 5]]) {
      check(spec, { keys, batched: true, holdBack });
    }
  }
});
