//! The SessionManager: one persistent session per ordered pair of teams. Creates sessions on
//! demand (race-free), reads them through a TTL cache that every write invalidates, records
//! process state, usage and compaction, and answers stats. It knows neither SQL nor processes:
//! SQL is the store's, processes are the agent runtime's.

mod cache;
mod compaction;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{is_valid_team_name, TeamsConfig};
use crate::store::{
    DueQuery, EndOfTurn, ListFilter, ProcessState, Session, SessionStatus, SessionStore, Stats,
    StoreError, WriteBatcher,
};
use crate::util::{now_ms, ProcessIdentity};

use cache::SessionCache;

/// Errors of the session layer.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A team name that the teams file does not define.
    #[error("unknown team {team:?} (teams in the config: {known})")]
    UnknownTeam {
        /// The name given.
        team: String,
        /// The teams the config defines, comma-separated.
        known: String,
    },
    /// A name that cannot be a team name at all.
    #[error("invalid team name {0:?}: use 1-100 characters of A-Z a-z 0-9 _ . @ -")]
    InvalidTeamName(String),
    /// A team cannot have a session with itself.
    #[error("a team cannot open a session with itself ({0} -> {0})")]
    SelfPair(String),
    /// No such session.
    #[error("session {0} not found")]
    NotFound(String),
    /// Another live Switchboard process holds the session's agent.
    #[error("session {session} is busy: held by pid {pid}")]
    Busy {
        /// Which session (`FROM:TO`).
        session: String,
        /// The holder's pid.
        pid: u32,
    },
    /// The session is in a state that does not allow the operation.
    #[error("session {session}: {message}")]
    Conflict {
        /// Which session (`FROM:TO`).
        session: String,
        /// What is wrong.
        message: String,
    },
    /// The transcript could not be removed.
    #[error("cannot remove transcript {path}: {source}")]
    Transcript {
        /// The transcript file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The SSH transport of a remote team failed (removing a transcript there).
    #[error(transparent)]
    Ssh(#[from] crate::agent::ssh::SshError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl SessionError {
    /// Whether the database refused for a reason that can pass (see
    /// [`StoreError::is_transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, SessionError::Store(e) if e.is_transient())
    }
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                SessionError::NotFound(what.trim_start_matches("session ").to_string())
            }
            other => SessionError::Store(other),
        }
    }
}

fn check_usage(session_id: &str, input: i64, output: i64, cost: f64) -> SessionResult<()> {
    if input < 0 || output < 0 || !(cost >= 0.0 && cost.is_finite()) {
        return Err(SessionError::Conflict {
            session: session_id.to_string(),
            message: format!(
                "usage must be non-negative (input {input}, output {output}, cost {cost})"
            ),
        });
    }
    Ok(())
}

/// Result of session operations.
pub type SessionResult<T> = Result<T, SessionError>;

/// What [`SessionManager::initialize`] found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InitReport {
    /// Sessions reset to `stopped` because their owner process is gone.
    pub reset: usize,
    /// Sessions left alone because another live Switchboard process owns them.
    pub owned_by_live_process: usize,
    /// Teams whose folder no longer exists or is not a folder.
    pub missing_team_folders: Vec<String>,
}

/// The session layer over a store and the teams config.
pub struct SessionManager {
    config: Arc<TeamsConfig>,
    store: SessionStore,
    cache: SessionCache,
    me: ProcessIdentity,
    events: crate::events::EventBus,
    /// The store's batch-write thread (the turn's writes), started on first use; `None` when
    /// the thread could not be started. (With no other turn running, the `*_batched` writes
    /// below are made at once on the calling thread instead: see `WriteBatcher::turn`.)
    batcher: std::sync::OnceLock<Option<WriteBatcher>>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.store)
            .finish()
    }
}

impl SessionManager {
    /// A manager over `store` for the teams of `config`. Call [`Self::initialize`] once at
    /// start-up.
    pub fn new(config: Arc<TeamsConfig>, store: SessionStore) -> Self {
        let cache = SessionCache::new(config.settings.cache_ttl);
        let events = crate::events::EventBus::new(
            store.clone(),
            crate::events::EventLimits::from(&config.settings.events),
        );
        Self {
            config,
            store,
            cache,
            me: ProcessIdentity::current(),
            events,
            batcher: std::sync::OnceLock::new(),
        }
    }

    /// Opens the store the config names (file or in-memory) and builds a manager over it.
    pub fn open(config: Arc<TeamsConfig>) -> SessionResult<Self> {
        let store = if config.database.in_memory {
            SessionStore::open_in_memory()?
        } else {
            SessionStore::open(&config.database.path)?
        };
        Ok(Self::new(config, store))
    }

    /// Lookups of the session cache since start: (hits, misses).
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// The teams config.
    pub fn config(&self) -> &Arc<TeamsConfig> {
        &self.config
    }

    /// The event bus: publish what happens, subscribe to it live.
    pub fn events(&self) -> &crate::events::EventBus {
        &self.events
    }

    /// The store.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// Start-up: checks that every team folder still exists, and resets to `stopped` the sessions
    /// whose owner process is gone (a session owned by another live Switchboard process is left
    /// alone). Logs what it did.
    pub fn initialize(&self) -> SessionResult<InitReport> {
        let mut report = InitReport::default();
        for (name, team) in &self.config.teams {
            // A remote team's folder is on its host (`config check --remote` looks there).
            if team.remote.is_none() && !team.path.is_dir() {
                // Commands warn about it when they load the config (once, naming the key);
                // this is for the log only.
                tracing::info!(team = %name, path = %team.path.display(), "team folder is missing");
                report.missing_team_folders.push(name.clone());
            }
        }
        let reset = self.store.reset_orphaned(&|owner| owner.is_alive())?;
        for agent in &reset.orphan_agents {
            if crate::agent::process::reap_orphan_group(*agent) {
                tracing::warn!(
                    pid = agent.pid,
                    "killed an agent left by a Switchboard process that is gone"
                );
            }
        }
        if reset.reset > 0 {
            self.cache.invalidate_all();
        }
        report.reset = reset.reset;
        report.owned_by_live_process = reset.owned_by_live_process;
        tracing::info!(
            reset = report.reset,
            owned_by_live_process = report.owned_by_live_process,
            "reset sessions left by Switchboard processes that are gone"
        );
        Ok(report)
    }

    /// Checks that `name` is a team of the config.
    pub fn check_team(&self, name: &str) -> SessionResult<()> {
        if !is_valid_team_name(name) {
            return Err(SessionError::InvalidTeamName(name.to_string()));
        }
        if self.config.teams.contains_key(name) {
            return Ok(());
        }
        Err(SessionError::UnknownTeam {
            team: name.to_string(),
            known: self
                .config
                .teams
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The session of the pair, creating it if needed. Both teams must be in the config.
    /// Race-free: concurrent callers (threads or processes) get the same single session.
    /// Creating a session makes no model call and starts no process.
    pub fn get_or_create(&self, from: &str, to: &str) -> SessionResult<Arc<Session>> {
        if let Some(s) = self.cache.get(from, to) {
            return Ok(s);
        }
        self.check_team(from)?;
        self.check_team(to)?;
        if from == to {
            return Err(SessionError::SelfPair(from.to_string()));
        }
        self.cache
            .load(from, to, || {
                let new_id = uuid::Uuid::new_v4().to_string();
                let (s, created) = self.store.insert_or_get(from, to, &new_id, now_ms())?;
                if created {
                    tracing::info!(from, to, session_id = %s.session_id, "created session");
                }
                Ok(Some(s))
            })?
            .ok_or_else(|| SessionError::NotFound(format!("{from}:{to}")))
    }

    /// The session of the pair, if it exists (through the cache).
    pub fn get(&self, from: &str, to: &str) -> SessionResult<Option<Arc<Session>>> {
        if let Some(s) = self.cache.get(from, to) {
            return Ok(Some(s));
        }
        self.cache
            .load(from, to, || Ok(self.store.get_by_pair(from, to)?))
    }

    /// The session with this UUID, if it exists.
    pub fn get_by_id(&self, session_id: &str) -> SessionResult<Option<Session>> {
        Ok(self.store.get_by_session_id(session_id)?)
    }

    /// Sessions matching the filter.
    pub fn list(&self, filter: &ListFilter) -> SessionResult<Vec<Session>> {
        Ok(self.store.list(filter)?)
    }

    /// Deletes the session; with `remove_transcript`, also the agent's transcript file of it
    /// (a missing transcript is fine). Returns the deleted row.
    ///
    /// The transcript goes first: if it cannot be removed, nothing is deleted, so the command
    /// can be repeated once the problem is fixed. The pair's tells go with the session.
    pub fn delete(&self, session: &Session, remove_transcript: bool) -> SessionResult<Session> {
        // A live agent of another process would go on writing to a session that is gone.
        let current = self
            .get_by_id(&session.session_id)?
            .unwrap_or_else(|| session.clone());
        self.check_not_held_elsewhere(&current)?;
        if remove_transcript {
            if let Some(path) = self.transcript_path(session) {
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::info!(path = %path.display(), "removed transcript"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(SessionError::Transcript { path, source }),
                }
            }
        }
        self.write(|st| st.delete(&session.session_id))
    }

    /// [`SessionManager::delete`] for any team: a remote team's transcript (with
    /// `remove_transcript`) is found and removed on its host over SSH first, nothing is deleted
    /// when that fails. Returns the deleted session and, with `remove_transcript`, where the
    /// transcript was and whether there was one to remove.
    pub async fn delete_anywhere(
        &self,
        session: &Session,
        remove_transcript: bool,
    ) -> SessionResult<(Session, Option<(String, bool)>)> {
        let remote = self
            .config
            .team(&session.to_team)
            .filter(|t| t.remote.is_some())
            .cloned();
        let Some(team) = remote.filter(|_| remove_transcript) else {
            let path = remove_transcript
                .then(|| self.transcript_path(session))
                .flatten();
            let existed = path.as_ref().is_some_and(|p| p.exists());
            let deleted = self.delete(session, remove_transcript)?;
            return Ok((deleted, path.map(|p| (p.display().to_string(), existed))));
        };
        let current = self
            .get_by_id(&session.session_id)?
            .unwrap_or_else(|| session.clone());
        self.check_not_held_elsewhere(&current)?;
        let removed =
            crate::agent::ssh::ops::remove_team_transcript(&team, &session.session_id).await?;
        tracing::info!(path = %removed.0, removed = removed.1, host = ?team.remote, "removed remote transcript");
        let deleted = self.delete(session, false)?;
        Ok((deleted, Some(removed)))
    }

    /// The remote agent recorded with the session (a remote team's process group that may
    /// still run on its host).
    pub fn remote_agent(
        &self,
        session_id: &str,
    ) -> SessionResult<Option<crate::store::RemoteAgentRecord>> {
        Ok(self.store.remote_agent(session_id)?)
    }

    /// Records the remote agent of the session: its host, pid (= group) and start time there.
    pub fn set_remote_agent(
        &self,
        session_id: &str,
        host: &str,
        pid: u32,
        start: u64,
    ) -> SessionResult<()> {
        Ok(self.store.set_remote_agent(session_id, host, pid, start)?)
    }

    /// Forgets the session's remote agent (its group is known to be stopped).
    pub fn clear_remote_agent(&self, session_id: &str) -> SessionResult<bool> {
        Ok(self.store.clear_remote_agent(session_id)?)
    }

    /// Where the callee's agent keeps the session's transcript, if that can be told (the team
    /// is in the config and its agent kind is known).
    pub fn transcript_path(&self, session: &Session) -> Option<PathBuf> {
        let team = self.config.team(&session.to_team)?;
        crate::agent::adapter::adapter_for(&team.agent)?.transcript_path(team, &session.session_id)
    }

    /// Marks the session used now.
    pub fn record_usage(&self, session_id: &str) -> SessionResult<Session> {
        self.write(|st| st.touch(session_id, now_ms()))
    }

    /// Adds `n` completed tells to the message count (and marks the session used).
    pub fn increment_message_count(&self, session_id: &str, n: i64) -> SessionResult<Session> {
        self.write(|st| st.increment_message_count(session_id, n, now_ms()))
    }

    /// Sets the process state; `stopped` also clears the current tell and the agent pid.
    pub fn update_process_state(
        &self,
        session_id: &str,
        state: ProcessState,
    ) -> SessionResult<Session> {
        let s = self.write(|st| st.update_process_state(session_id, state))?;
        self.state_event(&s, state);
        Ok(s)
    }

    /// Publishes the session's new process state.
    fn state_event(&self, s: &Session, state: ProcessState) {
        self.events.publish(
            crate::events::NewEvent::pair(
                &s.from_team,
                &s.to_team,
                crate::events::EventKind::ProcessState {
                    state: state.to_string(),
                },
            )
            .session(&s.session_id)
            .tell(s.current_tell_id.as_deref()),
        );
    }

    /// Records the live agent process of the session (or clears it).
    pub fn set_agent(
        &self,
        session_id: &str,
        agent: Option<ProcessIdentity>,
    ) -> SessionResult<Session> {
        self.write(|st| st.set_agent(session_id, agent))
    }

    /// Records the agent's own id of the session's conversation (an agent CLI that picks its
    /// own thread id says it once it has started one); a reboot clears it.
    pub fn set_agent_session_id(
        &self,
        session_id: &str,
        agent_session_id: Option<&str>,
    ) -> SessionResult<Session> {
        self.write(|st| st.set_agent_session_id(session_id, agent_session_id))
    }

    /// This process's identity, as recorded in the leases it takes.
    pub fn me(&self) -> ProcessIdentity {
        self.me
    }

    /// Takes the session's owner lease for this process: at most one live agent per session on
    /// the machine. A lease held by a dead process is reclaimed (what its agent left behind is
    /// killed). A lease held by another live process is [`SessionError::Busy`].
    pub fn acquire_lease(&self, session_id: &str) -> SessionResult<Session> {
        for _ in 0..4 {
            let holder = match self.store.acquire_lease(session_id, self.me, now_ms())? {
                Ok(s) => {
                    self.cache.invalidate(&s.from_team, &s.to_team);
                    return Ok(s);
                }
                Err(held) => held,
            };
            let owner = holder.owner().unwrap_or(ProcessIdentity {
                pid: 0,
                started_at: 0,
            });
            if owner.pid != 0 && owner.is_alive() {
                return Err(SessionError::Busy {
                    session: holder.pair(),
                    pid: owner.pid,
                });
            }
            if let Some(agent) = holder.agent() {
                if crate::agent::process::reap_orphan_group(agent) {
                    tracing::warn!(pid = agent.pid, session = %holder.pair(), "killed an agent left by a dead Switchboard");
                }
            }
            if let Some(s) = self
                .store
                .reclaim_lease(session_id, owner, self.me, now_ms())?
            {
                tracing::info!(session = %s.pair(), dead_owner = owner.pid, "reclaimed lease of a dead owner");
                self.cache.invalidate(&s.from_team, &s.to_team);
                return Ok(s);
            }
            // The lease changed hands meanwhile: look again.
        }
        Err(SessionError::Conflict {
            session: session_id.to_string(),
            message: "the owner lease keeps changing hands".into(),
        })
    }

    /// Busy if another live Switchboard process holds the session's lease.
    pub fn check_not_held_elsewhere(&self, s: &Session) -> SessionResult<()> {
        match s.owner() {
            Some(owner) if owner != self.me && owner.is_alive() => Err(SessionError::Busy {
                session: s.pair(),
                pid: owner.pid,
            }),
            _ => Ok(()),
        }
    }

    /// Gives the lease back: the session is stopped, with no current tell and no agent.
    /// Does nothing if this process does not hold it.
    pub fn release_lease(&self, session_id: &str) -> SessionResult<Option<Session>> {
        let s = self.store.release_lease(session_id, self.me)?;
        if let Some(s) = &s {
            self.cache.invalidate(&s.from_team, &s.to_team);
            self.state_event(s, ProcessState::Stopped);
        }
        Ok(s)
    }

    /// Renews this process's heartbeat on a session it holds; false if it no longer holds it.
    pub fn heartbeat(&self, session_id: &str) -> SessionResult<bool> {
        let s = self.store.heartbeat(session_id, self.me, now_ms())?;
        if let Some(s) = &s {
            self.cache.invalidate(&s.from_team, &s.to_team);
        }
        Ok(s.is_some())
    }

    /// A turn starts: the tell is delivered and becomes the session's current tell (processing),
    /// in one transaction. `None` if the tell is no longer queued (it was cancelled).
    pub fn begin_turn(
        &self,
        session_id: &str,
        tell_id: &str,
    ) -> SessionResult<Option<crate::store::Tell>> {
        let begun = self.store.begin_turn(session_id, tell_id, now_ms())?;
        Ok(self.turn_begun(begun))
    }

    /// Undoes the start of a turn whose tell was never sent to the agent: the tell is `queued`
    /// again and the session idle (see `SessionStore::undeliver_tell`). False when the tell was
    /// no longer delivered.
    pub fn undeliver(&self, session_id: &str, tell_id: &str) -> SessionResult<bool> {
        let Some(s) = self.store.undeliver_tell(session_id, tell_id)? else {
            return Ok(false);
        };
        self.cache.invalidate(&s.from_team, &s.to_team);
        self.state_event(&s, ProcessState::Idle);
        Ok(true)
    }

    /// After a turn's start is stored: the pair's cache entry goes, the state is published.
    fn turn_begun(
        &self,
        begun: Option<(crate::store::Tell, Session)>,
    ) -> Option<crate::store::Tell> {
        let (tell, s) = begun?;
        self.began(&s);
        Some(tell)
    }

    /// What follows a stored start of a turn of session `s` (made through a store write of
    /// its own, such as a tell delivered in the write that stores it): the pair's cache entry
    /// goes, the processing state is published.
    pub fn began(&self, s: &Session) {
        self.cache.invalidate(&s.from_team, &s.to_team);
        self.state_event(s, ProcessState::Processing);
    }

    /// Counts a turn as running while the result lives: with no other turn running, its
    /// writes go straight to SQLite on the caller's thread (see `WriteBatcher::turn`).
    pub fn turn_running(&self) -> Option<crate::store::TurnRunning> {
        self.batcher().ok().map(WriteBatcher::turn)
    }

    fn batcher(&self) -> SessionResult<&WriteBatcher> {
        self.batcher
            .get_or_init(|| {
                WriteBatcher::start(self.store.clone())
                    .map_err(
                        |e| tracing::error!(error = %e, "cannot start the store's write thread"),
                    )
                    .ok()
            })
            .as_ref()
            .ok_or_else(|| StoreError::WriterGone.into())
    }

    /// Stores a new tell (no idempotency key, not a retry) through the store's batch-write
    /// thread: the calling task waits without holding its thread, and the tells and turns of
    /// other pairs stored meanwhile share its commit (made on the calling thread when no turn
    /// runs, see `WriteBatcher::turn`). It is on disk when this returns.
    pub async fn insert_tell_batched(
        &self,
        t: &crate::store::NewTell<'_>,
    ) -> SessionResult<crate::store::Tell> {
        Ok(self.batcher()?.insert_tell(t, now_ms()).await?)
    }

    /// [`Self::insert_tell_batched`] for a pair whose session exists: the session, the limits
    /// and the insert in one write (see `WriteBatcher::insert_tell_for_pair`). With a
    /// `handoff`, a tell that finds its pair with nothing else open is delivered in that write,
    /// and `handoff` gets it (call [`Self::turn_begun`] with it).
    pub async fn insert_tell_for_pair_batched(
        &self,
        t: &crate::store::NewTell<'_>,
        limits: Option<crate::store::TellLimits>,
        handoff: Option<crate::store::Handoff>,
    ) -> SessionResult<crate::store::PairInsert> {
        Ok(self
            .batcher()?
            .insert_tell_for_pair(t, limits, handoff, now_ms())
            .await?)
    }

    /// [`Self::begin_turn`] through the store's batch-write thread: the calling task waits
    /// without holding its thread, and the turns of other pairs starting or ending meanwhile
    /// share its commit.
    pub async fn begin_turn_batched(
        &self,
        session_id: &str,
        tell_id: &str,
    ) -> SessionResult<Option<crate::store::Tell>> {
        let begun = self
            .batcher()?
            .begin_turn(session_id.to_string(), tell_id.to_string(), now_ms())
            .await?;
        Ok(self.turn_begun(begun))
    }

    /// [`Self::begin_turn_batched`] of the pair's oldest queued tell, looked up in the same
    /// write; `None` when nothing is queued.
    pub async fn begin_next_turn_batched(
        &self,
        session_id: &str,
        from: &str,
        to: &str,
    ) -> SessionResult<Option<crate::store::Tell>> {
        let begun = self
            .batcher()?
            .begin_next_turn(
                session_id.to_string(),
                from.to_string(),
                to.to_string(),
                now_ms(),
            )
            .await?;
        Ok(self.turn_begun(begun))
    }

    /// The end of a turn with a result, in one write through the store's batch-write thread:
    /// [`Self::end_turn`] (usage, idle, one more message when `end.counts`) and the tell's end
    /// (`end.state`, its outcome as given: the caller redacts it). Returns the session and the
    /// ended tell (`None` when it had ended already: the first ending wins), and whether the
    /// pair had another tell queued when it was stored. `end.now` is set here.
    pub async fn end_turn_with_tell(
        &self,
        mut end: EndOfTurn,
    ) -> SessionResult<(Session, Option<crate::store::Tell>, bool)> {
        check_usage(
            &end.session_id,
            end.input_tokens,
            end.output_tokens,
            end.cost_usd,
        )?;
        end.now = now_ms();
        let (s, tell, more) = self.batcher()?.end_turn(end).await?;
        self.cache.invalidate(&s.from_team, &s.to_team);
        self.state_event(&s, ProcessState::Idle);
        Ok((s, tell, more))
    }

    /// A turn ended with a result: usage added, idle, no current tell; an answered tell counts
    /// one message and clears an `error` status. One write.
    pub fn end_turn(
        &self,
        session_id: &str,
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
        answered: bool,
    ) -> SessionResult<Session> {
        check_usage(session_id, input_tokens, output_tokens, cost_usd)?;
        let s = self.write(|st| {
            st.end_turn(
                session_id,
                input_tokens,
                output_tokens,
                cost_usd,
                answered,
                now_ms(),
            )
        })?;
        self.state_event(&s, ProcessState::Idle);
        Ok(s)
    }

    /// Sets (or clears) the tell being processed.
    pub fn set_current_tell(
        &self,
        session_id: &str,
        tell_id: Option<&str>,
    ) -> SessionResult<Session> {
        self.write(|st| st.set_current_tell(session_id, tell_id))
    }

    /// Records that the agent printed something now.
    pub fn update_last_response(&self, session_id: &str) -> SessionResult<Session> {
        self.write(|st| st.update_last_response(session_id, now_ms()))
    }

    /// Records the agent's launch command and the team config snapshot (both already redacted).
    pub fn update_debug_info(
        &self,
        session_id: &str,
        launch_command: &str,
        team_config_snapshot: &str,
    ) -> SessionResult<Session> {
        self.write(|st| st.update_debug_info(session_id, launch_command, team_config_snapshot))
    }

    /// Adds a turn's tokens and cost to the session's totals.
    pub fn record_usage_totals(
        &self,
        session_id: &str,
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
    ) -> SessionResult<Session> {
        check_usage(session_id, input_tokens, output_tokens, cost_usd)?;

        self.write(|st| st.add_usage(session_id, input_tokens, output_tokens, cost_usd))
    }

    /// Gives the pair a new conversation (a new session id); the old transcript stays on disk
    /// and the tells history is kept. The caller stops the agent first.
    pub fn reboot(&self, session_id: &str) -> SessionResult<Session> {
        let new_id = uuid::Uuid::new_v4().to_string();
        let s = self.write(|st| st.reboot_session(session_id, &new_id, now_ms()))?;
        tracing::info!(session = %s.pair(), old = session_id, new = %s.session_id, "rebooted session");
        Ok(s)
    }

    /// Sets status `error` with the reason (secrets in it hidden: it may quote an agent's
    /// stderr).
    pub fn mark_error(&self, session_id: &str, reason: &str) -> SessionResult<Session> {
        let reason = crate::redact::text(reason);
        self.write(|st| st.set_status(session_id, SessionStatus::Error, Some(&reason)))
    }

    /// Sets the status (for example `archived`, or `active` again).
    pub fn set_status(&self, session_id: &str, status: SessionStatus) -> SessionResult<Session> {
        self.write(|st| st.set_status(session_id, status, None))
    }

    /// Aggregates over every session: totals, counts by status and state, due for compaction,
    /// per team (every team of the config, plus any other team found in the database), busiest
    /// pairs.
    pub fn stats(&self) -> SessionResult<Stats> {
        let mut stats = self.store.stats(self.due_query())?;
        for name in self.config.teams.keys() {
            if let Err(i) = stats
                .per_team
                .binary_search_by(|t| t.team.as_str().cmp(name))
            {
                stats.per_team.insert(
                    i,
                    crate::store::TeamStats {
                        team: name.clone(),
                        ..Default::default()
                    },
                );
            }
        }
        stats.by_agent = self.by_agent(&stats.per_team);
        Ok(stats)
    }

    /// The per-team figures summed by the agent kind each team runs (as the answering team).
    fn by_agent(&self, per_team: &[crate::store::TeamStats]) -> Vec<crate::store::AgentStats> {
        let mut kinds: std::collections::BTreeMap<String, crate::store::AgentStats> =
            Default::default();
        for t in per_team {
            let agent = self
                .config
                .team(&t.team)
                .map_or("unknown", |c| c.agent.as_str());
            let k = kinds
                .entry(agent.to_string())
                .or_insert_with(|| crate::store::AgentStats {
                    agent: agent.to_string(),
                    ..Default::default()
                });
            k.teams += 1;
            k.sessions += t.sessions_as_callee;
            k.messages += t.messages_as_callee;
            k.cost_usd += t.cost_usd_as_callee;
        }
        kinds.into_values().collect()
    }

    fn due_query(&self) -> DueQuery {
        let p = &self.config.settings.compaction;
        DueQuery {
            max_messages: i64::try_from(p.max_messages).unwrap_or(i64::MAX),
            stale_messages: i64::try_from(p.stale_messages).unwrap_or(i64::MAX),
            stale_before: now_ms()
                .saturating_sub(i64::try_from(p.stale_age.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// Runs a store write and invalidates the cache entry of the pair it touched.
    fn write(
        &self,
        op: impl FnOnce(&SessionStore) -> Result<Session, StoreError>,
    ) -> SessionResult<Session> {
        let s = op(&self.store)?;
        self.cache.invalidate(&s.from_team, &s.to_team);
        Ok(s)
    }
}
