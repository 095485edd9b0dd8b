//! Who is telling: a team, or an agent Switchboard spawned (named by a per-session token in
//! the MCP config it is given). An agent's tells are chained to the tell it is answering; the
//! chain is bounded (`settings.max_hops`) and may not come back to a team waiting in it.
//!
//! An agent's token is its only credential: the server's master token is never in its MCP
//! config. The token names one agent process: a new one is made at each start, and
//! [`AgentCredential`] revokes it and deletes the config file when that process is gone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Weak;

use super::{Caller, Inner, Router, RouterError, RouterResult, Wait};
use crate::agent::adapter::{AgentAdapter, LaunchExtras, LaunchSpec, SwitchboardServer};
use crate::agent::ssh::mcp::RemoteMcp;
use crate::config::TeamConfig;
use crate::store::{Tell, TellKind};

/// The name of Switchboard's server in the MCP config of spawned agents: their tools are
/// `mcp__switchboard__team_tell`, ...
pub const MCP_SERVER_NAME: &str = crate::agent::claude_mcp::SERVER_NAME;

/// How long a spawned agent waits for one of Switchboard's tools: longer than the longest
/// `team_tell` wait (one hour).
pub const AGENT_TOOL_TIMEOUT_MS: u64 = 3_700_000;

/// How long taking down a remote agent's MCP forward may take (see [`AgentCredential::close`]).
const REMOTE_CLOSE_BOUND: std::time::Duration = std::time::Duration::from_secs(6);

/// Writes a file only the user can read (it holds tokens).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    crate::private_fs::write(path, data)
}

/// The credential of one spawned agent process: its token (known to the router) and the MCP
/// config file that carries it. Dropped when the process is gone (stopped, crashed, never
/// started): the token stops working and the file is deleted.
#[derive(Debug)]
pub(crate) struct AgentCredential {
    router: Weak<Inner>,
    token: Option<String>,
    file: Option<PathBuf>,
    /// A remote agent's end of its tools: the forwarded socket and the credential file on
    /// its host (see `worker/remote.rs`), taken down by [`AgentCredential::close`].
    remote: Option<RemoteMcp>,
}

impl AgentCredential {
    /// No credential: an agent that gets no MCP wiring from this router.
    pub(crate) fn none(router: &Router) -> Self {
        Self {
            router: std::sync::Arc::downgrade(&router.inner),
            token: None,
            file: None,
            remote: None,
        }
    }

    /// Keeps a remote agent's MCP wiring with its credential (one lifetime: the agent's).
    pub(crate) fn keep_remote(&mut self, remote: RemoteMcp) {
        self.remote = Some(remote);
    }

    /// Hands a remote agent's MCP wiring to its launch (Claude Code's inline `--mcp-config`
    /// running the bridge there, in place of a local file). A local agent's launch is left
    /// as it is.
    pub(crate) fn apply(&self, spec: &mut LaunchSpec) {
        if let Some(remote) = &self.remote {
            remote.apply(spec);
        }
    }

    /// Revokes the credential and takes a remote agent's forward and credential file down
    /// (awaited: a later start of the same session sets up the same socket, which a late
    /// take-down in the background would remove). Dropping does the same, the remote part in
    /// the background.
    /// Bounded ([`REMOTE_CLOSE_BOUND`]): a host that does not answer (the connection broke)
    /// must not hold up a tell's error or a shutdown; the forward ended with the connection,
    /// and the credential in the file left there no longer works.
    pub(crate) async fn close(mut self) {
        if let Some(remote) = self.remote.take() {
            match tokio::time::timeout(REMOTE_CLOSE_BOUND, remote.guard.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot take down a remote agent's MCP forward")
                }
                Err(_) => tracing::warn!(
                    timeout = ?REMOTE_CLOSE_BOUND,
                    "taking down a remote agent's MCP forward took too long; gave up"
                ),
            }
        }
    }
}

impl Drop for AgentCredential {
    fn drop(&mut self) {
        if let (Some(token), Some(inner)) = (self.token.take(), self.router.upgrade()) {
            let router = Router { inner };
            router.lock_mcp().tokens.remove(&token);
        }
        if let Some(file) = self.file.take() {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %file.display(), error = %e, "cannot remove an agent's MCP config")
                }
            }
        }
    }
}

impl Router {
    /// Tells spawned agents where the MCP server is (`url` of its `/mcp` endpoint). Agents
    /// started from now on get a per-session MCP config naming them with their own token (never
    /// the server's bearer token); `None` stops that.
    pub fn set_mcp_endpoint(&self, url: Option<String>) {
        self.lock_mcp().url = url;
    }

    /// The folder of spawned agents' MCP configs (`mcp/` beside the database).
    fn agent_config_dir(&self) -> PathBuf {
        self.inner
            .log_dir
            .parent()
            .map(|p| p.join("mcp"))
            .unwrap_or_else(|| PathBuf::from("mcp"))
    }

    /// Deletes the MCP configs left by agents no live Switchboard process runs (a process
    /// that was killed, or a version that kept them): a session of this database not held by
    /// a live process has no live agent. Files of other databases' sessions are left alone.
    pub(crate) fn remove_stale_agent_configs(&self) {
        let m = &self.inner.manager;
        if m.config().database.in_memory {
            return; // the folder may be another database's
        }
        let Ok(entries) = std::fs::read_dir(self.agent_config_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(session_id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let stale = match m.get_by_id(session_id) {
                Ok(Some(s)) => !s.owner().is_some_and(|o| o.is_alive()),
                _ => false,
            };
            if stale {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed the MCP config of an agent that is gone")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale agent MCP config")
                    }
                }
            }
        }
    }

    /// Whether `token` is the credential of a live spawned agent of this router.
    pub fn is_agent_token(&self, token: &str) -> bool {
        self.lock_mcp().tokens.contains_key(token)
    }

    /// The caller that a spawned agent's token names, if the token is one of ours.
    pub fn caller_from_agent_token(&self, token: &str) -> Option<Caller> {
        self.lock_mcp()
            .tokens
            .get(token)
            .map(|session_id| Caller::Agent {
                session_id: session_id.clone(),
            })
    }

    /// The team a caller acts as.
    pub fn caller_team(&self, caller: &Caller) -> RouterResult<String> {
        Ok(self.resolve_caller(caller)?.0)
    }

    /// The caller's team and the tell it is working on (for an agent: its session's current
    /// tell).
    fn resolve_caller(&self, caller: &Caller) -> RouterResult<(String, Option<String>)> {
        let m = &self.inner.manager;
        match caller {
            Caller::Team(team) => {
                m.check_team(team)?;
                Ok((team.clone(), None))
            }
            Caller::Agent { session_id } => {
                let s = m.get_by_id(session_id)?.ok_or_else(|| {
                    RouterError::UnknownCaller(format!("session {session_id} no longer exists"))
                })?;
                Ok((s.to_team.clone(), s.current_tell_id.clone()))
            }
        }
    }

    /// A tell from `caller` to team `to` (see [`Router::tell`]). An agent's tell is chained to
    /// the tell its session is answering: a chain longer than `settings.max_hops`, or one that
    /// comes back to a team that is waiting in it, is refused.
    pub async fn tell_as(
        &self,
        caller: &Caller,
        to: &str,
        text: &str,
        wait: Wait,
    ) -> RouterResult<Tell> {
        let tell = self.submit_as(caller, to, text).await?;
        self.wait_for(&tell.tell_id, wait).await
    }

    /// Stores a tell from `caller` and returns at once (see [`Router::tell_as`]).
    pub async fn submit_as(&self, caller: &Caller, to: &str, text: &str) -> RouterResult<Tell> {
        self.submit_as_keyed(caller, to, text, None).await
    }

    /// [`Router::submit_as`] with the caller's idempotency key (see
    /// [`super::TellOptions::idempotency_key`]).
    pub async fn submit_as_keyed(
        &self,
        caller: &Caller,
        to: &str,
        text: &str,
        idempotency_key: Option<&str>,
    ) -> RouterResult<Tell> {
        let (from, parent) = self.resolve_caller(caller)?;
        if let Some(key) = idempotency_key {
            // The same request again: the tell it already made, even if its chain has moved on.
            if let Some(t) = self.inner.manager.store().tell_by_key(&from, key)? {
                if t.to_team == to && t.text == text {
                    return Ok(t);
                }
            }
        }
        if let Some(parent) = &parent {
            self.check_chain(&from, to, parent)?;
        }
        let options = super::TellOptions {
            parent_tell_id: parent.as_deref(),
            idempotency_key,
            retry_of: None,
        };
        self.submit_with(&from, to, TellKind::Tell, text, &options)
            .await
    }

    fn check_chain(&self, from: &str, to: &str, parent: &str) -> RouterResult<()> {
        let max_hops = self.inner.manager.config().settings.max_hops as usize;
        let chain = self
            .inner
            .manager
            .store()
            .tell_chain(parent, max_hops + 1)?;
        // Oldest first: A -> B -> ... -> from -> to
        let mut teams: Vec<&str> = chain.iter().rev().map(|t| t.from_team.as_str()).collect();
        teams.push(from);
        teams.push(to);
        let path = teams.join(" -> ");
        if chain.iter().any(|t| t.from_team == to) {
            return Err(RouterError::Loop(format!(
                "{path} is a loop: {to} is waiting for an answer in this chain"
            )));
        }
        if chain.len() + 1 > max_hops {
            return Err(RouterError::Loop(format!(
                "{path} is {} hops, more than settings.max_hops = {max_hops}",
                chain.len() + 1
            )));
        }
        Ok(())
    }

    /// Tells of a pair not yet answered (queued or being answered).
    pub fn queue_len(&self, from: &str, to: &str) -> usize {
        self.inner
            .manager
            .store()
            .count_open_tells(from, to)
            .map_or(0, |n| usize::try_from(n).unwrap_or(0))
    }

    /// The launch extras of a spawned agent of `session_id` in `team`: its MCP config file
    /// (`--mcp-config FILE`, with `--strict-mcp-config`), written by the adapter's rules: with
    /// an MCP endpoint set, Switchboard's server with a new token naming the session (its only
    /// credential); and the team's own other servers (`mcp_servers`), never a registration of
    /// Switchboard itself. The returned credential must live as long as the agent process.
    pub(crate) fn agent_launch_extras(
        &self,
        adapter: &dyn AgentAdapter,
        team: &TeamConfig,
        session_id: &str,
    ) -> RouterResult<(LaunchExtras, AgentCredential)> {
        let (server, mut credential) = self.agent_server(session_id);
        let config = adapter
            .mcp_config(team, server.as_ref())
            .map_err(|e| RouterError::Agent(format!("team {}: {e}", team.name)))?;
        let Some(config) = config else {
            return Ok((
                LaunchExtras {
                    switchboard: server,
                    data_dir: self.data_dir(),
                    ..LaunchExtras::default()
                },
                credential,
            ));
        };
        let path = self.agent_config_dir().join(format!("{session_id}.json"));
        credential.file = Some(path.clone());
        write_private(&path, config.to_string().as_bytes())
            .map_err(|e| RouterError::Agent(format!("cannot write {}: {e}", path.display())))?;
        Ok((
            LaunchExtras {
                mcp_config: Some(path),
                switchboard_tools: server.is_some(),
                switchboard: server,
                data_dir: self.data_dir(),
            },
            credential,
        ))
    }

    /// Switchboard's MCP server as a new agent of `session_id` reaches it, with a new token
    /// naming the session (its only credential; any earlier token of the session stops
    /// working), and that credential; `None` when no MCP endpoint is set. Local and remote
    /// agents get theirs here.
    pub(crate) fn agent_server(
        &self,
        session_id: &str,
    ) -> (Option<SwitchboardServer>, AgentCredential) {
        let mut credential = AgentCredential::none(self);
        let server = {
            let mut mcp = self.lock_mcp();
            mcp.tokens.retain(|_, s| s != session_id);
            match mcp.url.clone() {
                None => None,
                Some(url) => {
                    let token = format!(
                        "{}{}",
                        uuid::Uuid::new_v4().simple(),
                        uuid::Uuid::new_v4().simple()
                    );
                    mcp.tokens.insert(token.clone(), session_id.to_string());
                    credential.token = Some(token.clone());
                    let mut headers = BTreeMap::new();
                    headers.insert("X-Switchboard-Agent".to_string(), token);
                    Some(SwitchboardServer {
                        url,
                        headers,
                        timeout_ms: AGENT_TOOL_TIMEOUT_MS,
                    })
                }
            }
        };
        (server, credential)
    }
}
