//! Reaching a running `switchboard serve` that serves the same database: commands that act on
//! live agents go through it (its agents, its leases) instead of starting agents in this
//! process. The server announces itself in `server.json` beside the database; requests are
//! plain HTTP/1.1 JSON to its `/api/` routes, over the server's Unix socket (a 0700 folder;
//! the server checks that the peer is the same user), or, when it has none, over TCP with the
//! bearer token.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use switchboard::server::server_file::{self, ServerFile};
use switchboard::{Error, TeamsConfig};

/// Why a call to the server failed.
#[derive(Debug)]
pub enum CallError {
    /// The server could not be reached, or stopped answering mid-call (it died, or the
    /// connection broke): what the request asked may or may not have happened.
    Gone(String),
    /// The server refused the connection (it is stopping, or gone): nothing was sent, so
    /// nothing the request asked happened.
    Refused(String),
    /// The server answered with an error.
    Answer(Error),
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Error {
        match e {
            CallError::Gone(what) | CallError::Refused(what) => Error::Other(what),
            CallError::Answer(e) => e,
        }
    }
}

/// A running server.
#[derive(Debug, Clone)]
pub struct Remote {
    host: String,
    port: u16,
    socket: Option<PathBuf>,
    token: Option<String>,
    pid: u32,
}

impl Remote {
    /// The running server of this database, if there is one (its process is alive).
    pub fn find(config: &TeamsConfig) -> Option<Remote> {
        let file = ServerFile::live_for(&config.database)?;
        let rest = file.url.strip_prefix("http://")?;
        let authority = rest.split('/').next()?;
        let (host, port) = authority.rsplit_once(':')?;
        let token = std::env::var(switchboard::server::TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| config.server.auth_token.clone())
            .or_else(|| server_file::read_token(&config.database));
        Some(Remote {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: port.parse().ok()?,
            socket: file.socket.filter(|p| p.exists()),
            token,
            pid: file.pid,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// POSTs `body` to `/api/{op}` and returns the JSON answer; an error answer becomes an
    /// error with the server's message and exit code.
    pub fn call(&self, op: &str, body: &Value, timeout: Option<Duration>) -> Result<Value, Error> {
        Ok(self.call_raw(op, body, timeout)?)
    }

    /// [`Remote::call`], telling a server that went away apart from an error answer.
    pub fn call_raw(
        &self,
        op: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value, CallError> {
        let fail = |what: String| CallError::Gone(format!("server (pid {}): {what}", self.pid));
        // Nobody took the connection: nothing was sent, so nothing was stored.
        let not_connected = |what: String, e: &std::io::Error| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) {
                CallError::Refused(format!("server (pid {}): {what}", self.pid))
            } else {
                fail(what)
            }
        };
        // Allow for the server's own wait, plus slack.
        let read_timeout = timeout.map(|t| t + Duration::from_secs(30));
        let mut stream: Box<dyn ReadWrite> = match &self.socket {
            Some(path) => {
                let s = UnixStream::connect(path).map_err(|e| {
                    not_connected(format!("cannot connect to {}: {e}", path.display()), &e)
                })?;
                s.set_read_timeout(read_timeout)
                    .map_err(|e| fail(e.to_string()))?;
                Box::new(s)
            }
            None => {
                let addr = (self.host.as_str(), self.port)
                    .to_socket_addrs()
                    .map_err(|e| fail(format!("bad address: {e}")))?
                    .next()
                    .ok_or_else(|| fail("no address".into()))?;
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    .map_err(|e| not_connected(format!("cannot connect to {addr}: {e}"), &e))?;
                s.set_read_timeout(read_timeout)
                    .map_err(|e| fail(e.to_string()))?;
                Box::new(s)
            }
        };
        let payload = body.to_string();
        let host = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut request = format!(
            "POST /api/{op} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            payload.len()
        );
        // The socket needs no token: the server checks that the peer is this user.
        if let (None, Some(t)) = (&self.socket, &self.token) {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&payload);
        stream
            .write_all(request.as_bytes())
            .map_err(|e| fail(format!("cannot send: {e}")))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|e| fail(format!("no answer: {e}")))?;
        if raw.is_empty() {
            return Err(fail("the connection closed without an answer".into()));
        }
        let (status, body) =
            parse_response(&raw).ok_or_else(|| fail("malformed HTTP answer".into()))?;
        if status == 401 {
            return Err(CallError::Answer(Error::Other(format!(
                "server (pid {}) refused the command: its Unix socket was not found, and over \
                 TCP it needs its token ($SWITCHBOARD_TOKEN, [server] auth_token, or \
                 server.token beside the database{})",
                self.pid,
                if self.token.is_some() {
                    "; the token found was not the server's"
                } else {
                    ", which is missing"
                }
            ))));
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            CallError::Answer(Error::Other(format!(
                "server (pid {}): answer is not JSON ({e}), HTTP {status}: {}",
                self.pid,
                String::from_utf8_lossy(body).trim()
            )))
        })?;
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let message = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("request failed")
            .to_string();
        // The same exit code as the command would have had in this process.
        Err(CallError::Answer(
            match v.get("exit_code").and_then(Value::as_i64) {
                Some(code) => Error::from_exit_code(message, code),
                None if status == 404 => Error::NotFound(message),
                None => Error::Other(message),
            },
        ))
    }
}

/// A connection to the server: the Unix socket or TCP.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Splits an HTTP/1.1 answer into status and body (Content-Length or to the end; chunked
/// bodies are decoded).
fn parse_response(raw: &[u8]) -> Option<(u16, &[u8])> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = &raw[head_end + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        // Rare for our server (it sends Content-Length); take the first chunk's data.
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).ok()?.trim(), 16).ok()?;
        return body
            .get(line_end + 2..line_end + 2 + size)
            .map(|b| (status, b));
    }
    Some((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(raw), Some((200, &b"{}"[..])));
        let raw =
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw), Some((400, &b"{}"[..])));
        assert_eq!(parse_response(b"garbage"), None);
    }
}
