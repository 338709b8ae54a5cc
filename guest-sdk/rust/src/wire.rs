//! The batch, timer and value writes formats documented in
//! `wit/operator.wit`.

use std::marker::PhantomData;

use crate::Error;
use crate::host::TimeDomain;

pub(crate) const NO_TIMESTAMP: i64 = i64::MIN;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    // The readers are inlined into the record loops (a call each cost 20%
    // of a map operator's time in Wasm); the error stays out of line.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        match self.bytes.get(self.at..).and_then(|rest| rest.get(..n)) {
            Some(slice) => {
                self.at += n;
                Ok(slice)
            }
            None => Err(self.too_short(n)),
        }
    }

    #[cold]
    #[inline(never)]
    fn too_short(&self, n: usize) -> Error {
        Error::msg(format!(
            "malformed batch from the host: {n} bytes wanted at offset {}",
            self.at
        ))
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    #[inline]
    pub(crate) fn i64(&mut self) -> Result<i64, Error> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(crate) fn domain(&mut self) -> Result<TimeDomain, Error> {
        match self.u8()? {
            0 => Ok(TimeDomain::EventTime),
            1 => Ok(TimeDomain::ProcessingTime),
            other => Err(Error::msg(format!(
                "malformed timer batch: unknown time domain {other}"
            ))),
        }
    }

    #[inline]
    pub(crate) fn timestamp(&mut self) -> Result<Option<i64>, Error> {
        let t = self.i64()?;
        Ok((t != NO_TIMESTAMP).then_some(t))
    }
}

/// `value-len` that clears the key in the value writes format.
pub(crate) const CLEAR: u32 = u32::MAX;

/// A list in one of the formats that start with `count:u32` (value
/// writes, timer batches), built in a buffer that is kept for the next.
pub(crate) struct CountedList<Format> {
    bytes: Vec<u8>,
    count: u32,
    format: PhantomData<Format>,
}

/// `keyed-state.value-write-many`'s list.
pub(crate) struct Writes;
/// A timer batch (the `on-timers` format), for `register-timers`.
pub(crate) struct Timers;

pub(crate) type ValueWrites = CountedList<Writes>;
pub(crate) type TimerBatch = CountedList<Timers>;

impl<Format> CountedList<Format> {
    pub(crate) fn new() -> Self {
        CountedList {
            bytes: vec![0; 4],
            count: 0,
            format: PhantomData,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The list so far; [`CountedList::reset`] starts the next one.
    pub(crate) fn get(&mut self) -> &[u8] {
        self.bytes[..4].copy_from_slice(&self.count.to_le_bytes());
        &self.bytes
    }

    pub(crate) fn reset(&mut self) {
        self.bytes.truncate(4);
        self.count = 0;
    }

    /// Counts one more entry and gives the buffer to append it to.
    fn entry(&mut self) -> &mut Vec<u8> {
        self.count += 1;
        &mut self.bytes
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    crate::bytes::extend(out, bytes);
}

impl ValueWrites {
    pub(crate) fn set(&mut self, key: &[u8], value: &[u8]) {
        let out = self.entry();
        put_bytes(out, key);
        put_bytes(out, value);
    }

    pub(crate) fn clear(&mut self, key: &[u8]) {
        let out = self.entry();
        put_bytes(out, key);
        out.extend_from_slice(&CLEAR.to_le_bytes());
    }
}

impl TimerBatch {
    pub(crate) fn push(&mut self, domain: TimeDomain, key: &[u8], timestamp: i64) {
        let out = self.entry();
        out.extend_from_slice(&timestamp.to_le_bytes());
        out.push(match domain {
            TimeDomain::EventTime => 0,
            TimeDomain::ProcessingTime => 1,
        });
        put_bytes(out, key);
    }
}

/// Reads a timer batch: `(domain, key, timestamp)`.
pub(crate) fn timers(bytes: &[u8]) -> Result<Vec<(TimeDomain, &[u8], i64)>, Error> {
    let mut reader = Reader::new(bytes);
    let count = reader.u32()?;
    let mut timers = Vec::new();
    for _ in 0..count {
        let timestamp = reader.i64()?;
        let domain = reader.domain()?;
        timers.push((domain, reader.bytes()?, timestamp));
    }
    Ok(timers)
}

/// Reads a value writes list: `(key, Some(value))` to set, `(key, None)`
/// to clear.
pub(crate) fn value_writes(bytes: &[u8]) -> Result<Vec<(&[u8], Option<&[u8]>)>, Error> {
    let mut reader = Reader::new(bytes);
    let count = reader.u32()?;
    let mut writes = Vec::new();
    for _ in 0..count {
        let key = reader.bytes()?;
        let value = match reader.u32()? {
            CLEAR => None,
            len => Some(reader.take(len as usize)?),
        };
        writes.push((key, value));
    }
    Ok(writes)
}

/// Accumulates output records in the batch format.
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
    count: u32,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Reserving about the input's size up front spares a map-like operator
    /// the repeated grow-and-copy of its output buffer.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        let mut buffer = Vec::with_capacity(bytes.max(4));
        buffer.extend_from_slice(&0u32.to_le_bytes());
        Writer {
            bytes: buffer,
            count: 0,
        }
    }

    /// Starts a record; the caller then appends key and value with
    /// [`Writer::field`].
    pub(crate) fn begin(&mut self, timestamp: Option<i64>) {
        self.bytes
            .extend_from_slice(&timestamp.unwrap_or(NO_TIMESTAMP).to_le_bytes());
        self.count += 1;
    }

    /// Appends a length-prefixed field produced by `fill`.
    pub(crate) fn field(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        let len_at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        fill(&mut self.bytes);
        let len = (self.bytes.len() - len_at - 4) as u32;
        self.bytes[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.bytes[..4].copy_from_slice(&self.count.to_le_bytes());
        self.bytes
    }
}
