//! A new teams file for some project folders (`switchboard init`): one team per folder, its
//! name derived from the folder's name (made valid, and unique), every other option shown in a
//! comment. The text is checked exactly as `config check` would before anything is written.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::load::{parse_str, Env, Folders};
use super::{is_valid_team_name, ConfigError, TeamsConfig};

/// A teams file ready to be written.
#[derive(Debug, Clone)]
pub struct NewTeamsFile {
    /// The file's text.
    pub text: String,
    /// The config it loads as (it passed every check).
    pub config: TeamsConfig,
}

/// The teams file for `folders` (one team each; relative folders are taken from the current
/// directory), to be written at `output`. `env` supplies `HOME` (folders under it are written
/// `~/...`) and the variables the check needs. Fails naming the folder that cannot be a team's
/// (missing, not a directory), or with every problem `config check` would report.
pub fn new_teams_file(
    folders: &[PathBuf],
    output: &Path,
    env: Env<'_>,
) -> Result<NewTeamsFile, ConfigError> {
    let home = super::load::non_empty(env, "HOME").map(PathBuf::from);
    let mut teams: Vec<(String, PathBuf)> = Vec::new();
    for folder in folders {
        let real = folder.canonicalize().map_err(|e| ConfigError::BadFolder {
            folder: folder.clone(),
            reason: e.to_string(),
        })?;
        if !real.is_dir() {
            return Err(ConfigError::BadFolder {
                folder: folder.clone(),
                reason: "not a directory".to_string(),
            });
        }
        if teams.iter().any(|(_, p)| *p == real) {
            continue; // the same folder named twice: one team
        }
        let name = unique(team_name(&real), &teams);
        teams.push((name, real));
    }
    let text = render(&teams, home.as_deref());
    let config = parse_str(&text, Some(output), env, Folders::Required)?;
    Ok(NewTeamsFile { text, config })
}

/// Writes `text` at `path`; an existing file is replaced only with `force`.
pub fn write_new_file(path: &Path, text: &str, force: bool) -> Result<(), ConfigError> {
    let write_error = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ConfigError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            write_error(e)
        }
    })?;
    file.write_all(text.as_bytes()).map_err(write_error)
}

/// A valid team name from a folder's name: characters outside `[A-Za-z0-9_.@-]` become `-`,
/// lower case, at most 90 characters (room for a `-N` suffix); `team` when nothing is left.
pub fn team_name(folder: &Path) -> String {
    let raw = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name = String::new();
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        let keep = c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-');
        if keep {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name: String = name.trim_matches('-').chars().take(90).collect();
    let name = name.trim_end_matches('-');
    if name.is_empty() || name.chars().all(|c| c == '.') {
        "team".to_string()
    } else {
        name.to_string()
    }
}

/// `name`, or `name-2`, `name-3`, ... when taken.
fn unique(name: String, taken: &[(String, PathBuf)]) -> String {
    let used = |n: &str| taken.iter().any(|(t, _)| t == n);
    if !used(&name) {
        return name;
    }
    (2..)
        .map(|i| format!("{name}-{i}"))
        .find(|n| !used(n))
        .unwrap_or(name)
}

/// A TOML string holding `text` literally: `${` escaped as `$${` so interpolation leaves it.
fn literal(text: &str) -> String {
    toml::Value::String(text.replace("${", "$${")).to_string()
}

/// `~/rest` for a folder under `home`, else the absolute path.
fn shown_path(folder: &Path, home: Option<&Path>) -> String {
    if let Some(rest) = home
        .filter(|h| h.is_absolute() && *h != Path::new("/"))
        .and_then(|h| folder.strip_prefix(h).ok())
    {
        if rest.as_os_str().is_empty() {
            return "~".to_string();
        }
        return format!("~/{}", rest.display());
    }
    folder.display().to_string()
}

fn render(teams: &[(String, PathBuf)], home: Option<&Path>) -> String {
    let mut out = String::from(
        "# Switchboard teams file, written by `switchboard init`. Check it with\n\
         # `switchboard config check`; teams.example.toml explains every option.\n\
         #\n\
         # Strings may use ${VAR} and ${VAR:-default}; `~/` is your home folder.\n\
         \n\
         # [settings]                 # limits and timeouts (these are the defaults)\n\
         # max_processes = 8          # live agents at once\n\
         # idle_timeout = \"10m\"       # an idle agent stops after this long\n\
         # response_timeout = \"5m\"    # a turn with no output for this long is a stall\n\
         \n\
         # [database]\n\
         # path = \"~/.local/share/switchboard/switchboard.db\"   # the default\n",
    );
    for (name, folder) in teams {
        debug_assert!(is_valid_team_name(name));
        // "." and "@" are allowed in team names but not in bare TOML keys.
        let bare = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let key = if bare {
            name.clone()
        } else {
            format!("\"{name}\"")
        };
        out.push_str(&format!(
            "\n[teams.{key}]\n\
             path = {}\n\
             # description = \"What this team works on (shown by `switchboard teams`)\"\n\
             # agent_path = \"claude\"            # a path, or a name looked up in PATH\n\
             # permission_mode = \"acceptEdits\"  # acceptEdits, auto, bypassPermissions, manual, dontAsk, plan\n\
             # allowed_tools = [\"Read\", \"Grep\", \"Glob\"]\n\
             # append_system_prompt = \"Other teams ask you about this project. Answer briefly.\"\n",
            literal(&shown_path(folder, home))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_names_from_folder_names() {
        for (folder, name) in [
            ("/x/web", "web"),
            ("/x/My App!", "my-app"),
            ("/x/a${X}b", "a-x-b"),
            ("/x/--", "team"),
            ("/x/..", "team"),
            ("/", "team"),
            ("/x/api.v2@eu", "api.v2@eu"),
            ("/x/café", "caf"),
        ] {
            assert_eq!(team_name(Path::new(folder)), name, "{folder}");
            assert!(is_valid_team_name(&team_name(Path::new(folder))));
        }
        let long = format!("/x/{}", "a".repeat(300));
        assert_eq!(team_name(Path::new(&long)).len(), 90);
    }

    #[test]
    fn duplicate_names_get_a_number() {
        let taken = vec![
            ("web".to_string(), PathBuf::from("/a/web")),
            ("web-2".to_string(), PathBuf::from("/b/web")),
        ];
        assert_eq!(unique("web".into(), &taken), "web-3");
        assert_eq!(unique("api".into(), &taken), "api");
    }

    #[test]
    fn paths_are_written_literally() {
        for raw in ["/x/a${HOME}b", "/x/\"q\"", "/x/'q'", "/x/back\\slash"] {
            let table: toml::Table =
                toml::from_str(&format!("x = {}", literal(raw))).expect("valid TOML");
            assert_eq!(table["x"].as_str(), Some(raw.replace("${", "$${").as_str()));
        }
        assert_eq!(
            shown_path(Path::new("/home/u/code"), Some(Path::new("/home/u"))),
            "~/code"
        );
        assert_eq!(
            shown_path(Path::new("/srv/code"), Some(Path::new("/home/u"))),
            "/srv/code"
        );
    }
}
