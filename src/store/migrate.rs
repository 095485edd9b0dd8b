//! Embedded, immutable migrations (`migrations/NNNN_name.sql`), applied in order at open, one
//! transaction each, each recorded in `schema_migrations`.

use rusqlite::{Connection, TransactionBehavior};

use super::{StoreError, StoreResult};

/// Every migration this binary knows: (version, name, SQL). Never edit an applied one.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_tells",
        include_str!("../../migrations/0002_tells.sql"),
    ),
    (
        3,
        "0003_tell_children",
        include_str!("../../migrations/0003_tell_children.sql"),
    ),
    (
        4,
        "0004_tell_keys",
        include_str!("../../migrations/0004_tell_keys.sql"),
    ),
    (
        5,
        "0005_answered_tells",
        include_str!("../../migrations/0005_answered_tells.sql"),
    ),
    (
        6,
        "0006_events",
        include_str!("../../migrations/0006_events.sql"),
    ),
    (
        7,
        "0007_approvals",
        include_str!("../../migrations/0007_approvals.sql"),
    ),
    (
        8,
        "0008_session_live",
        include_str!("../../migrations/0008_session_live.sql"),
    ),
    (
        9,
        "0009_agent_session_id",
        include_str!("../../migrations/0009_agent_session_id.sql"),
    ),
    (
        10,
        "0010_session_remote",
        include_str!("../../migrations/0010_session_remote.sql"),
    ),
    (
        11,
        "0011_tell_indexes",
        include_str!("../../migrations/0011_tell_indexes.sql"),
    ),
    (
        12,
        "0012_session_pending",
        include_str!("../../migrations/0012_session_pending.sql"),
    ),
    (
        13,
        "0013_checks_without_in",
        include_str!("../../migrations/0013_checks_without_in.sql"),
    ),
    (
        14,
        "0014_events_by_tell_row",
        include_str!("../../migrations/0014_events_by_tell_row.sql"),
    ),
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
)";

/// The schema version recorded in the database (0 when none).
pub(crate) fn current_version(conn: &Connection) -> rusqlite::Result<i64> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )
}

/// Whether migration `version` is recorded as applied.
fn is_applied(conn: &Connection, version: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
        [version],
        |r| r.get(0),
    )
}

/// Applies every pending migration. Safe against other processes doing the same at once: each
/// step re-reads what is applied inside an IMMEDIATE transaction. A migration is pending when
/// its own version is not recorded (not merely when it is above the newest recorded one):
/// numbers are given out to branches that merge in any order, so a database may have 8 before
/// 6 and 7.
pub(crate) fn apply(conn: &mut Connection, path: &str) -> StoreResult<()> {
    // Read-only check first, so a database from the future is not touched at all.
    let found = current_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION
        && MIGRATIONS
            .iter()
            .all(|m| is_applied(conn, m.0).unwrap_or(false))
    {
        return Ok(());
    }
    for &(version, name, sql) in MIGRATIONS {
        let fail = |source| StoreError::Migration {
            path: path.to_string(),
            version,
            name,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(CREATE_TABLE).map_err(fail)?;
        let now_version = current_version(&tx).map_err(fail)?;
        if now_version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path: path.to_string(),
                found: now_version,
                known: SCHEMA_VERSION,
            });
        }
        if is_applied(&tx, version).map_err(fail)? {
            continue; // applied before, or meanwhile by another process; the transaction rolls back
        }
        tx.execute_batch(sql).map_err(fail)?;
        bump_schema_cookie(&tx).map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, crate::util::now_ms()],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(version, name, db = path, "applied migration");
    }
    Ok(())
}

/// Increments the schema cookie once more. A migration that rewrites `sqlite_schema` in place
/// (0013) changes no cookie by itself, and a connection reads the schema again only when it
/// finds the cookie changed: other connections, open now or in the pool, would go on with the
/// text they parsed. Then this connection reads it again too.
fn bump_schema_cookie(tx: &Connection) -> rusqlite::Result<()> {
    let cookie: i64 = tx.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    tx.execute_batch(&format!("PRAGMA schema_version = {}", cookie + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_match_the_folder() {
        let mut files: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .expect("migrations folder")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
        files.sort();
        let names: Vec<String> = MIGRATIONS.iter().map(|m| format!("{}.sql", m.1)).collect();
        assert_eq!(
            files, names,
            "every file in migrations/ must be listed in MIGRATIONS"
        );
        // Strictly increasing; numbers handed to branches not merged yet may be missing.
        for (i, m) in MIGRATIONS.iter().enumerate() {
            if i > 0 {
                assert!(
                    m.0 > MIGRATIONS[i - 1].0,
                    "{} after {}",
                    m.1,
                    MIGRATIONS[i - 1].1
                );
            }
            assert!(m.1.starts_with(&format!("{:04}_", m.0)));
        }
    }
}
