//! Text that came from a tenant (guest errors and logs, job-file values)
//! on its way to a control message, a REST reply, a log or a terminal.

/// Longest tenant text kept in an error or log line.
pub const MESSAGE_BYTES_MAX: usize = 4096;

/// Cuts `text` to at most `max_bytes` bytes of output (on a char boundary)
/// and replaces control characters other than newline and tab with `\u{..}`
/// escapes, so the result is safe to print and cheap to encode as JSON.
/// A cut is marked with how many bytes were left out.
pub fn cut(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes) + 32);
    for (at, c) in text.char_indices() {
        let escaped;
        let piece: &str = if c.is_control() && c != '\n' && c != '\t' {
            escaped = format!("\\u{{{:x}}}", c as u32);
            &escaped
        } else {
            &text[at..at + c.len_utf8()]
        };
        if out.len() + piece.len() > max_bytes {
            out.push_str(&format!(" … ({} more bytes cut)", text.len() - at));
            return out;
        }
        out.push_str(piece);
    }
    out
}

/// [`cut`] with [`MESSAGE_BYTES_MAX`].
pub fn cut_message(text: &str) -> String {
    cut(text, MESSAGE_BYTES_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_unchanged() {
        assert_eq!(cut("hello\nworld\t!", 100), "hello\nworld\t!");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_and_marked() {
        let text = "é".repeat(100); // 200 bytes
        let out = cut(&text, 11);
        assert!(out.starts_with("ééééé …"), "{out}");
        assert!(out.ends_with("(190 more bytes cut)"), "{out}");
    }

    #[test]
    fn control_characters_are_escaped_and_counted_against_the_limit() {
        assert_eq!(cut("a\u{0}b\u{1b}", 100), "a\\u{0}b\\u{1b}");
        let out = cut(&"\u{1}".repeat(1_000_000), 64);
        assert!(out.len() < 64 + 40, "{}", out.len());
    }
}
