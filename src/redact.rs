//! Hiding secrets in what Switchboard records and logs: the launch command and team-config
//! snapshot of a session, its `last_error`, the stderr tails of agents in errors, logs and events.
//!
//! One place decides what a secret looks like:
//! - an environment variable, option or `NAME=value` whose name has a part KEY, TOKEN, SECRET,
//!   PASSWORD, PASSWD, PASS, PAT, AUTH, OAUTH, AUTHORIZATION or CREDENTIAL(S) (`API_KEY`, `GITHUB_PAT`,
//!   `--api-key`, `DB_PASS`; KEY, TOKEN, SECRET, PASSWORD and CREDENTIAL also inside a part, as
//!   in `APIKEY`; never `AUTHOR`, `PATH` or `PATTERN`);
//! - the value after such an option in argv (`--token VALUE`, `--api-key=VALUE`);
//! - the password of a URL (`postgres://user:PASSWORD@host`);
//! - `Bearer VALUE`;
//! - known key shapes in any text (`sk-...`, `ghp_...`, `github_pat_...`, `xoxb-...`, `AKIA...`,
//!   `glpat-...`).
//!
//! Each secret becomes `***` (a key shape keeps its prefix: `sk-***`).

use std::collections::BTreeMap;

/// What a hidden value is shown as.
pub const MASK: &str = "***";

/// Words that make a name secret wherever they appear in it.
const SECRET_INFIXES: [&str; 6] = ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"];

/// Words that make a name secret only as a whole part of it (between `_`, `-`, `.` or ends).
const SECRET_PARTS: [&str; 5] = ["PAT", "AUTH", "OAUTH", "AUTHORIZATION", "PASS"];

/// Names that look secret but are not.
const NOT_SECRET: [&str; 3] = ["KEYBOARD", "KEYMAP", "MONKEY"];

/// Whether a value named `name` (an environment variable, an option such as `--api-key`, a
/// `NAME=value` key) must be hidden.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.trim_start_matches('-').to_ascii_uppercase();
    if upper.is_empty() {
        return false;
    }
    let parts: Vec<&str> = upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .collect();
    if parts.iter().any(|p| SECRET_PARTS.contains(p)) {
        return true;
    }
    parts
        .iter()
        .filter(|p| !NOT_SECRET.contains(p))
        .any(|p| SECRET_INFIXES.iter().any(|w| p.contains(w)))
}

/// An environment map with the values of secret names replaced by `***` (other values still
/// go through [`text`]).
pub fn env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let shown = if is_secret_name(k) {
                MASK.to_string()
            } else {
                text(v)
            };
            (k.clone(), shown)
        })
        .collect()
}

/// An argv with secrets hidden: `--api-key=VALUE` and `NAME=VALUE` with a secret name keep
/// their name; the argument after a bare secret option (`--token VALUE`) is hidden whole; every
/// argument also goes through [`text`].
pub fn args<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        let arg = arg.as_ref();
        if hide_next {
            hide_next = false;
            if !arg.starts_with('-') {
                out.push(MASK.to_string());
                continue;
            }
        }
        if arg.starts_with('-') && !arg.contains('=') && is_secret_name(arg) {
            hide_next = true;
        }
        out.push(text(arg));
    }
    out
}

/// Free text (an error, a stderr tail, a log line, one argument) with secrets hidden:
/// `NAME=VALUE` and `--name=VALUE` with a secret name, URL passwords, `Bearer VALUE` and known
/// key shapes.
pub fn text(input: &str) -> String {
    let s = assignments(input);
    let s = url_passwords(&s);
    let s = bearer(&s);
    key_shapes(&s)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

fn is_value_end(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | '&' | ')' | ']' | '}' | '>')
}

/// `NAME=VALUE` (and `NAME: VALUE` after a quoted or bare name is not touched): hides VALUE when
/// NAME is secret.
fn assignments(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        let name_start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_name_char(*c))
            .last()
            .map_or(before.len(), |(i, _)| i);
        let name = &before[name_start..];
        out.push_str(before);
        out.push('=');
        let after = &after[1..];
        if is_secret_name(name) {
            let (value, tail) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"').unwrap_or(quoted.len());
                    out.push('"');
                    (&quoted[..end], &quoted[end..])
                }
                None => {
                    let end = after.find(is_value_end).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            if !value.is_empty() {
                out.push_str(MASK);
            }
            rest = tail;
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `scheme://user:PASSWORD@host` -> `scheme://user:***@host`.
fn url_passwords(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || is_value_end(c))
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) if colon + 1 < userinfo.len() => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str(MASK);
                        out.push_str(&authority[at..]);
                    }
                    _ => out.push_str(authority),
                }
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `Bearer VALUE` -> `Bearer ***`.
fn bearer(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    loop {
        let found = ["Bearer ", "bearer ", "BEARER "]
            .iter()
            .filter_map(|w| rest.find(w).map(|i| (i, w.len())))
            .min();
        let Some((i, len)) = found else { break };
        out.push_str(&rest[..i + len]);
        let tail = &rest[i + len..];
        let end = tail.find(is_value_end).unwrap_or(tail.len());
        if end > 0 {
            out.push_str(MASK);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Prefixes of well-known secret keys, with the fewest characters that must follow.
const KEY_PREFIXES: [(&str, usize); 11] = [
    ("sk-", 16),
    ("ghp_", 16),
    ("gho_", 16),
    ("ghu_", 16),
    ("ghs_", 16),
    ("ghr_", 16),
    ("github_pat_", 16),
    ("glpat-", 16),
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("AKIA", 12),
];

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `sk-ant-api03-...` -> `sk-***`, and the other shapes of [`KEY_PREFIXES`].
fn key_shapes(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut word_start = true;
    let mut i = 0;
    while i < input.len() {
        let rest = &input[i..];
        if word_start {
            if let Some((prefix, min)) = KEY_PREFIXES.iter().find(|(p, _)| rest.starts_with(p)) {
                let body = &rest[prefix.len()..];
                let len = body.find(|c| !is_key_char(c)).unwrap_or(body.len());
                if len >= *min {
                    out.push_str(prefix);
                    out.push_str(MASK);
                    i += prefix.len() + len;
                    word_start = false;
                    continue;
                }
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        word_start = !is_key_char(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "API_KEY",
            "ANTHROPIC_API_KEY",
            "APIKEY",
            "GITHUB_TOKEN",
            "DB_PASSWORD",
            "MYSQL_PASSWD",
            "DB_PASS",
            "GITHUB_PAT",
            "PAT",
            "AUTH",
            "HTTP_AUTHORIZATION",
            "X_AUTH",
            "OAUTH",
            "AWS_CREDENTIALS",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "client_secret",
            "--api-key",
            "--token",
            "--password",
            "--auth",
        ] {
            assert!(is_secret_name(name), "{name} should be secret");
        }
        for name in [
            "PATH",
            "AUTHOR",
            "GIT_AUTHOR_NAME",
            "PATTERN",
            "HOME",
            "RUST_LOG",
            "KEYBOARD",
            "PASSAGE",
            "--model",
            "PWD",
            "DATABASE_URL",
        ] {
            assert!(!is_secret_name(name), "{name} should not be secret");
        }
    }

    #[test]
    fn args_hide_values_of_secret_options() {
        let argv = [
            "--model",
            "opus",
            "--api-key=sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
            "--token",
            "hunter2-hunter2",
            "--verbose",
            "TOKEN=abc",
            "--db",
            "postgres://admin:s3cret@db.example/app",
        ];
        assert_eq!(
            args(&argv),
            vec![
                "--model",
                "opus",
                "--api-key=***",
                "--token",
                "***",
                "--verbose",
                "TOKEN=***",
                "--db",
                "postgres://admin:***@db.example/app",
            ]
        );
        // A secret option followed by another option hides nothing.
        assert_eq!(args(&["--auth", "--x"]), vec!["--auth", "--x"]);
    }

    #[test]
    fn text_hides_urls_assignments_bearer_and_key_shapes() {
        assert_eq!(
            text("connect to postgres://user:pa:ss@host:5432/db failed"),
            "connect to postgres://user:***@host:5432/db failed"
        );
        assert_eq!(
            text("https://user@host/x and https://host/a@b"),
            "https://user@host/x and https://host/a@b"
        );
        assert_eq!(
            text("error: ANTHROPIC_API_KEY=abc123 is invalid"),
            "error: ANTHROPIC_API_KEY=*** is invalid"
        );
        assert_eq!(text("PATH=/usr/bin x"), "PATH=/usr/bin x");
        assert_eq!(
            text("Authorization: Bearer abc.def.ghi"),
            "Authorization: Bearer ***"
        );
        assert_eq!(
            text("invalid x-api-key: sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA."),
            "invalid x-api-key: sk-***."
        );
        assert_eq!(
            text("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 rejected"),
            "token ghp_*** rejected"
        );
        assert_eq!(
            text("uses sk-learn and task-sk-1"),
            "uses sk-learn and task-sk-1"
        );
        assert_eq!(text("héllo wörld"), "héllo wörld");
        assert_eq!(text("a == b, x=1"), "a == b, x=1");
    }

    #[test]
    fn env_hides_secret_names_and_url_passwords() {
        let mut e = BTreeMap::new();
        e.insert("GITHUB_PAT".to_string(), "abc".to_string());
        e.insert(
            "DATABASE_URL".to_string(),
            "postgres://admin:pw@h/db".to_string(),
        );
        e.insert("RUST_LOG".to_string(), "info".to_string());
        let r = env(&e);
        assert_eq!(r["GITHUB_PAT"], "***");
        assert_eq!(r["DATABASE_URL"], "postgres://admin:***@h/db");
        assert_eq!(r["RUST_LOG"], "info");
    }
}
