//! A task's part of a snapshot: what each operator link writes at a
//! barrier, and how a restored link gets its state, timers and watermark
//! back.
//!
//! The synchronous part runs on the task's thread while processing waits:
//! timers are written out, the memory backend's entries are copied, or
//! RocksDB makes a native checkpoint (a flush and hard links). Writing the
//! copy, or copying the native checkpoint's new SST files to checkpoint
//! storage, is the asynchronous part, on its own thread, after the barrier
//! has moved on. (A RocksDB savepoint writes canonical state synchronously.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow, bail};
use crossbeam_channel::Sender;
use weir_core::KeyGroupRange;
use weir_core::job::GuestLimits;
use weir_core::key_group::subtask_for_key_group;
use weir_core::timers::TimeDomain;
use weir_core::timers::TimerQueue;
use weir_core::watermark::MIN_WATERMARK;
use weir_snapshot::keyed_file::{
    StateFileWriter, StateMapping, for_each_timer, restore_state, write_encoded, write_state,
    write_timers,
};
use weir_snapshot::remote::{Remote, upload_files};
use weir_snapshot::rocks_files::{SharedFiles, upload, upload_to_store};
use weir_snapshot::{OperatorSnapshot, StateHandle, StateInfo, SubtaskSnapshot};
use weir_state::{StateDescriptor, StateKind};
use weir_wasm::OperatorInstance;

use crate::events::{AckPart, OperatorPart, SnapshotPlan, TaskEvent};
use crate::message::Barrier;
use crate::swaps::PreparedSwaps;

/// Where each snapshot in flight is written and what swaps at its
/// barrier, by id; `None` once aborted.
pub type SnapshotPlans = Arc<Mutex<BTreeMap<u64, Option<SnapshotPlan>>>>;

/// What a task needs to take its part in snapshots.
#[derive(Clone)]
pub(crate) struct SnapshotContext {
    pub(crate) plans: SnapshotPlans,
    pub(crate) events: Sender<TaskEvent>,
    pub(crate) incremental: bool,
    /// For snapshots on an object store (the job file's overrides).
    pub(crate) store_options: weir_snapshot::StoreOptions,
    /// New versions of operators, opened and waiting for their barrier.
    pub(crate) prepared: PreparedSwaps,
}

impl SnapshotContext {
    pub(crate) fn plan(&self, id: u64) -> anyhow::Result<SnapshotPlan> {
        // On a cluster the plan comes from the coordinator over the
        // control stream, which a barrier on a data stream may overtake.
        let deadline = std::time::Instant::now() + DIR_WAIT;
        loop {
            match self.plans.lock().expect("not poisoned").get(&id) {
                Some(Some(plan)) => return Ok(plan.clone()),
                Some(None) => return Err(anyhow!("snapshot {id} was aborted")),
                None => {}
            }
            if std::time::Instant::now() >= deadline {
                return Err(anyhow!("snapshot {id} has no directory (aborted?)"));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    pub(crate) fn ack(&self, id: u64, part: AckPart) {
        let _ = self.events.send(TaskEvent::Ack { id, part });
    }

    pub(crate) fn decline(&self, id: u64, reason: String) {
        let _ = self.events.send(TaskEvent::Declined { id, reason });
    }
}

/// How long a task waits to learn where a snapshot goes.
const DIR_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where one link's RocksDB keeps native checkpoints before upload.
pub(crate) struct NativeState {
    /// On the database's file system, so checkpoints are hard links.
    pub(crate) local_dir: PathBuf,
    pub(crate) shared: Arc<Mutex<SharedFiles>>,
}

/// Snapshot identity of one chain link.
pub(crate) struct LinkIdentity {
    pub(crate) operator: String,
    pub(crate) parallelism: u32,
    pub(crate) subtask: u32,
    pub(crate) key_groups: KeyGroupRange,
    pub(crate) native: Option<NativeState>,
}

/// A link's part, possibly with writing still to do.
pub(crate) struct LinkPart {
    pub(crate) part: OperatorPart,
    deferred: Option<Deferred>,
}

/// The asynchronous part of a link's snapshot.
enum Deferred {
    Upload(Upload),
    /// The memory backend's state, already encoded, to write.
    Write {
        encoded: Vec<u8>,
        stats: Vec<weir_snapshot::StateStats>,
        path: PathBuf,
        relative: String,
    },
}

struct Upload {
    local: PathBuf,
    dir: PathBuf,
    /// Set when the snapshot is on an object store: SSTs go straight there.
    remote: Option<Remote>,
    private_name: String,
    shared: Arc<Mutex<SharedFiles>>,
    incremental: bool,
}

pub(crate) fn state_info(d: &StateDescriptor) -> StateInfo {
    StateInfo {
        name: d.name.clone(),
        kind: match d.kind {
            StateKind::Value => "value",
            StateKind::List => "list",
            StateKind::Map => "map",
        }
        .into(),
        ttl_ms: d.ttl_ms,
    }
}

/// The synchronous part of one link's snapshot. Files go to `dir` (a
/// local staging directory when the snapshot is `remote`).
pub(crate) fn snapshot_link(
    instance: &mut OperatorInstance,
    who: &LinkIdentity,
    barrier: Barrier,
    dir: &Path,
    remote: Option<&Remote>,
    incremental: bool,
) -> anyhow::Result<LinkPart> {
    let base = format!("{}-{}", who.operator, who.subtask);
    // What the guest holds back in its own memory goes to host state first.
    instance.prepare_snapshot()?;
    let state = instance.state();
    let has_timers = state.event_timers.len() + state.processing_timers.len() > 0;
    let timers = if has_timers {
        let all = state
            .event_timers
            .iter()
            .map(|(t, k)| (TimeDomain::EventTime, t, k))
            .chain(
                state
                    .processing_timers
                    .iter()
                    .map(|(t, k)| (TimeDomain::ProcessingTime, t, k)),
            );
        let name = format!("{base}.timers");
        Some(write_timers(all, &dir.join(&name), name)?)
    } else {
        None
    };
    let watermark = state.watermark;
    let mut states = Vec::new();
    let mut stats = Vec::new();
    let mut deferred = None;
    let handle = match state.keyed.as_mut() {
        None => StateHandle::None,
        Some(keyed) => {
            states = keyed.state.descriptors().iter().map(state_info).collect();
            let native = match (&who.native, barrier.savepoint) {
                (Some(native), false) => {
                    let local = native.local_dir.join(format!("chk-{}", barrier.id));
                    if local.exists() {
                        std::fs::remove_dir_all(&local)
                            .with_context(|| format!("cannot clear {}", local.display()))?;
                    }
                    if let Some(parent) = local.parent() {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("cannot create {}", parent.display()))?;
                    }
                    keyed
                        .state
                        .backend_mut()
                        .native_checkpoint(&local)?
                        .then_some((local, native))
                }
                _ => None,
            };
            match native {
                Some((local, native)) => {
                    deferred = Some(Deferred::Upload(Upload {
                        local,
                        dir: dir.to_path_buf(),
                        remote: remote.cloned(),
                        private_name: format!("{base}.rocksdb"),
                        shared: native.shared.clone(),
                        incremental,
                    }));
                    StateHandle::Rocksdb { files: Vec::new() }
                }
                // The memory backend: copy now, write later.
                None if who.native.is_none() => {
                    let mut writer = StateFileWriter::in_memory(states.len());
                    let mut failed = None;
                    keyed.state.backend_mut().scan_prefix(&[], &mut |k, v| {
                        if failed.is_none()
                            && let Err(e) = writer.push(k, v)
                        {
                            failed = Some(e);
                        }
                    })?;
                    if let Some(e) = failed {
                        return Err(e.into());
                    }
                    let (encoded, stats) = writer.into_encoded();
                    let name = format!("{base}.state");
                    deferred = Some(Deferred::Write {
                        encoded,
                        stats,
                        path: dir.join(&name),
                        relative: name,
                    });
                    StateHandle::None
                }
                None => {
                    let name = format!("{base}.state");
                    let (file, s) = write_state(
                        keyed.state.backend_mut(),
                        states.len(),
                        &dir.join(&name),
                        name,
                    )?;
                    stats = s;
                    StateHandle::Canonical { file }
                }
            }
        }
    };
    Ok(LinkPart {
        part: OperatorPart {
            operator: who.operator.clone(),
            parallelism: who.parallelism,
            states,
            subtask: SubtaskSnapshot {
                subtask: who.subtask,
                key_groups: (who.key_groups.start, who.key_groups.end),
                watermark,
                timers,
                state: handle,
                stats,
            },
            swapped: None,
        },
        deferred,
    })
}

/// The asynchronous part: fills in the state handle and statistics.
fn complete(part: &mut OperatorPart, deferred: Deferred) -> anyhow::Result<()> {
    match deferred {
        Deferred::Upload(u) => {
            let result = {
                let mut shared = u.shared.lock().expect("not poisoned");
                match &u.remote {
                    Some(remote) => upload_to_store(
                        &u.local,
                        remote,
                        &u.private_name,
                        &mut shared,
                        u.incremental,
                    ),
                    None => upload(
                        &u.local,
                        &u.dir,
                        &u.private_name,
                        &mut shared,
                        u.incremental,
                    ),
                }
            };
            let _ = std::fs::remove_dir_all(&u.local);
            part.subtask.state = StateHandle::Rocksdb { files: result? };
        }
        Deferred::Write {
            encoded,
            stats,
            path,
            relative,
        } => {
            let file = write_encoded(&encoded, &path, relative)?;
            part.subtask.state = StateHandle::Canonical { file };
            part.subtask.stats = stats;
        }
    }
    Ok(())
}

/// Finishes the links' parts (writing or uploading state off the task's
/// thread when there is any) and acknowledges the snapshot. For a
/// snapshot on an object store, the files staged in `staged` are uploaded
/// before the acknowledgement.
pub(crate) fn finish_and_ack(
    context: &SnapshotContext,
    id: u64,
    parts: Vec<LinkPart>,
    staged: Option<(PathBuf, Remote)>,
) {
    if staged.is_none() && parts.iter().all(|p| p.deferred.is_none()) {
        context.ack(
            id,
            AckPart::Chain(parts.into_iter().map(|p| p.part).collect()),
        );
        return;
    }
    let on_error = context.clone();
    let context = context.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("snapshot-{id}"))
        .spawn(move || {
            let mut done = Vec::new();
            for LinkPart { mut part, deferred } in parts {
                if let Some(deferred) = deferred
                    && let Err(e) = complete(&mut part, deferred)
                {
                    context.decline(id, format!("operator `{}`: {e:#}", part.operator));
                    return;
                }
                done.push(part);
            }
            if let Some((local, remote)) = &staged {
                for part in &done {
                    let mut files: Vec<&weir_snapshot::FileRef> =
                        part.subtask.timers.iter().collect();
                    if let StateHandle::Canonical { file } = &part.subtask.state {
                        files.push(file);
                    }
                    if let Err(e) = upload_files(remote, local, &files) {
                        context.decline(id, format!("operator `{}`: {e:#}", part.operator));
                        return;
                    }
                }
            }
            context.ack(id, AckPart::Chain(done));
        });
    if let Err(e) = spawned {
        on_error.decline(id, format!("cannot start a snapshot thread: {e}"));
    }
}

/// A subtask's timer queues filling from a snapshot under the operator's
/// limits: the same count and memory accounting as a guest's
/// registrations (keys plus [`TimerQueue::memory_bytes_of_one`]'s
/// overhead), so a snapshot cannot restore more than the guest could have
/// registered (a crafted or foreign snapshot, or limits lowered since).
struct RestoredTimers<'a> {
    event: &'a mut TimerQueue,
    processing: &'a mut TimerQueue,
    limits: &'a GuestLimits,
    label: &'a str,
}

impl RestoredTimers<'_> {
    /// Whether one more timer under a `key_len`-byte key would pass a
    /// limit, by the queues' counts; and the count.
    fn full(&self, key_len: usize) -> (bool, usize) {
        let count = self.event.len() + self.processing.len();
        let memory = self.event.memory_bytes() + self.processing.memory_bytes();
        let full = count >= self.limits.timers_max
            || memory + TimerQueue::memory_bytes_of_one(key_len)
                > self.limits.timers_memory_max_bytes;
        (full, count)
    }

    fn register(&mut self, domain: TimeDomain, timestamp: i64, key: &[u8]) -> anyhow::Result<()> {
        let (mut full, mut count) = self.full(key.len());
        if full {
            // The counts are upper bounds until the queues compact.
            self.event.compact();
            self.processing.compact();
            (full, count) = self.full(key.len());
        }
        let queue = match domain {
            TimeDomain::EventTime => &mut *self.event,
            TimeDomain::ProcessingTime => &mut *self.processing,
        };
        if full && !queue.contains(timestamp, key) {
            let label = self.label;
            if count >= self.limits.timers_max {
                bail!(
                    "operator `{label}`: the snapshot holds more than {} pending timers for this subtask \
                     (timers_max); raise `timers_max` in the job file to restore it",
                    self.limits.timers_max
                );
            }
            bail!(
                "operator `{label}`: the snapshot's pending timers for this subtask need more than \
                 the timer memory limit of {} MiB (timers_memory_max_mb) after {count} timers; \
                 raise `timers_memory_max_mb` in the job file to restore it",
                self.limits.timers_memory_max_bytes >> 20
            );
        }
        queue.register(timestamp, key);
        Ok(())
    }
}

/// How a link is restored, beyond what it is restored from.
pub(crate) struct RestoreSettings<'a> {
    pub(crate) max_parallelism: u32,
    /// Drop snapshot state the operator no longer declares.
    pub(crate) allow_non_restored: bool,
    /// Native RocksDB files were already put in place before the backend
    /// opened.
    pub(crate) native_restored: bool,
    /// The operator's limits, which restored timers count against.
    pub(crate) limits: &'a GuestLimits,
}

/// Restores one link from a snapshot after its guest declared its states.
pub(crate) fn restore_link(
    instance: &mut OperatorInstance,
    who: &LinkIdentity,
    op: &OperatorSnapshot,
    snapshot_dir: &Path,
    settings: &RestoreSettings<'_>,
) -> anyhow::Result<()> {
    let RestoreSettings {
        max_parallelism,
        allow_non_restored,
        native_restored,
        limits,
    } = *settings;
    let label = instance.label().to_string();
    let owners: Vec<&SubtaskSnapshot> = op
        .subtasks
        .iter()
        .filter(|s| s.key_groups.0 < who.key_groups.end && who.key_groups.start < s.key_groups.1)
        .collect();
    let state = instance.state();
    // Keyed state, renumbered by state name.
    let declared: Vec<StateInfo> = state
        .keyed
        .as_ref()
        .map(|k| k.state.descriptors().iter().map(state_info).collect())
        .unwrap_or_default();
    let mut new_index = Vec::new();
    for old in &op.states {
        match declared.iter().position(|d| d.name == old.name) {
            Some(i) if declared[i].kind != old.kind => bail!(
                "operator `{label}`: state `{}` was {} state and is now declared as {} state",
                old.name,
                old.kind,
                declared[i].kind
            ),
            Some(i) => new_index.push(Some(i as u16)),
            None if allow_non_restored => new_index.push(None),
            None => bail!(
                "operator `{label}`: the snapshot has state `{}`, which the operator no longer declares; \
                 pass --allow-non-restored-state to drop it",
                old.name
            ),
        }
    }
    if native_restored
        && new_index
            .iter()
            .enumerate()
            .any(|(i, n)| *n != Some(i as u16))
    {
        bail!(
            "operator `{label}`: its states changed since the checkpoint; restore from a savepoint to rename or reorder states"
        );
    }
    for owner in &owners {
        if let (StateHandle::Canonical { file }, Some(keyed)) = (&owner.state, state.keyed.as_mut())
        {
            let path = file.resolve(snapshot_dir)?;
            restore_state(
                &path,
                &StateMapping {
                    new_index: new_index.clone(),
                },
                &mut keyed.state,
            )
            .with_context(|| format!("operator `{label}`: cannot restore keyed state"))?;
        }
        if let Some(timers) = &owner.timers {
            let path = timers.resolve(snapshot_dir)?;
            let owns = |group| {
                subtask_for_key_group(group, max_parallelism, who.parallelism) == who.subtask
            };
            let mut queues = RestoredTimers {
                event: &mut state.event_timers,
                processing: &mut state.processing_timers,
                limits,
                label: &label,
            };
            for_each_timer(&path, max_parallelism, owns, |domain, timestamp, key| {
                queues.register(domain, timestamp, key)
            })?;
        }
    }
    state.watermark = owners
        .iter()
        .map(|s| s.watermark)
        .min()
        .unwrap_or(MIN_WATERMARK);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(timers_max: usize, timers_memory_max_bytes: usize) -> GuestLimits {
        GuestLimits {
            timers_max,
            timers_memory_max_bytes,
            ..GuestLimits::default()
        }
    }

    /// Writes `count` timers (alternating domains, distinct keys) and
    /// restores them under `limits`.
    fn restore(count: usize, limits: &GuestLimits) -> (anyhow::Result<()>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let keys: Vec<Vec<u8>> = (0..count)
            .map(|i| format!("key-{i}").into_bytes())
            .collect();
        write_timers(
            keys.iter().enumerate().map(|(i, k)| {
                let domain = if i % 2 == 0 {
                    TimeDomain::EventTime
                } else {
                    TimeDomain::ProcessingTime
                };
                (domain, i as i64, k.as_slice())
            }),
            &path,
            "t".into(),
        )
        .unwrap();
        let (mut event, mut processing) = (TimerQueue::default(), TimerQueue::default());
        let mut queues = RestoredTimers {
            event: &mut event,
            processing: &mut processing,
            limits,
            label: "windows[1]",
        };
        let result = for_each_timer(&path, 128, |_| true, |d, t, k| queues.register(d, t, k));
        (result, event.len() + processing.len())
    }

    #[test]
    fn restored_timers_stop_at_timers_max() {
        let (result, held) = restore(100, &limits(40, 1 << 30));
        let e = result.unwrap_err().to_string();
        assert_eq!(
            e,
            "operator `windows[1]`: the snapshot holds more than 40 pending timers for this subtask \
             (timers_max); raise `timers_max` in the job file to restore it"
        );
        assert_eq!(held, 40);
        let (result, held) = restore(100, &limits(100, 1 << 30));
        result.unwrap();
        assert_eq!(held, 100);
    }

    #[test]
    fn restored_timers_stop_at_the_timer_memory_limit() {
        let (result, held) = restore(10_000, &limits(1_000_000, 1 << 20));
        let e = result.unwrap_err().to_string();
        assert!(
            e.starts_with("operator `windows[1]`: the snapshot's pending timers for this subtask need more than the timer memory limit of 1 MiB (timers_memory_max_mb) after "),
            "{e}"
        );
        assert!(held > 0 && held < 10_000, "{held}");
    }
}
