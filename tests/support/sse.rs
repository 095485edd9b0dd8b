//! A blocking client of the server's event stream (`GET /events`, Server-Sent Events over a
//! chunked HTTP/1.1 body), as a browser's `EventSource` would use it: connect, read events,
//! drop the connection, reconnect with `Last-Event-ID`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One event of the stream.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `id:` field.
    pub id: i64,
    /// The `event:` field (the event's type).
    pub event: String,
    /// The `data:` field, parsed.
    pub data: Value,
}

/// An open stream (or a refused request: see [`SseStream::status`]).
pub struct SseStream {
    reader: BufReader<TcpStream>,
    /// The HTTP status.
    pub status: u16,
    /// The headers (lower-case names).
    pub headers: std::collections::HashMap<String, String>,
    /// Body bytes received and not yet split into lines.
    pending: Vec<u8>,
    /// Bytes left in the current chunk.
    chunk_left: usize,
    /// The body ended (last chunk, or the connection closed).
    pub ended: bool,
    /// Comments seen (`: keepalive`, `: connected`).
    pub comments: Vec<String>,
}

impl SseStream {
    /// `GET path` on `authority` with `headers` (read timeout: `within`).
    pub fn open(authority: &str, path: &str, headers: &[(&str, &str)]) -> SseStream {
        let mut stream = TcpStream::connect(authority).expect("connect to the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set a read timeout");
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).expect("send the request");
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader
            .read_line(&mut status_line)
            .expect("read the status line");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {status_line:?}"));
        let mut headers = std::collections::HashMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read a header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        SseStream {
            reader,
            status,
            headers,
            pending: Vec::new(),
            chunk_left: 0,
            ended: false,
            comments: Vec::new(),
        }
    }

    /// The whole body of a refused request (`Content-Length`).
    pub fn body(mut self) -> String {
        let n: usize = self
            .headers
            .get("content-length")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; n];
        self.reader.read_exact(&mut body).expect("read the body");
        String::from_utf8_lossy(&body).into_owned()
    }

    /// More body bytes (chunk framing removed); `false` at the end of the body.
    fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        if self.chunk_left == 0 {
            let mut size = String::new();
            match self.reader.read_line(&mut size) {
                Ok(0) => {
                    self.ended = true;
                    return false;
                }
                Ok(_) => {}
                Err(e) => panic!("reading the event stream: {e}"),
            }
            if size.trim().is_empty() {
                // The CRLF after a chunk's data.
                return true;
            }
            let n = usize::from_str_radix(size.trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
            if n == 0 {
                self.ended = true;
                return false;
            }
            self.chunk_left = n;
        }
        let mut buf = vec![0u8; self.chunk_left.min(64 * 1024)];
        let got = self.reader.read(&mut buf).expect("read a chunk");
        if got == 0 {
            self.ended = true;
            return false;
        }
        self.chunk_left -= got;
        self.pending.extend_from_slice(&buf[..got]);
        true
    }

    /// The next complete line of the body, without its newline; `None` at the end.
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                return Some(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next event (comments are kept in [`SseStream::comments`]); `None` when the stream
    /// ended. Panics after `within` without one.
    pub fn next_event(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + within;
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        loop {
            assert!(
                Instant::now() < deadline,
                "no event within {within:?} (comments so far: {:?})",
                self.comments
            );
            let line = self.line()?;
            if line.is_empty() {
                if let Some(id) = id.take() {
                    let data = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event {id}: data is not JSON ({e}): {data}"));
                    return Some(SseEvent {
                        id,
                        event: std::mem::take(&mut event),
                        data,
                    });
                }
                continue;
            }
            if let Some(c) = line.strip_prefix(':') {
                self.comments.push(c.trim().to_string());
                continue;
            }
            let (field, value) = line.split_once(": ").unwrap_or((line.as_str(), ""));
            match field {
                "id" => id = Some(value.parse().expect("a numeric event id")),
                "event" => event = value.to_string(),
                "data" => data.push_str(value),
                other => panic!("unexpected SSE field {other:?}"),
            }
        }
    }

    /// Reads until the comment `text` (a line `: text`); `false` if the body ends or
    /// `within` passes first (an event meanwhile is a failure: the stream was to be idle).
    pub fn wait_comment(&mut self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let Some(line) = self.line() else {
                return false;
            };
            if let Some(c) = line.strip_prefix(':') {
                self.comments.push(c.trim().to_string());
                if c.trim() == text {
                    return true;
                }
            } else {
                assert!(line.is_empty(), "an event on an idle stream: {line}");
            }
        }
        false
    }

    /// Waits for the end of the body (after the server ends the stream); `true` when it ended
    /// cleanly (the last chunk) or the connection closed, within `within`.
    pub fn wait_end(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.line().is_none() {
                return true;
            }
        }
        false
    }
}
