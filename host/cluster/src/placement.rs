//! Where tasks run: slot sharing, as in Flink. Slot `i` of the job runs
//! subtask `i` of every node (sources, chains, the sink at slot 0), so a
//! job needs as many slots as its widest node. Job slots are spread
//! round-robin over the workers (Flink's `cluster.evenly-spread-out-slots`),
//! which puts neighbouring subtasks on different workers, so hash edges
//! cross the network.

use std::collections::BTreeMap;

use weir_runtime::TaskId;

use crate::protocol::WorkerId;

/// A live worker's free slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub worker: WorkerId,
    pub free_slots: u32,
}

/// How many slots `tasks` need under slot sharing.
pub fn slots_needed(tasks: &[TaskId]) -> u32 {
    tasks.iter().map(|t| t.subtask() + 1).max().unwrap_or(0)
}

/// Places every task, or says how many slots are missing.
pub fn place(tasks: &[TaskId], offers: &[Offer]) -> Result<Vec<(TaskId, WorkerId)>, String> {
    let needed = slots_needed(tasks);
    let mut remaining: Vec<Offer> = offers
        .iter()
        .copied()
        .filter(|o| o.free_slots > 0)
        .collect();
    remaining.sort_by_key(|o| o.worker);
    let mut slot_owner: Vec<WorkerId> = Vec::new();
    let mut turn = 0;
    while (slot_owner.len() as u32) < needed {
        if remaining.is_empty() {
            let free: u32 = offers.iter().map(|o| o.free_slots).sum();
            return Err(format!(
                "the job needs {needed} slot(s) (its widest node's parallelism); the cluster has {free} free"
            ));
        }
        turn %= remaining.len();
        let offer = &mut remaining[turn];
        slot_owner.push(offer.worker);
        offer.free_slots -= 1;
        if offer.free_slots == 0 {
            remaining.remove(turn);
        } else {
            turn += 1;
        }
    }
    Ok(tasks
        .iter()
        .map(|&t| (t, slot_owner[t.subtask() as usize]))
        .collect())
}

/// Slots each worker gives the job.
pub fn slots_used(placement: &[(TaskId, WorkerId)]) -> BTreeMap<WorkerId, u32> {
    let mut slots: BTreeMap<WorkerId, std::collections::BTreeSet<u32>> = BTreeMap::new();
    for (task, worker) in placement {
        slots.entry(*worker).or_default().insert(task.subtask());
    }
    slots
        .into_iter()
        .map(|(w, s)| (w, s.len() as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(parallelism: u32) -> Vec<TaskId> {
        let mut tasks = Vec::new();
        for i in 0..parallelism {
            tasks.push(TaskId::Source {
                source: 0,
                split: i,
            });
            tasks.push(TaskId::Chain {
                chain: 0,
                subtask: i,
            });
        }
        tasks.push(TaskId::Sink { sink: 0 });
        tasks
    }

    fn offers(slots: &[u32]) -> Vec<Offer> {
        slots
            .iter()
            .enumerate()
            .map(|(w, &s)| Offer {
                worker: w as u32 + 1,
                free_slots: s,
            })
            .collect()
    }

    #[test]
    fn spreads_slots_round_robin_and_shares_them_across_nodes() {
        let placement = place(&job(6), &offers(&[4, 4, 4])).unwrap();
        let owner = |t: TaskId| placement.iter().find(|(x, _)| *x == t).unwrap().1;
        // Subtask i of every node shares slot i.
        for i in 0..6 {
            assert_eq!(
                owner(TaskId::Source {
                    source: 0,
                    split: i
                }),
                owner(TaskId::Chain {
                    chain: 0,
                    subtask: i
                })
            );
        }
        assert_eq!(
            slots_used(&placement),
            BTreeMap::from([(1, 2), (2, 2), (3, 2)])
        );
        assert_ne!(
            owner(TaskId::Chain {
                chain: 0,
                subtask: 0
            }),
            owner(TaskId::Chain {
                chain: 0,
                subtask: 1
            }),
            "neighbours land on different workers"
        );
    }

    #[test]
    fn uses_what_is_left_and_says_what_is_missing() {
        let placement = place(&job(6), &offers(&[4, 0, 2])).unwrap();
        assert_eq!(slots_used(&placement), BTreeMap::from([(1, 4), (3, 2)]));
        let error = place(&job(6), &offers(&[2, 3])).unwrap_err();
        assert!(
            error.contains("needs 6 slot(s)") && error.contains("has 5 free"),
            "{error}"
        );
    }
}
