//! Live upgrades through the real binary: a running job's keyed counter
//! (tests/guests/versioned) is swapped for new versions with `weir upgrade`
//! under load, refused, rolled back, killed around the swap and resumed,
//! and swapped from Rust to Python. The output (`{key},{count},{tag}` per
//! record) shows every record counted once, state carried across the swap
//! (each key counts 1..n with no reset or gap), and which version counted
//! it. Random delays print their seed so a failure can be replayed.

mod common;
#[path = "upgrade/harness.rs"]
mod harness;
#[path = "upgrade/output.rs"]
mod output;

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use common::{guest, run_with_deadline, stderr, weir};
use harness::{Harness, LIMIT, Spec, digest_of};
use output::{check_continuous, check_phases, per_key, read_parts};

const V1: &[&str] = &["v1"];
const V2: &[&str] = &["v2", "v2m"];

/// Lines to see committed before a command is sent, so the old version
/// demonstrably ran.
const BEFORE: usize = 200;

/// Reads and checks the final output: every record counted once, counts
/// continuous per key, tags moving forward through `phases`; returns the
/// lines per phase.
fn check_final(h: &Harness, phases: &[&[&str]]) -> Vec<usize> {
    let parts = read_parts(&h.path("out")).unwrap_or_else(|e| panic!("{e}\n{}", h.logs()));
    let keys = per_key(&parts);
    check_continuous(&keys, &h.spec).unwrap_or_else(|e| panic!("{e}\n{}", h.logs()));
    check_phases(&keys, phases).unwrap_or_else(|e| panic!("{e}\n{}", h.logs()))
}

/// The `weir jobs` line of the upgraded operator.
fn operator_line(h: &mut Harness) -> String {
    let jobs = h.jobs();
    jobs.lines()
        .find(|l| {
            l.trim_start()
                .starts_with(&format!("operator {} ", harness::OPERATOR))
        })
        .unwrap_or_else(|| panic!("weir jobs lists no operator line:\n{jobs}\n{}", h.logs()))
        .to_string()
}

/// The checkpoint `weir upgrade` says the new version took over at.
fn swap_checkpoint(said: &str) -> u64 {
    said.trim()
        .rsplit(' ')
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("weir upgrade names no checkpoint: {said}"))
}

fn short(digest: &str) -> &str {
    &digest[..12]
}

/// A small xorshift generator seeded from the clock; the seed is printed.
struct Random(u64);

impl Random {
    fn new(test: &str) -> Random {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos() as u64
            | 1;
        eprintln!("{test}: random seed {seed}");
        Random(seed)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low)
    }
}

#[test]
fn an_upgrade_under_load_continues_every_keys_count() {
    let mut h = Harness::new(Spec {
        records: 5000,
        keys: 10,
        rate: 1000,
    });
    h.start(false);
    h.wait_committed(BEFORE);
    let said = h.upgrade_ok("versioned_v2", &[]);
    let (v1, v2) = (digest_of("versioned"), digest_of("versioned_v2"));
    assert!(
        said.contains(short(&v2)),
        "weir upgrade does not name the new digest {v2}: {said}"
    );
    assert!(
        h.running(),
        "the job ended right after the upgrade; make it longer\n{}",
        h.logs()
    );
    let line = operator_line(&mut h);
    assert!(
        line.matches(" -> ").count() == 1
            && line.contains(&format!("{} (start)", short(&v1)))
            && line.contains(&format!(
                "{} (checkpoint {})",
                short(&v2),
                swap_checkpoint(&said)
            )),
        "weir jobs should list 2 versions, v1 from the start and v2 since checkpoint {}: {line}\n{}",
        swap_checkpoint(&said),
        h.logs()
    );
    h.finish();
    let phases = check_final(&h, &[V1, V2]);
    assert!(
        phases[0] > 0 && phases[1] > 0,
        "lines per version (v1, v2): {phases:?}\n{}",
        h.logs()
    );
    let parts = read_parts(&h.path("out")).unwrap();
    assert!(
        parts.iter().flat_map(|p| &p.lines).any(|l| l.tag == "v2m"),
        "no line tagged v2m: the new version's open never saw weir.previous_version\n{}",
        h.logs()
    );
}

#[test]
fn a_version_whose_open_fails_is_refused_and_the_old_one_goes_on() {
    let mut h = Harness::new(Spec {
        records: 4000,
        keys: 8,
        rate: 1000,
    });
    h.start(false);
    h.wait_committed(BEFORE);
    let wasm = guest("versioned_fail_open").display().to_string();
    let out = h.upgrade(&["--wasm", &wasm]);
    assert!(
        !out.status.success() && stderr(&out).contains("this version refuses to open"),
        "the upgrade to a version whose open fails should fail naming the failure\n{}",
        h.logs()
    );
    assert!(h.running(), "the job should go on\n{}", h.logs());
    let line = operator_line(&mut h);
    assert!(
        !line.contains(" -> "),
        "a refused version is in the history: {line}\n{}",
        h.logs()
    );
    h.finish();
    check_final(&h, &[V1]);
}

#[test]
fn a_state_kind_change_is_refused_and_dropping_state_needs_consent() {
    let mut h = Harness::new(Spec {
        records: 5000,
        keys: 8,
        rate: 1000,
    });
    h.start(false);
    h.wait_committed(BEFORE);

    let map = guest("versioned_map").display().to_string();
    let out = h.upgrade(&["--wasm", &map]);
    assert!(
        !out.status.success() && stderr(&out).contains("`count`"),
        "changing `count` from value to map state should be refused naming the state\n{}",
        h.logs()
    );
    assert!(h.running(), "the job should go on\n{}", h.logs());

    let stateless = guest("versioned_stateless").display().to_string();
    let out = h.upgrade(&["--wasm", &stateless]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("`count`") && err.contains("--allow-dropping-state"),
        "a version without `count` should be refused unless --allow-dropping-state\n{}",
        h.logs()
    );
    assert!(h.running(), "the job should go on\n{}", h.logs());

    h.upgrade_ok("versioned_stateless", &["--allow-dropping-state"]);
    h.finish();

    // v1 counted each key 1..k with no gap; the stateless version then
    // emits count 0 for every later record; nothing lost or doubled.
    let parts = read_parts(&h.path("out")).unwrap_or_else(|e| panic!("{e}\n{}", h.logs()));
    let keys = per_key(&parts);
    let phases =
        check_phases(&keys, &[V1, &["v0"]]).unwrap_or_else(|e| panic!("{e}\n{}", h.logs()));
    assert!(
        phases[0] > 0 && phases[1] > 0,
        "lines per version (v1, v0): {phases:?}\n{}",
        h.logs()
    );
    let total: usize = keys.values().map(Vec::len).sum();
    assert_eq!(total as u64, h.spec.records, "output lines\n{}", h.logs());
    for (key, lines) in &keys {
        let v1: Vec<u64> = lines
            .iter()
            .filter(|l| l.tag == "v1")
            .map(|l| l.count)
            .collect();
        assert_eq!(
            v1,
            (1..=v1.len() as u64).collect::<Vec<_>>(),
            "{key}: v1 counts\n{}",
            h.logs()
        );
        assert!(
            lines.iter().filter(|l| l.tag == "v0").all(|l| l.count == 0),
            "{key}: the stateless version counted\n{}",
            h.logs()
        );
    }
}

#[test]
fn a_rollback_returns_to_the_first_version() {
    let mut h = Harness::new(Spec {
        records: 6000,
        keys: 8,
        rate: 1000,
    });
    h.start(false);
    h.wait_committed(BEFORE);
    h.upgrade_ok("versioned_v2", &[]);
    h.wait_for_tag("v2m");
    let out = h.upgrade(&["--rollback"]);
    let v1 = digest_of("versioned");
    assert!(
        out.status.success() && stderr(&out).contains(short(&v1)),
        "the rollback should succeed and name v1's digest {v1}\n{}",
        h.logs()
    );
    let line = operator_line(&mut h);
    assert_eq!(
        line.matches(" -> ").count(),
        2,
        "history after upgrade and rollback: {line}\n{}",
        h.logs()
    );
    h.finish();
    let phases = check_final(&h, &[V1, V2, &["v1m"]]);
    assert!(
        phases.iter().all(|&n| n > 0),
        "lines per version (v1, v2, v1 again): {phases:?}\n{}",
        h.logs()
    );
}

#[test]
fn a_run_killed_after_the_upgrade_resumes_on_the_new_version() {
    let mut h = Harness::new(Spec {
        records: 5000,
        keys: 10,
        rate: 1000,
    });
    h.start(false);
    h.wait_committed(BEFORE);
    let said = h.upgrade_ok("versioned_v2", &[]);
    h.kill();
    let swapped_at = swap_checkpoint(&said);
    let newest = h.newest_checkpoint();
    assert!(
        newest >= swapped_at,
        "the upgrade answered for checkpoint {swapped_at}, but the newest complete one is {newest}\n{}",
        h.logs()
    );
    h.start(true);
    h.finish();
    check_final(&h, &[V1, V2]);
    // What the resumed run wrote: the parts after the checkpoint it restored.
    let parts = read_parts(&h.path("out")).unwrap();
    let resumed = per_key(parts.iter().filter(|p| p.id > newest));
    let phases = check_phases(&resumed, &[V2]).unwrap_or_else(|e| {
        panic!(
            "the resumed run (after checkpoint {newest}) ran another version than v2: {e}\n{}",
            h.logs()
        )
    });
    assert!(
        phases[0] > 0,
        "the resumed run wrote nothing; kill earlier\n{}",
        h.logs()
    );
}

/// Sends the upgrade and SIGKILLs the job `delay_ms` after it arrived,
/// without waiting for the answer; the resumed run must finish on one
/// version.
fn killed_during_the_upgrade(delay_ms: u64) {
    let mut h = Harness::new(Spec {
        records: 4000,
        keys: 8,
        rate: 1000,
    });
    h.start(false);
    h.wait_committed(BEFORE);
    let log = h.path("upgrade.log");
    let mut upgrade = h
        .upgrade_command(&["--wasm", &guest("versioned_v2").display().to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("weir upgrade starts");
    // The job keeps the new version beside its checkpoints as soon as the
    // command arrives: from then on the upgrade is under way.
    let kept = h.path(&format!(
        "chk/{}/artifacts/{}.wasm",
        harness::JOB,
        digest_of("versioned_v2")
    ));
    h.wait_until("the job received the upgrade", |_| kept.exists());
    std::thread::sleep(Duration::from_millis(delay_ms));
    h.kill();
    let started = Instant::now();
    while upgrade.try_wait().expect("try_wait").is_none() {
        assert!(
            started.elapsed() < LIMIT,
            "weir upgrade hangs after its job was killed\n{}",
            h.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("weir upgrade, killed after {delay_ms} ms: {}", said.trim());
    // Answered: the upgrade's checkpoint exists, and records v2.
    let answered = said.contains("since checkpoint");
    let newest = h.newest_checkpoint();
    h.start(true);
    h.finish();
    check_final(&h, &[V1, V2]);
    let parts = read_parts(&h.path("out")).unwrap();
    let resumed = per_key(parts.iter().filter(|p| p.id > newest));
    let versions: std::collections::BTreeSet<usize> = resumed
        .values()
        .flatten()
        .map(|l| usize::from(V2.contains(&l.tag.as_str())))
        .collect();
    let want = if answered { vec![1] } else { vec![0, 1] };
    assert!(
        versions.len() == 1 && want.contains(versions.first().expect("one")),
        "the resumed run (after checkpoint {newest}) should run one version (v2 if the upgrade \
         was answered: {answered}), it ran {versions:?} (0: v1, 1: v2)\n{}",
        h.logs()
    );
}

#[test]
fn a_run_killed_during_the_upgrade_recovers_on_one_version() {
    let mut random = Random::new("killed_during_the_upgrade");
    // The upgrade is answered some 20-30 ms after it arrives (the new
    // version opens from the compile cache, then a checkpoint is triggered
    // at once to swap it in): early kills land while it opens, later ones
    // around the swap barrier and its checkpoint's completion.
    killed_during_the_upgrade(random.between(0, 5));
    killed_during_the_upgrade(random.between(5, 12));
    killed_during_the_upgrade(random.between(12, 30));
}

#[test]
fn a_rust_operator_is_upgraded_to_python_in_a_running_job() {
    let spec = Spec {
        records: 5000,
        keys: 8,
        rate: 1000,
    };
    // Compile the Python component first (seconds when not cached), so the
    // upgrade lands while the job runs.
    let warm = tempfile::tempdir().expect("temp dir");
    let file = warm.path().join("job.toml");
    std::fs::write(&file, spec.text(&guest("versioned_py"))).expect("write job");
    let mut validate = weir();
    validate.arg("validate").arg(&file);
    let out = run_with_deadline(validate, Duration::from_secs(300));
    assert!(out.status.success(), "{}", stderr(&out));

    let mut h = Harness::new(spec);
    h.start(false);
    h.wait_committed(BEFORE);
    let said = h.upgrade_ok("versioned_py", &[]);
    let py = digest_of("versioned_py");
    assert!(said.contains(short(&py)), "{said}\n{}", h.logs());
    h.finish();
    let phases = check_final(&h, &[V1, &["py", "pym"]]);
    assert!(
        phases[0] > 0 && phases[1] > 0,
        "lines per version (v1, py): {phases:?}\n{}",
        h.logs()
    );
    let parts = read_parts(&h.path("out")).unwrap();
    assert!(
        parts.iter().flat_map(|p| &p.lines).any(|l| l.tag == "pym"),
        "no line tagged pym\n{}",
        h.logs()
    );
}
