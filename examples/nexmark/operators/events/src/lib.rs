//! The Nexmark events as the queries read them: the flat JSON objects of
//! `weir nexmark` and the `nexmark` source (see the layout in
//! `weir_connectors::nexmark`), one struct with every column optional.
//!
//! Strings borrow from the record where they can (`Cow`): parsing a bid
//! allocates nothing. [`Parsed`] parses a record's value as the SDK
//! decodes it (no copy of its bytes first); [`Obj`] writes flat JSON
//! objects byte for byte as serde_json would, without its machinery.

mod out;
mod scan;

use std::borrow::Cow;

use serde::Deserialize;
use weir_guest::{Decode, Error, Result};

pub use out::Obj;
pub use weir_guest::cache::StateCache;

pub const PERSON: u8 = 0;
pub const AUCTION: u8 = 1;
pub const BID: u8 = 2;

/// A string column: borrowed from the record unless it holds escapes.
/// (serde's own `Cow` support never borrows inside an `Option`.)
#[derive(Debug, Default, PartialEq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// One event; which columns are present depends on `event_type`.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct Event<'a> {
    pub event_type: u8,
    /// Event time, ms since the Unix epoch.
    pub ts: i64,
    // person and auction
    pub id: Option<u64>,
    // person
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    #[serde(borrow)]
    pub city: Option<Text<'a>>,
    #[serde(borrow)]
    pub state: Option<Text<'a>>,
    // auction
    pub expires: Option<i64>,
    pub seller: Option<u64>,
    pub category: Option<u64>,
    // bid
    pub auction: Option<u64>,
    pub bidder: Option<u64>,
    pub price: Option<u64>,
}

impl<'a> Event<'a> {
    /// Parses one event's JSON text: the common shape in one pass
    /// ([`scan`]), anything else through serde_json.
    pub fn parse(bytes: &'a [u8]) -> Result<Event<'a>> {
        if let Some(e) = scan::event(bytes) {
            return Ok(e);
        }
        serde_json::from_slice(bytes).map_err(|e| {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
            Error::msg(format!("not a Nexmark event ({e}): {text}"))
        })
    }

    /// The same event, owning its strings (only persons have any).
    pub fn into_owned(self) -> Event<'static> {
        let own = |t: Option<Text<'a>>| t.map(|Text(c)| Text(Cow::Owned(c.into_owned())));
        Event {
            event_type: self.event_type,
            ts: self.ts,
            id: self.id,
            name: own(self.name),
            city: own(self.city),
            state: own(self.state),
            expires: self.expires,
            seller: self.seller,
            category: self.category,
            auction: self.auction,
            bidder: self.bidder,
            price: self.price,
        }
    }

    /// A column the event's type must have.
    pub fn need<T: Copy>(&self, value: Option<T>, column: &str) -> Result<T> {
        value.ok_or_else(|| {
            Error::msg(format!(
                "a Nexmark event of type {} at {} has no `{column}`",
                self.event_type, self.ts
            ))
        })
    }

    pub fn need_str<'b>(&self, value: &'b Option<Text<'a>>, column: &str) -> Result<&'b str> {
        value.as_ref().map(|t| t.0.as_ref()).ok_or_else(|| {
            Error::msg(format!(
                "a Nexmark event of type {} at {} has no `{column}`",
                self.event_type, self.ts
            ))
        })
    }
}

/// A record value that is a Nexmark event (`type Value = Parsed`): parsed
/// straight from the batch, where a `Vec<u8>` value would first be copied.
#[derive(Debug, Default)]
pub struct Parsed(pub Event<'static>);

impl Decode for Parsed {
    fn decode(bytes: &[u8]) -> Result<Self> {
        // A bid borrows nothing, so it needs no copy to own it: built in
        // place, where each move of the event is a `memory.copy` host
        // call in Wasm.
        if let Some(bid) = scan::bid(bytes) {
            return Ok(Parsed(bid));
        }
        Event::parse(bytes).map(|e| Parsed(e.into_owned()))
    }
}

/// [`Parsed`] for the queries that read only bids (q1, q2): persons and
/// auctions are known by how their line starts, `{"event_type":0,` or
/// `{"event_type":1,` as `weir nexmark` writes them, and are not parsed
/// (`None`). They are 8% of the events, yet skipping them made q1's
/// operator 0.80-0.85x the time per record (`benches/guest_ab`): with
/// their strings they cost far more than a bid each. A JSON source has
/// checked that the line is an
/// object; the skipped events' other columns are not checked. Any other
/// line is parsed in full, and kept if it is a bid.
#[derive(Debug, Default)]
pub struct BidsOnly(pub Option<Event<'static>>);

impl Decode for BidsOnly {
    fn decode(bytes: &[u8]) -> Result<Self> {
        if let Some(bid) = scan::bid(bytes) {
            return Ok(BidsOnly(Some(bid)));
        }
        if bytes.starts_with(br#"{"event_type":0,"#) || bytes.starts_with(br#"{"event_type":1,"#) {
            return Ok(BidsOnly(None));
        }
        let e = Event::parse(bytes)?;
        Ok(BidsOnly((e.event_type == BID).then(|| e.into_owned())))
    }
}

/// A record value of a query with several stages, one component for all:
/// the first stage reads events, the later ones the stages' own records.
/// A value that parses as an event is one, parsed straight from the batch
/// (no copy first, as for [`Parsed`]); anything else is kept as bytes.
/// (The stages' own records never parse as events: none is a JSON object
/// with `event_type` and `ts`.)
#[derive(Debug)]
pub enum Input {
    Event(Event<'static>),
    Other(Vec<u8>),
}

impl Decode for Input {
    fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.first() == Some(&b'{')
            && let Ok(e) = Event::parse(bytes)
        {
            return Ok(Input::Event(e.into_owned()));
        }
        Ok(Input::Other(bytes.to_vec()))
    }
}

/// [`Input`] for the queries that read no bids (q3, q8): a bid is known by
/// how its line starts, `{"event_type":2,` as `weir nexmark` writes it, and
/// is not parsed (`None`). Bids are 92% of the events, and parsing them
/// was most of such a query's first stage. A JSON source has checked that
/// the line is an object; the skipped bid's other columns are not checked.
#[derive(Debug)]
pub struct NoBids(pub Option<Input>);

impl Decode for NoBids {
    fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.starts_with(br#"{"event_type":2,"#) {
            return Ok(NoBids(None));
        }
        Input::decode(bytes).map(|input| NoBids(Some(input)))
    }
}

impl Input {
    /// The value as an event (the first stage); what does not parse as
    /// one is an error naming the record.
    pub fn event(self) -> Result<Event<'static>> {
        match self {
            Input::Event(e) => Ok(e),
            Input::Other(bytes) => Event::parse(&bytes).map(Event::into_owned),
        }
    }

    /// The value's bytes (a later stage's record).
    pub fn bytes(&self) -> Result<&[u8]> {
        match self {
            Input::Other(bytes) => Ok(bytes),
            Input::Event(e) => Err(Error::msg(format!(
                "expected a record of the previous stage, got a Nexmark event (type {} at {}): \
                 is the stage's input the previous stage?",
                e.event_type, e.ts
            ))),
        }
    }
}

/// The operator's `stage` config value, one of `stages` (the first when absent).
pub fn stage(ctx: &weir_guest::OpenContext, stages: &[&'static str]) -> Result<&'static str> {
    match ctx.config("stage") {
        None => Ok(stages[0]),
        Some(s) => stages.iter().copied().find(|x| *x == s).ok_or_else(|| {
            Error::msg(format!(
                "config `stage` = {s:?}: expected one of {}",
                stages.join(", ")
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path agrees with serde_json wherever it answers, and
    /// `parse` agrees with serde_json everywhere.
    #[test]
    fn the_fast_path_agrees_with_serde() {
        let fast = [
            &br#"{"event_type":2,"ts":1700000000000,"auction":1001,"bidder":1002,"price":300,"channel":"Google","url":"https://x/y?z=1"}"#[..],
            br#"{"event_type":1,"ts":5,"id":1000,"item_name":"a","description":"b c","initial_bid":1,"reserve":2,"expires":-7,"seller":1001,"category":10}"#,
            br#"{"event_type":0,"ts":0,"id":1000,"name":"Kate Smith","email":"k@x","credit_card":"1 2","city":"Bend","state":"OR"}"#,
            br#" { "event_type" : 2 , "ts" : -3 , "price" : null , "extra" : null } "#,
            br#"{"ts":4,"event_type":0,"name":null}"#,
        ];
        for line in fast {
            let e = scan::event(line).expect("fast path");
            let slow: Event = serde_json::from_slice(line).unwrap();
            assert_eq!(e, slow, "{}", String::from_utf8_lossy(line));
        }
        // Valid, but left to serde; or invalid, and serde names why.
        let slow = [
            &br#"{"event_type":0,"ts":1,"name":"K\u0061te"}"#[..],
            br#"{"event_type":2,"ts":1,"x":1.5}"#,
            br#"{"event_type":2,"ts":1,"x":{"y":[1,true]}}"#,
            br#"{"event_type":2,"ts":1,"x":"\u00e9"}"#,
            r#"{"event_type":2,"ts":1,"name":"Zoë"}"#.as_bytes(),
            br#"{"event_type":2,"ts":1,"price":12345678901234567890}"#,
            br#"{"event_type":2,"ts":1,"price":1e3}"#,
            br#"{"event_type":2,"ts":1,"price":-1}"#,
            br#"{"event_type":2,"ts":1,"price":01}"#,
            br#"{"event_type":2,"ts":1,"price":1,"price":2}"#,
            br#"{"event_type":2,"ts":1,"price":null,"price":2}"#,
            br#"{"event_type":300,"ts":1}"#,
            br#"{"event_type":2}"#,
            br#"{"event_type":2,"ts":null}"#,
            br#"{}"#,
            br#"{"event_type":2,"ts":1} x"#,
            br#"{"event_type":2,"ts":1,}"#,
            br#"{"event_type":2,"ts":1"#,
            br#"{"event_type":2 "ts":1}"#,
            br#"[1]"#,
            b"",
        ];
        for line in slow {
            assert!(
                scan::event(line).is_none(),
                "{}",
                String::from_utf8_lossy(line)
            );
            let want = serde_json::from_slice::<Event>(line).ok();
            assert_eq!(
                Event::parse(line).ok(),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn input_tells_events_from_stage_records() {
        let bid = br#"{"event_type":2,"ts":5,"auction":1001,"bidder":1002,"price":300}"#;
        let e = Input::decode(bid).unwrap();
        assert!(e.bytes().is_err());
        assert_eq!(e.event().unwrap().auction, Some(1001));
        for record in [&b""[..], b"\x7b\x01\x02", br#"{"P":"Kate"}"#, b"A12345678"] {
            let r = Input::decode(record).unwrap();
            assert_eq!(r.bytes().unwrap(), record);
            assert!(r.event().is_err());
        }
        // An event with leading space is still an event to `event`.
        let spaced = br#" {"event_type":0,"ts":1}"#;
        assert_eq!(Input::decode(spaced).unwrap().event().unwrap().ts, 1);
    }

    #[test]
    fn no_bids_skips_bids_and_reads_the_rest_as_input() {
        let bid = br#"{"event_type":2,"ts":5,"auction":1001,"bidder":1002,"price":300}"#;
        assert!(NoBids::decode(bid).unwrap().0.is_none());
        let person = br#"{"event_type":0,"ts":1,"id":1000,"name":"a","city":"b","state":"OR"}"#;
        let Some(input) = NoBids::decode(person).unwrap().0 else {
            panic!("a person is not skipped");
        };
        assert_eq!(input.event().unwrap().id, Some(1000));
        let stage = br#"{"P":"Kate"}"#;
        let Some(input) = NoBids::decode(stage).unwrap().0 else {
            panic!("a stage record is not skipped");
        };
        assert_eq!(input.bytes().unwrap(), stage);
    }

    #[test]
    fn bids_only_keeps_bids_in_any_layout_and_checks_unknown_lines() {
        let bid =
            br#"{"event_type":2,"ts":5,"auction":1,"bidder":2,"price":3,"channel":"a","url":"b"}"#;
        let spaced = br#"{ "ts": 5, "event_type": 2, "auction": 1, "bidder": 2, "price": 3 }"#;
        for line in [&bid[..], &spaced[..]] {
            let BidsOnly(e) = BidsOnly::decode(line).unwrap();
            let e = e.expect("a bid");
            assert_eq!(
                (e.auction, e.bidder, e.price, e.ts),
                (Some(1), Some(2), Some(3), 5)
            );
        }
        let person = br#"{"event_type":0,"ts":1,"id":1000,"name":"a","city":"b","state":"OR"}"#;
        let auction = br#"{ "event_type": 1, "ts": 1, "id": 1000 }"#;
        assert!(BidsOnly::decode(person).unwrap().0.is_none());
        assert!(BidsOnly::decode(auction).unwrap().0.is_none());
        assert!(BidsOnly::decode(br#"{"ts":1}"#).is_err(), "no event_type");
    }

    #[test]
    fn parsed_owns_the_event() {
        let p = br#"{"event_type":0,"ts":1,"id":1000,"name":"Kate","city":"Bend","state":"OR"}"#;
        let Parsed(e) = Parsed::decode(p).unwrap();
        assert_eq!(e.need_str(&e.city, "city").unwrap(), "Bend");
        assert!(
            Parsed::decode(b"{")
                .unwrap_err()
                .message()
                .contains("not a Nexmark event")
        );
    }

    #[test]
    fn parses_a_bid_without_copying_its_strings() {
        let bid = br#"{"event_type":2,"ts":5,"auction":1001,"bidder":1002,"price":300,"channel":"Google","url":"https://x"}"#;
        let e = Event::parse(bid).unwrap();
        assert_eq!((e.event_type, e.ts), (BID, 5));
        assert_eq!(
            (e.auction, e.bidder, e.price),
            (Some(1001), Some(1002), Some(300))
        );
        assert!(
            e.need(e.id, "id")
                .unwrap_err()
                .message()
                .contains("no `id`")
        );
        let p =
            br#"{"event_type":0,"ts":1,"id":1000,"name":"Kate Smith","city":"Bend","state":"OR"}"#;
        let e = Event::parse(p).unwrap();
        assert!(matches!(e.name, Some(Text(Cow::Borrowed("Kate Smith")))));
        let escaped =
            br#"{"event_type":0,"ts":1,"id":1000,"name":"K\u0061te","city":"Bend","state":"OR"}"#;
        let e = Event::parse(escaped).unwrap();
        assert_eq!(e.need_str(&e.name, "name").unwrap(), "Kate");
        assert!(
            Event::parse(b"{")
                .unwrap_err()
                .message()
                .contains("not a Nexmark event")
        );
    }
}
