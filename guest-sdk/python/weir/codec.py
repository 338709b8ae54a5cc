"""How keys, values and state are turned into bytes.

The encodings are the Rust SDK's (weir-guest), byte for byte, so operators
written in Rust, Python and JavaScript can feed one another in one job:

* ``str``: raw UTF-8;  ``bytes``: as is;  ``None``: no bytes (a unit key)
* ``int``, ``float``, ``bool``: decimal text as Rust prints it (``42``,
  ``-1.5``, ``1`` for 1.0, ``true``)
* :class:`Json`: compact JSON (``{"a":1}``), like ``weir_guest::Json``

A codec is any object with ``encode(value) -> bytes`` and
``decode(bytes) -> value``. Where the SDK takes a type (``key = int``,
``ctx.value_state("n", int)``) it accepts ``str``, ``bytes``, ``int``,
``float``, ``bool``, ``None``, :data:`JSON` (or the :class:`Json` class) or
a codec object.
"""

import json
import math
from decimal import Decimal


class DecodeError(Exception):
    """A key, value or state value does not decode as its declared type."""


class Json:
    """Marks a value to be emitted as JSON even if it is a ``str`` or number.

    ``ctx.emit(key, Json("text"))`` writes ``"text"`` with the quotes.
    dicts, lists and tuples are emitted as JSON without it.
    """

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Json({self.value!r})"

    def __eq__(self, other):
        return isinstance(other, Json) and other.value == self.value


def _text(data):
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"not UTF-8 text: {e}") from None


def format_float(x):
    """Formats a float as Rust's ``Display`` does: shortest round-trip
    digits, never an exponent, no ``.0`` on integral values."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = repr(x)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    if text == "-0":
        return "-0"
    return text


def format_json(value):
    """Compact JSON as serde_json writes it (UTF-8, no spaces)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class _Str:
    name = "str"

    def encode(self, value):
        return value.encode("utf-8")

    def decode(self, data):
        return _text(data)


class _Bytes:
    name = "bytes"

    def encode(self, value):
        return bytes(value)

    def decode(self, data):
        return bytes(data)


class _Unit:
    name = "None"

    def encode(self, value):
        return b""

    def decode(self, data):
        return None


class _Int:
    name = "int"

    def encode(self, value):
        return str(int(value)).encode()

    def decode(self, data):
        text = _text(data)
        try:
            return int(text.strip(), 10)
        except ValueError:
            raise DecodeError(f"{text!r} is not an int") from None


class _Float:
    name = "float"

    def encode(self, value):
        return format_float(float(value)).encode()

    def decode(self, data):
        text = _text(data).strip()
        try:
            return float(text)
        except ValueError:
            raise DecodeError(f"{text!r} is not a float") from None


class _Bool:
    name = "bool"

    def encode(self, value):
        return b"true" if value else b"false"

    def decode(self, data):
        text = _text(data).strip()
        if text == "true":
            return True
        if text == "false":
            return False
        raise DecodeError(f"{text!r} is not a bool")


class _Json:
    name = "Json"

    def encode(self, value):
        if isinstance(value, Json):
            value = value.value
        return format_json(value).encode("utf-8")

    def decode(self, data):
        text = _text(data)
        try:
            return json.loads(text)
        except ValueError as e:
            raise DecodeError(f"not valid JSON: {e}: {text!r}") from None


STR = _Str()
BYTES = _Bytes()
UNIT = _Unit()
INT = _Int()
FLOAT = _Float()
BOOL = _Bool()
JSON = _Json()

_BY_TYPE = {str: STR, bytes: BYTES, None: UNIT, type(None): UNIT, int: INT,
            float: FLOAT, bool: BOOL, Json: JSON, dict: JSON, list: JSON}


def codec(kind):
    """The codec for a declared type (see the module docstring)."""
    if hasattr(kind, "encode") and hasattr(kind, "decode") and not isinstance(kind, type):
        return kind
    try:
        return _BY_TYPE[kind]
    except (KeyError, TypeError):
        raise TypeError(
            f"{kind!r} is not a weir type: use str, bytes, int, float, bool, None, "
            "weir.Json or an object with encode/decode") from None


def encode_any(value):
    """Encodes an emitted key or value by its runtime type."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return format_float(value).encode()
    if isinstance(value, Json):
        return format_json(value.value).encode("utf-8")
    if isinstance(value, (dict, list, tuple)):
        return format_json(value).encode("utf-8")
    raise TypeError(
        f"cannot emit a {type(value).__name__}: emit str, bytes, int, float, bool, "
        "None, a dict/list (as JSON) or weir.Json(value)")
