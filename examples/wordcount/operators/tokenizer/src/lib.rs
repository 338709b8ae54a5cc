//! Splits each line of text into lowercase words and emits one record per
//! word, keyed by the word, stamped with the line's event time.

use serde::Deserialize;
use weir_guest::{Context, Json, OpenContext, Operator, Record, Result};

#[derive(Deserialize)]
pub struct Line {
    pub text: String,
}

pub struct Tokenizer;

impl Operator for Tokenizer {
    type Key = ();
    type Value = Json<Line>;

    fn open(_ctx: &mut OpenContext) -> Result<Self> {
        Ok(Tokenizer)
    }

    fn process(&mut self, ctx: &mut Context, record: Record<(), Json<Line>>) -> Result<()> {
        for word in record
            .value
            .text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            ctx.emit(&word.to_lowercase(), &1u64)?;
        }
        Ok(())
    }
}

weir_guest::export_operator!(Tokenizer);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn splits_lines_into_lowercase_words() {
        let mut h = Harness::<Tokenizer>::new().unwrap();
        let out = h
            .process(
                &(),
                &"{\"text\":\"The cat, the HAT!\"}".to_string(),
                Some(7),
            )
            .unwrap();
        let words: Vec<String> = out.iter().map(|e| e.key_as::<String>().unwrap()).collect();
        assert_eq!(words, ["the", "cat", "the", "hat"]);
        assert!(out.iter().all(|e| e.timestamp == Some(7)));
    }

    #[test]
    fn rejects_records_that_are_not_lines() {
        let mut h = Harness::<Tokenizer>::new().unwrap();
        let err = h.process(&(), &"not json".to_string(), None).unwrap_err();
        assert!(
            err.message().contains("record 0: value: not valid JSON"),
            "{err}"
        );
    }
}
