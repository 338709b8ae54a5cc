//! Reads a text file: plain lines, JSON lines, or CSV with a header.
//!
//! Every error names the file and line. Timestamps come from a named field
//! holding integer milliseconds since the Unix epoch; keys from a named
//! field (a string as is, anything else as JSON text).
//!
//! The file comes from a job file, so it is read defensively: only regular
//! files are opened (a FIFO, a device such as `/dev/zero` or a directory
//! would block or never end), a line longer than `max_line_bytes` fails the
//! job instead of being buffered, and one call reads at most
//! [`CALL_BYTES_MAX`] (plus one line) and scans at most [`SCAN_BYTES_MAX`]
//! so the task gets back to its cancel flag between chunks however the file
//! looks.
//!
//! One source reads one split: a list of byte ranges, each owning the lines
//! whose first byte lies in it (see [`crate::splits`]). Before its first
//! line a split starting mid-file counts the newlines before its start, so
//! errors still name the right line, and skips the line that straddles its
//! start (an earlier range owns it). Every CSV split reads the header from
//! the start of the file; the header line itself is never a record.
//!
//! A line that cannot be parsed (not UTF-8, not a JSON object, a missing or
//! mistyped key or timestamp field, a CSV row of the wrong width, or longer
//! than `max_line_bytes`) fails the job unless the source's
//! `on_parse_error` skips it or sends it to the dead-letter stream (see
//! [`crate::parse_errors`]). A tolerated over-long line is read past without
//! being buffered; its dead letter holds its first `max_line_bytes` bytes.
//! A bad CSV header always fails: without it no row can be read.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use weir_core::BatchBuilder;
use weir_core::job::{FileFormat, OnParseError};

use crate::json_fields::{JsonFields, KeyAndTime};
use crate::parse_errors::{ParseErrorCounts, ParseErrors};
use crate::splits::{FilePosition, split_range};
use crate::{ConnectorError, Source, SourceStatus};

/// Bytes one [`Source::next_batch`] call reads before it returns (the line
/// that crosses the mark is finished first).
pub const CALL_BYTES_MAX: u64 = 4 << 20;

/// Bytes one call scans for newlines without parsing them (counting lines
/// up to a split's start, skipping the line that straddles it) before it
/// returns. Counting is much cheaper than parsing, hence the larger budget.
pub const SCAN_BYTES_MAX: u64 = 256 << 20;

/// The CSV header, found lazily: every split needs it, only one holds it.
enum Header {
    /// Still looking, from byte `at`, which starts line `number`.
    Unread { at: u64, number: u64 },
    /// The file has no non-blank line.
    Absent,
    /// The first non-blank line, starting at byte `start`.
    At { start: u64, fields: Vec<String> },
}

/// A record's timestamp and key.
type Fields = (Option<i64>, Vec<u8>);

/// Where a record's value is.
enum ValueAt {
    /// These bytes of the line (lines and JSON lines: no copy).
    Line(std::ops::Range<usize>),
    /// `FileSource::value` (CSV: built from the fields).
    Built,
}

/// What a line holds.
enum Parsed {
    Record(Fields, ValueAt),
    /// A blank line or the CSV header: no record, no error.
    Nothing,
    /// A line that cannot be parsed, and why.
    Bad(String),
}

/// How aligning to the current range ended.
enum Align {
    /// `offset` is the range's first line start.
    Ready,
    /// The scan budget of this call is spent.
    Pending,
    /// No line starts in the range.
    Empty,
    /// The file ended: no line starts anywhere further.
    EndOfFile,
}

pub struct FileSource {
    path: PathBuf,
    reader: BufReader<File>,
    format: FileFormat,
    timestamp_field: Option<String>,
    key_field: Option<String>,
    /// The same two fields, read from JSON lines without building a `Value`.
    json_fields: JsonFields,
    max_line_bytes: usize,
    /// Byte ranges still to read, ascending; the first is the current one.
    ranges: VecDeque<(u64, u64)>,
    /// Whether `offset` is a line start within (or just past) `ranges[0]`
    /// and every line of it before `offset` has been read.
    aligned: bool,
    /// Where the reader is.
    offset: u64,
    /// Newlines in `[0, offset)`: the number of the line ending before it.
    newlines: u64,
    /// Start of the line holding `offset` (`offset` itself at a line start).
    line_start: u64,
    /// The current line's number, for errors.
    line_number: u64,
    /// The current line's bytes (with its newline, if any; only the first
    /// `max_line_bytes` of a tolerated over-long line); not yet checked to
    /// be UTF-8.
    line_bytes: Vec<u8>,
    /// Whether the current line ended with a newline.
    line_ended: bool,
    /// Why the current line cannot be parsed before its text is looked at
    /// (too long), under a tolerant `on_parse_error`.
    line_problem: Option<String>,
    header: Header,
    value: Vec<u8>,
    /// [`CALL_BYTES_MAX`] and [`SCAN_BYTES_MAX`], smaller in tests.
    call_bytes_max: u64,
    scan_bytes_max: u64,
    parse_errors: ParseErrors,
}

impl FileSource {
    /// Opens the regular file at `path` (following symlinks) to read all of
    /// it, as the only split.
    pub fn open(
        path: &Path,
        format: FileFormat,
        timestamp_field: Option<String>,
        key_field: Option<String>,
        max_line_bytes: usize,
    ) -> Result<Self, ConnectorError> {
        Self::open_split(
            path,
            format,
            timestamp_field,
            key_field,
            max_line_bytes,
            0,
            1,
        )
    }

    /// Opens split `split` of `splits` of the regular file at `path`
    /// (following symlinks): the lines starting in
    /// [`split_range`]`(len, split, splits)`, `len` being the file's size
    /// now. Anything but a regular file is refused before it is opened,
    /// since opening a FIFO blocks.
    pub fn open_split(
        path: &Path,
        format: FileFormat,
        timestamp_field: Option<String>,
        key_field: Option<String>,
        max_line_bytes: usize,
        split: u32,
        splits: u32,
    ) -> Result<Self, ConnectorError> {
        if split >= splits {
            return Err(ConnectorError(format!(
                "source file {}: split {split} of {splits} does not exist",
                path.display()
            )));
        }
        let cannot = |e: &dyn std::fmt::Display| {
            ConnectorError(format!("cannot open source file {}: {e}", path.display()))
        };
        let not_regular = |kind: &str| {
            ConnectorError(format!(
                "source file {} is {kind}, not a regular file; a file source reads regular files only",
                path.display()
            ))
        };
        let kind_of = |t: std::fs::FileType| {
            use std::os::unix::fs::FileTypeExt;
            if t.is_dir() {
                "a directory"
            } else if t.is_fifo() {
                "a FIFO"
            } else if t.is_char_device() || t.is_block_device() {
                "a device"
            } else if t.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            }
        };
        let meta = std::fs::metadata(path).map_err(|e| cannot(&e))?;
        if !meta.is_file() {
            return Err(not_regular(kind_of(meta.file_type())));
        }
        let file = File::open(path).map_err(|e| cannot(&e))?;
        // Checked again on the open file: the path may have changed between.
        let meta = file.metadata().map_err(|e| cannot(&e))?;
        if !meta.is_file() {
            return Err(not_regular(kind_of(meta.file_type())));
        }
        let (start, end) = split_range(meta.len(), split, splits);
        let mut source = FileSource {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 16, file),
            format,
            json_fields: JsonFields::new(timestamp_field.clone(), key_field.clone()),
            timestamp_field,
            key_field,
            max_line_bytes,
            ranges: VecDeque::new(),
            aligned: false,
            offset: 0,
            newlines: 0,
            line_start: 0,
            line_number: 0,
            line_bytes: Vec::new(),
            line_ended: false,
            line_problem: None,
            header: Header::Unread { at: 0, number: 1 },
            value: Vec::new(),
            call_bytes_max: CALL_BYTES_MAX,
            scan_bytes_max: SCAN_BYTES_MAX,
            parse_errors: ParseErrors::new("", OnParseError::Fail),
        };
        let ranges = if start < end {
            vec![(start, end)]
        } else {
            Vec::new()
        };
        source.restart(ranges, None)?;
        Ok(source)
    }

    /// Applies source `name`'s `on_parse_error` (the default fails on the
    /// first bad line).
    pub fn with_parse_errors(mut self, name: &str, policy: OnParseError) -> Self {
        self.parse_errors = ParseErrors::new(name, policy);
        self
    }

    fn tolerant(&self) -> bool {
        self.parse_errors.policy() != OnParseError::Fail
    }

    /// The current line cannot be parsed for `reason`: an error naming the
    /// file and line under `fail`, otherwise skipped or dead-lettered.
    fn reject(&mut self, reason: String) -> Result<(), ConnectorError> {
        if !self.tolerant() {
            return Err(self.error(reason));
        }
        let whole: &[u8] = &self.line_bytes;
        let raw = whole.strip_suffix(b"\n").unwrap_or(whole);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let at = format!("line {}", self.line_number);
        self.parse_errors.reject(&at, raw, &reason)
    }

    /// Reads `ranges` from now on; `line` counts the newlines before the
    /// first range's start, which is then a line start. Without it, lines
    /// are counted from the start of the file.
    fn restart(
        &mut self,
        ranges: Vec<(u64, u64)>,
        line: Option<u64>,
    ) -> Result<(), ConnectorError> {
        self.ranges = ranges.into();
        let known = self.ranges.front().zip(line);
        (self.offset, self.newlines) = match known {
            Some((&(start, _), line)) => (start, line),
            None => (0, 0),
        };
        self.line_start = self.offset;
        self.line_number = self.newlines;
        self.aligned = known.is_some();
        let offset = self.offset;
        self.reader
            .seek(SeekFrom::Start(offset))
            .map_err(|e| self.error(format!("cannot seek to byte {offset}: {e}")))?;
        Ok(())
    }

    /// Tiny budgets make every path that stops mid-way run in tests.
    #[cfg(test)]
    pub(crate) fn set_budgets(&mut self, call_bytes: u64, scan_bytes: u64) {
        (self.call_bytes_max, self.scan_bytes_max) = (call_bytes, scan_bytes);
    }

    fn error(&self, message: impl std::fmt::Display) -> ConnectorError {
        ConnectorError(format!(
            "{}:{}: {message}",
            self.path.display(),
            self.line_number
        ))
    }

    fn read_error(&self, e: std::io::Error) -> ConnectorError {
        self.error(format!("cannot read: {e}"))
    }

    /// Turns `line`, the current line's text, which starts at byte
    /// `start`, into (timestamp, key, value).
    fn record(&mut self, line: &str, start: u64) -> Result<Parsed, ConnectorError> {
        let line = line.trim_end_matches(['\n', '\r']);
        match self.format {
            FileFormat::Lines => Ok(Parsed::Record(
                (None, Vec::new()),
                ValueAt::Line(0..line.len()),
            )),
            FileFormat::Jsonl => {
                let trimmed = line.trim();
                if trimmed.is_empty() {
                    return Ok(Parsed::Nothing);
                }
                match self.json_fields.extract(line) {
                    Ok(KeyAndTime { timestamp, key }) => {
                        let from = line.len() - line.trim_start().len();
                        let value = from..from + trimmed.len();
                        Ok(Parsed::Record((timestamp, key), ValueAt::Line(value)))
                    }
                    Err(reason) => Ok(Parsed::Bad(reason)),
                }
            }
            FileFormat::Csv => {
                if line.trim().is_empty() {
                    return Ok(Parsed::Nothing);
                }
                let header = match &self.header {
                    Header::At { start: at, .. } if *at == start => return Ok(Parsed::Nothing),
                    Header::At { fields, .. } => fields,
                    // The header is the first non-blank line: only a file
                    // changed under the reader gets here.
                    _ => return Err(self.error("no CSV header before this line")),
                };
                let fields = match parse_csv_line(line) {
                    Ok(fields) => fields,
                    Err(e) => return Ok(Parsed::Bad(e)),
                };
                if fields.len() != header.len() {
                    return Ok(Parsed::Bad(format!(
                        "{} fields, but the header has {}",
                        fields.len(),
                        header.len()
                    )));
                }
                let object: Map<String, Value> = header
                    .iter()
                    .cloned()
                    .zip(fields.into_iter().map(Value::String))
                    .collect();
                self.value = serde_json::to_vec(&object).map_err(|e| self.error(e))?;
                Ok(self.fields(&object))
            }
        }
    }

    fn fields(&self, object: &Map<String, Value>) -> Parsed {
        let not_millis = |field: &str, value: &dyn std::fmt::Display| {
            Parsed::Bad(format!(
                "timestamp field `{field}` = {value} is not integer milliseconds"
            ))
        };
        let timestamp = match &self.timestamp_field {
            None => None,
            Some(field) => Some(match object.get(field) {
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(ts) => ts,
                    None => return not_millis(field, n),
                },
                Some(Value::String(s)) => match s.trim().parse() {
                    Ok(ts) => ts,
                    Err(_) => return not_millis(field, &format_args!("{s:?}")),
                },
                Some(other) => return not_millis(field, other),
                None => return Parsed::Bad(format!("timestamp field `{field}` is missing")),
            }),
        };
        let key = match &self.key_field {
            None => Vec::new(),
            Some(field) => match object.get(field) {
                Some(Value::String(s)) => s.as_bytes().to_vec(),
                Some(other) => other.to_string().into_bytes(),
                None => return Parsed::Bad(format!("key field `{field}` is missing")),
            },
        };
        Parsed::Record((timestamp, key), ValueAt::Built)
    }
}

/// Reading lines and scanning past them.
impl FileSource {
    /// Reads the line at the reader, line `number`, into `line_bytes` without
    /// ever holding more than `max_line_bytes` (plus a buffer) of it;
    /// returns the bytes consumed, 0 at the end of the file. Under a
    /// tolerant `on_parse_error` a line too long is consumed whole and
    /// leaves `line_problem` set instead of failing. Whether it is UTF-8 is
    /// checked where its text is needed, once ([`as_text`]).
    fn read_line(&mut self, number: u64) -> Result<usize, ConnectorError> {
        self.line_bytes.clear();
        self.line_number = number;
        self.line_ended = false;
        self.line_problem = None;
        let mut consumed = 0;
        let mut too_long = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ConnectorError(format!(
                        "{}:{number}: cannot read: {e}",
                        self.path.display()
                    )));
                }
            };
            if available.is_empty() {
                break; // end of file; the last line may lack a newline
            }
            let (take, done) = match memchr::memchr(b'\n', available) {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            if !too_long {
                self.line_bytes.extend_from_slice(&available[..take]);
            }
            self.reader.consume(take);
            consumed += take;
            let content = consumed - usize::from(done);
            if content > self.max_line_bytes && !too_long {
                if !self.tolerant() {
                    return Err(self.too_long());
                }
                // Read past the rest without keeping it.
                too_long = true;
                self.line_bytes.truncate(self.max_line_bytes);
            }
            if done {
                self.line_ended = true;
                break;
            }
        }
        if consumed == 0 {
            return Ok(0);
        }
        if too_long {
            self.line_problem = Some(format!(
                "line longer than max_line_bytes ({0}); raw holds its first {0} bytes",
                self.max_line_bytes
            ));
            return Ok(consumed);
        }
        Ok(consumed)
    }

    fn too_long(&self) -> ConnectorError {
        self.error(format!(
            "line longer than max_line_bytes ({})",
            self.max_line_bytes
        ))
    }

    /// Moves the reader on, counting newlines, until `offset` reaches
    /// `target` (`Some`) or is just past a newline (`None`); stops early at
    /// the end of the file or once `budget` is spent. Returns whether it
    /// got there.
    fn scan(&mut self, target: Option<u64>, budget: &mut u64) -> Result<bool, ConnectorError> {
        loop {
            if target.is_some_and(|t| self.offset >= t) {
                return Ok(true);
            }
            if *budget == 0 {
                return Ok(false);
            }
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(e)),
            };
            if available.is_empty() {
                return Ok(false);
            }
            let mut take = available
                .len()
                .min(usize::try_from(*budget).unwrap_or(usize::MAX));
            let mut found = false;
            match target {
                Some(t) => {
                    take = take.min(usize::try_from(t - self.offset).unwrap_or(usize::MAX));
                    let chunk = &available[..take];
                    let newlines = chunk.iter().filter(|&&b| b == b'\n').count();
                    if let Some(last) = chunk.iter().rposition(|&b| b == b'\n') {
                        self.line_start = self.offset + last as u64 + 1;
                    }
                    self.newlines += newlines as u64;
                }
                None => {
                    if let Some(at) = available[..take].iter().position(|&b| b == b'\n') {
                        take = at + 1;
                        found = true;
                    }
                }
            }
            self.reader.consume(take);
            self.offset += take as u64;
            *budget -= take as u64;
            let content = self.offset - self.line_start - u64::from(found);
            if target.is_none() && content > self.max_line_bytes as u64 && !self.tolerant() {
                // The split that owns this line fails on it the same way
                // (or, under a tolerant policy, skips it).
                self.line_number = self.newlines + 1;
                return Err(self.too_long());
            }
            if found {
                self.newlines += 1;
                self.line_start = self.offset;
                return Ok(true);
            }
        }
    }

    /// Moves to the first line start of the current range: counts the
    /// newlines up to its start, then skips the rest of a line straddling it.
    fn align(&mut self, budget: &mut u64) -> Result<Align, ConnectorError> {
        let Some(&(start, end)) = self.ranges.front() else {
            return Ok(Align::EndOfFile);
        };
        if self.offset < start && !self.scan(Some(start), budget)? {
            return Ok(if *budget == 0 {
                Align::Pending
            } else {
                Align::EndOfFile
            });
        }
        // Past the start without a line start in between (a line of an
        // earlier range ran over it), or at it: the next line start is the
        // first of the range.
        if self.line_start != self.offset && !self.scan(None, budget)? {
            return Ok(if *budget == 0 {
                Align::Pending
            } else {
                Align::EndOfFile
            });
        }
        if self.offset >= end {
            return Ok(Align::Empty);
        }
        self.aligned = true;
        Ok(Align::Ready)
    }

    /// Finds the CSV header (the file's first non-blank line), reading from
    /// the start of the file within `budget`; returns whether it is known.
    fn read_header(&mut self, budget: &mut u64) -> Result<bool, ConnectorError> {
        let Header::Unread { mut at, mut number } = self.header else {
            return Ok(true);
        };
        self.reader
            .seek(SeekFrom::Start(at))
            .map_err(|e| self.error(format!("cannot seek to byte {at}: {e}")))?;
        let found = loop {
            if *budget == 0 {
                self.header = Header::Unread { at, number };
                break false;
            }
            let read = self.read_line(number)?;
            if read == 0 {
                self.header = Header::Absent;
                break true;
            }
            if let Some(problem) = self.line_problem.clone() {
                return Err(self.error(format!("the CSV header cannot be read: {problem}")));
            }
            let line = as_text(&self.line_bytes).map_err(|problem| {
                self.error(format!("the CSV header cannot be read: {problem}"))
            })?;
            if !line.trim().is_empty() {
                let text = line.trim_end_matches(['\n', '\r']);
                let fields = parse_csv_line(text).map_err(|e| self.error(e))?;
                self.header = Header::At { start: at, fields };
                break true;
            }
            at += read as u64;
            number += 1;
            *budget = budget.saturating_sub(read as u64);
        };
        let offset = self.offset;
        self.reader
            .seek(SeekFrom::Start(offset))
            .map_err(|e| self.error(format!("cannot seek to byte {offset}: {e}")))?;
        Ok(found)
    }
}

impl Source for FileSource {
    fn next_batch(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
    ) -> Result<SourceStatus, ConnectorError> {
        let mut added = 0;
        let mut read_budget = self.call_bytes_max;
        let mut scan_budget = self.scan_bytes_max;
        loop {
            let Some(&(_, end)) = self.ranges.front() else {
                return Ok(SourceStatus::Finished);
            };
            if self.aligned && self.offset >= end {
                self.ranges.pop_front();
                self.aligned = false;
                continue;
            }
            if added >= max_records || read_budget == 0 {
                return Ok(SourceStatus::More);
            }
            if !self.aligned {
                match self.align(&mut scan_budget)? {
                    Align::Ready => {}
                    Align::Pending => return Ok(SourceStatus::More),
                    Align::Empty => {
                        self.ranges.pop_front();
                        continue;
                    }
                    Align::EndOfFile => {
                        self.ranges.clear();
                        return Ok(SourceStatus::Finished);
                    }
                }
            }
            if self.format == FileFormat::Csv && !self.read_header(&mut read_budget)? {
                return Ok(SourceStatus::More);
            }
            let start = self.offset;
            let read = self.read_line(self.newlines + 1)?;
            if read == 0 {
                // The file is shorter than when the ranges were cut.
                self.ranges.clear();
                return Ok(SourceStatus::Finished);
            }
            read_budget = read_budget.saturating_sub(read as u64);
            self.offset += read as u64;
            if self.line_ended {
                self.newlines += 1;
                self.line_start = self.offset;
            }
            if let Some(problem) = self.line_problem.clone() {
                self.reject(problem)?;
                continue;
            }
            // The line's buffer is lent out while its text is parsed (so
            // `record` may change the rest of `self`), and put back.
            let bytes = std::mem::take(&mut self.line_bytes);
            let parsed = match as_text(&bytes) {
                Ok(line) => self.record(line, start),
                Err(problem) => Ok(Parsed::Bad(problem)),
            };
            self.line_bytes = bytes;
            match parsed? {
                Parsed::Record((timestamp, key), at) => {
                    let value = match at {
                        ValueAt::Line(range) => &self.line_bytes[range],
                        ValueAt::Built => &self.value[..],
                    };
                    batch.push(timestamp, &key, value);
                    added += 1;
                }
                Parsed::Nothing => {}
                Parsed::Bad(reason) => self.reject(reason)?,
            }
        }
    }

    fn drain_dead_letters(&mut self, out: &mut BatchBuilder) {
        self.parse_errors.drain_into(out);
    }

    fn parse_error_counts(&self) -> ParseErrorCounts {
        self.parse_errors.counts()
    }

    /// `{"ranges": [[start, end], ...], "line": n}` (see [`crate::splits`]).
    fn position(&self) -> Value {
        let mut ranges: Vec<(u64, u64)> = self.ranges.iter().copied().collect();
        let mut line = None;
        if let Some(first) = ranges.first_mut() {
            if self.aligned {
                first.0 = self.offset;
                line = Some(self.newlines);
            } else if first.0 == self.offset && self.line_start == self.offset {
                line = Some(self.newlines);
            }
            if first.0 >= first.1 {
                // Read to its end: the next range's line is not known yet.
                ranges.remove(0);
                line = None;
            }
        }
        FilePosition { ranges, line }.to_json()
    }

    /// Accepts [`Source::position`]'s form and the older single-split
    /// `{"offset": o, "line": n}`, which reads from `o` to the end.
    fn seek(&mut self, position: &Value) -> Result<(), ConnectorError> {
        let file = self.reader.get_ref();
        let mut len = || {
            file.metadata()
                .map(|m| m.len())
                .map_err(|e| format!("cannot read the file's size: {e}"))
        };
        let position = FilePosition::parse(position, &mut len)
            .map_err(|e| ConnectorError(format!("{}: {e}", self.path.display())))?;
        self.restart(position.ranges, position.line)
    }
}

/// A line's bytes as text, or why they are not. simdutf8 checks ASCII 32
/// bytes at a time (std's check was 10% of the source thread on Nexmark's
/// lines); only a line that fails asks std where the bad byte is.
fn as_text(bytes: &[u8]) -> Result<&str, String> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| {
        let at = std::str::from_utf8(bytes)
            .err()
            .map_or(0, |e| e.valid_up_to());
        format!("not UTF-8 text (at byte {at} of the line)")
    })
}

/// One CSV record per line (quoted fields with `""` escapes; no embedded newlines).
fn parse_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    match reader.records().next() {
        Some(Ok(record)) => Ok(record.iter().map(str::to_string).collect()),
        Some(Err(e)) => Err(format!("invalid CSV: {e}")),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        format: FileFormat,
        text: &str,
        ts: Option<&str>,
        key: Option<&str>,
    ) -> Result<Vec<(Option<i64>, String, String)>, ConnectorError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, text).unwrap();
        let mut source = FileSource::open(
            &path,
            format,
            ts.map(Into::into),
            key.map(Into::into),
            1 << 20,
        )?;
        let mut b = BatchBuilder::default();
        while source.next_batch(&mut b, 2)? == SourceStatus::More {}
        Ok(b.take()
            .iter()
            .map(|r| {
                (
                    r.timestamp,
                    String::from_utf8_lossy(r.key).into(),
                    String::from_utf8_lossy(r.value).into(),
                )
            })
            .collect())
    }

    #[test]
    fn seeking_to_a_position_resumes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, "a,b\n1,x\n2,y\n3,z\n").unwrap();
        let open =
            || FileSource::open(&path, FileFormat::Csv, None, Some("a".into()), 1 << 20).unwrap();
        let mut first = open();
        let mut b = BatchBuilder::default();
        first.next_batch(&mut b, 1).unwrap();
        let position = first.position();
        let mut resumed = open();
        resumed.seek(&position).unwrap();
        let mut b = BatchBuilder::default();
        resumed.next_batch(&mut b, 10).unwrap();
        let keys: Vec<_> = b.take().iter().map(|r| r.key.to_vec()).collect();
        assert_eq!(keys, vec![b"2".to_vec(), b"3".to_vec()]);
        let e = resumed
            .seek(&serde_json::json!({"offset": 999, "line": 9}))
            .unwrap_err();
        assert!(e.to_string().contains("now has"), "{e}");
    }

    #[test]
    fn reads_lines() {
        let records = read(FileFormat::Lines, "a b\n\nc\r\n", None, None).unwrap();
        assert_eq!(
            records.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
            ["a b", "", "c"]
        );
    }

    #[test]
    fn reads_json_lines_with_timestamp_and_key() {
        let records = read(
            FileFormat::Jsonl,
            "{\"ts\":5,\"acct\":\"x\"}\n\n{\"ts\":\"7\",\"acct\":3}\n",
            Some("ts"),
            Some("acct"),
        )
        .unwrap();
        assert_eq!(
            records[0],
            (Some(5), "x".into(), "{\"ts\":5,\"acct\":\"x\"}".into())
        );
        assert_eq!((records[1].0, records[1].1.as_str()), (Some(7), "3"));
    }

    #[test]
    fn reads_csv_as_json_objects() {
        let records = read(
            FileFormat::Csv,
            "ts,word\n10,\"a,b\"\n",
            Some("ts"),
            Some("word"),
        )
        .unwrap();
        assert_eq!(
            records,
            vec![(
                Some(10),
                "a,b".into(),
                "{\"ts\":\"10\",\"word\":\"a,b\"}".into()
            )]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = read(
            FileFormat::Jsonl,
            "{\"ts\":1}\n{\"x\":2}\n",
            Some("ts"),
            None,
        )
        .unwrap_err();
        assert!(
            e.0.ends_with("in:2: timestamp field `ts` is missing"),
            "{e}"
        );
        let e = read(FileFormat::Jsonl, "{oops\n", None, None).unwrap_err();
        assert!(e.0.contains("in:1: invalid JSON"), "{e}");
        let e = read(FileFormat::Csv, "a,b\n1\n", None, None).unwrap_err();
        assert!(e.0.contains("in:2: 1 fields, but the header has 2"), "{e}");
    }

    fn open_lines(path: &Path, max_line_bytes: usize) -> Result<FileSource, ConnectorError> {
        FileSource::open(path, FileFormat::Lines, None, None, max_line_bytes)
    }

    fn drain(source: &mut FileSource) -> Result<Vec<String>, ConnectorError> {
        let mut b = BatchBuilder::default();
        while source.next_batch(&mut b, 1000)? == SourceStatus::More {}
        Ok(b.take()
            .iter()
            .map(|r| String::from_utf8_lossy(r.value).into_owned())
            .collect())
    }

    #[test]
    fn a_line_longer_than_the_limit_fails_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        // Exactly at the limit passes; a newline does not count.
        std::fs::write(&path, "12345\nabc\n").unwrap();
        assert_eq!(
            drain(&mut open_lines(&path, 5).unwrap()).unwrap(),
            ["12345", "abc"]
        );
        std::fs::write(&path, "ok\n123456\nnever read\n").unwrap();
        let e = drain(&mut open_lines(&path, 5).unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("{}:2: line longer than max_line_bytes (5)", path.display())
        );
        // A last line without a newline, much larger than the reader's buffer.
        let mut big = "x".repeat(3 << 20);
        big.insert_str(0, "first\n");
        std::fs::write(&path, &big).unwrap();
        let e = drain(&mut open_lines(&path, 1 << 20).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("in:2: line longer than max_line_bytes (1048576)"),
            "{e}"
        );
        // Under the limit, the same last line is read whole.
        assert_eq!(
            drain(&mut open_lines(&path, 4 << 20).unwrap()).unwrap()[1].len(),
            3 << 20
        );
    }

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_lines(dir.path(), 100).err().unwrap().to_string();
        assert!(e.contains("is a directory, not a regular file"), "{e}");
        let e = open_lines(Path::new("/dev/zero"), 100)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "source file /dev/zero is a device, not a regular file; a file source reads regular files only"
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Opening a FIFO for reading would block until a writer came.
            let e = open_lines(&fifo, 100).err().unwrap().to_string();
            assert!(e.contains("is a FIFO"), "{e}");
        }
        // A symlink to a regular file is fine; to a device it is not.
        std::fs::write(dir.path().join("real"), "a\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        assert_eq!(
            drain(&mut open_lines(&dir.path().join("link"), 100).unwrap()).unwrap(),
            ["a"]
        );
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        assert!(open_lines(&dir.path().join("zero"), 100).is_err());
    }

    #[test]
    fn one_call_reads_a_bounded_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        // Blank lines are skipped without producing records: without a byte
        // budget one call would read the whole file.
        std::fs::write(&path, "\n".repeat(3 * CALL_BYTES_MAX as usize)).unwrap();
        let mut source = FileSource::open(&path, FileFormat::Jsonl, None, None, 100).unwrap();
        let mut b = BatchBuilder::default();
        let mut calls = 1;
        while source.next_batch(&mut b, 1000).unwrap() == SourceStatus::More {
            calls += 1;
        }
        // The third call reads the last chunk and sees the end.
        assert_eq!(calls, 3);
        assert!(b.take().is_empty());
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, b"a\n\xff\n").unwrap();
        let e = drain(&mut open_lines(&path, 100).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("in:2: not UTF-8 text (at byte 0 of the line)"),
            "{e}"
        );
    }

    /// Every record and dead letter of split `split` of `splits` of `text`
    /// read under `policy`, and the split's counts.
    fn read_tolerant(
        format: FileFormat,
        text: &[u8],
        policy: OnParseError,
        max_line_bytes: usize,
        (split, splits): (u32, u32),
    ) -> (Vec<String>, Vec<Value>, ParseErrorCounts) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, text).unwrap();
        let mut source = FileSource::open_split(
            &path,
            format,
            Some("ts".into()).filter(|_| format != FileFormat::Lines),
            None,
            max_line_bytes,
            split,
            splits,
        )
        .unwrap()
        .with_parse_errors("src", policy);
        source.set_budgets(7, 5);
        let (mut b, mut dead) = (BatchBuilder::default(), BatchBuilder::default());
        loop {
            let status = source.next_batch(&mut b, 2).unwrap();
            source.drain_dead_letters(&mut dead);
            if status == SourceStatus::Finished {
                break;
            }
        }
        let values = b
            .take()
            .iter()
            .map(|r| String::from_utf8_lossy(r.value).into_owned())
            .collect();
        let dead = dead
            .take()
            .iter()
            .map(|r| serde_json::from_slice(r.value).unwrap())
            .collect();
        (values, dead, source.parse_error_counts())
    }

    const MIXED: &str = "{\"ts\":1}\n{oops\n[1]\n{\"ts\":\"x\"}\n{\"id\":4}\n\n{\"ts\":2}\n";

    #[test]
    fn skip_drops_every_kind_of_bad_json_line_and_counts_it() {
        let (values, dead, counts) = read_tolerant(
            FileFormat::Jsonl,
            MIXED.as_bytes(),
            OnParseError::Skip,
            100,
            (0, 1),
        );
        assert_eq!(values, ["{\"ts\":1}", "{\"ts\":2}"]);
        assert!(dead.is_empty());
        assert_eq!(
            counts,
            ParseErrorCounts {
                skipped: 4,
                dead_lettered: 0
            }
        );
    }

    #[test]
    fn dead_letters_carry_the_line_the_reason_and_the_raw_text() {
        let (values, dead, counts) = read_tolerant(
            FileFormat::Jsonl,
            MIXED.as_bytes(),
            OnParseError::DeadLetter,
            100,
            (0, 1),
        );
        assert_eq!(values, ["{\"ts\":1}", "{\"ts\":2}"]);
        assert_eq!(counts.dead_lettered, 4);
        let at: Vec<_> = dead.iter().map(|d| d["at"].as_str().unwrap()).collect();
        assert_eq!(at, ["line 2", "line 3", "line 4", "line 5"]);
        assert_eq!(dead[0]["raw"], "{oops");
        assert!(
            dead[0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON")
        );
        assert_eq!(dead[1]["reason"], "expected a JSON object");
        assert_eq!(
            dead[2]["reason"],
            "timestamp field `ts` = \"x\" is not integer milliseconds"
        );
        assert_eq!(dead[3]["reason"], "timestamp field `ts` is missing");
        assert!(dead.iter().all(|d| d["source"] == "src"));
    }

    #[test]
    fn csv_rows_of_the_wrong_width_and_bad_utf8_are_dead_lettered() {
        let text = b"ts,w\n1,a\n2\n3,b,c\n4,\xff\n5,e\r\n";
        let (values, dead, _) =
            read_tolerant(FileFormat::Csv, text, OnParseError::DeadLetter, 100, (0, 1));
        assert_eq!(
            values,
            ["{\"ts\":\"1\",\"w\":\"a\"}", "{\"ts\":\"5\",\"w\":\"e\"}"]
        );
        let reasons: Vec<_> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
        assert_eq!(
            reasons,
            [
                "1 fields, but the header has 2",
                "3 fields, but the header has 2",
                "not UTF-8 text (at byte 2 of the line)"
            ]
        );
        assert_eq!(dead[2]["raw_hex"], "342cff");
        // Under fail the same file stops at the first bad row, as before.
        let e = read(
            FileFormat::Csv,
            std::str::from_utf8(&text[..14]).unwrap(),
            None,
            None,
        )
        .unwrap_err();
        assert!(e.0.ends_with("in:3: 1 fields, but the header has 2"), "{e}");
    }

    #[test]
    fn an_over_long_line_is_skipped_once_whichever_split_sees_it() {
        // Line 2 is 40 bytes, over the 10-byte limit, and crosses the
        // boundary between the two splits.
        let long = "y".repeat(40);
        let text = format!("a\n{long}\nb\nc\n");
        let mut all = Vec::new();
        let mut total = ParseErrorCounts::default();
        let mut letters = Vec::new();
        for split in 0..2 {
            let (values, dead, counts) = read_tolerant(
                FileFormat::Lines,
                text.as_bytes(),
                OnParseError::DeadLetter,
                10,
                (split, 2),
            );
            all.extend(values);
            letters.extend(dead);
            total.add(counts);
        }
        assert_eq!(all, ["a", "b", "c"]);
        assert_eq!(total.dead_lettered, 1);
        assert_eq!(letters[0]["at"], "line 2");
        assert_eq!(letters[0]["raw"], "y".repeat(10));
        assert_eq!(
            letters[0]["reason"],
            "line longer than max_line_bytes (10); raw holds its first 10 bytes"
        );
    }
}
