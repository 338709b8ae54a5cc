// Splits each line of text into lowercase words and emits one record per
// word, keyed by the word, with the count 1, stamped with the line's event
// time: the Rust tokenizer in JavaScript (same output byte for byte).
import { exportOperator } from "weir";

// Rust's char::is_alphanumeric is Unicode Alphabetic or Numeric. The
// engine inside componentize-js has no Unicode property tables, so a
// non-ASCII character counts as part of a word when it has case (letters
// such as é, ß, Ж) or is a digit in another script; ASCII is exact.
function isWordChar(ch) {
  const c = ch.codePointAt(0);
  if (c < 128) return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
  return ch.toLowerCase() !== ch.toUpperCase() || /\d/u.test(ch);
}

function* words(text) {
  let word = "";
  for (const ch of text) {
    if (isWordChar(ch)) {
      word += ch;
    } else if (word) {
      yield word;
      word = "";
    }
  }
  if (word) yield word;
}

class Tokenizer {
  static key = "unit";
  static value = "json"; // {"text": "..."}

  process(ctx, record) {
    for (const word of words(String(record.value.text))) {
      ctx.emit(word.toLowerCase(), 1);
    }
  }
}

export const hooks = exportOperator(Tokenizer);
