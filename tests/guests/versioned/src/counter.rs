//! The per-key `count` state, declared the way this build's variant says:
//! value state (default), map state (`map-state`) or none (`no-state`).

use weir_guest::{Context, OpenContext, Result};

/// Name of the state every stateful variant declares.
#[cfg(not(feature = "no-state"))]
pub const STATE_NAME: &str = "count";

#[cfg(not(any(feature = "map-state", feature = "no-state")))]
mod imp {
    use super::*;
    use weir_guest::ValueState;

    /// `count` as a value state holding a u64 (decimal text, as Python's int).
    pub struct Counter(ValueState<u64>);

    impl Counter {
        pub fn declare(ctx: &mut OpenContext) -> Result<Counter> {
            Ok(Counter(ctx.value_state(STATE_NAME)?))
        }

        /// Adds one to the current key's count and returns the new count.
        pub fn increment(&self, ctx: &mut Context) -> Result<u64> {
            let n = self.0.get(ctx)?.unwrap_or(0).saturating_add(1);
            self.0.set(ctx, &n)?;
            Ok(n)
        }
    }
}

#[cfg(all(feature = "map-state", not(feature = "no-state")))]
mod imp {
    use super::*;
    use weir_guest::MapState;

    /// The map entry that holds the count.
    const ENTRY: &str = "n";

    /// `count` as a map state: same name, different kind.
    pub struct Counter(MapState<String, u64>);

    impl Counter {
        pub fn declare(ctx: &mut OpenContext) -> Result<Counter> {
            Ok(Counter(ctx.map_state(STATE_NAME)?))
        }

        pub fn increment(&self, ctx: &mut Context) -> Result<u64> {
            let entry = ENTRY.to_string();
            let n = self.0.get(ctx, &entry)?.unwrap_or(0).saturating_add(1);
            self.0.put(ctx, &entry, &n)?;
            Ok(n)
        }
    }
}

#[cfg(feature = "no-state")]
mod imp {
    use super::*;

    /// No state: the count is always 0.
    pub struct Counter;

    impl Counter {
        pub fn declare(_ctx: &mut OpenContext) -> Result<Counter> {
            Ok(Counter)
        }

        pub fn increment(&self, _ctx: &mut Context) -> Result<u64> {
            Ok(0)
        }
    }
}

pub use imp::Counter;
