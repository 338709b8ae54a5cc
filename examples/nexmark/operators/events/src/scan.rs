//! A fast path for the flat JSON objects `weir nexmark` writes: one pass
//! over the bytes that picks out the columns [`Event`] has, without
//! serde's per-field machinery.
//!
//! It handles the common shape only (integers, strings without escapes,
//! `null`, any whitespace) and gives up (`None`) on anything else: nested
//! values, floats, escapes, duplicate columns, bad syntax. The caller then
//! parses with serde_json, which accepts what is valid and names what is
//! not, so both paths agree on every input.

use std::borrow::Cow;

use crate::{Event, Text};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any of the 8 bytes in `w` may be a quote, a backslash, a
/// control character or non-ASCII (the classic "has a zero byte" and
/// "has a byte below n" bit tricks; a false alarm only means the bytes are
/// looked at one by one).
fn maybe_special(w: u64) -> bool {
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero_in(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_in(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    (quote | backslash | control | (w & HIGHS)) != 0
}

/// Bit i set where byte i of the 16 may end a plain string: a quote, a
/// backslash, a control character or a non-ASCII byte.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn specials16(chunk: &[u8; 16]) -> u16 {
    use core::arch::wasm32::{
        i8x16_bitmask, i8x16_eq, i8x16_lt, i8x16_splat, u8x16_lt, u8x16_splat, v128, v128_load,
        v128_or,
    };
    // SAFETY: `chunk` is 16 readable bytes; Wasm loads need no alignment.
    let v = unsafe { v128_load(chunk.as_ptr().cast::<v128>()) };
    let quote = i8x16_eq(v, i8x16_splat(b'"' as i8));
    let backslash = i8x16_eq(v, i8x16_splat(b'\\' as i8));
    let control = u8x16_lt(v, u8x16_splat(0x20));
    let high = i8x16_lt(v, i8x16_splat(0)); // 0x80 and up
    i8x16_bitmask(v128_or(v128_or(quote, backslash), v128_or(control, high)))
}

const LOW_NIBBLES: u64 = 0x0f0f_0f0f_0f0f_0f0f;

/// Per byte of `word` (read little-endian), nonzero where it is not an
/// ASCII digit, and `word`'s bytes as digit values (0..=9 where they are
/// digits). For a digit, b ^ '0' is 0..=9: nothing in the high nibble,
/// and the low nibble + 6 stays below 0x10 (no carries cross bytes).
fn digit_bytes(word: u64) -> (u64, u64) {
    let t = word ^ (ONES * u64::from(b'0'));
    let not_digit = (t & !LOW_NIBBLES) | (((t & LOW_NIBBLES) + ONES * 6) & (ONES * 0x10));
    (not_digit, t)
}

/// The value of eight digit values (0..=9 per byte), the first (lowest)
/// byte the most significant: pairs, then fours, then all eight, by three
/// multiplications (the known SWAR method). Leading zero bytes are
/// leading zero digits.
fn eight_digits(digits: u64) -> u64 {
    let v = digits & LOW_NIBBLES;
    let v = (v.wrapping_mul(10 << 8 | 1)) >> 8 & 0x00ff_00ff_00ff_00ff;
    let v = (v.wrapping_mul(100 << 16 | 1)) >> 16 & 0x0000_ffff_0000_ffff;
    (v.wrapping_mul(10_000 << 32 | 1)) >> 32
}

const TENS: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// A bid exactly as `weir nexmark` writes it (92% of the events): its
/// column names in their order are compared as literals instead of being
/// scanned and matched one by one. The values are read and checked as in
/// [`event`], and the result is the one [`event`] gives for the same line.
/// It borrows nothing from `bytes` (a bid's strings are not kept).
pub(crate) fn bid<'e>(bytes: &[u8]) -> Option<Event<'e>> {
    let mut s = Scanner { bytes, at: 0 };
    s.lit(br#"{"event_type":2,"ts":"#)?;
    let ts = s.signed()??;
    s.lit(br#","auction":"#)?;
    let auction = s.unsigned()?;
    s.lit(br#","bidder":"#)?;
    let bidder = s.unsigned()?;
    s.lit(br#","price":"#)?;
    let price = s.unsigned()?;
    s.lit(br#","channel":""#)?;
    s.plain()?;
    s.lit(br#","url":""#)?;
    s.plain()?;
    s.lit(b"}")?;
    if s.at != bytes.len() {
        return None;
    }
    Some(Event {
        event_type: crate::BID,
        ts,
        auction,
        bidder,
        price,
        ..Event::default()
    })
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Takes `text` if the bytes continue with it.
    fn lit(&mut self, text: &[u8]) -> Option<()> {
        let next = self.bytes.get(self.at..self.at + text.len())?;
        (next == text).then(|| self.at += text.len())
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string's bytes, after its opening quote, if it has no escapes,
    /// control characters or non-ASCII bytes (those go the slow way).
    /// Sixteen bytes at a time with Wasm SIMD (eight without), while none
    /// of them can end the string.
    #[inline(always)]
    fn plain(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let mut i = start;
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        while let Some(chunk) = self.bytes[i..].first_chunk::<16>() {
            let special = specials16(chunk);
            if special != 0 {
                let end = i + special.trailing_zeros() as usize;
                if self.bytes[end] != b'"' {
                    return None;
                }
                self.at = end + 1;
                return Some(&self.bytes[start..end]);
            }
            i += 16;
        }
        while let Some((word, _)) = self.bytes[i..].split_first_chunk::<8>() {
            if maybe_special(u64::from_le_bytes(*word)) {
                break;
            }
            i += 8;
        }
        loop {
            match *self.bytes.get(i)? {
                b'"' => break,
                b'\\' | 0..=0x1f | 0x80.. => return None,
                _ => i += 1,
            }
        }
        self.at = i + 1;
        Some(&self.bytes[start..i])
    }

    /// A plain string (see [`Scanner::plain`]) as text.
    fn plain_str(&mut self) -> Option<&'a str> {
        // ASCII only (checked), so this cannot fail.
        std::str::from_utf8(self.plain()?).ok()
    }

    /// An integer's sign and digits (at most 18, so no overflow in u64).
    /// Eight bytes to a step: each word is checked for digits and, up to
    /// the first byte that is not one, added to the value in the same
    /// step (the digits moved to the word's top, zeros before them).
    #[inline(always)]
    fn int(&mut self) -> Option<(bool, u64)> {
        let negative = self.peek()? == b'-';
        if negative {
            self.at += 1;
        }
        let start = self.at;
        let mut at = start;
        let mut n: u64 = 0;
        loop {
            let Some(word) = self
                .bytes
                .get(at..)
                .and_then(|rest| rest.first_chunk::<8>())
            else {
                // Fewer than eight bytes left: one at a time.
                while let Some(d) = self.bytes.get(at).filter(|d| d.is_ascii_digit()) {
                    if at - start == 18 {
                        return None;
                    }
                    n = n * 10 + u64::from(d - b'0');
                    at += 1;
                }
                break;
            };
            let (not_digit, digits) = digit_bytes(u64::from_le_bytes(*word));
            let k = (not_digit.trailing_zeros() / 8) as usize; // 8 if all are
            if at - start + k > 18 {
                return None;
            }
            if k == 8 {
                n = n * 100_000_000 + eight_digits(digits);
                at += 8;
                continue;
            }
            if k > 0 {
                n = n * TENS[k] + eight_digits(digits << (8 * (8 - k)));
            }
            at += k;
            break;
        }
        // No leading zeros (JSON), no fractions or exponents here.
        let digits = at - start;
        if digits == 0
            || (digits > 1 && self.bytes[start] == b'0')
            || matches!(self.bytes.get(at), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        self.at = at;
        Some((negative, n))
    }

    fn null(&mut self) -> Option<()> {
        let rest = self.bytes.get(self.at..self.at + 4)?;
        (rest == b"null").then(|| self.at += 4)
    }

    #[inline(always)]
    fn unsigned(&mut self) -> Option<Option<u64>> {
        if self.peek()? == b'n' {
            return self.null().map(|_| None);
        }
        match self.int()? {
            (false, n) => Some(Some(n)),
            (true, _) => None,
        }
    }

    #[inline(always)]
    fn signed(&mut self) -> Option<Option<i64>> {
        if self.peek()? == b'n' {
            return self.null().map(|_| None);
        }
        let (negative, n) = self.int()?;
        let n = n as i64; // at most 18 digits: fits
        Some(Some(if negative { -n } else { n }))
    }

    fn text(&mut self) -> Option<Option<Text<'a>>> {
        match self.peek()? {
            b'n' => self.null().map(|_| None),
            b'"' => {
                self.at += 1;
                Some(Some(Text(Cow::Borrowed(self.plain_str()?))))
            }
            _ => None,
        }
    }

    /// Skips a column the queries do not read: an integer, a plain string
    /// or null.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.plain().map(drop)
            }
            b'n' => self.null(),
            _ => self.int().map(drop),
        }
    }
}

/// The event in `bytes` if it has the common shape, else `None`.
pub(crate) fn event(bytes: &[u8]) -> Option<Event<'_>> {
    if let Some(e) = bid(bytes) {
        return Some(e);
    }
    let mut s = Scanner { bytes, at: 0 };
    let mut e = Event::default();
    let (mut event_type, mut ts) = (None, None);
    // Columns seen so far: a second time is serde's duplicate-field
    // error (also when the first was null).
    let mut seen = 0u16;
    s.eat(b'{')?;
    s.skip_ws();
    if s.peek()? == b'}' {
        return None; // no event_type: serde's error
    }
    loop {
        s.eat(b'"')?;
        let key = s.plain()?;
        s.eat(b':')?;
        s.skip_ws();
        let bit = match key {
            b"event_type" => {
                let t = s.unsigned()??;
                event_type = Some(u8::try_from(t).ok()?);
                1
            }
            b"ts" => {
                ts = Some(s.signed()??);
                2
            }
            b"id" => {
                e.id = s.unsigned()?;
                4
            }
            b"name" => {
                e.name = s.text()?;
                8
            }
            b"city" => {
                e.city = s.text()?;
                16
            }
            b"state" => {
                e.state = s.text()?;
                32
            }
            b"expires" => {
                e.expires = s.signed()?;
                64
            }
            b"seller" => {
                e.seller = s.unsigned()?;
                128
            }
            b"category" => {
                e.category = s.unsigned()?;
                256
            }
            b"auction" => {
                e.auction = s.unsigned()?;
                512
            }
            b"bidder" => {
                e.bidder = s.unsigned()?;
                1024
            }
            b"price" => {
                e.price = s.unsigned()?;
                2048
            }
            _ => {
                s.skip()?;
                0
            }
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        s.skip_ws();
        match s.peek()? {
            b',' => s.at += 1,
            b'}' => {
                s.at += 1;
                break;
            }
            _ => return None,
        }
        s.skip_ws();
    }
    s.skip_ws();
    if s.at != bytes.len() {
        return None;
    }
    e.event_type = event_type?;
    e.ts = ts?;
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bid_layout_reads_what_the_general_scan_reads() {
        let line = br#"{"event_type":2,"ts":-5,"auction":1001,"bidder":1002,"price":300,"channel":"Google","url":"https://x/y?z=1"}"#;
        let fast = bid(line).expect("the bid layout");
        // The same line the general way: not quite the layout (a space).
        let spaced = String::from_utf8_lossy(line).replace(",\"price\"", ", \"price\"");
        assert!(bid(spaced.as_bytes()).is_none());
        assert_eq!(event(spaced.as_bytes()).unwrap(), fast);
        assert_eq!(fast.ts, -5);
        // Anything off the layout or invalid falls through.
        for other in [
            &br#"{"event_type":2,"ts":1,"auction":1,"bidder":2,"price":3,"channel":"a","url":"b"} "#[..],
            br#"{"event_type":2,"ts":1,"auction":1,"bidder":2,"price":3,"channel":"a","url":"b"}x"#,
            br#"{"event_type":2,"ts":1,"auction":1,"bidder":2,"price":-3,"channel":"a","url":"b"}"#,
            br#"{"event_type":2,"ts":1,"auction":1,"bidder":2,"price":3,"channel":"a\n","url":"b"}"#,
            br#"{"event_type":2,"ts":1,"auction":1,"bidder":2,"price":3,"channel":"a"}"#,
            br#"{"event_type":2,"ts":1,"auction":null,"bidder":2,"price":3.5,"channel":"a","url":"b"}"#,
        ] {
            assert!(bid(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
        let nulls = br#"{"event_type":2,"ts":1,"auction":null,"bidder":2,"price":3,"channel":"a","url":"b"}"#;
        assert_eq!(bid(nulls).unwrap().auction, None);
    }

    #[test]
    fn integers_of_every_length_read_as_std_reads_them() {
        for digits in 1..=18 {
            for first in ['1', '9'] {
                let text: String = std::iter::once(first)
                    .chain("0123456789".chars().cycle().skip(digits).take(digits - 1))
                    .collect();
                // At the start of the bytes and after a column name or
                // a minus sign.
                for before in ["", "-", r#"{"price":"#, r#"{"ts":-"#] {
                    for after in ["", ",", "}", "x"] {
                        let line = format!("{before}{text}{after}");
                        let at = before.trim_end_matches('-').len();
                        let mut s = Scanner {
                            bytes: line.as_bytes(),
                            at,
                        };
                        let negative = before.ends_with('-');
                        let value = text.parse().unwrap();
                        assert_eq!(s.int(), Some((negative, value)), "{line}");
                        assert_eq!(s.at, before.len() + text.len());
                    }
                }
            }
        }
        for bad in ["", "-", "01", "1.5", "2e3", "1234567890123456789"] {
            let mut s = Scanner {
                bytes: bad.as_bytes(),
                at: 0,
            };
            assert_eq!(s.int(), None, "{bad}");
        }
        let word = |text: &[u8; 8]| digit_bytes(u64::from_le_bytes(*text)).1;
        assert_eq!(eight_digits(word(b"12345678")), 12_345_678);
        assert_eq!(eight_digits(word(b"00000009")), 9);
    }

    #[test]
    fn finds_every_byte_that_may_end_a_plain_string() {
        for special in [b'"', b'\\', 0, 0x1f, 0x80, 0xff] {
            for at in 0..8 {
                let mut w = *b"abcdefgh";
                w[at] = special;
                assert!(maybe_special(u64::from_le_bytes(w)), "{special} at {at}");
            }
        }
        assert!(!maybe_special(u64::from_le_bytes(*b"https://")));
        assert!(!maybe_special(u64::from_le_bytes(*b" !#~{}[]")));
        // Strings of every length around the 8-byte steps.
        for n in 0..20 {
            let text = "x".repeat(n);
            let line = format!(r#"{{"event_type":0,"ts":1,"name":"{text}","url":"{text}"}}"#);
            let e = event(line.as_bytes()).unwrap();
            assert_eq!(e.name.unwrap().0, text);
            let escaped = format!(r#"{{"event_type":0,"ts":1,"url":"{text}\n"}}"#);
            assert!(event(escaped.as_bytes()).is_none());
        }
    }
}
