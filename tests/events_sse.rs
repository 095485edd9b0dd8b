//! `GET /events` of a real `switchboard serve`: the stream resumes with `Last-Event-ID` without
//! losing or repeating an event, carries events other processes write to the database, filters
//! by team, pair and tell, is guarded like `/mcp`, is bounded, and ends at shutdown.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::serve::{http, ServeProcess};
use support::sse::{SseEvent, SseStream};
use support::{send_signal, wait_timeout, TestEnv};
use switchboard::events::{EventKind, NewEvent};

const WITHIN: Duration = Duration::from_secs(30);

/// Publishes `n` text events `frontend -> backend` ("n0", "n1", ...) from this process (a
/// second Switchboard process on the server's database), and waits until they are stored.
fn publish_texts(env: &TestEnv, range: std::ops::Range<usize>) {
    let m = env.manager();
    for i in range {
        m.events().publish(NewEvent {
            from_team: Some("frontend".into()),
            to_team: Some("backend".into()),
            tell_id: None,
            session_id: None,
            kind: EventKind::Text {
                text: format!("n{i}"),
            },
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(m.events().flush());
}

fn bearer(server: &ServeProcess) -> String {
    format!("Bearer {}", server.token())
}

#[test]
fn last_event_id_resumes_without_loss_or_duplicates_across_reconnects() {
    let env = TestEnv::new();
    let server = ServeProcess::start(&env);
    let auth = bearer(&server);
    let start = env.manager().store().max_event_id().expect("max id");

    // 1,000 events written by another process while the client connects, reads a few,
    // drops the connection and comes back with Last-Event-ID, again and again.
    let (seen, reconnects) = std::thread::scope(|s| {
        let w = s.spawn(|| {
            for batch in 0..10 {
                publish_texts(&env, batch * 100..batch * 100 + 100);
            }
        });
        let mut seen: Vec<SseEvent> = Vec::new();
        let mut last = start;
        let mut reconnects = 0;
        // Reads per connection: uneven, so disconnects fall anywhere.
        let sizes = [1usize, 37, 150, 3, 260, 99, 5, 180];
        while seen.len() < 1000 {
            let path = "/events?pair=frontend:backend";
            let last_s = last.to_string();
            let mut stream = if reconnects % 3 == 2 {
                // As a URL parameter, the way a first connection starts.
                SseStream::open(
                    &server.authority(),
                    &format!("{path}&after={last}"),
                    &[("Authorization", &auth)],
                )
            } else {
                SseStream::open(
                    &server.authority(),
                    path,
                    &[("Authorization", &auth), ("Last-Event-ID", &last_s)],
                )
            };
            assert_eq!(stream.status, 200);
            assert_eq!(
                stream.headers.get("content-type").map(String::as_str),
                Some("text/event-stream")
            );
            let take = sizes[reconnects % sizes.len()].min(1000 - seen.len());
            for _ in 0..take {
                let e = stream.next_event(WITHIN).expect("the stream goes on");
                last = e.id;
                seen.push(e);
            }
            reconnects += 1;
            // Dropped mid-stream, like a lost connection.
            drop(stream);
        }
        w.join().expect("the writer");
        (seen, reconnects)
    });
    assert!(reconnects >= 8, "only {reconnects} connections");
    assert_eq!(seen.len(), 1000);
    for pair in seen.windows(2) {
        assert!(
            pair[1].id > pair[0].id,
            "ids not strictly increasing: {} then {}",
            pair[0].id,
            pair[1].id
        );
    }
    let texts: Vec<String> = seen
        .iter()
        .map(|e| {
            assert_eq!(e.event, "text");
            assert_eq!(e.data["type"], "text");
            assert_eq!(e.data["id"], e.id, "the data carries the same id");
            e.data["text"].as_str().expect("text").to_string()
        })
        .collect();
    let expected: Vec<String> = (0..1000).map(|i| format!("n{i}")).collect();
    assert_eq!(texts, expected, "every event once, in order");
    // And they are exactly the stored ones.
    let ids: HashSet<i64> = seen.iter().map(|e| e.id).collect();
    let stored = env
        .manager()
        .store()
        .events_after(
            start,
            &switchboard::events::EventFilter {
                team: None,
                pair: Some(("frontend".into(), "backend".into())),
                tell: None,
            },
            5000,
        )
        .expect("stored events");
    assert_eq!(stored.len(), 1000);
    assert!(stored.iter().all(|e| ids.contains(&e.id)));
    drop(server);
}

/// Reads events until one of type `until` for tell `tell` (asserting each against `ok`).
fn read_until(
    stream: &mut SseStream,
    until: &str,
    tell: &str,
    ok: &dyn Fn(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let mut got = Vec::new();
    loop {
        let e = stream.next_event(WITHIN).expect("the stream goes on");
        assert!(ok(&e), "an event outside the filter: {:?}", e.data);
        let done = e.event == until && e.data["tell_id"] == tell;
        got.push(e);
        if done {
            return got;
        }
    }
}

#[test]
fn filters_by_team_pair_and_tell_and_shows_the_servers_own_events() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let auth = bearer(&server);
    // A live stream opened before anything happens: the server's own events wake it.
    let mut live = SseStream::open(&server.authority(), "/events", &[("Authorization", &auth)]);
    assert_eq!(live.status, 200);

    let one = env.run_json(&["tell", "frontend", "backend", "one"]);
    let two = env.run_json(&["tell", "docs", "backend", "two"]);
    let (one, two) = (
        one["tell_id"].as_str().expect("id").to_string(),
        two["tell_id"].as_str().expect("id").to_string(),
    );

    let all = read_until(&mut live, "tell_answered", &two, &|_| true);
    let types: Vec<&str> = all
        .iter()
        .filter(|e| e.data["tell_id"] == one.as_str())
        .map(|e| e.event.as_str())
        .collect();
    for t in ["tell_queued", "tell_delivered", "tell_answered"] {
        assert!(types.contains(&t), "no {t} for tell one in {types:?}");
    }

    let open = |q: &str| {
        let s = SseStream::open(&server.authority(), q, &[("Authorization", &auth)]);
        assert_eq!(s.status, 200, "{q}");
        s
    };
    let team = |e: &SseEvent, t: &str| e.data["from_team"] == t || e.data["to_team"] == t;

    let mut by_tell = open(&format!("/events?after=0&tell={}", &one[..8]));
    let got = read_until(&mut by_tell, "tell_answered", &one, &|e| {
        e.data["tell_id"] == one.as_str()
    });
    assert_eq!(
        got[0].event, "tell_queued",
        "a tell's stream starts at its start"
    );

    let mut by_team = open("/events?team=docs&after=0");
    read_until(&mut by_team, "tell_answered", &two, &|e| team(e, "docs"));

    let mut by_pair = open("/events?pair=frontend%3Abackend&after=0");
    let got = read_until(&mut by_pair, "tell_answered", &one, &|e| {
        e.data["from_team"] == "frontend" && e.data["to_team"] == "backend"
    });
    assert!(got.iter().all(|e| e.data["tell_id"] != two.as_str()));

    // Bad values: 400 naming the parameter.
    for (q, name) in [
        ("/events?after=-3", "after"),
        ("/events?team=nobody", "team"),
        ("/events?pair=frontend", "pair"),
        ("/events?tell=ffffffffffff", "tell"),
        ("/events?colour=red", "colour"),
    ] {
        let r = http(
            &server.authority(),
            "GET",
            q,
            &[("Authorization", &auth)],
            "",
        );
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        assert_eq!(v["parameter"], name, "{q}: {}", r.body);
        assert!(
            v["error"].as_str().is_some_and(|e| e.starts_with(name)),
            "{q}: {}",
            r.body
        );
    }
    let r = http(
        &server.authority(),
        "GET",
        "/events",
        &[("Authorization", &auth), ("Last-Event-ID", "yesterday")],
        "",
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Last-Event-ID"), "{}", r.body);
    drop(server);
}

#[test]
fn guarded_like_mcp_bounded_and_ended_at_shutdown() {
    let env = TestEnv::with_extra_config("[server]\nmax_connections = 4\n");
    let server = ServeProcess::start(&env);
    let auth = bearer(&server);
    let a = server.authority();

    let r = http(&a, "GET", "/events", &[], "");
    assert_eq!(r.status, 401, "no token: {}", r.body);
    let r = http(
        &a,
        "GET",
        "/events",
        &[("Authorization", "Bearer wrong-token-0123456789")],
        "",
    );
    assert_eq!(r.status, 401);
    let bad_host = format!("evil.example.com:{}", server.port());
    let r = raw_get(&a, &bad_host, &auth);
    assert_eq!(r, 403, "a foreign Host is refused");
    let r = http(
        &a,
        "GET",
        "/events",
        &[
            ("Authorization", &auth),
            ("Origin", "http://evil.example.com"),
        ],
        "",
    );
    assert_eq!(r.status, 403, "a foreign Origin is refused");
    let r = http(
        &a,
        "GET",
        "/events",
        &[("X-Switchboard-Agent", "sb-agent-token")],
        "",
    );
    assert_eq!(
        r.status, 403,
        "an agent's credential is for /mcp only: {}",
        r.body
    );
    let r = http(&a, "POST", "/events", &[("Authorization", &auth)], "");
    assert_eq!(r.status, 405);

    // Half of max_connections (4) may be event streams: the third is refused, and other
    // requests still get through.
    let mut one = SseStream::open(&a, "/events", &[("Authorization", &auth)]);
    let two = SseStream::open(&a, "/events", &[("Authorization", &auth)]);
    assert_eq!((one.status, two.status), (200, 200));
    let r = http(&a, "GET", "/events", &[("Authorization", &auth)], "");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("max_connections"), "{}", r.body);
    assert!(r.header("retry-after").is_some());
    let (code, status) = server.get("/status");
    assert_eq!(code, 200, "the CLI's requests still get through");
    assert_eq!(status["event_streams"], 2, "{status}");
    drop(two);

    // Shutdown ends the streams cleanly and the server exits.
    let pid = server.pid();
    let mut server = server;
    send_signal(pid, libc::SIGTERM);
    assert!(one.wait_end(WITHIN), "the stream ends at shutdown");
    let status = wait_timeout(&mut server.child, WITHIN).expect("the server exits");
    assert!(status.success(), "{status:?}");
}

/// A GET of `/events` with the given Host header: the status.
fn raw_get(authority: &str, host: &str, auth: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(authority).expect("connect");
    s.set_read_timeout(Some(WITHIN)).expect("timeout");
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    support::serve::parse_reply(&raw).status
}

#[test]
fn an_idle_stream_gets_keepalive_comments() {
    let env = TestEnv::new();
    let server = ServeProcess::start(&env);
    let auth = bearer(&server);
    let mut stream = SseStream::open(&server.authority(), "/events", &[("Authorization", &auth)]);
    assert_eq!(stream.status, 200);
    // Nothing happens: a comment comes every 15 s (proxies and clients do not time out), and
    // an event still comes through after it.
    assert!(
        stream.wait_comment("keepalive", Duration::from_secs(25)),
        "comments: {:?}",
        stream.comments
    );
    publish_texts(&env, 0..1);
    let e = stream
        .next_event(WITHIN)
        .expect("an event after the keepalive");
    assert_eq!(e.data["text"], "n0");
    drop(server);
}
