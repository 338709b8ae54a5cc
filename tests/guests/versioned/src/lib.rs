//! Test operator for live upgrades: counts records per key in the state
//! `count` and emits `{key},{count},{tag}` for each record, with the
//! record's key and timestamp. `tag` is the build's version label, plus `m`
//! ("migrated") when the host swapped this version in over existing state
//! (config `weir.previous_version` present).
//!
//! Cargo features pick the variant (see README.md): `v2` (tag `v2`),
//! `fail-open` (`open` fails), `map-state` (`count` is map state),
//! `no-state` (no state, emits `{key},0,v0`). The Python twin in
//! tests/guests/versioned-py emits the same bytes with tag `py`.

mod counter;

use counter::Counter;
use weir_guest::{Context, Error, OpenContext, Operator, Record, Result};

/// This build's version label.
pub const VERSION: &str = if cfg!(feature = "no-state") {
    "v0"
} else if cfg!(feature = "map-state") {
    "map"
} else if cfg!(feature = "fail-open") {
    "fail"
} else if cfg!(feature = "v2") {
    "v2"
} else {
    "v1"
};

/// Config entry the host sets (to the previous artifact's digest) when it
/// swaps this version in over existing state.
pub const PREVIOUS_VERSION: &str = "weir.previous_version";

/// The error of the `fail-open` build.
pub const REFUSAL: &str = "this version refuses to open";

pub struct Versioned {
    count: Counter,
    tag: String,
}

/// The output value: `{key},{count},{tag}`, the key as (lossy) UTF-8 text.
pub fn line(key: &[u8], count: u64, tag: &str) -> String {
    format!("{},{count},{tag}", String::from_utf8_lossy(key))
}

/// The tag for this build and config: the stateless build keeps `v0`
/// whatever the config, the others add `m` once migrated.
fn tag_for(migrated: bool) -> String {
    if migrated && !cfg!(feature = "no-state") {
        format!("{VERSION}m")
    } else {
        VERSION.to_string()
    }
}

impl Operator for Versioned {
    type Key = Vec<u8>;
    type Value = ();

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        if cfg!(feature = "fail-open") {
            return Err(Error::msg(REFUSAL));
        }
        let tag = tag_for(ctx.config(PREVIOUS_VERSION).is_some());
        Ok(Versioned {
            count: Counter::declare(ctx)?,
            tag,
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<Vec<u8>, ()>) -> Result<()> {
        let count = self.count.increment(ctx)?;
        ctx.emit(&record.key, &line(&record.key, count, &self.tag))
    }
}

weir_guest::export_operator!(Versioned);

#[cfg(test)]
mod tests;
