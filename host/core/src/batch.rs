//! The batch wire format shared by the host, the guest SDKs and the network.
//!
//! ```text
//! batch  := count:u32 record{count}
//! record := timestamp:i64 key-len:u32 key value-len:u32 value     (little-endian)
//! ```
//!
//! The host keeps batches in this encoded form end to end: a forward edge
//! hands the bytes to the next guest untouched, and a hash edge copies each
//! record's bytes into the target's builder without decoding key or value.

use std::fmt;

/// Timestamp value meaning "this record has no event time".
pub const NO_TIMESTAMP: i64 = i64::MIN;

const COUNT_LEN: usize = 4;
const RECORD_HEADER_LEN: usize = 8 + 4;

/// A malformed batch: truncated, or with lengths that run past its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is {0} bytes long, shorter than its 4-byte record count")]
    MissingCount(usize),
    #[error("record {index} of {count} runs past the end of the batch at byte {offset}")]
    Truncated {
        index: u32,
        count: u32,
        offset: usize,
    },
    #[error("batch has {extra} bytes after its last record")]
    TrailingBytes { extra: usize },
}

/// One record borrowed from a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub timestamp: Option<i64>,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// The record's full encoding, for copying it into another batch as is.
    pub encoded: &'a [u8],
}

/// An encoded, validated batch of records.
#[derive(Clone, PartialEq, Eq)]
pub struct Batch {
    bytes: Vec<u8>,
    len: u32,
    /// The earliest event time of its records ([`Batch::earliest`]).
    earliest: i64,
}

impl Batch {
    /// Validates `bytes` as a batch (for bytes from a guest or the network).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Batch, BatchError> {
        let (len, earliest) = validate(&bytes)?;
        Ok(Batch {
            bytes,
            len,
            earliest,
        })
    }

    /// The earliest event time of the records that have one; `i64::MAX`
    /// if none has. Known without a pass over the records, so a task can
    /// tell that none is late at a glance.
    pub fn earliest(&self) -> i64 {
        self.earliest
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes as the owned buffer (wasmtime's bindings take `&Vec<u8>`).
    pub fn as_vec(&self) -> &Vec<u8> {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            bytes: &self.bytes,
            offset: COUNT_LEN,
            remaining: self.len,
        }
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = RecordRef<'a>;
    type IntoIter = RecordIter<'a>;
    fn into_iter(self) -> RecordIter<'a> {
        self.iter()
    }
}

/// Iterates the records of a validated batch.
pub struct RecordIter<'a> {
    bytes: &'a [u8],
    offset: usize,
    remaining: u32,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<RecordRef<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // Lengths were checked by `validate`, so slicing cannot fail.
        let (record, end) =
            parse_record(self.bytes, self.offset).expect("batch validated on construction");
        self.offset = end;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl ExactSizeIterator for RecordIter<'_> {}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?))
}

fn read_i64(bytes: &[u8], at: usize) -> Option<i64> {
    let raw = bytes.get(at..at.checked_add(8)?)?;
    Some(i64::from_le_bytes(raw.try_into().ok()?))
}

/// Parses the record starting at `start`; returns it and where the next begins.
fn parse_record(bytes: &[u8], start: usize) -> Option<(RecordRef<'_>, usize)> {
    let timestamp = read_i64(bytes, start)?;
    let key_len = read_u32(bytes, start + 8)? as usize;
    let key_start = start + RECORD_HEADER_LEN;
    let key = bytes.get(key_start..key_start.checked_add(key_len)?)?;
    let value_len_at = key_start + key_len;
    let value_len = read_u32(bytes, value_len_at)? as usize;
    let value_start = value_len_at + 4;
    let end = value_start.checked_add(value_len)?;
    let value = bytes.get(value_start..end)?;
    let timestamp = (timestamp != NO_TIMESTAMP).then_some(timestamp);
    Some((
        RecordRef {
            timestamp,
            key,
            value,
            encoded: &bytes[start..end],
        },
        end,
    ))
}

/// The batch's record count and earliest event time, if it is well formed.
fn validate(bytes: &[u8]) -> Result<(u32, i64), BatchError> {
    let count = read_u32(bytes, 0).ok_or(BatchError::MissingCount(bytes.len()))?;
    let mut offset = COUNT_LEN;
    let mut earliest = i64::MAX;
    for index in 0..count {
        let (record, end) = parse_record(bytes, offset).ok_or(BatchError::Truncated {
            index,
            count,
            offset,
        })?;
        earliest = earliest_of(earliest, record.timestamp);
        offset = end;
    }
    if offset != bytes.len() {
        return Err(BatchError::TrailingBytes {
            extra: bytes.len() - offset,
        });
    }
    Ok((count, earliest))
}

/// `Some(NO_TIMESTAMP)` is written as no event time, so it counts as none.
fn earliest_of(earliest: i64, timestamp: Option<i64>) -> i64 {
    match timestamp {
        Some(t) if t != NO_TIMESTAMP => t.min(earliest),
        _ => earliest,
    }
}

/// Builds a batch by appending records.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    bytes: Vec<u8>,
    len: u32,
    earliest: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl BatchBuilder {
    pub fn with_capacity(bytes: usize) -> BatchBuilder {
        let mut buf = Vec::with_capacity(bytes.max(COUNT_LEN));
        buf.extend_from_slice(&0u32.to_le_bytes());
        BatchBuilder {
            bytes: buf,
            len: 0,
            earliest: i64::MAX,
        }
    }

    pub fn push(&mut self, timestamp: Option<i64>, key: &[u8], value: &[u8]) {
        self.bytes
            .extend_from_slice(&timestamp.unwrap_or(NO_TIMESTAMP).to_le_bytes());
        self.bytes
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(key);
        self.bytes
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(value);
        self.len += 1;
        self.earliest = earliest_of(self.earliest, timestamp);
    }

    /// Appends a record taken from another batch, without re-encoding it.
    pub fn push_encoded(&mut self, record: &RecordRef<'_>) {
        self.bytes.extend_from_slice(record.encoded);
        self.len += 1;
        self.earliest = earliest_of(self.earliest, record.timestamp);
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the batch holds so far, encoded (what a source's byte budget
    /// counts).
    pub fn encoded_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Finishes the batch and leaves the builder empty for reuse.
    pub fn take(&mut self) -> Batch {
        let capacity = self.bytes.capacity();
        let mut bytes =
            std::mem::replace(&mut self.bytes, Vec::with_capacity(capacity.min(1 << 20)));
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes[..COUNT_LEN].copy_from_slice(&self.len.to_le_bytes());
        let len = std::mem::take(&mut self.len);
        let earliest = std::mem::replace(&mut self.earliest, i64::MAX);
        Batch {
            bytes,
            len,
            earliest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_records() {
        let mut builder = BatchBuilder::default();
        builder.push(Some(42), b"k", b"value");
        builder.push(None, b"", b"");
        let batch = builder.take();
        let again = Batch::from_bytes(batch.as_bytes().to_vec()).unwrap();
        let records: Vec<_> = again
            .iter()
            .map(|r| (r.timestamp, r.key.to_vec(), r.value.to_vec()))
            .collect();
        assert_eq!(
            records,
            vec![
                (Some(42), b"k".to_vec(), b"value".to_vec()),
                (None, vec![], vec![])
            ]
        );
        assert!(builder.take().is_empty(), "builder is reusable after take");
    }

    /// The builder and validation agree on the earliest event time, which
    /// ignores records without one.
    #[test]
    fn knows_its_earliest_event_time() {
        let cases: [&[Option<i64>]; 5] = [
            &[],
            &[None],
            &[Some(7), None, Some(-3), Some(12)],
            &[Some(i64::MIN), Some(5)],
            &[Some(i64::MAX)],
        ];
        for timestamps in cases {
            let mut builder = BatchBuilder::default();
            for &t in timestamps {
                builder.push(t, b"k", b"v");
            }
            let built = builder.take();
            let expected = timestamps
                .iter()
                .flatten()
                .copied()
                .filter(|&t| t != NO_TIMESTAMP)
                .min()
                .unwrap_or(i64::MAX);
            assert_eq!(built.earliest(), expected, "{timestamps:?}");
            let parsed = Batch::from_bytes(built.as_bytes().to_vec()).unwrap();
            assert_eq!(parsed, built, "{timestamps:?}");
            let mut copied = BatchBuilder::default();
            for record in &parsed {
                copied.push_encoded(&record);
            }
            assert_eq!(copied.take(), built, "{timestamps:?}");
        }
    }

    #[test]
    fn push_encoded_copies_verbatim() {
        let mut a = BatchBuilder::default();
        a.push(Some(-5), b"key", b"v");
        let a = a.take();
        let mut b = BatchBuilder::default();
        for record in &a {
            b.push_encoded(&record);
        }
        assert_eq!(b.take(), a);
    }

    #[test]
    fn rejects_malformed_batches() {
        assert_eq!(
            Batch::from_bytes(vec![1, 0]),
            Err(BatchError::MissingCount(2))
        );
        let mut builder = BatchBuilder::default();
        builder.push(Some(1), b"key", b"value");
        let bytes = builder.take().into_bytes();
        let truncated = bytes[..bytes.len() - 1].to_vec();
        assert!(matches!(
            Batch::from_bytes(truncated),
            Err(BatchError::Truncated { index: 0, .. })
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Batch::from_bytes(trailing),
            Err(BatchError::TrailingBytes { extra: 1 })
        );
        let mut huge_len = bytes;
        huge_len[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Batch::from_bytes(huge_len).is_err());
    }
}
