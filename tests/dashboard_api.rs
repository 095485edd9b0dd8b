//! The dashboard's JSON API against a real `switchboard serve --http` with the scripted agent:
//! the shapes of overview, pair, stats and delete (snapshots), and who gets in: one-time login
//! codes, the session cookie, CSRF tokens, and the refusals.

mod support;

use serde_json::{json, Value};
use support::serve::{http, Reply, ServeProcess};
use support::{exit_code, stderr, TestEnv};

/// Times as unix ms, durations, memory: numbers that change from run to run.
fn redact_numbers(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let volatile = k.ends_with("_at")
                        || k.ends_with("_ms")
                        || k.ends_with("memory_kb")
                        || k.ends_with("pid")
                        || matches!(k.as_str(), "hour" | "day" | "since" | "cost_usd")
                        || k.ends_with("tokens");
                    // The agent's launch line and config have snapshots of their own.
                    let other_tests =
                        matches!(k.as_str(), "launch_command" | "team_config_snapshot");
                    let v = if volatile && v.is_number() {
                        json!("[n]")
                    } else if other_tests && v.is_string() {
                        json!("[elsewhere]")
                    } else {
                        redact_numbers(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_numbers).collect()),
        other => other,
    }
}

/// POST /api/OP with the bearer token.
fn api(server: &ServeProcess, op: &str, body: Value) -> Value {
    let bearer = format!("Bearer {}", server.token());
    let r = http(
        &server.authority(),
        "POST",
        &format!("/api/{op}"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    );
    assert_eq!(r.status, 200, "{op}: {}", r.body);
    serde_json::from_str(&r.body).expect("JSON")
}

/// A request with the session cookie and, if given, a CSRF token.
fn with_cookie(
    server: &ServeProcess,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    extra: &[(&str, &str)],
) -> Reply {
    let cookie = format!("sb_session={cookie}");
    let mut headers = vec![
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/json"),
    ];
    if let Some(c) = csrf {
        headers.push(("X-Switchboard-CSRF", c));
    }
    headers.extend_from_slice(extra);
    http(&server.authority(), method, path, &headers, "{}")
}

/// The session cookie a login answer sets.
fn cookie_of(r: &Reply) -> String {
    let set = r
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie in {} {}", r.status, r.body));
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    set.split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("sb_session="))
        .expect("the sb_session cookie")
        .to_string()
}

fn login_link(env: &TestEnv) -> String {
    let url = env.run_ok(&["dashboard"]).trim().to_string();
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, path)| format!("/{path}"))
        .expect("a URL")
}

#[test]
fn overview_pair_stats_and_delete_shapes() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    env.run_ok(&["tell", "frontend", "backend", "hello"]);
    env.run_ok(&["tell", "docs", "backend", "bye"]);

    let overview = api(&server, "overview", json!({}));
    assert_eq!(overview["today"]["tells"], 2);
    assert_eq!(overview["live_agents"].as_array().map(Vec::len), Some(2));
    insta::assert_json_snapshot!("overview", redact_numbers(env.redact(overview)));

    let pair = api(
        &server,
        "pair",
        json!({"from": "frontend", "to": "backend"}),
    );
    assert_eq!(pair["tells"][0]["answer"], "echo: hello");
    insta::assert_json_snapshot!("pair", redact_numbers(env.redact(pair)));

    let stats = api(&server, "stats", json!({"days": 2}));
    assert_eq!(stats["per_hour"].as_array().map(Vec::len), Some(24));
    assert_eq!(stats["latency"]["count"], 2);
    let hours: i64 = stats["per_hour"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["tells"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(hours, 2);
    insta::assert_json_snapshot!("stats", redact_numbers(env.redact(stats)));

    let deleted = api(
        &server,
        "delete",
        json!({"from": "docs", "to": "backend", "confirm": true}),
    );
    insta::assert_json_snapshot!("delete", redact_numbers(env.redact(deleted)));
    assert!(env.session("docs", "backend").is_none());

    // Bad input names what was wrong.
    let bearer = format!("Bearer {}", server.token());
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let refused = http(
        &server.authority(),
        "POST",
        "/api/delete",
        &headers,
        r#"{"from": "frontend", "to": "backend", "confirm": false}"#,
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("confirm must be true"),
        "{}",
        refused.body
    );
    assert!(env.session("frontend", "backend").is_some());
    let unknown = http(
        &server.authority(),
        "POST",
        "/api/pair",
        &headers,
        r#"{"from": "frontend", "to": "nobody"}"#,
    );
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert!(unknown.body.contains("nobody"), "{}", unknown.body);
}

#[test]
fn login_codes_cookies_and_csrf() {
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let host = server.authority();

    // The page itself is open (it holds no data) and strict about what it may load.
    let page = http(&host, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    // The data is not.
    let anon = http(
        &host,
        "POST",
        "/api/overview",
        &[("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!(anon.status, 401);

    // A login code is made only with the token or over the socket: not by anyone on TCP.
    let mint = http(
        &host,
        "POST",
        "/api/dashboard_login",
        &[("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!(mint.status, 401);

    // One code, one login.
    let link = login_link(&env);
    let first = http(&host, "GET", &link, &[], "");
    assert_eq!(first.status, 303, "{}", first.body);
    assert_eq!(first.header("location"), Some("/"));
    let cookie = cookie_of(&first);
    let again = http(&host, "GET", &link, &[], "");
    assert_eq!(again.status, 401, "a code is good once");
    assert!(again.header("set-cookie").is_none());
    let made_up = http(&host, "GET", "/dashboard/login?code=0123456789", &[], "");
    assert_eq!(made_up.status, 401);

    // The cookie reads; it changes nothing without the session's CSRF token.
    let session = with_cookie(&server, "GET", "/dashboard/session", &cookie, None, &[]);
    assert_eq!(session.status, 200);
    let csrf = serde_json::from_str::<Value>(&session.body).expect("JSON")["csrf"]
        .as_str()
        .expect("a CSRF token")
        .to_string();
    let no_csrf = with_cookie(&server, "POST", "/api/overview", &cookie, None, &[]);
    assert_eq!(no_csrf.status, 403);
    assert!(
        no_csrf.body.contains("X-Switchboard-CSRF"),
        "{}",
        no_csrf.body
    );
    let wrong = with_cookie(
        &server,
        "POST",
        "/api/sleep",
        &cookie,
        Some("0000000000000000"),
        &[],
    );
    assert_eq!(wrong.status, 403);
    let ok = with_cookie(&server, "POST", "/api/overview", &cookie, Some(&csrf), &[]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Not from another origin, whatever it carries.
    let cross = with_cookie(
        &server,
        "POST",
        "/api/overview",
        &cookie,
        Some(&csrf),
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(cross.status, 403);
    // The cookie is for the page's routes only: not /mcp, not /metrics, not more codes.
    for (method, path) in [
        ("POST", "/mcp"),
        ("GET", "/metrics"),
        ("POST", "/api/dashboard_login"),
    ] {
        let r = with_cookie(&server, method, path, &cookie, Some(&csrf), &[]);
        assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
    }
    // A forged cookie is nobody's.
    let forged = format!("{}0", &cookie[..cookie.len() - 1]);
    let forged = if forged == cookie {
        format!("{}1", &cookie[..cookie.len() - 1])
    } else {
        forged
    };
    let r = with_cookie(&server, "POST", "/api/overview", &forged, Some(&csrf), &[]);
    assert_eq!(r.status, 401);

    // The page's form takes the token once, in a POST body.
    let bad = http(
        &host,
        "POST",
        "/dashboard/login",
        &[("Content-Type", "application/json")],
        r#"{"token": "not-the-token-at-all"}"#,
    );
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_none());
    let good = http(
        &host,
        "POST",
        "/dashboard/login",
        &[("Content-Type", "application/json")],
        &json!({"token": server.token()}).to_string(),
    );
    assert_eq!(good.status, 200, "{}", good.body);
    cookie_of(&good);

    // After a restart the login holds (the cookie is signed with the server's token); codes
    // made before do not.
    let unused = login_link(&env);
    server.stop();
    let server = ServeProcess::start(&env);
    let r = with_cookie(&server, "POST", "/api/overview", &cookie, Some(&csrf), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http(&server.authority(), "GET", &unused, &[], "");
    assert_eq!(r.status, 401);
}

#[test]
fn dashboard_without_a_server_says_how_to_start_one() {
    let env = TestEnv::new();
    let out = env.run(&["dashboard"]);
    assert_eq!(exit_code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("switchboard serve --http"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dashboard_open_starts_the_browser_with_the_link() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    // A stand-in browser that writes down what it was asked to open.
    let opened = env.path().join("opened.txt");
    let browser = env.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display()),
    )
    .expect("write the stand-in browser");
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = env.command();
    cmd.arg("--config")
        .arg(env.config_path())
        .args(["dashboard", "--open", "--json"])
        .env("BROWSER", &browser);
    let out = support::finish(cmd);
    assert_eq!(exit_code(&out), 0, "{}", stderr(&out));
    let link: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let url = link["url"].as_str().expect("a url").to_string();
    assert_eq!(link["expires_in_secs"], 120);
    assert!(support::poll_until(
        std::time::Duration::from_secs(10),
        || std::fs::read_to_string(&opened).is_ok_and(|t| t == url)
    ));
    // The link it opened logs in.
    let path = url
        .split_once(&server.authority())
        .expect("the server's address")
        .1;
    let r = http(&server.authority(), "GET", path, &[], "");
    assert_eq!(r.status, 303);
    cookie_of(&r);
}
