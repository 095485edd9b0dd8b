//! The web dashboard in a real headless Chromium (Debian's chromium + chromedriver, see
//! tests/support/browser.rs) against a real `switchboard serve --http`: with the scripted
//! agent, and for the approval with the real Claude Code against the model stand-in
//! (tests/fake_api). Screenshots of each view go to target/dashboard-screenshots/.
//!
//! One browser at a time (a lock): Chromium is heavy and the machine is small.

mod fake_api;
#[path = "support/claude_code.rs"]
mod pinned_claude;
mod support;

use std::sync::Mutex;
use std::time::Duration;

use fake_api::{Answer, FakeApi, Recorded};

use serde_json::json;
use support::browser::Browser;
use support::serve::ServeProcess;
use support::{poll_until, toml_string, TestEnv};

static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Logs the browser in with a one-time link from `switchboard dashboard` and waits for the
/// overview.
fn login(b: &Browser, env: &TestEnv) {
    let url = env.run_ok(&["dashboard"]).trim().to_string();
    assert!(
        url.contains("/dashboard/login?code="),
        "a login link: {url}"
    );
    b.goto(&url);
    b.wait_for("the overview", "document.querySelector('#matrix')");
}

fn pair_url(server: &ServeProcess, from: &str, to: &str) -> String {
    format!("http://{}/#/pair/{from}/{to}", server.authority())
}

#[test]
fn the_overview_shows_pairs_and_an_answer_with_html_shows_as_text() {
    let _one = lock();
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let hostile = "look <script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"> **bold**\n\
                   - one [x](javascript:alert(1))\n- two\n\n```\n<b>not bold</b>\n```";
    env.run_ok(&["tell", "frontend", "backend", hostile]);
    // Some more traffic, for the matrix and the charts.
    for (from, to, text) in [
        ("docs", "backend", "which endpoints changed?"),
        ("backend", "docs", "document `GET /v2/items`"),
        ("frontend", "docs", "where is the style guide?"),
    ] {
        env.run_ok(&["tell", from, to, text]);
    }
    let b = Browser::start(1280, 1300);

    // Without a login the page asks for one; the token, given once in the form, logs in.
    b.goto(&format!("http://{}/", server.authority()));
    b.wait_for("the login form", "!document.querySelector('#login').hidden");
    b.type_into("#login-token", &server.token());
    b.click("#login-form button[type=submit]");
    b.wait_for("the overview", "document.querySelector('#matrix')");
    let url = b.js("return location.href", json!([]));
    assert!(
        !url.to_string().contains(&server.token()),
        "the token is never in a URL: {url}"
    );
    let cell = b.text("#matrix a[aria-label='frontend to backend']");
    assert_eq!(cell, "1 tell");
    assert_eq!(b.text("#total-today .v"), "4");
    b.wait_for(
        "the live state",
        "document.querySelector('#conn').dataset.state === 'live'",
    );
    b.screenshot("overview");

    b.goto(&pair_url(&server, "frontend", "backend"));
    b.wait_for("the answer", "document.querySelector('#tells .answer')");
    let answer = b.text("#tells .answer");
    assert!(
        answer.contains("<script>window.__pwned = 1</script>") && answer.contains("<img src=x"),
        "the answer's HTML is shown as text: {answer:?}"
    );
    let injected = b.js(
        "return [window.__pwned === undefined, \
         document.querySelectorAll('#tells script, #tells img').length, \
         document.querySelector('#tells .answer strong').textContent]",
        json!([]),
    );
    assert_eq!(injected, json!([true, 0, "bold"]));
    // The small markdown subset: a list, a code block (its HTML as text), no javascript: link.
    let md = b.js(
        "const a = document.querySelector('#tells .answer'); \
         return [a.querySelectorAll('li').length, a.querySelector('pre code').textContent, \
         a.querySelectorAll('a').length, a.querySelectorAll('b').length]",
        json!([]),
    );
    assert_eq!(md, json!([2, "<b>not bold</b>", 0, 0]));
    b.screenshot("pair");

    b.goto(&format!("http://{}/#/stats", server.authority()));
    b.wait_for(
        "the charts",
        "document.querySelectorAll('.chart svg').length >= 2",
    );
    b.screenshot("stats");

    // Narrow screen: the same page, no horizontal overflow of the page itself.
    b.resize(390, 844);
    b.goto(&format!("http://{}/#/", server.authority()));
    b.wait_for("the overview", "document.querySelector('#matrix')");
    let overflow = b.js(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1",
        json!([]),
    );
    assert_eq!(overflow, json!(true), "the page fits a narrow screen");
    b.screenshot("overview-narrow");
}

#[test]
fn a_tell_sent_from_the_page_shows_its_activity_live() {
    let _one = lock();
    let env = TestEnv::with_scripted_agent();
    let _server = ServeProcess::start(&env);
    let b = Browser::start(1280, 900);
    login(&b, &env);
    b.wait_for(
        "the live state",
        "document.querySelector('#conn').dataset.state === 'live'",
    );
    b.js(
        "document.querySelector('#tell-from').value = 'frontend'; \
         document.querySelector('#tell-to').value = 'docs';",
        json!([]),
    );
    b.type_into("#tell-text", "sleep:3000");
    b.click("#tell-send");
    // The page goes to the pair and follows the new tell: delivered while it runs...
    b.wait_for(
        "the tell delivered, live",
        "document.querySelector('#tells article[data-state=delivered] .timeline li[data-type=tell_delivered]')",
    );
    b.screenshot("tell-running");
    // ...then answered, without a reload.
    b.wait_for(
        "the answer",
        "document.querySelector('#tells article[data-state=answered] .answer')",
    );
    b.wait_for(
        "the answered event in the timeline",
        "document.querySelector('#tells .timeline li[data-type=tell_answered]')",
    );
    assert!(b.text("#tells .answer").contains("slept"));
    // The agent's tool uses and their results, each a line of the timeline.
    b.type_into("#tell-text", "tools:3");
    b.click("#tell-send");
    b.wait_for(
        "three tool uses and their results in the new tell's timeline",
        "(() => { const t = document.querySelector('#tells article .timeline'); \
         return t && t.querySelectorAll('li[data-type=tool_use]').length === 3 \
         && t.querySelectorAll('li[data-type=tool_result]').length === 3 \
         && t.querySelector('li[data-type=tell_answered]'); })()",
    );
    let first = b.text("#tells article .timeline li[data-type=tool_use]");
    assert!(
        first.contains("Bash") && first.contains("echo 0"),
        "{first}"
    );
    b.js(
        "document.querySelector('#tells article').scrollIntoView()",
        json!([]),
    );
    b.screenshot("tell-activity");
}

#[test]
fn a_running_tell_is_cancelled_from_the_page() {
    let _one = lock();
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let queued = env.run_json(&["tell", "frontend", "backend", "sleep:60000", "--async"]);
    let id = queued["tell_id"].as_str().expect("a tell id").to_string();
    let b = Browser::start(1280, 900);
    login(&b, &env);
    b.goto(&pair_url(&server, "frontend", "backend"));
    b.wait_for(
        "the running tell",
        &format!("document.querySelector('#tell-{id}[data-state=delivered] .cancel-tell')"),
    );
    // With the keyboard: the button takes Enter.
    b.press_enter(&format!("#tell-{id} .cancel-tell"));
    b.wait_for(
        "the tell cancelled",
        &format!("document.querySelector('#tell-{id}[data-state=cancelled]')"),
    );
    let shown = env.run_json(&["tells", "show", &id]);
    assert_eq!(shown["state"], "cancelled");
}

#[test]
fn the_page_reconnects_after_a_server_restart() {
    let _one = lock();
    let env = TestEnv::with_scripted_agent();
    let server = ServeProcess::start(&env);
    let port = server.port();
    let b = Browser::start(1280, 900);
    login(&b, &env);
    b.wait_for(
        "the live state",
        "document.querySelector('#conn').dataset.state === 'live'",
    );
    server.stop();
    b.wait_for(
        "the disconnected state",
        "document.querySelector('#conn').dataset.state === 'disconnected'",
    );
    assert!(b.text("#conn").contains("disconnected"));
    b.screenshot("disconnected");
    let addr = format!("127.0.0.1:{port}");
    let server = ServeProcess::start_with(&env, env.spawn(&["serve", "--http", &addr]));
    b.wait_for(
        "the live state again",
        "document.querySelector('#conn').dataset.state === 'live'",
    );
    // The same login still holds (the cookie is signed with the server's token), and what
    // happens now shows up without a reload.
    env.run_ok(&["tell", "docs", "backend", "after the restart"]);
    b.wait_for(
        "the new pair in the overview",
        "document.querySelector(\"#matrix a[aria-label='docs to backend']\").textContent === '1 tell'",
    );
    drop(server);
}

/// Team backend's agent (the real Claude Code against the stand-in): "WRITE name" makes it
/// write `name` in its folder; once it has the tool's result it says so.
fn backend_answer(rec: &Recorded, folder: &std::path::Path) -> Option<Answer> {
    let system = rec.json.as_ref()?.get("system")?.to_string();
    if !system.contains("You are team backend") {
        return None;
    }
    let has_result = rec
        .messages()
        .last()
        .and_then(|m| m.get("content"))
        .and_then(|c| c.as_array())
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
    if has_result {
        return Some(Answer::text("backend wrote the file"));
    }
    let prompt = rec.last_user_texts().pop().unwrap_or_default();
    let name = prompt
        .split_once("WRITE ")?
        .1
        .split_whitespace()
        .next()?
        .to_string();
    Some(Answer::text("").with_tool_use(
        &format!("toolu_backend_{}", rec.n),
        "Write",
        json!({"file_path": folder.join(name).display().to_string(), "content": "from backend\n"}),
    ))
}

#[test]
fn a_pending_write_is_allowed_from_the_page_and_the_file_is_written() {
    let _one = lock();
    let rt = tokio::runtime::Runtime::new().expect("a runtime for the stand-in");
    let api = rt.block_on(FakeApi::start());
    let env = TestEnv::new();
    let folder = env.project("backend");
    let responder_folder = folder.clone();
    api.respond_with(move |rec| backend_answer(rec, &responder_folder));
    let claude = pinned_claude::binary();
    let home = env.home().display().to_string();
    let agent_env = format!(
        "env = {{ HOME = {}, ANTHROPIC_BASE_URL = {}, ANTHROPIC_API_KEY = \"test-key\", \
         CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = \"1\", DISABLE_TELEMETRY = \"1\", \
         CLAUDE_CODE_MAX_RETRIES = \"0\" }}",
        toml_string(&home),
        toml_string(&api.url())
    );
    let mut config = String::from("[database]\npath = \"data/switchboard.db\"\n");
    for team in ["frontend", "backend", "docs"] {
        config.push_str(&format!(
            "\n[teams.{team}]\npath = {}\nagent_path = {}\nappend_system_prompt = \"You are team {team}\"\n{agent_env}\n",
            toml_string(&env.project(team).display().to_string()),
            toml_string(&claude),
        ));
    }
    config.push_str("\n[teams.backend.permissions]\nask = \"human\"\ntimeout = \"5m\"\n");
    env.write_config(&config);
    let _server = ServeProcess::start(&env);
    let b = Browser::start(1280, 900);
    login(&b, &env);
    let queued = env.run_json(&[
        "tell",
        "frontend",
        "backend",
        "please WRITE approved.txt",
        "--async",
    ]);
    let id = queued["tell_id"].as_str().expect("a tell id").to_string();

    // The request shows up live: the count in the menu, then the request itself.
    b.wait_for(
        "the pending count",
        "document.querySelector('#approvals-count').textContent === '1'",
    );
    b.click("nav a[href='#/approvals']");
    b.wait_for(
        "the pending Write",
        "document.querySelector('.approval[data-tool=Write] .countdown')",
    );
    let shown = b.text(".approval[data-tool=Write]");
    assert!(
        shown.contains("approved.txt") && shown.contains("frontend → backend"),
        "{shown}"
    );
    b.screenshot("approvals");
    assert!(!folder.join("approved.txt").exists());
    b.click(".approval[data-tool=Write] button.primary");
    assert!(
        poll_until(Duration::from_secs(60), || folder
            .join("approved.txt")
            .exists()),
        "the file was not written after Allow"
    );
    b.wait_for(
        "the decision in the decided list",
        "[...document.querySelectorAll('td')].some((td) => td.textContent === 'person')",
    );
    let done = poll_until(Duration::from_secs(60), || {
        env.run_json(&["tells", "show", &id])["state"] == "answered"
    });
    assert!(done, "the tell was not answered after Allow");
    drop(rt);
}
