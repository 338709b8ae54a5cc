//! Nexmark q8, monitor new users: persons who opened an auction in the
//! same tumbling window (10 s by default; config `size_ms`) as they
//! registered. A windowed join of persons and auctions on
//! `person.id = auction.seller`.
//!
//! Two stages of one component, chosen by config `stage`:
//!
//! - `prepare` (stateless): persons keyed by id, auctions by seller;
//! - `join` (hash edge, keyed by person id): per window, with
//!   `weir_guest::window` and an aggregate of our own, whether the person
//!   registered (and their name) and whether they opened an auction; emits
//!   `id -> {"id","name","window_start"}` when a window with both closes.

use nexmark_events::{AUCTION, NoBids, PERSON};
use serde::{Deserialize, Serialize};
use weir_guest::window::{AggregateFunction, WindowAssigner, Windows};
use weir_guest::{Context, Decode, Json, OpenContext, Operator, Record, Result, Timer};

/// What `prepare` sends `join`: a person's name, or an auction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Side {
    P(String),
    A,
}

/// One window of one person id.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Seen {
    name: Option<String>,
    auction: bool,
}

pub struct NewUsers;

impl AggregateFunction for NewUsers {
    type In = Side;
    type Acc = Seen;
    type Out = Seen;
    fn create(&self) -> Seen {
        Seen::default()
    }
    fn add(&self, acc: &mut Seen, side: &Side) {
        match side {
            Side::P(name) => acc.name = Some(name.clone()),
            Side::A => acc.auction = true,
        }
    }
    fn merge(&self, acc: &mut Seen, other: Seen) {
        acc.name = acc.name.take().or(other.name);
        acc.auction |= other.auction;
    }
    fn result(&self, acc: &Seen) -> Seen {
        acc.clone()
    }
}

#[derive(Serialize)]
struct NewUser<'a> {
    id: u64,
    name: &'a str,
    window_start: i64,
}

pub enum MonitorNewUsers {
    Prepare,
    Join(Windows<NewUsers>),
}

impl Operator for MonitorNewUsers {
    type Key = ();
    type Value = NoBids;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(match nexmark_events::stage(ctx, &["prepare", "join"])? {
            "prepare" => MonitorNewUsers::Prepare,
            _ => {
                let assigner = WindowAssigner::tumbling(ctx.config_or("size_ms", 10_000i64)?)?;
                MonitorNewUsers::Join(Windows::new(ctx, "seen", assigner, NewUsers)?)
            }
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<(), NoBids>) -> Result<()> {
        let Some(input) = record.value.0 else {
            return Ok(()); // a bid
        };
        match self {
            MonitorNewUsers::Prepare => {
                let e = input.event()?;
                match e.event_type {
                    PERSON => {
                        let name = e.need_str(&e.name, "name")?.to_string();
                        ctx.emit(&e.need(e.id, "id")?, &Json(Side::P(name)))
                    }
                    AUCTION => ctx.emit(&e.need(e.seller, "seller")?, &Json(Side::A)),
                    _ => Ok(()),
                }
            }
            MonitorNewUsers::Join(windows) => {
                let Json(side) = Json::<Side>::decode(input.bytes()?)?;
                windows
                    .add(ctx, record.timestamp.unwrap_or(0), &side)
                    .map(drop)
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<()>) -> Result<()> {
        let MonitorNewUsers::Join(windows) = self else {
            return Ok(());
        };
        let id: u64 = Decode::decode(ctx.key_bytes())?;
        for result in windows.on_timer(ctx, &timer)? {
            if let (Some(name), true) = (&result.value.name, result.value.auction) {
                let out = NewUser {
                    id,
                    name,
                    window_start: result.window.start,
                };
                ctx.emit_at(&id, &Json(out), Some(result.timestamp()))?;
            }
        }
        Ok(())
    }
}

weir_guest::export_operator!(MonitorNewUsers);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn a_person_with_an_auction_in_the_same_window_is_new() {
        let config = [("stage", "join"), ("size_ms", "10")];
        let mut h = Harness::<MonitorNewUsers>::with_config(&config).unwrap();
        let key = b"1000".to_vec();
        h.process(&key, &br#"{"P":"Kate"}"#.to_vec(), Some(3))
            .unwrap();
        h.process(&key, &br#""A""#.to_vec(), Some(8)).unwrap();
        // An auction in the next window without the person: nothing.
        h.process(&key, &br#""A""#.to_vec(), Some(12)).unwrap();
        let out = h.advance_watermark(100).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].text(),
            (
                "1000".into(),
                r#"{"id":1000,"name":"Kate","window_start":0}"#.into()
            )
        );
    }
}
