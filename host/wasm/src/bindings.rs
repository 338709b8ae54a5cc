//! Host bindings generated from `wit/` — the one contract with guests.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "weir:operator/operator",
    imports: { default: trappable },
});

pub use weir::operator::types::{LogLevel, OperatorInfo as WitOperatorInfo, StateKind, TimeDomain};
