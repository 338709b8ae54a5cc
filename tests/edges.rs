//! Edge types and chaining through the real binary: every record arrives
//! exactly once (or once per subtask, for broadcast), whatever the wiring.

mod common;

use std::time::Duration;

use common::*;

/// generator (p=2) -> upper (edge, p=3) -> again (forward, chained) -> stdout
fn run(edge: &str) -> Vec<String> {
    let map = guest("map_op");
    let (_dir, path) = job_file(&format!(
        r#"
[job]
name = "edges"
[[source]]
name = "numbers"
kind = "generator"
records = 1000
keys = 7
parallelism = 2
[[operator]]
name = "upper"
wasm = "{map}"
input = "numbers"
edge = "{edge}"
parallelism = 3
[[operator]]
name = "again"
wasm = "{map}"
input = "upper"
parallelism = 3
[[sink]]
name = "out"
kind = "stdout"
format = "key-value"
input = "again"
"#,
        map = map.display()
    ));
    let mut cmd = weir();
    cmd.arg("run").arg(&path);
    let out = run_with_deadline(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn expected(copies: usize) -> Vec<String> {
    let mut lines: Vec<String> = (0..1000u64)
        .flat_map(|seq| {
            let line = format!(
                "key-{}\t{{\"SEQ\":{seq},\"KEY\":\"KEY-{}\",\"TS\":{seq}}}",
                seq % 7,
                seq % 7
            );
            std::iter::repeat_n(line, copies)
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn rebalance_delivers_every_record_once() {
    assert_eq!(run("rebalance"), expected(1));
}

#[test]
fn hash_delivers_every_record_once() {
    assert_eq!(run("hash"), expected(1));
}

#[test]
fn broadcast_delivers_every_record_to_every_subtask() {
    assert_eq!(run("broadcast"), expected(3));
}
