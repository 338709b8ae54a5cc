//! The shared wasmtime engine, its epoch ticker and the component cache
//! (in memory, and on disk through [`CodeCache`], which loads only native
//! code this host wrote).
//!
//! The in-memory cache is bounded ([`COMPILED_MAX`] components,
//! [`COMPILED_CODE_BYTES_MAX`] bytes of native code), least recently used
//! first out: a coordinator compiles every upload and a worker every
//! deployed artifact, for the life of the process. Evicting drops only the
//! cache's reference; instances and jobs holding a [`CompiledOperator`]
//! keep theirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::OperatorPre;
use crate::cache::{CodeCache, native_bytes_max};
use crate::error::{GuestError, GuestErrorKind};
use crate::host::GuestState;

/// How often the epoch advances; call deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK_MS: u64 = 10;
/// Uploading a larger artifact is refused before it is compiled.
const ARTIFACT_BYTES_MAX: usize = 256 << 20;
/// Components kept compiled in memory at most (a job's operators are a
/// handful; more are compiled again when used again).
pub(crate) const COMPILED_MAX: usize = 64;
/// Native code of the components kept compiled in memory, at most.
pub(crate) const COMPILED_CODE_BYTES_MAX: usize = 2 << 30;
/// The operator world exports one interface; its version must match ours.
const HOOKS_EXPORT: &str = "weir:operator/hooks@0.1.0";
/// The optional interface of operators that hold state back until a
/// snapshot (the `buffering-operator` world).
const SNAPSHOTS_EXPORT: &str = "weir:operator/snapshots@0.1.0";
const PREPARE_SNAPSHOT: &str = "prepare-snapshot";

/// A component compiled and linked against the operator world, ready to
/// instantiate any number of times.
#[derive(Clone)]
pub struct CompiledOperator {
    pub(crate) pre: OperatorPre<GuestState>,
    /// `snapshots.prepare-snapshot`, when the component exports it.
    pub(crate) prepare_snapshot: Option<ComponentExportIndex>,
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
    compiled: Mutex<CompiledCache>,
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
        WasmEngine::build(cache_dir, true)
    }

    /// An engine whose guests cannot be stopped in the middle of a call:
    /// its code has no epoch checks, so `call_timeout_ms` is not enforced
    /// and a guest that loops forever holds its thread forever. Not for
    /// running jobs; it exists to measure what the checks cost
    /// (`benches/wasm_overhead`): a load and a compare at every loop
    /// back-edge and function entry. No disk cache, so its code never
    /// meets an engine that has the checks.
    pub fn without_call_timeouts() -> anyhow::Result<WasmEngine> {
        WasmEngine::build(None, false)
    }

    fn build(cache_dir: Option<PathBuf>, interruptible: bool) -> anyhow::Result<WasmEngine> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(interruptible);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // 64x64 -> 128-bit multiplies as one instruction (the
        // wide-arithmetic proposal): without it a guest's `u128` product
        // (shortest float formatting is built on them) is a call to
        // compiler-rt's `__multi3`. Accepting the instructions changes
        // nothing for guests that do not use them.
        config.wasm_wide_arithmetic(true);
        // `perf` names guest functions only with a map of the JIT code.
        if std::env::var_os("WEIR_PERF_MAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
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
            compiled: Mutex::new(CompiledCache::new(COMPILED_MAX, COMPILED_CODE_BYTES_MAX)),
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
        let digest = artifact_digest(bytes);
        if let Some(hit) = self
            .compiled
            .lock()
            .map_err(|_| "component cache lock poisoned".to_string())?
            .get(&digest)
        {
            return Ok(hit);
        }
        let started = Instant::now();
        let (component, from_cache) = self.compile(artifact, bytes, &digest)?;
        let compile_time = started.elapsed();
        let code = component.image_range();
        let code_bytes = (code.end as usize).saturating_sub(code.start as usize);
        check_exports(&self.engine, artifact, &component)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            format!("artifact {artifact} needs imports weir does not provide (it must target the weir:operator world): {e:#}")
        })?;
        let pre = OperatorPre::new(instance_pre).map_err(|e| {
            format!("artifact {artifact} does not match the weir:operator world: {e:#}")
        })?;
        let prepare_snapshot = prepare_snapshot_export(artifact, &component)?;
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
            prepare_snapshot,
            engine: self.engine.clone(),
            digest: digest.clone(),
            from_cache,
            compile_time,
        };
        self.compiled
            .lock()
            .map_err(|_| "component cache lock poisoned".to_string())?
            .insert(digest, compiled.clone(), code_bytes);
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
            match cache.load(name, native_bytes_max(bytes.len())) {
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
                Ok(native) if native.len() as u64 > native_bytes_max(bytes.len()) => {
                    tracing::warn!(
                        "not caching compiled {artifact}: {} bytes of native code, more than \
                         the cache accepts for it",
                        native.len()
                    );
                }
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

/// The compiled components of [`WasmEngine`], by artifact digest, bounded
/// in count and native code bytes; the least recently used leave first.
struct CompiledCache {
    entries: HashMap<String, CachedOperator>,
    count_max: usize,
    code_bytes_max: usize,
    code_bytes: usize,
    /// Advances on every use; an entry's stamp is its last use.
    clock: u64,
}

struct CachedOperator {
    compiled: CompiledOperator,
    code_bytes: usize,
    used: u64,
}

impl CompiledCache {
    fn new(count_max: usize, code_bytes_max: usize) -> Self {
        CompiledCache {
            entries: HashMap::new(),
            count_max,
            code_bytes_max,
            code_bytes: 0,
            clock: 0,
        }
    }

    fn get(&mut self, digest: &str) -> Option<CompiledOperator> {
        self.clock += 1;
        let entry = self.entries.get_mut(digest)?;
        entry.used = self.clock;
        Some(entry.compiled.clone())
    }

    /// Keeps `compiled`, evicting the least recently used entries until
    /// both bounds hold. One entry over the byte bound alone is not kept.
    fn insert(&mut self, digest: String, compiled: CompiledOperator, code_bytes: usize) {
        if code_bytes > self.code_bytes_max {
            return;
        }
        self.clock += 1;
        if let Some(old) = self.entries.remove(&digest) {
            self.code_bytes = self.code_bytes.saturating_sub(old.code_bytes);
        }
        while self.entries.len() >= self.count_max
            || self.code_bytes.saturating_add(code_bytes) > self.code_bytes_max
        {
            // A linear scan: the cache holds at most `count_max` (64) entries.
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.code_bytes = self.code_bytes.saturating_sub(evicted.code_bytes);
            }
        }
        self.code_bytes += code_bytes;
        self.entries.insert(
            digest,
            CachedOperator {
                compiled,
                code_bytes,
                used: self.clock,
            },
        );
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

/// Where the component's `snapshots.prepare-snapshot` is, if it exports
/// the interface; an export of that name with another type is refused.
fn prepare_snapshot_export(
    artifact: &str,
    component: &Component,
) -> Result<Option<ComponentExportIndex>, String> {
    let Some(interface) = component.get_export_index(None, SNAPSHOTS_EXPORT) else {
        return Ok(None);
    };
    let wrong = || {
        format!(
            "artifact {artifact} exports {SNAPSHOTS_EXPORT} without \
             `{PREPARE_SNAPSHOT}: func() -> result<_, string>`; build it against wit/operator.wit"
        )
    };
    let Some((ComponentItem::ComponentFunc(func), index)) =
        component.get_export(Some(&interface), PREPARE_SNAPSHOT)
    else {
        return Err(wrong());
    };
    let results: Vec<Type> = func.results().collect();
    let fits = func.params().len() == 0
        && matches!(results.as_slice(), [Type::Result(r)]
            if r.ok().is_none() && matches!(r.err(), Some(Type::String)));
    if fits { Ok(Some(index)) } else { Err(wrong()) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest an artifact is known by everywhere (compiled-code caches,
/// checkpoints' operator versions, upgrades): hex SHA-256 of its bytes.
pub fn artifact_digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
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

    /// A component exporting only `weir:operator/snapshots` with a
    /// `prepare-snapshot` of the given result type (WAT).
    fn snapshots_component(result: &str) -> Component {
        let engine = WasmEngine::new(None).unwrap();
        let wat = format!(
            r#"(component
                (core module $m
                    (memory (export "memory") 1)
                    (func (export "f") (result i32) i32.const 0))
                (core instance $i (instantiate $m))
                (type $t (func {result}))
                (func $f (type $t) (canon lift (core func $i "f") (memory $i "memory")))
                (instance $snapshots (export "prepare-snapshot" (func $f)))
                (export "{SNAPSHOTS_EXPORT}" (instance $snapshots)))"#
        );
        Component::new(&engine.engine, wat::parse_str(&wat).unwrap()).unwrap()
    }

    #[test]
    fn prepare_snapshot_is_found_only_with_its_contract_type() {
        let right = snapshots_component("(result (result (error string)))");
        assert!(matches!(
            prepare_snapshot_export("ok.wasm", &right),
            Ok(Some(_))
        ));
        let wrong = snapshots_component("(result u32)");
        let err = prepare_snapshot_export("odd.wasm", &wrong).unwrap_err();
        assert!(
            err.contains("odd.wasm") && err.contains(PREPARE_SNAPSHOT),
            "{err}"
        );
        let engine = WasmEngine::new(None).unwrap();
        let none = Component::new(&engine.engine, component("multi_memory")).unwrap();
        assert!(matches!(
            prepare_snapshot_export("plain.wasm", &none),
            Ok(None)
        ));
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
    fn compiled_components_are_bounded_least_recently_used_first() {
        let engine = WasmEngine::new(None).unwrap();
        let a = engine.load_bytes("a", &component("multi_memory")).unwrap();
        let b = engine.load_bytes("b", &component("table_grow")).unwrap();
        let mut cache = CompiledCache::new(2, 1000);
        cache.insert("a".into(), a.clone(), 100);
        cache.insert("b".into(), b.clone(), 100);
        assert!(cache.get("a").is_some());
        // Over the count: b, least recently used, leaves.
        cache.insert("c".into(), b.clone(), 100);
        assert!(cache.get("b").is_none());
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        // Over the bytes: both leave for one large entry.
        cache.insert("d".into(), a.clone(), 901);
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.code_bytes, 901);
        // An entry larger than the bound is not kept; nothing is evicted.
        cache.insert("e".into(), a.clone(), 1001);
        assert!(cache.get("e").is_none() && cache.get("d").is_some());
        // Re-inserting replaces without counting twice.
        cache.insert("d".into(), a.clone(), 901);
        assert_eq!(cache.code_bytes, 901);
    }

    #[test]
    fn the_engine_cache_is_bounded() {
        let engine = WasmEngine::new(None).unwrap();
        engine.load_bytes("a", &component("multi_memory")).unwrap();
        let cache = engine.compiled.lock().unwrap();
        assert_eq!(cache.entries.len(), 1);
        assert!(cache.code_bytes > 0);
        assert_eq!(
            (cache.count_max, cache.code_bytes_max),
            (COMPILED_MAX, COMPILED_CODE_BYTES_MAX)
        );
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
