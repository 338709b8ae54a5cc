//! Nexmark q2, selection: the bids on auctions whose id is a multiple of
//! `modulus` (config, default 123, as in Flink's Nexmark).
//!
//! Out: `auction -> {"auction","price"}`.

use nexmark_events::{BidsOnly, Obj};
use weir_guest::{Context, Encode, Error, OpenContext, Operator, Record, Result};

struct Selected {
    auction: u64,
    price: u64,
}

impl Encode for Selected {
    fn encode(&self, out: &mut Vec<u8>) {
        Obj::new(out)
            .u64("auction", self.auction)
            .u64("price", self.price)
            .end()
    }
}

pub struct Selection {
    modulus: u64,
}

impl Operator for Selection {
    type Key = ();
    type Value = BidsOnly;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        let modulus = ctx.config_or("modulus", 123u64)?;
        if modulus == 0 {
            return Err(Error::msg("config `modulus` must be at least 1"));
        }
        Ok(Selection { modulus })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<(), BidsOnly>) -> Result<()> {
        let Some(e) = &record.value.0 else {
            return Ok(()); // not a bid
        };
        let auction = e.need(e.auction, "auction")?;
        if auction % self.modulus != 0 {
            return Ok(());
        }
        let price = e.need(e.price, "price")?;
        ctx.emit(&auction, &Selected { auction, price })
    }
}

weir_guest::export_operator!(Selection);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn keeps_bids_on_every_modulus_th_auction() {
        let mut h = Harness::<Selection>::with_config(&[("modulus", "3")]).unwrap();
        let bid = |auction: u64| {
            format!(r#"{{"event_type":2,"ts":5,"auction":{auction},"bidder":1,"price":7,"channel":"a","url":"b"}}"#)
                .into_bytes()
        };
        assert!(h.process(&(), &bid(1001), Some(5)).unwrap().is_empty());
        let out = h.process(&(), &bid(1002), Some(5)).unwrap();
        assert_eq!(out[0].text().1, r#"{"auction":1002,"price":7}"#);
        assert!(Harness::<Selection>::with_config(&[("modulus", "0")]).is_err());
    }
}
