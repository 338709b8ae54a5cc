"""The batch, timer-batch, map-entries and value-writes byte formats of
wit/operator.wit."""

import struct

NO_TIMESTAMP = -(2 ** 63)

_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_RECORD_HEAD = struct.Struct("<qI")
_TIMER_HEAD = struct.Struct("<qBI")
# `value-len` that clears the key in the value writes format.
_CLEAR = 0xFFFFFFFF


class MalformedBatch(Exception):
    pass


def _check(data, end, what):
    if end > len(data):
        raise MalformedBatch(f"malformed {what}: truncated")


def read_batch(data):
    """Yields (timestamp or None, key bytes, value bytes) per record."""
    size = len(data)
    if size < 4:
        raise MalformedBatch("malformed batch: truncated")
    (count,) = _U32.unpack_from(data, 0)
    at = 4
    head = _RECORD_HEAD.unpack_from
    u32 = _U32.unpack_from
    for _ in range(count):
        if at + 12 > size:
            raise MalformedBatch("malformed batch: truncated")
        ts, klen = head(data, at)
        at += 12
        end = at + klen
        if end + 4 > size:
            raise MalformedBatch("malformed batch: truncated")
        key = data[at:end]
        (vlen,) = u32(data, end)
        at = end + 4 + vlen
        if at > size:
            raise MalformedBatch("malformed batch: truncated")
        yield (None if ts == NO_TIMESTAMP else ts), key, data[end + 4:at]


def read_timers(data):
    """Yields (timestamp, domain 0/1, key bytes) per fired timer."""
    _check(data, 4, "timer batch")
    (count,) = _U32.unpack_from(data, 0)
    at = 4
    for _ in range(count):
        _check(data, at + 13, "timer batch")
        ts, domain, klen = _TIMER_HEAD.unpack_from(data, at)
        at += 13
        _check(data, at + klen, "timer batch")
        key = bytes(data[at:at + klen])
        at += klen
        if domain not in (0, 1):
            raise MalformedBatch(f"malformed timer batch: unknown time domain {domain}")
        yield ts, domain, key


def read_entries(data):
    """The map entries format, as a list of (map key, value) bytes."""
    out = []
    _check(data, 4, "map entries")
    (count,) = _U32.unpack_from(data, 0)
    at = 4
    for _ in range(count):
        _check(data, at + 4, "map entries")
        (klen,) = _U32.unpack_from(data, at)
        at += 4
        k = bytes(data[at:at + klen])
        at += klen
        _check(data, at + 4, "map entries")
        (vlen,) = _U32.unpack_from(data, at)
        at += 4
        _check(data, at + vlen, "map entries")
        out.append((k, bytes(data[at:at + vlen])))
        at += vlen
    return out


class Writer:
    """Builds an output batch."""

    __slots__ = ("parts", "count")

    def __init__(self):
        self.parts = []
        self.count = 0

    def record(self, timestamp, key, value):
        self.parts += (
            _RECORD_HEAD.pack(NO_TIMESTAMP if timestamp is None else timestamp, len(key)),
            key,
            _U32.pack(len(value)),
            value,
        )
        self.count += 1

    def finish(self):
        return _U32.pack(self.count) + b"".join(self.parts)


def write_batch(records):
    """Encodes (timestamp or None, key bytes, value bytes) tuples."""
    w = Writer()
    for ts, k, v in records:
        w.record(ts, k, v)
    return w.finish()


def write_timers(timers):
    """Encodes (timestamp, domain 0/1, key bytes) tuples."""
    parts = [_U32.pack(len(timers))]
    for ts, domain, key in timers:
        parts.append(_TIMER_HEAD.pack(ts, domain, len(key)))
        parts.append(key)
    return b"".join(parts)


class TimerBatch:
    """A timer batch built one timer at a time, for `register-timers`."""

    __slots__ = ("parts", "count", "size")

    def __init__(self):
        self.reset()

    def reset(self):
        self.parts = []
        self.count = 0
        self.size = 4

    def push(self, domain, key, timestamp):
        self.parts += (_TIMER_HEAD.pack(timestamp, domain, len(key)), key)
        self.count += 1
        self.size += 13 + len(key)

    def finish(self):
        return _U32.pack(self.count) + b"".join(self.parts)


def write_value_writes(writes):
    """Encodes (key bytes, value bytes or None to clear) pairs for
    `value-write-many`."""
    parts = [_U32.pack(len(writes))]
    for key, value in writes:
        parts += (_U32.pack(len(key)), key)
        parts += (_U32.pack(_CLEAR),) if value is None else (_U32.pack(len(value)), value)
    return b"".join(parts)


def read_value_writes(data):
    """The value writes format, as a list of (key, value or None) bytes."""
    out = []
    _check(data, 4, "value writes")
    (count,) = _U32.unpack_from(data, 0)
    at = 4
    for _ in range(count):
        _check(data, at + 4, "value writes")
        (klen,) = _U32.unpack_from(data, at)
        at += 4
        _check(data, at + klen + 4, "value writes")
        key = bytes(data[at:at + klen])
        (vlen,) = _U32.unpack_from(data, at + klen)
        at += klen + 4
        if vlen == _CLEAR:
            out.append((key, None))
            continue
        _check(data, at + vlen, "value writes")
        out.append((key, bytes(data[at:at + vlen])))
        at += vlen
    return out


def write_entries(entries):
    parts = [_U32.pack(len(entries))]
    for k, v in entries:
        parts += [_U32.pack(len(k)), k, _U32.pack(len(v)), v]
    return b"".join(parts)
