//! `[teams.NAME.permissions]`: what a team's agent may do without asking, what it may never
//! do, and who decides the rest. Rules use Claude Code's permission-rule syntax (`Tool`,
//! `Tool(specifier)`, `Bash(git status:*)`, `Edit(src/**)`, `WebFetch(domain:example.com)`,
//! `mcp__server`, `mcp__server__tool`); each is checked when the file is loaded, and a rule
//! that does not parse is an error naming its key path. Matching a rule against a tool call is
//! pure logic here (no processes, no SQL).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Default of `timeout`: ten minutes.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(600);

/// The built-in tools of Claude Code 2.1.328 (its `system/init` line), plus the older names
/// Claude Code still accepts in rules.
pub const KNOWN_TOOLS: &[&str] = &[
    "Task",
    "Agent",
    "AskUserQuestion",
    "Bash",
    "BashOutput",
    "CronCreate",
    "CronDelete",
    "CronList",
    "Edit",
    "EnterPlanMode",
    "EnterWorktree",
    "ExitPlanMode",
    "ExitWorktree",
    "Glob",
    "Grep",
    "KillShell",
    "ListAgents",
    "Monitor",
    "MultiEdit",
    "NotebookEdit",
    "NotebookRead",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "SendMessage",
    "Skill",
    "TaskStop",
    "TodoWrite",
    "ToolSearch",
    "WebFetch",
    "WebSearch",
    "Workflow",
    "Write",
];

/// Tools whose specifier is a path glob.
const PATH_TOOLS: &[&str] = &[
    "Edit",
    "Write",
    "MultiEdit",
    "NotebookEdit",
    "Read",
    "Glob",
    "Grep",
    "NotebookRead",
];
/// The tools an `Edit` rule covers (Claude Code: "Edit rules apply to every tool that edits
/// files").
const EDIT_FAMILY: &[&str] = &["Edit", "Write", "MultiEdit", "NotebookEdit"];
/// The tools a `Read` rule covers.
const READ_FAMILY: &[&str] = &["Read", "Glob", "Grep", "NotebookRead"];

/// Who decides a tool call that no rule decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    /// A person: `switchboard approvals allow|deny`, the HTTP API, the dashboard.
    #[default]
    Human,
    /// The team that sent the tell (its agent through `team_approve`, or its person).
    Caller,
    /// Nobody: denied at once.
    Deny,
}

impl Ask {
    /// `human`, `caller` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ask::Human => "human",
            Ask::Caller => "caller",
            Ask::Deny => "deny",
        }
    }
}

/// `[teams.NAME.permissions]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Permissions {
    /// Rules that allow a call at once.
    pub allow: Vec<Rule>,
    /// Rules that deny a call at once (they win over `allow`).
    pub deny: Vec<Rule>,
    /// Who decides the rest.
    pub ask: Ask,
    /// How long a request waits for its decision; then it is denied.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::util::format_duration(*d))
}

impl Default for Permissions {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
            ask: Ask::Human,
            timeout: DEFAULT_APPROVAL_TIMEOUT,
        }
    }
}

/// One permission rule, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    text: String,
    tool: String,
    spec: Option<String>,
}

impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A tool call as the agent asks for it.
#[derive(Debug, Clone, Copy)]
pub struct ToolCall<'a> {
    /// The tool's name (`Write`, `Bash`, `mcp__server__tool`).
    pub tool: &'a str,
    /// Its input.
    pub input: &'a Value,
    /// The team's folder (relative paths and rule globs are taken from it).
    pub folder: &'a Path,
}

fn is_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_mcp_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Rule {
    /// Parses one rule; the error says what is wrong, for a message with the rule's key path.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err(
                "empty rule: write a tool name such as \"Read\" or \"Bash(git status:*)\"".into(),
            );
        }
        let (name, spec) = match t.find('(') {
            None => {
                if t.contains(')') {
                    return Err(format!("invalid rule {t:?}: ')' without '('"));
                }
                (t, None)
            }
            Some(open) => {
                let Some(inner) = t[open + 1..].strip_suffix(')') else {
                    return Err(format!(
                        "invalid rule {t:?}: a specifier goes in parentheses at the end, as in \
                         \"Bash(git status:*)\""
                    ));
                };
                (&t[..open], Some(inner))
            }
        };
        if let Some(rest) = name.strip_prefix("mcp__") {
            let parts: Vec<&str> = rest.split("__").collect();
            let ok = match parts.as_slice() {
                [server] => is_mcp_part(server),
                [server, tool] => is_mcp_part(server) && (*tool == "*" || is_mcp_part(tool)),
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "invalid MCP rule {name:?}: use mcp__SERVER, mcp__SERVER__* or \
                     mcp__SERVER__TOOL"
                ));
            }
            if spec.is_some() {
                return Err(format!(
                    "invalid rule {t:?}: MCP tools take no specifier (use {name:?})"
                ));
            }
            return Ok(Rule {
                text: t.to_string(),
                tool: name.trim_end_matches("__*").to_string(),
                spec: None,
            });
        }
        if !is_ident(name) {
            return Err(format!(
                "invalid rule {t:?}: {name:?} is not a tool name (a name such as Read, Bash or \
                 mcp__server__tool, then an optional specifier in parentheses)"
            ));
        }
        if !KNOWN_TOOLS.contains(&name) {
            let hint = KNOWN_TOOLS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(name))
                .map(|k| format!(" (did you mean {k:?}?)"))
                .unwrap_or_default();
            return Err(format!(
                "unknown tool {name:?} in rule {t:?}{hint}; known tools: {}",
                KNOWN_TOOLS.join(", ")
            ));
        }
        if let Some(spec) = spec {
            let s = spec.trim();
            if s.is_empty() {
                return Err(format!(
                    "invalid rule {t:?}: empty specifier (write {name:?} for every use of the tool)"
                ));
            }
            match name {
                "Bash" => {
                    if let Some(at) = s.find(":*") {
                        if at + 2 != s.len() {
                            return Err(format!(
                                "invalid rule {t:?}: \":*\" may only end the command prefix, as \
                                 in \"Bash(npm run test:*)\""
                            ));
                        }
                        if s[..at].trim().is_empty() {
                            return Err(format!("invalid rule {t:?}: empty command prefix"));
                        }
                    }
                }
                "WebFetch" => {
                    let ok = s
                        .strip_prefix("domain:")
                        .is_some_and(|d| !d.is_empty() && !d.contains(['/', ' ', ':']));
                    if !ok {
                        return Err(format!(
                            "invalid rule {t:?}: WebFetch takes \"domain:HOST\", as in \
                             \"WebFetch(domain:docs.rs)\""
                        ));
                    }
                }
                n if PATH_TOOLS.contains(&n) => {
                    if s.contains('\0') {
                        return Err(format!("invalid rule {t:?}: NUL in the path"));
                    }
                }
                _ => {
                    return Err(format!(
                        "invalid rule {t:?}: {name} takes no specifier (only Bash, WebFetch and \
                         the file tools {} do)",
                        PATH_TOOLS.join(", ")
                    ))
                }
            }
            return Ok(Rule {
                text: t.to_string(),
                tool: name.to_string(),
                spec: Some(s.to_string()),
            });
        }
        Ok(Rule {
            text: t.to_string(),
            tool: name.to_string(),
            spec: None,
        })
    }

    /// The rule as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn covers_tool(&self, tool: &str) -> bool {
        if self.tool.starts_with("mcp__") {
            // `mcp__server` covers every tool of that server; `mcp__server__tool` that one.
            return tool == self.tool
                || (self.tool.matches("__").count() == 1
                    && tool.starts_with(&format!("{}__", self.tool)));
        }
        match self.tool.as_str() {
            "Edit" => EDIT_FAMILY.contains(&tool),
            "Read" => READ_FAMILY.contains(&tool),
            other => other == tool,
        }
    }

    /// Whether the rule covers `call`. `for_deny` makes a Bash command rule look at every
    /// part of a compound command (`a && b`), so a deny rule is not dodged by chaining; an
    /// allow rule never covers a command with shell control characters (a prefix rule would
    /// otherwise allow `git status; rm -rf ~`).
    pub fn matches(&self, call: &ToolCall<'_>, for_deny: bool) -> bool {
        if !self.covers_tool(call.tool) {
            return false;
        }
        let Some(spec) = &self.spec else {
            return true;
        };
        match self.tool.as_str() {
            "Bash" => {
                let Some(command) = call.input.get("command").and_then(Value::as_str) else {
                    return false;
                };
                if for_deny {
                    command
                        .split([';', '&', '|', '\n', '`', '(', ')', '<', '>'])
                        .map(str::trim)
                        .any(|part| bash_matches(spec, part))
                } else {
                    const CONTROL: &[&str] = &[";", "&", "|", "\n", "`", "$(", "<", ">"];
                    !CONTROL.iter().any(|c| command.contains(c))
                        && bash_matches(spec, command.trim())
                }
            }
            "WebFetch" => {
                let domain = spec.trim_start_matches("domain:");
                let Some(url) = call.input.get("url").and_then(Value::as_str) else {
                    return false;
                };
                let host = url
                    .split_once("://")
                    .map_or(url, |(_, rest)| rest)
                    .split(['/', '?', '#'])
                    .next()
                    .unwrap_or("")
                    .rsplit('@')
                    .next()
                    .unwrap_or("")
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let domain = domain.to_ascii_lowercase();
                host == domain || host.ends_with(&format!(".{domain}"))
            }
            _ => {
                let raw = ["file_path", "notebook_path", "path"]
                    .iter()
                    .find_map(|k| call.input.get(*k).and_then(Value::as_str));
                let path = match raw {
                    Some(p) => normalize(&call.folder.join(p)),
                    // Grep and Glob without a path search the folder itself.
                    None if READ_FAMILY.contains(&call.tool) => normalize(call.folder),
                    None => return false,
                };
                let pattern = pattern_path(spec, call.folder);
                glob_matches(&pattern, &path.to_string_lossy())
            }
        }
    }
}

fn bash_matches(spec: &str, command: &str) -> bool {
    match spec.strip_suffix(":*") {
        Some(prefix) => {
            let prefix = prefix.trim_end();
            command == prefix
                || command
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with(char::is_whitespace))
        }
        None => command == spec,
    }
}

/// A rule's path pattern as an absolute glob: `//abs` is absolute, `~/x` is under the home
/// folder, anything else (`x`, `./x`, `/x`) is under the team's folder (Claude Code reads
/// `/x` relative to the settings' folder; for a team that is its folder).
fn pattern_path(spec: &str, folder: &Path) -> String {
    if let Some(abs) = spec.strip_prefix("//") {
        return format!("/{abs}");
    }
    if let Some(rest) = spec.strip_prefix("~/") {
        if let Some(home) = crate::util::home_dir() {
            return format!("{}/{rest}", home.display());
        }
    }
    let rest = spec.trim_start_matches("./").trim_start_matches('/');
    let base = normalize(folder);
    format!(
        "{}/{rest}",
        base.display().to_string().trim_end_matches('/')
    )
}

/// The path with `.` and `..` resolved lexically (no file system access).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Glob match: `**` any run of characters (slashes too; `**/` also none), `*` any run without
/// `/`, `?` one character but `/`.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        if p.is_empty() {
            return t.is_empty();
        }
        if p.starts_with(b"**") {
            let rest = &p[2..];
            if let Some(after) = rest.strip_prefix(b"/") {
                if go(after, t) {
                    return true;
                }
            }
            return (0..=t.len()).any(|i| go(rest, &t[i..]));
        }
        match p[0] {
            b'*' => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(&p[1..], &t[i..])),
            b'?' => !t.is_empty() && t[0] != b'/' && go(&p[1..], &t[1..]),
            c => !t.is_empty() && t[0] == c && go(&p[1..], &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

impl Permissions {
    /// The first deny rule covering `call`, else the first allow rule, with which one it was.
    pub fn decide(&self, call: &ToolCall<'_>) -> Option<(bool, &Rule)> {
        if let Some(r) = self.deny.iter().find(|r| r.matches(call, true)) {
            return Some((false, r));
        }
        self.allow
            .iter()
            .find(|r| r.matches(call, false))
            .map(|r| (true, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call<'a>(tool: &'a str, input: &'a Value) -> ToolCall<'a> {
        ToolCall {
            tool,
            input,
            folder: Path::new("/work/team"),
        }
    }

    #[test]
    fn good_rules_parse() {
        for ok in [
            "Read",
            "Bash(git status:*)",
            "Bash(npm test)",
            "Edit(src/**)",
            "Write(//tmp/*.txt)",
            "WebFetch(domain:docs.rs)",
            "mcp__github",
            "mcp__github__*",
            "mcp__github__create_issue",
            "  Grep  ",
        ] {
            Rule::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (bad, says) in [
            ("", "empty rule"),
            ("Bash(git status:*", "in parentheses at the end"),
            ("Bash()", "empty specifier"),
            ("Bash(a:*b)", "may only end"),
            ("Wrte", "unknown tool \"Wrte\""),
            ("write", "did you mean \"Write\""),
            ("Read)", "')' without '('"),
            ("mcp__", "invalid MCP rule"),
            ("mcp__a__b__c", "invalid MCP rule"),
            ("mcp__x(y)", "no specifier"),
            ("Task(x)", "Task takes no specifier"),
            ("WebFetch(docs.rs)", "domain:HOST"),
            ("Bash (x)", "not a tool name"),
        ] {
            let e = Rule::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn rules_match_like_claude_code() {
        let r = |s: &str| Rule::parse(s).expect("rule");
        let git = json!({"command": "git status --short"});
        assert!(r("Bash(git status:*)").matches(&call("Bash", &git), false));
        assert!(r("Bash(git status:*)")
            .matches(&call("Bash", &json!({"command": "git status"})), false));
        assert!(!r("Bash(git status:*)")
            .matches(&call("Bash", &json!({"command": "git statusx"})), false));
        let chained = json!({"command": "git status; rm -rf /"});
        assert!(!r("Bash(git status:*)").matches(&call("Bash", &chained), false));
        assert!(r("Bash(rm:*)").matches(&call("Bash", &chained), true));
        assert!(r("Bash").matches(&call("Bash", &chained), false));
        let w = json!({"file_path": "/work/team/src/a/b.rs", "content": ""});
        assert!(r("Edit(src/**)").matches(&call("Write", &w), false));
        assert!(r("Write(src/**/*.rs)").matches(&call("Write", &w), false));
        assert!(!r("Write(src/*.rs)").matches(&call("Write", &w), false));
        assert!(!r("Read(src/**)").matches(&call("Write", &w), false));
        let escape = json!({"file_path": "/work/team/src/../../etc/passwd"});
        assert!(!r("Edit(src/**)").matches(&call("Edit", &escape), false));
        let rel = json!({"file_path": "notes.txt"});
        assert!(r("Write(notes.txt)").matches(&call("Write", &rel), false));
        assert!(r("Write(//work/team/*.txt)").matches(&call("Write", &rel), false));
        let url = json!({"url": "https://api.docs.rs/x"});
        assert!(r("WebFetch(domain:docs.rs)").matches(&call("WebFetch", &url), false));
        assert!(!r("WebFetch(domain:s.rs)").matches(&call("WebFetch", &url), false));
        let none = json!({});
        assert!(r("mcp__gh").matches(&call("mcp__gh__issue", &none), false));
        assert!(r("mcp__gh__*").matches(&call("mcp__gh__issue", &none), false));
        assert!(!r("mcp__gh").matches(&call("mcp__ghx__issue", &none), false));
        assert!(r("mcp__gh__issue").matches(&call("mcp__gh__issue", &none), false));
        assert!(!r("mcp__gh__issue").matches(&call("mcp__gh__other", &none), false));
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = Permissions {
            allow: vec![Rule::parse("Bash").expect("r")],
            deny: vec![Rule::parse("Bash(rm:*)").expect("r")],
            ..Permissions::default()
        };
        let rm = json!({"command": "rm -rf x"});
        assert_eq!(p.decide(&call("Bash", &rm)).map(|(a, _)| a), Some(false));
        let ls = json!({"command": "ls"});
        assert_eq!(p.decide(&call("Bash", &ls)).map(|(a, _)| a), Some(true));
        assert!(p.decide(&call("Write", &ls)).is_none());
    }
}
