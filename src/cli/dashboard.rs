//! `switchboard dashboard [--open]`: a one-time login link to the running server's web page.
//! The server makes the code (short-lived, good once); this command asks for it over the
//! server's Unix socket (or with its token) and prints the link, or opens it in a browser.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use switchboard::server::auth::{LoginLink, LOGIN_OP};
use switchboard::Error;

use super::output::print_json;
use super::remote::Remote;
use super::Ctx;

/// Print a one-time login link to the running server's dashboard (`serve --http`).
#[derive(Debug, Args)]
pub struct DashboardCmd {
    /// Open the link in the browser (`$BROWSER`, else `xdg-open`) instead of only printing it.
    #[arg(long)]
    open: bool,
}

impl DashboardCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        // Only the database's place matters here: a team folder that is gone is a warning.
        let config = ctx.read_only_config()?;
        let remote = Remote::find(&config).ok_or_else(|| {
            Error::Usage(format!(
                "no switchboard server is running for {}: start one with `switchboard serve \
                 --http` (the dashboard is its page), then run this again",
                config.database.path.display()
            ))
        })?;
        let answer = remote.call(LOGIN_OP, &json!({}), None)?;
        let link: LoginLink = serde_json::from_value(answer)
            .map_err(|e| Error::Other(format!("the server's answer is not a login link: {e}")))?;
        if ctx.json() {
            print_json(&link)?;
        } else {
            outln!("{}", link.url);
            eprintln!(
                "(a one-time link, good for {}s; run `switchboard dashboard` again for another)",
                link.expires_in_secs
            );
        }
        if self.open {
            open_in_browser(&link.url)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Starts the user's browser on `url` (no shell: the URL is one argument).
fn open_in_browser(url: &str) -> Result<(), Error> {
    let browser = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "xdg-open".into());
    std::process::Command::new(&browser)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| {
            Error::Other(format!(
                "cannot open a browser ({browser}: {e}); open the link above yourself"
            ))
        })
}
