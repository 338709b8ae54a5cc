//! What went wrong in a guest, phrased for the person who wrote it.

use std::fmt;

/// A guest failure, always naming the operator (and subtask) at fault.
/// Every message that came from the guest is already cut and escaped
/// ([`weir_core::text::cut_message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestError {
    /// `operator` or `operator[subtask]`.
    pub operator: String,
    pub kind: GuestErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestErrorKind {
    /// The artifact could not be read, compiled or linked against the world.
    Load(String),
    /// The call ran past its epoch deadline.
    Deadline {
        export: &'static str,
        timeout_ms: u64,
    },
    /// The guest went over one of its limits (memory, timers, keys...);
    /// the message names the limit and its job-file key.
    Limit {
        export: &'static str,
        message: String,
    },
    /// The guest trapped (panicked, hit `unreachable`, misused an import...).
    Trap {
        export: &'static str,
        message: String,
    },
    /// The guest returned an error value.
    Failed {
        export: &'static str,
        message: String,
    },
    /// The guest returned more than the output cap.
    OutputTooLarge {
        export: &'static str,
        bytes: usize,
        cap_bytes: usize,
    },
    /// The guest returned bytes that are not a valid batch.
    BadOutput {
        export: &'static str,
        message: String,
    },
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = &self.operator;
        match &self.kind {
            GuestErrorKind::Load(m) => write!(f, "operator `{op}`: {m}"),
            GuestErrorKind::Deadline { export, timeout_ms } => write!(
                f,
                "operator `{op}` was stopped in `{export}`: it ran past its call deadline of {timeout_ms} ms \
                 (raise call_timeout_ms in the job file if the work is legitimate)"
            ),
            GuestErrorKind::Limit { export, message } => {
                write!(f, "operator `{op}` was stopped in `{export}`: {message}")
            }
            GuestErrorKind::Trap { export, message } => {
                write!(f, "operator `{op}` trapped in `{export}`: {message}")
            }
            GuestErrorKind::Failed { export, message } => {
                write!(f, "operator `{op}` failed in `{export}`: {message}")
            }
            GuestErrorKind::OutputTooLarge {
                export,
                bytes,
                cap_bytes,
            } => write!(
                f,
                "operator `{op}` returned {bytes} bytes from one `{export}` call, over its output cap of {} MiB \
                 (output_max_mb in the job file)",
                cap_bytes >> 20
            ),
            GuestErrorKind::BadOutput { export, message } => {
                write!(
                    f,
                    "operator `{op}` returned a malformed batch from `{export}`: {message}"
                )
            }
        }
    }
}

impl std::error::Error for GuestError {}
