//! The highest bids of a window (an aggregate for the window library),
//! and the binary records that carry them between q7's stages
//! (fixed-width little-endian integers: no JSON to write and parse per
//! bid).

use serde::{Deserialize, Serialize};
use weir_guest::window::AggregateFunction;
use weir_guest::{Decode, Encode, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bid {
    pub auction: u64,
    pub bidder: u64,
    pub ts: i64,
}

/// A bid and its price: `prepare` -> `local`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PricedBid {
    pub price: u64,
    pub bid: Bid,
}

/// The highest price seen and the bids that offered it: `local`'s
/// accumulator, `local` -> `global`, and `global`'s state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Highest {
    pub price: u64,
    pub bids: Vec<Bid>,
}

/// The aggregate of `local`'s windows: the highest bids (all ties).
pub struct HighestBids;

impl AggregateFunction for HighestBids {
    type In = PricedBid;
    type Acc = Highest;
    type Out = Highest;
    fn create(&self) -> Highest {
        Highest::default()
    }
    fn add(&self, acc: &mut Highest, bid: &PricedBid) {
        self.add_changed(acc, bid);
    }
    /// Most bids are below their auction's highest: no state write.
    fn add_changed(&self, acc: &mut Highest, bid: &PricedBid) -> bool {
        if bid.price < acc.price && !acc.bids.is_empty() {
            return false;
        }
        acc.offer(bid.price, &[bid.bid]);
        true
    }
    fn merge(&self, acc: &mut Highest, other: Highest) {
        acc.offer(other.price, &other.bids);
    }
    fn result(&self, acc: &Highest) -> Highest {
        acc.clone()
    }
}

/// Reads little-endian words, or says what the bytes were not.
struct Words<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl Words<'_> {
    fn next(&mut self) -> Result<u64> {
        match self.bytes.split_first_chunk::<8>() {
            Some((word, rest)) => {
                self.bytes = rest;
                Ok(u64::from_le_bytes(*word))
            }
            None => Err(Error::msg(format!(
                "not {}: the bytes end inside a field",
                self.what
            ))),
        }
    }

    fn bid(&mut self) -> Result<Bid> {
        Ok(Bid {
            auction: self.next()?,
            bidder: self.next()?,
            ts: self.next()? as i64,
        })
    }

    fn highest(&mut self) -> Result<Highest> {
        let price = self.next()?;
        let n = self.next()?;
        let mut bids = Vec::new();
        for _ in 0..n {
            bids.push(self.bid()?);
        }
        Ok(Highest { price, bids })
    }

    fn done(&self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Error::msg(format!(
                "not {}: {} bytes too many",
                self.what,
                self.bytes.len()
            )))
        }
    }
}

fn put(out: &mut Vec<u8>, word: u64) {
    out.extend_from_slice(&word.to_le_bytes());
}

fn put_bid(out: &mut Vec<u8>, b: &Bid) {
    put(out, b.auction);
    put(out, b.bidder);
    put(out, b.ts as u64);
}

impl Encode for PricedBid {
    fn encode(&self, out: &mut Vec<u8>) {
        put(out, self.price);
        put_bid(out, &self.bid);
    }
}

impl Decode for PricedBid {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut w = Words {
            bytes,
            what: "a priced bid",
        };
        let b = PricedBid {
            price: w.next()?,
            bid: w.bid()?,
        };
        w.done().map(|_| b)
    }
}

fn put_highest(out: &mut Vec<u8>, h: &Highest) {
    put(out, h.price);
    put(out, h.bids.len() as u64);
    for b in &h.bids {
        put_bid(out, b);
    }
}

impl Encode for Highest {
    fn encode(&self, out: &mut Vec<u8>) {
        put_highest(out, self);
    }
}

impl Decode for Highest {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut w = Words {
            bytes,
            what: "a window's highest bids",
        };
        let h = w.highest()?;
        w.done().map(|_| h)
    }
}

impl Highest {
    /// Takes in `bids` offered at `price`: a higher price replaces the
    /// bids, an equal one joins them.
    pub fn offer(&mut self, price: u64, bids: &[Bid]) {
        if bids.is_empty() || price < self.price {
            return;
        }
        if price > self.price || self.bids.is_empty() {
            self.price = price;
            self.bids.clear();
        }
        self.bids.extend_from_slice(bids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(v: T) {
        let mut bytes = Vec::new();
        v.encode(&mut bytes);
        assert_eq!(T::decode(&bytes).unwrap(), v);
        if !bytes.is_empty() {
            assert!(T::decode(&bytes[..bytes.len() - 1]).is_err());
            bytes.push(0);
            assert!(T::decode(&bytes).is_err());
        }
    }

    #[test]
    fn records_and_state_round_trip() {
        let bid = |n| Bid {
            auction: n,
            bidder: n + 1,
            ts: -(n as i64),
        };
        round_trip(PricedBid {
            price: 7,
            bid: bid(1),
        });
        let h = Highest {
            price: u64::MAX,
            bids: vec![bid(2), bid(3)],
        };
        round_trip(h);
        round_trip(Highest::default());
    }
}
