//! The HTTP listener (hyper, HTTP/1.1): rmcp's streamable HTTP service at `/mcp`, and
//! `GET /health`, `/status`, `/metrics`, and the event stream `GET /events` (`events.rs`).
//!
//! The same routes are served on TCP and on the server's Unix socket (the CLI's channel).
//! A socket connection is accepted only from a process of the server's own user (peer
//! credentials, `SO_PEERCRED`); it needs no token. On TCP, every request passes two gates
//! first. On a loopback bind, `Host` must name a loopback host (`localhost`, `127.0.0.1`,
//! `[::1]`) with the server's port, and `Origin`, when present, a loopback origin with the
//! server's port (DNS-rebinding protection): 403 otherwise. With a token (the default),
//! `Authorization: Bearer <token>` is required on every route but `GET /health` (and the
//! routes of `[server] open_routes`): 401 otherwise. `/api/` also needs
//! `Content-Type: application/json`, which a web page cannot send without a CORS preflight.
//!
//! Limits (`[server]`): a request's headers must arrive within `header_timeout` and its body
//! within `body_timeout`; at most `max_connections` connections are open (when full, the
//! oldest connection not being answered, still sending its headers or idle between
//! requests, is closed to make room, else the newcomer gets 429; an open `/events` stream is
//! always busy, and at most half of `max_connections` may be event streams, else 429); at most
//! `max_mcp_sessions` MCP sessions live, each closed after
//! `mcp_session_idle` unused. A refusal says which limit and when to retry (`Retry-After`).
//!
//! A spawned agent's credential (`X-Switchboard-Agent: <its token>`) stands instead of the
//! bearer token, but only as that agent: only on `/mcp` (403 elsewhere), only while that
//! agent process runs (401 once it stopped), and the caller is then always that agent,
//! whatever `?team=` or `X-Switchboard-Team` say.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::local::SessionConfig;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

use super::ops::{self, Metrics};
use super::tools::SwitchboardTools;
use super::MCP_PATH;
use crate::config::ServerConfig;
use crate::router::Router;

/// How long open connections (SSE streams included) get to end after shutdown starts.
const DRAIN: Duration = Duration::from_secs(3);

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Where a listener is and how it guards itself.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Bearer token every request must carry, if any.
    pub token: Option<String>,
    /// Check Host and Origin (the listener is on a loopback address).
    pub loopback: bool,
    /// The bound port (what Host and Origin must name).
    pub port: u16,
    /// The MCP endpoint's URL (for `/status`).
    pub url: String,
    /// When the server started (unix ms).
    pub started_at_ms: i64,
    /// Serve only `/mcp`, and only to spawned agents (a command's private endpoint).
    pub agents_only: bool,
}

/// What the listener serves and how it guards it.
pub(crate) struct HttpState {
    router: Router,
    metrics: Arc<Metrics>,
    endpoint: Endpoint,
    limits: ServerConfig,
    sessions: Arc<LocalSessionManager>,
    mcp: StreamableHttpService<SwitchboardTools, LocalSessionManager>,
    auth: super::auth::Auth,
    /// Ends the event streams at shutdown.
    stop: CancellationToken,
    /// The open event streams (of every listener of this server).
    streams: Arc<super::events::Streams>,
}

/// Where a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// TCP: the Host/Origin and token gates apply.
    Tcp,
    /// The Unix socket: the peer is this user (checked at accept).
    Socket,
}

/// A listener of the server: TCP, or the Unix socket for the CLI.
pub(crate) enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// The Unix socket (in a 0700 folder); peers of another user are turned away.
    Unix(UnixListener),
}

impl HttpState {
    /// The state of a listener; `stop` ends rmcp's sessions and streams.
    pub fn new(
        router: Router,
        metrics: Arc<Metrics>,
        endpoint: Endpoint,
        stop: CancellationToken,
    ) -> Self {
        let limits = router.manager().config().server.clone();
        let limit = router.manager().config().settings.max_message_bytes;
        let mut config = StreamableHttpServerConfig::default()
            .with_cancellation_token(stop.clone())
            .with_sse_retry(None)
            // Room for the largest message, JSON-escaped, and the request around it.
            .with_max_request_body_bytes(limit.saturating_mul(6).saturating_add(64 * 1024));
        if !endpoint.loopback {
            // Any host name may reach a public bind; the token guards it.
            config = config.disable_allowed_hosts();
        }
        let mut tools = SwitchboardTools::new(router.clone(), None, Arc::clone(&metrics));
        if endpoint.agents_only {
            tools = tools.agents_only();
        }
        let mut sessions = LocalSessionManager::default();
        let mut session_config = SessionConfig::default();
        session_config.keep_alive = Some(limits.mcp_session_idle);
        session_config.sse_retry = None;
        sessions.session_config = session_config;
        let sessions = Arc::new(sessions);
        let mcp =
            StreamableHttpService::new(move || Ok(tools.clone()), Arc::clone(&sessions), config);
        Self {
            router,
            metrics,
            auth: super::auth::Auth::new(endpoint.token.clone()),
            endpoint,
            limits,
            sessions,
            mcp,
            stop,
            streams: Arc::default(),
        }
    }

    /// How many MCP sessions are live.
    pub async fn mcp_sessions(&self) -> usize {
        self.sessions.sessions.read().await.len()
    }

    async fn handle(&self, req: Request<Incoming>, via: Via) -> Response<Body> {
        let agent = req.headers().contains_key(super::AGENT_HEADER);
        if agent {
            if let Some(refused) = self.agent_gate(&req) {
                return refused;
            }
        }
        if let Some(refused) = self.guard(&req, via, agent) {
            return refused;
        }
        let path = req.uri().path().to_string();
        if self.endpoint.agents_only && path != MCP_PATH {
            return text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
        }
        if let Some(page) = super::page::serve(&req) {
            return page;
        }
        let trusted = via == Via::Socket || self.bearer_ok(&req);
        let (url, timeout) = (&self.endpoint.url, self.limits.body_timeout);
        let req = match super::auth::route(&self.auth, req, trusted, url, timeout).await {
            Ok(resp) => return resp,
            Err(req) => req,
        };
        if let Some(op) = path.strip_prefix("/api/") {
            return self.api(op, req).await;
        }
        let path = path.as_str();
        match (req.method(), path) {
            (&Method::POST, MCP_PATH) => self.mcp_post(req).await,
            (_, MCP_PATH) => self.mcp.handle(req).await,
            // 503 once the database file was deleted or replaced under the server.
            (&Method::GET, "/health") => match self.router.manager().store().check_file() {
                Ok(()) => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
                Err(e) => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "error", "error": e.to_string()}),
                ),
            },
            (&Method::GET, "/status") => {
                let mut status = serde_json::to_value(ops::status(
                    &self.router,
                    &self.endpoint.url,
                    self.endpoint.started_at_ms,
                ))
                .unwrap_or_default();
                status["mcp_sessions"] = serde_json::json!(self.mcp_sessions().await);
                status["event_streams"] = serde_json::json!(self.streams.open());
                json(StatusCode::OK, &status)
            }
            (&Method::GET, "/events") => {
                let query = req.uri().query().map(str::to_string);
                let last_id = req
                    .headers()
                    .get("last-event-id")
                    .map(|h| h.to_str().map(str::to_string).map_err(|_| ()));
                self.events(query, last_id).await
            }
            (&Method::GET, "/metrics") => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                ops::metrics(&self.router, &self.metrics, self.endpoint.started_at_ms),
            ),
            (_, "/health" | "/status" | "/metrics" | "/events") => text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "use GET\n".into(),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "text/plain",
                format!("not found; the MCP endpoint is {MCP_PATH}\n"),
            ),
        }
    }

    /// `GET /events`: Server-Sent Events (see `events.rs`); 400 naming a bad parameter, 429
    /// when half of `[server] max_connections` are event streams already.
    async fn events(
        &self,
        query: Option<String>,
        last_id: Option<Result<String, ()>>,
    ) -> Response<Body> {
        use super::events;
        let bad = |e: events::BadQuery| {
            json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": e.to_string(), "parameter": e.name, "exit_code": 2}),
            )
        };
        let last_id = match &last_id {
            Some(Ok(v)) => Some(v.as_str()),
            Some(Err(_)) => {
                return bad(events::BadQuery {
                    name: "Last-Event-ID".into(),
                    problem: "not text".into(),
                })
            }
            None => None,
        };
        let manager = self.router.manager();
        let check_team = |name: &str| manager.check_team(name).map_err(|e| e.to_string());
        let mut query = match events::parse_query(query.as_deref(), last_id, &check_team) {
            Ok(q) => q,
            Err(e) => return bad(e),
        };
        if let Some(prefix) = query.filter.tell.take() {
            let router = self.router.clone();
            let found = tokio::task::spawn_blocking(move || {
                crate::router::find_tell(router.manager(), &prefix)
            })
            .await;
            match found {
                Ok(Ok(t)) => query.filter.tell = Some(t.tell_id),
                Ok(Err(e)) => {
                    return bad(events::BadQuery {
                        name: "tell".into(),
                        problem: e.to_string(),
                    })
                }
                Err(e) => {
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        format!("{e}\n"),
                    )
                }
            }
        }
        let max = events::max_streams(self.limits.max_connections);
        let Some(slot) = self.streams.take(max) else {
            return too_many(
                format!(
                    "too many event streams: {max} open, the limit is half of [server] \
                     max_connections = {}; retry in 5s",
                    self.limits.max_connections
                ),
                5,
            );
        };
        events::respond(self.router.clone(), query, self.stop.clone(), slot)
    }

    /// `POST /api/<op>` for the CLI (see `api.rs`).
    async fn api(&self, op: &str, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::POST {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "use POST\n".into(),
            );
        }
        if !is_json(&req) {
            return json(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &serde_json::json!({
                    "error": "send the request body as Content-Type: application/json",
                    "exit_code": 2
                }),
            );
        }
        let body = match self.read_body(req.into_body()).await {
            Ok(b) => b,
            Err(refused) => return refused,
        };
        match super::api::handle(&self.router, op, &body).await {
            Ok(v) => json(StatusCode::OK, &v),
            Err((status, v)) => {
                let mut resp = json(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    &v,
                );
                // A limit: when to try again (429).
                if let Some(secs) = v.get("retry_after_secs").and_then(|s| s.as_u64()) {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
                }
                resp
            }
        }
    }

    /// The largest request body: room for the largest message, JSON-escaped, and the request
    /// around it.
    fn body_limit(&self) -> usize {
        self.router
            .manager()
            .config()
            .settings
            .max_message_bytes
            .saturating_mul(6)
            .saturating_add(64 * 1024)
    }

    /// Reads a whole request body, within `[server] body_timeout` and the size limit.
    async fn read_body(&self, body: Incoming) -> Result<Bytes, Response<Body>> {
        let read = http_body_util::Limited::new(body, self.body_limit()).collect();
        match tokio::time::timeout(self.limits.body_timeout, read).await {
            Ok(Ok(b)) => Ok(b.to_bytes()),
            Ok(Err(e)) => Err(json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({"error": format!("request body: {e}"), "exit_code": 2}),
            )),
            Err(_) => Err(json(
                StatusCode::REQUEST_TIMEOUT,
                &serde_json::json!({
                    "error": format!(
                        "request body not received within [server] body_timeout ({})",
                        humantime::format_duration(self.limits.body_timeout)
                    ),
                    "exit_code": 1
                }),
            )),
        }
    }

    /// `POST /mcp`: the body is read here (within the body timeout), and a request that would
    /// open a new MCP session beyond `[server] max_mcp_sessions` is refused with 429.
    async fn mcp_post(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = match self.read_body(body).await {
            Ok(b) => b,
            Err(refused) => return refused,
        };
        let opens_session = !parts.headers.contains_key("mcp-session-id")
            && serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .is_some_and(|v| v.get("method").and_then(|m| m.as_str()) == Some("initialize"));
        if opens_session {
            let live = self.mcp_sessions().await;
            if live >= self.limits.max_mcp_sessions {
                let retry = self.limits.mcp_session_idle.as_secs().clamp(1, 60);
                return too_many(
                    format!(
                        "too many MCP sessions: {live} live, the limit is [server] \
                         max_mcp_sessions = {}; unused sessions close after {}; retry in {retry}s",
                        self.limits.max_mcp_sessions,
                        humantime::format_duration(self.limits.mcp_session_idle)
                    ),
                    retry,
                );
            }
        }
        self.mcp
            .handle(Request::from_parts(parts, Full::new(body)))
            .await
    }

    /// The response refusing a request carrying an agent's credential, unless it is a known
    /// live agent's and asks for `/mcp` (the only thing an agent may use).
    fn agent_gate(&self, req: &Request<Incoming>) -> Option<Response<Body>> {
        if req.uri().path() != MCP_PATH {
            return Some(text(
                StatusCode::FORBIDDEN,
                "text/plain",
                format!("forbidden: an agent's credential is good for {MCP_PATH} only\n"),
            ));
        }
        let token = req
            .headers()
            .get(super::AGENT_HEADER)
            .and_then(|h| h.to_str().ok())
            .map(str::trim)
            .unwrap_or_default();
        if !self.router.is_agent_token(token) {
            return Some(text(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "unauthorized: this agent credential is not known to this server (it ends when \
                 its agent stops; agents get a new one when they start again)\n"
                    .into(),
            ));
        }
        None
    }

    /// Whether `req` carries the server's bearer token (or the server needs none).
    fn bearer_ok<B>(&self, req: &Request<B>) -> bool {
        let Some(token) = self.endpoint.token.as_ref() else {
            return true;
        };
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .is_some_and(|g| same(g.as_bytes(), token.as_bytes()))
    }

    /// The response refusing `req`, if a gate refuses it. `agent`: the request carries an
    /// agent's credential, already checked (it needs no bearer token).
    fn guard(&self, req: &Request<Incoming>, via: Via, agent: bool) -> Option<Response<Body>> {
        if via == Via::Socket {
            // Only this user's processes get a socket connection (checked at accept).
            return None;
        }
        let forbidden = |what: &str| {
            text(
                StatusCode::FORBIDDEN,
                "text/plain",
                format!("forbidden: {what}\n"),
            )
        };
        if self.endpoint.loopback {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok());
            if !host.is_some_and(|h| loopback_authority(h, self.endpoint.port)) {
                return Some(forbidden(
                    "the Host header must be localhost, 127.0.0.1 or [::1] with this server's port",
                ));
            }
            if let Some(origin) = req.headers().get(header::ORIGIN) {
                if !origin
                    .to_str()
                    .is_ok_and(|o| loopback_origin(o, self.endpoint.port))
                {
                    return Some(forbidden("cross-origin requests are not allowed"));
                }
            }
        }
        let open = (req.method() == Method::GET
            && !self.endpoint.agents_only
            && (req.uri().path() == "/health"
                || self
                    .limits
                    .open_routes
                    .iter()
                    .any(|r| r == req.uri().path())))
            || (!self.endpoint.agents_only && super::auth::is_open(req));
        if self.endpoint.token.is_some() && !open && !agent && !self.bearer_ok(req) {
            // The dashboard's session cookie stands for the token on its routes (auth.rs).
            match self.auth.check_cookie(req) {
                super::auth::CookieAuth::Ok => return None,
                super::auth::CookieAuth::CsrfRefused(why) => return Some(forbidden(why)),
                super::auth::CookieAuth::None => {}
            }
            let mut resp = text(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "unauthorized: send Authorization: Bearer <token>\n".into(),
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"switchboard\""),
            );
            return Some(resp);
        }
        None
    }
}

/// The open connections, oldest first, each with how many of its requests are being answered
/// (until the answer's body is sent or dropped).
#[derive(Default)]
struct Conns {
    next: u64,
    open: BTreeMap<u64, (Arc<AtomicUsize>, CancellationToken)>,
}

impl Conns {
    /// Makes room for one more connection under `max`: closes the oldest connection that is
    /// not answering a request (still sending its headers, or idle between requests). `false`
    /// when every open connection is busy with a request.
    fn make_room(&mut self, max: usize) -> bool {
        while self.open.len() >= max {
            let idle = self
                .open
                .iter()
                .find(|(_, (busy, _))| busy.load(Ordering::Relaxed) == 0)
                .map(|(id, _)| *id);
            match idle.and_then(|id| self.open.remove(&id)) {
                Some((_, kill)) => kill.cancel(),
                None => return false,
            }
        }
        true
    }
}

/// Serves connections from `listener` until `stop` is cancelled, then lets open connections
/// finish for a moment.
pub(crate) async fn serve(listener: Listener, state: Arc<HttpState>, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let conns = Arc::new(Mutex::new(Conns::default()));
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = accept(&listener, me) => accepted,
        };
        let (io, via, peer) = match accepted {
            Ok(Some(a)) => a,
            Ok(None) => continue,
            Err(e) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let busy = Arc::new(AtomicUsize::new(0));
        let kill = CancellationToken::new();
        let id = {
            let mut c = conns.lock().unwrap_or_else(|p| p.into_inner());
            if !c.make_room(state.limits.max_connections) {
                drop(c);
                let max = state.limits.max_connections;
                tokio::spawn(refuse_connection(io, max));
                continue;
            }
            c.next += 1;
            let id = c.next;
            c.open.insert(id, (Arc::clone(&busy), kill.clone()));
            id
        };
        let service = {
            let state = Arc::clone(&state);
            service_fn(move |req| {
                let answering = Answering::new(&busy);
                let state = Arc::clone(&state);
                async move {
                    let resp = state.handle(req, via).await;
                    Ok::<_, Infallible>(resp.map(|inner| {
                        BodyExt::boxed(Tracked {
                            inner,
                            _answering: answering,
                        })
                    }))
                }
            })
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(state.limits.header_timeout)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        let conns = Arc::clone(&conns);
        tokio::spawn(async move {
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                _ = kill.cancelled() => {
                    tracing::debug!(%peer, "connection closed to make room (max_connections)");
                }
            }
            conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open
                .remove(&id);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after the drain period; dropping them");
    }
}

/// One request being answered on a connection: counted from the call of the service until
/// the answer's body is sent whole or dropped.
struct Answering(Arc<AtomicUsize>);

impl Answering {
    fn new(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(busy))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer's body that keeps its request counted as being answered while it streams.
struct Tracked {
    inner: Body,
    _answering: Answering,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection of either kind.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The next connection: `None` for a Unix peer of another user (turned away and logged).
async fn accept(
    listener: &Listener,
    me: libc::uid_t,
) -> std::io::Result<Option<(Box<dyn Io>, Via, String)>> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            Ok(Some((Box::new(stream), Via::Tcp, peer.to_string())))
        }
        Listener::Unix(l) => {
            let (stream, _) = l.accept().await?;
            let cred = stream.peer_cred()?;
            if cred.uid() != me {
                tracing::warn!(
                    uid = cred.uid(),
                    pid = ?cred.pid(),
                    "refused a connection to the server's socket from another user"
                );
                return Ok(None);
            }
            let peer = format!("unix socket, pid {:?}", cred.pid());
            Ok(Some((Box::new(stream), Via::Socket, peer)))
        }
    }
}

/// Answers a connection over the connection limit with 429 and closes it.
async fn refuse_connection(mut io: Box<dyn Io>, max: usize) {
    let body = format!(
        "too many connections: the limit is [server] max_connections = {max} and every \
         connection is busy; retry in 5s\n"
    );
    let head = format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        io.write_all(head.as_bytes()).await?;
        io.write_all(body.as_bytes()).await?;
        io.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}

/// Whether a request says its body is JSON (`application/json`, parameters allowed).
fn is_json<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// 429 with `Retry-After`, saying which limit was hit.
fn too_many(message: String, retry_after_secs: u64) -> Response<Body> {
    let mut resp = json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({"error": message, "exit_code": 1, "retry_after_secs": retry_after_secs}),
    );
    if let Ok(v) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

/// Whether a Host header names a loopback host and `port` (no port: 80).
fn loopback_authority(value: &str, port: u16) -> bool {
    match value.parse::<http::uri::Authority>() {
        Ok(a) => loopback_host(a.host()) && a.port_u16().unwrap_or(80) == port,
        Err(_) => false,
    }
}

/// Whether an Origin header is a loopback origin with `port`.
fn loopback_origin(value: &str, port: u16) -> bool {
    let Ok(uri) = value.parse::<http::Uri>() else {
        return false;
    };
    let default = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return false,
    };
    uri.authority()
        .is_some_and(|a| loopback_host(a.host()) && a.port_u16().unwrap_or(default) == port)
}

/// Compares secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string_pretty(value) {
        Ok(body) => text(status, "application/json", body + "\n"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{e}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_origin_checks() {
        assert!(loopback_authority("127.0.0.1:7717", 7717));
        assert!(loopback_authority("localhost:7717", 7717));
        assert!(loopback_authority("LOCALHOST:7717", 7717));
        assert!(loopback_authority("[::1]:7717", 7717));
        assert!(!loopback_authority("127.0.0.1:7718", 7717));
        assert!(!loopback_authority("evil.example.com:7717", 7717));
        assert!(!loopback_authority("127.0.0.1", 7717));
        assert!(loopback_authority("localhost", 80));
        assert!(!loopback_authority("not a host", 80));
        assert!(loopback_origin("http://localhost:7717", 7717));
        assert!(loopback_origin("http://[::1]:7717", 7717));
        assert!(!loopback_origin("http://localhost:3000", 7717));
        assert!(!loopback_origin("http://evil.example.com:7717", 7717));
        assert!(!loopback_origin("null", 7717));
        assert!(loopback_origin("https://127.0.0.1", 443));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
