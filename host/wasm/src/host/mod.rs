//! The host side of the operator world: what a guest can reach.
//!
//! One module per WIT interface. Every import that a guest can misuse (an
//! undeclared state, a key this subtask does not own, a timer in a
//! non-keyed operator) traps with a message naming the operator; none panics.

mod keyed_state;
mod log;
mod timers;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use weir_core::timers::TimerQueue;
use weir_core::watermark::MIN_WATERMARK;
use weir_core::{KeyGroupRange, key_group_of};
use weir_state::KeyedStateStore;

use crate::bindings::Operator;

/// Longest guest log message kept; longer ones are cut.
const LOG_MESSAGE_BYTES_MAX: usize = 4096;

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
    /// The last error the guest logged, attached to trap reports (SDK panic
    /// hooks log the panic message before trapping).
    pub(crate) last_guest_error: Option<String>,
    pub(crate) limits: StoreLimits,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl GuestState {
    pub(crate) fn new(
        label: Arc<str>,
        keyed: Option<Keyed>,
        memory_max_bytes: usize,
        seed: u64,
    ) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_max_bytes)
            .trap_on_grow_failure(true)
            .build();
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
            limits,
            wasi,
            table: ResourceTable::new(),
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

    /// Checks that `key` belongs to this subtask (for timers; the state store
    /// checks its own keys).
    fn check_key_owned(&mut self, key: &[u8]) -> wasmtime::Result<()> {
        let keyed = self.keyed("timers")?;
        let group = key_group_of(key, keyed.max_parallelism);
        if keyed.key_groups.contains(group) {
            Ok(())
        } else {
            let label = &self.label;
            Err(wasmtime::format_err!(
                "operator `{label}` registered a timer for key {:?} of key group {group}, which this subtask does not own",
                String::from_utf8_lossy(key)
            ))
        }
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

fn truncate_message(mut message: String) -> String {
    if message.len() > LOG_MESSAGE_BYTES_MAX {
        let mut cut = LOG_MESSAGE_BYTES_MAX;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("…");
    }
    message
}
