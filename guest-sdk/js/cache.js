// A value state kept per key in guest memory and written back to the host
// later, as the Rust SDK's write-back `StateCache` does: the window library
// keeps each key's windows in one.
//
// A change only marks the key; changed keys go to the host in one
// `value-write-many` call when the runtime flushes the cache (in
// `prepare-snapshot`, or at the end of every call under a host that does not
// say it calls that) or when the cache outgrows its bound. A hot key then
// costs one state write per checkpoint instead of one per record, and a
// window opened and fired between two checkpoints none. The cache lives in
// the instance, which the host creates afresh for every restore, rescale and
// upgrade, so it never outlives the state it mirrors; nothing else may read
// or write that state around it.
import { writeValueWrites } from "./wire.js";

/** Keys held at most: a huge or hostile key space costs host reads and
 *  writes, not guest memory beyond what the state takes anyway. */
export const KEYS_MAX = 1 << 16;

const CHUNK = 4096;

/** The key's bytes as a string of char codes 0-255: a Map key that compares
 *  by content (in chunks: `apply` takes one argument per byte). */
function keyId(bytes) {
  if (bytes.length <= CHUNK) return String.fromCharCode.apply(null, bytes);
  let id = "";
  for (let at = 0; at < bytes.length; at += CHUNK) id += String.fromCharCode.apply(null, bytes.subarray(at, at + CHUNK));
  return id;
}

/** The value state `state` per key; registered with `ctx` (an OpenContext)
 *  for the runtime to flush. */
export class WriteBackCache {
  constructor(ctx, state, keysMax = KEYS_MAX) {
    this.state = state;
    this.keysMax = keysMax;
    // Key id -> { key, value } (value null: no state), least recently used first.
    this.entries = new Map();
    // Entries changed since the host last got them, in change order.
    this.dirty = new Set();
    ctx._flushers.push(this);
  }

  /** The current key's entry; `value` is its value (null: no state). A miss
   *  reads the host. Change it only through `change`. */
  entry(ctx) {
    const id = keyId(ctx.keyBytes);
    let entry = this.entries.get(id);
    if (entry === undefined) {
      // A copy: the key is a view into the whole batch.
      entry = { id, key: ctx.keyBytes.slice(), value: this.state.get(ctx) ?? null };
      this.makeRoom(ctx._host);
    } else {
      this.entries.delete(id);
    }
    this.entries.set(id, entry);
    return entry;
  }

  /** Sets an entry's value (null clears the state); the host gets it at the
   *  next flush. */
  change(entry, value) {
    entry.value = value;
    this.dirty.add(entry);
  }

  /** Hands the host every changed key in one call. */
  flush(host) {
    if (this.dirty.size === 0) return;
    this.write(host, this.dirty);
    this.dirty.clear();
  }

  /** Before a key comes in: at the bound, the least recently used eighth
   *  goes, its changes written back in one call (a call per key would pay a
   *  call's fixed cost each time). */
  makeRoom(host) {
    if (this.entries.size < this.keysMax) return;
    const changed = [];
    let n = Math.max(1, this.keysMax >> 3);
    for (const entry of this.entries.values()) {
      if (n-- === 0) break;
      this.entries.delete(entry.id);
      if (this.dirty.delete(entry)) changed.push(entry);
    }
    if (changed.length) this.write(host, changed);
  }

  write(host, entries) {
    const codec = this.state.codec;
    const writes = [];
    for (const { key, value } of entries) writes.push([key, value === null ? null : codec.encode(value)]);
    host.valueWriteMany(this.state.index, writeValueWrites(writes));
  }
}
