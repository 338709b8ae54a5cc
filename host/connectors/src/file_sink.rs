//! Writes records as lines of text to a file or stdout.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use weir_core::job::SinkFormat;
use weir_core::{Batch, RecordRef};

use crate::{ConnectorError, Sink};

pub struct FileSink {
    target: String,
    out: Box<dyn Write + Send>,
    /// The file behind `out`, to sync at checkpoints (`None` for stdout).
    file: Option<File>,
    /// Bytes written since the file was empty.
    written: u64,
    format: SinkFormat,
    line: Vec<u8>,
}

impl FileSink {
    /// Creates (or truncates) the file at `path`, and its directory.
    pub fn create(path: &Path, format: SinkFormat) -> Result<Self, ConnectorError> {
        let target = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                ConnectorError(format!(
                    "cannot create directory for sink file {target}: {e}"
                ))
            })?;
        }
        let file = File::create(path)
            .map_err(|e| ConnectorError(format!("cannot create sink file {target}: {e}")))?;
        Self::over(target, file, 0, format)
    }

    /// Reopens the file a checkpoint saw, cut back to the length it had then.
    pub fn reopen(
        path: &Path,
        format: SinkFormat,
        state: &serde_json::Value,
    ) -> Result<Self, ConnectorError> {
        let target = path.display().to_string();
        let length = state
            .get("length")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| {
                ConnectorError(format!(
                    "sink file {target}: invalid checkpoint state {state}"
                ))
            })?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| ConnectorError(format!("cannot reopen sink file {target}: {e}")))?;
        let actual = file.metadata().map(|m| m.len()).unwrap_or(0);
        if actual < length {
            return Err(ConnectorError(format!(
                "sink file {target} has {actual} bytes, fewer than the {length} the checkpoint wrote: it was changed outside weir"
            )));
        }
        file.set_len(length)
            .map_err(|e| ConnectorError(format!("cannot truncate sink file {target}: {e}")))?;
        let mut file = file;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| ConnectorError(format!("cannot seek in sink file {target}: {e}")))?;
        Self::over(target, file, length, format)
    }

    fn over(
        target: String,
        file: File,
        written: u64,
        format: SinkFormat,
    ) -> Result<Self, ConnectorError> {
        let sync = file
            .try_clone()
            .map_err(|e| ConnectorError(format!("sink file {target}: {e}")))?;
        Ok(FileSink {
            target,
            out: Box::new(BufWriter::with_capacity(1 << 16, file)),
            file: Some(sync),
            written,
            format,
            line: Vec::new(),
        })
    }

    pub fn stdout(format: SinkFormat) -> Self {
        FileSink {
            target: "stdout".into(),
            out: Box::new(BufWriter::new(std::io::stdout())),
            file: None,
            written: 0,
            format,
            line: Vec::new(),
        }
    }
}

/// Formats one record as a line (with its newline) in `format`.
pub fn format_record(record: &RecordRef<'_>, format: SinkFormat, out: &mut Vec<u8>) {
    match format {
        SinkFormat::Value => out.extend_from_slice(record.value),
        SinkFormat::KeyValue => {
            out.extend_from_slice(record.key);
            out.push(b'\t');
            out.extend_from_slice(record.value);
        }
        SinkFormat::Jsonl => {
            let text = |bytes: &[u8]| {
                serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
            };
            // A value that is JSON already is embedded as JSON, not as a string.
            let value = serde_json::from_slice::<serde_json::Value>(record.value)
                .unwrap_or_else(|_| text(record.value));
            let line = serde_json::json!({ "key": text(record.key), "value": value, "timestamp": record.timestamp });
            out.extend_from_slice(line.to_string().as_bytes());
        }
    }
    out.push(b'\n');
}

impl Sink for FileSink {
    fn write(&mut self, batch: &Batch) -> Result<(), ConnectorError> {
        for record in batch {
            self.line.clear();
            format_record(&record, self.format, &mut self.line);
            self.out
                .write_all(&self.line)
                .map_err(|e| ConnectorError(format!("cannot write to {}: {e}", self.target)))?;
            self.written += self.line.len() as u64;
        }
        Ok(())
    }

    fn snapshot(&mut self, _id: u64) -> Result<serde_json::Value, ConnectorError> {
        self.finish()?;
        if let Some(file) = &self.file {
            file.sync_data()
                .map_err(|e| ConnectorError(format!("cannot sync {}: {e}", self.target)))?;
        }
        Ok(serde_json::json!({ "length": self.written }))
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        self.out
            .flush()
            .map_err(|e| ConnectorError(format!("cannot write to {}: {e}", self.target)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::BatchBuilder;

    #[test]
    fn formats_records() {
        let mut b = BatchBuilder::default();
        b.push(Some(3), b"k", b"{\"n\":1}");
        b.push(None, b"k2", b"plain");
        let batch = b.take();
        let lines = |format| {
            let mut out = Vec::new();
            for r in &batch {
                format_record(&r, format, &mut out);
            }
            String::from_utf8(out).unwrap()
        };
        assert_eq!(lines(SinkFormat::Value), "{\"n\":1}\nplain\n");
        assert_eq!(lines(SinkFormat::KeyValue), "k\t{\"n\":1}\nk2\tplain\n");
        assert_eq!(
            lines(SinkFormat::Jsonl),
            "{\"key\":\"k\",\"timestamp\":3,\"value\":{\"n\":1}}\n{\"key\":\"k2\",\"timestamp\":null,\"value\":\"plain\"}\n"
        );
    }
}
