//! A sink's thread: writes every batch that reaches it until all inputs end.
//! At an aligned barrier it pre-commits (the sink makes its output durable
//! and reports its state); the coordinator's commit makes it visible.

use std::sync::Arc;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Select};
use weir_connectors::Sink;
use weir_core::watermark::InputWatermarks;
use weir_snapshot::SinkSnapshot;

use crate::alignment::Alignment;
use crate::events::{AckPart, SinkCommand, TaskEvent};
use crate::message::{Message, TaskError, TaskResult};
use crate::plan::InputChannel;
use crate::task_snapshot::SnapshotContext;
use crate::telemetry::{SubtaskMetrics, TaskClock};

pub(crate) struct SinkTask {
    pub(crate) name: String,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) inputs: Vec<InputChannel>,
    pub(crate) metrics: Arc<SubtaskMetrics>,
    pub(crate) commands: Receiver<SinkCommand>,
    pub(crate) snapshots: SnapshotContext,
}

impl SinkTask {
    pub(crate) fn run(mut self) -> TaskResult {
        let inputs = std::mem::take(&mut self.inputs);
        let mut alignment = Alignment::new(inputs.len());
        let mut commands_open = true;
        let mut open = inputs.len();
        let commands = std::mem::replace(&mut self.commands, crossbeam_channel::never());
        let mut readable: Vec<usize> = (0..inputs.len()).collect();
        let mut select = Select::new();
        let mut command_index = None;
        let mut reselect = true;
        let mut watermarks = InputWatermarks::new(inputs.len());
        let mut clock = TaskClock::new(self.metrics.times.clone());
        // When the first input delivered the barrier being aligned.
        let mut aligning = None;
        while open > 0 {
            // Rebuilt only when the set of readable channels changes.
            if reselect {
                readable = alignment.readable();
                select = Select::new();
                for &i in &readable {
                    inputs[i].rx.select_on(&mut select);
                }
                command_index = commands_open.then(|| select.recv(&commands));
                reselect = false;
            }
            clock.wait_starts();
            let op = select.select();
            clock.wait_ends();
            if Some(op.index()) == command_index {
                match op.recv(&commands) {
                    Ok(SinkCommand::Commit(id)) => {
                        self.sink.commit(id).with_context(|| {
                            format!("sink `{}`: cannot commit checkpoint {id}", self.name)
                        })?;
                        let _ = self.snapshots.events.send(TaskEvent::Committed { id });
                    }
                    Err(_) => {
                        commands_open = false;
                        reselect = true;
                    }
                }
                continue;
            }
            let index = readable[op.index()];
            match inputs[index].rx.recv_selected(op) {
                Ok(Message::Data(batch)) => {
                    watermarks.on_activity(index);
                    self.metrics.add_in(batch.len(), batch.as_bytes().len());
                    self.sink
                        .write(&batch)
                        .with_context(|| format!("sink `{}`", self.name))?;
                }
                Ok(Message::Watermark(w)) => {
                    if let Some(w) = watermarks.on_watermark(index, w) {
                        self.metrics.set_watermark(w);
                    }
                }
                Ok(Message::Idle) => {
                    if let Some(w) = watermarks.on_idle(index) {
                        self.metrics.set_watermark(w);
                    }
                }
                Ok(Message::End) => {
                    if let Some(w) = watermarks.on_end(index) {
                        self.metrics.set_watermark(w);
                    }
                    alignment.on_end(index);
                    open -= 1;
                    reselect = true;
                }
                Ok(Message::Barrier(barrier)) => {
                    aligning.get_or_insert_with(std::time::Instant::now);
                    alignment.on_barrier(index, barrier)?;
                    reselect = true;
                }
                Err(_) => return Err(TaskError::Cancelled),
            }
            if let Some(barrier) = alignment.take_aligned() {
                if let Some(since) = aligning.take() {
                    self.metrics.set_alignment(since.elapsed());
                }
                reselect = true;
                match self.sink.snapshot(barrier.id) {
                    Ok(state) => self.snapshots.ack(
                        barrier.id,
                        AckPart::Sink(SinkSnapshot {
                            sink: self.name.clone(),
                            state,
                        }),
                    ),
                    Err(e) => self
                        .snapshots
                        .decline(barrier.id, format!("sink `{}`: {e}", self.name)),
                }
            }
        }
        self.sink
            .finish()
            .with_context(|| format!("sink `{}`", self.name))?;
        let _ = self.snapshots.events.send(TaskEvent::Finished);
        Ok(())
    }
}
