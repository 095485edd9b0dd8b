//! SQL over the `events` table: the durable event log (lifecycle of tells and agents, and the
//! agents' own activity). The event types live here so the store can read and write them; the
//! event layer (`crate::events`) re-exports them and owns the bus, the bounds and the writer.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{SessionStore, StoreResult};

/// One thing that happened, as stored and broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The durable id (SQLite AUTOINCREMENT): strictly increasing across every process sharing
    /// the database; 0 = not stored (the tell's activity was over its bound).
    pub id: i64,
    /// When it happened, unix ms.
    pub at: i64,
    /// The calling team, when the event belongs to a pair.
    pub from_team: Option<String>,
    /// The called team (whose agent works), when the event belongs to a pair.
    pub to_team: Option<String>,
    /// The tell it belongs to, if any.
    pub tell_id: Option<String>,
    /// The session it belongs to, if any.
    pub session_id: Option<String>,
    /// What happened (JSON: `"type"` and the kind's fields, beside the fields above).
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. JSON: `{"type": "<snake_case name>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A tell was stored, waiting for the pair's agent.
    TellQueued {
        /// `tell` or `compact`.
        kind: String,
        /// Size of its text.
        bytes: u64,
        /// The tell during which it was sent, if any.
        parent_tell_id: Option<String>,
    },
    /// The tell was written to the agent.
    TellDelivered,
    /// The agent answered the tell.
    TellAnswered {
        /// Input tokens of the turn.
        input_tokens: i64,
        /// Output tokens of the turn.
        output_tokens: i64,
        /// Cost of the turn in USD.
        cost_usd: f64,
        /// How long the turn took.
        duration_ms: i64,
    },
    /// The tell ended without an answer.
    TellFailed {
        /// The state it ended in (`failed`, `timed_out`, ...).
        state: String,
        /// Why.
        error: String,
    },
    /// The tell was cancelled.
    TellCancelled {
        /// Why.
        reason: String,
    },
    /// An agent process is being started for the session.
    AgentSpawning {
        /// Whether it resumes an existing conversation.
        resume: bool,
    },
    /// The agent process is running.
    AgentReady {
        /// Its pid.
        pid: u32,
    },
    /// The agent process stopped.
    AgentStopped {
        /// `idle`, `evicted`, `stall`, `crash`, `shutdown`, `sleep`, `reboot`, `delete`, `cancel`.
        reason: String,
        /// More about it (the exit status of a crash, ...).
        detail: Option<String>,
    },
    /// The session's process state changed.
    ProcessState {
        /// The new state (`stopped`, `spawning`, `idle`, `processing`, `terminating`).
        state: String,
    },
    /// A compaction started.
    CompactionBegin,
    /// A compaction ended.
    CompactionEnd {
        /// Context tokens before, when the agent said.
        pre_tokens: Option<i64>,
        /// Context tokens after, when the agent said.
        post_tokens: Option<i64>,
    },
    /// The agent asks to use a tool that needs a decision.
    ApprovalRequested {
        /// The request's id.
        approval_id: String,
        /// The tool.
        tool: String,
        /// Bounded, redacted summary of the tool's input.
        input: String,
        /// Who decides: `human` or `caller`.
        decide_by: String,
        /// When it is denied if nobody decides, unix ms.
        expires_at: i64,
    },
    /// A request was decided.
    ApprovalDecided {
        /// The request's id.
        approval_id: String,
        /// The tool.
        tool: String,
        /// `allow` or `deny`.
        decision: String,
        /// `rule`, `person`, `caller` or `timeout`.
        by: String,
        /// Why, if given.
        reason: Option<String>,
    },
    /// A request expired undecided.
    ApprovalExpired {
        /// The request's id.
        approval_id: String,
        /// Why.
        reason: String,
    },
    /// The agent's text, one event per assistant message.
    Text {
        /// The text (bounded).
        text: String,
    },
    /// The agent uses a tool.
    ToolUse {
        /// The agent's id of this use.
        tool_use_id: String,
        /// The tool's name.
        tool: String,
        /// Bounded, redacted summary of the input.
        input: String,
    },
    /// A tool returned.
    ToolResult {
        /// The use it answers.
        tool_use_id: String,
        /// False when the tool reported an error.
        ok: bool,
        /// Bounded, redacted start of the result.
        excerpt: String,
        /// Time since the tool use, when it was seen.
        duration_ms: Option<i64>,
    },
    /// Usage of a finished turn.
    Usage {
        /// Input tokens.
        input_tokens: i64,
        /// Output tokens.
        output_tokens: i64,
        /// Cost in USD.
        cost_usd: f64,
    },
    /// A status line of the agent itself ("retrying, attempt 3/10 (529 overloaded)",
    /// "compacting").
    AgentStatus {
        /// The status, for people.
        text: String,
    },
    /// The tell's activity reached its bound: what follows of it is not stored (still
    /// broadcast live, with id 0).
    ActivityTruncated {
        /// Activity events stored for the tell before this one.
        events: u64,
        /// Bytes of those events.
        bytes: u64,
    },
}

impl EventKind {
    /// The `type` name in JSON (and in SSE's `event:` field).
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::TellQueued { .. } => "tell_queued",
            EventKind::TellDelivered => "tell_delivered",
            EventKind::TellAnswered { .. } => "tell_answered",
            EventKind::TellFailed { .. } => "tell_failed",
            EventKind::TellCancelled { .. } => "tell_cancelled",
            EventKind::AgentSpawning { .. } => "agent_spawning",
            EventKind::AgentReady { .. } => "agent_ready",
            EventKind::AgentStopped { .. } => "agent_stopped",
            EventKind::ProcessState { .. } => "process_state",
            EventKind::CompactionBegin => "compaction_begin",
            EventKind::CompactionEnd { .. } => "compaction_end",
            EventKind::ApprovalRequested { .. } => "approval_requested",
            EventKind::ApprovalDecided { .. } => "approval_decided",
            EventKind::ApprovalExpired { .. } => "approval_expired",
            EventKind::Text { .. } => "text",
            EventKind::ToolUse { .. } => "tool_use",
            EventKind::ToolResult { .. } => "tool_result",
            EventKind::Usage { .. } => "usage",
            EventKind::AgentStatus { .. } => "agent_status",
            EventKind::ActivityTruncated { .. } => "activity_truncated",
        }
    }

    /// About how many bytes the event takes in memory: its longest text plus a fixed part
    /// (what bounds the bus's queue while the writer is behind).
    pub fn weight(&self) -> usize {
        let text = match self {
            EventKind::Text { text } | EventKind::AgentStatus { text } => text.len(),
            EventKind::ToolUse { input, .. } | EventKind::ApprovalRequested { input, .. } => {
                input.len()
            }
            EventKind::ToolResult { excerpt, .. } => excerpt.len(),
            EventKind::TellFailed { error, .. } => error.len(),
            EventKind::AgentStopped { detail, .. } => detail.as_ref().map_or(0, String::len),
            EventKind::ApprovalDecided { reason, .. } => reason.as_ref().map_or(0, String::len),
            EventKind::ApprovalExpired { reason, .. } | EventKind::TellCancelled { reason } => {
                reason.len()
            }
            _ => 0,
        };
        256 + text
    }

    /// Whether this is the agent's own activity inside a turn (counted against the tell's
    /// bound), as opposed to a lifecycle step (always stored).
    pub fn is_activity(&self) -> bool {
        matches!(
            self,
            EventKind::Text { .. }
                | EventKind::ToolUse { .. }
                | EventKind::ToolResult { .. }
                | EventKind::AgentStatus { .. }
        )
    }
}

/// An event to publish (the bus stamps its time and the store its id).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The calling team.
    pub from_team: Option<String>,
    /// The called team.
    pub to_team: Option<String>,
    /// The tell.
    pub tell_id: Option<String>,
    /// The session.
    pub session_id: Option<String>,
    /// What happened.
    pub kind: EventKind,
}

impl NewEvent {
    /// An event of no pair, tell or session.
    pub fn new(kind: EventKind) -> Self {
        Self {
            from_team: None,
            to_team: None,
            tell_id: None,
            session_id: None,
            kind,
        }
    }

    /// An event of the pair `from -> to`.
    pub fn pair(from: &str, to: &str, kind: EventKind) -> Self {
        Self {
            from_team: Some(from.to_string()),
            to_team: Some(to.to_string()),
            ..Self::new(kind)
        }
    }

    /// Sets the session.
    pub fn session(mut self, session_id: &str) -> Self {
        self.session_id = Some(session_id.to_string());
        self
    }

    /// Sets the tell (when there is one).
    pub fn tell(mut self, tell_id: Option<&str>) -> Self {
        self.tell_id = tell_id.map(str::to_string);
        self
    }

    /// The stored form, with its id and time.
    pub fn into_event(self, id: i64, at: i64) -> Event {
        Event {
            id,
            at,
            from_team: self.from_team,
            to_team: self.to_team,
            tell_id: self.tell_id,
            session_id: self.session_id,
            kind: self.kind,
        }
    }
}

/// Which events a reader wants; every field given must match (none given: all events).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    /// Events of pairs where this team calls or is called.
    pub team: Option<String>,
    /// Events of this pair (from, to).
    pub pair: Option<(String, String)>,
    /// Events of this tell.
    pub tell: Option<String>,
}

impl EventFilter {
    /// Whether `e` passes the filter.
    pub fn matches(&self, e: &Event) -> bool {
        if let Some(team) = &self.team {
            if e.from_team.as_deref() != Some(team) && e.to_team.as_deref() != Some(team) {
                return false;
            }
        }
        if let Some((from, to)) = &self.pair {
            if e.from_team.as_deref() != Some(from) || e.to_team.as_deref() != Some(to) {
                return false;
            }
        }
        if let Some(tell) = &self.tell {
            if e.tell_id.as_deref() != Some(tell) {
                return false;
            }
        }
        true
    }

    /// Parses `FROM:TO` (two non-empty team names).
    pub fn parse_pair(s: &str) -> Result<(String, String), String> {
        match s.split_once(':') {
            Some((from, to))
                if crate::config::is_valid_team_name(from)
                    && crate::config::is_valid_team_name(to) =>
            {
                Ok((from.to_string(), to.to_string()))
            }
            _ => Err(format!(
                "invalid pair {s:?}: expected FROM:TO, two team names separated by a colon"
            )),
        }
    }
}

/// What the store knows of a tell's stored activity (for the per-tell bound).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TellActivity {
    /// Activity events stored.
    pub events: u64,
    /// Their bytes (of `data`).
    pub bytes: u64,
    /// Whether an `activity_truncated` event is stored.
    pub truncated: bool,
}

/// An event to insert: its time, what, and its JSON (measured by the caller for the bound).
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Unix ms.
    pub at: i64,
    /// The event.
    pub event: NewEvent,
    /// `serde_json` of `event.kind`.
    pub data: String,
}

impl EventRow {
    /// The row of `event` at `at`.
    pub fn new(at: i64, event: NewEvent) -> Self {
        let data = serde_json::to_string(&event.kind).unwrap_or_else(|_| "{}".to_string());
        Self { at, event, data }
    }
}

macro_rules! columns {
    () => {
        "id, at, from_team, to_team, tell_id, session_id, data"
    };
}
const COLUMNS: &str = columns!();

/// Inserts `rows` on `conn` (in the caller's transaction); their ids. An event of a tell is
/// stored with the tell's row id (migration 0014), looked up once per tell of the batch.
pub fn insert_events_in(conn: &rusqlite::Connection, rows: &[EventRow]) -> StoreResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (at, type, from_team, to_team, tell_id, session_id, data, tell_row) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut tell_rows: HashMap<&str, Option<i64>> = HashMap::new();
    for row in rows {
        let e = &row.event;
        let tell_row = match e.tell_id.as_deref() {
            None => None,
            Some(tell) => match tell_rows.get(tell) {
                Some(known) => *known,
                None => {
                    let found = conn
                        .prepare_cached("SELECT id FROM tells WHERE tell_id = ?1")?
                        .query_row([tell], |r| r.get(0))
                        .optional()?;
                    tell_rows.insert(tell, found);
                    found
                }
            },
        };
        stmt.execute(params![
            row.at,
            e.kind.type_name(),
            e.from_team,
            e.to_team,
            e.tell_id,
            e.session_id,
            row.data,
            tell_row
        ])?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(ids)
}

/// The events of tell `?1` with `columns`: by the tell's row id, and those without a row (the
/// database did not hold the tell when they were stored, or no longer holds it: migration
/// 0014, `delete_pair_tells_in`). Both match the id: a row id used again after its tell was
/// deleted finds only the new tell's events.
macro_rules! of_tell {
    ($columns:expr) => {
        concat!(
            "SELECT ",
            $columns,
            " FROM events WHERE tell_row = (SELECT id FROM tells WHERE tell_id = ?1) \
             AND tell_id = ?1 UNION ALL SELECT ",
            $columns,
            " FROM events WHERE tell_row IS NULL AND tell_id = ?1"
        )
    };
}

/// Every event of tell `?1`, oldest first.
const TELL_EVENTS: &str = concat!(of_tell!(columns!()), " ORDER BY id");

/// How much activity tell `?1` has stored: events and bytes that count against its bound, and
/// whether it was cut.
const TELL_ACTIVITY: &str = concat!(
    "SELECT COUNT(*) FILTER (WHERE type IN ('text', 'tool_use', 'tool_result', 'agent_status')), \
     COALESCE(SUM(LENGTH(data)) FILTER (WHERE type IN ('text', 'tool_use', 'tool_result', 'agent_status')), 0), \
     COUNT(*) FILTER (WHERE type = 'activity_truncated') > 0 \
     FROM (",
    of_tell!("type, data"),
    ")"
);

fn row_to_event(r: &Row<'_>) -> rusqlite::Result<Event> {
    let data: String = r.get(6)?;
    let kind: EventKind = serde_json::from_str(&data).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Event {
        id: r.get(0)?,
        at: r.get(1)?,
        from_team: r.get(2)?,
        to_team: r.get(3)?,
        tell_id: r.get(4)?,
        session_id: r.get(5)?,
        kind,
    })
}

impl SessionStore {
    /// Inserts the rows in one transaction, in order; returns their ids.
    pub fn insert_events(&self, rows: &[EventRow]) -> StoreResult<Vec<i64>> {
        // Through the write gate, as the session writes: they queue behind each other instead
        // of meeting SQLite's lock and sleeping in its busy handler (1 ms and up), and the
        // checkpointer counts these writes too.
        self.in_write(|tx| insert_events_in(tx, rows))
    }

    /// Up to `limit` events with id > `after_id` that pass `filter`, oldest first.
    pub fn events_after(
        &self,
        after_id: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let conn = self.conn()?;
        let (from, to) = match &filter.pair {
            Some((f, t)) => (Some(f.as_str()), Some(t.as_str())),
            None => (None, None),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE id > ?1 \
             AND (?2 IS NULL OR from_team = ?2 OR to_team = ?2) \
             AND (?3 IS NULL OR from_team = ?3) AND (?4 IS NULL OR to_team = ?4) \
             AND (?5 IS NULL OR tell_id = ?5) \
             ORDER BY id LIMIT ?6"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![after_id, filter.team, from, to, filter.tell, limit],
            row_to_event,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every stored event of a tell, oldest first.
    pub fn tell_events(&self, tell_id: &str) -> StoreResult<Vec<Event>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(TELL_EVENTS)?;
        let rows = stmt.query_map([tell_id], row_to_event)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest event id in the database (0 when none).
    pub fn max_event_id(&self) -> StoreResult<i64> {
        let conn = self.conn()?;
        Ok(conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?)
    }

    /// How much activity of the tell is stored (for its bound).
    pub fn tell_activity(&self, tell_id: &str) -> StoreResult<TellActivity> {
        let conn = self.conn()?;
        let (events, bytes, truncated): (i64, i64, bool) = conn
            .prepare_cached(TELL_ACTIVITY)?
            .query_row([tell_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(TellActivity {
            events: u64::try_from(events).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
            truncated,
        })
    }

    /// Deletes the events older than `before` (unix ms); returns how many. Ids follow time (the
    /// writer stores events in the order they were published), so these are the oldest ids: the
    /// walk reads them in id order up to the first event at or after `before`, and no index on
    /// the time is kept up at every insert for it (migration 0012).
    pub fn prune_events(&self, before: i64) -> StoreResult<usize> {
        let conn = self.conn()?;
        let n = conn
            .prepare_cached(
                "DELETE FROM events WHERE id < coalesce( \
                   (SELECT id FROM events WHERE at >= ?1 ORDER BY id LIMIT 1), \
                   (SELECT max(id) + 1 FROM events))",
            )?
            .execute([before])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> NewEvent {
        NewEvent::pair("a", "b", kind).session("s").tell(Some("t1"))
    }

    #[test]
    fn events_round_trip_in_order_with_filters() {
        let st = SessionStore::open_in_memory().expect("store");
        let rows = vec![
            EventRow::new(1, ev(EventKind::TellDelivered)),
            EventRow::new(
                2,
                ev(EventKind::ToolUse {
                    tool_use_id: "u1".into(),
                    tool: "Bash".into(),
                    input: "echo hi".into(),
                }),
            ),
            EventRow::new(3, NewEvent::pair("c", "a", EventKind::CompactionBegin)),
        ];
        let ids = st.insert_events(&rows).expect("insert");
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(st.max_event_id().expect("max"), 3);
        let all = st
            .events_after(0, &EventFilter::default(), 10)
            .expect("all");
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].kind, rows[1].event.kind);
        let team_a = EventFilter {
            team: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(st.events_after(1, &team_a, 10).expect("a").len(), 2);
        let pair = EventFilter {
            pair: Some(("c".into(), "a".into())),
            ..Default::default()
        };
        let got = st.events_after(0, &pair, 10).expect("pair");
        assert_eq!(got.len(), 1);
        assert!(pair.matches(&got[0]) && !pair.matches(&all[0]));
        assert_eq!(st.tell_events("t1").expect("tell").len(), 2);
        let act = st.tell_activity("t1").expect("activity");
        assert_eq!(act.events, 1);
        assert_eq!(act.bytes, rows[1].data.len() as u64);
        assert_eq!(st.prune_events(3).expect("prune"), 2);
        assert_eq!(st.max_event_id().expect("max"), 3);
    }

    /// A tell's events are stored with its row id and found by it (the timeline and the bound
    /// read two indexes, no scan of the events); those naming a tell the database does not
    /// hold are found by that id; a row id used again after its tell was deleted finds only
    /// the new tell's events.
    #[test]
    fn a_tells_events_are_found_by_its_row() {
        use crate::store::{NewTell, TellKind};
        let st = SessionStore::open_in_memory().expect("store");
        let (s, _) = st
            .insert_or_get("a", "b", "11111111-1111-4111-8111-111111111111", 1)
            .expect("session");
        let tell = |tell_id: &str| {
            let new = NewTell {
                tell_id,
                session_id: &s.session_id,
                from_team: "a",
                to_team: "b",
                kind: TellKind::Tell,
                text: "hi",
                parent_tell_id: None,
            };
            st.insert_tell(&new, 1).expect("tell")
        };
        let of = |tell: &str, kind| {
            EventRow::new(
                1,
                NewEvent::pair("a", "b", kind)
                    .session(&s.session_id)
                    .tell(Some(tell)),
            )
        };
        let text = || EventKind::Text { text: "x".into() };
        let t1 = tell("aaaaaaaa-0000-4000-8000-000000000001");
        st.insert_events(&[
            of(&t1.tell_id, EventKind::TellDelivered),
            of("not-a-tell", EventKind::TellDelivered),
            of(&t1.tell_id, text()),
        ])
        .expect("events");
        let tell_rows: Vec<Option<i64>> = {
            let conn = st.conn().expect("conn");
            let mut stmt = conn
                .prepare("SELECT tell_row FROM events ORDER BY id")
                .expect("prepare");
            let rows = stmt.query_map([], |r| r.get(0)).expect("query");
            rows.map(|r| r.expect("row")).collect()
        };
        assert_eq!(tell_rows, [Some(t1.id), None, Some(t1.id)]);
        let ids = |tell: &str| -> Vec<i64> {
            let events = st.tell_events(tell).expect("timeline");
            events.iter().map(|e| e.id).collect()
        };
        assert_eq!(ids(&t1.tell_id), [1, 3]);
        assert_eq!(ids("not-a-tell"), [2]);
        assert_eq!(st.tell_activity(&t1.tell_id).expect("bound").events, 1);

        let conn = st.conn().expect("conn");
        for sql in [TELL_EVENTS, TELL_ACTIVITY] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("plan")
                .query_map(["x"], |r| r.get(3))
                .expect("query")
                .map(|r| r.expect("row"))
                .collect();
            let plan = plan.join("; ");
            assert!(plan.contains("events_by_tell_row"), "{plan}");
            assert!(plan.contains("events_of_unknown_tells"), "{plan}");
            assert!(!plan.contains("SCAN events"), "{plan}");
        }
        drop(conn);

        // A deleted tell's events stay its own, found by its id.
        st.delete_tells("a", "b").expect("delete");
        assert_eq!(ids(&t1.tell_id), [1, 3]);
        let t2 = tell("bbbbbbbb-0000-4000-8000-000000000002");
        assert_eq!(t2.id, t1.id, "SQLite gives the row id again");
        st.insert_events(&[of(&t2.tell_id, text())]).expect("event");
        assert_eq!(ids(&t2.tell_id), [4]);
        assert_eq!(ids(&t1.tell_id), [1, 3]);
        assert_eq!(st.tell_activity(&t1.tell_id).expect("bound").events, 1);
    }

    #[test]
    fn event_json_is_flat_with_a_type() {
        let e = ev(EventKind::AgentStatus { text: "x".into() }).into_event(7, 9);
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(v["type"], "agent_status");
        assert_eq!(v["id"], 7);
        assert_eq!(v["text"], "x");
        let back: Event = serde_json::from_value(v).expect("back");
        assert_eq!(back, e);
        assert_eq!(e.kind.type_name(), "agent_status");
    }

    #[test]
    fn pairs_parse() {
        assert_eq!(
            EventFilter::parse_pair("a:b"),
            Ok(("a".to_string(), "b".to_string()))
        );
        assert!(EventFilter::parse_pair("ab").is_err());
        assert!(EventFilter::parse_pair(":b").is_err());
    }
}
