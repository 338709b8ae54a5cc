//! Nexmark q0, pass-through: every event, unchanged (key, value and event
//! time), to measure the cost of moving records through an operator.

use weir_guest::{Context, OpenContext, Operator, Record, Result};

pub struct PassThrough;

impl Operator for PassThrough {
    type Key = Vec<u8>;
    type Value = Vec<u8>;

    fn open(_ctx: &mut OpenContext) -> Result<Self> {
        Ok(PassThrough)
    }

    fn process(&mut self, ctx: &mut Context, record: Record<Vec<u8>, Vec<u8>>) -> Result<()> {
        ctx.emit(&record.key, &record.value)
    }
}

weir_guest::export_operator!(PassThrough);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn passes_records_through() {
        let mut h = Harness::<PassThrough>::new().unwrap();
        let out = h.process(&b"k".to_vec(), &b"{}".to_vec(), Some(7)).unwrap();
        assert_eq!(out[0].text(), ("k".into(), "{}".into()));
        assert_eq!(out[0].timestamp, Some(7));
    }
}
