//! Row types of the store: [`Session`], its [`SessionStatus`] and [`ProcessState`], [`Stats`].
//! Times are unix milliseconds; JSON output renders them as RFC 3339.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in SQLite and shown to people.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " {:?} (expected one of: {})"),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                text.parse().map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    };
}

text_enum!(
    /// Lifecycle of the session record.
    SessionStatus, "status", {
        /// In use (the default).
        Active => "active",
        /// Compaction requested, not started yet.
        CompactPending => "compact_pending",
        /// The agent is compacting its context.
        Compacting => "compacting",
        /// Kept for the record, no longer used.
        Archived => "archived",
        /// Something failed; `last_error` says what.
        Error => "error",
    }
);

text_enum!(
    /// What the agent process of the session is doing.
    ProcessState, "process state", {
        /// No agent process.
        Stopped => "stopped",
        /// Started, waiting for its first event.
        Spawning => "spawning",
        /// Running, waiting for a message.
        Idle => "idle",
        /// Running a turn.
        Processing => "processing",
        /// Being stopped.
        Terminating => "terminating",
    }
);

/// One session: the persistent conversation of the ordered pair (from_team, to_team).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Row id.
    pub id: i64,
    /// The team that talks.
    pub from_team: String,
    /// The team whose agent answers.
    pub to_team: String,
    /// UUID v4 of the agent session.
    pub session_id: String,
    /// When the session was created.
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    pub created_at: i64,
    /// When the session was last used.
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    pub last_used_at: i64,
    /// Completed tells since the last compaction.
    pub message_count: i64,
    /// Lifecycle of the record.
    pub status: SessionStatus,
    /// What the agent process is doing.
    pub process_state: ProcessState,
    /// The tell being processed, if any.
    pub current_tell_id: Option<String>,
    /// When the agent last printed anything.
    #[serde(
        default,
        serialize_with = "ser_opt_time",
        deserialize_with = "de_opt_time"
    )]
    pub last_response_at: Option<i64>,
    /// The argv the agent was last started with (JSON array), secrets redacted.
    pub launch_command: Option<String>,
    /// The team's config when the agent was last started (JSON), secrets redacted.
    pub team_config_snapshot: Option<String>,
    /// Completed compactions.
    pub compaction_count: i64,
    /// When the last compaction finished.
    #[serde(
        default,
        serialize_with = "ser_opt_time",
        deserialize_with = "de_opt_time"
    )]
    pub last_compacted_at: Option<i64>,
    /// Context tokens before the last compaction.
    pub last_pre_compact_tokens: Option<i64>,
    /// Context tokens after the last compaction.
    pub last_post_compact_tokens: Option<i64>,
    /// Input tokens used by the session, all turns.
    pub input_tokens: i64,
    /// Output tokens used by the session, all turns.
    pub output_tokens: i64,
    /// Cost of the session in US dollars, all turns.
    pub cost_usd: f64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Pid of the Switchboard process that owns the live agent, if any.
    pub owner_pid: Option<i64>,
    /// Start time of the owner process (tells a reused pid apart).
    #[serde(
        default,
        serialize_with = "ser_opt_time",
        deserialize_with = "de_opt_time"
    )]
    pub owner_started_at: Option<i64>,
    /// When the owner last said it is alive.
    #[serde(
        default,
        serialize_with = "ser_opt_time",
        deserialize_with = "de_opt_time"
    )]
    pub owner_heartbeat_at: Option<i64>,
    /// Pid (and process group) of the live agent process, if any.
    pub agent_pid: Option<i64>,
    /// Start time of the agent process (tells a reused pid apart).
    #[serde(
        default,
        serialize_with = "ser_opt_time",
        deserialize_with = "de_opt_time"
    )]
    pub agent_started_at: Option<i64>,
    /// The agent's own id of the conversation, for agent CLIs that pick it (a Codex thread id);
    /// `None` when the agent uses `session_id` itself, or has not said yet.
    pub agent_session_id: Option<String>,
}

impl Session {
    /// `FROM:TO`, as typed on the command line.
    pub fn pair(&self) -> String {
        format!("{}:{}", self.from_team, self.to_team)
    }

    /// The Switchboard process holding the session's lease, if any.
    pub fn owner(&self) -> Option<crate::util::ProcessIdentity> {
        identity(self.owner_pid, self.owner_started_at)
    }

    /// The session's recorded agent process, if any.
    pub fn agent(&self) -> Option<crate::util::ProcessIdentity> {
        identity(self.agent_pid, self.agent_started_at)
    }
}

fn identity(pid: Option<i64>, started_at: Option<i64>) -> Option<crate::util::ProcessIdentity> {
    let pid = u32::try_from(pid?).ok().filter(|&p| p != 0)?;
    Some(crate::util::ProcessIdentity {
        pid,
        started_at: started_at.unwrap_or(0),
    })
}

fn ser_time<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::util::rfc3339(*ms))
}

/// Reads a time as [`ser_time`] writes it (RFC 3339) back into unix ms.
fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let text = String::deserialize(d)?;
    parse_time(&text).map_err(serde::de::Error::custom)
}

/// [`de_time`] for a time that may be null.
fn de_opt_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|t| parse_time(&t).map_err(serde::de::Error::custom))
        .transpose()
}

fn parse_time(text: &str) -> Result<i64, String> {
    let at = humantime::parse_rfc3339_weak(text).map_err(|e| format!("time {text:?}: {e}"))?;
    let d = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("time {text:?} is before 1970"))?;
    i64::try_from(d.as_millis()).map_err(|_| format!("time {text:?} is out of range"))
}

fn ser_opt_time<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&crate::util::rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

/// Filters and order of [`crate::SessionStore::list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only sessions from this team.
    pub from_team: Option<String>,
    /// Only sessions to this team.
    pub to_team: Option<String>,
    /// Only sessions with this status.
    pub status: Option<SessionStatus>,
    /// Only sessions in this process state.
    pub process_state: Option<ProcessState>,
    /// Only sessions created at or after this time (unix ms).
    pub created_after: Option<i64>,
    /// Only sessions used at or after this time (unix ms).
    pub used_after: Option<i64>,
    /// At most this many rows.
    pub limit: Option<u32>,
    /// Order of the rows.
    pub order: ListOrder,
}

/// Order of listed sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// Most recently used first (the default).
    #[default]
    LastUsedDesc,
    /// Oldest first.
    CreatedAsc,
    /// Newest first.
    CreatedDesc,
    /// Most messages first.
    MessagesDesc,
}

/// Aggregates over every session ([`crate::SessionManager::stats`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Number of sessions.
    pub total_sessions: i64,
    /// Sessions per status (every status present, zeros included).
    pub by_status: BTreeMap<String, i64>,
    /// Sessions per process state (every state present, zeros included).
    pub by_process_state: BTreeMap<String, i64>,
    /// Sum of message counts (each session's count since its last compaction).
    pub total_messages: i64,
    /// Tells ever answered (lifetime: compaction does not reset it).
    pub total_answered_tells: i64,
    /// Sum of input tokens.
    pub total_input_tokens: i64,
    /// Sum of output tokens.
    pub total_output_tokens: i64,
    /// Sum of cost, US dollars.
    pub total_cost_usd: f64,
    /// Sessions the compaction policy says are due.
    pub due_for_compaction: i64,
    /// Per team, as caller (from) and as callee (to), by team name.
    pub per_team: Vec<TeamStats>,
    /// The 10 pairs with the most messages.
    pub busiest_pairs: Vec<PairStats>,
    /// Per agent kind of the answering team (`claude`, `codex`, ...; `unknown` for a team no
    /// longer in the config), by kind. Filled by the session layer, which knows the config.
    pub by_agent: Vec<AgentStats>,
}

/// One agent kind's share: the sessions whose answering team runs that kind.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct AgentStats {
    /// The kind (`agent` of the teams file).
    pub agent: String,
    /// Teams of that kind (of the config, plus teams found in the database).
    pub teams: i64,
    /// Sessions those teams answer in.
    pub sessions: i64,
    /// Messages of those sessions (since their last compaction).
    pub messages: i64,
    /// Cost of those sessions, US dollars.
    pub cost_usd: f64,
}

/// One team's share of the sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct TeamStats {
    /// Team name.
    pub team: String,
    /// Sessions in which the team talks.
    pub sessions_as_caller: i64,
    /// Sessions in which the team answers.
    pub sessions_as_callee: i64,
    /// Messages in sessions where the team talks.
    pub messages_as_caller: i64,
    /// Messages in sessions where the team answers.
    pub messages_as_callee: i64,
    /// Cost of sessions where the team answers, US dollars.
    pub cost_usd_as_callee: f64,
}

/// One pair in the busiest list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairStats {
    /// The team that talks.
    pub from_team: String,
    /// The team that answers.
    pub to_team: String,
    /// The pair's session id.
    pub session_id: String,
    /// Its message count (since the last compaction).
    pub message_count: i64,
    /// Tells of the pair ever answered (lifetime).
    pub answered_tells: i64,
}

text_enum!(
    /// Where a tell is in its life.
    TellState, "tell state", {
        /// Stored, waiting for its turn.
        Queued => "queued",
        /// Written to the agent; no answer yet.
        Delivered => "delivered",
        /// The agent answered.
        Answered => "answered",
        /// It failed; `error` says why.
        Failed => "failed",
        /// Cancelled before it was answered.
        Cancelled => "cancelled",
    }
);

text_enum!(
    /// What a tell asks of the agent.
    TellKind, "tell kind", {
        /// A message to answer.
        Tell => "tell",
        /// Compact the context.
        Compact => "compact",
    }
);

impl TellState {
    /// Whether the tell is finished (answered, failed or cancelled).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TellState::Answered | TellState::Failed | TellState::Cancelled
        )
    }
}

/// One message to a team's agent and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tell {
    /// Row id; orders tells.
    #[serde(skip)]
    pub id: i64,
    /// UUID of the tell.
    pub tell_id: String,
    /// The session it was sent in.
    pub session_id: String,
    /// The team that told.
    pub from_team: String,
    /// The team whose agent answers.
    pub to_team: String,
    /// A message, or a compaction.
    pub kind: TellKind,
    /// The message text.
    pub text: String,
    /// Where it is in its life.
    pub state: TellState,
    /// When it was stored.
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    pub created_at: i64,
    /// When it was written to the agent.
    #[serde(
        default,
        serialize_with = "ser_opt_time",
        deserialize_with = "de_opt_time"
    )]
    pub delivered_at: Option<i64>,
    /// When it was answered (or failed, or was cancelled).
    #[serde(
        default,
        serialize_with = "ser_opt_time",
        deserialize_with = "de_opt_time"
    )]
    pub answered_at: Option<i64>,
    /// The answer text.
    pub answer: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Input tokens of the turn.
    pub input_tokens: Option<i64>,
    /// Output tokens of the turn.
    pub output_tokens: Option<i64>,
    /// Cost of the turn, US dollars.
    pub cost_usd: Option<f64>,
    /// Duration of the turn as the agent measured it.
    pub duration_ms: Option<i64>,
    /// The tell during which this one was sent (a chain of tells between agents).
    pub parent_tell_id: Option<String>,
    /// The caller's idempotency key: sending again with it returns this tell.
    pub idempotency_key: Option<String>,
    /// The tell this one is a retry of (`switchboard tells retry`).
    pub retry_of: Option<String>,
}

/// How a tell ended, as recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TellOutcome {
    /// The answer text.
    pub answer: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Input tokens.
    pub input_tokens: Option<i64>,
    /// Output tokens.
    pub output_tokens: Option<i64>,
    /// Cost, US dollars.
    pub cost_usd: Option<f64>,
    /// Duration as the agent measured it.
    pub duration_ms: Option<i64>,
}
