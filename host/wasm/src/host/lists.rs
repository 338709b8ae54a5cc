//! Reading the lists guests hand in (`value-write-many`,
//! `register-timers`; formats in `wit/operator.wit`). They come from the
//! guest, so every shape is possible: each error says what was wrong, and
//! nothing panics.

use crate::bindings::TimeDomain;

use super::GuestState;

/// `value-len` that clears the key (the value writes format).
const CLEAR: u32 = u32::MAX;

pub(super) struct ListReader<'a> {
    bytes: &'a [u8],
}

impl<'a> ListReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        ListReader { bytes }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let (word, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or("cut short in a length or number")?;
        self.bytes = rest;
        Ok(*word)
    }

    pub(super) fn u32(&mut self) -> Result<u32, &'static str> {
        self.array().map(u32::from_le_bytes)
    }

    fn take(&mut self, len: u32) -> Result<&'a [u8], &'static str> {
        let len = usize::try_from(len).map_err(|_| "a length over the address space")?;
        if len > self.bytes.len() {
            return Err("a key or value longer than what follows");
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    /// A key and its new value, `None` to clear it.
    pub(super) fn value_write(&mut self) -> Result<(&'a [u8], Option<&'a [u8]>), &'static str> {
        let key_len = self.u32()?;
        let key = self.take(key_len)?;
        match self.u32()? {
            CLEAR => Ok((key, None)),
            value_len => Ok((key, Some(self.take(value_len)?))),
        }
    }

    /// A timer of a timer batch: `(domain, key, timestamp)`.
    pub(super) fn timer(&mut self) -> Result<(TimeDomain, &'a [u8], i64), &'static str> {
        let timestamp = i64::from_le_bytes(self.array()?);
        let domain = match self.array::<1>()? {
            [0] => TimeDomain::EventTime,
            [1] => TimeDomain::ProcessingTime,
            _ => return Err("a time domain other than 0 or 1"),
        };
        let key_len = self.u32()?;
        Ok((domain, self.take(key_len)?, timestamp))
    }

    pub(super) fn is_done(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl GuestState {
    /// The trap for a malformed list handed to `call`.
    pub(super) fn malformed_list(&self, call: &str, what: &str) -> wasmtime::Error {
        wasmtime::format_err!(
            "operator `{}`: {call} got a malformed list ({what})",
            self.label
        )
    }
}
