//! The server as a library function: [`run`] serves until a signal (or, on stdio, until the
//! client leaves), then shuts the router down; [`start`] returns a [`ServerHandle`] for tests
//! that boot the server in-process.
//!
//! Both transports also listen on HTTP: `--http ADDR` on ADDR, stdio on `127.0.0.1:0`, so the
//! agents Switchboard spawns can call back (the router gets the URL via
//! [`Router::set_mcp_endpoint`]). While serving, `<database folder>/server.json` says
//! `{pid, process_started_at, url, started_at, transport, auth}` so other commands can find
//! the server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use rmcp::ServiceExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::http::{self, Endpoint, HttpState};
use super::ops::Metrics;
use super::server_file::{self, ServerFile};
use super::tools::SwitchboardTools;
use super::{check_token, McpError, MCP_PATH};
use crate::router::{Caller, Router};
use crate::signals::Signals;
use crate::util::{now_ms, rfc3339};

/// How MCP clients reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// JSON-RPC on stdin/stdout for one client acting as `as_team`.
    Stdio {
        /// The team the client acts as.
        as_team: String,
    },
    /// Streamable HTTP at `http://ADDR/mcp`.
    Http {
        /// Where to listen (port 0: any free port).
        addr: SocketAddr,
    },
}

/// How to serve.
#[derive(Debug)]
pub struct ServeOptions {
    /// The transport.
    pub transport: Transport,
    /// Where shutdown requests come from ([`Signals::none`] in tests).
    pub signals: Signals,
    /// Bearer token HTTP requests must carry; default `[server] auth_token` of the config.
    pub auth_token: Option<String>,
    /// Gets the bound HTTP address once the server listens.
    pub ready: Option<oneshot::Sender<SocketAddr>>,
}

impl ServeOptions {
    /// Options for `transport`, with OS signals, the config's token and no ready report.
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            signals: Signals::Os,
            auth_token: None,
            ready: None,
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    url: String,
    router: Router,
    stop: CancellationToken,
    http: JoinHandle<()>,
    stdio: Option<JoinHandle<Result<(), McpError>>>,
    state_file: Option<PathBuf>,
    /// The claim on the database outside its folder (given back when dropped).
    _claim: Option<crate::store::DatabaseClaim>,
}

/// Serves until a signal arrives (or the stdio client leaves), then stops the router: running
/// turns get `settings.shutdown_grace`, agents are stopped, leases given back.
pub async fn run(router: Router, mut options: ServeOptions) -> Result<(), McpError> {
    let signals = options.signals;
    let ready = options.ready.take();
    let mut handle = start(router, options).await?;
    if let Some(tx) = ready {
        let _ = tx.send(handle.addr());
    }
    let result = tokio::select! {
        r = handle.finished() => r,
        sig = signals.wait() => {
            tracing::info!(signal = sig, "shutting down");
            Ok(())
        }
    };
    handle.shutdown().await;
    result
}

/// Starts serving and returns at once (the stdio handshake runs in the background).
pub async fn start(router: Router, mut options: ServeOptions) -> Result<ServerHandle, McpError> {
    let config = Arc::clone(router.manager().config());
    let token = options
        .auth_token
        .take()
        .or_else(|| config.server.auth_token.clone());
    if let Some(t) = &token {
        check_token(t).map_err(|problem| McpError::BadToken {
            source_name: "the server options".into(),
            problem,
        })?;
    }
    let (bind, fixed) = match &options.transport {
        Transport::Stdio { as_team } => {
            router
                .manager()
                .check_team(as_team)
                .map_err(|e| McpError::BadTeam {
                    team: as_team.clone(),
                    message: e.to_string(),
                })?;
            let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
            (local, Some(Caller::Team(as_team.clone())))
        }
        Transport::Http { addr } => {
            if !addr.ip().is_loopback() && token.is_none() {
                return Err(McpError::InsecureBind { addr: *addr });
            }
            if let Some(running) = ServerFile::live_for(&config.database)
                .filter(|f| f.transport == "http" && f.database_lost.is_none())
            {
                return Err(McpError::AlreadyRunning {
                    database: config.database.path.clone(),
                    pid: running.pid,
                    url: running.url,
                });
            }
            (*addr, None)
        }
    };
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(listener) => listener,
        Err(source) if source.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(who_listens(bind, token.as_deref())
                .await
                .unwrap_or(McpError::Bind { addr: bind, source }))
        }
        Err(source) => return Err(McpError::Bind { addr: bind, source }),
    };
    let addr = listener
        .local_addr()
        .map_err(|source| McpError::Bind { addr: bind, source })?;
    let url = endpoint_url(addr);
    let started_at = now_ms();
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let endpoint = Endpoint {
        token: token.clone(),
        loopback: addr.ip().is_loopback(),
        port: addr.port(),
        url: url.clone(),
        started_at_ms: started_at,
        agents_only: false,
    };
    let state = Arc::new(HttpState::new(
        router.clone(),
        Arc::clone(&metrics),
        endpoint,
        stop.child_token(),
    ));
    let http = tokio::spawn(http::serve(listener, state, stop.child_token()));
    router.set_mcp_endpoint(Some(url.clone()), token.clone());
    let stdio = fixed.map(|caller| {
        let tools = SwitchboardTools::new(router.clone(), Some(caller), metrics);
        let ct = stop.child_token();
        tokio::spawn(async move {
            let running = tools
                .serve_with_ct(rmcp::transport::stdio_pipes(), ct)
                .await
                .map_err(|e| McpError::Stdio(e.to_string()))?;
            running
                .waiting()
                .await
                .map_err(|e| McpError::Stdio(e.to_string()))?;
            Ok(())
        })
    });
    let transport = if stdio.is_some() { "stdio" } else { "http" };
    let announced = ServerFile {
        pid: std::process::id(),
        process_started_at: crate::util::ProcessIdentity::current().started_at,
        url: url.clone(),
        started_at: rfc3339(started_at),
        transport: transport.to_string(),
        auth: token.is_some(),
        database: (!config.database.in_memory).then(|| config.database.path.clone()),
        database_lost: None,
    };
    let claim = claim_database(&config.database, &url);
    let state_file = write_state_file(&router, &announced);
    if let Some(path) = &state_file {
        tokio::spawn(watch_database(
            router.clone(),
            path.clone(),
            announced,
            stop.child_token(),
        ));
    }
    tracing::info!(%url, transport, "serving MCP");
    Ok(ServerHandle {
        addr,
        url,
        router,
        stop,
        http,
        stdio,
        state_file,
        _claim: claim,
    })
}

impl ServerHandle {
    /// The bound HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MCP endpoint's URL (`http://HOST:PORT/mcp`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Resolves when the server ends by itself: on stdio, when the client closes stdin (or
    /// the handshake fails); over HTTP, never.
    pub async fn finished(&mut self) -> Result<(), McpError> {
        match self.stdio.as_mut() {
            Some(task) => {
                let r = task
                    .await
                    .unwrap_or_else(|e| Err(McpError::Stdio(e.to_string())));
                self.stdio = None;
                r
            }
            None => std::future::pending().await,
        }
    }

    /// Stops serving (open HTTP connections get a moment to end), stops the router (running
    /// turns get `settings.shutdown_grace`) and removes `server.json`.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.http.await;
        if let Some(task) = self.stdio {
            let _ = task.await;
        }
        self.router.set_mcp_endpoint(None, None);
        self.router.shutdown().await;
        if let Some(path) = self.state_file {
            remove_state_file(&path);
        }
    }
}

/// The MCP endpoint a command without a server (`switchboard tell`, `wake`, ...) serves to the
/// agents it spawns, for as long as it runs: on 127.0.0.1 (a free port), guarded by a random
/// bearer token that only those agents' MCP configs carry, answering only callers with an
/// agent token (so every tell is chained to the tell the agent is answering). No `server.json`:
/// other commands do not go through it.
#[derive(Debug)]
pub struct AgentEndpoint {
    url: String,
    token: String,
    router: Router,
    stop: CancellationToken,
    http: JoinHandle<()>,
}

/// Starts an [`AgentEndpoint`] for `router` and points the router's spawned agents at it.
pub async fn start_agent_endpoint(router: &Router) -> Result<AgentEndpoint, McpError> {
    let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|source| McpError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| McpError::Bind { addr: bind, source })?;
    let url = endpoint_url(addr);
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let stop = CancellationToken::new();
    let endpoint = Endpoint {
        token: Some(token.clone()),
        loopback: true,
        port: addr.port(),
        url: url.clone(),
        started_at_ms: now_ms(),
        agents_only: true,
    };
    let state = Arc::new(HttpState::new(
        router.clone(),
        Arc::new(Metrics::default()),
        endpoint,
        stop.child_token(),
    ));
    let http = tokio::spawn(http::serve(listener, state, stop.child_token()));
    router.set_mcp_endpoint(Some(url.clone()), Some(token.clone()));
    tracing::debug!(%url, "serving MCP to spawned agents");
    Ok(AgentEndpoint {
        url,
        token,
        router: router.clone(),
        stop,
        http,
    })
}

impl AgentEndpoint {
    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bearer token every request needs (in the spawned agents' MCP configs).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Stops serving; agents started from now on get no Switchboard tools. Call after the
    /// router's agents are stopped (they may be waiting on a tool call until then).
    pub async fn shutdown(self) {
        self.router.set_mcp_endpoint(None, None);
        self.stop.cancel();
        let _ = self.http.await;
    }
}

/// `http://HOST:PORT/mcp` for a bound address; an unspecified address (0.0.0.0, ::) is
/// reached through loopback.
pub fn endpoint_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}{MCP_PATH}", SocketAddr::new(ip, addr.port()))
}

/// Where `server.json` goes: beside the database file (none for an in-memory database).
pub fn state_file_path(router: &Router) -> Option<PathBuf> {
    server_file::path_for(&router.manager().config().database)
}

/// Announces this server in `server.json`. A stdio server leaves a live HTTP server's
/// announcement alone (commands should keep going through the long-lived server).
fn write_state_file(router: &Router, file: &ServerFile) -> Option<PathBuf> {
    let path = state_file_path(router)?;
    if file.transport == "stdio" {
        let db = &router.manager().config().database;
        if ServerFile::live_for(db).is_some_and(|f| f.transport == "http") {
            return None;
        }
    }
    match file.write(&path) {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the server file; other commands will not find this server");
            None
        }
    }
}

/// Claims the database outside its folder, so that commands refuse to create a new one there
/// even in the moment after the folder is deleted (before [`watch_database`] notices).
fn claim_database(
    db: &crate::config::DatabaseConfig,
    url: &str,
) -> Option<crate::store::DatabaseClaim> {
    if db.in_memory {
        return None;
    }
    crate::store::DatabaseClaim::acquire(&db.path, url)
        .inspect_err(|e| tracing::warn!(database = %db.path.display(), error = %e, "cannot claim the database in the runtime folder; a deleted data folder is noticed only by the periodic check"))
        .ok()
}

/// How often the server checks that its database file is still the one it opened.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Checks the database file every [`WATCH_EVERY`]; once it is deleted or replaced, logs it
/// and writes `server.json` again (making the folder if it was deleted) with
/// `database_lost`, so that commands refuse to create a new database where this server
/// serves one. Tells are refused by the store itself, whatever this task sees.
async fn watch_database(
    router: Router,
    path: PathBuf,
    mut announced: ServerFile,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let problem = router
            .manager()
            .store()
            .check_file()
            .err()
            .map(|e| e.to_string());
        if problem == announced.database_lost {
            continue;
        }
        match &problem {
            Some(p) => {
                tracing::error!(problem = %p, "the database file changed under the server; tells are refused")
            }
            None => tracing::warn!("the database file is back; serving again"),
        }
        announced.database_lost = problem;
        // Only while the file is still ours (a later server may have taken it over).
        let ours = ServerFile::read(&path).is_none_or(|f| f.pid == announced.pid);
        if ours {
            if let Err(e) = announced.write(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot rewrite the server file");
            }
        }
    }
}

/// Removes `server.json` if it still names this process (another server may have replaced it).
fn remove_state_file(path: &std::path::Path) {
    ServerFile::remove_if_ours(path);
}

/// Who listens on `addr` when binding it failed: asks `GET /status` there (through loopback,
/// with this server's token if any). `Some` only when a Switchboard server answers.
async fn who_listens(addr: SocketAddr, token: Option<&str>) -> Option<McpError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(target).await.ok()?;
        let mut request =
            format!("GET /status HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n");
        if let Some(t) = token {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.take(1 << 20).read_to_end(&mut raw).await.ok()?;
        let start = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        serde_json::from_slice::<serde_json::Value>(&raw[start..]).ok()
    };
    let status = tokio::time::timeout(std::time::Duration::from_secs(3), ask)
        .await
        .ok()
        .flatten()?;
    Some(McpError::PortTaken {
        addr,
        pid: u32::try_from(status.get("pid")?.as_u64()?).ok()?,
        url: status.get("url")?.as_str()?.to_string(),
        database: status.get("database")?.as_str()?.to_string(),
    })
}
