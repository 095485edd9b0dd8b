//! A local stand-in for the Anthropic Messages API, for driving the real Claude Code CLI offline
//! (see docs/claude-code-protocol.md, section 3).
//!
//! It listens on `127.0.0.1:<random port>` and speaks just enough HTTP/1.1 (a small hand-written
//! parser: request line, headers, `Content-Length` or `Transfer-Encoding: chunked` bodies,
//! `Expect: 100-continue`, several requests per connection). `POST /v1/messages` (any query
//! string, Claude Code sends `?beta=true`) is answered with server-sent events when the body has
//! `"stream": true`, else with one JSON message. Every other request is recorded and answered
//! 404 with an Anthropic-style error body.
//!
//! Answers are scripted: a closure (first say), then a FIFO queue of [`Answer`]s, then a default
//! answer. A compaction request (the last user message asks to "create a detailed summary of
//! the conversation") is answered with `<summary>…</summary>` text automatically, unless the
//! closure answers it. Every request is recorded ([`Recorded`]) for assertions. The server stops
//! when the [`FakeApi`] is dropped.

#![allow(dead_code)]

/// Stand-ins of the OpenAI Responses API and the Gemini API, on the same server part.
pub mod gemini;
pub mod openai;
pub mod stand;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Largest request line plus headers accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// The text Claude Code 2.1.328 puts in the last user message of a compaction request.
pub const COMPACTION_MARK: &str = "create a detailed summary of the conversation";
/// How often a held stream sends a `ping` event (also notices a client that went away).
const PING_EVERY: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 request parsing

/// Why a request could not be read.
#[derive(Debug)]
pub enum ParseError {
    /// Reading from the connection failed.
    Io(std::io::Error),
    /// The bytes are not a valid HTTP/1.1 request (answered 400).
    Bad(String),
    /// The head or the body is over the limit (answered 413 / 431).
    TooLarge(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Io(e) => write!(f, "i/o error: {e}"),
            ParseError::Bad(why) => write!(f, "bad request: {why}"),
            ParseError::TooLarge(what) => write!(f, "{what} too large"),
        }
    }
}

impl From<std::io::Error> for ParseError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ParseError::Bad("connection closed in the middle of a request".into())
        } else {
            ParseError::Io(e)
        }
    }
}

/// The request line and headers of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Headers in order, names in lower case, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body is sent in chunks.
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|te| {
            te.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        })
    }

    /// Whether the connection stays open after the answer.
    pub fn keep_alive(&self) -> bool {
        let tokens: Vec<String> = self
            .header("connection")
            .unwrap_or("")
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        if self.version == "HTTP/1.0" {
            tokens.iter().any(|t| t == "keep-alive")
        } else {
            !tokens.iter().any(|t| t == "close")
        }
    }

    /// Whether the client waits for `100 Continue` before it sends the body.
    pub fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    }
}

/// One whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Request line and headers.
    pub head: Head,
    /// The body (chunks joined).
    pub body: Vec<u8>,
}

/// Reads one line ending in `\n` (without `\r\n`), charging its length to `budget`. `None`
/// when the connection is closed before the first byte of the line.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    budget: &mut usize,
    what: &'static str,
) -> Result<Option<Vec<u8>>, ParseError> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await.map_err(ParseError::Io)?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(ParseError::Bad(format!(
                    "connection closed in the middle of the {what}"
                )))
            };
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > *budget {
            return Err(ParseError::TooLarge(what));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            break;
        }
    }
    *budget -= line.len();
    line.pop(); // '\n'
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Reads the request line and the headers. `None` when the connection is closed (cleanly)
/// before a new request starts.
pub async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<Head>, ParseError> {
    let mut budget = MAX_HEAD_BYTES;
    // A client may send empty lines before a request (RFC 9112, 2.2).
    let line = loop {
        match read_line(r, &mut budget, "request head").await? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let line = String::from_utf8(line)
        .map_err(|_| ParseError::Bad("the request line is not UTF-8".into()))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(ParseError::Bad(format!("malformed request line {line:?}")));
    };
    if !is_token(method) {
        return Err(ParseError::Bad(format!("bad method {method:?}")));
    }
    if target.is_empty() || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(ParseError::Bad(format!("bad request target {target:?}")));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ParseError::Bad(format!("unsupported version {version:?}")));
    }
    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(r, &mut budget, "request head").await? else {
            return Err(ParseError::Bad(
                "connection closed in the middle of the headers".into(),
            ));
        };
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(ParseError::Bad("obsolete header line folding".into()));
        }
        let line = String::from_utf8(line)
            .map_err(|_| ParseError::Bad("a header line is not UTF-8".into()))?;
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::Bad(format!(
                "header line without ':': {line:?}"
            )));
        };
        if !is_token(name) {
            return Err(ParseError::Bad(format!("bad header name {name:?}")));
        }
        headers.push((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
    Ok(Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
    }))
}

/// Reads the body that `head` announces: chunked (wins over a length), `Content-Length`, or
/// none.
pub async fn read_body<R: AsyncBufRead + Unpin>(
    r: &mut R,
    head: &Head,
) -> Result<Vec<u8>, ParseError> {
    if head.header("transfer-encoding").is_some() {
        if !head.is_chunked() {
            return Err(ParseError::Bad(
                "a transfer-encoding other than chunked".into(),
            ));
        }
        return read_chunked(r).await;
    }
    let lengths: Vec<&str> = head
        .headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    let Some(first) = lengths.first() else {
        return Ok(Vec::new());
    };
    if lengths.iter().any(|l| l != first) {
        return Err(ParseError::Bad(format!(
            "conflicting content-length values {lengths:?}"
        )));
    }
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Bad(format!("bad content-length {first:?}")));
    }
    let len: usize = first
        .parse()
        .map_err(|_| ParseError::TooLarge("request body"))?;
    if len > MAX_BODY_BYTES {
        return Err(ParseError::TooLarge("request body"));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

async fn read_chunked<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, ParseError> {
    let mut body = Vec::new();
    loop {
        let mut budget = 4096;
        let Some(line) = read_line(r, &mut budget, "chunk size line").await? else {
            return Err(ParseError::Bad(
                "connection closed before the last chunk".into(),
            ));
        };
        let line = String::from_utf8_lossy(&line).into_owned();
        let size = line.split(';').next().unwrap_or("").trim();
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseError::Bad(format!("bad chunk size {line:?}")));
        }
        let size = usize::from_str_radix(size, 16).map_err(|_| ParseError::TooLarge("chunk"))?;
        if size == 0 {
            // Trailer fields, then an empty line.
            let mut budget = MAX_HEAD_BYTES;
            loop {
                match read_line(r, &mut budget, "chunked trailer").await? {
                    Some(l) if l.is_empty() => return Ok(body),
                    Some(_) => continue,
                    None => {
                        return Err(ParseError::Bad(
                            "connection closed in the chunked trailer".into(),
                        ))
                    }
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(ParseError::TooLarge("request body"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).await?;
        let mut budget = 2;
        match read_line(r, &mut budget, "chunk end").await {
            Ok(Some(l)) if l.is_empty() => {}
            Ok(_) | Err(ParseError::TooLarge(_)) => {
                return Err(ParseError::Bad("chunk data not followed by CRLF".into()))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads one whole request (head and body). `None` at a clean end of the connection.
pub async fn read_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Option<HttpRequest>, ParseError> {
    let Some(head) = read_head(r).await? else {
        return Ok(None);
    };
    let body = read_body(r, &head).await?;
    Ok(Some(HttpRequest { head, body }))
}

// ---------------------------------------------------------------------------------------------
// Scripted answers

/// A `tool_use` block for an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    /// The block id (`toolu_...`).
    pub id: String,
    /// The tool name, e.g. `mcp__switchboard__tell`.
    pub name: String,
    /// The tool input.
    pub input: Value,
}

/// What the stand-in answers to one Messages request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The text block (left out when empty and there is a tool call).
    pub text: String,
    /// Wait this long first: a stream sends `message_start`, then `ping`s for this long, then
    /// the rest; an error or a non-streaming answer is sent after it.
    pub delay: Duration,
    /// Answer with this HTTP status and an Anthropic error body with this message instead.
    pub error: Option<(u16, String)>,
    /// A `tool_use` block after the text (stop reason `tool_use`).
    pub tool_use: Option<ToolUse>,
    /// `usage.input_tokens`.
    pub input_tokens: u64,
    /// `usage.output_tokens`.
    pub output_tokens: u64,
    /// Break the stream (close the connection) right after `message_start`.
    pub cut_stream: bool,
}

impl Answer {
    /// A text answer (100 input tokens, 10 output tokens).
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            delay: Duration::ZERO,
            error: None,
            tool_use: None,
            input_tokens: 100,
            output_tokens: 10,
            cut_stream: false,
        }
    }

    /// An HTTP error (e.g. 500, 529, 400) with an Anthropic error body carrying `message`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            error: Some((status, message.into())),
            ..Self::text("")
        }
    }

    /// The same answer after `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The same answer with these token counts.
    pub fn with_usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }

    /// The same answer followed by a call of tool `name` with `input`.
    pub fn with_tool_use(mut self, id: &str, name: &str, input: Value) -> Self {
        self.tool_use = Some(ToolUse {
            id: id.to_string(),
            name: name.to_string(),
            input,
        });
        self
    }

    /// A stream that breaks after `message_start` (Claude Code then retries non-streaming).
    pub fn cut_after_start(mut self) -> Self {
        self.cut_stream = true;
        self
    }

    fn stop_reason(&self) -> &'static str {
        if self.tool_use.is_some() {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    /// The content blocks of the answer message.
    fn blocks(&self) -> Vec<Value> {
        let mut blocks = Vec::new();
        if !self.text.is_empty() || self.tool_use.is_none() {
            blocks.push(json!({"type": "text", "text": self.text}));
        }
        if let Some(t) = &self.tool_use {
            blocks.push(json!({"type": "tool_use", "id": t.id, "name": t.name, "input": t.input}));
        }
        blocks
    }
}

/// Chooses the answer for a request, before the queue; `None` lets the queue answer.
pub type Responder = Arc<dyn Fn(&Recorded) -> Option<Answer> + Send + Sync>;

struct Script {
    responder: Option<Responder>,
    queue: VecDeque<Answer>,
    default: Answer,
    summary: String,
}

// ---------------------------------------------------------------------------------------------
// Recorded requests

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// 1, 2, 3, ... in the order requests were received.
    pub n: usize,
    /// 1, 2, 3, ... per TCP connection (equal numbers: the same kept-alive connection).
    pub connection: usize,
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string (without `?`), if any.
    pub query: Option<String>,
    /// Headers in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Whether the body came chunked.
    pub chunked: bool,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body as JSON, if it is JSON.
    pub json: Option<Value>,
}

impl Recorded {
    /// The `n`th request (from 1), read on `connection`.
    fn new(n: usize, connection: usize, req: HttpRequest) -> Self {
        let (path, query) = match req.head.target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (req.head.target.clone(), None),
        };
        let chunked = req.head.is_chunked();
        let json = serde_json::from_slice(&req.body).ok();
        Self {
            n,
            connection,
            method: req.head.method,
            path,
            query,
            headers: req.head.headers,
            chunked,
            body: req.body,
            json,
        }
    }
}

/// The text of a message's content: a string is one text, an array gives its `text` blocks
/// (and the text inside `tool_result` blocks).
fn content_texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(blocks) => blocks
            .iter()
            .flat_map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b
                    .get("text")
                    .and_then(Value::as_str)
                    .map(|t| vec![t.to_string()])
                    .unwrap_or_default(),
                Some("tool_result") => b.get("content").map(content_texts).unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Recorded {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether it is a Messages API call (`POST /v1/messages`, any query).
    pub fn is_messages(&self) -> bool {
        self.method == "POST" && self.path == "/v1/messages"
    }

    /// Whether it asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.json
            .as_ref()
            .and_then(|j| j.get("stream"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The `messages` of the body.
    pub fn messages(&self) -> &[Value] {
        self.json
            .as_ref()
            .and_then(|j| j.get("messages"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The `model` of the body.
    pub fn model(&self) -> Option<&str> {
        self.json.as_ref()?.get("model")?.as_str()
    }

    /// The texts of the last `user` message, in order (Claude Code puts `<system-reminder>`
    /// blocks before the prompt, so the prompt is usually the last one).
    pub fn last_user_texts(&self) -> Vec<String> {
        self.messages()
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| m.get("content"))
            .map(content_texts)
            .unwrap_or_default()
    }

    /// The last text of the last `user` message (the prompt), or "".
    pub fn last_user_text(&self) -> String {
        self.last_user_texts().pop().unwrap_or_default()
    }

    /// Every text of every message, in order, as (role, text).
    pub fn all_message_texts(&self) -> Vec<(String, String)> {
        self.messages()
            .iter()
            .flat_map(|m| {
                let role = m
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                m.get("content")
                    .map(content_texts)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |t| (role.clone(), t))
            })
            .collect()
    }

    /// Whether some message of `role` has a text containing `needle`.
    pub fn has_text(&self, role: &str, needle: &str) -> bool {
        self.all_message_texts()
            .iter()
            .any(|(r, t)| r == role && t.contains(needle))
    }

    /// Whether it is Claude Code's request for a summary of the conversation (compaction).
    pub fn is_compaction(&self) -> bool {
        self.is_messages()
            && self
                .last_user_texts()
                .iter()
                .any(|t| t.contains(COMPACTION_MARK))
    }
}

// ---------------------------------------------------------------------------------------------
// The server

struct State {
    script: Mutex<Script>,
    log: Mutex<Vec<Recorded>>,
    received: watch::Sender<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn script(&self) -> MutexGuard<'_, Script> {
        lock(&self.script)
    }

    fn log(&self) -> MutexGuard<'_, Vec<Recorded>> {
        lock(&self.log)
    }

    fn record(&self, connection: usize, req: HttpRequest) -> Recorded {
        let mut log = self.log();
        let rec = Recorded::new(log.len() + 1, connection, req);
        log.push(rec.clone());
        let n = log.len();
        drop(log);
        self.received.send_replace(n);
        rec
    }

    fn choose(&self, rec: &Recorded) -> Answer {
        let responder = self.script().responder.clone();
        if let Some(answer) = responder.and_then(|f| f(rec)) {
            return answer;
        }
        let mut script = self.script();
        if rec.is_compaction() {
            return Answer::text(format!(
                "<analysis>The conversation so far (fake analysis).</analysis>\n<summary>\n{}\n</summary>",
                script.summary
            ));
        }
        script
            .queue
            .pop_front()
            .unwrap_or_else(|| script.default.clone())
    }
}

/// The stand-in server: a tokio task accepting connections, one task per connection. Stops,
/// and closes its connections, when dropped.
pub struct FakeApi {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApi")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        // The accept task owns the JoinSet of connection tasks: dropping it aborts them all.
        self.task.abort();
    }
}

impl FakeApi {
    /// Starts a stand-in on 127.0.0.1 and a free port. Must run inside a tokio runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API to 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let (received, _) = watch::channel(0);
        let state = Arc::new(State {
            script: Mutex::new(Script {
                responder: None,
                queue: VecDeque::new(),
                default: Answer::text("Hello from the fake API."),
                summary: "1. Primary Request: the earlier conversation (fake summary).".into(),
            }),
            log: Mutex::new(Vec::new()),
            received,
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Self { port, state, task }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues an answer for the next Messages request (that no closure answers and that is not
    /// a compaction).
    pub fn push(&self, answer: Answer) {
        self.state.script().queue.push_back(answer);
    }

    /// The answer when the queue is empty.
    pub fn set_default(&self, answer: Answer) {
        self.state.script().default = answer;
    }

    /// What goes between `<summary>` tags in the answer to a compaction request.
    pub fn set_summary(&self, summary: impl Into<String>) {
        self.state.script().summary = summary.into();
    }

    /// A closure asked first for every Messages request; `None` lets the usual rules answer.
    pub fn respond_with(&self, f: impl Fn(&Recorded) -> Option<Answer> + Send + Sync + 'static) {
        self.state.script().responder = Some(Arc::new(f));
    }

    /// Answers still queued.
    pub fn queued(&self) -> usize {
        self.state.script().queue.len()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log().clone()
    }

    /// The Messages API calls received so far (`POST /v1/messages`), in order.
    pub fn message_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_messages)
            .collect()
    }

    /// The compaction requests received so far.
    pub fn compaction_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_compaction)
            .collect()
    }

    /// Requests to anything but `POST /v1/messages`.
    pub fn other_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_messages())
            .collect()
    }

    /// Waits until at least `n` requests were received (panics after `timeout`); returns them.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let mut rx = self.state.received.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|&got| got >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "the fake API got {} requests within {timeout:?}, expected at least {n}",
            self.state.log().len()
        );
        self.requests()
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    let mut next_connection = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    next_connection += 1;
                    connections.spawn(serve(stream, Arc::clone(&state), next_connection));
                }
                // E.g. out of file descriptors: let a connection end first, then accept again.
                Err(_) => {
                    if connections.join_next().await.is_none() {
                        tokio::task::yield_now().await;
                    }
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(stream: TcpStream, state: Arc<State>, connection: usize) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let head = match read_head(&mut rd).await {
            Ok(Some(head)) => head,
            Ok(None) | Err(ParseError::Io(_)) => return,
            Err(e) => return refuse(&mut wr, &e).await,
        };
        if head.expects_continue()
            && head.version == "HTTP/1.1"
            && wr
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        let body = match read_body(&mut rd, &head).await {
            Ok(body) => body,
            Err(ParseError::Io(_)) => return,
            Err(e) => return refuse(&mut wr, &e).await,
        };
        let keep_alive = head.keep_alive();
        let rec = state.record(connection, HttpRequest { head, body });
        let kept = answer(&mut wr, &state, &rec, keep_alive).await;
        if !(kept && keep_alive) {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

/// Answers a request that could not be parsed, and closes.
async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, e: &ParseError) {
    let status = match e {
        ParseError::TooLarge("request body") => 413,
        ParseError::TooLarge(_) => 431,
        _ => 400,
    };
    let body = error_body(status, &e.to_string());
    let _ = write_json(w, status, &body, &[], false).await;
    let _ = w.shutdown().await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// `{"type":"error","error":{"type":...,"message":...}}` as the Anthropic API sends it.
pub fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

async fn write_json<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: u16,
    body: &Value,
    extra: &[(&str, String)],
    keep_alive: bool,
) -> std::io::Result<()> {
    let body = body.to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {}\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    w.write_all(out.as_bytes()).await?;
    w.flush().await
}

/// One server-sent event as one chunk of a chunked response.
async fn write_event<W: AsyncWrite + Unpin>(
    w: &mut W,
    name: &str,
    data: &Value,
) -> std::io::Result<()> {
    let event = format!("event: {name}\ndata: {data}\n\n");
    w.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())
        .await?;
    w.flush().await
}

/// Splits `text` in two on a char boundary (so the stream has more than one delta).
fn halves(text: &str) -> Vec<&str> {
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid += 1;
    }
    [&text[..mid], &text[mid..]]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
}

/// Answers one recorded request. Returns whether the connection can serve another one.
async fn answer<W: AsyncWrite + Unpin>(
    w: &mut W,
    state: &State,
    rec: &Recorded,
    keep_alive: bool,
) -> bool {
    let request_id = [("request-id", format!("req_fake_{}", rec.n))];
    if !rec.is_messages() {
        let body = error_body(
            404,
            &format!("the fake API has no {} {}", rec.method, rec.path),
        );
        return write_json(w, 404, &body, &request_id, keep_alive)
            .await
            .is_ok();
    }
    let Some(req) = rec.json.as_ref().filter(|j| j.is_object()) else {
        let body = error_body(400, "the request body is not a JSON object");
        return write_json(w, 400, &body, &request_id, keep_alive)
            .await
            .is_ok();
    };
    let answer = state.choose(rec);
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake")
        .to_string();
    let msg_id = format!("msg_fake_{}", rec.n);
    if let Some((status, message)) = &answer.error {
        tokio::time::sleep(answer.delay).await; // the scripted delay
        let body = error_body(*status, message);
        return write_json(w, *status, &body, &request_id, keep_alive)
            .await
            .is_ok();
    }
    if !rec.is_stream() {
        tokio::time::sleep(answer.delay).await; // the scripted delay
        let body = json!({
            "id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": answer.blocks(), "stop_reason": answer.stop_reason(),
            "stop_sequence": null,
            "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        });
        return write_json(w, 200, &body, &request_id, keep_alive)
            .await
            .is_ok();
    }
    stream(w, &answer, &model, &msg_id, &request_id[0].1, keep_alive)
        .await
        .is_ok()
}

async fn stream<W: AsyncWrite + Unpin>(
    w: &mut W,
    answer: &Answer,
    model: &str,
    msg_id: &str,
    request_id: &str,
    keep_alive: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
         request-id: {request_id}\r\ntransfer-encoding: chunked\r\nconnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" },
    );
    w.write_all(head.as_bytes()).await?;
    write_event(
        w,
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    )
    .await?;
    if answer.cut_stream {
        return Err(std::io::Error::other("stream cut on purpose"));
    }
    // The scripted delay, with pings (a client that went away ends it early).
    let until = tokio::time::Instant::now() + answer.delay;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep_until(until.min(tokio::time::Instant::now() + PING_EVERY)).await;
        write_event(w, "ping", &json!({"type": "ping"})).await?;
    }
    for (index, block) in answer.blocks().iter().enumerate() {
        if block["type"] == "text" {
            write_event(
                w,
                "content_block_start",
                &json!({"type": "content_block_start", "index": index,
                        "content_block": {"type": "text", "text": ""}}),
            )
            .await?;
            for part in halves(block["text"].as_str().unwrap_or("")) {
                write_event(
                    w,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "text_delta", "text": part}}),
                )
                .await?;
            }
        } else {
            write_event(
                w,
                "content_block_start",
                &json!({"type": "content_block_start", "index": index,
                        "content_block": {"type": "tool_use", "id": block["id"],
                                          "name": block["name"], "input": {}}}),
            )
            .await?;
            write_event(
                w,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta",
                                  "partial_json": block["input"].to_string()}}),
            )
            .await?;
        }
        write_event(
            w,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        )
        .await?;
    }
    write_event(
        w,
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason(), "stop_sequence": null},
                "usage": {"output_tokens": answer.output_tokens}}),
    )
    .await?;
    write_event(w, "message_stop", &json!({"type": "message_stop"})).await?;
    w.write_all(b"0\r\n\r\n").await?;
    w.flush().await
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse_all(bytes: &[u8]) -> Vec<Result<HttpRequest, String>> {
        let mut r = BufReader::new(bytes);
        let mut out = Vec::new();
        loop {
            match read_request(&mut r).await {
                Ok(Some(req)) => out.push(Ok(req)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn parses_pipelined_requests_with_length_and_chunked_bodies() {
        let raw = b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Content-Length: 11\r\n\r\n{\"a\":\"b c\"}\
                    \r\nGET /v1/models HTTP/1.1\r\nhost:  x  \r\n\r\n\
                    POST /chunked HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                    4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let got = parse_all(raw).await;
        assert_eq!(got.len(), 3, "{got:?}");
        let first = got[0].as_ref().expect("first");
        assert_eq!(first.head.method, "POST");
        assert_eq!(first.head.target, "/v1/messages?beta=true");
        assert_eq!(first.head.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(first.body, b"{\"a\":\"b c\"}");
        assert!(first.head.keep_alive());
        let second = got[1].as_ref().expect("second");
        assert_eq!(second.head.method, "GET");
        assert_eq!(second.head.header("host"), Some("x"));
        assert!(second.body.is_empty());
        let third = got[2].as_ref().expect("third");
        assert!(third.head.is_chunked());
        assert_eq!(third.body, b"Wikipedia in \r\n\r\nchunks.");
    }

    #[tokio::test]
    async fn keep_alive_follows_the_version_and_the_connection_header() {
        for (raw, keep) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], true),
            (b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ] {
            let req = parse_all(raw).await.remove(0).expect("request");
            assert_eq!(req.head.keep_alive(), keep, "{req:?}");
        }
    }

    #[tokio::test]
    async fn rejects_malformed_requests() {
        for (raw, why) in [
            (&b"GARBAGE\r\n\r\n"[..], "malformed request line"),
            (b"GET / HTTP/2\r\n\r\n", "unsupported version"),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", "without ':'"),
            (b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", "folding"),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                "conflicting",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                "bad content-length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
                "middle of a request",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "bad chunk size",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
                "CRLF",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                "other than chunked",
            ),
            (b"GET / HTTP/1.1\r\nHost: x", "middle of the"),
        ] {
            let got = parse_all(raw).await;
            let err = got
                .last()
                .and_then(|r| r.as_ref().err())
                .unwrap_or_else(|| panic!("{:?} parsed: {got:?}", String::from_utf8_lossy(raw)));
            assert!(
                err.contains(why),
                "{:?}: {err}",
                String::from_utf8_lossy(raw)
            );
        }
        // A head over the limit.
        let huge = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        let got = parse_all(huge.as_bytes()).await;
        assert!(
            matches!(&got[..], [Err(e)] if e.contains("too large")),
            "{got:?}"
        );
        // Empty input and stray empty lines are no request, not an error.
        assert!(parse_all(b"").await.is_empty());
        assert!(parse_all(b"\r\n\r\n").await.is_empty());
    }

    /// Reads one HTTP response on a client connection: status, headers, body (chunks joined).
    async fn read_response<R: AsyncBufRead + Unpin>(r: &mut R) -> (u16, Head, Vec<u8>) {
        let mut status_line = String::new();
        r.read_line(&mut status_line).await.expect("status line");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        // The header block parses like a request's: give it a request line.
        let mut headers = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.expect("header");
            headers.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let raw = format!("GET / HTTP/1.1\r\n{headers}");
        let head = read_head(&mut BufReader::new(raw.as_bytes()))
            .await
            .expect("headers")
            .expect("head");
        let body = read_body(r, &head).await.expect("body");
        (status, head, body)
    }

    fn post(path: &str, extra_headers: &str, body: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn serves_several_requests_per_connection_and_records_them() {
        let api = FakeApi::start().await;
        api.push(Answer::text("first answer").with_usage(42, 7));
        api.push(Answer::error(529, "busy"));
        let (rd, mut wr) = TcpStream::connect(("127.0.0.1", api.port()))
            .await
            .expect("connect")
            .into_split();
        let mut rd = BufReader::new(rd);
        let body = json!({"model": "m", "stream": true, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"},
                                         {"type": "text", "text": "hi there"}]}]})
        .to_string();

        // 1: streaming, Content-Length body.
        wr.write_all(post("/v1/messages?beta=true", "x-api-key: k\r\n", &body).as_bytes())
            .await
            .expect("write");
        let (status, head, sse) = read_response(&mut rd).await;
        assert_eq!(status, 200);
        assert_eq!(head.header("content-type"), Some("text/event-stream"));
        let sse = String::from_utf8(sse).expect("utf-8");
        let events: Vec<&str> = sse
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            events,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let text: String = sse
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v.pointer("/delta/text")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect();
        assert_eq!(text, "first answer");
        assert!(sse.contains("\"input_tokens\":42") && sse.contains("\"output_tokens\":7"));

        // 2: a chunked body (sent after `Expect: 100-continue`), answered with the queued error.
        let chunked_body =
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}).to_string();
        let (a, b) = chunked_body.split_at(5);
        wr.write_all(
            b"POST /v1/messages HTTP/1.1\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .expect("write");
        let mut cont = String::new();
        rd.read_line(&mut cont).await.expect("100");
        assert_eq!(cont, "HTTP/1.1 100 Continue\r\n");
        rd.read_line(&mut cont).await.expect("empty line");
        wr.write_all(
            format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()).as_bytes(),
        )
        .await
        .expect("write");
        let (status, _, body) = read_response(&mut rd).await;
        assert_eq!(status, 529);
        let err: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(err["error"]["type"], "overloaded_error");
        assert_eq!(err["error"]["message"], "busy");

        // 3: non-streaming: the default answer as one JSON message.
        let plain = json!({"model": "m", "stream": false, "messages": []}).to_string();
        wr.write_all(post("/v1/messages", "", &plain).as_bytes())
            .await
            .expect("write");
        let (status, _, body) = read_response(&mut rd).await;
        assert_eq!(status, 200);
        let msg: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(msg["content"][0]["text"], "Hello from the fake API.");
        assert_eq!(msg["stop_reason"], "end_turn");

        // 4: anything else is 404, and `Connection: close` closes.
        wr.write_all(b"GET /v1/models HTTP/1.1\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let (status, _, _) = read_response(&mut rd).await;
        assert_eq!(status, 404);
        let mut rest = Vec::new();
        rd.read_to_end(&mut rest).await.expect("eof");
        assert!(rest.is_empty());

        // 5: garbage gets a 400 and the connection is closed.
        let mut bad = TcpStream::connect(("127.0.0.1", api.port()))
            .await
            .expect("connect");
        bad.write_all(b"HELLO\r\n\r\n").await.expect("write");
        let (status, _, _) = read_response(&mut BufReader::new(bad)).await;
        assert_eq!(status, 400);

        let log = api.requests();
        assert_eq!(log.len(), 4, "the garbage is not recorded");
        assert!(log.iter().all(|r| r.connection == log[0].connection));
        assert_eq!(log[0].query.as_deref(), Some("beta=true"));
        assert_eq!(log[0].header("X-Api-Key"), Some("k"));
        assert_eq!(log[0].last_user_text(), "hi there");
        assert!(log[1].chunked && log[1].json.is_some());
        assert_eq!(api.message_requests().len(), 3);
        assert_eq!(api.other_requests()[0].path, "/v1/models");
    }

    #[tokio::test]
    async fn dropping_the_server_closes_a_held_stream() {
        let api = FakeApi::start().await;
        api.push(Answer::text("never sent").with_delay(Duration::from_secs(600)));
        let (rd, mut wr) = TcpStream::connect(("127.0.0.1", api.port()))
            .await
            .expect("connect")
            .into_split();
        let mut rd = BufReader::new(rd);
        let body = json!({"model": "m", "stream": true, "messages": []}).to_string();
        wr.write_all(post("/v1/messages", "", &body).as_bytes())
            .await
            .expect("write");
        let mut status = String::new();
        rd.read_line(&mut status).await.expect("status");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        drop(api);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the connection is closed");
        assert!(!String::from_utf8_lossy(&rest).contains("never sent"));
    }

    #[tokio::test]
    async fn answers_compaction_requests_with_a_summary_and_tool_calls_in_blocks() {
        let api = FakeApi::start().await;
        api.push(Answer::text("queued, not for the summary"));
        let compaction = Recorded {
            n: 1,
            connection: 1,
            method: "POST".into(),
            path: "/v1/messages".into(),
            query: None,
            headers: Vec::new(),
            chunked: false,
            body: Vec::new(),
            json: Some(json!({"messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
                {"role": "user", "content": format!("CRITICAL: ... Your task is to {COMPACTION_MARK} so far")}]})),
        };
        assert!(compaction.is_compaction());
        assert!(compaction.has_text("assistant", "hi"));
        let a = api.state.choose(&compaction);
        assert!(
            a.text.contains("<summary>") && a.text.contains("</summary>"),
            "{a:?}"
        );
        assert_eq!(api.queued(), 1, "the queue is kept for real turns");

        let tool =
            Answer::text("Calling.").with_tool_use("toolu_1", "mcp__x__echo", json!({"t": 1}));
        assert_eq!(tool.stop_reason(), "tool_use");
        let blocks = tool.blocks();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1]["name"], "mcp__x__echo");
        let only_tool = Answer::text("").with_tool_use("toolu_2", "t", json!({}));
        assert_eq!(only_tool.blocks().len(), 1);
    }
}
