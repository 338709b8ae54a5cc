//! q4's records between stages and its state, in fixed-width
//! little-endian binary (no JSON to write and parse per bid).

use weir_guest::{Decode, Encode, Error, Result};

/// What `prepare` sends `winning` (and what `early` holds: bids).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Side {
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

/// An auction that came, and its highest bid in its time so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Win {
    pub ts: i64,
    pub expires: i64,
    pub category: u64,
    pub closed: bool,
    pub best: Option<u64>,
}

/// A closed auction's winning price: `winning` -> `average`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Closed {
    pub auction: u64,
    pub category: u64,
    pub price: u64,
}

/// A category's closed auctions so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub sum: u64,
    pub count: u64,
}

fn put(out: &mut Vec<u8>, word: u64) {
    out.extend_from_slice(&word.to_le_bytes());
}

/// The little-endian words of `bytes`, exactly `n` of them after a
/// `prefix` of bytes, or an error naming `what`.
fn words<const N: usize>(bytes: &[u8], prefix: usize, what: &str) -> Result<[u64; N]> {
    if bytes.len() != prefix + N * 8 {
        return Err(Error::msg(format!(
            "not {what}: {} bytes, expected {}",
            bytes.len(),
            prefix + N * 8
        )));
    }
    let mut out = [0u64; N];
    for (w, chunk) in out.iter_mut().zip(bytes[prefix..].chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    }
    Ok(out)
}

impl Encode for Side {
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Side::A {
                ts,
                expires,
                category,
            } => {
                out.push(b'A');
                put(out, ts as u64);
                put(out, expires as u64);
                put(out, category);
            }
            Side::B { ts, price } => {
                out.push(b'B');
                put(out, ts as u64);
                put(out, price);
            }
        }
    }
}

impl Decode for Side {
    fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes.first() {
            Some(b'A') => {
                let [ts, expires, category] = words(bytes, 1, "an auction")?;
                Ok(Side::A {
                    ts: ts as i64,
                    expires: expires as i64,
                    category,
                })
            }
            Some(b'B') => {
                let [ts, price] = words(bytes, 1, "a bid")?;
                Ok(Side::B {
                    ts: ts as i64,
                    price,
                })
            }
            _ => Err(Error::msg(format!(
                "not an auction or a bid: {} bytes starting {:?}",
                bytes.len(),
                bytes.first()
            ))),
        }
    }
}

impl Encode for Win {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.closed) | (u8::from(self.best.is_some()) << 1));
        put(out, self.ts as u64);
        put(out, self.expires as u64);
        put(out, self.category);
        put(out, self.best.unwrap_or(0));
    }
}

impl Decode for Win {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let [ts, expires, category, best] = words(bytes, 1, "an auction's state")?;
        let flags = bytes[0];
        if flags > 3 {
            return Err(Error::msg(format!("not an auction's state: flags {flags}")));
        }
        Ok(Win {
            ts: ts as i64,
            expires: expires as i64,
            category,
            closed: flags & 1 != 0,
            best: (flags & 2 != 0).then_some(best),
        })
    }
}

impl Encode for Closed {
    fn encode(&self, out: &mut Vec<u8>) {
        put(out, self.auction);
        put(out, self.category);
        put(out, self.price);
    }
}

impl Decode for Closed {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let [auction, category, price] = words(bytes, 0, "a closed auction")?;
        Ok(Closed {
            auction,
            category,
            price,
        })
    }
}

impl Encode for Totals {
    fn encode(&self, out: &mut Vec<u8>) {
        put(out, self.sum);
        put(out, self.count);
    }
}

impl Decode for Totals {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let [sum, count] = words(bytes, 0, "a category's totals")?;
        Ok(Totals { sum, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(v: T) {
        let mut bytes = Vec::new();
        v.encode(&mut bytes);
        assert_eq!(T::decode(&bytes).unwrap(), v);
        assert!(T::decode(&bytes[..bytes.len() - 1]).is_err());
        bytes.push(0);
        assert!(T::decode(&bytes).is_err());
    }

    #[test]
    fn records_and_state_round_trip() {
        round_trip(Side::A {
            ts: -1,
            expires: i64::MAX,
            category: 10,
        });
        round_trip(Side::B { ts: 5, price: 7 });
        for (closed, best) in [(false, None), (true, Some(0)), (false, Some(u64::MAX))] {
            round_trip(Win {
                ts: 1,
                expires: 2,
                category: 3,
                closed,
                best,
            });
        }
        round_trip(Closed {
            auction: 1,
            category: 2,
            price: 3,
        });
        round_trip(Totals { sum: 9, count: 2 });
        assert!(Side::decode(b"").is_err());
        assert!(Side::decode(b"C").is_err());
    }
}
