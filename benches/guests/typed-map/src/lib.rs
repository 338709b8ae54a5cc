//! The map operator of benches/guests/map-op (upper-case each value), on
//! typed records (`list<rec>`) instead of weir's byte batches: the other
//! side of the batch-format comparison in benches/wasm_overhead.rs.

wit_bindgen::generate!({
    path: "../../wit/typed.wit",
    world: "typed-map",
});

use exports::weir::typed_bench::typed_hooks::{Guest, Rec};

// Exported for wasm32 only: natively, the interface-qualified export names
// (`weir:typed-bench/...#process`) are not valid linker symbols, and
// `cargo build --workspace` builds this cdylib for the host too.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct TypedMap;

impl Guest for TypedMap {
    fn process(records: Vec<Rec>) -> Vec<Rec> {
        records
            .into_iter()
            .map(|mut r| {
                r.value.make_ascii_uppercase();
                r
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
export!(TypedMap);
