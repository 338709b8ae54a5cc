"""Native tests of versioned.py with weir.testing.Harness:
python3 -m unittest discover -s tests/guests/versioned-py/tests"""

import os
import sys
import unittest

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.abspath(os.path.join(here, "..", "..", "..", ".."))
sys.path[:0] = [os.path.dirname(here), os.path.join(repo, "guest-sdk", "python")]

from weir.testing import Harness  # noqa: E402
from versioned import Versioned  # noqa: E402


class VersionedTest(unittest.TestCase):
    def test_counts_continue_per_key_with_key_and_timestamp_kept(self):
        h = Harness(Versioned)
        got = []
        for key, ts in [("a", 10), ("b", 11), ("a", 12), ("a", 13), ("b", 14)]:
            out = h.process(key, "ignored", ts)
            self.assertEqual(len(out), 1)
            self.assertEqual(out[0].key_bytes, key.encode())
            self.assertEqual(out[0].timestamp, ts)
            got.append(out[0].value_bytes)
        self.assertEqual(got, [b"a,1,py", b"b,1,py", b"a,2,py", b"a,3,py", b"b,2,py"])

    def test_previous_version_marks_the_tag_migrated(self):
        h = Harness(Versioned, config={"weir.previous_version": "sha256:abc"})
        h.process("a", "x", 1)
        self.assertEqual(h.process("a", "x", 2)[0].value_bytes, b"a,2,pym")

    def test_other_config_does_not_mark_the_tag(self):
        h = Harness(Versioned, config={"weir.attempt": "1"})
        self.assertEqual(h.process("a", "x", 1)[0].value_bytes, b"a,1,py")

    def test_no_timestamp_in_none_out(self):
        self.assertIsNone(Harness(Versioned).process("k", "x")[0].timestamp)

    def test_non_utf8_key_as_rust_writes_it(self):
        out = Harness(Versioned).process(b"k\xff", "x", 5)[0]
        self.assertEqual(out.key_bytes, b"k\xff")
        self.assertEqual(out.value_bytes, "k\ufffd,1,py".encode())

    def test_count_is_stored_as_decimal_text_like_rust(self):
        h = Harness(Versioned)
        for _ in range(12):
            h.process("a", "x", 1)
        self.assertEqual(list(h.host.values.values()), [b"12"])


if __name__ == "__main__":
    unittest.main()
