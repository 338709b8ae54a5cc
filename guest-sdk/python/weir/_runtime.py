"""Drives an operator over encoded batches; shared by the component's
exports and the native test harness, so tests run the code the host will."""

import traceback

from . import wire
from .codec import codec

# Inside a component everything must be imported when the module loads:
# componentize-py snapshots the interpreter after importing the app, and the
# files are gone at run time. Natively (tests) the bindings do not exist.
try:
    from componentize_py_types import Err
    from wit_world.imports import keyed_state, log, timers, types
except ImportError:  # not inside a component
    Err = keyed_state = log = timers = types = None


# What a host that calls `prepare-snapshot` puts in the config.
PREPARE_SNAPSHOT_CONFIG = "weir.prepare_snapshot"

# What a TimerBuffer holds back at most before it hands it over.
TIMER_BATCH_BYTES_MAX = 64 << 10


def open_operator(operator_class, info, host):
    """Builds the operator and runs its ``open``; returns the
    :class:`Instance` and the states it declared."""
    import weir

    ctx = weir.OpenContext(info)
    op = operator_class()
    op.open(ctx)
    op._weir_key = codec(operator_class.key)
    op._weir_value = codec(operator_class.value)
    hold_back = info.config.get(PREPARE_SNAPSHOT_CONFIG) == "1"
    return Instance(op, host, ctx._flushers, hold_back), ctx._states


class Instance:
    """One opened operator on its host, with the write-back caches it
    declared. They are flushed when the host is about to take a snapshot
    (:meth:`prepare_snapshot`) if it said it calls that, else at the end of
    every call (an older host may snapshot between any two calls)."""

    def __init__(self, op, host, flushers, hold_back):
        self.op = op
        self.host = host
        self.flushers = flushers
        self.hold_back = hold_back
        self.timers = TimerBuffer(host)

    def _call(self, run, *args):
        """Runs one call with timer registrations held back, then hands the
        host what the call left: write-back state, then the timers. A call
        that raises hands over nothing (the host fails the job)."""
        timers = self.timers
        timers.batch.reset()
        out = run(self.op, timers, *args)
        if not self.hold_back:
            self._flush(timers)
        timers.flush()
        return out

    def process(self, input, batch):
        return self._call(process, input, batch)

    def on_timers(self, timers):
        return self._call(on_timers, timers)

    def prepare_snapshot(self):
        """The host is about to snapshot: hands it everything held back."""
        self._flush(self.host)

    def _flush(self, host):
        for cache in self.flushers:
            cache.flush(host)


class TimerBuffer:
    """The host, with timer registrations held back until :meth:`flush` and
    then handed over in one ``register-timers`` call: every call into the
    host has a fixed cost, and a window operator registers a timer per
    window. Holding them until the end of the guest call changes nothing
    the operator can see, since timers fire only between calls. A deletion
    first flushes, so a timer registered and deleted in one call is gone."""

    _FORWARDED = ("value_get", "value_set", "value_write_many", "list_append", "list_get",
                  "map_get", "map_put", "map_remove", "map_entries", "clear", "watermark",
                  "processing_time", "log")

    def __init__(self, host):
        self.host = host
        self.batch = wire.TimerBatch()
        # The host's own methods: no call in between on the state path.
        for name in self._FORWARDED:
            setattr(self, name, getattr(host, name))

    def register_timer(self, domain, key, timestamp):
        self.batch.push(domain, key, timestamp)
        # Bounded: an operator that registers without end meets the host's
        # timer limits (and their message), not the guest memory limit.
        if self.batch.size >= TIMER_BATCH_BYTES_MAX:
            self.flush()

    def register_timers(self, timers):
        self.flush()
        self.host.register_timers(timers)

    def delete_timer(self, domain, key, timestamp):
        self.flush()
        self.host.delete_timer(domain, key, timestamp)

    def flush(self):
        if self.batch.count:
            self.host.register_timers(self.batch.finish())
            self.batch.reset()


def process(op, host, input, batch):
    """Decodes `batch`, calls `process` per record, returns the encoded
    output. One Context serves the whole batch, re-pointed at each record's
    key: keep no reference to it past the call."""
    import weir

    out = wire.Writer()
    key_decode = op._weir_key.decode
    value_decode = op._weir_value.decode
    user_process = op.process
    Record = weir.Record
    ctx = weir.Context(host, b"", None, out)
    for index, (ts, key_bytes, value_bytes) in enumerate(wire.read_batch(batch)):
        try:
            key = key_decode(key_bytes)
        except Exception as e:
            raise weir.DecodeError(f"record {index}: key: {e}") from None
        try:
            value = value_decode(value_bytes)
        except Exception as e:
            raise weir.DecodeError(f"record {index}: value: {e}") from None
        ctx.key_bytes = key_bytes
        ctx.timestamp = ts
        user_process(ctx, Record(key, value, ts, input))
    return out.finish()


def on_timers(op, host, timers):
    import weir

    out = wire.Writer()
    for ts, domain, key_bytes in wire.read_timers(timers):
        try:
            key = op._weir_key.decode(key_bytes)
        except Exception as e:
            raise weir.DecodeError(f"timer key: {e}") from None
        kind = weir.EVENT_TIME if domain == 0 else weir.PROCESSING_TIME
        op.on_timer(weir.Context(host, key_bytes, ts, out), weir.Timer(key, ts, kind))
    return out.finish()


def describe(error):
    """``Type: message (at file:line in function)`` for an exception raised
    by operator code: what the host reports."""
    if isinstance(error, wire.MalformedBatch):
        return str(error)
    import weir

    text = str(error) if isinstance(error, weir.DecodeError) else f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    # The innermost frame outside the SDK says where the user's code failed.
    for frame in reversed(frames):
        if "/weir/" not in frame.filename.replace("\\", "/"):
            text += f" (at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name})"
            break
    return text


class WitHost:
    """The real host, through the component's imports."""

    def __init__(self):
        self.keyed_state = keyed_state
        self.timers = timers
        self._log = log
        self.types = types
        self._domains = (types.TimeDomain.EVENT_TIME, types.TimeDomain.PROCESSING_TIME)
        self._levels = (types.LogLevel.TRACE, types.LogLevel.DEBUG, types.LogLevel.INFO,
                        types.LogLevel.WARN, types.LogLevel.ERROR)
        self.value_get = keyed_state.value_get
        self.value_set = keyed_state.value_set
        self.list_append = keyed_state.list_append
        self.list_get = keyed_state.list_get
        self.map_get = keyed_state.map_get
        self.map_put = keyed_state.map_put
        self.map_remove = keyed_state.map_remove
        self.clear = keyed_state.clear
        self.value_write_many = keyed_state.value_write_many
        self.register_timers = timers.register_timers
        self.watermark = timers.current_watermark
        self.processing_time = timers.current_processing_time

    def map_entries(self, state, key):
        return wire.read_entries(self.keyed_state.map_entries(state, key))

    def register_timer(self, domain, key, timestamp):
        self.timers.register_timer(self._domains[domain], key, timestamp)

    def delete_timer(self, domain, key, timestamp):
        self.timers.delete_timer(self._domains[domain], key, timestamp)

    def log(self, level, message):
        self._log.log(self._levels[max(0, min(4, int(level)))], message)


def hooks_class(operator_class):
    """The class componentize-py calls for the exported `hooks` interface,
    with the class for `snapshots` (world `buffering-operator`) as its
    attribute ``Snapshots``: the build's app module exports both.
    componentize-py may create a new instance per call, so the operator
    lives in this closure, one per component instance."""
    slot = {}

    def fail(error):
        raise Err(describe(error))

    def opened():
        if "instance" not in slot:
            fail(RuntimeError("the host called the operator before `open`"))
        return slot["instance"]

    class Hooks:
        def open(self, info):
            import weir

            try:
                instance, states = open_operator(
                    operator_class,
                    weir.OperatorInfo(info.name, info.subtask_index, info.parallelism, info.config),
                    WitHost(),
                )
            except BaseException as e:  # sys.exit() too: report, never trap
                fail(e)
            slot["instance"] = instance
            kinds = {"value": types.StateKind.VALUE, "list": types.StateKind.LIST,
                     "map": types.StateKind.MAP}
            return [types.StateDescriptor(name, kinds[kind], ttl) for name, kind, ttl in states]

        def process(self, input, records):
            instance = opened()
            try:
                return instance.process(input, records)
            except BaseException as e:  # sys.exit() too: report, never trap
                fail(e)

        def on_timers(self, timers):
            instance = opened()
            try:
                return instance.on_timers(timers)
            except BaseException as e:  # sys.exit() too: report, never trap
                fail(e)

    class Snapshots:
        def prepare_snapshot(self):
            instance = opened()
            try:
                instance.prepare_snapshot()
            except BaseException as e:  # sys.exit() too: report, never trap
                fail(e)

    Hooks.__qualname__ = f"Hooks[{operator_class.__name__}]"
    Snapshots.__qualname__ = f"Snapshots[{operator_class.__name__}]"
    Hooks.Snapshots = Snapshots
    return Hooks
