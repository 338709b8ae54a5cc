// A value state kept per key in guest memory and written back to the host
// later, as the Rust SDK's write-back `StateCache` does: the window library
// keeps each key's windows in one.
//
// A change only marks the key; changed keys go to the host in
// `value-write-many` calls when the runtime flushes the cache (in
// `prepare-snapshot`, or at the end of every call under a host that does not
// say it calls that) or when the cache outgrows its bounds. A hot key then
// costs one state write per checkpoint instead of one per record, and a
// window opened and fired between two checkpoints none. The cache lives in
// the instance, which the host creates afresh for every restore, rescale and
// upgrade, so it never outlives the state it mirrors; nothing else may read
// or write that state around it.
import { writeValueWrites } from "./wire.js";

/** Keys held at most: a huge or hostile key space costs host reads and
 *  writes, not guest memory beyond what the state takes anyway. */
export const KEYS_MAX = 1 << 16;

/** Bytes held at most, counted as key length plus encoded value length
 *  (exact for a value read from the host or written to it, the caller's
 *  estimate for a changed one). Decoded objects take a few times their
 *  encoding, and the guest's memory limit (256 MiB unless the job says
 *  otherwise) covers the engine and the batches too. */
export const BYTES_MAX = 16 << 20;

/** Bytes one `value-write-many` carries at most (a single larger key and
 *  value goes alone): the host caps what one call may move, and a flush of
 *  every changed key must not meet that cap. */
export const WRITE_BYTES_MAX = 4 << 20;

const CHUNK = 4096;

/** The key's bytes as a string of char codes 0-255: a Map key that compares
 *  by content (in chunks: `apply` takes one argument per byte), and the only
 *  copy of the key the cache keeps (the engine stores such a string a byte
 *  per char). */
function keyId(bytes) {
  if (bytes.length <= CHUNK) return String.fromCharCode.apply(null, bytes);
  let id = "";
  for (let at = 0; at < bytes.length; at += CHUNK) id += String.fromCharCode.apply(null, bytes.subarray(at, at + CHUNK));
  return id;
}

/** The bytes of a key id, for a write. */
function keyBytes(id) {
  const bytes = new Uint8Array(id.length);
  for (let i = 0; i < id.length; i++) bytes[i] = id.charCodeAt(i);
  return bytes;
}

/** The value state `state` per key; registered with `ctx` (an OpenContext)
 *  for the runtime to flush. */
export class WriteBackCache {
  constructor(ctx, state, keysMax = KEYS_MAX, bytesMax = BYTES_MAX) {
    this.state = state;
    this.keysMax = keysMax;
    this.bytesMax = bytesMax;
    this.writeBytesMax = WRITE_BYTES_MAX;
    // Key id -> { id, value, size } (value null: no state; size: what the
    // key and its value take, see BYTES_MAX), least recently used first.
    this.entries = new Map();
    this.bytes = 0;
    // Entries changed since the host last got them, in change order.
    this.dirty = new Set();
    ctx._flushers.push(this);
  }

  /** The current key's entry; `value` is its value (null: no state). A miss
   *  reads the host. Change it only through `change`. */
  entry(ctx) {
    const id = keyId(ctx.keyBytes);
    let entry = this.entries.get(id);
    if (entry !== undefined) {
      this.entries.delete(id);
      this.entries.set(id, entry);
      return entry;
    }
    const host = ctx._host;
    if (this.entries.size >= this.keysMax) this.evictKeys(host);
    const data = host.valueGet(this.state.index, ctx.keyBytes);
    entry = data == null
      ? { id, value: null, size: id.length }
      : { id, value: this.state.codec.decode(data), size: id.length + data.length };
    this.entries.set(id, entry);
    this.bytes += entry.size;
    if (this.bytes > this.bytesMax) this.evictBytes(host, entry);
    return entry;
  }

  /** Sets an entry's value (null clears the state), which takes about
   *  `size` bytes encoded; the host gets it at the next flush. */
  change(ctx, entry, value, size) {
    size += entry.id.length;
    this.bytes += size - entry.size;
    entry.size = size;
    entry.value = value;
    this.dirty.add(entry);
    if (this.bytes > this.bytesMax) this.evictBytes(ctx._host, entry);
  }

  /** Hands the host every changed key, in as few calls as the size cap per
   *  call allows. */
  flush(host) {
    if (this.dirty.size === 0) return;
    this.write(host, this.dirty);
    this.dirty.clear();
  }

  /** Before a key comes in at the bound: the least recently used eighth
   *  goes, its changes written back together (a call per key would pay a
   *  call's fixed cost each time). */
  evictKeys(host) {
    let n = this.entries.size - this.keysMax + Math.max(1, this.keysMax >> 3);
    const victims = [];
    for (const entry of this.entries.values()) {
      if (n-- <= 0) break;
      victims.push(entry);
    }
    this.evict(host, victims);
  }

  /** Over the byte bound: the least recently used keys go until an eighth
   *  of the bound is free, but never `current`, the entry at hand (the most
   *  recently used): its value may be the one too big. */
  evictBytes(host, current) {
    let room = this.bytes - (this.bytesMax - Math.floor(this.bytesMax / 8));
    const victims = [];
    for (const entry of this.entries.values()) {
      if (room <= 0 || entry === current) break;
      victims.push(entry);
      room -= entry.size;
    }
    this.evict(host, victims);
  }

  evict(host, victims) {
    const changed = [];
    for (const entry of victims) {
      this.entries.delete(entry.id);
      this.bytes -= entry.size;
      if (this.dirty.delete(entry)) changed.push(entry);
    }
    if (changed.length) this.write(host, changed);
  }

  /** Writes entries back in calls of at most `writeBytesMax` bytes. An
   *  entry still held is counted at its exact size from now on. */
  write(host, entries) {
    const codec = this.state.codec;
    const index = this.state.index;
    const limit = this.writeBytesMax;
    let writes = [];
    let size = 4;
    for (const entry of entries) {
      const data = entry.value === null ? null : codec.encode(entry.value);
      const n = entry.id.length + (data === null ? 0 : data.length);
      if (this.entries.get(entry.id) === entry) {
        this.bytes += n - entry.size;
        entry.size = n;
      }
      if (writes.length && size + 8 + n > limit) {
        host.valueWriteMany(index, writeValueWrites(writes));
        writes = [];
        size = 4;
      }
      writes.push([keyBytes(entry.id), data]);
      size += 8 + n;
    }
    if (writes.length) host.valueWriteMany(index, writeValueWrites(writes));
  }
}
