//! The Nexmark event model, after the Apache Beam / Flink Nexmark
//! generators: which event number is a person, an auction or a bid, the
//! ids each refers to, prices, categories, auction lengths and event times.
//!
//! Everything about event `n` is a pure function of the spec and `n` (its
//! random numbers come from a generator seeded with the seed and `n`), so
//! any split can produce any event without the ones before it.

use std::io::Write;

use weir_core::job::NexmarkSpec;

/// Of every [`PROPORTION_DENOMINATOR`] events, this many are persons...
pub const PERSON_PROPORTION: u64 = 1;
/// ...this many auctions...
pub const AUCTION_PROPORTION: u64 = 3;
/// ...and this many bids.
pub const BID_PROPORTION: u64 = 46;
pub const PROPORTION_DENOMINATOR: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;

pub const FIRST_PERSON_ID: u64 = 1000;
pub const FIRST_AUCTION_ID: u64 = 1000;
pub const FIRST_CATEGORY_ID: u64 = 10;
pub const NUM_CATEGORIES: u64 = 5;
/// Bids and auctions pick among the most recent this many persons...
const NUM_ACTIVE_PEOPLE: u64 = 1000;
/// ...or up to this many not created yet (as in Beam's model).
const PERSON_ID_LEAD: u64 = 10;
/// Bids pick among the most recent this many auctions...
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
/// ...or up to this many not created yet.
const AUCTION_ID_LEAD: u64 = 10;
/// One in this many bids goes to a random in-flight auction; the others to
/// the latest "hot" auction (Beam's `hotAuctionRatio`).
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_SELLER_RATIO: u64 = 4;
const HOT_BIDDER_RATIO: u64 = 4;

const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
pub const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

/// What event `n` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Person,
    Auction,
    Bid,
}

impl EventKind {
    /// The `event_type` column: 0, 1, 2 as in Flink's Nexmark.
    pub fn code(self) -> u8 {
        match self {
            EventKind::Person => 0,
            EventKind::Auction => 1,
            EventKind::Bid => 2,
        }
    }
}

pub fn kind_of(n: u64) -> EventKind {
    let offset = n % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        EventKind::Person
    } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
        EventKind::Auction
    } else {
        EventKind::Bid
    }
}

/// The 0-based id of the newest person at event `n` (event `n`'s own if
/// it is a person).
// Written for any proportions; with one person per epoch the `min` is a
// no-op clippy sees through.
#[allow(clippy::unnecessary_min_or_max)]
fn last_base0_person_id(n: u64) -> u64 {
    let epoch = n / PROPORTION_DENOMINATOR;
    let offset = (n % PROPORTION_DENOMINATOR).min(PERSON_PROPORTION - 1);
    epoch * PERSON_PROPORTION + offset
}

/// The 0-based id of the newest auction at event `n` (event `n`'s own if
/// it is an auction); `None` before the first auction.
fn last_base0_auction_id(n: u64) -> Option<u64> {
    let epoch = n / PROPORTION_DENOMINATOR;
    let offset = n % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        // The previous epoch's last auction.
        (epoch * AUCTION_PROPORTION).checked_sub(1)
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        Some(epoch * AUCTION_PROPORTION + AUCTION_PROPORTION - 1)
    } else {
        Some(epoch * AUCTION_PROPORTION + offset - PERSON_PROPORTION)
    }
}

/// SplitMix64: small, fast and good enough for a benchmark's choices.
struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

impl Rng {
    fn for_event(seed: u64, n: u64) -> Self {
        Rng(mix(seed ^ mix(n.wrapping_add(0x9e3779b97f4a7c15))))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        mix(self.0)
    }

    /// Uniform in `0..bound` (0 when `bound` is 0).
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }

    fn letters(&mut self, len: usize, out: &mut Vec<u8>) {
        for _ in 0..len {
            out.push(b'a' + self.below(26) as u8);
        }
    }
}

/// Event `n`'s time without disorder: `start_ms + n * 1000 / events_per_second`.
pub fn regular_time(spec: &NexmarkSpec, n: u64) -> i64 {
    let offset = u128::from(n) * 1000 / u128::from(spec.events_per_second.max(1));
    spec.start_ms
        .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
}

/// Event `n`'s time: its regular time minus a jitter in `0..=disorder_ms`,
/// so an event is never more than `disorder_ms` behind one before it.
pub fn event_time(spec: &NexmarkSpec, n: u64) -> i64 {
    let regular = regular_time(spec, n);
    if spec.disorder_ms <= 0 {
        return regular;
    }
    let jitter = mix(spec.seed ^ n.rotate_left(17) ^ 0x5bd1e995) % (spec.disorder_ms as u64 + 1);
    regular - jitter as i64
}

/// A 0-based person id for a bid or auction: mostly recent persons, a few
/// not yet created.
fn next_base0_person_id(n: u64, rng: &mut Rng) -> u64 {
    let people = last_base0_person_id(n) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + rng.below(active + PERSON_ID_LEAD)
}

/// A 0-based auction id for a bid: one of the in-flight auctions, or one
/// a little ahead.
fn next_base0_auction_id(n: u64, rng: &mut Rng) -> u64 {
    let last = last_base0_auction_id(n).unwrap_or(0);
    let min = last.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min + rng.below(last - min + 1 + AUCTION_ID_LEAD)
}

/// A price in cents, log-uniform between 1 and 1,000,000 dollars.
fn next_price(rng: &mut Rng) -> u64 {
    (10f64.powf(rng.unit() * 6.0) * 100.0).round() as u64
}

/// How long an auction created at event `n` runs: up to twice the time
/// until [`NUM_IN_FLIGHT_AUCTIONS`] more auctions have been created.
fn auction_length_ms(spec: &NexmarkSpec, n: u64, rng: &mut Rng) -> i64 {
    let ahead = NUM_IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR / AUCTION_PROPORTION;
    let horizon = regular_time(spec, n.saturating_add(ahead)) - regular_time(spec, n);
    1 + rng.below((horizon.max(0) as u64 * 2).max(1)) as i64
}

/// Writes event `n`: its key (decimal: a person's or auction's id, a bid's
/// auction) into `key` and its JSON object into `value` (both cleared
/// first); returns its event time.
pub fn write_event(spec: &NexmarkSpec, n: u64, key: &mut Vec<u8>, value: &mut Vec<u8>) -> i64 {
    key.clear();
    value.clear();
    let ts = event_time(spec, n);
    let mut rng = Rng::for_event(spec.seed, n);
    let kind = kind_of(n);
    let _ = write!(value, "{{\"event_type\":{},\"ts\":{ts}", kind.code());
    match kind {
        EventKind::Person => {
            let id = last_base0_person_id(n) + FIRST_PERSON_ID;
            let _ = write!(key, "{id}");
            let _ = write!(
                value,
                ",\"id\":{id},\"name\":\"{} {}\",\"email\":\"",
                rng.pick(&FIRST_NAMES),
                rng.pick(&LAST_NAMES)
            );
            rng.letters(7, value);
            value.extend_from_slice(b"@");
            rng.letters(5, value);
            let _ = write!(
                value,
                ".com\",\"credit_card\":\"{:04} {:04} {:04} {:04}\",\"city\":\"{}\",\"state\":\"{}\"}}",
                rng.below(10_000),
                rng.below(10_000),
                rng.below(10_000),
                rng.below(10_000),
                rng.pick(&US_CITIES),
                rng.pick(&US_STATES)
            );
        }
        EventKind::Auction => {
            // An auction exists from its own event on.
            let id = last_base0_auction_id(n).unwrap_or(0) + FIRST_AUCTION_ID;
            let _ = write!(key, "{id}");
            let seller = if rng.below(HOT_SELLER_RATIO) > 0 {
                last_base0_person_id(n) / HOT_SELLER_RATIO * HOT_SELLER_RATIO
            } else {
                next_base0_person_id(n, &mut rng)
            } + FIRST_PERSON_ID;
            let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES);
            let initial_bid = next_price(&mut rng);
            let reserve = initial_bid + next_price(&mut rng);
            let expires = ts.saturating_add(auction_length_ms(spec, n, &mut rng));
            let _ = write!(value, ",\"id\":{id},\"item_name\":\"");
            rng.letters(10, value);
            value.extend_from_slice(b"\",\"description\":\"");
            rng.letters(20, value);
            let _ = write!(
                value,
                "\",\"initial_bid\":{initial_bid},\"reserve\":{reserve},\"expires\":{expires},\"seller\":{seller},\"category\":{category}}}"
            );
        }
        EventKind::Bid => {
            let auction = if rng.below(HOT_AUCTION_RATIO) > 0 {
                last_base0_auction_id(n).unwrap_or(0) / HOT_AUCTION_RATIO * HOT_AUCTION_RATIO
            } else {
                next_base0_auction_id(n, &mut rng)
            } + FIRST_AUCTION_ID;
            let bidder = if rng.below(HOT_BIDDER_RATIO) > 0 {
                last_base0_person_id(n) / HOT_BIDDER_RATIO * HOT_BIDDER_RATIO + 1
            } else {
                next_base0_person_id(n, &mut rng)
            } + FIRST_PERSON_ID;
            let price = next_price(&mut rng);
            let _ = write!(key, "{auction}");
            let _ = write!(
                value,
                ",\"auction\":{auction},\"bidder\":{bidder},\"price\":{price},\"channel\":\"{}\",\"url\":\"https://www.nexmark.com/",
                rng.pick(&CHANNELS)
            );
            rng.letters(5, value);
            value.extend_from_slice(b"/item.htm?query=1\"}");
        }
    }
    ts
}
