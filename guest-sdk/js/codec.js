// How keys, values and state are turned into bytes: the Rust SDK's
// encodings, byte for byte, so Rust, Python and JavaScript operators
// interoperate in one job.
//
//   "string": UTF-8       "bytes": as is            "unit": no bytes
//   "int": decimal text (Number, or BigInt past 2^53)
//   "float": decimal text as Rust prints f64 ("1", "1.5", never an exponent)
//   "bool": "true"/"false"    "json": compact JSON
//
// A codec is also any object with encode(value) -> Uint8Array and
// decode(Uint8Array) -> value.

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export class DecodeError extends Error {
  constructor(message) { super(message); this.name = "DecodeError"; }
}

/** Marks a value to be emitted as JSON even if it is a string or number. */
export class Json {
  constructor(value) { this.value = value; }
}

function text(bytes) {
  try {
    return strictUtf8.decode(bytes);
  } catch (e) {
    throw new DecodeError(`not UTF-8 text: ${e.message}`);
  }
}

/** Expands `1e+21` / `1.5e-7` into plain decimal digits. */
function expandExponent(s) {
  const m = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) return s;
  const [, sign, int, frac = "", expText] = m;
  const exp = Number(expText);
  let digits = int + frac;
  let point = int.length + exp;
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length);
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** A number as Rust's Display prints an f64: shortest round-trip digits,
 *  no exponent, no ".0" on integral values. */
export function formatFloat(x) {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (Object.is(x, -0)) return "-0";
  return expandExponent(String(x));
}

const INT_TEXT = /^[+-]?\d+$/;

export const STRING = { name: "string", encode: (v) => utf8.encode(String(v)), decode: text };
// Byte arrays that crossed the component boundary may come from another
// realm, where `instanceof Uint8Array` is false: test for a view instead.
function asBytes(v) {
  if (ArrayBuffer.isView(v)) {
    // A byte-sized typed array is written as is (no new view per record).
    return v.BYTES_PER_ELEMENT === 1 ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }
  if (v instanceof ArrayBuffer || Array.isArray(v)) return new Uint8Array(v);
  return null;
}

export const BYTES = {
  name: "bytes",
  encode(v) {
    const b = asBytes(v);
    if (!b) throw new TypeError(`${typeof v} is not bytes (a Uint8Array)`);
    return b;
  },
  decode: (b) => b,
};
export const UNIT = { name: "unit", encode: () => new Uint8Array(0), decode: () => null };
export const INT = {
  name: "int",
  encode(v) {
    if (typeof v === "bigint") return utf8.encode(v.toString());
    if (!Number.isInteger(v)) throw new TypeError(`${v} is not an integer`);
    return utf8.encode(formatFloat(v));
  },
  decode(b) {
    const t = text(b).trim();
    if (!INT_TEXT.test(t)) throw new DecodeError(`${JSON.stringify(t)} is not an int`);
    const n = Number(t);
    return Number.isSafeInteger(n) ? n : BigInt(t);
  },
};
export const FLOAT = {
  name: "float",
  encode: (v) => utf8.encode(formatFloat(Number(v))),
  decode(b) {
    const t = text(b).trim();
    const special = { NaN: NaN, inf: Infinity, "-inf": -Infinity, "+inf": Infinity };
    if (t in special) return special[t];
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) throw new DecodeError(`${JSON.stringify(t)} is not a float`);
    return Number(t);
  },
};
export const BOOL = {
  name: "bool",
  encode: (v) => utf8.encode(v ? "true" : "false"),
  decode(b) {
    const t = text(b).trim();
    if (t === "true") return true;
    if (t === "false") return false;
    throw new DecodeError(`${JSON.stringify(t)} is not a bool`);
  },
};
export const JSON_CODEC = {
  name: "json",
  encode: (v) => utf8.encode(JSON.stringify(v instanceof Json ? v.value : v)),
  decode(b) {
    const t = text(b);
    try {
      return JSON.parse(t);
    } catch (e) {
      throw new DecodeError(`not valid JSON: ${e.message}: ${JSON.stringify(t)}`);
    }
  },
};

const BY_NAME = { string: STRING, bytes: BYTES, unit: UNIT, int: INT, float: FLOAT, bool: BOOL, json: JSON_CODEC };

/** The codec for a type name ("string", "int", ...) or a codec object. */
export function codec(kind) {
  if (kind && typeof kind === "object" && typeof kind.encode === "function" && typeof kind.decode === "function") return kind;
  if (kind === null) return UNIT;
  if (kind === Json) return JSON_CODEC;
  const c = BY_NAME[kind];
  if (!c) throw new TypeError(`${String(kind)} is not a weir type: use "string", "bytes", "int", "float", "bool", "json", "unit" or a codec object`);
  return c;
}

/** Encodes an emitted key or value by its runtime type. */
export function encodeAny(v) {
  if (typeof v === "string") return utf8.encode(v);
  if (ArrayBuffer.isView(v)) return asBytes(v);
  if (v === null || v === undefined) return new Uint8Array(0);
  if (typeof v === "boolean") return utf8.encode(v ? "true" : "false");
  if (typeof v === "number") return utf8.encode(formatFloat(v));
  if (typeof v === "bigint") return utf8.encode(v.toString());
  if (v instanceof Json) return utf8.encode(JSON.stringify(v.value));
  if (typeof v === "object") return utf8.encode(JSON.stringify(v));
  throw new TypeError(`cannot emit a ${typeof v}: emit a string, Uint8Array, number, bigint, boolean, null, object/array (JSON) or Json(value)`);
}
