//! The HTTP side of commands, shared by the embedded control API and the
//! cluster's REST API: one JSON shape, one timeout, one set of status codes.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use crossbeam_channel::{RecvTimeoutError, Sender, bounded};

use super::command::{Command, CommandReply};
use super::driver::CommandRequest;

/// How long a caller waits for a command (a savepoint of a large state
/// takes minutes).
pub const COMMAND_WAIT: Duration = Duration::from_secs(3600);

pub type CommandResponse = (StatusCode, Json<CommandReply>);

/// A refusal in the common shape.
pub fn refusal(code: StatusCode, error: impl Into<String>) -> CommandResponse {
    (
        code,
        Json(CommandReply {
            error: Some(weir_core::text::cut_message(&error.into())),
            ..CommandReply::default()
        }),
    )
}

/// Sends `command` to the job master and waits for its answer.
pub async fn run_command(requests: &Sender<CommandRequest>, command: Command) -> CommandResponse {
    run_command_within(requests, command, COMMAND_WAIT).await
}

/// [`run_command`], giving up after `wait` (the command may still complete).
pub async fn run_command_within(
    requests: &Sender<CommandRequest>,
    command: Command,
    wait: Duration,
) -> CommandResponse {
    let what = command.name();
    let (reply, answer) = bounded(1);
    if requests.send(CommandRequest { command, reply }).is_err() {
        return refusal(StatusCode::CONFLICT, "the job is no longer running");
    }
    let waited = tokio::task::spawn_blocking(move || answer.recv_timeout(wait)).await;
    match waited {
        Ok(Ok(Ok(reply))) => (StatusCode::OK, Json(reply)),
        Ok(Ok(Err(e))) => refusal(StatusCode::CONFLICT, e),
        Ok(Err(RecvTimeoutError::Timeout)) => refusal(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the {what} did not complete within {} s; it may still complete (see GET /jobs)",
                wait.as_secs()
            ),
        ),
        _ => refusal(
            StatusCode::CONFLICT,
            format!("the job ended before the {what} completed"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_command_that_never_answers_times_out_and_one_that_does_is_ok() {
        let (requests, inbox) = crossbeam_channel::unbounded::<CommandRequest>();
        let savepoint = Command::Savepoint {
            dir: "/sp".into(),
            stop: false,
        };
        let (status, Json(reply)) = runtime().block_on(run_command_within(
            &requests,
            savepoint.clone(),
            Duration::from_millis(50),
        ));
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            reply.error.as_deref(),
            Some(
                "the savepoint did not complete within 0 s; it may still complete (see GET /jobs)"
            )
        );
        let pending = inbox.recv().unwrap();
        drop(pending);
        std::thread::spawn(move || {
            let request = inbox.recv().unwrap();
            let _ = request.reply.send(Ok(CommandReply {
                path: Some("/sp/1".into()),
                ..CommandReply::default()
            }));
        });
        let (status, Json(reply)) = runtime().block_on(run_command(&requests, savepoint));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply.path, Some("/sp/1".into()));
    }

    #[test]
    fn a_job_that_is_gone_is_a_conflict() {
        let (requests, inbox) = crossbeam_channel::unbounded::<CommandRequest>();
        drop(inbox);
        let (status, Json(reply)) = runtime().block_on(run_command(&requests, Command::Cancel));
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(reply.error.as_deref(), Some("the job is no longer running"));
    }
}
