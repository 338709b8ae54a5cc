//! Nexmark q7, highest bid: per tumbling window (10 s by default; config
//! `size_ms`), the bids with the highest price (all ties).
//!
//! Three stages of one component, chosen by config `stage`, so the work
//! spreads over subtasks (a single key per window would not):
//!
//! - `prepare` (stateless): bids keyed by auction;
//! - `local` (hash edge, keyed by auction): the highest bids of each
//!   auction per window, with `weir_guest::window` and an aggregate of our
//!   own; emits `window end -> {"price","bids":[..]}` when a window closes;
//! - `global` (hash edge, keyed by window end): the highest of those;
//!   when the watermark passes the window it emits
//!   `auction -> {"auction","price","bidder","ts","window_end"}` per bid.

use nexmark_events::{BID, Event};
use serde::{Deserialize, Serialize};
use weir_guest::window::{AggregateFunction, WindowAssigner, Windows};
use weir_guest::{Context, Decode, Json, OpenContext, Operator, Record, Result, Timer, ValueState};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Bid {
    auction: u64,
    bidder: u64,
    ts: i64,
}

/// The highest price seen and the bids that offered it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Highest {
    price: u64,
    bids: Vec<Bid>,
}

impl Highest {
    fn offer(&mut self, price: u64, bids: &[Bid]) {
        if bids.is_empty() || price < self.price {
            return;
        }
        if price > self.price || self.bids.is_empty() {
            self.price = price;
            self.bids.clear();
        }
        self.bids.extend_from_slice(bids);
    }
}

pub struct HighestBids;

impl AggregateFunction for HighestBids {
    type In = (u64, Bid);
    type Acc = Highest;
    type Out = Highest;
    fn create(&self) -> Highest {
        Highest::default()
    }
    fn add(&self, acc: &mut Highest, (price, bid): &(u64, Bid)) {
        acc.offer(*price, std::slice::from_ref(bid));
    }
    fn merge(&self, acc: &mut Highest, other: Highest) {
        acc.offer(other.price, &other.bids);
    }
    fn result(&self, acc: &Highest) -> Highest {
        acc.clone()
    }
}

#[derive(Serialize)]
struct Out {
    auction: u64,
    price: u64,
    bidder: u64,
    ts: i64,
    window_end: i64,
}

pub enum HighestBid {
    Prepare,
    Local(Windows<HighestBids>),
    Global { best: ValueState<Json<Highest>> },
}

impl Operator for HighestBid {
    type Key = Vec<u8>;
    type Value = Vec<u8>;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(
            match nexmark_events::stage(ctx, &["prepare", "local", "global"])? {
                "prepare" => HighestBid::Prepare,
                "local" => {
                    let assigner = WindowAssigner::tumbling(ctx.config_or("size_ms", 10_000i64)?)?;
                    HighestBid::Local(Windows::new(ctx, "highest", assigner, HighestBids)?)
                }
                _ => HighestBid::Global {
                    best: ctx.value_state("best")?,
                },
            },
        )
    }

    fn process(&mut self, ctx: &mut Context, record: Record<Vec<u8>, Vec<u8>>) -> Result<()> {
        match self {
            HighestBid::Prepare => {
                let e = Event::parse(&record.value)?;
                if e.event_type == BID {
                    let bid = Bid {
                        auction: e.need(e.auction, "auction")?,
                        bidder: e.need(e.bidder, "bidder")?,
                        ts: e.ts,
                    };
                    ctx.emit(&bid.auction, &Json((e.need(e.price, "price")?, bid)))?;
                }
                Ok(())
            }
            HighestBid::Local(windows) => {
                let Json(bid) = Json::<(u64, Bid)>::decode(&record.value)?;
                windows
                    .add(ctx, record.timestamp.unwrap_or(0), &bid)
                    .map(drop)
            }
            HighestBid::Global { best } => {
                let Json(h) = Json::<Highest>::decode(&record.value)?;
                let mut acc = match best.get(ctx)? {
                    Some(Json(acc)) => acc,
                    None => {
                        // The window's end: the record's time is end - 1.
                        ctx.register_event_timer(record.timestamp.unwrap_or(0));
                        Highest::default()
                    }
                };
                acc.offer(h.price, &h.bids);
                best.set(ctx, &Json(acc))
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<Vec<u8>>) -> Result<()> {
        match self {
            HighestBid::Prepare => Ok(()),
            HighestBid::Local(windows) => {
                for result in windows.on_timer(ctx, &timer)? {
                    let ts = Some(result.timestamp());
                    ctx.emit_at(&result.window.end, &Json(result.value), ts)?;
                }
                Ok(())
            }
            HighestBid::Global { best } => {
                let window_end: i64 = Decode::decode(&timer.key)?;
                if let Some(Json(h)) = best.get(ctx)? {
                    for bid in h.bids {
                        let out = Out {
                            auction: bid.auction,
                            price: h.price,
                            bidder: bid.bidder,
                            ts: bid.ts,
                            window_end,
                        };
                        ctx.emit(&bid.auction, &Json(out))?;
                    }
                }
                best.clear(ctx);
                Ok(())
            }
        }
    }
}

weir_guest::export_operator!(HighestBid);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn keeps_every_bid_at_the_highest_price() {
        let mut h = Highest::default();
        let bid = |auction| Bid {
            auction,
            bidder: 1,
            ts: 0,
        };
        h.offer(5, &[bid(1)]);
        h.offer(3, &[bid(2)]);
        h.offer(5, &[bid(3)]);
        assert_eq!((h.price, h.bids.len()), (5, 2));
        h.offer(9, &[bid(4)]);
        assert_eq!((h.price, h.bids), (9, vec![bid(4)]));
    }

    #[test]
    fn global_emits_the_windows_highest_bids() {
        let mut h = Harness::<HighestBid>::with_config(&[("stage", "global")]).unwrap();
        let key = b"10000".to_vec();
        for v in [
            r#"{"price":7,"bids":[{"auction":1,"bidder":2,"ts":5}]}"#,
            r#"{"price":9,"bids":[{"auction":3,"bidder":4,"ts":6}]}"#,
            r#"{"price":9,"bids":[{"auction":5,"bidder":6,"ts":7}]}"#,
        ] {
            h.process(&key, &v.as_bytes().to_vec(), Some(9_999))
                .unwrap();
        }
        let out = h.advance_watermark(9_999).unwrap();
        let texts: Vec<_> = out.iter().map(|o| o.text().1).collect();
        assert_eq!(
            texts,
            [
                r#"{"auction":3,"price":9,"bidder":4,"ts":6,"window_end":10000}"#,
                r#"{"auction":5,"price":9,"bidder":6,"ts":7,"window_end":10000}"#
            ]
        );
    }
}
