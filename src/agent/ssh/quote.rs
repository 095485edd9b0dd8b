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
    !name.starts_with("_sb_") && crate::config::is_valid_env_name(name)
}

/// The wrapper run by `/bin/sh` on the remote host. Constant: every value reaches it as a
/// positional parameter (`$1` the folder, then the program and its arguments) or on its stdin
/// (the variables, see [`env_input`]): no variable's value is ever in an argv, here (the
/// local `ssh`'s command line, readable by every local user in /proc) or there. It enters the
/// folder, reads its identity and starts a watchdog that stops the group when the session's
/// sshd goes, reads the variables from stdin (one byte at a time, as `read` does on a pipe:
/// the agent's own input that follows is left for it) and exports them, checks that it leads
/// its own process group (sshd starts each session with setsid), prints its identity line,
/// and `exec`s the agent (same pid).
const WRAPPER: &str = r#"fail() { printf 'switchboard-remote: %s\n' "$1" >&2; exit 125; }
cd -- "$1" || fail "cannot enter the team folder $1"
shift
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
# The team's variables come after: they cannot change how the fields above are split. On
# stdin: their number, then NAME=VALUE lines, `\` and newline written `\\` and `\n`.
IFS= read -r _sb_n || fail "no environment on stdin"
case $_sb_n in ''|*[!0-9]*) fail "a bad environment header on stdin";; esac
while [ "$_sb_n" -gt 0 ]; do
  IFS= read -r _sb_l || fail "the environment on stdin ended early"
  _sb_v=$(printf '%bx' "${_sb_l#*=}")
  export "${_sb_l%%=*}=${_sb_v%x}" || fail "cannot set the variable ${_sb_l%%=*}"
  _sb_n=$((_sb_n - 1))
done
[ "$_sb_pg" = "$$" ] || fail "not a process group leader (pid $$, group $_sb_pg): cannot be stopped as a group"
printf 'SWITCHBOARD-REMOTE pid=%s pgid=%s start=%s\n' "$$" "$_sb_pg" "$_sb_st"
unset _sb_n _sb_pg _sb_st _sb_s _sb_pp _sb_l _sb_v
exec "$@"
"#;

/// How an agent is started on a remote host: the command line (for `ssh DEST -- COMMAND`)
/// and what to write to its stdin first (the variables), before the agent's own input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    /// The command line: the constant wrapper, the folder, the program and its arguments.
    pub command: String,
    /// The variables, for the wrapper's stdin (see [`env_input`]), without the final newline.
    pub input: String,
}

/// The command (for `ssh DEST -- COMMAND`) that runs `program args` in folder `cwd` on the
/// remote host with the variables `env` added to the session's environment, in its own
/// process group, printing the identity line ([`IDENTITY_PREFIX`]) first. Every value is
/// quoted; the variables go to its stdin ([`RemoteCommand::input`], written before anything
/// else), never into the command line. A NUL byte or a bad variable name is refused.
pub fn remote_command<'a>(
    cwd: &str,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
    program: &str,
    args: &[String],
) -> Result<RemoteCommand, QuoteError> {
    let mut words = vec![
        "exec".to_string(),
        "/bin/sh".to_string(),
        "-c".to_string(),
        quote(WRAPPER, "the wrapper")?,
        "switchboard-remote".to_string(),
        quote(cwd, "the team path")?,
    ];
    words.push(quote(program, "the agent path")?);
    for (i, arg) in args.iter().enumerate() {
        words.push(quote(arg, &format!("argument {}", i + 1))?);
    }
    Ok(RemoteCommand {
        command: words.join(" "),
        input: env_input(env)?,
    })
}

/// The variables as the wrapper reads them from stdin: their number on the first line, then
/// one `NAME=VALUE` line each, with `\` written `\\` and a newline `\n` (the wrapper decodes
/// them with `printf %b`, a builtin). No final newline.
pub fn env_input<'a>(
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, QuoteError> {
    let mut lines = Vec::new();
    for (name, value) in env {
        if !is_env_name(name) {
            return Err(QuoteError::BadName {
                name: name.to_string(),
            });
        }
        if value.contains('\0') {
            return Err(QuoteError::Nul {
                what: format!("the value of env {name}"),
            });
        }
        lines.push(format!(
            "{name}={}",
            value.replace('\\', "\\\\").replace('\n', "\\n")
        ));
    }
    lines.insert(0, lines.len().to_string());
    Ok(lines.join("\n"))
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

    /// Runs `command` the way sshd does (`sh -c COMMAND`, leading its own process group) with
    /// `input` on stdin and returns its stdout.
    fn sh_with(command: &str, input: &str) -> Vec<u8> {
        use std::io::Write;
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("/bin/sh")
            .process_group(0)
            .arg("-c")
            .arg(command)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run /bin/sh");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
        drop(stdin);
        let out = child.wait_with_output().expect("wait /bin/sh");
        assert!(
            out.status.success(),
            "sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn sh(command: &str) -> Vec<u8> {
        sh_with(command, "")
    }

    /// Runs a remote command (its variables on stdin, then `rest`).
    fn run(cmd: &RemoteCommand, rest: &str) -> Vec<u8> {
        sh_with(&cmd.command, &format!("{}\n{rest}", cmd.input))
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
    /// program exactly the folder, the variables (from stdin) and the arguments given, then
    /// its own input untouched, and runs nothing else.
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
                "printf '%s\\0' \"$PWD\" \"$V0\" \"$V1\" \"$V2\" \"$@\"; exec cat".to_string(),
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
            // The agent's own input follows the variables on stdin: it gets all of it.
            let input = format!("{}\n{}\n", rng.string(), rng.string());
            let out = run(&cmd, &input);
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
            assert_eq!(
                got[want.len()],
                input.as_bytes(),
                "round {round}: the input"
            );
            assert!(
                !cmd.command.contains("V0="),
                "no variable in the command line"
            );
        }
    }

    #[test]
    fn identity_line_names_a_group_leader() {
        // setsid gives the shell its own group, as sshd does for a session.
        let cmd = remote_command("/", [], "true", &[]).unwrap();
        assert_eq!(cmd.input, "0");
        let cmd = cmd.command;
        // The variables on stdin, as the local ssh writes them.
        let with_input = |program: &str, args: &[&str]| {
            use std::io::Write;
            let mut child = std::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn");
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"0\n").expect("write");
            drop(stdin);
            child.wait_with_output().expect("wait")
        };
        let out = with_input("setsid", &["-w", "/bin/sh", "-c", &cmd]);
        let line = String::from_utf8_lossy(&out.stdout);
        let id = super::super::launch::RemoteIdentity::parse(line.trim()).expect("identity");
        assert_eq!(id.pid, id.pgid);
        assert!(id.start > 0, "{line}");
        // Not a group leader: refused with the reason.
        let out = with_input(
            "/bin/sh",
            &["-c", &format!("/bin/sh -c {}", quote(&cmd, "c").unwrap())],
        );
        assert_eq!(out.status.code(), Some(WRAPPER_FAILED));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a process group leader"));
    }
}
