//! `switchboard tell FROM TO "text" [--timeout 2m | --async]`.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use switchboard::router::Wait;
use switchboard::store::{Tell, TellKind, TellState};
use switchboard::Error;

use super::live::{with_router, Ended};
use super::output::print_json;
use super::remote::Remote;
use super::Ctx;

/// Send a message from one team to another team's agent and print the answer.
#[derive(Debug, Args)]
pub struct TellCmd {
    /// The team that tells.
    from: String,
    /// The team whose agent answers.
    to: String,
    /// The message; `-` reads it from stdin.
    text: String,
    /// Wait at most this long for the answer (e.g. 90s, 2m, 1h). Default: until it comes.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, conflicts_with = "async")]
    timeout: Option<Duration>,
    /// Store the tell and return its id at once; it is delivered by the next Switchboard
    /// process that works on this pair (a later `tell` or `wake`, or the server).
    #[arg(long = "async")]
    r#async: bool,
    /// When another Switchboard process holds the pair's agent, wait for it (up to --timeout)
    /// instead of failing with "busy: held by pid N".
    #[arg(long, conflicts_with = "async")]
    wait_busy: bool,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    switchboard::util::parse_duration(s)
}

impl TellCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let text = if self.text == "-" {
            let mut buf = String::new();
            std::io::stdin()
                .read_to_string(&mut buf)
                .map_err(|e| Error::Usage(format!("cannot read the message from stdin: {e}")))?;
            buf
        } else {
            self.text.clone()
        };
        let config = ctx.load_config()?;
        switchboard::router::check_message(&text, config.settings.max_message_bytes)?;
        if let Some(remote) = Remote::find(&config) {
            // A server serves this database: it delivers with its agents and leases.
            let body = serde_json::json!({
                "from": self.from,
                "to": self.to,
                "text": text,
                "timeout_ms": self.timeout.map(|d| d.as_millis() as u64),
                "async": self.r#async,
                "cancel_on_timeout": true,
            });
            let v = remote.call("tell", &body, self.timeout)?;
            if v.get("timed_out").and_then(serde_json::Value::as_bool) == Some(true) {
                self.say_timed_out();
            }
            return print_tell(ctx, v, !self.r#async);
        }
        if self.r#async {
            // Store it and leave; nothing is started.
            let m = ctx.manager()?;
            let t = switchboard::router::queue_tell(
                &m,
                &self.from,
                &self.to,
                TellKind::Tell,
                &text,
                None,
            )?;
            return print_tell(ctx, to_value(&t), false);
        }
        let wait = self.timeout.map_or(Wait::Forever, Wait::For);
        let (from, to) = (self.from.as_str(), self.to.as_str());
        let busy_wait = self
            .wait_busy
            .then(|| self.timeout.unwrap_or(Duration::from_secs(86_400)));
        let ended = with_router(ctx, Some((from, to)), |router| async move {
            router.wait_when_busy(busy_wait);
            let t = router.tell(from, to, &text, wait).await?;
            if !t.state.is_final() {
                // Out of time: stop it rather than leave it to die with this process.
                let t = router.cancel_tell(&t.tell_id)?;
                let t = router
                    .wait_for(&t.tell_id, Wait::For(Duration::from_secs(20)))
                    .await?;
                return Ok((t, true));
            }
            Ok((t, false))
        })?;
        match ended {
            Ended::Done((t, timed_out)) => {
                if timed_out {
                    self.say_timed_out();
                }
                print_tell(ctx, to_value(&t), true)
            }
            Ended::Signal(sig) => Err(Error::Other(format!("interrupted by {sig}"))),
        }
    }

    fn say_timed_out(&self) {
        eprintln!(
            "no answer within {}; the tell was cancelled",
            switchboard::util::format_duration(self.timeout.unwrap_or_default())
        );
    }
}

fn to_value(t: &Tell) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// Prints a tell (as stored, or as a server sent it): the answer on stdout and a summary on
/// stderr, or the JSON. Exit 0 when answered (or queued, for a tell not waited for).
fn print_tell(ctx: &Ctx, t: Value, waited: bool) -> Result<ExitCode, Error> {
    let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let n = |k: &str| t.get(k).and_then(Value::as_i64).unwrap_or(0);
    let state: TellState = s("state")
        .parse()
        .map_err(|e: String| Error::Other(format!("unexpected tell: {e}")))?;
    let ok = state == TellState::Answered || (!waited && state == TellState::Queued);
    if ctx.json() {
        print_json(&t)?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let id = s("tell_id");
    match state {
        TellState::Answered => {
            outln!("{}", s("answer"));
            let secs = t
                .get("duration_ms")
                .and_then(Value::as_i64)
                .map(|d| format!(", {:.1}s", d as f64 / 1000.0))
                .unwrap_or_default();
            eprintln!(
                "[tell {id} answered: {} in / {} out tokens, ${:.4}{secs}]",
                n("input_tokens"),
                n("output_tokens"),
                t.get("cost_usd").and_then(Value::as_f64).unwrap_or(0.0),
            );
        }
        TellState::Queued | TellState::Delivered => {
            outln!("{id}");
            eprintln!(
                "[tell {id} {state}: see `switchboard report {} {}`]",
                s("from_team"),
                s("to_team")
            );
        }
        TellState::Failed | TellState::Cancelled => {
            let why = s("error");
            eprintln!(
                "error: tell {id} {state}: {}",
                if why.is_empty() {
                    "no reason recorded"
                } else {
                    &why
                }
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
