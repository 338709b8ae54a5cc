"""Unit tests of weir.window through the native harness: every assigner
and aggregate, allowed lateness, late records, session merges, state held
in the instance until a snapshot, and windows compared with a brute-force
computation over a shuffled input (in batches, with restarts and a cache
small enough to evict).
Run: python3 -m unittest discover -s guest-sdk/python/tests"""

import os
import random
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import weir  # noqa: E402
from weir.testing import Harness  # noqa: E402
from weir.window import (  # noqa: E402
    AggregateFunction, Average, Count, Fired, Late, Max, Min, Sum, Window, Windows,
    session, sliding, tumbling,
)


def assigner_of(spec):
    kind, *numbers = spec.split(":")
    return {"tumbling": tumbling, "sliding": sliding, "session": session}[kind](*map(int, numbers))


class Distinct(AggregateFunction):
    """A user aggregate: the sorted distinct values."""

    def create(self):
        return []

    def add(self, acc, value):
        return sorted(set(acc) | {value})

    def merge(self, acc, other):
        return sorted(set(acc) | set(other))


class Histogram(AggregateFunction):
    """A user aggregate written carelessly for JSON: value -> count with the
    values (ints) as dict keys, which JSON stores as strings."""

    def create(self):
        return {}

    def add(self, acc, value):
        acc = dict(acc)
        acc[value] = acc.get(value, 0) + 1
        return acc

    def merge(self, acc, other):
        acc = dict(acc)
        for value, n in other.items():
            acc[value] = acc.get(value, 0) + n
        return acc

    def result(self, acc):
        return sorted((repr(k), n) for k, n in acc.items())


class Seen(AggregateFunction):
    """A user aggregate JSON cannot hold: a set."""

    def create(self):
        return set()

    def add(self, acc, value):
        return acc | {value}

    def merge(self, acc, other):
        return acc | other

    def result(self, acc):
        return sorted(acc)


class Text(AggregateFunction):
    """The values (strings) one after the other."""

    def create(self):
        return ""

    def add(self, acc, value):
        return acc + value

    def merge(self, acc, other):
        return acc + other


AGGREGATES = {"count": Count, "sum": Sum, "min": Min, "max": Max, "avg": Average, "distinct": Distinct,
              "histogram": Histogram, "seen": Seen, "text": Text}


class WinOp(weir.Operator):
    """Configured by ``assigner``, ``aggregate``, ``lateness``,
    ``cache_keys`` and ``cache_bytes`` (how many keys and bytes the window
    state cache holds); late records become ``key -> "late:TS"``."""

    key = str
    value = weir.JSON

    def open(self, ctx):
        self.windows = Windows(ctx, "windows", assigner_of(ctx.config("assigner", "tumbling:1000")),
                               AGGREGATES[ctx.config("aggregate", "count")](),
                               allowed_lateness=ctx.config("lateness", 0, int))
        keys = ctx.config("cache_keys", None, int)
        if keys is not None:
            self.windows._cache.keys_max = keys
        size = ctx.config("cache_bytes", None, int)
        if size is not None:
            self.windows._cache.bytes_max = size

    def process(self, ctx, record):
        for out in self.windows.add(ctx, record.timestamp, record.value):
            if isinstance(out, Late):
                ctx.emit(record.key, f"late:{out.timestamp}")
            else:
                self.assert_fired(out)
                out.result.emit(ctx, record.key)

    @staticmethod
    def assert_fired(out):
        assert isinstance(out, Fired), out

    def on_timer(self, ctx, timer):
        for result in self.windows.on_timer(ctx, timer):
            result.emit(ctx, timer.key)


def harness(assigner, aggregate="count", lateness=0, hold_back=True, cache_keys=None, cache_bytes=None):
    """``hold_back`` False acts as a host that does not call
    ``prepare-snapshot``, so window state is written back after every call
    (restart such a harness with ``restart(prepare=hold_back)``)."""
    config = {"assigner": assigner, "aggregate": aggregate, "lateness": lateness,
              "weir.prepare_snapshot": "1" if hold_back else "0"}
    if cache_keys is not None:
        config["cache_keys"] = cache_keys
    if cache_bytes is not None:
        config["cache_bytes"] = cache_bytes
    return Harness(WinOp, config)


def results(out):
    return [(e.key, e.json()["window_start"], e.json()["window_end"], e.json()["value"], e.timestamp)
            for e in out]


class Assigners(unittest.TestCase):
    def test_windows_of_a_timestamp(self):
        self.assertEqual(tumbling(1000).assign(-1), [Window(-1000, 0)])
        self.assertEqual(sliding(1000, 250).assign(1100),
                         [Window(250, 1250), Window(500, 1500), Window(750, 1750), Window(1000, 2000)])
        self.assertEqual(sliding(300, 200).assign(450), [Window(200, 500), Window(400, 700)])
        self.assertEqual(session(30).assign(7), [Window(7, 37)])

    def test_bad_sizes(self):
        for make in (lambda: tumbling(0), lambda: sliding(10, 20), lambda: session(-1), lambda: tumbling("5")):
            with self.assertRaisesRegex(ValueError, "window"):
                make()
        with self.assertRaisesRegex(ValueError, "lateness"):
            harness("tumbling:10", lateness=-1)


class Firing(unittest.TestCase):
    def test_tumbling_count_fires_once_at_end_minus_one(self):
        h = harness("tumbling:1000")
        for key, ts in [("a", 10), ("b", 500), ("a", 999), ("a", 1000)]:
            self.assertEqual(h.process(key, 1, ts), [])
        self.assertEqual(h.advance_watermark(998), [])
        self.assertEqual(results(h.advance_watermark(999)),
                         [("a", 0, 1000, 2, 999), ("b", 0, 1000, 1, 999)])
        self.assertEqual(results(h.advance_watermark(5000)), [("a", 1000, 2000, 1, 1999)])
        self.assertEqual(h.pending_timers(), [])

    def test_each_aggregate(self):
        values = [5, -3, 8, 1]
        want = {"count": 4, "sum": 11, "min": -3, "max": 8, "avg": 2.75, "distinct": [-3, 1, 5, 8]}
        for name, expected in want.items():
            h = harness("tumbling:100", name)
            for i, v in enumerate(values):
                h.process("k", v, i * 30)
            self.assertEqual(results(h.advance_watermark(99))[0][3], expected, name)

    def test_sessions_merge_and_drop_the_absorbed_timers(self):
        h = harness("session:100", "distinct")
        h.process("k", 1, 0)      # [0,100)
        h.process("k", 2, 300)    # [300,400)
        h.process("j", 3, 50)     # [50,150)
        h.process("k", 4, 100)    # touches [0,100): [0,200)
        self.assertEqual([t[1] for t in h.pending_timers()], [149, 199, 399])
        h.process("k", 5, 200)    # bridges: [0,400)
        self.assertEqual(len(h.pending_timers()), 2)
        self.assertEqual(results(h.advance_watermark(1000)),
                         [("j", 50, 150, [3], 149), ("k", 0, 400, [1, 2, 4, 5], 399)])

    def test_allowed_lateness(self):
        h = harness("tumbling:1000", lateness=500)
        h.process("k", 1, 100)
        self.assertEqual(results(h.advance_watermark(999)), [("k", 0, 1000, 1, 999)])
        self.assertEqual(results(h.process("k", 1, 400)), [("k", 0, 1000, 2, 999)])
        h.advance_watermark(1999)
        self.assertEqual(results(h.process("k", 1, 1500)), [("k", 1000, 2000, 1, 1999)])
        out = h.process("k", 1, 10)
        self.assertEqual([(e.key, e.value) for e in out], [("k", "late:10")])
        self.assertEqual(len(h.pending_timers()), 1)
        self.assertEqual(h.advance_watermark(3000), [])
        self.assertEqual(h.pending_timers(), [])

    def test_no_lateness_means_late_once_fired(self):
        h = harness("sliding:1000:500")
        h.advance_watermark(1200)
        self.assertEqual(h.process("k", 1, 900), [])
        self.assertEqual(h.process("k", 1, 400)[0].value, "late:400")
        self.assertEqual(results(h.advance_watermark(1499)), [("k", 500, 1500, 1, 1499)])

    def test_the_state_is_one_json_value_per_key(self):
        h = harness("sliding:1000:500", "avg")
        h.process("k", 3, 700)
        h.prepare_snapshot()
        self.assertEqual(h.host.values[(0, b"k")], b"[[0,1000,[3.0,1]],[500,1500,[3.0,1]]]")


def values(h):
    """The window state the host holds: key -> stored JSON."""
    return {k.decode(): v.decode() for (s, k), v in h.host.values.items() if s == 0}


class HoldBack(unittest.TestCase):
    def test_state_stays_in_the_guest_until_the_host_prepares_a_snapshot(self):
        for hold_back in (True, False):
            h = harness("tumbling:1000", hold_back=hold_back)
            for key, ts in [("a", 10), ("b", 500), ("a", 999)]:
                h.process(key, 1, ts)
            # A host that snapshots only after `prepare-snapshot` holds
            # nothing yet; one that may snapshot between any two calls
            # holds it all, written once per call.
            self.assertEqual(len(values(h)), 0 if hold_back else 2, hold_back)
            self.assertEqual(h.host.calls["value-write-many"], 0 if hold_back else 3)
            h.prepare_snapshot()
            self.assertEqual(values(h), {"a": "[[0,1000,2]]", "b": "[[0,1000,1]]"})
            self.assertEqual(h.host.calls["value-set"] + h.host.calls["clear"], 0)
            # A restore from that snapshot fires the windows as if none happened.
            h.restart(prepare=hold_back)
            self.assertEqual(results(h.advance_watermark(999)),
                             [("a", 0, 1000, 2, 999), ("b", 0, 1000, 1, 999)])
            # Fired: the next snapshot clears both keys.
            h.prepare_snapshot()
            self.assertEqual(values(h), {})
            self.assertEqual(h.host.write_batches[-1], (0, [(b"a", None), (b"b", None)]))

    def test_a_call_writes_all_its_changed_keys_in_one_call(self):
        h = harness("tumbling:1000", hold_back=False)
        h.process_batch([(ts, key, 1) for ts, key in [(1, "a"), (2, "b"), (3, "a"), (4, "c")]])
        self.assertEqual(h.host.calls["value-write-many"], 1)
        self.assertEqual([k for k, _ in h.host.write_batches[0][1]], [b"a", b"b", b"c"])
        # Keys seen before are not read again.
        self.assertEqual(h.host.calls["value-get"], 3)
        h.process("a", 1, 5)
        self.assertEqual(h.host.calls["value-get"], 3)
        self.assertEqual(h.host.write_batches[-1], (0, [(b"a", b"[[0,1000,3]]")]))

    def test_a_window_opened_and_fired_between_snapshots_is_written_as_a_clear(self):
        h = harness("session:100")
        h.process("a", 1, 10)
        self.assertEqual(results(h.advance_watermark(200)), [("a", 10, 110, 1, 109)])
        self.assertEqual(h.host.calls["value-write-many"], 0)
        h.prepare_snapshot()
        self.assertEqual(h.host.write_batches, [(0, [(b"a", None)])])
        # Nothing changed since: nothing to write.
        h.prepare_snapshot()
        self.assertEqual(h.host.calls["value-write-many"], 1)

    def test_a_full_cache_writes_back_the_least_recently_used_keys(self):
        h = harness("tumbling:1000", cache_keys=8)
        for i in range(8):
            h.process(f"k{i}", 1, 10)
        self.assertEqual(h.host.calls["value-write-many"], 0)
        h.process("k0", 1, 20)   # k1 is now the least recently used
        h.process("k8", 1, 30)   # the ninth key evicts one eighth: k1
        self.assertEqual(h.host.write_batches, [(0, [(b"k1", b"[[0,1000,1]]")])])
        self.assertEqual(len(h.operator.windows._cache.values), 8)
        # An evicted key is read back from the host.
        reads = h.host.calls["value-get"]
        h.process("k1", 1, 40)
        self.assertEqual(h.host.calls["value-get"], reads + 1)
        out = sorted(results(h.advance_watermark(999)))
        self.assertEqual(out, [(f"k{i}", 0, 1000, 2 if i < 2 else 1, 999) for i in range(9)])
        h.prepare_snapshot()
        self.assertEqual(values(h), {})

    def test_timers_of_a_call_reach_the_host_in_one_call(self):
        h = harness("sliding:1000:500", lateness=100)
        h.process_batch([(700, "a", 1), (800, "b", 1), (900, "a", 1)])
        self.assertEqual(h.host.calls["register-timer"], 0)
        self.assertEqual(h.host.calls["register-timers"], 1)
        # Fire and clean-up timers of windows [0,1000) and [500,1500), per
        # registration, repeats included (the host keeps each once).
        per_record = lambda key: [(0, t, key) for t in (999, 1099, 1499, 1599)]  # noqa: E731
        self.assertEqual(h.host.timer_batches,
                         [per_record(b"a") + per_record(b"b") + per_record(b"a")])
        self.assertEqual(len(h.pending_timers()), 8)


class Accumulators(unittest.TestCase):
    """An accumulator is what a restore gives back from the first record on."""

    RECORDS = [("k", 1, 10), ("k", 2, 20), ("j", 1, 30), ("k", 1, 40), ("k", 1, 1500), ("k", 2, 1600)]

    def run_records(self, restart_every, hold_back=True, spec="tumbling:1000", aggregate="histogram"):
        h = harness(spec, aggregate, hold_back=hold_back)
        out = []
        for i, (key, value, ts) in enumerate(self.RECORDS):
            out += h.process(key, value, ts)
            if restart_every and i % restart_every == 0:
                h.restart(prepare=hold_back)
        return results(out + h.advance_watermark(10_000))

    def test_a_dict_with_int_keys_gives_the_same_results_with_and_without_restarts(self):
        for spec in ("tumbling:1000", "session:100"):
            want = self.run_records(0, spec=spec)
            for restart_every, hold_back in [(1, True), (2, True), (1, False), (3, False)]:
                with self.subTest(spec=spec, restart_every=restart_every, hold_back=hold_back):
                    self.assertEqual(self.run_records(restart_every, hold_back, spec), want)
        # The keys are strings from the first record on, as after a restore:
        # `acc.get(1)` never finds "1", so each count stays at 1.
        self.assertEqual(self.run_records(0), [
            ("j", 0, 1000, [["'1'", 1]], 999),
            ("k", 0, 1000, [["'1'", 1], ["'2'", 1]], 999),
            ("k", 1000, 2000, [["'1'", 1], ["'2'", 1]], 1999),
        ])

    def test_an_accumulator_json_cannot_hold_fails_its_record_not_the_snapshot(self):
        h = harness("tumbling:1000", "seen")
        with self.assertRaisesRegex(
                TypeError, r"window state `windows`: the accumulator of Seen cannot be stored as JSON "
                r"\(TypeError: Object of type set is not JSON serializable\)"):
            h.process("k", 1, 10)
        h.prepare_snapshot()
        self.assertEqual(values(h), {})
        # A float JSON has no number for fails as well.
        h = harness("tumbling:1000", "sum")
        h.process("k", weir.Json(1e308), 10)
        with self.assertRaisesRegex(TypeError, "accumulator of Sum cannot be stored as JSON"):
            h.process("k", weir.Json(1e308), 20)
        h.prepare_snapshot()
        self.assertEqual(values(h), {"k": "[[0,1000,1e+308]]"})

    def test_a_string_with_a_lone_surrogate_fails_its_record_not_the_snapshot(self):
        # JSON "\ud800" decodes to a str that UTF-8 cannot hold.
        for aggregate, name in (("max", "Max"), ("text", "Text")):
            with self.subTest(aggregate=aggregate):
                h = harness("tumbling:1000", aggregate)
                h.process("k", weir.Json("a"), 10)
                with self.assertRaisesRegex(
                        TypeError, rf"window state `windows`: the accumulator of {name} cannot be stored as JSON "
                        r"\(UnicodeEncodeError: "):
                    h.process("k", b'"\\ud800"', 20)
                h.prepare_snapshot()
                self.assertEqual(values(h), {"k": '[[0,1000,"a"]]'})
        # The size estimate counts UTF-8 bytes.
        self.assertEqual(harness("tumbling:1000").operator.windows._kept("\u00e9\u20ac")[1], 2 + 3 + 2)

    def test_numbers_strings_and_averages_are_kept_as_they_are(self):
        windows = harness("tumbling:1000").operator.windows
        for acc in (0, -7, 2.5, True, None, "text"):
            self.assertIs(windows._kept(acc)[0], acc)
        average = [1.5, 2]
        kept = windows._kept(average)[0]
        self.assertEqual(kept, average)
        self.assertIsNot(kept, average)
        self.assertEqual(windows._kept((1, {2: (3,)}))[0], [1, {"2": [3]}])


def encoded_size(writes):
    return len(weir.wire.write_value_writes(writes))


class Bounds(unittest.TestCase):
    def test_the_cache_stays_within_its_bytes(self):
        limit = 64 << 10
        h = harness("tumbling:1000", "text", cache_bytes=limit)
        cache = h.operator.windows._cache
        for i in range(40):
            h.process(f"k{i}", weir.Json("x" * 5000), 10)
            self.assertLessEqual(cache.bytes, limit)
            self.assertEqual(cache.bytes, sum(cache.sizes.values()))
        # Far fewer than 65,536 keys: the bytes bound them.
        self.assertLessEqual(len(cache.values), 13)
        written = {k for _, writes in h.host.write_batches for k, _ in writes}
        self.assertGreaterEqual(len(written), 27)
        # An evicted key is read back; a written one counts at its exact size.
        reads = h.host.calls["value-get"]
        h.process("k0", weir.Json("y"), 20)
        self.assertEqual(h.host.calls["value-get"], reads + 1)
        h.prepare_snapshot()
        self.assertEqual(cache.sizes[b"k0"], 2 + len(b'[[0,1000,"' + b"x" * 5000 + b'y"]]'))
        self.assertEqual(cache.bytes, sum(cache.sizes.values()))
        out = results(h.advance_watermark(999))
        self.assertEqual(sorted(k for k, *_ in out), sorted(f"k{i}" for i in range(40)))
        self.assertEqual(out[0][3], "x" * 5000 + "y")
        self.assertEqual(len({r[3] for r in out[1:]}), 1)
        h.prepare_snapshot()
        self.assertEqual(values(h), {})

    def test_a_key_bigger_than_the_bound_is_kept_while_it_is_at_hand(self):
        h = harness("tumbling:1000", "text", cache_bytes=1000)
        cache = h.operator.windows._cache
        h.process("small", weir.Json("s"), 10)
        h.process("big", weir.Json("b" * 2000), 10)
        self.assertEqual(list(cache.values), [b"big"])
        h.process("big", weir.Json("b"), 20)
        self.assertEqual(h.host.calls["value-get"], 2)
        self.assertEqual(results(h.advance_watermark(999)),
                         [("big", 0, 1000, "b" * 2001, 999), ("small", 0, 1000, "s", 999)])

    def test_a_big_flush_goes_over_in_calls_of_at_most_4_mib(self):
        h = harness("tumbling:1000", "text")
        keys = [f"k{i}" for i in range(40)]
        for key in keys:
            h.process(key, weir.Json(key[-1] * 300_000), 10)
        self.assertEqual(h.host.calls["value-write-many"], 0)
        h.prepare_snapshot()
        batches = [writes for _, writes in h.host.write_batches]
        # 13 keys of 300,017 bytes and their lengths fit in 4 MiB.
        self.assertEqual([len(w) for w in batches], [13, 13, 13, 1])
        for writes in batches:
            self.assertLessEqual(encoded_size(writes), 4 << 20)
        self.assertEqual([k for writes in batches for k, _ in writes], [k.encode() for k in keys])
        self.assertEqual(values(h), {k: f'[[0,1000,"{k[-1] * 300_000}"]]' for k in keys})
        # Through a restore, every window is there.
        h.restart()
        out = results(h.advance_watermark(999))
        self.assertEqual([(k, v) for k, _, _, v, _ in out], sorted((k, k[-1] * 300_000) for k in keys))

    def test_an_eviction_write_back_is_split_too(self):
        h = harness("tumbling:1000", "text", cache_keys=16)
        cache = h.operator.windows._cache
        cache.write_bytes_max = 10_000
        for i in range(16):
            h.process(f"k{i:02}", weir.Json("v" * 3000), 10)
        # Two eighths of 16 keys go: 2 keys a call.
        h.process("k16", weir.Json("v"), 10)
        self.assertEqual([[k for k, _ in w] for _, w in h.host.write_batches], [[b"k00", b"k01"]])
        cache.keys_max = 8
        h.process("k17", weir.Json("v"), 10)
        self.assertEqual([[k for k, _ in w] for _, w in h.host.write_batches][1:],
                         [[b"k02", b"k03", b"k04"], [b"k05", b"k06", b"k07"], [b"k08", b"k09"]])


class OlderHost(unittest.TestCase):
    """A host from before `prepare-snapshot` neither sets the config entry
    nor calls it before a snapshot: ``restart(prepare=False)``."""

    def test_state_written_every_call_survives_a_snapshot_taken_without_preparing(self):
        h = harness("tumbling:1000", hold_back=False)
        h.process("a", 1, 10)
        h.process("a", 1, 20)
        h.restart(prepare=False)
        h.process("a", 1, 30)
        h.restart(prepare=False)
        self.assertEqual(results(h.advance_watermark(999)), [("a", 0, 1000, 3, 999)])

    def test_restart_without_preparing_does_not_flush(self):
        # What hold-back would lose under such a host: why the SDK holds
        # nothing back unless the host says it calls `prepare-snapshot`.
        h = harness("tumbling:1000", hold_back=True)
        h.process("a", 1, 10)
        h.restart(prepare=False)
        self.assertEqual(h.host.calls["value-write-many"], 0)
        self.assertEqual(results(h.advance_watermark(999)), [])


def brute_force(spec, records):
    kind, *n = spec.split(":")
    n = [int(x) for x in n]
    sums = {}
    if kind == "session":
        gap = n[0]
        for key in sorted({k for k, _, _ in records}):
            recs = sorted((ts, v) for k, ts, v in records if k == key)
            start, last, total = recs[0][0], recs[0][0], 0
            for ts, v in recs:
                if ts > last + gap:
                    sums[(key, start, last + gap)] = total
                    start, total = ts, 0
                last, total = ts, total + v
            sums[(key, start, last + gap)] = total
    else:
        size, slide = (n[0], n[0]) if kind == "tumbling" else n
        for key, ts, v in records:
            start = ts - ts % slide
            while start > ts - size:
                sums[(key, start, start + size)] = sums.get((key, start, start + size), 0) + v
                start -= slide
    return sorted((k, s, e, v, e - 1) for (k, s, e), v in sums.items())


class AgainstBruteForce(unittest.TestCase):
    def check(self, spec, delay=300, keys=5, batched=False, hold_back=True):
        """Feeds a shuffled input; ``batched`` sends it in batches of 1-64
        records to a cache of 16 keys, restarting every 7th batch: what
        the cache held must have reached the state by then."""
        rng = random.Random(7)
        h = harness(spec, "sum", hold_back=hold_back, cache_keys=16 if batched else None)
        records, out, max_ts, batch, size, batches = [], [], 0, [], 1, 0
        for i in range(1500):
            ts = max(0, i * 7 - rng.randrange(delay))
            key, v = f"k{rng.randrange(keys)}", rng.randrange(100)
            batch.append((ts, key, v))
            records.append((key, ts, v))
            max_ts = max(max_ts, ts)
            if len(batch) >= size:
                out += h.process_batch(batch)
                batch, batches = [], batches + 1
                if batched:
                    size = 1 + rng.randrange(64)
                    if batches % 7 == 0:
                        h.restart(prepare=hold_back)
            if i % 50 == 0 and not batch:
                out += h.advance_watermark(max_ts - delay)
        out += h.process_batch(batch)
        out += h.advance_watermark(2 ** 62)
        self.assertEqual(sorted(results(out)), brute_force(spec, records), spec)
        self.assertEqual(h.pending_timers(), [])
        h.prepare_snapshot()
        self.assertEqual(values(h), {})

    def test_tumbling(self):
        self.check("tumbling:500")

    def test_sliding(self):
        self.check("sliding:600:200")
        self.check("sliding:500:300", delay=100)

    def test_sessions(self):
        self.check("session:40")

    def test_batches_with_evictions_and_restarts(self):
        for hold_back in (True, False):
            for spec, keys in [("tumbling:500", 5), ("tumbling:500", 60), ("sliding:600:200", 60),
                               ("session:40", 60), ("session:40", 5)]:
                with self.subTest(spec=spec, keys=keys, hold_back=hold_back):
                    self.check(spec, keys=keys, batched=True, hold_back=hold_back)


if __name__ == "__main__":
    unittest.main()
