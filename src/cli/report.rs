//! `switchboard report FROM TO [--limit N]`.

use std::process::ExitCode;

use clap::Args;
use switchboard::router::report_tells;
use switchboard::Error;

use super::output::{ago, print_json, Table};
use super::Ctx;

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
        let tells = report_tells(&m, &self.from, &self.to, self.limit)?;
        if ctx.json() {
            print_json(&tells)?;
            return Ok(ExitCode::SUCCESS);
        }
        if tells.is_empty() {
            outln!("no tells from {} to {}", self.from, self.to);
            return Ok(ExitCode::SUCCESS);
        }
        let mut t = Table::new(&[
            "TELL", "WHEN", "STATE", "MESSAGE", "ANSWER", ">TOKENS", ">COST",
        ]);
        for tell in &tells {
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
        Ok(ExitCode::SUCCESS)
    }
}
