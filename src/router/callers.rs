//! Who is telling: a team, or an agent Switchboard spawned (named by a per-session token in
//! the MCP config it is given). An agent's tells are chained to the tell it is answering; the
//! chain is bounded (`settings.max_hops`) and may not come back to a team waiting in it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Caller, Router, RouterError, RouterResult, Wait};
use crate::agent::adapter::{AgentAdapter, LaunchExtras, SwitchboardServer};
use crate::config::TeamConfig;
use crate::store::{Tell, TellKind};

/// The name of Switchboard's server in the MCP config of spawned agents: their tools are
/// `mcp__switchboard__team_tell`, ...
pub const MCP_SERVER_NAME: &str = crate::agent::claude_mcp::SERVER_NAME;

/// How long a spawned agent waits for one of Switchboard's tools: longer than the longest
/// `team_tell` wait (one hour).
pub const AGENT_TOOL_TIMEOUT_MS: u64 = 3_700_000;

/// Writes a file only the user can read (it holds tokens).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    crate::private_fs::write(path, data)
}

impl Router {
    /// Tells spawned agents where the MCP server is (`url` of its `/mcp` endpoint, and the
    /// bearer token HTTP requests need, if any). Agents started from now on get a per-session
    /// MCP config naming them; `None` stops that.
    pub fn set_mcp_endpoint(&self, url: Option<String>, bearer: Option<String>) {
        let mut mcp = self.lock_mcp();
        mcp.url = url;
        mcp.bearer = bearer;
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
        let tell = self.submit_as(caller, to, text)?;
        self.wait_for(&tell.tell_id, wait).await
    }

    /// Stores a tell from `caller` and returns at once (see [`Router::tell_as`]).
    pub fn submit_as(&self, caller: &Caller, to: &str, text: &str) -> RouterResult<Tell> {
        self.submit_as_keyed(caller, to, text, None)
    }

    /// [`Router::submit_as`] with the caller's idempotency key (see
    /// [`super::TellOptions::idempotency_key`]).
    pub fn submit_as_keyed(
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
    /// an MCP endpoint set, Switchboard's server with a token naming the session; and the
    /// team's own other servers (`mcp_servers`), never a registration of Switchboard itself.
    pub(crate) fn agent_launch_extras(
        &self,
        adapter: &dyn AgentAdapter,
        team: &TeamConfig,
        session_id: &str,
    ) -> RouterResult<LaunchExtras> {
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
                    let mut headers = BTreeMap::new();
                    headers.insert("X-Switchboard-Agent".to_string(), token);
                    if let Some(b) = &mcp.bearer {
                        headers.insert("Authorization".to_string(), format!("Bearer {b}"));
                    }
                    Some(SwitchboardServer {
                        url,
                        headers,
                        timeout_ms: AGENT_TOOL_TIMEOUT_MS,
                    })
                }
            }
        };
        let config = adapter
            .mcp_config(team, server.as_ref())
            .map_err(|e| RouterError::Agent(format!("team {}: {e}", team.name)))?;
        let Some(config) = config else {
            return Ok(LaunchExtras::default());
        };
        let dir = self
            .inner
            .log_dir
            .parent()
            .map(|p| p.join("mcp"))
            .unwrap_or_else(|| PathBuf::from("mcp"));
        let path = dir.join(format!("{session_id}.json"));
        write_private(&path, config.to_string().as_bytes())
            .map_err(|e| RouterError::Agent(format!("cannot write {}: {e}", path.display())))?;
        Ok(LaunchExtras {
            mcp_config: Some(path),
            switchboard_tools: server.is_some(),
        })
    }
}
