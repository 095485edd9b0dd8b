//! Shutdown signals in one place: SIGINT and SIGTERM end the wait; tests use
//! [`Signals::none`], which never fires.
//!
//! The handlers are installed by [`Signals::watch`], before anything that can start an agent
//! (recovery, a tell), and the same [`Watch`] is awaited later: a signal that came in between
//! is not lost, and never takes its default action (killing the process, its agents left
//! behind).

/// Where shutdown requests come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signals {
    /// SIGINT and SIGTERM.
    Os,
    /// SIGTERM only: the command handles SIGINT itself (a waiting `tell`).
    TermOnly,
    /// Nothing (tests, embedding).
    None,
}

impl Signals {
    /// No signal handling.
    pub fn none() -> Self {
        Signals::None
    }
}

/// Signal handlers installed at once, awaited later: from [`Signals::watch`] on, no SIGINT or
/// SIGTERM takes its default action (killing the process, or nothing where SIGINT was ignored,
/// as for a background job of a script).
#[derive(Debug)]
pub struct Watch {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers of these signals now. Must be called inside a runtime.
    pub fn watch(self) -> std::io::Result<Watch> {
        use tokio::signal::unix::{signal, SignalKind};
        let (int, term) = match self {
            Signals::None => (None, None),
            Signals::TermOnly => (None, Some(signal(SignalKind::terminate())?)),
            Signals::Os => (
                Some(signal(SignalKind::interrupt())?),
                Some(signal(SignalKind::terminate())?),
            ),
        };
        Ok(Watch { int, term })
    }

    /// [`Signals::watch`], or (logged) a watch that never fires when the handlers cannot be
    /// installed: the command then runs on, without a clean stop on a signal. Must be called
    /// inside a runtime.
    pub fn watch_or_warn(self) -> Watch {
        self.watch().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot install signal handlers; Ctrl-C will not stop agents cleanly");
            Watch {
                int: None,
                term: None,
            }
        })
    }
}

impl Watch {
    /// Moves the SIGINT handler out into a watch of its own, for a command that handles ^C
    /// itself while SIGTERM still ends it (a waiting `tell`): this one keeps SIGTERM only. The
    /// handler stays installed throughout, so no ^C in between takes its default action.
    pub fn split_interrupt(&mut self) -> Watch {
        Watch {
            int: self.int.take(),
            term: None,
        }
    }

    /// The signal's name if one came already, without waiting (it is then taken: [`Self::recv`]
    /// waits for the next one).
    pub fn try_recv(&mut self) -> Option<&'static str> {
        use std::future::Future;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(self.recv()).poll(&mut cx) {
            std::task::Poll::Ready(signal) => Some(signal),
            std::task::Poll::Pending => None,
        }
    }

    /// Resolves with the signal's name when one arrives.
    pub async fn recv(&mut self) -> &'static str {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.int) => "SIGINT",
            _ = next(&mut self.term) => "SIGTERM",
        }
    }
}
