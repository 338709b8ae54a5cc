"""A value state kept per key in guest memory and written back to the host
later, as the Rust SDK's write-back ``StateCache`` does: the window library
keeps each key's windows in one.

A change only marks the key; changed keys go to the host in
``value-write-many`` calls when the runtime flushes the cache (in
``prepare-snapshot``, or at the end of every call under a host that does
not say it calls that) or when the cache outgrows its bounds. A hot key then
costs one state write per checkpoint instead of one per record, and a window
opened and fired between two checkpoints none. The cache lives in the
instance, which the host creates afresh for every restore, rescale and
upgrade, so it never outlives the state it mirrors; nothing else may read
or write that state around it.
"""

from itertools import islice

from . import wire

# Keys held at most: a huge or hostile key space costs host reads and
# writes, not guest memory beyond what the state takes anyway.
KEYS_MAX = 1 << 16
# Bytes held at most, counted as key length plus encoded value length (exact
# for a value read from the host or written to it, the caller's estimate for
# a changed one). Decoded objects take a few times their encoding, and the
# guest's memory limit (256 MiB unless the job says otherwise) covers the
# interpreter and the batches too.
BYTES_MAX = 16 << 20
# Bytes one `value-write-many` carries at most (a single larger key and value
# goes alone): the host caps what one call may move, and a flush of every
# changed key must not meet that cap.
WRITE_BYTES_MAX = 4 << 20

_ABSENT = object()


class WriteBackCache:
    """The value state ``state`` per key; registered with ``ctx`` (an
    OpenContext) for the runtime to flush."""

    def __init__(self, ctx, state, keys_max=KEYS_MAX, bytes_max=BYTES_MAX):
        self.state = state
        self.keys_max = keys_max
        self.bytes_max = bytes_max
        self.write_bytes_max = WRITE_BYTES_MAX
        # Key bytes -> value (None: no state), least recently used first.
        self.values = {}
        # Key bytes -> what the key and its value take (see BYTES_MAX).
        self.sizes = {}
        self.bytes = 0
        # Keys changed since the host last got them; a dict keeps the order
        # of the writes the same from run to run.
        self.dirty = {}
        ctx._flushers.append(self)

    def get(self, ctx):
        """The current key's value (None: no state); a miss reads the host.
        Change it only through :meth:`set`."""
        key = ctx.key_bytes
        value = self.values.pop(key, _ABSENT)
        if value is not _ABSENT:
            self.values[key] = value
            return value
        host = ctx._host
        if len(self.values) >= self.keys_max:
            self._evict_keys(host)
        data = host.value_get(self.state.index, key)
        if data is None:
            value, size = None, len(key)
        else:
            value, size = self.state.codec.decode(data), len(key) + len(data)
        self.values[key] = value
        self.sizes[key] = size
        self.bytes += size
        if self.bytes > self.bytes_max:
            self._evict_bytes(host, key)
        return value

    def set(self, ctx, value, size):
        """Sets the current key's value (None clears the state), which
        takes about ``size`` bytes encoded; the host gets it at the next
        flush."""
        key = ctx.key_bytes
        if key not in self.values and len(self.values) >= self.keys_max:
            self._evict_keys(ctx._host)
        size += len(key)
        self.bytes += size - self.sizes.get(key, 0)
        self.sizes[key] = size
        self.values[key] = value
        self.dirty[key] = None
        if self.bytes > self.bytes_max:
            self._evict_bytes(ctx._host, key)

    def flush(self, host):
        """Hands the host every changed key, in as few calls as the size
        cap per call allows."""
        if self.dirty:
            values = self.values
            self._write(host, [(key, values[key]) for key in self.dirty])
            self.dirty = {}

    def _evict_keys(self, host):
        """Before a key comes in at the bound: the least recently used
        eighth goes, its changes written back together (a call per key would
        pay a call's fixed cost each time)."""
        n = len(self.values) - self.keys_max + max(1, self.keys_max // 8)
        self._evict(host, list(islice(self.values, n)))

    def _evict_bytes(self, host, current):
        """Over the byte bound: the least recently used keys go until an
        eighth of the bound is free, but never ``current``, the key at hand
        (the most recently used): its value may be the one too big."""
        victims = []
        room = self.bytes - (self.bytes_max - self.bytes_max // 8)
        sizes = self.sizes
        for key in self.values:
            if room <= 0 or key == current:
                break
            victims.append(key)
            room -= sizes[key]
        self._evict(host, victims)

    def _evict(self, host, keys):
        changed = []
        for key in keys:
            value = self.values.pop(key)
            self.bytes -= self.sizes.pop(key)
            if self.dirty.pop(key, _ABSENT) is not _ABSENT:
                changed.append((key, value))
        if changed:
            self._write(host, changed)

    def _write(self, host, changed):
        """Writes (key, value or None) pairs back in calls of at most
        ``write_bytes_max`` bytes. A key still held is counted at its
        exact size from now on."""
        encode = self.state.codec.encode
        index = self.state.index
        sizes = self.sizes
        limit = self.write_bytes_max
        writes, size = [], 4
        for key, value in changed:
            data = None if value is None else encode(value)
            n = len(key) + (0 if data is None else len(data))
            held = sizes.get(key)
            if held is not None:
                self.bytes += n - held
                sizes[key] = n
            if writes and size + 8 + n > limit:
                host.value_write_many(index, wire.write_value_writes(writes))
                writes, size = [], 4
            writes.append((key, data))
            size += 8 + n
        if writes:
            host.value_write_many(index, wire.write_value_writes(writes))
