"""A value state kept per key in guest memory and written back to the host
later, as the Rust SDK's write-back ``StateCache`` does: the window library
keeps each key's windows in one.

A change only marks the key; changed keys go to the host in one
``value-write-many`` call when the runtime flushes the cache (in
``prepare-snapshot``, or at the end of every call under a host that does
not say it calls that) or when the cache outgrows its bound. A hot key then
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

_ABSENT = object()


class WriteBackCache:
    """The value state ``state`` per key; registered with ``ctx`` (an
    OpenContext) for the runtime to flush."""

    def __init__(self, ctx, state, keys_max=KEYS_MAX):
        self.state = state
        self.keys_max = keys_max
        # Key bytes -> value (None: no state), least recently used first.
        self.values = {}
        # Keys changed since the host last got them; a dict keeps the order
        # of the writes the same from run to run.
        self.dirty = {}
        ctx._flushers.append(self)

    def get(self, ctx):
        """The current key's value (None: no state); a miss reads the host.
        Change it only through :meth:`set`."""
        key = ctx.key_bytes
        value = self.values.pop(key, _ABSENT)
        if value is _ABSENT:
            value = self.state.get(ctx)
            self._make_room(ctx._host)
        self.values[key] = value
        return value

    def set(self, ctx, value):
        """Sets the current key's value (None clears the state); the host
        gets it at the next flush."""
        key = ctx.key_bytes
        if key not in self.values:
            self._make_room(ctx._host)
        self.values[key] = value
        self.dirty[key] = None

    def flush(self, host):
        """Hands the host every changed key in one call."""
        if self.dirty:
            self._write(host, [(key, self.values[key]) for key in self.dirty])
            self.dirty = {}

    def _make_room(self, host):
        """Before a key comes in: at the bound, the least recently used
        eighth goes, its changes written back in one call (a call per key
        would pay a call's fixed cost each time)."""
        if len(self.values) < self.keys_max:
            return
        changed = []
        for key in list(islice(self.values, max(1, self.keys_max // 8))):
            value = self.values.pop(key)
            if self.dirty.pop(key, _ABSENT) is not _ABSENT:
                changed.append((key, value))
        if changed:
            self._write(host, changed)

    def _write(self, host, changed):
        encode = self.state.codec.encode
        writes = [(key, None if value is None else encode(value)) for key, value in changed]
        host.value_write_many(self.state.index, wire.write_value_writes(writes))
