//! The HTTP side of commands, shared by the embedded control API and the
//! cluster's REST API: one JSON shape, one timeout, one set of status codes.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use crossbeam_channel::{Sender, bounded};

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
    let (reply, answer) = bounded(1);
    if requests.send(CommandRequest { command, reply }).is_err() {
        return refusal(StatusCode::CONFLICT, "the job is no longer running");
    }
    let waited = tokio::task::spawn_blocking(move || answer.recv_timeout(COMMAND_WAIT)).await;
    match waited {
        Ok(Ok(Ok(reply))) => (StatusCode::OK, Json(reply)),
        Ok(Ok(Err(e))) => refusal(StatusCode::CONFLICT, e),
        _ => refusal(
            StatusCode::CONFLICT,
            "the job ended before the command completed",
        ),
    }
}
