//! Starts a job's tasks, waits for them, and reports what happened.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use weir_core::KeyGroupRange;
use weir_core::job::{JobSpec, StateBackendKind};
use weir_state::{KeyedStateStore, MemoryBackend, RocksDbBackend, StateBackend};
use weir_wasm::{CompiledOperator, Keyed, OperatorInfo, OperatorInstance, WasmEngine};

use crate::message::{TaskError, TaskResult};
use crate::metrics::{JobReport, NodeReport};
use crate::operator_task::{ChainLink, ChainTask};
use crate::plan::{self, Plan};
use crate::sink_task::SinkTask;
use crate::source_task::SourceTask;

/// How to run a job, beyond what its file says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where compiled components are cached across runs; `None` disables
    /// the on-disk cache.
    pub cache_dir: Option<PathBuf>,
}

/// Loads and checks every operator's component without running anything.
pub fn validate_job(
    job: &JobSpec,
    options: &RunOptions,
) -> anyhow::Result<Vec<(String, CompiledOperator)>> {
    let engine = WasmEngine::new(options.cache_dir.clone())?;
    compile_all(&engine, job)
}

fn compile_all(
    engine: &WasmEngine,
    job: &JobSpec,
) -> anyhow::Result<Vec<(String, CompiledOperator)>> {
    job.operators
        .iter()
        .map(|op| {
            let compiled = engine
                .load(&op.name, &op.wasm)
                .map_err(|e| anyhow!("{}:{}: {e}", job.file.display(), op.line))?;
            Ok((op.name.clone(), compiled))
        })
        .collect()
}

/// Runs `job` to completion on this machine.
pub fn run_job(job: &JobSpec, options: &RunOptions) -> anyhow::Result<JobReport> {
    let started = Instant::now();
    let engine = WasmEngine::new(options.cache_dir.clone())?;
    let compiled: HashMap<String, CompiledOperator> =
        compile_all(&engine, job)?.into_iter().collect();
    let plan = plan::build(job);
    for chain in &plan.chain_names {
        tracing::debug!(job = %job.name, "operator chain: {}", chain.join(" -> "));
    }
    let counters = plan.counters.clone();
    let state = StateRoot::new(job)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let tasks = build_tasks(job, plan, &compiled, &state, &cancel)?;

    let mut handles = Vec::new();
    for (name, task) in tasks {
        let cancel = cancel.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let result = task();
                if matches!(result, Err(TaskError::Failed(_))) {
                    cancel.store(true, Ordering::Relaxed);
                }
                result
            })
            .with_context(|| format!("cannot start thread for {name}"))?;
        handles.push((name, handle));
    }
    let mut failure: Option<anyhow::Error> = None;
    let mut cancelled = false;
    for (name, handle) in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(TaskError::Cancelled)) => cancelled = true,
            Ok(Err(TaskError::Failed(e))) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert_with(|| {
                    anyhow!("task {name} panicked (a bug in weir, please report it)")
                });
            }
        }
    }
    if let Some(e) = failure {
        return Err(e.context(format!("job `{}` failed", job.name)));
    }
    if cancelled {
        return Err(anyhow!("job `{}` was cancelled", job.name));
    }
    Ok(report(job, &counters, started))
}

type Task = Box<dyn FnOnce() -> TaskResult + Send>;

/// Where keyed state lives for this run; a temporary directory is removed
/// when the run ends.
struct StateRoot {
    dir: Option<PathBuf>,
    _temp: Option<tempfile::TempDir>,
}

impl StateRoot {
    fn new(job: &JobSpec) -> anyhow::Result<StateRoot> {
        let needs_disk = job.state_backend == StateBackendKind::Rocksdb
            && job.operators.iter().any(|o| o.is_keyed());
        if !needs_disk {
            return Ok(StateRoot {
                dir: None,
                _temp: None,
            });
        }
        match &job.state_dir {
            Some(dir) => Ok(StateRoot {
                dir: Some(dir.join(&job.name)),
                _temp: None,
            }),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix(&format!("weir-{}-", job.name))
                    .tempdir()
                    .context("cannot create a temporary state directory")?;
                Ok(StateRoot {
                    dir: Some(temp.path().to_path_buf()),
                    _temp: Some(temp),
                })
            }
        }
    }

    fn backend(
        &self,
        job: &JobSpec,
        operator: &str,
        subtask: u32,
    ) -> anyhow::Result<Box<dyn StateBackend>> {
        match (job.state_backend, &self.dir) {
            (StateBackendKind::Rocksdb, Some(root)) => {
                let dir = root.join(operator).join(subtask.to_string());
                // No checkpoints to restore from yet: every run starts empty.
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("cannot clear old state in {}", dir.display()))?;
                }
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                Ok(Box::new(RocksDbBackend::open(&dir)?))
            }
            _ => Ok(Box::new(MemoryBackend::new())),
        }
    }
}

fn build_tasks(
    job: &JobSpec,
    plan: Plan,
    compiled: &HashMap<String, CompiledOperator>,
    state: &StateRoot,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<(String, Task)>> {
    let counters = &plan.counters;
    let mut tasks: Vec<(String, Task)> = Vec::new();
    for source_plan in plan.sources {
        let spec = job.sources[source_plan.source].clone();
        let source = weir_connectors::open_source(&spec, source_plan.split).map_err(|e| {
            anyhow!(
                "{}:{}: source `{}`: {e}",
                job.file.display(),
                spec.line,
                spec.name
            )
        })?;
        let task = SourceTask {
            split: source_plan.split,
            source,
            gate: source_plan.gate,
            batch_records_max: job.batch_records_max,
            counters: counters[&spec.name].clone(),
            cancel: cancel.clone(),
            spec,
        };
        tasks.push((
            format!("source-{}-{}", task.spec.name, task.split),
            Box::new(move || task.run()),
        ));
    }
    for chain in plan.chains {
        let mut links = Vec::new();
        for link in chain.links {
            let spec = &job.operators[link.operator];
            let keyed = if spec.is_keyed() {
                let key_groups = KeyGroupRange::for_subtask(
                    chain.subtask,
                    spec.parallelism,
                    job.max_parallelism,
                );
                let backend = state.backend(job, &spec.name, chain.subtask)?;
                Some(Keyed {
                    state: KeyedStateStore::new(backend, job.max_parallelism, key_groups),
                    key_groups,
                    max_parallelism: job.max_parallelism,
                })
            } else {
                None
            };
            let info = OperatorInfo {
                name: spec.name.clone(),
                subtask_index: chain.subtask,
                parallelism: spec.parallelism,
                config: spec.config.clone(),
                limits: spec.limits,
            };
            let instance = OperatorInstance::open(&compiled[&spec.name], &info, keyed)?;
            links.push(ChainLink {
                instance,
                late_policy: spec.late_records,
                keyed: spec.is_keyed(),
                late_gate: link.late_gate,
                counters: counters[&spec.name].clone(),
            });
        }
        let name = format!("chain-{}-{}", links[0].instance.label(), chain.subtask);
        let task = ChainTask {
            links,
            inputs: chain.inputs,
            gate: chain.gate,
            batch_records_max: job.batch_records_max,
        };
        tasks.push((name, Box::new(move || task.run())));
    }
    for sink_plan in plan.sinks {
        let spec = &job.sinks[sink_plan.sink];
        let sink = weir_connectors::open_sink(spec).map_err(|e| {
            anyhow!(
                "{}:{}: sink `{}`: {e}",
                job.file.display(),
                spec.line,
                spec.name
            )
        })?;
        let task = SinkTask {
            name: spec.name.clone(),
            sink,
            inputs: sink_plan.inputs,
            counters: counters[&spec.name].clone(),
        };
        tasks.push((format!("sink-{}", spec.name), Box::new(move || task.run())));
    }
    Ok(tasks)
}

fn report(
    job: &JobSpec,
    counters: &HashMap<String, Arc<crate::metrics::NodeCounters>>,
    started: Instant,
) -> JobReport {
    let node = |name: &str, kind, parallelism| {
        NodeReport::from_counters(name, kind, parallelism, &counters[name])
    };
    let nodes = job
        .sources
        .iter()
        .map(|s| node(&s.name, "source", s.parallelism))
        .chain(
            job.operators
                .iter()
                .map(|o| node(&o.name, "operator", o.parallelism)),
        )
        .chain(job.sinks.iter().map(|s| node(&s.name, "sink", 1)))
        .collect();
    JobReport {
        job: job.name.clone(),
        elapsed: started.elapsed(),
        nodes,
    }
}
