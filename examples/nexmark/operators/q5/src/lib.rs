//! Nexmark q5, hot items: per sliding window (10 s every 2 s by default;
//! config `size_ms`, `slide_ms`), the auctions with the most bids.
//!
//! Three stages of one component, chosen by config `stage`:
//!
//! - `prepare` (stateless): bids keyed by auction;
//! - `count` (hash edge, keyed by auction): counts bids per sliding window
//!   with `weir_guest::window` and emits
//!   `window end -> {"auction","count"}` when a window closes;
//! - `hottest` (hash edge, keyed by window end): keeps the highest count
//!   and its auctions; when the watermark passes the window it emits
//!   `auction -> {"auction","num","window_end"}` for each of them (all
//!   ties, like Flink's `num >= max(num)` join).

use nexmark_events::{BID, Event};
use serde::{Deserialize, Serialize};
use weir_guest::window::{Count, WindowAssigner, Windows};
use weir_guest::{Context, Decode, Json, OpenContext, Operator, Record, Result, Timer, ValueState};

#[derive(Serialize, Deserialize)]
struct AuctionCount {
    auction: u64,
    count: u64,
}

#[derive(Serialize)]
struct Hot {
    auction: u64,
    num: u64,
    window_end: i64,
}

pub enum HotItems {
    Prepare,
    Count(Windows<Count>),
    Hottest {
        /// The highest count of this window so far and its auctions.
        best: ValueState<Json<(u64, Vec<u64>)>>,
    },
}

impl Operator for HotItems {
    type Key = Vec<u8>;
    type Value = Vec<u8>;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(
            match nexmark_events::stage(ctx, &["prepare", "count", "hottest"])? {
                "prepare" => HotItems::Prepare,
                "count" => {
                    let size = ctx.config_or("size_ms", 10_000i64)?;
                    let slide = ctx.config_or("slide_ms", 2_000i64)?;
                    let assigner = WindowAssigner::sliding(size, slide)?;
                    HotItems::Count(Windows::new(ctx, "counts", assigner, Count::new())?)
                }
                _ => HotItems::Hottest {
                    best: ctx.value_state("best")?,
                },
            },
        )
    }

    fn process(&mut self, ctx: &mut Context, record: Record<Vec<u8>, Vec<u8>>) -> Result<()> {
        match self {
            HotItems::Prepare => {
                let e = Event::parse(&record.value)?;
                if e.event_type == BID {
                    ctx.emit(&e.need(e.auction, "auction")?, "")?;
                }
                Ok(())
            }
            // Records behind the watermark never get here (the host drops
            // them), so `add` has nothing to hand back.
            HotItems::Count(windows) => {
                let ts = record.timestamp.unwrap_or(0);
                windows.add(ctx, ts, &()).map(drop)
            }
            HotItems::Hottest { best } => {
                let Json(c) = Json::<AuctionCount>::decode(&record.value)?;
                let (max, mut auctions) = best.get(ctx)?.map(|j| j.0).unwrap_or_default();
                if c.count < max {
                    return Ok(());
                }
                if c.count > max {
                    auctions.clear();
                }
                if auctions.is_empty() {
                    // The window's end: the record's time is end - 1.
                    ctx.register_event_timer(record.timestamp.unwrap_or(0));
                }
                auctions.push(c.auction);
                best.set(ctx, &Json((c.count, auctions)))
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<Vec<u8>>) -> Result<()> {
        match self {
            HotItems::Prepare => Ok(()),
            HotItems::Count(windows) => {
                let auction: u64 = Decode::decode(&timer.key)?;
                for result in windows.on_timer(ctx, &timer)? {
                    let out = AuctionCount {
                        auction,
                        count: result.value,
                    };
                    ctx.emit_at(&result.window.end, &Json(out), Some(result.timestamp()))?;
                }
                Ok(())
            }
            HotItems::Hottest { best } => {
                let window_end: i64 = Decode::decode(&timer.key)?;
                if let Some(Json((num, auctions))) = best.get(ctx)? {
                    for auction in auctions {
                        let hot = Hot {
                            auction,
                            num,
                            window_end,
                        };
                        ctx.emit(&auction, &Json(hot))?;
                    }
                }
                best.clear(ctx);
                Ok(())
            }
        }
    }
}

weir_guest::export_operator!(HotItems);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn counts_per_sliding_window_then_keeps_the_hottest() {
        let config = [("stage", "count"), ("size_ms", "10"), ("slide_ms", "5")];
        let mut h = Harness::<HotItems>::with_config(&config).unwrap();
        for ts in [1, 6, 7] {
            h.process(&b"1001".to_vec(), &Vec::new(), Some(ts)).unwrap();
        }
        let out = h.advance_watermark(9).unwrap();
        // Windows [-5, 5) and [0, 10).
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1].text(),
            ("10".into(), r#"{"auction":1001,"count":3}"#.into())
        );
        assert_eq!(out[1].timestamp, Some(9));

        let mut h = Harness::<HotItems>::with_config(&[("stage", "hottest")]).unwrap();
        let key = b"10".to_vec();
        for (auction, count) in [(1, 3), (2, 5), (3, 5), (4, 4)] {
            let v = format!(r#"{{"auction":{auction},"count":{count}}}"#).into_bytes();
            h.process(&key, &v, Some(9)).unwrap();
        }
        let out = h.advance_watermark(9).unwrap();
        let texts: Vec<_> = out.iter().map(|o| o.text().1).collect();
        assert_eq!(
            texts,
            [
                r#"{"auction":2,"num":5,"window_end":10}"#,
                r#"{"auction":3,"num":5,"window_end":10}"#
            ]
        );
    }
}
