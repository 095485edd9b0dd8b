//! The store on real SQLite files: migrations (empty database, re-open, a newer schema, a failed
//! migration), pragmas, constraints, and the trigger-kept totals against a brute-force count.

use std::path::Path;

use rusqlite::Connection;
use switchboard::store::{
    DueQuery, ListFilter, ListOrder, ProcessState, Session, SessionStatus, SessionStore, Stats,
    StoreError, MIGRATIONS, SCHEMA_VERSION,
};
use switchboard::util::ProcessIdentity;

fn migrations_rows(path: &Path) -> Vec<(i64, String, i64)> {
    let c = Connection::open(path).expect("open raw");
    let mut stmt = c
        .prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows");
    rows
}

#[test]
fn empty_database_gets_every_migration_with_wal_and_pragmas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/dir/sb.db");
    let store = SessionStore::open(&path).expect("open creates the folder and the file");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let rows = migrations_rows(&path);
    assert_eq!(rows.len(), MIGRATIONS.len());
    assert_eq!(rows[0].1, "0001_init");
    let c = Connection::open(&path).expect("open raw");
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    for table in ["sessions", "session_totals", "schema_migrations"] {
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .expect("table lookup");
        assert_eq!(n, 1, "table {table} exists");
    }
    let p = store.connection_pragmas().expect("pragmas");
    assert_eq!(p.foreign_keys, 1);
    assert_eq!(p.synchronous, 1, "synchronous=NORMAL");
    assert!(p.busy_timeout_ms >= 1000);
}

#[test]
fn reopening_applies_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    let store = SessionStore::open(&path).expect("open");
    store
        .insert_or_get("a", "b", "11111111-1111-4111-8111-111111111111", 1)
        .expect("insert");
    drop(store);
    let before = migrations_rows(&path);
    let store = SessionStore::open(&path).expect("reopen");
    assert_eq!(migrations_rows(&path), before, "no migration re-applied");
    let s = store.get_by_pair("a", "b").expect("get").expect("row kept");
    assert_eq!(s.session_id, "11111111-1111-4111-8111-111111111111");
}

#[test]
fn a_newer_schema_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    drop(SessionStore::open(&path).expect("open"));
    {
        let c = Connection::open(&path).expect("raw");
        c.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'from_the_future', 0)",
            [SCHEMA_VERSION + 1],
        )
        .expect("insert future version");
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("checkpoint");
    }
    let bytes_before = std::fs::read(&path).expect("read db");
    let rows_before = migrations_rows(&path);
    let err = SessionStore::open(&path).expect_err("must refuse a newer schema");
    match &err {
        StoreError::SchemaTooNew { found, known, .. } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*known, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("newer") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(migrations_rows(&path), rows_before);
    let c = Connection::open(&path).expect("raw");
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    drop(c);
    assert_eq!(
        std::fs::read(&path).expect("read db"),
        bytes_before,
        "file untouched"
    );
}

#[test]
fn a_failing_migration_is_rolled_back_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    {
        // Somebody else's database that happens to have a `sessions` table.
        let c = Connection::open(&path).expect("raw");
        c.execute_batch("CREATE TABLE sessions (x INTEGER)")
            .expect("create");
    }
    let err = SessionStore::open(&path).expect_err("migration 1 cannot apply");
    assert!(
        matches!(err, StoreError::Migration { version: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("0001_init"), "{err}");
    let c = Connection::open(&path).expect("raw");
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('session_totals', 'sessions_by_status')",
            [],
            |r| r.get(0),
        )
        .expect("lookup");
    assert_eq!(n, 0, "nothing of the failed migration stays");
    let recorded: i64 = c
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(recorded, 0);
}

#[test]
fn constraints_reject_bad_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    let store = SessionStore::open(&path).expect("open");
    store
        .insert_or_get("a", "b", "11111111-1111-4111-8111-111111111111", 1)
        .expect("insert");
    let c = Connection::open(&path).expect("raw");
    let bad = [
        "UPDATE sessions SET status = 'sleeping'",
        "UPDATE sessions SET process_state = 'dead'",
        "UPDATE sessions SET message_count = -1",
        "INSERT INTO sessions (from_team, to_team, session_id, created_at, last_used_at) \
         VALUES ('a', 'b', '22222222-2222-4222-8222-222222222222', 1, 1)",
        "INSERT INTO sessions (from_team, to_team, session_id, created_at, last_used_at) \
         VALUES ('x', 'y', '11111111-1111-4111-8111-111111111111', 1, 1)",
    ];
    for sql in bad {
        assert!(c.execute(sql, []).is_err(), "must be rejected: {sql}");
    }
}

#[test]
fn an_in_memory_store_works() {
    let store = SessionStore::open_in_memory().expect("memory");
    let (s, created) = store
        .insert_or_get("a", "b", "11111111-1111-4111-8111-111111111111", 5)
        .expect("insert");
    assert!(created);
    let (again, created) = store
        .insert_or_get("a", "b", "22222222-2222-4222-8222-222222222222", 6)
        .expect("insert again");
    assert!(!created);
    assert_eq!(again.session_id, s.session_id);
}

/// A tiny deterministic PRNG for the random walk below.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn trigger_totals_match_a_full_count_after_random_operations() {
    let store = SessionStore::open_in_memory().expect("memory");
    let teams = ["t0", "t1", "t2", "t3", "t4"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let dead = ProcessIdentity {
        pid: 1,
        started_at: 7,
    };
    for step in 0..2_000u64 {
        let from = teams[rng.below(5) as usize];
        let to = teams[rng.below(5) as usize];
        let existing = store.get_by_pair(from, to).expect("get");
        match (rng.below(8), existing) {
            (_, None) => {
                let id = format!("{:08x}-0000-4000-8000-{:012x}", step, rng.below(1 << 40));
                store
                    .insert_or_get(from, to, &id, step as i64)
                    .expect("insert");
            }
            (0, Some(s)) => {
                store.delete(&s.session_id).expect("delete");
            }
            (1, Some(s)) => {
                store
                    .increment_message_count(&s.session_id, rng.below(50) as i64, step as i64)
                    .expect("incr");
            }
            (2, Some(s)) => {
                store
                    .add_usage(
                        &s.session_id,
                        rng.below(1000) as i64,
                        rng.below(100) as i64,
                        0.25,
                    )
                    .expect("usage");
            }
            (3, Some(s)) => {
                let st = SessionStatus::ALL[rng.below(5) as usize];
                store.set_status(&s.session_id, st, None).expect("status");
            }
            (4, Some(s)) => {
                let ps = ProcessState::ALL[rng.below(5) as usize];
                store
                    .update_process_state(&s.session_id, ps)
                    .expect("state");
                store
                    .force_owner(&s.session_id, ps, Some(dead), step as i64)
                    .expect("owner");
            }
            (5, Some(s)) => {
                store
                    .finish_compaction(&s.session_id, 100, 10, step as i64)
                    .expect("compact");
            }
            (_, Some(s)) => {
                store.touch(&s.session_id, step as i64).expect("touch");
            }
        }
    }
    store.reset_orphaned(&|_| false).expect("reset");

    let all = store.list(&ListFilter::default()).expect("list");
    let q = DueQuery {
        max_messages: 60,
        stale_messages: 20,
        stale_before: 1_000,
    };
    let stats = store.stats(q).expect("stats");
    assert_eq!(stats.total_sessions, all.len() as i64);
    assert_eq!(
        stats.total_messages,
        all.iter().map(|s| s.message_count).sum::<i64>()
    );
    assert_eq!(
        stats.total_input_tokens,
        all.iter().map(|s| s.input_tokens).sum::<i64>()
    );
    assert_eq!(
        stats.total_output_tokens,
        all.iter().map(|s| s.output_tokens).sum::<i64>()
    );
    assert!((stats.total_cost_usd - all.iter().map(|s| s.cost_usd).sum::<f64>()).abs() < 1e-6);
    for st in SessionStatus::ALL {
        let n = all.iter().filter(|s| s.status == *st).count() as i64;
        assert_eq!(stats.by_status[st.as_str()], n, "status {st}");
    }
    for ps in ProcessState::ALL {
        let n = all.iter().filter(|s| s.process_state == *ps).count() as i64;
        assert_eq!(stats.by_process_state[ps.as_str()], n, "state {ps}");
    }
    assert_eq!(
        stats.by_process_state["stopped"],
        all.len() as i64,
        "reset stopped every one"
    );
    for t in &stats.per_team {
        let caller: Vec<_> = all.iter().filter(|s| s.from_team == t.team).collect();
        let callee: Vec<_> = all.iter().filter(|s| s.to_team == t.team).collect();
        assert_eq!(t.sessions_as_caller, caller.len() as i64);
        assert_eq!(t.sessions_as_callee, callee.len() as i64);
        assert_eq!(
            t.messages_as_caller,
            caller.iter().map(|s| s.message_count).sum::<i64>()
        );
        assert_eq!(
            t.messages_as_callee,
            callee.iter().map(|s| s.message_count).sum::<i64>()
        );
    }
    let due = all
        .iter()
        .filter(|s| {
            matches!(
                s.status,
                SessionStatus::Active | SessionStatus::CompactPending | SessionStatus::Error
            ) && (s.message_count >= 60 || (s.message_count >= 20 && s.last_used_at < 1_000))
        })
        .count() as i64;
    assert_eq!(stats.due_for_compaction, due);
    assert_eq!(
        store.due_for_compaction(q, None).expect("due").len() as i64,
        due
    );
    let mut by_messages: Vec<_> = all.iter().filter(|s| s.message_count > 0).collect();
    by_messages.sort_by(|a, b| b.message_count.cmp(&a.message_count).then(a.id.cmp(&b.id)));
    let expected: Vec<_> = by_messages
        .iter()
        .take(10)
        .map(|s| s.session_id.clone())
        .collect();
    let got: Vec<_> = stats
        .busiest_pairs
        .iter()
        .map(|p| p.session_id.clone())
        .collect();
    assert_eq!(got, expected);

    // Every read here adds the pending counters (migration 0012) to the folded ones: the lists
    // in each order, with and without a limit (which finds its candidates by the folded
    // values), then the same reads once the counters are folded into the rows.
    let lists = |store: &SessionStore| {
        let mut out = Vec::new();
        for order in [ListOrder::MessagesDesc, ListOrder::LastUsedDesc] {
            for limit in [None, Some(7)] {
                for to_team in [None, Some("t2")] {
                    let f = ListFilter {
                        order,
                        limit,
                        to_team: to_team.map(str::to_string),
                        used_after: Some(1_000),
                        ..ListFilter::default()
                    };
                    let mut want: Vec<_> = all
                        .iter()
                        .filter(|s| s.last_used_at >= 1_000)
                        .filter(|s| to_team.is_none_or(|t| s.to_team == t))
                        .collect();
                    want.sort_by(|a, b| match order {
                        ListOrder::MessagesDesc => {
                            b.message_count.cmp(&a.message_count).then(a.id.cmp(&b.id))
                        }
                        _ => b.last_used_at.cmp(&a.last_used_at).then(b.id.cmp(&a.id)),
                    });
                    want.truncate(limit.unwrap_or(usize::MAX as u32) as usize);
                    let got = store.list(&f).expect("list");
                    let ids = |v: &[&Session]| v.iter().map(|s| s.id).collect::<Vec<_>>();
                    assert_eq!(ids(&got.iter().collect::<Vec<_>>()), ids(&want), "{f:?}");
                    out.push(got);
                }
            }
        }
        out
    };
    let before_fold = lists(&store);
    let folded = store.fold_pending(u32::MAX).expect("fold");
    assert!(folded > 10, "the run left counters pending ({folded})");
    assert_eq!(store.fold_pending(u32::MAX).expect("fold again"), 0);
    assert_eq!(store.list(&ListFilter::default()).expect("list"), all);
    assert_eq!(lists(&store), before_fold);
    let after = store.stats(q).expect("stats after the fold");
    let costless = |mut s: Stats| {
        s.total_cost_usd = 0.0;
        s.per_team
            .iter_mut()
            .for_each(|t| t.cost_usd_as_callee = 0.0);
        s
    };
    assert!((after.total_cost_usd - stats.total_cost_usd).abs() < 1e-6);
    for (a, b) in after.per_team.iter().zip(&stats.per_team) {
        assert!((a.cost_usd_as_callee - b.cost_usd_as_callee).abs() < 1e-6);
    }
    assert_eq!(costless(after), costless(stats));
}

#[test]
fn the_released_v1_database_opens_and_migrates_with_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v1.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v1.db"),
        &path,
    )
    .expect("copy fixture");
    let store = SessionStore::open(&path).expect("open a v1 database");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let s = store
        .get_by_pair("frontend", "backend")
        .expect("get")
        .expect("row survived");
    assert_eq!(s.session_id, "3d0c8a4e-7b9f-4c1e-9a57-2f6f1f0e9b11");
    assert_eq!(s.message_count, 42);
    assert_eq!(s.input_tokens, 1000);
    assert!(s.agent_pid.is_none());
    let stats = store
        .stats(DueQuery {
            max_messages: 500,
            stale_messages: 100,
            stale_before: 0,
        })
        .expect("stats");
    assert_eq!(stats.total_sessions, 2);
    assert_eq!(stats.total_messages, 49);
    assert_eq!(stats.by_status["archived"], 1);
}

#[test]
fn the_wal_is_checkpointed_as_writes_go() {
    // Every single-row write must complete its statement, or SQLite never checkpoints and the
    // WAL grows by a few pages per write, without bound.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    let store = SessionStore::open(&path).expect("open");
    let (s, _) = store
        .insert_or_get("a", "b", "11111111-1111-4111-8111-111111111111", 1)
        .expect("insert");
    for i in 0..4_000 {
        store
            .increment_message_count(&s.session_id, 1, i)
            .expect("incr");
        store
            .update_process_state(&s.session_id, ProcessState::ALL[i as usize % 5])
            .expect("state");
    }
    let wal = std::fs::metadata(path.with_extension("db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    // The default auto-checkpoint is 1000 pages (4 MiB); without it this WAL is ~250 MiB.
    assert!(wal < 16 * 1024 * 1024, "WAL grew to {wal} bytes");
}

#[test]
fn the_released_v3_database_opens_and_its_tells_take_idempotency_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v3.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v3.db"),
        &path,
    )
    .expect("copy fixture");
    let store = SessionStore::open(&path).expect("open a v3 database");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let tells = store
        .recent_tells("frontend", "backend", 10)
        .expect("tells");
    let texts: Vec<(&str, &str)> = tells
        .iter()
        .map(|t| (t.text.as_str(), t.state.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            ("first question", "cancelled"),
            ("second question", "cancelled"),
            ("third question", "queued"),
        ]
    );
    assert!(tells
        .iter()
        .all(|t| t.idempotency_key.is_none() && t.retry_of.is_none()));

    // A keyed tell: stored once; the same key again gives the stored one back, not a second.
    let new = switchboard::store::NewTell {
        tell_id: "aaaaaaaa-0000-4000-8000-000000000001",
        session_id: &tells[0].session_id,
        from_team: "frontend",
        to_team: "backend",
        kind: switchboard::store::TellKind::Tell,
        text: "keyed",
        parent_tell_id: None,
    };
    let first = store
        .insert_tell_keyed(&new, Some("k"), Some(&tells[0].tell_id), 1)
        .expect("insert")
        .expect("stored");
    assert_eq!(first.idempotency_key.as_deref(), Some("k"));
    assert_eq!(first.retry_of.as_deref(), Some(tells[0].tell_id.as_str()));
    let again = switchboard::store::NewTell {
        tell_id: "aaaaaaaa-0000-4000-8000-000000000002",
        ..new.clone()
    };
    let existing = store
        .insert_tell_keyed(&again, Some("k"), None, 2)
        .expect("insert")
        .expect_err("the key is taken");
    assert_eq!(existing.tell_id, first.tell_id);
    // Keys are per calling team.
    let other_team = switchboard::store::NewTell {
        tell_id: "aaaaaaaa-0000-4000-8000-000000000003",
        from_team: "backend",
        to_team: "frontend",
        ..new.clone()
    };
    store
        .insert_tell_keyed(&other_team, Some("k"), None, 3)
        .expect("insert")
        .expect("another team's key");
    assert_eq!(
        store
            .recent_tells("frontend", "backend", 10)
            .expect("tells")
            .len(),
        4
    );
}

/// The 26 columns of a session as schema version 5 stored them (all in `sessions`).
const V5_COLUMNS: &str = "id, from_team, to_team, session_id, created_at, last_used_at, \
    message_count, status, process_state, current_tell_id, last_response_at, launch_command, \
    team_config_snapshot, compaction_count, last_compacted_at, last_pre_compact_tokens, \
    last_post_compact_tokens, input_tokens, output_tokens, cost_usd, last_error, owner_pid, \
    owner_started_at, owner_heartbeat_at, agent_pid, agent_started_at";

fn v5_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<switchboard::store::Session> {
    Ok(switchboard::store::Session {
        id: r.get(0)?,
        from_team: r.get(1)?,
        to_team: r.get(2)?,
        session_id: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        message_count: r.get(6)?,
        status: r.get(7)?,
        process_state: r.get(8)?,
        current_tell_id: r.get(9)?,
        last_response_at: r.get(10)?,
        launch_command: r.get(11)?,
        team_config_snapshot: r.get(12)?,
        compaction_count: r.get(13)?,
        last_compacted_at: r.get(14)?,
        last_pre_compact_tokens: r.get(15)?,
        last_post_compact_tokens: r.get(16)?,
        input_tokens: r.get(17)?,
        output_tokens: r.get(18)?,
        cost_usd: r.get(19)?,
        last_error: r.get(20)?,
        owner_pid: r.get(21)?,
        owner_started_at: r.get(22)?,
        owner_heartbeat_at: r.get(23)?,
        agent_pid: r.get(24)?,
        agent_started_at: r.get(25)?,
        // Added by migration 0009; empty for every session of an older schema.
        agent_session_id: None,
    })
}

/// Every row `sql` returns, each as its values joined by `|`.
fn dump_rows(c: &Connection, sql: &str) -> Vec<String> {
    c.prepare(sql)
        .expect("prepare")
        .query_map([], |r| {
            let n = r.as_ref().column_count();
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                cells.push(format!("{:?}", r.get_ref(i)?));
            }
            Ok(cells.join("|"))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Creates the database at `path` as an older Switchboard left it: the embedded migrations 1 to
/// `version` applied and recorded (WAL, foreign keys on), then `fill`, in one transaction.
fn database_at(path: &Path, version: i64, fill: impl FnOnce(&rusqlite::Transaction<'_>)) {
    let mut c = Connection::open(path).expect("open raw");
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
        .expect("pragmas");
    let tx = c.transaction().expect("tx");
    migrate_to(&tx, version);
    fill(&tx);
    tx.commit().expect("commit");
}

/// Every session status, for the migration tests' rows.
const SESSION_STATUSES: [&str; 5] = [
    "active",
    "compact_pending",
    "compacting",
    "archived",
    "error",
];
/// Every tell state, for the migration tests' rows.
const TELL_STATES: [&str; 5] = ["queued", "delivered", "answered", "failed", "cancelled"];

/// A compaction policy under which no session of the migration tests is due.
const NONE_DUE: DueQuery = DueQuery {
    max_messages: 100,
    stale_messages: 100,
    stale_before: 0,
};

/// The names of the indexes of `table`.
fn indexes_of(c: &Connection, table: &str) -> Vec<String> {
    c.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1")
        .expect("prepare")
        .query_map([table], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Applies the embedded migrations 1 to `version` and records them.
fn migrate_to(tx: &rusqlite::Transaction<'_>, version: i64) {
    tx.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
         applied_at INTEGER NOT NULL)",
    )
    .expect("schema_migrations");
    for &(v, name, sql) in MIGRATIONS.iter().filter(|m| m.0 <= version) {
        tx.execute_batch(sql).expect(name);
        tx.execute(
            "INSERT INTO schema_migrations VALUES (?1, ?2, 1)",
            rusqlite::params![v, name],
        )
        .expect("record");
    }
}

/// A database at schema version 5 (the schema before the write-path migration), built with
/// the embedded migration texts 1-5, holding a session in every status x process state
/// (owned and not, with and without agent, current tell, errors, compaction numbers) and tells
/// in every state.
fn v5_database_with_data(path: &Path) {
    database_at(path, 5, |tx| {
        let mut n = 0i64;
        for (si, status) in SessionStatus::ALL.iter().enumerate() {
            for (pi, state) in ProcessState::ALL.iter().enumerate() {
                n += 1;
                let owned = n % 2 == 0;
                let with_agent = *state != ProcessState::Stopped && n % 3 != 0;
                let current = (*state == ProcessState::Processing).then(|| format!("tell-{n}"));
                tx.execute(
                    &format!(
                    "INSERT INTO sessions ({V5_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
                     ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, \
                     ?24, ?25, ?26)"
                ),
                    rusqlite::params![
                        n,
                        format!("from{si}"),
                        format!("to{pi}"),
                        format!("{n:08}-0000-4000-8000-000000000000"),
                        1_000 + n,
                        2_000 + n,
                        n * 3,
                        status,
                        state,
                        current,
                        (n % 4 != 0).then_some(3_000 + n),
                        (n % 2 == 1).then(|| format!("[\"claude\",\"-p\",\"{n}\"]")),
                        (n % 2 == 1).then(|| format!("{{\"path\":\"/p/{n}\"}}")),
                        n % 5,
                        (n % 5 != 0).then_some(4_000 + n),
                        (n % 5 != 0).then_some(90_000 + n),
                        (n % 5 != 0).then_some(9_000 + n),
                        n * 100,
                        n * 10,
                        n as f64 * 0.125,
                        (*status == SessionStatus::Error).then(|| format!("failed {n}")),
                        owned.then_some(40_000 + n % 3),
                        owned.then_some(50_000 + n % 3),
                        owned.then_some(60_000 + n),
                        with_agent.then_some(70_000 + n),
                        with_agent.then_some(80_000 + n),
                    ],
                )
                .expect("insert session");
            }
        }
        // Tells in every state, and of both kinds, with every optional column used somewhere.
        let states = ["queued", "delivered", "answered", "failed", "cancelled"];
        for (i, state) in states.iter().enumerate() {
            for kind in ["tell", "compact"] {
                tx.execute(
                "INSERT INTO tells (tell_id, session_id, from_team, to_team, kind, text, state, \
                 created_at, delivered_at, answered_at, answer, error, input_tokens, output_tokens, \
                 cost_usd, duration_ms, parent_tell_id, idempotency_key, retry_of) \
                 VALUES (?1, '00000001-0000-4000-8000-000000000000', 'from0', 'to0', ?2, ?3, ?4, \
                 ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                rusqlite::params![
                    format!("{state}-{kind}"),
                    kind,
                    format!("text {i}"),
                    state,
                    10 + i as i64,
                    (i > 0).then_some(20 + i as i64),
                    (i > 1).then_some(30 + i as i64),
                    (*state == "answered").then_some("the answer"),
                    (*state == "failed").then_some("it failed"),
                    (i > 1).then_some(5 * i as i64),
                    (i > 1).then_some(6 * i as i64),
                    (i > 1).then_some(0.5 * i as f64),
                    (i > 1).then_some(7 * i as i64),
                    (i == 3).then_some("answered-tell"),
                    (kind == "tell").then(|| format!("key-{i}")),
                    (i == 4).then_some("failed-tell"),
                ],
            )
            .expect("insert tell");
            }
        }
    });
}

#[test]
fn migration_8_keeps_every_value_of_a_version_5_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v5.db");
    v5_database_with_data(&path);
    let (before, tells_before, totals_before): (Vec<_>, Vec<String>, Vec<String>) = {
        let c = Connection::open(&path).expect("raw");
        let sessions = c
            .prepare(&format!("SELECT {V5_COLUMNS} FROM sessions ORDER BY id"))
            .expect("prepare")
            .query_map([], v5_session)
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let dump = |sql: &str| dump_rows(&c, sql);
        (
            sessions,
            dump("SELECT * FROM tells ORDER BY id"),
            dump("SELECT * FROM session_totals WHERE scope != 'state' ORDER BY scope, key"),
        )
    };
    assert_eq!(before.len(), 25, "every status x process state");
    assert!(before
        .iter()
        .any(|s| s.owner_pid.is_some() && s.agent_pid.is_some()));

    let store = SessionStore::open(&path).expect("open a version 5 database");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let after = store
        .list(&ListFilter {
            order: switchboard::store::ListOrder::CreatedAsc,
            ..ListFilter::default()
        })
        .expect("list");
    assert_eq!(after, before, "every session keeps every value");
    for s in &before {
        assert_eq!(
            store
                .get_by_session_id(&s.session_id)
                .expect("get")
                .as_ref(),
            Some(s)
        );
    }
    let stats = store
        .stats(DueQuery {
            max_messages: 1_000,
            stale_messages: 1_000,
            stale_before: 0,
        })
        .expect("stats");
    for ps in ProcessState::ALL {
        let n = before.iter().filter(|s| s.process_state == *ps).count() as i64;
        assert_eq!(stats.by_process_state[ps.as_str()], n, "state {ps}");
    }
    let c = Connection::open(&path).expect("raw");
    let dump = |sql: &str| dump_rows(&c, sql);
    assert_eq!(dump("SELECT * FROM tells ORDER BY id"), tells_before);
    assert_eq!(
        dump("SELECT * FROM session_totals ORDER BY scope, key"),
        totals_before
    );
    // The start-up reset still finds the owners and agents the old columns recorded.
    let report = store.reset_orphaned(&|_| false).expect("reset");
    let owned_or_live = before
        .iter()
        .filter(|s| {
            s.owner_pid.is_some()
                || s.process_state != ProcessState::Stopped
                || s.agent_pid.is_some()
                || s.status == SessionStatus::Compacting
        })
        .count();
    assert_eq!(report.reset, owned_or_live);
    assert_eq!(
        report.orphan_agents.len(),
        before.iter().filter(|s| s.agent_pid.is_some()).count()
    );
}

#[test]
fn the_wal_stays_under_its_bound_while_readers_never_stop() {
    // One writer and four readers that never pause: with SQLite's automatic (PASSIVE)
    // checkpoint the WAL cannot start over while a reader holds an old snapshot, and it grew to
    // tens of MB under such a load. The store's checkpointer truncates it at its bound.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    let store = SessionStore::open(&path).expect("open");
    let ids: Vec<String> = (0..100)
        .map(|i| {
            let id = format!("{i:08}-0000-4000-8000-000000000000");
            store
                .insert_or_get(&format!("f{i}"), "t", &id, 1)
                .expect("insert");
            id
        })
        .collect();
    let wal = path.with_extension("db-wal");
    let wal_bytes = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut largest = 0;
    std::thread::scope(|scope| {
        for r in 0..4 {
            let (store, stop) = (&store, &stop);
            scope.spawn(move || {
                let mut i = r;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let tx_reader = store
                        .get_by_pair(&format!("f{}", i % 100), "t")
                        .expect("read");
                    assert!(tx_reader.is_some());
                    i += 1;
                }
            });
        }
        for i in 0..20_000usize {
            store
                .increment_message_count(&ids[i % 100], 1, i as i64)
                .expect("incr");
            if i % 100 == 0 {
                largest = largest.max(wal_bytes());
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    largest = largest.max(wal_bytes());
    assert!(
        largest <= switchboard::store::WAL_BOUND_BYTES,
        "the WAL reached {largest} bytes, over its bound of {}",
        switchboard::store::WAL_BOUND_BYTES
    );
    let stats = store.wal_stats().expect("a file store has a checkpointer");
    assert!(stats.checkpoints > 0, "{stats:?}");
}

/// Builds the same mix of per-process states on `store` for the reset tests: sessions held by
/// two dead owners (some processing a tell, some with an agent), ownerless live states, an
/// ownerless agent, a row holding only a tell, interrupted compactions with and without a row.
fn reset_world(store: &SessionStore, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let dead = [
        ProcessIdentity {
            pid: 1,
            started_at: 7,
        },
        ProcessIdentity {
            pid: 1,
            started_at: 9,
        },
    ];
    let mut ids = Vec::new();
    for i in 0..300u64 {
        let id = format!("{i:08x}-0000-4000-8000-000000000000");
        store
            .insert_or_get(&format!("f{}", i % 17), &format!("t{i}"), &id, 1)
            .expect("insert");
        match rng.below(9) {
            0 | 1 => {
                let owner = dead[rng.below(2) as usize];
                store
                    .force_owner(&id, ProcessState::Processing, Some(owner), 5)
                    .expect("owner");
                store.set_current_tell(&id, Some("tell")).expect("tell");
            }
            2 => {
                store
                    .force_owner(&id, ProcessState::Idle, Some(dead[0]), 5)
                    .expect("owner");
                store
                    .set_agent(
                        &id,
                        Some(ProcessIdentity {
                            pid: 4_000_000 + i as u32,
                            started_at: 3,
                        }),
                    )
                    .expect("agent");
            }
            3 => {
                store
                    .update_process_state(&id, ProcessState::Spawning)
                    .expect("state");
            }
            4 => {
                store
                    .set_agent(
                        &id,
                        Some(ProcessIdentity {
                            pid: 4_100_000 + i as u32,
                            started_at: 3,
                        }),
                    )
                    .expect("agent");
            }
            5 => {
                store.set_current_tell(&id, Some("quiet")).expect("tell");
            }
            6 => {
                store
                    .set_status(&id, SessionStatus::Compacting, None)
                    .expect("compacting");
                if rng.below(2) == 0 {
                    store
                        .force_owner(&id, ProcessState::Processing, Some(dead[1]), 5)
                        .expect("owner");
                }
            }
            _ => {}
        }
        ids.push(id);
    }
    ids
}

#[test]
fn the_reset_with_every_owner_gone_resets_what_the_reset_by_owner_does() {
    // With no live owner the reset empties session_live in one statement (foreign key checks
    // off around it); with one, it deletes the dead owners' rows one by one. Both must reset the
    // same sessions, report the same agents, and leave the same rows.
    let all_gone = SessionStore::open_in_memory().expect("memory");
    let one_live = SessionStore::open_in_memory().expect("memory");
    let ids = reset_world(&all_gone, 0x51f1_5eed);
    assert_eq!(reset_world(&one_live, 0x51f1_5eed), ids);
    let live = ProcessIdentity {
        pid: 42,
        started_at: 42,
    };
    one_live
        .insert_or_get("live", "held", "ffffffff-0000-4000-8000-000000000000", 1)
        .expect("insert");
    one_live
        .force_owner(
            "ffffffff-0000-4000-8000-000000000000",
            ProcessState::Processing,
            Some(live),
            5,
        )
        .expect("live owner");

    let fast = all_gone.reset_orphaned(&|_| false).expect("reset");
    let slow = one_live.reset_orphaned(&|o| o == live).expect("reset");
    assert_eq!(slow.owned_by_live_process, 1);
    assert_eq!(fast.owned_by_live_process, 0);
    assert!(fast.reset > 50, "the world resets many sessions: {fast:?}");
    assert_eq!(fast.reset, slow.reset);
    let sorted = |mut v: Vec<ProcessIdentity>| {
        v.sort_by_key(|p| (p.pid, p.started_at));
        v
    };
    assert_eq!(
        sorted(fast.orphan_agents.clone()),
        sorted(slow.orphan_agents)
    );
    for id in &ids {
        let a = all_gone.get_by_session_id(id).expect("get").expect("a");
        let b = one_live.get_by_session_id(id).expect("get").expect("b");
        assert_eq!(a, b, "session {id}");
        assert_eq!(a.process_state, ProcessState::Stopped);
        assert_eq!(a.owner_pid, None);
        assert_ne!(a.status, SessionStatus::Compacting);
    }
    let held = one_live
        .get_by_session_id("ffffffff-0000-4000-8000-000000000000")
        .expect("get")
        .expect("held");
    assert_eq!(
        held.owner_pid,
        Some(42),
        "a live owner's session stays held"
    );
    assert_eq!(held.process_state, ProcessState::Processing);
}

#[test]
fn foreign_keys_are_on_again_after_the_reset() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("fk.db");
    let store = SessionStore::open(&path).expect("open");
    reset_world(&store, 7);
    drop(store);
    let mut conn = Connection::open(&path).expect("conn");
    switchboard::store::floor::init_connection(&mut conn).expect("init");
    let report =
        switchboard::store::floor::reset_orphaned_in(&mut conn, &|_| false).expect("reset");
    assert!(report.reset > 0);
    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(fk, 1, "the reset turned foreign key checks back on");
    // And they act: a live row for a session that does not exist is refused.
    let err = conn
        .execute(
            "INSERT INTO session_live (session, process_state) VALUES (999999, 'idle')",
            [],
        )
        .expect_err("foreign key");
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
}

/// The rate limit's look-up agrees with counting by hand: the `most`-th newest message a team
/// sent in the window, whatever the other teams and the compactions in between, and whatever
/// the limit (below, at and above what the team sent; a limit far above every id).
#[test]
fn the_rate_limit_lookup_finds_the_nth_newest_message_of_the_window() {
    let store = SessionStore::open_in_memory().expect("memory");
    let mut rng = Rng(0x5eed_1234);
    let mut sent: Vec<(String, switchboard::store::TellKind, i64)> = Vec::new();
    for i in 0..400u64 {
        let from = ["a", "b", "c"][rng.below(3) as usize];
        let kind = if rng.below(5) == 0 {
            switchboard::store::TellKind::Compact
        } else {
            switchboard::store::TellKind::Tell
        };
        // Mostly increasing times, some equal, a few earlier than the previous one.
        let at = 1_000 + i as i64 * 10 - rng.below(25) as i64;
        let id = format!("aaaaaaaa-0000-4000-8000-{i:012}");
        let new = switchboard::store::NewTell {
            tell_id: &id,
            session_id: "11111111-1111-4111-8111-111111111111",
            from_team: from,
            to_team: "z",
            kind,
            text: "hello",
            parent_tell_id: None,
        };
        store.insert_tell(&new, at).expect("insert");
        sent.push((from.to_string(), kind, at));
    }
    for from in ["a", "b", "c", "nobody"] {
        for since in [0, 1_000, 2_500, 4_000, 5_000] {
            let mut times: Vec<i64> = sent
                .iter()
                .filter(|(f, k, at)| {
                    f == from && *k == switchboard::store::TellKind::Tell && *at >= since
                })
                .map(|(_, _, at)| *at)
                .collect();
            times.sort_unstable_by(|x, y| y.cmp(x));
            for most in [1, 2, 5, 30, times.len(), times.len() + 1, 1_000_000_000] {
                let want = if most >= 1 && times.len() >= most {
                    Some(times[most - 1])
                } else {
                    None
                };
                let got = store
                    .nth_tell_time_since(from, since, most)
                    .expect("look-up");
                assert_eq!(got, want, "team {from}, since {since}, most {most}");
            }
        }
    }
}

/// A tell handed over in the write that stores it comes back (and to its hand-over) exactly as
/// its row and its session read afterwards: delivered, at the write's time, the session
/// processing it. One that finds the pair's first tell still open is stored queued instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_handed_over_in_its_write_is_returned_as_stored() {
    use switchboard::store::{NewTell, PairInsert, TellKind, TellState, WriteBatcher};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SessionStore::open(&dir.path().join("sb.db")).expect("open");
    let (s, _) = store
        .insert_or_get("a", "b", "11111111-1111-4111-8111-111111111111", 1)
        .expect("session");
    let batcher = WriteBatcher::start(store.clone()).expect("thread");
    let new = |tell_id| NewTell {
        tell_id,
        session_id: "",
        from_team: "a",
        to_team: "b",
        kind: TellKind::Tell,
        text: "hello",
        parent_tell_id: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let handoff = move |begun| tx.send(begun).expect("send");
    let first = batcher
        .insert_tell_for_pair(
            &new("aaaaaaaa-0000-4000-8000-000000000001"),
            None,
            Some(Box::new(handoff.clone())),
            77,
        )
        .await
        .expect("first");
    let PairInsert::Begun(begun) = first else {
        panic!("not handed over: {first:?}");
    };
    let (tell, session) = *begun;
    assert_eq!(
        (tell.state, tell.delivered_at),
        (TellState::Delivered, Some(77))
    );
    assert_eq!(
        Some(&tell),
        store.get_tell(&tell.tell_id).expect("read").as_ref()
    );
    assert_eq!(
        Some(&session),
        store
            .get_by_session_id(&s.session_id)
            .expect("read")
            .as_ref()
    );
    assert_eq!(session.process_state, ProcessState::Processing);
    assert_eq!(
        session.current_tell_id.as_deref(),
        Some(tell.tell_id.as_str())
    );
    assert_eq!(rx.recv().expect("handed over"), Some((tell, session)));

    let second = batcher
        .insert_tell_for_pair(
            &new("aaaaaaaa-0000-4000-8000-000000000002"),
            None,
            Some(Box::new(handoff)),
            78,
        )
        .await
        .expect("second");
    let PairInsert::Stored(stored) = second else {
        panic!("handed over past an open tell: {second:?}");
    };
    assert_eq!(stored.state, TellState::Queued);
    assert_eq!(
        Some(&*stored),
        store.get_tell(&stored.tell_id).expect("read").as_ref()
    );
    assert_eq!(rx.recv().expect("told"), None);
}

/// Writes batched together commit together, but each stands alone: one that fails half-way
/// (its session went idle, then its usage broke a constraint) is rolled back by itself and
/// reports its own error, while every other write of its batch is stored. The batch waits for the write lock held by another
/// process's connection, so the writes sent meanwhile pile up into one transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_of_a_batch_rolls_back_alone() {
    use std::future::Future;
    use std::pin::Pin;
    use switchboard::store::{EndOfTurn, NewTell, TellKind, TellOutcome, TellState, WriteBatcher};
    type Write<'a> = Pin<Box<dyn Future<Output = Result<String, StoreError>> + Send + 'a>>;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("batch.db");
    let store = SessionStore::open(&path).expect("open");
    let (s, _) = store
        .insert_or_get("a", "b", "11111111-1111-4111-8111-111111111111", 1)
        .expect("session");
    store
        .update_process_state(&s.session_id, ProcessState::Processing)
        .expect("processing");
    let batcher = WriteBatcher::start(store.clone()).expect("thread");
    let ids: Vec<String> = (0..20)
        .map(|i| format!("aaaaaaaa-0000-4000-8000-{i:012}"))
        .collect();

    // Another process holds the write lock: the batch thread waits for it while every write
    // below is handed to it (each future is polled once: that queues its write).
    let other = Connection::open(&path).expect("other connection");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let mut writes: Vec<Write<'_>> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if i == 10 {
            // In the middle: it shares its batch with writes before and after it.
            writes.push(Box::pin(async {
                batcher
                    .end_turn(EndOfTurn {
                        session_id: s.session_id.clone(),
                        input_tokens: -1_000,
                        output_tokens: 1,
                        cost_usd: 0.0,
                        counts: true,
                        tell_id: "aaaaaaaa-0000-4000-8000-000000000000".into(),
                        state: TellState::Answered,
                        outcome: TellOutcome::default(),
                        now: 50,
                    })
                    .await
                    .map(|_| "ended".to_string())
            }));
        }
        let session = s.session_id.clone();
        let b = &batcher;
        writes.push(Box::pin(async move {
            let new = NewTell {
                tell_id: id,
                session_id: &session,
                from_team: "a",
                to_team: "b",
                kind: TellKind::Tell,
                text: "hello",
                parent_tell_id: None,
            };
            b.insert_tell(&new, 10).await.map(|t| t.tell_id)
        }));
    }
    for w in &mut writes {
        std::future::poll_fn(|cx| {
            assert!(
                w.as_mut().poll(cx).is_pending(),
                "answered before the lock went"
            );
            std::task::Poll::Ready(())
        })
        .await;
    }
    other.execute_batch("ROLLBACK").expect("unlock");

    let mut results = Vec::new();
    for w in writes {
        results.push(w.await);
    }
    let err = results.remove(10).expect_err("negative usage");
    assert!(
        err.to_string().contains("CHECK constraint failed"),
        "its own error, not the batch's: {err}"
    );
    for (i, r) in results.into_iter().enumerate() {
        let tell_id = r.unwrap_or_else(|e| panic!("write {i} failed with its batch: {e}"));
        let t = store.get_tell(&tell_id).expect("read").expect("stored");
        assert_eq!(t.state, TellState::Queued);
    }
    // The failing end of turn left nothing: the session is still processing and counts no
    // message, and the tell it named (one of the 20) is still queued.
    let s2 = store
        .get_by_session_id(&s.session_id)
        .expect("read")
        .expect("session");
    assert_eq!(s2.process_state, ProcessState::Processing);
    assert_eq!(s2.message_count, 0);
    let t0 = store.get_tell(&ids[0]).expect("read").expect("stored");
    assert_eq!(t0.state, TellState::Queued);
}

/// Migration 11 drops two indexes of `tells` and nothing else: a version 10 database with
/// sessions and tells in every state keeps every row and value, its open tells are still found
/// (by the index that remains) and it takes new tells.
#[test]
fn migration_11_keeps_every_tell_of_a_version_10_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v10.db");
    database_at(&path, 10, |tx| {
        for (i, from) in ["a", "b", "c"].iter().enumerate() {
            tx.execute(
                "INSERT INTO sessions (from_team, to_team, session_id, created_at, last_used_at) \
                 VALUES (?1, 'z', ?2, 1, 1)",
                rusqlite::params![from, format!("11111111-1111-4111-8111-00000000000{i}")],
            )
            .expect("session");
        }
        for n in 0..40i64 {
            let from = ["a", "b", "c"][(n % 3) as usize];
            let state = TELL_STATES[(n % 5) as usize];
            tx.execute(
                "INSERT INTO tells (tell_id, session_id, from_team, to_team, kind, text, state, \
                 created_at, answer, parent_tell_id, idempotency_key) \
                 VALUES (?1, ?2, ?3, 'z', ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    format!("aaaaaaaa-0000-4000-8000-{n:012}"),
                    format!("11111111-1111-4111-8111-00000000000{}", n % 3),
                    from,
                    if n % 7 == 0 { "compact" } else { "tell" },
                    format!("message {n}"),
                    state,
                    100 + n,
                    (state == "answered").then(|| format!("answer {n}")),
                    (n > 5 && n % 4 == 0).then(|| format!("aaaaaaaa-0000-4000-8000-{:012}", n - 4)),
                    (n % 6 == 0).then(|| format!("key-{n}")),
                ],
            )
            .expect("tell");
        }
    });
    let dump = |c: &Connection| dump_rows(c, "SELECT * FROM tells ORDER BY id");
    let before = dump(&Connection::open(&path).expect("raw"));
    assert_eq!(before.len(), 40);

    let store = SessionStore::open(&path).expect("open a version 10 database");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let c = Connection::open(&path).expect("raw");
    assert_eq!(dump(&c), before, "every tell keeps every value");
    let indexes = indexes_of(&c, "tells");
    assert!(
        !indexes
            .iter()
            .any(|i| i == "tells_by_session" || i == "tells_open"),
        "{indexes:?}"
    );
    assert!(
        indexes.iter().any(|i| i == "tells_open_by_pair"),
        "{indexes:?}"
    );

    let open: Vec<String> = store
        .all_open_tells()
        .expect("open tells")
        .into_iter()
        .map(|t| t.tell_id)
        .collect();
    let want: Vec<String> = (0..40i64)
        .filter(|n| n % 5 < 2)
        .map(|n| format!("aaaaaaaa-0000-4000-8000-{n:012}"))
        .collect();
    assert_eq!(open, want, "the queued and delivered tells, oldest first");
    let next = store
        .next_queued_tell("a", "z")
        .expect("next")
        .expect("one");
    assert_eq!(next.tell_id, "aaaaaaaa-0000-4000-8000-000000000000");
    let new = switchboard::store::NewTell {
        tell_id: "bbbbbbbb-0000-4000-8000-000000000001",
        session_id: "11111111-1111-4111-8111-000000000000",
        from_team: "a",
        to_team: "z",
        kind: switchboard::store::TellKind::Tell,
        text: "after the migration",
        parent_tell_id: None,
    };
    let t = store.insert_tell(&new, 500).expect("insert");
    assert_eq!(t.state, switchboard::store::TellState::Queued);
}

/// Migration 12 adds the pending counters' table and drops three indexes of `events`: a
/// version 11 database keeps every session and event as they were, reads the same through the
/// store, and its counters then move through `session_pending` and fold back into the rows.
#[test]
fn migration_12_keeps_every_session_and_event_of_a_version_11_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v11.db");
    database_at(&path, 11, |tx| {
        for i in 0..30i64 {
            tx.execute(
                "INSERT INTO sessions (from_team, to_team, session_id, created_at, last_used_at, \
                 message_count, status, last_response_at, input_tokens, output_tokens, cost_usd, \
                 last_error, compaction_count) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                rusqlite::params![
                    format!("t{}", i % 4),
                    format!("u{}", i / 4),
                    format!("11111111-1111-4111-8111-{i:012}"),
                    i,
                    1_000 + 37 * i % 101,
                    i * 3 % 17,
                    SESSION_STATUSES[(i % 5) as usize],
                    (i % 3 == 0).then_some(2_000 + i),
                    i * 1_000,
                    i * 10,
                    i as f64 * 0.125,
                    (i % 5 == 4).then(|| format!("error {i}")),
                    i % 2,
                ],
            )
            .expect("session");
        }
        for n in 0..50i64 {
            tx.execute(
                "INSERT INTO events (at, type, from_team, to_team, tell_id, session_id, data) \
                 VALUES (?1, 'text', 't0', 'u0', ?2, NULL, ?3)",
                rusqlite::params![
                    10 * n,
                    (n % 2 == 0).then(|| format!("tell-{}", n % 5)),
                    format!("{{\"type\":\"text\",\"text\":\"{n}\"}}"),
                ],
            )
            .expect("event");
        }
    });
    let raw = Connection::open(&path).expect("raw");
    let sessions = |c: &Connection| dump_rows(c, "SELECT * FROM sessions ORDER BY id");
    let events = |c: &Connection| {
        dump_rows(
            c,
            &format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY id"),
        )
    };
    let (sessions_before, events_before) = (sessions(&raw), events(&raw));
    let totals = |c: &Connection| dump_rows(c, "SELECT * FROM session_totals ORDER BY 1, 2");
    let totals_before = totals(&raw);
    drop(raw);

    let store = SessionStore::open(&path).expect("open a version 11 database");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let raw = Connection::open(&path).expect("raw");
    assert_eq!(
        sessions(&raw),
        sessions_before,
        "every session keeps every value"
    );
    assert_eq!(events(&raw), events_before, "every event is kept");
    assert_eq!(totals(&raw), totals_before, "the totals are kept");
    let indexes = indexes_of(&raw, "events");
    // (Migration 14 replaced `events_by_tell`.)
    assert_eq!(indexes, ["events_by_tell_row", "events_of_unknown_tells"]);
    let timeline = store.tell_events("tell-2").expect("timeline");
    assert_eq!(
        timeline.iter().map(|e| e.id).collect::<Vec<_>>(),
        [3, 13, 23, 33, 43],
        "a tell's events, by its index"
    );

    // The store reads the old rows as they were ...
    let s7 = store
        .get_by_session_id("11111111-1111-4111-8111-000000000007")
        .expect("get")
        .expect("there");
    assert_eq!(
        (s7.message_count, s7.input_tokens, s7.last_used_at),
        (4, 7_000, 1_000 + 37 * 7 % 101)
    );
    // ... and a counter's write goes to the pending row, the session's row unchanged.
    let after = store
        .increment_message_count(&s7.session_id, 2, 99_999)
        .expect("incr");
    assert_eq!((after.message_count, after.last_used_at), (6, 99_999));
    let after = store.add_usage(&s7.session_id, 5, 6, 0.5).expect("usage");
    assert_eq!(
        (after.input_tokens, after.output_tokens, after.cost_usd),
        (7_005, 76, 0.875 + 0.5)
    );
    assert_eq!(
        sessions(&raw),
        sessions_before,
        "the rows wait for the fold"
    );
    let pending = dump_rows(&raw, "SELECT * FROM session_pending");
    assert_eq!(
        pending,
        ["Integer(8)|Integer(2)|Integer(5)|Integer(6)|Real(0.5)|Integer(99999)|Null"]
    );
    let stats = store.stats(NONE_DUE).expect("stats");
    let folded_messages: i64 = (0..30).map(|i| i * 3 % 17).sum();
    assert_eq!(stats.total_messages, folded_messages + 2);
    assert_eq!(store.fold_pending(100).expect("fold"), 1);
    assert_eq!(
        store.get_by_session_id(&s7.session_id).expect("get"),
        Some(after),
        "the fold changes nothing a reader sees"
    );
    assert!(dump_rows(&raw, "SELECT * FROM session_pending").is_empty());
    let stats_after = store.stats(NONE_DUE).expect("stats");
    assert_eq!(stats_after.total_messages, stats.total_messages);

    // Retention walks the oldest ids: the events before 200 ms go, the rest stay.
    assert_eq!(store.prune_events(200).expect("prune"), 20);
    assert_eq!(events(&raw).len(), 30);
}

/// Migration 13 rewrites three CHECK constraints in place (`IN (...)` as ORs): a version 12
/// database keeps every row, the constraints refuse what they refused, a connection opened
/// before the migration reads the new schema too, and the store writes as before.
#[test]
fn migration_13_keeps_every_row_of_a_version_12_database_and_its_constraints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v12.db");
    let states = ["stopped", "spawning", "idle", "processing", "terminating"];
    database_at(&path, 12, |tx| {
        for i in 0..10i64 {
            tx.execute(
                "INSERT INTO sessions (from_team, to_team, session_id, created_at, last_used_at, \
                 status) VALUES ('a', ?1, ?2, 1, 1, ?3)",
                rusqlite::params![
                    format!("b{i}"),
                    format!("11111111-1111-4111-8111-{i:012}"),
                    SESSION_STATUSES[(i % 5) as usize]
                ],
            )
            .expect("session");
            tx.execute(
                "INSERT INTO session_live (session, process_state, current_tell_id) \
                 VALUES (?1, ?2, ?3)",
                rusqlite::params![i + 1, states[(i % 5) as usize], format!("tell-{i}")],
            )
            .expect("live");
            tx.execute(
                "INSERT INTO tells (tell_id, session_id, from_team, to_team, text, state, \
                 created_at) VALUES (?1, ?2, 'a', ?3, 'hello', ?4, ?5)",
                rusqlite::params![
                    format!("tell-{i}"),
                    format!("11111111-1111-4111-8111-{i:012}"),
                    format!("b{i}"),
                    TELL_STATES[(i % 5) as usize],
                    i
                ],
            )
            .expect("tell");
        }
    });
    let dump = |c: &Connection| {
        ["sessions", "session_live", "tells", "session_totals"]
            .iter()
            .flat_map(|t| dump_rows(c, &format!("SELECT * FROM {t} ORDER BY 1, 2")))
            .collect::<Vec<_>>()
    };
    // Open (and used) before the migration: it must not go on with the old text.
    let early = Connection::open(&path).expect("raw");
    let before = dump(&early);

    let store = SessionStore::open(&path).expect("open a version 12 database");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(dump(&early), before, "every row keeps every value");
    let schema: String = early
        .query_row(
            "SELECT group_concat(sql, ' ') FROM sqlite_schema \
             WHERE name IN ('sessions', 'session_live', 'tells')",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    for column in ["status", "process_state", "state"] {
        assert!(!schema.contains(&format!("({column} IN (")), "{schema}");
    }
    let ok: String = early
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity");
    assert_eq!(ok, "ok");
    // Compiled with the new text: SQLite builds a temporary b-tree (`OpenEphemeral`) for an
    // `IN` of more than two values, at every write.
    let opcodes: Vec<String> = early
        .prepare("EXPLAIN UPDATE tells SET state = 'failed' WHERE tell_id = 'tell-9'")
        .expect("explain")
        .query_map([], |r| r.get(1))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(!opcodes.iter().any(|o| o == "OpenEphemeral"), "{opcodes:?}");
    for bad in [
        "UPDATE tells SET state = 'lost' WHERE tell_id = 'tell-1'",
        "UPDATE session_live SET process_state = 'asleep' WHERE session = 1",
        "UPDATE sessions SET status = 'gone' WHERE id = 1",
    ] {
        let e = early.execute(bad, []).expect_err(bad);
        assert!(
            e.to_string().contains("CHECK constraint failed"),
            "{bad}: {e}"
        );
    }
    // ... and accept every value they accepted.
    for (table, column, key, values) in [
        ("tells", "state", "tell_id = 'tell-0'", &TELL_STATES),
        ("session_live", "process_state", "session = 1", &states),
        ("sessions", "status", "id = 1", &SESSION_STATUSES),
    ] {
        for value in values {
            let good = format!("UPDATE {table} SET {column} = '{value}' WHERE {key}");
            assert_eq!(early.execute(&good, []).expect(&good), 1);
        }
    }
    drop(early);

    // The store writes and reads as before.
    let s = store
        .update_process_state("11111111-1111-4111-8111-000000000002", ProcessState::Idle)
        .expect("state");
    assert_eq!(s.process_state, ProcessState::Idle);
    let t = store.get_tell("tell-3").expect("tell").expect("there");
    assert_eq!(t.state, switchboard::store::TellState::Failed);
}

/// The columns of `events` before migration 14.
const EVENT_COLUMNS: &str = "id, at, type, from_team, to_team, tell_id, session_id, data";

/// Migration 14 keys a tell's events by the tell's row id: a version 13 database keeps every
/// event as it was, each event of a tell it holds gets that tell's row, one naming a tell it
/// does not hold (or none) gets none, and every tell's timeline and bound read the same rows
/// as before, by the new indexes; events stored after it get their tell's row.
#[test]
fn migration_14_keys_the_events_of_a_version_13_database_by_their_tell_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v13.db");
    let tell_of = |n: i64| match n % 4 {
        0 => None,
        3 => Some("gone-tell".to_string()),
        k => Some(format!("tell-{k}")),
    };
    database_at(&path, 13, |tx| {
        tx.execute(
            "INSERT INTO sessions (from_team, to_team, session_id, created_at, last_used_at) \
             VALUES ('a', 'b', '11111111-1111-4111-8111-000000000001', 1, 1)",
            [],
        )
        .expect("session");
        // Row ids 7 and 8: a tell's row is not its position.
        for (row, k) in [(7i64, 1), (8, 2)] {
            tx.execute(
                "INSERT INTO tells (id, tell_id, session_id, from_team, to_team, text, state, \
                 created_at) VALUES (?1, ?2, '11111111-1111-4111-8111-000000000001', 'a', 'b', \
                 'hello', 'answered', 1)",
                rusqlite::params![row, format!("tell-{k}")],
            )
            .expect("tell");
        }
        for n in 0..40i64 {
            let kind = if n % 5 == 0 { "text" } else { "tell_delivered" };
            let data = if kind == "text" {
                format!("{{\"type\":\"text\",\"text\":\"{n}\"}}")
            } else {
                "{\"type\":\"tell_delivered\"}".to_string()
            };
            tx.execute(
                "INSERT INTO events (at, type, from_team, to_team, tell_id, session_id, data) \
                 VALUES (?1, ?2, 'a', 'b', ?3, NULL, ?4)",
                rusqlite::params![10 * n, kind, tell_of(n), data],
            )
            .expect("event");
        }
    });
    let raw = Connection::open(&path).expect("raw");
    let events = |c: &Connection| {
        dump_rows(
            c,
            &format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY id"),
        )
    };
    let before = events(&raw);
    drop(raw);

    let store = SessionStore::open(&path).expect("open a version 13 database");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let raw = Connection::open(&path).expect("raw");
    assert_eq!(events(&raw), before, "every event keeps every value");
    let rows: Vec<(Option<String>, Option<i64>)> = raw
        .prepare("SELECT tell_id, tell_row FROM events ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for (n, (tell, row)) in rows.iter().enumerate() {
        let expected = match tell.as_deref() {
            Some("tell-1") => Some(7),
            Some("tell-2") => Some(8),
            _ => None,
        };
        assert_eq!(*row, expected, "event {n} of {tell:?}");
    }
    assert_eq!(
        indexes_of(&raw, "events"),
        ["events_by_tell_row", "events_of_unknown_tells"]
    );
    let ok: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity");
    assert_eq!(ok, "ok");
    for tell in ["tell-1", "tell-2", "gone-tell"] {
        let ids: Vec<i64> = store
            .tell_events(tell)
            .expect("timeline")
            .iter()
            .map(|e| e.id)
            .collect();
        let expected: Vec<i64> = (0..40)
            .filter(|&n| tell_of(n).as_deref() == Some(tell))
            .map(|n| n + 1)
            .collect();
        assert_eq!(ids, expected, "the timeline of {tell}");
        let texts = expected.iter().filter(|id| (*id - 1) % 5 == 0).count();
        assert_eq!(
            store.tell_activity(tell).expect("bound").events,
            texts as u64,
            "the activity of {tell}"
        );
    }

    // An event stored now gets its tell's row.
    let ev =
        switchboard::store::NewEvent::pair("a", "b", switchboard::store::EventKind::TellDelivered)
            .tell(Some("tell-2"));
    let ids = store
        .insert_events(&[switchboard::store::EventRow::new(500, ev)])
        .expect("insert");
    let row: Option<i64> = raw
        .query_row("SELECT tell_row FROM events WHERE id = ?1", [ids[0]], |r| {
            r.get(0)
        })
        .expect("row");
    assert_eq!(row, Some(8));
    assert_eq!(store.tell_events("tell-2").expect("timeline").len(), 11);
}

/// Counters a killed process left pending (committed rows of `session_pending`, never folded)
/// count in every read at once, and the next process to open the database folds them into the
/// sessions and their totals without being asked.
#[test]
fn counters_a_killed_process_left_pending_are_read_and_then_folded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sb.db");
    let ids: Vec<String> = {
        let store = SessionStore::open(&path).expect("open");
        (0..3)
            .map(|i| {
                let (s, _) = store
                    .insert_or_get(
                        "a",
                        &format!("b{i}"),
                        &format!("11111111-1111-4111-8111-00000000000{i}"),
                        10,
                    )
                    .expect("insert");
                s.session_id
            })
            .collect()
    };
    // What the killed process had committed: its increments and usage, as its writes left them.
    {
        let c = Connection::open(&path).expect("raw");
        c.execute_batch(
            "INSERT INTO session_pending (session, messages, input_tokens, output_tokens, \
               cost_usd, last_used_at, last_response_at) \
             VALUES (1, 4, 100, 10, 0.5, 5000, 5001), (3, 2, 0, 0, 0, 6000, NULL)",
        )
        .expect("pending rows");
    }
    let store = SessionStore::open(&path).expect("reopen");
    let read = |store: &SessionStore| -> Vec<(i64, i64, f64, i64)> {
        ids.iter()
            .map(|id| {
                let s = store.get_by_session_id(id).expect("get").expect("there");
                (s.message_count, s.input_tokens, s.cost_usd, s.last_used_at)
            })
            .collect()
    };
    let want = vec![(4, 100, 0.5, 5000), (0, 0, 0.0, 10), (2, 0, 0.0, 6000)];
    assert_eq!(read(&store), want, "read at once, before any fold");
    let raw = Connection::open(&path).expect("raw");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !dump_rows(&raw, "SELECT * FROM session_pending").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pending rows were never folded"
        );
        std::thread::park_timeout(std::time::Duration::from_millis(20));
    }
    assert_eq!(read(&store), want, "the same values once folded");
    assert_eq!(
        dump_rows(
            &raw,
            "SELECT message_count, input_tokens FROM sessions ORDER BY id"
        ),
        [
            "Integer(4)|Integer(100)",
            "Integer(0)|Integer(0)",
            "Integer(2)|Integer(0)"
        ],
        "in the rows themselves"
    );
    let stats = store.stats(NONE_DUE).expect("stats");
    assert_eq!(
        (stats.total_messages, stats.total_input_tokens),
        (6, 100),
        "and in the totals"
    );
}

/// A tell whose turn began but that was never sent to the agent (its worker found Switchboard
/// shutting down or the agent gone when it took it) goes back to the queue: `queued` again,
/// delivered at no time, and the session idle with no current tell. Only a tell still
/// `delivered` goes back: one that ended stays as it ended.
#[test]
fn a_begun_tell_that_was_never_sent_goes_back_to_the_queue() {
    use switchboard::store::{NewTell, TellKind, TellOutcome, TellState};
    let store = SessionStore::open_in_memory().expect("memory");
    let (s, _) = store
        .insert_or_get("a", "b", "11111111-1111-4111-8111-111111111111", 1)
        .expect("session");
    let ids = [
        "aaaaaaaa-0000-4000-8000-000000000001",
        "aaaaaaaa-0000-4000-8000-000000000002",
    ];
    for id in ids {
        let new = NewTell {
            tell_id: id,
            session_id: &s.session_id,
            from_team: "a",
            to_team: "b",
            kind: TellKind::Tell,
            text: "hello",
            parent_tell_id: None,
        };
        store.insert_tell(&new, 5).expect("insert");
    }
    let (t, begun) = store
        .begin_turn(&s.session_id, ids[0], 10)
        .expect("begin")
        .expect("begun");
    assert_eq!(t.state, TellState::Delivered);
    assert_eq!(begun.current_tell_id.as_deref(), Some(ids[0]));
    assert_eq!(begun.process_state, ProcessState::Processing);

    let back = store
        .undeliver_tell(&s.session_id, ids[0])
        .expect("undeliver")
        .expect("it was delivered");
    assert_eq!(back.current_tell_id, None);
    assert_eq!(back.process_state, ProcessState::Idle);
    let t = store.get_tell(ids[0]).expect("get").expect("tell");
    assert_eq!((t.state, t.delivered_at), (TellState::Queued, None));
    // First in the queue again, before the tell queued after it.
    let next = store
        .next_queued_tell("a", "b")
        .expect("next")
        .expect("queued");
    assert_eq!(next.tell_id, ids[0]);
    // Twice: nothing more to undo.
    assert!(store
        .undeliver_tell(&s.session_id, ids[0])
        .expect("undeliver")
        .is_none());

    // A tell that ended is left as it ended.
    store
        .begin_turn(&s.session_id, ids[0], 20)
        .expect("begin")
        .expect("begun");
    store
        .finish_tell(ids[0], TellState::Answered, &TellOutcome::default(), 30)
        .expect("finish");
    assert!(store
        .undeliver_tell(&s.session_id, ids[0])
        .expect("undeliver")
        .is_none());
    let t = store.get_tell(ids[0]).expect("get").expect("tell");
    assert_eq!(t.state, TellState::Answered);
}
