//! Errors of the stream layer: what went wrong reading or writing a stream.

use crate::frame::FrameError;

/// A failure on a stream: the transport, or bytes that do not decode.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("reading stream: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("writing stream: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream already closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("{what} of {bytes} bytes is longer than the maximum of {max_bytes} bytes")]
    TooLong {
        what: &'static str,
        bytes: usize,
        max_bytes: usize,
    },
    #[error("stream ended inside a {what}: expected {expected_bytes} bytes, got {got_bytes}")]
    Truncated {
        what: &'static str,
        expected_bytes: usize,
        got_bytes: usize,
    },
    #[error("stream ended before the channel header")]
    MissingHeader,
    #[error("invalid {what} JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}
