use super::*;

const GOOD: &str = r#"
[job]
name = "wc"
parallelism = 2

[[source]]
name = "lines"
kind = "file"
path = "in.txt"

[[operator]]
name = "count"
wasm = "count.wasm"
input = "split"
edge = "hash"
late_records = "side-output"

[[operator]]
name = "split"
wasm = "split.wasm"
input = "lines"

[[sink]]
name = "out"
kind = "file"
path = "out.txt"
input = "count"

[[sink]]
name = "late"
kind = "stdout"
input = "count.late"
"#;

fn parse_str(text: &str) -> Result<JobSpec, JobError> {
    parse(text, Path::new("/jobs/job.toml"))
}

#[test]
fn parses_and_orders_a_valid_job() {
    let job = parse_str(GOOD).unwrap();
    assert_eq!(
        job.operators
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["split", "count"]
    );
    let split = job.operator("split").unwrap();
    assert_eq!(
        split.inputs[0].edge,
        Edge::Rebalance,
        "parallelism 1 -> 2 defaults to rebalance"
    );
    assert_eq!(split.wasm, PathBuf::from("/jobs/split.wasm"));
    let count = job.operator("count").unwrap();
    assert!(count.is_keyed());
    assert_eq!(
        job.sinks[1].inputs[0],
        StreamRef {
            node: "count".into(),
            late: true,
            dead_letter: false,
        }
    );
}

fn error_of(text: &str) -> JobError {
    parse_str(text).unwrap_err()
}

#[test]
fn unknown_input_names_the_line_and_known_streams() {
    let e = error_of(&GOOD.replace("input = \"split\"", "input = \"splitt\""));
    assert_eq!(e.line, Some(14));
    assert!(
        e.message.contains("`splitt`") && e.message.contains("known: count, lines, split"),
        "{e}"
    );
}

#[test]
fn type_errors_carry_the_line() {
    let e = error_of(&GOOD.replace("parallelism = 2", "parallelism = \"two\""));
    assert_eq!(e.line, Some(4), "{e}");
    let e = error_of(&GOOD.replace("edge = \"hash\"", "edge = \"hashed\""));
    assert_eq!(e.line, Some(15), "{e}");
    assert!(e.to_string().starts_with("/jobs/job.toml:15:"), "{e}");
}

#[test]
fn unknown_fields_are_rejected() {
    let e = error_of(&GOOD.replace("late_records", "lateness"));
    assert!(e.message.contains("lateness"), "{e}");
}

#[test]
fn forward_edge_needs_equal_parallelism() {
    let e = error_of(&GOOD.replace("input = \"lines\"", "input = \"lines\"\nedge = \"forward\""));
    assert!(
        e.message.contains("forward edge needs equal parallelism"),
        "{e}"
    );
}

#[test]
fn a_file_source_takes_parallelism_within_bounds() {
    // Split into byte ranges, a file source runs with any parallelism.
    let text = GOOD.replace("path = \"in.txt\"", "path = \"in.txt\"\nparallelism = 3");
    let job = parse_str(&text).unwrap();
    assert_eq!(job.sources[0].parallelism, 3);
    assert_eq!(job.parallelism_of("lines"), Some(3));
    // Unset, it stays 1 (not the job's default).
    assert_eq!(parse_str(GOOD).unwrap().sources[0].parallelism, 1);
    // The bounds still hold.
    for p in [0, 200] {
        let text = GOOD
            .replace("[job]\n", "[job]\nmax_parallelism = 128\n")
            .replace(
                "path = \"in.txt\"",
                &format!("path = \"in.txt\"\nparallelism = {p}"),
            );
        let e = error_of(&text);
        assert!(
            e.message.contains(&format!(
                "parallelism {p} is out of range: it must be between 1 and 128 (max_parallelism)"
            )),
            "{e}"
        );
        assert_eq!(e.line, Some(11), "{e}");
    }
}

#[test]
fn cycles_are_rejected() {
    let text = GOOD.replace("input = \"lines\"", "input = [\"lines\", \"count\"]");
    assert!(error_of(&text).message.contains("cycle"));
}

#[test]
fn late_stream_needs_side_output() {
    let text = GOOD.replace("late_records = \"side-output\"", "");
    assert!(
        error_of(&text)
            .message
            .contains("late_records = \"side-output\"")
    );
}

#[test]
fn duplicate_names_are_rejected() {
    let text = GOOD.replace("name = \"late\"", "name = \"out\"");
    let e = error_of(&text);
    assert!(e.message.contains("already used on line 24"), "{e}");
}

#[test]
fn generator_fields_are_checked() {
    let text = r#"
[job]
name = "g"
[[source]]
name = "gen"
kind = "generator"
path = "x"
records = 10
[[sink]]
name = "out"
kind = "stdout"
input = "gen"
"#;
    assert!(
        error_of(text)
            .message
            .contains("`path` does not apply to a generator")
    );
}

#[test]
fn overrides_take_precedence() {
    let overrides = Overrides {
        parallelism: Some(4),
        state_backend: Some(StateBackendKind::Rocksdb),
        output_dir: Some(PathBuf::from("/tmp/out")),
        ..Overrides::default()
    };
    let job = parse_with(GOOD, Path::new("/jobs/job.toml"), &overrides).unwrap();
    assert!(job.operators.iter().all(|o| o.parallelism == 4));
    // A file source that names no parallelism is read as 4 ranges too, so
    // `split` reads it over a forward edge, as after `weir rescale`.
    assert_eq!(job.sources[0].parallelism, 4);
    assert_eq!(job.operator("split").unwrap().inputs[0].edge, Edge::Forward);
    assert_eq!(job.state_backend, StateBackendKind::Rocksdb);
    assert_eq!(
        job.sinks[0].kind,
        SinkKind::File {
            path: PathBuf::from("/tmp/out/out.txt")
        }
    );
    let too_many = Overrides {
        parallelism: Some(999),
        ..Overrides::default()
    };
    assert!(
        parse_with(GOOD, Path::new("j.toml"), &too_many)
            .unwrap_err()
            .message
            .contains("--parallelism 999")
    );
}

#[test]
fn the_parallelism_override_leaves_sources_that_name_their_own() {
    let overrides = Overrides {
        parallelism: Some(3),
        ..Overrides::default()
    };
    let own = GOOD.replace("path = \"in.txt\"", "path = \"in.txt\"\nparallelism = 2");
    let job = parse_with(&own, Path::new("/jobs/job.toml"), &overrides).unwrap();
    assert_eq!(job.sources[0].parallelism, 2);
    // A generator deals its sequence out by split count: it keeps its own.
    let generator = GOOD.replace(
        "kind = \"file\"\npath = \"in.txt\"",
        "kind = \"generator\"\nrecords = 10",
    );
    let job = parse_with(&generator, Path::new("/jobs/job.toml"), &overrides).unwrap();
    assert_eq!(job.sources[0].parallelism, 1);
    assert!(job.operators.iter().all(|o| o.parallelism == 3));
}

#[test]
fn checkpoint_and_restart_sections() {
    let text = format!(
        "{GOOD}\n[checkpoint]\ninterval_ms = 500\ndir = \"chk\"\n[restart]\nstrategy = \"fixed-delay\"\nattempts = 2\n"
    );
    let job = parse(&text, Path::new("/jobs/job.toml")).unwrap();
    let c = job.checkpoint.unwrap();
    assert_eq!((c.interval_ms, c.retain, c.incremental), (500, 3, true));
    assert_eq!(c.dir, PathBuf::from("/jobs/chk"));
    assert_eq!(job.restart.attempts, 2);
    let no_checkpoint = format!("{GOOD}\n[restart]\nstrategy = \"fixed-delay\"\n");
    let e = parse(&no_checkpoint, Path::new("j.toml")).unwrap_err();
    assert!(e.message.contains("[restart] needs [checkpoint]"), "{e}");
    let zero = text.replace("interval_ms = 500", "interval_ms = 0");
    let e = parse(&zero, Path::new("j.toml")).unwrap_err();
    assert!(
        e.message
            .contains("[checkpoint] field `interval_ms` = 0 is out of range: it must be between 1 and 2592000000"),
        "{e}"
    );
}

#[test]
fn missing_job_table() {
    let e = error_of("[[source]]\nname='x'\nkind='file'\npath='a'\n");
    assert!(e.message.contains("job"), "{e}");
}

/// A minimal valid job with `extra` appended to `[job]`, to the source, to
/// the operator and after the sink (each may be empty).
fn job_with(job: &str, source: &str, operator: &str, tail: &str) -> String {
    // The default `records` line stays (empty) so line numbers do not move.
    let records = if source.contains("records =") {
        ""
    } else {
        "records = 10"
    };
    format!(
        "[job]\nname = \"j\"\n{job}\n[[source]]\nname = \"gen\"\nkind = \"generator\"\n{records}\n{source}\n[[operator]]\nname = \"op\"\nwasm = \"op.wasm\"\ninput = \"gen\"\n{operator}\n[[sink]]\nname = \"out\"\nkind = \"stdout\"\ninput = \"op\"\n{tail}"
    )
}

#[test]
fn every_number_has_an_upper_bound_named_with_line_and_field() {
    let cases = [
        (
            job_with("channel_batches_max = 1000000000000", "", "", ""),
            3,
            "[job] field `channel_batches_max` = 1000000000000 is out of range: it must be between 1 and 1024",
        ),
        (
            job_with("batch_records_max = 1000001", "", "", ""),
            3,
            "[job] field `batch_records_max` = 1000001 is out of range",
        ),
        (
            job_with("max_parallelism = 40000", "", "", ""),
            3,
            "[job] field `max_parallelism` = 40000",
        ),
        (
            job_with("", "value_bytes = 16777217", "", ""),
            8,
            "source `gen`: field `value_bytes` = 16777217 is out of range: it must be between 0 and 16777216",
        ),
        (
            job_with("", "keys = 0", "", ""),
            8,
            "source `gen`: field `keys` = 0",
        ),
        (
            job_with("", "records_per_second = 0", "", ""),
            8,
            "field `records_per_second` = 0",
        ),
        (
            job_with("", "watermark_delay_ms = 2592000001", "", ""),
            8,
            "field `watermark_delay_ms` = 2592000001",
        ),
        (
            job_with("", "idle_timeout_ms = 99999999999", "", ""),
            8,
            "field `idle_timeout_ms`",
        ),
        (
            job_with("", "interval_ms = -1", "", ""),
            8,
            "field `interval_ms` = -1",
        ),
        (
            job_with("", "disorder_ms = 2592000001", "", ""),
            8,
            "field `disorder_ms`",
        ),
        (
            job_with("", "start_ms = 9223372036854775807", "", ""),
            8,
            "field `start_ms`",
        ),
        (
            job_with("", "records = 4611686018427387905", "", ""),
            8,
            "field `records`",
        ),
        (
            job_with("", "", "call_timeout_ms = 0", ""),
            13,
            "operator `op`: field `call_timeout_ms` = 0",
        ),
        (
            job_with("", "", "memory_max_mb = 4097", ""),
            13,
            "operator `op`: field `memory_max_mb` = 4097 is out of range: it must be between 1 and 4096",
        ),
        (
            job_with("", "", "key_max_bytes = 16777217", ""),
            13,
            "field `key_max_bytes` = 16777217 is out of range: it must be between 1 and 16777216",
        ),
        (
            job_with("", "", "state_value_max_mb = 1025", ""),
            13,
            "field `state_value_max_mb` = 1025",
        ),
        (
            job_with("", "", "state_read_max_mb = 0", ""),
            13,
            "field `state_read_max_mb` = 0",
        ),
        (
            job_with("", "", "state_memory_max_mb = 65537", ""),
            13,
            "field `state_memory_max_mb` = 65537 is out of range: it must be between 1 and 65536",
        ),
        (
            job_with("", "", "timers_max = 100000001", ""),
            13,
            "field `timers_max` = 100000001",
        ),
        (
            job_with("", "", "timers_memory_max_mb = 4097", ""),
            13,
            "field `timers_memory_max_mb` = 4097",
        ),
        (
            job_with("", "", "log_lines_per_second = 100001", ""),
            13,
            "field `log_lines_per_second` = 100001 is out of range: it must be between 1 and 100000",
        ),
        (
            job_with(
                "",
                "",
                "",
                "[checkpoint]\ninterval_ms = 100\ndir = \"c\"\nretain = 1001",
            ),
            21,
            "[checkpoint] field `retain` = 1001",
        ),
        (
            job_with(
                "",
                "",
                "",
                "[checkpoint]\ninterval_ms = 100\ndir = \"c\"\ntimeout_ms = 0",
            ),
            21,
            "[checkpoint] field `timeout_ms` = 0",
        ),
        (
            job_with(
                "",
                "",
                "",
                "[checkpoint]\ninterval_ms = 100\ndir = \"c\"\n[restart]\nstrategy = \"fixed-delay\"\nattempts = 10001",
            ),
            23,
            "[restart] field `attempts` = 10001 is out of range: it must be between 0 and 10000",
        ),
        (
            job_with(
                "",
                "",
                "",
                "[checkpoint]\ninterval_ms = 100\ndir = \"c\"\n[restart]\nstrategy = \"fixed-delay\"\ndelay_ms = 2592000001",
            ),
            23,
            "[restart] field `delay_ms`",
        ),
    ];
    for (text, line, message) in cases {
        let e = parse(&text, Path::new("/jobs/job.toml")).unwrap_err();
        assert_eq!(e.line, Some(line), "{e}\n{text}");
        assert!(e.message.contains(message), "{e}\n  expected: {message}");
    }
}

#[test]
fn limits_at_their_bounds_are_accepted_and_converted() {
    let text = job_with(
        "channel_batches_max = 1024\nbatch_records_max = 1000000",
        "value_bytes = 16777216\nstart_ms = -5\ninterval_ms = 2592000000\ndisorder_ms = 2592000000",
        "key_max_bytes = 16777216\nstate_value_max_mb = 1024\nstate_read_max_mb = 4096\nstate_memory_max_mb = 65536\ntimers_max = 100000000\ntimers_memory_max_mb = 1\nlog_lines_per_second = 100000",
        "",
    );
    let job = parse(&text, Path::new("/jobs/job.toml")).unwrap();
    assert_eq!(
        (job.channel_batches_max, job.batch_records_max),
        (1024, 1_000_000)
    );
    let limits = job.operators[0].limits;
    assert_eq!(limits.key_max_bytes, 16 << 20);
    assert_eq!(limits.state_value_max_bytes, 1 << 30);
    assert_eq!(limits.state_read_max_bytes, 4 << 30);
    assert_eq!(limits.state_memory_max_bytes, 64 << 30);
    assert_eq!(limits.timers_max, 100_000_000);
    assert_eq!(limits.timers_memory_max_bytes, 1 << 20);
    assert_eq!(limits.log_lines_per_second, 100_000);
    assert_eq!(
        limits.call_timeout_ms,
        GuestLimits::default().call_timeout_ms
    );
}

#[test]
fn the_last_generated_event_time_cannot_overflow() {
    // 2^62 / 2592000000 ≈ 1.78e9 records fit at the largest interval.
    let ok = job_with("", "records = 1000000000\ninterval_ms = 2592000000", "", "");
    parse(&ok, Path::new("j.toml")).unwrap();
    let over = job_with("", "records = 4000000000\ninterval_ms = 2592000000", "", "");
    let e = parse(&over, Path::new("j.toml")).unwrap_err();
    assert_eq!(e.line, Some(9), "{e}");
    assert!(
        e.message
            .contains("start_ms + (records - 1) × interval_ms = 10367999997408000000 exceeds"),
        "{e}"
    );
}

#[test]
fn channels_are_bounded_before_anything_is_built() {
    let text = job_with(
        "max_parallelism = 4096\nchannel_batches_max = 1024",
        "parallelism = 512",
        "parallelism = 512\nedge = \"hash\"",
        "",
    );
    let e = parse(&text, Path::new("j.toml")).unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("batch slots; at most 8388608"), "{e}");
}

#[test]
fn channel_batches_default_to_16_unless_the_channels_are_too_many() {
    let small = parse(&job_with("", "", "", ""), Path::new("j.toml")).unwrap();
    assert_eq!(small.channel_batches_max, 16);
    // 1000 x 1000 channels: 16 each would pass the slot limit, 8 do not.
    let wide = job_with(
        "max_parallelism = 4096",
        "parallelism = 1000",
        "parallelism = 1000\nedge = \"hash\"",
        "",
    );
    let wide = parse(&wide, Path::new("j.toml")).unwrap();
    assert_eq!(wide.channel_batches_max, 8);
    let set = parse(
        &job_with("channel_batches_max = 3", "", "", ""),
        Path::new("j.toml"),
    )
    .unwrap();
    assert_eq!(set.channel_batches_max, 3);
}

#[test]
fn job_names_are_one_safe_character_set() {
    for (name, shown) in [
        ("a\\u0000b", "a\\u{0}b"),
        ("../x", "../x"),
        (".hidden", ".hidden"),
        ("", ""),
    ] {
        let text = job_with("", "", "", "").replace("name = \"j\"", &format!("name = \"{name}\""));
        let e = parse(&text, Path::new("j.toml")).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(
            e.message,
            format!(
                "[job] job name `{shown}` must be 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
            )
        );
    }
    let long = job_with("", "", "", "")
        .replace("name = \"op\"", &format!("name = \"{}\"", "o".repeat(65)));
    let e = parse(&long, Path::new("j.toml")).unwrap_err();
    assert!(
        e.message
            .contains("must be 1 to 64 letters, digits, '-' or '_'"),
        "{e}"
    );
}

#[test]
fn text_fields_and_tables_are_bounded() {
    let long_path = job_with("", "", "", "").replace("op.wasm", &"p".repeat(5000));
    let e = parse(&long_path, Path::new("j.toml")).unwrap_err();
    assert!(
        e.message
            .contains("operator `op`: field `wasm` is 5000 bytes long; at most 4096"),
        "{e}"
    );
    let nul = job_with("", "", "", "").replace("op.wasm", "op\\u0000.wasm");
    let e = parse(&nul, Path::new("j.toml")).unwrap_err();
    assert!(e.message.contains("field `wasm` contains a NUL"), "{e}");
    let entries: String = (0..257).map(|i| format!("k{i} = 1\n")).collect();
    let config = job_with("", "", &format!("[operator.config]\n{entries}"), "");
    let e = parse(&config, Path::new("j.toml")).unwrap_err();
    assert!(
        e.message.contains("`config` has 257 entries; at most 256"),
        "{e}"
    );
    let reserved = job_with(
        "",
        "",
        "[operator.config]\n\"weir.prepare_snapshot\" = \"1\"\n",
        "",
    );
    let e = parse(&reserved, Path::new("j.toml")).unwrap_err();
    assert!(
        e.message.contains(
            "`config` key `weir.prepare_snapshot` is reserved: keys starting with `weir.`"
        ),
        "{e}"
    );
    let own = job_with("", "", "[operator.config]\nweirdness = 1\n", "");
    assert!(
        parse(&own, Path::new("j.toml")).is_ok(),
        "only `weir.` is reserved"
    );
    let big = format!("[operator.config]\nk = \"{}\"\n", "v".repeat(300 << 10));
    let e = parse(&job_with("", "", &big, ""), Path::new("j.toml")).unwrap_err();
    assert!(
        e.message.contains("`config` holds more than 262144 bytes"),
        "{e}"
    );
    let inputs: Vec<String> = (0..65).map(|_| "\"gen\"".to_string()).collect();
    let many = job_with("", "", "", "").replace(
        "input = \"gen\"",
        &format!("input = [{}]", inputs.join(",")),
    );
    let e = parse(&many, Path::new("j.toml")).unwrap_err();
    assert!(e.message.contains("names 65 streams; at most 64"), "{e}");
}

#[test]
fn job_text_is_bounded_before_parsing() {
    let text = format!("{}\n#{}", job_with("", "", "", ""), "x".repeat(1 << 20));
    let e = parse(&text, Path::new("j.toml")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "j.toml: the job file is longer than 1048576 bytes"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    std::fs::write(&path, &text).unwrap();
    assert!(
        load(&path)
            .unwrap_err()
            .message
            .contains("longer than 1048576 bytes")
    );
}

#[test]
fn line_numbers_stay_linear_in_the_file_size() {
    // 256 nodes (the maximum) in a file near the size bound: each claim and
    // error looks its line up by binary search.
    let mut text = String::from(
        "[job]\nname = \"j\"\n[[source]]\nname = \"s0\"\nkind = \"generator\"\nrecords = 1\n",
    );
    for i in 1..255 {
        text.push_str(&format!(
            "[[operator]]\nname = \"o{i}\"\nwasm = \"o.wasm\"\ninput = \"s0\"\n"
        ));
    }
    text.push_str("[[sink]]\nname = \"out\"\nkind = \"discard\"\ninput = \"o1\"\n");
    let padding = "#".repeat(900_000 - text.len());
    text.insert_str(0, &format!("{padding}\n"));
    let started = std::time::Instant::now();
    let job = parse(&text, Path::new("j.toml")).unwrap();
    assert_eq!(job.operators.len(), 254);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn on_parse_error_defaults_to_fail_and_dead_letters_are_a_stream() {
    let job = parse_str(GOOD).unwrap();
    assert_eq!(job.sources[0].on_parse_error, OnParseError::Fail);

    let text = GOOD
        .replace(
            "path = \"in.txt\"",
            "path = \"in.txt\"\non_parse_error = \"dead-letter\"",
        )
        .replace("input = \"count.late\"", "input = \"lines.dead-letter\"");
    let job = parse_str(&text).unwrap();
    assert_eq!(job.sources[0].on_parse_error, OnParseError::DeadLetter);
    let bad = &job.sinks[1].inputs[0];
    assert_eq!(
        *bad,
        StreamRef {
            node: "lines".into(),
            late: false,
            dead_letter: true,
        }
    );
    assert_eq!(bad.to_string(), "lines.dead-letter");

    let skip = GOOD.replace(
        "path = \"in.txt\"",
        "path = \"in.txt\"\non_parse_error = \"skip\"",
    );
    assert_eq!(
        parse_str(&skip).unwrap().sources[0].on_parse_error,
        OnParseError::Skip
    );
}

#[test]
fn a_dead_letter_input_needs_the_policy_and_a_known_value() {
    let e = error_of(&GOOD.replace("input = \"count.late\"", "input = \"lines.dead-letter\""));
    assert_eq!(e.line, Some(32));
    assert!(
        e.message.contains(
            "`lines.dead-letter` needs on_parse_error = \"dead-letter\" on source `lines`"
        ),
        "{e}"
    );
    let e = error_of(&GOOD.replace(
        "path = \"in.txt\"",
        "path = \"in.txt\"\non_parse_error = \"ignore\"",
    ));
    assert_eq!(e.line, Some(10), "{e}");
    assert!(e.message.contains("ignore"), "{e}");
}

#[test]
fn a_nexmark_source_takes_its_fields_with_defaults_and_bounds() {
    let nexmark = |fields: &str| {
        GOOD.replace(
            "kind = \"file\"\npath = \"in.txt\"",
            &format!("kind = \"nexmark\"\n{fields}"),
        )
    };
    let job = parse_str(&nexmark("events = 500\nseed = 3")).unwrap();
    assert_eq!(
        job.sources[0].kind,
        SourceKind::Nexmark(NexmarkSpec {
            events: 500,
            seed: 3,
            start_ms: NEXMARK_START_MS_DEFAULT,
            events_per_second: 10_000,
            disorder_ms: 0,
        })
    );
    let e = error_of(&nexmark("seed = 3"));
    assert!(e.message.contains("a nexmark source needs `events`"), "{e}");
    let e = error_of(&nexmark("events = 5\npath = \"x\""));
    assert!(
        e.message
            .contains("`path` does not apply to a nexmark source"),
        "{e}"
    );
    let e = error_of(&nexmark("events = 5\nevents_per_second = 0"));
    assert_eq!(e.line, Some(10), "{e}");
    assert!(e.message.contains("events_per_second"), "{e}");
    let e = error_of(&GOOD.replace("path = \"in.txt\"", "path = \"in.txt\"\nevents = 5"));
    assert!(
        e.message
            .contains("`events` applies only to a nexmark source"),
        "{e}"
    );
}

#[test]
fn checkpoint_dir_may_be_an_s3_url_with_overrides() {
    let text = format!(
        "{GOOD}\n[checkpoint]\ninterval_ms = 500\ndir = \"s3://bucket/weir/chk\"\ns3_endpoint = \"http://127.0.0.1:8333\"\ns3_region = \"eu-west-1\"\ns3_allow_http = true\n"
    );
    let job = parse(&text, Path::new("/jobs/job.toml")).unwrap();
    let c = job.checkpoint.unwrap();
    // Taken as it is, not joined to the job file's directory.
    assert_eq!(c.dir, PathBuf::from("s3://bucket/weir/chk"));
    assert!(c.is_remote());
    assert_eq!(c.s3_endpoint.as_deref(), Some("http://127.0.0.1:8333"));
    assert_eq!(c.s3_region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.s3_allow_http, Some(true));
    for bad in ["s3://", "s3:///x", "s3://b/../x", "s3://b//x"] {
        let e = parse(
            &text.replace("s3://bucket/weir/chk", bad),
            Path::new("j.toml"),
        )
        .unwrap_err();
        assert!(
            e.message.contains("expected s3://bucket/prefix"),
            "{bad}: {e}"
        );
        assert_eq!(
            e.line,
            Some(text.lines().position(|l| l.starts_with("dir =")).unwrap() + 1)
        );
    }
}

#[test]
fn an_s3_endpoint_must_be_an_http_url() {
    let text = format!(
        "{GOOD}\n[checkpoint]\ninterval_ms = 500\ndir = \"s3://bucket/chk\"\ns3_endpoint = \"http://127.0.0.1:8333\"\n"
    );
    parse(&text, Path::new("j.toml")).unwrap();
    for bad in ["127.0.0.1:8333", "ftp://host", "http://", "http://a b"] {
        let e = parse(
            &text.replace("http://127.0.0.1:8333", bad),
            Path::new("j.toml"),
        )
        .unwrap_err();
        assert!(e.message.contains("`s3_endpoint`"), "{bad}: {e}");
        assert_eq!(e.line, Some(text.lines().count()), "{bad}: {e}");
    }
}
