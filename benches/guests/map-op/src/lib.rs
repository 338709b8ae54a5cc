//! The map operator of the Wasm-overhead benchmark: upper-cases each value
//! (ASCII) and keeps the key. Built both as a component and natively, so
//! the benchmark compares the same code.

use weir_guest::{Context, OpenContext, Operator, Record, Result};

pub struct UpperCase;

impl Operator for UpperCase {
    type Key = Vec<u8>;
    type Value = Vec<u8>;

    fn open(_ctx: &mut OpenContext) -> Result<Self> {
        Ok(UpperCase)
    }

    fn process(&mut self, ctx: &mut Context, mut record: Record<Vec<u8>, Vec<u8>>) -> Result<()> {
        record.value.make_ascii_uppercase();
        ctx.emit(&record.key, &record.value)
    }
}

weir_guest::export_operator!(UpperCase);
