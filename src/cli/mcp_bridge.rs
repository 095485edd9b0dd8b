//! `switchboard mcp-bridge`: a stdio MCP server that relays to Switchboard's MCP endpoint
//! through a Unix socket, for an agent on a remote host (docs/remote.md, "Switchboard's tools
//! for remote agents"). Switchboard forwards its endpoint to that socket over SSH; Claude Code
//! cannot dial a Unix socket itself, so its MCP config runs this instead.
//!
//! Each JSON-RPC line from stdin is POSTed to the endpoint (HTTP/1.1 over the socket,
//! streamable HTTP: `Mcp-Session-Id` and `MCP-Protocol-Version` after `initialize`), with the
//! agent's credential in `X-Switchboard-Agent`; every message of the answer (JSON, or the
//! events of an SSE stream) is written to stdout as one line. Requests run concurrently (a
//! `team_tell` may wait for an hour); `initialize`, notifications and responses go in order.
//! The credential comes from `--token-file` or `$SWITCHBOARD_AGENT_TOKEN`, never argv.
//!
//! A socket that is missing or not ours, a server that is gone, or a refused credential ends
//! the bridge with the reason on stderr and exit status 1 (a request waiting for it gets a
//! JSON-RPC error first); no credential at all is exit status 2. Stdout carries JSON-RPC
//! only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use switchboard::agent::ssh::mcp::AGENT_TOKEN_ENV;
use switchboard::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::remote::{parse_response, SseDecoder};

/// Relay an agent's MCP stdio to Switchboard's endpoint through a Unix socket (used by
/// agents on remote hosts; Switchboard writes the command into their MCP config).
#[derive(Debug, Args)]
pub struct McpBridgeCmd {
    /// The Unix socket that leads to Switchboard's MCP endpoint.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// The endpoint as Switchboard serves it (`http://127.0.0.1:PORT/mcp`): its path, and its
    /// host and port for the `Host` header.
    #[arg(long, value_name = "URL")]
    url: String,
    /// A file holding the agent's credential (default: $SWITCHBOARD_AGENT_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// What the bridge knows of the endpoint and the MCP session.
#[derive(Debug)]
struct Bridge {
    socket: PathBuf,
    authority: String,
    path: String,
    token: String,
    /// `Mcp-Session-Id` and the protocol version, once `initialize` was answered.
    session: Mutex<(Option<String>, Option<String>)>,
}

/// What a request's exchange sends to the writer.
enum Out {
    /// A JSON-RPC message for stdout.
    Line(String),
    /// The bridge must end: why.
    Fatal(String),
}

impl McpBridgeCmd {
    /// Runs the bridge until stdin closes (exit 0) or the endpoint cannot be used (exit 1).
    pub fn run(&self) -> Result<ExitCode, Error> {
        let bridge = self.bridge()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the runtime: {e}")))?;
        runtime.block_on(relay(Arc::new(bridge)))?;
        Ok(ExitCode::SUCCESS)
    }

    /// Checks the arguments and the socket; reads the credential.
    fn bridge(&self) -> Result<Bridge, Error> {
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e| Error::Usage(format!("--url {:?}: not a URL ({e})", self.url)))?;
        let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(Error::Usage(format!(
                "--url {:?}: give the endpoint as http://HOST:PORT/mcp",
                self.url
            )));
        };
        let token = match &self.token_file {
            Some(file) => std::fs::read_to_string(file)
                .map_err(|e| {
                    Error::Other(format!(
                        "cannot read the agent's credential from {}: {e} (Switchboard writes \
                         it when it starts the agent and removes it when the agent stops)",
                        file.display()
                    ))
                })?
                .trim()
                .to_string(),
            None => std::env::var(AGENT_TOKEN_ENV).unwrap_or_default(),
        };
        if token.is_empty() {
            return Err(Error::Usage(format!(
                "no agent credential: give --token-file FILE or set ${AGENT_TOKEN_ENV} (the \
                 bridge acts only as the agent Switchboard started)"
            )));
        }
        check_socket(&self.socket)?;
        Ok(Bridge {
            socket: self.socket.clone(),
            authority: authority.to_string(),
            path: uri.path().to_string(),
            token,
            session: Mutex::new((None, None)),
        })
    }
}

/// Whether `path` is a socket this user may connect to: a clear error when it is missing or
/// not reachable.
fn check_socket(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => {}
        Ok(_) => return Err(Error::Usage(format!("--socket {shown}: not a Unix socket"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Other(format!(
                "--socket {shown}: no such socket: Switchboard's forward to this host is not \
                 there (it is made when Switchboard starts the agent and ends when the agent \
                 stops or the SSH connection breaks)"
            )))
        }
        Err(e) => {
            return Err(Error::Other(format!(
                "--socket {shown}: {e} (only the user Switchboard logs in as may use it)"
            )))
        }
    }
    std::os::unix::net::UnixStream::connect(path)
        .map(drop)
        .map_err(|e| {
            Error::Other(format!(
                "--socket {shown}: cannot connect: {e} (only the user Switchboard logs in as \
                 may use it; a refused connection means the forward is gone)"
            ))
        })
}

/// Relays stdin to the endpoint and the answers to stdout until stdin closes or a fatal
/// error.
async fn relay(bridge: Arc<Bridge>) -> Result<(), Error> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut running = tokio::task::JoinSet::new();
    let mut reading = true;
    let fatal = loop {
        tokio::select! {
            line = lines.next_line(), if reading => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => {
                    let message: Value = match serde_json::from_str(&line) {
                        Ok(v) => v,
                        Err(e) => {
                            let parse = format!("parse error: {e}");
                            let _ = tx.send(Out::Line(rpc_error(&Value::Null, -32700, &parse)));
                            continue;
                        }
                    };
                    let (b, t) = (Arc::clone(&bridge), tx.clone());
                    if is_request(&message) && method(&message) != Some("initialize") {
                        running.spawn(async move { exchange(&b, &message, line, &t).await });
                    } else {
                        // In order: the session must exist before the next message.
                        exchange(&b, &message, line, &t).await;
                    }
                }
                Ok(None) | Err(_) => reading = false,
            },
            out = rx.recv() => match out {
                Some(Out::Line(line)) => write_line(&mut stdout, &line).await?,
                Some(Out::Fatal(why)) => break Some(why),
                None => break None,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
        if !reading && running.is_empty() {
            // Every exchange is done: what they sent is in the channel.
            let mut fatal = None;
            while let Ok(out) = rx.try_recv() {
                match out {
                    Out::Line(line) => write_line(&mut stdout, &line).await?,
                    Out::Fatal(why) => fatal = fatal.or(Some(why)),
                }
            }
            break fatal;
        }
    };
    // Answers already decided go out before the bridge ends.
    while let Ok(Out::Line(line)) = rx.try_recv() {
        write_line(&mut stdout, &line).await?;
    }
    if let Some(why) = fatal {
        return Err(Error::Other(why));
    }
    close_session(&bridge).await;
    Ok(())
}

async fn write_line(stdout: &mut tokio::io::Stdout, line: &str) -> Result<(), Error> {
    let written = async {
        stdout.write_all(line.as_bytes()).await?;
        stdout.write_all(b"\n").await?;
        stdout.flush().await
    };
    written
        .await
        .map_err(|e| Error::Other(format!("cannot write to stdout (the agent left?): {e}")))
}

/// A JSON-RPC message's method, if it has one.
fn method(message: &Value) -> Option<&str> {
    message.get("method").and_then(Value::as_str)
}

/// Whether a JSON-RPC message is a request (an id and a method; not a notification or a
/// response).
fn is_request(message: &Value) -> bool {
    message.get("id").is_some() && message.get("method").is_some()
}

/// A JSON-RPC error answer to request `id`.
fn rpc_error(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// POSTs one message and relays what comes back. A fatal problem is sent as [`Out::Fatal`]
/// (after a JSON-RPC error for a request, so the agent sees the reason too).
async fn exchange(bridge: &Bridge, message: &Value, line: String, tx: &mpsc::UnboundedSender<Out>) {
    let id = message.get("id").cloned();
    let is_request = is_request(message);
    let initialize = method(message) == Some("initialize");
    match post(bridge, &line, initialize, tx).await {
        Ok(None) => {}
        Ok(Some(problem)) => {
            if let (true, Some(id)) = (is_request, &id) {
                let _ = tx.send(Out::Line(rpc_error(id, -32603, &problem)));
            } else {
                eprintln!("switchboard mcp-bridge: {problem}");
            }
        }
        Err(fatal) => {
            if let (true, Some(id)) = (is_request, &id) {
                let _ = tx.send(Out::Line(rpc_error(id, -32603, &fatal)));
            }
            let _ = tx.send(Out::Fatal(fatal));
        }
    }
}

/// One POST of `body`: the answer's messages go to `tx`. `Ok(Some(problem))`: the endpoint
/// answered with an error the agent should see; `Err`: the bridge cannot go on.
async fn post(
    bridge: &Bridge,
    body: &str,
    initialize: bool,
    tx: &mpsc::UnboundedSender<Out>,
) -> Result<Option<String>, String> {
    let (session, version) = bridge
        .session
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nX-Switchboard-Agent: {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        bridge.path,
        bridge.authority,
        bridge.token,
        body.len()
    );
    if let Some(s) = &session {
        head.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
    }
    if let Some(v) = &version {
        head.push_str(&format!("MCP-Protocol-Version: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut io = connect(bridge).await?;
    let mut request = head.into_bytes();
    request.extend_from_slice(body.as_bytes());
    // A server may answer (a refusal) and close before it read the whole request: its
    // answer is still read, and only without one is the failed write the reason.
    let unsent = match io.write_all(&request).await {
        Ok(()) => io.flush().await.err(),
        Err(e) => Some(e),
    };
    let mut decoder = SseDecoder::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut seen_any = false;
    loop {
        let n = match io.read(&mut buf).await {
            Ok(n) => n,
            Err(e) if seen_any || unsent.is_none() => {
                return Err(gone(bridge, &format!("the answer broke off: {e}")))
            }
            Err(_) => 0,
        };
        if n == 0 {
            if let (false, Some(e)) = (seen_any, &unsent) {
                return Err(gone(bridge, &format!("cannot send: {e}")));
            }
            break;
        }
        seen_any = true;
        decoder
            .feed(&buf[..n])
            .map_err(|e| gone(bridge, &format!("a malformed answer: {e}")))?;
        if decoder.is_stream() {
            for data in decoder.data() {
                relay_message(bridge, &data, initialize, &decoder, tx);
            }
            if decoder.ended() {
                break;
            }
        }
    }
    if !seen_any || decoder.status().is_none() {
        return Err(gone(bridge, "the connection closed without an answer"));
    }
    if decoder.is_stream() {
        return Ok(None);
    }
    let raw = std::mem::take(&mut decoder.raw_answer);
    let (status, body) =
        parse_response(&raw).ok_or_else(|| gone(bridge, "a malformed answer (no HTTP head)"))?;
    let text = String::from_utf8_lossy(body).trim().to_string();
    match status {
        200 => {
            relay_message(bridge, &text, initialize, &decoder, tx);
            Ok(None)
        }
        202 | 204 => Ok(None),
        401 | 403 => Err(format!(
            "Switchboard refused the agent's credential (HTTP {status}: {text}); it ends when \
             the agent stops"
        )),
        _ => {
            // rmcp's refusals are JSON-RPC errors: pass them on as they are.
            if serde_json::from_str::<Value>(&text).is_ok_and(|v| {
                v.get("jsonrpc").is_some() && v.get("id").is_some_and(|i| !i.is_null())
            }) {
                let _ = tx.send(Out::Line(text));
                return Ok(None);
            }
            Ok(Some(format!("Switchboard answered HTTP {status}: {text}")))
        }
    }
}

/// Sends one message of an answer to stdout (compact, one line); after `initialize`, keeps
/// the session id and the protocol version for the next requests.
fn relay_message(
    bridge: &Bridge,
    data: &str,
    initialize: bool,
    decoder: &SseDecoder,
    tx: &mpsc::UnboundedSender<Out>,
) {
    let Ok(message) = serde_json::from_str::<Value>(data) else {
        // An SSE priming event or keepalive with no JSON in it.
        return;
    };
    if initialize {
        let mut session = bridge.session.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = decoder.header("mcp-session-id") {
            session.0 = Some(id.to_string());
        }
        if let Some(v) = message
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
        {
            session.1 = Some(v.to_string());
        }
    }
    let _ = tx.send(Out::Line(message.to_string()));
}

/// A connection to the endpoint through the socket.
async fn connect(bridge: &Bridge) -> Result<tokio::net::UnixStream, String> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::UnixStream::connect(&bridge.socket),
    )
    .await
    {
        Ok(Ok(io)) => Ok(io),
        Ok(Err(e)) => Err(gone(bridge, &format!("cannot connect: {e}"))),
        Err(_) => Err(gone(bridge, "no connection within 10s")),
    }
}

/// Why the endpoint cannot be reached.
fn gone(bridge: &Bridge, what: &str) -> String {
    format!(
        "Switchboard is not answering through {}: {what} (the server is gone, or the SSH \
         forward ended)",
        bridge.socket.display()
    )
}

/// Ends the MCP session (`DELETE`), best effort.
async fn close_session(bridge: &Bridge) {
    let session = bridge
        .session
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .0
        .clone();
    let Some(session) = session else {
        return;
    };
    let request = format!(
        "DELETE {} HTTP/1.1\r\nHost: {}\r\nX-Switchboard-Agent: {}\r\nMcp-Session-Id: {session}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        bridge.path, bridge.authority, bridge.token
    );
    let delete = async {
        let mut io = connect(bridge).await.ok()?;
        io.write_all(request.as_bytes()).await.ok()?;
        let mut sink = Vec::new();
        io.read_to_end(&mut sink).await.ok()
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), delete).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that answers every connection with `answer` (after reading the request).
    fn serve_once(dir: &Path, answer: String) -> PathBuf {
        let path = dir.join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        path
    }

    fn bridge(socket: PathBuf) -> Bridge {
        Bridge {
            socket,
            authority: "127.0.0.1:1".into(),
            path: "/mcp".into(),
            token: "t".into(),
            session: Mutex::new((None, None)),
        }
    }

    /// What one POST gives: its result and the lines for stdout.
    fn post_to(
        answer: String,
        initialize: bool,
    ) -> (Result<Option<String>, String>, Vec<String>, Bridge) {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = bridge(serve_once(dir.path(), answer));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let result = runtime.block_on(post(&b, "{}", initialize, &tx));
        let mut lines = Vec::new();
        while let Ok(Out::Line(l)) = rx.try_recv() {
            lines.push(l);
        }
        (result, lines, b)
    }

    /// An answer with `head` lines and `body` (its length counted).
    fn answer(status: &str, head: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\n{head}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn answers_as_json_as_sse_or_as_errors_are_relayed() {
        // A JSON answer to initialize: relayed as one line, its session kept.
        let (r, lines, b) = post_to(
            answer(
                "200 OK",
                "Content-Type: application/json\r\nMcp-Session-Id: s1\r\n",
                r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}"#,
            ),
            true,
        );
        assert_eq!(r, Ok(None));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(
            *b.session.lock().unwrap(),
            (Some("s1".to_string()), Some("2025-06-18".to_string()))
        );
        // An SSE answer, chunked: one compact line per message.
        let event = "data: {\"jsonrpc\": \"2.0\", \"id\": 2, \"result\": {}}\n\n";
        let (r, lines, _) = post_to(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n0\r\n\r\n",
                event.len()
            ),
            false,
        );
        assert_eq!(r, Ok(None));
        assert_eq!(lines, [r#"{"id":2,"jsonrpc":"2.0","result":{}}"#]);
        // A notification accepted: nothing to relay.
        let (r, lines, _) = post_to(answer("202 Accepted", "", ""), false);
        assert_eq!((r, lines.len()), (Ok(None), 0));
        // A JSON-RPC error of the endpoint goes to the agent as it is.
        let (r, lines, _) = post_to(
            answer(
                "400 Bad Request",
                "Content-Type: application/json\r\n",
                r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32600,"message":"bad"}}"#,
            ),
            false,
        );
        assert_eq!(r, Ok(None));
        assert!(lines[0].contains("-32600"), "{lines:?}");
        // Another refusal: the agent sees the status and the text.
        let (r, _, _) = post_to(answer("429 Too Many Requests", "", "too many\n"), false);
        assert_eq!(
            r,
            Ok(Some("Switchboard answered HTTP 429: too many".into()))
        );
        // A refused credential ends the bridge.
        let (r, _, _) = post_to(answer("401 Unauthorized", "", "no"), false);
        assert!(r.unwrap_err().contains("refused the agent's credential"));
        // Nobody behind the socket (the forward's far end is gone): the bridge ends.
        let (r, _, _) = post_to(String::new(), false);
        let gone = r.unwrap_err();
        assert!(
            gone.contains("Switchboard is not answering through"),
            "{gone}"
        );
    }
}
