//! A real `switchboard serve --http` process for tests, and plain HTTP GETs to it.

use std::io::{Read, Write};
use std::process::{Child, ExitStatus};
use std::time::Duration;

use serde_json::Value;

use super::{poll_until, send_signal, wait_timeout, TestEnv};

/// A running `switchboard serve --http ADDR`, killed on drop.
pub struct ServeProcess {
    /// The server process.
    pub child: Child,
    /// Its MCP endpoint, from `server.json`.
    pub url: String,
    /// Where its token is (`server.token` beside the database).
    pub token_file: std::path::PathBuf,
    /// The token, read from `token_file` once the server announced itself (none when the
    /// server needs none).
    token: Option<String>,
}

impl ServeProcess {
    /// Starts `serve --http 127.0.0.1:0` in `env` and waits (bounded) for its `server.json`.
    pub fn start(env: &TestEnv) -> Self {
        Self::start_with(env, env.spawn(&["serve", "--http", "127.0.0.1:0"]))
    }

    /// Waits (bounded) for the `server.json` of an already spawned server.
    pub fn start_with(env: &TestEnv, child: Child) -> Self {
        let file = env.db_path().with_file_name("server.json");
        let mut url = None;
        let announced = poll_until(Duration::from_secs(20), || {
            url = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["url"].as_str().map(str::to_string));
            url.is_some()
        });
        assert!(
            announced,
            "the server did not announce itself in {}",
            file.display()
        );
        let token_file = env.db_path().with_file_name("server.token");
        let token = std::fs::read_to_string(&token_file)
            .ok()
            .map(|t| t.trim().to_string());
        ServeProcess {
            child,
            url: url.unwrap_or_default(),
            token_file,
            token,
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `HOST:PORT` of the server.
    pub fn authority(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// The port of the server.
    pub fn port(&self) -> u16 {
        self.authority()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the server's URL")
    }

    /// `GET path` on the server with its token, as a client would: (HTTP status, body parsed
    /// as JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        let r = http(&self.authority(), "GET", path, &headers, "");
        let body =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body));
        (r.status, body)
    }

    /// The server's bearer token, read where a client reads it: `server.token` beside the
    /// database.
    pub fn token(&self) -> String {
        self.token
            .clone()
            .unwrap_or_else(|| panic!("no token in {}", self.token_file.display()))
    }

    /// The server's announcement (`server.json`).
    pub fn announcement(&self) -> Value {
        let file = self.token_file.with_file_name("server.json");
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read server.json"))
            .expect("server.json is JSON")
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn stop(mut self) -> ExitStatus {
        send_signal(self.child.id(), libc::SIGTERM);
        let status = wait_timeout(&mut self.child, Duration::from_secs(30))
            .expect("the server exits on SIGTERM");
        let _ = self.child.wait();
        status
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status, headers (lower-case names), body.
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: std::collections::HashMap<String, String>,
    /// The body (as text).
    pub body: String,
}

impl Reply {
    /// A header's value (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One HTTP/1.1 request to `authority` (`HOST:PORT`), `Connection: close`, read to the end.
pub fn http(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set a read timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(req.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    parse_reply(&raw)
}

/// Parses a whole HTTP/1.1 answer (`Content-Length` or chunked bodies).
pub fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let headers: std::collections::HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"));
    let body = if chunked {
        let mut whole = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            whole.push_str(&after[..n]);
            rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
        }
        whole
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// A plain HTTP/1.1 GET to `authority` (`HOST:PORT`), no token: status and the body as JSON.
pub fn http_get(authority: &str, path: &str) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, body)
}
