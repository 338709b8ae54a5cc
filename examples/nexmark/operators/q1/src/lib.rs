//! Nexmark q1, currency conversion: each bid with its price in euros
//! (`price * 0.908`), keyed by auction. Other events are dropped.
//!
//! Out: `auction -> {"auction","bidder","price","ts"}` (price a float).

use nexmark_events::{BidsOnly, Obj};
use weir_guest::{Context, Encode, OpenContext, Operator, Record, Result};

pub const DOLLAR_TO_EURO: f64 = 0.908;

struct EuroBid {
    auction: u64,
    bidder: u64,
    price: f64,
    ts: i64,
}

impl Encode for EuroBid {
    fn encode(&self, out: &mut Vec<u8>) {
        Obj::new(out)
            .u64("auction", self.auction)
            .u64("bidder", self.bidder)
            .f64("price", self.price)
            .i64("ts", self.ts)
            .end()
    }
}

pub struct CurrencyConversion;

impl Operator for CurrencyConversion {
    type Key = ();
    type Value = BidsOnly;

    fn open(_ctx: &mut OpenContext) -> Result<Self> {
        Ok(CurrencyConversion)
    }

    fn process(&mut self, ctx: &mut Context, record: Record<(), BidsOnly>) -> Result<()> {
        let Some(e) = &record.value.0 else {
            return Ok(()); // not a bid
        };
        let auction = e.need(e.auction, "auction")?;
        let bid = EuroBid {
            auction,
            bidder: e.need(e.bidder, "bidder")?,
            price: e.need(e.price, "price")? as f64 * DOLLAR_TO_EURO,
            ts: e.ts,
        };
        ctx.emit(&auction, &bid)
    }
}

weir_guest::export_operator!(CurrencyConversion);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn converts_bids_and_drops_the_rest() {
        let mut h = Harness::<CurrencyConversion>::new().unwrap();
        let bid = br#"{"event_type":2,"ts":5,"auction":1001,"bidder":1002,"price":1000,"channel":"a","url":"b"}"#;
        let out = h.process(&(), &bid.to_vec(), Some(5)).unwrap();
        assert_eq!(
            out[0].text(),
            (
                "1001".into(),
                r#"{"auction":1001,"bidder":1002,"price":908.0,"ts":5}"#.into()
            )
        );
        let person = br#"{"event_type":0,"ts":1,"id":1000,"name":"a","city":"b","state":"OR"}"#;
        assert!(
            h.process(&(), &person.to_vec(), Some(1))
                .unwrap()
                .is_empty()
        );
    }
}
