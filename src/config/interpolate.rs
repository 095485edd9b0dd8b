//! `${VAR}` and `${VAR:-default}` in the string values of the teams file.
//!
//! Runs over every string value at any depth before any other check, except the team fields
//! shown to other teams (`description`), where `${VAR}` is refused. `$${` is a literal `${`;
//! a `$` not followed by `{` is kept as is. `${VAR:-default}` uses the default when `VAR` is
//! unset or empty (as in bash); defaults may hold expansions themselves, evaluated only when used.
//! An unset `${VAR}` without default, or a malformed `${`, is a problem at the value's key path,
//! and the value is poisoned so later checks do not report it again. So is a string that holds a
//! NUL character (written `\u0000`, or from a variable): no argument, environment variable or path
//! can carry one.

use super::load::{Env, KeyPath, Report};

/// Team fields where `${VAR}` is refused: they are shown to every other team (`team_teams`),
/// so an expansion there would hand the variable's value (an API key, say) to any caller.
/// `$${` still writes a literal `${`.
pub(super) const NO_ENV_TEAM_FIELDS: [&str; 1] = ["description"];

/// Interpolates every string in `table` (recursively), reporting problems at their key paths.
/// The fields of [`NO_ENV_TEAM_FIELDS`] only get `$${` turned into `${`; a `${VAR}` there is a
/// problem.
pub(super) fn interpolate_table(
    table: &mut toml::Table,
    path: &KeyPath,
    env: Env<'_>,
    report: &mut Report<'_>,
) {
    for (key, value) in table.iter_mut() {
        let here = path.key(key);
        match value {
            toml::Value::Table(teams) if *path == KeyPath::root() && key == "teams" => {
                for (team, entry) in teams.iter_mut() {
                    let team_path = here.key(team);
                    let toml::Value::Table(fields) = entry else {
                        interpolate_value(entry, &team_path, env, report);
                        continue;
                    };
                    for (field, v) in fields.iter_mut() {
                        let field_path = team_path.key(field);
                        if NO_ENV_TEAM_FIELDS.contains(&field.as_str()) {
                            literal_value(v, &field_path, env, report);
                        } else {
                            interpolate_value(v, &field_path, env, report);
                        }
                    }
                }
            }
            _ => interpolate_value(value, &here, env, report),
        }
    }
}

/// A value where no variable is expanded: `$${` becomes `${`; a `${VAR}` is a problem (a
/// malformed `${` gets the usual message).
fn literal_value(value: &mut toml::Value, path: &KeyPath, _env: Env<'_>, report: &mut Report) {
    let toml::Value::String(s) = value else {
        return interpolate_value(value, path, &|_| None, report);
    };
    let used = std::cell::Cell::new(false);
    let probe = |_: &str| {
        used.set(true);
        Some(String::new())
    };
    match expand(s, &probe) {
        Ok(_) if used.get() => {
            report.add(
                path,
                "${VAR} is not expanded here: this text is shown to every other team, so it \
                 must not carry an environment variable's value (write $${ for a literal \"${\")"
                    .to_string(),
            );
            report.poison(path);
        }
        Ok(literal) if literal.contains('\0') => nul_problem(path, report),
        Ok(literal) => *s = literal,
        Err(messages) => {
            for message in messages {
                report.add(path, message);
            }
            report.poison(path);
        }
    }
}

/// Every string may end up in an argument, an environment variable, a path or a prompt, none of
/// which can hold a NUL: refused where its key path is known.
fn nul_problem(path: &KeyPath, report: &mut Report) {
    report.add(
        path,
        "must not contain a NUL character (\\u0000): it cannot be passed to a program, its \
         environment or a file path",
    );
    report.poison(path);
}

fn interpolate_value(value: &mut toml::Value, path: &KeyPath, env: Env<'_>, report: &mut Report) {
    match value {
        toml::Value::String(s) => match expand(s, env) {
            Ok(expanded) if expanded.contains('\0') => nul_problem(path, report),
            Ok(expanded) => *s = expanded,
            Err(messages) => {
                for message in messages {
                    report.add(path, message);
                }
                report.poison(path);
            }
        },
        toml::Value::Array(array) => {
            for (i, element) in array.iter_mut().enumerate() {
                interpolate_value(element, &path.index(i), env, report);
            }
        }
        toml::Value::Table(table) => interpolate_table(table, path, env, report),
        _ => {}
    }
}

/// Expands `text`, or returns every problem found in it.
pub(super) fn expand(text: &str, env: Env<'_>) -> Result<String, Vec<String>> {
    let mut expander = Expander {
        src: text,
        pos: 0,
        depth: 0,
        env,
        errors: Vec::new(),
    };
    match expander.text(false) {
        Ok(out) if expander.errors.is_empty() => Ok(out),
        Ok(_) => Err(expander.errors),
        Err(fatal) => {
            expander.errors.push(fatal);
            Err(expander.errors)
        }
    }
}

/// Deepest nesting of `${A:-${B:-...}}` accepted (the parser recurses once per level).
const MAX_DEPTH: usize = 16;

struct Expander<'a, 'e> {
    src: &'a str,
    /// Byte offset of the next character to read.
    pos: usize,
    /// How many `${...:-` defaults enclose the current position.
    depth: usize,
    env: Env<'e>,
    /// Problems that do not stop the expansion (unset variables).
    errors: Vec<String>,
}

impl Expander<'_, '_> {
    fn rest(&self) -> &str {
        self.src.get(self.pos..).unwrap_or("")
    }

    /// Reads text up to the end, or (inside a default) up to an unmatched `}`.
    fn text(&mut self, in_default: bool) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let rest = self.rest();
            if rest.is_empty() || (in_default && rest.starts_with('}')) {
                return Ok(out);
            }
            if rest.starts_with("$${") {
                out.push_str("${");
                self.pos += 3;
            } else if rest.starts_with("${") {
                self.pos += 2;
                let value = self.expansion()?;
                out.push_str(&value);
            } else if let Some(c) = rest.chars().next() {
                out.push(c);
                self.pos += c.len_utf8();
            }
        }
    }

    /// Reads what follows a `${`: `NAME}` or `NAME:-default}`.
    fn expansion(&mut self) -> Result<String, String> {
        let start = self.pos - 2;
        let rest = self.rest();
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..name_len].to_string();
        self.pos += name_len;
        let after = self.rest();
        if after.is_empty() {
            return Err(self.unclosed(start));
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(match self.src[start..].find('}') {
                Some(end) => format!(
                    "invalid variable name in {:?}: names are letters, digits and \"_\", \
                     not starting with a digit",
                    &self.src[start..start + end + 1]
                ),
                None => self.unclosed(start),
            });
        }
        if after.starts_with('}') {
            self.pos += 1;
            return Ok(match (self.env)(&name) {
                Some(value) => value,
                None => {
                    self.errors.push(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} \
                         to give a default)"
                    ));
                    String::new()
                }
            });
        }
        if after.starts_with(":-") {
            self.pos += 2;
            if self.depth >= MAX_DEPTH {
                return Err(format!(
                    "defaults nested more than {MAX_DEPTH} deep in {:?}",
                    self.src.chars().take(40).collect::<String>()
                ));
            }
            let errors_before = self.errors.len();
            self.depth += 1;
            let default = self.text(true);
            self.depth -= 1;
            let default = default?;
            if !self.rest().starts_with('}') {
                return Err(self.unclosed(start));
            }
            self.pos += 1;
            return Ok(match (self.env)(&name).filter(|v| !v.is_empty()) {
                Some(value) => {
                    // The default is not used: problems inside it do not count.
                    self.errors.truncate(errors_before);
                    value
                }
                None => default,
            });
        }
        let end = self.src[start..]
            .find('}')
            .map_or(self.src.len(), |e| start + e + 1);
        Err(format!(
            "unsupported expansion {:?}: write ${{{name}}} or ${{{name}:-default}} \
             (and $${{ for a literal \"${{\")",
            &self.src[start..end]
        ))
    }

    fn unclosed(&self, start: usize) -> String {
        let snippet: String = self.src[start..].chars().take(40).collect();
        format!(
            "unclosed \"${{\" in {snippet:?}: expected \"}}\" (write $${{ for a literal \"${{\")"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(key: &str) -> Option<String> {
        match key {
            "HOME" => Some("/home/u".into()),
            "EMPTY" => Some(String::new()),
            "NESTED" => Some("${HOME}".into()),
            _ => None,
        }
    }

    fn ok(text: &str) -> String {
        match expand(text, &env) {
            Ok(s) => s,
            Err(e) => panic!("{text:?} should expand, got {e:?}"),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        match expand(text, &env) {
            Ok(s) => panic!("{text:?} should fail, got {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn expands_variables_and_defaults() {
        assert_eq!(ok("plain $ text $HOME"), "plain $ text $HOME");
        assert_eq!(ok("${HOME}/x"), "/home/u/x");
        assert_eq!(ok("a${HOME}b${HOME}c"), "a/home/ub/home/uc");
        assert_eq!(ok("${MISSING:-dflt}"), "dflt");
        assert_eq!(ok("${EMPTY:-dflt}"), "dflt");
        assert_eq!(ok("${EMPTY}"), "");
        assert_eq!(ok("${HOME:-dflt}"), "/home/u");
        assert_eq!(ok("${MISSING:-}"), "");
        assert_eq!(ok("${MISSING:-${HOME}/p}"), "/home/u/p");
        assert_eq!(ok("${MISSING:-a-b c:d}"), "a-b c:d");
        assert_eq!(ok("é${HOME}ü"), "é/home/uü");
        let nested = format!("{}x{}", "${A:-".repeat(16), "}".repeat(16));
        assert_eq!(ok(&nested), "x");
    }

    #[test]
    fn values_are_not_expanded_twice() {
        assert_eq!(ok("${NESTED}"), "${HOME}");
    }

    #[test]
    fn dollar_dollar_brace_is_a_literal() {
        assert_eq!(ok("$${HOME}"), "${HOME}");
        assert_eq!(ok("$$"), "$$");
        assert_eq!(ok("${MISSING:-$${x}}"), "${x}");
    }

    #[test]
    fn unused_defaults_are_not_checked() {
        assert_eq!(ok("${HOME:-${MISSING}}"), "/home/u");
    }

    #[test]
    fn reports_every_unset_variable() {
        let e = errors("${A}/${B}");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("A is not set"), "{e:?}");
        assert!(e[1].contains("B is not set"), "{e:?}");
        assert!(errors("${MISSING:-${ALSO}}")[0].contains("ALSO"));
    }

    #[test]
    fn reports_malformed_expansions() {
        let deep = "${A:-".repeat(10_000);
        for (text, wanted) in [
            ("${HOME", "unclosed"),
            ("${", "unclosed"),
            ("${HOME:-x", "unclosed"),
            ("${1X}", "invalid variable name"),
            ("${}", "invalid variable name"),
            ("${A B}", "unsupported expansion"),
            ("${A:x}", "unsupported expansion"),
            ("${A-x}", "unsupported expansion"),
            (deep.as_str(), "nested more than"),
        ] {
            let e = errors(text);
            assert!(e.iter().any(|m| m.contains(wanted)), "{text:?}: {e:?}");
        }
    }
}
