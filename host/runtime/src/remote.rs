//! Channels whose producer and consumer run on different workers.
//!
//! A worker runs only the tasks placed on it, but builds the whole plan, so
//! every channel has the same number on every worker. A channel whose
//! consumer is elsewhere is drained by an outbound bridge that writes its
//! messages as frames on a QUIC stream; a channel whose producer is
//! elsewhere is fed by a reader of the stream the producer's worker opened.
//! The local channels stay bounded, and QUIC's per-stream flow control
//! carries backpressure between them: a full consumer stops its reader,
//! the stream's window closes, and the producer's writes block.
//!
//! A stream is matched only with a channel some deployed task expects. A
//! stream may arrive before its attempt's tasks are built (they compile
//! guests first), so until the worker seals the attempt ([`InboundChannels::seal`],
//! once every local consumer registered) it is parked, at most
//! [`PARKED_STREAMS_MAX`] at once; after the seal, and for attempts
//! forgotten, a stream nobody expects is refused. (The worker also refuses
//! streams of attempts not deployed on it, from peers not in the attempt.)
//!
//! A channel ends cleanly only with an `End` frame. A stream that breaks or
//! resets first drops the local sender without `End`, which the consumer
//! sees as a disconnect: the attempt is cancelled, as for a local failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::channel::{Receiver, Sender};
use weir_core::Batch;
use weir_net::frame::Frame;
use weir_net::stream::{ChannelHeader, FrameReader, FrameWriter};

use crate::message::{Barrier, Message, TaskError, TaskResult};
use crate::plan::TaskId;

/// What a worker provides to carry channels to other workers.
pub trait DataPlane: Send + Sync {
    /// Opens the stream carrying `header.channel` to the worker that runs
    /// `consumer`; blocks until the peer connection is up.
    fn open(&self, header: &ChannelHeader, consumer: TaskId) -> anyhow::Result<FrameWriter>;
    /// The runtime that drives the QUIC connections.
    fn runtime(&self) -> &tokio::runtime::Handle;
}

type ChannelKey = (String, u32, u32);

/// Streams parked for attempts still being built, on all peers together.
pub const PARKED_STREAMS_MAX: usize = 4096;

enum Slot {
    /// The local consumer's channel, waiting for the producer's stream.
    Expected(Sender<Message>),
    /// The producer's stream, waiting for the local attempt to start.
    Arrived(FrameReader),
}

/// Matches incoming channel streams with the local channels they feed,
/// whichever of the two comes first.
pub struct InboundChannels {
    runtime: tokio::runtime::Handle,
    slots: Mutex<HashMap<ChannelKey, Slot>>,
    /// Per (job, attempt): set when it is forgotten, which stops its
    /// readers even if their peer went silent.
    cancels: Mutex<HashMap<(String, u32), tokio::sync::watch::Sender<bool>>>,
    /// Per job, the newest attempt forgotten: streams and channels of it or
    /// older ones are refused on arrival (attempt ids only grow).
    forgotten: Mutex<HashMap<String, u32>>,
    /// Attempts whose local consumers are all registered: a stream that
    /// finds no consumer waiting is refused, not parked.
    sealed: Mutex<std::collections::HashSet<(String, u32)>>,
}

impl InboundChannels {
    pub fn new(runtime: tokio::runtime::Handle) -> Arc<InboundChannels> {
        Arc::new(InboundChannels {
            runtime,
            slots: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashMap::new()),
            forgotten: Mutex::new(HashMap::new()),
            sealed: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// Every local consumer of `attempt` is registered: refuses streams
    /// parked for it that no consumer took, and any that come later
    /// without a consumer waiting.
    pub fn seal(&self, job: &str, attempt: u32) {
        self.sealed
            .lock()
            .expect("not poisoned")
            .insert((job.to_string(), attempt));
        self.slots
            .lock()
            .expect("not poisoned")
            .retain(|(j, a, channel), slot| {
                let junk = j == job && *a == attempt && matches!(slot, Slot::Arrived(_));
                if junk {
                    tracing::warn!(
                        job,
                        attempt,
                        channel,
                        "refused a stream for a channel no task of the attempt reads"
                    );
                }
                !junk
            });
    }

    fn is_sealed(&self, job: &str, attempt: u32) -> bool {
        self.sealed
            .lock()
            .expect("not poisoned")
            .contains(&(job.to_string(), attempt))
    }

    /// A peer opened the stream for a channel.
    pub fn deliver(&self, header: ChannelHeader, reader: FrameReader) {
        if self.is_forgotten(&header.job, header.attempt) {
            // Dropping the reader stops the sender's stream, so its writer
            // fails instead of waiting for credit that never comes.
            return;
        }
        let sealed = self.is_sealed(&header.job, header.attempt);
        let key = (header.job, header.attempt, header.channel);
        let mut slots = self.slots.lock().expect("not poisoned");
        match slots.remove(&key) {
            Some(Slot::Expected(tx)) => self.spawn_reader(key, reader, tx),
            Some(Slot::Arrived(_)) => {
                tracing::warn!(job = %key.0, attempt = key.1, channel = key.2, "a second stream for one channel; dropping both");
            }
            None if sealed => {
                tracing::warn!(job = %key.0, attempt = key.1, channel = key.2, "refused a stream for a channel no task of the attempt reads");
            }
            None => {
                let parked = slots
                    .values()
                    .filter(|s| matches!(s, Slot::Arrived(_)))
                    .count();
                if parked >= PARKED_STREAMS_MAX {
                    tracing::warn!(job = %key.0, attempt = key.1, channel = key.2, "refused a stream: {PARKED_STREAMS_MAX} streams already wait for their attempts");
                    return;
                }
                slots.insert(key, Slot::Arrived(reader));
            }
        }
    }

    pub(crate) fn expect(&self, job: &str, attempt: u32, channel: u32, tx: Sender<Message>) {
        if self.is_forgotten(job, attempt) {
            return; // dropping `tx` disconnects the consumer
        }
        let key = (job.to_string(), attempt, channel);
        let mut slots = self.slots.lock().expect("not poisoned");
        match slots.remove(&key) {
            Some(Slot::Arrived(reader)) => self.spawn_reader(key, reader, tx),
            _ => {
                slots.insert(key, Slot::Expected(tx));
            }
        }
    }

    /// Drops whatever of `attempt` (and earlier attempts of `job`) is still
    /// unmatched: a consumer waiting for a stream that will never come then
    /// sees a disconnect.
    pub fn forget(&self, job: &str, attempt: u32) {
        {
            let mut forgotten = self.forgotten.lock().expect("not poisoned");
            let newest = forgotten.entry(job.to_string()).or_insert(attempt);
            *newest = (*newest).max(attempt);
        }
        self.slots
            .lock()
            .expect("not poisoned")
            .retain(|(j, a, _), _| j != job || *a > attempt);
        self.sealed
            .lock()
            .expect("not poisoned")
            .retain(|(j, a)| j != job || *a > attempt);
        self.cancels
            .lock()
            .expect("not poisoned")
            .retain(|(j, a), cancel| {
                let stale = j == job && *a <= attempt;
                if stale {
                    let _ = cancel.send(true);
                }
                !stale
            });
    }

    fn is_forgotten(&self, job: &str, attempt: u32) -> bool {
        self.forgotten
            .lock()
            .expect("not poisoned")
            .get(job)
            .is_some_and(|&newest| attempt <= newest)
    }

    fn cancelled(&self, job: &str, attempt: u32) -> tokio::sync::watch::Receiver<bool> {
        self.cancels
            .lock()
            .expect("not poisoned")
            .entry((job.to_string(), attempt))
            .or_insert_with(|| tokio::sync::watch::channel(false).0)
            .subscribe()
    }

    fn spawn_reader(&self, key: ChannelKey, reader: FrameReader, tx: Sender<Message>) {
        let runtime = self.runtime.clone();
        let name = format!("net-in-{}", key.2);
        let cancelled = self.cancelled(&key.0, key.1);
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || read_channel(&runtime, &key, reader, tx, cancelled));
        if let Err(e) = spawned {
            tracing::error!("cannot start a channel reader thread: {e}");
        }
    }
}

/// Feeds frames from the network into the local channel until `End`.
fn read_channel(
    runtime: &tokio::runtime::Handle,
    key: &ChannelKey,
    mut reader: FrameReader,
    tx: Sender<Message>,
    mut cancelled: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let next = runtime.block_on(async {
            tokio::select! {
                frame = reader.next() => Some(frame),
                _ = cancelled.wait_for(|c| *c) => None,
            }
        });
        let Some(next) = next else {
            return; // the attempt was cancelled
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                tracing::debug!(job = %key.0, channel = key.2, "channel stream ended without end of input");
                return;
            }
            Err(e) => {
                tracing::debug!(job = %key.0, channel = key.2, "channel stream broke: {e}");
                return;
            }
        };
        let message = match message_of(frame) {
            Ok(message) => message,
            Err(e) => {
                tracing::error!(job = %key.0, channel = key.2, "malformed batch from a peer: {e}");
                return;
            }
        };
        let end = matches!(message, Message::End);
        if tx.send(message).is_err() || end {
            return;
        }
    }
}

fn message_of(frame: Frame) -> Result<Message, weir_core::BatchError> {
    Ok(match frame {
        Frame::Batch(bytes) => Message::Data(Batch::from_bytes(bytes)?),
        Frame::Watermark(w) => Message::Watermark(w),
        Frame::Idle => Message::Idle,
        Frame::Barrier { id, savepoint } => Message::Barrier(Barrier { id, savepoint }),
        Frame::End => Message::End,
    })
}

fn frame_of(message: Message) -> Frame {
    match message {
        Message::Data(batch) => Frame::Batch(batch.into_bytes()),
        Message::Watermark(w) => Frame::Watermark(w),
        Message::Idle => Frame::Idle,
        Message::Barrier(b) => Frame::Barrier {
            id: b.id,
            savepoint: b.savepoint,
        },
        Message::End => Frame::End,
    }
}

/// Drains a local channel into the stream to its consumer's worker.
/// Frames are flushed when the writer's buffer is full or when nothing
/// more is queued, so a busy channel sends large writes and a quiet one
/// sends at once.
pub(crate) fn write_channel(
    data_plane: Arc<dyn DataPlane>,
    header: ChannelHeader,
    consumer: TaskId,
    rx: Receiver<Message>,
) -> TaskResult {
    let runtime = data_plane.runtime().clone();
    let mut writer = data_plane.open(&header, consumer).map_err(|e| {
        TaskError::Failed(e.context(format!(
            "cannot open channel {} to {consumer:?}",
            header.channel
        )))
    })?;
    loop {
        let Ok(message) = rx.recv() else {
            // The producer went away without end of input: tell the peer.
            let _ = writer.stream_mut().reset(0u32.into());
            return Err(TaskError::Cancelled);
        };
        let end = matches!(message, Message::End);
        let written = runtime.block_on(async {
            match message {
                // Large batches go out without a copy into the frame.
                Message::Data(batch) => writer.write_batch(batch.into_bytes()).await?,
                other => writer.write(&frame_of(other)).await?,
            }
            if !end && rx.is_empty() {
                writer.flush().await?;
            }
            Ok::<_, weir_net::NetError>(())
        });
        if let Err(e) = written {
            tracing::debug!(
                channel = header.channel,
                "channel stream to {consumer:?} broke: {e}"
            );
            return Err(TaskError::Cancelled);
        }
        if end {
            return runtime.block_on(writer.finish()).map_err(|e| {
                tracing::debug!(
                    channel = header.channel,
                    "channel stream to {consumer:?} broke at its end: {e}"
                );
                TaskError::Cancelled
            });
        }
    }
}
