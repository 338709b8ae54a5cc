"""Runs an operator natively with an in-memory host, through the same batch
encoding the weir host uses, so operators are unit-tested with plain
``python3 -m unittest``::

    from weir.testing import Harness
    h = Harness(Count)
    h.process("a", "x")
    assert h.process("a", "y")[0].value == "2"
"""

import json
from collections import Counter

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


def _counted(name):
    """Counts calls of the host function ``name`` in ``MemoryHost.calls``."""
    def wrap(method):
        def counted(self, *args):
            self.calls[name] += 1
            return method(self, *args)
        return counted
    return wrap


class MemoryHost:
    """The host's services in memory (no TTL, every key owned). ``calls``
    counts the calls of each keyed-state and timer registration function by
    its WIT name;
    ``timer_batches`` and ``write_batches`` hold what each
    ``register-timers`` and ``value-write-many`` call carried."""

    def __init__(self):
        self.values, self.lists, self.maps = {}, {}, {}
        self.timers = set()  # (domain, timestamp, key)
        self.current_watermark = wire.NO_TIMESTAMP
        self.now = 0
        self.logs = []
        self.calls = Counter()
        self.timer_batches = []  # [(domain, timestamp, key)] per call
        self.write_batches = []  # (state, [(key, value or None)]) per call

    @_counted("value-get")
    def value_get(self, s, k):
        return self.values.get((s, k))

    @_counted("value-set")
    def value_set(self, s, k, v):
        self.values[(s, k)] = bytes(v)

    @_counted("value-write-many")
    def value_write_many(self, s, writes):
        writes = wire.read_value_writes(writes)
        self.write_batches.append((s, writes))
        for k, v in writes:
            if v is None:
                self._clear(s, k)
            else:
                self.values[(s, k)] = v

    @_counted("list-append")
    def list_append(self, s, k, v):
        self.lists.setdefault((s, k), []).append(bytes(v))

    @_counted("list-get")
    def list_get(self, s, k):
        return list(self.lists.get((s, k), []))

    @_counted("map-get")
    def map_get(self, s, k, mk):
        return self.maps.get((s, k), {}).get(mk)

    @_counted("map-put")
    def map_put(self, s, k, mk, v):
        self.maps.setdefault((s, k), {})[bytes(mk)] = bytes(v)

    @_counted("map-remove")
    def map_remove(self, s, k, mk):
        self.maps.get((s, k), {}).pop(mk, None)

    @_counted("map-entries")
    def map_entries(self, s, k):
        # Through the wire format, as the real host sends it.
        entries = sorted(self.maps.get((s, k), {}).items())
        return wire.read_entries(wire.write_entries(entries))

    @_counted("clear")
    def clear(self, s, k):
        self._clear(s, k)

    def _clear(self, s, k):
        for table in (self.values, self.lists, self.maps):
            table.pop((s, k), None)

    @_counted("register-timer")
    def register_timer(self, domain, k, ts):
        self.timers.add((domain, ts, bytes(k)))

    @_counted("register-timers")
    def register_timers(self, batch):
        timers = [(domain, ts, key) for ts, domain, key in wire.read_timers(batch)]
        self.timer_batches.append(timers)
        self.timers.update(timers)

    @_counted("delete-timer")
    def delete_timer(self, domain, k, ts):
        self.timers.discard((domain, ts, bytes(k)))

    def watermark(self):
        return self.current_watermark

    def processing_time(self):
        return self.now

    def log(self, level, message):
        self.logs.append((level, message))


class Harness:
    """An operator instance on a :class:`MemoryHost`. Like weir's host, the
    harness calls ``prepare-snapshot`` before it snapshots (:meth:`restart`)
    and says so in the config (``weir.prepare_snapshot`` = ``1``), unless
    ``config`` sets that entry itself (``0``: act as a host that does not,
    so write-back state reaches the host by the end of every call)."""

    def __init__(self, operator_class, config=None, name="op"):
        self.host = MemoryHost()
        config = {k: str(v) for k, v in (config or {}).items()}
        config.setdefault(_runtime.PREPARE_SNAPSHOT_CONFIG, "1")
        self.operator_class = operator_class
        self.info = OperatorInfo(name, 0, 1, list(config.items()))
        self.instance, self.states = _runtime.open_operator(operator_class, self.info, self.host)

    @property
    def operator(self):
        return self.instance.op

    def prepare_snapshot(self):
        """What the host does right before a snapshot: the operator writes
        back the state it holds in its own memory."""
        self.instance.prepare_snapshot()

    def restart(self, prepare=True):
        """Snapshots and restores at once: prepares a snapshot, then opens a
        new instance over the same state and timers, as the host does when it
        restores that snapshot: whatever else the operator kept only in its
        own memory is gone. ``prepare=False`` snapshots without calling
        ``prepare-snapshot``, as a host from before it does (pair it with
        ``weir.prepare_snapshot`` = ``0`` in the config, which such a host
        never sets)."""
        if prepare:
            self.prepare_snapshot()
        self.instance, self.states = _runtime.open_operator(self.operator_class, self.info, self.host)

    def process(self, key, value, timestamp=None, input=0):
        """Feeds one record (key and value encoded like ``ctx.emit`` does)."""
        return self.process_batch([(timestamp, key, value)], input)

    def process_batch(self, records, input=0):
        batch = wire.write_batch([(ts, encode_any(k), encode_any(v)) for ts, k, v in records])
        return self._decode(self.instance.process(input, batch))

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
        return self._decode(self.instance.on_timers(batch))

    @staticmethod
    def _decode(batch):
        return [Emitted(ts, k, v) for ts, k, v in wire.read_batch(batch)]
