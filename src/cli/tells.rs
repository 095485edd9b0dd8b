//! `switchboard tells show ID` (one tell, whole message and answer) and `switchboard tells
//! retry ID` (queue a copy of a failed or cancelled tell). An id may be shortened to a unique
//! prefix, as `report` prints it.

use std::process::ExitCode;

use clap::Subcommand;
use switchboard::store::Tell;
use switchboard::util::{now_ms, relative, rfc3339};
use switchboard::Error;

use switchboard::server::api_types::{Op, TellAnswer, TellIdRequest};
use switchboard::store::TellState;

use super::live::{signal_error, with_router, Ended};
use super::output::print_json;
use super::remote::Remote;
use super::tell::{send, timing, Sending, Waiting};
use super::Ctx;

/// One tell: show it, or send a copy of it again.
#[derive(Debug, Subcommand)]
pub enum TellsCmd {
    /// Every field of one tell, with its whole message and answer.
    Show {
        /// The tell id (or a unique prefix of it, at least 4 characters).
        id: String,
    },
    /// Cancel one tell: a queued one at once; a running one is interrupted (in the server that
    /// runs it, or here when the process that ran it is gone).
    Cancel {
        /// The tell id (or a unique prefix of it, at least 4 characters).
        id: String,
    },
    /// Queue a copy of a tell that failed or was cancelled (an interrupted tell is never sent
    /// again on its own: its turn may have done things already), then wait for its answer as
    /// `tell` does. The copy records which tell it retries.
    Retry {
        /// The tell id (or a unique prefix of it, at least 4 characters).
        id: String,
        #[command(flatten)]
        waiting: Waiting,
    },
}

impl TellsCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        match self {
            TellsCmd::Show { id } => {
                let m = ctx.manager()?;
                let t = switchboard::router::find_tell(&m, id)?;
                let events = m.store().tell_events(&t.tell_id)?;
                if ctx.json() {
                    let mut v = serde_json::to_value(&t).unwrap_or_default();
                    v["events"] = serde_json::to_value(&events).unwrap_or_default();
                    print_json(&v)?;
                } else {
                    out!("{}", tell_details(&t));
                    out!("{}", timeline_block(&t, &events));
                }
                Ok(ExitCode::SUCCESS)
            }
            TellsCmd::Cancel { id } => {
                let config = ctx.load_config()?;
                let t = match Remote::find(&config) {
                    Some(remote) => {
                        let req = TellIdRequest {
                            tell_id: id.clone(),
                        };
                        remote.call::<_, TellAnswer>(Op::CancelTell, &req, None)?
                    }
                    None => {
                        let id = id.clone();
                        let ended = with_router(ctx, None, |router| async move {
                            Ok(router.cancel_one(&id).await?)
                        })?;
                        match ended {
                            Ended::Done((t, was_open)) => TellAnswer {
                                was_open: Some(was_open),
                                ..TellAnswer::of(t)
                            },
                            Ended::Signal(sig) => return Err(signal_error(sig)),
                        }
                    }
                };
                if ctx.json() {
                    // Keys in order, as the server sends them.
                    let v = serde_json::to_value(&t)
                        .map_err(|e| Error::Other(format!("cannot render JSON: {e}")))?;
                    print_json(&v)?;
                } else {
                    let tell_id = &t.tell.tell_id;
                    match (t.was_open, t.tell.state) {
                        (Some(true), TellState::Cancelled) => outln!("tell {tell_id} cancelled"),
                        (Some(true), other) => outln!("tell {tell_id} ended {other}"),
                        (_, other) => outln!("tell {tell_id} had already ended: {other}"),
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            TellsCmd::Retry { id, waiting } => {
                let config = ctx.load_config()?;
                send(ctx, &config, Sending::Retry(id), waiting)
            }
        }
    }
}

/// The tell's timeline (its events from the database) as a block for people; empty when the
/// tell has no events (one from before events were recorded).
pub fn timeline_block(t: &Tell, events: &[switchboard::events::Event]) -> String {
    if events.is_empty() {
        return String::new();
    }
    format!(
        "\n--- timeline\n{}",
        switchboard::events::timeline(events, t.created_at)
    )
}

/// A tell for people: its fields one per line, then its whole message and answer (or error).
pub fn tell_details(t: &Tell) -> String {
    let time = |ms: Option<i64>| match ms {
        Some(at) => format!("{} ({})", rfc3339(at), relative(at, now_ms())),
        None => "-".to_string(),
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    let mut fields: Vec<(&str, String)> = vec![
        ("tell", t.tell_id.clone()),
        ("pair", format!("{} -> {}", t.from_team, t.to_team)),
        ("state", t.state.to_string()),
        ("kind", t.kind.to_string()),
        ("session", t.session_id.clone()),
        ("created", time(Some(t.created_at))),
        ("delivered", time(t.delivered_at)),
        ("ended", time(t.answered_at)),
        ("timing", timing(t)),
        (
            "tokens",
            match (t.input_tokens, t.output_tokens) {
                (Some(i), Some(o)) => format!("{i} in, {o} out"),
                _ => "-".into(),
            },
        ),
        (
            "cost",
            t.cost_usd.map_or("-".into(), |c| format!("${c:.4}")),
        ),
    ];
    for (name, v) in [
        ("sent during", &t.parent_tell_id),
        ("retry of", &t.retry_of),
        ("idempotency key", &t.idempotency_key),
    ] {
        if v.is_some() {
            fields.push((name, opt(v)));
        }
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out: String = fields
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect();
    let block = |title: &str, text: &str| format!("\n--- {title}\n{}\n", text.trim_end());
    out.push_str(&block("message", &t.text));
    if let Some(a) = &t.answer {
        out.push_str(&block("answer", a));
    }
    if let Some(e) = &t.error {
        out.push_str(&block("error", e));
    }
    out
}
