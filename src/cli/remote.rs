//! Reaching a running `switchboard serve` that serves the same database: commands that act on
//! live agents go through it (its agents, its leases) instead of starting agents in this
//! process. The server announces itself in `server.json` beside the database; requests are
//! plain HTTP/1.1 JSON to its `/api/` routes, over the server's Unix socket (a 0700 folder;
//! the server checks that the peer is the same user), or, when it has none, over TCP with the
//! bearer token.
//!
//! [`Remote::events`] opens the server's event stream (`GET /events`, Server-Sent Events) over
//! the same channel, asynchronously, for `watch` and `tell --follow`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard::events::Event;
use switchboard::server::api_types::Op;
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

    /// POSTs `request` to `/api/{op}` and returns the answer; an error answer becomes an
    /// error with the server's message and exit code.
    pub fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: Op,
        request: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp, Error> {
        Ok(self.call_raw(op, request, timeout)?)
    }

    /// [`Remote::call`], telling a server that went away apart from an error answer.
    pub fn call_raw<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: Op,
        request: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp, CallError> {
        let payload = serde_json::to_string(request)
            .map_err(|e| CallError::Answer(Error::Other(format!("cannot send {op}: {e}"))))?;
        let answer = self.post(op, &payload, timeout)?;
        serde_json::from_value(answer).map_err(|e| {
            CallError::Answer(Error::Other(format!(
                "server (pid {}): unexpected answer to {op}: {e}",
                self.pid
            )))
        })
    }

    /// The server went away or answered nonsense: `what` happened.
    fn gone(&self, what: String) -> CallError {
        CallError::Gone(format!("server (pid {}): {what}", self.pid))
    }

    /// A connection that failed with `e`: refused (nobody took it, so nothing was sent and
    /// nothing stored) or gone.
    fn not_connected(&self, what: String, e: &std::io::Error) -> CallError {
        if matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        ) {
            CallError::Refused(format!("server (pid {}): {what}", self.pid))
        } else {
            self.gone(what)
        }
    }

    /// POSTs the JSON `payload` to `/api/{op}`: the JSON answer, or why there is none.
    fn post(&self, op: Op, payload: &str, timeout: Option<Duration>) -> Result<Value, CallError> {
        let fail = |what: String| self.gone(what);
        let not_connected = |what: String, e: &std::io::Error| self.not_connected(what, e);
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
        let host = self.host_header();
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
        request.push_str(payload);
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
        self.answer(status, body)
    }

    /// The `Host` header's value.
    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// An answer of the server: its JSON when it is a success, else the error it says (with
    /// the exit code the command would have had in this process).
    fn answer(&self, status: u16, body: &[u8]) -> Result<Value, CallError> {
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
        // An API error is an `ErrorAnswer`; the listener's own refusals may lack the code.
        let failure: Failure = serde_json::from_value(v).unwrap_or_default();
        let message = failure
            .error
            .unwrap_or_else(|| "request failed".to_string());
        // The same exit code as the command would have had in this process.
        Err(CallError::Answer(match failure.exit_code {
            Some(code) => Error::from_exit_code(message, code),
            None if status == 404 => Error::NotFound(message),
            None => Error::Other(message),
        }))
    }
}

impl Remote {
    /// Opens the server's event stream: `GET /events?{query}` from the events after `after`
    /// (sent as `Last-Event-ID`). An error answer (a bad filter, say) is
    /// [`CallError::Answer`].
    pub async fn events(&self, query: &str, after: i64) -> Result<EventStream, CallError> {
        use tokio::io::AsyncWriteExt;
        let fail = |what: String| self.gone(what);
        let refused = |what: String, e: &std::io::Error| self.not_connected(what, e);
        let connect = async {
            let io: Box<dyn AsyncIo> = match &self.socket {
                Some(path) => {
                    Box::new(tokio::net::UnixStream::connect(path).await.map_err(|e| {
                        refused(format!("cannot connect to {}: {e}", path.display()), &e)
                    })?)
                }
                None => {
                    let addr = (self.host.as_str(), self.port);
                    Box::new(
                        tokio::net::TcpStream::connect(addr)
                            .await
                            .map_err(|e| refused(format!("cannot connect: {e}"), &e))?,
                    )
                }
            };
            Ok::<_, CallError>(io)
        };
        let mut io = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| fail("no connection within 5s".into()))??;
        let path = if query.is_empty() {
            "/events".to_string()
        } else {
            format!("/events?{query}")
        };
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\
             Last-Event-ID: {after}\r\nConnection: close\r\n",
            self.host_header()
        );
        if let (None, Some(t)) = (&self.socket, &self.token) {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        request.push_str("\r\n");
        io.write_all(request.as_bytes())
            .await
            .map_err(|e| fail(format!("cannot send: {e}")))?;
        let mut stream = EventStream {
            io,
            sse: SseDecoder::default(),
            pending: std::collections::VecDeque::new(),
            pid: self.pid,
        };
        // The head, then (for an error) the whole answer.
        let status = loop {
            if let Some(status) = stream.sse.status() {
                break status;
            }
            if !stream.fill().await? {
                return Err(fail("the connection closed without an answer".into()));
            }
        };
        if status != 200 {
            while stream.fill().await? {}
            let raw = std::mem::take(&mut stream.sse.raw_answer);
            let (status, body) =
                parse_response(&raw).ok_or_else(|| fail("malformed HTTP answer".into()))?;
            return match self.answer(status, body) {
                Ok(_) => Err(fail(format!("unexpected answer, HTTP {status}"))),
                Err(e) => Err(e),
            };
        }
        Ok(stream)
    }
}

/// An open event stream of the server.
pub struct EventStream {
    io: Box<dyn AsyncIo>,
    sse: SseDecoder,
    pending: std::collections::VecDeque<Event>,
    pid: u32,
}

impl EventStream {
    /// The next event; `None` when the server ended the stream (it is stopping). The server
    /// sends a keepalive every 15 s: nothing for a minute means it is gone (an error).
    pub async fn next(&mut self) -> Result<Option<Event>, CallError> {
        loop {
            // Events decoded already (the read that brought the head may have brought some).
            let decoded = self
                .sse
                .events()
                .map_err(|e| CallError::Gone(format!("server (pid {}): {e}", self.pid)))?;
            self.pending.extend(decoded);
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            let more = tokio::time::timeout(Duration::from_secs(60), self.fill())
                .await
                .map_err(|_| {
                    CallError::Gone(format!(
                        "server (pid {}): nothing on the event stream for 60s",
                        self.pid
                    ))
                })??;
            let events = self
                .sse
                .events()
                .map_err(|e| CallError::Gone(format!("server (pid {}): {e}", self.pid)))?;
            self.pending.extend(events);
            if !more && self.pending.is_empty() {
                return Ok(None);
            }
        }
    }

    /// Reads what the connection has (cancel-safe); `false` at its end.
    async fn fill(&mut self) -> Result<bool, CallError> {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 16 * 1024];
        let n = self.io.read(&mut buf).await.map_err(|e| {
            CallError::Gone(format!(
                "server (pid {}): the event stream broke: {e}",
                self.pid
            ))
        })?;
        self.sse
            .feed(&buf[..n])
            .map_err(|e| CallError::Gone(format!("server (pid {}): {e}", self.pid)))?;
        Ok(n > 0)
    }
}

/// An async connection to the server: the Unix socket or TCP.
trait AsyncIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> AsyncIo for T {}

/// Reads an HTTP/1.1 answer carrying Server-Sent Events as its bytes arrive: the head, then
/// the body (chunked or not) split into events. An answer that is not a 200 event stream is
/// kept whole (`raw_answer`). Also the MCP bridge's reader (`mcp_bridge.rs`).
#[derive(Debug, Default)]
pub(super) struct SseDecoder {
    /// Bytes before the end of the head; the whole answer for a status other than 200, or an
    /// answer that is not an event stream.
    pub(super) raw_answer: Vec<u8>,
    /// The answer's head (status line and headers), once it is in.
    head: String,
    /// The body is an event stream (a 200 that is not `Content-Type: application/json`).
    stream: bool,
    /// The status, once the head is in.
    status: Option<u16>,
    /// The body is chunked.
    chunked: bool,
    /// Chunk framing: bytes of the current chunk still to come; `None` while reading a size
    /// line.
    chunk_left: Option<usize>,
    /// The size line being read, or the CRLF after a chunk's data.
    framing: Vec<u8>,
    /// The last chunk was seen.
    done: bool,
    /// Body bytes not yet split into lines.
    body: Vec<u8>,
    /// The data lines of the event being read.
    data: String,
    /// Events complete but not yet taken.
    ready: Vec<String>,
}

impl SseDecoder {
    /// The status, once the head is in.
    pub(super) fn status(&self) -> Option<u16> {
        self.status
    }

    /// The value of header `name` (any case), once the head is in.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Whether the body is an event stream (else it is kept whole in `raw_answer`).
    pub(super) fn is_stream(&self) -> bool {
        self.stream
    }

    /// Whether a chunked event stream has ended (its last chunk came).
    pub(super) fn ended(&self) -> bool {
        self.done
    }

    /// Takes `bytes` of the answer.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self.status {
            Some(_) if self.stream => return self.body_bytes(bytes),
            Some(_) => {
                self.raw_answer.extend_from_slice(bytes);
                return Ok(());
            }
            None => self.raw_answer.extend_from_slice(bytes),
        }
        let Some(end) = self.raw_answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.raw_answer.len() > 64 * 1024 {
                return Err("the answer's head is too long".into());
            }
            return Ok(());
        };
        let head = String::from_utf8_lossy(&self.raw_answer[..end]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or("malformed HTTP answer")?;
        self.status = Some(status);
        self.head = head.clone();
        // A 200 is a stream unless it says it is JSON (an MCP answer may be either).
        self.stream = status == 200
            && !self
                .header("content-type")
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
        if !self.stream {
            return Ok(());
        }
        self.chunked = head.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let rest = self.raw_answer.split_off(end + 4);
        self.raw_answer.clear();
        self.body_bytes(&rest)
    }

    /// Body bytes: the chunk framing removed, the payload split into lines.
    fn body_bytes(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        if !self.chunked {
            self.payload(bytes);
            return Ok(());
        }
        while !bytes.is_empty() && !self.done {
            match self.chunk_left {
                Some(0) => {
                    // The CRLF after a chunk's data.
                    self.framing.push(bytes[0]);
                    bytes = &bytes[1..];
                    if self.framing.len() == 2 {
                        if self.framing != b"\r\n" {
                            return Err("malformed chunk framing".into());
                        }
                        self.framing.clear();
                        self.chunk_left = None;
                    }
                }
                Some(left) => {
                    let n = left.min(bytes.len());
                    self.payload(&bytes[..n]);
                    bytes = &bytes[n..];
                    self.chunk_left = Some(left - n);
                }
                None => {
                    self.framing.push(bytes[0]);
                    bytes = &bytes[1..];
                    if self.framing.ends_with(b"\r\n") {
                        let line = String::from_utf8_lossy(&self.framing).to_string();
                        let size = line.trim().split(';').next().unwrap_or("");
                        let size = usize::from_str_radix(size.trim(), 16)
                            .map_err(|_| format!("malformed chunk size {:?}", line.trim()))?;
                        self.framing.clear();
                        if size == 0 {
                            self.done = true;
                        } else {
                            self.chunk_left = Some(size);
                        }
                    } else if self.framing.len() > 64 {
                        return Err("malformed chunk size line".into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Payload bytes: complete lines make up events (`id:`, `data:`; comments and other
    /// fields are skipped; a blank line ends an event).
    fn payload(&mut self, bytes: &[u8]) {
        self.body.extend_from_slice(bytes);
        while let Some(nl) = self.body.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.body.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    self.ready.push(std::mem::take(&mut self.data));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            // `id:` and `event:` repeat what the data says.
            if field == "data" {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value);
            }
        }
    }

    /// The data of the events complete so far, as sent.
    pub(super) fn data(&mut self) -> Vec<String> {
        self.ready.drain(..).collect()
    }

    /// The events complete so far.
    fn events(&mut self) -> Result<Vec<Event>, String> {
        self.data()
            .into_iter()
            .map(|data| {
                serde_json::from_str(&data)
                    .map_err(|e| format!("an event that is not Switchboard's ({e}): {data}"))
            })
            .collect()
    }
}

/// An error answer of the server, read leniently: the API's answers are
/// [`ErrorAnswer`](switchboard::server::api_types::ErrorAnswer)s, the listener's own refusals
/// (Host, Origin, size) may carry the message only.
#[derive(Debug, Default, Deserialize)]
struct Failure {
    error: Option<String>,
    exit_code: Option<i64>,
}

/// A connection to the server: the Unix socket or TCP.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Splits an HTTP/1.1 answer into status and body (Content-Length or to the end; chunked
/// bodies are decoded).
pub(super) fn parse_response(raw: &[u8]) -> Option<(u16, &[u8])> {
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

    /// The head and the first events in one read, then nothing (no keepalive yet): the
    /// events are given out at once, not when more bytes come.
    #[test]
    fn events_that_came_with_the_head_are_not_held_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let data = r#"{"id":4,"at":1,"from_team":"a","to_team":"b","tell_id":null,"session_id":null,"type":"tell_delivered"}"#;
            let frame = format!("id: 4\nevent: tell_delivered\ndata: {data}\n\n");
            let answer = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{frame}\r\n",
                frame.len()
            );
            conn.write_all(answer.as_bytes()).expect("write");
            // Keep the connection open, silent, until the client is done.
            let _ = conn.read(&mut buf);
        });
        let remote = Remote {
            host: "127.0.0.1".into(),
            port: 1,
            socket: Some(path),
            token: None,
            pid: 1,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let got = runtime.block_on(async {
            let mut stream = remote.events("", 3).await.expect("the stream opens");
            tokio::time::timeout(Duration::from_secs(5), stream.next()).await
        });
        let event = got
            .expect("the event comes at once")
            .expect("no error")
            .expect("an event");
        assert_eq!(event.id, 4);
        drop(runtime);
        server.join().expect("server thread");
    }

    #[test]
    fn decodes_chunked_event_streams_in_any_pieces() {
        let data = r#"{"id":7,"at":1,"from_team":"a","to_team":"b","tell_id":null,"session_id":null,"type":"tell_delivered"}"#;
        let events = format!(": connected\n\nid: 7\nevent: tell_delivered\ndata: {data}\n\n");
        let (first, second) = events.split_at(20);
        let raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
            first.len(),
            second.len()
        );
        // Byte by byte, and whole: the same event.
        for step in [1, raw.len()] {
            let mut d = SseDecoder::default();
            let mut got = Vec::new();
            for piece in raw.as_bytes().chunks(step) {
                d.feed(piece).unwrap();
                got.extend(d.events().unwrap());
            }
            assert_eq!(d.status(), Some(200));
            assert!(d.done);
            assert_eq!(got.len(), 1, "step {step}");
            assert_eq!(got[0].id, 7);
            assert_eq!(got[0].to_team.as_deref(), Some("b"));
        }
        let mut d = SseDecoder::default();
        d.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .unwrap_err();
        let mut d = SseDecoder::default();
        d.feed(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}")
            .unwrap();
        assert_eq!(d.status(), Some(400));
        assert!(d.raw_answer.ends_with(b"{}"));
    }
}
