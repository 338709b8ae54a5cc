//! The Nexmark events as the queries read them: the flat JSON objects of
//! `weir nexmark` and the `nexmark` source (see the layout in
//! `weir_connectors::nexmark`), one struct with every column optional.
//!
//! Strings borrow from the record where they can (`Cow`): parsing a bid
//! allocates nothing.

use std::borrow::Cow;

use serde::Deserialize;
use weir_guest::{Error, Result};

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
#[derive(Debug, Default, Deserialize)]
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
    /// Parses one event's JSON text.
    pub fn parse(bytes: &'a [u8]) -> Result<Event<'a>> {
        serde_json::from_slice(bytes).map_err(|e| {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
            Error::msg(format!("not a Nexmark event ({e}): {text}"))
        })
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
