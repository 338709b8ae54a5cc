//! The master's decisions, driven event by event with a simulated clock:
//! no threads, sockets or sleeps.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir_snapshot::{
    OperatorVersion, SinkSnapshot, SourceSnapshot, StateHandle, SubtaskSnapshot, VersionRecord,
};

use super::*;
use crate::events::{AckPart, OperatorPart, TaskEvent};

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_secs(2);
const DELAY: Duration = Duration::from_millis(100);
const SHAPE: Shape = Shape {
    sources: 1,
    chains: 2,
    sinks: 1,
};

fn settings() -> Settings {
    Settings {
        checkpoint_interval: Some(INTERVAL),
        checkpoint_timeout: TIMEOUT,
        checkpoints: true,
        restart_attempts: 2,
        restart_delay: DELAY,
        operators: [("count".to_string(), 2)].into(),
    }
}

fn v1() -> Vec<OperatorVersion> {
    vec![OperatorVersion {
        operator: "count".into(),
        digest: "d1".into(),
        history: vec![VersionRecord {
            digest: "d1".into(),
            checkpoint: None,
            since_unix_ms: 1,
        }],
    }]
}

/// A machine whose attempt 0 is running at `t0`.
fn running(settings: Settings) -> (JobMachine, Instant) {
    let t0 = Instant::now();
    let mut m = JobMachine::new(settings, 1, v1());
    let actions = m.drain();
    assert!(matches!(
        actions.as_slice(),
        [Action::StartAttempt {
            number: 0,
            restore: Restore::Latest,
            ..
        }]
    ));
    m.handle(Input::AttemptStarted { shape: SHAPE }, t0);
    assert!(m.drain().is_empty());
    (m, t0)
}

fn source_ack(id: u64) -> Input {
    Input::Task(TaskEvent::Ack {
        id,
        part: AckPart::Source(SourceSnapshot {
            source: "s".into(),
            split: 0,
            splits: 1,
            position: serde_json::json!({}),
            max_timestamp: None,
            sent_watermark: 0,
        }),
    })
}

fn chain_ack(id: u64, subtask: u32, swapped: Option<Result<String, String>>) -> Input {
    Input::Task(TaskEvent::Ack {
        id,
        part: AckPart::Chain(vec![OperatorPart {
            operator: "count".into(),
            parallelism: 2,
            states: vec![],
            subtask: SubtaskSnapshot {
                subtask,
                key_groups: (0, 1),
                watermark: 0,
                timers: None,
                state: StateHandle::None,
                stats: vec![],
            },
            swapped,
        }]),
    })
}

fn sink_ack(id: u64) -> Input {
    Input::Task(TaskEvent::Ack {
        id,
        part: AckPart::Sink(SinkSnapshot {
            sink: "k".into(),
            state: serde_json::json!(null),
        }),
    })
}

/// Acknowledges `id` from every task; returns the actions that follow.
fn ack_all(
    m: &mut JobMachine,
    id: u64,
    now: Instant,
    swapped: [Option<Result<String, String>>; 2],
) -> Vec<Action> {
    let [a, b] = swapped;
    for input in [
        source_ack(id),
        chain_ack(id, 0, a),
        chain_ack(id, 1, b),
        sink_ack(id),
    ] {
        m.handle(input, now);
    }
    m.drain()
}

fn written(m: &mut JobMachine, id: u64, now: Instant) -> Vec<Action> {
    m.handle(
        Input::MetadataWritten {
            id,
            dir: PathBuf::from(format!("/snap/{id}")),
            unix_ms: 1000 + id,
            result: Ok(()),
        },
        now,
    );
    m.drain()
}

fn triggered(actions: &[Action]) -> Option<(u64, bool, bool, &Vec<Swap>)> {
    actions.iter().find_map(|a| match a {
        Action::Trigger {
            id,
            savepoint,
            stop,
            swaps,
            ..
        } => Some((*id, *savepoint, *stop, swaps)),
        _ => None,
    })
}

fn reply(actions: &[Action], command: CommandId) -> Option<&CommandResult> {
    actions.iter().find_map(|a| match a {
        Action::Reply { command: c, result } if *c == command => Some(result),
        _ => None,
    })
}

#[test]
fn a_checkpoint_is_triggered_each_interval_and_completes_when_every_task_acked() {
    let (mut m, t0) = running(settings());
    m.poll(t0 + INTERVAL - Duration::from_millis(1));
    assert!(m.drain().is_empty(), "not due yet");
    m.poll(t0 + INTERVAL);
    let actions = m.drain();
    assert_eq!(triggered(&actions).map(|t| (t.0, t.1)), Some((1, false)));
    let t = t0 + INTERVAL;
    m.handle(source_ack(1), t);
    m.handle(chain_ack(1, 0, None), t);
    m.handle(chain_ack(1, 1, None), t);
    assert!(m.drain().is_empty(), "the sink has not acknowledged");
    m.handle(sink_ack(1), t);
    let actions = m.drain();
    assert!(
        matches!(actions.as_slice(), [Action::WriteMetadata { id: 1, savepoint: false, parts, .. }] if parts.chains.len() == 2)
    );
    let actions = written(&mut m, 1, t);
    assert!(matches!(
        actions.as_slice(),
        [Action::Prune { id: 1 }, Action::CommitSinks { id: 1 }]
    ));
    assert_eq!(m.last_checkpoint(), Some(1));
    m.poll(t + INTERVAL);
    assert_eq!(triggered(&m.drain()).map(|t| t.0), Some(2));
}

#[test]
fn a_checkpoint_times_out_and_an_ack_after_the_abort_is_ignored() {
    let (mut m, t0) = running(settings());
    m.poll(t0 + INTERVAL);
    m.drain();
    let started = t0 + INTERVAL;
    assert_eq!(m.next_wakeup(), Some(started + INTERVAL));
    m.handle(source_ack(1), started);
    m.poll(started + TIMEOUT);
    let actions = m.drain();
    assert!(
        matches!(&actions[0], Action::Abort { id: 1, reason } if reason == "timed out"),
        "{actions:?}"
    );
    // The rest of checkpoint 1 arrives late: nothing is written for it.
    let late = ack_all(&mut m, 1, started + TIMEOUT, [None, None]);
    assert!(
        !late
            .iter()
            .any(|a| matches!(a, Action::WriteMetadata { .. })),
        "{late:?}"
    );
    assert_eq!(m.last_checkpoint(), None);
}

#[test]
fn a_decline_aborts_and_the_next_checkpoint_gets_a_new_id() {
    let (mut m, t0) = running(settings());
    m.poll(t0 + INTERVAL);
    m.drain();
    m.handle(
        Input::Task(TaskEvent::Declined {
            id: 1,
            reason: "disk full".into(),
        }),
        t0 + INTERVAL,
    );
    assert!(
        matches!(m.drain().as_slice(), [Action::Abort { id: 1, reason }] if reason == "disk full")
    );
    m.poll(t0 + INTERVAL * 2);
    assert_eq!(triggered(&m.drain()).map(|t| t.0), Some(2));
}

#[test]
fn concurrent_savepoints_run_one_at_a_time_in_order() {
    let (mut m, t0) = running(settings());
    let dir = PathBuf::from("/sp");
    for id in [10, 11] {
        m.handle(
            Input::Command {
                id,
                command: Command::Savepoint {
                    dir: dir.clone(),
                    stop: false,
                },
            },
            t0,
        );
    }
    let actions = m.drain();
    assert_eq!(triggered(&actions).map(|t| (t.0, t.1)), Some((1, true)));
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Trigger { .. }))
            .count(),
        1,
        "the second waits"
    );
    ack_all(&mut m, 1, t0, [None, None]);
    let actions = written(&mut m, 1, t0);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Prune { .. })),
        "savepoints are not pruned"
    );
    assert_eq!(
        reply(&actions, 10),
        Some(&Ok(CommandReply {
            path: Some(PathBuf::from("/snap/1")),
            checkpoint: Some(1),
            ..CommandReply::default()
        }))
    );
    assert_eq!(
        triggered(&actions).map(|t| t.0),
        Some(2),
        "the second starts at once"
    );
}

#[test]
fn commands_beyond_the_queue_bound_are_refused() {
    let (mut m, t0) = running(settings());
    for id in 0..=(COMMANDS_QUEUED_MAX as u64 + 1) {
        m.handle(
            Input::Command {
                id,
                command: Command::Savepoint {
                    dir: "/sp".into(),
                    stop: false,
                },
            },
            t0,
        );
    }
    let actions = m.drain();
    // One started, COMMANDS_QUEUED_MAX wait, one is refused.
    let refused = reply(&actions, COMMANDS_QUEUED_MAX as u64 + 1);
    assert!(
        matches!(refused, Some(Err(e)) if e.contains("already waiting")),
        "{actions:?}"
    );
}

#[test]
fn a_stop_commits_then_releases_the_sources_and_the_job_ends_stopped() {
    let (mut m, t0) = running(settings());
    m.handle(
        Input::Command {
            id: 7,
            command: Command::Savepoint {
                dir: "/sp".into(),
                stop: true,
            },
        },
        t0,
    );
    assert_eq!(
        triggered(&m.drain()).map(|t| (t.1, t.2)),
        Some((true, true))
    );
    ack_all(&mut m, 1, t0, [None, None]);
    let actions = written(&mut m, 1, t0);
    assert!(reply(&actions, 7).is_none(), "answered only once committed");
    m.handle(Input::Task(TaskEvent::Committed { id: 1 }), t0);
    let actions = m.drain();
    assert!(matches!(reply(&actions, 7), Some(Ok(r)) if r.path == Some("/snap/1".into())));
    assert!(actions.iter().any(|a| matches!(a, Action::ReleaseSources)));
    m.handle(Input::AttemptEnded(AttemptEnd::Finished), t0);
    assert!(matches!(
        m.drain().as_slice(),
        [Action::JobEnded(JobEnd::Stopped { savepoint })] if savepoint == &PathBuf::from("/snap/1")
    ));
}

#[test]
fn a_failure_during_a_savepoint_answers_it_and_restarts_from_the_latest_checkpoint() {
    let (mut m, t0) = running(settings());
    m.handle(
        Input::Command {
            id: 3,
            command: Command::Savepoint {
                dir: "/sp".into(),
                stop: false,
            },
        },
        t0,
    );
    m.drain();
    m.handle(source_ack(1), t0);
    m.handle(Input::AttemptEnded(AttemptEnd::Failed("boom".into())), t0);
    let actions = m.drain();
    assert!(
        matches!(reply(&actions, 3), Some(Err(e)) if e.contains("aborted")),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Restarting { restarts: 1, reason } if reason == "boom"))
    );
    assert_eq!(m.phase(), &Phase::Restarting);
    m.poll(t0 + DELAY - Duration::from_millis(1));
    assert!(m.drain().is_empty(), "waits for the restart delay");
    m.poll(t0 + DELAY);
    assert!(matches!(
        m.drain().as_slice(),
        [Action::StartAttempt {
            number: 1,
            restore: Restore::Latest,
            ..
        }]
    ));
}

#[test]
fn restarts_stop_at_the_configured_attempts() {
    let (mut m, mut t) = running(settings());
    for restart in 1..=2 {
        m.handle(Input::AttemptEnded(AttemptEnd::Failed("boom".into())), t);
        m.drain();
        t += DELAY;
        m.poll(t);
        m.drain();
        m.handle(Input::AttemptStarted { shape: SHAPE }, t);
        assert_eq!(m.restarts(), restart);
    }
    m.handle(Input::AttemptEnded(AttemptEnd::Failed("boom".into())), t);
    assert!(matches!(
        m.drain().as_slice(),
        [Action::JobEnded(JobEnd::Failed(e))] if e == "failed after 2 restart(s): boom"
    ));
}

fn upgrade(id: CommandId, digest: &str) -> Input {
    Input::Command {
        id,
        command: Command::Upgrade {
            operator: "count".into(),
            digest: digest.into(),
            allow_dropping_state: false,
        },
    }
}

/// Runs an upgrade of `count` to `d2` up to its barrier; returns the
/// barrier's checkpoint id.
fn upgrade_to_barrier(m: &mut JobMachine, t: Instant) -> u64 {
    m.handle(upgrade(5, "d2"), t);
    let actions = m.drain();
    assert!(
        matches!(actions.as_slice(), [Action::Prepare { upgrade: 5, swap }] if swap.digest == "d2" && swap.previous == "d1"),
        "{actions:?}"
    );
    m.handle(
        Input::Prepared {
            upgrade: 5,
            result: Ok(()),
        },
        t,
    );
    let actions = m.drain();
    let (id, savepoint, _, swaps) = triggered(&actions).expect("the swap barrier");
    assert!(!savepoint);
    assert_eq!(swaps.len(), 1);
    id
}

#[test]
fn an_upgrade_prepares_then_swaps_at_one_barrier_and_records_the_version() {
    let (mut m, t0) = running(settings());
    let id = upgrade_to_barrier(&mut m, t0);
    let ok = || Some(Ok("d2".to_string()));
    let actions = ack_all(&mut m, id, t0, [ok(), ok()]);
    let Some(Action::WriteMetadata { versions, .. }) = actions.first() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        versions[0].digest, "d2",
        "the checkpoint records the new version"
    );
    let actions = written(&mut m, id, t0);
    assert_eq!(
        reply(&actions, 5),
        Some(&Ok(CommandReply {
            checkpoint: Some(id),
            digest: Some("d2".into()),
            ..CommandReply::default()
        }))
    );
    let v = &m.versions()[0];
    assert_eq!(v.digest, "d2");
    assert_eq!(v.history.len(), 2);
    assert_eq!(v.history[1].checkpoint, Some(id));
    assert_eq!(v.history[1].since_unix_ms, 1000 + id);
    // And back.
    m.handle(
        Input::Command {
            id: 6,
            command: Command::Rollback {
                operator: "count".into(),
                allow_dropping_state: false,
            },
        },
        t0,
    );
    assert!(
        matches!(m.drain().as_slice(), [Action::Prepare { upgrade: 6, swap }] if swap.digest == "d1" && swap.previous == "d2")
    );
}

#[test]
fn an_upgrade_whose_new_version_cannot_open_changes_nothing() {
    let (mut m, t0) = running(settings());
    m.handle(upgrade(5, "d2"), t0);
    m.drain();
    m.handle(
        Input::Prepared {
            upgrade: 5,
            result: Err("open failed: no".into()),
        },
        t0,
    );
    let actions = m.drain();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::DiscardPrepared { upgrade: 5 }))
    );
    assert!(
        matches!(reply(&actions, 5), Some(Err(e)) if e.contains("goes on with the old one") && e.contains("open failed: no"))
    );
    assert!(triggered(&actions).is_none());
    assert_eq!(m.versions()[0].digest, "d1");
    // Periodic checkpoints go on, without swaps.
    m.poll(t0 + INTERVAL);
    let actions = m.drain();
    assert!(triggered(&actions).is_some_and(|t| t.3.is_empty()));
}

#[test]
fn a_swap_refused_by_every_subtask_keeps_the_old_version_without_a_restart() {
    let (mut m, t0) = running(settings());
    let id = upgrade_to_barrier(&mut m, t0);
    let refused = || Some(Err("state `count` changed kind".to_string()));
    let actions = ack_all(&mut m, id, t0, [refused(), refused()]);
    assert!(
        matches!(&actions[0], Action::WriteMetadata { versions, .. } if versions[0].digest == "d1")
    );
    let actions = written(&mut m, id, t0);
    assert!(matches!(reply(&actions, 5), Some(Err(e)) if e.contains("changed kind")));
    assert!(!actions.iter().any(|a| matches!(a, Action::CancelAttempt)));
    assert_eq!(m.versions()[0].digest, "d1");
}

#[test]
fn a_swap_of_only_some_subtasks_restarts_on_the_old_version() {
    let (mut m, t0) = running(settings());
    let id = upgrade_to_barrier(&mut m, t0);
    let actions = ack_all(
        &mut m,
        id,
        t0,
        [Some(Ok("d2".into())), Some(Err("out of memory".into()))],
    );
    assert!(
        matches!(&actions[0], Action::WriteMetadata { versions, .. } if versions[0].digest == "d1")
    );
    let actions = written(&mut m, id, t0);
    assert!(actions.iter().any(|a| matches!(a, Action::CancelAttempt)));
    m.handle(Input::AttemptEnded(AttemptEnd::Cancelled), t0);
    let actions = m.drain();
    assert!(
        actions.iter().any(|a| matches!(a, Action::Restarting { reason, .. } if reason.contains("only some subtasks"))),
        "{actions:?}"
    );
    assert_eq!(m.versions()[0].digest, "d1");
}

#[test]
fn a_failure_during_an_upgrade_restarts_and_answers_the_upgrade() {
    let (mut m, t0) = running(settings());
    m.handle(upgrade(5, "d2"), t0);
    m.drain();
    m.handle(
        Input::AttemptEnded(AttemptEnd::Failed("worker lost".into())),
        t0,
    );
    let actions = m.drain();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::DiscardPrepared { upgrade: 5 }))
    );
    assert!(matches!(reply(&actions, 5), Some(Err(e)) if e.contains("nothing changed")));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Restarting { .. }))
    );
    // A late "prepared" from a node of the failed attempt does nothing.
    m.handle(
        Input::Prepared {
            upgrade: 5,
            result: Ok(()),
        },
        t0,
    );
    assert!(m.drain().is_empty());
}

#[test]
fn an_aborted_upgrade_checkpoint_restarts_from_the_newest_checkpoint() {
    let (mut m, t0) = running(settings());
    let id = upgrade_to_barrier(&mut m, t0);
    m.poll(t0 + TIMEOUT);
    let actions = m.drain();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Abort { id: i, .. } if *i == id))
    );
    assert!(matches!(reply(&actions, 5), Some(Err(e)) if e.contains("aborted")));
    assert!(actions.iter().any(|a| matches!(a, Action::CancelAttempt)));
    m.handle(Input::AttemptEnded(AttemptEnd::Cancelled), t0 + TIMEOUT);
    assert!(
        m.drain()
            .iter()
            .any(|a| matches!(a, Action::Restarting { .. }))
    );
}

#[test]
fn an_upgrade_and_a_savepoint_sent_together_run_one_after_the_other() {
    let (mut m, t0) = running(settings());
    m.handle(upgrade(5, "d2"), t0);
    m.handle(
        Input::Command {
            id: 9,
            command: Command::Savepoint {
                dir: "/sp".into(),
                stop: false,
            },
        },
        t0,
    );
    let actions = m.drain();
    assert!(
        triggered(&actions).is_none(),
        "the savepoint waits for the upgrade"
    );
    m.handle(
        Input::Prepared {
            upgrade: 5,
            result: Ok(()),
        },
        t0,
    );
    let id = triggered(&m.drain()).unwrap().0;
    let ok = || Some(Ok("d2".to_string()));
    ack_all(&mut m, id, t0, [ok(), ok()]);
    let actions = written(&mut m, id, t0);
    assert!(matches!(reply(&actions, 5), Some(Ok(_))));
    assert_eq!(
        triggered(&actions).map(|t| t.1),
        Some(true),
        "then the savepoint"
    );
}

#[test]
fn a_rescale_stops_with_a_savepoint_and_restores_from_it_at_the_new_parallelism() {
    let (mut m, t0) = running(settings());
    m.handle(
        Input::Command {
            id: 4,
            command: Command::Rescale {
                parallelism: 3,
                operator: None,
                dir: "/sp".into(),
            },
        },
        t0,
    );
    assert_eq!(
        triggered(&m.drain()).map(|t| (t.1, t.2)),
        Some((true, true))
    );
    ack_all(&mut m, 1, t0, [None, None]);
    written(&mut m, 1, t0);
    m.handle(Input::Task(TaskEvent::Committed { id: 1 }), t0);
    let actions = m.drain();
    assert!(actions.iter().any(|a| matches!(a, Action::ReleaseSources)));
    assert!(
        reply(&actions, 4).is_none(),
        "answered once the new attempt runs"
    );
    m.handle(Input::AttemptEnded(AttemptEnd::Finished), t0);
    let actions = m.drain();
    assert!(
        matches!(actions.as_slice(), [Action::StartAttempt { number: 1, restore: Restore::Savepoint(p), rescales, .. }] if p == &PathBuf::from("/snap/1") && rescales == &[(None, 3)]),
        "{actions:?}"
    );
    assert_eq!(m.restarts(), 0, "a rescale is not a restart");
    m.handle(Input::AttemptStarted { shape: SHAPE }, t0);
    assert!(matches!(reply(&m.drain(), 4), Some(Ok(r)) if r.attempt == Some(1)));
    // A later failover keeps the new parallelism.
    m.handle(Input::AttemptEnded(AttemptEnd::Failed("x".into())), t0);
    m.drain();
    m.poll(t0 + DELAY);
    assert!(matches!(
        m.drain().as_slice(),
        [Action::StartAttempt { rescales, .. }] if rescales == &[(None, 3)]
    ));
}

#[test]
fn a_cancel_during_the_restart_delay_ends_the_job() {
    let (mut m, t0) = running(settings());
    m.handle(Input::AttemptEnded(AttemptEnd::Failed("boom".into())), t0);
    m.drain();
    m.handle(
        Input::Command {
            id: 1,
            command: Command::Cancel,
        },
        t0,
    );
    let actions = m.drain();
    assert!(matches!(reply(&actions, 1), Some(Ok(_))));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::JobEnded(JobEnd::Cancelled)))
    );
    m.poll(t0 + DELAY);
    assert!(m.drain().is_empty(), "no restart after the cancel");
}

#[test]
fn a_cancel_while_running_cancels_the_attempt_and_the_end_is_cancelled() {
    let (mut m, t0) = running(settings());
    m.handle(
        Input::Command {
            id: 1,
            command: Command::Cancel,
        },
        t0,
    );
    assert!(m.drain().iter().any(|a| matches!(a, Action::CancelAttempt)));
    m.handle(Input::AttemptEnded(AttemptEnd::Cancelled), t0);
    assert!(matches!(
        m.drain().as_slice(),
        [Action::JobEnded(JobEnd::Cancelled)]
    ));
}

#[test]
fn commands_that_cannot_work_are_refused_at_once() {
    let mut no_checkpoints = settings();
    no_checkpoints.checkpoints = false;
    let (mut m, t0) = running(no_checkpoints);
    m.handle(upgrade(1, "d2"), t0);
    assert!(matches!(reply(&m.drain(), 1), Some(Err(e)) if e.contains("[checkpoint]")));
    let (mut m, t0) = running(settings());
    m.handle(
        Input::Command {
            id: 2,
            command: Command::Upgrade {
                operator: "nope".into(),
                digest: "d2".into(),
                allow_dropping_state: false,
            },
        },
        t0,
    );
    assert!(
        matches!(reply(&m.drain(), 2), Some(Err(e)) if e.contains("no operator `nope`") && e.contains("count"))
    );
    m.handle(
        Input::Command {
            id: 3,
            command: Command::Rollback {
                operator: "count".into(),
                allow_dropping_state: false,
            },
        },
        t0,
    );
    assert!(matches!(reply(&m.drain(), 3), Some(Err(e)) if e.contains("no earlier version")));
    m.handle(upgrade(4, "d1"), t0);
    assert!(matches!(reply(&m.drain(), 4), Some(Err(e)) if e.contains("already runs")));
}

#[test]
fn the_end_of_input_aborts_the_snapshot_in_flight_and_refuses_what_waits() {
    let (mut m, t0) = running(settings());
    for id in [1, 2] {
        m.handle(
            Input::Command {
                id,
                command: Command::Savepoint {
                    dir: "/sp".into(),
                    stop: false,
                },
            },
            t0,
        );
    }
    m.drain();
    m.handle(Input::Task(TaskEvent::Finished), t0);
    let actions = m.drain();
    assert!(matches!(reply(&actions, 1), Some(Err(e)) if e.contains("end of its input")));
    assert!(matches!(reply(&actions, 2), Some(Err(e)) if e.contains("end of its input")));
    m.poll(t0 + INTERVAL * 3);
    assert!(
        triggered(&m.drain()).is_none(),
        "no checkpoint after the end of input"
    );
    m.handle(Input::AttemptEnded(AttemptEnd::Finished), t0);
    assert!(matches!(
        m.drain().as_slice(),
        [Action::JobEnded(JobEnd::Finished)]
    ));
}
