"""Test operator for live upgrades, the Python twin of tests/guests/versioned
(Rust): counts records per key in the value state `count` and emits
`{key},{count},{tag}` with the record's key and timestamp. Tag `py`, plus `m`
("migrated") when config `weir.previous_version` is present. For the same
input its output bytes are the Rust build's, and `count` is stored the same
way (decimal text), so either can take over the other's state."""

import weir

VERSION = "py"
PREVIOUS_VERSION = "weir.previous_version"


def line(key, count, tag):
    """`{key},{count},{tag}`, the key as UTF-8 text (invalid bytes become
    U+FFFD, as Rust's from_utf8_lossy does)."""
    return f"{key.decode('utf-8', 'replace')},{count},{tag}"


class Versioned(weir.Operator):
    key = bytes   # kept as is: non-UTF-8 keys must not fail the job
    value = None  # ignored

    def open(self, ctx):
        self.count = ctx.value_state("count", int)
        migrated = ctx.config(PREVIOUS_VERSION) is not None
        self.tag = VERSION + "m" if migrated else VERSION

    def process(self, ctx, record):
        n = (self.count.get(ctx) or 0) + 1
        self.count.set(ctx, n)
        ctx.emit(record.key, line(record.key, n, self.tag))


Hooks = weir.export(Versioned)
