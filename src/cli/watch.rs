//! `switchboard watch [--pair A:B | --team T | --tell ID] [--json] [--since N]`: Switchboard's
//! events as they happen, one line each (time, pair, short tell id, what happened) or one
//! JSON object per line (the event as `/events` sends it).
//!
//! With a server running for the database, the events come from its stream (`GET /events`,
//! over its Unix socket, else TCP with the token); without one, or once it stops, from the
//! database itself, read every [`DB_POLL`]. Either way they are read by id from the durable
//! events, so nothing is skipped or shown twice when the source changes.
//!
//! [`Feed`] is that reading, shared with `tell --follow`.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use switchboard::events::{Event, EventFilter, EventKind};
use switchboard::store::{SessionStore, TellState};
use switchboard::{Error, TeamsConfig};
use tokio::sync::watch;

use super::output::{escape_controls, out_raw};
use super::remote::{CallError, EventStream, Remote};
use super::Ctx;

/// How often the database is read when no server streams the events.
pub const DB_POLL: Duration = Duration::from_millis(200);
/// With `--tell`: how long to wait for the tell's last event once the tell is seen ended.
const END_GRACE: Duration = Duration::from_secs(3);

/// Print Switchboard's events as they happen: tells queued, delivered, answered; agents
/// starting and stopping; each tool an agent uses and its result; approvals.
#[derive(Debug, Args)]
pub struct WatchCmd {
    /// Only the events of one pair, FROM:TO (e.g. frontend:backend).
    #[arg(long, value_name = "FROM:TO", conflicts_with_all = ["team", "tell"])]
    pair: Option<String>,
    /// Only the events of one team (as caller or callee).
    #[arg(long, value_name = "TEAM", conflicts_with = "tell")]
    team: Option<String>,
    /// Only the events of one tell (an id or a unique prefix), from its start; ends when the
    /// tell ends, with the exit code `tell` would have had (0 answered, 1 failed or
    /// cancelled).
    #[arg(long, value_name = "ID")]
    tell: Option<String>,
    /// Start after event id N (0: the whole history). Default: the next event on (with
    /// `--tell`, the tell's first event).
    #[arg(long, value_name = "N")]
    since: Option<i64>,
}

impl WatchCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        if self.since.is_some_and(|n| n < 0) {
            return Err(Error::Usage(
                "--since: an event id is a whole number, 0 or more".into(),
            ));
        }
        let m = ctx.read_only_manager()?;
        let mut filter = EventFilter::default();
        if let Some(team) = &self.team {
            m.check_team(team)
                .map_err(|e| Error::Usage(format!("--team: {e}")))?;
            filter.team = Some(team.clone());
        }
        if let Some(pair) = &self.pair {
            let (a, b) =
                EventFilter::parse_pair(pair).map_err(|e| Error::Usage(format!("--pair: {e}")))?;
            for t in [&a, &b] {
                m.check_team(t)
                    .map_err(|e| Error::Usage(format!("--pair: {e}")))?;
            }
            filter.pair = Some((a, b));
        }
        let tell = match &self.tell {
            Some(id) => Some(switchboard::router::find_tell(&m, id)?.tell_id),
            None => None,
        };
        filter.tell = tell.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
        // SIGINT and SIGTERM end the watch (exit 130); the handlers are in place before
        // anything is printed.
        let mut signals = {
            let _entered = runtime.enter();
            switchboard::signals::Signals::Os
                .watch()
                .map_err(|e| Error::Other(format!("cannot watch for signals: {e}")))?
        };
        let store = m.store().clone();
        let after = match (self.since, &tell) {
            (Some(n), _) => n,
            (None, Some(_)) => 0,
            (None, None) => store.max_event_id()?,
        };
        let json = ctx.json();
        let what = match (&filter.team, &filter.pair, &tell) {
            (Some(t), _, _) => format!("the events of team {t}"),
            (_, Some((a, b)), _) => format!("the events of {a} -> {b}"),
            (_, _, Some(id)) => format!("the events of tell {id}"),
            _ => "all events".to_string(),
        };
        let mut feed = Feed::new(m.config(), store.clone(), filter, after, None);
        if !json {
            // On stderr: stdout holds only the events.
            eprintln!(
                "watching {what} after event {after}, from {}; Ctrl-C stops",
                feed.source()
            );
        }
        runtime.block_on(async move {
            // With --tell: when the tell was first seen ended in the database.
            let mut ended_at: Option<tokio::time::Instant> = None;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    sig = signals.recv() => {
                        return Err(Error::Interrupted(format!("{sig}: stopped watching")));
                    }
                    e = feed.next() => {
                        let e = e?;
                        if json {
                            out_raw(&format!("{}\n", serde_json::to_string(&e).unwrap_or_default()));
                        } else {
                            out_raw(&format!("{}\n", line(&e)));
                        }
                        if let Some(id) = &tell {
                            if let Some(end) = tell_end(&e, id) {
                                return end;
                            }
                        }
                    }
                    _ = tick.tick(), if tell.is_some() => {
                        let id = tell.as_deref().unwrap_or_default();
                        // A tell whose end left no event (it ended before events were
                        // recorded, or its last event was not stored): its state says.
                        match ended_at {
                            Some(at) if at.elapsed() >= END_GRACE => {
                                let t = store.get_tell(id)?.ok_or_else(|| {
                                    Error::NotFound(format!("tell {id} is gone"))
                                })?;
                                return state_end(&t.tell_id, t.state, t.error.as_deref());
                            }
                            Some(_) => {}
                            None => {
                                let s = store.clone();
                                let id = id.to_string();
                                let t = tokio::task::spawn_blocking(move || s.get_tell(&id))
                                    .await
                                    .map_err(|e| Error::Other(e.to_string()))??;
                                if t.is_some_and(|t| t.state.is_final()) {
                                    ended_at = Some(tokio::time::Instant::now());
                                }
                            }
                        }
                    }
                }
            }
        })
    }
}

/// The exit of `watch --tell` (and the end of `tell --follow`): `Some` when `e` ends tell `id`,
/// with the outcome `tell` gives it.
pub fn tell_end(e: &Event, id: &str) -> Option<Result<ExitCode, Error>> {
    if e.tell_id.as_deref() != Some(id) {
        return None;
    }
    match &e.kind {
        EventKind::TellAnswered { .. } => Some(Ok(ExitCode::SUCCESS)),
        EventKind::TellFailed { state, error } => Some(Err(failed(id, state, error))),
        EventKind::TellCancelled { reason } => Some(Err(failed(id, "cancelled", reason))),
        _ => None,
    }
}

fn failed(id: &str, state: &str, why: &str) -> Error {
    Error::Other(format!(
        "tell {id} {state}: {} (`switchboard tells retry {id}` sends it again)",
        if why.is_empty() {
            "no reason recorded"
        } else {
            why
        }
    ))
}

/// The outcome of an ended tell, from its stored state.
fn state_end(id: &str, state: TellState, error: Option<&str>) -> Result<ExitCode, Error> {
    if state == TellState::Answered {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(failed(id, &state.to_string(), error.unwrap_or("")))
    }
}

/// Events in id order from a server's stream or, without one, from the database.
pub struct Feed {
    config: Arc<TeamsConfig>,
    store: SessionStore,
    filter: Arc<EventFilter>,
    /// The filter as `/events` takes it.
    query: String,
    /// The id of the last event given out.
    after: i64,
    /// The server to stream from (`None`: read the database).
    remote: Option<Remote>,
    stream: Option<EventStream>,
    /// Wakes a database read at once (the bus of this process, when it runs the agents).
    wake: Option<watch::Receiver<i64>>,
    queue: VecDeque<Event>,
}

impl Feed {
    /// A feed of the events after id `after` that match `filter`: from the running server of
    /// the database if there is one, else from the database (woken early by `wake`).
    pub fn new(
        config: &Arc<TeamsConfig>,
        store: SessionStore,
        filter: EventFilter,
        after: i64,
        wake: Option<watch::Receiver<i64>>,
    ) -> Self {
        let mut query = Vec::new();
        if let Some(t) = &filter.team {
            query.push(format!("team={t}"));
        }
        if let Some((a, b)) = &filter.pair {
            query.push(format!("pair={a}:{b}"));
        }
        if let Some(t) = &filter.tell {
            query.push(format!("tell={t}"));
        }
        Self {
            remote: if wake.is_some() {
                None
            } else {
                Remote::find(config)
            },
            config: Arc::clone(config),
            store,
            filter: Arc::new(filter),
            query: query.join("&"),
            after,
            stream: None,
            wake,
            queue: VecDeque::new(),
        }
    }

    /// Where the events come from, in words.
    pub fn source(&self) -> String {
        match &self.remote {
            Some(r) => format!("the server (pid {})", r.pid()),
            None => "the database (no server running)".to_string(),
        }
    }

    /// The next event (cancel-safe: an event is given out once, when this returns it).
    pub async fn next(&mut self) -> Result<Event, Error> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                if e.id > self.after {
                    self.after = e.id;
                    return Ok(e);
                }
                continue;
            }
            if let Some(remote) = self.remote.clone() {
                if self.stream.is_none() {
                    match remote.events(&self.query, self.after).await {
                        Ok(s) => self.stream = Some(s),
                        // A bad filter: the server's word stands.
                        Err(CallError::Answer(e)) if e.exit_code() == 2 => return Err(e),
                        // Gone, full (429), or a token it does not take: the database has
                        // the same events.
                        Err(other) => {
                            let why = match other {
                                CallError::Answer(e) => e.to_string(),
                                CallError::Gone(w) | CallError::Refused(w) => w,
                            };
                            tracing::info!(%why, "no event stream; reading the database");
                            self.remote = None;
                            continue;
                        }
                    }
                }
                if let Some(stream) = self.stream.as_mut() {
                    match stream.next().await {
                        Ok(Some(e)) => self.queue.push_back(e),
                        Ok(None) | Err(_) => {
                            // The server stopped (or broke): another one, or the database.
                            self.stream = None;
                            self.remote =
                                Remote::find(&self.config).filter(|r| r.pid() != remote.pid());
                        }
                    }
                }
                continue;
            }
            let (s, f, after) = (self.store.clone(), Arc::clone(&self.filter), self.after);
            let batch = tokio::task::spawn_blocking(move || s.events_after(after, &f, 500))
                .await
                .map_err(|e| Error::Other(format!("reading events: {e}")))??;
            if !batch.is_empty() {
                self.queue.extend(batch);
                continue;
            }
            match self.wake.as_mut() {
                Some(w) => tokio::select! {
                    changed = w.changed() => if changed.is_err() { self.wake = None },
                    _ = tokio::time::sleep(DB_POLL) => {}
                },
                None => tokio::time::sleep(DB_POLL).await,
            }
        }
    }
}

/// `HH:MM:SS` (UTC) of a unix time in ms.
fn clock(ms: i64) -> String {
    let t = switchboard::util::rfc3339(ms);
    t.get(11..19).unwrap_or(&t).to_string()
}

/// One event as a line: time, pair, short tell id, what happened (controls made visible, one
/// line whatever the agent wrote).
pub fn line(e: &Event) -> String {
    let pair = match (&e.from_team, &e.to_team) {
        (Some(a), Some(b)) => format!("{a}->{b}"),
        (None, Some(b)) => format!("->{b}"),
        (Some(a), None) => format!("{a}->"),
        (None, None) => "-".into(),
    };
    let tell: String = e
        .tell_id
        .as_deref()
        .map_or_else(|| "-".into(), |t| t.chars().take(8).collect());
    escape_controls(
        &format!(
            "{}  {pair:<20}  {tell:<8}  {}",
            clock(e.at),
            describe(&e.kind)
        ),
        false,
    )
}

/// The first line of `text`, at most `max` characters.
fn short(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or("");
    let mut out: String = first.chars().take(max).collect();
    if first.chars().count() > max || text.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

/// What happened, in words: the events layer's words, but a tool use reads
/// `tool Bash: echo hi` (a line of `watch` or `tell --follow` mixes tools with everything else).
pub fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::ToolUse { tool, input, .. } => format!("tool {tool}: {}", short(input, 200)),
        other => other.describe(),
    }
}

/// Whether `tell --follow` shows the event: what the callee's agent does (its tools, status
/// lines, approvals, starting and stopping), not the tell's own bookkeeping.
pub fn shows_in_follow(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::ToolUse { .. }
            | EventKind::ToolResult { .. }
            | EventKind::AgentStatus { .. }
            | EventKind::AgentSpawning { .. }
            | EventKind::AgentReady { .. }
            | EventKind::AgentStopped { .. }
            | EventKind::CompactionBegin
            | EventKind::CompactionEnd { .. }
            | EventKind::ApprovalRequested { .. }
            | EventKind::ApprovalDecided { .. }
            | EventKind::ApprovalExpired { .. }
            | EventKind::ActivityTruncated { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            id: 3,
            at: 1_765_000_000_000,
            from_team: Some("frontend".into()),
            to_team: Some("backend".into()),
            tell_id: Some("0123456789abcdef".into()),
            session_id: None,
            kind,
        }
    }

    #[test]
    fn lines_say_what_happened() {
        let e = event(EventKind::ToolUse {
            tool_use_id: "t1".into(),
            tool: "Bash".into(),
            input: "echo hi\nrm -rf \x1b[2J".into(),
        });
        let l = line(&e);
        assert!(l.contains("frontend->backend"), "{l}");
        assert!(l.contains("01234567 "), "{l}");
        assert!(l.contains("tool Bash: echo hi…"), "{l}");
        assert!(!l.contains('\n') && !l.contains('\x1b'), "{l}");
        let end = tell_end(
            &event(EventKind::TellFailed {
                state: "failed".into(),
                error: "agent crashed".into(),
            }),
            "0123456789abcdef",
        );
        let err = end.expect("a failed tell ends the watch").unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("agent crashed"));
        assert!(tell_end(&event(EventKind::TellDelivered), "0123456789abcdef").is_none());
        assert!(tell_end(
            &event(EventKind::TellCancelled { reason: "x".into() }),
            "other"
        )
        .is_none());
    }
}
