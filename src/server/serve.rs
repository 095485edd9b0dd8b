//! The server as a library function: [`run`] recovers the open tells and serves until a
//! signal (or, on stdio, until the client leaves), then shuts the router down; [`start`]
//! returns a [`ServerHandle`] for tests that boot the server in-process.
//!
//! Both transports also listen on HTTP: `--http ADDR` on ADDR, stdio on `127.0.0.1:0`, so the
//! agents Switchboard spawns can call back (the router gets the URL via
//! [`Router::set_mcp_endpoint`]). While serving, `<database folder>/server.json` says
//! `{pid, process_started_at, url, started_at, transport, auth, socket}` so other commands can
//! find the server.
//!
//! Every TCP listener has a bearer token: `--http`'s and the stdio server's helper listener
//! alike. It is `$SWITCHBOARD_TOKEN`, else `[server] auth_token`, else the one kept in
//! `server.token` beside the database (generated on first start, 0600); only
//! `[server] require_token = false` on a loopback address serves without one. The CLI does not
//! need it: it talks to the server over a Unix socket in a 0700 folder (`run/<pid>.sock`),
//! which only processes of the same user may use (peer credentials are checked too).

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
    token: Option<String>,
    router: Router,
    stop: CancellationToken,
    http: JoinHandle<()>,
    stdio: Option<JoinHandle<Result<(), McpError>>>,
    state_file: Option<PathBuf>,
    socket: Option<PathBuf>,
    /// The claim on the database outside its folder (given back when dropped).
    _claim: Option<crate::store::DatabaseClaim>,
}

/// Recovers the database's open tells (queued ones are delivered, see [`Router::recover`]),
/// serves until a signal arrives (or the stdio client leaves), then stops the router: running
/// turns get `settings.shutdown_grace`, agents are stopped, leases given back.
///
/// Recovery runs once the server has its address and before it answers a request: a server
/// that cannot start (another one serves the database already, a bad token, a taken port)
/// touches no tell and starts no agent, and the agents recovery starts get the server's MCP
/// endpoint. A signal that comes while the server starts is acted on once it listens, and one
/// that came before recovery skips it (the tells stay for the next process).
pub async fn run(router: Router, mut options: ServeOptions) -> Result<(), McpError> {
    // The handlers first: a signal that came before the wait below was first polled took its
    // default action (killed the server, the agents recovery started left behind) instead of
    // stopping it.
    let mut watch = options.signals.watch_or_warn();
    let ready = options.ready.take();
    let mut early = None;
    let started = start_with(router.clone(), options, |router, url| {
        router.set_mcp_endpoint(Some(url.to_string()));
        early = watch.try_recv();
        if early.is_none() {
            router.recover(None)?;
        }
        Ok(())
    })
    .await;
    let mut handle = match started {
        Ok(handle) => handle,
        Err(e) => {
            router.shutdown().await;
            return Err(e);
        }
    };
    if let Some(tx) = ready {
        let _ = tx.send(handle.addr());
    }
    let result = match early {
        Some(sig) => {
            tracing::info!(
                signal = sig,
                "shutting down (the signal came while starting)"
            );
            Ok(())
        }
        None => tokio::select! {
            r = handle.finished() => r,
            sig = watch.recv() => {
                tracing::info!(signal = sig, "shutting down");
                Ok(())
            }
        },
    };
    handle.shutdown().await;
    result
}

/// Starts serving and returns at once (the stdio handshake runs in the background).
pub async fn start(router: Router, options: ServeOptions) -> Result<ServerHandle, McpError> {
    start_with(router, options, |_, _| Ok(())).await
}

/// [`start`], with `ready` run once the address is bound (given its URL) and before any
/// request is answered; its error ends the start.
async fn start_with(
    router: Router,
    mut options: ServeOptions,
    ready: impl FnOnce(&Router, &str) -> Result<(), McpError>,
) -> Result<ServerHandle, McpError> {
    let config = Arc::clone(router.manager().config());
    let loopback = match &options.transport {
        Transport::Stdio { .. } => true,
        Transport::Http { addr } => addr.ip().is_loopback(),
    };
    let token = match options
        .auth_token
        .take()
        .or_else(|| config.server.auth_token.clone())
    {
        Some(t) => Some(t),
        // A public address needs a token chosen on purpose (refused below).
        None if !loopback || !config.server.require_token => None,
        None => Some(match server_file::load_or_create_token(&config.database) {
            Ok(Some(t)) => t,
            // An in-memory database has no folder: a token for this run only.
            Ok(None) => server_file::new_token(),
            Err(source) => {
                return Err(McpError::File {
                    path: server_file::token_path_for(&config.database)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    source,
                })
            }
        }),
    };
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
    ready(&router, &url)?;
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
    let socket = bind_socket(&config.database).and_then(|(path, unix)| {
        serve_socket(unix, Arc::clone(&state), stop.child_token()).then_some(path)
    });
    let state_for_socket = Arc::clone(&state);
    let http = tokio::spawn(http::serve(
        http::Listener::Tcp(listener),
        state,
        stop.child_token(),
    ));
    router.set_mcp_endpoint(Some(url.clone()));
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
        socket: socket.clone(),
    };
    let claim = claim_database(&config.database, &url);
    let state_file = write_state_file(&router, &announced);
    if let Some(path) = &state_file {
        let (state, child) = (Arc::clone(&state_for_socket), stop.child_token());
        // The CLI's socket goes with the folder: made again when the folder is.
        let rebind = move |db: &crate::config::DatabaseConfig| {
            let (path, unix) = bind_socket(db)?;
            serve_socket(unix, Arc::clone(&state), child.child_token()).then_some(path)
        };
        tokio::spawn(watch_database(
            router.clone(),
            path.clone(),
            announced,
            stop.child_token(),
            rebind,
        ));
    }
    tracing::info!(%url, transport, "serving MCP");
    Ok(ServerHandle {
        addr,
        url,
        token,
        router,
        stop,
        http,
        stdio,
        state_file,
        socket,
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

    /// The Unix socket the CLI uses, if one could be made (none for an in-memory database).
    pub fn socket(&self) -> Option<&std::path::Path> {
        self.socket.as_deref()
    }

    /// Whether TCP requests need a bearer token (they do unless `[server] require_token =
    /// false` on loopback).
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
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
        self.router.set_mcp_endpoint(None);
        self.router.shutdown().await;
        if let Some(path) = self.state_file {
            remove_state_file(&path);
        }
        if let Some(path) = self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Serves `state` on the Unix socket `unix` until `stop`; `false` (logged) when tokio cannot
/// take the listener.
fn serve_socket(
    unix: std::os::unix::net::UnixListener,
    state: Arc<HttpState>,
    stop: CancellationToken,
) -> bool {
    match tokio::net::UnixListener::from_std(unix) {
        Ok(unix) => {
            tokio::spawn(http::serve(http::Listener::Unix(unix), state, stop));
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve the Unix socket; commands will use TCP with the token");
            false
        }
    }
}

/// Removes `<pid>.sock` files of `dir` whose process is gone, or is this one (left by an
/// earlier process with the same pid).
fn remove_stale_sockets(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "sock") {
            continue;
        }
        let pid = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u32>().ok());
        let gone = pid.is_some_and(|pid| {
            pid == std::process::id()
                || !(crate::util::ProcessIdentity { pid, started_at: 0 }).is_alive()
        });
        if gone {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Binds the server's Unix socket, `run/<pid>.sock` beside the database, in a folder made (or
/// tightened to) 0700 and owned by this user; the socket itself is 0600. `None` (logged) when
/// it cannot be made: the CLI then uses TCP with the token.
fn bind_socket(
    db: &crate::config::DatabaseConfig,
) -> Option<(PathBuf, std::os::unix::net::UnixListener)> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = server_file::socket_dir_for(db)?;
    let path = dir.join(format!("{}.sock", std::process::id()));
    let made = (|| -> Result<std::os::unix::net::UnixListener, String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| e.to_string())?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != me {
            return Err(format!(
                "{} is not a folder of this user (owner uid {})",
                dir.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
            tracing::warn!(dir = %dir.display(), "the socket folder was open to others; now 0700");
        }
        // Sockets left by servers that are gone (this pid's included: an earlier process).
        remove_stale_sockets(&dir);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(listener)
    })();
    match made {
        Ok(listener) => Some((path, listener)),
        Err(problem) => {
            tracing::warn!(%problem, "no Unix socket for the CLI; commands will use TCP with the token");
            None
        }
    }
}

/// The MCP endpoint a command without a server (`switchboard tell`, `wake`, ...) serves to the
/// agents it spawns, for as long as it runs: on 127.0.0.1 (a free port), guarded by a random
/// bearer token that nobody is given, answering only callers with an agent token (their only
/// credential; every tell is chained to the tell the agent is answering). No `server.json`:
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
    let token = server_file::new_token();
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
    let http = tokio::spawn(http::serve(
        http::Listener::Tcp(listener),
        state,
        stop.child_token(),
    ));
    router.set_mcp_endpoint(Some(url.clone()));
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
        self.router.set_mcp_endpoint(None);
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
/// serves one (and binds the CLI's socket again when it went with the folder, so that
/// commands still reach this server and hear what happened). Tells are refused by the store
/// itself, whatever this task sees.
async fn watch_database(
    router: Router,
    path: PathBuf,
    mut announced: ServerFile,
    stop: CancellationToken,
    rebind: impl Fn(&crate::config::DatabaseConfig) -> Option<PathBuf>,
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
            if announced.socket.as_ref().is_some_and(|s| !s.exists()) {
                announced.socket = rebind(&router.manager().config().database);
            }
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
        let head = String::from_utf8_lossy(&raw[..start]).to_ascii_lowercase();
        // Another Switchboard server, whose token is not ours (another database's).
        if head.starts_with("http/1.1 401") && head.contains("realm=\"switchboard\"") {
            return Some(None);
        }
        serde_json::from_slice::<serde_json::Value>(&raw[start..])
            .ok()
            .map(Some)
    };
    let status = match tokio::time::timeout(std::time::Duration::from_secs(3), ask)
        .await
        .ok()
        .flatten()?
    {
        Some(status) => status,
        None => return Some(McpError::PortTakenByOther { addr }),
    };
    Some(McpError::PortTaken {
        addr,
        pid: u32::try_from(status.get("pid")?.as_u64()?).ok()?,
        url: status.get("url")?.as_str()?.to_string(),
        database: status.get("database")?.as_str()?.to_string(),
    })
}
