//! The errors of the SSH transport, and how ssh's own failures (exit status 255 and what it
//! printed) are told apart: host key changed or unknown, login refused, connection lost.

use std::time::Duration;

use super::QuoteError;

/// Errors of the SSH transport. Each names the host and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The host key of the remote host differs from the one in known_hosts.
    #[error(
        "the host key of {host} has CHANGED (refused: someone may be intercepting the \
         connection, or the host was reinstalled). If the change is expected, remove the old key \
         with `ssh-keygen -R {host}` (or from the known_hosts file ssh names), then connect once \
         with `ssh {host}` to check and accept the new one. ssh said: {detail}"
    )]
    HostKeyChanged {
        /// The destination.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// The remote host is not in known_hosts (BatchMode never asks).
    #[error(
        "the host key of {host} is not known (refused: Switchboard never accepts a host key \
         without asking you). Connect once with `ssh {host}` and check the fingerprint, or add \
         the key to known_hosts. ssh said: {detail}"
    )]
    HostKeyUnknown {
        /// The destination.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// Authentication failed (no usable key, no agent; BatchMode never asks a password).
    #[error(
        "cannot log in to {host}: {detail}. Switchboard connects without prompts: use a key \
         (ssh-agent, or IdentityFile in ~/.ssh/config or `ssh_options`) that `ssh {host} true` \
         accepts without asking"
    )]
    Auth {
        /// The destination.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// The host cannot be reached, or the connection broke.
    #[error(
        "lost the connection to {host}: {detail}. Check that the host is up and reachable \
         (`ssh {host} true`); the next tell reconnects"
    )]
    ConnectionLost {
        /// The destination.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// A value cannot be passed to the remote shell.
    #[error("{host}: {source}")]
    Quote {
        /// The destination.
        host: String,
        /// Which value, and why.
        #[source]
        source: QuoteError,
    },
    /// A remote command failed.
    #[error("on {host}: {what} failed: {detail}")]
    Remote {
        /// The destination.
        host: String,
        /// What was being done.
        what: String,
        /// Exit status and output.
        detail: String,
    },
    /// A remote command did not end in time.
    #[error("on {host}: {what} did not end within {}", humantime::format_duration(*timeout))]
    Timeout {
        /// The destination.
        host: String,
        /// What was being done.
        what: String,
        /// The bound.
        timeout: Duration,
    },
    /// Something local: the socket folder, running ssh.
    #[error("{what}: {source}")]
    Local {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SshError {
    /// The error for an ssh run that failed with `status` (255 is ssh's own failure) and
    /// `stderr`, doing `what`: host key, login and connection problems get their own variant
    /// (with the fix); anything else is the remote command's failure.
    pub fn classify(host: &str, what: &str, status: Option<i32>, stderr: &str) -> SshError {
        let detail = last_lines(stderr);
        let host = host.to_string();
        let has = |s: &str| stderr.contains(s);
        if has("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || has("Host key for") && has("has changed")
        {
            return SshError::HostKeyChanged { host, detail };
        }
        if has("Host key verification failed")
            || has("No ED25519 host key is known")
            || has("host key is known")
        {
            return SshError::HostKeyUnknown { host, detail };
        }
        if has("Permission denied (") || has("Too many authentication failures") {
            return SshError::Auth { host, detail };
        }
        if status == Some(255) || status.is_none() {
            return SshError::ConnectionLost { host, detail };
        }
        SshError::Remote {
            host,
            what: what.to_string(),
            detail: format!("exit status {}: {detail}", status.unwrap_or(-1)),
        }
    }

    /// Whether it says the connection is gone (the tell fails; the next one reconnects).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, SshError::ConnectionLost { .. })
    }
}

/// The last few non-empty lines of ssh's stderr, without its banners.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("@@@") && !l.starts_with("Warning: Permanently")
        })
        .collect();
    let start = lines.len().saturating_sub(3);
    let text = lines[start..].join(" / ");
    if text.is_empty() {
        "no message".to_string()
    } else {
        crate::redact::text(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_failures_are_named_with_the_fix() {
        let changed = "@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\n";
        let e = SshError::classify("gpu", "x", Some(255), changed);
        assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e}");
        assert!(e.to_string().contains("ssh-keygen -R gpu"), "{e}");
        let e = SshError::classify("gpu", "x", Some(255), "Host key verification failed.\n");
        assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e}");
        let e = SshError::classify(
            "gpu",
            "x",
            Some(255),
            "deploy@gpu: Permission denied (publickey).\n",
        );
        assert!(matches!(e, SshError::Auth { .. }), "{e}");
        let e = SshError::classify(
            "gpu",
            "x",
            Some(255),
            "Connection closed by 10.0.0.1 port 22\n",
        );
        assert!(
            e.is_connection_lost() && e.to_string().contains("gpu"),
            "{e}"
        );
        let e = SshError::classify("gpu", "listing", Some(2), "ls: no such file\n");
        assert!(matches!(e, SshError::Remote { .. }), "{e}");
    }
}
