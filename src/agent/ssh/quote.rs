//! Quoting for the remote POSIX shell, and the one function that builds the command line an
//! agent runs by on a remote host.
//!
//! OpenSSH joins the words after the destination with spaces and hands the result to the
//! remote user's login shell (`$SHELL -c STRING`). So every word that comes from a team (its
//! path, its env values, the agent's path and arguments) is single-quoted here; the shell
//! code around them is constant. The login shell must be a POSIX shell (sh, dash, bash, zsh,
//! ksh); csh-family shells treat newlines in quotes differently (see docs/remote.md).

use std::fmt;

/// The environment variable that marks an agent started by Switchboard on a remote host; its
/// value is `<owner>/<session id>` (see [`super::launch::Owner`]).
pub const MARKER_VAR: &str = "SWITCHBOARD_REMOTE_AGENT";

/// The first line the remote wrapper prints on stdout before it `exec`s the agent:
/// `SWITCHBOARD-REMOTE pid=<pid> pgid=<pgid> start=<ticks since boot>`.
pub const IDENTITY_PREFIX: &str = "SWITCHBOARD-REMOTE ";

/// The exit status of the remote wrapper when it cannot start the agent (bad folder, bad
/// variable, not a process group leader); its reason is on stderr, prefixed
/// `switchboard-remote:`.
pub const WRAPPER_FAILED: i32 = 125;

/// A value that cannot be passed to a remote shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuoteError {
    /// It holds a NUL byte, which no argv or environment entry can carry.
    Nul {
        /// What the value is (`env value FOO`, `argument 3`, ...).
        what: String,
    },
    /// An environment variable name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    BadName {
        /// The name.
        name: String,
    },
}

impl fmt::Display for QuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuoteError::Nul { what } => write!(f, "{what} holds a NUL byte, which cannot be passed to a remote command"),
            QuoteError::BadName { name } => write!(
                f,
                "environment variable name {name:?} is not valid for a remote shell (letters, digits and _, not starting with a digit)"
            ),
        }
    }
}

impl std::error::Error for QuoteError {}

/// `value` as one word of a POSIX shell: inside single quotes, where nothing is special, with
/// each `'` written as `'\''`. Refuses a NUL byte (`what` names the value in the error).
pub fn quote(value: &str, what: &str) -> Result<String, QuoteError> {
    if value.contains('\0') {
        return Err(QuoteError::Nul {
            what: what.to_string(),
        });
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Ok(out)
}

/// Whether `name` may be exported by a POSIX shell (and is not one of the wrapper's own
/// `_sb_` variables).
pub fn is_env_name(name: &str) -> bool {
    if name.starts_with("_sb_") {
        return false;
    }
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The wrapper run by `/bin/sh` on the remote host. Constant: every value reaches it as a
/// positional parameter (`$1` the folder, `$2` the number of variables, then `NAME=VALUE`
/// words, then the program and its arguments). It enters the folder, reads its identity and
/// starts a watchdog that stops the group when the session's sshd goes, exports the
/// variables, checks that it leads its own process group (sshd starts each session with
/// setsid), prints its identity line, and `exec`s the agent (same pid).
const WRAPPER: &str = r#"fail() { printf 'switchboard-remote: %s\n' "$1" >&2; exit 125; }
cd -- "$1" || fail "cannot enter the team folder $1"
_sb_pg=$$
_sb_st=0
if [ -r /proc/$$/stat ]; then
  read -r _sb_s < /proc/$$/stat
  # After "pid (comm) ": field 3 is the process group, field 20 the start time.
  fields() { _sb_pp=$2; _sb_pg=$3; _sb_st=${20}; }
  set -f
  # shellcheck disable=SC2086
  fields ${_sb_s##*) }
  set +f
  # The watchdog: when the session's sshd goes (the connection broke; the agent's parent
  # changes), the group gets TERM, then KILL: an agent busy in a turn does not notice the end
  # of its input. It ends with the agent, and is in the group a stop signals.
  (
    while read -r l 2>/dev/null < /proc/$$/stat; do
      same() { [ "$2" = "$_sb_pp" ]; }
      set -f
      # shellcheck disable=SC2086
      same ${l##*) } || break
      set +f
      sleep 1
    done
    [ -r /proc/$$/stat ] || exit 0
    kill -s TERM -- "-$$" 2>/dev/null
    sleep 3
    kill -s KILL -- "-$$" 2>/dev/null
  ) < /dev/null > /dev/null 2>&1 &
fi
# The team's variables come after: they cannot change how the fields above are split.
_sb_n=$2
shift 2
while [ "$_sb_n" -gt 0 ]; do
  export "$1" || fail "cannot set the variable ${1%%=*}"
  shift
  _sb_n=$((_sb_n - 1))
done
[ "$_sb_pg" = "$$" ] || fail "not a process group leader (pid $$, group $_sb_pg): cannot be stopped as a group"
printf 'SWITCHBOARD-REMOTE pid=%s pgid=%s start=%s\n' "$$" "$_sb_pg" "$_sb_st"
unset _sb_n _sb_pg _sb_st _sb_s _sb_pp
exec "$@"
"#;

/// The command line (for `ssh DEST -- COMMAND`) that runs `program args` in folder `cwd` on
/// the remote host with the variables `env` added to the session's environment, in its own
/// process group, printing the identity line ([`IDENTITY_PREFIX`]) first. Every value is
/// quoted; a NUL byte or a bad variable name is refused.
pub fn remote_command<'a>(
    cwd: &str,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
    program: &str,
    args: &[String],
) -> Result<String, QuoteError> {
    let mut words = vec![
        "exec".to_string(),
        "/bin/sh".to_string(),
        "-c".to_string(),
        quote(WRAPPER, "the wrapper")?,
        "switchboard-remote".to_string(),
        quote(cwd, "the team path")?,
    ];
    let mut pairs = Vec::new();
    for (name, value) in env {
        if !is_env_name(name) {
            return Err(QuoteError::BadName {
                name: name.to_string(),
            });
        }
        pairs.push(quote(
            &format!("{name}={value}"),
            &format!("the value of env {name}"),
        )?);
    }
    words.push(pairs.len().to_string());
    words.extend(pairs);
    words.push(quote(program, "the agent path")?);
    for (i, arg) in args.iter().enumerate() {
        words.push(quote(arg, &format!("argument {}", i + 1))?);
    }
    Ok(words.join(" "))
}

/// A short script and its arguments as one command line: `exec /bin/sh -c SCRIPT NAME ARGS`,
/// every argument quoted. For the constant helper scripts of this module.
pub fn script_command(script: &str, args: &[&str]) -> Result<String, QuoteError> {
    let mut words = vec![
        "exec".to_string(),
        "/bin/sh".to_string(),
        "-c".to_string(),
        quote(script, "the script")?,
        "switchboard-remote".to_string(),
    ];
    for (i, arg) in args.iter().enumerate() {
        words.push(quote(arg, &format!("argument {}", i + 1))?);
    }
    Ok(words.join(" "))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::disallowed_methods,
        reason = "runs /bin/sh to check the quoting"
    )]
    use super::*;

    /// Runs `command` the way sshd does (`sh -c COMMAND`, leading its own process group) and
    /// returns its stdout.
    fn sh(command: &str) -> Vec<u8> {
        use std::os::unix::process::CommandExt;
        let out = std::process::Command::new("/bin/sh")
            .process_group(0)
            .arg("-c")
            .arg(command)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("run /bin/sh");
        assert!(
            out.status.success(),
            "sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    const HOSTILE: &[&str] = &[
        "",
        " ",
        "two words",
        "it's",
        "'",
        "''",
        "\"",
        "\\",
        "\\'",
        "$(touch /tmp/pwned)",
        "`touch /tmp/pwned`",
        "${HOME}",
        "$HOME",
        "a;b",
        "; rm -rf /",
        "x\ny",
        "\n",
        "a|b&c>d<e",
        "*",
        "~",
        "-n",
        "--",
        "!",
        "#comment",
        "\t\r",
        "é€🦀",
        "'\"$(`;\n",
    ];

    #[test]
    fn quoted_values_reach_the_shell_byte_identical() {
        let words: Vec<String> = HOSTILE.iter().map(|v| quote(v, "v").unwrap()).collect();
        let out = sh(&format!("printf '%s\\0' {}", words.join(" ")));
        let got: Vec<&[u8]> = out.split(|&b| b == 0).collect();
        for (i, want) in HOSTILE.iter().enumerate() {
            assert_eq!(got[i], want.as_bytes(), "value {want:?}");
        }
    }

    #[test]
    fn nul_and_bad_names_are_refused() {
        let e = quote("a\0b", "the value of env X").unwrap_err();
        assert!(
            e.to_string()
                .contains("the value of env X holds a NUL byte"),
            "{e}"
        );
        let e = remote_command("/", [("A;B", "x")], "true", &[]).unwrap_err();
        assert_eq!(e, QuoteError::BadName { name: "A;B".into() });
        assert!(remote_command("/", [("A", "x\0")], "true", &[]).is_err());
        assert!(remote_command("/", [], "true", &["\0".to_string()]).is_err());
        assert!(remote_command("/\0", [], "true", &[]).is_err());
        for good in ["A", "_x", "PATH_2"] {
            assert!(is_env_name(good), "{good}");
        }
        for bad in ["", "2A", "A-B", "A B", "A=B", "é", "_sb_n"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }

    /// A small deterministic generator (xorshift), so the property test needs no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn string(&mut self) -> String {
            const PIECES: &[&str] = &[
                "'", "\"", "\\", "$", "(", ")", "`", ";", "\n", " ", "\t", "&", "|", "<", ">", "*",
                "?", "[", "]", "{", "}", "~", "#", "!", "=", "%", "a", "Z", "0", "é", "🦀",
                "$(id)", "'\\''", "\r", "\x01", "\x7f", "-",
            ];
            let len = (self.next() % 12) as usize;
            (0..len)
                .map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize])
                .collect()
        }
    }

    /// Property: for random hostile values, the built command run by a real shell hands the
    /// program exactly the folder, the variables and the arguments given, and runs nothing else.
    #[test]
    fn remote_command_passes_random_hostile_values_intact() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let dir = tempfile::tempdir().unwrap();
        for round in 0..60 {
            let folder = dir.path().join(format!(
                "d{round} {}",
                rng.string().replace(['/', '\0'], "_")
            ));
            std::fs::create_dir_all(&folder).unwrap();
            let env: Vec<(String, String)> =
                (0..3).map(|i| (format!("V{i}"), rng.string())).collect();
            let args: Vec<String> = (0..4).map(|_| rng.string()).collect();
            // The "agent": prints its folder, its variables and its arguments, NUL-separated.
            let mut all_args = vec![
                "-c".to_string(),
                "printf '%s\\0' \"$PWD\" \"$V0\" \"$V1\" \"$V2\" \"$@\"".to_string(),
                "agent".to_string(),
            ];
            all_args.extend(args.iter().cloned());
            let cmd = remote_command(
                &folder.display().to_string(),
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                "/bin/sh",
                &all_args,
            )
            .unwrap();
            let out = sh(&cmd);
            let text = out.splitn(2, |&b| b == b'\n').collect::<Vec<_>>();
            let identity = String::from_utf8_lossy(text[0]).to_string();
            assert!(identity.starts_with(IDENTITY_PREFIX), "{identity}");
            let got: Vec<&[u8]> = text[1].split(|&b| b == 0).collect();
            assert_eq!(
                got[0],
                folder.display().to_string().as_bytes(),
                "round {round}"
            );
            let got = &got[1..];
            let want: Vec<&str> = env
                .iter()
                .map(|(_, v)| v.as_str())
                .chain(args.iter().map(String::as_str))
                .collect();
            for (i, w) in want.iter().enumerate() {
                assert_eq!(got[i], w.as_bytes(), "round {round}, value {i}: {w:?}");
            }
        }
    }

    #[test]
    fn identity_line_names_a_group_leader() {
        // setsid gives the shell its own group, as sshd does for a session.
        let cmd = remote_command("/", [], "true", &[]).unwrap();
        let out = std::process::Command::new("setsid")
            .args(["-w", "/bin/sh", "-c", &cmd])
            .output()
            .expect("setsid");
        let line = String::from_utf8_lossy(&out.stdout);
        let id = super::super::launch::RemoteIdentity::parse(line.trim()).expect("identity");
        assert_eq!(id.pid, id.pgid);
        assert!(id.start > 0, "{line}");
        // Not a group leader: refused with the reason.
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &format!("/bin/sh -c {}", quote(&cmd, "c").unwrap())])
            .output()
            .expect("sh");
        assert_eq!(out.status.code(), Some(WRAPPER_FAILED));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a process group leader"));
    }
}
