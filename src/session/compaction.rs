//! Compaction bookkeeping and policy: when a session is due, and the status moves of a
//! compaction (the agent-side `/compact` is the agent runtime's).

use crate::store::{Session, SessionStatus};
use crate::util::now_ms;

use super::{SessionError, SessionManager, SessionResult};

impl SessionManager {
    /// Whether the compaction policy says the session is due: `message_count ≥ max_messages`, or
    /// `message_count ≥ stale_messages` and unused for `stale_age`. Archived sessions and those
    /// compacting now are never due.
    pub fn should_compact(&self, s: &Session) -> bool {
        if matches!(
            s.status,
            SessionStatus::Archived | SessionStatus::Compacting
        ) {
            return false;
        }
        let q = self.due_query();
        s.message_count >= q.max_messages
            || (s.message_count >= q.stale_messages && s.last_used_at < q.stale_before)
    }

    /// Sessions due for compaction, most messages first.
    pub fn due_for_compaction(&self, limit: Option<u32>) -> SessionResult<Vec<Session>> {
        Ok(self.store.due_for_compaction(self.due_query(), limit)?)
    }

    /// Asks for a compaction: status `compact_pending`. Refused for an archived session or one
    /// compacting now.
    pub fn request_compaction(&self, s: &Session) -> SessionResult<Session> {
        self.check_compactable(s)?;
        self.set_status(&s.session_id, SessionStatus::CompactPending)
    }

    /// A compaction starts: status `compacting`. Refused for an archived session or one
    /// compacting already.
    pub fn begin_compaction(&self, s: &Session) -> SessionResult<Session> {
        self.check_compactable(s)?;
        self.set_status(&s.session_id, SessionStatus::Compacting)
    }

    /// A compaction finished: message count 0, one more compaction, when, the context tokens
    /// before and after as the agent reported them (`None`: it did not say), status `active`.
    pub fn finish_compaction(
        &self,
        session_id: &str,
        pre_tokens: impl Into<Option<i64>>,
        post_tokens: impl Into<Option<i64>>,
    ) -> SessionResult<Session> {
        let (pre, post) = (pre_tokens.into(), post_tokens.into());
        self.write(|st| st.finish_compaction(session_id, pre, post, now_ms()))
    }

    /// A compaction failed: status `error`, the reason in `last_error`.
    pub fn fail_compaction(&self, session_id: &str, reason: &str) -> SessionResult<Session> {
        self.mark_error(session_id, &format!("compaction failed: {reason}"))
    }

    fn check_compactable(&self, s: &Session) -> SessionResult<()> {
        let message = match s.status {
            SessionStatus::Archived => "is archived",
            SessionStatus::Compacting => "is compacting already",
            _ => return Ok(()),
        };
        Err(SessionError::Conflict {
            session: s.pair(),
            message: message.to_string(),
        })
    }
}
