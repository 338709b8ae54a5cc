//! The cap on what an instance's memories and tables take together.
//!
//! wasmtime's `StoreLimits` caps each linear memory alone, and multi-memory
//! is on by default, so a component with eight memories could take eight
//! times the cap. [`GuestLimiter`] charges every memory and table of the
//! store (all core instances of the component) against one budget,
//! `memory_max_bytes`, and caps table elements and the number of memories,
//! tables and instances. Growth past a limit traps; the refusal is kept so
//! the error report can name the limit instead of wasmtime's wording.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use crate::host::mib;

/// What wasmtime stores per table element (a pointer; see
/// `ResourceLimiter::table_growing`), charged against the memory budget.
pub(crate) const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();
/// Table elements of all tables of an instance together. Rust guests use a
/// few hundred, Python and JavaScript components tens of thousands.
pub(crate) const TABLE_ELEMENTS_MAX: usize = 1 << 20;
/// Core instances per component instance: a Rust guest has a handful (the
/// module, the WASI adapter, shims), a Python component a few dozen.
pub(crate) const INSTANCES_MAX: usize = 256;
/// Linear memories per component instance. Each reserves gigabytes of
/// address space, so the count matters even when they are empty.
pub(crate) const MEMORIES_MAX: usize = 8;
/// Tables per component instance.
pub(crate) const TABLES_MAX: usize = 256;

/// WASI resources (streams, pollables...) the host holds for a guest at
/// once; a guest asking for more traps. Guests hold a handful.
pub(crate) const HOST_RESOURCES_MAX: usize = 100_000;
/// Component-model handles live at once in a store (`resource.new` lets a
/// guest fill host-side tables without a host call in the loop).
pub(crate) const COMPONENT_HANDLES_MAX: usize = 100_000;
/// Bytes one import call may move from the guest into the host (strings
/// and lists, lifted before the import runs), at least: enough for the
/// largest state value and keys the operator's limits allow, so that
/// those limits, not this one, name what went wrong.
pub(crate) const HOSTCALL_BYTES_MIN: usize = 128 << 20;

/// The per-call transfer cap for an operator with `limits`.
pub(crate) fn hostcall_bytes_max(limits: &weir_core::job::GuestLimits) -> usize {
    limits
        .state_value_max_bytes
        .saturating_add(limits.key_max_bytes.saturating_mul(2))
        .saturating_add(1 << 20)
        .max(HOSTCALL_BYTES_MIN)
}

pub(crate) struct GuestLimiter {
    label: Arc<str>,
    memory_max_bytes: usize,
    /// Bytes of every memory plus every table's elements, as granted.
    used_bytes: usize,
    table_elements: usize,
    /// The last growth granted, taken back if wasmtime then fails it.
    granted_bytes: usize,
    granted_elements: usize,
    /// Why the last refused growth was refused, for the error report.
    pub(crate) refused: Option<String>,
}

impl GuestLimiter {
    pub(crate) fn new(label: Arc<str>, memory_max_bytes: usize) -> Self {
        GuestLimiter {
            label,
            memory_max_bytes,
            used_bytes: 0,
            table_elements: 0,
            granted_bytes: 0,
            granted_elements: 0,
            refused: None,
        }
    }

    /// Bytes charged so far (memories and tables).
    pub(crate) fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    fn refuse(&mut self, why: String) -> wasmtime::Error {
        let message = format!("operator `{}`: {why}", self.label);
        self.refused = Some(why);
        wasmtime::Error::msg(message)
    }

    fn charge(&mut self, bytes: usize) -> wasmtime::Result<()> {
        match self.used_bytes.checked_add(bytes) {
            Some(total) if total <= self.memory_max_bytes => {
                self.used_bytes = total;
                self.granted_bytes = bytes;
                Ok(())
            }
            _ => Err(self.refuse(format!(
                "guest memory limit of {} reached (memories and tables together); \
                 raise `memory_max_mb` in the job file",
                mib(self.memory_max_bytes)
            ))),
        }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A refused growth grants nothing: a later `*_grow_failed` must not
        // take back an earlier grant.
        self.granted_bytes = 0;
        self.granted_elements = 0;
        self.charge(desired.saturating_sub(current))?;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The grant was added to `used_bytes` and is taken back at most once
        // (it is reset here and on every growth), so this cannot underflow;
        // saturating anyway, since a wrapped count would refuse all growth.
        self.used_bytes = self
            .used_bytes
            .saturating_sub(std::mem::take(&mut self.granted_bytes));
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.granted_bytes = 0;
        self.granted_elements = 0;
        let added = desired.saturating_sub(current);
        let elements = self.table_elements.saturating_add(added);
        if elements > TABLE_ELEMENTS_MAX {
            return Err(self.refuse(format!(
                "table limit of {TABLE_ELEMENTS_MAX} elements reached (all tables together)"
            )));
        }
        self.charge(added.saturating_mul(TABLE_ELEMENT_BYTES))?;
        self.table_elements = elements;
        self.granted_elements = added;
        Ok(true)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // As in `memory_grow_failed`: each grant is taken back at most once.
        self.used_bytes = self
            .used_bytes
            .saturating_sub(std::mem::take(&mut self.granted_bytes));
        self.table_elements = self
            .table_elements
            .saturating_sub(std::mem::take(&mut self.granted_elements));
        Ok(())
    }

    fn instances(&self) -> usize {
        INSTANCES_MAX
    }

    fn tables(&self) -> usize {
        TABLES_MAX
    }

    fn memories(&self) -> usize {
        MEMORIES_MAX
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Config, Engine, Instance, Module, Store};

    use super::*;

    const CAP_BYTES: usize = 4 << 20;

    fn run(wat: &str) -> (Store<GuestLimiter>, wasmtime::Result<i32>) {
        let mut config = Config::new();
        config.wasm_multi_memory(true);
        let engine = Engine::new(&config).unwrap();
        let module = Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let mut store = Store::new(&engine, GuestLimiter::new("villain".into(), CAP_BYTES));
        store.limiter(|l| l);
        let result = Instance::new(&mut store, &module, &[]).and_then(|instance| {
            instance
                .get_typed_func::<(), i32>(&mut store, "run")?
                .call(&mut store, ())
        });
        (store, result)
    }

    /// wasmtime reports a failed growth after the limiter granted it; a
    /// refused growth, or a second report, must not take back more.
    #[test]
    fn failed_growth_takes_back_only_its_own_grant() {
        let mut l = GuestLimiter::new("op".into(), CAP_BYTES);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(l.memory_growing(1 << 20, 2 * CAP_BYTES, None).is_err());
        l.memory_grow_failed(wasmtime::Error::msg("refused"))
            .unwrap();
        assert_eq!(
            l.used_bytes(),
            1 << 20,
            "the refused growth took back a grant"
        );
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(l.table_growing(10, TABLE_ELEMENTS_MAX + 11, None).is_err());
        l.table_grow_failed(wasmtime::Error::msg("refused"))
            .unwrap();
        assert_eq!(l.used_bytes(), (1 << 20) + 10 * TABLE_ELEMENT_BYTES);
        assert_eq!(l.table_elements, 10);
        // A grant reported failed twice is taken back once.
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        l.memory_grow_failed(wasmtime::Error::msg("failed"))
            .unwrap();
        l.memory_grow_failed(wasmtime::Error::msg("failed"))
            .unwrap();
        assert_eq!(l.used_bytes(), (1 << 20) + 10 * TABLE_ELEMENT_BYTES);
        // Nothing ever granted: no underflow.
        let mut fresh = GuestLimiter::new("op".into(), CAP_BYTES);
        fresh
            .memory_grow_failed(wasmtime::Error::msg("failed"))
            .unwrap();
        fresh
            .table_grow_failed(wasmtime::Error::msg("failed"))
            .unwrap();
        assert_eq!((fresh.used_bytes(), fresh.table_elements), (0, 0));
    }

    #[test]
    fn memories_are_capped_together() {
        // Three memories of 3 MiB (48 pages), each under the 4 MiB cap alone.
        let (store, result) = run(r#"
            (module
              (memory 1) (memory $b 1) (memory $c 1)
              (func (export "run") (result i32)
                (drop (memory.grow 0 (i32.const 47)))
                (drop (memory.grow $b (i32.const 47)))
                (memory.grow $c (i32.const 47))))"#);
        let err = format!("{:#}", result.unwrap_err());
        assert!(
            err.contains("operator `villain`: guest memory limit of 4 MiB reached"),
            "{err}"
        );
        let refused = store.data().refused.as_deref().unwrap();
        assert!(refused.contains("memory_max_mb"), "{refused}");
        assert!(store.data().used_bytes() <= CAP_BYTES);
    }

    #[test]
    fn growth_within_the_cap_is_granted_and_counted() {
        let (store, result) = run(r#"
            (module
              (memory 1) (memory $b 1)
              (func (export "run") (result i32)
                (drop (memory.grow 0 (i32.const 10)))
                (memory.grow $b (i32.const 10))))"#);
        assert_eq!(result.unwrap(), 1, "memory.grow returns the old size");
        assert_eq!(store.data().used_bytes(), 22 << 16);
        assert!(store.data().refused.is_none());
    }

    #[test]
    fn a_memory_over_its_own_maximum_is_not_charged() {
        // wasmtime fails the growth after the limiter granted it (the
        // memory's own maximum is 2 pages); the grant is taken back.
        let (store, result) = run(r#"
            (module
              (memory 1 2)
              (func (export "run") (result i32) (memory.grow (i32.const 5))))"#);
        assert_eq!(result.unwrap(), -1);
        assert_eq!(store.data().used_bytes(), 1 << 16);
    }

    #[test]
    fn table_grow_bomb_is_stopped() {
        let (store, result) = run(r#"
            (module
              (table 1 funcref)
              (func (export "run") (result i32)
                (loop $more
                  (br_if $more (i32.ne (table.grow 0 (ref.null func) (i32.const 65536)) (i32.const -1))))
                (i32.const 0)))"#);
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("operator `villain`"), "{err}");
        // 4 MiB of 8-byte elements is 512 Ki elements, under the element cap:
        // the byte budget stops it first.
        assert!(err.contains("guest memory limit of 4 MiB"), "{err}");
        assert!(store.data().used_bytes() <= CAP_BYTES);
    }

    #[test]
    fn table_elements_are_capped() {
        let mut limiter = GuestLimiter::new("villain".into(), usize::MAX);
        assert!(limiter.table_growing(0, TABLE_ELEMENTS_MAX, None).unwrap());
        let err = limiter.table_growing(0, 1, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("table limit of 1048576 elements reached"),
            "{err}"
        );
    }

    #[test]
    fn a_memory_bomb_at_instantiation_is_stopped() {
        // Two memories of 3 MiB declared up front: the second one fails
        // the instantiation.
        let (store, result) = run(r#"
            (module (memory 48) (memory 48)
              (func (export "run") (result i32) (i32.const 0)))"#);
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("guest memory limit of 4 MiB"), "{err}");
        assert!(store.data().refused.is_some());
    }

    #[test]
    fn too_many_memories_are_refused() {
        let memories = "(memory 0) ".repeat(MEMORIES_MAX + 1);
        let (_, result) = run(&format!(
            "(module {memories} (func (export \"run\") (result i32) (i32.const 0)))"
        ));
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("memor"), "{err}");
    }
}
