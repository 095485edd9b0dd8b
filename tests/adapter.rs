//! The adapter layer's own storage: the agent's session id (migration 0009) is kept with the
//! session, survives a restart of Switchboard (a new store on the same file), and a reboot
//! (a new conversation) forgets it.

use switchboard::store::{SessionStore, MIGRATIONS};

#[test]
fn the_agents_own_session_id_is_stored_with_the_session_and_a_reboot_clears_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    let id = "11111111-1111-4111-8111-111111111111";
    {
        let store = SessionStore::open(&path).expect("open");
        let (s, _) = store.insert_or_get("a", "b", id, 1).expect("insert");
        assert_eq!(s.agent_session_id, None);
        let s = store
            .set_agent_session_id(id, Some("019a-thread"))
            .expect("set");
        assert_eq!(s.agent_session_id.as_deref(), Some("019a-thread"));
    }
    let store = SessionStore::open(&path).expect("reopen");
    let s = store.get_by_pair("a", "b").expect("get").expect("row");
    assert_eq!(s.agent_session_id.as_deref(), Some("019a-thread"));
    let new_id = "22222222-2222-4222-8222-222222222222";
    let s = store.reboot_session(id, new_id, 2).expect("reboot");
    assert_eq!(s.session_id, new_id);
    assert_eq!(
        s.agent_session_id, None,
        "a new conversation has no thread yet"
    );
}

/// A database of version 7 (before the agent's session id) opens: migration 0009 adds the
/// column, empty, and keeps the sessions.
#[test]
fn migration_0009_adds_the_agent_session_id_to_a_version_7_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    {
        let c = rusqlite::Connection::open(&path).expect("raw");
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at INTEGER NOT NULL)",
        )
        .expect("table");
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 <= 7) {
            c.execute_batch(sql).expect("migration");
            c.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                rusqlite::params![version, name],
            )
            .expect("record");
        }
        c.execute_batch(
            "INSERT INTO sessions (session_id, from_team, to_team, created_at, last_used_at)
               VALUES ('11111111-1111-4111-8111-111111111111', 'a', 'b', 1, 1);",
        )
        .expect("data");
    }
    let store = SessionStore::open(&path).expect("migrate");
    assert!(store.schema_version().expect("version") >= 9);
    let s = store.get_by_pair("a", "b").expect("read").expect("kept");
    assert_eq!(s.agent_session_id, None);
    store
        .set_agent_session_id(&s.session_id, Some("thread-1"))
        .expect("the new column takes a value");
}
