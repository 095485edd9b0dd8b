//! `GET /events`: Switchboard's events as Server-Sent Events.
//!
//! Query: `team=T` (from or to T), `pair=A:B`, `tell=ID` (a tell id or a unique prefix), and
//! `after=N` (events with an id above N; `after=0` is the whole history). Without `after` the
//! stream starts with the next event. A `Last-Event-ID: N` header (what a browser's
//! `EventSource` sends when it reconnects, with the URL it first used) takes precedence over
//! `after`. A bad value is a 400 naming the parameter.
//!
//! Each event is `id: <id>\nevent: <type>\ndata: <Event JSON on one line>\n\n`; a `: keepalive`
//! comment goes out every 15 s when nothing else does. The stream is read from the database in
//! id order, so it has no gap and no duplicate across reconnects, and it carries events that
//! other Switchboard processes write to the same database: the bus of this process wakes the
//! reader at once ([`EventBus::last_id`](crate::events::EventBus::last_id)), and a slow poll
//! ([`POLL`]) picks up the other processes' events.
//!
//! A stream never holds an agent back: it reads the database on its own task, into a small
//! buffer; a client that stops reading stalls only its own task (then its TCP window, then
//! the buffer fills and the task waits). At server shutdown every stream ends (the response
//! body ends cleanly), within the listener's drain period.
//!
//! Guarded like `/mcp` (the listener's Host/Origin and token gates run first; an agent's
//! credential is refused as for `/api/`). Each stream holds one connection of
//! `[server] max_connections` for as long as it is open, and at most half of them
//! ([`max_streams`]) may be event streams, so watchers can never crowd out the CLI and the
//! agents: beyond that, 429 with `Retry-After`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventFilter};
use crate::router::Router;

/// How often the database is read for events of other processes (this process's own events
/// wake the stream at once).
pub const POLL: Duration = Duration::from_secs(1);
/// A `: keepalive` comment after this long without anything sent.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// Events read from the database at once.
const BATCH: u32 = 500;
/// Frames buffered between the reading task and the connection.
const BUFFER: usize = 16;

/// What a stream sends: the filter and where to start.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsQuery {
    /// Which events.
    pub filter: EventFilter,
    /// Events with an id above this; `None`: from the next event on.
    pub after: Option<i64>,
}

/// A refused query: which parameter (or header) was wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadQuery {
    /// The parameter or header.
    pub name: String,
    /// What was wrong.
    pub problem: String,
}

impl std::fmt::Display for BadQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.problem)
    }
}

/// Reads the query string and the `Last-Event-ID` header. `check_team` says why a team name is
/// not usable, if it is not.
pub fn parse_query(
    query: Option<&str>,
    last_event_id: Option<&str>,
    check_team: &dyn Fn(&str) -> Result<(), String>,
) -> Result<EventsQuery, BadQuery> {
    let bad = |name: &str, problem: String| BadQuery {
        name: name.to_string(),
        problem,
    };
    let mut filter = EventFilter::default();
    let mut after = None;
    let mut seen: Vec<String> = Vec::new();
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let key = percent_decode(key).ok_or_else(|| bad(key, "bad percent-encoding".into()))?;
        let value =
            percent_decode(value).ok_or_else(|| bad(&key, "bad percent-encoding".into()))?;
        if seen.contains(&key) {
            return Err(bad(&key, "given twice".into()));
        }
        seen.push(key.clone());
        match key.as_str() {
            "team" => {
                check_team(&value).map_err(|p| bad("team", p))?;
                filter.team = Some(value);
            }
            "pair" => {
                let (a, b) = EventFilter::parse_pair(&value).map_err(|p| bad("pair", p))?;
                check_team(&a).map_err(|p| bad("pair", p))?;
                check_team(&b).map_err(|p| bad("pair", p))?;
                filter.pair = Some((a, b));
            }
            "tell" => {
                if value.is_empty()
                    || value.len() > 64
                    || !value.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                {
                    return Err(bad(
                        "tell",
                        format!("{value:?} is not a tell id (hex digits and dashes)"),
                    ));
                }
                filter.tell = Some(value.to_ascii_lowercase());
            }
            "after" => after = Some(parse_id(&value).map_err(|p| bad("after", p))?),
            other => {
                return Err(bad(
                    other,
                    "unknown parameter; use team, pair, tell or after".into(),
                ))
            }
        }
    }
    if let Some(id) = last_event_id {
        after = Some(parse_id(id.trim()).map_err(|p| bad("Last-Event-ID", p))?);
    }
    Ok(EventsQuery { filter, after })
}

fn parse_id(value: &str) -> Result<i64, String> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("{value:?} is not an event id (a whole number, 0 or more)"))
}

/// `%XX` and `+` decoded; `None` for a bad escape or text that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// One event as an SSE frame.
pub fn frame(e: &Event) -> String {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        e.id,
        e.kind.type_name()
    )
}

/// The most event streams open at once: half of `[server] max_connections` (at least one).
pub fn max_streams(max_connections: usize) -> usize {
    (max_connections / 2).max(1)
}

/// The count of open event streams (shared by the listeners of one server).
#[derive(Debug, Default)]
pub struct Streams(AtomicUsize);

/// One open stream, counted until dropped.
pub struct StreamSlot(Arc<Streams>);

impl Streams {
    /// A slot for one more stream, unless `max` are open.
    pub fn take(self: &Arc<Self>, max: usize) -> Option<StreamSlot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot(Arc::clone(self)))
    }

    /// How many streams are open.
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The response body of a stream: the frames the reading task sends, until it ends.
struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|frame| frame.map(|b| Ok(Frame::data(b))))
    }
}

/// Starts a stream: a task reads the database from `query.after` and sends what matches until
/// the client leaves or `stop` is cancelled; the response carries it.
pub fn respond(
    router: Router,
    query: EventsQuery,
    stop: CancellationToken,
    slot: StreamSlot,
) -> Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = pump(router, query, stop, tx).await {
            tracing::warn!(error = %e, "an event stream ended on an error");
        }
    });
    let mut resp = Response::new(SseBody { rx }.boxed());
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    // Proxies that buffer would hold events back.
    headers.insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Reads events in id order and sends the matching ones; `Ok` when the client left or the
/// server stops.
async fn pump(
    router: Router,
    query: EventsQuery,
    stop: CancellationToken,
    tx: mpsc::Sender<Bytes>,
) -> Result<(), String> {
    let store = router.manager().store().clone();
    let mut woken = router.manager().events().last_id();
    let mut cursor = match query.after {
        Some(n) => n,
        None => {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.max_event_id())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        }
    };
    // The stream is open: tell the client at once (a comment), so it need not wait for the
    // first event to know it is connected.
    if tx
        .send(Bytes::from_static(b": connected\n\n"))
        .await
        .is_err()
    {
        return Ok(());
    }
    let filter = Arc::new(query.filter);
    let mut last_sent = tokio::time::Instant::now();
    loop {
        // Everything there is, in batches.
        loop {
            let (s, f) = (store.clone(), Arc::clone(&filter));
            let batch = tokio::task::spawn_blocking(move || s.events_after(cursor, &f, BATCH))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let full = batch.len() >= BATCH as usize;
            for e in batch {
                cursor = cursor.max(e.id);
                tokio::select! {
                    sent = tx.send(Bytes::from(frame(&e))) => if sent.is_err() { return Ok(()) },
                    _ = stop.cancelled() => return Ok(()),
                }
                last_sent = tokio::time::Instant::now();
            }
            if !full {
                break;
            }
        }
        let keepalive_at = last_sent + KEEPALIVE;
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tx.closed() => return Ok(()),
            changed = woken.changed() => {
                if changed.is_err() {
                    // The bus is gone (the server is stopping); the poll goes on until then.
                    woken = router.manager().events().last_id();
                    tokio::time::sleep(POLL).await;
                }
            }
            _ = tokio::time::sleep(POLL) => {}
            _ = tokio::time::sleep_until(keepalive_at) => {
                tokio::select! {
                    sent = tx.send(Bytes::from_static(b": keepalive\n\n")) => if sent.is_err() { return Ok(()) },
                    _ = stop.cancelled() => return Ok(()),
                }
                last_sent = tokio::time::Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn teams(name: &str) -> Result<(), String> {
        if ["a", "b", "frontend"].contains(&name) {
            Ok(())
        } else {
            Err(format!("no team named {name:?}"))
        }
    }

    #[test]
    fn parses_queries() {
        let q = parse_query(Some("team=frontend&after=12"), None, &teams).unwrap();
        assert_eq!(q.filter.team.as_deref(), Some("frontend"));
        assert_eq!(q.after, Some(12));
        let q = parse_query(Some("pair=a%3Ab"), Some(" 40 "), &teams).unwrap();
        assert_eq!(q.filter.pair, Some(("a".into(), "b".into())));
        // Last-Event-ID wins over the URL's `after` (a browser reconnects with the first URL).
        let q = parse_query(Some("after=3"), Some("40"), &teams).unwrap();
        assert_eq!(q.after, Some(40));
        let q = parse_query(None, None, &teams).unwrap();
        assert_eq!(q.after, None);
        let q = parse_query(Some("tell=AB12-cd"), None, &teams).unwrap();
        assert_eq!(q.filter.tell.as_deref(), Some("ab12-cd"));
    }

    #[test]
    fn bad_queries_name_the_parameter() {
        let name = |q: &str, h: Option<&str>| parse_query(Some(q), h, &teams).unwrap_err().name;
        assert_eq!(name("after=-1", None), "after");
        assert_eq!(name("after=x", None), "after");
        assert_eq!(name("", Some("nope")), "Last-Event-ID");
        assert_eq!(name("team=zzz", None), "team");
        assert_eq!(name("pair=a", None), "pair");
        assert_eq!(name("pair=a:zzz", None), "pair");
        assert_eq!(name("tell=not%20an%20id", None), "tell");
        assert_eq!(name("tema=a", None), "tema");
        assert_eq!(name("team=a&team=b", None), "team");
        assert_eq!(name("team=%zz", None), "team");
    }

    #[test]
    fn stream_slots_are_bounded() {
        let streams = Arc::new(Streams::default());
        let a = streams.take(2).unwrap();
        let _b = streams.take(2).unwrap();
        assert!(streams.take(2).is_none());
        drop(a);
        assert_eq!(streams.open(), 1);
        assert!(streams.take(2).is_some());
        assert_eq!(max_streams(256), 128);
        assert_eq!(max_streams(1), 1);
    }
}
