//! Nexmark q3, local item suggestion: who sells in category 10 and lives
//! in Oregon, Idaho or California. A join of persons and auctions on
//! `person.id = auction.seller`, on keyed state (Flink's q3 is the same
//! regular join: every matching pair, in whatever order the two arrive).
//!
//! Two stages of one component, chosen by config `stage`:
//!
//! - `prepare` (stateless): keeps persons in OR/ID/CA and auctions of
//!   category 10, keyed by person id / seller;
//! - `join` (behind a hash edge): keeps the person, and the auctions that
//!   came before their seller; emits `person id -> {"name","city","state","id"}`
//!   (`id` the auction's) for each pair.

use nexmark_events::{AUCTION, Event, NoBids, PERSON};
use serde::{Deserialize, Serialize};
use weir_guest::{Context, Json, ListState, OpenContext, Operator, Record, Result, ValueState};

const STATES: [&str; 3] = ["OR", "ID", "CA"];
const CATEGORY: u64 = 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Person {
    name: String,
    city: String,
    state: String,
}

/// What `prepare` sends `join`.
#[derive(Debug, Serialize, Deserialize)]
enum Side {
    P(Person),
    A(u64),
}

#[derive(Serialize)]
struct Suggestion<'a> {
    name: &'a str,
    city: &'a str,
    state: &'a str,
    id: u64,
}

pub enum LocalItemSuggestion {
    Prepare,
    Join {
        person: ValueState<Json<Person>>,
        /// Auctions whose seller has not been seen yet.
        waiting: ListState<u64>,
    },
}

impl Operator for LocalItemSuggestion {
    type Key = ();
    type Value = NoBids;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(match nexmark_events::stage(ctx, &["prepare", "join"])? {
            "prepare" => LocalItemSuggestion::Prepare,
            _ => LocalItemSuggestion::Join {
                person: ctx.value_state("person")?,
                waiting: ctx.list_state("waiting")?,
            },
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<(), NoBids>) -> Result<()> {
        let Some(input) = record.value.0 else {
            return Ok(()); // a bid
        };
        match self {
            LocalItemSuggestion::Prepare => prepare(ctx, input.event()?),
            LocalItemSuggestion::Join { person, waiting } => {
                let side: Json<Side> = weir_guest::Decode::decode(input.bytes()?)?;
                match side.0 {
                    Side::P(p) => {
                        for id in waiting.get(ctx)? {
                            emit(ctx, &p, id)?;
                        }
                        waiting.clear(ctx);
                        person.set(ctx, &Json(p))
                    }
                    Side::A(id) => match person.get(ctx)? {
                        Some(p) => emit(ctx, &p, id),
                        None => waiting.add(ctx, &id),
                    },
                }
            }
        }
    }
}

fn prepare(ctx: &mut Context, e: Event) -> Result<()> {
    match e.event_type {
        PERSON => {
            let state = e.need_str(&e.state, "state")?;
            if !STATES.contains(&state) {
                return Ok(());
            }
            let id = e.need(e.id, "id")?;
            let person = Person {
                name: e.need_str(&e.name, "name")?.to_string(),
                city: e.need_str(&e.city, "city")?.to_string(),
                state: state.to_string(),
            };
            ctx.emit(&id, &Json(Side::P(person)))
        }
        AUCTION if e.need(e.category, "category")? == CATEGORY => {
            let seller = e.need(e.seller, "seller")?;
            ctx.emit(&seller, &Json(Side::A(e.need(e.id, "id")?)))
        }
        _ => Ok(()),
    }
}

fn emit(ctx: &mut Context, p: &Person, id: u64) -> Result<()> {
    let key = ctx.key_bytes().to_vec();
    let out = Suggestion {
        name: &p.name,
        city: &p.city,
        state: &p.state,
        id,
    };
    ctx.emit(&key, &Json(out))
}

weir_guest::export_operator!(LocalItemSuggestion);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn prepare_keeps_local_persons_and_category_10_auctions() {
        let mut h = Harness::<LocalItemSuggestion>::with_config(&[("stage", "prepare")]).unwrap();
        let or =
            br#"{"event_type":0,"ts":1,"id":1000,"name":"Kate Smith","city":"Bend","state":"OR"}"#;
        let out = h.process(&b"".to_vec(), &or.to_vec(), Some(1)).unwrap();
        assert_eq!(
            out[0].text(),
            (
                "1000".into(),
                r#"{"P":{"name":"Kate Smith","city":"Bend","state":"OR"}}"#.into()
            )
        );
        let wa = br#"{"event_type":0,"ts":1,"id":1001,"name":"K","city":"Kent","state":"WA"}"#;
        assert!(
            h.process(&b"".to_vec(), &wa.to_vec(), Some(1))
                .unwrap()
                .is_empty()
        );
        let a = br#"{"event_type":1,"ts":2,"id":1005,"item_name":"x","description":"y","initial_bid":1,"reserve":2,"expires":9,"seller":1000,"category":10}"#;
        let out = h.process(&b"".to_vec(), &a.to_vec(), Some(2)).unwrap();
        assert_eq!(out[0].text(), ("1000".into(), r#"{"A":1005}"#.into()));
        let a11 = String::from_utf8_lossy(a).replace("\"category\":10", "\"category\":11");
        assert!(
            h.process(&b"".to_vec(), &a11.into_bytes(), Some(2))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn join_pairs_auctions_with_their_seller_in_either_order() {
        let mut h = Harness::<LocalItemSuggestion>::with_config(&[("stage", "join")]).unwrap();
        let key = b"1000".to_vec();
        assert!(
            h.process(&key, &br#"{"A":1}"#.to_vec(), None)
                .unwrap()
                .is_empty()
        );
        let person = br#"{"P":{"name":"Kate","city":"Bend","state":"OR"}}"#.to_vec();
        let out = h.process(&key, &person, None).unwrap();
        assert_eq!(
            out[0].text().1,
            r#"{"name":"Kate","city":"Bend","state":"OR","id":1}"#
        );
        let out = h.process(&key, &br#"{"A":2}"#.to_vec(), None).unwrap();
        assert_eq!(
            out[0].text().1,
            r#"{"name":"Kate","city":"Bend","state":"OR","id":2}"#
        );
    }
}
