//! Recovery after a worker dies (DESIGN.md §7: processing resumes within
//! 5 s). A real cluster (coordinator + 3 worker processes) runs a keyed
//! windowed job at parallelism 6 with checkpoints every 200 ms; one worker
//! is SIGKILLed, and we time
//! - detection: kill → the job master restarts the job (attempt + 1),
//! - resumed: kill → the new attempt completes its first checkpoint, which
//!   needs every task of the new attempt deployed, restored and processing.
//!
//! Run: `cargo bench --bench failover` (after `bash scripts/build-guests.sh`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, collect_job, wait_for};
use common::run_with_deadline;

const ROUNDS: usize = 3;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut detected = Vec::new();
    let mut resumed = Vec::new();
    for round in 0..ROUNDS {
        let mut cluster = Cluster::start(3, 4, None);
        let work = tempfile::tempdir().unwrap();
        let job = collect_job(work.path(), 100_000_000, 20_000);
        let mut submit = cluster.cli(&["submit"]);
        submit.arg(&job);
        assert!(
            run_with_deadline(submit, Duration::from_secs(60))
                .status
                .success()
        );
        wait_for(
            || {
                cluster.job("collect")["last_checkpoint"]
                    .as_u64()
                    .filter(|&c| c >= 5)
            },
            "checkpoints",
            &cluster,
        );
        let victim = format!("worker-{}", round % 3 + 1);
        let killed = Instant::now();
        cluster.kill(&victim);
        let restored_from = wait_for(
            || {
                let info = cluster.job("collect");
                (info["attempt"].as_u64() >= Some(1))
                    .then(|| info["last_checkpoint"].as_u64().unwrap_or(0))
            },
            "the restart",
            &cluster,
        );
        let detect = killed.elapsed().as_secs_f64();
        wait_for(
            || {
                let info = cluster.job("collect");
                (info["state"] == "running"
                    && info["last_checkpoint"].as_u64() > Some(restored_from))
                .then_some(())
            },
            "a checkpoint of the new attempt",
            &cluster,
        );
        let resume = killed.elapsed().as_secs_f64();
        println!(
            "round {}: killed {victim}; restart after {detect:.2} s, first checkpoint of the new attempt after {resume:.2} s",
            round + 1
        );
        detected.push(detect);
        resumed.push(resume);
        let _ = run_with_deadline(cluster.cli(&["cancel", "collect"]), Duration::from_secs(30));
    }
    println!(
        "failover (3 workers, p=6, heartbeat timeout 3 s, checkpoints every 200 ms), median of {ROUNDS}: \
         restart after {:.2} s, processing resumed (first new checkpoint) after {:.2} s; bar: resumed within 5 s",
        median(detected),
        median(resumed)
    );
}
