//! Nexmark q7, highest bid: per tumbling window (10 s by default; config
//! `size_ms`), the bids with the highest price (all ties).
//!
//! Three stages of one component, chosen by config `stage`, so the work
//! spreads over subtasks (a single key per window would not):
//!
//! - `prepare` (stateless): bids keyed by auction;
//! - `local` (hash edge, keyed by auction): the highest bids of each
//!   auction per window (`weir_guest::window`, tumbling, with the
//!   `HighestBids` aggregate: state is written only when a bid ties or
//!   beats the highest); emits
//!   `window end -> (price, bids)` (binary, see `highest`) when a window
//!   closes;
//! - `global` (hash edge, keyed by window end): the highest of those;
//!   when the watermark passes the window it emits
//!   `auction -> {"auction","price","bidder","ts","window_end"}` per bid.

mod highest;

use nexmark_events::{BID, Event, Obj};
use weir_guest::window::{WindowAssigner, Windows};
use weir_guest::{
    Context, Decode, Encode, OpenContext, Operator, Record, Result, Timer, ValueState,
};

pub use highest::{Bid, Highest, HighestBids, PricedBid};

struct Out {
    auction: u64,
    price: u64,
    bidder: u64,
    ts: i64,
    window_end: i64,
}

impl Encode for Out {
    fn encode(&self, out: &mut Vec<u8>) {
        Obj::new(out)
            .u64("auction", self.auction)
            .u64("price", self.price)
            .u64("bidder", self.bidder)
            .i64("ts", self.ts)
            .i64("window_end", self.window_end)
            .end()
    }
}

pub enum HighestBid {
    Prepare,
    /// Tumbling windows of `size_ms`; per auction, the open windows'
    /// highest bids.
    Local(Windows<HighestBids>),
    Global {
        best: ValueState<Highest>,
    },
}

impl Operator for HighestBid {
    type Key = ();
    type Value = Vec<u8>;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(
            match nexmark_events::stage(ctx, &["prepare", "local", "global"])? {
                "prepare" => HighestBid::Prepare,
                "local" => {
                    let size = ctx.config_or("size_ms", 10_000i64)?;
                    let assigner = WindowAssigner::tumbling(size)?;
                    HighestBid::Local(Windows::new(ctx, "open", assigner, HighestBids)?)
                }
                _ => HighestBid::Global {
                    best: ctx.value_state("best")?,
                },
            },
        )
    }

    fn process(&mut self, ctx: &mut Context, record: Record<(), Vec<u8>>) -> Result<()> {
        match self {
            HighestBid::Prepare => {
                let e = Event::parse(&record.value)?;
                if e.event_type == BID {
                    let bid = PricedBid {
                        price: e.need(e.price, "price")?,
                        bid: Bid {
                            auction: e.need(e.auction, "auction")?,
                            bidder: e.need(e.bidder, "bidder")?,
                            ts: e.ts,
                        },
                    };
                    ctx.emit(&bid.bid.auction, &bid)?;
                }
                Ok(())
            }
            HighestBid::Local(windows) => {
                let bid = PricedBid::decode(&record.value)?;
                // Without allowed lateness the only output is `Late`, for a
                // record too late for its window (only with the job's
                // `late_records = "process"`): dropped, as Flink does.
                windows.add(ctx, record.timestamp.unwrap_or(0), &bid)?;
                Ok(())
            }
            HighestBid::Global { best } => {
                let h = Highest::decode(&record.value)?;
                let mut acc = match best.get(ctx)? {
                    Some(acc) => acc,
                    None => {
                        // The window's end: the record's time is end - 1.
                        ctx.register_event_timer(record.timestamp.unwrap_or(0));
                        Highest::default()
                    }
                };
                acc.offer(h.price, &h.bids);
                best.set(ctx, &acc)
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<()>) -> Result<()> {
        match self {
            HighestBid::Prepare => Ok(()),
            HighestBid::Local(windows) => {
                for result in windows.on_timer(ctx, &timer)? {
                    ctx.emit_at(&result.window.end, &result.value, Some(result.timestamp()))?;
                }
                Ok(())
            }
            HighestBid::Global { best } => {
                let window_end: i64 = Decode::decode(ctx.key_bytes())?;
                if let Some(h) = best.get(ctx)? {
                    for bid in h.bids {
                        let out = Out {
                            auction: bid.auction,
                            price: h.price,
                            bidder: bid.bidder,
                            ts: bid.ts,
                            window_end,
                        };
                        ctx.emit(&bid.auction, &out)?;
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
        for (price, auction, bidder, ts) in [(7, 1, 2, 5), (9, 3, 4, 6), (9, 5, 6, 7)] {
            let mut v = Highest::default();
            v.offer(
                price,
                &[Bid {
                    auction,
                    bidder,
                    ts,
                }],
            );
            let mut bytes = Vec::new();
            v.encode(&mut bytes);
            h.process(&key, &bytes, Some(9_999)).unwrap();
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

    #[test]
    fn local_emits_each_windows_highest_bids_once_it_closes() {
        let config = [("stage", "local"), ("size_ms", "10")];
        let mut local = Harness::<HighestBid>::with_config(&config).unwrap();
        let mut out = Vec::new();
        // Per window end, the highest price and its bids, in arrival order.
        let mut want: std::collections::BTreeMap<i64, Highest> = Default::default();
        let mut watermark = i64::MIN;
        for i in 0..400i64 {
            let ts = (i * 37) % 23 + i / 2 - 5;
            if ts <= watermark {
                continue; // the host drops late records
            }
            let bid = PricedBid {
                price: ((i * 13) % 7) as u64,
                bid: Bid {
                    auction: 1,
                    bidder: i as u64,
                    ts,
                },
            };
            let w = want.entry(ts.div_euclid(10) * 10 + 10).or_default();
            if w.bids.is_empty() || bid.price > w.price {
                *w = Highest {
                    price: bid.price,
                    bids: vec![bid.bid],
                };
            } else if bid.price == w.price {
                w.bids.push(bid.bid);
            }
            let mut v = Vec::new();
            bid.encode(&mut v);
            local.process(&b"1".to_vec(), &v, Some(ts)).unwrap();
            watermark = watermark.max(ts - 6);
            out.extend(local.advance_watermark(watermark).unwrap());
        }
        out.extend(local.advance_watermark(i64::MAX - 1).unwrap());
        let got: Vec<(i64, Option<i64>, Highest)> = out
            .iter()
            .map(|e| {
                let end = e.key_as::<i64>().unwrap();
                (end, e.timestamp, e.value_as::<Highest>().unwrap())
            })
            .collect();
        let want: Vec<(i64, Option<i64>, Highest)> = want
            .into_iter()
            .map(|(end, h)| (end, Some(end - 1), h))
            .collect();
        assert!(got.len() > 20);
        assert_eq!(got, want);
        assert!(local.pending_timers().is_empty());
    }
}
