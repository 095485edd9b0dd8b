//! Running a command that needs live agents: a tokio runtime, a Router over the database,
//! recovery of the pair's tells, the command, then an orderly shutdown (agents stopped, leases
//! given back). SIGINT/SIGTERM during the command shut down the same way.

use std::future::Future;
use std::sync::Arc;

use switchboard::router::Router;
use switchboard::server::serve::start_agent_endpoint;
use switchboard::signals::{Signals, Watch};
use switchboard::Error;

use super::Ctx;

/// What ended the command.
pub enum Ended<T> {
    /// It finished.
    Done(T),
    /// A signal arrived first (its name).
    Signal(&'static str),
}

/// The error of a command a signal ended: SIGINT (^C) exits 130 like every interrupted
/// command; SIGTERM is a failure (1).
pub fn signal_error(sig: &str) -> Error {
    let text = format!("interrupted by {sig}");
    if sig == "SIGINT" {
        Error::Interrupted(text)
    } else {
        Error::Other(text)
    }
}

/// Runs `body` with a router; start-up recovery covers `pair` only (none when `None`: the body
/// recovers what it works on).
pub fn with_router<T, F, Fut>(
    ctx: &Ctx,
    pair: Option<(&str, &str)>,
    body: F,
) -> Result<Ended<T>, Error>
where
    F: FnOnce(Router) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    with_router_on(ctx, pair, Signals::Os, None, |router, _| body(router))
}

/// [`with_router`], ending early on `signals` only, and waiting up to `busy_wait` for a pair
/// another process holds (`Router::wait_when_busy`, set before the pair's queued tells are
/// recovered). A body that handles SIGINT itself passes [`Signals::TermOnly`] and gets SIGINT's
/// [`Watch`], installed with the others before recovery; other bodies get a watch that never
/// fires.
pub fn with_router_on<T, F, Fut>(
    ctx: &Ctx,
    pair: Option<(&str, &str)>,
    signals: Signals,
    busy_wait: Option<std::time::Duration>,
    body: F,
) -> Result<Ended<T>, Error>
where
    F: FnOnce(Router, Watch) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let manager = Arc::new(ctx.manager()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        // The handlers first: recovery below may start a turn at once, and a signal that came
        // before the wait below was first polled took its default action (killed the command,
        // its agents left behind) instead of stopping them.
        let (mut watch, own) = match signals {
            Signals::TermOnly => {
                let mut watch = Signals::Os.watch_or_warn();
                let own = watch.split_interrupt();
                (watch, own)
            }
            signals => (signals.watch_or_warn(), Signals::None.watch_or_warn()),
        };
        let router = Router::new(manager);
        router.wait_when_busy(busy_wait);
        if let Some(pair) = pair {
            router.recover(Some(pair))?;
        }
        // The agents this command spawns reach Switchboard (chained to the tell they answer)
        // through a private loopback endpoint while the command runs.
        let endpoint = start_agent_endpoint(&router)
            .await
            .map_err(|e| Error::Other(format!("cannot serve MCP to spawned agents: {e}")))?;
        let result = tokio::select! {
            r = body(router.clone(), own) => r.map(Ended::Done),
            sig = watch.recv() => {
                eprintln!("{sig}: stopping; running turns get {} to finish",
                    switchboard::util::format_duration(router.manager().config().settings.shutdown_grace));
                Ok(Ended::Signal(sig))
            }
        };
        router.shutdown().await;
        endpoint.shutdown().await;
        result
    })
}
