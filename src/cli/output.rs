//! Output helpers: aligned tables, JSON, the human view of a session, and colours.
//!
//! Colours (`--color auto|always|never`): `auto` colours a stream only when it is a terminal,
//! `NO_COLOR` is unset or empty and `TERM` is not `dumb`; `always` colours even through a pipe
//! and wins over `NO_COLOR` (an explicit flag beats the environment, as the NO_COLOR
//! convention says); `never` never does. States, errors and costs get colours; JSON never does.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};

use clap::ValueEnum;
use serde::Serialize;
use switchboard::store::Session;
use switchboard::util::{now_ms, relative, rfc3339};
use switchboard::Error;

/// Writes human output to stdout, with control characters made visible (see
/// [`escape_controls`]): agent text cannot set the window title, clear the screen or add
/// hyperlinks. Newlines and tabs stay, and so do the colours this module paints. When stdout is
/// closed (`switchboard ... | head`), the process ends quietly instead of panicking; the
/// command's work is done by then.
pub fn out(text: &str) {
    out_raw(&escape_controls(text, true));
}

/// Control characters of `text` made visible, for a terminal: ESC as `\x1b`, other C0
/// controls, DEL and C1 controls as `\xNN` / `\u{NN}`, a carriage return as `\r`. With
/// `keep_lines`, `\n` and `\t` stay as they are (multi-line answers printed whole); the colour
/// codes of [`paint`] (`ESC [ 0|1|2|32|33|36|1;31 m`) always stay.
pub fn escape_controls(text: &str, keep_lines: bool) -> String {
    const OURS: [&str; 7] = ["0m", "1m", "2m", "32m", "33m", "36m", "1;31m"];
    if !text
        .chars()
        .any(|c| c.is_control() && !(keep_lines && matches!(c, '\n' | '\t')))
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\x1b' {
            if let Some(code) = rest[1..]
                .strip_prefix('[')
                .and_then(|r| OURS.iter().find(|o| r.starts_with(*o)))
            {
                out.push_str(&rest[..2 + code.len()]);
                rest = &rest[2 + code.len()..];
                continue;
            }
        }
        match c {
            '\n' | '\t' if keep_lines => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Writes `text` to stdout exactly as it is (JSON, which escapes controls itself, and the
/// manual pages).
pub fn out_raw(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints an error on stderr (`error: ...`, or with `json` the line
/// `{"error": "...", "exit_code": N}`) and returns its exit code.
pub fn print_error(e: &Error, json: bool) -> std::process::ExitCode {
    let code = e.exit_code();
    let text = super::render_error(e);
    if json {
        eprintln!("{}", serde_json::json!({"error": text, "exit_code": code}));
    } else {
        eprintln!("{}: {}", error_label(), escape_controls(&text, true));
    }
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// A command line the parser refused (exit 2), or `--help` / `--version` (exit 0). With
/// `--json` (or `--format json`) anywhere on the line, a refusal is JSON on stderr.
pub fn usage_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || matches!(
            e.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        )
    {
        let _ = e.print();
        return std::process::ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().enumerate().any(|(i, a)| {
        a == "--json"
            || a == "--format=json"
            || (a == "--format" && args.get(i + 1).is_some_and(|v| v == "json"))
    });
    if !json {
        let _ = e.print();
        return std::process::ExitCode::from(2);
    }
    let text = e.render().to_string();
    // The error without the usage lines, on one line.
    let message = text
        .split("\n\nUsage:")
        .next()
        .unwrap_or("bad command line")
        .trim_start_matches("error: ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "{}",
        serde_json::json!({"error": message, "exit_code": switchboard::error::EXIT_BAD_INPUT, "usage": text.trim_end()})
    );
    std::process::ExitCode::from(2)
}

/// When to colour output (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set (non-empty) or `TERM=dumb`.
    #[default]
    Auto,
    /// Always, even through a pipe or with `NO_COLOR` set.
    Always,
    /// Never.
    Never,
}

static COLOR: AtomicU8 = AtomicU8::new(0);

/// Sets the colour choice for the rest of the process (once, from the command line).
pub fn set_color(choice: ColorChoice) {
    let v = match choice {
        ColorChoice::Auto => 0,
        ColorChoice::Always => 1,
        ColorChoice::Never => 2,
    };
    COLOR.store(v, Ordering::Relaxed);
}

/// Where a text goes: the decision `auto` takes depends on whether that stream is a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Command output.
    Stdout,
    /// Errors, warnings, summaries.
    Stderr,
}

/// Whether text written to `stream` gets colours.
pub fn color_enabled(stream: Stream) -> bool {
    match COLOR.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
            let tty = match stream {
                Stream::Stdout => std::io::stdout().is_terminal(),
                Stream::Stderr => std::io::stderr().is_terminal(),
            };
            tty && !no_color && !dumb
        }
    }
}

/// What a coloured text means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Healthy, done: green.
    Good,
    /// Busy, pending, a warning: yellow.
    Busy,
    /// Failed, an error: bold red.
    Bad,
    /// Inactive: dim.
    Dim,
    /// Money: cyan.
    Cost,
    /// Column headers: bold.
    Header,
}

impl Style {
    fn sgr(self) -> &'static str {
        match self {
            Style::Good => "32",
            Style::Busy => "33",
            Style::Bad => "1;31",
            Style::Dim => "2",
            Style::Cost => "36",
            Style::Header => "1",
        }
    }
}

/// `text` in `style` when `stream` gets colours; `text` unchanged otherwise.
pub fn paint(style: Style, text: &str, stream: Stream) -> String {
    if text.is_empty() || !color_enabled(stream) {
        return text.to_string();
    }
    format!("\x1b[{}m{text}\x1b[0m", style.sgr())
}

/// The style of a session status, process state or tell state (by its name).
pub fn state_style(state: &str) -> Option<Style> {
    Some(match state {
        "active" | "idle" | "answered" | "ok" => Style::Good,
        "processing" | "spawning" | "compacting" | "compact_pending" | "terminating" | "queued"
        | "delivered" | "warn" => Style::Busy,
        "error" | "failed" | "fail" => Style::Bad,
        "stopped" | "archived" | "cancelled" | "skip" => Style::Dim,
        _ => return None,
    })
}

/// The `error` prefix of an error message on stderr, red when stderr gets colours.
pub fn error_label() -> String {
    paint(Style::Bad, "error", Stream::Stderr)
}

/// A cost as `$0.0123`, cyan when `stream` gets colours.
pub fn cost(usd: f64, stream: Stream) -> String {
    paint(Style::Cost, &format!("${usd:.4}"), stream)
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Other(format!("cannot render JSON: {e}")))?;
    out_raw(&format!("{text}\n"));
    Ok(())
}

/// A table with aligned columns; numeric columns align right.
pub struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers; a header starting with '>' aligns right.
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.trim_start_matches('>')).collect(),
            right: headers.iter().map(|h| h.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table (no trailing spaces), without colours.
    pub fn render(&self) -> String {
        self.render_with(|_, _| None)
    }

    /// Renders the table; `style(header, cell)` picks each cell's colour (padding stays
    /// outside the colour codes, so columns still line up).
    fn render_with(&self, style: impl Fn(&str, &str) -> Option<Style>) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for (n, row) in std::iter::once(&headers)
            .chain(self.rows.iter())
            .enumerate()
        {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                let pad = w.saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                let header = self.headers.get(i).copied().unwrap_or("");
                let painted = match if n == 0 {
                    Some(Style::Header)
                } else {
                    style(header, cell)
                } {
                    Some(s) => paint(s, cell, Stream::Stdout),
                    None => cell.clone(),
                };
                if self.right.get(i).copied().unwrap_or(false) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(&painted);
                } else {
                    line.push_str(&painted);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout, with colours when stdout gets them: states by their
    /// meaning, costs in cyan, headers in bold.
    pub fn print(&self) {
        if !color_enabled(Stream::Stdout) {
            out!("{}", self.render());
            return;
        }
        out!(
            "{}",
            self.render_with(|header, cell| {
                if header.contains("COST") || cell.starts_with('$') {
                    Some(Style::Cost)
                } else if matches!(header, "STATUS" | "STATE" | "RESULT") {
                    state_style(cell)
                } else {
                    None
                }
            })
        );
    }
}

/// "3m ago", or "-" when unset.
pub fn ago(ms: Option<i64>) -> String {
    ms.map(|t| relative(t, now_ms()))
        .unwrap_or_else(|| "-".to_string())
}

/// The columns of a session in lists.
pub const SESSION_HEADERS: &[&str] = &[
    "SESSION",
    "FROM",
    "TO",
    "STATUS",
    "STATE",
    ">MSGS",
    "LAST USED",
    "CREATED",
];

/// One list row for a session.
pub fn session_row(s: &Session) -> Vec<String> {
    vec![
        s.session_id.clone(),
        s.from_team.clone(),
        s.to_team.clone(),
        s.status.to_string(),
        s.process_state.to_string(),
        s.message_count.to_string(),
        ago(Some(s.last_used_at)),
        ago(Some(s.created_at)),
    ]
}

fn painted_state(state: &str) -> String {
    match state_style(state) {
        Some(style) => paint(style, state, Stream::Stdout),
        None => state.to_string(),
    }
}

/// Every field of a session, one per line, for `sessions show` and `sessions open`.
pub fn session_details(s: &Session, due: bool) -> String {
    let time = |ms: Option<i64>| match ms {
        Some(t) => format!("{} ({})", rfc3339(t), relative(t, now_ms())),
        None => "-".to_string(),
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".to_string());
    let owner = match s.owner_pid {
        Some(pid) => format!("pid {pid}, heartbeat {}", ago(s.owner_heartbeat_at)),
        None => "-".to_string(),
    };
    let fields: Vec<(&str, String)> = vec![
        ("session", s.session_id.clone()),
        ("pair", format!("{} -> {}", s.from_team, s.to_team)),
        ("status", painted_state(&s.status.to_string())),
        ("process state", painted_state(&s.process_state.to_string())),
        (
            "messages",
            format!(
                "{}{}",
                s.message_count,
                if due { " (due for compaction)" } else { "" }
            ),
        ),
        ("created", time(Some(s.created_at))),
        ("last used", time(Some(s.last_used_at))),
        ("last response", time(s.last_response_at)),
        ("current tell", opt(&s.current_tell_id)),
        (
            "tokens",
            format!("{} in, {} out", s.input_tokens, s.output_tokens),
        ),
        ("cost", cost(s.cost_usd, Stream::Stdout)),
        ("compactions", s.compaction_count.to_string()),
        ("last compacted", time(s.last_compacted_at)),
        (
            "compact tokens",
            format!(
                "{} -> {}",
                num(s.last_pre_compact_tokens),
                num(s.last_post_compact_tokens)
            ),
        ),
        ("owner", owner),
        ("last error", opt(&s.last_error)),
        ("launch command", opt(&s.launch_command)),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    fields
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_made_visible() {
        let evil = "ok\x1b]0;pwned\x07\x1b[2J\x1b]8;;http://x\x1b\\link\r\u{9b}31m\x7f";
        let shown = escape_controls(evil, true);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert_eq!(
            shown,
            "ok\\x1b]0;pwned\\x07\\x1b[2J\\x1b]8;;http://x\\x1b\\link\\r\\u{9b}31m\\x7f"
        );
        assert_eq!(escape_controls("a\nb\tc", true), "a\nb\tc");
        assert_eq!(escape_controls("a\nb\tc", false), "a\\nb\\tc");
        // Our own colours stay.
        let painted = "\x1b[1;31merror\x1b[0m: x";
        assert_eq!(escape_controls(painted, true), painted);
        assert_eq!(escape_controls("plain é", true), "plain é");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["NAME", ">N"]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["long-name".into(), "100".into()]);
        assert_eq!(
            t.render(),
            "NAME         N\na            1\nlong-name  100\n"
        );
    }
}
