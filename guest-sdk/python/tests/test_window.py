"""Unit tests of weir.window through the native harness: every assigner
and aggregate, allowed lateness, late records, session merges, and windows
compared with a brute-force computation over a shuffled input.
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


AGGREGATES = {"count": Count, "sum": Sum, "min": Min, "max": Max, "avg": Average, "distinct": Distinct}


class WinOp(weir.Operator):
    """Configured by ``assigner``, ``aggregate`` and ``lateness``; late
    records become ``key -> "late:TS"``."""

    key = str
    value = weir.JSON

    def open(self, ctx):
        self.windows = Windows(ctx, "windows", assigner_of(ctx.config("assigner", "tumbling:1000")),
                               AGGREGATES[ctx.config("aggregate", "count")](),
                               allowed_lateness=ctx.config("lateness", 0, int))

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


def harness(assigner, aggregate="count", lateness=0):
    return Harness(WinOp, {"assigner": assigner, "aggregate": aggregate, "lateness": lateness})


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

    def test_the_state_is_the_rust_sdks(self):
        h = harness("tumbling:1000", "avg")
        h.process("k", 3, 5)
        self.assertEqual(h.host.maps[(0, b"k")], {b"1000": b"[0,[3.0,1]]"})


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
    def check(self, spec, delay=300):
        rng = random.Random(7)
        h = harness(spec, "sum")
        records, out, max_ts = [], [], 0
        for i in range(1500):
            ts = max(0, i * 7 - rng.randrange(delay))
            key, v = f"k{rng.randrange(5)}", rng.randrange(100)
            out += h.process(key, v, ts)
            records.append((key, ts, v))
            max_ts = max(max_ts, ts)
            if i % 50 == 0:
                out += h.advance_watermark(max_ts - delay)
        out += h.advance_watermark(2 ** 62)
        self.assertEqual(sorted(results(out)), brute_force(spec, records), spec)
        self.assertEqual(h.pending_timers(), [])

    def test_tumbling(self):
        self.check("tumbling:500")

    def test_sliding(self):
        self.check("sliding:600:200")
        self.check("sliding:500:300", delay=100)

    def test_sessions(self):
        self.check("session:40")


if __name__ == "__main__":
    unittest.main()
