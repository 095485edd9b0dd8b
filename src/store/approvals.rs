//! SQL over `approvals` (the agents' permission requests and their decisions) and
//! `session_rules` (allow rules a person added for one session with `--always`).

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{write_returning, SessionStore, StoreResult};
use crate::util::ProcessIdentity;

/// One permission request of an agent, and its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Approval {
    /// Its id (`ap-` and 12 hex digits).
    pub approval_id: String,
    /// The tell being answered when the agent asked.
    pub tell_id: Option<String>,
    /// The session of the agent.
    pub session_id: String,
    /// The pair's calling team.
    pub from_team: String,
    /// The team whose agent asked.
    pub to_team: String,
    /// The agent's id of the request.
    pub request_id: String,
    /// The agent's id of the tool call.
    pub tool_use_id: Option<String>,
    /// The tool.
    pub tool: String,
    /// A bounded, redacted summary of the input.
    pub input: String,
    /// Who was asked: `rule`, `human` or `caller`.
    pub decide_by: String,
    /// `pending`, `allowed`, `denied` or `expired`.
    pub state: String,
    /// Who decided: `rule`, `person`, `caller`, `timeout`; `agent` for expired ones.
    pub decided_by: Option<String>,
    /// The reason given to the agent (deny, expiry).
    pub reason: Option<String>,
    /// The rule that decided, or the session rule added with it.
    pub rule: Option<String>,
    /// When asked, unix ms.
    pub created_at: i64,
    /// When it is denied unless decided before, unix ms.
    pub expires_at: i64,
    /// When decided, unix ms.
    pub decided_at: Option<i64>,
}

impl Approval {
    /// Whether it still waits for a decision.
    pub fn is_pending(&self) -> bool {
        self.state == "pending"
    }
}

/// A request to store.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    /// Its id.
    pub approval_id: &'a str,
    /// The tell being answered.
    pub tell_id: Option<&'a str>,
    /// The session.
    pub session_id: &'a str,
    /// Calling team.
    pub from_team: &'a str,
    /// The team whose agent asks.
    pub to_team: &'a str,
    /// The agent's request id.
    pub request_id: &'a str,
    /// The tool call's id.
    pub tool_use_id: Option<&'a str>,
    /// The tool.
    pub tool: &'a str,
    /// The input summary.
    pub input: &'a str,
    /// `rule`, `human` or `caller`.
    pub decide_by: &'a str,
    /// Decided at once (by a rule): `(state, decided_by, reason, rule)`; `None` = pending.
    pub decided: Option<(&'a str, &'a str, Option<&'a str>, Option<&'a str>)>,
    /// Deadline, unix ms.
    pub expires_at: i64,
    /// The process whose agent asks.
    pub owner: ProcessIdentity,
}

/// An allow rule of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRule {
    /// Its number (for `approvals rules remove`).
    pub id: i64,
    /// The session.
    pub session_id: String,
    /// Calling team of the session.
    pub from_team: String,
    /// Team of the session's agent.
    pub to_team: String,
    /// The rule (Claude Code's syntax).
    pub rule: String,
    /// The request whose `--always` added it.
    pub approval_id: Option<String>,
    /// When added, unix ms.
    pub created_at: i64,
}

/// Which requests to list.
#[derive(Debug, Clone, Default)]
pub struct ApprovalQuery<'a> {
    /// Only pending ones.
    pub pending_only: bool,
    /// Only those of this calling team.
    pub from_team: Option<&'a str>,
    /// Only those of this team's agents.
    pub to_team: Option<&'a str>,
    /// Only those of this tell.
    pub tell_id: Option<&'a str>,
    /// Only those asked of `human` / `caller`.
    pub decide_by: Option<&'a str>,
    /// Only those of this team, on either side (calling team or the agent's team).
    pub team: Option<&'a str>,
    /// At most this many: every pending one first, then the newest decided ones; listed
    /// oldest first.
    pub limit: u32,
}

const COLUMNS: &str = "approval_id, tell_id, session_id, from_team, to_team, request_id, \
    tool_use_id, tool, input, decide_by, state, decided_by, reason, rule, created_at, expires_at, \
    decided_at";

fn row_to_approval(r: &Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        approval_id: r.get(0)?,
        tell_id: r.get(1)?,
        session_id: r.get(2)?,
        from_team: r.get(3)?,
        to_team: r.get(4)?,
        request_id: r.get(5)?,
        tool_use_id: r.get(6)?,
        tool: r.get(7)?,
        input: r.get(8)?,
        decide_by: r.get(9)?,
        state: r.get(10)?,
        decided_by: r.get(11)?,
        reason: r.get(12)?,
        rule: r.get(13)?,
        created_at: r.get(14)?,
        expires_at: r.get(15)?,
        decided_at: r.get(16)?,
    })
}

fn row_to_rule(r: &Row<'_>) -> rusqlite::Result<SessionRule> {
    Ok(SessionRule {
        id: r.get(0)?,
        session_id: r.get(1)?,
        from_team: r.get(2)?,
        to_team: r.get(3)?,
        rule: r.get(4)?,
        approval_id: r.get(5)?,
        created_at: r.get(6)?,
    })
}

impl SessionStore {
    /// Stores a request (pending, or decided at once by a rule).
    pub fn insert_approval(&self, a: &NewApproval<'_>, now: i64) -> StoreResult<Approval> {
        let conn = self.conn()?;
        let (state, by, reason, rule) = match a.decided {
            Some((s, by, reason, rule)) => (s, Some(by), reason, rule),
            None => ("pending", None, None, None),
        };
        let decided_at = a.decided.map(|_| now);
        let sql = format!(
            "INSERT INTO approvals (approval_id, tell_id, session_id, from_team, to_team, \
             request_id, tool_use_id, tool, input, decide_by, state, decided_by, reason, rule, \
             created_at, expires_at, decided_at, owner_pid, owner_started_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
             ?18, ?19) RETURNING {COLUMNS}"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let row = write_returning(
            &mut stmt,
            params![
                a.approval_id,
                a.tell_id,
                a.session_id,
                a.from_team,
                a.to_team,
                a.request_id,
                a.tool_use_id,
                a.tool,
                a.input,
                a.decide_by,
                state,
                by,
                reason,
                rule,
                now,
                a.expires_at,
                decided_at,
                a.owner.pid,
                a.owner.started_at
            ],
            row_to_approval,
        )?;
        row.ok_or_else(|| super::StoreError::NotFound(format!("approval {}", a.approval_id)))
    }

    /// A request by id.
    pub fn get_approval(&self, approval_id: &str) -> StoreResult<Option<Approval>> {
        let conn = self.conn()?;
        let sql = format!("SELECT {COLUMNS} FROM approvals WHERE approval_id = ?1");
        let found = conn
            .prepare_cached(&sql)?
            .query_row([approval_id], row_to_approval)
            .optional()?;
        Ok(found)
    }

    /// Requests whose id starts with `prefix` (at most 2: enough to tell ambiguity).
    pub fn find_approvals(&self, prefix: &str) -> StoreResult<Vec<Approval>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals WHERE substr(approval_id, 1, length(?1)) = ?1 LIMIT 2"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([prefix], row_to_approval)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Decides a pending request: `state` `allowed` / `denied` / `expired`. `None` when it was
    /// not pending any more (decided meanwhile, by someone else or the timeout).
    pub fn decide_approval(
        &self,
        approval_id: &str,
        state: &str,
        decided_by: &str,
        reason: Option<&str>,
        rule: Option<&str>,
        now: i64,
    ) -> StoreResult<Option<Approval>> {
        let conn = self.conn()?;
        let sql = format!(
            "UPDATE approvals SET state = ?2, decided_by = ?3, reason = ?4, \
             rule = COALESCE(?5, rule), decided_at = ?6 \
             WHERE approval_id = ?1 AND state = 'pending' RETURNING {COLUMNS}"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        Ok(write_returning(
            &mut stmt,
            params![approval_id, state, decided_by, reason, rule, now],
            row_to_approval,
        )?)
    }

    /// Requests as `q` says, oldest first.
    pub fn list_approvals(&self, q: &ApprovalQuery<'_>) -> StoreResult<Vec<Approval>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT * FROM (SELECT {COLUMNS}, id FROM approvals \
             WHERE (?1 = 0 OR state = 'pending') AND (?2 IS NULL OR from_team = ?2) \
             AND (?3 IS NULL OR to_team = ?3) AND (?4 IS NULL OR tell_id = ?4) \
             AND (?5 IS NULL OR decide_by = ?5) \
             AND (?7 IS NULL OR from_team = ?7 OR to_team = ?7) \
             ORDER BY state = 'pending' DESC, id DESC LIMIT ?6) ORDER BY id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                q.pending_only as i64,
                q.from_team,
                q.to_team,
                q.tell_id,
                q.decide_by,
                q.limit.max(1),
                q.team
            ],
            row_to_approval,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Pending requests with the process that owns each (its agent asked), for expiry.
    pub fn pending_approvals_with_owner(
        &self,
    ) -> StoreResult<Vec<(Approval, Option<ProcessIdentity>)>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {COLUMNS}, owner_pid, owner_started_at FROM approvals WHERE state = 'pending' \
             ORDER BY id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([], |r| {
            let a = row_to_approval(r)?;
            let pid: Option<i64> = r.get(17)?;
            let started: Option<i64> = r.get(18)?;
            let owner = pid
                .and_then(|p| u32::try_from(p).ok())
                .map(|pid| ProcessIdentity {
                    pid,
                    started_at: started.unwrap_or(0),
                });
            Ok((a, owner))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes the decided (or expired) requests decided before `before` (unix ms); pending
    /// ones always stay. Returns how many.
    pub fn prune_decided_approvals(&self, before: i64) -> StoreResult<usize> {
        let conn = self.conn()?;
        let n = conn
            .prepare_cached(
                "DELETE FROM approvals WHERE state <> 'pending' \
                 AND COALESCE(decided_at, created_at) < ?1",
            )?
            .execute([before])?;
        Ok(n)
    }

    /// Adds an allow rule to a session (no-op when it is there already); returns it.
    pub fn add_session_rule(
        &self,
        session_id: &str,
        from_team: &str,
        to_team: &str,
        rule: &str,
        approval_id: Option<&str>,
        now: i64,
    ) -> StoreResult<SessionRule> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "INSERT INTO session_rules (session_id, from_team, to_team, rule, approval_id, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (session_id, rule) DO NOTHING",
        )?
        .execute(params![
            session_id,
            from_team,
            to_team,
            rule,
            approval_id,
            now
        ])?;
        let found = conn
            .prepare_cached(
                "SELECT id, session_id, from_team, to_team, rule, approval_id, created_at \
                 FROM session_rules WHERE session_id = ?1 AND rule = ?2",
            )?
            .query_row(params![session_id, rule], row_to_rule)?;
        Ok(found)
    }

    /// The allow rules of sessions (one session, or all), oldest first.
    pub fn session_rules(&self, session_id: Option<&str>) -> StoreResult<Vec<SessionRule>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, session_id, from_team, to_team, rule, approval_id, created_at \
             FROM session_rules WHERE (?1 IS NULL OR session_id = ?1) ORDER BY id",
        )?;
        let rows = stmt.query_map([session_id], row_to_rule)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes a session rule by number; returns it, `None` when there is none.
    pub fn remove_session_rule(&self, id: i64) -> StoreResult<Option<SessionRule>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "DELETE FROM session_rules WHERE id = ?1 \
             RETURNING id, session_id, from_team, to_team, rule, approval_id, created_at",
        )?;
        Ok(write_returning(&mut stmt, [id], row_to_rule)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new<'a>(id: &'a str, tell: &'a str) -> NewApproval<'a> {
        NewApproval {
            approval_id: id,
            tell_id: Some(tell),
            session_id: "s1",
            from_team: "a",
            to_team: "b",
            request_id: "r1",
            tool_use_id: Some("toolu_1"),
            tool: "Write",
            input: "/x (1 bytes: y)",
            decide_by: "human",
            decided: None,
            expires_at: 2_000,
            owner: ProcessIdentity {
                pid: 1,
                started_at: 0,
            },
        }
    }

    #[test]
    fn pruning_keeps_pending_requests_and_recent_decisions() {
        let s = SessionStore::open_in_memory().expect("store");
        for id in ["old", "recent", "pending"] {
            s.insert_approval(&new(id, "t1"), 1_000).expect("insert");
        }
        s.decide_approval("old", "allowed", "person", None, None, 1_100)
            .expect("decide");
        s.decide_approval("recent", "denied", "rule", None, None, 5_000)
            .expect("decide");
        assert_eq!(s.prune_decided_approvals(2_000).expect("prune"), 1);
        assert!(s.get_approval("old").expect("get").is_none());
        assert!(s.get_approval("recent").expect("get").is_some());
        let p = s.get_approval("pending").expect("get").expect("kept");
        assert!(
            p.is_pending(),
            "a pending request is never pruned, however old"
        );
    }

    #[test]
    fn a_request_is_decided_once() {
        let s = SessionStore::open_in_memory().expect("store");
        let a = s
            .insert_approval(&new("ap-1", "t1"), 1_000)
            .expect("insert");
        assert!(a.is_pending());
        let d = s
            .decide_approval("ap-1", "denied", "person", Some("no"), None, 1_500)
            .expect("decide")
            .expect("was pending");
        assert_eq!(
            (d.state.as_str(), d.decided_by.as_deref(), d.decided_at),
            ("denied", Some("person"), Some(1_500))
        );
        // The timeout (or a second person) comes too late: nothing changes.
        assert!(s
            .decide_approval("ap-1", "allowed", "timeout", None, None, 1_600)
            .expect("decide")
            .is_none());
        assert_eq!(s.get_approval("ap-1").expect("get").expect("row"), d);
        s.insert_approval(&new("ap-2", "t2"), 1_100)
            .expect("insert");
        let pending = s
            .list_approvals(&ApprovalQuery {
                pending_only: true,
                limit: 10,
                ..Default::default()
            })
            .expect("list");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].approval_id, "ap-2");
        let of_t1 = s
            .list_approvals(&ApprovalQuery {
                tell_id: Some("t1"),
                limit: 10,
                ..Default::default()
            })
            .expect("list");
        assert_eq!(of_t1.len(), 1);
        assert_eq!(s.find_approvals("ap-").expect("find").len(), 2);
        let (owned, owner) = s.pending_approvals_with_owner().expect("owners").remove(0);
        assert_eq!(
            (owned.approval_id.as_str(), owner.map(|o| o.pid)),
            ("ap-2", Some(1))
        );
    }

    #[test]
    fn session_rules_are_kept_once_and_removed() {
        let s = SessionStore::open_in_memory().expect("store");
        let r = s
            .add_session_rule("s1", "a", "b", "Write", Some("ap-1"), 1)
            .expect("add");
        let again = s
            .add_session_rule("s1", "a", "b", "Write", Some("ap-2"), 2)
            .expect("add again");
        assert_eq!(r, again, "the same rule twice is one rule");
        s.add_session_rule("s2", "a", "c", "Write", None, 3)
            .expect("other session");
        assert_eq!(s.session_rules(Some("s1")).expect("list").len(), 1);
        assert_eq!(s.session_rules(None).expect("list").len(), 2);
        assert_eq!(
            s.remove_session_rule(r.id).expect("remove"),
            Some(r.clone())
        );
        assert_eq!(s.remove_session_rule(r.id).expect("remove"), None);
    }
}
