//! The `switchboard` binary: parse the command line, set up tracing, run the command, map the
//! error to an exit code. Everything else lives in the library.

/// `println!` for command output: a closed stdout (`| head`) ends the process quietly.
macro_rules! outln {
    () => {
        $crate::cli::output::out("\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::output::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for command output (see `outln!`).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::out(&format!($($arg)*))
    };
}

mod cli;

switchboard::use_jemalloc!();

use std::process::ExitCode;

use clap::Parser;

/// Exit codes, the same whether a command runs here or goes through a server:
///
/// | code | meaning |
/// |---|---|
/// | 0 | success |
/// | 1 | runtime failure (a failed or cancelled tell, not found, busy, a server gone) |
/// | 2 | bad input: a command-line argument, an unknown team, the teams file |
/// | 130 | interrupted (^C) |
///
/// With `--json` (or `--format json`), an error is also JSON on stderr:
/// `{"error": "...", "exit_code": N}`.
fn main() -> ExitCode {
    switchboard::util::cap_malloc_arenas();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return cli::output::usage_error(e),
    };
    args.apply_color();
    cli::init_tracing(args.verbose, args.log_file().as_deref());
    let json = args.json_output();
    match args.run() {
        Ok(code) => code,
        Err(e) => cli::output::print_error(&e, json),
    }
}
