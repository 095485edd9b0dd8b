//! Output helpers: aligned tables, JSON, the human view of a session.

use serde::Serialize;
use switchboard::store::Session;
use switchboard::util::{now_ms, relative, rfc3339};
use switchboard::Error;

/// Writes command output to stdout. When stdout is closed (`switchboard ... | head`), the
/// process ends quietly instead of panicking; the command's work is done by then.
pub fn out(text: &str) {
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
        eprintln!("error: {text}");
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

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Other(format!("cannot render JSON: {e}")))?;
    outln!("{text}");
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

    /// Renders the table (no trailing spaces).
    pub fn render(&self) -> String {
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
        for row in std::iter::once(&headers).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                let pad = w.saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right.get(i).copied().unwrap_or(false) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout.
    pub fn print(&self) {
        out!("{}", self.render());
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
        ("status", s.status.to_string()),
        ("process state", s.process_state.to_string()),
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
        ("cost", format!("${:.4}", s.cost_usd)),
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
