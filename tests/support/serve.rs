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
}

impl ServeProcess {
    /// Starts `serve --http 127.0.0.1:0` in `env` and waits (bounded) for its `server.json`.
    pub fn start(env: &TestEnv) -> Self {
        let child = env.spawn(&["serve", "--http", "127.0.0.1:0"]);
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
        ServeProcess {
            child,
            url: url.unwrap_or_default(),
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

    /// `GET path` on the server: (HTTP status, body parsed as JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        http_get(&self.authority(), path)
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

/// A plain HTTP/1.1 GET to `authority` (`HOST:PORT`): status and the body as JSON.
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
