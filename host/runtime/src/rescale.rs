//! A job at another parallelism, for `weir rescale`.

use weir_core::job::{Edge, JobSpec, SourceKind};

/// Largest parallelism a rescale may ask for (as a job file may).
pub const PARALLELISM_MAX: u32 = weir_core::job::PARALLELISM_MAX;

/// `job` with `operator` (or, with `None`, every operator and every
/// rescalable source) at `parallelism`. A forward edge whose ends would
/// no longer match is refused rather than turned into another kind: the
/// job file chose it, or it was chosen because the parallelisms matched,
/// and either way the user decides what it becomes.
pub fn rescaled(
    job: &JobSpec,
    operator: Option<&str>,
    parallelism: u32,
) -> Result<JobSpec, String> {
    let most = job.max_parallelism.min(PARALLELISM_MAX);
    if parallelism == 0 || parallelism > most {
        return Err(format!(
            "parallelism {parallelism} is out of range: 1 to {most} (max_parallelism)"
        ));
    }
    let mut job = job.clone();
    match operator {
        Some(name) => {
            let op = job
                .operators
                .iter_mut()
                .find(|o| o.name == name)
                .ok_or_else(|| format!("the job has no operator `{name}`"))?;
            op.parallelism = parallelism;
        }
        None => {
            for op in &mut job.operators {
                op.parallelism = parallelism;
            }
            for source in &mut job.sources {
                // A generator's sequence is dealt out by split count; its
                // positions cannot move between splits.
                if matches!(source.kind, SourceKind::File { .. }) {
                    source.parallelism = parallelism;
                }
            }
        }
    }
    let parallelism_of = |node: &str| {
        job.sources
            .iter()
            .find(|s| s.name == node)
            .map(|s| s.parallelism)
            .or_else(|| {
                job.operators
                    .iter()
                    .find(|o| o.name == node)
                    .map(|o| o.parallelism)
            })
    };
    for op in &job.operators {
        for input in &op.inputs {
            let upstream = parallelism_of(&input.stream.node).unwrap_or(op.parallelism);
            if input.edge == Edge::Forward && upstream != op.parallelism {
                return Err(format!(
                    "operator `{}` reads `{}` over a forward edge, which needs equal parallelism \
                     ({} and {} after the rescale); rescale both, or give the edge another kind \
                     (edge = \"rebalance\") in the job file and resubmit",
                    op.name, input.stream.node, upstream, op.parallelism
                ));
            }
        }
    }
    crate::plan::check(&job).map_err(|e| format!("{e:#}"))?;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(text: &str) -> JobSpec {
        weir_core::job::parse(text, std::path::Path::new("/j/job.toml")).unwrap()
    }

    const CHAIN: &str = r#"
[job]
name = "j"
parallelism = 2
[[source]]
name = "in"
kind = "file"
path = "/in.txt"
[[operator]]
name = "map"
wasm = "/m.wasm"
input = "in"
[[operator]]
name = "enrich"
wasm = "/e.wasm"
input = "map"
[[operator]]
name = "count"
wasm = "/c.wasm"
input = "enrich"
edge = "hash"
[[sink]]
name = "out"
kind = "discard"
input = "count"
"#;

    #[test]
    fn the_whole_job_moves_together_and_keeps_its_forward_edges() {
        let j = rescaled(&job(CHAIN), None, 3).unwrap();
        assert!(j.operators.iter().all(|o| o.parallelism == 3));
    }

    #[test]
    fn one_operator_behind_a_hash_edge_moves_alone() {
        let j = rescaled(&job(CHAIN), Some("count"), 4).unwrap();
        assert_eq!(j.operator("count").unwrap().parallelism, 4);
        assert_eq!(j.operator("map").unwrap().parallelism, 2);
    }

    #[test]
    fn a_forward_edge_that_would_break_is_refused() {
        let e = rescaled(&job(CHAIN), Some("map"), 3).unwrap_err();
        assert!(
            e.contains("forward edge") && e.contains("`enrich` reads `map`"),
            "{e}"
        );
    }

    #[test]
    fn out_of_range_and_unknown_are_refused() {
        assert!(
            rescaled(&job(CHAIN), None, 0)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            rescaled(&job(CHAIN), None, 100_000)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            rescaled(&job(CHAIN), Some("nope"), 2)
                .unwrap_err()
                .contains("no operator `nope`")
        );
    }
}
