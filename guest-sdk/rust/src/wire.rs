//! The batch and timer formats documented in `wit/operator.wit`.

use crate::Error;

pub(crate) const NO_TIMESTAMP: i64 = i64::MIN;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                Error::msg(format!(
                    "malformed batch from the host: {n} bytes wanted at offset {}",
                    self.at
                ))
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Error> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(crate) fn timestamp(&mut self) -> Result<Option<i64>, Error> {
        let t = self.i64()?;
        Ok((t != NO_TIMESTAMP).then_some(t))
    }
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
