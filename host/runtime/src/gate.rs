//! The output side of a subtask: routes batches to downstream subtasks by
//! edge type, and broadcasts watermarks and end of input to all of them.
//! Time spent blocked on a full channel is the subtask's backpressure.

use std::sync::Arc;
use std::time::Instant;

use crate::channel::{Sender, TrySendError};
use weir_core::job::Edge;
use weir_core::key_group::subtask_for_key_group;
use weir_core::{Batch, BatchBuilder, key_group_of};

use crate::message::{Disconnected, Message};
use crate::telemetry::TaskTimes;

/// One consumer of a stream: its subtasks' channels and how to pick one.
pub(crate) struct OutputEdge {
    pub(crate) edge: Edge,
    /// Indexed by consumer subtask; a forward edge holds just its partner.
    pub(crate) targets: Vec<Sender<Message>>,
    next: usize,
    builders: Vec<BatchBuilder>,
    max_parallelism: u32,
}

impl OutputEdge {
    pub(crate) fn new(edge: Edge, targets: Vec<Sender<Message>>, max_parallelism: u32) -> Self {
        let builders = if edge == Edge::Hash {
            vec![BatchBuilder::default(); targets.len()]
        } else {
            Vec::new()
        };
        OutputEdge {
            edge,
            targets,
            next: 0,
            builders,
            max_parallelism,
        }
    }

    fn send_batch(&mut self, batch: Batch, times: Option<&TaskTimes>) -> Result<(), Disconnected> {
        let send = |target: &Sender<Message>, message| send(target, message, times);
        match self.edge {
            Edge::Forward => send(&self.targets[0], Message::Data(batch)),
            Edge::Rebalance => {
                // Whole batches round-robin: cheaper than per record, and as
                // even over any stretch of more batches than targets.
                self.next = (self.next + 1) % self.targets.len();
                send(&self.targets[self.next], Message::Data(batch))
            }
            Edge::Broadcast => {
                for target in &self.targets {
                    send(target, Message::Data(batch.clone()))?;
                }
                Ok(())
            }
            Edge::Hash => {
                let parallelism = self.targets.len() as u32;
                for record in &batch {
                    let group = key_group_of(record.key, self.max_parallelism);
                    let target =
                        subtask_for_key_group(group, self.max_parallelism, parallelism) as usize;
                    self.builders[target].push_encoded(&record);
                }
                for (builder, target) in self.builders.iter_mut().zip(&self.targets) {
                    if !builder.is_empty() {
                        send(target, Message::Data(builder.take()))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Sends `message`; a full channel blocks, and the wait counts as
/// backpressure in `times` (a free channel costs no clock reading).
fn send(
    target: &Sender<Message>,
    message: Message,
    times: Option<&TaskTimes>,
) -> Result<(), Disconnected> {
    match target.try_send(message) {
        Ok(()) => Ok(()),
        Err(TrySendError::Disconnected(_)) => Err(Disconnected),
        Err(TrySendError::Full(message)) => {
            let blocked = Instant::now();
            let sent = target.send(message).map_err(|_| Disconnected);
            if let Some(times) = times {
                times.add_backpressured(blocked.elapsed());
            }
            sent
        }
    }
}

/// All consumers of one stream of one subtask.
#[derive(Default)]
pub(crate) struct Gate {
    pub(crate) edges: Vec<OutputEdge>,
    /// The sending task's times, where its backpressure is counted.
    pub(crate) times: Option<Arc<TaskTimes>>,
}

impl Gate {
    pub(crate) fn send_batch(&mut self, batch: Batch) -> Result<(), Disconnected> {
        if batch.is_empty() {
            return Ok(());
        }
        let times = self.times.as_deref();
        let Some((last, rest)) = self.edges.split_last_mut() else {
            return Ok(());
        };
        for edge in rest {
            edge.send_batch(batch.clone(), times)?;
        }
        last.send_batch(batch, times)
    }

    fn broadcast(&self, make: impl Fn() -> Message) -> Result<(), Disconnected> {
        for edge in &self.edges {
            for target in &edge.targets {
                send(target, make(), self.times.as_deref())?;
            }
        }
        Ok(())
    }

    pub(crate) fn send_watermark(&self, watermark: i64) -> Result<(), Disconnected> {
        self.broadcast(|| Message::Watermark(watermark))
    }

    pub(crate) fn send_idle(&self) -> Result<(), Disconnected> {
        self.broadcast(|| Message::Idle)
    }

    pub(crate) fn send_barrier(
        &self,
        barrier: crate::message::Barrier,
    ) -> Result<(), Disconnected> {
        self.broadcast(|| Message::Barrier(barrier))
    }

    pub(crate) fn send_end(&self) -> Result<(), Disconnected> {
        self.broadcast(|| Message::End)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{Receiver, bounded};

    fn channels(n: usize) -> (Vec<Sender<Message>>, Vec<Receiver<Message>>) {
        (0..n).map(|_| bounded(16)).unzip()
    }

    fn keys(rx: &Receiver<Message>) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .flat_map(|m| match m {
                Message::Data(b) => b.iter().map(|r| r.key.to_vec()).collect(),
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn hash_sends_each_key_to_its_key_group_owner() {
        let (tx, rx) = channels(3);
        let mut gate = Gate {
            edges: vec![OutputEdge::new(Edge::Hash, tx, 128)],
            times: None,
        };
        let mut b = BatchBuilder::default();
        for i in 0..100 {
            b.push(None, format!("k{i}").as_bytes(), b"v");
        }
        gate.send_batch(b.take()).unwrap();
        let mut total = 0;
        for (subtask, rx) in rx.iter().enumerate() {
            for key in keys(rx) {
                let owner = subtask_for_key_group(key_group_of(&key, 128), 128, 3);
                assert_eq!(owner as usize, subtask);
                total += 1;
            }
        }
        assert_eq!(total, 100);
    }

    #[test]
    fn broadcast_and_watermarks_reach_every_target() {
        let (tx, rx) = channels(2);
        let mut gate = Gate {
            edges: vec![OutputEdge::new(Edge::Broadcast, tx, 128)],
            times: None,
        };
        let mut b = BatchBuilder::default();
        b.push(None, b"a", b"v");
        gate.send_batch(b.take()).unwrap();
        gate.send_watermark(5).unwrap();
        for rx in &rx {
            assert!(matches!(rx.try_recv(), Ok(Message::Data(_))));
            assert!(matches!(rx.try_recv(), Ok(Message::Watermark(5))));
        }
    }

    #[test]
    fn a_vanished_consumer_is_reported_not_panicked() {
        let (tx, rx) = channels(1);
        drop(rx);
        let gate = Gate {
            edges: vec![OutputEdge::new(Edge::Forward, tx, 128)],
            times: None,
        };
        assert!(gate.send_end().is_err());
    }

    #[test]
    fn a_full_channel_counts_as_backpressure() {
        let (tx, rx) = bounded(1);
        let times = Arc::new(TaskTimes::default());
        let gate = Gate {
            edges: vec![OutputEdge::new(Edge::Forward, vec![tx], 128)],
            times: Some(times.clone()),
        };
        gate.send_watermark(1).unwrap();
        assert_eq!(times.read().2, std::time::Duration::ZERO, "not full yet");
        let reader = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            (0..2).filter(|_| rx.recv().is_ok()).count()
        });
        gate.send_watermark(2).unwrap(); // blocks until the reader drains
        assert_eq!(reader.join().unwrap(), 2);
        assert!(times.read().2 >= std::time::Duration::from_millis(30));
    }
}
