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
//!   `category -> {"auction","category","price"}` if the auction had a bid,
//!   and forgets the auction a minute later;
//! - `average` (hash edge, keyed by category): emits the running average
//!   `category -> {"category","count","avg"}` on every closed auction (a
//!   changelog, like Flink's; the last record per category is the answer).

use nexmark_events::{AUCTION, BID, Event};
use serde::{Deserialize, Serialize};
use weir_guest::{
    Context, Decode, Json, ListState, OpenContext, Operator, Record, Result, Timer, ValueState,
};

/// How long a closed auction is remembered (so its late bids are not
/// mistaken for bids before it) before its state is dropped.
const FORGET_AFTER_MS: i64 = 60_000;

#[derive(Debug, Serialize, Deserialize)]
enum Side {
    A {
        ts: i64,
        expires: i64,
        category: u64,
    },
    B {
        ts: i64,
        price: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Auction {
    ts: i64,
    expires: i64,
    category: u64,
    closed: bool,
}

#[derive(Serialize, Deserialize)]
struct Closed {
    auction: u64,
    category: u64,
    price: u64,
}

#[derive(Serialize)]
struct Average {
    category: u64,
    count: u64,
    avg: f64,
}

pub enum AverageClosingPrice {
    Prepare,
    Winning {
        auction: ValueState<Json<Auction>>,
        best: ValueState<u64>,
        early: ListState<Json<(i64, u64)>>,
    },
    Average {
        sum: ValueState<u64>,
        count: ValueState<u64>,
    },
}

impl Operator for AverageClosingPrice {
    type Key = Vec<u8>;
    type Value = Vec<u8>;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(
            match nexmark_events::stage(ctx, &["prepare", "winning", "average"])? {
                "prepare" => AverageClosingPrice::Prepare,
                "winning" => AverageClosingPrice::Winning {
                    auction: ctx.value_state("auction")?,
                    best: ctx.value_state("best")?,
                    early: ctx.list_state("early")?,
                },
                _ => AverageClosingPrice::Average {
                    sum: ctx.value_state("sum")?,
                    count: ctx.value_state("count")?,
                },
            },
        )
    }

    fn process(&mut self, ctx: &mut Context, record: Record<Vec<u8>, Vec<u8>>) -> Result<()> {
        match self {
            AverageClosingPrice::Prepare => prepare(ctx, &record.value),
            AverageClosingPrice::Winning {
                auction,
                best,
                early,
            } => {
                let Json(side) = Json::<Side>::decode(&record.value)?;
                match side {
                    Side::A {
                        ts,
                        expires,
                        category,
                    } => {
                        let a = Auction {
                            ts,
                            expires,
                            category,
                            closed: false,
                        };
                        let mut max = best.get(ctx)?;
                        for Json((ts, price)) in early.get(ctx)? {
                            if (a.ts..=a.expires).contains(&ts) {
                                max = max.max(Some(price));
                            }
                        }
                        early.clear(ctx);
                        if let Some(max) = max {
                            best.set(ctx, &max)?;
                        }
                        ctx.register_event_timer(expires);
                        auction.set(ctx, &Json(a))
                    }
                    Side::B { ts, price } => match auction.get(ctx)? {
                        None => early.add(ctx, &Json((ts, price))),
                        Some(Json(a)) => {
                            if !a.closed
                                && (a.ts..=a.expires).contains(&ts)
                                && best.get(ctx)?.is_none_or(|b| price > b)
                            {
                                best.set(ctx, &price)?;
                            }
                            Ok(())
                        }
                    },
                }
            }
            AverageClosingPrice::Average { sum, count } => {
                let Json(c) = Json::<Closed>::decode(&record.value)?;
                let s = sum.get(ctx)?.unwrap_or(0).saturating_add(c.price);
                let n = count.get(ctx)?.unwrap_or(0) + 1;
                sum.set(ctx, &s)?;
                count.set(ctx, &n)?;
                let avg = Average {
                    category: c.category,
                    count: n,
                    avg: s as f64 / n as f64,
                };
                let key = ctx.key_bytes().to_vec();
                ctx.emit(&key, &Json(avg))
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<Vec<u8>>) -> Result<()> {
        let AverageClosingPrice::Winning {
            auction,
            best,
            early,
        } = self
        else {
            return Ok(());
        };
        let Some(Json(mut a)) = auction.get(ctx)? else {
            return Ok(());
        };
        if a.closed {
            auction.clear(ctx);
            best.clear(ctx);
            early.clear(ctx);
            return Ok(());
        }
        if timer.timestamp != a.expires {
            return Ok(());
        }
        if let Some(price) = best.get(ctx)? {
            let id: u64 = Decode::decode(&timer.key)?;
            let closed = Closed {
                auction: id,
                category: a.category,
                price,
            };
            ctx.emit(&a.category, &Json(closed))?;
        }
        best.clear(ctx);
        a.closed = true;
        auction.set(ctx, &Json(a.clone()))?;
        ctx.register_event_timer(a.expires.saturating_add(FORGET_AFTER_MS));
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
            ctx.emit(&e.need(e.id, "id")?, &Json(side))
        }
        BID => {
            let side = Side::B {
                ts: e.ts,
                price: e.need(e.price, "price")?,
            };
            ctx.emit(&e.need(e.auction, "auction")?, &Json(side))
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
        serde_json::to_vec(&s).unwrap()
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
            out[0].text(),
            (
                "12".into(),
                r#"{"auction":1001,"category":12,"price":80}"#.into()
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
        let closed =
            |price| format!(r#"{{"auction":1,"category":10,"price":{price}}}"#).into_bytes();
        h.process(&b"10".to_vec(), &closed(10), None).unwrap();
        let out = h.process(&b"10".to_vec(), &closed(15), None).unwrap();
        assert_eq!(out[0].text().1, r#"{"category":10,"count":2,"avg":12.5}"#);
    }
}
