//! A chain across agent kinds, end to end through `switchboard serve` and the CLI, each agent
//! the real pinned CLI against the stand-in of its model API: a person asks team `a` (Claude
//! Code), whose agent tells team `b` (Codex, `codex app-server`), whose agent tells team `c`
//! (Gemini CLI, a process per turn). `c`'s agent first tries to tell `a` (a loop: `a` waits in
//! this chain) and a fourth team (past `settings.max_hops`); both are refused as tool errors,
//! then it answers, and the answer flows back up the chain. `report`, `stats` (by agent kind),
//! `/metrics` and the event log show each hop.

mod fake_api;
#[path = "support/agent_clis.rs"]
mod pinned;
#[path = "support/claude_code.rs"]
mod pinned_claude;
mod support;

use std::time::Duration;

use fake_api::gemini::{self, GeminiApi};
use fake_api::openai::{self, OpenAiApi};
use fake_api::{Answer as ClaudeAnswer, FakeApi, Recorded};
use serde_json::{json, Value};
use support::serve::ServeProcess;
use support::{poll_until, procs, toml_string, TestEnv};

/// Marks the agent processes of one test (in each team's `env`), to find them in /proc.
const MARKER_VAR: &str = "SWITCHBOARD_CROSS_KINDS_TEST_MARKER";
const GPT: &str = "gpt-test";
const GEMINI: &str = "gemini-2.5-flash";

/// The question that starts the chain, and what each hop asks.
const ASK_A: &str = "Ask b when the release is.";
const ASK_B: &str = "When is the release? Ask c.";
const ASK_C: &str = "When is the release?";

/// The text of the last `tool_result` block of a Messages API request, if its last user
/// message carries one.
fn claude_tool_result(rec: &Recorded) -> Option<String> {
    let last = rec
        .messages()
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    let block = last
        .get("content")?
        .as_array()?
        .iter()
        .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))?;
    Some(match block.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    })
}

/// The last tool output of a Responses API request.
fn codex_tool_output(rec: &Recorded) -> Option<String> {
    openai::input_texts(rec)
        .into_iter()
        .rev()
        .find(|(role, _)| role == "tool")
        .map(|(_, t)| t)
}

/// Scripts the three stand-ins for the chain.
fn script(claude: &FakeApi, codex: &OpenAiApi, gem: &GeminiApi) {
    claude.respond_with(|rec| {
        if !rec.is_messages() || !rec.all_message_texts().iter().any(|(_, t)| t == ASK_A) {
            return None;
        }
        Some(match claude_tool_result(rec) {
            Some(out) => ClaudeAnswer::text(format!("From b: {out}")),
            None => ClaudeAnswer::text("").with_tool_use(
                "toolu_cross_1",
                "mcp__switchboard__team_tell",
                json!({"to": "b", "message": ASK_B}),
            ),
        })
    });
    codex.respond_with(|rec| {
        if openai::last_user_text(rec) != ASK_B {
            return None;
        }
        Some(match codex_tool_output(rec) {
            Some(out) => openai::Answer::text(format!("From c: {out}")),
            None => openai::Answer::text("").with_mcp_call(
                "call_cross_1",
                "switchboard",
                "team_tell",
                json!({"to": "c", "message": ASK_C}),
            ),
        })
    });
    // c: a tell back to a (a loop), one to d (a fourth hop), then the answer.
    gem.push(gemini::Answer::text("Checking with a.").with_mcp_call(
        "switchboard",
        "team_tell",
        json!({"to": "a", "message": "Do you know?"}),
    ));
    gem.push(gemini::Answer::text("Checking with d.").with_mcp_call(
        "switchboard",
        "team_tell",
        json!({"to": "d", "message": "Do you know?"}),
    ));
    gem.push(gemini::Answer::text("The release is on Friday."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_team_asks_a_codex_team_that_asks_a_gemini_team() {
    let claude_api = FakeApi::start().await;
    let codex_api = openai::start().await;
    let gemini_api = gemini::start().await;
    script(&claude_api, &codex_api, &gemini_api);

    let env = TestEnv::new();
    let marker = uuid::Uuid::new_v4().to_string();
    let home = env.path().join("agent-home");
    std::fs::create_dir_all(&home).expect("mkdir agent home");
    let home = toml_string(&home.display().to_string());
    let marker_kv = format!("{MARKER_VAR} = {}", toml_string(&marker));
    let folder = |t: &str| {
        let dir = env.project(t);
        std::fs::create_dir_all(&dir).expect("mkdir team folder");
        toml_string(&dir.display().to_string())
    };
    let text = format!(
        "[settings]\nmax_hops = 3\nshutdown_grace = \"2s\"\n\
         [settings.prices.\"{GPT}\"]\ninput = 2.0\noutput = 8.0\n\
         [settings.prices.\"{GEMINI}\"]\ninput = 0.3\noutput = 2.5\n\
         [database]\npath = \"data/switchboard.db\"\n\n\
         [teams.person]\npath = {person}\n\n\
         [teams.a]\npath = {a}\nagent_path = {claude}\n\
         env = {{ HOME = {home}, ANTHROPIC_BASE_URL = {claude_url}, ANTHROPIC_API_KEY = \"test-key\", \
         CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = \"1\", DISABLE_TELEMETRY = \"1\", \
         CLAUDE_CODE_MAX_RETRIES = \"0\", MCP_TOOL_TIMEOUT = \"120000\", {marker_kv} }}\n\n\
         [teams.b]\npath = {b}\nagent = \"codex\"\nagent_path = {codex}\nmodel = \"{GPT}\"\n\
         max_retries = 1\nenv = {{ HOME = {home}, STANDIN_API_KEY = \"sk-standin\", {marker_kv} }}\n\
         [teams.b.provider]\nbase_url = {codex_url}\nenv_key = \"STANDIN_API_KEY\"\n\n\
         [teams.c]\npath = {c}\nagent = \"gemini\"\nagent_path = {gemini}\nmodel = \"{GEMINI}\"\n\
         max_retries = 1\nenv = {{ GEMINI_API_KEY = \"test-key\", {marker_kv} }}\n\
         [teams.c.provider]\nbase_url = {gemini_url}\n\n\
         [teams.d]\npath = {d}\n",
        person = folder("person"),
        a = folder("a"),
        b = folder("b"),
        c = folder("c"),
        d = folder("d"),
        claude = toml_string(&pinned_claude::binary()),
        codex = toml_string(&pinned::codex()),
        gemini = toml_string(&pinned::gemini()),
        claude_url = toml_string(&claude_api.url()),
        codex_url = toml_string(&openai::base_url(&codex_api)),
        gemini_url = toml_string(&gemini::base_url(&gemini_api)),
    );
    env.write_config(&text);
    let check = tokio::task::block_in_place(|| env.run(&["config", "check"]));
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}{}",
        support::stdout(&check),
        support::stderr(&check)
    );

    let serve = tokio::task::block_in_place(|| ServeProcess::start(&env));
    let v = tokio::task::block_in_place(|| env.run_json(&["tell", "person", "a", ASK_A]));
    assert_eq!(v["state"], "answered", "{v}");
    let answer = v["answer"].as_str().unwrap_or_default();
    assert!(
        answer.starts_with("From b:") && answer.contains("From c:") && answer.contains("Friday"),
        "the answer flowed back through every hop: {answer}"
    );

    // Each hop is a tell of its own, chained to the one it answers.
    let report = |from: &str, to: &str| -> Value {
        let r = tokio::task::block_in_place(|| env.run_json(&["report", from, to]));
        r.as_array().expect("tells")[0].clone()
    };
    let ab = report("a", "b");
    let bc = report("b", "c");
    assert_eq!(ab["text"], ASK_B);
    assert_eq!(ab["parent_tell_id"], v["tell_id"], "{ab}");
    assert_eq!(bc["text"], ASK_C);
    assert_eq!(bc["parent_tell_id"], ab["tell_id"], "{bc}");
    assert_eq!(bc["answer"], "The release is on Friday.", "{bc}");

    // c's two refused tells came back to its model as tool errors naming why.
    let calls = gemini_api.model_calls();
    let tool_texts: Vec<String> = calls
        .iter()
        .flat_map(gemini::content_texts)
        .filter(|(role, _)| role == "tool")
        .map(|(_, t)| t)
        .collect();
    assert!(
        tool_texts.iter().any(|t| t.contains("is a loop")),
        "the tell back to a is refused as a loop: {tool_texts:?}"
    );
    assert!(
        tool_texts
            .iter()
            .any(|t| t.contains("settings.max_hops = 3")),
        "the tell to d is refused by the hop limit: {tool_texts:?}"
    );
    let c_to: Vec<Value> = ["a", "d"]
        .iter()
        .map(|t| tokio::task::block_in_place(|| env.run_json(&["report", "c", t])))
        .collect();
    assert!(
        c_to.iter()
            .all(|r| r.as_array().is_none_or(|a| a.is_empty())),
        "no refused tell was stored: {c_to:?}"
    );

    // stats by agent kind: one answering session each, priced per kind.
    let stats = tokio::task::block_in_place(|| env.run_json(&["stats"]));
    let kinds: Vec<(String, i64)> = stats["by_agent"]
        .as_array()
        .expect("by_agent")
        .iter()
        .map(|k| {
            (
                k["agent"].as_str().unwrap_or_default().to_string(),
                k["sessions"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("claude".to_string(), 1),
            ("codex".to_string(), 1),
            ("gemini".to_string(), 1)
        ],
        "{stats:#}"
    );
    for kind in stats["by_agent"].as_array().expect("by_agent") {
        assert!(
            kind["cost_usd"].as_f64().is_some_and(|c| c > 0.0),
            "each hop has a cost: {kind}"
        );
    }

    // /metrics shows the kinds; the event log has each hop's answer.
    let bearer = format!("Bearer {}", serve.token());
    let metrics = support::serve::http(
        &serve.authority(),
        "GET",
        "/metrics",
        &[("Authorization", bearer.as_str())],
        "",
    )
    .body;
    for k in ["claude", "codex", "gemini"] {
        assert!(
            metrics.contains(&format!("switchboard_sessions_by_agent{{agent=\"{k}\"}} 1")),
            "{metrics}"
        );
    }
    let store = switchboard::store::SessionStore::open(&env.db_path()).expect("open the database");
    for (hop, from, to) in [(&v, "person", "a"), (&ab, "a", "b"), (&bc, "b", "c")] {
        let id = hop["tell_id"].as_str().expect("tell id");
        let events = store.tell_events(id).expect("events");
        let answered = events
            .iter()
            .find(|e| e.kind.type_name() == "tell_answered");
        let answered = answered.unwrap_or_else(|| panic!("no tell_answered for {from}:{to}"));
        assert_eq!(
            (answered.from_team.as_deref(), answered.to_team.as_deref()),
            (Some(from), Some(to))
        );
    }
    drop(serve);
    let gone = tokio::task::block_in_place(|| {
        poll_until(Duration::from_secs(20), || {
            procs::pids_with_env(MARKER_VAR, &marker).is_empty()
        })
    });
    assert!(
        gone,
        "agent processes left: {:?}",
        procs::pids_with_env(MARKER_VAR, &marker)
    );
}
