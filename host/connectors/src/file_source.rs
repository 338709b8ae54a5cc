//! Reads a text file: plain lines, JSON lines, or CSV with a header.
//!
//! Every error names the file and line. Timestamps come from a named field
//! holding integer milliseconds since the Unix epoch; keys from a named
//! field (a string as is, anything else as JSON text).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use weir_core::BatchBuilder;
use weir_core::job::FileFormat;

use crate::{ConnectorError, Source, SourceStatus};

pub struct FileSource {
    path: PathBuf,
    reader: BufReader<File>,
    format: FileFormat,
    timestamp_field: Option<String>,
    key_field: Option<String>,
    line_number: u64,
    /// Bytes of whole lines consumed so far.
    offset: u64,
    line: String,
    csv_header: Option<Vec<String>>,
    value: Vec<u8>,
}

impl FileSource {
    pub fn open(
        path: &Path,
        format: FileFormat,
        timestamp_field: Option<String>,
        key_field: Option<String>,
    ) -> Result<Self, ConnectorError> {
        let file = File::open(path).map_err(|e| {
            ConnectorError(format!("cannot open source file {}: {e}", path.display()))
        })?;
        Ok(FileSource {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 16, file),
            format,
            timestamp_field,
            key_field,
            line_number: 0,
            offset: 0,
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

impl Source for FileSource {
    fn next_batch(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
    ) -> Result<SourceStatus, ConnectorError> {
        let mut added = 0;
        while added < max_records {
            self.line.clear();
            let read = self.reader.read_line(&mut self.line).map_err(|e| {
                ConnectorError(format!(
                    "{}:{}: cannot read: {e}",
                    self.path.display(),
                    self.line_number + 1
                ))
            })?;
            if read == 0 {
                return Ok(SourceStatus::Finished);
            }
            self.offset += read as u64;
            self.line_number += 1;
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
        let mut source = FileSource::open(&path, format, ts.map(Into::into), key.map(Into::into))?;
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
        let open = || FileSource::open(&path, FileFormat::Csv, None, Some("a".into())).unwrap();
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
}
