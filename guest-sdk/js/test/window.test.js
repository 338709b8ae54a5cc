// Unit tests of window.js through the native harness: every assigner and
// aggregate, allowed lateness, late records, session merges, state held in
// the instance until a snapshot, and windows compared with a brute-force
// computation over a shuffled input (in batches, with restarts and a cache
// small enough to evict).
// Run: node --test guest-sdk/js/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { Harness } from "../testing.js";
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

const AGGREGATES = { count: Count, sum: Sum, min: Min, max: Max, avg: Average, distinct: Distinct };

/** Configured by `assigner`, `aggregate`, `lateness` and `cacheKeys` (how
 *  many keys the window state cache holds); late records become
 *  key -> "late:TS". */
class WinOp {
  static key = "string";
  static value = "json";
  open(ctx) {
    this.windows = new Windows(ctx, "windows", assignerOf(ctx.config("assigner", "tumbling:1000")),
      new AGGREGATES[ctx.config("aggregate", "count")](), { allowedLateness: Number(ctx.config("lateness", "0")) });
    const keys = ctx.config("cacheKeys");
    if (keys !== undefined) this.windows._cache.keysMax = Number(keys);
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
 *  so window state is written back after every call. */
const harness = (assigner, aggregate = "count", lateness = 0, { holdBack = true, cacheKeys } = {}) => {
  const config = { assigner, aggregate, lateness, "weir.prepare_snapshot": holdBack ? "1" : "0" };
  if (cacheKeys !== undefined) config.cacheKeys = cacheKeys;
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
    h.restart();
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
        if (batches % 7 === 0) h.restart();
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
