//! Teams whose agent is the real Gemini CLI (`agent = "gemini"`, npm `@google/gemini-cli@0.61.0`
//! installed into `.tools/gemini` by `scripts/test.sh`, or `$SWITCHBOARD_TEST_GEMINI`), used as
//! a user would: the `switchboard` binary (`tell`, `cancel`, `wake`, `sleep`, `sessions`,
//! `config check`, `doctor`, and `serve` for the agent's MCP tools) against the local stand-in
//! of the Gemini API (`tests/fake_api/gemini.rs`). One Gemini process per turn: what a user
//! notices is answers, tokens and a cost from `[settings.prices]`, a conversation that carries
//! on, Switchboard's tools in the agent's hands, cancel, a model API that is down, and clear
//! refusals of what Gemini cannot do.

mod fake_api;
#[path = "support/agent_clis.rs"]
mod pinned;
mod support;

use std::process::Child;
use std::time::Duration;

use fake_api::gemini::{self, Answer, GeminiApi};
use serde_json::{json, Value};
use support::procs;

use support::{assert_exit, parse_json, poll_until, stderr, stdout, toml_string, TestEnv};
use switchboard::store::{EventFilter, SessionStore};

const MODEL: &str = "gemini-2.5-flash";
/// Prices of [`MODEL`] in the teams file (US dollars per million tokens).
const PRICE: (f64, f64, f64) = (0.30, 0.03, 2.50);
/// Marks the Gemini processes of one test (in the team's `env`), to find them in /proc.
const MARKER_VAR: &str = "SWITCHBOARD_GEMINI_TEST_MARKER";
/// Generous bound on anything a turn waits for (a cold start of Node on a loaded machine).
const TURN: Duration = Duration::from_secs(120);

/// A project whose team `backend` runs Gemini against `api` (team `frontend` is a Claude team
/// that only tells), with `extra` TOML lines in backend's entry.
struct GeminiEnv {
    env: TestEnv,
    marker: String,
}

impl GeminiEnv {
    fn new(api: &GeminiApi, extra: &str) -> Self {
        Self::with_teams(api, "", extra, "")
    }

    /// The same, with `settings` TOML lines in `[settings]`, and `teams` TOML (more teams) at
    /// the end; `{gemini}`, `{marker}`, `{api}` and
    /// `{docs}` in it are replaced by the binary, the marker, the stand-in's URL and the docs
    /// team's folder (as TOML strings).
    fn with_teams(api: &GeminiApi, settings: &str, extra: &str, teams: &str) -> Self {
        let env = TestEnv::new();
        let marker = uuid::Uuid::new_v4().to_string();
        let teams = teams
            .replace("{gemini}", &toml_string(&pinned::gemini()))
            .replace("{marker}", &toml_string(&marker))
            .replace("{api}", &toml_string(&gemini::base_url(api)))
            .replace(
                "{docs}",
                &toml_string(&env.project("docs").display().to_string()),
            );
        let text = format!(
            "[settings]\n{settings}\n[settings.prices.\"{MODEL}\"]\ninput = {}\ncached_input = {}\noutput = {}\n\n\
             [database]\npath = \"data/switchboard.db\"\n\n\
             [teams.frontend]\npath = {}\n\n\
             [teams.backend]\npath = {}\nagent = \"gemini\"\nagent_path = {}\nmodel = \"{MODEL}\"\n\
             max_retries = 1\nenv = {{ GEMINI_API_KEY = \"test-key\", {MARKER_VAR} = {} }}\n{extra}\n\
             [teams.backend.provider]\nbase_url = {}\n{teams}",
            PRICE.0,
            PRICE.1,
            PRICE.2,
            toml_string(&env.project("frontend").display().to_string()),
            toml_string(&env.project("backend").display().to_string()),
            toml_string(&pinned::gemini()),
            toml_string(&marker),
            toml_string(&gemini::base_url(api)),
        );
        env.write_config(&text);
        Self { env, marker }
    }

    /// Runs the binary with `args` (blocking, off the runtime's threads' async work).
    fn run(&self, args: &[&str]) -> std::process::Output {
        tokio::task::block_in_place(|| self.env.run(args))
    }

    /// Runs `args` with `--json`, asserts exit 0, returns the JSON.
    fn json(&self, args: &[&str]) -> Value {
        tokio::task::block_in_place(|| self.env.run_json(args))
    }

    /// `tell frontend backend TEXT --json`, answered.
    fn tell(&self, text: &str) -> Value {
        let v = self.json(&["tell", "frontend", "backend", text]);
        assert_eq!(v["state"], "answered", "{v}");
        v
    }

    fn session(&self) -> Value {
        self.json(&["sessions", "show", "frontend:backend"])
    }

    /// The private home of a session of `backend`.
    fn home(&self, session_id: &str) -> std::path::PathBuf {
        self.env
            .xdg_data_home()
            .join("switchboard/gemini/backend")
            .join(session_id)
    }

    /// The reasons of the `agent_stopped` events recorded so far, oldest first.
    fn stop_reasons(&self) -> Vec<String> {
        let store = SessionStore::open(&self.env.db_path()).expect("open the database");
        let events = store
            .events_after(0, &EventFilter::default(), 10_000)
            .expect("events");
        events
            .iter()
            .map(|e| serde_json::to_value(e).expect("event as JSON"))
            .filter(|e| e["type"] == "agent_stopped")
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Polls (bounded) until no Gemini process of this test is left.
    fn assert_no_agents(&self) {
        let gone = tokio::task::block_in_place(|| {
            poll_until(Duration::from_secs(15), || {
                procs::pids_with_env(MARKER_VAR, &self.marker).is_empty()
            })
        });
        assert!(
            gone,
            "gemini processes left: {:?}",
            procs::pids_with_env(MARKER_VAR, &self.marker)
        );
    }
}

fn cost(input: i64, cached: i64, output: i64) -> f64 {
    ((input - cached) as f64 * PRICE.0 + cached as f64 * PRICE.1 + output as f64 * PRICE.2) / 1e6
}

/// A tell is answered with Gemini's tokens and the cost of its model's prices; the next tell
/// resumes the same Gemini session (the stand-in sees the first exchange in the request's
/// history; each `tell` is a Switchboard process of its own, so this is also a restarted
/// Switchboard finding the conversation), and the session lives in a home of Switchboard's,
/// not the user's `~/.gemini`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_is_answered_priced_and_the_next_resumes_the_conversation() {
    let api = gemini::start().await;
    api.push(Answer::text("Noted: the code word is ORCHID.").with_usage(900, 100, 21));
    api.push(Answer::text("The code word was ORCHID."));
    let g = GeminiEnv::new(&api, "");
    let first = g.tell("Remember the code word ORCHID.");
    assert_eq!(first["answer"], "Noted: the code word is ORCHID.");
    assert_eq!(first["input_tokens"], 900);
    assert_eq!(first["output_tokens"], 21);
    let paid = first["cost_usd"].as_f64().expect("cost");
    assert!((paid - cost(900, 100, 21)).abs() < 1e-9, "{first}");
    let session_id = first["session_id"]
        .as_str()
        .expect("session id")
        .to_string();

    let second = g.tell("What was the code word?");
    assert_eq!(second["answer"], "The code word was ORCHID.");
    assert_eq!(second["session_id"], first["session_id"]);
    let calls = api.model_calls();
    assert_eq!(calls.len(), 2, "one model call per plain answer");
    assert_eq!(gemini::model(&calls[0]).as_deref(), Some(MODEL));
    assert_eq!(calls[0].header("x-goog-api-key"), Some("test-key"));
    assert!(
        gemini::has_text(&calls[1], "user", "Remember the code word ORCHID.")
            && gemini::has_text(&calls[1], "model", "Noted: the code word is ORCHID."),
        "the second turn continues the conversation: {:?}",
        gemini::content_texts(&calls[1])
    );
    let s = g.session();
    assert_eq!(s["message_count"], 2, "{s}");
    assert!(
        (s["cost_usd"].as_f64().unwrap_or(0.0) - cost(900, 100, 21) - cost(100, 20, 10)).abs()
            < 1e-9,
        "{s}"
    );
    // Gemini's session is in Switchboard's own home for it; the user's has no .gemini.
    let chats = g.home(&session_id).join(".gemini/tmp");
    assert!(chats.is_dir(), "{}", chats.display());
    assert!(!g.env.home().join(".gemini").exists());
    g.assert_no_agents();
}

/// Switchboard's tools in the Gemini agent's hands: with a server running, the agent's
/// settings name Switchboard's endpoint (trusted, so its tools are offered headless, as
/// `mcp_switchboard_<tool>`), and a call of `team_teams` returns the teams as the caller sees
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_calls_switchboards_tools() {
    let api = gemini::start().await;
    api.push(Answer::text("Listing the teams.").with_mcp_call(
        "switchboard",
        "team_teams",
        json!({}),
    ));
    api.push(Answer::text("There are two teams."));
    let g = GeminiEnv::new(&api, "");
    let serve = tokio::task::block_in_place(|| support::serve::ServeProcess::start(&g.env));
    let v = g.tell("Which teams are there?");
    assert_eq!(v["answer"], "There are two teams.");
    let calls = api.model_calls();
    assert!(
        gemini::tool_names(&calls[0]).contains(&"mcp_switchboard_team_teams".to_string()),
        "{:?}",
        gemini::tool_names(&calls[0])
    );
    let results: Vec<(String, String)> = gemini::content_texts(&calls[1])
        .into_iter()
        .filter(|(role, _)| role == "tool")
        .collect();
    assert!(
        results
            .iter()
            .any(|(_, t)| t.contains("frontend") && t.contains("is_you")),
        "the tool's answer reached the model: {results:?}"
    );
    drop(serve);
    g.assert_no_agents();
}

/// A chain through Gemini's MCP wiring: backend's Gemini agent calls `team_tell` to docs
/// (another Gemini team), whose answer comes back as the tool's result and into backend's
/// answer; the hop is recorded as a child of the first tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_agent_tells_another_team_through_switchboard() {
    let api = gemini::start().await;
    api.push(Answer::text("Asking docs.").with_mcp_call(
        "switchboard",
        "team_tell",
        json!({"to": "docs", "message": "When is the release?"}),
    ));
    api.push(Answer::text("The release is on Friday."));
    api.push(Answer::text("Docs says: Friday."));
    let g = GeminiEnv::with_teams(
        &api,
        "",
        "",
        "\n[teams.docs]\npath = {docs}\nagent = \"gemini\"\nagent_path = {gemini}\n\
         model = \"gemini-2.5-flash\"\nenv = { GEMINI_API_KEY = \"test-key\", \
         SWITCHBOARD_GEMINI_TEST_MARKER = {marker} }\n[teams.docs.provider]\nbase_url = {api}\n",
    );
    let serve = tokio::task::block_in_place(|| support::serve::ServeProcess::start(&g.env));
    let v = g.tell("Ask docs when the release is.");
    assert_eq!(v["answer"], "Docs says: Friday.", "{v}");
    let hops = g.json(&["report", "backend", "docs"]);
    let hop = &hops.as_array().expect("tells")[0];
    assert_eq!(hop["text"], "When is the release?");
    assert_eq!(hop["answer"], "The release is on Friday.");
    assert_eq!(hop["parent_tell_id"], v["tell_id"], "{hop}");
    let calls = api.model_calls();
    assert_eq!(calls.len(), 3);
    assert!(
        gemini::has_text(&calls[2], "tool", "The release is on Friday."),
        "{:?}",
        gemini::content_texts(&calls[2])
    );
    drop(serve);
    g.assert_no_agents();
}

/// An idle per-turn agent (no process between turns) is stopped as idle, not as a crash, and
/// the next tell resumes the conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_stops_cleanly_and_resumes() {
    let api = gemini::start().await;
    api.push(Answer::text("Noted: TULIP."));
    api.push(Answer::text("It was TULIP."));
    let g = GeminiEnv::new(&api, "idle_timeout = \"1s\"\n");
    let serve = tokio::task::block_in_place(|| support::serve::ServeProcess::start(&g.env));
    g.tell("Remember TULIP.");
    let mut last = Value::Null;
    let stopped = tokio::task::block_in_place(|| {
        poll_until(TURN, || {
            last = g.env.run_json(&["sessions", "show", "frontend:backend"]);
            last["process_state"] == "stopped"
        })
    });
    assert!(stopped, "the idle agent is stopped: {last}");
    assert_eq!(last["status"], "active", "{last}");
    assert_eq!(last["last_error"], Value::Null, "{last}");
    assert_eq!(
        g.stop_reasons(),
        ["idle"],
        "stopped as idle, not as a crash"
    );
    let v = g.tell("What was it?");
    assert_eq!(v["answer"], "It was TULIP.");
    assert!(gemini::has_text(
        api.model_calls().last().expect("call"),
        "user",
        "Remember TULIP."
    ));
    drop(serve);
    g.assert_no_agents();
}

/// A full pool evicts an idle per-turn agent (it has no process: nothing to stop, not a
/// crash), and the evicted session's next tell resumes its conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_evicts_an_idle_gemini_session_which_then_resumes() {
    let api = gemini::start().await;
    api.push(Answer::text("Noted: IRIS."));
    api.push(Answer::text("Hello docs."));
    api.push(Answer::text("It was IRIS."));
    let g = GeminiEnv::with_teams(
        &api,
        "max_processes = 1\n",
        "",
        "\n[teams.docs]\npath = {docs}\n",
    );
    let serve = tokio::task::block_in_place(|| support::serve::ServeProcess::start(&g.env));
    g.tell("Remember IRIS.");
    let v = g.json(&["tell", "docs", "backend", "Hello?"]);
    assert_eq!(v["answer"], "Hello docs.", "{v}");
    assert_eq!(g.stop_reasons(), ["evicted"]);
    let s = g.session();
    assert_eq!(s["status"], "active", "{s}");
    let v = g.tell("What was it?");
    assert_eq!(v["answer"], "It was IRIS.");
    assert!(gemini::has_text(
        api.model_calls().last().expect("call"),
        "user",
        "Remember IRIS."
    ));
    drop(serve);
    g.assert_no_agents();
}

/// A server stopped mid-turn takes the turn's Gemini process with it (no orphan), and the
/// session takes the next tell (here without a server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_turn_leaves_no_gemini_process() {
    let api = gemini::start().await;
    api.push(Answer::text("too late").with_delay(Duration::from_secs(300)));
    api.push(Answer::text("Here now."));
    let g = GeminiEnv::new(&api, "");
    let serve = tokio::task::block_in_place(|| support::serve::ServeProcess::start(&g.env));
    let mut slow: Child = g
        .env
        .spawn(&["tell", "frontend", "backend", "Take your time."]);
    let asked = tokio::time::timeout(TURN, async {
        while api.model_calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(asked.is_ok(), "no model call");
    assert!(!procs::pids_with_env(MARKER_VAR, &g.marker).is_empty());
    let status = tokio::task::block_in_place(|| serve.stop());
    assert!(status.success(), "{status:?}");
    g.assert_no_agents();
    let _ = tokio::task::block_in_place(|| support::wait_timeout(&mut slow, TURN));
    let _ = slow.kill();
    let v = g.tell("Still there?");
    assert_eq!(v["answer"], "Here now.");
    g.assert_no_agents();
}

/// Cancel mid-turn: the turn's Gemini process is stopped, the tell is cancelled (not a crash),
/// and the next tell is answered in the same conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_turn_leaves_the_session_usable() {
    let api = gemini::start().await;
    api.push(Answer::text("too late").with_delay(Duration::from_secs(300)));
    api.push(Answer::text("Back again."));
    let g = GeminiEnv::new(&api, "");
    let serve = tokio::task::block_in_place(|| support::serve::ServeProcess::start(&g.env));
    let mut slow: Child = g
        .env
        .spawn(&["tell", "frontend", "backend", "Take your time."]);
    let asked = tokio::time::timeout(TURN, async {
        while api.model_calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if asked.is_err() {
        let _ = slow.kill();
        let out = slow.wait_with_output().expect("output");
        panic!("no model call: {} {}", stdout(&out), stderr(&out));
    }
    let out = g.run(&["cancel", "frontend", "backend"]);
    assert_exit(&out, 0, &["cancel"]);
    let ended = tokio::task::block_in_place(|| support::wait_timeout(&mut slow, TURN));
    let out = slow.wait_with_output().expect("output");
    assert!(
        ended.is_some(),
        "the cancelled tell returned: {} {}",
        stdout(&out),
        stderr(&out)
    );
    let report = g.json(&["report", "frontend", "backend"]);
    let tells = report.as_array().expect("tells");
    assert_eq!(tells[0]["state"], "cancelled", "{report}");
    let s = g.session();
    assert_ne!(s["status"], "error", "a cancel is not a crash: {s}");
    let next = g.tell("Still there?");
    assert_eq!(next["answer"], "Back again.");
    let calls = api.model_calls();
    assert!(
        gemini::has_text(calls.last().expect("call"), "user", "Take your time."),
        "the next turn resumes the same conversation: {:?}",
        gemini::content_texts(calls.last().expect("call"))
    );
    drop(serve);
    g.assert_no_agents();
}

/// The model API down: the tell fails with Gemini's reason after `max_retries` + 1 tries
/// (not Gemini's own 10), the session is not broken, and the next tell is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_is_down_fails_the_tell_after_bounded_tries() {
    let api = gemini::start().await;
    api.set_default(Answer::error(500, "the model is down"));
    let g = GeminiEnv::new(&api, "");
    let out = g.run(&["tell", "frontend", "backend", "Anyone there?", "--json"]);
    assert_exit(&out, 1, &["tell", "--json"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("the model is down"), "{all}");
    assert_eq!(api.model_calls().len(), 2, "max_retries = 1: two tries");
    api.set_default(Answer::text("Up again."));
    let v = g.tell("Now?");
    assert_eq!(v["answer"], "Up again.");
    g.assert_no_agents();
}

/// What Gemini cannot do is refused with its reason: compaction (no `/compress` headless),
/// `[permissions]` and Claude's `permission_mode` on a Gemini team (at their key paths).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_gemini_cannot_do_is_refused_with_a_reason() {
    let api = gemini::start().await;
    let g = GeminiEnv::new(&api, "");
    g.tell("Hello?");
    let out = g.run(&["sessions", "compact", "frontend:backend"]);
    assert_ne!(support::exit_code(&out), 0, "{}", stdout(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("cannot compact its context"), "{all}");

    let g = GeminiEnv::new(&api, "permission_mode = \"plan\"\n");
    let out = g.run(&["config", "check"]);
    assert_ne!(support::exit_code(&out), 0);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("teams.backend.permission_mode")
            && all.contains("not an option of agent \"gemini\""),
        "{all}"
    );

    let g = GeminiEnv::new(&api, "[teams.backend.permissions]\nallow = [\"Read\"]\n");
    let out = g.run(&["config", "check"]);
    assert_ne!(support::exit_code(&out), 0);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("teams.backend.permissions")
            && all.contains("not supported for agent \"gemini\"")
            && all.contains("no permission protocol"),
        "{all}"
    );
}

/// `doctor` runs the team's Gemini binary (`--version`) and says where its key comes from:
/// the provider's `env_key` when set, as the agent sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_the_binary_and_the_credentials() {
    let api = gemini::start().await;
    let g = GeminiEnv::new(&api, "");
    let out = g.run(&["doctor", "--json"]);
    let v = parse_json(&out);
    let text = v.to_string();
    assert!(text.contains(pinned::GEMINI_VERSION), "{v:#}");
    assert!(
        text.contains("GEMINI_API_KEY set in the team's env"),
        "{v:#}"
    );
    // No warning about a Claude Code registration for a Gemini team.
    assert!(
        text.contains("gets Switchboard's tools from a running server"),
        "{v:#}"
    );

    // The provider's env_key names the variable; unset, doctor says which.
    let config = std::fs::read_to_string(g.env.config_path()).expect("config");
    let config = config.replace(
        "[teams.backend.provider]\n",
        "[teams.backend.provider]\nenv_key = \"SB_TEST_GEMINI_KEY_UNSET\"\n",
    );
    g.env.write_config(&config);
    let out = g.run(&["doctor", "--json"]);
    assert_ne!(support::exit_code(&out), 0);
    let text = parse_json(&out).to_string();
    assert!(
        text.contains("SB_TEST_GEMINI_KEY_UNSET") && text.contains("is not set"),
        "{text}"
    );
}

/// The verbs of a session's life for a kind with a process per turn: `wake` starts no process
/// (there is none until a turn), `sleep` is fine with none, `reboot` starts a new conversation
/// (the next request has no earlier turns), `sessions delete --transcript` removes Gemini's
/// session file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_wake_reboot_and_delete() {
    let api = gemini::start().await;
    api.push(Answer::text("First."));
    api.push(Answer::text("After the reboot."));
    let g = GeminiEnv::new(&api, "");
    let out = g.run(&["wake", "frontend", "backend"]);
    assert_exit(&out, 0, &["wake"]);
    assert!(
        stdout(&out).contains("a process per turn: none until a tell"),
        "{}",
        stdout(&out)
    );
    assert!(api.requests().is_empty(), "waking makes no model call");
    let out = g.run(&["sleep", "frontend", "backend"]);
    assert_exit(&out, 0, &["sleep"]);

    let first = g.tell("Remember PEONY.");
    let old = first["session_id"].as_str().expect("id").to_string();
    let out = g.run(&["sessions", "reboot", "frontend", "backend"]);
    assert_exit(&out, 0, &["sessions", "reboot"]);
    let second = g.tell("What do you remember?");
    assert_eq!(second["answer"], "After the reboot.");
    assert_ne!(second["session_id"], first["session_id"]);
    let calls = api.model_calls();
    assert!(
        !gemini::has_text(calls.last().expect("call"), "user", "Remember PEONY."),
        "a rebooted session starts a new conversation"
    );

    let new = second["session_id"].as_str().expect("id").to_string();
    let chats = |id: &str| -> usize {
        walk(&g.home(id).join(".gemini/tmp"))
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .count()
    };
    assert_eq!(chats(&new), 1);
    let out = g.run(&["sessions", "delete", &new, "--transcript", "--yes"]);
    assert_exit(&out, 0, &["sessions", "delete"]);
    assert_eq!(chats(&new), 0, "the session's file is gone with it");
    assert_eq!(chats(&old), 1, "another session's file is left alone");
    g.assert_no_agents();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A turn's process that ends without its result line is a crash, told with the end of its
/// stderr; a Gemini binary that is not there fails the tell naming `agent_path`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_dies_is_a_crash_with_its_stderr() {
    let api = gemini::start().await;
    let g = GeminiEnv::new(&api, "args = [\"--no-such-option\"]\n");
    let out = g.run(&["tell", "frontend", "backend", "Hello?", "--json"]);
    assert_exit(&out, 1, &["tell", "--json"]);
    let v = parse_json(&out);
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("agent exited") && error.contains("exit status 1; stderr:"),
        "the error names the exit and the end of Gemini's stderr: {v}"
    );
    assert!(api.model_calls().is_empty());
    g.assert_no_agents();

    let g = GeminiEnv::new(&api, "");
    let config = std::fs::read_to_string(g.env.config_path()).expect("config");
    let config = config.replace(&pinned::gemini(), "/nonexistent/gemini");
    g.env.write_config(&config);
    let out = g.run(&["tell", "frontend", "backend", "Hello?", "--json"]);
    assert_exit(&out, 1, &["tell", "--json"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("/nonexistent/gemini") && all.contains("agent_path"),
        "{all}"
    );
}
