// Unit tests of window.js through the native harness: every assigner and
// aggregate, allowed lateness, late records, session merges, and windows
// compared with a brute-force computation over a shuffled input.
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

class WinOp {
  static key = "string";
  static value = "json";
  open(ctx) {
    this.windows = new Windows(ctx, "windows", assignerOf(ctx.config("assigner", "tumbling:1000")),
      new AGGREGATES[ctx.config("aggregate", "count")](), { allowedLateness: Number(ctx.config("lateness", "0")) });
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

const harness = (assigner, aggregate = "count", lateness = 0) =>
  new Harness(WinOp, { config: { assigner, aggregate, lateness } });

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

test("the state layout is the Python SDK's: one map entry per window, JSON", () => {
  const h = harness("tumbling:1000", "avg");
  h.process("k", 3, 5);
  const entries = [...h.host.maps.values()][0];
  const dec = new TextDecoder();
  assert.deepEqual([...entries.values()].map(([k, v]) => [dec.decode(k), dec.decode(v)]), [["1000", "[0,[3,1]]"]]);
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

function check(spec, delay = 300) {
  let seed = 7;
  const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  const h = harness(spec, "sum");
  const records = [];
  let out = [], maxTs = 0;
  for (let i = 0; i < 1500; i++) {
    const ts = Math.max(0, i * 7 - rand(delay));
    const key = `k${rand(5)}`, v = rand(100);
    out = out.concat(h.process(key, v, ts));
    records.push([key, ts, v]);
    maxTs = Math.max(maxTs, ts);
    if (i % 50 === 0) out = out.concat(h.advanceWatermark(maxTs - delay));
  }
  out = out.concat(h.advanceWatermark(2 ** 52));
  assert.deepEqual(results(out).sort(cmp), bruteForce(spec, records), spec);
  assert.deepEqual(h.pendingTimers(), []);
}

test("tumbling windows match brute force", () => check("tumbling:500"));
test("sliding windows match brute force", () => { check("sliding:600:200"); check("sliding:500:300", 100); });
test("session windows match brute force", () => check("session:40"));
