//! Guest bindings generated from `wit/`; users go through the SDK instead.

wit_bindgen::generate!({
    path: "../../wit",
    world: "weir:operator/buffering-operator",
    pub_export_macro: true,
    default_bindings_module: "weir_guest::bindings",
});
