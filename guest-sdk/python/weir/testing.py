"""Runs an operator natively with an in-memory host, through the same batch
encoding the weir host uses, so operators are unit-tested with plain
``python3 -m unittest``::

    from weir.testing import Harness
    h = Harness(Count)
    h.process("a", "x")
    assert h.process("a", "y")[0].value == "2"
"""

import json

from . import OperatorInfo, _runtime, wire
from .codec import encode_any


class Emitted:
    """One output record: ``key`` and ``value`` as text (``key_bytes`` and
    ``value_bytes`` as bytes) and ``timestamp``."""

    def __init__(self, timestamp, key_bytes, value_bytes):
        self.timestamp = timestamp
        self.key_bytes = key_bytes
        self.value_bytes = value_bytes
        self.key = key_bytes.decode("utf-8", "replace")
        self.value = value_bytes.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.value)

    def __repr__(self):
        return f"Emitted({self.timestamp!r}, {self.key!r}, {self.value!r})"


class MemoryHost:
    """The host's services in memory (no TTL, every key owned)."""

    def __init__(self):
        self.values, self.lists, self.maps = {}, {}, {}
        self.timers = set()  # (domain, timestamp, key)
        self.current_watermark = wire.NO_TIMESTAMP
        self.now = 0
        self.logs = []

    def value_get(self, s, k):
        return self.values.get((s, k))

    def value_set(self, s, k, v):
        self.values[(s, k)] = bytes(v)

    def list_append(self, s, k, v):
        self.lists.setdefault((s, k), []).append(bytes(v))

    def list_get(self, s, k):
        return list(self.lists.get((s, k), []))

    def map_get(self, s, k, mk):
        return self.maps.get((s, k), {}).get(mk)

    def map_put(self, s, k, mk, v):
        self.maps.setdefault((s, k), {})[bytes(mk)] = bytes(v)

    def map_remove(self, s, k, mk):
        self.maps.get((s, k), {}).pop(mk, None)

    def map_entries(self, s, k):
        # Through the wire format, as the real host sends it.
        entries = sorted(self.maps.get((s, k), {}).items())
        return wire.read_entries(wire.write_entries(entries))

    def clear(self, s, k):
        for table in (self.values, self.lists, self.maps):
            table.pop((s, k), None)

    def register_timer(self, domain, k, ts):
        self.timers.add((domain, ts, bytes(k)))

    def delete_timer(self, domain, k, ts):
        self.timers.discard((domain, ts, bytes(k)))

    def watermark(self):
        return self.current_watermark

    def processing_time(self):
        return self.now

    def log(self, level, message):
        self.logs.append((level, message))


class Harness:
    """An operator instance on a :class:`MemoryHost`."""

    def __init__(self, operator_class, config=None, name="op"):
        self.host = MemoryHost()
        info = OperatorInfo(name, 0, 1, [(k, str(v)) for k, v in (config or {}).items()])
        self.operator, self.states = _runtime.open_operator(operator_class, info)

    def process(self, key, value, timestamp=None, input=0):
        """Feeds one record (key and value encoded like ``ctx.emit`` does)."""
        return self.process_batch([(timestamp, key, value)], input)

    def process_batch(self, records, input=0):
        batch = wire.write_batch([(ts, encode_any(k), encode_any(v)) for ts, k, v in records])
        return self._decode(_runtime.process(self.operator, self.host, input, batch))

    def advance_watermark(self, watermark):
        """Moves the watermark and fires due event-time timers in order."""
        self.host.current_watermark = watermark
        return self._fire(0, watermark)

    def advance_processing_time(self, now):
        self.host.now = now
        return self._fire(1, now)

    def pending_timers(self):
        return sorted(self.host.timers)

    def _fire(self, domain, upto):
        due = sorted(t for t in self.host.timers if t[0] == domain and t[1] <= upto)
        self.host.timers -= set(due)
        if not due:
            return []
        batch = wire.write_timers([(ts, d, k) for d, ts, k in due])
        return self._decode(_runtime.on_timers(self.operator, self.host, batch))

    @staticmethod
    def _decode(batch):
        return [Emitted(ts, k, v) for ts, k, v in wire.read_batch(batch)]
