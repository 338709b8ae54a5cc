//! The host side of the operator world: what a guest can reach.
//!
//! One module per WIT interface. Every import that a guest can misuse (an
//! undeclared state, a key this subtask does not own, a timer in a
//! non-keyed operator) traps with a message naming the operator; none panics.
//!
//! Everything the host keeps or builds on a guest's behalf is bounded by
//! the operator's [`GuestLimits`]: key and value sizes, bytes read back per
//! call, keyed state held in memory, pending timers, log lines per second. Going over one traps with
//! [`GuestState::over_limit`], which names the limit and its job-file key.

mod keyed_state;
mod lists;
mod log;
mod timers;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use weir_core::job::GuestLimits;
use weir_core::timers::TimerQueue;
use weir_core::watermark::MIN_WATERMARK;
use weir_core::{KeyGroupRange, key_group_of};
use weir_state::KeyedStateStore;

use crate::bindings::Operator;
use crate::limiter::GuestLimiter;

/// Where a keyed operator's state and timers live.
pub struct Keyed {
    pub state: KeyedStateStore,
    pub key_groups: KeyGroupRange,
    pub max_parallelism: u32,
}

/// The host state behind one operator instance (wasmtime's store data).
pub struct GuestState {
    /// `operator` or `operator[subtask]`, for messages.
    pub(crate) label: Arc<str>,
    /// `None` for operators that are not behind a hash edge.
    pub keyed: Option<Keyed>,
    pub event_timers: TimerQueue,
    pub processing_timers: TimerQueue,
    /// The operator's current event-time watermark.
    pub watermark: i64,
    /// The processing time the guest sees, set by the runtime before each call.
    pub processing_time_ms: i64,
    /// The last error the guest logged, already cut, attached to trap
    /// reports (SDK panic hooks log the panic message before trapping).
    pub(crate) last_guest_error: Option<String>,
    pub(crate) limits: GuestLimits,
    /// Memories and tables of the instance; wasmtime's store limiter.
    pub(crate) limiter: GuestLimiter,
    /// The limit a host call refused, for the error report.
    pub(crate) limit_reached: Option<String>,
    log_rate: log::LogRate,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl GuestState {
    /// Bytes of the instance's memories and tables, as its limiter granted.
    pub fn memory_bytes(&self) -> usize {
        self.limiter.used_bytes()
    }

    pub(crate) fn new(
        label: Arc<str>,
        mut keyed: Option<Keyed>,
        limits: GuestLimits,
        seed: u64,
    ) -> Self {
        if let Some(keyed) = &mut keyed {
            // Before any restore writes into it: restored state counts too.
            keyed
                .state
                .set_memory_max_bytes(limits.state_memory_max_bytes);
        }
        let limiter = GuestLimiter::new(label.clone(), limits.memory_max_bytes);
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
                seed,
            ))
            .insecure_random(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
                seed ^ 0x5eed,
            ))
            .insecure_random_seed(u128::from(seed))
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        GuestState {
            label,
            keyed,
            event_timers: TimerQueue::default(),
            processing_timers: TimerQueue::default(),
            watermark: MIN_WATERMARK,
            processing_time_ms: 0,
            last_guest_error: None,
            log_rate: log::LogRate::new(limits.log_lines_per_second),
            limits,
            limiter,
            limit_reached: None,
            wasi,
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(crate::limiter::HOST_RESOURCES_MAX);
                table
            },
        }
    }

    /// The keyed context, or a trap explaining why there is none.
    /// (Every state and timer call passes here: the label is only touched
    /// on the error path.)
    fn keyed(&mut self, what: &str) -> wasmtime::Result<&mut Keyed> {
        let label = &self.label;
        self.keyed.as_mut().ok_or_else(|| {
            wasmtime::format_err!(
                "operator `{label}` used {what}, but it is not keyed: keyed state and timers need every input to be a hash edge"
            )
        })
    }

    /// Fails the call: `what` (naming the limit and its job-file key) is
    /// kept for the error report.
    #[cold]
    fn over_limit(&mut self, what: String) -> wasmtime::Error {
        let error = wasmtime::format_err!("operator `{}`: {what}", self.label);
        self.limit_reached = Some(what);
        error
    }

    /// Refuses a state, map or timer key longer than `key_max_bytes`.
    #[inline]
    fn check_key_len(&mut self, what: &str, key: &[u8]) -> wasmtime::Result<()> {
        if key.len() <= self.limits.key_max_bytes {
            return Ok(());
        }
        let max = self.limits.key_max_bytes;
        Err(self.over_limit(format!(
            "a {what} of {} bytes is over the key limit of {max} bytes (key_max_bytes); \
             raise `key_max_bytes` in the job file",
            key.len()
        )))
    }

    /// Checks that `key` belongs to this subtask (for timers; the state store
    /// checks its own keys).
    fn check_key_owned(&mut self, key: &[u8]) -> wasmtime::Result<()> {
        let keyed = self.keyed("timers")?;
        if keyed.key_groups.covers_all(keyed.max_parallelism) {
            return Ok(());
        }
        let group = key_group_of(key, keyed.max_parallelism);
        if keyed.key_groups.contains(group) {
            Ok(())
        } else {
            let label = &self.label;
            Err(wasmtime::format_err!(
                "operator `{label}` registered a timer for key {:?} of key group {group}, which this subtask does not own",
                weir_core::text::cut(&String::from_utf8_lossy(key), 256)
            ))
        }
    }
}

impl Drop for GuestState {
    fn drop(&mut self) {
        self.log_rate.report_dropped(&self.label);
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// WASI clocks read zero: guests get time only through `timers`, so a replay
/// after a failure sees the same values.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    // Guests built with a standard library (Rust std, Python, JS) import WASI;
    // the context above grants none of its authority.
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    refuse_sleep(linker)?;
    Operator::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |state| state)
}

/// Sleeping would block inside the host, where no epoch deadline can stop
/// it, and would hang the task. Nothing else in the granted WASI context can
/// block (no sockets, no files, stdin is closed), so refusing to subscribe
/// to the clock closes the last way to wait: it traps with a clear message.
fn refuse_sleep(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    use wasmtime::StoreContextMut;
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;

    fn refused(store: &StoreContextMut<'_, GuestState>) -> wasmtime::Error {
        wasmtime::format_err!(
            "operator `{}` tried to sleep or wait on a clock; operators must not block \
             (use a processing-time timer to act later)",
            store.data().label
        )
    }
    linker.allow_shadowing(true);
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    clock.func_wrap(
        "subscribe-duration",
        |store: StoreContextMut<'_, GuestState>,
         (_,): (u64,)|
         -> wasmtime::Result<(Resource<DynPollable>,)> { Err(refused(&store)) },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |store: StoreContextMut<'_, GuestState>,
         (_,): (u64,)|
         -> wasmtime::Result<(Resource<DynPollable>,)> { Err(refused(&store)) },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// `n MiB` for limits set in MiB in the job file, bytes otherwise.
pub(crate) fn mib(bytes: usize) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}
