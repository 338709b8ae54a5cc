//! A source split's thread: reads batches, stamps watermarks, pushes them
//! downstream until the source is exhausted or the job is cancelled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use weir_connectors::{Source, SourceStatus};
use weir_core::BatchBuilder;
use weir_core::job::SourceSpec;
use weir_core::watermark::{BoundedOutOfOrderness, MIN_WATERMARK};

use crate::gate::Gate;
use crate::message::{TaskError, TaskResult};
use crate::metrics::NodeCounters;

pub(crate) struct SourceTask {
    pub(crate) spec: SourceSpec,
    pub(crate) split: u32,
    pub(crate) source: Box<dyn Source>,
    pub(crate) gate: Gate,
    pub(crate) batch_records_max: usize,
    pub(crate) counters: Arc<NodeCounters>,
    pub(crate) cancel: Arc<AtomicBool>,
}

/// How long an idle split sleeps before asking its source again.
const IDLE_POLL: Duration = Duration::from_millis(10);

impl SourceTask {
    /// Sends `batch`, first cutting it before any record that is at or
    /// behind the watermark as of its position and sending that watermark
    /// ahead of it. Lateness thus depends only on the order of the input,
    /// never on batch sizes; in-order input is sent whole.
    fn send_with_watermarks(
        &mut self,
        batch: weir_core::Batch,
        watermarks: &mut BoundedOutOfOrderness,
        sent_watermark: &mut i64,
    ) -> Result<(), TaskError> {
        let mut probe = watermarks.clone();
        let needs_cut = batch.iter().any(|r| match r.timestamp {
            Some(ts) => {
                let late = ts <= probe.current() && probe.current() > *sent_watermark;
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
                let watermark = watermarks.current();
                if ts <= watermark && watermark > *sent_watermark {
                    self.gate.send_batch(part.take())?;
                    self.gate.send_watermark(watermark)?;
                    *sent_watermark = watermark;
                }
                watermarks.observe(ts);
            }
            part.push_encoded(&record);
        }
        self.gate.send_batch(part.take())?;
        Ok(())
    }

    pub(crate) fn run(mut self) -> TaskResult {
        let mut builder = BatchBuilder::with_capacity(self.batch_records_max * 64);
        let mut watermarks = BoundedOutOfOrderness::new(self.spec.watermark_delay_ms);
        let mut sent_watermark = MIN_WATERMARK;
        let mut last_data = Instant::now();
        let mut idle = false;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(TaskError::Cancelled);
            }
            let status = self
                .source
                .next_batch(&mut builder, self.batch_records_max)
                .with_context(|| format!("source `{}` (split {})", self.spec.name, self.split))?;
            let batch = builder.take();
            if batch.is_empty() {
                if status == SourceStatus::More {
                    // Nothing for now: after idle_timeout_ms, stop holding back
                    // downstream watermarks.
                    if let Some(timeout) = self.spec.idle_timeout_ms
                        && !idle
                        && last_data.elapsed() >= Duration::from_millis(timeout)
                    {
                        idle = true;
                        self.gate.send_idle()?;
                    }
                    std::thread::sleep(IDLE_POLL);
                    continue;
                }
            } else {
                idle = false;
                last_data = Instant::now();
                self.counters.add_out(batch.len());
                self.send_with_watermarks(batch, &mut watermarks, &mut sent_watermark)?;
                let watermark = watermarks.current();
                if watermark > sent_watermark {
                    sent_watermark = watermark;
                    self.gate.send_watermark(watermark)?;
                }
            }
            if status == SourceStatus::Finished {
                self.gate.send_end()?;
                return Ok(());
            }
        }
    }
}
