//! Which snapshot a run starts from, and whether the job can take it:
//! checked before anything starts.

use anyhow::{Context as _, bail};
use weir_core::job::{JobSpec, StateBackendKind};
use weir_snapshot::{CheckpointStorage, Snapshot, SourceSnapshot, StateHandle};

use crate::embedded::RunOptions;
use crate::storage_of;

/// Checks that a job can start from `snapshot` (the cluster's coordinator
/// does this before any worker starts).
pub fn check_snapshot(
    job: &JobSpec,
    snapshot: &Snapshot,
    allow_non_restored: bool,
) -> anyhow::Result<()> {
    check_restore(job, snapshot, allow_non_restored)
}

/// The snapshot a run of `job` starts from, if any (`--from-savepoint`,
/// `--resume`), checked against the job before anything starts. A fresh
/// run over a directory with checkpoints of an earlier run is refused.
pub fn starting_snapshot(job: &JobSpec, options: &RunOptions) -> anyhow::Result<Option<Snapshot>> {
    let restore = initial_restore(job, options, storage_of(job).as_ref())?;
    if let Some(snapshot) = &restore {
        check_restore(job, snapshot, options.allow_non_restored_state)?;
    }
    Ok(restore)
}

fn initial_restore(
    job: &JobSpec,
    options: &RunOptions,
    storage: Option<&CheckpointStorage>,
) -> anyhow::Result<Option<Snapshot>> {
    if let Some(path) = &options.from_savepoint {
        if options.resume {
            bail!("--resume and --from-savepoint exclude each other");
        }
        return Ok(Some(
            Snapshot::load_with(path, &crate::store_options(job))
                .with_context(|| format!("cannot restore from savepoint {}", path.display()))?,
        ));
    }
    let Some(storage) = storage else {
        if options.resume {
            bail!("--resume needs checkpoints: the job file has no [checkpoint] section");
        }
        return Ok(None);
    };
    if options.resume {
        return match storage.latest_valid()? {
            Some(s) => Ok(Some(s)),
            None => bail!(
                "--resume: no complete checkpoint of job `{}` in {}",
                job.name,
                storage.root().display()
            ),
        };
    }
    if storage.has_completed() {
        bail!(
            "{} holds checkpoints of an earlier run of job `{}`; continue it with --resume, \
             or delete that directory to start over",
            storage.root().display(),
            job.name
        );
    }
    Ok(None)
}

/// Refuses, before anything starts, a snapshot this job cannot take.
pub(crate) fn check_restore(
    job: &JobSpec,
    snapshot: &Snapshot,
    allow_non_restored: bool,
) -> anyhow::Result<()> {
    let m = &snapshot.metadata;
    let at = snapshot.dir.display();
    if m.max_parallelism != job.max_parallelism {
        bail!(
            "{at}: taken with max_parallelism {}, but the job has {}; key groups cannot be remapped",
            m.max_parallelism,
            job.max_parallelism
        );
    }
    for s in &m.sources {
        if job.sources.iter().all(|j| j.name != s.source) && !allow_non_restored {
            bail!(
                "{at}: the snapshot has a position for source `{}`, which the job no longer has; \
                 pass --allow-non-restored-state to drop it",
                s.source
            );
        }
    }
    source_positions(job, snapshot)?;
    for op in &m.operators {
        let Some(spec) = job.operator(&op.name) else {
            if allow_non_restored {
                continue;
            }
            bail!(
                "{at}: the snapshot has state for operator `{}`, which the job no longer has; \
                 pass --allow-non-restored-state to drop it",
                op.name
            );
        };
        let native = op
            .subtasks
            .iter()
            .any(|s| matches!(s.state, StateHandle::Rocksdb { .. }));
        if native
            && (job.state_backend != StateBackendKind::Rocksdb
                || spec.parallelism != op.parallelism)
        {
            bail!(
                "{at}: checkpoint {} holds operator `{}`'s state as native RocksDB files at parallelism {}; \
                 it restores only into RocksDB at that parallelism. Take a savepoint to change the backend or parallelism",
                m.id,
                op.name,
                op.parallelism
            );
        }
    }
    Ok(())
}

/// Every source split's position in `snapshot`, for the job's split
/// counts: as recorded when they match, redistributed by the connector
/// when the source was rescaled. Each new split resumes the watermark
/// generator of the slowest old one, so no record becomes late by moving.
pub(crate) fn source_positions(
    job: &JobSpec,
    snapshot: &Snapshot,
) -> anyhow::Result<Vec<SourceSnapshot>> {
    let at = snapshot.dir.display();
    let mut positions = Vec::new();
    for spec in &job.sources {
        let mut old: Vec<&SourceSnapshot> = snapshot
            .metadata
            .sources
            .iter()
            .filter(|s| s.source == spec.name)
            .collect();
        if old.is_empty() {
            continue;
        }
        old.sort_by_key(|s| s.split);
        let splits = old[0].splits;
        let complete = old.len() == splits as usize
            && old
                .iter()
                .enumerate()
                .all(|(i, s)| s.split == i as u32 && s.splits == splits);
        if !complete {
            bail!(
                "{at}: source `{}`: the snapshot's splits are incomplete or inconsistent",
                spec.name
            );
        }
        if splits == spec.parallelism {
            positions.extend(old.into_iter().cloned());
            continue;
        }
        let values: Vec<serde_json::Value> = old.iter().map(|s| s.position.clone()).collect();
        let moved =
            weir_connectors::rescale_positions(spec, &values, spec.parallelism).map_err(|e| {
                anyhow::anyhow!(
                    "{at}: source `{}` had {splits} split(s), the job now has {}: {e}",
                    spec.name,
                    spec.parallelism
                )
            })?;
        let max_timestamp = old.iter().map(|s| s.max_timestamp).min().flatten();
        let sent_watermark = old
            .iter()
            .map(|s| s.sent_watermark)
            .min()
            .unwrap_or(i64::MIN);
        for (split, position) in moved.into_iter().enumerate() {
            positions.push(SourceSnapshot {
                source: spec.name.clone(),
                split: split as u32,
                splits: spec.parallelism,
                position,
                max_timestamp,
                sent_watermark,
            });
        }
    }
    Ok(positions)
}
