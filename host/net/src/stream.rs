//! Frames and control messages over QUIC streams.
//!
//! A data channel is one unidirectional stream: a [`ChannelHeader`] naming
//! the logical channel, then frames (see [`crate::frame`]) until the stream
//! finishes. Control messages are `len:u32 LE` + JSON on any stream; raw
//! byte blobs (artifacts) use the same framing without JSON.

use quinn::{ReadExactError, RecvStream, SendStream};
use rkyv::util::AlignedVec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::NetError;
use crate::frame::{self, FRAME_PREFIX_BYTES, Frame};

/// A writer sends once it has buffered this much: large enough to amortise
/// the per-write cost in quinn, small enough to keep latency low when the
/// caller also flushes on idle.
pub const FLUSH_BYTES: usize = 64 << 10;
/// Batches at least this large are sent without copying them into the write
/// buffer, and frames at least this large are received into their own
/// allocation, which becomes the batch without another copy.
pub const ZERO_COPY_BYTES_MIN: usize = 16 << 10;
/// Initial read buffer of a [`FrameReader`]; grows for larger frames.
pub const READ_BUFFER_BYTES: usize = 256 << 10;
/// Longest encoded [`ChannelHeader`].
pub const HEADER_BYTES_MAX: usize = 4 << 10;
/// Longest control message. A message carries a job file and names, never
/// bulk data; tenant text in it is cut to a few KiB before it gets here. A
/// longer message is refused before a byte of it is sent, so the stream
/// stays usable (see [`write_message`]).
pub const CONTROL_MESSAGE_BYTES_MAX: usize = 16 << 20;
/// Longest blob (artifacts travel as blobs).
pub const BLOB_BYTES_MAX: usize = 256 << 20;
/// Largest step by which a message buffer grows ahead of the data arriving,
/// so a bogus length cannot make us allocate the whole maximum up front.
const MESSAGE_GROWTH_BYTES_MAX: usize = 1 << 20;

/// Names the logical channel a data stream carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelHeader {
    pub job: String,
    pub attempt: u32,
    pub channel: u32,
}

/// Writes frames to a stream, batching small frames into larger writes.
pub struct FrameWriter {
    send: SendStream,
    buf: Vec<u8>,
    flush_bytes: usize,
}

impl FrameWriter {
    pub fn new(send: SendStream) -> FrameWriter {
        FrameWriter::with_flush_bytes(send, FLUSH_BYTES)
    }

    pub fn with_flush_bytes(send: SendStream, flush_bytes: usize) -> FrameWriter {
        FrameWriter {
            send,
            buf: Vec::with_capacity(flush_bytes),
            flush_bytes,
        }
    }

    /// Buffers `frame`, sending the buffer once it reaches the flush size.
    /// Waits while the peer's flow-control window is full (backpressure).
    pub async fn write(&mut self, frame: &Frame) -> Result<(), NetError> {
        frame::encode(frame, &mut self.buf)?;
        if self.buf.len() >= self.flush_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes `Frame::Batch(bytes)`, taking the bytes: a large batch goes to
    /// the stream as is instead of being copied into the buffer first.
    pub async fn write_batch(&mut self, bytes: Vec<u8>) -> Result<(), NetError> {
        if bytes.len() < ZERO_COPY_BYTES_MIN {
            return self.write(&Frame::Batch(bytes)).await;
        }
        match frame::encode_batch_parts(bytes)? {
            Ok(parts) => {
                // Buffered frames, then this one's prefix, keep their order.
                self.buf.extend_from_slice(&parts.prefix);
                let head = std::mem::replace(&mut self.buf, Vec::with_capacity(self.flush_bytes));
                self.send
                    .write_all_chunks(&mut [head.into(), parts.bytes.into(), parts.tail.into()])
                    .await?;
                Ok(())
            }
            Err(bytes) => self.write(&Frame::Batch(bytes)).await,
        }
    }

    /// Sends whatever is buffered.
    pub async fn flush(&mut self) -> Result<(), NetError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // Hand the buffer to quinn as is (Vec -> Bytes does not copy) instead
        // of `write_all`, which would copy it into quinn's own buffer.
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.flush_bytes));
        self.send.write_chunk(full.into()).await?;
        Ok(())
    }

    /// Bytes buffered and not yet handed to the stream.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Flushes and finishes the stream (the reader then sees a clean end).
    pub async fn finish(mut self) -> Result<(), NetError> {
        self.flush().await?;
        self.send.finish()?;
        Ok(())
    }

    /// The underlying stream, e.g. to `reset` it on abort.
    pub fn stream_mut(&mut self) -> &mut SendStream {
        &mut self.send
    }
}

/// Reads frames from a stream, in large reads into a reused buffer.
pub struct FrameReader {
    recv: RecvStream,
    /// Bytes received; `buf[start..end]` is not yet decoded.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    scratch: AlignedVec,
}

impl FrameReader {
    pub fn new(recv: RecvStream) -> FrameReader {
        FrameReader {
            recv,
            buf: vec![0; READ_BUFFER_BYTES],
            start: 0,
            end: 0,
            scratch: AlignedVec::new(),
        }
    }

    /// The next frame; `None` once the stream has cleanly ended between
    /// frames. A stream that ends inside a frame is an error.
    pub async fn next(&mut self) -> Result<Option<Frame>, NetError> {
        loop {
            let pending = &self.buf[self.start..self.end];
            let mut needed_bytes = FRAME_PREFIX_BYTES;
            if let Some(prefix) = pending.first_chunk::<FRAME_PREFIX_BYTES>() {
                needed_bytes = FRAME_PREFIX_BYTES + frame::archive_len(*prefix)?;
                // Large frames (batches) always go to their own allocation:
                // one copy, against two (alignment, then batch) from `buf`.
                if needed_bytes >= ZERO_COPY_BYTES_MIN {
                    return self
                        .next_large(needed_bytes - FRAME_PREFIX_BYTES)
                        .await
                        .map(Some);
                }
                if pending.len() >= needed_bytes {
                    let archive = &pending[FRAME_PREFIX_BYTES..needed_bytes];
                    let frame = frame::decode_archive(archive, &mut self.scratch)?;
                    self.start += needed_bytes;
                    return Ok(Some(frame));
                }
            }
            if !self.fill(needed_bytes).await? {
                let got_bytes = self.end - self.start;
                if got_bytes == 0 {
                    return Ok(None);
                }
                return Err(NetError::Truncated {
                    what: "frame",
                    expected_bytes: needed_bytes,
                    got_bytes,
                });
            }
        }
    }

    /// Receives a large frame (its prefix is buffered) into an allocation of
    /// its own, so that a batch needs no further copy.
    async fn next_large(&mut self, archive_bytes: usize) -> Result<Frame, NetError> {
        // The length is the peer's word: the buffer grows as bytes arrive.
        let mut archive = Vec::with_capacity(archive_bytes.min(MESSAGE_GROWTH_BYTES_MAX));
        let buffered_end = self
            .end
            .min(self.start + FRAME_PREFIX_BYTES + archive_bytes);
        extend_toward(
            &mut archive,
            &self.buf[self.start + FRAME_PREFIX_BYTES..buffered_end],
            archive_bytes,
        );
        self.start = buffered_end;
        while archive.len() < archive_bytes {
            let want = archive_bytes - archive.len();
            let Some(chunk) = self.recv.read_chunk(want, true).await? else {
                return Err(NetError::Truncated {
                    what: "frame",
                    expected_bytes: FRAME_PREFIX_BYTES + archive_bytes,
                    got_bytes: FRAME_PREFIX_BYTES + archive.len(),
                });
            };
            extend_toward(&mut archive, &chunk.bytes, archive_bytes);
        }
        Ok(frame::decode_archive_owned(archive, &mut self.scratch)?)
    }

    /// Reads more bytes, making room for a frame of `needed_bytes` first.
    /// Returns false at the end of the stream.
    async fn fill(&mut self, needed_bytes: usize) -> Result<bool, NetError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start + needed_bytes > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if needed_bytes > self.buf.len() {
            self.buf.resize(needed_bytes, 0);
        }
        match self.recv.read(&mut self.buf[self.end..]).await? {
            Some(read) => {
                self.end += read;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The underlying stream, e.g. to `stop` it when no longer interested.
    pub fn stream_mut(&mut self) -> &mut RecvStream {
        &mut self.recv
    }
}

/// Opens a unidirectional data stream for the channel and sends its header.
pub async fn open_channel(
    conn: &quinn::Connection,
    header: &ChannelHeader,
) -> Result<FrameWriter, NetError> {
    let mut send = conn.open_uni().await?;
    let json = serde_json::to_vec(header).map_err(|source| NetError::Json {
        what: "channel header",
        source,
    })?;
    let mut bytes = encode_len("channel header", json.len(), HEADER_BYTES_MAX)?.to_vec();
    bytes.extend_from_slice(&json);
    // Sent at once: the peer only learns of a stream when data arrives.
    send.write_all(&bytes).await?;
    Ok(FrameWriter::new(send))
}

/// Reads the header of a data stream the peer opened.
pub async fn accept_channel(
    mut recv: RecvStream,
) -> Result<(ChannelHeader, FrameReader), NetError> {
    let Some(bytes) = read_sized(&mut recv, "channel header", HEADER_BYTES_MAX).await? else {
        return Err(NetError::MissingHeader);
    };
    let header = serde_json::from_slice(&bytes).map_err(|source| NetError::Json {
        what: "channel header",
        source,
    })?;
    Ok((header, FrameReader::new(recv)))
}

/// Sends `msg` as `len:u32 LE` + JSON. A message over
/// [`CONTROL_MESSAGE_BYTES_MAX`] (or one that does not encode) is refused
/// with [`NetError::TooLong`] (or [`NetError::Json`]) before anything is
/// written: the stream is intact and the caller may send something else.
pub async fn write_message<T: Serialize>(send: &mut SendStream, msg: &T) -> Result<(), NetError> {
    let json = encode_message(msg)?;
    write_sized(send, "message", &json, CONTROL_MESSAGE_BYTES_MAX).await
}

/// Sends a message encoded by [`encode_message`].
pub async fn write_encoded(send: &mut SendStream, json: &[u8]) -> Result<(), NetError> {
    write_sized(send, "message", json, CONTROL_MESSAGE_BYTES_MAX).await
}

/// A message's JSON, refused if over [`CONTROL_MESSAGE_BYTES_MAX`].
pub fn encode_message<T: Serialize>(msg: &T) -> Result<Vec<u8>, NetError> {
    let json = serde_json::to_vec(msg).map_err(|source| NetError::Json {
        what: "message",
        source,
    })?;
    encode_len("message", json.len(), CONTROL_MESSAGE_BYTES_MAX)?;
    Ok(json)
}

/// Reads one JSON message; `None` if the stream ended cleanly before it.
/// Any bad message is an error; see [`read_control_message`] to refuse one
/// message and carry on.
pub async fn read_message<T: DeserializeOwned>(
    recv: &mut RecvStream,
) -> Result<Option<T>, NetError> {
    let Some(bytes) = read_sized(recv, "message", CONTROL_MESSAGE_BYTES_MAX).await? else {
        return Ok(None);
    };
    let msg = serde_json::from_slice(&bytes).map_err(|source| NetError::Json {
        what: "message",
        source,
    })?;
    Ok(Some(msg))
}

/// One message off a stream that carries many: either the message, or why
/// this one was refused while the stream stays usable.
#[derive(Debug)]
pub enum Received<T> {
    Message(T),
    /// Over [`CONTROL_MESSAGE_BYTES_MAX`] (its bytes were read and dropped
    /// without being kept) or not valid JSON of the expected type.
    Refused(NetError),
}

/// Reads one JSON message; `None` if the stream ended cleanly before it.
/// A message that is too long or does not decode is refused on its own
/// ([`Received::Refused`]): one bad message must not cost the connection
/// that carries a whole worker. Errors are of the stream itself.
pub async fn read_control_message<T: DeserializeOwned>(
    recv: &mut RecvStream,
) -> Result<Option<Received<T>>, NetError> {
    let Some(len) = read_prefix(recv, "message").await? else {
        return Ok(None);
    };
    if len > CONTROL_MESSAGE_BYTES_MAX {
        skip(recv, "message", len).await?;
        return Ok(Some(Received::Refused(NetError::TooLong {
            what: "message",
            bytes: len,
            max_bytes: CONTROL_MESSAGE_BYTES_MAX,
        })));
    }
    let bytes = read_body(recv, "message", len).await?;
    Ok(Some(match serde_json::from_slice(&bytes) {
        Ok(msg) => Received::Message(msg),
        Err(source) => Received::Refused(NetError::Json {
            what: "message",
            source,
        }),
    }))
}

/// Sends raw bytes as `len:u32 LE` + bytes (no JSON escaping of artifacts).
pub async fn write_blob(send: &mut SendStream, bytes: &[u8]) -> Result<(), NetError> {
    write_sized(send, "blob", bytes, BLOB_BYTES_MAX).await
}

/// Reads one blob; `None` if the stream ended cleanly before it.
pub async fn read_blob(recv: &mut RecvStream) -> Result<Option<Vec<u8>>, NetError> {
    read_sized(recv, "blob", BLOB_BYTES_MAX).await
}

fn encode_len(what: &'static str, bytes: usize, max_bytes: usize) -> Result<[u8; 4], NetError> {
    if bytes > max_bytes {
        return Err(NetError::TooLong {
            what,
            bytes,
            max_bytes,
        });
    }
    // Every maximum here is below u32::MAX.
    Ok((bytes as u32).to_le_bytes())
}

async fn write_sized(
    send: &mut SendStream,
    what: &'static str,
    bytes: &[u8],
    max_bytes: usize,
) -> Result<(), NetError> {
    let prefix = encode_len(what, bytes.len(), max_bytes)?;
    send.write_all(&prefix).await?;
    send.write_all(bytes).await?;
    Ok(())
}

async fn read_sized(
    recv: &mut RecvStream,
    what: &'static str,
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, NetError> {
    let Some(len) = read_prefix(recv, what).await? else {
        return Ok(None);
    };
    if len > max_bytes {
        return Err(NetError::TooLong {
            what,
            bytes: len,
            max_bytes,
        });
    }
    read_body(recv, what, len).await.map(Some)
}

/// The length prefix of the next message; `None` at a clean end.
async fn read_prefix(recv: &mut RecvStream, what: &'static str) -> Result<Option<usize>, NetError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(got_bytes)) => {
            return Err(NetError::Truncated {
                what,
                expected_bytes: 4,
                got_bytes,
            });
        }
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    Ok(Some(u32::from_le_bytes(prefix) as usize))
}

/// Reads and drops `len` bytes without keeping them.
async fn skip(recv: &mut RecvStream, what: &'static str, len: usize) -> Result<(), NetError> {
    let mut skipped = 0;
    while skipped < len {
        let want = (len - skipped).min(MESSAGE_GROWTH_BYTES_MAX);
        let Some(chunk) = recv.read_chunk(want, true).await? else {
            return Err(NetError::Truncated {
                what,
                expected_bytes: len,
                got_bytes: skipped,
            });
        };
        skipped += chunk.bytes.len();
    }
    Ok(())
}

/// Appends `chunk` to `buf`, which is filling up to `total_bytes`: the
/// capacity at most doubles per step and never passes `total_bytes`, so
/// memory follows the bytes received, not the length a peer announced, and
/// a full buffer has no slack (it becomes a batch as it is).
fn extend_toward(buf: &mut Vec<u8>, chunk: &[u8], total_bytes: usize) {
    let needed = buf.len() + chunk.len();
    if needed > buf.capacity() {
        let target = needed.max(buf.capacity() * 2).min(total_bytes.max(needed));
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(chunk);
}

/// Reads a message body of `len` bytes (already checked against a bound).
async fn read_body(
    recv: &mut RecvStream,
    what: &'static str,
    len: usize,
) -> Result<Vec<u8>, NetError> {
    let mut bytes = Vec::with_capacity(len.min(MESSAGE_GROWTH_BYTES_MAX));
    while bytes.len() < len {
        let want = (len - bytes.len()).min(MESSAGE_GROWTH_BYTES_MAX);
        let Some(chunk) = recv.read_chunk(want, true).await? else {
            return Err(NetError::Truncated {
                what,
                expected_bytes: len,
                got_bytes: bytes.len(),
            });
        };
        bytes.extend_from_slice(&chunk.bytes);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_frame_buffer_grows_with_the_bytes_received() {
        // A peer announcing a 64 MiB frame and sending 64 KiB costs 1 MiB.
        let claimed = 64 << 20;
        let mut buf = Vec::with_capacity(claimed.min(MESSAGE_GROWTH_BYTES_MAX));
        extend_toward(&mut buf, &[1u8; 64 << 10], claimed);
        assert!(
            buf.capacity() <= MESSAGE_GROWTH_BYTES_MAX,
            "{}",
            buf.capacity()
        );
        // Filled to the end: at most twice what arrived, and never past it.
        let total = (3 << 20) + 5;
        let mut buf = Vec::with_capacity(total.min(MESSAGE_GROWTH_BYTES_MAX));
        let chunk = vec![7u8; 100_000];
        while buf.len() < total {
            let n = chunk.len().min(total - buf.len());
            extend_toward(&mut buf, &chunk[..n], total);
            assert!(
                buf.capacity() <= (2 * buf.len()).max(MESSAGE_GROWTH_BYTES_MAX).min(total),
                "{} bytes held for {} received",
                buf.capacity(),
                buf.len()
            );
        }
        assert_eq!(buf.len(), total);
        assert!(buf.iter().all(|&b| b == 7));
    }
}
