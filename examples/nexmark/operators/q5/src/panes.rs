//! Sliding-window counts kept as panes: time is cut into slices of
//! `gcd(size, slide)` ms, each window is a run of whole panes, so a record
//! updates one pane and a window's count is summed when it fires.
//!
//! Windows are those of `weir_guest::window::WindowAssigner::sliding`:
//! starts at multiples of `slide` (from the epoch), `[start, start + size)`.

use weir_guest::{Decode, Encode, Error, Result};

/// One key's panes with records: (pane start, records in the pane), pane
/// starts ascending. A window of the key has a timer exactly when one of
/// its panes is here (it was set when the first of them came), so the
/// panes are all the state there is.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Panes {
    counts: Vec<(i64, u64)>,
}

impl Panes {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Binary: (start, count) pairs, little-endian.
impl Encode for Panes {
    fn encode(&self, out: &mut Vec<u8>) {
        for (start, count) in &self.counts {
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
    }
}

impl Decode for Panes {
    fn decode(bytes: &[u8]) -> Result<Self> {
        if !bytes.len().is_multiple_of(16) {
            return Err(Error::msg(format!(
                "not a key's sliding-window panes: {} bytes",
                bytes.len()
            )));
        }
        let word = |c: &[u8]| <[u8; 8]>::try_from(c).unwrap_or_default();
        let counts = bytes
            .chunks_exact(16)
            .map(|c| {
                (
                    i64::from_le_bytes(word(&c[..8])),
                    u64::from_le_bytes(word(&c[8..])),
                )
            })
            .collect();
        Ok(Panes { counts })
    }
}

/// Sliding windows of `size` every `slide` ms (both positive, slide <=
/// size: checked by the caller).
#[derive(Debug, Clone, Copy)]
pub struct Sliding {
    size: i64,
    slide: i64,
    pane: i64,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn out_of_range(ts: i64) -> Error {
    Error::msg(format!(
        "event time {ts} is too close to the ends of the i64 range for its windows"
    ))
}

impl Sliding {
    pub fn new(size: i64, slide: i64) -> Self {
        Sliding {
            size,
            slide,
            pane: gcd(size, slide),
        }
    }

    /// The ends of the windows holding the pane that starts at
    /// `pane_start`, ascending: those in `(pane_start, pane_start + size]`
    /// with `end - size` a multiple of `slide`.
    fn ends(&self, pane_start: i64) -> Option<impl Iterator<Item = i64> + use<>> {
        let first = pane_start.checked_add(self.pane)?;
        // The smallest end >= first with (end - size) % slide == 0.
        let offset = (first.checked_sub(self.size)?).rem_euclid(self.slide);
        let first = if offset == 0 {
            first
        } else {
            first.checked_add(self.slide - offset)?
        };
        let last = pane_start.checked_add(self.size)?;
        let slide = self.slide;
        Some(
            (0..)
                .map_while(move |i| first.checked_add(i * slide))
                .take_while(move |&e| e <= last),
        )
    }

    /// Adds a record at `ts` to its pane; returns the window ends that
    /// need a timer now (those not registered before and not yet closed).
    /// `watermark` is asked only for a new pane (it is a host call).
    pub fn add(&self, p: &mut Panes, ts: i64, watermark: impl FnOnce() -> i64) -> Result<Vec<i64>> {
        let start = ts
            .checked_sub(ts.rem_euclid(self.pane))
            .ok_or_else(|| out_of_range(ts))?;
        // Panes arrive nearly in order: look from the newest.
        let at = p.counts.iter().rposition(|&(s, _)| s <= start);
        let mut timers = Vec::new();
        match at {
            Some(i) if p.counts[i].0 == start => p.counts[i].1 += 1,
            _ => {
                let watermark = watermark();
                for end in self.ends(start).ok_or_else(|| out_of_range(ts))? {
                    // A window whose last instant the watermark has passed
                    // has fired (or never will): the library skips it too.
                    // One with a pane here already has its timer.
                    let from = end.saturating_sub(self.size);
                    let has_timer = p.counts.iter().any(|&(s, _)| s >= from && s < end);
                    if end - 1 > watermark && !has_timer {
                        timers.push(end);
                    }
                }
                p.counts.insert(at.map_or(0, |i| i + 1), (start, 1));
            }
        }
        Ok(timers)
    }

    /// The records in the window ending at `end`.
    pub fn count(&self, p: &Panes, end: i64) -> u64 {
        let start = end.saturating_sub(self.size);
        p.counts
            .iter()
            .filter(|&&(s, _)| s >= start && s < end)
            .map(|&(_, n)| n)
            .sum()
    }

    /// Drops the panes no window after the one ending at `end` holds.
    pub fn forget_before(&self, p: &mut Panes, end: i64) {
        let next_start = end.saturating_add(self.slide).saturating_sub(self.size);
        p.counts.retain(|&(s, _)| s >= next_start);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use weir_guest::window::WindowAssigner;

    use super::*;

    /// Feeds `times` (in order, the watermark trailing by `delay`), fires
    /// every registered timer in time order as the watermark passes it,
    /// and returns the (window end, count) results.
    fn run(size: i64, slide: i64, times: &[i64], delay: i64) -> Vec<(i64, u64)> {
        let w = Sliding::new(size, slide);
        let mut p = Panes::default();
        let mut timers = BTreeSet::new();
        let mut out = Vec::new();
        let mut watermark = i64::MIN;
        let mut fire = |p: &mut Panes, timers: &mut BTreeSet<i64>, up_to: i64| {
            while let Some(&end) = timers.first().filter(|&&e| e - 1 <= up_to) {
                timers.pop_first();
                let n = w.count(p, end);
                if n > 0 {
                    out.push((end, n));
                }
                w.forget_before(p, end);
            }
        };
        for &ts in times {
            if ts <= watermark {
                continue; // the host drops late records
            }
            for end in w.add(&mut p, ts, || watermark).unwrap() {
                assert!(timers.insert(end), "timer {end} registered twice");
            }
            p = Panes::decode(&{
                let mut b = Vec::new();
                p.encode(&mut b);
                b
            })
            .unwrap();
            watermark = watermark.max(ts - delay);
            fire(&mut p, &mut timers, watermark);
        }
        fire(&mut p, &mut timers, i64::MAX);
        assert!(p.is_empty(), "panes left over: {p:?}");
        out
    }

    /// What the window library assigns, counted per window.
    fn expected(size: i64, slide: i64, times: &[i64], delay: i64) -> Vec<(i64, u64)> {
        let a = WindowAssigner::sliding(size, slide).unwrap();
        let mut counts = BTreeMap::new();
        let mut watermark = i64::MIN;
        for &ts in times {
            if ts <= watermark {
                continue;
            }
            for window in a.assign(ts).unwrap() {
                if window.end - 1 > watermark {
                    *counts.entry(window.end).or_insert(0u64) += 1;
                }
            }
            watermark = watermark.max(ts - delay);
        }
        counts.into_iter().collect()
    }

    #[test]
    fn panes_count_what_the_window_library_counts() {
        // Disordered times, including negative ones and repeats.
        let times: Vec<i64> = (0..200i64).map(|i| (i * 37) % 61 - 20 + i / 3).collect();
        for (size, slide) in [(10, 2), (10, 5), (10, 3), (10, 10), (7, 3), (1, 1)] {
            for delay in [0, 5, 100] {
                assert_eq!(
                    run(size, slide, &times, delay),
                    expected(size, slide, &times, delay),
                    "size {size} slide {slide} delay {delay}"
                );
            }
        }
    }

    #[test]
    fn bad_state_bytes_are_an_error() {
        assert!(Panes::decode(&[1, 2, 3]).is_err());
        assert!(Panes::decode(&[0; 17]).is_err());
        assert_eq!(Panes::decode(&[]).unwrap(), Panes::default());
    }
}
