//! A snapshot's metadata from what its tasks acknowledged.

use std::collections::BTreeMap;

use weir_core::job::JobSpec;
use weir_snapshot::{FORMAT_VERSION, Metadata, OperatorSnapshot, OperatorVersion};

use super::machine::Parts;

/// Groups the chain parts by operator (subtasks in order) and sorts the
/// source positions, so the same snapshot always reads the same.
pub fn assemble(
    job: &JobSpec,
    id: u64,
    savepoint: bool,
    parts: Parts,
    versions: Vec<OperatorVersion>,
    unix_ms: u64,
) -> Metadata {
    let mut operators: BTreeMap<String, OperatorSnapshot> = BTreeMap::new();
    for part in parts.chains {
        operators
            .entry(part.operator.clone())
            .or_insert_with(|| OperatorSnapshot {
                name: part.operator.clone(),
                parallelism: part.parallelism,
                states: part.states.clone(),
                subtasks: Vec::new(),
            })
            .subtasks
            .push(part.subtask);
    }
    let mut operators: Vec<OperatorSnapshot> = operators.into_values().collect();
    for op in &mut operators {
        op.subtasks.sort_by_key(|s| s.subtask);
    }
    let mut sources = parts.sources;
    sources.sort_by(|a, b| (&a.source, a.split).cmp(&(&b.source, b.split)));
    let mut sinks = parts.sinks;
    sinks.sort_by(|a, b| a.sink.cmp(&b.sink));
    Metadata {
        format_version: FORMAT_VERSION,
        job: job.name.clone(),
        id,
        savepoint,
        created_unix_ms: unix_ms,
        max_parallelism: job.max_parallelism,
        state_backend: format!("{:?}", job.state_backend).to_lowercase(),
        sources,
        operators,
        sinks,
        versions,
    }
}
