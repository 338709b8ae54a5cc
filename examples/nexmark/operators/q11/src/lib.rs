//! Nexmark q11, user sessions: how many bids each bidder makes per
//! session (a session ends after `gap_ms`, default 10 s, without bids).
//!
//! Two stages of one component, chosen by config `stage`:
//!
//! - `prepare` (stateless): bids keyed by bidder;
//! - `sessions` (hash edge, keyed by bidder): session windows counting
//!   bids (`weir_guest::window` with `WindowAssigner::session` and
//!   `Count`; a bid that extends its bidder's open session costs one state
//!   write and no timer call); emits
//!   `bidder -> {"bidder","bid_count","start","end"}` (`end` = last bid + gap,
//!   as in Flink's session windows) when the watermark passes a session.

use nexmark_events::{BID, Input, Obj};
use weir_guest::window::{Count, WindowAssigner, Windows};
use weir_guest::{Context, Decode, Encode, OpenContext, Operator, Record, Result, Timer};

struct Session {
    bidder: u64,
    bid_count: u64,
    start: i64,
    end: i64,
}

impl Encode for Session {
    fn encode(&self, out: &mut Vec<u8>) {
        Obj::new(out)
            .u64("bidder", self.bidder)
            .u64("bid_count", self.bid_count)
            .i64("start", self.start)
            .i64("end", self.end)
            .end()
    }
}

pub enum UserSessions {
    Prepare,
    Sessions(Windows<Count<()>>),
}

impl Operator for UserSessions {
    type Key = ();
    type Value = Input;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(
            match nexmark_events::stage(ctx, &["prepare", "sessions"])? {
                "prepare" => UserSessions::Prepare,
                _ => {
                    let gap = ctx.config_or("gap_ms", 10_000i64)?;
                    let assigner = WindowAssigner::session(gap)?;
                    UserSessions::Sessions(Windows::new(ctx, "sessions", assigner, Count::new())?)
                }
            },
        )
    }

    fn process(&mut self, ctx: &mut Context, record: Record<(), Input>) -> Result<()> {
        match self {
            UserSessions::Prepare => {
                let e = record.value.event()?;
                if e.event_type == BID {
                    ctx.emit(&e.need(e.bidder, "bidder")?, "")?;
                }
                Ok(())
            }
            UserSessions::Sessions(windows) => {
                // Without allowed lateness the only output is `Late`, for a
                // record too late for its windows (only with the job's
                // `late_records = "process"`): dropped, as Flink does.
                windows.add(ctx, record.timestamp.unwrap_or(0), &())?;
                Ok(())
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<()>) -> Result<()> {
        let UserSessions::Sessions(windows) = self else {
            return Ok(());
        };
        let closed = windows.on_timer(ctx, &timer)?;
        if !closed.is_empty() {
            let bidder: u64 = Decode::decode(ctx.key_bytes())?;
            for c in closed {
                let session = Session {
                    bidder,
                    bid_count: c.value,
                    start: c.window.start,
                    end: c.window.end,
                };
                ctx.emit_at(&bidder, &session, Some(c.timestamp()))?;
            }
        }
        Ok(())
    }
}

weir_guest::export_operator!(UserSessions);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn bids_closer_than_the_gap_share_a_session() {
        let config = [("stage", "sessions"), ("gap_ms", "10")];
        let mut h = Harness::<UserSessions>::with_config(&config).unwrap();
        for ts in [100, 105, 115, 200] {
            h.process(&b"1004".to_vec(), &Vec::new(), Some(ts)).unwrap();
        }
        let out = h.advance_watermark(1000).unwrap();
        let texts: Vec<_> = out.iter().map(|o| o.text().1).collect();
        assert_eq!(
            texts,
            [
                r#"{"bidder":1004,"bid_count":3,"start":100,"end":125}"#,
                r#"{"bidder":1004,"bid_count":1,"start":200,"end":210}"#
            ]
        );
    }
}
