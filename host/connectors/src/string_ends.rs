//! Where the strings of a JSON line end, found 64 bytes at a time.
//!
//! A line without escapes has every quote as a string delimiter, so a
//! string ends at the first quote after its opening one. [`StringEnds`]
//! finds quotes, backslashes and control characters for 64 bytes at once
//! (16-byte SSE2 compares on x86_64, a plain loop elsewhere) and answers
//! from the bitmasks; finding each end with a `memchr` call per string, or
//! byte by byte, took most of a JSON-lines source's time on Nexmark's
//! short strings. The parse moves forward, so each block of the line is
//! looked at about once.

/// Bytes per block: one bit of a `u64` mask each.
const BLOCK: usize = 64;

/// A forward cursor over one line's string ends.
pub(crate) struct StringEnds<'a> {
    bytes: &'a [u8],
    /// The block the masks describe (`usize::MAX` before the first).
    block: usize,
    quotes: u64,
    /// Backslashes and control characters: a string holding one goes the
    /// slow way (escapes to serde_json, raw control characters are errors).
    specials: u64,
}

impl<'a> StringEnds<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        StringEnds {
            bytes,
            block: usize::MAX,
            quotes: 0,
            specials: 0,
        }
    }

    /// Past the closing quote of the string whose opening quote is at
    /// `open`, if it closes and holds no backslash or control character.
    #[inline(always)]
    pub(crate) fn string_end(&mut self, open: usize) -> Option<usize> {
        // Most strings end in the block they start in, whose masks are
        // loaded: answered inline, without a call.
        let from = open.checked_add(1)?;
        if from / BLOCK == self.block
            && let Some(found) = self.look(from)
        {
            return found;
        }
        self.string_end_in_later_blocks(from)
    }

    #[inline(never)]
    fn string_end_in_later_blocks(&mut self, mut from: usize) -> Option<usize> {
        loop {
            let block = from / BLOCK;
            if block * BLOCK >= self.bytes.len() {
                return None;
            }
            if block != self.block {
                self.load(block);
            }
            if let Some(found) = self.look(from) {
                return found;
            }
            from = (block + 1) * BLOCK;
        }
    }

    /// In the loaded block, from byte `from` (inside it) on: the string's
    /// end when a quote comes with nothing special before it, `Some(None)`
    /// when a special byte comes first, `None` when the block has neither.
    #[inline(always)]
    fn look(&self, from: usize) -> Option<Option<usize>> {
        let from_bit = !0u64 << (from % BLOCK);
        let quotes = self.quotes & from_bit;
        let specials = self.specials & from_bit;
        if quotes != 0 {
            let end = quotes.trailing_zeros();
            let before_end = (1u64 << end) - 1;
            let plain = specials & before_end == 0;
            return Some(plain.then_some(self.block * BLOCK + end as usize + 1));
        }
        (specials != 0).then_some(None)
    }

    fn load(&mut self, block: usize) {
        let start = block * BLOCK;
        let rest = &self.bytes[start..];
        let masks = match rest.first_chunk::<BLOCK>() {
            Some(full) => masks(full),
            None => {
                // The last, short block: spaces after the line's end are
                // neither quotes nor specials.
                let mut padded = [b' '; BLOCK];
                padded[..rest.len()].copy_from_slice(rest);
                masks(&padded)
            }
        };
        (self.quotes, self.specials) = masks;
        self.block = block;
    }
}

/// (quotes, backslashes and control characters) of 64 bytes, bit i for
/// byte i.
#[cfg(target_arch = "x86_64")]
fn masks(block: &[u8; BLOCK]) -> (u64, u64) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let (mut quotes, mut specials) = (0u64, 0u64);
    // SAFETY: SSE2 is part of every x86_64 target, and each load reads
    // the 16 bytes of one chunk (unaligned loads).
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let below_space = _mm_set1_epi8(0x1f);
        for (i, chunk) in block.chunks_exact(16).enumerate() {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u16;
            // Unsigned v <= 0x1f exactly when max(v, 0x1f) == 0x1f.
            let control = _mm_cmpeq_epi8(_mm_max_epu8(v, below_space), below_space);
            let s = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, backslash), control)) as u16;
            quotes |= u64::from(q) << (16 * i);
            specials |= u64::from(s) << (16 * i);
        }
    }
    (quotes, specials)
}

#[cfg(not(target_arch = "x86_64"))]
fn masks(block: &[u8; BLOCK]) -> (u64, u64) {
    scalar_masks(block)
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn scalar_masks(block: &[u8; BLOCK]) -> (u64, u64) {
    let (mut quotes, mut specials) = (0u64, 0u64);
    for (i, &b) in block.iter().enumerate() {
        quotes |= u64::from(b == b'"') << i;
        specials |= u64::from(b == b'\\' || b < 0x20) << i;
    }
    (quotes, specials)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same answer byte by byte.
    fn slow_end(bytes: &[u8], open: usize) -> Option<usize> {
        let mut at = open + 1;
        loop {
            match *bytes.get(at)? {
                b'"' => return Some(at + 1),
                b'\\' | 0..=0x1f => return None,
                _ => at += 1,
            }
        }
    }

    #[test]
    fn finds_ends_across_blocks() {
        let long = format!(
            r#"{{"a":"{}","b":"x\ty","c":"z\"","d":"é"}}"#,
            "x".repeat(100)
        );
        let bytes = long.as_bytes();
        let mut ends = StringEnds::new(bytes);
        assert_eq!(ends.string_end(1), Some(4));
        assert_eq!(ends.string_end(5), Some(107));
        assert_eq!(ends.string_end(108), Some(111));
        assert_eq!(ends.string_end(112), None, "a tab inside");
        let c = long.find(r#""z"#).unwrap();
        assert_eq!(ends.string_end(c), None, "an escape inside");
        let d = long.find(r#""é"#).unwrap();
        assert_eq!(ends.string_end(d), Some(d + 4), "UTF-8 is plain text");
        assert_eq!(StringEnds::new(br#""open"#).string_end(0), None);
    }

    proptest::proptest! {
        /// Any bytes, any forward walk: the masks agree with a byte loop.
        #[test]
        fn agrees_with_a_byte_loop(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'"', b'\\', b'\t', 0u8, b'a', b' ', 0x80, 0xff]),
                0..300,
            ),
            starts in proptest::collection::vec(0usize..300, 0..20),
        ) {
            let mut starts = starts;
            starts.sort_unstable();
            let mut ends = StringEnds::new(&bytes);
            for open in starts.into_iter().filter(|&s| s < bytes.len()) {
                proptest::prop_assert_eq!(ends.string_end(open), slow_end(&bytes, open));
            }
        }

        #[test]
        fn simd_masks_equal_scalar_masks(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, BLOCK),
        ) {
            let block: &[u8; BLOCK] = bytes.as_slice().try_into().unwrap();
            proptest::prop_assert_eq!(masks(block), scalar_masks(block));
        }
    }
}
