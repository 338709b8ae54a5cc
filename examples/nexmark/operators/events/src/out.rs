//! Output without serde: flat JSON objects written straight into the
//! output buffer, byte for byte what serde_json's compact writer makes of
//! the same struct. Integers go through the SDK's `Encode` (decimal text
//! without the formatting machinery, which costs more than the rest of a
//! simple query in Wasm). Inlined, so the field names are copied as
//! constants rather than through a `memcpy` call each.

use weir_guest::Encode;

/// A JSON object being written: `Obj::new(out).u64("a", 1).end()` writes
/// `{"a":1}`. Names are written as given (plain identifiers).
pub struct Obj<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Obj<'o> {
    #[inline(always)]
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    #[inline(always)]
    fn name(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    #[inline(always)]
    pub fn u64(mut self, name: &str, n: u64) -> Self {
        n.encode(self.name(name));
        self
    }

    #[inline(always)]
    pub fn i64(mut self, name: &str, n: i64) -> Self {
        n.encode(self.name(name));
        self
    }

    /// serde_json's float text (shortest round-trip digits; `null` if not
    /// finite).
    #[inline(always)]
    pub fn f64(mut self, name: &str, x: f64) -> Self {
        let out = self.name(name);
        if x.is_finite() {
            // serde_json's own formatter (zmij), its text copied by the
            // SDK's short copy: through `io::Write` the copy, of a length
            // known only at run time, is a `memory.copy` host call in Wasm.
            let mut text = zmij::Buffer::new();
            weir_guest::bytes::extend(out, text.format_finite(x).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
        self
    }

    /// A string, escaped as serde_json escapes it.
    #[inline(always)]
    pub fn str(mut self, name: &str, s: &str) -> Self {
        let _ = serde_json::to_writer(self.name(name), s);
        self
    }

    #[inline(always)]
    pub fn end(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_serde_json_writes() {
        #[derive(serde::Serialize)]
        struct S<'a> {
            a: u64,
            b: i64,
            c: f64,
            d: &'a str,
            e: f64,
        }
        for (a, b, c, d) in [
            (0, 0, 0.0, ""),
            (u64::MAX, i64::MIN, 908.0, "x\"y\\z\n\u{1}é"),
            (1001, -5, 0.1 + 0.2, "Kate"),
            (7, i64::MAX, 1e300, "OR"),
            (8, 8, -0.0, "a"),
            (9, 9, 5e-324, "b"),
            (10, 10, f64::NEG_INFINITY, "c"),
            (11, 11, 859.0 * 0.908, "d"),
            (12, 12, -1.5e-7, "e"),
        ] {
            let s = S {
                a,
                b,
                c,
                d,
                e: f64::NAN,
            };
            let mut out = Vec::new();
            Obj::new(&mut out)
                .u64("a", a)
                .i64("b", b)
                .f64("c", c)
                .str("d", d)
                .f64("e", f64::NAN)
                .end();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap()
            );
        }
        let mut out = Vec::new();
        Obj::new(&mut out).end();
        assert_eq!(out, b"{}");
    }
}
