//! `on_parse_error` on the file source, end to end with the real binary:
//! `fail` (the default) stops the job at the first bad line, `skip` drops
//! and counts bad lines, `dead-letter` sends them (raw, with the reason) to
//! `<source>.dead-letter`, which a sink takes like any stream; dead letters
//! are exactly-once across a SIGKILL and a resume like the main output.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{has_complete_checkpoint, run_with_deadline, stderr, wait_while_running, weir};

const LIMIT: Duration = Duration::from_secs(120);

/// A JSON-lines input of `lines` lines where every 7th line is bad in one
/// of four ways; returns the text, the good lines and the bad lines by line
/// number with the start of the reason each must give.
fn input(lines: u64) -> (String, Vec<String>, BTreeMap<u64, (String, &'static str)>) {
    let mut text = String::new();
    let mut good = Vec::new();
    let mut bad = BTreeMap::new();
    for n in 1..=lines {
        let (line, reason) = match (n % 7 == 0, n / 7 % 4) {
            (false, _) => (format!("{{\"ts\":{n},\"id\":\"r{n}\"}}"), None),
            (true, 0) => (format!("{{\"ts\":{n},\"id\":"), Some("invalid JSON")),
            (true, 1) => (format!("[{n}]"), Some("expected a JSON object")),
            (true, 2) => (
                format!("{{\"id\":\"r{n}\"}}"),
                Some("timestamp field `ts` is missing"),
            ),
            (true, _) => (
                format!("{{\"ts\":\"soon\",\"id\":\"r{n}\"}}"),
                Some("timestamp field `ts` = \"soon\" is not integer milliseconds"),
            ),
        };
        text.push_str(&line);
        text.push('\n');
        match reason {
            None => good.push(line),
            Some(reason) => {
                bad.insert(n, (line, reason));
            }
        }
    }
    (text, good, bad)
}

fn job(policy: Option<&str>, parallelism: u32, rate: Option<u64>, dead_sink: bool) -> String {
    let policy = policy
        .map(|p| format!("on_parse_error = \"{p}\""))
        .unwrap_or_default();
    let rate = rate
        .map(|r| format!("records_per_second = {r}"))
        .unwrap_or_default();
    let mut text = format!(
        r#"
[job]
name = "bad-lines"

[checkpoint]
interval_ms = 100
dir = "chk"

[[source]]
name = "events"
kind = "file"
path = "in.jsonl"
format = "jsonl"
timestamp_field = "ts"
parallelism = {parallelism}
{policy}
{rate}

[[sink]]
name = "out"
kind = "file"
exactly_once = true
path = "out"
input = "events"
"#
    );
    if dead_sink {
        text.push_str(
            r#"
[[sink]]
name = "bad"
kind = "file"
exactly_once = true
path = "bad"
input = "events.dead-letter"
"#,
        );
    }
    text
}

fn setup(text: &str, job_text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), text).unwrap();
    let file = dir.path().join("job.toml");
    std::fs::write(&file, job_text).unwrap();
    (dir, file)
}

fn run(file: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = weir();
    cmd.arg("run").arg(file).args(extra);
    cmd.arg("--jobs-dir")
        .arg(std::env::temp_dir().join("weir-test-jobs-unused"));
    run_with_deadline(cmd, LIMIT)
}

/// The committed lines of the exactly-once sink writing to `dir/name`, sorted.
fn committed(dir: &Path, name: &str) -> Vec<String> {
    let out = dir.join(name);
    let mut parts: Vec<_> = std::fs::read_dir(&out)
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    parts.sort();
    let mut lines: Vec<String> = parts
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Checks each dead letter against the bad line it stands for: every bad
/// line exactly once, with its number, raw text and reason.
fn assert_dead_letters(letters: &[String], bad: &BTreeMap<u64, (String, &'static str)>) {
    let mut seen = BTreeMap::new();
    for letter in letters {
        let v: serde_json::Value = serde_json::from_str(letter)
            .unwrap_or_else(|e| panic!("dead letter {letter:?} is not JSON: {e}"));
        assert_eq!(v["source"], "events", "{letter}");
        let at = v["at"].as_str().unwrap();
        let n: u64 = at.strip_prefix("line ").unwrap().parse().unwrap();
        let (raw, reason) = bad
            .get(&n)
            .unwrap_or_else(|| panic!("line {n} was good but dead-lettered: {letter}"));
        assert_eq!(v["raw"].as_str(), Some(raw.as_str()), "{letter}");
        assert!(
            v["reason"].as_str().unwrap().starts_with(reason),
            "line {n}: reason {} should start with {reason:?}",
            v["reason"]
        );
        *seen.entry(n).or_insert(0) += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        duplicated.is_empty(),
        "dead letters duplicated: {duplicated:?}"
    );
    let lost: Vec<_> = bad.keys().filter(|n| !seen.contains_key(n)).collect();
    assert!(lost.is_empty(), "bad lines without a dead letter: {lost:?}");
}

#[test]
fn fail_is_the_default_and_names_the_file_and_line() {
    let (text, _, bad) = input(30);
    let (dir, file) = setup(&text, &job(None, 1, None, false));
    let out = run(&file, &[]);
    assert!(!out.status.success(), "a bad line must fail the job");
    let log = stderr(&out);
    let (first, (_, reason)) = bad.iter().next().unwrap();
    assert!(
        log.contains("source `events`") && log.contains(&format!("in.jsonl:{first}: {reason}")),
        "{log}"
    );
    drop(dir);
}

#[test]
fn skip_drops_and_counts_every_bad_line() {
    let (text, good, bad) = input(2000);
    let (dir, file) = setup(&text, &job(Some("skip"), 2, None, false));
    let out = run(&file, &[]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(committed(dir.path(), "out"), sorted(good.clone()));
    let summary = log
        .lines()
        .find(|l| l.trim_start().starts_with("source") && l.contains("events"))
        .unwrap_or_else(|| panic!("no summary line for the source in\n{log}"));
    assert!(
        summary.contains(&format!("out {:>9}", good.len()))
            && summary.contains(&format!("skipped {} (parse errors)", bad.len())),
        "{summary}"
    );
    assert!(!summary.contains("dead-lettered"), "{summary}");
}

#[test]
fn dead_letters_reach_a_sink_with_line_raw_text_and_reason() {
    let (text, good, bad) = input(2000);
    let (dir, file) = setup(&text, &job(Some("dead-letter"), 2, None, true));
    let out = run(&file, &[]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(committed(dir.path(), "out"), sorted(good));
    let letters = committed(dir.path(), "bad");
    assert_eq!(letters.len(), bad.len());
    assert_dead_letters(&letters, &bad);
    assert!(
        log.contains(&format!(
            "dead-lettered {} (sent to .dead-letter)",
            bad.len()
        )),
        "{log}"
    );
}

#[test]
fn csv_rows_of_the_wrong_width_and_bad_bytes_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = b"ts,word\n".to_vec();
    let mut want_good = Vec::new();
    let mut want_bad = Vec::new();
    for n in 1..=300u32 {
        let line: Vec<u8> = match n % 10 {
            3 => format!("{n}").into_bytes(),
            6 => format!("{n},a,b").into_bytes(),
            9 => [format!("{n},").into_bytes(), vec![0xff, b'x']].concat(),
            _ => format!("{n},w{n}").into_bytes(),
        };
        if n % 10 == 3 || n % 10 == 6 || n % 10 == 9 {
            want_bad.push((n + 1, line.clone()));
        } else {
            want_good.push(format!("{{\"ts\":\"{n}\",\"word\":\"w{n}\"}}"));
        }
        csv.extend_from_slice(&line);
        csv.push(b'\n');
    }
    std::fs::write(dir.path().join("in.csv"), &csv).unwrap();
    let file = dir.path().join("job.toml");
    std::fs::write(
        &file,
        r#"
[job]
name = "bad-rows"

[[source]]
name = "rows"
kind = "file"
path = "in.csv"
format = "csv"
timestamp_field = "ts"
on_parse_error = "dead-letter"

[[sink]]
name = "out"
kind = "file"
path = "out.txt"
input = "rows"

[[sink]]
name = "bad"
kind = "file"
path = "bad.txt"
format = "jsonl"
input = "rows.dead-letter"
"#,
    )
    .unwrap();
    let out = run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let good = common::sorted_lines(&dir.path().join("out.txt"));
    assert_eq!(good, sorted(want_good));
    let bad = std::fs::read_to_string(dir.path().join("bad.txt")).unwrap();
    // One source split: dead letters arrive in file order.
    let letters: Vec<serde_json::Value> = bad
        .lines()
        .map(|l| {
            let record: serde_json::Value = serde_json::from_str(l).unwrap();
            // The jsonl sink embeds a JSON value as JSON.
            record["value"].clone()
        })
        .collect();
    assert_eq!(letters.len(), want_bad.len());
    for (letter, (line, raw)) in letters.iter().zip(&want_bad) {
        assert_eq!(letter["at"], format!("line {line}"), "{letter}");
        let reason = letter["reason"].as_str().unwrap();
        match std::str::from_utf8(raw) {
            Ok(text) => {
                assert_eq!(letter["raw"], text);
                assert!(reason.contains("fields, but the header has 2"), "{letter}");
            }
            Err(_) => {
                let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(letter["raw_hex"], hex);
                assert!(reason.starts_with("not UTF-8 text"), "{letter}");
            }
        }
    }
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts")
}

#[test]
fn dead_letters_are_exactly_once_across_kills_and_resumes() {
    let lines = 12_000;
    let (text, good, bad) = input(lines);
    // Throttled so the run is killed a few times before it is done.
    let (dir, file) = setup(&text, &job(Some("dead-letter"), 2, Some(1500), true));
    let mut cmd = weir();
    cmd.arg("run").arg(&file);
    let mut child = spawn(cmd);
    let mut kills = 0;
    let started = std::time::Instant::now();
    wait_while_running(&mut child, || {
        has_complete_checkpoint(&dir.path().join("chk"))
    });
    loop {
        std::thread::sleep(Duration::from_millis(900));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let mut cmd = weir();
        cmd.arg("run")
            .arg(&file)
            .arg("--resume")
            .arg(dir.path().join("chk"));
        child = spawn(cmd);
        assert!(
            started.elapsed() < LIMIT * 2,
            "the kill loop makes no progress"
        );
    }
    assert!(child.wait().unwrap().success(), "the last run failed");
    assert!(kills >= 2, "only {kills} kills before the job finished");
    assert_eq!(committed(dir.path(), "out"), sorted(good));
    let letters = committed(dir.path(), "bad");
    assert_dead_letters(&letters, &bad);
    assert_eq!(letters.len(), bad.len());
}
