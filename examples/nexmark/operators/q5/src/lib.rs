//! Nexmark q5, hot items: per sliding window (10 s every 2 s by default;
//! config `size_ms`, `slide_ms`), the auctions with the most bids.
//!
//! Three stages of one component, chosen by config `stage`:
//!
//! - `prepare` (stateless): bids keyed by auction;
//! - `count` (hash edge, keyed by auction): counts bids per sliding window
//!   and emits `window end -> (auction, count)` when a window closes;
//! - `hottest` (hash edge, keyed by window end): keeps the highest count
//!   and its auctions; when the watermark passes the window it emits
//!   `auction -> {"auction","num","window_end"}` for each of them (all
//!   ties, like Flink's `num >= max(num)` join).
//!
//! `count` is `weir_guest::window` with sliding windows and `Count`: the
//! library keeps panes (Flink's trick for sliding windows), so a bid adds
//! one to its pane rather than to each of the `size / slide` windows it
//! belongs to, and a window's count is the sum of its panes when it fires.

use nexmark_events::{BID, Input, Obj};
use weir_guest::cache::StateCache;
use weir_guest::window::{Count, WindowAssigner, Windows};
use weir_guest::{
    Context, Decode, Encode, Error, OpenContext, Operator, Record, Result, Timer, ValueState,
};

/// An auction's count in one window: `count` -> `hottest` (binary).
#[derive(Debug, PartialEq)]
pub struct AuctionCount {
    auction: u64,
    count: u64,
}

impl Encode for AuctionCount {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.auction.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
    }
}

impl Decode for AuctionCount {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        match (bytes.len(), word(0), word(8)) {
            (16, Some(auction), Some(count)) => Ok(AuctionCount { auction, count }),
            _ => Err(Error::msg(format!(
                "not an (auction, count) pair: {} bytes, expected 16",
                bytes.len()
            ))),
        }
    }
}

/// The highest count of a window so far and its auctions (binary: the
/// count, then the auctions, little-endian u64s).
#[derive(Debug, Default, PartialEq)]
pub struct Best {
    num: u64,
    auctions: Vec<u64>,
}

impl Encode for Best {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.num.to_le_bytes());
        for a in &self.auctions {
            out.extend_from_slice(&a.to_le_bytes());
        }
    }
}

impl Decode for Best {
    fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 8 || !bytes.len().is_multiple_of(8) {
            return Err(Error::msg(format!(
                "not a window's best count: {} bytes",
                bytes.len()
            )));
        }
        let mut words = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()));
        Ok(Best {
            num: words.next().unwrap_or_default(),
            auctions: words.collect(),
        })
    }
}

struct Hot {
    auction: u64,
    num: u64,
    window_end: i64,
}

impl Encode for Hot {
    fn encode(&self, out: &mut Vec<u8>) {
        Obj::new(out)
            .u64("auction", self.auction)
            .u64("num", self.num)
            .i64("window_end", self.window_end)
            .end()
    }
}

pub enum HotItems {
    Prepare,
    Count {
        windows: Windows<Count<()>>,
    },
    /// `best` behind a cache: a window's counts come in a run, and most
    /// are below its best so far, so they need only a read.
    Hottest {
        best: ValueState<Best>,
        cache: StateCache<Best>,
    },
}

impl Operator for HotItems {
    type Key = ();
    type Value = Input;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(
            match nexmark_events::stage(ctx, &["prepare", "count", "hottest"])? {
                "prepare" => HotItems::Prepare,
                "count" => {
                    let size = ctx.config_or("size_ms", 10_000i64)?;
                    let slide = ctx.config_or("slide_ms", 2_000i64)?;
                    let assigner = WindowAssigner::sliding(size, slide)?;
                    HotItems::Count {
                        windows: Windows::new(ctx, "counts", assigner, Count::new())?,
                    }
                }
                _ => HotItems::Hottest {
                    best: ctx.value_state("best")?,
                    cache: StateCache::default(),
                },
            },
        )
    }

    fn process(&mut self, ctx: &mut Context, record: Record<(), Input>) -> Result<()> {
        match self {
            HotItems::Prepare => {
                let e = record.value.event()?;
                if e.event_type == BID {
                    ctx.emit(&e.need(e.auction, "auction")?, "")?;
                }
                Ok(())
            }
            HotItems::Count { windows } => {
                // Without allowed lateness the only output is `Late`, for a
                // record too late for its windows (only with the job's
                // `late_records = "process"`): dropped, as Flink does.
                windows.add(ctx, record.timestamp.unwrap_or(0), &())?;
                Ok(())
            }
            HotItems::Hottest { best, cache } => {
                let c = AuctionCount::decode(record.value.bytes()?)?;
                let time = record.timestamp.unwrap_or(0);
                cache.update(ctx, best, |ctx, stored| {
                    if c.count < stored.as_ref().map_or(0, |b| b.num) {
                        return Ok(((), false));
                    }
                    let b = stored.get_or_insert_with(Best::default);
                    if c.count > b.num {
                        b.auctions.clear();
                    }
                    if b.auctions.is_empty() {
                        // The window's end: the record's time is end - 1.
                        ctx.register_event_timer(time);
                    }
                    b.num = c.count;
                    b.auctions.push(c.auction);
                    Ok(((), true))
                })
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<()>) -> Result<()> {
        match self {
            HotItems::Prepare => Ok(()),
            HotItems::Count { windows } => {
                let auction: u64 = Decode::decode(ctx.key_bytes())?;
                for result in windows.on_timer(ctx, &timer)? {
                    let out = AuctionCount {
                        auction,
                        count: result.value,
                    };
                    ctx.emit_at(&result.window.end, &out, Some(result.timestamp()))?;
                }
                Ok(())
            }
            HotItems::Hottest { best, cache } => {
                let window_end: i64 = Decode::decode(ctx.key_bytes())?;
                let fired = cache.update(ctx, best, |_, stored| {
                    let fired = stored.take();
                    let had = fired.is_some();
                    Ok((fired, had))
                })?;
                if let Some(b) = fired {
                    for &auction in &b.auctions {
                        let hot = Hot {
                            auction,
                            num: b.num,
                            window_end,
                        };
                        ctx.emit(&auction, &hot)?;
                    }
                }
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
        assert_eq!(out[1].key_as::<i64>().unwrap(), 10);
        assert_eq!(
            out[1].value_as::<AuctionCount>().unwrap(),
            AuctionCount {
                auction: 1001,
                count: 3
            }
        );
        assert_eq!(out[1].timestamp, Some(9));
        // [5, 15) fires later, with the two records after 5.
        let out = h.advance_watermark(14).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value_as::<AuctionCount>().unwrap().count, 2);
        assert!(h.pending_timers().is_empty());

        let mut h = Harness::<HotItems>::with_config(&[("stage", "hottest")]).unwrap();
        let key = b"10".to_vec();
        for (auction, count) in [(1, 3), (2, 5), (3, 5), (4, 4)] {
            let mut v = Vec::new();
            AuctionCount { auction, count }.encode(&mut v);
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
        assert!(h.process(&key, &vec![1, 2, 3], Some(9)).is_err());
    }
}
