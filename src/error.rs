//! The top-level error: every layer's error, the exit code it maps to, and how it prints.

use crate::config::ConfigError;
use crate::router::RouterError;
use crate::session::SessionError;
use crate::store::StoreError;

/// Exit code for bad input: a CLI argument or the teams file.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code for runtime failures, including "not found".
pub const EXIT_FAILURE: i32 = 1;
/// Exit code when the user interrupted the command (SIGINT, ^C): 128 + 2, as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Any Switchboard error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The teams file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The session layer.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Tells and agents.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// A bad command-line argument (beyond what the parser catches).
    #[error("{0}")]
    Usage(String),
    /// Something the user asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Any other runtime failure.
    #[error("{0}")]
    Other(String),
    /// The user interrupted the command (^C); the message says what was left running.
    #[error("{0}")]
    Interrupted(String),
}

impl Error {
    /// The process exit code, the same whether the command ran here or in a server: 2 for bad
    /// input or config, 130 when interrupted, 1 for every other failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted(_) => EXIT_INTERRUPTED,
            Error::Config(_) | Error::Usage(_) => EXIT_BAD_INPUT,
            Error::Session(
                SessionError::UnknownTeam { .. }
                | SessionError::InvalidTeamName(_)
                | SessionError::SelfPair(_),
            ) => EXIT_BAD_INPUT,
            Error::Router(
                RouterError::BadMessage(_)
                | RouterError::UnknownAgent { .. }
                | RouterError::IdempotencyKey(_)
                | RouterError::NotRetryable { .. }
                | RouterError::AmbiguousTell(_)
                | RouterError::TellIdTooShort(_),
            )
            | Error::Router(RouterError::Session(
                SessionError::UnknownTeam { .. }
                | SessionError::InvalidTeamName(_)
                | SessionError::SelfPair(_),
            )) => EXIT_BAD_INPUT,
            _ => EXIT_FAILURE,
        }
    }

    /// The error rebuilt from a message and an exit code (an error a server sent back), so it
    /// exits with the same code as it would have here.
    pub fn from_exit_code(message: String, code: i64) -> Error {
        match i32::try_from(code) {
            Ok(EXIT_BAD_INPUT) => Error::Usage(message),
            Ok(EXIT_INTERRUPTED) => Error::Interrupted(message),
            _ => Error::Other(message),
        }
    }
}
