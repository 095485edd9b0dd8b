//! The HTTP listener (hyper, HTTP/1.1): rmcp's streamable HTTP service at `/mcp`, and
//! `GET /health`, `/status`, `/metrics`.
//!
//! Every request passes two gates first. On a loopback bind, `Host` must name a loopback
//! host (`localhost`, `127.0.0.1`, `[::1]`) with the server's port, and `Origin`, when
//! present, a loopback origin with the server's port (DNS-rebinding protection): 403
//! otherwise. With a token, `Authorization: Bearer <token>` is required: 401 otherwise.
//!
//! A spawned agent's credential (`X-Switchboard-Agent: <its token>`) stands instead of the
//! bearer token, but only as that agent: only on `/mcp` (403 elsewhere), only while that
//! agent process runs (401 once it stopped), and the caller is then always that agent,
//! whatever `?team=` or `X-Switchboard-Team` say.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::ops::{self, Metrics};
use super::tools::SwitchboardTools;
use super::MCP_PATH;
use crate::router::Router;

/// How long open connections (SSE streams included) get to end after shutdown starts.
const DRAIN: Duration = Duration::from_secs(3);

type Body = BoxBody<Bytes, Infallible>;

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
    mcp: StreamableHttpService<SwitchboardTools, LocalSessionManager>,
}

impl HttpState {
    /// The state of a listener; `stop` ends rmcp's sessions and streams.
    pub fn new(
        router: Router,
        metrics: Arc<Metrics>,
        endpoint: Endpoint,
        stop: CancellationToken,
    ) -> Self {
        let limit = router.manager().config().settings.max_message_bytes;
        let mut config = StreamableHttpServerConfig::default()
            .with_cancellation_token(stop)
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
        let mcp = StreamableHttpService::new(
            move || Ok(tools.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        Self {
            router,
            metrics,
            endpoint,
            mcp,
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let agent = req.headers().contains_key(super::AGENT_HEADER);
        if agent {
            if let Some(refused) = self.agent_gate(&req) {
                return refused;
            }
        }
        if let Some(refused) = self.guard(&req, agent) {
            return refused;
        }
        let path = req.uri().path().to_string();
        if self.endpoint.agents_only && path != MCP_PATH {
            return text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
        }
        if let Some(op) = path.strip_prefix("/api/") {
            return self.api(op, req).await;
        }
        let path = path.as_str();
        match (req.method(), path) {
            (_, MCP_PATH) => self.mcp.handle(req).await,
            // 503 once the database file was deleted or replaced under the server.
            (&Method::GET, "/health") => match self.router.manager().store().check_file() {
                Ok(()) => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
                Err(e) => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "error", "error": e.to_string()}),
                ),
            },
            (&Method::GET, "/status") => json(
                StatusCode::OK,
                &ops::status(
                    &self.router,
                    &self.endpoint.url,
                    self.endpoint.started_at_ms,
                ),
            ),
            (&Method::GET, "/metrics") => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                ops::metrics(&self.router, &self.metrics, self.endpoint.started_at_ms),
            ),
            (_, "/health" | "/status" | "/metrics") => text(
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

    /// `POST /api/<op>` for the CLI (see `api.rs`).
    async fn api(&self, op: &str, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::POST {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "use POST\n".into(),
            );
        }
        let limit = self
            .router
            .manager()
            .config()
            .settings
            .max_message_bytes
            .saturating_mul(6)
            .saturating_add(64 * 1024);
        let body = match http_body_util::Limited::new(req.into_body(), limit)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return json(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &serde_json::json!({"error": format!("request body: {e}"), "exit_code": 2}),
                )
            }
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

    /// The response refusing `req`, if a gate refuses it. `agent`: the request carries an
    /// agent's credential, already checked (it needs no bearer token).
    fn guard(&self, req: &Request<Incoming>, agent: bool) -> Option<Response<Body>> {
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
        if let Some(token) = self.endpoint.token.as_ref().filter(|_| !agent) {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim);
            if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
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
        }
        None
    }
}

/// Serves connections from `listener` until `stop` is cancelled, then lets open connections
/// finish for a moment.
pub(crate) async fn serve(listener: TcpListener, state: Arc<HttpState>, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = Arc::clone(&state);
        let service = service_fn(move |req| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(state.handle(req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
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
