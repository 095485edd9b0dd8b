//! `switchboard completions SHELL` and `switchboard man`: generated from the clap definition
//! of the command line itself (clap_complete, clap_mangen), so they never drift from it. Neither
//! reads the teams file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use switchboard::Error;

use super::Cli;

/// Print a shell completion script on stdout.
///
/// bash: `switchboard completions bash > ~/.local/share/bash-completion/completions/switchboard`;
/// zsh: `switchboard completions zsh > "${fpath[1]}/_switchboard"`;
/// fish: `switchboard completions fish > ~/.config/fish/completions/switchboard.fish`;
/// PowerShell: `switchboard completions powershell | Out-String | Invoke-Expression`.
#[derive(Debug, Args)]
pub struct CompletionsCmd {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

impl CompletionsCmd {
    pub fn run(&self) -> Result<ExitCode, Error> {
        let mut cmd = Cli::command();
        let mut buf = Vec::new();
        clap_complete::generate(self.shell, &mut cmd, "switchboard", &mut buf);
        super::output::out_raw(&String::from_utf8_lossy(&buf));
        Ok(ExitCode::SUCCESS)
    }
}

/// Print the manual page (roff) on stdout, or write one page per command into a folder.
///
/// `switchboard man > switchboard.1 && man -l switchboard.1`;
/// `switchboard man --out-dir /usr/local/share/man/man1` writes `switchboard.1` and
/// `switchboard-<command>.1` for every subcommand.
#[derive(Debug, Args)]
pub struct ManCmd {
    /// Write `switchboard.1` and a page per subcommand into DIR instead of printing.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

impl ManCmd {
    pub fn run(&self) -> Result<ExitCode, Error> {
        let fail = |e: std::io::Error| Error::Other(format!("cannot write the manual page: {e}"));
        let cmd = Cli::command();
        match &self.out_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))?;
                clap_mangen::generate_to(cmd, dir).map_err(fail)?;
                outln!("wrote the manual pages to {}", dir.display());
            }
            None => {
                let mut buf = Vec::new();
                clap_mangen::Man::new(cmd).render(&mut buf).map_err(fail)?;
                super::output::out_raw(&String::from_utf8_lossy(&buf));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
