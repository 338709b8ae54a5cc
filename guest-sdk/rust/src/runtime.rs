//! Drives an [`Operator`] over encoded batches. Shared by the component
//! exports (`wasm`) and the native test harness, so tests run the very code
//! the host will.

use crate::cache::WriteBacks;
use crate::codec::Decode;
use crate::context::{Context, OpenContext, OperatorInfo, Record, Timer};
use crate::host::{Host, TimerBuffer};
use crate::state::StateDescriptor;
use crate::wire::{Reader, TimerBatch, Writer};
use crate::{Error, Operator};

/// What a host that calls `prepare-snapshot` puts in the config.
pub(crate) const PREPARE_SNAPSHOT_CONFIG: &str = "weir.prepare_snapshot";

/// One opened operator and the write-back caches it declared. They are
/// flushed to the host when it is about to take a snapshot
/// ([`Instance::prepare_snapshot`]) if the host said it calls that,
/// else at the end of every call (an older host may snapshot between any
/// two calls).
pub(crate) struct Instance<O> {
    pub(crate) op: O,
    write_backs: WriteBacks,
    /// The host calls `prepare-snapshot` before every snapshot: write-back
    /// state may stay in guest memory across calls until then.
    hold_back: bool,
    /// Timer registrations held back until the end of a call, reused.
    timers: TimerBatch,
}

pub(crate) fn open<O: Operator>(
    info: OperatorInfo,
) -> Result<(Instance<O>, Vec<StateDescriptor>), Error> {
    let mut ctx = OpenContext {
        info,
        states: Vec::new(),
        write_backs: Vec::new(),
    };
    let op = O::open(&mut ctx)?;
    let hold_back = ctx
        .info
        .config
        .iter()
        .any(|(k, v)| k == PREPARE_SNAPSHOT_CONFIG && v == "1");
    let instance = Instance {
        op,
        write_backs: ctx.write_backs,
        hold_back,
        timers: TimerBatch::new(),
    };
    Ok((instance, ctx.states))
}

impl<O: Operator> Instance<O> {
    /// Runs one call with timer registrations held back, then hands the
    /// host what the call left: write-back state, then the timers.
    fn call<T>(
        &mut self,
        host: &mut dyn Host,
        run: impl FnOnce(&mut O, &mut dyn Host, &WriteBacks) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut host = TimerBuffer::new(host, &mut self.timers);
        let out = run(&mut self.op, &mut host, &self.write_backs)?;
        if !self.hold_back {
            flush(&self.write_backs, &mut host);
        }
        host.flush();
        Ok(out)
    }

    /// The host is about to snapshot: hands it everything held back.
    pub(crate) fn prepare_snapshot(&mut self, host: &mut dyn Host) {
        flush(&self.write_backs, host);
    }

    /// Decodes `batch`, calls `process` per record, returns the encoded
    /// output.
    pub(crate) fn process(
        &mut self,
        host: &mut dyn Host,
        input: u32,
        batch: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.call(host, |op, host, caches| {
            let ahead = Prefetch::new(caches, batch, record_key);
            process(op, host, input, batch, ahead)
        })
    }

    /// Decodes fired timers, calls `on_timer` per timer, returns the
    /// output.
    pub(crate) fn on_timers(
        &mut self,
        host: &mut dyn Host,
        timers: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.call(host, |op, host, caches| {
            let ahead = Prefetch::new(caches, timers, timer_key);
            on_timers(op, host, timers, ahead)
        })
    }
}

fn flush(write_backs: &WriteBacks, host: &mut dyn Host) {
    for cache in write_backs {
        cache.borrow_mut().flush(host);
    }
}

fn process<O: Operator>(
    op: &mut O,
    host: &mut dyn Host,
    input: u32,
    batch: &[u8],
    mut ahead: Prefetch<'_>,
) -> Result<Vec<u8>, Error> {
    let mut reader = Reader::new(batch);
    let count = reader.u32()?;
    let mut out = Writer::with_capacity(batch.len());
    let mut watermark = None;
    for index in 0..count {
        ahead.next();
        let timestamp = reader.timestamp()?;
        let key_bytes = reader.bytes()?;
        let value_bytes = reader.bytes()?;
        let key = O::Key::decode(key_bytes)
            .map_err(|e| Error::msg(format!("record {index}: key: {e}")))?;
        let value = O::Value::decode(value_bytes)
            .map_err(|e| Error::msg(format!("record {index}: value: {e}")))?;
        let mut ctx = Context {
            host: &mut *host,
            key: key_bytes,
            timestamp,
            out: &mut out,
            watermark: &mut watermark,
        };
        op.process(
            &mut ctx,
            Record {
                key,
                value,
                timestamp,
                input,
            },
        )?;
    }
    Ok(out.finish())
}

fn on_timers<O: Operator>(
    op: &mut O,
    host: &mut dyn Host,
    timers: &[u8],
    mut ahead: Prefetch<'_>,
) -> Result<Vec<u8>, Error> {
    let mut reader = Reader::new(timers);
    let count = reader.u32()?;
    let mut out = Writer::new();
    let mut watermark = None;
    for _ in 0..count {
        ahead.next();
        let timestamp = reader.i64()?;
        let domain = reader.domain()?;
        let key_bytes = reader.bytes()?;
        let key = O::Key::decode(key_bytes).map_err(|e| Error::msg(format!("timer key: {e}")))?;
        let mut ctx = Context {
            host: &mut *host,
            key: key_bytes,
            timestamp: Some(timestamp),
            out: &mut out,
            watermark: &mut watermark,
        };
        op.on_timer(
            &mut ctx,
            Timer {
                key,
                timestamp,
                domain,
            },
        )?;
    }
    Ok(out.finish())
}

/// Has each write-back cache prefetch the keys of a batch
/// ([`crate::cache::StateCache::prefetch`]) [`PREFETCH_GROUP`] at a time,
/// as the record loop reaches each group. A group at a time, because a
/// read stalls the CPU once its reorder window is full: reads for many
/// keys issued together wait on memory together, where one key's read per
/// record would wait alone, as the lookup it saves does. (Issuing them
/// further ahead would not help: without a real prefetch instruction in
/// Wasm, a read holds the CPU up until it arrives either way.) Does
/// nothing for an operator without write-back caches; a malformed batch
/// just ends it (the record loop reports the error).
pub(crate) struct Prefetch<'a> {
    caches: &'a WriteBacks,
    reader: Reader<'a>,
    /// Records whose keys are not prefetched yet.
    left: u32,
    /// Records the loop may handle before the next group is prefetched.
    until_next: usize,
    key_of: fn(&mut Reader<'a>) -> Result<&'a [u8], Error>,
}

/// Keys prefetched together: their reads fill most of a core's
/// outstanding-miss slots, and a group's cache lines fit its L1 cache.
const PREFETCH_GROUP: usize = crate::cache::PREFETCH_KEYS_MAX;

impl<'a> Prefetch<'a> {
    fn new(
        caches: &'a WriteBacks,
        batch: &'a [u8],
        key_of: fn(&mut Reader<'a>) -> Result<&'a [u8], Error>,
    ) -> Self {
        let mut reader = Reader::new(batch);
        let left = match caches.is_empty() {
            true => 0,
            false => reader.u32().unwrap_or(0),
        };
        let mut ahead = Prefetch {
            caches,
            reader,
            left,
            until_next: 0,
            key_of,
        };
        ahead.group();
        ahead
    }

    /// Called once per record handled.
    #[inline]
    fn next(&mut self) {
        if self.until_next == 0 {
            self.group();
        }
        self.until_next = self.until_next.saturating_sub(1);
    }

    /// Prefetches the next group's keys.
    fn group(&mut self) {
        self.until_next = PREFETCH_GROUP;
        let mut keys: [&[u8]; PREFETCH_GROUP] = [&[]; PREFETCH_GROUP];
        let mut n = 0;
        while n < PREFETCH_GROUP && self.left > 0 {
            self.left -= 1;
            let Ok(key) = (self.key_of)(&mut self.reader) else {
                self.left = 0;
                break;
            };
            keys[n] = key;
            n += 1;
        }
        if n == 0 {
            return;
        }
        for cache in self.caches {
            // Borrowed only while a record is handled, never between.
            if let Ok(cache) = cache.try_borrow() {
                cache.prefetch(&keys[..n]);
            }
        }
    }
}

/// A record's key, skipping the rest of it.
fn record_key<'a>(reader: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    reader.timestamp()?;
    let key = reader.bytes()?;
    reader.bytes()?;
    Ok(key)
}

/// A fired timer's key, skipping the rest of it.
fn timer_key<'a>(reader: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    reader.i64()?;
    reader.u8()?;
    reader.bytes()
}

/// Entry points behind [`crate::export_operator!`]: one operator instance per
/// component instance, kept in guest memory between calls.
#[cfg(target_arch = "wasm32")]
pub mod wasm {
    use std::any::Any;
    use std::cell::RefCell;

    use crate::bindings::weir::operator::types as wit;
    use crate::host::{Host, LogLevel, WitHost};
    use crate::state::StateKind;
    use crate::{Operator, OperatorInfo};

    thread_local! {
        static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    fn with_instance<O: Operator, T>(
        run: impl FnOnce(&mut super::Instance<O>) -> Result<T, crate::Error>,
    ) -> Result<T, String> {
        INSTANCE.with(|cell| {
            let mut slot = cell.borrow_mut();
            let op = slot
                .as_mut()
                .and_then(|b| b.downcast_mut::<super::Instance<O>>())
                .ok_or_else(|| "the host called the operator before `open`".to_string())?;
            run(op).map_err(|e| e.to_string())
        })
    }

    pub fn open<O: Operator>(info: wit::OperatorInfo) -> Result<Vec<wit::StateDescriptor>, String> {
        // Panics abort the instance; send their message to the host first so
        // the failure report says what went wrong, not just "unreachable".
        std::panic::set_hook(Box::new(|panic| {
            WitHost.log(LogLevel::Error, &format!("guest panicked: {panic}"))
        }));
        let info = OperatorInfo {
            name: info.name,
            subtask_index: info.subtask_index,
            parallelism: info.parallelism,
            config: info.config,
        };
        let (instance, states) = super::open::<O>(info).map_err(|e| e.to_string())?;
        INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(instance)));
        Ok(states
            .into_iter()
            .map(|s| wit::StateDescriptor {
                name: s.name,
                kind: match s.kind {
                    StateKind::Value => wit::StateKind::Value,
                    StateKind::List => wit::StateKind::List,
                    StateKind::Map => wit::StateKind::Map,
                },
                ttl_ms: s.ttl_ms,
            })
            .collect())
    }

    pub fn process<O: Operator>(input: u32, batch: &[u8]) -> Result<Vec<u8>, String> {
        with_instance::<O, _>(|instance| instance.process(&mut WitHost, input, batch))
    }

    pub fn on_timers<O: Operator>(timers: &[u8]) -> Result<Vec<u8>, String> {
        with_instance::<O, _>(|instance| instance.on_timers(&mut WitHost, timers))
    }

    pub fn prepare_snapshot<O: Operator>() -> Result<(), String> {
        with_instance::<O, _>(|instance| {
            instance.prepare_snapshot(&mut WitHost);
            Ok(())
        })
    }
}
