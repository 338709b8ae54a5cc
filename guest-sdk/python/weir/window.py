"""Event-time windows with incremental aggregation, on keyed state and
timers: the Rust SDK's ``weir_guest::window`` API, with the same semantics.
A key's live windows are one value in keyed state (JSON: ``[[start, end,
accumulator], ...]`` by end), kept in the instance and written back when
the host is about to snapshot (or at the end of every call under a host
that does not say it calls ``prepare-snapshot``): a record costs no state
call when its key was seen before, a key one write per checkpoint, and
timers, one per window, go to the host in one call at the end of the call.
Windows are checkpointed, restored and rescaled with the rest of the job.
(The Rust SDK stores a key's windows as panes or sessions in its own binary
layout: window state does not carry over when an operator is rewritten
from Python in Rust or back.)::

    import weir
    from weir.window import Count, Late, Windows, tumbling

    class CountPerWindow(weir.Operator):
        key = str
        value = None

        def open(self, ctx):
            self.windows = Windows(ctx, "counts", tumbling(10_000), Count())

        def process(self, ctx, record):
            for out in self.windows.add(ctx, record.timestamp, record.value):
                if isinstance(out, Late):
                    ctx.emit(record.key, "late")     # too late for every window
                else:
                    out.result.emit(ctx, record.key)  # a late update

        def on_timer(self, ctx, timer):
            for result in self.windows.on_timer(ctx, timer):
                # key -> {"key","window_start","window_end","value"} at end - 1
                result.emit(ctx, timer.key)

Semantics (Flink's event-time windows with an ``EventTimeTrigger``): a
window ``[start, end)`` fires when the watermark reaches ``end - 1`` and its
result is stamped ``end - 1``; with ``allowed_lateness=L`` its state is kept
until the watermark reaches ``end - 1 + L`` and every record that arrives
for it meanwhile updates it and re-fires it at once (returned by ``add`` as
:class:`Fired`); a record whose windows are all past that is not added and
``add`` returns :class:`Late` for it. There is no second output stream in
the operator world, so the operator decides what a late record becomes. To
reach the operator at all, records behind the watermark need
``late_records = "process"`` in the job file.

Aggregates: :class:`Count`, :class:`Sum`, :class:`Min`, :class:`Max`,
:class:`Average`, or a subclass of :class:`AggregateFunction` whose
accumulator is JSON: each accumulator ``add`` or ``merge`` returns is
passed through JSON as it is stored (unless it is an int, a finite float, a
bool, None or a str UTF-8 can hold), so the aggregate sees what it would see after a
restore from the first record on (dict keys become strings, tuples lists),
and one that JSON cannot hold fails the record that made it.
"""

import math

from . import EVENT_TIME, JSON
from ._cache import WriteBackCache

__all__ = [
    "Window", "WindowResult", "Fired", "Late", "Windows", "AggregateFunction",
    "Count", "Sum", "Min", "Max", "Average", "tumbling", "sliding", "session",
]


class Window:
    """Event times ``start <= t < end``."""

    __slots__ = ("start", "end")

    def __init__(self, start, end):
        self.start, self.end = start, end

    def max_timestamp(self):
        return self.end - 1

    def intersects(self, other):
        # Flink's rule for sessions: overlapping or touching windows merge.
        return self.start <= other.end and self.end >= other.start

    def cover(self, other):
        return Window(min(self.start, other.start), max(self.end, other.end))

    def __eq__(self, other):
        return isinstance(other, Window) and (self.start, self.end) == (other.start, other.end)

    def __repr__(self):
        return f"Window({self.start}, {self.end})"


def _positive(what, ms):
    if not isinstance(ms, int) or isinstance(ms, bool) or ms <= 0:
        raise ValueError(f"window {what} must be a positive number of milliseconds, got {ms!r}")
    return ms


class _Assigner:
    def __init__(self, kind, size, slide=None):
        self.kind, self.size, self.slide = kind, size, slide

    merging = property(lambda self: self.kind == "session")

    def assign(self, ts):
        """The windows a record at ``ts`` belongs to, earliest start first."""
        if self.kind == "tumbling":
            start = ts - ts % self.size
            return [Window(start, start + self.size)]
        if self.kind == "sliding":
            last = ts - ts % self.slide
            starts = range(last, ts - self.size, -self.slide)
            return [Window(s, s + self.size) for s in reversed(starts)]
        return [Window(ts, ts + self.size)]

    def __repr__(self):
        return f"{self.kind}({self.size}{'' if self.slide is None else f', {self.slide}'})"


def tumbling(size_ms):
    """Back-to-back windows of ``size_ms``, aligned to the epoch."""
    return _Assigner("tumbling", _positive("size", size_ms))


def sliding(size_ms, slide_ms):
    """Windows of ``size_ms`` starting every ``slide_ms`` (at most the size)."""
    size, slide = _positive("size", size_ms), _positive("slide", slide_ms)
    if slide > size:
        raise ValueError(f"window slide ({slide} ms) is larger than its size ({size} ms)")
    return _Assigner("sliding", size, slide)


def session(gap_ms):
    """Per key, records less than ``gap_ms`` apart share a window."""
    return _Assigner("session", _positive("gap", gap_ms))


class AggregateFunction:
    """``create`` an accumulator, ``add`` a value to it, ``merge`` two (when
    sessions merge), read the ``result``. ``add`` and ``merge`` return the
    new accumulator. Accumulators are stored as JSON, and passed through it
    as they are stored: use numbers, strings, lists and dicts with string
    keys."""

    def create(self):
        raise NotImplementedError

    def add(self, acc, value):
        raise NotImplementedError

    def merge(self, acc, other):
        raise NotImplementedError

    def result(self, acc):
        return acc


class Count(AggregateFunction):
    def create(self):
        return 0

    def add(self, acc, value):
        return acc + 1

    def merge(self, acc, other):
        return acc + other


class Sum(AggregateFunction):
    def create(self):
        return 0

    def add(self, acc, value):
        return acc + value

    def merge(self, acc, other):
        return acc + other


class _Extreme(AggregateFunction):
    """The accumulator is ``None`` until a value arrives."""

    def create(self):
        return None

    def add(self, acc, value):
        return value if acc is None or self._better(value, acc) else acc

    def merge(self, acc, other):
        return acc if other is None else self.add(acc, other)


class Min(_Extreme):
    _better = staticmethod(lambda a, b: a < b)


class Max(_Extreme):
    _better = staticmethod(lambda a, b: a > b)


class Average(AggregateFunction):
    """The mean as a float; the accumulator is ``[sum, count]``."""

    def create(self):
        return [0.0, 0]

    def add(self, acc, value):
        return [acc[0] + value, acc[1] + 1]

    def merge(self, acc, other):
        return [acc[0] + other[0], acc[1] + other[1]]

    def result(self, acc):
        return acc[0] / acc[1] if acc[1] else 0.0


class WindowResult:
    """A window's result: ``window`` and ``value``."""

    __slots__ = ("window", "value")

    def __init__(self, window, value):
        self.window, self.value = window, value

    @property
    def timestamp(self):
        """Results are stamped ``window.end - 1``."""
        return self.window.end - 1

    def emit(self, ctx, key):
        """Emits ``key -> {"key","window_start","window_end","value"}`` (JSON)
        at :attr:`timestamp`."""
        ctx.emit_at(key, {"key": key, "window_start": self.window.start,
                          "window_end": self.window.end, "value": self.value}, self.timestamp)

    def __eq__(self, other):
        return isinstance(other, WindowResult) and (self.window, self.value) == (other.window, other.value)

    def __repr__(self):
        return f"WindowResult({self.window!r}, {self.value!r})"


class Fired:
    """From :meth:`Windows.add`: a window updated within the allowed
    lateness after it fired; ``result`` is its new :class:`WindowResult`."""

    __slots__ = ("result",)

    def __init__(self, result):
        self.result = result


class Late:
    """From :meth:`Windows.add`: the record (event time ``timestamp``) came
    after all its windows were cleaned up and was not added."""

    __slots__ = ("timestamp",)

    def __init__(self, timestamp):
        self.timestamp = timestamp


# What a window takes in the stored JSON besides its accumulator (two
# 13-digit times, brackets and commas), and about what a number takes: the
# cache's memory estimate for windows changed since their last write.
_WINDOW_BYTES = 32
_NUMBER_BYTES = 20


def _number(x):
    """An int, bool or finite float: the same after a JSON round trip."""
    kind = type(x)
    return kind is int or kind is bool or (kind is float and math.isfinite(x))


class _KeyWindows:
    """A key's windows: ``{end: [start, acc, bytes]}`` in memory (``bytes``:
    about what the window takes in the JSON), stored as JSON ``[[start, end,
    acc], ...]`` by end (JSON object keys are text)."""

    def encode(self, windows):
        return JSON.encode([[slot[0], end, slot[1]] for end, slot in sorted(windows.items())])

    def decode(self, data):
        windows = JSON.decode(data)
        each = len(data) // max(1, len(windows))
        return {end: [start, acc, each] for start, end, acc in windows}


class Windows:
    """Windows of one kind over the records of each key, with one aggregate.
    Create it in ``open``; call :meth:`add` in ``process`` and
    :meth:`on_timer` in ``on_timer``."""

    def __init__(self, ctx, name, assigner, aggregate, allowed_lateness=0):
        if not isinstance(allowed_lateness, int) or allowed_lateness < 0:
            raise ValueError(f"allowed lateness must not be negative, got {allowed_lateness!r} ms")
        self.assigner, self.aggregate, self.lateness = assigner, aggregate, allowed_lateness
        self.name = name
        self._cache = WriteBackCache(ctx, ctx.value_state(name, _KeyWindows()))

    def _is_late(self, window, watermark):
        return window.max_timestamp() + self.lateness <= watermark

    def add(self, ctx, timestamp, value):
        """Adds a record to its windows for the current key; returns
        :class:`Fired` late updates and :class:`Late` (usually nothing)."""
        if timestamp is None:
            raise ValueError("a windowed record needs an event time")
        watermark = ctx.watermark()
        stored = self._cache.get(ctx) or {}
        outputs = []
        add = self._add_to_session if self.assigner.merging else self._add_to_windows
        if add(ctx, stored, timestamp, value, watermark, outputs):
            self._cache.set(ctx, stored, _size(stored))
        else:
            outputs.append(Late(timestamp))
        return outputs

    def _add_to_windows(self, ctx, stored, timestamp, value, watermark, outputs):
        live = [w for w in self.assigner.assign(timestamp) if not self._is_late(w, watermark)]
        # The aggregate (user code) runs, and its accumulators go through
        # JSON, before anything changes.
        accs = [self._kept(self.aggregate.add(self._acc(stored, w), value)) for w in live]
        for window, kept in zip(live, accs):
            self._store(ctx, stored, window, kept, watermark, outputs)
        return bool(live)

    def _kept(self, acc):
        """``(acc as a restore would give it back, about what it takes in
        the stored JSON)``. Numbers, bools, None and strings (that UTF-8 can
        hold) are the same after the round trip, and so is Average's ``[sum, count]``; anything
        else goes through the state's JSON, so the aggregate never sees an
        accumulator that a restore would change, and one that JSON cannot
        hold fails here, at the record that made it, not at a snapshot."""
        kind = type(acc)
        if _number(acc) or acc is None:
            return acc, _NUMBER_BYTES
        if kind is str:
            # A lone surrogate (JSON "\ud800" decodes to one) has no UTF-8.
            try:
                return acc, len(acc.encode("utf-8")) + 2
            except UnicodeEncodeError as e:
                raise self._not_json(e) from None
        if kind is list and len(acc) == 2 and _number(acc[0]) and _number(acc[1]):
            return [acc[0], acc[1]], 2 * _NUMBER_BYTES
        try:
            data = JSON.encode(acc)
        except (TypeError, ValueError, RecursionError) as e:
            raise self._not_json(e) from None
        return JSON.decode(data), len(data)

    def _not_json(self, e):
        return TypeError(
            f"window state `{self.name}`: the accumulator of {type(self.aggregate).__name__} "
            f"cannot be stored as JSON ({type(e).__name__}: {e}); window state is stored as "
            "JSON: use numbers, strings, lists and dicts with string keys")

    def _acc(self, stored, window):
        slot = stored.get(window.end)
        return self.aggregate.create() if slot is None else slot[1]

    def _store(self, ctx, stored, window, kept, watermark, outputs):
        acc, size = kept
        fire_at = window.max_timestamp()
        if fire_at <= watermark:
            outputs.append(Fired(WindowResult(window, self.aggregate.result(acc))))
        else:
            ctx.register_event_timer(fire_at)
        if self.lateness > 0:
            ctx.register_event_timer(fire_at + self.lateness)
        stored[window.end] = [window.start, acc, _WINDOW_BYTES + size]

    def _add_to_session(self, ctx, stored, timestamp, value, watermark, outputs):
        merged = self.assigner.assign(timestamp)[0]
        # By end, so accumulators merge in the same order after a restore.
        others = [(Window(slot[0], end), slot[1]) for end, slot in sorted(stored.items())]
        absorbed = []
        while True:
            touching = [o for o in others if o[0].intersects(merged)]
            if not touching:
                break
            for o in touching:
                others.remove(o)
                merged = merged.cover(o[0])
                absorbed.append(o)
        if self._is_late(merged, watermark):
            return False
        acc = self.aggregate.add(self.aggregate.create(), value)
        for _, other in absorbed:
            acc = self.aggregate.merge(acc, other)
        kept = self._kept(acc)
        for window, _ in absorbed:
            if window.end != merged.end:
                del stored[window.end]
                self._forget_timers(ctx, window, [merged] + [w for w, _ in others])
        self._store(ctx, stored, merged, kept, watermark, outputs)
        return True

    def _forget_timers(self, ctx, gone, remaining):
        def times(w):
            return {w.max_timestamp(), w.max_timestamp() + self.lateness}

        needed = set().union(*(times(w) for w in remaining))
        for t in times(gone) - needed:
            ctx.delete_event_timer(t)

    def on_timer(self, ctx, timer):
        """Handles a fired timer for the current key: returns the results of
        the window it fires and drops windows whose lateness it ends. Other
        timers find no window and return nothing."""
        if timer.domain != EVENT_TIME:
            return []
        stored = self._cache.get(ctx)
        if not stored:
            return []
        end = timer.timestamp + 1
        slot = stored.get(end)
        results = []
        if slot is not None:
            results.append(WindowResult(Window(slot[0], end), self.aggregate.result(slot[1])))
        # Without lateness the window goes as it fires; with it, this is the
        # clean-up timer of the window that ended `lateness` earlier.
        if stored.pop(end - self.lateness, None) is not None:
            self._cache.set(ctx, stored or None, _size(stored))
        return results


def _size(windows):
    """About what a key's windows take in the stored JSON."""
    return 2 + sum(slot[2] for slot in windows.values())
