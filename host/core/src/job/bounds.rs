//! Upper bounds of every number and size a job file may set.
//!
//! A job file comes from a tenant: each field is checked against a range
//! before anything is allocated for it, and the error names the line and the
//! field. The bounds are far above any sensible setting; they exist so that
//! a value cannot make a node allocate or loop without limit.

use std::fmt::Display;
use std::ops::RangeInclusive;

use toml::Spanned;

use super::JobError;
use super::lines::Cx;

/// Longest job file accepted, checked before parsing.
pub const JOB_TEXT_BYTES_MAX: usize = 1 << 20;
/// Longest name of a job, source, operator or sink.
pub const NAME_CHARS_MAX: usize = 64;
/// Longest path in a job file (Linux `PATH_MAX`).
pub const PATH_BYTES_MAX: usize = 4096;
/// Longest `timestamp_field` / `key_field`.
pub const FIELD_NAME_BYTES_MAX: usize = 256;
/// Sources, operators and sinks together.
pub const NODES_MAX: usize = 256;
/// Streams one operator or sink reads.
pub const INPUTS_MAX: usize = 64;

pub const PARALLELISM_MAX: u32 = 1024;
pub const MAX_PARALLELISM_MAX: u32 = 32768;
pub const BATCH_RECORDS_MAX: usize = 1_000_000;
pub const CHANNEL_BATCHES_MAX: usize = 1024;
/// Channels of the whole job (a hash edge between parallelism p and q has
/// p × q of them).
pub const CHANNELS_MAX: u64 = 1 << 20;
/// Channels × `channel_batches_max`: the batch slots the job's channels
/// allocate up front.
pub const CHANNEL_SLOTS_MAX: u64 = 1 << 23;
/// `channel_batches_max` when the job does not set it. With 8, a producer
/// whose consumer is a little slower blocked and was woken for nearly
/// every batch; Nexmark q5 (four threads on two cores) ran 9.3-10.7 s with
/// 8 and 7.6-8.0 s with 16.
pub const CHANNEL_BATCHES_DEFAULT: usize = 16;
/// The default instead when [`CHANNEL_BATCHES_DEFAULT`] would pass
/// [`CHANNEL_SLOTS_MAX`]: the limits are sized for it ([`CHANNELS_MAX`] ×
/// 8 is exactly the slot limit), so any job within the channel limit fits.
pub const CHANNEL_BATCHES_FALLBACK: usize = 8;
/// Any duration in a job file: 30 days.
pub const DURATION_MS_MAX: u64 = 30 * 24 * 3600 * 1000;
pub const CALL_TIMEOUT_MS_MAX: u64 = 3600 * 1000;
pub const RETAIN_MAX: usize = 1000;
pub const RESTART_ATTEMPTS_MAX: u32 = 10_000;

pub const GENERATOR_RECORDS_MAX: u64 = 1 << 62;
pub const GENERATOR_KEYS_MAX: u64 = 1 << 32;
pub const GENERATOR_VALUE_BYTES_MAX: usize = 16 << 20;
pub const RECORDS_PER_SECOND_MAX: u64 = 1_000_000_000;
/// Event times of generated records stay within ±`EVENT_TIME_MS_MAX`
/// (about 146,000 years around 1970), far from `i64` overflow.
pub const EVENT_TIME_MS_MAX: i64 = 1 << 62;
/// Longest line a file source accepts (`max_line_bytes`).
pub const LINE_BYTES_MAX: u64 = 256 << 20;
pub const LINE_BYTES_DEFAULT: usize = 1 << 20;

/// Entries of one operator's `config` table.
pub const CONFIG_ENTRIES_MAX: usize = 256;
/// Bytes of one operator's `config` keys and values as passed to `open`.
pub const CONFIG_BYTES_MAX: usize = 256 << 10;
/// `config` keys the host sets itself (see `weir_runtime::swaps` and the
/// `snapshots` promise in wit/operator.wit); a job file may not.
pub const RESERVED_CONFIG_PREFIX: &str = "weir.";

/// Per-operator guest limits: (field, range). Memory-like limits are in MiB.
pub const MEMORY_MAX_MB: RangeInclusive<u64> = 1..=4096;
pub const OUTPUT_MAX_MB: RangeInclusive<u64> = 1..=4096;
pub const KEY_MAX_BYTES: RangeInclusive<u64> = 1..=(16 << 20);
pub const STATE_VALUE_MAX_MB: RangeInclusive<u64> = 1..=1024;
pub const STATE_READ_MAX_MB: RangeInclusive<u64> = 1..=4096;
pub const STATE_MEMORY_MAX_MB: RangeInclusive<u64> = 1..=65536;
pub const TIMERS_MAX: RangeInclusive<u64> = 1..=100_000_000;
pub const TIMERS_MEMORY_MAX_MB: RangeInclusive<u64> = 1..=4096;
pub const LOG_LINES_PER_SECOND: RangeInclusive<u64> = 1..=100_000;

/// `value` (or `default` when absent) if it lies in `range`; else an error
/// at the value's line naming `owner` (e.g. "source `gen`: ") and `field`.
pub(super) fn bounded<T: Copy + PartialOrd + Display>(
    cx: &Cx<'_>,
    value: Option<&Spanned<T>>,
    default: T,
    range: RangeInclusive<T>,
    owner: &str,
    field: &str,
) -> Result<T, JobError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
        Some(v) => Err(out_of_range(cx, v, range, owner, field)),
    }
}

/// Like [`bounded`] for an optional field without a default.
pub(super) fn bounded_opt<T: Copy + PartialOrd + Display>(
    cx: &Cx<'_>,
    value: Option<&Spanned<T>>,
    range: RangeInclusive<T>,
    owner: &str,
    field: &str,
) -> Result<Option<T>, JobError> {
    match value {
        None => Ok(None),
        Some(v) => bounded(cx, Some(v), *v.get_ref(), range, owner, field).map(Some),
    }
}

fn out_of_range<T: Display>(
    cx: &Cx<'_>,
    v: &Spanned<T>,
    range: RangeInclusive<T>,
    owner: &str,
    field: &str,
) -> JobError {
    cx.err_at(
        v.span().start,
        format!(
            "{owner}field `{field}` = {} is out of range: it must be between {} and {}",
            v.get_ref(),
            range.start(),
            range.end()
        ),
    )
}

/// A string field no longer than `max` bytes and without NUL (which no
/// path or field name can hold).
pub(super) fn bounded_text<'s>(
    cx: &Cx<'_>,
    value: &'s Spanned<String>,
    max: usize,
    owner: &str,
    field: &str,
) -> Result<&'s str, JobError> {
    let text = value.get_ref();
    if text.len() > max {
        return Err(cx.err_at(
            value.span().start,
            format!(
                "{owner}field `{field}` is {} bytes long; at most {max} are allowed",
                text.len()
            ),
        ));
    }
    if text.contains('\0') {
        return Err(cx.err_at(
            value.span().start,
            format!("{owner}field `{field}` contains a NUL character"),
        ));
    }
    Ok(text)
}

/// Refuses the first of `fields` (name, present) that is set on a source of
/// `kind`: it belongs to another kind of source.
pub(super) fn none_of(
    cx: &Cx<'_>,
    at: usize,
    owner: &str,
    kind: &str,
    fields: &[(&str, bool)],
) -> Result<(), JobError> {
    match fields.iter().find(|(_, present)| *present) {
        Some((field, _)) => Err(cx.err_at(
            at,
            format!("{owner}field `{field}` does not apply to a {kind} source"),
        )),
        None => Ok(()),
    }
}
