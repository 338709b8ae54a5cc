//! The shared wasmtime engine, its epoch ticker and the component cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::OperatorPre;
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
    cache_dir: Option<PathBuf>,
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
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create component cache {}: {e}", dir.display())
            })?;
        }
        Ok(WasmEngine {
            engine,
            linker,
            cache_dir,
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
        let cached = self.cache_dir.as_ref().map(|dir| {
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut hasher);
            let engine_hash = std::hash::Hasher::finish(&hasher);
            dir.join(format!("{digest}-{engine_hash:016x}.cwasm"))
        });
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash (it is in the name),
            // into a cache directory only weir writes.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached component: {e}")
                }
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| format!("artifact {artifact} is not a valid component: {e:#}"))?;
        if let Some(path) = cached {
            match component.serialize() {
                Ok(native) => {
                    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                    if let Err(e) =
                        std::fs::write(&tmp, native).and_then(|()| std::fs::rename(&tmp, &path))
                    {
                        tracing::warn!(path = %path.display(), "cannot cache compiled component: {e}");
                        let _ = std::fs::remove_file(&tmp);
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
