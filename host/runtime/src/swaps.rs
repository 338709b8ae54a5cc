//! New versions of an operator, opened before their barrier: building
//! them (compile, instantiate, `open`) is the slow part of an upgrade, so
//! it happens while the old version keeps processing; the barrier then only
//! moves the host state across ([`weir_wasm::OperatorInstance::swap`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use weir_core::job::JobSpec;
use weir_wasm::{CompiledOperator, OperatorInfo, OperatorInstance, PreparedInstance};

use crate::events::Swap;

/// One subtask's new version, waiting for its barrier.
pub struct Prepared {
    pub digest: String,
    pub instance: PreparedInstance,
}

/// Prepared versions of an attempt, by (operator, subtask).
pub type PreparedSwaps = Arc<Mutex<HashMap<(String, u32), Prepared>>>;

/// The config a guest's `open` sees: the job file's entries, then the
/// attempt number, its own artifact's digest, and the digest of the
/// version that wrote the state it starts on, if another one did.
pub fn operator_config(
    config: &[(String, String)],
    attempt: u32,
    digest: &str,
    previous: Option<&str>,
) -> Vec<(String, String)> {
    let mut config = config.to_vec();
    config.push(("weir.attempt".into(), attempt.to_string()));
    config.push(("weir.version".into(), digest.into()));
    if let Some(previous) = previous {
        config.push(("weir.previous_version".into(), previous.into()));
    }
    config
}

/// Opens `swap`'s new version for each of `subtasks` of its operator and
/// puts them in `into`. Any failure leaves nothing behind and names the
/// subtask.
pub fn prepare(
    job: &JobSpec,
    compiled: &CompiledOperator,
    swap: &Swap,
    subtasks: &[u32],
    attempt: u32,
    into: &PreparedSwaps,
) -> Result<(), String> {
    let spec = job
        .operator(&swap.operator)
        .ok_or_else(|| format!("the job has no operator `{}`", swap.operator))?;
    if compiled.digest != swap.digest {
        return Err(format!(
            "the artifact's digest is {}, not {}",
            compiled.digest, swap.digest
        ));
    }
    let mut opened = Vec::new();
    for &subtask in subtasks {
        let info = OperatorInfo {
            name: spec.name.clone(),
            subtask_index: subtask,
            parallelism: spec.parallelism,
            config: operator_config(&spec.config, attempt, &swap.digest, Some(&swap.previous)),
            limits: spec.limits,
        };
        let instance = OperatorInstance::prepare(compiled, &info)
            .map_err(|e| weir_core::text::cut_message(&format!("subtask {subtask}: {e}")))?;
        opened.push((subtask, instance));
    }
    let mut prepared = into.lock().expect("not poisoned");
    for (subtask, instance) in opened {
        prepared.insert(
            (swap.operator.clone(), subtask),
            Prepared {
                digest: swap.digest.clone(),
                instance,
            },
        );
    }
    Ok(())
}

/// Drops every prepared version (an upgrade that will not happen).
pub fn discard(prepared: &PreparedSwaps) {
    prepared.lock().expect("not poisoned").clear();
}
