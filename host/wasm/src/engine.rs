//! The shared wasmtime engine, its epoch ticker and the component cache
//! (in memory, and on disk through [`CodeCache`], which loads only native
//! code this host wrote).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::OperatorPre;
use crate::cache::CodeCache;
use crate::error::{GuestError, GuestErrorKind};
use crate::host::GuestState;

/// How often the epoch advances; call deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK_MS: u64 = 10;
/// Uploading a larger artifact is refused before it is compiled.
const ARTIFACT_BYTES_MAX: usize = 256 << 20;
/// The operator world exports one interface; its version must match ours.
const HOOKS_EXPORT: &str = "weir:operator/hooks@0.1.0";

/// A component compiled and linked against the operator world, ready to
/// instantiate any number of times.
#[derive(Clone)]
pub struct CompiledOperator {
    pub(crate) pre: OperatorPre<GuestState>,
    pub(crate) engine: Engine,
    /// Hex SHA-256 of the artifact bytes.
    pub digest: String,
    /// Whether the native code came from the on-disk cache.
    pub from_cache: bool,
    pub compile_time: Duration,
}

/// The wasmtime engine shared by every operator of a process.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<GuestState>,
    cache: Option<CodeCache>,
    compiled: Mutex<HashMap<String, CompiledOperator>>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl WasmEngine {
    /// `cache_dir` holds compiled native code across runs; `None` compiles
    /// every time.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<WasmEngine> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine =
            Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?;
        let mut linker = Linker::new(&engine);
        crate::host::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link host imports: {e}"))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.weak());
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                    match ticking.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        // A cache that cannot be trusted is not used; weir still runs,
        // compiling every artifact.
        let cache = cache_dir.and_then(|dir| match CodeCache::open(&dir) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!("not using the component cache: {e}");
                None
            }
        });
        Ok(WasmEngine {
            engine,
            linker,
            cache,
            compiled: Mutex::new(HashMap::new()),
            ticker_stop,
        })
    }

    /// Loads the operator artifact at `path` for `operator`: reads it, checks
    /// it is a component of the operator world, and compiles it (or takes it
    /// from the cache).
    pub fn load(&self, operator: &str, path: &Path) -> Result<CompiledOperator, GuestError> {
        let load_err = |message: String| GuestError {
            operator: operator.to_string(),
            kind: GuestErrorKind::Load(message),
        };
        let bytes = std::fs::read(path)
            .map_err(|e| load_err(format!("cannot read wasm artifact {}: {e}", path.display())))?;
        self.load_bytes(&path.display().to_string(), &bytes)
            .map_err(load_err)
    }

    /// As [`WasmEngine::load`], for bytes that did not come from a file.
    pub fn load_bytes(&self, artifact: &str, bytes: &[u8]) -> Result<CompiledOperator, String> {
        check_header(artifact, bytes)?;
        let digest = hex(&Sha256::digest(bytes));
        if let Some(hit) = self
            .compiled
            .lock()
            .map_err(|_| "component cache lock poisoned".to_string())?
            .get(&digest)
        {
            return Ok(hit.clone());
        }
        let started = Instant::now();
        let (component, from_cache) = self.compile(artifact, bytes, &digest)?;
        let compile_time = started.elapsed();
        check_exports(&self.engine, artifact, &component)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            format!("artifact {artifact} needs imports weir does not provide (it must target the weir:operator world): {e:#}")
        })?;
        let pre = OperatorPre::new(instance_pre).map_err(|e| {
            format!("artifact {artifact} does not match the weir:operator world: {e:#}")
        })?;
        // Python and JavaScript components are tens of MB and take seconds
        // to compile; say which happened, and how long it took, at job start.
        let ms = compile_time.as_millis() as u64;
        let size_mb = bytes.len() as f64 / 1e6;
        if from_cache {
            tracing::info!(
                digest = &digest[..12],
                "loaded {artifact} ({size_mb:.1} MB) from cache in {ms} ms"
            );
        } else {
            tracing::info!(
                digest = &digest[..12],
                "compiled {artifact} ({size_mb:.1} MB) in {ms} ms"
            );
        }
        let compiled = CompiledOperator {
            pre,
            engine: self.engine.clone(),
            digest: digest.clone(),
            from_cache,
            compile_time,
        };
        self.compiled
            .lock()
            .map_err(|_| "component cache lock poisoned".to_string())?
            .insert(digest, compiled.clone());
        Ok(compiled)
    }

    fn compile(
        &self,
        artifact: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Component, bool), String> {
        let name = self.cache.as_ref().map(|_| {
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut hasher);
            let engine_hash = std::hash::Hasher::finish(&hasher);
            format!("{digest}-{engine_hash:016x}.cwasm")
        });
        if let (Some(cache), Some(name)) = (&self.cache, &name) {
            match cache.load(name) {
                Ok(Some(native)) => {
                    // SAFETY: these are the exact bytes whose tag verified
                    // under this host's cache key, so this host's weir wrote
                    // them with `Component::serialize` of an engine with the
                    // same compatibility hash (it is in the name).
                    match unsafe { Component::deserialize(&self.engine, &native) } {
                        Ok(component) => return Ok((component, true)),
                        Err(e) => tracing::warn!(
                            path = %cache.path(name).display(),
                            "ignoring unusable cached component: {e}"
                        ),
                    }
                }
                Ok(None) => {}
                Err(why) => tracing::warn!(
                    path = %cache.path(name).display(),
                    "refusing cached component, recompiling: {why}"
                ),
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| format!("artifact {artifact} is not a valid component: {e:#}"))?;
        if let (Some(cache), Some(name)) = (&self.cache, &name) {
            match component.serialize() {
                Ok(native) => {
                    if let Err(e) = cache.store(name, &native) {
                        tracing::warn!("cannot cache compiled component: {e}");
                    }
                }
                Err(e) => tracing::warn!("cannot serialize compiled component: {e}"),
            }
        }
        Ok((component, false))
    }
}

fn check_header(artifact: &str, bytes: &[u8]) -> Result<(), String> {
    if bytes.len() > ARTIFACT_BYTES_MAX {
        return Err(format!(
            "artifact {artifact} is {} MiB, over the {} MiB limit",
            bytes.len() >> 20,
            ARTIFACT_BYTES_MAX >> 20
        ));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(format!(
            "artifact {artifact} is not WebAssembly (no \\0asm header)"
        ));
    }
    // A component's layer field is 1; a core module's version is 1 with layer 0.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(format!(
            "artifact {artifact} is a core WebAssembly module, not a component: build it for the \
             wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
        ));
    }
    Ok(())
}

fn check_exports(engine: &Engine, artifact: &str, component: &Component) -> Result<(), String> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if exports.iter().any(|e| e == HOOKS_EXPORT) {
        return Ok(());
    }
    Err(format!(
        "artifact {artifact} is a component of another world: it does not export {HOOKS_EXPORT} \
         (it exports: {}); build it against wit/operator.wit, e.g. with the weir-guest SDK",
        if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        }
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../tests/guests/bombs/{name}.wat",
            env!("CARGO_MANIFEST_DIR")
        );
        wat::parse_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn cached_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        files.sort();
        files
    }

    fn load(dir: &Path, bytes: &[u8]) -> bool {
        let engine = WasmEngine::new(Some(dir.to_path_buf())).unwrap();
        engine.load_bytes("bomb.wasm", bytes).unwrap().from_cache
    }

    #[test]
    fn the_cache_loads_what_this_host_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = component("multi_memory");
        assert!(!load(dir.path(), &bytes), "first load compiles");
        assert_eq!(cached_files(dir.path()).len(), 1);
        assert!(load(dir.path(), &bytes), "second load comes from the cache");
    }

    #[test]
    fn a_planted_cwasm_is_not_loaded_but_recompiled_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (component("multi_memory"), component("table_grow"));
        load(dir.path(), &a);
        let a_file = cached_files(dir.path()).remove(0);
        load(dir.path(), &b);
        let b_file = cached_files(dir.path())
            .into_iter()
            .find(|p| *p != a_file)
            .unwrap();

        // Arbitrary bytes under a valid-looking name.
        std::fs::write(&a_file, vec![0x90u8; 4096]).unwrap();
        assert!(!load(dir.path(), &a), "planted bytes are recompiled");
        assert!(load(dir.path(), &a), "and replaced by an entry that loads");

        // Another artifact's genuine entry under this artifact's name.
        std::fs::copy(&b_file, &a_file).unwrap();
        assert!(!load(dir.path(), &a), "another artifact's entry is refused");

        // Raw native code as wasmtime serializes it, without our tag.
        let engine = WasmEngine::new(None).unwrap();
        let native = Component::new(&engine.engine, &a)
            .unwrap()
            .serialize()
            .unwrap();
        std::fs::write(&a_file, native).unwrap();
        assert!(
            !load(dir.path(), &a),
            "an untagged serialization is refused"
        );
    }
}
