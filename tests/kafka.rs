//! The Kafka source and sink against a real broker (noida-db, one per test,
//! see `kafka/broker.rs`): a word count from topic to topic, the kill loop
//! with the exactly-once sink, a broker restart mid-job, start modes and
//! partition discovery, and job-file errors.

#[path = "kafka/broker.rs"]
mod broker;
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::Broker;
use common::collect::seq_counts;
use common::{guest, has_complete_checkpoint, run_with_deadline, stderr, wait_while_running, weir};

const LIMIT: Duration = Duration::from_secs(300);

fn write_job(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_ok(mut cmd: Command) -> String {
    cmd.arg("--jobs-dir")
        .arg(std::env::temp_dir().join("weir-test-jobs-unused"));
    let out = run_with_deadline(cmd, LIMIT);
    assert!(out.status.success(), "weir failed:\n{}", stderr(&out));
    stderr(&out)
}

fn run_job(file: &Path) -> String {
    let mut cmd = weir();
    cmd.arg("run").arg(file);
    run_ok(cmd)
}

/// A small deterministic pseudo-random sequence (xorshift), seeded per test.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "apple", "brook", "cedar", "delta", "ember", "fjord", "grove", "heron", "inlet", "juniper",
];

#[test]
fn word_count_from_topic_to_topic() {
    let broker = Broker::start();
    broker.create_topic("lines", 3);
    broker.create_topic("counts", 2);
    // Lines of random words; each partition's event times increase, so with
    // per-partition watermarks no line is late.
    let mut random = Random::new(1);
    let mut records = Vec::new();
    let mut expected: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for i in 0..3000i64 {
        let ts = 1_000 + i * 37;
        let words: Vec<&str> = (0..1 + random.below(5))
            .map(|_| WORDS[random.below(WORDS.len() as u64) as usize])
            .collect();
        for w in &words {
            *expected
                .entry((w.to_string(), ts - ts % 10_000))
                .or_default() += 1;
        }
        let line = serde_json::json!({"ts": ts, "text": words.join(" ")}).to_string();
        records.push(((i % 3) as i32, None, line, None));
    }
    broker.produce("lines", &records);
    let dir = tempfile::tempdir().unwrap();
    let file = write_job(
        dir.path(),
        &format!(
            r#"
[job]
name = "kafka-wordcount"
parallelism = 2

[[source]]
name = "lines"
kind = "kafka"
bootstrap_servers = "{servers}"
topics = ["lines"]
stop = "latest"
format = "jsonl"
timestamp_field = "ts"
watermark_delay_ms = 100
properties = {{ "receive.message.max.bytes" = "1000000000", "fetch.max.bytes" = "999999000" }}

[[operator]]
name = "tokenize"
wasm = "{tokenizer}"
input = "lines"

[[operator]]
name = "count"
wasm = "{count}"
input = "tokenize"
edge = "hash"
late_records = "side-output"
config = {{ window_ms = 10000 }}

[[sink]]
name = "counts"
kind = "kafka"
bootstrap_servers = "{servers}"
topic = "counts"
input = "count"

[[sink]]
name = "late"
kind = "file"
path = "late.txt"
input = "count.late"
"#,
            servers = broker.servers(),
            tokenizer = guest("tokenizer").display(),
            count = guest("window_count").display(),
        ),
    );
    run_job(&file);
    let mut got: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for (_, key, value) in broker.read_committed("counts") {
        let v: serde_json::Value = serde_json::from_str(&value).unwrap();
        let word = v["word"].as_str().unwrap().to_string();
        let start = v["window_start"].as_i64().unwrap();
        assert!(
            got.insert((word.clone(), start), v["count"].as_u64().unwrap())
                .is_none(),
            "window {word} {start} twice"
        );
        // The record key is the operator's key: the word.
        assert!(
            String::from_utf8_lossy(&key).contains(&word),
            "key {key:?} for {word}"
        );
    }
    assert_eq!(got, expected);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("late.txt")).unwrap_or_default(),
        ""
    );
}

/// The kill loop's job: a Kafka topic of generator-like records, a keyed
/// operator collecting sequence numbers per key and window, and an
/// exactly-once Kafka sink.
fn collect_job(dir: &Path, servers: &str, rate: u64, restarts: u32) -> PathBuf {
    write_job(
        dir,
        &format!(
            r#"
[job]
name = "kafka-collect"
parallelism = 2
state_backend = "rocksdb"

[checkpoint]
interval_ms = 200
dir = "chk"
retain = 2

[restart]
strategy = "fixed-delay"
attempts = {restarts}
delay_ms = 500

[[source]]
name = "in"
kind = "kafka"
bootstrap_servers = "{servers}"
topics = ["in"]
stop = "latest"
format = "jsonl"
key_field = "key"
timestamp_field = "ts"
watermark_delay_ms = 300
records_per_second = {rate}
properties = {{ "receive.message.max.bytes" = "1000000000", "fetch.max.bytes" = "999999000" }}

[[operator]]
name = "collect"
wasm = "{wasm}"
input = "in"
edge = "hash"
config = {{ window_ms = 1000 }}

[[sink]]
name = "out"
kind = "kafka"
bootstrap_servers = "{servers}"
topic = "out"
delivery = "exactly-once"
transactional_id_prefix = "weir-test-out"
input = "collect"
"#,
            wasm = guest("window_collect").display(),
        ),
    )
}

/// `records` generator-like records over 4 partitions, each in event-time order.
fn produce_seqs(broker: &Broker, records: u64) {
    let batch: Vec<_> = (0..records)
        .map(|seq| {
            let value = serde_json::json!({
                "seq": seq, "key": format!("key-{}", seq % 20), "ts": seq as i64 * 10
            })
            .to_string();
            ((seq % 4) as i32, None, value, None)
        })
        .collect();
    broker.produce("in", &batch);
}

fn assert_exactly_once(broker: &Broker, records: u64) {
    let values = broker.values("out");
    assert!(!values.is_empty(), "no output");
    let odd = values.iter().find(|v| {
        v.rsplit(": ")
            .next()
            .is_none_or(|seqs| seqs.split(',').any(|n| n.parse::<u64>().is_err()))
    });
    assert!(
        odd.is_none(),
        "an output record is not `<key> <end>: <seqs>`: {odd:?}"
    );
    let counts = seq_counts(&values.join("\n"), records);
    let lost = counts.iter().filter(|&&c| c == 0).count();
    let duplicated = counts.iter().filter(|&&c| c > 1).count();
    assert_eq!((lost, duplicated), (0, 0), "records lost, duplicated");
}

fn spawn(mut cmd: Command) -> Child {
    cmd.arg("--jobs-dir")
        .arg(std::env::temp_dir().join("weir-test-jobs-unused"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts")
}

#[test]
fn kill_loop_with_the_exactly_once_sink_loses_and_duplicates_nothing() {
    let broker = Broker::start();
    broker.create_topic("in", 4);
    broker.create_topic("out", 2);
    let records = 30_000;
    produce_seqs(&broker, records);
    let dir = tempfile::tempdir().unwrap();
    let file = collect_job(dir.path(), &broker.servers(), 2500, 0);
    let resume = || {
        let mut cmd = weir();
        cmd.arg("run")
            .arg(&file)
            .arg("--resume")
            .arg(dir.path().join("chk"));
        cmd
    };
    let mut random = Random::new(7);
    let mut child = spawn({
        let mut cmd = weir();
        cmd.arg("run").arg(&file);
        cmd
    });
    let mut kills = 0;
    let started = Instant::now();
    wait_while_running(&mut child, || {
        has_complete_checkpoint(&dir.path().join("chk"))
    });
    while kills < 8 {
        std::thread::sleep(Duration::from_millis(700 + random.below(800)));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        child = spawn(resume());
        assert!(started.elapsed() < LIMIT, "the kill loop makes no progress");
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the last run failed");
    assert!(kills >= 5, "only {kills} kills before the job finished");
    assert_exactly_once(&broker, records);
}

#[test]
fn a_broker_restart_mid_job_still_gives_exact_output() {
    let mut broker = Broker::start();
    broker.create_topic("in", 4);
    broker.create_topic("out", 2);
    let records = 12_000;
    produce_seqs(&broker, records);
    let dir = tempfile::tempdir().unwrap();
    let file = collect_job(dir.path(), &broker.servers(), 1500, 20);
    let mut child = spawn({
        let mut cmd = weir();
        cmd.arg("run").arg(&file);
        cmd
    });
    std::thread::sleep(Duration::from_millis(2000));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the job ended before the broker restart; make it longer"
    );
    broker.restart(Duration::from_millis(1500));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the job did not finish after the broker restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the job failed after the broker restart");
    assert_exactly_once(&broker, records);
}

fn start_mode_job(dir: &Path, servers: &str, start: &str, topic: &str) -> PathBuf {
    write_job(
        dir,
        &format!(
            r#"
[job]
name = "kafka-start"

[[source]]
name = "in"
kind = "kafka"
bootstrap_servers = "{servers}"
topics = ["{topic}"]
group_id = "starters"
stop = "latest"
{start}
properties = {{ "receive.message.max.bytes" = "1000000000", "fetch.max.bytes" = "999999000" }}

[[sink]]
name = "out"
kind = "file"
path = "out.txt"
input = "in"
"#
        ),
    )
}

#[test]
fn start_modes_pick_the_first_record() {
    let broker = Broker::start();
    broker.create_topic("events", 1);
    let base = 1_700_000_000_000i64;
    let records: Vec<_> = (0..10i64)
        .map(|i| (0, None, format!("r{i}"), Some(base + i * 1000)))
        .collect();
    broker.produce("events", &records);
    broker.commit_offset("starters", "events", 0, 3);
    let lines = |n: std::ops::Range<i64>| n.map(|i| format!("r{i}")).collect::<Vec<_>>();
    for (start, expected) in [
        ("start = \"earliest\"", lines(0..10)),
        ("start = \"latest\"", lines(0..0)),
        ("start = \"committed\"", lines(3..10)),
        (
            &*format!(
                "start = \"timestamp\"\nstart_timestamp_ms = {}",
                base + 6500
            ),
            lines(7..10),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        run_job(&start_mode_job(
            dir.path(),
            &broker.servers(),
            start,
            "events",
        ));
        let got = common::sorted_lines(&dir.path().join("out.txt"));
        assert_eq!(got, expected, "{start}");
    }
}

#[test]
fn partitions_added_while_running_are_read_and_offsets_are_committed() {
    let broker = Broker::start();
    broker.create_topic("grow", 1);
    broker.create_topic("grown", 1);
    broker.produce(
        "grow",
        &(0..5)
            .map(|i| (0, None, format!("a{i}"), None))
            .collect::<Vec<_>>(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write_job(
        dir.path(),
        &format!(
            r#"
[job]
name = "kafka-grow"
parallelism = 2

[checkpoint]
interval_ms = 200
dir = "chk"

[[source]]
name = "in"
kind = "kafka"
bootstrap_servers = "{servers}"
topics = ["grow"]
group_id = "growers"
partition_discovery_ms = 200
properties = {{ "receive.message.max.bytes" = "1000000000", "fetch.max.bytes" = "999999000" }}

[[sink]]
name = "out"
kind = "kafka"
bootstrap_servers = "{servers}"
topic = "grown"
input = "in"
"#,
            servers = broker.servers()
        ),
    );
    let mut child = spawn({
        let mut cmd = weir();
        cmd.arg("run").arg(&file);
        cmd
    });
    // Unbounded: the job runs until killed; wait for the output (a hang
    // guard, not a timing assertion).
    let wait_for = |n: usize| {
        let started = Instant::now();
        loop {
            let values = broker.values("grown");
            if values.len() >= n {
                return values;
            }
            assert!(
                started.elapsed() < LIMIT,
                "only {} of {n} records arrived",
                values.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(wait_for(5), ["a0", "a1", "a2", "a3", "a4"]);
    broker.add_partitions("grow", 3);
    broker.produce(
        "grow",
        &(0..6)
            .map(|i| (1 + i % 2, None, format!("b{i}"), None))
            .collect::<Vec<_>>(),
    );
    let all = wait_for(11);
    // Offsets reach the group once a checkpoint after them completes.
    let started = Instant::now();
    while broker.committed("growers", "grow", 3) != [Some(5), Some(3), Some(3)] {
        assert!(
            started.elapsed() < LIMIT,
            "committed offsets: {:?}",
            broker.committed("growers", "grow", 3)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut expected: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    expected.extend((0..6).map(|i| format!("b{i}")));
    expected.sort();
    assert_eq!(all, expected);
}

#[test]
fn bad_kafka_values_in_a_job_file_name_their_line() {
    let base = r#"[job]
name = "bad"

[[source]]
name = "in"
kind = "kafka"
bootstrap_servers = "127.0.0.1:9"
topics = ["t"]
"#;
    let sink = r#"
[[sink]]
name = "out"
kind = "stdout"
input = "in"
"#;
    for (extra, line, words) in [
        ("start = \"yesterday\"\n", 9, "start = \"yesterday\""),
        ("start = \"timestamp\"\n", 9, "start_timestamp_ms"),
        ("isolation = \"dirty\"\n", 9, "isolation"),
        (
            "topic_pattern = \"t.*\"\n",
            9,
            "either `topics` or `topic_pattern`",
        ),
        ("format = \"csv\"\n", 4, "csv"),
        ("properties = { \"group.id\" = \"x\" }\n", 9, "group.id"),
        ("stop = \"soon\"\n", 9, "stop"),
        ("partition_discovery_ms = -1\n", 9, "-1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = write_job(dir.path(), &format!("{base}{extra}{sink}"));
        let out = run_with_deadline(
            {
                let mut cmd = weir();
                cmd.arg("validate").arg(&file);
                cmd
            },
            LIMIT,
        );
        let err = stderr(&out);
        assert!(!out.status.success(), "{extra} was accepted");
        assert!(err.contains(&format!("job.toml:{line}:")), "{extra}: {err}");
        assert!(err.contains(words), "{extra}: {err}");
    }
    // A sink's bad values too.
    // Lines 10 to 15 of these files: the sink table, its topic on 15.
    for (sink, line, words) in [
        (
            "[[sink]]\nname = \"out\"\nkind = \"kafka\"\ninput = \"in\"\nbootstrap_servers = \"x:1\"\ntopic = \"a/b\"\n",
            15,
            "topic name",
        ),
        (
            "[[sink]]\nname = \"out\"\nkind = \"kafka\"\ninput = \"in\"\nbootstrap_servers = \"x:1\"\ntopic = \"o\"\ndelivery = \"twice\"\n",
            16,
            "delivery",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = write_job(dir.path(), &format!("{base}\n{sink}"));
        let out = run_with_deadline(
            {
                let mut cmd = weir();
                cmd.arg("validate").arg(&file);
                cmd
            },
            LIMIT,
        );
        let err = stderr(&out);
        assert!(
            !out.status.success() && err.contains(words),
            "{sink}: {err}"
        );
        assert!(err.contains(&format!("job.toml:{line}:")), "{sink}: {err}");
    }
}

#[test]
fn bad_records_are_skipped_or_dead_lettered() {
    let broker = Broker::start();
    broker.create_topic("mixed", 2);
    let records: Vec<_> = (0..40)
        .map(|i| {
            let value = if i % 5 == 0 {
                format!("not json {i}")
            } else {
                format!(r#"{{"n":{i}}}"#)
            };
            ((i % 2) as i32, None, value, None)
        })
        .collect();
    broker.produce("mixed", &records);
    let good: Vec<String> = {
        let mut v: Vec<String> = (0..40)
            .filter(|i| i % 5 != 0)
            .map(|i| format!(r#"{{"n":{i}}}"#))
            .collect();
        v.sort();
        v
    };
    for mode in ["skip", "dead-letter", "fail"] {
        let dead = if mode == "dead-letter" {
            "[[sink]]\nname = \"dead\"\nkind = \"file\"\npath = \"dead.txt\"\ninput = \"in.dead-letter\"\n"
        } else {
            ""
        };
        let dir = tempfile::tempdir().unwrap();
        let file = write_job(
            dir.path(),
            &format!(
                r#"
[job]
name = "kafka-bad"

[[source]]
name = "in"
kind = "kafka"
bootstrap_servers = "{servers}"
topics = ["mixed"]
stop = "latest"
format = "jsonl"
on_parse_error = "{mode}"
properties = {{ "receive.message.max.bytes" = "1000000000", "fetch.max.bytes" = "999999000" }}

[[sink]]
name = "out"
kind = "file"
path = "out.txt"
input = "in"

{dead}"#,
                servers = broker.servers()
            ),
        );
        let mut cmd = weir();
        cmd.arg("run")
            .arg(&file)
            .arg("--jobs-dir")
            .arg(std::env::temp_dir().join("weir-test-jobs-unused"));
        let out = run_with_deadline(cmd, LIMIT);
        if mode == "fail" {
            assert!(!out.status.success(), "a bad record did not fail the job");
            let err = stderr(&out);
            assert!(
                err.contains("source `in`")
                    && err.contains("mixed/")
                    && err.contains(" offset ")
                    && err.contains("invalid JSON"),
                "{err}"
            );
            continue;
        }
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert_eq!(
            common::sorted_lines(&dir.path().join("out.txt")),
            good,
            "{mode}"
        );
        if mode == "dead-letter" {
            let letters = common::sorted_lines(&dir.path().join("dead.txt"));
            assert_eq!(letters.len(), 8, "{letters:?}");
            for letter in &letters {
                let v: serde_json::Value = serde_json::from_str(letter).unwrap();
                assert!(
                    v["raw"].as_str().unwrap().starts_with("not json"),
                    "{letter}"
                );
                assert!(v["at"].as_str().unwrap().starts_with("mixed/"), "{letter}");
            }
        }
    }
}
