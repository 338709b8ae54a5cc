// The batch, timer-batch, map-entries and value-writes byte formats of
// wit/operator.wit.

export const NO_TIMESTAMP = -(2n ** 63n);

export class MalformedBatch extends Error {
  constructor(message) { super(message); this.name = "MalformedBatch"; }
}

class Reader {
  constructor(bytes, what) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
    this.what = what;
  }
  need(n) { if (this.at + n > this.bytes.length) throw new MalformedBatch(`malformed ${this.what}: truncated`); }
  u8() { this.need(1); return this.view.getUint8(this.at++); }
  u32() { this.need(4); const v = this.view.getUint32(this.at, true); this.at += 4; return v; }
  i64() { this.need(8); const v = this.view.getBigInt64(this.at, true); this.at += 8; return v; }
  bytesField() { const n = this.u32(); this.need(n); const b = this.bytes.subarray(this.at, this.at + n); this.at += n; return b; }
}

const TWO_32 = 4294967296;

/** Reads a batch record by record without allocating per record beyond
 *  the key and value views: `while (r.next()) use(r.timestamp, r.key, r.value)`.
 *  Timestamps are Numbers (exact to 2^53 ms), null for "no event time". */
export class BatchReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.length < 4) throw new MalformedBatch("malformed batch: truncated");
    this.remaining = this.view.getUint32(0, true);
    this.at = 4;
    this.timestamp = null;
    this.key = null;
    this.value = null;
  }
  next() {
    if (this.remaining === 0) return false;
    this.remaining--;
    const view = this.view, len = this.bytes.length;
    let at = this.at;
    if (at + 12 > len) throw new MalformedBatch("malformed batch: truncated");
    const lo = view.getUint32(at, true), hi = view.getInt32(at + 4, true);
    this.timestamp = hi === -2147483648 && lo === 0 ? null : hi * TWO_32 + lo;
    const klen = view.getUint32(at + 8, true);
    at += 12;
    if (at + klen + 4 > len) throw new MalformedBatch("malformed batch: truncated");
    this.key = this.bytes.subarray(at, at + klen);
    at += klen;
    const vlen = view.getUint32(at, true);
    at += 4;
    if (at + vlen > len) throw new MalformedBatch("malformed batch: truncated");
    this.value = this.bytes.subarray(at, at + vlen);
    this.at = at + vlen;
    return true;
  }
}

/** [timestamp (Number) or null, key bytes, value bytes] per record. */
export function* readBatch(bytes) {
  const r = new Reader(bytes, "batch");
  const count = r.u32();
  for (let i = 0; i < count; i++) {
    const ts = r.i64();
    const key = r.bytesField();
    const value = r.bytesField();
    yield [ts === NO_TIMESTAMP ? null : Number(ts), key, value];
  }
}

/** [timestamp, "event-time" | "processing-time", key bytes] per timer. */
export function* readTimers(bytes) {
  const r = new Reader(bytes, "timer batch");
  const count = r.u32();
  for (let i = 0; i < count; i++) {
    const ts = Number(r.i64());
    const domain = r.u8();
    if (domain > 1) throw new MalformedBatch(`malformed timer batch: unknown time domain ${domain}`);
    const key = r.bytesField();
    yield [ts, domain === 0 ? "event-time" : "processing-time", key];
  }
}

/** The map entries format, as [map key bytes, value bytes] pairs. */
export function readEntries(bytes) {
  const r = new Reader(bytes, "map entries");
  const count = r.u32();
  const out = [];
  for (let i = 0; i < count; i++) out.push([r.bytesField(), r.bytesField()]);
  return out;
}

/** Builds a batch (records) in one growing buffer. */
export class Writer {
  constructor(capacity = 256) {
    this.buf = new Uint8Array(Math.max(16, capacity));
    this.view = new DataView(this.buf.buffer);
    this.at = 4;
    this.count = 0;
  }
  reserve(n) {
    if (this.at + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.at + n));
    bigger.set(this.buf.subarray(0, this.at));
    this.buf = bigger;
    this.view = new DataView(bigger.buffer);
  }
  record(timestamp, key, value) {
    if (this.at + 16 + key.length + value.length > this.buf.length) this.reserve(16 + key.length + value.length);
    if (timestamp === null || timestamp === undefined) {
      this.view.setUint32(this.at, 0, true);
      this.view.setInt32(this.at + 4, -2147483648, true);
    } else {
      if (!Number.isSafeInteger(timestamp)) throw new TypeError(`timestamp ${timestamp} is not an integer number of ms`);
      const hi = Math.floor(timestamp / TWO_32);
      this.view.setUint32(this.at, timestamp - hi * TWO_32, true);
      this.view.setInt32(this.at + 4, hi, true);
    }
    this.view.setUint32(this.at + 8, key.length, true);
    this.buf.set(key, this.at + 12);
    this.at += 12 + key.length;
    this.view.setUint32(this.at, value.length, true);
    this.buf.set(value, this.at + 4);
    this.at += 4 + value.length;
    this.count++;
  }
  finish() {
    this.view.setUint32(0, this.count, true);
    return this.buf.slice(0, this.at);
  }
}

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** A timer batch (the `on-timers` format) built one timer at a time, for
 *  `register-timers`; `at` is its size in bytes. Timestamps are integers:
 *  Numbers or BigInts, as `register-timer` took them. */
export class TimerBatch extends Writer {
  reset() { this.at = 4; this.count = 0; }
  push(domain, key, timestamp) {
    this.reserve(13 + key.length);
    if (Number.isSafeInteger(timestamp)) {
      // A Number written as an s64 without a BigInt per timer.
      const hi = Math.floor(timestamp / TWO_32);
      this.view.setUint32(this.at, timestamp - hi * TWO_32, true);
      this.view.setInt32(this.at + 4, hi, true);
    } else {
      const big = typeof timestamp === "bigint" ? timestamp : Number.isInteger(timestamp) ? BigInt(timestamp) : null;
      if (big === null) throw new TypeError(`timer timestamp ${timestamp} is not an integer number of ms`);
      if (big < I64_MIN || big > I64_MAX) throw new RangeError(`timer timestamp ${timestamp} is out of the s64 range`);
      this.view.setBigInt64(this.at, big, true);
    }
    this.view.setUint8(this.at + 8, domain === "processing-time" ? 1 : 0);
    this.view.setUint32(this.at + 9, key.length, true);
    this.buf.set(key, this.at + 13);
    this.at += 13 + key.length;
    this.count++;
  }
}

/** `value-len` that clears the key in the value writes format. */
const CLEAR = 0xffffffff;

/** Encodes [key bytes, value bytes or null to clear] pairs for
 *  `value-write-many`. */
export function writeValueWrites(writes) {
  let size = 4;
  for (const [k, v] of writes) size += 8 + k.length + (v === null ? 0 : v.length);
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  view.setUint32(0, writes.length, true);
  let at = 4;
  for (const [k, v] of writes) {
    view.setUint32(at, k.length, true);
    buf.set(k, at + 4);
    at += 4 + k.length;
    view.setUint32(at, v === null ? CLEAR : v.length, true);
    at += 4;
    if (v !== null) {
      buf.set(v, at);
      at += v.length;
    }
  }
  return buf;
}

/** The value writes format, as [key bytes, value bytes or null] pairs. */
export function readValueWrites(bytes) {
  const r = new Reader(bytes, "value writes");
  const count = r.u32();
  const out = [];
  for (let i = 0; i < count; i++) {
    const key = r.bytesField();
    const n = r.u32();
    if (n === CLEAR) {
      out.push([key, null]);
      continue;
    }
    r.need(n);
    out.push([key, bytes.subarray(r.at, r.at + n)]);
    r.at += n;
  }
  return out;
}

/** Encodes [timestamp or null, key bytes, value bytes] records (for tests). */
export function writeBatch(records) {
  const w = new Writer();
  for (const [ts, k, v] of records) w.record(ts, k, v);
  return w.finish();
}

/** Encodes [timestamp, "event-time" | "processing-time", key bytes] timers. */
export function writeTimers(timers) {
  let size = 4;
  for (const [, , k] of timers) size += 13 + k.length;
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  view.setUint32(0, timers.length, true);
  let at = 4;
  for (const [ts, domain, key] of timers) {
    view.setBigInt64(at, BigInt(ts), true);
    view.setUint8(at + 8, domain === "processing-time" ? 1 : 0);
    view.setUint32(at + 9, key.length, true);
    buf.set(key, at + 13);
    at += 13 + key.length;
  }
  return buf;
}
