//! The window library through the native harness: each assigner and
//! aggregate, lateness, session merges, and a comparison with windows
//! computed by brute force over a shuffled input.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;
use crate::testing::{Emitted, Harness};
use crate::{Context, Decode, Json, OpenContext, Operator, Record, Result, Timer};

/// A windowed operator configured from `config`: `assigner` =
/// `tumbling:SIZE` | `sliding:SIZE:SLIDE` | `session:GAP`, `lateness` (ms).
/// Results are emitted with [`WindowResult::emit`]; records too late become
/// `key -> "late:TS"`.
struct WinOp<A: AggregateFunction> {
    windows: Windows<A>,
}

fn parse_assigner(spec: &str) -> Result<WindowAssigner> {
    let parts: Vec<i64> = spec
        .split(':')
        .skip(1)
        .map(|p| p.parse().map_err(crate::Error::from))
        .collect::<Result<_>>()?;
    match (spec.split(':').next(), parts.as_slice()) {
        (Some("tumbling"), [size]) => WindowAssigner::tumbling(*size),
        (Some("sliding"), [size, slide]) => WindowAssigner::sliding(*size, *slide),
        (Some("session"), [gap]) => WindowAssigner::session(*gap),
        _ => Err(crate::Error::msg(format!("bad assigner {spec}"))),
    }
}

impl<A> Operator for WinOp<A>
where
    A: AggregateFunction + Default + 'static,
    A::In: Decode + Sized,
    A::Out: Serialize,
{
    type Key = String;
    type Value = A::In;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        let assigner = parse_assigner(ctx.config("assigner").unwrap_or("tumbling:1000"))?;
        let lateness = ctx.config_or("lateness", 0i64)?;
        Ok(WinOp {
            windows: Windows::new(ctx, "windows", assigner, A::default())?
                .allowed_lateness(lateness)?,
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<String, A::In>) -> Result<()> {
        let ts = record.timestamp.unwrap_or(0);
        for output in self.windows.add(ctx, ts, &record.value)? {
            match output {
                WindowOutput::Fired(result) => result.emit(ctx, &record.key)?,
                WindowOutput::Late { timestamp } => {
                    ctx.emit(&record.key, &format!("late:{timestamp}"))?
                }
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<String>) -> Result<()> {
        for result in self.windows.on_timer(ctx, &timer)? {
            result.emit(ctx, &timer.key)?;
        }
        Ok(())
    }
}

fn harness<A>(assigner: &str, lateness: i64) -> Harness<WinOp<A>>
where
    A: AggregateFunction + Default + 'static,
    A::In: Decode + Sized,
    A::Out: Serialize,
{
    harness_for_host(assigner, lateness, true)
}

/// As [`harness`]; `prepare_snapshot` false acts as a host that does not
/// call `prepare-snapshot`, so state is written back after every call.
fn harness_for_host<A>(assigner: &str, lateness: i64, prepare_snapshot: bool) -> Harness<WinOp<A>>
where
    A: AggregateFunction + Default + 'static,
    A::In: Decode + Sized,
    A::Out: Serialize,
{
    let hook = if prepare_snapshot { "1" } else { "0" };
    Harness::with_config(&[
        ("assigner", assigner),
        ("lateness", &lateness.to_string()),
        ("weir.prepare_snapshot", hook),
    ])
    .expect("opens")
}

#[test]
fn window_state_stays_in_the_guest_until_the_host_prepares_a_snapshot() {
    for hook in [true, false] {
        let mut h = harness_for_host::<Count<String>>("tumbling:1000", 0, hook);
        for (key, ts) in [("a", 10), ("b", 500), ("a", 999)] {
            h.process(key, "x", Some(ts)).unwrap();
        }
        // A host that snapshots only after `prepare-snapshot` holds nothing
        // yet; one that may snapshot between any two calls holds it all.
        assert_eq!(
            h.value_state_len(0),
            if hook { 0 } else { 2 },
            "hook {hook}"
        );
        h.prepare_snapshot();
        assert_eq!(h.value_state_len(0), 2);
        // A restore from that snapshot fires the windows as if none happened.
        h.restart().unwrap();
        let out = results::<u64>(&h.advance_watermark(999).unwrap());
        assert_eq!(
            out,
            vec![
                ("a".into(), 0, 1000, 2, Some(999)),
                ("b".into(), 0, 1000, 1, Some(999))
            ]
        );
        // Fired and cleared: the next snapshot holds nothing.
        h.prepare_snapshot();
        assert_eq!(h.value_state_len(0), 0);
    }
}

/// (key, start, end, value, timestamp) of an emitted window result.
fn result<V: for<'de> Deserialize<'de>>(e: &Emitted) -> (String, i64, i64, V, Option<i64>) {
    let Json(r) = e
        .value_as::<Json<WindowRecord<String, V>>>()
        .expect("a window record");
    assert_eq!(e.key_as::<String>().unwrap(), r.key);
    (r.key, r.window_start, r.window_end, r.value, e.timestamp)
}

fn results<V: for<'de> Deserialize<'de>>(
    out: &[Emitted],
) -> Vec<(String, i64, i64, V, Option<i64>)> {
    out.iter().map(result).collect()
}

#[test]
fn tumbling_count_fires_each_window_once_at_end_minus_one() {
    let mut h = harness::<Count<String>>("tumbling:1000", 0);
    for (key, ts) in [("a", 10), ("b", 500), ("a", 999), ("a", 1000)] {
        assert!(h.process(key, "x", Some(ts)).unwrap().is_empty());
    }
    assert!(h.advance_watermark(998).unwrap().is_empty());
    let out = results::<u64>(&h.advance_watermark(999).unwrap());
    assert_eq!(
        out,
        vec![
            ("a".into(), 0, 1000, 2, Some(999)),
            ("b".into(), 0, 1000, 1, Some(999))
        ]
    );
    let out = results::<u64>(&h.advance_watermark(5000).unwrap());
    assert_eq!(out, vec![("a".into(), 1000, 2000, 1, Some(1999))]);
    assert!(h.pending_timers().is_empty());
    // Fired windows are gone: nothing fires twice.
    assert!(h.advance_watermark(100_000).unwrap().is_empty());
}

#[test]
fn sliding_sum_adds_each_record_to_every_window_it_is_in() {
    let mut h = harness::<Sum<i64>>("sliding:1000:500", 0);
    h.process("k", &3i64, Some(100)).unwrap(); // [-500,500) [0,1000)
    h.process("k", &4i64, Some(700)).unwrap(); // [0,1000) [500,1500)
    h.process("k", &-2i64, Some(1200)).unwrap(); // [500,1500) [1000,2000)
    let out = results::<i64>(&h.advance_watermark(10_000).unwrap());
    let got: Vec<(i64, i64, i64)> = out.iter().map(|r| (r.1, r.2, r.3)).collect();
    assert_eq!(
        got,
        vec![
            (-500, 500, 3),
            (0, 1000, 7),
            (500, 1500, 2),
            (1000, 2000, -2)
        ]
    );
}

#[test]
fn min_max_and_average_over_tumbling_windows() {
    let mut min = harness::<Min<f64>>("tumbling:100", 0);
    let mut max = harness::<Max<i32>>("tumbling:100", 0);
    let mut avg = harness::<Average<u64>>("tumbling:100", 0);
    for (i, v) in [5i32, -3, 8, 1].into_iter().enumerate() {
        let ts = Some(i as i64 * 30); // 0, 30, 60 in [0,100); 90 too
        min.process("k", &(v as f64 / 2.0), ts).unwrap();
        max.process("k", &v, ts).unwrap();
        avg.process("k", &(v.unsigned_abs() as u64), ts).unwrap();
    }
    assert_eq!(
        results::<f64>(&min.advance_watermark(99).unwrap())[0].3,
        -1.5
    );
    assert_eq!(results::<i32>(&max.advance_watermark(99).unwrap())[0].3, 8);
    assert_eq!(
        results::<f64>(&avg.advance_watermark(99).unwrap())[0].3,
        4.25
    );
}

/// A user aggregate: the distinct values of a window, sorted.
#[derive(Default)]
struct Distinct;

impl AggregateFunction for Distinct {
    type In = String;
    type Acc = std::collections::BTreeSet<String>;
    type Out = Vec<String>;
    fn create(&self) -> Self::Acc {
        Default::default()
    }
    fn add(&self, acc: &mut Self::Acc, value: &String) {
        acc.insert(value.clone());
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.extend(other);
    }
    fn result(&self, acc: &Self::Acc) -> Vec<String> {
        acc.iter().cloned().collect()
    }
}

#[test]
fn user_aggregates_keep_serde_accumulators_in_state() {
    let mut h = harness::<Distinct>("session:100", 0);
    h.process("k", "pear", Some(0)).unwrap();
    h.process("k", "apple", Some(180)).unwrap();
    h.process("k", "pear", Some(90)).unwrap(); // bridges [0,100) and [180,280)
    let out = results::<Vec<String>>(&h.advance_watermark(1000).unwrap());
    assert_eq!(
        out,
        vec![(
            "k".into(),
            0,
            280,
            vec!["apple".into(), "pear".into()],
            Some(279)
        )]
    );
}

#[test]
fn sessions_merge_when_records_come_within_the_gap() {
    let mut h = harness::<Count<String>>("session:100", 0);
    h.process("k", "x", Some(0)).unwrap(); // [0,100)
    h.process("k", "x", Some(300)).unwrap(); // [300,400)
    h.process("j", "x", Some(50)).unwrap(); // another key: [50,150)
    h.process("k", "x", Some(100)).unwrap(); // touches [0,100): [0,200)
    let timers: Vec<i64> = h.pending_timers().iter().map(|t| t.1).collect();
    // Growing [0,100) into [0,200) left its timer at 99 (no timer call): it
    // moves to 199 when it fires. j's and k's later one stay.
    assert_eq!(timers, vec![99, 149, 399]);
    h.process("k", "x", Some(200)).unwrap(); // bridges [0,200) and [300,400): [0,400)
    // The bridged session's timer (399) is deleted; 99 serves [0,400).
    let timers: Vec<i64> = h.pending_timers().iter().map(|t| t.1).collect();
    assert_eq!(timers, vec![99, 149]);
    let out = results::<u64>(&h.advance_watermark(1000).unwrap());
    assert_eq!(
        out,
        vec![
            ("j".into(), 50, 150, 1, Some(149)),
            ("k".into(), 0, 400, 4, Some(399))
        ]
    );
}

#[test]
fn allowed_lateness_refires_then_cleans_up_then_reports_late() {
    let mut h = harness::<Count<String>>("tumbling:1000", 500);
    h.process("k", "x", Some(100)).unwrap();
    let out = results::<u64>(&h.advance_watermark(999).unwrap());
    assert_eq!(out, vec![("k".into(), 0, 1000, 1, Some(999))]);
    // Within lateness: the window is updated and re-fired at once.
    let out = results::<u64>(&h.process("k", "x", Some(400)).unwrap());
    assert_eq!(out, vec![("k".into(), 0, 1000, 2, Some(999))]);
    // A new window already past its end but within lateness fires at once too.
    h.advance_watermark(1999).unwrap();
    let out = results::<u64>(&h.process("k", "x", Some(1500)).unwrap());
    assert_eq!(out, vec![("k".into(), 1000, 2000, 1, Some(1999))]);
    // The clean-up timer of [0,1000) at 1499 has fired: state is gone, so a
    // record for it is late and not counted anywhere.
    let out = h.process("k", "x", Some(10)).unwrap();
    assert_eq!(out[0].text(), ("k".into(), "late:10".into()));
    assert_eq!(out.len(), 1);
    // Nothing left but [1000,2000)'s clean-up at 2499; it emits nothing.
    assert_eq!(h.pending_timers().len(), 1);
    assert!(h.advance_watermark(3000).unwrap().is_empty());
    assert!(h.pending_timers().is_empty());
}

#[test]
fn without_lateness_a_record_behind_a_fired_window_is_late() {
    let mut h = harness::<Count<String>>("sliding:1000:500", 0);
    h.advance_watermark(1200).unwrap();
    // 900 is in [0,1000) (fired at 999) and [500,1500) (still open).
    assert!(h.process("k", "x", Some(900)).unwrap().is_empty());
    let out = h.process("k", "x", Some(400)).unwrap(); // [-500,500), [0,1000): both gone
    assert_eq!(out[0].text().1, "late:400");
    let out = results::<u64>(&h.advance_watermark(1499).unwrap());
    assert_eq!(out, vec![("k".into(), 500, 1500, 1, Some(1499))]);
}

#[test]
fn a_late_record_that_merges_into_a_live_session_extends_it() {
    let mut h = harness::<Count<String>>("session:100", 1000);
    h.process("k", "x", Some(0)).unwrap();
    let out = results::<u64>(&h.advance_watermark(150).unwrap());
    assert_eq!(out, vec![("k".into(), 0, 100, 1, Some(99))]);
    // Behind the watermark, touching the fired session: merged and re-fired.
    let out = results::<u64>(&h.process("k", "x", Some(30)).unwrap());
    assert_eq!(out, vec![("k".into(), 0, 130, 2, Some(129))]);
    // One timer: the clean-up of the fired session, still at 1099; when it
    // fires it moves to the merged session's clean-up, 1129.
    let timers: Vec<i64> = h.pending_timers().iter().map(|t| t.1).collect();
    assert_eq!(timers, vec![1099]);
    assert!(h.advance_watermark(1110).unwrap().is_empty());
    let timers: Vec<i64> = h.pending_timers().iter().map(|t| t.1).collect();
    assert_eq!(timers, vec![1129]);
    h.advance_watermark(1200).unwrap();
    // [0,130) was cleaned up at 1129.
    assert_eq!(
        h.process("k", "x", Some(50)).unwrap()[0].text().1,
        "late:50"
    );
    assert!(h.pending_timers().is_empty());
}

/// A small deterministic generator (xorshift), so the test needs no crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Records with bounded disorder and a watermark trailing the largest
/// timestamp by `delay`, so nothing is late; windows computed by brute
/// force over the whole input must equal what the library emitted, each
/// window once.
fn compare_with_brute_force(assigner: &str, delay: i64) {
    compare_late_with_brute_force(assigner, delay, delay, 0);
}

/// Feeds the windows as [`compare_late_with_brute_force`] does, but in
/// batches, with enough keys to evict each other from the state cache,
/// and a snapshot and restore (a new instance over the same state) every
/// few batches: what the write-back cache held must have reached the
/// state by then, whether the host asks for it (`prepare_snapshot`) or
/// not (then it is written back after every call).
fn compare_batched_with_restarts(assigner: &str, delay: i64, keys: u64) {
    for prepare_snapshot in [true, false] {
        Check {
            assigner,
            delay,
            lag: delay,
            lateness: 0,
            keys,
            batched: true,
            prepare_snapshot,
        }
        .run();
    }
}

/// As [`compare_with_brute_force`], with the watermark trailing by only
/// `lag` and an allowed lateness that covers the rest of the disorder:
/// windows fire early and again for each late record, and the last result
/// of each window must equal the brute-force one.
fn compare_late_with_brute_force(assigner: &str, delay: i64, lag: i64, lateness: i64) {
    Check {
        assigner,
        delay,
        lag,
        lateness,
        keys: 5,
        batched: false,
        prepare_snapshot: true,
    }
    .run();
}

struct Check<'a> {
    assigner: &'a str,
    delay: i64,
    lag: i64,
    lateness: i64,
    keys: u64,
    /// In batches of 1-64 records, restarting every 7th batch.
    batched: bool,
    /// Whether the harness acts as a host that calls `prepare-snapshot`.
    prepare_snapshot: bool,
}

impl Check<'_> {
    fn run(&self) {
        let Check {
            assigner,
            delay,
            lag,
            lateness,
            keys,
            batched,
            prepare_snapshot,
        } = *self;
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let mut h = harness_for_host::<Sum<u64>>(assigner, lateness, prepare_snapshot);
        let mut input: Vec<(String, i64, u64)> = Vec::new();
        let mut emitted = Vec::new();
        let mut max_ts = 0i64;
        let mut batch = Vec::new();
        let mut batch_size = 1;
        let mut batches = 0;
        let records = if keys > 5 { 8000 } else { 2000i64 };
        for i in 0..records {
            let ts = (i * 7 - rng.next(delay as u64) as i64).max(0);
            let key = format!("k{}", rng.next(keys));
            let value = rng.next(100);
            input.push((key.clone(), ts, value));
            max_ts = max_ts.max(ts);
            batch.push((key, value, Some(ts)));
            if batch.len() >= batch_size {
                emitted.extend(h.process_records(&batch).unwrap());
                batch.clear();
                batches += 1;
                if batched {
                    batch_size = 1 + rng.next(64) as usize;
                    if batches % 7 == 0 {
                        h.restart().unwrap();
                    }
                }
            }
            if i % 50 == 0 && batch.is_empty() {
                emitted.extend(h.advance_watermark(max_ts - lag).unwrap());
            }
        }
        emitted.extend(h.process_records(&batch).unwrap());
        emitted.extend(h.advance_watermark(i64::MAX).unwrap());
        self.check(emitted, &input);
        assert!(h.pending_timers().is_empty());
    }

    fn check(&self, emitted: Vec<Emitted>, input: &[(String, i64, u64)]) {
        let (assigner, lateness) = (self.assigner, self.lateness);
        let mut got = results::<u64>(&emitted);
        if lateness > 0 {
            // The last result of each window (results are emitted in order).
            let mut last = BTreeMap::new();
            for (k, start, end, v, ts) in got {
                last.insert((k, start, end), (v, ts));
            }
            // A session fired early and then grown by a late record was a
            // window of its own then; the answer has only the grown one.
            let windows: Vec<(String, i64, i64)> = last.keys().cloned().collect();
            got = last
                .into_iter()
                .filter(|((k, start, end), _)| {
                    !windows.iter().any(|(k2, s2, e2)| {
                        k2 == k && s2 <= start && end <= e2 && (s2, e2) != (start, end)
                    })
                })
                .map(|((k, start, end), (v, ts))| (k, start, end, v, ts))
                .collect();
        }
        got.sort();

        let mut want: BTreeMap<(String, i64, i64), u64> = BTreeMap::new();
        let spec = parse_assigner(assigner).unwrap();
        match spec {
            WindowAssigner::Session { gap } => {
                let mut by_key: BTreeMap<&str, Vec<(i64, u64)>> = BTreeMap::new();
                for (k, ts, v) in input {
                    by_key.entry(k).or_default().push((*ts, *v));
                }
                for (k, mut recs) in by_key {
                    recs.sort();
                    let (mut start, mut last, mut sum) = (recs[0].0, recs[0].0, 0);
                    for (ts, v) in recs {
                        if ts > last + gap {
                            want.insert((k.to_string(), start, last + gap), sum);
                            (start, sum) = (ts, 0);
                        }
                        last = ts;
                        sum += v;
                    }
                    want.insert((k.to_string(), start, last + gap), sum);
                }
            }
            WindowAssigner::Tumbling { size } | WindowAssigner::Sliding { size, .. } => {
                let slide = match spec {
                    WindowAssigner::Sliding { slide, .. } => slide,
                    _ => size,
                };
                for (k, ts, v) in input {
                    let mut start = ts - ts % slide;
                    while start > ts - size {
                        *want.entry((k.clone(), start, start + size)).or_default() += v;
                        start -= slide;
                    }
                }
            }
        }
        let want: Vec<(String, i64, i64, u64, Option<i64>)> = want
            .into_iter()
            .map(|((k, s, e), v)| (k, s, e, v, Some(e - 1)))
            .collect();
        assert_eq!(got, want, "{assigner}");
    }
}

#[test]
fn tumbling_windows_match_brute_force() {
    compare_with_brute_force("tumbling:500", 300);
}

#[test]
fn sliding_windows_match_brute_force() {
    compare_with_brute_force("sliding:600:200", 300);
    compare_with_brute_force("sliding:500:300", 100);
}

#[test]
fn session_windows_match_brute_force() {
    compare_with_brute_force("session:40", 300);
}

#[test]
fn batches_with_evictions_and_restarts_match_brute_force() {
    compare_batched_with_restarts("tumbling:500", 300, 5);
    compare_batched_with_restarts("tumbling:500", 300, 6000);
    compare_batched_with_restarts("sliding:600:200", 300, 6000);
    compare_batched_with_restarts("session:40", 300, 6000);
    compare_batched_with_restarts("session:40", 300, 5);
}

#[test]
fn late_updates_within_the_allowed_lateness_match_brute_force() {
    compare_late_with_brute_force("tumbling:500", 300, 50, 300);
    compare_late_with_brute_force("sliding:600:200", 300, 50, 300);
    compare_late_with_brute_force("sliding:500:300", 100, 10, 100);
    compare_late_with_brute_force("session:40", 300, 50, 300);
}
