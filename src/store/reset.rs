//! The start-up reset: the per-process rows (`session_live`) of Switchboard processes that are
//! gone, and the rows no process holds, go; interrupted compactions go back to
//! `compact_pending`. Reads only the narrow per-process table and its owner index.
//!
//! When no live process holds any session (one Switchboard restarting after a crash: the usual
//! case) every row of `session_live` goes, in one statement that drops the table's pages at once
//! instead of deleting row by row (4,950 rows: 4.6 ms row by row here). Otherwise only the rows of
//! the dead owners and the ownerless rows go, by the owner index.

use std::collections::HashSet;

use rusqlite::{params, Connection, Row, TransactionBehavior};

use super::StoreResult;
use crate::util::ProcessIdentity;

/// What [`super::SessionStore::reset_orphaned`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResetReport {
    /// How many sessions were reset to `stopped` (or had an interrupted compaction put back).
    pub reset: usize,
    /// Sessions left alone because another live process owns them.
    pub owned_by_live_process: usize,
    /// Agent processes the reset sessions recorded (they may have outlived their owner).
    pub orphan_agents: Vec<ProcessIdentity>,
}

/// A holder of `session_live` rows: (owner_pid, owner_started_at).
type Owner = (i64, Option<i64>);

/// [`super::SessionStore::reset_orphaned`] on `conn` (not inside a transaction: it runs its
/// own, and sets `foreign_keys` around it).
pub fn reset_orphaned_in(
    conn: &mut Connection,
    is_alive: &dyn Fn(ProcessIdentity) -> bool,
) -> StoreResult<ResetReport> {
    // The reset deletes rows of `session_live`, a child table only: that can never break a
    // foreign key. With the checks on, SQLite deletes every row one by one (it must look at each
    // for the key); with them off, `DELETE FROM session_live` frees the table's pages at once
    // (its truncate optimization). The pragma is a no-op inside a transaction: off before it,
    // on again after, whatever happened.
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let result = reset_tx(conn, is_alive);
    let restored = conn.execute_batch("PRAGMA foreign_keys = ON");
    let report = result?;
    restored?;
    Ok(report)
}

fn identity((pid, started_at): Owner) -> ProcessIdentity {
    ProcessIdentity {
        pid: u32::try_from(pid).unwrap_or(0),
        started_at: started_at.unwrap_or(0),
    }
}

/// Every distinct owner of `session_live` rows, by seeks in the owner index (one per owner,
/// not one step per row).
fn owners(conn: &Connection) -> rusqlite::Result<Vec<Owner>> {
    let mut next_pid = conn.prepare_cached(
        "SELECT owner_pid, owner_started_at FROM session_live \
         WHERE owner_pid IS NOT NULL AND owner_pid > ?1 \
         ORDER BY owner_pid, owner_started_at LIMIT 1",
    )?;
    let mut next_after = conn.prepare_cached(
        "SELECT owner_started_at FROM session_live \
         WHERE owner_pid = ?1 AND owner_started_at > ?2 ORDER BY owner_started_at LIMIT 1",
    )?;
    let mut next_after_null = conn.prepare_cached(
        "SELECT owner_started_at FROM session_live \
         WHERE owner_pid = ?1 AND owner_started_at IS NOT NULL ORDER BY owner_started_at LIMIT 1",
    )?;
    let mut found: Vec<Owner> = Vec::new();
    let mut pid = i64::MIN;
    loop {
        let Some((p, started)) = next_pid
            .query_map([pid], |r| Ok((r.get(0)?, r.get(1)?)))?
            .next()
            .transpose()?
        else {
            return Ok(found);
        };
        pid = p;
        found.push((p, started));
        let mut started: Option<i64> = started;
        loop {
            let next: Option<i64> = match started {
                Some(s) => next_after.query_map(params![p, s], |r| r.get(0))?.next(),
                None => next_after_null.query_map([p], |r| r.get(0))?.next(),
            }
            .transpose()?;
            match next {
                Some(s) => {
                    found.push((p, Some(s)));
                    started = Some(s);
                }
                None => break,
            }
        }
    }
}

fn reset_tx(
    conn: &mut Connection,
    is_alive: &dyn Fn(ProcessIdentity) -> bool,
) -> StoreResult<ResetReport> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut report = ResetReport::default();
    let mut dead = Vec::new();
    let mut any_live = false;
    for owner in owners(&tx)? {
        let id = identity(owner);
        if id.pid != 0 && is_alive(id) {
            any_live = true;
            report.owned_by_live_process += tx
                .prepare_cached(
                    "SELECT count(*) FROM session_live WHERE owner_pid = ?1 AND owner_started_at IS ?2",
                )?
                .query_row(params![owner.0, owner.1], |r| r.get::<_, i64>(0))?
                as usize;
        } else {
            dead.push(owner);
        }
    }
    // The rows nobody holds (no index has them: one pass over the narrow table) and the agents
    // they and the dead owners recorded.
    let (mut ownerless, mut ownerless_live) = (0usize, 0usize);
    let mut agents: Vec<(i64, Option<i64>)> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT agent_pid, agent_started_at, process_state != 'stopped' OR agent_pid IS NOT NULL \
             FROM session_live WHERE owner_pid IS NULL",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            ownerless += 1;
            if r.get::<_, bool>(2)? {
                ownerless_live += 1;
            }
            if let Some(pid) = r.get::<_, Option<i64>>(0)? {
                agents.push((pid, r.get(1)?));
            }
        }
        let agent_row = |r: &Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?));
        let mut by_owner = tx.prepare_cached(
            "SELECT agent_pid, agent_started_at FROM session_live \
             WHERE owner_pid = ?1 AND owner_started_at IS ?2 AND agent_pid IS NOT NULL",
        )?;
        for (pid, started_at) in &dead {
            for row in by_owner.query_map(params![pid, started_at], agent_row)? {
                agents.push(row?);
            }
        }
    }
    report.orphan_agents = agents
        .into_iter()
        .filter_map(|(pid, st)| {
            Some(ProcessIdentity {
                pid: u32::try_from(pid).ok()?,
                started_at: st.unwrap_or(0),
            })
        })
        .collect();
    report.reset = if any_live {
        reset_some(&tx, &dead)?
    } else {
        reset_all(&tx, ownerless, ownerless_live)?
    };
    tx.commit()?;
    Ok(report)
}

/// No live process holds a session: every `session_live` row goes, in one statement. Returns how
/// many sessions were reset: the held rows, the ownerless rows in a live state or with an agent,
/// and the interrupted compactions not among them.
fn reset_all(tx: &Connection, ownerless: usize, ownerless_live: usize) -> StoreResult<usize> {
    let total: i64 = tx
        .prepare_cached("SELECT count(*) FROM session_live")?
        .query_row([], |r| r.get(0))?;
    let held = usize::try_from(total)
        .unwrap_or(0)
        .saturating_sub(ownerless);
    // Before the rows go: a compaction counts once, with its session's row or on its own.
    let mut compactions = 0;
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE sessions SET status = 'compact_pending' WHERE status = 'compacting' \
             RETURNING NOT EXISTS (SELECT 1 FROM session_live l WHERE l.session = sessions.id \
                 AND (l.owner_pid IS NOT NULL OR l.process_state != 'stopped' \
                      OR l.agent_pid IS NOT NULL))",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            if r.get::<_, bool>(0)? {
                compactions += 1;
            }
        }
    }
    tx.prepare_cached("DELETE FROM session_live")?.execute([])?;
    Ok(held + ownerless_live + compactions)
}

/// Some live process holds sessions: only the rows of the dead owners and the ownerless rows
/// go (by the owner index), and the compactions no live holder runs. Returns how many sessions
/// were reset.
fn reset_some(tx: &Connection, dead: &[Owner]) -> StoreResult<usize> {
    let mut reset: HashSet<i64> = HashSet::new();
    let mut by_owner = tx.prepare_cached(
        "DELETE FROM session_live WHERE owner_pid = ?1 AND owner_started_at IS ?2 \
         RETURNING session",
    )?;
    for (pid, started_at) in dead {
        for row in by_owner.query_map(params![pid, started_at], |r| r.get(0))? {
            reset.insert(row?);
        }
    }
    // Rows with no owner: a live state, an agent or a tell nobody holds.
    let mut ownerless = tx.prepare_cached(
        "DELETE FROM session_live WHERE owner_pid IS NULL \
         RETURNING session, process_state != 'stopped' OR agent_pid IS NOT NULL",
    )?;
    for row in ownerless.query_map([], |r| Ok((r.get(0)?, r.get::<_, bool>(1)?)))? {
        let (id, live) = row?;
        if live {
            reset.insert(id);
        }
    }
    // Compactions that no live holder runs any more (the status index finds them).
    let mut compacting = tx.prepare_cached(
        "UPDATE sessions SET status = 'compact_pending' WHERE status = 'compacting' \
         AND NOT EXISTS (SELECT 1 FROM session_live l WHERE l.session = sessions.id \
                         AND l.owner_pid IS NOT NULL) \
         RETURNING id",
    )?;
    for row in compacting.query_map([], |r| r.get(0))? {
        reset.insert(row?);
    }
    Ok(reset.len())
}
