//! Finding, reading and parsing the teams file, and the errors that come out of it.
//!
//! Owns discovery (`--config`, `$SWITCHBOARD_CONFIG`, `./teams.toml`, the config dir), reading,
//! TOML syntax errors (with line and column) and the plumbing every later step reports through:
//! [`KeyPath`] names a value (`teams.backend.path`) and [`Report`] collects [`ConfigProblem`]s,
//! giving each the line and column of the value it names. Interpolation lives in
//! `interpolate.rs`, the checks of each table in `validate.rs`. Never stops at the first problem.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::{interpolate, validate, TeamsConfig};

/// Looks up an environment variable; `None` when it is unset.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One thing wrong with a teams file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path of the value at fault, such as `teams.backend.path`; empty for a problem with the
    /// file as a whole (a syntax error).
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) in the file, when known.
    pub column: Option<usize>,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            match (self.line, self.column) {
                (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
                (Some(line), None) => write!(f, "line {line}: ")?,
                _ => {}
            }
            return f.write_str(&self.message);
        }
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Why the teams file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No teams file was found in any of the places searched.
    #[error("{}", not_found_message(searched))]
    NotFound {
        /// Every place looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// The teams file exists (or was named) but could not be read.
    #[error("cannot read the teams file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A folder given to `switchboard init` cannot be a team's folder.
    #[error("cannot use {} as a team folder: {reason}", folder.display())]
    BadFolder {
        /// The folder, as given.
        folder: PathBuf,
        /// Why not.
        reason: String,
    },
    /// `switchboard init` would overwrite an existing file.
    #[error("{} already exists; pass --force to overwrite it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A new teams file could not be written.
    #[error("cannot write the teams file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why it could not be written.
        #[source]
        source: std::io::Error,
    },
    /// A `teams.toml` in the current folder that the user has not trusted (or that changed
    /// since): it could run any program. See `config/trust.rs`.
    #[error("{}", untrusted_message(path, *changed))]
    Untrusted {
        /// The file found in the current folder.
        path: PathBuf,
        /// It was trusted once, with other contents.
        changed: bool,
    },
    /// The file was read but has problems; all of them are listed.
    #[error("{}", invalid_message(file, problems))]
    Invalid {
        /// The file's path, or `<string>` for text that did not come from a file.
        file: String,
        /// Every problem found, in file order.
        problems: Vec<ConfigProblem>,
    },
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`] file; empty for the other variants.
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn not_found_message(searched: &[PathBuf]) -> String {
    let mut out = String::from("no teams file found; looked for:");
    for path in searched {
        out.push_str(&format!("\n  - {}", path.display()));
    }
    out.push_str(
        "\ncreate one (see teams.example.toml), pass --config FILE or set SWITCHBOARD_CONFIG",
    );
    out
}

fn untrusted_message(path: &Path, changed: bool) -> String {
    format!(
        "{} in the current folder is {}: a teams file names the programs Switchboard runs \
         (agent_path, args) and their environment, so one found in the current folder is used \
         only once you trust it. Read it, then run `switchboard config trust {}`, or name it \
         with --config",
        path.display(),
        if changed {
            "not trusted any more (it changed since you trusted it)"
        } else {
            "not trusted"
        },
        path.display()
    )
}

fn invalid_message(file: &str, problems: &[ConfigProblem]) -> String {
    let n = problems.len();
    let mut out = format!(
        "{file}: {n} problem{} in the teams file:",
        if n == 1 { "" } else { "s" }
    );
    for problem in problems {
        out.push_str(&format!("\n  - {problem}"));
    }
    out
}

/// Finds the teams file: `explicit` (`--config FILE`), else `$SWITCHBOARD_CONFIG`, else
/// `./teams.toml` if the user trusted it (`switchboard config trust`), else `<config dir>/teams.toml` (`$XDG_CONFIG_HOME/switchboard` or
/// `~/.config/switchboard`).
///
/// A file named by `--config` or `$SWITCHBOARD_CONFIG` must exist ([`ConfigError::Read`] names
/// it); when nothing is named and no candidate exists, [`ConfigError::NotFound`] lists every
/// place looked at.
pub fn discover(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
        path: PathBuf::from("."),
        source,
    })?;
    discover_in(explicit, &|k| std::env::var(k).ok(), &cwd)
}

/// [`discover`] with the environment and the current directory given, for tests.
#[doc(hidden)]
pub fn discover_in(
    explicit: Option<&Path>,
    env: Env<'_>,
    cwd: &Path,
) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return must_exist(path, None);
    }
    if let Some(named) = non_empty(env, "SWITCHBOARD_CONFIG") {
        return must_exist(Path::new(&named), Some("SWITCHBOARD_CONFIG"));
    }
    let local = cwd.join("teams.toml");
    let own = config_dir(env).map(|dir| dir.join("teams.toml"));
    // A teams file in the current folder is used only once the user trusted it (it may come
    // with a cloned repository); the user's own one in the config dir needs no trust.
    let mut untrusted = None;
    if local.is_file() {
        let is_own = own.as_ref().is_some_and(|o| same_file(o, &local));
        match super::trust::check(&local, env) {
            _ if is_own => return Ok(local),
            super::trust::Trust::Trusted => return Ok(local),
            trust => {
                tracing::warn!(
                    "ignoring {}: not trusted (see `switchboard config trust`)",
                    local.display()
                );
                untrusted = Some(ConfigError::Untrusted {
                    path: local.clone(),
                    changed: trust == super::trust::Trust::Changed,
                });
            }
        }
    }
    let mut searched = vec![local];
    if let Some(own) = own {
        if own.is_file() {
            return Ok(own);
        }
        searched.push(own);
    }
    Err(untrusted.unwrap_or(ConfigError::NotFound { searched }))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `Ok(path)` when `path` can be looked at; otherwise a [`ConfigError::Read`] naming it (and the
/// variable it came from, if any).
fn must_exist(path: &Path, from_var: Option<&str>) -> Result<PathBuf, ConfigError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(path.to_path_buf()),
        Err(err) => {
            let source = match from_var {
                Some(var) => std::io::Error::new(err.kind(), format!("{err} (named by ${var})")),
                None => err,
            };
            Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    }
}

/// The value of `key` when it is set and not empty.
pub(super) fn non_empty(env: Env<'_>, key: &str) -> Option<String> {
    env(key).filter(|v| !v.is_empty())
}

/// `$XDG_CONFIG_HOME/switchboard` or `$HOME/.config/switchboard`, read through `env`.
pub(super) fn config_dir(env: Env<'_>) -> Option<PathBuf> {
    if let Some(x) = non_empty(env, "XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("switchboard"));
    }
    non_empty(env, "HOME").map(|h| PathBuf::from(h).join(".config/switchboard"))
}

/// How strict loading is about the team folders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Folders {
    /// Every team folder must exist: for the commands that start agents, and `config check`.
    #[default]
    Required,
    /// A team folder that does not exist is a warning ([`TeamsConfig::warnings`]), not a
    /// problem: for read-only commands, which never start an agent in it.
    MissingIsWarning,
}

/// Reads and parses the teams file at `path`; see [`parse_str`].
pub(super) fn load_file(
    path: &Path,
    env: Env<'_>,
    folders: Folders,
) -> Result<TeamsConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    parse_str(&text, Some(&origin), env, folders)
}

/// Parses, interpolates and validates teams-file text, collecting every problem. `origin` (the
/// file it came from) anchors relative paths and names the file in errors.
pub(super) fn parse_str(
    text: &str,
    origin: Option<&Path>,
    env: Env<'_>,
    folders: Folders,
) -> Result<TeamsConfig, ConfigError> {
    let origin = origin.map(|o| std::path::absolute(o).unwrap_or_else(|_| o.to_path_buf()));
    let file = match &origin {
        Some(o) => o.display().to_string(),
        None => "<string>".to_string(),
    };
    let mut table = match toml::from_str::<toml::Table>(text) {
        Ok(table) => table,
        Err(err) => {
            let (line, column) = match err.span() {
                Some(span) => {
                    let (line, column) = line_col(text, span.start);
                    (Some(line), Some(column))
                }
                None => (None, None),
            };
            let problems = vec![ConfigProblem {
                path: String::new(),
                line,
                column,
                message: format!("TOML syntax error: {}", err.message().trim()),
            }];
            return Err(ConfigError::Invalid { file, problems });
        }
    };
    let mut report = Report::new(text, folders);
    interpolate::interpolate_table(&mut table, &KeyPath::root(), env, &mut report);
    let mut config = validate::validate(&table, origin.as_deref(), env, &mut report);
    let (problems, warnings) = report.finish();
    if problems.is_empty() {
        config.warnings = warnings;
        Ok(config)
    } else {
        Err(ConfigError::Invalid { file, problems })
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    Cursor::new(text).advance_to(offset)
}

/// Walks `text` forward once, turning byte offsets given in increasing order into 1-based lines
/// and columns (in characters): locating n problems costs one pass over the text, not n.
struct Cursor<'t> {
    text: &'t str,
    offset: usize,
    line: usize,
    column: usize,
}

impl<'t> Cursor<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            offset: 0,
            line: 1,
            column: 1,
        }
    }

    /// Line and column of `offset` (clamped to the text, rounded down to a character), which
    /// must not be before the previous one asked for.
    fn advance_to(&mut self, offset: usize) -> (usize, usize) {
        let mut target = offset.min(self.text.len()).max(self.offset);
        while !self.text.is_char_boundary(target) {
            target -= 1;
        }
        let target = target.max(self.offset);
        for c in self.text[self.offset..target].chars() {
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.offset = target;
        (self.line, self.column)
    }
}

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The path of a value in the file, such as `teams.backend.args[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document itself.
    pub(super) fn root() -> Self {
        Self::default()
    }

    /// The value at `key` of the table at `self`.
    pub(super) fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_string()));
        Self(segments)
    }

    /// Element `index` of the array at `self`.
    pub(super) fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }
}

impl fmt::Display for KeyPath {
    /// Keys joined by `.`, quoted like TOML when they are not bare keys; indexes as `[i]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Collects problems, locating each in the text by the key path it names.
pub(super) struct Report<'t> {
    text: &'t str,
    /// Byte offset of each value (of the key, for tables) in the text.
    offsets: HashMap<KeyPath, usize>,
    /// Values whose interpolation failed: already reported, so later checks skip them.
    poisoned: HashSet<KeyPath>,
    /// Each problem with the byte offset it is located at, and whether it is only a warning;
    /// lines and columns are filled in by [`Report::finish`], in one pass over the text.
    problems: Vec<(ConfigProblem, Option<usize>, bool)>,
    folders: Folders,
}

impl<'t> Report<'t> {
    pub(super) fn new(text: &'t str, folders: Folders) -> Self {
        let mut offsets = HashMap::new();
        // The text already parsed once, so this succeeds; without it problems just lack lines.
        if let Ok(doc) = DeTable::parse(text) {
            index_table(doc.get_ref(), &KeyPath::root(), &mut offsets);
        }
        Self {
            text,
            offsets,
            poisoned: HashSet::new(),
            problems: Vec::new(),
            folders,
        }
    }

    /// Records a problem with the value at `path`. It is located at that value, or at its
    /// nearest ancestor in the text when the value is missing.
    pub(super) fn add(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.push(path, message.into(), false);
    }

    /// Records that the team folder at `path` does not exist: a problem, or only a warning
    /// when loading with [`Folders::MissingIsWarning`]. Returns whether it was only a warning
    /// (then the team is kept).
    pub(super) fn missing_folder(&mut self, path: &KeyPath, message: String) -> bool {
        let warning = self.folders == Folders::MissingIsWarning;
        self.push(path, message, warning);
        warning
    }

    fn push(&mut self, path: &KeyPath, message: String, warning: bool) {
        let mut at = Some(path.clone());
        let mut offset = None;
        while let Some(p) = at {
            if let Some(o) = self.offsets.get(&p) {
                offset = Some(*o);
                break;
            }
            at = p.parent();
        }
        self.problems.push((
            ConfigProblem {
                path: path.to_string(),
                line: None,
                column: None,
                message,
            },
            offset,
            warning,
        ));
    }

    /// Marks the value at `path` as already reported: later checks skip it.
    pub(super) fn poison(&mut self, path: &KeyPath) {
        self.poisoned.insert(path.clone());
    }

    /// Whether the value at `path` was already reported.
    pub(super) fn is_poisoned(&self, path: &KeyPath) -> bool {
        self.poisoned.contains(path)
    }

    /// The problems, then the warnings, each in file order; those without a line last, by key
    /// path.
    pub(super) fn finish(mut self) -> (Vec<ConfigProblem>, Vec<ConfigProblem>) {
        self.problems.sort_by_key(|(_, offset, _)| *offset);
        let mut cursor = Cursor::new(self.text);
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        for (mut problem, offset, warning) in self.problems {
            if let Some(offset) = offset {
                let (line, column) = cursor.advance_to(offset);
                problem.line = Some(line);
                problem.column = Some(column);
            }
            if warning {
                warnings.push(problem);
            } else {
                problems.push(problem);
            }
        }
        for list in [&mut problems, &mut warnings] {
            list.sort_by(|a, b| {
                let key = |p: &ConfigProblem| (p.line.is_none(), p.line, p.column);
                key(a)
                    .cmp(&key(b))
                    .then_with(|| a.path.cmp(&b.path))
                    .then_with(|| a.message.cmp(&b.message))
            });
            list.dedup();
        }
        (problems, warnings)
    }
}

fn index_table(table: &DeTable<'_>, path: &KeyPath, offsets: &mut HashMap<KeyPath, usize>) {
    for (key, value) in table.iter() {
        let path = path.key(key.get_ref());
        let offset = match value.get_ref() {
            // A table's own span covers its whole header; its key is more precise.
            DeValue::Table(_) => key.span().start,
            _ => value.span().start,
        };
        offsets.insert(path.clone(), offset);
        index_value(value.get_ref(), &path, offsets);
    }
}

fn index_value(value: &DeValue<'_>, path: &KeyPath, offsets: &mut HashMap<KeyPath, usize>) {
    match value {
        DeValue::Table(table) => index_table(table, path, offsets),
        DeValue::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                let path = path.index(i);
                offsets.insert(path.clone(), element.span().start);
                index_value(element.get_ref(), &path, offsets);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // "x" is after "bé = " (5 characters, 6 bytes).
        assert_eq!(line_col(text, 12), (2, 6));
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn key_paths_quote_keys_that_are_not_bare() {
        let path = KeyPath::root()
            .key("teams")
            .key("my.team")
            .key("args")
            .index(2);
        assert_eq!(path.to_string(), "teams.\"my.team\".args[2]");
        assert_eq!(KeyPath::root().to_string(), "");
    }
}
