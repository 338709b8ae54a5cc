"""weir: write weir stream operators in Python.

Subclass :class:`Operator`, declare how keys and values decode (``key``,
``value``), declare keyed state in ``open``, handle records in ``process``
and fired timers in ``on_timer``, and export the class::

    import weir

    class Count(weir.Operator):
        \"\"\"Counts records per key and emits the running count.\"\"\"
        key = str
        value = str

        def open(self, ctx):
            self.seen = ctx.value_state("seen", int)

        def process(self, ctx, record):
            n = (self.seen.get(ctx) or 0) + 1
            self.seen.set(ctx, n)
            ctx.emit(record.key, n)

    Hooks = weir.export(Count)

``scripts/build-operator.sh count.py -o count.wasm`` turns the file into a
component of the ``weir:operator`` world ``buffering-operator`` (with
componentize-py); ``weir run`` loads it like a Rust operator. The SDK hides the batch format: it decodes
each batch, calls ``process`` once per record, and encodes what you emit.
Keys, values and state use the Rust SDK's encodings (see :mod:`weir.codec`),
so Python, Rust and JavaScript operators mix in one job.

State lives in the host and is scoped to the key of the record or timer at
hand, as in Flink's keyed functions; attributes of your object are a cache
that may vanish on restart. An exception raised by your code fails the job
with the operator's name and the exception's message.

:class:`weir.testing.Harness` runs an operator natively with an in-memory
host, so operators are unit-tested with plain ``python3 -m unittest``.
"""

from . import _runtime
from .codec import BOOL, BYTES, FLOAT, INT, JSON, STR, UNIT, DecodeError, Json

EVENT_TIME = "event-time"
PROCESSING_TIME = "processing-time"

TRACE, DEBUG, INFO, WARN, ERROR = range(5)

__all__ = [
    "Operator", "OpenContext", "Context", "Record", "Timer", "OperatorInfo",
    "ValueState", "ListState", "MapState", "Json", "DecodeError", "export",
    "EVENT_TIME", "PROCESSING_TIME", "TRACE", "DEBUG", "INFO", "WARN", "ERROR",
    "STR", "BYTES", "INT", "FLOAT", "BOOL", "JSON", "UNIT",
]


class Operator:
    """Base class of an operator.

    Class attributes ``key`` and ``value`` say how input keys and values
    decode: ``str`` (default), ``bytes``, ``int``, ``float``, ``bool``,
    ``None`` (ignore), ``weir.Json`` or a codec object.
    """

    key = str
    value = str

    def open(self, ctx):
        """Declares keyed state (``ctx.value_state(...)`` etc.) and reads
        ``ctx.config(...)``. Called once per instance, before anything else."""

    def process(self, ctx, record):
        """Handles one :class:`Record`; ``ctx`` is scoped to its key."""
        raise NotImplementedError(f"{type(self).__name__} does not implement process")

    def on_timer(self, ctx, timer):
        """Handles one fired :class:`Timer`; ``ctx`` is scoped to its key."""


class Record:
    """An input record: ``key`` and ``value`` decoded, ``timestamp`` (event
    time in ms, or None) and ``input`` (which input, from 0)."""

    __slots__ = ("key", "value", "timestamp", "input")

    def __init__(self, key, value, timestamp, input):
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.input = input

    def __repr__(self):
        return f"Record(key={self.key!r}, value={self.value!r}, timestamp={self.timestamp!r}, input={self.input})"


class Timer:
    """A timer that fired: ``key``, ``timestamp`` and ``domain``
    (``weir.EVENT_TIME`` or ``weir.PROCESSING_TIME``)."""

    __slots__ = ("key", "timestamp", "domain")

    def __init__(self, key, timestamp, domain):
        self.key = key
        self.timestamp = timestamp
        self.domain = domain

    def __repr__(self):
        return f"Timer(key={self.key!r}, timestamp={self.timestamp}, domain={self.domain!r})"


class OperatorInfo:
    """Who this instance is: ``name``, ``subtask_index``, ``parallelism``
    and ``config`` (the job file's config table, as a dict of strings)."""

    def __init__(self, name, subtask_index, parallelism, config):
        self.name = name
        self.subtask_index = subtask_index
        self.parallelism = parallelism
        self.config = dict(config)


class OpenContext:
    """Handed to ``open``: declare state, read configuration."""

    def __init__(self, info):
        self.info = info
        self._states = []
        # Write-back caches (the window library's), flushed by the runtime.
        self._flushers = []

    def config(self, name, default=None, type=str):
        """A value from the operator's ``config`` table, converted with
        ``type``, or ``default`` when absent."""
        text = self.info.config.get(name)
        if text is None:
            return default
        try:
            return type(text)
        except ValueError as e:
            raise ValueError(f"config `{name}` = {text!r}: {e}") from None

    def _declare(self, name, kind, ttl_ms):
        if any(s[0] == name for s in self._states):
            raise ValueError(f"state `{name}` is declared twice")
        self._states.append((name, kind, ttl_ms))
        return len(self._states) - 1

    def value_state(self, name, type=str, ttl_ms=None):
        """One value per key; with ``ttl_ms`` entries expire after their
        last write."""
        return ValueState(self._declare(name, "value", ttl_ms), type)

    def list_state(self, name, type=str):
        """A list per key; appends never read the existing list."""
        return ListState(self._declare(name, "list", None), type)

    def map_state(self, name, key_type=str, value_type=str):
        """A map per key, iterated in the byte order of the encoded map keys."""
        return MapState(self._declare(name, "map", None), key_type, value_type)


class Context:
    """Handed to ``process`` and ``on_timer``, scoped to one key."""

    __slots__ = ("_host", "key_bytes", "timestamp", "_out")

    def __init__(self, host, key_bytes, timestamp, out):
        self._host = host
        self.key_bytes = key_bytes
        self.timestamp = timestamp
        self._out = out

    def emit(self, key, value):
        """Emits a record stamped with the current event time. Keys and
        values are encoded by type: str, bytes, int, float, bool, None,
        dict/list (JSON) or ``weir.Json(x)``."""
        self._out.record(self.timestamp, _encode(key), _encode(value))

    def emit_at(self, key, value, timestamp):
        """Emits a record with an explicit event time (None: no event time)."""
        self._out.record(timestamp, _encode(key), _encode(value))

    def watermark(self):
        """The operator's event-time watermark (ms)."""
        return self._host.watermark()

    def processing_time(self):
        return self._host.processing_time()

    def register_event_timer(self, timestamp):
        """Fires ``on_timer`` for the current key once the watermark reaches
        ``timestamp``."""
        self._host.register_timer(0, self.key_bytes, timestamp)

    def delete_event_timer(self, timestamp):
        self._host.delete_timer(0, self.key_bytes, timestamp)

    def register_processing_timer(self, timestamp):
        """Fires ``on_timer`` for the current key once processing time
        reaches ``timestamp``."""
        self._host.register_timer(1, self.key_bytes, timestamp)

    def delete_processing_timer(self, timestamp):
        self._host.delete_timer(1, self.key_bytes, timestamp)

    def log(self, level, message):
        """Logs into the host's log (``weir.INFO`` etc.), tagged with the
        operator's name."""
        self._host.log(level, str(message))


from .codec import codec as _codec, encode_any as _encode  # noqa: E402


class ValueState:
    """One value per key."""

    __slots__ = ("index", "codec")

    def __init__(self, index, type):
        self.index = index
        self.codec = _codec(type)

    def get(self, ctx, default=None):
        data = ctx._host.value_get(self.index, ctx.key_bytes)
        return default if data is None else self.codec.decode(data)

    def set(self, ctx, value):
        ctx._host.value_set(self.index, ctx.key_bytes, self.codec.encode(value))

    def clear(self, ctx):
        ctx._host.clear(self.index, ctx.key_bytes)


class ListState:
    """A list per key."""

    __slots__ = ("index", "codec")

    def __init__(self, index, type):
        self.index = index
        self.codec = _codec(type)

    def add(self, ctx, value):
        ctx._host.list_append(self.index, ctx.key_bytes, self.codec.encode(value))

    def get(self, ctx):
        return [self.codec.decode(b) for b in ctx._host.list_get(self.index, ctx.key_bytes)]

    def clear(self, ctx):
        ctx._host.clear(self.index, ctx.key_bytes)


class MapState:
    """A map per key."""

    __slots__ = ("index", "keys", "values")

    def __init__(self, index, key_type, value_type):
        self.index = index
        self.keys = _codec(key_type)
        self.values = _codec(value_type)

    def get(self, ctx, map_key, default=None):
        data = ctx._host.map_get(self.index, ctx.key_bytes, self.keys.encode(map_key))
        return default if data is None else self.values.decode(data)

    def put(self, ctx, map_key, value):
        ctx._host.map_put(self.index, ctx.key_bytes, self.keys.encode(map_key), self.values.encode(value))

    def remove(self, ctx, map_key):
        ctx._host.map_remove(self.index, ctx.key_bytes, self.keys.encode(map_key))

    def entries(self, ctx):
        """(map key, value) pairs in the byte order of the encoded map keys."""
        return [(self.keys.decode(k), self.values.decode(v))
                for k, v in ctx._host.map_entries(self.index, ctx.key_bytes)]

    def clear(self, ctx):
        ctx._host.clear(self.index, ctx.key_bytes)


def export(operator_class):
    """Exports ``operator_class`` as the component's operator. Assign the
    result to ``Hooks`` at the top level of your module::

        Hooks = weir.export(MyOperator)

    ``Hooks.Snapshots`` is the matching ``snapshots`` export, which
    scripts/build-operator.sh exports beside it.
    """
    if not (isinstance(operator_class, type) and issubclass(operator_class, Operator)):
        raise TypeError("weir.export takes a subclass of weir.Operator")
    return _runtime.hooks_class(operator_class)
