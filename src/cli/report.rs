//! `switchboard report FROM TO [--limit N] [--full] [--follow]`.

use std::process::ExitCode;

use clap::Args;
use switchboard::router::report_tells;
use switchboard::Error;

use super::output::{ago, print_json, Table};
use super::tells::{tell_details, timeline_block};
use super::Ctx;

/// How often `--follow` looks for tells that ended.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The history of tells from one team to another, oldest first (read from SQLite).
#[derive(Debug, Args)]
pub struct ReportCmd {
    /// The team that told.
    from: String,
    /// The team whose agent answered.
    to: String,
    /// At most this many of the latest tells.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Whole messages and answers, each with its timeline (what the agent did: tool uses,
    /// results, text, status), one tell after another, instead of the table.
    #[arg(long)]
    full: bool,
    /// Then keep printing the pair's tells as they end (whole, or one JSON object per line
    /// with --json), until interrupted.
    #[arg(long)]
    follow: bool,
}

/// The first line of `text`, at most `max` characters.
fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max || text.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

impl ReportCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let m = ctx.read_only_manager()?;
        // --follow ends on SIGINT or SIGTERM (exit 130), also where SIGINT is ignored (a
        // background job of a script): the handlers are in place before anything is printed.
        let follow = if self.follow {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
            let watch = {
                let _entered = runtime.enter();
                switchboard::signals::Signals::Os
                    .watch()
                    .map_err(|e| Error::Other(format!("cannot watch for signals: {e}")))?
            };
            Some((runtime, watch))
        } else {
            None
        };
        let started = switchboard::util::now_ms();
        let tells = report_tells(&m, &self.from, &self.to, self.limit)?;
        if ctx.json() && self.follow {
            for t in &tells {
                super::output::out_raw(&format!(
                    "{}\n",
                    serde_json::to_string(t).unwrap_or_default()
                ));
            }
        } else if ctx.json() {
            print_json(&tells)?;
        } else if tells.is_empty() {
            outln!("no tells from {} to {}", self.from, self.to);
        } else if self.full || self.follow {
            for t in &tells {
                let events = m.store().tell_events(&t.tell_id)?;
                outln!("{}{}", tell_details(t), timeline_block(t, &events));
            }
        } else {
            self.table(&tells);
        }
        if let Some((runtime, watch)) = follow {
            self.follow(ctx, &m, &tells, started, runtime, watch)?;
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Prints the pair's tells as they end, until the process is interrupted.
    fn follow(
        &self,
        ctx: &Ctx,
        m: &switchboard::SessionManager,
        shown: &[switchboard::store::Tell],
        started: i64,
        runtime: tokio::runtime::Runtime,
        mut watch: switchboard::signals::Watch,
    ) -> Result<(), Error> {
        use std::collections::HashSet;
        // Tells already printed as ended; open ones are printed when they end.
        let mut printed: HashSet<String> = shown
            .iter()
            .filter(|t| t.state.is_final())
            .map(|t| t.tell_id.clone())
            .collect();
        let mut since = started;
        runtime.block_on(async move {
            loop {
                for t in m.store().tells_ended_since(&self.from, &self.to, since)? {
                    since = since.max(t.answered_at.unwrap_or(since));
                    if !printed.insert(t.tell_id.clone()) {
                        continue;
                    }
                    if ctx.json() {
                        super::output::out_raw(&format!(
                            "{}\n",
                            serde_json::to_string(&t).unwrap_or_default()
                        ));
                    } else {
                        outln!("{}", tell_details(&t));
                    }
                }
                // Other processes write the tells; SQLite tells nobody, so look again shortly.
                tokio::select! {
                    sig = watch.recv() => {
                        return Err(Error::Interrupted(format!(
                            "{sig}: stopped following {} -> {}", self.from, self.to
                        )));
                    }
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                }
            }
        })
    }

    /// The report as a table: one line per tell, message and answer cut short.
    fn table(&self, tells: &[switchboard::store::Tell]) {
        let mut t = Table::new(&[
            "TELL", "WHEN", "STATE", "MESSAGE", "ANSWER", ">TOKENS", ">COST",
        ]);
        for tell in tells {
            let answer = match (&tell.answer, &tell.error) {
                (Some(a), _) => short(a, 40),
                (None, Some(e)) => short(e, 40),
                _ => "-".into(),
            };
            t.row(vec![
                tell.tell_id.chars().take(8).collect(),
                ago(Some(tell.created_at)),
                tell.state.to_string(),
                short(&tell.text, 40),
                answer,
                match (tell.input_tokens, tell.output_tokens) {
                    (Some(i), Some(o)) => format!("{i}/{o}"),
                    _ => "-".into(),
                },
                tell.cost_usd.map_or("-".into(), |c| format!("${c:.4}")),
            ]);
        }
        t.print();
    }
}
