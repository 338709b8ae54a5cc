//! A source split's thread: reads batches, stamps watermarks, pushes them
//! downstream until the source is exhausted or the job is cancelled.
//! Between batches it answers the coordinator's snapshot triggers: it
//! records its position and watermark and emits the barrier.
//!
//! Records the source could not parse and kept as dead letters are sent
//! to `<source>.dead-letter` right after the batch they were found in, and
//! that stream gets the same watermarks, barriers and end as the main one:
//! a checkpoint's barrier follows exactly the dead letters of the lines
//! before its position, so they are exactly-once with the main output.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, TryRecvError};
use weir_connectors::{ParseErrorCounts, Source, SourceStatus};
use weir_core::BatchBuilder;
use weir_core::job::SourceSpec;
use weir_core::watermark::{BoundedOutOfOrderness, MIN_WATERMARK};
use weir_snapshot::SourceSnapshot;

use crate::events::{AckPart, SourceCommand, TaskEvent};
use crate::gate::Gate;
use crate::message::{TaskError, TaskResult};
use crate::task_snapshot::SnapshotContext;
use crate::telemetry::{SubtaskMetrics, TaskClock};

pub(crate) struct SourceTask {
    pub(crate) spec: SourceSpec,
    pub(crate) split: u32,
    pub(crate) source: Box<dyn Source>,
    pub(crate) gate: Gate,
    pub(crate) dead_letter_gate: Gate,
    pub(crate) batch_records_max: usize,
    pub(crate) metrics: Arc<SubtaskMetrics>,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) commands: Receiver<SourceCommand>,
    pub(crate) snapshots: SnapshotContext,
    /// Where a restored split left off.
    pub(crate) restore: Option<SourceSnapshot>,
    /// Positions of snapshots not yet known complete, oldest first.
    pub(crate) pending: std::collections::VecDeque<(u64, serde_json::Value)>,
}

/// Snapshots whose completion a source still waits for; older ones are
/// forgotten (their completion only served monitoring).
const PENDING_MAX: usize = 16;

/// How long an idle split sleeps before asking its source again.
const IDLE_POLL: Duration = Duration::from_millis(10);

impl SourceTask {
    fn send_watermark(&mut self, watermark: i64) -> Result<(), TaskError> {
        self.gate.send_watermark(watermark)?;
        self.dead_letter_gate.send_watermark(watermark)?;
        Ok(())
    }

    /// Sends what the output edges buffer (see [`crate::gate`]): when the
    /// split has caught up with its input, and before it sleeps.
    fn flush_outputs(&mut self) -> Result<(), TaskError> {
        self.gate.flush()?;
        self.dead_letter_gate.flush()?;
        Ok(())
    }

    /// Sends the dead letters of the batch just read, and counts what the
    /// source skipped or dead-lettered since `counted`.
    fn send_dead_letters(
        &mut self,
        letters: &mut BatchBuilder,
        counted: &mut ParseErrorCounts,
    ) -> Result<(), TaskError> {
        self.source.drain_dead_letters(letters);
        if !letters.is_empty() {
            self.dead_letter_gate.send_batch(letters.take())?;
        }
        let counts = self.source.parse_error_counts();
        if counts != *counted {
            self.metrics.add_parse_errors(
                counts.skipped.saturating_sub(counted.skipped),
                counts.dead_lettered.saturating_sub(counted.dead_lettered),
            );
            *counted = counts;
        }
        Ok(())
    }

    /// Sends `batch`, first cutting it before any record that is at or
    /// behind the watermark as of its position and sending that watermark
    /// ahead of it. Lateness thus depends only on the order of the input,
    /// never on batch sizes; in-order input is sent whole.
    ///
    /// `cap` holds every watermark back (see [`Self::watermark_cap`]).
    fn send_with_watermarks(
        &mut self,
        batch: weir_core::Batch,
        watermarks: &mut BoundedOutOfOrderness,
        sent_watermark: &mut i64,
        cap: i64,
    ) -> Result<(), TaskError> {
        let mut probe = watermarks.clone();
        let needs_cut = batch.iter().any(|r| match r.timestamp {
            Some(ts) => {
                let current = probe.current().min(cap);
                let late = ts <= current && current > *sent_watermark;
                probe.observe(ts);
                late
            }
            None => false,
        });
        if !needs_cut {
            *watermarks = probe;
            self.gate.send_batch(batch)?;
            return Ok(());
        }
        let mut part = BatchBuilder::with_capacity(batch.as_bytes().len());
        for record in &batch {
            if let Some(ts) = record.timestamp {
                let watermark = watermarks.current().min(cap);
                if ts <= watermark && watermark > *sent_watermark {
                    self.gate.send_batch(part.take())?;
                    self.send_watermark(watermark)?;
                    *sent_watermark = watermark;
                }
                watermarks.observe(ts);
            }
            part.push_encoded(&record);
        }
        self.gate.send_batch(part.take())?;
        Ok(())
    }

    /// The highest watermark the source allows now: a source reading
    /// several partitions bounds it by its slowest active one
    /// ([`Source::max_timestamp_bound`]). Taken before a batch is read, it
    /// never makes one of the batch's records late: each partition's
    /// records are at most `watermark_delay_ms` behind its own maximum.
    fn watermark_cap(&self) -> i64 {
        match self.source.max_timestamp_bound() {
            None => i64::MAX,
            Some(t) => {
                let delay = self.spec.watermark_delay_ms.min(i64::MAX as u64) as i64;
                t.saturating_sub(delay).saturating_sub(1)
            }
        }
    }

    /// Answers pending snapshot triggers; `Ok(true)` means stop here.
    fn serve_commands(
        &mut self,
        watermarks: &BoundedOutOfOrderness,
        sent_watermark: i64,
    ) -> Result<bool, TaskError> {
        loop {
            match self.commands.try_recv() {
                Ok(SourceCommand::Completed(id)) => {
                    while self.pending.front().is_some_and(|(p, _)| *p < id) {
                        self.pending.pop_front();
                    }
                    if self.pending.front().is_some_and(|(p, _)| *p == id)
                        && let Some((_, position)) = self.pending.pop_front()
                    {
                        self.source.checkpoint_complete(id, &position);
                    }
                }
                Ok(SourceCommand::Trigger { barrier, stop }) => {
                    let snapshot = SourceSnapshot {
                        source: self.spec.name.clone(),
                        split: self.split,
                        splits: self.spec.parallelism,
                        position: self.source.position(),
                        max_timestamp: watermarks.max_seen(),
                        sent_watermark,
                    };
                    if self.pending.len() == PENDING_MAX {
                        self.pending.pop_front();
                    }
                    self.pending
                        .push_back((barrier.id, snapshot.position.clone()));
                    self.gate.send_barrier(barrier)?;
                    self.dead_letter_gate.send_barrier(barrier)?;
                    self.snapshots.ack(barrier.id, AckPart::Source(snapshot));
                    if stop {
                        return Ok(true);
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(false),
            }
        }
    }

    pub(crate) fn run(mut self) -> TaskResult {
        // A guess from the job file's record count, never beyond what a
        // source may put in one batch.
        let mut builder = BatchBuilder::with_capacity(
            self.batch_records_max
                .saturating_mul(64)
                .min(weir_connectors::BATCH_BYTES_MAX),
        );
        let mut watermarks = BoundedOutOfOrderness::new(self.spec.watermark_delay_ms);
        let mut sent_watermark = MIN_WATERMARK;
        if let Some(restore) = self.restore.take() {
            self.source.seek(&restore.position).with_context(|| {
                format!(
                    "source `{}` (split {}): cannot resume",
                    self.spec.name, self.split
                )
            })?;
            watermarks.restore(restore.max_timestamp);
            sent_watermark = restore.sent_watermark;
            if sent_watermark > MIN_WATERMARK {
                self.send_watermark(sent_watermark)?;
                self.metrics.set_watermark(sent_watermark);
            }
        }
        // Throttling: a batch at most every 10 ms, so rates stay smooth.
        let batch_max = match self.spec.records_per_second {
            Some(rate) => self.batch_records_max.min((rate / 100).max(1) as usize),
            None => self.batch_records_max,
        };
        let started = Instant::now();
        let mut emitted: u64 = 0;
        let mut last_data = Instant::now();
        let mut idle = false;
        // Sleeping (throttled, or nothing to read) is the source's idle time.
        let mut clock = TaskClock::new(self.metrics.times.clone());
        let mut letters = BatchBuilder::default();
        let mut counted = ParseErrorCounts::default();
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(TaskError::Cancelled);
            }
            if self.serve_commands(&watermarks, sent_watermark)? {
                // Stopped with a savepoint: wait for the job to wind down.
                while self.commands.recv().is_ok() {}
                return Err(TaskError::Cancelled);
            }
            if let Some(rate) = self.spec.records_per_second {
                let due = Duration::from_secs_f64(emitted as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    self.flush_outputs()?;
                    clock.wait_starts();
                    std::thread::sleep(wait.min(IDLE_POLL));
                    clock.wait_ends();
                    continue;
                }
            }
            let cap = self.watermark_cap();
            let status = self
                .source
                .next_batch(&mut builder, batch_max)
                .with_context(|| format!("source `{}` (split {})", self.spec.name, self.split))?;
            let batch = builder.take();
            // Before the next barrier (served at the top of the loop), as
            // the lines they came from are before the position it records.
            self.send_dead_letters(&mut letters, &mut counted)?;
            if batch.is_empty() {
                if status == SourceStatus::More {
                    // An input of the source may have gone idle, lifting its cap.
                    let watermark = watermarks.current().min(self.watermark_cap());
                    if watermark > sent_watermark {
                        sent_watermark = watermark;
                        self.send_watermark(watermark)?;
                        self.metrics.set_watermark(sent_watermark);
                    }
                    // Nothing for now: after idle_timeout_ms, stop holding back
                    // downstream watermarks.
                    if let Some(timeout) = self.spec.idle_timeout_ms
                        && !idle
                        && last_data.elapsed() >= Duration::from_millis(timeout)
                    {
                        idle = true;
                        self.gate.send_idle()?;
                        self.dead_letter_gate.send_idle()?;
                    }
                    self.flush_outputs()?;
                    clock.wait_starts();
                    std::thread::sleep(IDLE_POLL);
                    clock.wait_ends();
                    continue;
                }
            } else {
                idle = false;
                last_data = Instant::now();
                // A short batch: the source has read all there is for now.
                let caught_up = batch.len() < batch_max;
                emitted += batch.len() as u64;
                self.metrics.add_out(batch.len(), batch.as_bytes().len());
                self.send_with_watermarks(batch, &mut watermarks, &mut sent_watermark, cap)?;
                let watermark = watermarks.current().min(self.watermark_cap());
                if watermark > sent_watermark {
                    sent_watermark = watermark;
                    self.send_watermark(watermark)?;
                }
                self.metrics.set_watermark(sent_watermark);
                if caught_up {
                    self.flush_outputs()?;
                } else {
                    self.gate.flush_lingering()?;
                    self.dead_letter_gate.flush_lingering()?;
                }
            }
            if status == SourceStatus::Finished {
                self.gate.send_end()?;
                self.dead_letter_gate.send_end()?;
                let _ = self.snapshots.events.send(TaskEvent::Finished);
                return Ok(());
            }
        }
    }
}
