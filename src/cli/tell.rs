//! `switchboard tell FROM TO "text" [--timeout 2m | --async] [--id KEY]`, and the sending and
//! waiting it shares with `tells retry`.
//!
//! A tell is stored first and waited for second, in this process or through a running server,
//! so the tell id is known whatever happens during the wait. ^C while waiting here interrupts
//! the turn (as `cancel` does) and exits 130, printing the answer if it arrived meanwhile; a
//! second ^C exits at once. ^C while a server runs the tell leaves it running there and says
//! how to follow or cancel it.
//!
//! `--follow` shows the callee's activity on stderr while waiting: the tell's events, read as
//! `watch --tell` reads them (from the server's stream, or from the database this process
//! writes, woken by its bus).

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use switchboard::router::{Router, TellOptions, Wait};
use switchboard::signals::{Signals, Watch};
use switchboard::store::{Tell, TellKind, TellState};
use switchboard::Error;

use switchboard::events::EventFilter;
use switchboard::server::api_types::{Op, TellAnswer, TellIdRequest, TellRequest, WaitRequest};

use super::live::{with_router_on, Ended};
use super::output::{escape_controls, print_json};
use super::remote::{CallError, Remote};
use super::watch::{describe, shows_in_follow, tell_end, Feed};
use super::Ctx;

/// After ^C, how long to wait for the interrupted turn to end before leaving anyway.
const INTERRUPT_WAIT: Duration = Duration::from_secs(20);
/// With `--follow`: how long, once the tell ended, its last events may take to show.
const FOLLOW_GRACE: Duration = Duration::from_secs(3);

/// Send a message from one team to another team's agent and print the answer.
#[derive(Debug, Args)]
pub struct TellCmd {
    /// The team that tells.
    from: String,
    /// The team whose agent answers.
    to: String,
    /// The message; `-` reads it from stdin.
    text: String,
    #[command(flatten)]
    waiting: Waiting,
    /// An idempotency key of your choice: sending the same tell again with the same key (say,
    /// after a lost connection) returns the first tell instead of sending a second; the same
    /// key with another text is an error.
    #[arg(long = "id", value_name = "KEY")]
    id: Option<String>,
}

/// How a command that sends a tell waits for it.
#[derive(Debug, Args)]
pub struct Waiting {
    /// Wait at most this long for the answer (e.g. 90s, 2m, 1h); then cancel the tell.
    /// Default: until it comes.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, conflicts_with = "async")]
    timeout: Option<Duration>,
    /// Store the tell and return its id at once; it is delivered by the next Switchboard
    /// process that works on this pair (a later `tell` or `wake`, or the server).
    #[arg(long = "async")]
    r#async: bool,
    /// When another Switchboard process holds the pair's agent, wait for it (up to --timeout)
    /// instead of failing with "busy: held by pid N".
    #[arg(long, conflicts_with = "async")]
    wait_busy: bool,
    /// While waiting, show on stderr what the callee's agent does: each tool it uses and the
    /// result, its status lines, approvals, starting and stopping (stdout stays the answer
    /// only; with --json, one event JSON per stderr line).
    #[arg(long, conflicts_with = "async")]
    follow: bool,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    switchboard::util::parse_duration(s)
}

/// What to send.
#[derive(Clone, Copy)]
pub enum Sending<'a> {
    /// A new tell.
    New {
        /// From team.
        from: &'a str,
        /// To team.
        to: &'a str,
        /// The message.
        text: &'a str,
        /// The caller's idempotency key.
        key: Option<&'a str>,
    },
    /// A copy of a failed or cancelled tell (its id, or a unique prefix).
    Retry(&'a str),
}

impl TellCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let text = if self.text == "-" {
            let mut buf = String::new();
            std::io::stdin()
                .read_to_string(&mut buf)
                .map_err(|e| Error::Usage(format!("cannot read the message from stdin: {e}")))?;
            buf
        } else {
            self.text.clone()
        };
        let config = ctx.load_config()?;
        switchboard::router::check_message(&text, config.settings.max_message_bytes)?;
        let what = Sending::New {
            from: &self.from,
            to: &self.to,
            text: &text,
            key: self.id.as_deref(),
        };
        send(ctx, &config, what, &self.waiting)
    }
}

/// Sends `what` (through a running server of this database, else here) and waits as
/// `waiting` says; prints the answer, or the tell id when not waiting.
pub fn send(
    ctx: &Ctx,
    config: &switchboard::TeamsConfig,
    what: Sending<'_>,
    waiting: &Waiting,
) -> Result<ExitCode, Error> {
    if let Some(remote) = Remote::find(config) {
        // `None`: the server refused the connection, nothing was stored; run it here, as
        // when no server runs.
        if let Some(code) = send_remote(ctx, &remote, what, waiting)? {
            return Ok(code);
        }
    }
    if waiting.r#async {
        // Store it and leave; nothing is started.
        let m = ctx.manager()?;
        let t = match what {
            Sending::New {
                from,
                to,
                text,
                key,
            } => switchboard::router::queue_tell_with(
                &m,
                from,
                to,
                TellKind::Tell,
                text,
                &TellOptions {
                    idempotency_key: key,
                    ..Default::default()
                },
            )?,
            Sending::Retry(id) => switchboard::router::queue_retry(&m, id)?,
        };
        return print_tell(ctx, &TellAnswer::of(t), false);
    }
    // The pair, for start-up recovery of its tells.
    let (from, to) = match &what {
        Sending::New { from, to, .. } => (from.to_string(), to.to_string()),
        Sending::Retry(id) => {
            let t = switchboard::router::retryable(&ctx.manager()?, id)?;
            (t.from_team, t.to_team)
        }
    };
    let wait = waiting.timeout.map_or(Wait::Forever, Wait::For);
    let busy_wait = waiting
        .wait_busy
        .then(|| waiting.timeout.unwrap_or(Duration::from_secs(86_400)));
    let json = ctx.json();
    let follow = waiting.follow;
    let ended = with_router_on(
        ctx,
        Some((&from, &to)),
        Signals::TermOnly,
        busy_wait,
        // ^C is watched from before recovery (which may start the pair's agent) and before
        // the tell exists, so no ^C can kill the process unhandled while it runs.
        |router, sigint| async move {
            let t = match what {
                Sending::New {
                    from,
                    to,
                    text,
                    key,
                } => {
                    router
                        .submit_with(
                            from,
                            to,
                            TellKind::Tell,
                            text,
                            &TellOptions {
                                idempotency_key: key,
                                ..Default::default()
                            },
                        )
                        .await?
                }
                Sending::Retry(id) => router.retry(id)?,
            };
            let m = router.manager();
            let follower = follow.then(|| {
                let feed = Feed::new(
                    m.config(),
                    m.store().clone(),
                    tell_filter(&t.tell_id),
                    0,
                    Some(m.events().last_id()),
                );
                follow_tell(feed, t.tell_id.clone(), json)
            });
            if !json {
                super::approvals::announce_pending(m.clone(), t.tell_id.clone());
            }
            let outcome = wait_here(&router, &t.tell_id, wait, sigint, json).await;
            if let Some(f) = follower {
                // Every event of the turn is stored; the follower prints up to the last.
                m.events().flush().await;
                finish_following(f).await;
            }
            outcome
        },
    )?;
    match ended {
        Ended::Done(Outcome::Ended(t)) => print_tell(ctx, &TellAnswer::of(t), true),
        Ended::Done(Outcome::TimedOut(t)) => {
            say_timed_out(ctx, waiting.timeout);
            print_tell(ctx, &TellAnswer::of(t), true)
        }
        Ended::Done(Outcome::Interrupted(t)) => {
            let answered = t.answer.as_deref().is_some_and(|a| !a.is_empty());
            if answered {
                // The answer came in before the turn could be stopped: it is not lost.
                let _ = print_tell(ctx, &TellAnswer::of(t.clone()), true);
            } else if ctx.json() {
                print_json(&sorted(&TellAnswer::of(t.clone()))?)?;
            }
            Err(Error::Interrupted(format!(
                "interrupted: tell {} {}{}",
                t.tell_id,
                t.state,
                if answered {
                    " (its answer arrived first; printed above)"
                } else {
                    ""
                }
            )))
        }
        Ended::Signal(sig) => Err(super::live::signal_error(sig)),
    }
}

/// How waiting here ended.
enum Outcome {
    /// The tell ended.
    Ended(Tell),
    /// No answer in time: cancelled.
    TimedOut(Tell),
    /// ^C: the turn was interrupted.
    Interrupted(Tell),
}

/// Waits for a tell this process delivers; ^C interrupts its turn, a second ^C exits at once.
async fn wait_here(
    router: &Router,
    tell_id: &str,
    wait: Wait,
    mut sigint: Watch,
    json: bool,
) -> Result<Outcome, Error> {
    let first = tokio::select! {
        t = router.wait_for(tell_id, wait) => Some(t?),
        _ = sigint.recv() => None,
    };
    match first {
        Some(t) if t.state.is_final() => Ok(Outcome::Ended(t)),
        Some(t) => {
            // Out of time: stop it rather than leave it to die with this process.
            let t = router.cancel_tell(&t.tell_id)?;
            let t = router
                .wait_for(&t.tell_id, Wait::For(INTERRUPT_WAIT))
                .await?;
            Ok(Outcome::TimedOut(t))
        }
        None => {
            // With --json every stderr line is JSON: the error line at the end says it all.
            if !json {
                eprintln!("^C: interrupting tell {tell_id} (^C again quits at once)");
            }
            tokio::spawn(async move {
                sigint.recv().await;
                let why = "^C again: quitting now; the next switchboard run on this pair marks \
                           the tell failed";
                if json {
                    eprintln!(
                        "{}",
                        json!({"error": why, "exit_code": switchboard::error::EXIT_INTERRUPTED})
                    );
                } else {
                    eprintln!("{why}");
                }
                std::process::exit(switchboard::error::EXIT_INTERRUPTED);
            });
            let t = router.cancel_tell(tell_id)?;
            let t = router
                .wait_for(&t.tell_id, Wait::For(INTERRUPT_WAIT))
                .await?;
            Ok(Outcome::Interrupted(t))
        }
    }
}

/// Sends through the running server: store first (the id comes back), then wait in a second
/// call, so a server that dies mid-wait still leaves the caller with the id. `None` when the
/// server refused the connection before anything was sent: the tell is not stored.
fn send_remote(
    ctx: &Ctx,
    remote: &Remote,
    what: Sending<'_>,
    waiting: &Waiting,
) -> Result<Option<ExitCode>, Error> {
    // ^C is watched from before the tell is sent, so it never kills the process unhandled.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
    let sigint = runtime
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        })
        .map_err(|e| Error::Other(format!("cannot watch for ^C: {e}")))?;
    let look = match &what {
        Sending::New { from, to, .. } => format!("switchboard report {from} {to}"),
        Sending::Retry(_) => "switchboard report FROM TO".to_string(),
    };
    let sent = match what {
        Sending::New {
            from,
            to,
            text,
            key,
        } => remote.call_raw(
            Op::Tell,
            &TellRequest {
                from: from.to_string(),
                to: to.to_string(),
                text: text.to_string(),
                timeout_ms: None,
                quick: true,
                cancel_on_timeout: false,
                id: key.map(str::to_string),
            },
            None,
        ),
        Sending::Retry(id) => remote.call_raw(
            Op::Retry,
            &TellIdRequest {
                tell_id: id.to_string(),
            },
            None,
        ),
    };
    let t: TellAnswer = match sent {
        Ok(t) => t,
        Err(CallError::Gone(why)) => {
            return Err(Error::Other(format!(
                "{why}; the tell may or may not be stored: see `{look}` before sending it \
                 again (with `--id KEY`, sending again is safe)"
            )))
        }
        Err(CallError::Refused(why)) => {
            if !ctx.json() {
                eprintln!("{why}; the tell was not stored: running it here");
            }
            return Ok(None);
        }
        Err(CallError::Answer(e)) => return Err(e),
    };
    if waiting.r#async {
        return print_tell(ctx, &t, false).map(Some);
    }
    let (id, from, to) = (t.tell.tell_id, t.tell.from_team, t.tell.to_team);
    if !ctx.json() {
        if let Ok(m) = ctx.manager() {
            super::approvals::announce_pending(std::sync::Arc::new(m), id.clone());
        }
    }
    let body = WaitRequest {
        tell_id: id.clone(),
        timeout_ms: waiting.timeout.map(|d| d.as_millis() as u64),
        cancel_on_timeout: true,
    };
    let follow = format!(
        "follow it with `switchboard tells show {id}` or `switchboard report {from} {to} --follow`"
    );
    let follower = if waiting.follow {
        let m = ctx.read_only_manager()?;
        let feed = Feed::new(m.config(), m.store().clone(), tell_filter(&id), 0, None);
        let json = ctx.json();
        let _entered = runtime.enter();
        Some(follow_tell(feed, id.clone(), json))
    } else {
        None
    };
    let ended = match wait_remote(runtime, sigint, remote, body, waiting.timeout, follower)? {
        Some(Ok(v)) => {
            if v.timed_out == Some(true) {
                say_timed_out(ctx, waiting.timeout);
            }
            print_tell(ctx, &v, true)
        }
        Some(Err(CallError::Answer(e))) => Err(e),
        Some(Err(CallError::Gone(why) | CallError::Refused(why))) => Err(Error::Other(format!(
            "{why}, while tell {id} was waiting for its answer. The tell is stored; do not \
             send it again: {follow}; if it ends failed, `switchboard tells retry {id}` \
             sends a copy"
        ))),
        None => Err(Error::Interrupted(format!(
            "interrupted: tell {id} keeps running in the server (pid {}); {follow}; cancel it \
             with `switchboard tells cancel {id}`",
            remote.pid()
        ))),
    };
    ended.map(Some)
}

/// The `wait` call, on a blocking thread; `None` when ^C came first. `follower` (`--follow`)
/// gets to print the tell's last events before this returns.
fn wait_remote(
    runtime: tokio::runtime::Runtime,
    mut sigint: tokio::signal::unix::Signal,
    remote: &Remote,
    body: WaitRequest,
    timeout: Option<Duration>,
    follower: Option<tokio::task::JoinHandle<()>>,
) -> Result<Option<Result<TellAnswer, CallError>>, Error> {
    let remote = remote.clone();
    let result = runtime.block_on(async move {
        let call = tokio::task::spawn_blocking(move || remote.call_raw(Op::Wait, &body, timeout));
        let r = tokio::select! {
            r = call => r
                .map(Some)
                .map_err(|e| Error::Other(format!("the wait for the server failed: {e}"))),
            _ = sigint.recv() => Ok(None),
        };
        if let Some(f) = follower {
            if matches!(r, Ok(Some(_))) {
                finish_following(f).await;
            } else {
                f.abort();
            }
        }
        r
    });
    // The blocked call (if any) is left behind; the process is about to exit.
    runtime.shutdown_background();
    result
}

/// The filter of one tell's events.
fn tell_filter(tell_id: &str) -> EventFilter {
    EventFilter {
        tell: Some(tell_id.to_string()),
        ..EventFilter::default()
    }
}

/// `--follow`: prints the tell's activity on stderr until its last event (or an error, said
/// once).
fn follow_tell(mut feed: Feed, tell_id: String, json: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match feed.next().await {
                Ok(e) => {
                    if json {
                        eprintln!("{}", serde_json::to_string(&e).unwrap_or_default());
                    } else if shows_in_follow(&e.kind) {
                        let team = e.to_team.as_deref().unwrap_or("agent");
                        eprintln!(
                            "{}",
                            escape_controls(&format!("[{team}] {}", describe(&e.kind)), false)
                        );
                    }
                    if tell_end(&e, &tell_id).is_some() {
                        return;
                    }
                }
                Err(e) => {
                    if !json {
                        eprintln!("warning: --follow stopped: {e}");
                    }
                    return;
                }
            }
        }
    })
}

/// Lets the follower print up to the tell's last event (it ends by itself there), within a
/// few seconds.
async fn finish_following(mut follower: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(FOLLOW_GRACE, &mut follower)
        .await
        .is_err()
    {
        follower.abort();
    }
}

/// Says that the tell ran out of time (plain text; with `--json` nothing, as every stderr line
/// is JSON then: the error line that follows names the cancelled tell).
fn say_timed_out(ctx: &Ctx, timeout: Option<Duration>) {
    if ctx.json() {
        return;
    }
    eprintln!(
        "no answer within {}; the tell was cancelled",
        switchboard::util::format_duration(timeout.unwrap_or_default())
    );
}

/// The JSON of an answer as the server sends it (keys in order), for `--json`.
fn sorted(t: &TellAnswer) -> Result<Value, Error> {
    serde_json::to_value(t).map_err(|e| Error::Other(format!("cannot render JSON: {e}")))
}

/// "queued 3.3s, turn 0.4s": how long the tell waited for its turn (stored → delivered) and
/// how long the turn took (delivered → ended), as Switchboard saw them.
pub fn timing(t: &Tell) -> String {
    let secs = |ms: i64| format!("{:.1}s", ms.max(0) as f64 / 1000.0);
    let created = Some(t.created_at);
    let delivered = t.delivered_at;
    let ended = t.answered_at;
    let mut parts = Vec::new();
    match (created, delivered, ended) {
        (Some(c), Some(d), _) => parts.push(format!("queued {}", secs(d - c))),
        (Some(c), None, Some(e)) => parts.push(format!("queued {} (never delivered)", secs(e - c))),
        _ => {}
    }
    if let (Some(d), Some(e)) = (delivered, ended) {
        parts.push(format!("turn {}", secs(e - d)));
    }
    parts.join(", ")
}

/// Prints a tell (as stored, or as a server sent it): the answer on stdout and a summary on
/// stderr, or the JSON. Ok when answered (or still open, for a tell not waited for: a server
/// hands a tell to a waiting agent in the write that stores it, so it can come back
/// `delivered`); a failed or cancelled tell is an error (exit 1) after its output.
fn print_tell(ctx: &Ctx, answer: &TellAnswer, waited: bool) -> Result<ExitCode, Error> {
    let t = &answer.tell;
    let state = t.state;
    let ok = state == TellState::Answered || (!waited && !state.is_final());
    let id = &t.tell_id;
    let failure = || {
        let why = t.error.clone().unwrap_or_default();
        let again = if state.is_final() {
            format!(" (`switchboard tells retry {id}` sends it again)")
        } else {
            String::new()
        };
        Error::Other(format!(
            "tell {id} {state}: {}{again}",
            if why.is_empty() {
                "no reason recorded"
            } else {
                &why
            }
        ))
    };
    if ctx.json() {
        print_json(&sorted(answer)?)?;
        return if ok {
            Ok(ExitCode::SUCCESS)
        } else {
            Err(failure())
        };
    }
    let text = t.answer.as_deref().unwrap_or_default();
    if !text.is_empty() {
        outln!("{text}");
        eprintln!(
            "[tell {id} {state}: {} in / {} out tokens, ${:.4}; {}]",
            t.input_tokens.unwrap_or(0),
            t.output_tokens.unwrap_or(0),
            t.cost_usd.unwrap_or(0.0),
            timing(t),
        );
    } else if matches!(state, TellState::Queued | TellState::Delivered) {
        outln!("{id}");
        eprintln!(
            "[tell {id} {state}: see `switchboard tells show {id}` or `switchboard report {} {}`]",
            t.from_team, t.to_team
        );
    }
    if ok {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(failure())
    }
}
