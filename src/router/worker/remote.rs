//! Remote teams (a team with `remote`): the router's SSH transport, starting a pair's agent on
//! the team's host, the process group recorded with the session (stopped before the next
//! spawn when a broken connection kept it from being stopped), the start-up sweep of agents a
//! dead Switchboard left on the hosts, and closing the control connections at shutdown.
//! The SSH specifics are `agent::ssh`'s; this is only where the lifecycle calls them.

use std::path::Path;
use std::time::Duration;

use super::{Worker, KILL_GRACE};
use crate::agent::adapter::{AgentAdapter, LaunchExtras, LaunchSpec};
use crate::agent::session::AgentSession;
use crate::agent::ssh::launch::{self, Owner, RemoteIdentity};
use crate::agent::ssh::{mcp, ops, Host, Transport};
use crate::config::TeamConfig;
use crate::router::callers::AgentCredential;
use crate::router::{Router, RouterError, RouterResult};
use crate::store::Session;

/// How long the start-up sweep of one host may take (a host that is down must not hold
/// anything up: the sweep runs in the background anyway).
const LEFTOVER_SWEEP_TIMEOUT: Duration = Duration::from_secs(60);

impl Router {
    /// The router's SSH transport (its control sockets in a folder of its own, see
    /// [`Transport::for_process`]), made on first use.
    pub(crate) fn ssh(&self) -> RouterResult<Transport> {
        if let Some(t) = self.inner.ssh.get() {
            return Ok(t.clone());
        }
        let made = Transport::for_process()
            .map_err(|e| RouterError::Agent(format!("cannot use SSH: {e}")))?;
        // Made by two callers at once: one wins, the other's (empty) folder goes.
        if let Err(lost) = self.inner.ssh.set(made) {
            lost.remove_socket_dir();
        }
        self.inner
            .ssh
            .get()
            .cloned()
            .ok_or_else(|| RouterError::Agent("cannot use SSH: no transport".into()))
    }

    /// The distinct hosts of the config's remote teams.
    fn remote_hosts(&self) -> Vec<Host> {
        let mut hosts: Vec<Host> = Vec::new();
        for team in self.manager().config().teams.values() {
            if let Some(Ok(host)) = ops::team_host(team) {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
        hosts
    }

    /// At start-up, in the background: on every remote team's host, stops the agents that a
    /// Switchboard process of this machine that is gone (killed, crashed) left running there
    /// (found by the marker in their environment), TERM then KILL. Each host within
    /// [`LEFTOVER_SWEEP_TIMEOUT`]; a host that is down is logged, never waited for.
    pub(crate) fn stop_remote_leftovers(&self) {
        let hosts = self.remote_hosts();
        if hosts.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let transport = match self.ssh() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for agents left on remote hosts");
                return;
            }
        };
        for host in hosts {
            let transport = transport.clone();
            rt.spawn(async move {
                let sweep =
                    launch::stop_leftovers(&transport, &host, Owner::is_dead_here, KILL_GRACE);
                match tokio::time::timeout(LEFTOVER_SWEEP_TIMEOUT, sweep).await {
                    Ok(Ok(stopped)) if stopped.is_empty() => {
                        tracing::debug!(%host, "no agents left on the remote host")
                    }
                    Ok(Ok(stopped)) => {
                        for a in &stopped {
                            tracing::info!(%host, pid = a.group.pid, session = %a.session_id,
                                owner_pid = a.owner.process.pid,
                                "stopped an agent a Switchboard that is gone left on the remote host");
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%host, error = %e, "cannot look for agents left on the remote host")
                    }
                    Err(_) => tracing::warn!(%host, timeout = ?LEFTOVER_SWEEP_TIMEOUT,
                        "looking for agents left on the remote host took too long; gave up"),
                }
            });
        }
    }

    /// At shutdown, after the agents stopped: closes the control connection of every remote
    /// host (`ssh -O exit`) and removes the socket folder.
    pub(crate) async fn disconnect_remote_hosts(&self) {
        let Some(transport) = self.inner.ssh.get() else {
            return;
        };
        for host in self.remote_hosts() {
            transport.disconnect(&host).await;
        }
        transport.remove_socket_dir();
    }

    /// THE HOOK for the chained MCP tools of a remote agent: Switchboard's `switchboard` MCP
    /// server, reached from the remote host through the stdio bridge (`switchboard
    /// mcp-bridge` there) over a Unix socket forwarded on the host's control connection (see
    /// [`crate::agent::ssh::mcp`] and docs/remote.md). A remote agent must never be pointed at
    /// a local MCP config file (that path does not exist on its host), so [`Worker::spawn`]
    /// calls this, and only this, for a remote team instead of
    /// [`Router::agent_launch_extras`].
    ///
    /// With an MCP endpoint set: a new credential of the session (the same one a local agent
    /// gets, [`Router::agent_server`]), written to a 0600 file on the host through ssh's
    /// stdin, the forward, and the inline MCP config, all kept in the returned credential
    /// ([`AgentCredential::apply`] puts the config into the launch; [`AgentCredential::close`]
    /// takes it down). `None` when no endpoint is set: the agent gets no MCP config at all,
    /// as a local one. Remote teams run Claude Code (`config::validate::REMOTE_KINDS`), the
    /// kind whose launch takes the inline config.
    pub(crate) async fn remote_mcp_wiring(
        &self,
        adapter: &dyn AgentAdapter,
        team: &TeamConfig,
        host: &Host,
        session_id: &str,
    ) -> RouterResult<Option<(LaunchExtras, AgentCredential)>> {
        let _ = adapter;
        let (server, mut credential) = self.agent_server(session_id);
        let Some(server) = server else {
            return Ok(None);
        };
        let transport = self.ssh()?;
        let wiring = mcp::remote_mcp_wiring(
            &transport,
            host,
            session_id,
            &server,
            team.switchboard_path.as_deref(),
        )
        .await
        .map_err(|e| RouterError::Agent(format!("team {}: {e}", team.name)))?;
        credential.keep_remote(wiring);
        Ok(Some((
            LaunchExtras {
                mcp_config: None,
                switchboard_tools: true,
                switchboard: Some(server),
                data_dir: self.data_dir(),
            },
            credential,
        )))
    }
}

impl super::Live {
    /// Gives everything of a stopped agent back, the process and its pool slot first, then
    /// its credential (a remote agent's forward and credential file taken down there,
    /// awaited).
    pub(super) async fn release(self) {
        let super::Live {
            proc,
            _slot,
            _credential,
            ..
        } = self;
        drop(proc);
        drop(_slot);
        _credential.close().await;
    }
}

impl Worker {
    /// The launch extras of a remote team's agent: what [`Router::remote_mcp_wiring`] gives,
    /// or nothing (no MCP config).
    pub(super) async fn remote_extras(
        &self,
        adapter: &dyn AgentAdapter,
        team: &TeamConfig,
        host: &Host,
        session_id: &str,
    ) -> RouterResult<(LaunchExtras, AgentCredential)> {
        Ok(self
            .router
            .remote_mcp_wiring(adapter, team, host, session_id)
            .await?
            .unwrap_or_else(|| (LaunchExtras::default(), AgentCredential::none(&self.router))))
    }

    /// Starts the session's agent on the team's host: first stops the group recorded with the
    /// session (an agent whose connection broke may still run there), then spawns over SSH and
    /// records the new group.
    pub(super) async fn spawn_remote(
        &self,
        adapter: &'static dyn AgentAdapter,
        team: &TeamConfig,
        host: &Host,
        spec: &LaunchSpec,
        log: &Path,
        session: &Session,
    ) -> RouterResult<AgentSession> {
        let transport = self.router.ssh()?;
        let m = self.router.manager();
        let named =
            |e: &dyn std::fmt::Display| RouterError::Agent(format!("team {}: {e}", team.name));
        if let Some(rec) = m.remote_agent(&session.session_id)? {
            let group = RemoteIdentity {
                pid: rec.pid,
                pgid: rec.pid,
                start: rec.start,
            };
            if rec.host == host.destination {
                // The same host: the new agent starts only once the old one is known gone.
                let done = launch::stop_group(&transport, host, group, KILL_GRACE)
                    .await
                    .map_err(|e| named(&e))?;
                tracing::info!(pair = %self.pair(), %host, pid = rec.pid, done,
                    "stopped the remote agent recorded with the session before starting another");
            } else {
                // The team moved to another host: stop it on the old one if that is reachable
                // (with ssh_config's settings for it), never wait for it.
                let old = Host::new(&rec.host, Vec::new());
                let done = match old {
                    Ok(old) => launch::stop_group(&transport, &old, group, KILL_GRACE)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                tracing::info!(pair = %self.pair(), old_host = %rec.host, pid = rec.pid, ?done,
                    "the team moved to another host; stopped what was recorded on the old one");
            }
            m.clear_remote_agent(&session.session_id)?;
        }
        let marker = Owner::current().marker(&session.session_id);
        let timeout = m.config().settings.spawn_timeout;
        let mut proc =
            AgentSession::spawn_remote(adapter, spec, log, &transport, host, &marker, timeout)
                .await
                .map_err(|e| named(&e))?;
        if let Some(link) = proc.remote() {
            let recorded = m.set_remote_agent(
                &session.session_id,
                &host.destination,
                link.identity.pid,
                link.identity.start,
            );
            if let Err(e) = recorded {
                // An agent nobody recorded could outlive a broken connection unseen: stop it.
                proc.kill().await;
                return Err(e.into());
            }
        }
        Ok(proc)
    }

    /// For a remote team (else `None`): whether its agent can resume the session, asked on
    /// the team's host (the transcript lives there).
    pub(super) async fn remote_can_resume(
        &self,
        team: &TeamConfig,
        session: &Session,
    ) -> Option<RouterResult<bool>> {
        let host = ops::team_host(team)?;
        Some(
            async {
                let named = |e: &dyn std::fmt::Display| {
                    RouterError::Agent(format!("team {}: {e}", team.name))
                };
                let host = host.map_err(|e| named(&e))?;
                let transport = self.router.ssh()?;
                ops::team_can_resume(
                    &transport,
                    &host,
                    team,
                    &session.session_id,
                    session.agent_session_id.as_deref(),
                )
                .await
                .map_err(|e| named(&e))
            }
            .await,
        )
    }

    /// After a remote agent was stopped or killed: forgets the group recorded with the session
    /// when the stop there succeeded (else it stays, and is stopped before the next spawn).
    pub(super) fn forget_remote(&self, session_id: &str, proc: &AgentSession) {
        if proc.remote().is_some() && proc.remote_stopped() {
            if let Err(e) = self.router.manager().clear_remote_agent(session_id) {
                tracing::warn!(pair = %self.pair(), error = %e, "cannot forget the remote agent");
            }
        }
    }
}
