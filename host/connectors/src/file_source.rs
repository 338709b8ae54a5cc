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
//! [`CALL_BYTES_MAX`] (plus one line) so the task gets back to its cancel
//! flag between chunks however the file looks.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use weir_core::BatchBuilder;
use weir_core::job::FileFormat;

use crate::{ConnectorError, Source, SourceStatus};

/// Bytes one [`Source::next_batch`] call reads before it returns (the line
/// that crosses the mark is finished first).
pub const CALL_BYTES_MAX: u64 = 4 << 20;

pub struct FileSource {
    path: PathBuf,
    reader: BufReader<File>,
    format: FileFormat,
    timestamp_field: Option<String>,
    key_field: Option<String>,
    max_line_bytes: usize,
    line_number: u64,
    /// Bytes of whole lines consumed so far.
    offset: u64,
    /// The current line's bytes (with its newline, if any).
    line_bytes: Vec<u8>,
    line: String,
    csv_header: Option<Vec<String>>,
    value: Vec<u8>,
}

impl FileSource {
    /// Opens the regular file at `path` (following symlinks); anything else
    /// is refused before it is opened, since opening a FIFO blocks.
    pub fn open(
        path: &Path,
        format: FileFormat,
        timestamp_field: Option<String>,
        key_field: Option<String>,
        max_line_bytes: usize,
    ) -> Result<Self, ConnectorError> {
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
        Ok(FileSource {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 16, file),
            format,
            timestamp_field,
            key_field,
            max_line_bytes,
            line_number: 0,
            offset: 0,
            line_bytes: Vec::new(),
            line: String::new(),
            csv_header: None,
            value: Vec::new(),
        })
    }

    fn error(&self, message: impl std::fmt::Display) -> ConnectorError {
        ConnectorError(format!(
            "{}:{}: {message}",
            self.path.display(),
            self.line_number
        ))
    }

    /// Turns the current line into (timestamp, key, value); `None` skips it.
    fn record(&mut self) -> Result<Option<(Option<i64>, Vec<u8>)>, ConnectorError> {
        let line = self.line.trim_end_matches(['\n', '\r']);
        match self.format {
            FileFormat::Lines => {
                self.value.clear();
                self.value.extend_from_slice(line.as_bytes());
                Ok(Some((None, Vec::new())))
            }
            FileFormat::Jsonl => {
                if line.trim().is_empty() {
                    return Ok(None);
                }
                let object: Map<String, Value> = match serde_json::from_str(line) {
                    Ok(Value::Object(o)) => o,
                    Ok(_) => return Err(self.error("expected a JSON object")),
                    Err(e) => return Err(self.error(format!("invalid JSON: {e}"))),
                };
                self.value.clear();
                self.value.extend_from_slice(line.trim().as_bytes());
                self.fields(&object).map(Some)
            }
            FileFormat::Csv => {
                if line.trim().is_empty() {
                    return Ok(None);
                }
                let fields = parse_csv_line(line).map_err(|e| self.error(e))?;
                let Some(header) = &self.csv_header else {
                    self.csv_header = Some(fields);
                    return Ok(None);
                };
                if fields.len() != header.len() {
                    return Err(self.error(format!(
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
                self.fields(&object).map(Some)
            }
        }
    }

    fn fields(
        &self,
        object: &Map<String, Value>,
    ) -> Result<(Option<i64>, Vec<u8>), ConnectorError> {
        let timestamp = match &self.timestamp_field {
            None => None,
            Some(field) => Some(match object.get(field) {
                Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
                    self.error(format!(
                        "timestamp field `{field}` = {n} is not integer milliseconds"
                    ))
                })?,
                Some(Value::String(s)) => s.trim().parse().map_err(|_| {
                    self.error(format!(
                        "timestamp field `{field}` = {s:?} is not integer milliseconds"
                    ))
                })?,
                Some(other) => {
                    return Err(self.error(format!(
                        "timestamp field `{field}` = {other} is not integer milliseconds"
                    )));
                }
                None => return Err(self.error(format!("timestamp field `{field}` is missing"))),
            }),
        };
        let key = match &self.key_field {
            None => Vec::new(),
            Some(field) => match object.get(field) {
                Some(Value::String(s)) => s.as_bytes().to_vec(),
                Some(other) => other.to_string().into_bytes(),
                None => return Err(self.error(format!("key field `{field}` is missing"))),
            },
        };
        Ok((timestamp, key))
    }
}

impl FileSource {
    /// Reads the next line into `self.line` without ever holding more than
    /// `max_line_bytes` (plus a buffer) of it; returns the bytes consumed,
    /// 0 at the end of the file.
    fn read_line(&mut self) -> Result<usize, ConnectorError> {
        self.line_bytes.clear();
        self.line.clear();
        let line_number = self.line_number + 1;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ConnectorError(format!(
                        "{}:{line_number}: cannot read: {e}",
                        self.path.display()
                    )));
                }
            };
            if available.is_empty() {
                break; // end of file; the last line may lack a newline
            }
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            self.line_bytes.extend_from_slice(&available[..take]);
            self.reader.consume(take);
            let content = self.line_bytes.len() - usize::from(done);
            if content > self.max_line_bytes {
                return Err(ConnectorError(format!(
                    "{}:{line_number}: line longer than max_line_bytes ({})",
                    self.path.display(),
                    self.max_line_bytes
                )));
            }
            if done {
                break;
            }
        }
        if self.line_bytes.is_empty() {
            return Ok(0);
        }
        self.line_number = line_number;
        match std::str::from_utf8(&self.line_bytes) {
            Ok(text) => self.line.push_str(text),
            Err(e) => {
                return Err(self.error(format!(
                    "not UTF-8 text (at byte {} of the line)",
                    e.valid_up_to()
                )));
            }
        }
        Ok(self.line_bytes.len())
    }
}

impl Source for FileSource {
    fn next_batch(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
    ) -> Result<SourceStatus, ConnectorError> {
        let mut added = 0;
        let mut read_this_call = 0u64;
        while added < max_records && read_this_call < CALL_BYTES_MAX {
            let read = self.read_line()?;
            if read == 0 {
                return Ok(SourceStatus::Finished);
            }
            read_this_call += read as u64;
            self.offset += read as u64;
            if let Some((timestamp, key)) = self.record()? {
                batch.push(timestamp, &key, &self.value);
                added += 1;
            }
        }
        Ok(SourceStatus::More)
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "offset": self.offset, "line": self.line_number })
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), ConnectorError> {
        let field = |name: &str| {
            position
                .get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| self.error(format!("invalid source position {position}")))
        };
        let (offset, line) = (field("offset")?, field("line")?);
        let len = self
            .reader
            .get_ref()
            .metadata()
            .map(|m| m.len())
            .unwrap_or(0);
        if offset > len {
            return Err(self.error(format!(
                "the checkpoint read up to byte {offset}, but the file now has {len} bytes"
            )));
        }
        // A CSV file's header comes first: read it again.
        while self.format == FileFormat::Csv && self.csv_header.is_none() && self.offset < offset {
            let mut batch = BatchBuilder::default();
            self.next_batch(&mut batch, 1)?;
        }
        self.reader
            .seek(SeekFrom::Start(offset))
            .map_err(|e| self.error(format!("cannot seek to byte {offset}: {e}")))?;
        self.offset = offset;
        self.line_number = line;
        Ok(())
    }
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
        let mut calls = 0;
        while source.next_batch(&mut b, 1000).unwrap() == SourceStatus::More {
            calls += 1;
        }
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
}
