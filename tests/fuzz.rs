//! Property-based fuzzing on stable Rust: every decoder of bytes a tenant or
//! the network controls is fed arbitrary and mutated-valid inputs, and must
//! return an error, never panic, hang or allocate without bound.
//!
//! Targets: the job-file parser, the batch codec, rkyv frame decoding, the
//! lexical clean-up of job paths, and the snapshot readers (state and timer
//! files, `_metadata` and the paths it names). Cases per target come from `PROPTEST_CASES` (proptest's default:
//! 256, so the normal suite stays quick); `scripts/fuzz.sh` runs each with
//! 100,000 or more. A crash found becomes a named regression test below.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config;

use weir_core::timers::TimeDomain;
use weir_core::{Batch, BatchBuilder};
use weir_net::frame::{self, AlignedVec, Frame};
use weir_snapshot::keyed_file::{self, StateFileWriter, StateReader};
use weir_snapshot::metadata::{Metadata, RocksFile};
use weir_snapshot::{FileRef, OperatorSnapshot, StateHandle, SubtaskSnapshot};

/// Cases from `PROPTEST_CASES` (default 256); failures are reported, not
/// persisted to files (each found crash becomes a regression test here).
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

/// A mutation of a valid input: flip, delete, insert, or splice.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Delete { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Truncate { at: usize },
}

fn mutation(tokens: &'static [&'static str]) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), proptest::sample::select(tokens)).prop_map(|(at, t)| Mutation::Insert {
            at,
            bytes: t.as_bytes().to_vec()
        }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for m in mutations {
        let n = bytes.len().max(1);
        match m {
            Mutation::Flip { at, bits } => {
                if let Some(b) = bytes.get_mut(at % n) {
                    *b ^= bits;
                }
            }
            Mutation::Delete { at, len } => {
                let start = (at % n).min(bytes.len());
                let end = (start + len).min(bytes.len());
                bytes.drain(start..end);
            }
            Mutation::Insert { at, bytes: new } => {
                let at = (at % n).min(bytes.len());
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Truncate { at } => bytes.truncate(at % n),
        }
    }
    bytes
}

// ---------------------------------------------------------------------------
// Job files.

const JOB: &str = include_str!("../examples/wordcount/job.toml");

const JOB_EXTRA: &str = r#"
[job]
name = "fuzz.job-1"
parallelism = 2
max_parallelism = 128
batch_records_max = 1024
channel_batches_max = 8
state_backend = "rocksdb"
state_dir = "state"

[[source]]
name = "gen"
kind = "generator"
records = 1000
keys = 16
start_ms = 0
interval_ms = 10
disorder_ms = 5
value_bytes = 100
records_per_second = 1000
watermark_delay_ms = 5
idle_timeout_ms = 100

[[source]]
name = "file"
kind = "file"
path = "in.csv"
format = "csv"
timestamp_field = "ts"
key_field = "k"
max_line_bytes = 1024

[[operator]]
name = "op"
wasm = "op.wasm"
input = ["gen", "file"]
edge = "hash"
late_records = "side-output"
call_timeout_ms = 100
memory_max_mb = 64
output_max_mb = 8
key_max_bytes = 1024
state_value_max_mb = 1
state_read_max_mb = 2
timers_max = 1000
timers_memory_max_mb = 1
log_lines_per_second = 10
config = { a = 1, b = "x", c = [1, 2], d = { e = true } }

[[sink]]
name = "out"
kind = "file"
path = "out"
exactly_once = true
format = "jsonl"
input = "op"

[[sink]]
name = "late"
kind = "stdout"
input = "op.late"

[checkpoint]
interval_ms = 100
dir = "chk"
retain = 2
incremental = false
timeout_ms = 1000

[restart]
strategy = "fixed-delay"
attempts = 3
delay_ms = 10
"#;

const JOB_TOKENS: &[&str] = &[
    "\n",
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\"",
    "'",
    "{",
    "}",
    ",",
    ".",
    "#",
    "\\u0000",
    "..",
    "/",
    "../",
    "-1",
    "0",
    "1e300",
    "99999999999999999999",
    "9223372036854775807",
    "-9223372036854775808",
    "1000000000000",
    "4294967296",
    "true",
    "\"\"\"",
    "[job]",
    "[[source]]",
    "[[operator]]",
    "[[sink]]",
    "[checkpoint]",
    "[restart]",
    "name = \"x\"",
    "input = \"op\"",
    "input = \"op.late\"",
    "edge = \"forward\"",
    "parallelism = 1024",
    "max_parallelism = 32768",
    "kind = \"file\"",
    "kind = \"generator\"",
    "records = ",
    "[[[[[[[[[[[[[[[[",
    "{a={a={a={a={a={a=",
    "\u{feff}",
    "é",
    "\r\n",
];

/// Checks an error's shape: a line inside the file (when given) and a
/// message short enough for a terminal or a control message.
fn check_job_error(text: &str, e: &weir_core::job::JobError) {
    if let Some(line) = e.line {
        assert!(
            line >= 1 && line <= text.lines().count() + 1,
            "line {line} of {text:?}: {e}"
        );
    }
    assert!(
        e.message.len() <= 16 << 10,
        "{} bytes: {}",
        e.message.len(),
        &e.message[..200]
    );
}

fn parse_job(text: &str) {
    let path = Path::new("/jobs/job.toml");
    match weir_core::job::parse(text, path) {
        Ok(spec) => {
            // A valid job's paths can be listed, and its limits are in range.
            let _ = spec.path_uses();
            assert!(spec.channel_batches_max <= weir_core::job::CHANNEL_BATCHES_MAX);
        }
        Err(e) => check_job_error(text, &e),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn job_parser_arbitrary_text(text in "(?s).{0,600}") {
        parse_job(&text);
    }

    #[test]
    fn job_parser_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        parse_job(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn job_parser_mutated_valid_files(
        which in any::<bool>(),
        mutations in proptest::collection::vec(mutation(JOB_TOKENS), 1..6),
    ) {
        let base = if which { JOB } else { JOB_EXTRA };
        let text = String::from_utf8_lossy(&apply(base.as_bytes(), &mutations)).into_owned();
        parse_job(&text);
        // Errors of a file that was valid before one edit carry a line.
        if let Err(e) = weir_core::job::parse(&text, Path::new("/jobs/job.toml")) {
            prop_assert!(e.line.is_some(), "no line: {}", e);
        }
    }
}

// ---------------------------------------------------------------------------
// Batches.

fn record() -> impl Strategy<Value = (Option<i64>, Vec<u8>, Vec<u8>)> {
    (
        proptest::option::of(any::<i64>()),
        proptest::collection::vec(any::<u8>(), 0..24),
        proptest::collection::vec(any::<u8>(), 0..48),
    )
}

/// Decodes and walks every record: a batch that validates must iterate
/// without panicking, and round-trip through a builder.
fn walk_batch(bytes: Vec<u8>) {
    if let Ok(batch) = Batch::from_bytes(bytes) {
        let mut copy = BatchBuilder::default();
        let mut n = 0;
        for r in batch.iter() {
            copy.push_encoded(&r);
            n += 1;
        }
        assert_eq!(n, batch.len());
        assert_eq!(copy.take().as_bytes(), batch.as_bytes());
    }
}

const BINARY_TOKENS: &[&str] = &["\u{0}\u{0}\u{0}\u{0}", "\u{ff}\u{ff}\u{ff}\u{7f}", "\u{1}"];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn batch_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        walk_batch(bytes);
    }

    #[test]
    fn batch_mutated_valid(
        records in proptest::collection::vec(record(), 0..8),
        mutations in proptest::collection::vec(mutation(BINARY_TOKENS), 1..4),
    ) {
        let mut b = BatchBuilder::default();
        for (ts, k, v) in &records {
            b.push(*ts, k, v);
        }
        let valid = b.take().into_bytes();
        walk_batch(valid.clone());
        walk_batch(apply(&valid, &mutations));
    }
}

// ---------------------------------------------------------------------------
// Frames.

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Frame::Batch),
        any::<i64>().prop_map(Frame::Watermark),
        Just(Frame::Idle),
        (any::<u64>(), any::<bool>()).prop_map(|(id, savepoint)| Frame::Barrier { id, savepoint }),
        Just(Frame::End),
    ]
}

/// Decodes every frame in `bytes` both ways (borrowed and owned); a frame
/// that decodes must decode the same both ways.
fn decode_frames(bytes: &[u8]) {
    let mut scratch = AlignedVec::new();
    let mut at = 0;
    while at < bytes.len() {
        match frame::decode(&bytes[at..], &mut scratch) {
            Ok((f, used)) => {
                assert!(used > 0 && at + used <= bytes.len());
                let owned = frame::decode_archive_owned(
                    bytes[at + frame::FRAME_PREFIX_BYTES..at + used].to_vec(),
                    &mut scratch,
                )
                .expect("decoded once, decodes again");
                assert_eq!(owned, f);
                at += used;
            }
            Err(_) => break,
        }
    }
    let _ = frame::decode_archive_owned(bytes.to_vec(), &mut scratch);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frame_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_frames(&bytes);
    }

    #[test]
    fn frame_mutated_valid(
        frames in proptest::collection::vec(frame(), 1..4),
        mutations in proptest::collection::vec(mutation(BINARY_TOKENS), 1..4),
    ) {
        let mut bytes = Vec::new();
        for f in &frames {
            frame::encode(f, &mut bytes).unwrap();
        }
        let mut scratch = AlignedVec::new();
        let (first, _) = frame::decode(&bytes, &mut scratch).unwrap();
        prop_assert_eq!(&first, &frames[0]);
        decode_frames(&apply(&bytes, &mutations));
    }
}

// ---------------------------------------------------------------------------
// Snapshot files.

fn state_file(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut w = StateFileWriter::in_memory(2);
    for (k, v) in entries {
        w.push(k, v).unwrap();
    }
    w.into_encoded().0
}

fn read_state(path: &Path) {
    if let Ok(mut reader) = StateReader::open(path) {
        while let Ok(Some(_)) = reader.next_entry() {}
    }
}

/// A timer file in the documented format (`"WEIRTM01"`, then per timer
/// domain:u8 timestamp:i64 len:u32 key, little-endian), built in memory:
/// `write_timers` syncs to disk, too slow for 100,000 cases.
/// [`timer_files_match_the_writer`] checks the two agree.
fn timer_file(timers: &[(bool, i64, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = b"WEIRTM01".to_vec();
    for (event, ts, key) in timers {
        bytes.push(if *event { 0 } else { 1 });
        bytes.extend_from_slice(&ts.to_le_bytes());
        bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
        bytes.extend_from_slice(key);
    }
    bytes
}

/// A file path as a damaged or planted `_metadata` could name it.
fn file_path() -> impl Strategy<Value = String> {
    let part = proptest::sample::select(
        &[
            "a",
            "op-0.state",
            "x.sst",
            "..",
            ".",
            "shared",
            "",
            "/",
            "\0",
            "\\",
            "~",
            "chk-1",
        ][..],
    );
    proptest::collection::vec(part, 0..5).prop_map(|parts| parts.join("/"))
}

/// Every path a snapshot resolves stays in its directory or the `shared`
/// sibling, as plain names; every RocksDB name a download accepts is one
/// plain name.
fn check_resolved_paths(path: &str, rocks_name: &str) {
    let root = Path::new("/storage/job");
    let dir = root.join("chk-00000001");
    let file = FileRef {
        path: path.to_string(),
        size: 0,
        xxh3: String::new(),
    };
    if let Ok(resolved) = file.resolve(&dir) {
        assert!(
            resolved.starts_with(&dir) || resolved.starts_with(root.join("shared")),
            "{path:?} resolved to {}",
            resolved.display()
        );
        let rest = resolved.strip_prefix(root).unwrap();
        assert!(
            rest.components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "{path:?} resolved to {}",
            resolved.display()
        );
    }
    if weir_snapshot::is_plain_name(rocks_name) {
        let mut parts = Path::new(rocks_name).components();
        assert!(
            matches!(parts.next(), Some(std::path::Component::Normal(_))),
            "{rocks_name:?}"
        );
        assert!(parts.next().is_none(), "{rocks_name:?}");
    }
}

/// A valid `_metadata` naming RocksDB and timer files, written once.
fn valid_metadata() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let file = |path: &str| FileRef {
            path: path.into(),
            size: 3,
            xxh3: "00".repeat(16),
        };
        let metadata = Metadata {
            format_version: weir_snapshot::FORMAT_VERSION,
            job: "j".into(),
            id: 1,
            savepoint: false,
            created_unix_ms: 0,
            max_parallelism: 128,
            state_backend: "rocksdb".into(),
            sources: vec![],
            operators: vec![OperatorSnapshot {
                name: "op".into(),
                parallelism: 1,
                states: vec![],
                subtasks: vec![SubtaskSnapshot {
                    subtask: 0,
                    key_groups: (0, 128),
                    watermark: 0,
                    timers: Some(file("op-0.timers")),
                    state: StateHandle::Rocksdb {
                        files: vec![RocksFile {
                            name: "1.sst".into(),
                            file: file("../shared/p-1.sst"),
                        }],
                    },
                    stats: vec![],
                }],
            }],
            sinks: vec![],
            versions: vec![],
        };
        metadata.write(tmp.path()).unwrap();
        std::fs::read(tmp.path().join(weir_snapshot::metadata::METADATA_FILE)).unwrap()
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn snapshot_state_file_mutated(
        entries in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..24), proptest::collection::vec(any::<u8>(), 0..24)),
            0..6,
        ),
        mutations in proptest::collection::vec(mutation(BINARY_TOKENS), 1..4),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state");
        std::fs::write(&path, apply(&state_file(&entries), &mutations)).unwrap();
        read_state(&path);
    }

    #[test]
    fn snapshot_timer_file_mutated(
        timers in proptest::collection::vec((any::<bool>(), any::<i64>(), proptest::collection::vec(any::<u8>(), 0..16)), 0..6),
        mutations in proptest::collection::vec(mutation(BINARY_TOKENS), 1..4),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("timers");
        std::fs::write(&path, apply(&timer_file(&timers), &mutations)).unwrap();
        let _ = keyed_file::read_timers(&path, 128, |_| true);
    }

    #[test]
    fn snapshot_metadata_mutated(
        mutations in proptest::collection::vec(mutation(&["\"", "{", "}", ":", ",", "../", "null", "1e999"]), 1..4),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(weir_snapshot::metadata::METADATA_FILE);
        std::fs::write(&path, apply(valid_metadata(), &mutations)).unwrap();
        if let Ok(metadata) = Metadata::read(tmp.path()) {
            for f in metadata.files() {
                check_resolved_paths(&f.path, "x");
            }
        }
    }

    #[test]
    fn snapshot_paths_stay_inside(path in file_path(), rocks_name in file_path()) {
        check_resolved_paths(&path, &rocks_name);
    }
}

#[test]
fn timer_files_match_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t");
    let timers = vec![(true, -5, b"k".to_vec()), (false, i64::MAX, Vec::new())];
    keyed_file::write_timers(
        timers.iter().map(|(event, ts, key)| {
            let domain = if *event {
                TimeDomain::EventTime
            } else {
                TimeDomain::ProcessingTime
            };
            (domain, *ts, key.as_slice())
        }),
        &path,
        "t".into(),
    )
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), timer_file(&timers));
    assert_eq!(
        keyed_file::read_timers(&path, 128, |_| true).unwrap().len(),
        2
    );
}

#[test]
fn the_valid_metadata_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join(weir_snapshot::metadata::METADATA_FILE),
        valid_metadata(),
    )
    .unwrap();
    assert_eq!(Metadata::read(tmp.path()).unwrap().files().len(), 2);
}

// ---------------------------------------------------------------------------
// Regressions: inputs that once crashed a target, kept as plain tests.

#[test]
fn deeply_nested_job_values_are_errors_not_stack_overflows() {
    let text = format!("[job]\nname = \"j\"\nx = {}\n", "[".repeat(200_000));
    parse_job(&text);
    let text = format!("[job]\nname = \"j\"\nx = {}\n", "{a=".repeat(200_000));
    parse_job(&text);
}

#[test]
fn the_largest_job_file_parses_in_bounded_time() {
    let text = "[[source]]\nname = \"s\"\n".repeat(weir_core::job::JOB_TEXT_BYTES_MAX / 24);
    let started = std::time::Instant::now();
    parse_job(&text);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

proptest! {
    #![proptest_config(config())]

    /// The lexical clean-up before the data-root check: what it returns is
    /// clean (idempotent), an absolute path keeps no `..`, a relative one
    /// keeps `..` only at its start (where the check refuses it), and it
    /// never names more than the input did.
    #[test]
    fn cleaned_job_paths_keep_no_inner_dot_dot(absolute in any::<bool>(), path in file_path()) {
        use std::path::Component;
        use weir_core::data_roots::clean_path;
        let input = if absolute { format!("/{path}") } else { path };
        if input.is_empty() || input.contains('\0') {
            return Ok(());
        }
        let cleaned = clean_path(Path::new(&input));
        prop_assert_eq!(clean_path(&cleaned), cleaned.clone());
        let parts: Vec<Component<'_>> = cleaned.components().collect();
        let leading = parts.iter().take_while(|c| **c == Component::ParentDir).count();
        prop_assert!(
            !parts[leading..].iter().any(|c| matches!(c, Component::ParentDir | Component::CurDir))
                || cleaned == Path::new("."),
            "{} -> {}", input, cleaned.display()
        );
        if absolute {
            prop_assert_eq!(leading, 0, "{} -> {}", input, cleaned.display());
        }
        let names = |p: &Path| p.components().filter(|c| matches!(c, Component::Normal(_))).count();
        prop_assert!(names(&cleaned) <= names(Path::new(&input)));
    }
}
