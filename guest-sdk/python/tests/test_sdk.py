"""Unit tests of the Python guest SDK: encodings shared with the Rust SDK,
the batch format, and the runtime driven through the test harness.
Run: python3 -m unittest discover -s guest-sdk/python/tests"""

import os
import sys
import types
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "../../../examples/fraud-detection/operators/fraud-detector-py"))
sys.path.insert(0, os.path.join(HERE, "../../../examples/polyglot/operators/window-count-py"))

import weir  # noqa: E402
from weir import codec, wire  # noqa: E402
from weir.testing import Harness, MemoryHost  # noqa: E402


class Codecs(unittest.TestCase):
    def test_numbers_are_decimal_text_as_rust_prints_them(self):
        self.assertEqual(codec.INT.encode(-42), b"-42")
        self.assertEqual(codec.INT.encode(2 ** 64 - 1), b"18446744073709551615")
        self.assertEqual(codec.INT.decode(b" 12 "), 12)
        # Rust's Display for f64: no ".0", no exponent.
        for x, text in [(1.0, "1"), (1.5, "1.5"), (-0.25, "-0.25"), (1e21, "1000000000000000000000"),
                        (1e-7, "0.0000001"), (0.1 + 0.2, "0.30000000000000004"),
                        (float("inf"), "inf"), (float("nan"), "NaN")]:
            self.assertEqual(codec.format_float(x), text)
        self.assertEqual(codec.BOOL.encode(True), b"true")

    def test_errors_say_what_was_expected(self):
        with self.assertRaisesRegex(codec.DecodeError, "'x' is not an int"):
            codec.INT.decode(b"x")
        with self.assertRaisesRegex(codec.DecodeError, "not UTF-8"):
            codec.STR.decode(b"\xff")
        with self.assertRaisesRegex(codec.DecodeError, "not valid JSON"):
            codec.JSON.decode(b"{")

    def test_json_is_compact_utf8_like_serde_json(self):
        self.assertEqual(codec.encode_any({"a": 1, "b": "é", "c": 750.0}), '{"a":1,"b":"é","c":750.0}'.encode())
        self.assertEqual(codec.encode_any(weir.Json("x")), b'"x"')
        self.assertEqual(codec.encode_any(None), b"")

    def test_value_writes_round_trip_with_clears(self):
        writes = [(b"a", b"1"), (b"", None), (b"c", b"")]
        data = wire.write_value_writes(writes)
        self.assertEqual(data[:4], b"\x03\x00\x00\x00")
        self.assertEqual(data[14:22], b"\x00\x00\x00\x00\xff\xff\xff\xff")
        self.assertEqual(wire.read_value_writes(data), writes)

    def test_a_timer_batch_is_the_on_timers_format(self):
        # As the host reads it (host/wasm/src/host/lists.rs, ListReader::timer):
        # count u32, then per timer timestamp i64, domain u8 (0 event time,
        # 1 processing time), key length u32 and the key, little-endian.
        timers = [(5, 0, b"k"), (-(2 ** 40) - 1, 1, b""), (-(2 ** 63), 0, b"ab")]
        want = ("03000000"
                "0500000000000000" "00" "01000000" "6b"
                "fffffffffffeffff" "01" "00000000"
                "0000000000000080" "00" "02000000" "6162")
        batch = wire.TimerBatch()
        for ts, domain, key in timers:
            batch.push(domain, key, ts)
        self.assertEqual(batch.finish().hex(), want)
        self.assertEqual(batch.size, len(want) // 2)
        # The harness hands fired timers over in the same format.
        self.assertEqual(wire.write_timers(timers).hex(), want)
        self.assertEqual(list(wire.read_timers(bytes.fromhex(want))), timers)

    def test_batch_round_trip_and_truncation(self):
        records = [(None, b"k", b"v"), (-5, b"", b"\x00" * 3)]
        data = wire.write_batch(records)
        self.assertEqual(list(wire.read_batch(data)), records)
        with self.assertRaises(wire.MalformedBatch):
            list(wire.read_batch(data[:-1]))


class Count(weir.Operator):
    key = str
    value = str

    def open(self, ctx):
        self.seen = ctx.value_state("seen", int)
        self.items = ctx.list_state("items", str)
        self.by_len = ctx.map_state("by-len", int, int)

    def process(self, ctx, record):
        n = self.seen.get(ctx, 0) + 1
        self.seen.set(ctx, n)
        self.items.add(ctx, record.value)
        self.by_len.put(ctx, len(record.value), self.by_len.get(ctx, len(record.value), 0) + 1)
        ctx.register_event_timer(100)
        ctx.emit(record.key, n)

    def on_timer(self, ctx, timer):
        ctx.emit(timer.key, {"items": self.items.get(ctx), "by_len": self.by_len.entries(ctx)})
        self.items.clear(ctx)


class Runtime(unittest.TestCase):
    def test_state_is_scoped_to_the_key(self):
        h = Harness(Count)
        self.assertEqual([e.value for e in h.process("a", "x")], ["1"])
        self.assertEqual([e.value for e in h.process("b", "yy")], ["1"])
        self.assertEqual([e.value for e in h.process("a", "zz", 7)], ["2"])
        out = h.advance_watermark(100)
        self.assertEqual(sorted((e.key, e.value) for e in out), [
            ("a", '{"items":["x","zz"],"by_len":[[1,1],[2,1]]}'),
            ("b", '{"items":["yy"],"by_len":[[2,1]]}'),
        ])
        self.assertEqual(out[0].timestamp, 100)
        self.assertEqual(h.pending_timers(), [])

    def test_a_bad_record_names_its_index(self):
        class Ints(weir.Operator):
            value = int

            def process(self, ctx, record):
                pass

        h = Harness(Ints)
        with self.assertRaisesRegex(weir.DecodeError, "record 1: value: 'nope' is not an int"):
            h.process_batch([(None, "k", 1), (None, "k", "nope")])

    def test_exceptions_are_described_with_their_location(self):
        class Boom(weir.Operator):
            def process(self, ctx, record):
                raise KeyError("missing")

        try:
            Harness(Boom).process("k", "v")
        except KeyError as e:
            text = weir._runtime.describe(e)
        self.assertRegex(text, r"^KeyError: 'missing' \(at test_sdk.py:\d+ in process\)$")


class Timers(weir.Operator):
    """"set T" registers an event timer at T, "both T" registers T and T+1
    and deletes T, "drop T" deletes T, "proc T" registers a processing-time
    timer, "fail T" registers T and raises: all within one call each."""

    def process(self, ctx, record):
        what, at = record.value.split(" ")
        at = int(at)
        if what == "set":
            ctx.register_event_timer(at)
        elif what == "both":
            ctx.register_event_timer(at)
            ctx.register_event_timer(at + 1)
            ctx.delete_event_timer(at)
        elif what == "proc":
            ctx.register_processing_timer(at)
        elif what == "fail":
            ctx.register_event_timer(at)
            raise RuntimeError("failed after registering")
        else:
            ctx.delete_event_timer(at)


def pending(h):
    return [ts for _, ts, _ in h.pending_timers()]


class HeldBackTimers(unittest.TestCase):
    def test_a_calls_timers_reach_the_host_in_one_call(self):
        h = Harness(Timers)
        h.process_batch([(None, "a", "set 5"), (None, "b", "proc 9"), (None, "a", "set 7")])
        self.assertEqual(h.host.calls["register-timer"], 0)
        self.assertEqual(h.host.timer_batches, [[(0, 5, b"a"), (1, 9, b"b"), (0, 7, b"a")]])
        self.assertEqual(h.pending_timers(), [(0, 5, b"a"), (0, 7, b"a"), (1, 9, b"b")])
        # A call that registers nothing calls nothing.
        h.process("a", "drop 1")
        self.assertEqual(h.host.calls["register-timers"], 1)

    def test_held_back_timers_reach_the_host_in_order_with_deletions(self):
        h = Harness(Timers)
        h.process("k", "set 5")
        h.process("k", "both 7")
        self.assertEqual(pending(h), [5, 8])
        # The deletion handed over what was held back first.
        self.assertEqual(h.host.timer_batches, [[(0, 5, b"k")], [(0, 7, b"k"), (0, 8, b"k")]])
        h.process("k", "drop 5")
        self.assertEqual(pending(h), [8])

    def test_a_failed_call_hands_no_timers_over(self):
        h = Harness(Timers)
        with self.assertRaisesRegex(RuntimeError, "failed after registering"):
            h.process("k", "fail 3")
        h.process("k", "set 4")
        self.assertEqual(h.host.timer_batches, [[(0, 4, b"k")]])

    def test_a_big_batch_goes_over_in_bounded_parts(self):
        key = "k" * 1000
        h = Harness(Timers)
        h.process_batch([(None, key, f"set {t}") for t in range(200)])
        sizes = [len(wire.write_timers([(t, d, k) for d, t, k in b])) for b in h.host.timer_batches]
        self.assertEqual(len(sizes), 4)
        self.assertTrue(all(s <= weir._runtime.TIMER_BATCH_BYTES_MAX + 1013 for s in sizes), sizes)
        self.assertEqual(pending(h), list(range(200)))


class CountPerWindow(weir.Operator):
    key = str
    value = None

    def open(self, ctx):
        from weir.window import Count as WindowCount, Windows, tumbling

        self.windows = Windows(ctx, "counts", tumbling(1000), WindowCount())

    def process(self, ctx, record):
        self.windows.add(ctx, record.timestamp, None)


class WitError(Exception):
    """componentize-py's ``Err``."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


def stub_bindings(host):
    """The component's imports (componentize-py's wit_world), onto ``host``."""
    ns = types.SimpleNamespace
    return dict(
        Err=WitError,
        keyed_state=host,
        timers=ns(register_timers=host.register_timers, register_timer=host.register_timer,
                  delete_timer=host.delete_timer, current_watermark=host.watermark,
                  current_processing_time=host.processing_time),
        log=ns(log=host.log),
        types=ns(TimeDomain=ns(EVENT_TIME=0, PROCESSING_TIME=1),
                 LogLevel=ns(TRACE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4),
                 StateKind=ns(VALUE="value", LIST="list", MAP="map"),
                 StateDescriptor=lambda name, kind, ttl: (name, kind, ttl)),
    )


def info(config):
    return types.SimpleNamespace(name="w", subtask_index=0, parallelism=1, config=config)


class Exports(unittest.TestCase):
    """The classes componentize-py calls, with the WIT bindings stubbed."""

    def test_snapshots_hands_the_opened_operators_window_state_to_the_host(self):
        host = MemoryHost()
        with mock.patch.multiple(weir._runtime, **stub_bindings(host)):
            hooks = weir.export(CountPerWindow)
            # scripts/build-operator.sh's app module: `Snapshots = Hooks.Snapshots`.
            snapshots = hooks.Snapshots
            other = weir.export(CountPerWindow)
            self.assertIsNot(other.Snapshots, snapshots)
            with self.assertRaisesRegex(WitError, "before `open`"):
                snapshots().prepare_snapshot()
            # componentize-py may make a new object per call.
            states = hooks().open(info([("weir.prepare_snapshot", "1")]))
            self.assertEqual(states, [("counts", "value", None)])
            hooks().process(0, wire.write_batch([(10, b"a", b""), (20, b"b", b"")]))
            self.assertEqual(host.calls["value-write-many"], 0)
            self.assertEqual(host.calls["register-timers"], 1)
            # Another export's Snapshots reaches its own operator, not this one.
            with self.assertRaisesRegex(WitError, "before `open`"):
                other.Snapshots().prepare_snapshot()
            self.assertIsNone(snapshots().prepare_snapshot())
            self.assertEqual(host.write_batches, [(0, [(b"a", b"[[0,1000,1]]"), (b"b", b"[[0,1000,1]]")])])
            self.assertIsNone(snapshots().prepare_snapshot())
            self.assertEqual(host.calls["value-write-many"], 1)

    def test_without_the_config_entry_state_reaches_the_host_every_call(self):
        host = MemoryHost()
        with mock.patch.multiple(weir._runtime, **stub_bindings(host)):
            hooks = weir.export(CountPerWindow)
            hooks().open(info([]))
            hooks().process(0, wire.write_batch([(10, b"a", b"")]))
            self.assertEqual(host.write_batches, [(0, [(b"a", b"[[0,1000,1]]")])])
            hooks.Snapshots().prepare_snapshot()
            self.assertEqual(host.calls["value-write-many"], 1)


class Examples(unittest.TestCase):
    def test_fraud_detector_flags_small_then_large(self):
        import fraud_detector

        h = Harness(fraud_detector.FraudDetector)
        self.assertEqual(h.process("a", {"account_id": "a", "amount": 0.5}, 1000), [])
        out = h.process("a", {"account_id": "a", "amount": 900}, 30_000)
        self.assertEqual([e.value for e in out],
                         ['{"account_id":"a","small_at":1000,"large_at":30000,"amount":900.0}'])
        self.assertEqual(h.pending_timers(), [])

    def test_fraud_flag_expires_after_a_minute(self):
        import fraud_detector

        h = Harness(fraud_detector.FraudDetector)
        h.process("a", {"account_id": "a", "amount": 0.5}, 1000)
        h.advance_watermark(61_000)
        self.assertEqual(h.process("a", {"account_id": "a", "amount": 900}, 61_500), [])

    def test_window_count_emits_each_window_once(self):
        import window_count

        h = Harness(window_count.WindowCount, config={"window_ms": 1000})
        for ts in (10, 999, 1000):
            self.assertEqual(h.process("fox", 1, ts), [])
        self.assertEqual(h.advance_watermark(998), [])
        out = h.advance_watermark(999)
        self.assertEqual([e.json() for e in out],
                         [{"word": "fox", "window_start": 0, "window_end": 1000, "count": 2}])


if __name__ == "__main__":
    unittest.main()
