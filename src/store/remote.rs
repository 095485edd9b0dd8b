//! The remote agent of a session (`session_remote`, migration 0010): the host, pid and start
//! time of the process group a remote team's agent runs in, kept until that group is known to
//! be stopped.

use rusqlite::{params, OptionalExtension};

use super::{SessionStore, StoreError, StoreResult};

/// A remote agent recorded with a session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoteAgentRecord {
    /// The SSH destination of the team when the agent started (`user@host` or an alias).
    pub host: String,
    /// The agent's pid on that host (= its process group).
    pub pid: u32,
    /// Its start time there, in clock ticks after boot (0: unknown).
    pub start: u64,
    /// When it was recorded (ms since the epoch).
    pub recorded_at: i64,
}

impl SessionStore {
    /// Records the remote agent of session `session_id` (replacing an earlier one).
    pub fn set_remote_agent(
        &self,
        session_id: &str,
        host: &str,
        pid: u32,
        start: u64,
    ) -> StoreResult<()> {
        let conn = self.wconn()?;
        let n = conn
            .prepare_cached(
                "INSERT INTO session_remote (session, host, remote_pid, remote_start, recorded_at) \
                 SELECT id, ?2, ?3, ?4, ?5 FROM sessions WHERE session_id = ?1 \
                 ON CONFLICT (session) DO UPDATE SET host = excluded.host, \
                 remote_pid = excluded.remote_pid, remote_start = excluded.remote_start, \
                 recorded_at = excluded.recorded_at",
            )?
            .execute(params![
                session_id,
                host,
                pid,
                // SQLite integers are signed; a start time never comes near 2^63.
                i64::try_from(start).unwrap_or(i64::MAX),
                crate::util::now_ms()
            ])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("session {session_id}")));
        }
        Ok(())
    }

    /// The remote agent recorded with session `session_id`, if any.
    pub fn remote_agent(&self, session_id: &str) -> StoreResult<Option<RemoteAgentRecord>> {
        let conn = self.conn()?;
        let row = conn
            .prepare_cached(
                "SELECT r.host, r.remote_pid, r.remote_start, r.recorded_at \
                 FROM session_remote r JOIN sessions s ON s.id = r.session \
                 WHERE s.session_id = ?1",
            )?
            .query_row([session_id], |r| {
                Ok(RemoteAgentRecord {
                    host: r.get(0)?,
                    pid: r.get(1)?,
                    start: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    recorded_at: r.get(3)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Forgets the remote agent of session `session_id` (its group is known to be stopped).
    /// Returns whether one was recorded.
    pub fn clear_remote_agent(&self, session_id: &str) -> StoreResult<bool> {
        let conn = self.wconn()?;
        let n = conn
            .prepare_cached(
                "DELETE FROM session_remote \
                 WHERE session = (SELECT id FROM sessions WHERE session_id = ?1)",
            )?
            .execute([session_id])?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_agent_is_recorded_replaced_and_cleared() {
        let store = SessionStore::open_in_memory().expect("store");
        let (s, _) = store
            .insert_or_get("a", "b", "0b0f0c4e-0000-4000-8000-000000000000", 1)
            .expect("session");
        assert_eq!(store.remote_agent(&s.session_id).expect("read"), None);
        store
            .set_remote_agent(&s.session_id, "deploy@gpu", 12, 345)
            .expect("set");
        store
            .set_remote_agent(&s.session_id, "deploy@gpu", 13, 346)
            .expect("replace");
        let r = store
            .remote_agent(&s.session_id)
            .expect("read")
            .expect("row");
        assert_eq!((r.host.as_str(), r.pid, r.start), ("deploy@gpu", 13, 346));
        assert!(store.clear_remote_agent(&s.session_id).expect("clear"));
        assert!(!store.clear_remote_agent(&s.session_id).expect("clear"));
        assert!(matches!(
            store.set_remote_agent("no-such-session", "h", 1, 1),
            Err(StoreError::NotFound(_))
        ));
    }
}
