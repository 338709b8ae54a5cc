//! Session windows counting records, kept as one small list per key.
//!
//! The same sessions as `weir_guest::window` with `WindowAssigner::session`
//! (a record opens `[t, t + gap)`, which absorbs every session it overlaps
//! or touches), with two savings for the common case of a bid extending
//! its bidder's open session: one state read and write per record, and no
//! timer calls. A session's timer is not moved when the session grows;
//! when it fires early, it is set again at the session's new end.

use weir_guest::{Decode, Encode, Error, Result};

/// One session: `[start, end)`, its record count, and when its timer is
/// set for (at most `end - 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Session {
    pub start: i64,
    pub end: i64,
    pub count: u64,
    timer: i64,
}

/// A key's open sessions, by start (they never touch each other).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sessions(Vec<Session>);

const SESSION_BYTES: usize = 32;

/// Binary: (start, end, count, timer) per session, little-endian.
impl Encode for Sessions {
    fn encode(&self, out: &mut Vec<u8>) {
        for s in &self.0 {
            out.extend_from_slice(&s.start.to_le_bytes());
            out.extend_from_slice(&s.end.to_le_bytes());
            out.extend_from_slice(&s.count.to_le_bytes());
            out.extend_from_slice(&s.timer.to_le_bytes());
        }
    }
}

impl Decode for Sessions {
    fn decode(bytes: &[u8]) -> Result<Self> {
        if !bytes.len().is_multiple_of(SESSION_BYTES) {
            return Err(Error::msg(format!(
                "not a key's sessions: {} bytes",
                bytes.len()
            )));
        }
        let word =
            |c: &[u8], i: usize| <[u8; 8]>::try_from(&c[i * 8..i * 8 + 8]).unwrap_or_default();
        Ok(Sessions(
            bytes
                .chunks_exact(SESSION_BYTES)
                .map(|c| Session {
                    start: i64::from_le_bytes(word(c, 0)),
                    end: i64::from_le_bytes(word(c, 1)),
                    count: u64::from_le_bytes(word(c, 2)),
                    timer: i64::from_le_bytes(word(c, 3)),
                })
                .collect(),
        ))
    }
}

impl Sessions {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a record at `ts` with sessions of `gap` ms, given the
    /// watermark. Returns the timer to register when the record opens a
    /// new session. A record whose session would already be closed is
    /// not added (the host drops such late records before they get here).
    /// `watermark` is asked only when the record's session is late or
    /// new (it is a host call).
    pub fn add(
        &mut self,
        ts: i64,
        gap: i64,
        watermark: impl FnOnce() -> i64,
    ) -> Result<Option<i64>> {
        let end = ts.checked_add(gap).ok_or_else(|| {
            Error::msg(format!(
                "event time {ts} is too close to the ends of the i64 range for its windows"
            ))
        })?;
        let mut merged = Session {
            start: ts,
            end,
            count: 1,
            timer: i64::MAX,
        };
        // Grow the record's window until nothing else touches it.
        let mut absorbed = vec![false; self.0.len()];
        loop {
            let mut grew = false;
            for (s, taken) in self.0.iter().zip(absorbed.iter_mut()) {
                // Overlaps or touches: Flink's (and the library's) rule.
                if !*taken && s.start <= merged.end && s.end >= merged.start {
                    *taken = true;
                    grew = true;
                    merged.start = merged.start.min(s.start);
                    merged.end = merged.end.max(s.end);
                    merged.count += s.count;
                    // Absorbed sessions' timers are all still pending.
                    merged.timer = merged.timer.min(s.timer);
                }
            }
            if !grew {
                break;
            }
        }
        // A stored session is never late: its pending timer (at most
        // its end - 1) is ahead of the watermark, or it would have fired
        // and closed it. So only a record opening a session of its own
        // can be late (and a late record is one the host drops anyway).
        if merged.timer == i64::MAX && merged.end - 1 <= watermark() {
            return Ok(None);
        }
        let mut taken = absorbed.iter();
        self.0.retain(|_| !taken.next().copied().unwrap_or(false));
        let timer = if merged.timer == i64::MAX {
            merged.timer = merged.end - 1;
            Some(merged.timer)
        } else {
            None
        };
        let at = self.0.partition_point(|s| s.start < merged.start);
        self.0.insert(at, merged);
        Ok(timer)
    }

    /// The key's timer at `time` fired, the watermark at `watermark`:
    /// returns the sessions it closes (in start order) and the timers to
    /// set for the sessions that grew since their timer was set.
    pub fn fire(&mut self, time: i64, watermark: i64) -> (Vec<Session>, Vec<i64>) {
        let (mut closed, mut rearm) = (Vec::new(), Vec::new());
        self.0.retain_mut(|s| {
            if s.timer > time {
                return true;
            }
            if s.end - 1 <= watermark {
                closed.push(*s);
                return false;
            }
            s.timer = s.end - 1;
            rearm.push(s.timer);
            true
        });
        (closed, rearm)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use weir_guest::testing::Harness;
    use weir_guest::window::{Count, WindowAssigner, Windows};
    use weir_guest::{Context, OpenContext, Operator, Record, Timer};

    use super::*;

    /// Feeds `times` (the watermark trailing by `delay`), firing timers in
    /// order as the watermark passes them; returns (start, end, count).
    fn run(gap: i64, times: &[i64], delay: i64) -> Vec<(i64, i64, u64)> {
        let mut s = Sessions::default();
        let mut timers = BTreeSet::new();
        let mut out = Vec::new();
        let mut watermark = i64::MIN;
        let mut fire = |s: &mut Sessions, timers: &mut BTreeSet<i64>, w: i64| {
            while let Some(&t) = timers.first().filter(|&&t| t <= w) {
                timers.pop_first();
                let (closed, rearm) = s.fire(t, w);
                out.extend(closed.iter().map(|c| (c.start, c.end, c.count)));
                timers.extend(rearm);
            }
        };
        for &ts in times {
            if ts <= watermark {
                continue; // the host drops late records
            }
            timers.extend(s.add(ts, gap, || watermark).unwrap());
            s = Sessions::decode(&{
                let mut b = Vec::new();
                s.encode(&mut b);
                b
            })
            .unwrap();
            watermark = watermark.max(ts - delay);
            fire(&mut s, &mut timers, watermark);
        }
        fire(&mut s, &mut timers, i64::MAX - 1);
        assert!(s.is_empty(), "sessions left: {s:?}");
        out.sort();
        out
    }

    /// The window library's session windows, as q11 used them before.
    struct Library(Windows<Count>);

    impl Operator for Library {
        type Key = ();
        type Value = ();
        fn open(ctx: &mut OpenContext) -> weir_guest::Result<Self> {
            let gap = ctx.config_or("gap_ms", 0i64)?;
            let a = WindowAssigner::session(gap)?;
            Ok(Library(Windows::new(ctx, "s", a, Count::new())?))
        }
        fn process(&mut self, ctx: &mut Context, r: Record<(), ()>) -> weir_guest::Result<()> {
            self.0.add(ctx, r.timestamp.unwrap_or(0), &()).map(drop)
        }
        fn on_timer(&mut self, ctx: &mut Context, t: Timer<()>) -> weir_guest::Result<()> {
            for r in self.0.on_timer(ctx, &t)? {
                let v = (r.window.start, r.window.end, r.value);
                ctx.emit(&(), &weir_guest::Json(v))?;
            }
            Ok(())
        }
    }

    fn expected(gap: i64, times: &[i64], delay: i64) -> Vec<(i64, i64, u64)> {
        let gap_text = gap.to_string();
        let mut h = Harness::<Library>::with_config(&[("gap_ms", &gap_text)]).unwrap();
        let mut out = Vec::new();
        let mut watermark = i64::MIN;
        for &ts in times {
            if ts <= watermark {
                continue;
            }
            h.process(&(), &(), Some(ts)).unwrap();
            watermark = watermark.max(ts - delay);
            out.extend(h.advance_watermark(watermark).unwrap());
        }
        out.extend(h.advance_watermark(i64::MAX - 1).unwrap());
        let mut out: Vec<_> = out
            .iter()
            .map(|o| o.value_as::<weir_guest::Json<(i64, i64, u64)>>().unwrap().0)
            .collect();
        out.sort();
        out
    }

    #[test]
    fn sessions_are_the_window_librarys() {
        let times: Vec<i64> = (0..300i64).map(|i| (i * 37) % 97 + i * 2 - 50).collect();
        for gap in [1, 5, 10, 30] {
            for delay in [0, 3, 40, 1000] {
                assert_eq!(
                    run(gap, &times, delay),
                    expected(gap, &times, delay),
                    "gap {gap} delay {delay}"
                );
            }
        }
    }

    #[test]
    fn bad_state_bytes_are_an_error() {
        assert!(Sessions::decode(&[0; 31]).is_err());
        assert_eq!(Sessions::decode(&[]).unwrap(), Sessions::default());
    }
}
