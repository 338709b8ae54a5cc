//! The highest bids of a window, and the binary records and state that
//! carry them between q7's stages (fixed-width little-endian integers:
//! no JSON to write and parse per bid).

use weir_guest::{Decode, Encode, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
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

/// The highest price seen and the bids that offered it: `local` ->
/// `global`, and `global`'s state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Highest {
    pub price: u64,
    pub bids: Vec<Bid>,
}

/// Per auction, its open windows (by end) and their highest bids;
/// usually one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Open(Vec<(i64, Highest)>);

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

impl Encode for Open {
    fn encode(&self, out: &mut Vec<u8>) {
        for (end, h) in &self.0 {
            put(out, *end as u64);
            put_highest(out, h);
        }
    }
}

impl Decode for Open {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut w = Words {
            bytes,
            what: "an auction's open windows",
        };
        let mut open = Vec::new();
        while !w.bytes.is_empty() {
            open.push((w.next()? as i64, w.highest()?));
        }
        Ok(Open(open))
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

impl Open {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has(&self, end: i64) -> bool {
        self.0.iter().any(|(e, _)| *e == end)
    }

    /// Offers `bid` to the window ending at `end`. Returns whether the
    /// state changed and whether the window is new (needs its timer).
    pub fn offer(&mut self, end: i64, bid: PricedBid) -> (bool, bool) {
        match self.0.iter_mut().find(|(e, _)| *e == end) {
            Some((_, h)) => {
                if bid.price < h.price && !h.bids.is_empty() {
                    return (false, false);
                }
                h.offer(bid.price, &[bid.bid]);
                (true, false)
            }
            None => {
                let h = Highest {
                    price: bid.price,
                    bids: vec![bid.bid],
                };
                self.0.push((end, h));
                (true, true)
            }
        }
    }

    /// Removes and returns the window ending at `end`.
    pub fn take(&mut self, end: i64) -> Option<Highest> {
        let at = self.0.iter().position(|(e, _)| *e == end)?;
        Some(self.0.remove(at).1)
    }
}

/// The end of the tumbling window of `size` ms holding `ts` (windows
/// aligned to the epoch, as the window library's).
pub fn window_end(ts: i64, size: i64) -> Result<i64> {
    ts.checked_sub(ts.rem_euclid(size))
        .and_then(|start| start.checked_add(size))
        .ok_or_else(|| {
            Error::msg(format!(
                "event time {ts} is too close to the ends of the i64 range for its windows"
            ))
        })
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
        round_trip(h.clone());
        round_trip(Highest::default());
        round_trip(Open(vec![(10, h), (-20, Highest::default())]));
        round_trip(Open::default());
        assert_eq!(window_end(-1, 10).unwrap(), 0);
        assert_eq!(window_end(10, 10).unwrap(), 20);
        assert!(window_end(i64::MAX, 10).is_err());
    }
}
