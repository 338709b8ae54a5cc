//! Nexmark end to end: `weir nexmark` writes a small event file, each
//! query's job file from examples/nexmark runs on it with `weir run` (at
//! parallelism 1 and 2), and its output is compared with an answer
//! computed here from the parsed file, in plain Rust, without weir's code.
//! The nexmark source kind is checked against the file through q0.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use common::*;

/// The file's settings; a 40-second stretch of event time (several 10 s
/// windows) with up to 50 ms of disorder.
const EVENTS: u64 = 20_000;
const SEED: u64 = 5;
const EVENTS_PER_SECOND: u64 = 500;
const DISORDER_MS: i64 = 50;
const WINDOW_MS: i64 = 10_000;
const SLIDE_MS: i64 = 2_000;

struct Input {
    /// The generated file: under cargo's directory for test files, and
    /// written afresh by every run (a static is never dropped, so a
    /// temporary directory here would be left behind in /tmp).
    file: PathBuf,
    events: Vec<Value>,
}

/// Generates the event file once for all tests, with the real binary.
fn input() -> &'static Input {
    static INPUT: OnceLock<Input> = OnceLock::new();
    INPUT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nexmark-input");
        std::fs::create_dir_all(&dir).expect("create the input directory");
        let file = dir.join("events.jsonl");
        let mut cmd = weir();
        cmd.arg("nexmark")
            .args(["--events", &EVENTS.to_string()])
            .args(["--seed", &SEED.to_string()])
            .args(["--events-per-second", &EVENTS_PER_SECOND.to_string()])
            .args(["--disorder-ms", &DISORDER_MS.to_string()])
            .arg("--out")
            .arg(&file);
        let out = run_with_deadline(cmd, Duration::from_secs(60));
        assert!(out.status.success(), "weir nexmark: {}", stderr(&out));
        let text = std::fs::read_to_string(&file).expect("read the events");
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(events.len() as u64, EVENTS);
        Input { file, events }
    })
}

fn of_type(t: u64) -> impl Iterator<Item = &'static Value> {
    input()
        .events
        .iter()
        .filter(move |e| e["event_type"].as_u64() == Some(t))
}

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` in {v}"))
}

fn i(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("`{field}` in {v}"))
}

/// Runs examples/nexmark/<job>.toml on the generated file (or as changed
/// by `edit`) and returns its output lines, parsed.
fn run_query(job: &str, parallelism: u32, edit: impl Fn(String) -> String) -> Vec<Value> {
    let input = input();
    let text = std::fs::read_to_string(repo().join(format!("examples/nexmark/{job}.toml")))
        .expect("the example job file");
    let guests = format!("{}/", guest_dir().display());
    let text = edit(text.replace("../../target/wasm/wasm32-wasip2/release/", &guests));
    let run_dir = tempfile::tempdir().expect("temp dir");
    let job_path = run_dir.path().join(format!("{job}.toml"));
    std::fs::write(&job_path, &text).unwrap();
    std::fs::hard_link(&input.file, run_dir.path().join("events.jsonl"))
        .or_else(|_| std::fs::copy(&input.file, run_dir.path().join("events.jsonl")).map(drop))
        .unwrap();
    let mut cmd = weir();
    cmd.arg("run")
        .arg(&job_path)
        .args(["--parallelism", &parallelism.to_string()]);
    let out = run_with_deadline(cmd, Duration::from_secs(300));
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "{job} at parallelism {parallelism}: {err}"
    );
    // `--parallelism` reads a file source as that many byte ranges too.
    let source_section = text.split("[[source]]").nth(1).unwrap_or("");
    let source_section = source_section.split("[[").next().unwrap_or("");
    assert!(!source_section.is_empty(), "{job}: no [[source]] section");
    if source_section.contains("kind = \"file\"") {
        let summary = ["source", "events", &format!("p={parallelism}")];
        assert!(
            err.lines()
                .any(|l| l.split_whitespace().take(3).eq(summary.iter().copied())),
            "{job}: the file source runs at parallelism {parallelism}:\n{err}"
        );
    }
    let output: PathBuf = run_dir.path().join(format!("output/{job}.jsonl"));
    read_values(&output)
}

fn read_values(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Values as a sorted list of their canonical text (serde_json sorts keys).
fn canonical(values: impl IntoIterator<Item = Value>) -> Vec<String> {
    let mut v: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
    v.sort();
    v
}

/// Runs `job` at parallelism 1 and 2 and checks both outputs against
/// `expected` (sorted canonical lines), which must not be trivially empty.
fn check(job: &str, expected: Vec<Value>) {
    // Through text and back, as the job's output comes: serde_json's
    // float parsing may differ from the exact value by an ulp.
    let expected = canonical(
        expected
            .into_iter()
            .map(|v| serde_json::from_str(&v.to_string()).unwrap()),
    );
    assert!(
        expected.len() >= 3,
        "{job}: the input should give a few results, got {expected:?}"
    );
    for parallelism in [1, 2] {
        let got = canonical(run_query(job, parallelism, |t| t));
        assert_eq!(
            got.len(),
            expected.len(),
            "{job} at parallelism {parallelism}: result count"
        );
        assert!(
            got == expected,
            "{job} at parallelism {parallelism}: first difference {:?}",
            got.iter().zip(&expected).find(|(g, e)| g != e)
        );
    }
}

#[test]
fn q0_passes_every_event_through() {
    check("q0", input().events.clone());
}

#[test]
fn the_nexmark_source_gives_the_files_events() {
    let file_out = canonical(run_query("q0", 1, |t| t));
    let source = |t: String| {
        let t = t
            .replace("events = 1000000", &format!("events = {EVENTS}"))
            .replace("seed = 0", &format!("seed = {SEED}"));
        t.replace(
            "watermark_delay_ms = 1000",
            &format!(
                "events_per_second = {EVENTS_PER_SECOND}\ndisorder_ms = {DISORDER_MS}\nwatermark_delay_ms = 1000"
            ),
        )
    };
    for parallelism in [1, 2] {
        let got = canonical(run_query("q0-source", parallelism, source));
        assert!(
            got == file_out,
            "the nexmark source at parallelism {parallelism} differs from the file: {} against {} events",
            got.len(),
            file_out.len()
        );
    }
}

#[test]
fn q1_converts_bid_prices_to_euros() {
    let expected = of_type(2)
        .map(|b| {
            json!({
                "auction": u(b, "auction"),
                "bidder": u(b, "bidder"),
                "price": u(b, "price") as f64 * 0.908,
                "ts": i(b, "ts"),
            })
        })
        .collect();
    check("q1", expected);
}

#[test]
fn q2_selects_bids_on_every_123rd_auction() {
    let expected = of_type(2)
        .filter(|b| u(b, "auction") % 123 == 0)
        .map(|b| json!({"auction": u(b, "auction"), "price": u(b, "price")}))
        .collect();
    check("q2", expected);
}

#[test]
fn q3_joins_local_sellers_with_their_category_10_auctions() {
    let persons: HashMap<u64, &Value> = of_type(0)
        .filter(|p| ["OR", "ID", "CA"].contains(&p["state"].as_str().unwrap()))
        .map(|p| (u(p, "id"), p))
        .collect();
    let expected = of_type(1)
        .filter(|a| u(a, "category") == 10)
        .filter_map(|a| {
            let p = persons.get(&u(a, "seller"))?;
            Some(json!({
                "name": p["name"], "city": p["city"], "state": p["state"], "id": u(a, "id"),
            }))
        })
        .collect();
    check("q3", expected);
}

#[test]
fn q4_averages_winning_prices_per_category() {
    // Each auction's highest bid between its start and its expiry.
    let auctions: HashMap<u64, (i64, i64, u64)> = of_type(1)
        .map(|a| (u(a, "id"), (i(a, "ts"), i(a, "expires"), u(a, "category"))))
        .collect();
    let mut winning: HashMap<u64, u64> = HashMap::new();
    for b in of_type(2) {
        let id = u(b, "auction");
        if let Some(&(start, expires, _)) = auctions.get(&id)
            && (start..=expires).contains(&i(b, "ts"))
        {
            let w = winning.entry(id).or_default();
            *w = (*w).max(u(b, "price"));
        }
    }
    let mut per_category: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (id, price) in &winning {
        let e = per_category.entry(auctions[id].2).or_default();
        e.0 += 1;
        e.1 += price;
    }
    let expected: Vec<Value> = per_category
        .iter()
        .map(|(c, (n, sum))| json!({"category": c, "count": n, "avg": *sum as f64 / *n as f64}))
        .collect();
    // The job emits a running average per closed auction: its answer is
    // each category's last (largest count) record.
    for parallelism in [1, 2] {
        let mut last: BTreeMap<u64, Value> = BTreeMap::new();
        for v in run_query("q4", parallelism, |t| t) {
            let c = u(&v, "category");
            if last.get(&c).is_none_or(|l| u(l, "count") < u(&v, "count")) {
                last.insert(c, v);
            }
        }
        assert_eq!(
            canonical(last.into_values()),
            canonical(expected.clone()),
            "q4 at parallelism {parallelism}"
        );
    }
    assert!(expected.len() >= 3);
}

#[test]
fn q5_finds_the_hottest_auctions_per_sliding_window() {
    let mut counts: BTreeMap<i64, HashMap<u64, u64>> = BTreeMap::new();
    for b in of_type(2) {
        let t = i(b, "ts");
        let last_start = t - t.rem_euclid(SLIDE_MS);
        let mut start = last_start;
        while start > t - WINDOW_MS {
            *counts
                .entry(start + WINDOW_MS)
                .or_default()
                .entry(u(b, "auction"))
                .or_default() += 1;
            start -= SLIDE_MS;
        }
    }
    let mut expected = Vec::new();
    for (end, per_auction) in &counts {
        let max = per_auction.values().max().unwrap();
        for (auction, n) in per_auction {
            if n == max {
                expected.push(json!({"auction": auction, "num": n, "window_end": end}));
            }
        }
    }
    check("q5", expected);
}

#[test]
fn q7_finds_the_highest_bids_per_window() {
    let mut best: BTreeMap<i64, (u64, Vec<&Value>)> = BTreeMap::new();
    for b in of_type(2) {
        let t = i(b, "ts");
        let end = t - t.rem_euclid(WINDOW_MS) + WINDOW_MS;
        let price = u(b, "price");
        let e = best.entry(end).or_insert((price, Vec::new()));
        if price > e.0 {
            *e = (price, Vec::new());
        }
        if price == e.0 {
            e.1.push(b);
        }
    }
    let expected = best
        .iter()
        .flat_map(|(end, (price, bids))| {
            bids.iter().map(move |b| {
                json!({
                    "auction": u(b, "auction"), "price": price, "bidder": u(b, "bidder"),
                    "ts": i(b, "ts"), "window_end": end,
                })
            })
        })
        .collect();
    check("q7", expected);
}

#[test]
fn q8_finds_persons_who_sell_in_the_window_they_registered() {
    let window = |v: &Value| {
        let t = i(v, "ts");
        t - t.rem_euclid(WINDOW_MS)
    };
    let sellers: BTreeSet<(u64, i64)> = of_type(1).map(|a| (u(a, "seller"), window(a))).collect();
    let expected = of_type(0)
        .filter(|p| sellers.contains(&(u(p, "id"), window(p))))
        .map(|p| json!({"id": u(p, "id"), "name": p["name"], "window_start": window(p)}))
        .collect();
    check("q8", expected);
}

#[test]
fn q11_counts_bids_per_user_session() {
    let mut times: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for b in of_type(2) {
        times.entry(u(b, "bidder")).or_default().push(i(b, "ts"));
    }
    let mut expected = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort();
        let (mut start, mut end, mut n) = (ts[0], ts[0] + WINDOW_MS, 0u64);
        for t in ts {
            // A bid's own session [t, t + gap) merges when it touches.
            if t > end {
                expected
                    .push(json!({"bidder": bidder, "bid_count": n, "start": start, "end": end}));
                (start, n) = (t, 0);
            }
            end = end.max(t + WINDOW_MS);
            n += 1;
        }
        expected.push(json!({"bidder": bidder, "bid_count": n, "start": start, "end": end}));
    }
    check("q11", expected);
}
