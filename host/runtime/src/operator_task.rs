//! A chain of operators on one thread: the mailbox loop.
//!
//! Messages are handled one at a time: data goes through the chain's guests
//! in order, a watermark that advances the minimum over all input channels
//! fires due event-time timers link by link and is then forwarded, and
//! processing-time timers fire between messages. Late records are counted
//! at the chain's first operator when it is keyed, and dropped, side-output
//! or processed as the job file says (see [`split_late`]).
//!
//! Barriers are aligned: once barrier `n` arrived on a channel, that channel
//! is not read until every open channel delivered `n` (or ended); then
//! every link snapshots, the barrier goes downstream, and the task
//! acknowledges.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Select;
use weir_core::job::LatePolicy;
use weir_core::timers::{TimeDomain, encode_timers};
use weir_core::watermark::InputWatermarks;
use weir_core::{Batch, BatchBuilder};
use weir_wasm::OperatorInstance;

use crate::alignment::Alignment;
use crate::events::TaskEvent;
use crate::gate::Gate;
use crate::message::{Barrier, Message, TaskError, TaskResult};
use crate::plan::InputChannel;
use crate::task_snapshot::{LinkIdentity, SnapshotContext, finish_and_ack, snapshot_link};
use crate::telemetry::{SubtaskMetrics, TaskClock, TaskTimes};

pub(crate) struct ChainLink {
    pub(crate) instance: OperatorInstance,
    pub(crate) identity: LinkIdentity,
    pub(crate) late_policy: LatePolicy,
    pub(crate) keyed: bool,
    pub(crate) late_gate: Gate,
    pub(crate) metrics: Arc<SubtaskMetrics>,
}

pub(crate) struct ChainTask {
    pub(crate) links: Vec<ChainLink>,
    pub(crate) inputs: Vec<InputChannel>,
    pub(crate) gate: Gate,
    pub(crate) batch_records_max: usize,
    pub(crate) snapshots: SnapshotContext,
    /// The chain's thread times, shared by its links' metrics.
    pub(crate) times: Arc<TaskTimes>,
}

/// Timers a guest may register for an already-due time while its timers
/// fire, in one watermark (or processing-time) step, at least.
const REFIRED_TIMERS_MIN: usize = 100_000;

/// ... and per timer pending when the step began: a timer that sets a
/// follow-up (a window's cleanup after it fires, Nexmark q4's "forget this
/// auction" after it closes) is normal, and a watermark that jumps far
/// (a split source's slowest split finishing) makes every follow-up due
/// in the same step. A guest that re-registers due timers without end
/// still stops after a bounded number.
const REFIRED_PER_PENDING: usize = 4;

/// The timers one step may fire: the `pending` ones and the allowance.
fn timer_budget(pending: usize) -> usize {
    pending.saturating_add(REFIRED_TIMERS_MIN.max(pending.saturating_mul(REFIRED_PER_PENDING)))
}

/// How often a chain samples its links' state size, timers and memory.
const SAMPLE_EVERY_MS: i64 = 1_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ChainTask {
    pub(crate) fn run(mut self) -> TaskResult {
        let inputs = std::mem::take(&mut self.inputs);
        let mut watermarks = InputWatermarks::new(inputs.len());
        // A restored chain continues from the watermark its links had, and
        // tells its consumers first, as it had before the snapshot.
        let restored = self.links[0].instance.state().watermark;
        if restored > weir_core::watermark::MIN_WATERMARK {
            watermarks.resume_at(restored);
            for link in &self.links {
                link.metrics.set_watermark(restored);
            }
            self.gate.send_watermark(restored)?;
            for link in &mut self.links {
                link.late_gate.send_watermark(restored)?;
            }
        }
        let mut alignment = Alignment::new(inputs.len());
        let mut open = inputs.len();
        let mut readable: Vec<usize> = (0..inputs.len()).collect();
        let mut select = Select::new();
        for input in &inputs {
            input.rx.select_on(&mut select);
        }
        let mut clock = TaskClock::new(self.times.clone());
        let mut next_sample = i64::MIN;
        // When the first input delivered the barrier being aligned.
        let mut aligning: Option<Instant> = None;
        while open > 0 {
            let now = now_ms();
            self.fire_processing_timers(now)?;
            if now >= next_sample {
                next_sample = now.saturating_add(SAMPLE_EVERY_MS);
                self.sample();
            }
            let ready = match select.try_select() {
                Ok(ready) => ready,
                Err(_) => {
                    // Out of input: what the output edges hold goes now.
                    self.flush_outputs()?;
                    clock.wait_starts();
                    let ready = match self.next_processing_timer() {
                        Some(at) => {
                            let wait = Duration::from_millis(at.saturating_sub(now).max(0) as u64);
                            select.select_timeout(wait).ok()
                        }
                        None => Some(select.select()),
                    };
                    clock.wait_ends();
                    match ready {
                        Some(ready) => ready,
                        None => continue, // a processing-time timer is due
                    }
                }
            };
            let index = readable[ready.index()];
            let message = inputs[index]
                .rx
                .recv_selected(ready)
                .map_err(|_| TaskError::Cancelled)?;
            // Busy: what has waited long enough goes now (after the take:
            // a selected operation must be completed before anything else).
            self.flush_lingering_outputs()?;
            let mut reselect = false;
            let advanced = match message {
                Message::Data(batch) => {
                    watermarks.on_activity(index);
                    self.on_data(
                        inputs[index].input,
                        batch,
                        watermarks.input_watermark(index),
                    )?;
                    None
                }
                Message::Watermark(w) => watermarks.on_watermark(index, w),
                Message::Idle => watermarks.on_idle(index),
                Message::End => {
                    alignment.on_end(index);
                    reselect = true;
                    open -= 1;
                    watermarks.on_end(index)
                }
                Message::Barrier(barrier) => {
                    aligning.get_or_insert_with(Instant::now);
                    alignment.on_barrier(index, barrier)?;
                    reselect = true;
                    None
                }
            };
            if let Some(watermark) = advanced {
                self.advance_watermark(watermark)?;
            }
            if let Some(barrier) = alignment.take_aligned() {
                if let Some(since) = aligning.take() {
                    let took = since.elapsed();
                    for link in &self.links {
                        link.metrics.set_alignment(took);
                    }
                }
                self.on_barrier(barrier)?;
                reselect = true;
            }
            if reselect {
                readable = alignment.readable();
                select = Select::new();
                for &i in &readable {
                    inputs[i].rx.select_on(&mut select);
                }
            }
        }
        self.sample();
        self.gate.send_end()?;
        for link in &mut self.links {
            link.late_gate.send_end()?;
        }
        let _ = self.snapshots.events.send(TaskEvent::Finished);
        Ok(())
    }

    /// Sends what the output edges buffer (see [`crate::gate`]).
    fn flush_outputs(&mut self) -> TaskResult {
        self.gate.flush()?;
        for link in &mut self.links {
            link.late_gate.flush()?;
        }
        Ok(())
    }

    /// Sends what the output edges have held for [`crate::gate::LINGER`].
    fn flush_lingering_outputs(&mut self) -> TaskResult {
        self.gate.flush_lingering()?;
        for link in &mut self.links {
            link.late_gate.flush_lingering()?;
        }
        Ok(())
    }

    /// Publishes each link's host-side gauges: keyed state size, pending
    /// timers, guest memory (each O(1), or a RocksDB property read).
    fn sample(&mut self) {
        for link in &mut self.links {
            let state = link.instance.state();
            // Exact counts for the gauge (repeats and deletions settled).
            state.event_timers.compact();
            state.processing_timers.compact();
            let timers = state.event_timers.len() + state.processing_timers.len();
            let size = state.keyed.as_ref().and_then(|k| k.state.size_estimate());
            let memory = state.memory_bytes();
            link.metrics.set_sampled(size, timers as u64, memory as u64);
        }
    }

    /// Every input delivered the barrier: snapshot, swap in a new version
    /// where the snapshot's plan says so, forward, acknowledge.
    ///
    /// The swap comes after the link's snapshot and before anything else
    /// it processes, so records before the barrier met the old code and
    /// records after it meet the new one, over the same state and timers.
    fn on_barrier(&mut self, barrier: Barrier) -> TaskResult {
        // A snapshot on an object store is written to a local staging
        // directory first and uploaded off this thread.
        let plan = self.snapshots.plan(barrier.id).and_then(|plan| {
            let (local, remote) =
                weir_snapshot::remote::stage(&plan.dir, &self.snapshots.store_options)?;
            Ok((plan, local, remote))
        });
        let mut parts = Vec::new();
        let mut failure = None;
        if let Ok((plan, local, remote)) = &plan {
            for link in &mut self.links {
                match snapshot_link(
                    &mut link.instance,
                    &link.identity,
                    barrier,
                    local,
                    remote.as_ref(),
                    self.snapshots.incremental,
                ) {
                    Ok(mut part) => {
                        if let Some(swap) = plan
                            .swaps
                            .iter()
                            .find(|s| s.operator == link.identity.operator)
                        {
                            part.part.swapped = Some(swap_link(link, swap, &self.snapshots));
                        }
                        parts.push(part);
                    }
                    Err(e) => {
                        failure = Some(format!("operator `{}`: {e:#}", link.instance.label()));
                        break;
                    }
                }
            }
        }
        self.gate.send_barrier(barrier)?;
        for link in &mut self.links {
            link.late_gate.send_barrier(barrier)?;
        }
        match (plan, failure) {
            (Err(e), _) => self.snapshots.decline(barrier.id, e.to_string()),
            (_, Some(reason)) => self.snapshots.decline(barrier.id, reason),
            (Ok((_, local, remote)), None) => finish_and_ack(
                &self.snapshots,
                barrier.id,
                parts,
                remote.map(|r| (local, r)),
            ),
        }
        Ok(())
    }

    fn on_data(&mut self, input: u32, batch: Batch, channel_watermark: i64) -> TaskResult {
        let head = &mut self.links[0];
        let batch = if head.keyed {
            split_late(head, batch, channel_watermark)?
        } else {
            batch
        };
        self.push_through(0, input, batch)
    }

    /// Runs `batch` through links `start..` and sends the result downstream.
    fn push_through(&mut self, start: usize, input: u32, batch: Batch) -> TaskResult {
        let mut current = batch;
        let mut input = input;
        for link in &mut self.links[start..] {
            if current.is_empty() {
                return Ok(());
            }
            link.metrics.add_in(current.len(), current.as_bytes().len());
            link.instance.state().processing_time_ms = now_ms();
            let called = Instant::now();
            let result = link.instance.process(input, &current);
            link.metrics.calls.record(called.elapsed());
            current = result.map_err(anyhow::Error::from)?;
            link.metrics
                .add_out(current.len(), current.as_bytes().len());
            input = 0;
        }
        self.gate.send_batch(current)?;
        Ok(())
    }

    fn advance_watermark(&mut self, watermark: i64) -> TaskResult {
        for i in 0..self.links.len() {
            self.links[i].instance.state().watermark = watermark;
            self.links[i].metrics.set_watermark(watermark);
            self.fire_timers(i, TimeDomain::EventTime, watermark)?;
        }
        self.gate.send_watermark(watermark)?;
        for link in &mut self.links {
            link.late_gate.send_watermark(watermark)?;
        }
        Ok(())
    }

    fn fire_processing_timers(&mut self, now: i64) -> TaskResult {
        for i in 0..self.links.len() {
            self.fire_timers(i, TimeDomain::ProcessingTime, now)?;
        }
        Ok(())
    }

    /// Fires link `i`'s timers due at `time`, in timestamp order, in
    /// batches; timers registered while firing fire too if already due.
    fn fire_timers(&mut self, i: usize, domain: TimeDomain, time: i64) -> TaskResult {
        // Every timer pending now may fire, plus a bounded number that the
        // guest registers while firing and that are already due; a guest
        // that keeps re-registering due timers would otherwise spin forever.
        let mut pending = None;
        let mut fired = 0usize;
        loop {
            let state = self.links[i].instance.state();
            let queue = match domain {
                TimeDomain::EventTime => &mut state.event_timers,
                TimeDomain::ProcessingTime => &mut state.processing_timers,
            };
            let pending = *pending.get_or_insert(queue.len());
            let due = queue.pop_due(time, self.batch_records_max);
            if due.is_empty() {
                return Ok(());
            }
            fired = fired.saturating_add(due.len());
            if fired > timer_budget(pending) {
                return Err(TaskError::Failed(anyhow::anyhow!(
                    "operator `{}` keeps registering timers that are already due: {pending} \
                     were pending and more than {} fired in one step at time {time} without \
                     time advancing",
                    self.links[i].instance.label(),
                    timer_budget(pending),
                )));
            }
            state.processing_time_ms = now_ms();
            let link = &mut self.links[i];
            let timers = encode_timers(domain, &due);
            let called = Instant::now();
            let result = link.instance.on_timers(&timers);
            link.metrics.calls.record(called.elapsed());
            let out = result.map_err(anyhow::Error::from)?;
            link.metrics.add_out(out.len(), out.as_bytes().len());
            self.push_through(i + 1, 0, out)?;
        }
    }

    fn next_processing_timer(&mut self) -> Option<i64> {
        self.links
            .iter_mut()
            .filter_map(|l| l.instance.state().processing_timers.next_timestamp())
            .min()
    }
}

/// Separates late records and applies the link's late policy; returns what
/// the operator should process.
///
/// A record is late when it is at or behind the watermark its own channel
/// announced before it. That is never more lenient than Flink's rule (the
/// operator's watermark is the minimum over channels), so no record reaches
/// a window that already fired; and unlike the minimum it does not depend on
/// how threads interleave, so the same input gives the same output at any
/// parallelism.
fn split_late(link: &mut ChainLink, batch: Batch, watermark: i64) -> Result<Batch, TaskError> {
    if batch.earliest() > watermark {
        return Ok(batch);
    }
    let is_late = |ts: Option<i64>| ts.is_some_and(|t| t <= watermark);
    let late_count = batch.iter().filter(|r| is_late(r.timestamp)).count();
    if late_count == 0 {
        return Ok(batch);
    }
    link.metrics.add_late(late_count);
    match link.late_policy {
        LatePolicy::Process => Ok(batch),
        LatePolicy::Drop | LatePolicy::SideOutput => {
            let mut on_time = BatchBuilder::with_capacity(batch.as_bytes().len());
            let mut late = BatchBuilder::default();
            for record in &batch {
                if is_late(record.timestamp) {
                    late.push_encoded(&record)
                } else {
                    on_time.push_encoded(&record)
                }
            }
            if link.late_policy == LatePolicy::SideOutput {
                link.late_gate.send_batch(late.take())?;
            }
            Ok(on_time.take())
        }
    }
}

/// Replaces `link`'s instance with the prepared new version; on any
/// refusal the old instance goes on unchanged. Returns the digest now
/// running, or why the old one stays.
fn swap_link(
    link: &mut ChainLink,
    swap: &crate::events::Swap,
    snapshots: &crate::task_snapshot::SnapshotContext,
) -> Result<String, String> {
    let key = (swap.operator.clone(), link.identity.subtask);
    let prepared = snapshots
        .prepared
        .lock()
        .expect("not poisoned")
        .remove(&key)
        .filter(|p| p.digest == swap.digest)
        .ok_or_else(|| "its new version was not prepared on this node".to_string())?;
    link.instance
        .swap(prepared.instance, swap.allow_dropping_state)
        .map_err(|e| weir_core::text::cut_message(&e.to_string()))?;
    tracing::info!(
        operator = %link.instance.label(),
        "now runs {}",
        &swap.digest[..swap.digest.len().min(12)]
    );
    Ok(swap.digest.clone())
}
