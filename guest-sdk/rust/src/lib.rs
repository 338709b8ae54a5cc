//! weir-guest: write weir stream operators in Rust.
//!
//! Implement [`Operator`] for a type, export it with [`export_operator!`],
//! and build the crate for `wasm32-wasip2`: the result is a component that
//! `weir run` loads. You never touch wit-bindgen or the batch format: the
//! SDK decodes each batch, calls your `process` once per record with typed
//! key and value ([`Decode`]/[`Encode`]: strings, numbers, bytes, or any serde
//! type in [`Json`]),
//! and encodes what you [`Context::emit`].
//!
//! State lives in the host ([`ValueState`], [`ListState`], [`MapState`],
//! declared in [`Operator::open`]) and is scoped to the key of the record or
//! timer being handled, as in Flink's keyed functions. Your struct's own
//! fields are a cache that can vanish on restart or upgrade.
//!
//! [`window`] builds event-time windows on that state: tumbling, sliding
//! and session windows with incremental aggregates (count, sum, min, max,
//! average, or your own), allowed lateness, and late records handed back.
//!
//! [`testing::Harness`] runs an operator natively with an in-memory host, so
//! operators are unit-tested with plain `cargo test`.
//!
//! ```
//! use weir_guest::{Context, OpenContext, Operator, Record, Result, ValueState};
//!
//! /// Counts records per key and emits the running count.
//! struct Count {
//!     seen: ValueState<u64>,
//! }
//!
//! impl Operator for Count {
//!     type Key = String;
//!     type Value = String;
//!
//!     fn open(ctx: &mut OpenContext) -> Result<Self> {
//!         Ok(Count { seen: ctx.value_state("seen")? })
//!     }
//!
//!     fn process(&mut self, ctx: &mut Context, record: Record<String, String>) -> Result<()> {
//!         let n = self.seen.get(ctx)?.unwrap_or(0) + 1;
//!         self.seen.set(ctx, &n)?;
//!         ctx.emit(&record.key, &n)
//!     }
//! }
//!
//! weir_guest::export_operator!(Count);
//!
//! let mut h = weir_guest::testing::Harness::<Count>::new().unwrap();
//! h.process(&"a".to_string(), &"x".to_string(), None).unwrap();
//! let out = h.process(&"a".to_string(), &"y".to_string(), None).unwrap();
//! assert_eq!(out[0].value_as::<u64>().unwrap(), 2);
//! ```

//! Guests allocate through [`alloc::Recycling`], which keeps freed small
//! blocks for the next allocation of their size (an operator allocates and
//! frees its records' keys and values once per record). An operator with
//! a global allocator of its own turns off this crate's default
//! `allocator` feature.

pub mod alloc;
#[doc(hidden)]
pub mod bindings;
pub mod bytes;
pub mod cache;
mod codec;
mod context;
mod error;
mod host;
#[doc(hidden)]
pub mod runtime;
mod state;
pub mod testing;
pub mod window;
mod wire;

pub use codec::{Data, Decode, Encode, Json};
pub use context::{Context, OpenContext, OperatorInfo, Record, Timer};
pub use error::{Error, Result};
pub use host::{LogLevel, TimeDomain};
pub use state::{ListState, MapState, ValueState};

#[cfg(all(target_arch = "wasm32", feature = "allocator"))]
#[global_allocator]
static ALLOCATOR: alloc::Recycling = alloc::Recycling::new();

/// A stream operator: declares its state in `open`, then handles records
/// and fired timers.
pub trait Operator: Sized + 'static {
    /// How input record keys are decoded.
    type Key: Decode;
    /// How input record values are decoded.
    type Value: Decode;

    /// Creates the operator and declares its keyed state.
    fn open(ctx: &mut OpenContext) -> Result<Self>;

    /// Handles one record. `ctx` is scoped to the record's key.
    fn process(&mut self, ctx: &mut Context, record: Record<Self::Key, Self::Value>) -> Result<()>;

    /// Handles one fired timer. `ctx` is scoped to the timer's key.
    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<Self::Key>) -> Result<()> {
        let _ = (ctx, timer);
        Ok(())
    }
}

/// Exports an [`Operator`] as the component's implementation of the
/// `weir:operator` world. Use once per crate, at the top level.
#[macro_export]
macro_rules! export_operator {
    ($op:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct WeirExport;
            impl $crate::bindings::exports::weir::operator::hooks::Guest for WeirExport {
                fn open(
                    info: $crate::bindings::weir::operator::types::OperatorInfo,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::bindings::weir::operator::types::StateDescriptor>,
                    ::std::string::String,
                > {
                    $crate::runtime::wasm::open::<$op>(info)
                }
                fn process(
                    input: u32,
                    records: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::runtime::wasm::process::<$op>(input, &records)
                }
                fn on_timers(
                    timers: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::runtime::wasm::on_timers::<$op>(&timers)
                }
            }
            impl $crate::bindings::exports::weir::operator::snapshots::Guest for WeirExport {
                fn prepare_snapshot() -> ::core::result::Result<(), ::std::string::String> {
                    $crate::runtime::wasm::prepare_snapshot::<$op>()
                }
            }
    $crate::bindings::export!(WeirExport with_types_in $crate::bindings);
        };
        // Natively (tests, the harness) nothing calls the exports; mark the
        // operator as used so its crate builds without dead-code warnings.
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = <$op as $crate::Operator>::open;
            let _ = <$op as $crate::Operator>::process;
            let _ = <$op as $crate::Operator>::on_timer;
        };
    };
}
