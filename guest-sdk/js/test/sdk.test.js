// Unit tests of the JavaScript guest SDK: encodings shared with the Rust
// SDK, the batch format, and the runtime driven through the test harness.
// Run: node --test guest-sdk/js/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { codec, encodeAny, Json, describe, DecodeError, exportOperator, setHostFactory, snapshots, TIMER_BATCH_BYTES_MAX } from "../weir.js";
import { formatFloat } from "../codec.js";
import { readBatch, writeBatch, MalformedBatch, TimerBatch, writeTimers, writeValueWrites, readValueWrites } from "../wire.js";
import { Harness, MemoryHost } from "../testing.js";
import { Windows, tumbling, Count as WindowCount } from "../window.js";

const text = (b) => new TextDecoder().decode(b);

test("numbers are decimal text as Rust prints them", () => {
  for (const [x, t] of [[1, "1"], [1.5, "1.5"], [-0.25, "-0.25"], [1e21, "1000000000000000000000"],
    [1e-7, "0.0000001"], [0.1 + 0.2, "0.30000000000000004"], [123456789012, "123456789012"],
    [Infinity, "inf"], [NaN, "NaN"]]) {
    assert.equal(formatFloat(x), t);
  }
  assert.equal(text(codec("int").encode(-42)), "-42");
  assert.equal(text(codec("int").encode(2n ** 64n - 1n)), "18446744073709551615");
  assert.equal(codec("int").decode(new TextEncoder().encode(" 12 ")), 12);
  assert.equal(codec("int").decode(new TextEncoder().encode("18446744073709551615")), 18446744073709551615n);
  assert.throws(() => codec("int").decode(new TextEncoder().encode("1.5")), /"1.5" is not an int/);
  assert.throws(() => codec("string").decode(Uint8Array.of(0xff)), /not UTF-8/);
});

test("emitted values are encoded by type", () => {
  assert.equal(text(encodeAny({ a: 1, b: "é" })), '{"a":1,"b":"é"}');
  assert.equal(text(encodeAny(new Json("x"))), '"x"');
  assert.equal(text(encodeAny(true)), "true");
  assert.equal(encodeAny(null).length, 0);
});

test("batches round-trip and truncation is reported", () => {
  const enc = new TextEncoder();
  const records = [[null, enc.encode("k"), enc.encode("v")], [-5, new Uint8Array(0), Uint8Array.of(0, 0, 0)]];
  const bytes = writeBatch(records);
  assert.deepEqual([...readBatch(bytes)], records);
  assert.throws(() => [...readBatch(bytes.subarray(0, bytes.length - 1))], MalformedBatch);
});

test("value writes round-trip with clears", () => {
  const enc = new TextEncoder();
  const writes = [[enc.encode("a"), enc.encode("1")], [new Uint8Array(0), null], [enc.encode("c"), new Uint8Array(0)]];
  const bytes = writeValueWrites(writes);
  assert.deepEqual([...bytes.subarray(14, 22)], [0, 0, 0, 0, 255, 255, 255, 255]);
  assert.deepEqual(readValueWrites(bytes), writes);
});

const hexOf = (bytes) => Buffer.from(bytes).toString("hex");

test("a timer batch is the on-timers format", () => {
  // As the host reads it (host/wasm/src/host/lists.rs, ListReader::timer):
  // count u32, then per timer timestamp i64, domain u8 (0 event time,
  // 1 processing time), key length u32 and the key, little-endian.
  const want = "05000000"
    + "0500000000000000" + "00" + "01000000" + "6b"
    + "fffffffffffeffff" + "01" + "00000000"
    + "0000000000000080" + "00" + "02000000" + "6162"
    + "0000000000000040" + "01" + "00000000"
    + "0000000000002000" + "00" + "00000000";
  const enc = new TextEncoder();
  const timers = [[5, "event-time", enc.encode("k")], [-(2 ** 40) - 1, "processing-time", new Uint8Array(0)],
    [-(2n ** 63n), "event-time", enc.encode("ab")], [2n ** 62n, "processing-time", new Uint8Array(0)],
    [2 ** 53, "event-time", new Uint8Array(0)]];
  const batch = new TimerBatch();
  batch.reset();
  for (const [ts, domain, key] of timers) batch.push(domain, key, ts);
  assert.equal(hexOf(batch.finish()), want);
  assert.equal(batch.at, want.length / 2);
  // The harness hands fired timers over in the same format.
  assert.equal(hexOf(writeTimers(timers)), want);
  assert.throws(() => batch.push("event-time", new Uint8Array(0), 2n ** 63n), RangeError);
  assert.throws(() => batch.push("event-time", new Uint8Array(0), 1.5), TypeError);
});

test("timers registered with BigInt timestamps reach the host", () => {
  class BigTimers {
    process(ctx, record) {
      ctx.registerEventTimer(BigInt(record.value));
      ctx.registerProcessingTimer(2n ** 62n);
    }
  }
  const h = new Harness(BigTimers);
  h.process("k", "7");
  assert.deepEqual(h.host.timerBatches, [[["event-time", 7, "k"], ["processing-time", 2 ** 62, "k"]]]);
});

class Count {
  static key = "string";
  static value = "string";
  open(ctx) {
    this.seen = ctx.valueState("seen", "int");
    this.items = ctx.listState("items");
    this.byLen = ctx.mapState("by-len", "int", "int");
  }
  process(ctx, record) {
    const n = (this.seen.get(ctx) ?? 0) + 1;
    this.seen.set(ctx, n);
    this.items.add(ctx, record.value);
    this.byLen.put(ctx, record.value.length, (this.byLen.get(ctx, record.value.length) ?? 0) + 1);
    ctx.registerEventTimer(100);
    ctx.emit(record.key, n);
  }
  onTimer(ctx, timer) {
    ctx.emit(timer.key, { items: this.items.get(ctx), byLen: this.byLen.entries(ctx) });
    this.items.clear(ctx);
  }
}

test("state is scoped to the key and timers fire on the watermark", () => {
  const h = new Harness(Count);
  assert.deepEqual(h.process("a", "x").map((e) => e.value), ["1"]);
  assert.deepEqual(h.process("b", "yy").map((e) => e.value), ["1"]);
  assert.deepEqual(h.process("a", "zz", 7).map((e) => [e.value, e.timestamp]), [["2", 7]]);
  const out = h.advanceWatermark(100).map((e) => [e.key, e.value, e.timestamp]).sort();
  assert.deepEqual(out, [
    ["a", '{"items":["x","zz"],"byLen":[[1,1],[2,1]]}', 100],
    ["b", '{"items":["yy"],"byLen":[[2,1]]}', 100],
  ]);
  assert.deepEqual(h.pendingTimers(), []);
});

test("a bad record names its index; exceptions are described", () => {
  class Ints { static value = "int"; process() {} }
  assert.throws(() => new Harness(Ints).processBatch([[null, "k", 1], [null, "k", "nope"]]),
    (e) => e instanceof DecodeError && e.message === 'record 1: value: "nope" is not an int');
  class Boom { process() { throw new TypeError("broken"); } }
  let err;
  try { new Harness(Boom).process("k", "v"); } catch (e) { err = e; }
  assert.match(describe(err), /^TypeError: broken \(at .*sdk\.test\.js/);
  assert.equal(describe("plain"), "uncaught exception: plain");
});

test("byte arrays from another realm are bytes, not JSON", async () => {
  const { runInNewContext } = await import("node:vm");
  const foreign = runInNewContext("new Uint8Array([107, 101, 121])");
  assert.equal(foreign instanceof Uint8Array, false);
  assert.equal(text(encodeAny(foreign)), "key");
  assert.equal(text(codec("bytes").encode(foreign)), "key");
  assert.equal(text(encodeAny(foreign.subarray(1))), "ey");
});

test("the batch reader and writer agree on timestamps of any sign", async () => {
  const { BatchReader } = await import("../wire.js");
  const enc = new TextEncoder();
  const stamps = [null, 0, -5, 2 ** 40 + 3, -(2 ** 45) - 7, Number.MAX_SAFE_INTEGER];
  const bytes = writeBatch(stamps.map((ts) => [ts, enc.encode("k"), enc.encode("v")]));
  const r = new BatchReader(bytes);
  const seen = [];
  while (r.next()) seen.push(r.timestamp);
  assert.deepEqual(seen, stamps);
  assert.deepEqual([...readBatch(bytes)].map(([ts]) => ts), stamps);
});

/** "set T" registers an event timer at T, "both T" registers T and T+1 and
 *  deletes T, "drop T" deletes T, "proc T" registers a processing-time
 *  timer, "fail T" registers T and throws: all within one call each. */
class Timers {
  process(ctx, record) {
    const [what, at] = record.value.split(" ");
    const t = Number(at);
    if (what === "set") ctx.registerEventTimer(t);
    else if (what === "both") {
      ctx.registerEventTimer(t);
      ctx.registerEventTimer(t + 1);
      ctx.deleteEventTimer(t);
    } else if (what === "proc") ctx.registerProcessingTimer(t);
    else if (what === "fail") {
      ctx.registerEventTimer(t);
      throw new Error("failed after registering");
    } else ctx.deleteEventTimer(t);
  }
}

const pending = (h) => h.pendingTimers().map(([, ts]) => ts).sort((a, b) => a - b);

test("a call's timers reach the host in one call", () => {
  const h = new Harness(Timers);
  h.processBatch([[null, "a", "set 5"], [null, "b", "proc 9"], [null, "a", "set 7"]]);
  assert.equal(h.host.called("register-timer"), 0);
  assert.deepEqual(h.host.timerBatches, [[["event-time", 5, "a"], ["processing-time", 9, "b"], ["event-time", 7, "a"]]]);
  // A call that registers nothing calls nothing.
  h.process("a", "drop 1");
  assert.equal(h.host.called("register-timers"), 1);
});

test("held-back timers reach the host in order with deletions", () => {
  const h = new Harness(Timers);
  h.process("k", "set 5");
  h.process("k", "both 7");
  assert.deepEqual(pending(h), [5, 8]);
  // The deletion handed over what was held back first.
  assert.deepEqual(h.host.timerBatches, [[["event-time", 5, "k"]], [["event-time", 7, "k"], ["event-time", 8, "k"]]]);
  h.process("k", "drop 5");
  assert.deepEqual(pending(h), [8]);
});

test("a failed call hands no timers over", () => {
  const h = new Harness(Timers);
  assert.throws(() => h.process("k", "fail 3"), /failed after registering/);
  h.process("k", "set 4");
  assert.deepEqual(h.host.timerBatches, [[["event-time", 4, "k"]]]);
});

test("a big batch of timers goes over in bounded parts", () => {
  const h = new Harness(Timers);
  const key = "k".repeat(1000);
  h.processBatch([...Array(200).keys()].map((t) => [null, key, `set ${t}`]));
  assert.equal(h.host.timerBatches.length, 4);
  const enc = new TextEncoder();
  for (const b of h.host.timerBatches) {
    const size = writeTimers(b.map(([d, ts, k]) => [ts, d, enc.encode(k)])).length;
    assert.ok(size <= TIMER_BATCH_BYTES_MAX + 1013, `${size}`);
  }
  assert.deepEqual(pending(h), [...Array(200).keys()]);
});

test("the component exports: hooks, and snapshots for the operator the host opened", () => {
  class CountPerWindow {
    static key = "string";
    static value = "unit";
    open(ctx) { this.windows = new Windows(ctx, "counts", tumbling(1000), new WindowCount()); }
    process(ctx, record) { this.windows.add(ctx, record.timestamp, null); }
  }
  const host = new MemoryHost();
  setHostFactory(() => host);
  // Nothing opened yet (in this process): nothing held back, nothing to do.
  assert.equal(snapshots.prepareSnapshot(), undefined);
  const hooks = exportOperator(CountPerWindow);
  // An export made later that the host never opens does not take over.
  const unopened = exportOperator(CountPerWindow);
  assert.throws(() => unopened.process(0, writeBatch([])), (e) => /before `open`/.test(e));
  const states = hooks.open({ name: "w", subtaskIndex: 0, parallelism: 1, config: [["weir.prepare_snapshot", "1"]] });
  assert.deepEqual(states, [{ name: "counts", kind: "value", ttlMs: undefined }]);
  hooks.process(0, writeBatch([[10, new TextEncoder().encode("a"), new Uint8Array(0)]]));
  assert.equal(host.called("value-write-many"), 0);
  assert.equal(host.called("register-timers"), 1);
  assert.equal(snapshots.prepareSnapshot(), undefined);
  assert.deepEqual(host.writeBatches, [[0, [["a", "[[0,1000,1]]"]]]]);
  // Nothing changed since: nothing to write.
  assert.equal(snapshots.prepareSnapshot(), undefined);
  assert.equal(host.called("value-write-many"), 1);
});
