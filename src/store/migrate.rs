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
    apply_list(conn, path, MIGRATIONS)
}

/// [`apply`] with the migrations `list` (the newest last).
fn apply_list(
    conn: &mut Connection,
    path: &str,
    list: &[(i64, &'static str, &'static str)],
) -> StoreResult<()> {
    let newest = list.last().map_or(0, |m| m.0);
    // Read-only check first, so a database from the future is not touched at all.
    let found = current_version(conn)?;
    if found > newest {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found,
            known: newest,
        });
    }
    if found == newest && list.iter().all(|m| is_applied(conn, m.0).unwrap_or(false)) {
        return Ok(());
    }
    for &(version, name, sql) in list {
        let step = apply_one(conn, path, newest, (version, name, sql));
        if step.is_err() {
            // Connection state, not undone by the rollback: a migration that rewrites the
            // schema in place (0013) turns it on and would leave it on.
            let _ = conn.execute_batch("PRAGMA writable_schema = OFF");
        }
        if step? {
            tracing::info!(version, name, db = path, "applied migration");
        }
    }
    Ok(())
}

/// Applies one migration in an IMMEDIATE transaction unless it is recorded as applied; whether
/// it was applied now.
fn apply_one(
    conn: &mut Connection,
    path: &str,
    newest: i64,
    (version, name, sql): (i64, &'static str, &'static str),
) -> StoreResult<bool> {
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
    if now_version > newest {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found: now_version,
            known: newest,
        });
    }
    if is_applied(&tx, version).map_err(fail)? {
        return Ok(false); // applied before, or meanwhile by another process; the transaction rolls back
    }
    tx.execute_batch(sql).map_err(fail)?;
    bump_schema_cookie(&tx).map_err(fail)?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![version, name, crate::util::now_ms()],
    )
    .map_err(fail)?;
    tx.commit().map_err(fail)?;
    Ok(true)
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

    /// A migration that fails after turning `writable_schema` on (as 0013 does, to rewrite
    /// the schema in place) is rolled back and reported, and leaves the connection as it was:
    /// the setting is the connection's, which a rollback does not undo.
    #[test]
    fn a_failed_migration_leaves_the_schema_read_only() {
        let mut conn = Connection::open_in_memory().expect("db");
        let list: &[(i64, &str, &str)] = &[
            (1, "0001_t", "CREATE TABLE t (x INTEGER);"),
            (
                2,
                "0002_broken",
                "PRAGMA writable_schema = ON; INSERT INTO no_such_table VALUES (1);",
            ),
        ];
        let err = apply_list(&mut conn, "test.db", list).expect_err("the second fails");
        assert!(
            matches!(err, StoreError::Migration { version: 2, .. }),
            "{err}"
        );
        let writable: i64 = conn
            .query_row("PRAGMA writable_schema", [], |r| r.get(0))
            .expect("pragma");
        assert_eq!(writable, 0, "writable_schema left on");
        assert_eq!(current_version(&conn).expect("version"), 1);
    }

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
