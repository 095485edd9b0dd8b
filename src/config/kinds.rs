//! The agent kinds a team may name (`agent = "..."`) and the team options each accepts.
//!
//! This table is the one list of agent kinds: the teams file is checked against it here, and
//! `agent::kinds` maps each [`KindId`] to its adapter with an exhaustive `match` (so a kind
//! added here without an adapter does not compile). It is data only, so the config layer
//! needs nothing from the agent layer above it.

use toml::Table;

use super::load::{KeyPath, Report};

/// Identifies an agent kind (one variant per adapter in `src/agent/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KindId {
    /// Claude Code (`src/agent/claude.rs`).
    Claude,
    /// The Codex CLI run as `codex app-server` (`src/agent/codex.rs`).
    Codex,
    /// Gemini CLI, headless, a process per turn (`src/agent/gemini.rs`).
    Gemini,
}

/// One agent kind: its `agent` value and the agent-specific team options it accepts.
#[derive(Debug)]
pub struct AgentKind {
    /// Its `agent` value in the teams file.
    pub name: &'static str,
    /// Which adapter drives it.
    pub id: KindId,
    /// The agent-specific team options (of [`AGENT_OPTION_KEYS`]) this kind takes.
    pub options: &'static [AgentOption],
    /// Options of other kinds this kind cannot honour, with the reason (said in the error).
    pub refused: &'static [(&'static str, &'static str)],
    /// Whether a team of this kind may run on a remote host (`remote`): the SSH lifecycle
    /// runs its process model and its transcripts there.
    pub remote: bool,
}

/// An agent-specific team option and the values it may take.
#[derive(Debug)]
pub struct AgentOption {
    /// The key in `[teams.NAME]`.
    pub key: &'static str,
    /// The values allowed (for a string option); empty: any value.
    pub values: &'static [&'static str],
}

/// Team keys whose meaning depends on the agent kind: a team may set one only when its kind
/// lists it in [`AgentKind::options`].
pub const AGENT_OPTION_KEYS: &[&str] = &[
    "allowed_tools",
    "disallowed_tools",
    "append_system_prompt",
    "permission_mode",
    "model",
    "max_retries",
    "approval_policy",
    "sandbox",
    "provider",
    "permissions",
];

/// Codex's `approval_policy` choices (0.171.0, which refuses to start with `untrusted`: "no
/// longer supported"; `granular` is a table of its own, not offered).
pub const CODEX_APPROVAL_POLICIES: &[&str] = &["on-failure", "on-request", "never"];

/// Codex's `sandbox_mode` choices (0.171.0).
pub const CODEX_SANDBOX_MODES: &[&str] = &["read-only", "workspace-write", "danger-full-access"];

/// The choices of Claude Code 2.1.328's `--permission-mode`.
pub const CLAUDE_PERMISSION_MODES: &[&str] = &[
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "manual",
    "dontAsk",
    "plan",
];

/// Every agent kind Switchboard drives. The first is the default of a team without `agent`.
pub const AGENT_KINDS: &[AgentKind] = &[
    AgentKind {
        name: "claude",
        id: KindId::Claude,
        options: &[
            AgentOption {
                key: "allowed_tools",
                values: &[],
            },
            AgentOption {
                key: "disallowed_tools",
                values: &[],
            },
            AgentOption {
                key: "append_system_prompt",
                values: &[],
            },
            AgentOption {
                key: "permission_mode",
                values: CLAUDE_PERMISSION_MODES,
            },
            AgentOption {
                key: "model",
                values: &[],
            },
            AgentOption {
                key: "permissions",
                values: &[],
            },
        ],
        refused: &[],
        remote: true,
    },
    AgentKind {
        name: "codex",
        id: KindId::Codex,
        options: &[
            AgentOption {
                key: "model",
                values: &[],
            },
            AgentOption {
                key: "max_retries",
                values: &[],
            },
            AgentOption {
                key: "approval_policy",
                values: CODEX_APPROVAL_POLICIES,
            },
            AgentOption {
                key: "sandbox",
                values: CODEX_SANDBOX_MODES,
            },
            AgentOption {
                key: "provider",
                values: &[],
            },
            AgentOption {
                key: "permissions",
                values: &[],
            },
        ],
        refused: &[],
        remote: false,
    },
    AgentKind {
        name: "gemini",
        id: KindId::Gemini,
        options: &[
            AgentOption {
                key: "model",
                values: &[],
            },
            AgentOption {
                key: "max_retries",
                values: &[],
            },
            AgentOption {
                key: "provider",
                values: &[],
            },
        ],
        refused: &[(
            "permissions",
            "Gemini CLI run headless has no permission protocol: it cannot ask Switchboard \
             before a tool call (what it may run is decided up front), so these rules could \
             not be honoured",
        )],
        remote: false,
    },
];

/// The kind named `name`, if Switchboard knows it.
pub fn kind(name: &str) -> Option<&'static AgentKind> {
    AGENT_KINDS.iter().find(|k| k.name == name)
}

/// The names of every known kind, for messages.
pub fn names() -> String {
    AGENT_KINDS
        .iter()
        .map(|k| k.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a team's `agent` and its agent-specific options against `kinds`: an unknown kind,
/// an option the kind does not take, or a value it does not allow are reported at their key
/// paths. Returns the kind, when known.
pub(super) fn check_team(
    kinds: &'static [AgentKind],
    agent: &str,
    table: &Table,
    path: &KeyPath,
    report: &mut Report<'_>,
) -> Option<&'static AgentKind> {
    let Some(kind) = kinds.iter().find(|k| k.name == agent) else {
        let known: Vec<&str> = kinds.iter().map(|k| k.name).collect();
        report.add(
            &path.key("agent"),
            format!(
                "unknown agent {agent:?} (known agents: {})",
                known.join(", ")
            ),
        );
        // Still report a value that no kind allows.
        for key in AGENT_OPTION_KEYS {
            let Some(v) = table.get(*key).and_then(toml::Value::as_str) else {
                continue;
            };
            let allowed: Vec<&str> = kinds
                .iter()
                .flat_map(|k| k.options.iter())
                .filter(|o| o.key == *key && !o.values.is_empty())
                .flat_map(|o| o.values.iter().copied())
                .collect();
            if !allowed.is_empty() && !allowed.contains(&v) {
                report.add(
                    &path.key(key),
                    format!(
                        "unknown {} {v:?} (one of: {})",
                        key.replace('_', " "),
                        allowed.join(", ")
                    ),
                );
            }
        }
        return None;
    };
    for key in AGENT_OPTION_KEYS {
        let Some(value) = table.get(*key) else {
            continue;
        };
        match kind.options.iter().find(|o| o.key == *key) {
            None if kind.refused.iter().any(|(k, _)| k == key) => {
                let why = kind
                    .refused
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or("", |(_, why)| *why);
                report.add(
                    &path.key(key),
                    format!("not supported for agent {agent:?}: {why}"),
                );
            }
            None => {
                let takers: Vec<&str> = kinds
                    .iter()
                    .filter(|k| k.options.iter().any(|o| o.key == *key))
                    .map(|k| k.name)
                    .collect();
                report.add(
                    &path.key(key),
                    format!(
                        "not an option of agent {agent:?} (an option of: {})",
                        if takers.is_empty() {
                            "no agent kind".to_string()
                        } else {
                            takers.join(", ")
                        }
                    ),
                );
            }
            Some(option) if !option.values.is_empty() => {
                if let Some(v) = value.as_str() {
                    if !option.values.contains(&v) {
                        let what = key.replace('_', " ");
                        report.add(
                            &path.key(key),
                            format!(
                                "unknown {what} {v:?} for agent {agent:?} (one of: {})",
                                option.values.join(", ")
                            ),
                        );
                    }
                }
            }
            Some(_) => {}
        }
    }
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::Folders;

    const TWO: &[AgentKind] = &[
        AgentKind {
            name: "one",
            id: KindId::Claude,
            options: &[AgentOption {
                key: "permission_mode",
                values: &["plan"],
            }],
            refused: &[],
            remote: false,
        },
        AgentKind {
            name: "two",
            id: KindId::Claude,
            options: &[],
            refused: &[],
            remote: false,
        },
    ];

    fn problems(text: &str, agent: &str) -> Vec<(String, String)> {
        let doc: Table = text.parse().expect("toml");
        let team = doc["teams"]["a"].as_table().expect("team").clone();
        let mut report = Report::new(text, Folders::Required);
        let path = KeyPath::root().key("teams").key("a");
        check_team(TWO, agent, &team, &path, &mut report);
        let (problems, _) = report.finish();
        problems.into_iter().map(|p| (p.path, p.message)).collect()
    }

    #[test]
    fn an_option_of_another_kind_is_an_error_at_its_key() {
        let text = "[teams.a]\nagent = \"two\"\npermission_mode = \"plan\"\n";
        assert_eq!(
            problems(text, "two"),
            [(
                "teams.a.permission_mode".to_string(),
                "not an option of agent \"two\" (an option of: one)".to_string()
            )]
        );
        let text = "[teams.a]\nagent = \"one\"\npermission_mode = \"plan\"\n";
        assert!(problems(text, "one").is_empty());
        let text = "[teams.a]\nagent = \"one\"\npermission_mode = \"yolo\"\n";
        let p = problems(text, "one");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].1.contains("unknown permission mode \"yolo\""), "{p:?}");
        let p = problems("[teams.a]\nagent = \"three\"\n", "three");
        assert_eq!(
            p,
            [(
                "teams.a.agent".to_string(),
                "unknown agent \"three\" (known agents: one, two)".to_string()
            )]
        );
    }
}
