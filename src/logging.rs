//! Where the CLI's logs go and how they look: text for people, or one JSON
//! object per line for machines (`--log-format json`). A JSON line carries
//! the fields of every span it was logged in, flattened next to the
//! event's own, so a line from a task thread names its `job`, `operator`
//! and `subtask`. Lines pass around the live status bars (see
//! [`crate::status`]) instead of tearing them.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, span fields (job, operator, subtask) flattened in.
    Json,
}

/// Installs the process's logger: `-v` counts and `RUST_LOG` pick what is logged.
pub fn init(verbose: u8, format: LogFormat) {
    let default = match verbose {
        // Compile and cache-load times of the operators are shown at job
        // start even without -v: a Python or JS component compiles for seconds.
        0 => "warn,weir_wasm::engine=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(Stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(Stderr)
            .init(),
    }
}

/// The live status bars while they are drawn: log lines are written
/// around them (`suspend`) so neither garbles the other.
static BARS: Mutex<Option<indicatif::MultiProgress>> = Mutex::new(None);

/// Routes log lines around `bars` (or straight to stderr with `None`).
pub fn set_bars(bars: Option<indicatif::MultiProgress>) {
    if let Ok(mut slot) = BARS.lock() {
        *slot = bars;
    }
}

/// Standard error, written around the status bars if any are drawn.
#[derive(Clone, Copy)]
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bars = BARS.lock().ok().and_then(|b| b.clone());
        match bars {
            Some(bars) => bars.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

/// Formats an event as one JSON object: `timestamp`, `level`, `target`,
/// the fields of the spans it is in (outermost first, inner ones win),
/// then the event's own fields (`message` among them), which win over
/// span fields of the same name.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                // Spans' fields are kept as JSON text by `JsonFields`.
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str(&fields.fields)
                {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut line));
        let mut timestamp = String::new();
        if SystemTime
            .format_time(&mut Writer::new(&mut timestamp))
            .is_ok()
        {
            line.insert("timestamp".into(), timestamp.into());
        }
        let meta = event.metadata();
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields into a JSON object.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer into a shared buffer, to read what was logged.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    fn logged(body: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, body);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    #[test]
    fn span_fields_are_on_every_line_inside_the_span() {
        let lines = logged(|| {
            tracing::warn!("before");
            let span = tracing::info_span!("task", job = "wc", operator = "count", subtask = 2u32);
            let _entered = span.enter();
            tracing::warn!(records = 7u64, "inside");
            let inner = tracing::info_span!("inner", subtask = 3u32, extra = true);
            let _inner = inner.enter();
            tracing::error!("deeper");
        });
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["message"], "before");
        assert!(lines[0].get("job").is_none());
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["job"], "wc");
        assert_eq!(lines[1]["operator"], "count");
        assert_eq!(lines[1]["subtask"], 2);
        assert_eq!(lines[1]["records"], 7);
        assert_eq!(lines[1]["level"], "WARN");
        assert!(lines[1]["timestamp"].is_string());
        // The inner span's value wins; the outer one's other fields stay.
        assert_eq!(lines[2]["subtask"], 3);
        assert_eq!(lines[2]["job"], "wc");
        assert_eq!(lines[2]["extra"], true);
    }

    #[test]
    fn fields_recorded_later_on_a_span_appear() {
        let lines = logged(|| {
            let span = tracing::info_span!("task", job = "j", operator = tracing::field::Empty);
            let _entered = span.enter();
            span.record("operator", "map");
            tracing::warn!("x");
        });
        assert_eq!(lines[0]["operator"], "map");
    }
}
