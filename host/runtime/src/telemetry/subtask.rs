//! What one subtask counts while it runs: plain atomics that its own
//! thread updates once per batch or message (Relaxed: they are statistics,
//! nothing is ordered by them), read by whoever renders them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A gauge that has no value yet (or none for this kind of subtask).
const UNSET: u64 = u64::MAX;
/// A watermark not seen yet.
const NO_WATERMARK: i64 = i64::MIN;

/// What kind of node a subtask belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Source,
    Operator,
    Sink,
}

impl NodeKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NodeKind::Source => "source",
            NodeKind::Operator => "operator",
            NodeKind::Sink => "sink",
        }
    }
}

/// Where a task's thread spends its time. Shared by the links of a chain
/// (they run on one thread), as Flink reports a chained vertex.
#[derive(Debug, Default)]
pub(crate) struct TaskTimes {
    /// Not waiting for input: busy plus backpressured.
    active_ns: AtomicU64,
    idle_ns: AtomicU64,
    /// Blocked sending into a full channel.
    backpressured_ns: AtomicU64,
}

impl TaskTimes {
    pub(crate) fn add_backpressured(&self, d: Duration) {
        self.backpressured_ns.fetch_add(nanos(d), Relaxed);
    }

    /// Busy, idle and backpressured time so far.
    pub(crate) fn read(&self) -> (Duration, Duration, Duration) {
        let active = self.active_ns.load(Relaxed);
        let blocked = self.backpressured_ns.load(Relaxed);
        (
            Duration::from_nanos(active.saturating_sub(blocked)),
            Duration::from_nanos(self.idle_ns.load(Relaxed)),
            Duration::from_nanos(blocked),
        )
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A task thread's stopwatch: everything between two waits is active time.
pub(crate) struct TaskClock {
    times: Arc<TaskTimes>,
    since: Instant,
}

impl TaskClock {
    pub(crate) fn new(times: Arc<TaskTimes>) -> Self {
        TaskClock {
            times,
            since: Instant::now(),
        }
    }

    /// The thread is about to wait for input (or sleep).
    pub(crate) fn wait_starts(&mut self) {
        let now = Instant::now();
        self.times
            .active_ns
            .fetch_add(nanos(now - self.since), Relaxed);
        self.since = now;
    }

    /// The wait is over: the time since [`TaskClock::wait_starts`] was idle.
    pub(crate) fn wait_ends(&mut self) {
        let now = Instant::now();
        self.times
            .idle_ns
            .fetch_add(nanos(now - self.since), Relaxed);
        self.since = now;
    }
}

impl Drop for TaskClock {
    fn drop(&mut self) {
        self.wait_starts(); // the last stretch was active
    }
}

/// Upper bounds of the guest call latency buckets, in microseconds.
pub(crate) const CALL_BUCKETS_US: [u64; 18] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 10_000_000,
];

/// Guest call latencies: a fixed-bucket histogram of atomics.
#[derive(Debug, Default)]
pub(crate) struct CallHistogram {
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; CALL_BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl CallHistogram {
    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = CALL_BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(CALL_BUCKETS_US.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(nanos(d), Relaxed);
    }

    /// Cumulative counts per bound (the last is +Inf, `None`), and the sum.
    pub(crate) fn read(&self) -> (Vec<(Option<u64>, u64)>, Duration) {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, count) in self.buckets.iter().enumerate() {
            total += count.load(Relaxed);
            out.push((CALL_BUCKETS_US.get(i).copied(), total));
        }
        (out, Duration::from_nanos(self.sum_ns.load(Relaxed)))
    }

    /// The upper bound (µs) of the bucket that holds the 99th percentile;
    /// `None` before the first call. A call past the last bound counts as it.
    pub(crate) fn p99_us(&self) -> Option<u64> {
        let (buckets, _) = self.read();
        let count = buckets.last().map_or(0, |b| b.1);
        if count == 0 {
            return None;
        }
        let rank = count - count / 100; // at least 99% of the calls
        let last = CALL_BUCKETS_US[CALL_BUCKETS_US.len() - 1];
        buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= rank)
            .map(|(bound, _)| bound.unwrap_or(last))
    }
}

/// The metrics of one subtask of one node.
#[derive(Debug)]
pub(crate) struct SubtaskMetrics {
    pub(crate) kind: NodeKind,
    records_in: AtomicU64,
    records_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    late_records: AtomicU64,
    /// Records a source could not parse and skipped or dead-lettered.
    records_skipped: AtomicU64,
    records_dead_lettered: AtomicU64,
    pub(crate) times: Arc<TaskTimes>,
    watermark: AtomicI64,
    state_keys: AtomicU64,
    state_bytes: AtomicU64,
    timers: AtomicU64,
    guest_memory_bytes: AtomicU64,
    /// How long the last barrier took to align over the inputs.
    alignment_ns: AtomicU64,
    pub(crate) calls: CallHistogram,
}

/// A point-in-time copy of a subtask's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SubtaskValues {
    pub(crate) records_in: u64,
    pub(crate) records_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) late_records: u64,
    pub(crate) records_skipped: u64,
    pub(crate) records_dead_lettered: u64,
    pub(crate) busy: Duration,
    pub(crate) idle: Duration,
    pub(crate) backpressured: Duration,
    pub(crate) watermark: Option<i64>,
    pub(crate) state_keys: Option<u64>,
    pub(crate) state_bytes: Option<u64>,
    pub(crate) timers: Option<u64>,
    pub(crate) guest_memory_bytes: Option<u64>,
    pub(crate) alignment: Option<Duration>,
}

fn gauge(a: &AtomicU64) -> Option<u64> {
    Some(a.load(Relaxed)).filter(|&v| v != UNSET)
}

impl SubtaskMetrics {
    pub(crate) fn new(kind: NodeKind, times: Arc<TaskTimes>) -> Self {
        SubtaskMetrics {
            kind,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            late_records: AtomicU64::new(0),
            records_skipped: AtomicU64::new(0),
            records_dead_lettered: AtomicU64::new(0),
            times,
            watermark: AtomicI64::new(NO_WATERMARK),
            state_keys: AtomicU64::new(UNSET),
            state_bytes: AtomicU64::new(UNSET),
            timers: AtomicU64::new(UNSET),
            guest_memory_bytes: AtomicU64::new(UNSET),
            alignment_ns: AtomicU64::new(UNSET),
            calls: CallHistogram::default(),
        }
    }

    #[inline]
    pub(crate) fn add_in(&self, records: usize, bytes: usize) {
        self.records_in.fetch_add(records as u64, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    #[inline]
    pub(crate) fn add_out(&self, records: usize, bytes: usize) {
        self.records_out.fetch_add(records as u64, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn add_late(&self, records: usize) {
        self.late_records.fetch_add(records as u64, Relaxed);
    }

    pub(crate) fn add_parse_errors(&self, skipped: u64, dead_lettered: u64) {
        self.records_skipped.fetch_add(skipped, Relaxed);
        self.records_dead_lettered.fetch_add(dead_lettered, Relaxed);
    }

    pub(crate) fn set_alignment(&self, took: Duration) {
        self.alignment_ns.store(nanos(took).min(UNSET - 1), Relaxed);
    }

    pub(crate) fn set_watermark(&self, watermark: i64) {
        self.watermark.store(watermark, Relaxed);
    }

    /// The host-side gauges an operator's thread samples now and then.
    pub(crate) fn set_sampled(
        &self,
        state: Option<(u64, u64)>,
        timers: u64,
        guest_memory_bytes: u64,
    ) {
        let (keys, bytes) = state.unwrap_or((UNSET, UNSET));
        self.state_keys.store(keys, Relaxed);
        self.state_bytes.store(bytes, Relaxed);
        self.timers.store(timers, Relaxed);
        self.guest_memory_bytes.store(guest_memory_bytes, Relaxed);
    }

    pub(crate) fn records_in(&self) -> u64 {
        self.records_in.load(Relaxed)
    }
    pub(crate) fn records_out(&self) -> u64 {
        self.records_out.load(Relaxed)
    }
    pub(crate) fn late_records(&self) -> u64 {
        self.late_records.load(Relaxed)
    }
    pub(crate) fn records_skipped(&self) -> u64 {
        self.records_skipped.load(Relaxed)
    }
    pub(crate) fn records_dead_lettered(&self) -> u64 {
        self.records_dead_lettered.load(Relaxed)
    }

    pub(crate) fn values(&self) -> SubtaskValues {
        let (busy, idle, backpressured) = self.times.read();
        SubtaskValues {
            records_in: self.records_in(),
            records_out: self.records_out(),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            late_records: self.late_records(),
            records_skipped: self.records_skipped(),
            records_dead_lettered: self.records_dead_lettered(),
            busy,
            idle,
            backpressured,
            watermark: Some(self.watermark.load(Relaxed)).filter(|&w| w != NO_WATERMARK),
            state_keys: gauge(&self.state_keys),
            state_bytes: gauge(&self.state_bytes),
            timers: gauge(&self.timers),
            guest_memory_bytes: gauge(&self.guest_memory_bytes),
            alignment: gauge(&self.alignment_ns).map(Duration::from_nanos),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_read_back() {
        let m = SubtaskMetrics::new(NodeKind::Operator, Arc::default());
        assert_eq!(m.values().watermark, None);
        assert_eq!(m.values().state_keys, None);
        m.add_in(3, 30);
        m.add_in(2, 20);
        m.add_out(4, 44);
        m.add_late(1);
        m.set_watermark(17);
        m.set_sampled(Some((5, 500)), 2, 1 << 20);
        let v = m.values();
        assert_eq!((v.records_in, v.bytes_in), (5, 50));
        assert_eq!((v.records_out, v.bytes_out), (4, 44));
        assert_eq!(v.late_records, 1);
        assert_eq!(v.watermark, Some(17));
        assert_eq!((v.state_keys, v.state_bytes), (Some(5), Some(500)));
        assert_eq!((v.timers, v.guest_memory_bytes), (Some(2), Some(1 << 20)));
        m.set_sampled(None, 0, 0);
        assert_eq!(m.values().state_bytes, None);
        assert_eq!(v.alignment, None);
        m.set_alignment(Duration::from_millis(3));
        assert_eq!(m.values().alignment, Some(Duration::from_millis(3)));
    }

    #[test]
    fn busy_is_active_time_less_backpressure() {
        let times = Arc::new(TaskTimes::default());
        let mut clock = TaskClock::new(times.clone());
        std::thread::sleep(Duration::from_millis(20));
        clock.wait_starts();
        std::thread::sleep(Duration::from_millis(20));
        clock.wait_ends();
        times.add_backpressured(Duration::from_millis(5));
        drop(clock);
        let (busy, idle, blocked) = times.read();
        assert!(busy >= Duration::from_millis(15), "{busy:?}");
        assert!(idle >= Duration::from_millis(20), "{idle:?}");
        assert!(idle < Duration::from_millis(500), "{idle:?}");
        assert_eq!(blocked, Duration::from_millis(5));
    }

    #[test]
    fn histogram_buckets_and_p99() {
        let h = CallHistogram::default();
        assert_eq!(h.p99_us(), None);
        for _ in 0..99 {
            h.record(Duration::from_micros(20)); // <= 25
        }
        h.record(Duration::from_secs(60)); // +Inf
        let (buckets, sum) = h.read();
        assert_eq!(buckets[0], (Some(10), 0));
        assert_eq!(buckets[1], (Some(25), 99));
        assert_eq!(buckets.last(), Some(&(None, 100)));
        assert_eq!(
            sum,
            Duration::from_micros(99 * 20) + Duration::from_secs(60)
        );
        assert_eq!(h.p99_us(), Some(25));
        h.record(Duration::from_secs(60));
        assert_eq!(h.p99_us(), Some(10_000_000), "2 of 101 calls were slow");
    }
}
