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


def open_operator(operator_class, info):
    import weir

    ctx = weir.OpenContext(info)
    op = operator_class()
    op.open(ctx)
    op._weir_key = codec(operator_class.key)
    op._weir_value = codec(operator_class.value)
    return op, ctx._states


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
    """The class componentize-py calls for the exported `hooks` interface.
    componentize-py may create a new instance per call, so the operator
    lives in this closure, one per component instance."""
    slot = {}

    def fail(error):
        raise Err(describe(error))

    class Hooks:
        def open(self, info):
            import weir

            try:
                host = WitHost()
                op, states = open_operator(
                    operator_class,
                    weir.OperatorInfo(info.name, info.subtask_index, info.parallelism, info.config),
                )
            except BaseException as e:  # sys.exit() too: report, never trap
                fail(e)
            slot["op"], slot["host"] = op, host
            kinds = {"value": types.StateKind.VALUE, "list": types.StateKind.LIST,
                     "map": types.StateKind.MAP}
            return [types.StateDescriptor(name, kinds[kind], ttl) for name, kind, ttl in states]

        def process(self, input, records):
            if "op" not in slot:
                fail(RuntimeError("the host called the operator before `open`"))
            try:
                return process(slot["op"], slot["host"], input, records)
            except BaseException as e:  # sys.exit() too: report, never trap
                fail(e)

        def on_timers(self, timers):
            if "op" not in slot:
                fail(RuntimeError("the host called the operator before `open`"))
            try:
                return on_timers(slot["op"], slot["host"], timers)
            except BaseException as e:  # sys.exit() too: report, never trap
                fail(e)

    Hooks.__qualname__ = f"Hooks[{operator_class.__name__}]"
    return Hooks
