//! The job file's Kafka source and sink tables (`kind = "kafka"`): their
//! resolved specs and the checks that turn a bad value into an error
//! naming its line. The connectors live in `weir_connectors::kafka`.

use std::collections::BTreeMap;

use toml::Spanned;

use super::bounds::*;
use super::lines::Cx;
use super::raw::{RawSink, RawSource};
use super::{FileFormat, JobError};

/// Which topics a Kafka source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaTopics {
    List(Vec<String>),
    /// A regular expression matched against whole topic names.
    Pattern(String),
}

/// Where a Kafka source starts on partitions the checkpoint does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaStart {
    Earliest,
    Latest,
    /// The group's committed offsets (earliest where there are none).
    Committed,
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

/// `[[source]] kind = "kafka"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceSpec {
    pub bootstrap_servers: String,
    pub topics: KafkaTopics,
    /// Offsets are committed to this group when a checkpoint completes.
    pub group_id: String,
    pub start: KafkaStart,
    /// `stop = "latest"`: read up to the end offsets found at the first
    /// start, then finish (Flink's bounded mode); no partition discovery.
    pub bounded: bool,
    pub format: FileFormat,
    pub timestamp_field: Option<String>,
    pub key_field: Option<String>,
    pub read_committed: bool,
    /// 0 turns discovery off.
    pub partition_discovery_ms: u64,
    /// Passed to librdkafka as they are.
    pub properties: Vec<(String, String)>,
}

/// How a Kafka sink delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaDelivery {
    AtLeastOnce,
    ExactlyOnce,
}

/// `[[sink]] kind = "kafka"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkSpec {
    pub bootstrap_servers: String,
    pub topic: String,
    pub delivery: KafkaDelivery,
    /// Exactly-once: the sink's transactional id is `<prefix>-<subtask>`.
    pub transactional_id_prefix: String,
    pub properties: Vec<(String, String)>,
}

/// librdkafka properties weir sets itself; a job file may not override them.
const SOURCE_RESERVED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "enable.partition.eof",
];
const SINK_RESERVED: &[&str] = &[
    "bootstrap.servers",
    "transactional.id",
    "enable.idempotence",
];

const PROPERTIES_MAX: usize = 256;
const TOPICS_MAX: usize = 1024;
/// Kafka's own limit on a topic name.
const TOPIC_BYTES_MAX: usize = 249;
const TEXT_BYTES_MAX: usize = 4096;

fn text<'s>(
    cx: &Cx<'_>,
    value: &'s Spanned<String>,
    owner: &str,
    field: &str,
) -> Result<&'s str, JobError> {
    let t = bounded_text(cx, value, TEXT_BYTES_MAX, owner, field)?;
    if t.trim().is_empty() {
        return Err(cx.err_at(
            value.span().start,
            format!("{owner}field `{field}` is empty"),
        ));
    }
    Ok(t)
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`.
fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > TOPIC_BYTES_MAX {
        return Some(format!(
            "topic name {name:?} must be 1 to {TOPIC_BYTES_MAX} characters"
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("topic name {name:?} is not allowed"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Some(format!(
            "topic name {name:?} has characters other than ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    None
}

fn properties(
    cx: &Cx<'_>,
    table: Option<&Spanned<BTreeMap<String, toml::Value>>>,
    reserved: &[&str],
    owner: &str,
) -> Result<Vec<(String, String)>, JobError> {
    let Some(table) = table else {
        return Ok(Vec::new());
    };
    let at = table.span().start;
    if table.get_ref().len() > PROPERTIES_MAX {
        return Err(cx.err_at(
            at,
            format!("{owner}`properties` has more than {PROPERTIES_MAX} entries"),
        ));
    }
    let mut out = Vec::new();
    for (key, value) in table.get_ref() {
        if reserved.contains(&key.as_str()) {
            return Err(cx.err_at(
                at,
                format!(
                    "{owner}property `{key}` is set by weir; use the source's or sink's own field"
                ),
            ));
        }
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                return Err(cx.err_at(
                    at,
                    format!("{owner}property `{key}` must be a string, number or boolean"),
                ));
            }
        };
        if key.is_empty()
            || key.len() > TEXT_BYTES_MAX
            || value.len() > TEXT_BYTES_MAX
            || key.contains('\0')
            || value.contains('\0')
        {
            return Err(cx.err_at(
                at,
                format!(
                    "{owner}property {key:?} has an empty, too long or NUL-holding key or value"
                ),
            ));
        }
        out.push((key.clone(), value));
    }
    Ok(out)
}

/// Fails when a non-Kafka source sets a Kafka field.
pub(super) fn reject_source_fields(
    cx: &Cx<'_>,
    raw: &RawSource,
    at: usize,
    owner: &str,
) -> Result<(), JobError> {
    for (field, present) in [
        ("bootstrap_servers", raw.bootstrap_servers.is_some()),
        ("topics", raw.topics.is_some()),
        ("topic_pattern", raw.topic_pattern.is_some()),
        ("group_id", raw.group_id.is_some()),
        ("start", raw.start.is_some()),
        ("start_timestamp_ms", raw.start_timestamp_ms.is_some()),
        ("stop", raw.stop.is_some()),
        ("isolation", raw.isolation.is_some()),
        (
            "partition_discovery_ms",
            raw.partition_discovery_ms.is_some(),
        ),
        ("properties", raw.properties.is_some()),
    ] {
        if present {
            return Err(cx.err_at(
                at,
                format!("{owner}field `{field}` applies only to a kafka source"),
            ));
        }
    }
    Ok(())
}

/// Fails when a non-Kafka sink sets a Kafka field.
pub(super) fn reject_sink_fields(
    cx: &Cx<'_>,
    raw: &RawSink,
    at: usize,
    owner: &str,
) -> Result<(), JobError> {
    for (field, present) in [
        ("bootstrap_servers", raw.bootstrap_servers.is_some()),
        ("topic", raw.topic.is_some()),
        ("delivery", raw.delivery.is_some()),
        (
            "transactional_id_prefix",
            raw.transactional_id_prefix.is_some(),
        ),
        ("properties", raw.properties.is_some()),
    ] {
        if present {
            return Err(cx.err_at(
                at,
                format!("{owner}field `{field}` applies only to a kafka sink"),
            ));
        }
    }
    Ok(())
}

/// Resolves a `kind = "kafka"` source table.
pub(super) fn source(
    cx: &Cx<'_>,
    raw: &RawSource,
    name: &str,
    at: usize,
    owner: &str,
) -> Result<KafkaSourceSpec, JobError> {
    none_of(
        cx,
        at,
        owner,
        "kafka",
        &[
            ("path", raw.path.is_some()),
            ("max_line_bytes", raw.max_line_bytes.is_some()),
            ("records", raw.records.is_some()),
            ("keys", raw.keys.is_some()),
            ("start_ms", raw.start_ms.is_some()),
            ("interval_ms", raw.interval_ms.is_some()),
            ("disorder_ms", raw.disorder_ms.is_some()),
            ("value_bytes", raw.value_bytes.is_some()),
        ],
    )?;
    let servers = raw.bootstrap_servers.as_ref().ok_or_else(|| {
        cx.err_at(
            at,
            format!("{owner}a kafka source needs `bootstrap_servers`"),
        )
    })?;
    let bootstrap_servers = text(cx, servers, owner, "bootstrap_servers")?.to_string();
    let topics = match (&raw.topics, &raw.topic_pattern) {
        (Some(_), Some(p)) => {
            return Err(cx.err_at(
                p.span().start,
                format!("{owner}give either `topics` or `topic_pattern`, not both"),
            ));
        }
        (None, None) => {
            return Err(cx.err_at(
                at,
                format!("{owner}a kafka source needs `topics` (a list) or `topic_pattern` (a regular expression)"),
            ));
        }
        (Some(list), None) => {
            let names = list.get_ref();
            if names.is_empty() || names.len() > TOPICS_MAX {
                return Err(cx.err_at(
                    list.span().start,
                    format!("{owner}`topics` must list 1 to {TOPICS_MAX} topics"),
                ));
            }
            for topic in names {
                if let Some(problem) = topic_name_problem(topic) {
                    return Err(cx.err_at(list.span().start, format!("{owner}{problem}")));
                }
            }
            let mut names = names.clone();
            names.sort();
            names.dedup();
            KafkaTopics::List(names)
        }
        (None, Some(p)) => KafkaTopics::Pattern(text(cx, p, owner, "topic_pattern")?.to_string()),
    };
    let group_id = match &raw.group_id {
        Some(g) => text(cx, g, owner, "group_id")?.to_string(),
        None => format!("weir-{name}"),
    };
    let start = match raw.start.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "earliest")) => KafkaStart::Earliest,
        Some((_, "latest")) => KafkaStart::Latest,
        Some((_, "committed")) => KafkaStart::Committed,
        Some((s, "timestamp")) => {
            let ts = raw.start_timestamp_ms.as_ref().ok_or_else(|| {
                cx.err_at(
                    s.span().start,
                    format!("{owner}start = \"timestamp\" needs `start_timestamp_ms`"),
                )
            })?;
            KafkaStart::Timestamp(bounded(
                cx,
                Some(ts),
                0,
                0..=EVENT_TIME_MS_MAX,
                owner,
                "start_timestamp_ms",
            )?)
        }
        Some((s, other)) => {
            return Err(cx.err_at(
                s.span().start,
                format!("{owner}start = {other:?}: expected \"earliest\", \"latest\", \"committed\" or \"timestamp\""),
            ));
        }
    };
    if let (Some(ts), false) = (
        &raw.start_timestamp_ms,
        matches!(start, KafkaStart::Timestamp(_)),
    ) {
        return Err(cx.err_at(
            ts.span().start,
            format!("{owner}`start_timestamp_ms` needs start = \"timestamp\""),
        ));
    }
    let bounded_mode = match raw.stop.as_ref() {
        None => false,
        Some(s) if s.get_ref() == "latest" => true,
        Some(s) if s.get_ref() == "never" => false,
        Some(s) => {
            return Err(cx.err_at(
                s.span().start,
                format!("{owner}stop = {:?}: expected \"latest\" (finish at the end offsets found at the first start) or \"never\"", s.get_ref()),
            ));
        }
    };
    let read_committed = match raw.isolation.as_ref() {
        None => true,
        Some(s) if s.get_ref() == "read_committed" => true,
        Some(s) if s.get_ref() == "read_uncommitted" => false,
        Some(s) => {
            return Err(cx.err_at(
                s.span().start,
                format!(
                    "{owner}isolation = {:?}: expected \"read_committed\" or \"read_uncommitted\"",
                    s.get_ref()
                ),
            ));
        }
    };
    let format = raw.format.unwrap_or(FileFormat::Lines);
    if format == FileFormat::Csv {
        return Err(cx.err_at(
            at,
            format!("{owner}format = \"csv\" needs a header line, which a Kafka record does not have; use \"lines\" or \"jsonl\""),
        ));
    }
    if format == FileFormat::Lines
        && let Some(field) = [&raw.timestamp_field, &raw.key_field]
            .into_iter()
            .flatten()
            .next()
    {
        return Err(cx.err_at(
            field.span().start,
            format!("{owner}plain lines have no fields; use format = \"jsonl\" (without fields, the Kafka key and timestamp are used)"),
        ));
    }
    let field_name = |value: &Option<Spanned<String>>, field: &str| {
        value
            .as_ref()
            .map(|v| bounded_text(cx, v, FIELD_NAME_BYTES_MAX, owner, field).map(String::from))
            .transpose()
    };
    Ok(KafkaSourceSpec {
        bootstrap_servers,
        topics,
        group_id,
        start,
        bounded: bounded_mode,
        format,
        timestamp_field: field_name(&raw.timestamp_field, "timestamp_field")?,
        key_field: field_name(&raw.key_field, "key_field")?,
        read_committed,
        partition_discovery_ms: bounded(
            cx,
            raw.partition_discovery_ms.as_ref(),
            10_000,
            0..=DURATION_MS_MAX,
            owner,
            "partition_discovery_ms",
        )?,
        properties: properties(cx, raw.properties.as_ref(), SOURCE_RESERVED, owner)?,
    })
}

/// Resolves a `kind = "kafka"` sink table.
pub(super) fn sink(
    cx: &Cx<'_>,
    raw: &RawSink,
    name: &str,
    at: usize,
) -> Result<KafkaSinkSpec, JobError> {
    let owner = format!("sink `{name}`: ");
    let owner = owner.as_str();
    if let Some(p) = &raw.path {
        return Err(cx.err_at(
            p.span().start,
            format!("{owner}a kafka sink takes `topic`, not `path`"),
        ));
    }
    if let Some(e) = &raw.exactly_once {
        return Err(cx.err_at(
            e.span().start,
            format!("{owner}a kafka sink takes delivery = \"exactly-once\", not `exactly_once`"),
        ));
    }
    let servers = raw
        .bootstrap_servers
        .as_ref()
        .ok_or_else(|| cx.err_at(at, format!("{owner}a kafka sink needs `bootstrap_servers`")))?;
    let topic = raw
        .topic
        .as_ref()
        .ok_or_else(|| cx.err_at(at, format!("{owner}a kafka sink needs `topic`")))?;
    if let Some(problem) = topic_name_problem(topic.get_ref()) {
        return Err(cx.err_at(topic.span().start, format!("{owner}{problem}")));
    }
    let delivery = match raw.delivery.as_ref() {
        None => KafkaDelivery::AtLeastOnce,
        Some(d) if d.get_ref() == "at-least-once" => KafkaDelivery::AtLeastOnce,
        Some(d) if d.get_ref() == "exactly-once" => KafkaDelivery::ExactlyOnce,
        Some(d) => {
            return Err(cx.err_at(
                d.span().start,
                format!(
                    "{owner}delivery = {:?}: expected \"at-least-once\" or \"exactly-once\"",
                    d.get_ref()
                ),
            ));
        }
    };
    let transactional_id_prefix = match &raw.transactional_id_prefix {
        Some(p) => {
            if delivery != KafkaDelivery::ExactlyOnce {
                return Err(cx.err_at(
                    p.span().start,
                    format!("{owner}`transactional_id_prefix` needs delivery = \"exactly-once\""),
                ));
            }
            text(cx, p, owner, "transactional_id_prefix")?.to_string()
        }
        None => format!("weir-{name}"),
    };
    Ok(KafkaSinkSpec {
        bootstrap_servers: text(cx, servers, owner, "bootstrap_servers")?.to_string(),
        topic: topic.get_ref().clone(),
        delivery,
        transactional_id_prefix,
        properties: properties(cx, raw.properties.as_ref(), SINK_RESERVED, owner)?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{JobSpec, SinkKind, SourceKind, parse};
    use super::*;

    fn job(source: &str, sink: &str) -> Result<JobSpec, JobError> {
        let text = format!(
            "[job]\nname = \"k\"\n\n[[source]]\nname = \"in\"\nkind = \"kafka\"\nbootstrap_servers = \"b:9092\"\n{source}\n[[sink]]\nname = \"out\"\ninput = \"in\"\n{sink}\n"
        );
        parse(&text, Path::new("/jobs/job.toml"))
    }

    const SINK: &str = "kind = \"stdout\"";

    #[test]
    fn a_kafka_source_resolves_with_defaults() {
        let spec = job("topics = [\"b\", \"a\", \"a\"]", SINK).unwrap();
        let SourceKind::Kafka(k) = &spec.sources[0].kind else {
            panic!("not kafka")
        };
        assert_eq!(k.topics, KafkaTopics::List(vec!["a".into(), "b".into()]));
        assert_eq!(k.group_id, "weir-in");
        assert_eq!(k.start, KafkaStart::Earliest);
        assert!(k.read_committed && !k.bounded);
        assert_eq!(k.partition_discovery_ms, 10_000);
        let spec = job(
            "topic_pattern = \"orders-.*\"\nstart = \"timestamp\"\nstart_timestamp_ms = 5\nstop = \"latest\"\nisolation = \"read_uncommitted\"\nformat = \"jsonl\"\nkey_field = \"k\"\nproperties = { \"fetch.max.bytes\" = 100, \"check.crcs\" = true }",
            SINK,
        )
        .unwrap();
        let SourceKind::Kafka(k) = &spec.sources[0].kind else {
            panic!("not kafka")
        };
        assert_eq!(k.topics, KafkaTopics::Pattern("orders-.*".into()));
        assert_eq!(k.start, KafkaStart::Timestamp(5));
        assert!(k.bounded && !k.read_committed);
        assert_eq!(k.key_field.as_deref(), Some("k"));
        assert_eq!(
            k.properties,
            [
                ("check.crcs".to_string(), "true".to_string()),
                ("fetch.max.bytes".to_string(), "100".to_string())
            ]
        );
    }

    #[test]
    fn a_kafka_sink_resolves() {
        let spec = job(
            "topics = [\"t\"]",
            "kind = \"kafka\"\nbootstrap_servers = \"b:1\"\ntopic = \"o\"\ndelivery = \"exactly-once\"",
        )
        .unwrap();
        let SinkKind::Kafka(k) = &spec.sinks[0].kind else {
            panic!("not kafka")
        };
        assert_eq!(k.delivery, KafkaDelivery::ExactlyOnce);
        assert_eq!(k.transactional_id_prefix, "weir-out");
        assert_eq!(k.topic, "o");
    }

    #[test]
    fn bad_values_name_their_line() {
        // Line 8 holds the first extra field of the source; with one such
        // line, `[[sink]]` is on line 9 and its first extra field on 12.
        for (source, sink, line, words) in [
            ("", SINK, 4, "needs `topics`"),
            ("topics = []", SINK, 8, "1 to 1024 topics"),
            ("topics = [\"a b\"]", SINK, 8, "topic name"),
            (
                "topics = [\"t\"]\nstart = \"now\"",
                SINK,
                9,
                "start = \"now\"",
            ),
            (
                "topics = [\"t\"]\nstart_timestamp_ms = 3",
                SINK,
                9,
                "needs start = \"timestamp\"",
            ),
            (
                "topics = [\"t\"]\nkey_field = \"k\"",
                SINK,
                9,
                "plain lines have no fields",
            ),
            (
                "topics = [\"t\"]\npath = \"x\"",
                SINK,
                4,
                "`path` does not apply",
            ),
            (
                "topics = [\"t\"]\nproperties = { \"isolation.level\" = \"x\" }",
                SINK,
                9,
                "set by weir",
            ),
            (
                "topics = [\"t\"]\nproperties = { \"a\" = [1] }",
                SINK,
                9,
                "string, number or boolean",
            ),
            (
                "topics = [\"t\"]",
                "kind = \"kafka\"\ntopic = \"o\"",
                9,
                "needs `bootstrap_servers`",
            ),
            (
                "topics = [\"t\"]",
                "kind = \"kafka\"\nbootstrap_servers = \"b\"\ntopic = \"o\"\ntransactional_id_prefix = \"p\"",
                15,
                "needs delivery",
            ),
            (
                "topics = [\"t\"]",
                "kind = \"stdout\"\ntopic = \"o\"",
                9,
                "applies only to a kafka sink",
            ),
        ] {
            let e = job(source, sink).unwrap_err();
            assert_eq!(e.line, Some(line), "{source} / {sink}: {e}");
            assert!(e.message.contains(words), "{source} / {sink}: {e}");
        }
        // A Kafka field on a file source.
        let e = parse(
            "[job]\nname = \"k\"\n[[source]]\nname = \"in\"\nkind = \"file\"\npath = \"x\"\ntopics = [\"t\"]\n[[sink]]\nname = \"o\"\nkind = \"stdout\"\ninput = \"in\"\n",
            Path::new("/j.toml"),
        )
        .unwrap_err();
        assert!(e.message.contains("applies only to a kafka source"), "{e}");
    }
}
