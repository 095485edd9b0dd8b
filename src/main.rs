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

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    args.apply_color();
    cli::init_tracing(args.verbose, args.log_file().as_deref());
    match args.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}: {}", cli::error_label(), cli::render_error(&e));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
