//! The job master's decisions, with no IO: events and the current time in,
//! actions out (in the manner of quinn-proto). The driver
//! ([`super::driver`]) owns threads, sockets, files and clocks; this owns
//! what to do next:
//!
//! - checkpoints: when to trigger one, collecting every task's
//!   acknowledgement, aborting on a decline or a timeout, ignoring what
//!   arrives for an aborted one, committing sinks once the metadata is
//!   written; one snapshot in flight at a time;
//! - commands (savepoint, stop, upgrade, rollback, rescale, cancel), one at
//!   a time in arrival order;
//! - upgrades in two phases: every node prepares the new version while the
//!   old one runs; then one checkpoint barrier swaps it in. If preparing
//!   fails, nothing changed. If the barrier's checkpoint cannot complete
//!   with every subtask swapped, the attempt restarts from the newest
//!   checkpoint, which records the version its state belongs to, so a job
//!   always runs one consistent version;
//! - failover: an attempt that fails restarts from the newest checkpoint,
//!   `[restart] attempts` times, `delay_ms` apart.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir_snapshot::{OperatorVersion, SinkSnapshot, SourceSnapshot, VersionRecord};

use super::command::{Command, CommandId, CommandReply, CommandResult};
pub use crate::events::Swap;
use crate::events::{AckPart, OperatorPart, TaskEvent};

/// What the master knows before the first attempt.
#[derive(Debug, Clone)]
pub struct Settings {
    pub checkpoint_interval: Option<Duration>,
    pub checkpoint_timeout: Duration,
    /// Whether the job has checkpoint storage (`[checkpoint]`).
    pub checkpoints: bool,
    pub restart_attempts: u32,
    pub restart_delay: Duration,
    /// Parallelism of each operator, for commands that name one.
    pub operators: BTreeMap<String, u32>,
}

/// Commands waiting behind the one in progress; more are refused (each
/// holds a caller's connection open until it is answered).
pub const COMMANDS_QUEUED_MAX: usize = 16;

/// How many tasks of each kind acknowledge a snapshot in an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    pub sources: usize,
    pub chains: usize,
    pub sinks: usize,
}

/// How an attempt ended, as its tasks (or workers) saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Every task ended normally: the input is exhausted, or a stop's
    /// sources were released.
    Finished,
    Failed(String),
    /// The tasks were cancelled (by the master, or a neighbour went away
    /// without a failure of its own).
    Cancelled,
}

#[derive(Debug)]
pub enum Input {
    /// The attempt's tasks are deployed.
    AttemptStarted {
        shape: Shape,
    },
    AttemptEnded(AttemptEnd),
    Task(TaskEvent),
    Command {
        id: CommandId,
        command: Command,
    },
    /// The snapshot's directory could not be created.
    SnapshotFailed {
        id: u64,
        reason: String,
    },
    /// The driver wrote (or failed to write) the metadata of a snapshot
    /// the master completed.
    MetadataWritten {
        id: u64,
        dir: PathBuf,
        unix_ms: u64,
        result: Result<(), String>,
    },
    /// Every node that runs the operator prepared the upgrade (or one could not).
    Prepared {
        upgrade: CommandId,
        result: Result<(), String>,
    },
}

/// Where a snapshot goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The job's checkpoint storage.
    Checkpoint,
    /// A savepoint under this directory.
    Savepoint(PathBuf),
}

/// Where the next attempt restores from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The newest valid checkpoint, else whatever the previous attempt
    /// restored from.
    Latest,
    /// This savepoint (a rescale's).
    Savepoint(PathBuf),
}

/// How the job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    Finished,
    Stopped { savepoint: PathBuf },
    Cancelled,
    Failed(String),
}

/// Everything the tasks acknowledged for one snapshot.
#[derive(Debug, Default)]
pub struct Parts {
    pub sources: Vec<SourceSnapshot>,
    pub chains: Vec<OperatorPart>,
    pub sinks: Vec<SinkSnapshot>,
}

#[derive(Debug)]
pub enum Action {
    /// Deploy attempt `number` (0 first).
    StartAttempt {
        number: u32,
        restore: Restore,
        /// Parallelism changes so far, oldest first (operator name and
        /// parallelism; `None` as the name: every operator and file source).
        rescales: Vec<(Option<String>, u32)>,
        versions: Vec<OperatorVersion>,
    },
    /// Cancel every task of the current attempt.
    CancelAttempt,
    /// Create the snapshot's directory, tell every node where it goes and
    /// which operators swap at its barrier, and trigger the sources.
    Trigger {
        id: u64,
        savepoint: bool,
        stop: bool,
        target: Target,
        swaps: Vec<Swap>,
    },
    /// Forget snapshot `id` (tasks still on their way to its barrier must
    /// not wait for it) and delete what was written of it.
    Abort {
        id: u64,
        reason: String,
    },
    /// Write snapshot `id`'s metadata from its parts, with these versions;
    /// answer with [`Input::MetadataWritten`].
    WriteMetadata {
        id: u64,
        savepoint: bool,
        parts: Parts,
        versions: Vec<OperatorVersion>,
    },
    /// Delete checkpoints older than the retained ones, now that `id` exists.
    Prune {
        id: u64,
    },
    CommitSinks {
        id: u64,
    },
    /// A stop's savepoint is committed: let the parked sources end.
    ReleaseSources,
    /// Build and open the new version on every node that runs `operator`;
    /// answer with [`Input::Prepared`].
    Prepare {
        upgrade: CommandId,
        swap: Swap,
    },
    /// Drop prepared instances of an upgrade that will not happen.
    DiscardPrepared {
        upgrade: CommandId,
    },
    Reply {
        command: CommandId,
        result: CommandResult,
    },
    /// The job failed this attempt and will restart (for logs and status).
    Restarting {
        restarts: u32,
        reason: String,
    },
    JobEnded(JobEnd),
}

/// What `GET /jobs` shows of the master's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Running,
    Restarting,
    Ended,
}

#[derive(Debug)]
enum Purpose {
    Periodic,
    Savepoint { command: CommandId, stop: bool },
    Upgrade { command: CommandId, swap: Swap },
    Rescale { command: CommandId },
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    savepoint: bool,
    started: Instant,
    parts: Parts,
    acked_sources: usize,
    acked_chains: usize,
    acked_sinks: usize,
    purpose: Purpose,
    /// Metadata handed to the driver; waiting for it to be written.
    writing: bool,
    /// An upgrade's barrier: how its subtasks fared.
    swapped: Option<SwapOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SwapOutcome {
    /// Every subtask runs the new version.
    All,
    /// Every subtask kept the old version, for this reason.
    None(String),
    /// Some swapped and some did not (the reason of one that did not).
    Mixed(String),
}

/// The command being carried out.
#[derive(Debug)]
enum Active {
    /// Nodes are preparing the new version.
    Preparing { command: CommandId, swap: Swap },
    /// Prepared everywhere; the swap waits for the next barrier.
    Prepared { command: CommandId, swap: Swap },
    /// Its snapshot is in flight (savepoint, stop, upgrade, rescale).
    Snapshotting,
    /// A stop's savepoint is complete; waiting for the sinks to commit.
    Committing {
        command: CommandId,
        id: u64,
        path: PathBuf,
        commits_left: usize,
        rescale: bool,
    },
    /// The stop is committed; waiting for the attempt to end.
    Released { path: PathBuf },
    /// The attempt was stopped to rescale; waiting for the next to start.
    Rescaling { command: CommandId, path: PathBuf },
}

pub struct JobMachine {
    settings: Settings,
    phase: Phase,
    attempt: u32,
    restarts: u32,
    shape: Shape,
    next_id: u64,
    next_checkpoint_due: Option<Instant>,
    restart_at: Option<Instant>,
    in_flight: Option<InFlight>,
    active: Option<Active>,
    queue: VecDeque<(CommandId, Command)>,
    /// A task reached the end of its input: no snapshot can complete now.
    input_ended: bool,
    cancel_requested: bool,
    /// Why the master cancelled the attempt, if not by request: the attempt
    /// ends as a failure and restarts.
    failing: Option<String>,
    last_checkpoint: Option<u64>,
    versions: BTreeMap<String, OperatorVersion>,
    /// Every rescale's change, applied in order to every later attempt.
    rescales: Vec<(Option<String>, u32)>,
    actions: Vec<Action>,
}

impl JobMachine {
    /// A master whose first snapshot gets id `next_id`, with the versions
    /// the job starts with; the first action starts attempt 0.
    pub fn new(settings: Settings, next_id: u64, versions: Vec<OperatorVersion>) -> Self {
        let mut machine = JobMachine {
            settings,
            phase: Phase::Starting,
            attempt: 0,
            restarts: 0,
            shape: Shape::default(),
            next_id,
            next_checkpoint_due: None,
            restart_at: None,
            in_flight: None,
            active: None,
            queue: VecDeque::new(),
            input_ended: false,
            cancel_requested: false,
            failing: None,
            last_checkpoint: None,
            versions: versions
                .into_iter()
                .map(|v| (v.operator.clone(), v))
                .collect(),
            rescales: Vec::new(),
            actions: Vec::new(),
        };
        machine.start_attempt(Restore::Latest);
        machine
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Whether a task of the current attempt reached the end of its input
    /// (no snapshot can complete any more).
    pub fn input_ended(&self) -> bool {
        self.input_ended
    }

    /// Every rescale so far, oldest first.
    pub fn rescales(&self) -> &[(Option<String>, u32)] {
        &self.rescales
    }

    pub fn last_checkpoint(&self) -> Option<u64> {
        self.last_checkpoint
    }

    /// Ids after a restore continue from the snapshot's (the driver knows
    /// which one it restored).
    pub fn restored_from(&mut self, id: u64) {
        self.next_id = self.next_id.max(id + 1);
        self.last_checkpoint = self.last_checkpoint.max(Some(id));
    }

    /// The version each operator runs now, with its history.
    pub fn versions(&self) -> Vec<OperatorVersion> {
        self.versions.values().cloned().collect()
    }

    /// Replaces the versions (after a restore from a snapshot that recorded them).
    pub fn set_versions(&mut self, versions: Vec<OperatorVersion>) {
        for v in versions {
            self.versions.insert(v.operator.clone(), v);
        }
    }

    /// When [`JobMachine::poll`] has something to do, at the latest.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let timeout = self
            .in_flight
            .as_ref()
            .filter(|f| !f.writing)
            .map(|f| f.started + self.settings.checkpoint_timeout);
        [timeout, self.next_checkpoint_due, self.restart_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Everything decided since the last call.
    pub fn drain(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::AttemptStarted { shape } => self.on_started(shape, now),
            Input::AttemptEnded(end) => self.on_attempt_ended(end, now),
            Input::Task(event) => self.on_task(event),
            Input::Command { id, command } => self.on_command(id, command),
            Input::SnapshotFailed { id, reason } => {
                if self.in_flight.as_ref().is_some_and(|f| f.id == id) {
                    self.abort(&format!("cannot create its directory: {reason}"));
                }
            }
            Input::MetadataWritten {
                id,
                dir,
                unix_ms,
                result,
            } => self.on_metadata_written(id, dir, unix_ms, result),
            Input::Prepared { upgrade, result } => self.on_prepared(upgrade, result),
        }
        self.poll(now);
    }

    /// Acts on time: checkpoint timeouts, periodic checkpoints, restarts,
    /// and the next queued command.
    pub fn poll(&mut self, now: Instant) {
        if let Some(at) = self.restart_at
            && now >= at
        {
            self.restart_at = None;
            self.start_attempt(Restore::Latest);
            return;
        }
        if self.phase != Phase::Running {
            return;
        }
        if let Some(f) = &self.in_flight
            && !f.writing
            && now >= f.started + self.settings.checkpoint_timeout
        {
            self.abort("timed out");
        }
        if self.in_flight.is_some() || self.input_ended || self.failing.is_some() {
            return;
        }
        // A stop's sources are parked or gone: nothing would answer.
        if matches!(
            self.active,
            Some(Active::Committing { .. } | Active::Released { .. } | Active::Rescaling { .. })
        ) {
            return;
        }
        self.next_command(now);
        if self.in_flight.is_some() {
            return;
        }
        if let Some(Active::Prepared { .. }) = &self.active {
            let Some(Active::Prepared { command, swap }) = self.active.take() else {
                unreachable!("matched above")
            };
            self.active = Some(Active::Snapshotting);
            self.trigger(
                now,
                false,
                false,
                Target::Checkpoint,
                Purpose::Upgrade { command, swap },
            );
            return;
        }
        if let Some(due) = self.next_checkpoint_due
            && now >= due
            && self.settings.checkpoints
        {
            self.trigger(now, false, false, Target::Checkpoint, Purpose::Periodic);
        }
    }

    fn start_attempt(&mut self, restore: Restore) {
        self.phase = Phase::Starting;
        self.shape = Shape::default();
        self.input_ended = false;
        self.failing = None;
        self.actions.push(Action::StartAttempt {
            number: self.attempt,
            restore,
            rescales: self.rescales.clone(),
            versions: self.versions(),
        });
    }

    fn on_started(&mut self, shape: Shape, now: Instant) {
        if self.phase != Phase::Starting {
            return;
        }
        self.phase = Phase::Running;
        self.shape = shape;
        self.next_checkpoint_due = self.settings.checkpoint_interval.map(|i| now + i);
        if let Some(Active::Rescaling { command, path }) = self.active.take() {
            self.reply(
                command,
                Ok(CommandReply {
                    path: Some(path),
                    attempt: Some(self.attempt),
                    ..CommandReply::default()
                }),
            );
        }
    }

    fn on_command(&mut self, id: CommandId, command: Command) {
        if let Err(e) = self.check_command(&command) {
            self.reply(id, Err(e));
            return;
        }
        if command == Command::Cancel {
            // Not queued: a cancel must get through whatever is going on.
            self.cancel_requested = true;
            self.reply(id, Ok(CommandReply::default()));
            match self.phase {
                Phase::Running | Phase::Starting => self.actions.push(Action::CancelAttempt),
                Phase::Restarting => {
                    self.restart_at = None;
                    self.end(JobEnd::Cancelled);
                }
                Phase::Ended => {}
            }
            return;
        }
        if self.queue.len() >= COMMANDS_QUEUED_MAX {
            self.reply(
                id,
                Err(format!(
                    "{COMMANDS_QUEUED_MAX} commands are already waiting; try again later"
                )),
            );
            return;
        }
        self.queue.push_back((id, command));
    }

    /// Refuses at once what can never work.
    fn check_command(&self, command: &Command) -> Result<(), String> {
        if self.phase == Phase::Ended {
            return Err("the job has ended".into());
        }
        if self.cancel_requested {
            return Err("the job is being cancelled".into());
        }
        if self.input_ended && *command != Command::Cancel {
            return Err("the job reached the end of its input".into());
        }
        let known = |operator: &str| {
            if self.settings.operators.contains_key(operator) {
                Ok(())
            } else {
                let names: Vec<&str> = self.settings.operators.keys().map(String::as_str).collect();
                Err(format!(
                    "the job has no operator `{}` (it has: {})",
                    weir_core::text::cut(operator, 256),
                    names.join(", ")
                ))
            }
        };
        match command {
            Command::Upgrade { operator, .. } | Command::Rollback { operator, .. } => {
                known(operator)?;
                if !self.settings.checkpoints {
                    return Err(
                        "an upgrade needs checkpoints: add a [checkpoint] section to the job file \
                         (each checkpoint records which version every operator runs, so a \
                         failover after the upgrade runs the new one)"
                            .into(),
                    );
                }
                if let Command::Rollback { operator, .. } = command
                    && self
                        .versions
                        .get(operator)
                        .is_none_or(|v| v.history.len() < 2)
                {
                    return Err(format!(
                        "operator `{operator}` has no earlier version to roll back to"
                    ));
                }
            }
            Command::Rescale {
                operator: Some(operator),
                ..
            } => known(operator)?,
            _ => {}
        }
        Ok(())
    }

    /// Starts the queued command at the head, if nothing else is going on.
    fn next_command(&mut self, now: Instant) {
        if self.active.is_some() {
            return;
        }
        let Some((command, request)) = self.queue.pop_front() else {
            return;
        };
        match request {
            Command::Savepoint { dir, stop } => {
                self.active = Some(Active::Snapshotting);
                self.trigger(
                    now,
                    true,
                    stop,
                    Target::Savepoint(dir),
                    Purpose::Savepoint { command, stop },
                );
            }
            Command::Rescale {
                parallelism,
                operator,
                dir,
            } => {
                self.rescales.push((operator, parallelism));
                self.active = Some(Active::Snapshotting);
                self.trigger(
                    now,
                    true,
                    true,
                    Target::Savepoint(dir),
                    Purpose::Rescale { command },
                );
            }
            Command::Upgrade {
                operator,
                digest,
                allow_dropping_state,
            } => self.prepare(command, operator, digest, allow_dropping_state),
            Command::Rollback {
                operator,
                allow_dropping_state,
            } => {
                let history = &self.versions[&operator].history;
                let digest = history[history.len() - 2].digest.clone();
                self.prepare(command, operator, digest, allow_dropping_state);
            }
            Command::Cancel => unreachable!("never queued"),
        }
    }

    fn prepare(
        &mut self,
        command: CommandId,
        operator: String,
        digest: String,
        allow_dropping_state: bool,
    ) {
        let previous = self
            .versions
            .get(&operator)
            .map(|v| v.digest.clone())
            .unwrap_or_default();
        if previous == digest {
            self.reply(
                command,
                Err(format!(
                    "operator `{operator}` already runs {}",
                    &digest[..digest.len().min(12)]
                )),
            );
            return;
        }
        let swap = Swap {
            operator,
            digest,
            previous,
            allow_dropping_state,
        };
        self.actions.push(Action::Prepare {
            upgrade: command,
            swap: swap.clone(),
        });
        self.active = Some(Active::Preparing { command, swap });
    }

    fn on_prepared(&mut self, upgrade: CommandId, result: Result<(), String>) {
        let Some(Active::Preparing { command, .. }) = &self.active else {
            return;
        };
        if *command != upgrade {
            return;
        }
        let Some(Active::Preparing { command, swap }) = self.active.take() else {
            unreachable!("matched above")
        };
        match result {
            Ok(()) => self.active = Some(Active::Prepared { command, swap }),
            Err(e) => {
                self.actions
                    .push(Action::DiscardPrepared { upgrade: command });
                self.reply(
                    command,
                    Err(format!(
                        "operator `{}`: the new version cannot start, the job goes on with the old one: {e}",
                        swap.operator
                    )),
                );
            }
        }
    }

    fn trigger(
        &mut self,
        now: Instant,
        savepoint: bool,
        stop: bool,
        target: Target,
        purpose: Purpose,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(interval) = self.settings.checkpoint_interval {
            self.next_checkpoint_due = Some(now + interval);
        }
        let swaps = match &purpose {
            Purpose::Upgrade { swap, .. } => vec![swap.clone()],
            _ => Vec::new(),
        };
        self.actions.push(Action::Trigger {
            id,
            savepoint,
            stop,
            target,
            swaps,
        });
        self.in_flight = Some(InFlight {
            id,
            savepoint,
            started: now,
            parts: Parts::default(),
            acked_sources: 0,
            acked_chains: 0,
            acked_sinks: 0,
            purpose,
            writing: false,
            swapped: None,
        });
    }

    fn on_task(&mut self, event: TaskEvent) {
        match event {
            TaskEvent::Finished => {
                self.input_ended = true;
                if self.in_flight.as_ref().is_some_and(|f| !f.writing) {
                    self.abort("the job reached the end of its input");
                }
                for (command, _) in std::mem::take(&mut self.queue) {
                    self.reply(command, Err("the job reached the end of its input".into()));
                }
                if let Some(Active::Preparing { command, .. } | Active::Prepared { command, .. }) =
                    self.active.take()
                {
                    self.actions
                        .push(Action::DiscardPrepared { upgrade: command });
                    self.reply(command, Err("the job reached the end of its input".into()));
                }
            }
            TaskEvent::Declined { id, reason } => {
                if self
                    .in_flight
                    .as_ref()
                    .is_some_and(|f| f.id == id && !f.writing)
                {
                    self.abort(&reason);
                }
            }
            TaskEvent::Ack { id, part } => {
                let shape = self.shape;
                let Some(f) = self.in_flight.as_mut().filter(|f| f.id == id && !f.writing) else {
                    return; // an aborted snapshot's, or a duplicate
                };
                match part {
                    AckPart::Source(s) => {
                        f.acked_sources += 1;
                        f.parts.sources.push(s);
                    }
                    AckPart::Chain(c) => {
                        f.acked_chains += 1;
                        f.parts.chains.extend(c);
                    }
                    AckPart::Sink(s) => {
                        f.acked_sinks += 1;
                        f.parts.sinks.push(s);
                    }
                }
                if f.acked_sources >= shape.sources
                    && f.acked_chains >= shape.chains
                    && f.acked_sinks >= shape.sinks
                {
                    self.complete();
                }
            }
            TaskEvent::Committed { id } => {
                if let Some(Active::Committing {
                    id: stopping,
                    commits_left,
                    ..
                }) = &mut self.active
                    && *stopping == id
                {
                    *commits_left = commits_left.saturating_sub(1);
                    if *commits_left == 0 {
                        self.release();
                    }
                }
            }
        }
    }

    /// Every task acknowledged the snapshot in flight: decide the versions
    /// it records and have its metadata written.
    fn complete(&mut self) {
        let f = self.in_flight.as_mut().expect("a snapshot is in flight");
        f.writing = true;
        let id = f.id;
        let savepoint = f.savepoint;
        let parts = std::mem::take(&mut f.parts);
        let mut versions = self.versions.clone();
        if let Purpose::Upgrade { swap, .. } = &f.purpose {
            let outcome = swap_outcome(swap, &parts.chains);
            if outcome == SwapOutcome::All {
                // The driver stamps the wall-clock time as it writes.
                record_version(&mut versions, swap, id, 0);
            }
            f.swapped = Some(outcome);
        }
        self.actions.push(Action::WriteMetadata {
            id,
            savepoint,
            parts,
            versions: versions.into_values().collect(),
        });
    }

    fn on_metadata_written(
        &mut self,
        id: u64,
        dir: PathBuf,
        unix_ms: u64,
        result: Result<(), String>,
    ) {
        if !self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.id == id && f.writing)
        {
            return;
        }
        if let Err(e) = result {
            let f = self.in_flight.as_mut().expect("checked");
            f.writing = false;
            self.abort(&format!("cannot write its metadata: {e}"));
            return;
        }
        let f = self.in_flight.take().expect("checked");
        self.last_checkpoint = Some(id);
        if !f.savepoint {
            self.actions.push(Action::Prune { id });
        }
        self.actions.push(Action::CommitSinks { id });
        match f.purpose {
            Purpose::Periodic => {}
            Purpose::Savepoint {
                command,
                stop: false,
            } => {
                self.active = None;
                self.reply(
                    command,
                    Ok(CommandReply {
                        path: Some(dir),
                        checkpoint: Some(id),
                        ..CommandReply::default()
                    }),
                );
            }
            Purpose::Savepoint {
                command,
                stop: true,
            } => self.committing(command, id, dir, false),
            Purpose::Rescale { command } => self.committing(command, id, dir, true),
            Purpose::Upgrade { command, swap } => {
                self.active = None;
                let outcome = f.swapped.unwrap_or(SwapOutcome::None(
                    "no subtask of the operator took part in the checkpoint".into(),
                ));
                self.finish_upgrade(command, swap, outcome, id, unix_ms);
            }
        }
    }

    /// The upgrade's checkpoint exists. If every subtask swapped, the new
    /// version is the operator's; if none did, the old one stays; a mix
    /// cannot go on (the checkpoint recorded the old version): restart
    /// from it.
    fn finish_upgrade(
        &mut self,
        command: CommandId,
        swap: Swap,
        outcome: SwapOutcome,
        id: u64,
        unix_ms: u64,
    ) {
        match outcome {
            SwapOutcome::All => {
                record_version(&mut self.versions, &swap, id, unix_ms);
                self.reply(
                    command,
                    Ok(CommandReply {
                        checkpoint: Some(id),
                        digest: Some(swap.digest),
                        ..CommandReply::default()
                    }),
                );
            }
            SwapOutcome::None(reason) => self.reply(
                command,
                Err(format!(
                    "operator `{}`: the new version was refused at checkpoint {id}, the job goes on with the old one: {reason}",
                    swap.operator
                )),
            ),
            SwapOutcome::Mixed(reason) => {
                let why = format!(
                    "operator `{}`: only some subtasks could swap to the new version ({reason}); \
                     the job restarts from checkpoint {id} on the old version",
                    swap.operator
                );
                self.reply(command, Err(why.clone()));
                self.fail_attempt(why);
            }
        }
    }

    /// A stop's (or rescale's) savepoint exists: its sinks commit, then the
    /// parked sources are released.
    fn committing(&mut self, command: CommandId, id: u64, path: PathBuf, rescale: bool) {
        self.active = Some(Active::Committing {
            command,
            id,
            path,
            commits_left: self.shape.sinks,
            rescale,
        });
        if self.shape.sinks == 0 {
            self.release();
        }
    }

    fn release(&mut self) {
        let Some(Active::Committing {
            command,
            id,
            path,
            rescale,
            ..
        }) = self.active.take()
        else {
            return;
        };
        if !rescale {
            self.reply(
                command,
                Ok(CommandReply {
                    path: Some(path.clone()),
                    checkpoint: Some(id),
                    ..CommandReply::default()
                }),
            );
            self.active = Some(Active::Released { path });
        } else {
            self.active = Some(Active::Rescaling { command, path });
        }
        self.actions.push(Action::ReleaseSources);
    }

    /// Aborts the snapshot in flight. An upgrade's or a stop's barrier may
    /// already have changed what runs (a swapped subtask, a parked source),
    /// so those end the attempt, which restarts from the newest checkpoint.
    fn abort(&mut self, reason: &str) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        let reason = weir_core::text::cut_message(reason);
        self.actions.push(Action::Abort {
            id: f.id,
            reason: reason.clone(),
        });
        let what = if f.savepoint {
            "savepoint"
        } else {
            "checkpoint"
        };
        match f.purpose {
            Purpose::Periodic => {}
            Purpose::Savepoint {
                command,
                stop: false,
            } => {
                self.active = None;
                self.reply(command, Err(format!("savepoint aborted: {reason}")));
            }
            Purpose::Savepoint {
                command,
                stop: true,
            }
            | Purpose::Rescale { command } => {
                self.active = None;
                self.reply(command, Err(format!("{what} {} aborted: {reason}", f.id)));
                if !self.input_ended {
                    self.fail_attempt(format!(
                        "the stop's savepoint {} was aborted ({reason}); its sources had stopped",
                        f.id
                    ));
                }
            }
            Purpose::Upgrade { command, swap } => {
                self.active = None;
                self.reply(
                    command,
                    Err(format!(
                        "operator `{}`: the upgrade's checkpoint {} was aborted ({reason}); \
                         the job restarts from its newest checkpoint, which records the version it runs",
                        swap.operator, f.id
                    )),
                );
                if !self.input_ended {
                    self.fail_attempt(format!(
                        "checkpoint {} of an upgrade of `{}` was aborted: {reason}",
                        f.id, swap.operator
                    ));
                }
            }
        }
    }

    /// Ends the attempt as a failure: cancel its tasks; the end restarts it.
    fn fail_attempt(&mut self, reason: String) {
        if self.failing.is_none() {
            self.failing = Some(reason);
            self.actions.push(Action::CancelAttempt);
        }
    }

    fn on_attempt_ended(&mut self, end: AttemptEnd, now: Instant) {
        if matches!(self.phase, Phase::Ended | Phase::Restarting) {
            return;
        }
        if let Some(f) = self.in_flight.take() {
            self.in_flight = Some(f);
            self.abort("the attempt ended");
        }
        let failing = self.failing.take();
        if self.cancel_requested {
            self.drop_commands("the job was cancelled");
            self.end(JobEnd::Cancelled);
            return;
        }
        match (self.active.take(), failing, end) {
            (Some(Active::Released { path, .. }), None, _) => {
                self.drop_commands("the job stopped");
                self.end(JobEnd::Stopped { savepoint: path });
            }
            // The old attempt stopped for the rescale (an end while the new
            // one starts is the new one failing: handled below).
            (Some(Active::Rescaling { command, path }), None, _)
                if self.phase == Phase::Running =>
            {
                // Not a restart: the job goes on at its new parallelism.
                self.attempt += 1;
                self.active = Some(Active::Rescaling {
                    command,
                    path: path.clone(),
                });
                self.start_attempt(Restore::Savepoint(path));
            }
            (_, None, AttemptEnd::Finished) => {
                self.drop_commands("the job reached the end of its input");
                self.end(JobEnd::Finished);
            }
            (active, failing, end) => {
                if let Some(Active::Preparing { command, .. } | Active::Prepared { command, .. }) =
                    active
                {
                    self.actions
                        .push(Action::DiscardPrepared { upgrade: command });
                    self.reply(
                        command,
                        Err(
                            "the job failed before the new version took over; nothing changed"
                                .into(),
                        ),
                    );
                }
                if let Some(
                    Active::Rescaling { command, .. } | Active::Committing { command, .. },
                ) = active
                {
                    // Back to the shape that ran; the failover restores the
                    // rescale's savepoint (the newest snapshot) at it.
                    self.rescales.pop();
                    self.reply(
                        command,
                        Err("the job failed while rescaling; it goes on at its previous parallelism"
                            .into()),
                    );
                }
                let reason = match (failing, end) {
                    (Some(reason), _) => reason,
                    (None, AttemptEnd::Failed(e)) => e,
                    (None, _) => "the attempt was cancelled (a task or a peer went away)".into(),
                };
                if self.restarts < self.settings.restart_attempts {
                    self.restarts += 1;
                    self.attempt += 1;
                    self.phase = Phase::Restarting;
                    self.restart_at = Some(now + self.settings.restart_delay);
                    self.actions.push(Action::Restarting {
                        restarts: self.restarts,
                        reason,
                    });
                } else {
                    self.drop_commands("the job failed");
                    let message = if self.restarts > 0 {
                        format!("failed after {} restart(s): {reason}", self.restarts)
                    } else {
                        format!("failed: {reason}")
                    };
                    self.end(JobEnd::Failed(message));
                }
            }
        }
    }

    fn drop_commands(&mut self, why: &str) {
        for (command, _) in std::mem::take(&mut self.queue) {
            self.reply(command, Err(why.into()));
        }
    }

    fn end(&mut self, end: JobEnd) {
        self.phase = Phase::Ended;
        self.next_checkpoint_due = None;
        self.actions.push(Action::JobEnded(end));
    }

    fn reply(&mut self, command: CommandId, result: CommandResult) {
        self.actions.push(Action::Reply { command, result });
    }
}

/// `swap`'s new version took over at checkpoint `id`.
fn record_version(
    versions: &mut BTreeMap<String, OperatorVersion>,
    swap: &Swap,
    id: u64,
    unix_ms: u64,
) {
    let v = versions
        .entry(swap.operator.clone())
        .or_insert_with(|| OperatorVersion {
            operator: swap.operator.clone(),
            digest: swap.previous.clone(),
            history: Vec::new(),
        });
    v.digest = swap.digest.clone();
    v.history.push(VersionRecord {
        digest: swap.digest.clone(),
        checkpoint: Some(id),
        since_unix_ms: unix_ms,
    });
}

/// How the subtasks of `swap.operator` fared at the barrier.
fn swap_outcome(swap: &Swap, parts: &[OperatorPart]) -> SwapOutcome {
    let mut swapped = 0;
    let mut refused = None;
    let mut total = 0;
    for part in parts.iter().filter(|p| p.operator == swap.operator) {
        total += 1;
        match &part.swapped {
            Some(Ok(digest)) if *digest == swap.digest => swapped += 1,
            Some(Ok(digest)) => {
                refused.get_or_insert(format!("subtask {} runs {digest}", part.subtask.subtask));
            }
            Some(Err(e)) => {
                refused.get_or_insert(format!("subtask {}: {e}", part.subtask.subtask));
            }
            None => {
                refused.get_or_insert(format!(
                    "subtask {} was not told to swap",
                    part.subtask.subtask
                ));
            }
        }
    }
    match (swapped, refused) {
        (0, None) => SwapOutcome::None("no subtask of the operator acknowledged".into()),
        (n, None) if n == total => SwapOutcome::All,
        (0, Some(reason)) => SwapOutcome::None(reason),
        (_, Some(reason)) => SwapOutcome::Mixed(reason),
        (_, None) => SwapOutcome::Mixed("not every subtask reported".into()),
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
