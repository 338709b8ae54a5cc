//! Nexmark q4, average closing price per category: each auction's winning
//! bid (its highest bid between its start and its `expires`), averaged
//! per category as auctions close.
//!
//! Three stages of one component, chosen by config `stage`:
//!
//! - `prepare` (stateless): auctions keyed by id, bids keyed by auction;
//! - `winning` (hash edge, keyed by auction): keeps the auction and its
//!   highest bid so far (bids that come before their auction wait in a
//!   list); when the watermark passes `expires` it emits
//!   `category -> (auction, category, price)` (binary, see `records`) if
//!   the auction had a bid, and forgets the auction a minute later;
//! - `average` (hash edge, keyed by category): emits the running average
//!   `category -> {"category","count","avg"}` on every closed auction (a
//!   changelog, like Flink's; the last record per category is the answer).

mod records;

use nexmark_events::{AUCTION, BID, Event, Obj, StateCache};
use weir_guest::{
    Context, Decode, Encode, ListState, OpenContext, Operator, Record, Result, Timer, ValueState,
};

pub use records::{Closed, Side, Totals, Win};

/// How long a closed auction is remembered (so its late bids are not
/// mistaken for bids before it) before its state is dropped.
const FORGET_AFTER_MS: i64 = 60_000;

struct Average {
    category: u64,
    count: u64,
    avg: f64,
}

impl Encode for Average {
    fn encode(&self, out: &mut Vec<u8>) {
        Obj::new(out)
            .u64("category", self.category)
            .u64("count", self.count)
            .f64("avg", self.avg)
            .end()
    }
}

pub enum AverageClosingPrice {
    Prepare,
    Winning {
        /// The auction and its highest bid so far, once the auction came.
        win: ValueState<Win>,
        cache: StateCache<Win>,
        /// Bids that came before their auction: (ts, price).
        early: ListState<Side>,
    },
    Average {
        totals: ValueState<Totals>,
    },
}

impl Operator for AverageClosingPrice {
    type Key = ();
    type Value = Vec<u8>;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(
            match nexmark_events::stage(ctx, &["prepare", "winning", "average"])? {
                "prepare" => AverageClosingPrice::Prepare,
                "winning" => AverageClosingPrice::Winning {
                    win: ctx.value_state("win")?,
                    cache: StateCache::default(),
                    early: ctx.list_state("early")?,
                },
                _ => AverageClosingPrice::Average {
                    totals: ctx.value_state("totals")?,
                },
            },
        )
    }

    fn process(&mut self, ctx: &mut Context, record: Record<(), Vec<u8>>) -> Result<()> {
        match self {
            AverageClosingPrice::Prepare => prepare(ctx, &record.value),
            AverageClosingPrice::Winning { win, cache, early } => {
                match Side::decode(&record.value)? {
                    Side::A {
                        ts,
                        expires,
                        category,
                    } => {
                        let mut w = Win {
                            ts,
                            expires,
                            category,
                            closed: false,
                            best: None,
                        };
                        for bid in early.get(ctx)? {
                            if let Side::B { ts, price } = bid
                                && (w.ts..=w.expires).contains(&ts)
                            {
                                w.best = w.best.max(Some(price));
                            }
                        }
                        early.clear(ctx);
                        ctx.register_event_timer(expires);
                        cache.set(ctx, win, w)
                    }
                    bid @ Side::B { ts, price } => match cache.get(ctx, win)? {
                        None => early.add(ctx, &bid),
                        Some(mut w) => {
                            if !w.closed
                                && (w.ts..=w.expires).contains(&ts)
                                && w.best.is_none_or(|b| price > b)
                            {
                                w.best = Some(price);
                                cache.set(ctx, win, w)?;
                            }
                            Ok(())
                        }
                    },
                }
            }
            AverageClosingPrice::Average { totals } => {
                let c = Closed::decode(&record.value)?;
                let mut t = totals.get(ctx)?.unwrap_or_default();
                t.sum = t.sum.saturating_add(c.price);
                t.count += 1;
                totals.set(ctx, &t)?;
                let avg = Average {
                    category: c.category,
                    count: t.count,
                    avg: t.sum as f64 / t.count as f64,
                };
                let key = ctx.key_bytes().to_vec();
                ctx.emit(&key, &avg)
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<()>) -> Result<()> {
        let AverageClosingPrice::Winning { win, cache, early } = self else {
            return Ok(());
        };
        let Some(mut w) = cache.get(ctx, win)? else {
            return Ok(());
        };
        if w.closed {
            cache.clear(ctx, win);
            early.clear(ctx);
            return Ok(());
        }
        if timer.timestamp != w.expires {
            return Ok(());
        }
        if let Some(price) = w.best {
            let id: u64 = Decode::decode(ctx.key_bytes())?;
            let closed = Closed {
                auction: id,
                category: w.category,
                price,
            };
            ctx.emit(&w.category, &closed)?;
        }
        w.best = None;
        w.closed = true;
        let forget = w.expires.saturating_add(FORGET_AFTER_MS);
        cache.set(ctx, win, w)?;
        ctx.register_event_timer(forget);
        Ok(())
    }
}

fn prepare(ctx: &mut Context, value: &[u8]) -> Result<()> {
    let e = Event::parse(value)?;
    match e.event_type {
        AUCTION => {
            let side = Side::A {
                ts: e.ts,
                expires: e.need(e.expires, "expires")?,
                category: e.need(e.category, "category")?,
            };
            ctx.emit(&e.need(e.id, "id")?, &side)
        }
        BID => {
            let side = Side::B {
                ts: e.ts,
                price: e.need(e.price, "price")?,
            };
            ctx.emit(&e.need(e.auction, "auction")?, &side)
        }
        _ => Ok(()),
    }
}

weir_guest::export_operator!(AverageClosingPrice);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    fn side(s: Side) -> Vec<u8> {
        let mut v = Vec::new();
        s.encode(&mut v);
        v
    }

    #[test]
    fn the_highest_bid_in_the_auctions_time_wins_when_it_expires() {
        let mut h = Harness::<AverageClosingPrice>::with_config(&[("stage", "winning")]).unwrap();
        let key = b"1001".to_vec();
        // Before the auction arrives: one in its time, one before it.
        h.process(&key, &side(Side::B { ts: 15, price: 70 }), Some(15))
            .unwrap();
        h.process(&key, &side(Side::B { ts: 5, price: 900 }), Some(5))
            .unwrap();
        let a = Side::A {
            ts: 10,
            expires: 100,
            category: 12,
        };
        h.process(&key, &side(a), Some(10)).unwrap();
        h.process(&key, &side(Side::B { ts: 50, price: 60 }), Some(50))
            .unwrap();
        h.process(&key, &side(Side::B { ts: 100, price: 80 }), Some(100))
            .unwrap();
        assert!(h.advance_watermark(99).unwrap().is_empty());
        let out = h.advance_watermark(100).unwrap();
        assert_eq!(
            (out[0].text().0, out[0].value_as::<Closed>().unwrap()),
            (
                "12".into(),
                Closed {
                    auction: 1001,
                    category: 12,
                    price: 80
                }
            )
        );
        // After closing, its bids change nothing; a minute on it is gone.
        h.process(
            &key,
            &side(Side::B {
                ts: 101,
                price: 999,
            }),
            Some(101),
        )
        .unwrap();
        assert!(h.advance_watermark(60_100).unwrap().is_empty());
        assert!(h.pending_timers().is_empty());
    }

    #[test]
    fn average_is_a_running_average_per_category() {
        let mut h = Harness::<AverageClosingPrice>::with_config(&[("stage", "average")]).unwrap();
        let closed = |price| {
            let mut v = Vec::new();
            Closed {
                auction: 1,
                category: 10,
                price,
            }
            .encode(&mut v);
            v
        };
        h.process(&b"10".to_vec(), &closed(10), None).unwrap();
        let out = h.process(&b"10".to_vec(), &closed(15), None).unwrap();
        assert_eq!(out[0].text().1, r#"{"category":10,"count":2,"avg":12.5}"#);
    }
}
