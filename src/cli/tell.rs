//! `switchboard tell FROM TO "text" [--timeout 2m | --async]`.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use switchboard::router::Wait;
use switchboard::store::{Tell, TellKind, TellState};
use switchboard::Error;

use super::live::{with_router, Ended};
use super::output::print_json;
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
        let limit = ctx.load_config()?.settings.max_message_bytes;
        switchboard::router::check_message(&text, limit)?;
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
            return print_tell(ctx, &t, false);
        }
        let wait = self.timeout.map_or(Wait::Forever, Wait::For);
        let (from, to) = (self.from.as_str(), self.to.as_str());
        let ended = with_router(ctx, Some((from, to)), |router| async move {
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
                    eprintln!(
                        "no answer within {}; the tell was cancelled",
                        switchboard::util::format_duration(self.timeout.unwrap_or_default())
                    );
                }
                print_tell(ctx, &t, true)
            }
            Ended::Signal(sig) => Err(Error::Other(format!("interrupted by {sig}"))),
        }
    }
}

fn print_tell(ctx: &Ctx, t: &Tell, waited: bool) -> Result<ExitCode, Error> {
    let ok = matches!(t.state, TellState::Answered) || (!waited && t.state == TellState::Queued);
    if ctx.json() {
        print_json(t)?;
    } else {
        match t.state {
            TellState::Answered => {
                outln!("{}", t.answer.as_deref().unwrap_or(""));
                eprintln!(
                    "[tell {} answered: {} in / {} out tokens, ${:.4}{}]",
                    t.tell_id,
                    t.input_tokens.unwrap_or(0),
                    t.output_tokens.unwrap_or(0),
                    t.cost_usd.unwrap_or(0.0),
                    t.duration_ms
                        .map(|d| format!(", {:.1}s", d as f64 / 1000.0))
                        .unwrap_or_default()
                );
            }
            TellState::Queued | TellState::Delivered => {
                outln!("{}", t.tell_id);
                eprintln!(
                    "[tell {} {}: see `switchboard report {} {}`]",
                    t.tell_id, t.state, t.from_team, t.to_team
                );
            }
            TellState::Failed | TellState::Cancelled => {
                eprintln!(
                    "error: tell {} {}: {}",
                    t.tell_id,
                    t.state,
                    t.error.as_deref().unwrap_or("no reason recorded")
                );
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
