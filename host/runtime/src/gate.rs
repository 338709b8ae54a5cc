//! The output side of a subtask: routes batches to downstream subtasks by
//! edge type, and broadcasts watermarks, barriers and end of input to all
//! of them. Time spent blocked on a full channel is the subtask's
//! backpressure.
//!
//! A hash edge buffers its output per consumer, as Flink's network buffers
//! do: splitting every batch by key sends each of `p` consumers a `1/p`
//! slice of it, and an operator that emits a few records per call (a
//! window firing, a join match) would send batches of a few records, and
//! each costs the consumer a call into its guest. So records stay in a
//! consumer's buffer until one buffer holds a full batch
//! (`batch_records_max` records or [`BATCH_BYTES_MAX`] bytes), the task
//! runs out of input ([`Gate::flush`]: a chain before it waits for a
//! message, a source split after a short batch or before it sleeps), a
//! barrier, idle mark or end of input goes out, or [`LINGER`] has passed.
//! With one consumer (a keyed job at parallelism 1), a batch of at least
//! half a full one that finds no records held goes on whole, with no hash
//! or copy per record (5% less CPU for the benchmarks' windowed count).
//!
//! Watermarks are held back with the records, never ahead of them: a
//! watermark that arrives while records are buffered is kept and sent
//! after them. A record may pass a held watermark only if it is not late
//! under it (its timestamp is above it), so every record is late
//! downstream exactly when it was late here: a record at or below the
//! held watermark first sends out the buffers and the watermark. Only the
//! newest held watermark is sent (they only rise). What a held watermark
//! does change is when downstream fires its timers at or below it:
//! possibly after a record above it that followed it here, depending on
//! when the buffers went out. No window or timer due at the watermark can
//! include such a record (it is above it), so event-time results are the
//! same; an operator whose timers read state that later records change
//! may see them, as it may in Flink whenever it has several input
//! channels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::{Sender, TrySendError};
use weir_connectors::BATCH_BYTES_MAX;
use weir_core::job::Edge;
use weir_core::key_group::subtask_for_key_group;
use weir_core::{Batch, BatchBuilder, key_group_of};

use crate::message::{Disconnected, Message};
use crate::telemetry::TaskTimes;

/// The longest a record or watermark waits in a hash edge's buffers while
/// its task stays busy (Flink's default buffer timeout).
pub(crate) const LINGER: Duration = Duration::from_millis(100);

/// One consumer of a stream: its subtasks' channels and how to pick one.
pub(crate) struct OutputEdge {
    pub(crate) edge: Edge,
    /// Indexed by consumer subtask; a forward edge holds just its partner.
    pub(crate) targets: Vec<Sender<Message>>,
    next: usize,
    /// Hash edges: the records buffered for each consumer.
    builders: Vec<BatchBuilder>,
    /// Hash edges: a watermark held back behind buffered records.
    held_watermark: Option<i64>,
    /// When the oldest buffered record or held watermark came in.
    held_since: Option<Instant>,
    /// Records in a buffer that make it a full batch.
    batch_records_max: usize,
    linger: Duration,
    max_parallelism: u32,
}

impl OutputEdge {
    pub(crate) fn new(
        edge: Edge,
        targets: Vec<Sender<Message>>,
        max_parallelism: u32,
        batch_records_max: usize,
    ) -> Self {
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
            held_watermark: None,
            held_since: None,
            batch_records_max: batch_records_max.max(1),
            linger: LINGER,
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
            // One consumer owns every key group, no records are held, and
            // the batch is a full one or nearly: it goes on whole, after a
            // held watermark (so lateness under it stays as it was),
            // rather than record by record through the buffer, which cost
            // a p=1 keyed job's source thread a hash and a copy per record.
            Edge::Hash
                if self.targets.len() == 1
                    && self.builders[0].is_empty()
                    && batch.len() <= self.batch_records_max
                    && batch.len() >= self.batch_records_max.div_ceil(2) =>
            {
                self.flush(times)?;
                send(&self.targets[0], Message::Data(batch))
            }
            Edge::Hash => {
                let parallelism = self.targets.len() as u32;
                for record in &batch {
                    if let (Some(held), Some(ts)) = (self.held_watermark, record.timestamp)
                        && ts <= held
                    {
                        // Late under the held watermark: it must arrive after it.
                        self.flush(times)?;
                    }
                    let group = key_group_of(record.key, self.max_parallelism);
                    let target =
                        subtask_for_key_group(group, self.max_parallelism, parallelism) as usize;
                    let builder = &mut self.builders[target];
                    builder.push_encoded(&record);
                    self.held_since.get_or_insert_with(Instant::now);
                    if builder.len() >= self.batch_records_max
                        || builder.encoded_bytes() >= BATCH_BYTES_MAX
                    {
                        self.flush(times)?;
                    }
                }
                self.flush_if_lingering(times)
            }
        }
    }

    fn send_watermark(
        &mut self,
        watermark: i64,
        times: Option<&TaskTimes>,
    ) -> Result<(), Disconnected> {
        if self.edge != Edge::Hash {
            return self.broadcast(Message::Watermark(watermark), times);
        }
        self.held_watermark = Some(self.held_watermark.map_or(watermark, |w| w.max(watermark)));
        self.held_since.get_or_insert_with(Instant::now);
        self.flush_if_lingering(times)
    }

    fn flush_if_lingering(&mut self, times: Option<&TaskTimes>) -> Result<(), Disconnected> {
        // Reads the clock only while something is held.
        match self.held_since {
            Some(since) if since.elapsed() >= self.linger => self.flush(times),
            _ => Ok(()),
        }
    }

    /// Sends every buffered record, then the held watermark.
    fn flush(&mut self, times: Option<&TaskTimes>) -> Result<(), Disconnected> {
        self.held_since = None;
        for (builder, target) in self.builders.iter_mut().zip(&self.targets) {
            if !builder.is_empty() {
                send(target, Message::Data(builder.take()), times)?;
            }
        }
        match self.held_watermark.take() {
            Some(watermark) => self.broadcast(Message::Watermark(watermark), times),
            None => Ok(()),
        }
    }

    fn broadcast(&self, message: Message, times: Option<&TaskTimes>) -> Result<(), Disconnected> {
        for target in &self.targets {
            send(target, message.clone(), times)?;
        }
        Ok(())
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

    /// Sends what the hash edges hold back; the task calls it before it
    /// waits for input, so buffering adds no latency to a task that keeps
    /// up with its input.
    pub(crate) fn flush(&mut self) -> Result<(), Disconnected> {
        let times = self.times.as_deref();
        for edge in &mut self.edges {
            edge.flush(times)?;
        }
        Ok(())
    }

    /// Sends what has waited [`LINGER`] or longer; a busy task calls it
    /// between messages, so an edge it rarely sends on is not left holding
    /// records while the task never runs out of input.
    pub(crate) fn flush_lingering(&mut self) -> Result<(), Disconnected> {
        let times = self.times.as_deref();
        for edge in &mut self.edges {
            edge.flush_if_lingering(times)?;
        }
        Ok(())
    }

    /// Sends `message` to every consumer, after what is buffered.
    fn broadcast(&mut self, message: Message) -> Result<(), Disconnected> {
        let times = self.times.as_deref();
        for edge in &mut self.edges {
            edge.flush(times)?;
            edge.broadcast(message.clone(), times)?;
        }
        Ok(())
    }

    pub(crate) fn send_watermark(&mut self, watermark: i64) -> Result<(), Disconnected> {
        let times = self.times.as_deref();
        for edge in &mut self.edges {
            edge.send_watermark(watermark, times)?;
        }
        Ok(())
    }

    pub(crate) fn send_idle(&mut self) -> Result<(), Disconnected> {
        self.broadcast(Message::Idle)
    }

    pub(crate) fn send_barrier(
        &mut self,
        barrier: crate::message::Barrier,
    ) -> Result<(), Disconnected> {
        self.broadcast(Message::Barrier(barrier))
    }

    pub(crate) fn send_end(&mut self) -> Result<(), Disconnected> {
        self.broadcast(Message::End)
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
            edges: vec![OutputEdge::new(Edge::Hash, tx, 128, 1024)],
            times: None,
        };
        let mut b = BatchBuilder::default();
        for i in 0..100 {
            b.push(None, format!("k{i}").as_bytes(), b"v");
        }
        gate.send_batch(b.take()).unwrap();
        gate.flush().unwrap();
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
            edges: vec![OutputEdge::new(Edge::Broadcast, tx, 128, 1024)],
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
        let mut gate = Gate {
            edges: vec![OutputEdge::new(Edge::Forward, tx, 128, 1024)],
            times: None,
        };
        assert!(gate.send_end().is_err());
    }

    #[test]
    fn a_full_channel_counts_as_backpressure() {
        let (tx, rx) = bounded(1);
        let times = Arc::new(TaskTimes::default());
        let mut gate = Gate {
            edges: vec![OutputEdge::new(Edge::Forward, vec![tx], 128, 1024)],
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

    fn hash_gate(targets: usize, batch_records_max: usize) -> (Gate, Vec<Receiver<Message>>) {
        let (tx, rx) = (0..targets).map(|_| bounded(1 << 16)).unzip();
        let gate = Gate {
            edges: vec![OutputEdge::new(Edge::Hash, tx, 128, batch_records_max)],
            times: None,
        };
        (gate, rx)
    }

    fn batch_of(records: &[(Option<i64>, &str)]) -> Batch {
        let mut b = BatchBuilder::default();
        for (ts, key) in records {
            b.push(*ts, key.as_bytes(), b"v");
        }
        b.take()
    }

    /// What a consumer got: `Ok(batch sizes and watermarks)` in order.
    fn received(rx: &Receiver<Message>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| match m {
                Message::Data(b) => format!("{} records", b.len()),
                Message::Watermark(w) => format!("watermark {w}"),
                Message::Idle => "idle".into(),
                Message::End => "end".into(),
                Message::Barrier(b) => format!("barrier {}", b.id),
            })
            .collect()
    }

    #[test]
    fn a_hash_edge_fills_whole_batches_from_small_ones() {
        let (mut gate, rx) = hash_gate(1, 4);
        for _ in 0..3 {
            gate.send_batch(batch_of(&[(Some(10), "a")])).unwrap();
            gate.send_watermark(5).unwrap();
        }
        assert!(received(&rx[0]).is_empty(), "held until a batch is full");
        gate.send_batch(batch_of(&[(Some(11), "a"), (Some(12), "a")]))
            .unwrap();
        // The fourth record filled the batch; the fifth waits for the next.
        assert_eq!(received(&rx[0]), ["4 records", "watermark 5"]);
        gate.flush().unwrap();
        assert_eq!(received(&rx[0]), ["1 records"]);
        gate.flush().unwrap();
        assert!(received(&rx[0]).is_empty(), "nothing twice");
    }

    #[test]
    fn one_consumer_gets_a_full_batch_whole_after_what_is_held() {
        let (mut gate, rx) = hash_gate(1, 4);
        gate.send_watermark(5).unwrap();
        let full = batch_of(&[(Some(3), "a"), (Some(6), "b"), (Some(7), "c")]);
        let bytes = full.as_bytes().to_vec();
        gate.send_batch(full).unwrap();
        let got: Vec<Message> = std::iter::from_fn(|| rx[0].try_recv().ok()).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(got[0], Message::Watermark(5)));
        // The record at 3 is late under 5 here and arrives after it.
        assert!(matches!(&got[1], Message::Data(b) if b.as_bytes() == &bytes[..]));
        // Small batches still fill a buffer, and a full one then joins it.
        gate.send_batch(batch_of(&[(Some(8), "a")])).unwrap();
        assert!(received(&rx[0]).is_empty());
        gate.send_batch(batch_of(&[(Some(9), "a"), (Some(9), "b")]))
            .unwrap();
        assert!(received(&rx[0]).is_empty(), "3 of 4 held");
    }

    #[test]
    fn control_messages_follow_what_is_buffered() {
        let (mut gate, rx) = hash_gate(1, 1024);
        gate.send_batch(batch_of(&[(Some(1), "a")])).unwrap();
        gate.send_watermark(3).unwrap();
        gate.send_barrier(crate::message::Barrier {
            id: 7,
            savepoint: false,
        })
        .unwrap();
        gate.send_batch(batch_of(&[(Some(9), "a")])).unwrap();
        gate.send_idle().unwrap();
        gate.send_batch(batch_of(&[(None, "a")])).unwrap();
        gate.send_end().unwrap();
        assert_eq!(
            received(&rx[0]),
            [
                "1 records",
                "watermark 3",
                "barrier 7",
                "1 records",
                "idle",
                "1 records",
                "end"
            ]
        );
    }

    #[test]
    fn a_buffer_older_than_the_linger_goes_out_with_the_next_call() {
        let (mut gate, rx) = hash_gate(1, 1024);
        gate.edges[0].linger = Duration::from_millis(20);
        gate.send_batch(batch_of(&[(Some(1), "a")])).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        gate.send_watermark(2).unwrap();
        assert_eq!(received(&rx[0]), ["1 records", "watermark 2"]);
    }

    use proptest::prelude::*;

    proptest::proptest! {
        /// Whatever the buffering does, each consumer gets its records in
        /// the order they were sent, every record exactly once, and each
        /// record is late downstream (at or below the last watermark the
        /// consumer saw before it) exactly when it was late when sent.
        #[test]
        fn buffering_keeps_order_and_lateness(
            steps in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::collection::vec((proptest::option::of(0i64..60), 0u8..6), 0..9)
                        .prop_map(Step::Batch),
                    (0i64..60).prop_map(Step::Watermark),
                    proptest::strategy::Just(Step::Flush),
                ],
                0..60,
            ),
            targets in 1usize..4,
            batch_records_max in 1usize..6,
        ) {
            let (mut gate, rx) = hash_gate(targets, batch_records_max);
            // Per consumer: (sequence number, late when sent) of each record.
            let mut expected: Vec<Vec<(u32, bool)>> = vec![Vec::new(); targets];
            let mut watermark = i64::MIN;
            let mut seq = 0u32;
            for step in &steps {
                match step {
                    Step::Batch(records) => {
                        let mut b = BatchBuilder::default();
                        for &(ts, key) in records {
                            let key = [key];
                            // The sequence number rides in the value.
                            b.push(ts, &key, &seq.to_le_bytes());
                            let owner = subtask_for_key_group(
                                key_group_of(&key, 128), 128, targets as u32) as usize;
                            expected[owner].push((seq, ts.is_some_and(|t| t <= watermark)));
                            seq += 1;
                        }
                        gate.send_batch(b.take()).unwrap();
                    }
                    // Tasks send only rising watermarks.
                    &Step::Watermark(w) if w > watermark => {
                        watermark = w;
                        gate.send_watermark(w).unwrap();
                    }
                    Step::Watermark(_) => {}
                    Step::Flush => gate.flush().unwrap(),
                }
            }
            gate.send_end().unwrap();
            for (target, rx) in rx.iter().enumerate() {
                let mut got = Vec::new();
                let mut seen = i64::MIN;
                let mut ended = false;
                while let Ok(message) = rx.try_recv() {
                    proptest::prop_assert!(!ended, "nothing after end");
                    match message {
                        Message::Data(batch) => {
                            proptest::prop_assert!(batch.len() <= batch_records_max);
                            for r in &batch {
                                let seq = u32::from_le_bytes(r.value.try_into().unwrap());
                                got.push((seq, r.timestamp.is_some_and(|t| t <= seen)));
                            }
                        }
                        Message::Watermark(w) => {
                            proptest::prop_assert!(w > seen, "watermarks rise");
                            seen = w;
                        }
                        Message::End => ended = true,
                        other => proptest::prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                proptest::prop_assert!(ended);
                proptest::prop_assert_eq!(&got, &expected[target]);
                if watermark > i64::MIN {
                    proptest::prop_assert_eq!(seen, watermark, "the last watermark arrives");
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Batch(Vec<(Option<i64>, u8)>),
        Watermark(i64),
        Flush,
    }
}
