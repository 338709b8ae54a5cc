//! `weir run`: a whole job in this process. The job master
//! ([`crate::master`]) decides; [`LocalDeployer`] runs each attempt's
//! tasks on local threads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::anyhow;
use crossbeam_channel::{Receiver, Sender, unbounded};
use weir_core::data_roots::{Access, DataRoots, check_dir, check_paths};
use weir_core::job::{JobSpec, SinkKind};
use weir_snapshot::metadata::now_unix_ms;
use weir_snapshot::{OperatorVersion, VersionRecord};
use weir_wasm::{CompiledOperator, WasmEngine};

use crate::attempt::{Attempt, Ended};
use crate::control::{ControlOptions, ControlServer};
use crate::events::{SinkCommand, SourceCommand, Swap};
use crate::master::command::CommandId;
use crate::master::driver::{
    AttemptInputs, AttemptPlan, Deployer, Driver, JobView, SnapshotPlan, Starting, apply_rescales,
};
use crate::master::machine::{AttemptEnd, Input, JobEnd};
use crate::message::Barrier;
use crate::metrics::{JobReport, NodeCounters, NodeReport, Outcome};
use crate::plan::TaskId;
use crate::state_root::StateRoot;
use crate::swaps::{self, PreparedSwaps};
use crate::task_snapshot::SnapshotPlans;
use crate::{artifacts, cut_error};

/// How to run a job, beyond what its file says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where compiled components are cached across runs; `None` disables
    /// the on-disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Continue from the newest complete checkpoint in the job's checkpoint
    /// directory (after the whole process was killed).
    pub resume: bool,
    /// Start from this savepoint (or checkpoint) directory.
    pub from_savepoint: Option<PathBuf>,
    /// Drop snapshot state that no operator of the job takes.
    pub allow_non_restored_state: bool,
    /// Serve the control API (savepoint, stop, upgrade, rescale) while the job runs.
    pub control: Option<ControlOptions>,
    /// The only trees the job's paths (sources, sinks, artifacts, state,
    /// checkpoints) and savepoint directories may lie in; checked before
    /// anything starts. `None` checks nothing (a caller that trusts the
    /// job, such as a benchmark).
    pub data_roots: Option<DataRoots>,
}

/// `options.data_roots` with the directories this run keeps its own files
/// in carved out: the compiled-code cache (its key authenticates machine
/// code) and the jobs directory (control tokens). Whoever builds the roots
/// may have denied them already; this holds for every caller.
pub(crate) fn roots_without_own(options: &RunOptions) -> anyhow::Result<Option<DataRoots>> {
    let Some(roots) = &options.data_roots else {
        return Ok(None);
    };
    let mut roots = roots.clone();
    let jobs_dir = options.control.as_ref().and_then(|c| c.jobs_dir.as_ref());
    for dir in options.cache_dir.iter().chain(jobs_dir) {
        roots
            .deny(dir)
            .map_err(|e| anyhow!("cannot keep jobs out of {}: {e}", dir.display()))?;
    }
    Ok(Some(roots))
}

/// Refuses, before anything starts, a path of `job` or of `options` that
/// leaves the data roots (or enters weir's own directories); the error names the job-file line and field, or
/// the flag.
pub fn check_data_paths(job: &JobSpec, options: &RunOptions) -> anyhow::Result<()> {
    let Some(roots) = &roots_without_own(options)? else {
        return Ok(());
    };
    check_paths(job, roots)?;
    if let Some(path) = &options.from_savepoint {
        roots
            .check(path, Access::Read)
            .map_err(|reason| anyhow!("--from-savepoint: {reason}"))?;
        // A checkpoint's shared files lie beside it, outside the directory
        // just checked.
        if let Some(shared) = weir_snapshot::shared_dir_of(path) {
            roots.check(&shared, Access::Read).map_err(|reason| {
                anyhow!("--from-savepoint: the checkpoint's shared files: {reason}")
            })?;
        }
    }
    if let Some(dir) = options
        .control
        .as_ref()
        .and_then(|c| c.savepoint_dir.as_ref())
    {
        check_dir(roots, dir).map_err(|reason| anyhow!("--savepoint-dir: {reason}"))?;
    }
    Ok(())
}

/// Loads and checks every operator's component without running anything.
pub fn validate_job(
    job: &JobSpec,
    options: &RunOptions,
) -> anyhow::Result<Vec<(String, CompiledOperator)>> {
    check_data_paths(job, options)?;
    crate::plan::check(job)?;
    let engine = WasmEngine::new(options.cache_dir.clone())?;
    compile_all(&engine, job)
}

pub(crate) fn compile_all(
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

/// The version each operator starts with: its job-file artifact.
pub fn initial_versions(compiled: &[(String, CompiledOperator)]) -> Vec<OperatorVersion> {
    let now = now_unix_ms();
    compiled
        .iter()
        .map(|(name, c)| OperatorVersion {
            operator: name.clone(),
            digest: c.digest.clone(),
            history: vec![VersionRecord {
                digest: c.digest.clone(),
                checkpoint: None,
                since_unix_ms: now,
            }],
        })
        .collect()
}

/// Runs `job` until its sources are exhausted (or it is stopped with a
/// savepoint, or cancelled), restarting it from its latest checkpoint as
/// `[restart]` allows, and serving the control API's commands.
pub fn run_job(job: &JobSpec, options: &RunOptions) -> anyhow::Result<JobReport> {
    let started = Instant::now();
    if let Some(control) = &options.control {
        control.check()?;
    }
    check_data_paths(job, options)?;
    crate::plan::check(job)?;
    let engine = Arc::new(WasmEngine::new(options.cache_dir.clone())?);
    let compiled = compile_all(&engine, job)?;
    let restore = crate::restore::starting_snapshot(job, options)?;
    if let Some(snapshot) = &restore {
        tracing::info!(job = %job.name, "restoring from {}", snapshot.dir.display());
    }
    let storage = crate::open_storage(job)?;
    let view = Arc::new(Mutex::new(JobView {
        name: job.name.clone(),
        state: "scheduling".into(),
        ..JobView::default()
    }));
    let (commands_tx, commands) = unbounded();
    let _control = match &options.control {
        Some(control) => Some(ControlServer::start(
            control,
            roots_without_own(options)?,
            job,
            commands_tx,
            view.clone(),
        )?),
        None => None,
    };
    let known: BTreeMap<String, PathBuf> = compiled
        .iter()
        .filter_map(|(name, c)| Some((c.digest.clone(), job.operator(name)?.wasm.clone())))
        .collect();
    let counters = Arc::new(Mutex::new(HashMap::new()));
    let deployer = LocalDeployer::new(
        engine,
        StateRoot::new(job)?,
        Artifacts {
            known,
            storage_root: storage.as_ref().map(|s| s.root().to_path_buf()),
            store_options: crate::store_options(job),
        },
        counters.clone(),
    );
    let driver = Driver {
        job: job.clone(),
        deployer,
        storage,
        initial_versions_from_snapshot: options.resume,
        initial_restore: restore,
        allow_non_restored_state: options.allow_non_restored_state,
        commands,
        view,
        reshape: Box::new(|job, inputs| reshape(job, inputs)),
        initial_versions: initial_versions(&compiled),
    };
    let end = driver.run();
    let counters = std::mem::take(&mut *counters.lock().expect("not poisoned"));
    let outcome = match end.end {
        JobEnd::Finished => Outcome::Finished,
        JobEnd::Stopped { savepoint } => Outcome::Stopped { savepoint },
        JobEnd::Cancelled => Outcome::Cancelled,
        // Cut where it entered: no caller holds (or prints) a guest's megabytes.
        JobEnd::Failed(e) => return Err(anyhow!("job `{}` {e}", job.name)),
    };
    let mut report = report(job, &counters, started);
    report.outcome = outcome;
    report.restarts = end.restarts;
    Ok(report)
}

/// An attempt's job: the submitted one after every rescale so far.
/// Artifacts are found by digest when the attempt starts; the job keeps
/// its file's paths, which messages name.
fn reshape(job: &JobSpec, inputs: &AttemptInputs) -> Result<JobSpec, String> {
    apply_rescales(job, inputs.rescales)
}

/// Where each artifact digest can be read.
struct Artifacts {
    /// The job file's operators' artifacts.
    known: BTreeMap<String, PathBuf>,
    /// `<checkpoint dir>/<job>`, where upgrades keep theirs.
    storage_root: Option<PathBuf>,
    /// Options for a storage root on an object store.
    store_options: weir_snapshot::StoreOptions,
}

impl Artifacts {
    fn path(&self, digest: &str) -> Result<PathBuf, String> {
        if let Some(path) = self.known.get(digest) {
            return Ok(path.clone());
        }
        self.storage_root
            .as_deref()
            .and_then(|root| artifacts::find(root, digest, &self.store_options))
            .ok_or_else(|| {
                format!(
                    "artifact {digest} is neither in the job file nor kept beside the checkpoints"
                )
            })
    }
}

/// Handles of the running attempt.
struct Live {
    source_commands: Vec<(TaskId, Sender<SourceCommand>)>,
    sink_commands: Vec<(TaskId, Sender<SinkCommand>)>,
    plans: SnapshotPlans,
    prepared: PreparedSwaps,
    cancel: Arc<std::sync::atomic::AtomicBool>,
    /// Numbers attempts, so a late note of an old one is ignored.
    generation: u64,
}

pub(crate) enum LocalNote {
    Ended {
        generation: u64,
        end: AttemptEnd,
    },
    Prepared {
        generation: u64,
        upgrade: CommandId,
        result: Result<(), String>,
    },
}

/// Runs attempts on threads of this process.
pub(crate) struct LocalDeployer {
    engine: Arc<WasmEngine>,
    state: Arc<StateRoot>,
    artifacts: Arc<Artifacts>,
    notes: (Sender<LocalNote>, Receiver<LocalNote>),
    live: Option<Live>,
    generation: u64,
    /// The last attempt's counters, for the run's report.
    counters: Arc<Mutex<HashMap<String, Arc<NodeCounters>>>>,
}

impl LocalDeployer {
    fn new(
        engine: Arc<WasmEngine>,
        state: StateRoot,
        artifacts: Artifacts,
        counters: Arc<Mutex<HashMap<String, Arc<NodeCounters>>>>,
    ) -> Self {
        LocalDeployer {
            engine,
            state: Arc::new(state),
            artifacts: Arc::new(artifacts),
            notes: unbounded(),
            live: None,
            generation: 0,
            counters,
        }
    }

    fn compile(
        &self,
        job: &JobSpec,
        operator: &str,
        digest: &str,
    ) -> Result<CompiledOperator, String> {
        let path = self.artifacts.path(digest)?;
        let line = job.operator(operator).map_or(0, |o| o.line);
        let compiled = self
            .engine
            .load(operator, &path)
            .map_err(|e| format!("{}:{line}: {e}", job.file.display()))?;
        if compiled.digest != digest {
            return Err(format!(
                "{} changed: its digest is {}, expected {digest}",
                path.display(),
                compiled.digest
            ));
        }
        Ok(compiled)
    }
}

impl Deployer for LocalDeployer {
    type Note = LocalNote;

    fn notes(&self) -> Receiver<LocalNote> {
        self.notes.1.clone()
    }

    fn note(&mut self, note: LocalNote, _now: Instant) -> Vec<Input> {
        match note {
            LocalNote::Ended { generation, end } if generation == self.generation => {
                self.live = None;
                vec![Input::AttemptEnded(end)]
            }
            LocalNote::Prepared {
                generation,
                upgrade,
                result,
            } if generation == self.generation => vec![Input::Prepared { upgrade, result }],
            _ => Vec::new(),
        }
    }

    fn start(&mut self, plan: &AttemptPlan) -> Result<Starting, String> {
        let job = &plan.job;
        let mut compiled = HashMap::new();
        for op in &job.operators {
            let digest = plan
                .versions
                .iter()
                .find(|v| v.operator == op.name)
                .map(|v| v.digest.clone())
                .ok_or_else(|| format!("operator `{}` has no version", op.name))?;
            compiled.insert(op.name.clone(), self.compile(job, &op.name, &digest)?);
        }
        let attempt = Attempt {
            job,
            compiled: &compiled,
            state: &self.state,
            restore: plan.restore.as_ref(),
            allow_non_restored: plan.allow_non_restored_state,
            number: plan.number,
            scope: None,
        };
        let live = attempt.start().map_err(|e| cut_error(&e))?;
        self.generation += 1;
        let generation = self.generation;
        let notes = self.notes.0.clone();
        let counters = self.counters.clone();
        let threads = live.threads;
        let joined = std::thread::Builder::new()
            .name(format!("attempt-{}", plan.number))
            .spawn(move || {
                let Ended {
                    failure,
                    cancelled,
                    counters: ended_counters,
                } = threads.join();
                *counters.lock().expect("not poisoned") = ended_counters;
                let end = match (failure, cancelled) {
                    (Some(e), _) => AttemptEnd::Failed(cut_error(&e)),
                    (None, true) => AttemptEnd::Cancelled,
                    (None, false) => AttemptEnd::Finished,
                };
                let _ = notes.send(LocalNote::Ended { generation, end });
            });
        if let Err(e) = joined {
            live.cancel.store(true, Ordering::Relaxed);
            return Err(format!("cannot start a thread: {e}"));
        }
        self.live = Some(Live {
            source_commands: live.source_commands,
            sink_commands: live.sink_commands,
            plans: live.plans,
            prepared: live.prepared,
            cancel: live.cancel,
            generation,
        });
        Ok(Starting::Ready(live.shape, live.events))
    }

    fn trigger(&mut self, barrier: Barrier, stop: bool, plan: &SnapshotPlan) {
        let Some(live) = &self.live else { return };
        live.plans
            .lock()
            .expect("not poisoned")
            .insert(barrier.id, Some(plan.clone()));
        for (_, source) in &live.source_commands {
            // A source that already ended cannot answer; the snapshot then
            // aborts when its `Finished` arrives.
            let _ = source.send(SourceCommand::Trigger { barrier, stop });
        }
    }

    fn abort(&mut self, id: u64) {
        if let Some(live) = &self.live {
            // A tombstone: a barrier still in flight must not wait for it.
            live.plans.lock().expect("not poisoned").insert(id, None);
        }
    }

    fn commit(&mut self, id: u64) {
        if let Some(live) = &self.live {
            for (_, sink) in &live.sink_commands {
                let _ = sink.send(SinkCommand::Commit(id));
            }
            for (_, source) in &live.source_commands {
                let _ = source.send(SourceCommand::Completed(id));
            }
        }
    }

    fn release_sources(&mut self) {
        if let Some(live) = &mut self.live {
            // Sources parked after a stop barrier end when their command
            // channel closes; the job winds down behind them.
            live.source_commands.clear();
        }
    }

    fn prepare(
        &mut self,
        upgrade: CommandId,
        swap: &Swap,
        plan: &AttemptPlan,
    ) -> Result<(), String> {
        let Some(live) = &self.live else {
            return Err("the job is not running".into());
        };
        let notes = self.notes.0.clone();
        let generation = live.generation;
        let prepared = live.prepared.clone();
        let engine = self.engine.clone();
        let artifacts = self.artifacts.clone();
        let job = plan.job.clone();
        let number = plan.number;
        let swap = swap.clone();
        let work = move || -> Result<(), String> {
            let path = artifacts.path(&swap.digest)?;
            let compiled = engine
                .load(&swap.operator, &path)
                .map_err(|e| e.to_string())?;
            let parallelism = job.operator(&swap.operator).map_or(0, |o| o.parallelism);
            let subtasks: Vec<u32> = (0..parallelism).collect();
            swaps::prepare(&job, &compiled, &swap, &subtasks, number, &prepared)
        };
        std::thread::Builder::new()
            .name(format!("prepare-{upgrade}"))
            .spawn(move || {
                let started = Instant::now();
                let result = work();
                tracing::info!(
                    "upgrade {upgrade}: new version prepared in {} ms: {}",
                    started.elapsed().as_millis(),
                    if result.is_ok() { "ok" } else { "failed" }
                );
                let _ = notes.send(LocalNote::Prepared {
                    generation,
                    upgrade,
                    result,
                });
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start a thread: {e}"))
    }

    fn discard(&mut self, _upgrade: CommandId) {
        if let Some(live) = &self.live {
            swaps::discard(&live.prepared);
        }
    }

    fn cancel(&mut self) {
        if let Some(live) = &mut self.live {
            live.cancel.store(true, Ordering::Relaxed);
            live.source_commands.clear();
            live.sink_commands.clear();
        }
    }
}

/// The sink paths a user reads, for the run summary.
pub fn sink_target(kind: &SinkKind) -> Option<&Path> {
    match kind {
        SinkKind::File { path } => Some(path),
        SinkKind::TransactionalFile { dir } => Some(dir),
        _ => None,
    }
}

fn report(
    job: &JobSpec,
    counters: &HashMap<String, Arc<NodeCounters>>,
    started: Instant,
) -> JobReport {
    let node = |name: &str, kind, parallelism| match counters.get(name) {
        Some(c) => NodeReport::from_counters(name, kind, parallelism, c),
        None => NodeReport::from_counters(name, kind, parallelism, &NodeCounters::default()),
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
        outcome: Outcome::Finished,
        restarts: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_and_jobs_dirs_are_denied_whoever_built_the_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let job_for = |path: &str| {
            let text = format!(
                "[job]\nname = \"j\"\n[[source]]\nname = \"s\"\nkind = \"file\"\npath = \"{path}\"\n[[sink]]\nname = \"k\"\nkind = \"discard\"\ninput = \"s\"\n"
            );
            weir_core::job::parse(&text, &root.join("job.toml")).unwrap()
        };
        let options = RunOptions {
            cache_dir: Some(root.join("cache")),
            control: Some(ControlOptions {
                bind: "127.0.0.1:0".parse().unwrap(),
                bind_any: false,
                jobs_dir: Some(root.join("jobs")),
                savepoint_dir: None,
            }),
            data_roots: Some(DataRoots::new(std::slice::from_ref(&root), &[]).unwrap()),
            ..RunOptions::default()
        };
        for own in ["cache/key", "jobs/other.json"] {
            let e = check_data_paths(&job_for(own), &options)
                .unwrap_err()
                .to_string();
            assert!(e.contains("is inside weir's own directory"), "{e}");
        }
        check_data_paths(&job_for("data/in.txt"), &options).unwrap();
    }
}
