//! The teams file through the public API: parsing, interpolation, validation (every problem,
//! each with its key path), discovery, and `teams.example.toml`.
//!
//! Environment variables are injected through the `env` closure of `TeamsConfig::parse`; the
//! process environment is never changed.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchboard::config::{
    discover_in, CompactionPolicy, ConfigError, ConfigProblem, Folders, Settings, TeamsConfig,
};
use tempfile::TempDir;

/// A temp dir with a `home/` (the injected HOME) and a `project/` team folder.
struct Fixture {
    dir: TempDir,
    vars: HashMap<String, String>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(dir.path().join("home")).expect("home");
        fs::create_dir(dir.path().join("project")).expect("project");
        let mut vars = HashMap::new();
        vars.insert(
            "HOME".to_string(),
            dir.path().join("home").display().to_string(),
        );
        Self { dir, vars }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    fn project(&self) -> String {
        self.root().join("project").display().to_string()
    }

    fn set(mut self, key: &str, value: &str) -> Self {
        self.vars.insert(key.to_string(), value.to_string());
        self
    }

    fn unset(mut self, key: &str) -> Self {
        self.vars.remove(key);
        self
    }

    /// A minimal valid file: one team `a` on the project folder, then `extra`.
    fn with_team(&self, extra: &str) -> String {
        format!("[teams.a]\npath = {:?}\n{extra}", self.project())
    }

    fn parse_at(&self, text: &str, origin: Option<&Path>) -> Result<TeamsConfig, ConfigError> {
        let vars = self.vars.clone();
        TeamsConfig::parse(text, origin, &move |k| vars.get(k).cloned())
    }

    fn parse(&self, text: &str) -> Result<TeamsConfig, ConfigError> {
        self.parse_at(text, None)
    }

    fn ok(&self, text: &str) -> TeamsConfig {
        match self.parse(text) {
            Ok(config) => config,
            Err(e) => panic!("expected a valid file, got:\n{e}\n--- text:\n{text}"),
        }
    }

    fn problems(&self, text: &str) -> Vec<ConfigProblem> {
        match self.parse(text) {
            Ok(_) => panic!("expected problems, the file was accepted:\n{text}"),
            Err(e @ ConfigError::Invalid { .. }) => e.problems().to_vec(),
            Err(e) => panic!("expected ConfigError::Invalid, got {e:?}"),
        }
    }

    /// Exactly one problem, at `path`, whose message contains `wanted`.
    fn one_problem(&self, text: &str, path: &str, wanted: &str) -> ConfigProblem {
        let problems = self.problems(text);
        assert_eq!(problems.len(), 1, "one problem expected: {problems:#?}");
        assert_problem(&problems, path, wanted);
        problems.into_iter().next().expect("one problem")
    }
}

fn assert_problem(problems: &[ConfigProblem], path: &str, wanted: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.path == path && p.message.contains(wanted)),
        "no problem at {path:?} containing {wanted:?} in {problems:#?}"
    );
}

// ---- syntax and structure ---------------------------------------------------------------------

#[test]
fn syntax_error_has_line_and_column() {
    let f = Fixture::new();
    let text = "[settings]\nmax_processes = 4\nidle_timeout 5m\n";
    let p = f.one_problem(text, "", "TOML syntax error");
    assert_eq!(p.line, Some(3), "{p:?}");
    assert_eq!(p.column, Some(14), "{p:?}");
    assert!(
        p.to_string()
            .starts_with("line 3, column 14: TOML syntax error"),
        "{p}"
    );
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    let f = Fixture::new();
    let p = f.one_problem(&f.with_team("path = \"/x\"\n"), "", "duplicate key");
    assert_eq!(p.line, Some(3));
}

#[test]
fn unknown_top_level_key() {
    let f = Fixture::new();
    let p = f.one_problem(
        &f.with_team("[teamz]\nx = 1\n"),
        "teamz",
        "unknown key \"teamz\"",
    );
    assert!(p.message.contains("did you mean \"teams\""), "{p:?}");
    assert!(
        p.message.contains("settings, database, teams, server"),
        "{p:?}"
    );
    assert_eq!(p.line, Some(3));
}

#[test]
fn server_table() {
    let f = Fixture::new();
    let c = f.ok(&f.with_team("[server]\nauth_token = \"0123456789abcdef0123\"\n"));
    assert_eq!(c.server.auth_token.as_deref(), Some("0123456789abcdef0123"));
    assert_eq!(f.ok(&f.with_team("")).server.auth_token, None);
    f.one_problem(
        &f.with_team("[server]\nanything = \"goes\"\n"),
        "server.anything",
        "unknown key",
    );
    f.one_problem(
        &f.with_team("[server]\nauth_token = \"short\"\n"),
        "server.auth_token",
        "at least 16 characters",
    );
    f.one_problem(
        &format!("server = 3\n{}", f.with_team("")),
        "server",
        "expected a table, found integer 3",
    );
}

#[test]
fn unknown_settings_key() {
    let f = Fixture::new();
    f.one_problem(
        &f.with_team("[settings]\nmax_message_size = 10\n"),
        "settings.max_message_size",
        "unknown key",
    );
    f.one_problem(
        &f.with_team("[settings.compaction]\nmax_msgs = 10\n"),
        "settings.compaction.max_msgs",
        "unknown key",
    );
    f.one_problem(
        &f.with_team("[database]\nfile = \"x.db\"\n"),
        "database.file",
        "unknown key",
    );
}

#[test]
fn unknown_team_key() {
    let f = Fixture::new();
    let p = f.one_problem(
        &f.with_team("agnet = \"claude\"\n"),
        "teams.a.agnet",
        "unknown key",
    );
    assert!(p.message.contains("did you mean \"agent\""), "{p:?}");
    assert_eq!(p.line, Some(3));
}

#[test]
fn several_problems_are_reported_together() {
    let f = Fixture::new();
    let text = format!(
        r#"
[settings]
max_processes = "four"
idle_timeout = "0s"

[settings.compaction]
stale_age = "soon"

[database]
in_memory = "yes"

[teams.a]
path = {project:?}
agent = "nonesuch"
permission_mode = "yolo"
env = {{ "BAD-NAME" = "1" }}
bogus = 1

[teams.b]
path = "relative/dir"

[teams."bad name"]
path = "${{UNSET_VAR}}"
"#,
        project = f.project()
    );
    let problems = f.problems(&text);
    let expected = [
        (
            "settings.max_processes",
            "expected an integer ≥ 1, found string \"four\"",
        ),
        ("settings.idle_timeout", "longer than zero"),
        ("settings.compaction.stale_age", "invalid duration"),
        ("database.in_memory", "expected true or false"),
        ("teams.a.agent", "unknown agent \"nonesuch\""),
        ("teams.a.permission_mode", "unknown permission mode"),
        ("teams.a.env.BAD-NAME", "invalid environment variable name"),
        ("teams.a.bogus", "unknown key"),
        ("teams.b.path", "must be an absolute path"),
        ("teams.\"bad name\"", "invalid team name"),
        ("teams.\"bad name\".path", "UNSET_VAR is not set"),
    ];
    for (path, wanted) in expected {
        assert_problem(&problems, path, wanted);
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    // File order, each with a line.
    let lines: Vec<usize> = problems.iter().map(|p| p.line.expect("line")).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    assert_eq!(problems[0].line, Some(3));
    // The error names the file and lists every problem.
    let err = f.parse(&text).expect_err("invalid");
    let shown = err.to_string();
    assert!(
        shown.starts_with("<string>: 11 problems in the teams file:\n  - settings.max_processes: "),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 12, "{shown}");
}

#[test]
fn invalid_error_names_the_file_and_one_problem() {
    let f = Fixture::new();
    let file = f.root().join("teams.toml");
    let err = f
        .parse_at("[teams.a]\npath = \"/nope/nowhere\"\n", Some(&file))
        .expect_err("invalid");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: 1 problem in the teams file:\n  - teams.a.path: path \"/nope/nowhere\" does not exist (line 2)",
            file.display()
        )
    );
}

// ---- teams ------------------------------------------------------------------------------------

#[test]
fn no_teams() {
    let f = Fixture::new();
    f.one_problem(
        "[settings]\nmax_processes = 2\n",
        "teams",
        "no teams defined",
    );
    f.one_problem("[teams]\n", "teams", "no teams defined");
    f.one_problem("teams = 5\n", "teams", "expected a table, found integer 5");
}

#[test]
fn team_must_be_a_table() {
    let f = Fixture::new();
    f.one_problem(
        &format!("[teams]\nb = \"x\"\n{}", f.with_team("")),
        "teams.b",
        "expected a table",
    );
}

#[test]
fn bad_team_names() {
    let f = Fixture::new();
    let long = "x".repeat(101);
    for name in ["has space", "slash/name", long.as_str(), "ünï", ""] {
        let text = format!("[teams.{name:?}]\npath = {:?}\n", f.project());
        let problems = f.problems(&text);
        assert_eq!(problems.len(), 1, "{name:?}: {problems:#?}");
        assert!(
            problems[0].message.contains("invalid team name"),
            "{problems:#?}"
        );
        assert!(problems[0].path.starts_with("teams."), "{problems:#?}");
    }
    let ok = format!("[teams.\"a.b@c_d-1\"]\npath = {:?}\n", f.project());
    assert!(f.ok(&ok).team("a.b@c_d-1").is_some());
}

#[test]
fn missing_path() {
    let f = Fixture::new();
    let p = f.one_problem(
        "[teams.a]\ndescription = \"no folder\"\n",
        "teams.a.path",
        "missing",
    );
    assert_eq!(p.line, Some(1), "located at the team's header");
}

#[test]
fn path_of_wrong_type_or_empty() {
    let f = Fixture::new();
    f.one_problem("[teams.a]\npath = 3\n", "teams.a.path", "expected a string");
    f.one_problem(
        "[teams.a]\npath = \"\"\n",
        "teams.a.path",
        "must not be empty",
    );
}

#[test]
fn nul_in_path() {
    let f = Fixture::new();
    f.one_problem(
        "[teams.a]\npath = \"/tmp/\\u0000x\"\n",
        "teams.a.path",
        "NUL",
    );
}

/// A NUL character cannot be passed in an argument, an environment variable or a path: every
/// string of the file that holds one (written as `\u0000`, or coming from a `${VAR}`) is refused
/// at load, naming its key path, instead of failing every later tell with no key named.
#[test]
fn nul_in_any_string_is_refused_with_its_key_path() {
    let f = Fixture::new().set("WITH_NUL", "a\0b");
    for (extra, at) in [
        ("env = { X = \"a\\u0000b\" }\n", "teams.a.env.X"),
        ("args = [\"--ok\", \"--x\\u0000\"]\n", "teams.a.args[1]"),
        (
            "agent_path = \"/bin/cl\\u0000aude\"\n",
            "teams.a.agent_path",
        ),
        (
            "append_system_prompt = \"be\\u0000brief\"\n",
            "teams.a.append_system_prompt",
        ),
        (
            "allowed_tools = [\"Re\\u0000ad\"]\n",
            "teams.a.allowed_tools[0]",
        ),
        (
            "disallowed_tools = [\"\\u0000\"]\n",
            "teams.a.disallowed_tools[0]",
        ),
        ("description = \"x\\u0000\"\n", "teams.a.description"),
        ("args = [\"${WITH_NUL}\"]\n", "teams.a.args[0]"),
        ("env = { Y = \"${WITH_NUL}\" }\n", "teams.a.env.Y"),
    ] {
        let p = f.one_problem(&f.with_team(extra), at, "NUL");
        assert!(p.line.is_some(), "{p:?}");
    }
    // Keys: an env name or a team name with a NUL is refused too.
    f.one_problem(
        &f.with_team("env = { \"A\\u0000B\" = \"x\" }\n"),
        "teams.a.env.\"A\\0B\"",
        "invalid environment variable name",
    );
    let problems = f.problems(&format!(
        "[teams.\"a\\u0000b\"]\npath = {:?}\n",
        f.project()
    ));
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("invalid team name")),
        "{problems:#?}"
    );
    // The database path and the team path as well.
    f.one_problem(
        &f.with_team("[database]\npath = \"/tmp/sb\\u0000.db\"\n"),
        "database.path",
        "NUL",
    );
    f.one_problem("[teams.a]\npath = \"${WITH_NUL}\"\n", "teams.a.path", "NUL");
}

#[test]
fn odd_input_never_panics() {
    let f = Fixture::new();
    let inputs = [
        "",
        "\u{feff}",
        "é = \"ü",
        "[[teams]]\npath = 1\n",
        "teams = { a = { path = [\"/\"], env = { \"\" = 1 } } }",
        "[teams.a]\npath = \"${\"\ndescription = \"${:-}\"\nargs = [[\"${A:-${B\"]]\n",
        "[teams.\"\"]\npath = \"~\"\nremote = \"http://[\"\n",
        "settings = { compaction = { stale_age = 1970-01-01T00:00:00Z } }",
        "[teams.a]\npath = \"/\"\nidle_timeout = \"99999999999999999999d\"\n",
    ];
    for text in inputs {
        let result = f.parse(text);
        assert!(result.is_err(), "{text:?} should not be accepted");
    }
}

#[test]
fn relative_path() {
    let f = Fixture::new();
    f.one_problem(
        "[teams.a]\npath = \"projects/a\"\n",
        "teams.a.path",
        "must be an absolute path",
    );
}

#[test]
fn parent_dir_component() {
    let f = Fixture::new();
    let text = format!("[teams.a]\npath = \"{}/../project\"\n", f.project());
    f.one_problem(&text, "teams.a.path", "must not contain \"..\"");
}

#[test]
fn nonexistent_path() {
    let f = Fixture::new();
    let missing = f.root().join("missing").display().to_string();
    let p = f.one_problem(
        &format!("[teams.a]\npath = {missing:?}\n"),
        "teams.a.path",
        "does not exist",
    );
    assert!(p.message.contains(&missing), "{p:?}");
}

#[test]
fn nonexistent_path_is_only_a_warning_for_read_only_loads() {
    let f = Fixture::new();
    let gone = f.root().join("gone").display().to_string();
    let text = format!("{}[teams.b]\npath = {gone:?}\n", f.with_team(""));
    // Strict (the default, and every command that starts agents): a problem.
    f.one_problem(&text, "teams.b.path", "does not exist");
    // Read-only: the team is kept, the missing folder is a warning with its line.
    let vars = f.vars.clone();
    let config = TeamsConfig::parse_with(
        &text,
        None,
        &move |k| vars.get(k).cloned(),
        Folders::MissingIsWarning,
    )
    .expect("a missing folder is only a warning");
    assert_eq!(config.team("b").expect("b").path, PathBuf::from(&gone));
    assert_eq!(config.warnings.len(), 1, "{:#?}", config.warnings);
    let w = &config.warnings[0];
    assert_eq!((w.path.as_str(), w.line), ("teams.b.path", Some(4)));
    assert!(w.message.contains("does not exist"), "{w:?}");
    // Anything else wrong with the folder is still a problem.
    let vars = f.vars.clone();
    let err = TeamsConfig::parse_with(
        &format!("{}[teams.b]\npath = \"/etc/nope/x\"\n", f.with_team("")),
        None,
        &move |k| vars.get(k).cloned(),
        Folders::MissingIsWarning,
    )
    .expect_err("a folder inside /etc is refused even when missing");
    assert_problem(err.problems(), "teams.b.path", "protected folder");
}

#[test]
fn path_is_a_file() {
    let f = Fixture::new();
    let file = f.root().join("file.txt");
    fs::write(&file, "x").expect("write");
    f.one_problem(
        &format!("[teams.a]\npath = {:?}\n", file.display().to_string()),
        "teams.a.path",
        "is not a directory",
    );
}

#[test]
fn unreadable_dir() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let locked = f.root().join("locked");
    fs::create_dir(&locked).expect("mkdir");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod");
    let text = format!("[teams.a]\npath = {:?}\n", locked.display().to_string());
    let result = f.parse(&text);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).expect("chmod back");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // root reads any folder: the path must be accepted as it is.
        let config = result.expect("root can read the folder");
        assert_eq!(config.team("a").expect("team a").path, locked);
    } else {
        let err = result.expect_err("unreadable folder");
        assert_eq!(err.problems().len(), 1, "{err}");
        assert_problem(err.problems(), "teams.a.path", "is not readable");
    }
}

#[test]
fn forbidden_system_dirs() {
    let f = Fixture::new();
    for dir in [
        "/etc",
        "/etc/",
        "/proc",
        "/proc/self",
        "/dev",
        "/usr/bin",
        "/sys",
    ] {
        if !Path::new(dir).exists() {
            continue;
        }
        let problems = f.problems(&format!("[teams.a]\npath = {dir:?}\n"));
        assert_problem(&problems, "teams.a.path", "protected folder");
    }
}

#[test]
fn forbidden_home_dirs() {
    let f = Fixture::new();
    fs::create_dir_all(f.home().join(".ssh/keys")).expect("mkdir .ssh");
    fs::create_dir(f.home().join(".gnupg")).expect("mkdir .gnupg");
    fs::create_dir(f.home().join(".sshd")).expect("mkdir .sshd");
    for path in ["~/.ssh", "~/.ssh/keys", "~/.gnupg"] {
        f.one_problem(
            &format!("[teams.a]\npath = {path:?}\n"),
            "teams.a.path",
            "protected folder",
        );
    }
    // Compared component by component: `.sshd` is not `.ssh`.
    let config = f.ok("[teams.a]\npath = \"~/.sshd\"\n");
    assert_eq!(config.team("a").expect("a").path, f.home().join(".sshd"));
}

#[test]
fn symlink_into_etc_is_caught() {
    let f = Fixture::new();
    let link = f.root().join("innocent");
    std::os::unix::fs::symlink("/etc", &link).expect("symlink");
    let p = f.one_problem(
        &format!("[teams.a]\npath = {:?}\n", link.display().to_string()),
        "teams.a.path",
        "protected folder",
    );
    assert!(p.message.contains("resolves to"), "{p:?}");
}

#[test]
fn symlink_to_a_project_is_kept_as_written() {
    let f = Fixture::new();
    let link = f.root().join("link");
    std::os::unix::fs::symlink(f.root().join("project"), &link).expect("symlink");
    let config = f.ok(&format!(
        "[teams.a]\npath = {:?}\n",
        link.display().to_string()
    ));
    assert_eq!(config.team("a").expect("a").path, link);
}

#[test]
fn tilde_in_team_path() {
    let f = Fixture::new();
    fs::create_dir(f.home().join("work")).expect("mkdir");
    let config = f.ok("[teams.a]\npath = \"~/work\"\n[teams.b]\npath = \"~\"\n");
    assert_eq!(config.team("a").expect("a").path, f.home().join("work"));
    assert_eq!(config.team("b").expect("b").path, f.home());
    f.one_problem(
        "[teams.a]\npath = \"~bob/x\"\n",
        "teams.a.path",
        "only \"~\"",
    );
    let no_home = Fixture::new().unset("HOME");
    let problems = no_home.problems("[teams.a]\npath = \"~/work\"\n[database]\nin_memory = true\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_problem(&problems, "teams.a.path", "HOME is not set");
}

#[test]
fn unknown_agent() {
    let f = Fixture::new();
    let p = f.one_problem(
        &f.with_team("agent = \"nonesuch\"\n"),
        "teams.a.agent",
        "unknown agent",
    );
    assert!(p.message.contains("known agents: claude, codex"), "{p:?}");
}

#[test]
fn a_codex_team_takes_its_options_and_refuses_claude_ones() {
    let f = Fixture::new();
    // Every Codex option, valid: no problem.
    let good = f.with_team(
        "agent = \"codex\"\nmodel = \"gpt-5.5\"\nmax_retries = 3\napproval_policy = \"on-failure\"\n\
         sandbox = \"read-only\"\n[teams.a.provider]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         env_key = \"LOCAL_KEY\"\n",
    );
    let config = f.ok(&good);
    let team = &config.teams["a"];
    assert_eq!(team.agent, "codex");
    assert_eq!(team.approval_policy.as_deref(), Some("on-failure"));
    assert_eq!(team.sandbox.as_deref(), Some("read-only"));
    // A Claude permission mode, Claude's tool lists: not options of codex.
    let text = f.with_team(
        "agent = \"codex\"\npermission_mode = \"acceptEdits\"\nallowed_tools = [\"Bash\"]\n",
    );
    let problems = f.problems(&text);
    assert_problem(
        &problems,
        "teams.a.permission_mode",
        "not an option of agent \"codex\" (an option of: claude)",
    );
    assert_problem(
        &problems,
        "teams.a.allowed_tools",
        "not an option of agent \"codex\"",
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
    // Values Codex does not know, at their key paths.
    let text = f.with_team("agent = \"codex\"\napproval_policy = \"always\"\nsandbox = \"none\"\n");
    let problems = f.problems(&text);
    assert_problem(
        &problems,
        "teams.a.approval_policy",
        "unknown approval policy \"always\" for agent \"codex\" (one of: on-failure, on-request, never)",
    );
    assert_problem(
        &problems,
        "teams.a.sandbox",
        "unknown sandbox \"none\" for agent \"codex\" (one of: read-only, workspace-write, danger-full-access)",
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
    // Codex 0.171.0 refuses to start with "untrusted" ("no longer supported"): a config error
    // here, not an agent that exits at every tell.
    f.one_problem(
        &f.with_team("agent = \"codex\"\napproval_policy = \"untrusted\"\n"),
        "teams.a.approval_policy",
        "unknown approval policy \"untrusted\"",
    );
}

#[test]
fn empty_agent_path() {
    let f = Fixture::new();
    f.one_problem(
        &f.with_team("agent_path = \" \"\n"),
        "teams.a.agent_path",
        "must not be empty",
    );
}

#[test]
fn bad_permission_mode() {
    let f = Fixture::new();
    let p = f.one_problem(
        &f.with_team("permission_mode = \"yolo\"\n"),
        "teams.a.permission_mode",
        "unknown permission mode \"yolo\"",
    );
    assert!(
        p.message
            .contains("acceptEdits, auto, bypassPermissions, manual, dontAsk, plan"),
        "{p:?}"
    );
}

#[test]
fn remote_teams() {
    let f = Fixture::new();
    for (bad, why) in [
        ("-oProxyCommand=touch /tmp/x", "option"),
        ("two words", "space"),
        ("https://sb.example.com", "URL"),
        ("", "empty"),
    ] {
        f.one_problem(
            &f.with_team(&format!("remote = {bad:?}\n")),
            "teams.a.remote",
            why,
        );
    }
    // A valid remote team loads, with its options; its path (a folder on the remote host) is
    // not looked for here.
    let text = "[teams.r]\npath = \"/srv/repos/data\"\nremote = \"deploy@gpu-box\"\n\
                ssh_options = [\"-p\", \"2222\"]\nagent_path = \"/usr/local/bin/claude\"\n";
    let config = f.ok(text);
    let team = config.team("r").expect("team r");
    assert_eq!(team.remote.as_deref(), Some("deploy@gpu-box"));
    assert_eq!(team.ssh_options, ["-p", "2222"]);
    assert_eq!(team.path, std::path::Path::new("/srv/repos/data"));
    assert_eq!(team.agent_path.as_deref(), Some("/usr/local/bin/claude"));
    // The path of a remote team is a folder there: not looked for here, but it must be
    // absolute and without "..".
    for (path, why) in [
        ("srv/x", "absolute path on the remote host"),
        ("/srv/../etc", ".."),
    ] {
        f.one_problem(
            &format!("[teams.r]\npath = {path:?}\nremote = \"h\"\n"),
            "teams.r.path",
            why,
        );
    }
    // ssh_options without a remote is a mistake.
    f.one_problem(
        &f.with_team("ssh_options = [\"-p\", \"2\"]\n"),
        "teams.a.ssh_options",
        "only for a remote team",
    );
    // switchboard_path (the bridge to Switchboard's tools on the remote host): only with a
    // remote, an absolute path there or a bare name, nothing that is not a program.
    f.one_problem(
        &f.with_team("switchboard_path = \"/usr/bin/switchboard\"\n"),
        "teams.a.switchboard_path",
        "only for a remote team",
    );
    for (program, why) in [
        ("bin/switchboard", "absolute path on the remote host"),
        ("/opt/../bin/switchboard", ".."),
        ("", "must not be empty"),
        ("switch\nboard", "control character"),
    ] {
        let problems = f.problems(&format!(
            "[teams.r]\npath = \"/srv/x\"\nremote = \"h\"\nswitchboard_path = {program:?}\n"
        ));
        assert_problem(&problems, "teams.r.switchboard_path", why);
        assert_eq!(problems.len(), 1, "{problems:#?}");
    }
    for program in ["switchboard", "/usr/local/bin/switchboard"] {
        let config = f.ok(&format!(
            "[teams.r]\npath = \"/srv/x\"\nremote = \"h\"\nswitchboard_path = {program:?}\n"
        ));
        assert_eq!(
            config.team("r").unwrap().switchboard_path.as_deref(),
            Some(program)
        );
    }
}

#[test]
fn bad_env_var_name_and_value() {
    let f = Fixture::new();
    let problems = f.problems(&f.with_team("[teams.a.env]\n1ST = \"x\"\nOK = 5\nA-B = \"y\"\n"));
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert_problem(
        &problems,
        "teams.a.env.1ST",
        "invalid environment variable name",
    );
    assert_problem(
        &problems,
        "teams.a.env.A-B",
        "invalid environment variable name",
    );
    assert_problem(&problems, "teams.a.env.OK", "expected a string");
    f.one_problem(
        &f.with_team("env = [\"A=1\"]\n"),
        "teams.a.env",
        "expected a table",
    );
}

#[test]
fn bad_lists() {
    let f = Fixture::new();
    f.one_problem(
        &f.with_team("args = \"--x\"\n"),
        "teams.a.args",
        "expected an array of strings",
    );
    f.one_problem(
        &f.with_team("args = [\"--x\", 3]\n"),
        "teams.a.args[1]",
        "expected a string, found integer 3",
    );
    f.one_problem(
        &f.with_team("allowed_tools = [\"Read\", \"\"]\n"),
        "teams.a.allowed_tools[1]",
        "must not be empty",
    );
    f.one_problem(
        &f.with_team("disallowed_tools = [true]\n"),
        "teams.a.disallowed_tools[0]",
        "found boolean true",
    );
    f.one_problem(
        &f.with_team("description = 1.5\n"),
        "teams.a.description",
        "expected a string, found float 1.5",
    );
    f.one_problem(
        &f.with_team("append_system_prompt = []\n"),
        "teams.a.append_system_prompt",
        "expected a string",
    );
}

#[test]
fn all_team_options_are_read() {
    let f = Fixture::new();
    let config = f.ok(&f.with_team(
        r#"description = "d"
agent = "claude"
agent_path = "/opt/claude"
args = ["--max-turns", "3", ""]
idle_timeout = "1h 30m"
session_init_timeout = "45s"
allowed_tools = ["Read"]
disallowed_tools = ["Bash(rm:*)"]
append_system_prompt = "be brief"
permission_mode = "bypassPermissions"
env = { X = "1", API_KEY = "s3cret" }
"#,
    ));
    let team = config.team("a").expect("a");
    assert_eq!(team.name, "a");
    assert_eq!(team.path, PathBuf::from(f.project()));
    assert_eq!(team.description.as_deref(), Some("d"));
    assert_eq!(team.agent, "claude");
    assert_eq!(team.agent_path.as_deref(), Some("/opt/claude"));
    assert_eq!(team.args, ["--max-turns", "3", ""]);
    assert_eq!(team.idle_timeout, Some(Duration::from_secs(5400)));
    assert_eq!(team.session_init_timeout, Some(Duration::from_secs(45)));
    assert_eq!(config.idle_timeout(team), Duration::from_secs(5400));
    assert_eq!(team.allowed_tools, ["Read"]);
    assert_eq!(team.disallowed_tools, ["Bash(rm:*)"]);
    assert_eq!(team.append_system_prompt.as_deref(), Some("be brief"));
    assert_eq!(team.permission_mode.as_deref(), Some("bypassPermissions"));
    assert_eq!(team.env.get("X").map(String::as_str), Some("1"));
    assert_eq!(team.redacted_snapshot()["env"]["API_KEY"], "***");
}

#[test]
fn team_defaults() {
    let f = Fixture::new();
    let config = f.ok(&f.with_team(""));
    let team = config.team("a").expect("a");
    assert_eq!(team.agent, "claude");
    assert_eq!(team.agent_path, None);
    assert!(team.args.is_empty() && team.env.is_empty() && team.allowed_tools.is_empty());
    assert_eq!(team.idle_timeout, None);
    assert_eq!(config.idle_timeout(team), Settings::default().idle_timeout);
    assert_eq!(config.settings, Settings::default());
    assert!(!config.database.in_memory);
    assert_eq!(config.source, None);
}

// ---- settings ---------------------------------------------------------------------------------

#[test]
fn durations_zero_invalid_or_wrong_type() {
    let f = Fixture::new();
    let cases = [
        (
            "[settings]\nidle_timeout = \"0s\"\n",
            "settings.idle_timeout",
            "longer than zero",
        ),
        (
            "[settings]\nresponse_timeout = \"soon\"\n",
            "settings.response_timeout",
            "invalid duration \"soon\"",
        ),
        (
            "[settings]\nspawn_timeout = 30\n",
            "settings.spawn_timeout",
            "expected a duration string",
        ),
        (
            "[settings]\nsession_init_timeout = \"\"\n",
            "settings.session_init_timeout",
            "empty duration",
        ),
        (
            "[settings]\ncache_ttl = \"-5s\"\n",
            "settings.cache_ttl",
            "invalid duration",
        ),
        (
            "[settings]\nhealth_check_interval = \"0m\"\n",
            "settings.health_check_interval",
            "longer than zero",
        ),
        (
            "[settings.compaction]\nstale_age = \"0d\"\n",
            "settings.compaction.stale_age",
            "longer than zero",
        ),
        (
            "idle_timeout = \"0s\"\n",
            "teams.a.idle_timeout",
            "longer than zero",
        ),
        (
            "session_init_timeout = \"1 fortnight\"\n",
            "teams.a.session_init_timeout",
            "invalid duration",
        ),
    ];
    for (extra, path, wanted) in cases {
        f.one_problem(&f.with_team(extra), path, wanted);
    }
}

#[test]
fn max_processes_zero_negative_and_wrong_type() {
    let f = Fixture::new();
    f.one_problem(
        &f.with_team("[settings]\nmax_processes = 0\n"),
        "settings.max_processes",
        "must be at least 1, found 0",
    );
    f.one_problem(
        &f.with_team("[settings]\nmax_processes = -3\n"),
        "settings.max_processes",
        "must be at least 1, found -3",
    );
    f.one_problem(
        &f.with_team("[settings]\nmax_processes = \"four\"\n"),
        "settings.max_processes",
        "expected an integer ≥ 1, found string \"four\"",
    );
    f.one_problem(
        &f.with_team("[settings]\nmax_processes = 2.5\n"),
        "settings.max_processes",
        "found float 2.5",
    );
    f.one_problem(
        &format!("settings = 1\n{}", f.with_team("")),
        "settings",
        "expected a table",
    );
}

#[test]
fn events_values() {
    let f = Fixture::new();
    f.one_problem(
        &f.with_team("[settings.events]\nmax_bytes_per_tell = \"1 parsec\"\n"),
        "settings.events.max_bytes_per_tell",
        "invalid size",
    );
    f.one_problem(
        &f.with_team("[settings.events]\nmax_events_per_tell = 0\n"),
        "settings.events.max_events_per_tell",
        "at least 1",
    );
    f.one_problem(
        &f.with_team("[settings.events]\nretention = \"forever\"\n"),
        "settings.events.retention",
        "invalid duration",
    );
    f.one_problem(
        &f.with_team("[settings.events]\nkeep = 1\n"),
        "settings.events.keep",
        "unknown key",
    );
    let config = f.ok(&f.with_team(
        "[settings.events]\nretention = \"2d\"\nmax_events_per_tell = 50\nmax_bytes_per_tell = \"64KiB\"\n",
    ));
    assert_eq!(
        config.settings.events,
        switchboard::config::EventsSettings {
            retention: Duration::from_secs(2 * 86_400),
            max_events_per_tell: 50,
            max_bytes_per_tell: 64 * 1024,
        }
    );
    let config = f.ok(&f.with_team("[settings.events]\nmax_bytes_per_tell = 4096\n"));
    assert_eq!(config.settings.events.max_bytes_per_tell, 4096);
}

#[test]
fn compaction_values() {
    let f = Fixture::new();
    f.one_problem(
        &f.with_team("[settings.compaction]\nmax_messages = 0\n"),
        "settings.compaction.max_messages",
        "at least 1",
    );
    f.one_problem(
        &f.with_team("[settings.compaction]\nstale_messages = \"many\"\n"),
        "settings.compaction.stale_messages",
        "expected an integer",
    );
    f.one_problem(
        &f.with_team("[settings]\ncompaction = 5\n"),
        "settings.compaction",
        "expected a table",
    );
    let config = f.ok(&f.with_team(
        "[settings.compaction]\nmax_messages = 50\nstale_messages = 10\nstale_age = \"2h\"\n",
    ));
    assert_eq!(
        config.settings.compaction,
        CompactionPolicy {
            max_messages: 50,
            stale_messages: 10,
            stale_age: Duration::from_secs(7200),
        }
    );
}

#[test]
fn settings_are_read() {
    let f = Fixture::new();
    let config = f.ok(&f.with_team(
        r#"[settings]
max_processes = 3
idle_timeout = "2m"
response_timeout = "90s"
spawn_timeout = "10s"
session_init_timeout = "20s"
cache_ttl = "5s"
health_check_interval = "1m"
"#,
    ));
    let s = &config.settings;
    assert_eq!(s.max_processes, 3);
    assert_eq!(s.idle_timeout, Duration::from_secs(120));
    assert_eq!(s.response_timeout, Duration::from_secs(90));
    assert_eq!(s.spawn_timeout, Duration::from_secs(10));
    assert_eq!(s.session_init_timeout, Duration::from_secs(20));
    assert_eq!(s.cache_ttl, Duration::from_secs(5));
    assert_eq!(s.health_check_interval, Duration::from_secs(60));
    assert_eq!(s.compaction, CompactionPolicy::default());
}

// ---- interpolation ----------------------------------------------------------------------------

#[test]
fn unset_variable() {
    let f = Fixture::new();
    let p = f.one_problem(
        "[teams.a]\npath = \"${PROJECTS}/a\"\n",
        "teams.a.path",
        "environment variable PROJECTS is not set",
    );
    assert_eq!(p.line, Some(2));
    // Reported once: the path is not also reported as relative or missing.
    f.one_problem(
        &f.with_team("args = [\"ok\", \"${NOPE}\"]\n"),
        "teams.a.args[1]",
        "NOPE is not set",
    );
}

#[test]
fn malformed_interpolation() {
    let f = Fixture::new();
    f.one_problem(
        &f.with_team("description = \"${OOPS\"\n"),
        "teams.a.description",
        "unclosed \"${\"",
    );
    f.one_problem(
        &f.with_team("description = \"${9X}\"\n"),
        "teams.a.description",
        "invalid variable name",
    );
    f.one_problem(
        &f.with_team("description = \"${A?err}\"\n"),
        "teams.a.description",
        "unsupported expansion",
    );
}

#[test]
fn default_used_when_unset_or_empty() {
    let f = Fixture::new().set("PROJECTS", "").set("LEVEL", "debug");
    let root = f.root().display().to_string();
    let text = format!(
        r#"[teams.a]
path = "${{PROJECTS:-{root}}}/project"
append_system_prompt = "${{MISSING:-plain default}}"
[teams.a.env]
LOG = "${{LEVEL:-info}}"
OTHER = "${{UNSET:-fallback}}"
"#
    );
    let config = f.ok(&text);
    let team = config.team("a").expect("a");
    assert_eq!(team.path, PathBuf::from(f.project()));
    assert_eq!(team.append_system_prompt.as_deref(), Some("plain default"));
    assert_eq!(team.env["LOG"], "debug");
    assert_eq!(team.env["OTHER"], "fallback");
}

#[test]
fn dollar_dollar_brace_escape() {
    let f = Fixture::new().set("X", "expanded");
    let config = f.ok(&f.with_team(
        "append_system_prompt = \"literal $${X}, value ${X}, bare $X and $$\"\nargs = [\"$${HOME}\"]\n",
    ));
    let team = config.team("a").expect("a");
    assert_eq!(
        team.append_system_prompt.as_deref(),
        Some("literal ${X}, value expanded, bare $X and $$")
    );
    assert_eq!(team.args, ["${HOME}"]);
}

#[test]
fn interpolation_reaches_every_depth() {
    let f = Fixture::new().set("N", "7").set("MODE", "plan");
    let config = f.ok(&f.with_team(
        "permission_mode = \"${MODE}\"\nargs = [\"--max-turns\", \"${N}\"]\n[settings]\nidle_timeout = \"${N}m\"\n[settings.compaction]\nstale_age = \"${N}d\"\n",
    ));
    let team = config.team("a").expect("a");
    assert_eq!(team.permission_mode.as_deref(), Some("plan"));
    assert_eq!(team.args, ["--max-turns", "7"]);
    assert_eq!(config.settings.idle_timeout, Duration::from_secs(420));
    assert_eq!(
        config.settings.compaction.stale_age,
        Duration::from_secs(7 * 86_400)
    );
}

// ---- database ---------------------------------------------------------------------------------

#[test]
fn database_relative_path_is_resolved_against_the_file_folder() {
    let f = Fixture::new();
    let file = f.root().join("conf/teams.toml");
    let config = f
        .parse_at(
            &f.with_team("[database]\npath = \"./data/sb.db\"\n"),
            Some(&file),
        )
        .expect("valid");
    assert_eq!(config.database.path, f.root().join("conf/data/sb.db"));
    assert_eq!(config.source.as_deref(), Some(file.as_path()));
}

#[test]
fn database_relative_path_without_a_file_uses_the_current_dir() {
    let f = Fixture::new();
    let config = f.ok(&f.with_team("[database]\npath = \"sb.db\"\n"));
    let cwd = std::env::current_dir().expect("cwd");
    assert_eq!(config.database.path, cwd.join("sb.db"));
}

#[test]
fn database_tilde_path() {
    let f = Fixture::new();
    let config = f.ok(&f.with_team("[database]\npath = \"~/dbs/sb.db\"\n"));
    assert_eq!(config.database.path, f.home().join("dbs/sb.db"));
}

#[test]
fn database_default_path() {
    let f = Fixture::new();
    let config = f.ok(&f.with_team(""));
    assert_eq!(
        config.database.path,
        f.home().join(".local/share/switchboard/switchboard.db")
    );
    let xdg = Fixture::new().set("XDG_DATA_HOME", "/xdg/data");
    let config = xdg.ok(&xdg.with_team(""));
    assert_eq!(
        config.database.path,
        PathBuf::from("/xdg/data/switchboard/switchboard.db")
    );
}

#[test]
fn database_default_needs_home_or_xdg() {
    let f = Fixture::new().unset("HOME");
    f.one_problem(
        &f.with_team(""),
        "database.path",
        "neither XDG_DATA_HOME nor HOME",
    );
    let config = f.ok(&f.with_team("[database]\nin_memory = true\n"));
    assert!(config.database.in_memory);
    let config = f.ok(&f.with_team("[database]\npath = \"/var/tmp/x.db\"\n"));
    assert_eq!(config.database.path, PathBuf::from("/var/tmp/x.db"));
}

#[test]
fn database_bad_values() {
    let f = Fixture::new();
    f.one_problem(
        &f.with_team("[database]\npath = \"\"\n"),
        "database.path",
        "must not be empty",
    );
    f.one_problem(
        &f.with_team("[database]\npath = 1\n"),
        "database.path",
        "expected a string",
    );
    f.one_problem(
        &format!("database = \"x.db\"\n{}", f.with_team("")),
        "database",
        "expected a table",
    );
}

// ---- files and discovery ----------------------------------------------------------------------

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let f = Fixture::new();
    let file = f.root().join("teams.toml");
    fs::write(
        &file,
        format!("{}[database]\npath = \"sb.db\"\n", f.with_team("")),
    )
    .expect("write");
    let config = TeamsConfig::load(&file).expect("valid");
    assert_eq!(config.source.as_deref(), Some(file.as_path()));
    assert_eq!(config.database.path, f.root().join("sb.db"));

    let missing = f.root().join("missing.toml");
    match TeamsConfig::load(&missing) {
        Err(e @ ConfigError::Read { .. }) => {
            assert!(e.to_string().contains("missing.toml"), "{e}");
            assert!(e.problems().is_empty());
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn discovery_order() {
    let f = Fixture::new();
    let cwd = f.root().join("cwd");
    let config_home = f.root().join("xdg");
    fs::create_dir_all(&cwd).expect("cwd");
    fs::create_dir_all(config_home.join("switchboard")).expect("xdg");
    fs::create_dir_all(f.home().join(".config/switchboard")).expect("home config");
    let explicit = f.root().join("explicit.toml");
    let from_env = f.root().join("from-env.toml");
    let local = cwd.join("teams.toml");
    let in_xdg = config_home.join("switchboard/teams.toml");
    let in_home = f.home().join(".config/switchboard/teams.toml");
    for file in [&explicit, &from_env, &local, &in_xdg, &in_home] {
        fs::write(file, "").expect("write");
    }
    let home = f.home().display().to_string();
    let env_all = |k: &str| match k {
        "SWITCHBOARD_CONFIG" => Some(from_env.display().to_string()),
        "XDG_CONFIG_HOME" => Some(config_home.display().to_string()),
        "HOME" => Some(home.clone()),
        _ => None,
    };
    let env_no_var = |k: &str| {
        if k == "SWITCHBOARD_CONFIG" {
            Some(String::new())
        } else {
            env_all(k)
        }
    };
    let env_home_only = |k: &str| {
        if k == "HOME" {
            Some(home.clone())
        } else {
            None
        }
    };

    let found = |explicit: Option<&Path>, env: &dyn Fn(&str) -> Option<String>| {
        discover_in(explicit, env, &cwd).expect("found")
    };
    assert_eq!(found(Some(&explicit), &env_all), explicit);
    assert_eq!(found(None, &env_all), from_env);
    // ./teams.toml is used only once trusted (`config trust`); until then the user's own.
    assert_eq!(found(None, &env_no_var), in_xdg);
    switchboard::config::trust::trust(&local, &env_no_var).expect("trust ./teams.toml");
    assert_eq!(found(None, &env_no_var), local);
    fs::remove_file(&local).expect("rm");
    assert_eq!(found(None, &env_no_var), in_xdg);
    assert_eq!(found(None, &env_home_only), in_home);
    fs::remove_file(&in_home).expect("rm");
    match discover_in(None, &env_home_only, &cwd) {
        Err(e @ ConfigError::NotFound { .. }) => {
            let ConfigError::NotFound { searched } = &e else {
                unreachable!()
            };
            assert_eq!(searched, &[local.clone(), in_home.clone()]);
            let shown = e.to_string();
            assert!(shown.contains(&local.display().to_string()), "{shown}");
            assert!(shown.contains(&in_home.display().to_string()), "{shown}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    match discover_in(None, &no_env, &cwd) {
        Err(ConfigError::NotFound { searched }) => assert_eq!(searched, vec![local.clone()]),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn discovery_of_a_named_file_that_does_not_exist() {
    let f = Fixture::new();
    let missing = f.root().join("nope.toml");
    match discover_in(Some(&missing), &no_env, f.root()) {
        Err(ConfigError::Read { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a read error, got {other:?}"),
    }
    // Named by $SWITCHBOARD_CONFIG: an error too, even when ./teams.toml exists.
    fs::write(f.root().join("teams.toml"), "").expect("write");
    let named = missing.display().to_string();
    let env = |k: &str| (k == "SWITCHBOARD_CONFIG").then(|| named.clone());
    match discover_in(None, &env, f.root()) {
        Err(e @ ConfigError::Read { .. }) => {
            let shown = e.to_string();
            assert!(
                shown.contains("nope.toml") && shown.contains("SWITCHBOARD_CONFIG"),
                "{shown}"
            );
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

// ---- teams.example.toml -----------------------------------------------------------------------

/// The commented Codex team of `teams.example.toml` loads once uncommented.
#[test]
fn the_example_codex_team_loads_when_uncommented() {
    let f = Fixture::new();
    let projects = f.root().join("projects");
    fs::create_dir_all(projects.join("api")).expect("mkdir");
    let f = f.set("SWITCHBOARD_PROJECTS", &projects.display().to_string());
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("teams.example.toml");
    let text = fs::read_to_string(&example).expect("read teams.example.toml");
    let block: String = text
        .split("# --- codex team ---\n")
        .nth(1)
        .and_then(|rest| rest.split("# --- end codex team ---").next())
        .expect("the codex team block")
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = match f.parse(&block) {
        Ok(config) => config,
        Err(e) => panic!("the example's codex team must load:\n{e}\n{block}"),
    };
    let api = config.team("api").expect("team api");
    assert_eq!(api.agent, "codex");
    assert_eq!(api.approval_policy.as_deref(), Some("on-request"));
    assert_eq!(
        api.provider.as_ref().and_then(|p| p.env_key.as_deref()),
        Some("LLM_GATEWAY_KEY")
    );
    assert!(config.settings.prices.contains_key("gpt-5.5"));
}

#[test]
fn example_file_loads_with_every_option() {
    let f = Fixture::new();
    let projects = f.root().join("projects");
    for team in ["frontend", "backend", "docs"] {
        fs::create_dir_all(projects.join(team)).expect("mkdir");
    }
    let f = f.set("SWITCHBOARD_PROJECTS", &projects.display().to_string());
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("teams.example.toml");
    let text = fs::read_to_string(&example).expect("read teams.example.toml");
    let config = match f.parse_at(&text, Some(&example)) {
        Ok(config) => config,
        Err(e) => panic!("teams.example.toml must load:\n{e}"),
    };
    // The settings shown are the defaults.
    assert_eq!(config.settings, Settings::default());
    assert!(!config.database.in_memory);
    assert_eq!(
        config.database.path,
        f.home().join(".local/share/switchboard/switchboard.db")
    );
    let names: Vec<&str> = config.teams.keys().map(String::as_str).collect();
    assert_eq!(names, ["backend", "backend-gemini", "docs", "frontend"]);
    for (name, team) in &config.teams {
        assert!(team.description.is_some());
        if name == "backend-gemini" {
            assert_eq!(team.path, projects.join("backend"));
            assert_eq!(team.agent, "gemini");
            assert_eq!(team.model.as_deref(), Some("gemini-2.5-flash"));
            assert_eq!(team.max_retries, Some(2));
            continue;
        }
        assert_eq!(team.path, projects.join(name));
        assert_eq!(team.agent, "claude");
    }
    let backend = config.team("backend").expect("backend");
    assert_eq!(config.idle_timeout(backend), Duration::from_secs(1800));
    assert_eq!(
        config.session_init_timeout(backend),
        Duration::from_secs(120)
    );
    let frontend = config.team("frontend").expect("frontend");
    assert_eq!(
        config.idle_timeout(frontend),
        Settings::default().idle_timeout
    );
    assert_eq!(frontend.agent_path.as_deref(), Some("claude"));
    // Env defaults applied, and the secret hidden in the snapshot.
    assert_eq!(backend.env["API_TOKEN"], "dev-token");
    assert_eq!(backend.env["RUST_LOG"], "info");
    let snapshot = backend.redacted_snapshot();
    assert_eq!(snapshot["env"]["API_TOKEN"], "***");
    assert_eq!(snapshot["env"]["RUST_LOG"], "info");
    assert!(!snapshot.to_string().contains("dev-token"));
    // Every team key appears in the example, at least in a comment.
    for key in [
        "path",
        "description",
        "agent",
        "agent_path",
        "args",
        "env",
        "idle_timeout",
        "session_init_timeout",
        "allowed_tools",
        "disallowed_tools",
        "append_system_prompt",
        "permission_mode",
        "remote",
        "ssh_options",
    ] {
        assert!(
            text.contains(&format!("{key} = ")) || text.contains(&format!("[teams.backend.{key}]")),
            "{key} is not shown"
        );
    }
}

#[test]
fn example_file_uses_environment_overrides() {
    let f = Fixture::new();
    let projects = f.root().join("elsewhere");
    for team in ["frontend", "backend", "docs"] {
        fs::create_dir_all(projects.join(team)).expect("mkdir");
    }
    let f = f
        .set("SWITCHBOARD_PROJECTS", &projects.display().to_string())
        .set("BACKEND_API_TOKEN", "real-secret")
        .set("CLAUDE_BIN", "/opt/claude/bin/claude");
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("teams.example.toml"))
        .expect("read");
    let config = f.ok(&text);
    let backend = config.team("backend").expect("backend");
    assert_eq!(backend.path, projects.join("backend"));
    assert_eq!(backend.env["API_TOKEN"], "real-secret");
    assert!(!backend
        .redacted_snapshot()
        .to_string()
        .contains("real-secret"));
    for team in config.teams.values().filter(|t| t.agent == "claude") {
        assert_eq!(
            team.agent_path.as_deref(),
            Some("/opt/claude/bin/claude"),
            "{} ignores $CLAUDE_BIN",
            team.name
        );
    }
}

#[test]
fn example_file_without_project_folders_names_each_missing_path() {
    let f = Fixture::new();
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("teams.example.toml"))
        .expect("read");
    // SWITCHBOARD_PROJECTS unset: ~/projects/... under the injected HOME, which do not exist.
    let problems = f.problems(&text);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    for team in ["frontend", "backend", "docs", "backend-gemini"] {
        assert_problem(&problems, &format!("teams.{team}.path"), "does not exist");
    }
}

// ---- size -------------------------------------------------------------------------------------

/// `config check` on a file with 40,000 problems (20,000 bad `args` one per line, 20,000 on a
/// single line) finishes within the 2 s every teams file must be checked in, and still gives
/// each problem its line and column. (Locating each problem by re-scanning the text made this
/// quadratic: 10,000 problems took 10 s.)
#[test]
fn forty_thousand_problems_are_checked_within_two_seconds() {
    const N: usize = 20_000;
    let f = Fixture::new();
    let mut text = format!("[teams.a]\npath = {:?}\nargs = [\n", f.project());
    for i in 0..N {
        text.push_str(&format!("  {i},\n"));
    }
    text.push_str("]\n");
    text.push_str(&format!("[teams.b]\npath = {:?}\nargs = [", f.project()));
    for i in 0..N {
        text.push_str(&format!("{i}, "));
    }
    text.push_str("]\n");
    let file = f.root().join("teams.toml");
    fs::write(&file, &text).expect("write");
    let out_file = f.root().join("out.json");
    let (status, cpu) = run_with_cpu_time(
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("--config")
            .arg(&file)
            .args(["config", "check", "--json"])
            .env("HOME", f.home())
            .stdout(fs::File::create(&out_file).expect("create out.json")),
    );
    assert_eq!(status, Some(2));
    let stdout = fs::read(&out_file).expect("read out.json");
    let report: serde_json::Value = serde_json::from_slice(&stdout).expect("json");
    let problems = report["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 2 * N);
    // teams.a: one per line, from line 4; teams.b: all on line N + 7, column 9 onwards.
    let last_a = &problems[N - 1];
    assert_eq!(last_a["path"], format!("teams.a.args[{}]", N - 1));
    assert_eq!(last_a["line"], N + 3);
    assert_eq!(last_a["column"], 3);
    let last_b = &problems[2 * N - 1];
    assert_eq!(last_b["path"], format!("teams.b.args[{}]", N - 1));
    assert_eq!(last_b["line"], N + 7);
    let b_line = text.lines().nth(N + 6).expect("line of teams.b.args");
    let column = b_line.find(&format!(" {}, ", N - 1)).expect("last arg") + 2;
    assert_eq!(last_b["column"], column);
    // CPU time, not wall time: the bound is about the work, not about a loaded test machine.
    assert!(
        cpu < Duration::from_secs(2),
        "config check of {} problems took {cpu:?} of CPU",
        2 * N
    );
}

/// Runs `command` to its end; its exit code and the CPU time (user + system) it used.
#[allow(clippy::zombie_processes)] // reaped by wait4, which std's Child does not know about
fn run_with_cpu_time(command: &mut std::process::Command) -> (Option<i32>, Duration) {
    let child = command.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; `pid` is our own unwaited child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, time(usage.ru_utime) + time(usage.ru_stime))
}

#[test]
fn model_prices_and_provider_options_are_read_and_checked_at_their_key() {
    let f = Fixture::new();
    let text = format!(
        "[settings.prices.\"gpt-x\"]\ninput = 1.25\ncached_input = 0.125\noutput = 10\n\
         [settings.prices.cheap]\ninput = 0.5\noutput = 1.5\n{}",
        f.with_team("model = \"claude-sonnet-x\"\n")
    );
    let config = f.ok(&text);
    let price = config.settings.prices["gpt-x"];
    assert_eq!(
        (price.input, price.cached_input, price.output),
        (1.25, 0.125, 10.0)
    );
    // cached_input defaults to the input price; a million fresh input tokens cost `input`.
    let cheap = config.settings.prices["cheap"];
    assert_eq!(cheap.cached_input, 0.5);
    assert!((cheap.cost_usd(1_000_000, 0, 1_000_000) - 2.0).abs() < 1e-9);
    assert_eq!(
        config.team("a").unwrap().model.as_deref(),
        Some("claude-sonnet-x")
    );

    // Every bad value is reported at once, each at its key path.
    let bad = format!(
        "[settings.prices.\"gpt-x\"]\ninput = -1\n[settings.prices.y]\ninput = 1\noutput = 1\nfree = 0\n{}",
        f.with_team("model = \"  \"\n")
    );
    let problems = f.problems(&bad);
    assert_problem(
        &problems,
        "settings.prices.gpt-x.input",
        "must be a number ≥ 0",
    );
    assert_problem(&problems, "settings.prices.gpt-x.output", "missing");
    assert_problem(&problems, "settings.prices.y.free", "unknown key");
    assert_problem(&problems, "teams.a.model", "must not be empty");
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

#[test]
fn options_of_other_agent_kinds_are_refused_on_a_claude_team() {
    let f = Fixture::new();
    let text = f.with_team(
        "approval_policy = \"never\"\nsandbox = \"read-only\"\nmax_retries = 2\n\
         [teams.a.provider]\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    );
    let problems = f.problems(&text);
    for key in ["approval_policy", "sandbox", "max_retries", "provider"] {
        assert_problem(&problems, &format!("teams.a.{key}"), "claude");
    }
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

#[test]
fn a_remote_team_must_run_a_kind_the_remote_lifecycle_drives() {
    let f = Fixture::new();
    for agent in ["codex", "gemini"] {
        let p = f.one_problem(
            &format!("[teams.r]\npath = \"/srv/x\"\nremote = \"h\"\nagent = \"{agent}\"\n"),
            "teams.r.remote",
            "cannot run on a remote host",
        );
        assert!(p.message.contains("remote teams run: claude"), "{p:?}");
    }
    let ok = f.ok("[teams.r]\npath = \"/srv/x\"\nremote = \"h\"\nagent = \"claude\"\n");
    assert_eq!(ok.team("r").unwrap().remote.as_deref(), Some("h"));
}
