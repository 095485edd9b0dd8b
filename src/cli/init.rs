//! `switchboard init`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use switchboard::config::{new_teams_file, write_new_file};
use switchboard::Error;

use super::output::print_json;
use super::Ctx;

/// Write a commented teams file with one team per project folder (team names from the folder
/// names). It is checked as `config check` would before it is written.
#[derive(Debug, Args)]
pub struct InitCmd {
    /// The teams' project folders (default: the current directory).
    #[arg(value_name = "FOLDER")]
    folders: Vec<PathBuf>,

    /// Where to write it (default: the --config file, else ./teams.toml, the first place
    /// Switchboard looks after --config and $SWITCHBOARD_CONFIG).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Serialize)]
struct Written {
    config: String,
    teams: Vec<Team>,
}

#[derive(Serialize)]
struct Team {
    name: String,
    path: String,
}

impl InitCmd {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode, Error> {
        let output = self
            .output
            .clone()
            .or_else(|| ctx.config_path.clone())
            .unwrap_or_else(|| PathBuf::from("teams.toml"));
        let output = std::path::absolute(&output).unwrap_or(output);
        let folders = if self.folders.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            self.folders.clone()
        };
        let file = new_teams_file(&folders, &output, &|k| std::env::var(k).ok())?;
        write_new_file(&output, &file.text, self.force)?;
        // The user wrote this file with us: commands run in its folder may use it as it is.
        let env = |k: &str| std::env::var(k).ok();
        if let Err(e) = switchboard::config::trust::trust(&output, &env) {
            eprintln!(
                "warning: cannot record {} as trusted ({e}); run `switchboard config trust` there",
                output.display()
            );
        }
        // Whether a command run here without --config reads the new file; say so when not.
        let discovered = ctx.config_path.is_some()
            || switchboard::config::discover(None).is_ok_and(|found| {
                let same = found
                    .canonicalize()
                    .is_ok_and(|f| output.canonicalize().is_ok_and(|o| o == f));
                if !same {
                    eprintln!(
                        "note: without --config, Switchboard here reads {} first, not {}",
                        found.display(),
                        output.display()
                    );
                }
                same
            });
        let teams: Vec<Team> = file
            .config
            .teams
            .values()
            .map(|t| Team {
                name: t.name.clone(),
                path: t.path.display().to_string(),
            })
            .collect();
        if ctx.json() {
            print_json(&Written {
                config: output.display().to_string(),
                teams,
            })?;
        } else {
            outln!("wrote {} with {} team(s):", output.display(), teams.len());
            for t in &teams {
                outln!("  {:<20} {}", t.name, t.path);
            }
            if discovered {
                outln!("next: edit it, then `switchboard config check`");
            } else {
                outln!(
                    "next: edit it, then `switchboard --config {} config check`",
                    output.display()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
