//! A read cache in front of one value state, for operators whose keys
//! repeat from record to record (hot auctions, bidders, sensors): a hit
//! saves the host call, its copy of the bytes and their decoding. The
//! window library keeps its per-key windows behind one.
//!
//! It is write-through: every write of the state goes through it, so a
//! cached value is always the host's. Nothing else writes the state (no
//! TTL), and the cache lives in the instance's memory, which the host
//! creates afresh for every restore, rescale or upgrade, so it never
//! outlives the state it mirrors. Direct-mapped and bounded: a miss just
//! asks the host.

use crate::{Context, Data, Result, ValueState};

/// Slots of [`StateCache::default`].
const DEFAULT_SLOTS: usize = 4096;

struct Slot<T> {
    key: Vec<u8>,
    value: Option<T>,
}

pub struct StateCache<T> {
    slots: Vec<Option<Slot<T>>>,
}

impl<T> Default for StateCache<T> {
    fn default() -> Self {
        StateCache::with_slots(DEFAULT_SLOTS)
    }
}

impl<T> StateCache<T> {
    /// A cache of `slots` entries (at least one); each keeps one key's value.
    pub fn with_slots(slots: usize) -> Self {
        StateCache {
            slots: (0..slots.max(1)).map(|_| None).collect(),
        }
    }

    /// FNV-1a: keys are mostly short ids.
    fn slot_of(&self, key: &[u8]) -> usize {
        let mut h: u32 = 0x811c_9dc5;
        for &b in key {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        (h as usize ^ (h as usize >> 16)) % self.slots.len()
    }
}

impl<T: Data + Clone> StateCache<T> {
    /// The state's value for the current key.
    pub fn get(&mut self, ctx: &mut Context, state: &ValueState<T>) -> Result<Option<T>> {
        let at = self.slot_of(ctx.key_bytes());
        if let Some(slot) = &self.slots[at]
            && slot.key == ctx.key_bytes()
        {
            return Ok(slot.value.clone());
        }
        let value = state.get(ctx)?;
        self.keep(at, ctx.key_bytes(), value.clone());
        Ok(value)
    }
}

impl<T: Data> StateCache<T> {
    /// Changes the current key's value in place: `change` gets the value
    /// (`None`: no state) and says whether it changed it; a change is
    /// written through to the host (`None` clears the state). Saves
    /// [`StateCache::get`]'s copy of the value.
    pub fn update<R>(
        &mut self,
        ctx: &mut Context,
        state: &ValueState<T>,
        change: impl FnOnce(&mut Context, &mut Option<T>) -> Result<(R, bool)>,
    ) -> Result<R> {
        let at = self.slot_of(ctx.key_bytes());
        let hit = matches!(&self.slots[at], Some(slot) if slot.key == ctx.key_bytes());
        if !hit {
            let value = state.get(ctx)?;
            self.keep(at, ctx.key_bytes(), value);
        }
        let Some(slot) = &mut self.slots[at] else {
            return Err(crate::Error::msg("state cache: slot vanished"));
        };
        let (result, changed) = change(ctx, &mut slot.value)?;
        if changed {
            match &slot.value {
                Some(v) => state.set(ctx, v)?,
                None => state.clear(ctx),
            }
        }
        Ok(result)
    }

    /// Sets the state's value for the current key (in the host too).
    pub fn set(&mut self, ctx: &mut Context, state: &ValueState<T>, value: T) -> Result<()> {
        state.set(ctx, &value)?;
        self.keep(self.slot_of(ctx.key_bytes()), ctx.key_bytes(), Some(value));
        Ok(())
    }

    /// Clears the state for the current key (in the host too).
    pub fn clear(&mut self, ctx: &mut Context, state: &ValueState<T>) {
        state.clear(ctx);
        self.keep(self.slot_of(ctx.key_bytes()), ctx.key_bytes(), None);
    }

    fn keep(&mut self, at: usize, key: &[u8], value: Option<T>) {
        match &mut self.slots[at] {
            Some(slot) => {
                // A slot taken by another key keeps its buffer: a miss
                // allocates nothing once the slot has been used.
                if slot.key != key {
                    slot.key.clear();
                    slot.key.extend_from_slice(key);
                }
                slot.value = value;
            }
            slot => {
                *slot = Some(Slot {
                    key: key.to_vec(),
                    value,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::Harness;
    use crate::{OpenContext, Operator, Record};

    use super::*;

    /// Counts per key through the cache; on "read" emits what the host
    /// holds, bypassing the cache.
    struct Counter {
        n: ValueState<u64>,
        cache: StateCache<u64>,
    }

    impl Operator for Counter {
        type Key = String;
        type Value = String;
        fn open(ctx: &mut OpenContext) -> Result<Self> {
            Ok(Counter {
                n: ctx.value_state("n")?,
                // Few slots, so keys collide and replace each other.
                cache: StateCache::with_slots(64),
            })
        }
        fn process(&mut self, ctx: &mut Context, r: Record<String, String>) -> Result<()> {
            match r.value.as_str() {
                "read" => {
                    let host = self.n.get(ctx)?;
                    let cached = self.cache.get(ctx, &self.n)?;
                    ctx.emit(&r.key, &format!("{host:?} {cached:?}"))
                }
                "clear" => {
                    self.cache.clear(ctx, &self.n);
                    Ok(())
                }
                "double" => self.cache.update(ctx, &self.n, |_, n| {
                    *n = n.map(|n| n * 2);
                    Ok(((), n.is_some()))
                }),
                "drop" => self.cache.update(ctx, &self.n, |_, n| {
                    *n = None;
                    Ok(((), true))
                }),
                _ => {
                    let n = self.cache.get(ctx, &self.n)?.unwrap_or(0) + 1;
                    self.cache.set(ctx, &self.n, n)
                }
            }
        }
    }

    #[test]
    fn the_cache_always_holds_the_hosts_value() {
        let mut h = Harness::<Counter>::new().unwrap();
        for round in 0..3 {
            for k in 0..3000 {
                h.process(&k.to_string(), &"add".to_string(), None).unwrap();
            }
            for k in (0..3000).step_by(7) {
                let out = h
                    .process(&k.to_string(), &"read".to_string(), None)
                    .unwrap();
                let n = round + 1;
                assert_eq!(out[0].text().1, format!("Some({n}) Some({n})"));
            }
        }
        h.process(&"5".to_string(), &"clear".to_string(), None)
            .unwrap();
        let out = h
            .process(&"5".to_string(), &"read".to_string(), None)
            .unwrap();
        assert_eq!(out[0].text().1, "None None");
    }
}
