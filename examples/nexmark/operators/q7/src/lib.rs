//! Nexmark q7, highest bid: per tumbling window (10 s by default; config
//! `size_ms`), the bids with the highest price (all ties).
//!
//! Three stages of one component, chosen by config `stage`, so the work
//! spreads over subtasks (a single key per window would not):
//!
//! - `prepare` (stateless): bids keyed by auction;
//! - `local` (hash edge, keyed by auction): the highest bids of each
//!   auction per window (the auction's open windows in one value state,
//!   written only when a bid ties or beats the highest); emits
//!   `window end -> (price, bids)` (binary, see `highest`) when a window
//!   closes;
//! - `global` (hash edge, keyed by window end): the highest of those;
//!   when the watermark passes the window it emits
//!   `auction -> {"auction","price","bidder","ts","window_end"}` per bid.

mod highest;

use nexmark_events::{BID, Event, Obj, StateCache};
use weir_guest::window::WindowAssigner;
use weir_guest::{
    Context, Decode, Encode, OpenContext, Operator, Record, Result, Timer, ValueState,
};

pub use highest::{Bid, Highest, Open, PricedBid};

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
    /// Tumbling windows of `size` ms; per auction, the open windows'
    /// highest bids.
    Local {
        size: i64,
        open: ValueState<Open>,
        cache: StateCache<Open>,
    },
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
                    // The window library's checks and messages.
                    WindowAssigner::tumbling(size)?;
                    HighestBid::Local {
                        size,
                        open: ctx.value_state("open")?,
                        cache: StateCache::default(),
                    }
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
            HighestBid::Local { size, open, cache } => {
                let bid = PricedBid::decode(&record.value)?;
                let ts = record.timestamp.unwrap_or(0);
                let end = highest::window_end(ts, *size)?;
                let mut o = cache.get(ctx, open)?.unwrap_or_default();
                // A window in the state has not fired yet. A new one may
                // be closed already if the record is late (the host drops
                // late records; the library skips such windows).
                if !o.has(end) && end - 1 <= ctx.watermark() {
                    return Ok(());
                }
                let (changed, new_window) = o.offer(end, bid);
                if new_window {
                    ctx.register_event_timer(end - 1);
                }
                // Most bids are below their auction's highest: no write.
                if changed {
                    cache.set(ctx, open, o)
                } else {
                    Ok(())
                }
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
            HighestBid::Local { open, cache, .. } => {
                let Some(mut o) = cache.get(ctx, open)? else {
                    return Ok(());
                };
                let end = timer.timestamp.saturating_add(1);
                if let Some(h) = o.take(end) {
                    ctx.emit_at(&end, &h, Some(timer.timestamp))?;
                }
                if o.is_empty() {
                    cache.clear(ctx, open);
                    Ok(())
                } else {
                    cache.set(ctx, open, o)
                }
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

    /// The window library's tumbling windows with q7's aggregate, as the
    /// `local` stage used them before.
    struct Library(weir_guest::window::Windows<HighestBids>);

    struct HighestBids;

    impl weir_guest::window::AggregateFunction for HighestBids {
        type In = PricedBid;
        type Acc = (u64, Vec<(u64, u64, i64)>);
        type Out = Highest;
        fn create(&self) -> Self::Acc {
            (0, Vec::new())
        }
        fn add(&self, acc: &mut Self::Acc, b: &PricedBid) {
            let mut h = self.result(acc);
            h.offer(b.price, &[b.bid]);
            *acc = (
                h.price,
                h.bids.iter().map(|b| (b.auction, b.bidder, b.ts)).collect(),
            );
        }
        fn merge(&self, _: &mut Self::Acc, _: Self::Acc) {}
        fn result(&self, acc: &Self::Acc) -> Highest {
            let bids = acc.1.iter();
            Highest {
                price: acc.0,
                bids: bids
                    .map(|&(auction, bidder, ts)| Bid {
                        auction,
                        bidder,
                        ts,
                    })
                    .collect(),
            }
        }
    }

    impl Operator for Library {
        type Key = ();
        type Value = Vec<u8>;
        fn open(ctx: &mut OpenContext) -> Result<Self> {
            let a = WindowAssigner::tumbling(10)?;
            Ok(Library(weir_guest::window::Windows::new(
                ctx,
                "w",
                a,
                HighestBids,
            )?))
        }
        fn process(&mut self, ctx: &mut Context, r: Record<(), Vec<u8>>) -> Result<()> {
            let b = PricedBid::decode(&r.value)?;
            self.0.add(ctx, r.timestamp.unwrap_or(0), &b).map(drop)
        }
        fn on_timer(&mut self, ctx: &mut Context, t: Timer<()>) -> Result<()> {
            for r in self.0.on_timer(ctx, &t)? {
                ctx.emit_at(&r.window.end, &r.value, Some(r.timestamp()))?;
            }
            Ok(())
        }
    }

    #[test]
    fn local_keeps_what_the_window_library_kept() {
        let config = [("stage", "local"), ("size_ms", "10")];
        let mut ours = Harness::<HighestBid>::with_config(&config).unwrap();
        let mut library = Harness::<Library>::new().unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
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
            let mut v = Vec::new();
            bid.encode(&mut v);
            ours.process(&b"1".to_vec(), &v, Some(ts)).unwrap();
            library.process(&b"1".to_vec(), &v, Some(ts)).unwrap();
            watermark = watermark.max(ts - 6);
            a.extend(ours.advance_watermark(watermark).unwrap());
            b.extend(library.advance_watermark(watermark).unwrap());
        }
        a.extend(ours.advance_watermark(i64::MAX - 1).unwrap());
        b.extend(library.advance_watermark(i64::MAX - 1).unwrap());
        let view = |o: &Vec<weir_guest::testing::Emitted>| {
            o.iter()
                .map(|e| (e.text().0, e.timestamp, e.value_as::<Highest>().unwrap()))
                .collect::<Vec<_>>()
        };
        assert!(a.len() > 20);
        assert_eq!(view(&a), view(&b));
        assert!(ours.pending_timers().is_empty());
    }
}
