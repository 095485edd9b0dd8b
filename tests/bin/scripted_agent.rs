//! `switchboard-test-agent`: a small scripted agent for tests. It speaks the same stream-json
//! protocol as Claude Code (`-p --input-format stream-json --output-format stream-json
//! --session-id ID | --resume ID`) and keeps a transcript where Claude Code would, but its
//! answers are scripted, so tests can make it crash, hang, print garbage or huge lines.
//!
//! The message text decides what a turn does:
//! - `crash` — starts the turn, then exits with status 9 (stderr says "simulated crash").
//! - `crash:TEXT` — starts the turn, writes TEXT to stderr, then exits with status 9.
//! - `hang` — starts the turn and never answers.
//! - `ask:COMMAND` — starts the turn, asks permission to run `Bash` COMMAND (a `can_use_tool`
//!   control request, as Claude Code does), then never answers.
//! - `garbage` — prints lines that are not JSON, a JSON line of an unknown type, then answers.
//! - `tools:N` — N tool calls (`Bash` `echo K`) each followed by its result (as Claude Code
//!   prints them: an `assistant` tool_use line, a `user` tool_result line), then answers
//!   "tools done".
//! - `huge:N` — prints an assistant line of N bytes of text, then answers "huge done".
//! - `sleep:MS` — answers after MS milliseconds (an interrupt ends the turn early).
//! - `deaf:MS` — answers after MS milliseconds whatever happens (an interrupt does not stop it).
//! - `history` — answers with the number of earlier user messages in the transcript.
//! - `exit` — answers, then exits 0.
//! - `env` — answers `env: NAME,NAME,...`, the sorted names of its environment variables.
//! - `getenv:NAME` — answers the value of its variable NAME exactly (`unset NAME` without it).
//! - `toolcut` — says "partial findings", calls a tool, and ends the turn the way Claude Code
//!   does when the tool call was cut off: a `success` result whose text is
//!   `[Tool use interrupted]`, stop reason `tool_use`.
//! - `cutoff:REASON` — says "partial answer" and ends with a `success` result whose
//!   `terminal_reason` is REASON.
//! - an interrupt (control request) ends the turn as Claude Code 2.1.328 does: an
//!   `error_during_execution` result without text, an internal `[ede_diagnostic] ...` error and
//!   `terminal_reason` `aborted_streaming`.
//! - `/compact` — status compacting, a compact_boundary with pre/post tokens, then a result.
//! - anything else — answers `echo: TEXT`.
//!
//! Environment: `TEST_AGENT_STARTUP=exit` exits with status 3 before reading anything;
//! `TEST_AGENT_STARTUP=slow:MS` waits MS milliseconds before each turn's init line;
//! `TEST_AGENT_COMPACT=no-post` leaves `post_tokens` out of the compact_boundary line;
//! `TEST_AGENT_INIT_ID=ID` names the conversation ID in each init line (an agent CLI that picks
//! its own session id, as Codex picks a thread id) instead of the `--session-id` it was given;
//! `TEST_AGENT_PIDFILE=PATH` appends the agent's pid to PATH at start, and `turn PID` at the start
//! of each turn.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

type Out = Arc<Mutex<std::io::Stdout>>;

fn emit(out: &Out, v: &Value) {
    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(o, "{v}");
    let _ = o.flush();
}

fn emit_raw(out: &Out, line: &str) {
    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

fn transcript_path(session_id: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let cwd = std::env::current_dir().ok()?;
    let escaped: String = cwd
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Some(
        PathBuf::from(home)
            .join(".claude/projects")
            .join(escaped)
            .join(format!("{session_id}.jsonl")),
    )
}

fn append_transcript(path: &PathBuf, role: &str, text: &str) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{}", json!({"type": role, "text": text}));
    }
}

fn history(path: &PathBuf) -> usize {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"type\":\"user\""))
                .count()
        })
        .unwrap_or(0)
}

enum Input {
    User(String),
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg_after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(pidfile) = std::env::var_os("TEST_AGENT_PIDFILE") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pidfile)
        {
            let _ = writeln!(f, "{}", std::process::id());
        }
    }
    let startup = std::env::var("TEST_AGENT_STARTUP").unwrap_or_default();
    if startup == "exit" {
        eprintln!("test agent: exiting before init as asked");
        std::process::exit(3);
    }
    let slow_init = startup
        .strip_prefix("slow:")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);

    let (session_id, resume) = match (arg_after("--session-id"), arg_after("--resume")) {
        (Some(id), None) => (id, false),
        (None, Some(id)) => (id, true),
        _ => {
            eprintln!("test agent: need exactly one of --session-id ID or --resume ID");
            std::process::exit(2);
        }
    };
    let Some(transcript) = transcript_path(&session_id) else {
        eprintln!("test agent: no HOME or cwd");
        std::process::exit(2);
    };
    if resume && !transcript.exists() {
        eprintln!("No conversation found with session ID: {session_id}");
        std::process::exit(1);
    }
    if !resume && transcript.exists() {
        eprintln!("Error: Session ID {session_id} is already in use.");
        std::process::exit(1);
    }

    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    let interrupted = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Input>();
    {
        let out = Arc::clone(&out);
        let interrupted = Arc::clone(&interrupted);
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("test agent: bad input line: {line}");
                    continue;
                };
                match v.get("type").and_then(Value::as_str) {
                    Some("user") => {
                        let text = match v.pointer("/message/content") {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Array(blocks)) => blocks
                                .iter()
                                .filter_map(|b| b.get("text").and_then(Value::as_str))
                                .collect::<Vec<_>>()
                                .join(""),
                            _ => String::new(),
                        };
                        // A new turn; an interrupt read after this line is for it, even one
                        // that arrives before the turn starts.
                        interrupted.store(false, Ordering::SeqCst);
                        if tx.send(Input::User(text)).is_err() {
                            break;
                        }
                    }
                    Some("control_request") => {
                        let id = v.get("request_id").cloned().unwrap_or(Value::Null);
                        if v.pointer("/request/subtype").and_then(Value::as_str)
                            == Some("interrupt")
                        {
                            interrupted.store(true, Ordering::SeqCst);
                        }
                        emit(
                            &out,
                            &json!({"type":"control_response","response":{"subtype":"success","request_id":id}}),
                        );
                    }
                    _ => eprintln!("test agent: ignored input line: {line}"),
                }
            }
            // stdin closed: the receiver sees the channel close and the agent exits.
        });
    }

    let mut context_tokens: i64 = 0;
    // Like Claude Code: total_cost_usd is the running total of the process; the turn's own
    // usage is in model_usage_since_last_result.
    let mut total_cost = 0.0f64;
    let pidfile = std::env::var_os("TEST_AGENT_PIDFILE");
    let init_id = std::env::var("TEST_AGENT_INIT_ID").unwrap_or_else(|_| session_id.clone());
    while let Ok(Input::User(text)) = rx.recv() {
        // The message is in the transcript before the turn is announced (a test that kills
        // Switchboard once the turn started expects the conversation to hold it).
        append_transcript(&transcript, "user", &text);
        if let Some(pidfile) = &pidfile {
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(pidfile) {
                let _ = writeln!(f, "turn {}", std::process::id());
            }
        }
        if let Some(d) = slow_init {
            std::thread::park_timeout(d);
        }
        emit(
            &out,
            &json!({"type":"system","subtype":"init","session_id":init_id,"cwd":std::env::current_dir().ok(),"tools":[],"model":"scripted"}),
        );
        let started = Instant::now();
        let answer: String = match text.as_str() {
            "crash" => {
                emit(
                    &out,
                    &json!({"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"about to crash"}]}}),
                );
                eprintln!("test agent: simulated crash");
                std::process::exit(9);
            }
            t if t.starts_with("crash:") => {
                eprintln!("{}", &t[6..]);
                std::process::exit(9);
            }
            "hang" => loop {
                std::thread::park();
            },
            t if t.starts_with("ask:") => {
                // A permission request as Claude Code sends it, then no answer ever.
                emit(
                    &out,
                    &json!({"type":"control_request","request_id":"perm-1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":&t[4..]},"tool_use_id":"toolu_ask"}}),
                );
                loop {
                    std::thread::park();
                }
            }
            "garbage" => {
                emit_raw(&out, "this is not json");
                emit_raw(&out, "{\"type\": broken");
                emit_raw(&out, "[1,2,3]");
                emit(
                    &out,
                    &json!({"type":"mystery","detail":"unknown event type"}),
                );
                "garbage done".to_string()
            }
            "history" => format!("history: {}", history(&transcript).saturating_sub(1)),
            "env" => {
                let mut names: Vec<String> = std::env::vars_os()
                    .filter_map(|(k, _)| k.into_string().ok())
                    .collect();
                names.sort();
                format!("env: {}", names.join(","))
            }
            "/compact" => {
                emit(
                    &out,
                    &json!({"type":"system","subtype":"status","status":"compacting","session_id":session_id}),
                );
                let pre = context_tokens.max(1);
                let post = (pre / 10).max(1);
                let mut meta = json!({"trigger":"manual","pre_tokens":pre,"post_tokens":post});
                if std::env::var("TEST_AGENT_COMPACT").as_deref() == Ok("no-post") {
                    meta.as_object_mut().map(|m| m.remove("post_tokens"));
                }
                emit(
                    &out,
                    &json!({"type":"system","subtype":"compact_boundary","session_id":session_id,"compact_metadata":meta}),
                );
                context_tokens = post;
                emit(
                    &out,
                    &json!({"type":"system","subtype":"status","status":null,"session_id":session_id}),
                );
                String::new()
            }
            "toolcut" => {
                emit(
                    &out,
                    &json!({"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"partial findings"}]}}),
                );
                emit(
                    &out,
                    &json!({"type":"assistant","message":{"role":"assistant","content":[{"type":"tool_use","id":"toolu_cut","name":"Bash","input":{"command":"make"}}]}}),
                );
                emit(
                    &out,
                    &json!({"type":"result","subtype":"success","is_error":false,"result":"[Tool use interrupted]","stop_reason":"tool_use","terminal_reason":"completed","session_id":session_id,"usage":{"input_tokens":5,"output_tokens":5},"total_cost_usd":total_cost,"num_turns":1,"duration_ms":1}),
                );
                continue;
            }
            t if t.starts_with("cutoff:") => {
                emit(
                    &out,
                    &json!({"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"partial answer"}]}}),
                );
                emit(
                    &out,
                    &json!({"type":"result","subtype":"success","is_error":false,"result":"partial answer","stop_reason":"end_turn","terminal_reason":&t[7..],"session_id":session_id,"usage":{"input_tokens":5,"output_tokens":5},"total_cost_usd":total_cost,"num_turns":1,"duration_ms":1}),
                );
                continue;
            }
            t if t.starts_with("tools:") => {
                let n: usize = t[6..].parse().unwrap_or(0);
                for k in 0..n {
                    let id = format!("toolu_{k}");
                    emit(
                        &out,
                        &json!({"type":"assistant","message":{"id":format!("msg_{k}"),"role":"assistant","content":[{"type":"tool_use","id":id,"name":"Bash","input":{"command":format!("echo {k}")}}]}}),
                    );
                    emit(
                        &out,
                        &json!({"type":"user","message":{"role":"user","content":[{"tool_use_id":id,"type":"tool_result","content":format!("{k}"),"is_error":false}]}}),
                    );
                }
                "tools done".to_string()
            }
            t if t.starts_with("huge:") => {
                let n: usize = t[5..].parse().unwrap_or(0);
                let big = "x".repeat(n);
                emit(
                    &out,
                    &json!({"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":big}]}}),
                );
                "huge done".to_string()
            }
            t if t.starts_with("getenv:") => {
                let name = &t["getenv:".len()..];
                std::env::var(name).unwrap_or_else(|_| format!("unset {name}"))
            }
            t if t.starts_with("sleep:") => {
                let ms: u64 = t[6..].parse().unwrap_or(0);
                let until = started + Duration::from_millis(ms);
                while Instant::now() < until && !interrupted.load(Ordering::SeqCst) {
                    std::thread::park_timeout(Duration::from_millis(5));
                }
                format!("slept {ms}ms")
            }
            t if t.starts_with("deaf:") => {
                let ms: u64 = t[5..].parse().unwrap_or(0);
                let until = started + Duration::from_millis(ms);
                while Instant::now() < until {
                    std::thread::park_timeout(until - Instant::now());
                }
                interrupted.store(false, Ordering::SeqCst);
                format!("finished anyway after {ms}ms")
            }
            t => format!("echo: {t}"),
        };
        if interrupted.load(Ordering::SeqCst) {
            emit(
                &out,
                &json!({"type":"result","subtype":"error_during_execution","is_error":true,"session_id":session_id,"errors":["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=null"],"terminal_reason":"aborted_streaming","usage":{"input_tokens":1,"output_tokens":0},"total_cost_usd":0.0,"num_turns":1,"duration_ms":started.elapsed().as_millis() as u64}),
            );
            continue;
        }
        let input_tokens = text.len() as i64 + 10;
        let output_tokens = answer.len() as i64 + 1;
        let cost = (input_tokens + output_tokens) as f64 * 0.000_001;
        total_cost += cost;
        context_tokens += input_tokens + output_tokens;
        if !answer.is_empty() {
            emit(
                &out,
                &json!({"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":answer}]}}),
            );
            append_transcript(&transcript, "assistant", &answer);
        }
        emit(
            &out,
            &json!({"type":"result","subtype":"success","is_error":false,"result":answer,"session_id":session_id,
                "usage":{"input_tokens":input_tokens,"output_tokens":output_tokens},
                "total_cost_usd": total_cost,
                "model_usage_since_last_result": {"scripted": {"inputTokens": input_tokens, "outputTokens": output_tokens, "costUSD": cost}},
                "num_turns":1,"duration_ms":started.elapsed().as_millis() as u64}),
        );
        if text == "exit" {
            std::process::exit(0);
        }
    }
}
