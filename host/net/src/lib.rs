//! weir-net: the QUIC transport between weir nodes.
//!
//! What it does:
//! - [`tls`]: creates a cluster CA and per-node certificates (`weir cluster
//!   init`), loads a node's identity, and builds quinn configs that require
//!   mutual TLS 1.3 against that CA and nothing else.
//! - [`frame`]: the data frames that travel on a channel (batches,
//!   watermarks, idleness, barriers, end), rkyv-encoded with a length prefix
//!   and validated on decode.
//! - [`stream`]: frames and control messages over QUIC streams, with
//!   batching of small writes and a header naming the logical channel.
//! - [`endpoint`]: a node's QUIC endpoint, with connect/accept errors that
//!   say which side refused whom.
//!
//! Hot path: a batch is copied once on each side outside quinn.
//! [`FrameWriter::write_batch`] hands the batch's own `Vec` to quinn (only
//! the archive's few trailing bytes are encoded), and [`FrameReader`]
//! assembles a large frame in an allocation that then becomes the batch.
//! `benches/shuffle.rs` measures it against in-process channels.
//!
//! What it does not do: scheduling, routing of records to channels, retries
//! or reconnection, and validation of batch contents (the runtime validates
//! `Frame::Batch` bytes with `weir_core::Batch::from_bytes`). Backpressure is
//! QUIC flow control: a reader that stops reading stalls its writer once the
//! bounded windows in [`tls`] are full.

pub mod endpoint;
pub mod error;
pub mod frame;
pub mod stream;
pub mod tls;

/// Re-exported so users name `Connection` and streams without a quinn dependency.
pub use quinn;

pub use endpoint::Node;
pub use error::NetError;
pub use frame::{FRAME_BYTES_MAX, Frame, FrameError};
pub use stream::{ChannelHeader, FrameReader, FrameWriter};
pub use tls::{
    NODE_NAME_BYTES_MAX, NodeCert, NodeIdentity, Role, SERVER_NAME, check_node_name, check_peer,
    init_cluster, init_cluster_with,
};
