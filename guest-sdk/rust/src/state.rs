//! Typed handles to host-managed keyed state.
//!
//! Handles are declared in `open` and used with the [`Context`] of the
//! record or timer at hand: they always read and write the current key.

use std::marker::PhantomData;

use crate::Result;
use crate::codec::Data;
use crate::context::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateKind {
    Value,
    List,
    Map,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateDescriptor {
    pub(crate) name: String,
    pub(crate) kind: StateKind,
    pub(crate) ttl_ms: Option<u64>,
}

/// One value per key.
pub struct ValueState<T> {
    index: u32,
    _type: PhantomData<fn() -> T>,
}

impl<T: Data> ValueState<T> {
    pub(crate) fn new(index: u32) -> Self {
        ValueState {
            index,
            _type: PhantomData,
        }
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    pub fn get(&self, ctx: &mut Context) -> Result<Option<T>> {
        ctx.host
            .value_get(self.index, ctx.key)
            .map(|bytes| T::decode(&bytes))
            .transpose()
    }

    pub fn set(&self, ctx: &mut Context, value: &T) -> Result<()> {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        ctx.host.value_set(self.index, ctx.key, &bytes);
        Ok(())
    }

    pub fn clear(&self, ctx: &mut Context) {
        ctx.host.clear(self.index, ctx.key)
    }
}

/// A list per key; appends never read the existing list.
pub struct ListState<T> {
    index: u32,
    _type: PhantomData<fn() -> T>,
}

impl<T: Data> ListState<T> {
    pub(crate) fn new(index: u32) -> Self {
        ListState {
            index,
            _type: PhantomData,
        }
    }

    pub fn add(&self, ctx: &mut Context, value: &T) -> Result<()> {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        ctx.host.list_append(self.index, ctx.key, &bytes);
        Ok(())
    }

    pub fn get(&self, ctx: &mut Context) -> Result<Vec<T>> {
        ctx.host
            .list_get(self.index, ctx.key)
            .iter()
            .map(|b| T::decode(b))
            .collect()
    }

    pub fn clear(&self, ctx: &mut Context) {
        ctx.host.clear(self.index, ctx.key)
    }
}

/// A map per key, iterated in the byte order of the encoded map keys.
pub struct MapState<K, V> {
    index: u32,
    _type: PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> MapState<K, V> {
    pub(crate) fn new(index: u32) -> Self {
        MapState {
            index,
            _type: PhantomData,
        }
    }

    pub fn get(&self, ctx: &mut Context, map_key: &K) -> Result<Option<V>> {
        let mut k = Vec::new();
        map_key.encode(&mut k);
        ctx.host
            .map_get(self.index, ctx.key, &k)
            .map(|bytes| V::decode(&bytes))
            .transpose()
    }

    pub fn put(&self, ctx: &mut Context, map_key: &K, value: &V) -> Result<()> {
        let (mut k, mut v) = (Vec::new(), Vec::new());
        map_key.encode(&mut k);
        value.encode(&mut v);
        ctx.host.map_put(self.index, ctx.key, &k, &v);
        Ok(())
    }

    pub fn remove(&self, ctx: &mut Context, map_key: &K) {
        let mut k = Vec::new();
        map_key.encode(&mut k);
        ctx.host.map_remove(self.index, ctx.key, &k)
    }

    pub fn entries(&self, ctx: &mut Context) -> Result<Vec<(K, V)>> {
        ctx.host
            .map_entries(self.index, ctx.key)
            .iter()
            .map(|(k, v)| Ok((K::decode(k)?, V::decode(v)?)))
            .collect()
    }

    pub fn clear(&self, ctx: &mut Context) {
        ctx.host.clear(self.index, ctx.key)
    }
}
