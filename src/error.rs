//! The top-level error: every layer's error, the exit code it maps to, and how it prints.

use crate::config::ConfigError;
use crate::router::RouterError;
use crate::session::SessionError;
use crate::store::StoreError;

/// Exit code for bad input: a CLI argument or the teams file.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code for runtime failures, including "not found".
pub const EXIT_FAILURE: i32 = 1;

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
}

impl Error {
    /// The process exit code: 2 for bad input or config, 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage(_) => EXIT_BAD_INPUT,
            Error::Session(
                SessionError::UnknownTeam { .. }
                | SessionError::InvalidTeamName(_)
                | SessionError::SelfPair(_),
            ) => EXIT_BAD_INPUT,
            Error::Router(RouterError::BadMessage(_) | RouterError::UnknownAgent { .. })
            | Error::Router(RouterError::Session(
                SessionError::UnknownTeam { .. }
                | SessionError::InvalidTeamName(_)
                | SessionError::SelfPair(_),
            )) => EXIT_BAD_INPUT,
            _ => EXIT_FAILURE,
        }
    }
}
