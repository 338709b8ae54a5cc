//! How keys, values and state are turned into bytes.
//!
//! Encodings are chosen to read well in a sink's output and to be shared
//! with the Python and JavaScript SDKs: text is raw UTF-8, numbers are
//! decimal text, and structured data is JSON.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bytes;

/// A type that can be written as a key, value or state value.
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

/// A type that can be read from a key, value or state value.
pub trait Decode: Sized {
    fn decode(bytes: &[u8]) -> Result<Self, Error>;
}

/// Both ways: what state holds.
pub trait Data: Encode + Decode {}

impl<T: Encode + Decode> Data for T {}

impl Encode for String {
    fn encode(&self, out: &mut Vec<u8>) {
        bytes::extend(out, self.as_bytes());
    }
}

impl Encode for str {
    fn encode(&self, out: &mut Vec<u8>) {
        bytes::extend(out, self.as_bytes());
    }
}

impl Decode for String {
    fn decode(raw: &[u8]) -> Result<Self, Error> {
        String::from_utf8(bytes::to_vec(raw))
            .map_err(|e| Error::msg(format!("not UTF-8 text: {e}")))
    }
}

impl Encode for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        bytes::extend(out, self);
    }
}

impl Encode for [u8] {
    fn encode(&self, out: &mut Vec<u8>) {
        bytes::extend(out, self);
    }
}

impl Decode for Vec<u8> {
    fn decode(raw: &[u8]) -> Result<Self, Error> {
        Ok(bytes::to_vec(raw))
    }
}

/// No key (or no value): encodes as zero bytes and accepts anything.
impl Encode for () {
    fn encode(&self, _out: &mut Vec<u8>) {}
}

impl Decode for () {
    fn decode(_bytes: &[u8]) -> Result<Self, Error> {
        Ok(())
    }
}

macro_rules! parse_text {
    ($t:ty) => {
        impl Decode for $t {
            fn decode(bytes: &[u8]) -> Result<Self, Error> {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| Error::msg(format!("not UTF-8 text: {e}")))?;
                text.trim()
                    .parse()
                    .map_err(|e| Error::msg(format!("{text:?} is not a {}: {e}", stringify!($t))))
            }
        }
    };
}

/// Integers are written digit by digit: `write!` goes through the
/// formatting machinery, which dominated a windowed count in Wasm. (No
/// 128-bit arithmetic either: Wasm has none, it becomes library calls.)
macro_rules! integer_text {
    (unsigned: $($u:ty),*; signed: $($s:ty),*) => {
        $(
            impl Encode for $u {
                fn encode(&self, out: &mut Vec<u8>) {
                    write_unsigned(u64::from(*self), out);
                }
            }
            parse_text!($u);
        )*
        $(
            impl Encode for $s {
                fn encode(&self, out: &mut Vec<u8>) {
                    let n = i64::from(*self);
                    if n < 0 {
                        out.push(b'-');
                    }
                    write_unsigned(n.unsigned_abs(), out);
                }
            }
            parse_text!($s);
        )*
    };
}

macro_rules! display_text {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                use std::io::Write;
                let _ = write!(out, "{self}");
            }
        }
        parse_text!($t);
    )*};
}

/// Decimal text in chunks of eight digits, each made by SWAR: all eight
/// digits of a chunk come out of a few 64-bit multiplications in one
/// register (no table, no loop), and are stored as one fixed 8-byte copy
/// (the compiler makes that a store; a copy of variable length is a
/// `memcpy` call, or a `memory.copy` host call in Wasm) whose tail is then
/// cut off. A 64-bit division by a constant is a 128-bit multiply in Wasm
/// (a `__multi3` call), so numbers below 10^8 need none and larger ones
/// one or two.
#[inline(always)]
fn write_unsigned(n: u64, out: &mut Vec<u8>) {
    const CHUNK: u64 = 100_000_000;
    if n < CHUNK {
        return write_leading(n as u32, out);
    }
    let (high, low) = (n / CHUNK, (n % CHUNK) as u32);
    if high < CHUNK {
        write_leading(high as u32, out);
    } else {
        write_leading((high / CHUNK) as u32, out);
        write_eight(eight_digits((high % CHUNK) as u32), out);
    }
    write_eight(eight_digits(low), out);
}

/// `n < 10^8` without leading zeros.
#[inline(always)]
fn write_leading(n: u32, out: &mut Vec<u8>) {
    let digits = eight_digits(n);
    if digits == 0 {
        return out.push(b'0');
    }
    // Little-endian: the leading zeros are the low bytes.
    let zeros = digits.trailing_zeros() / 8;
    let len = out.len();
    write_eight(digits >> (8 * zeros), out);
    out.truncate(len + 8 - zeros as usize);
}

fn write_eight(digits: u64, out: &mut Vec<u8>) {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    out.extend_from_slice(&(digits | ZEROS).to_le_bytes());
}

/// The eight decimal digits of `n < 10^8` (leading zeros included) as
/// byte values 0..=9, the most significant in the lowest byte, so that
/// the little-endian bytes read in order. Each step splits every lane
/// into a high and a low half: by 10^4 (two 32-bit lanes), then by 100
/// (four 16-bit lanes), then by 10 (eight bytes), each division a
/// multiply and shift that is exact for the lane's range.
fn eight_digits(n: u32) -> u64 {
    let lanes = u64::from(n / 10_000) | u64::from(n % 10_000) << 32;
    // x / 100 == (x * 10486) >> 20 for x < 10^4 (x * 10486 < 2^32).
    let high = ((lanes * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let lanes = high | (lanes - high * 100) << 16;
    // x / 10 == (x * 103) >> 10 for x < 100 (x * 103 < 2^16).
    let high = ((lanes * 103) >> 10) & 0x000f_000f_000f_000f;
    high | (lanes - high * 10) << 8
}

integer_text!(unsigned: u8, u16, u32, u64; signed: i8, i16, i32, i64);
display_text!(f32, f64, bool);

/// Any serde type, encoded as JSON.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Json<T>(pub T);

impl<T: fmt::Debug> fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Encode for Json<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        // Serializing plain data into a Vec cannot fail; a type whose
        // Serialize impl errors yields no bytes, which decode then reports.
        let _ = serde_json::to_writer(out, &self.0);
    }
}

impl<T: DeserializeOwned> Decode for Json<T> {
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map(Json).map_err(|e| {
            Error::msg(format!(
                "not valid JSON for {}: {e}: {:?}",
                std::any::type_name::<T>(),
                String::from_utf8_lossy(bytes)
            ))
        })
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out)
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Data + PartialEq + fmt::Debug>(v: T) {
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(T::decode(&out).unwrap(), v);
    }

    #[test]
    fn codecs_round_trip() {
        round_trip("héllo".to_string());
        round_trip(vec![0u8, 255]);
        round_trip(-42i64);
        round_trip(1.5f64);
        round_trip(Json(vec![("a".to_string(), 1u32)]));
    }

    #[test]
    fn integers_encode_like_display() {
        for n in [0i64, 7, -7, 10, 1234567890, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            n.encode(&mut out);
            assert_eq!(out, n.to_string().into_bytes());
        }
        let mut out = Vec::new();
        u64::MAX.encode(&mut out);
        assert_eq!(out, u64::MAX.to_string().into_bytes());
        // Around every power of ten, where the chunks of eight digits meet.
        let mut power = 1u64;
        while let Some(next) = power.checked_mul(10) {
            for n in [power - 1, power, power + 1, next - 1, power * 7 + 3] {
                let mut out = Vec::new();
                n.encode(&mut out);
                assert_eq!(out, n.to_string().into_bytes());
            }
            power = next;
        }
        // Appended after what the buffer holds, over every digit count.
        let mut n = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let value = n >> (n % 64);
            let mut out = b"x".to_vec();
            value.encode(&mut out);
            assert_eq!(out, format!("x{value}").into_bytes());
        }
    }

    #[test]
    fn eight_digits_match_the_decimal_text() {
        // Every value below 10^5, then a stride over the rest with every
        // digit count's edges.
        let check = |n: u32| {
            let mut out = Vec::new();
            write_eight(eight_digits(n), &mut out);
            assert_eq!(out, format!("{n:08}").into_bytes(), "{n}");
        };
        (0..100_000).for_each(check);
        (100_000..100_000_000).step_by(9_973).for_each(check);
        [99_999_999, 10_000_000, 9_999_999, 1_000_000]
            .into_iter()
            .for_each(check);
    }

    #[test]
    fn numbers_are_decimal_text() {
        let mut out = Vec::new();
        12345u64.encode(&mut out);
        assert_eq!(out, b"12345");
        assert!(
            u64::decode(b"x")
                .unwrap_err()
                .message()
                .contains("is not a u64")
        );
    }
}
