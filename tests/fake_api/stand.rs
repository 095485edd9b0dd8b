//! The server part shared by the stand-ins of other model APIs ([`super::openai`],
//! [`super::gemini`]): the same hand-written HTTP/1.1 reading as the Anthropic stand-in
//! ([`super::read_head`], [`super::read_body`]), every request recorded ([`super::Recorded`]),
//! answers scripted (a closure first, then a FIFO queue, then a default). An API module only
//! says which requests are model calls (they take scripted answers) and turns an answer into a
//! [`Reply`]: a whole body, or a stream of server-sent events with pauses or a cut.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::{lock, read_body, read_head, reason, HttpRequest, ParseError, Recorded};

/// One step of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Bytes of the event stream (one or more whole events).
    Data(String),
    /// A pause.
    Wait(Duration),
    /// Close the connection here, without ending the stream.
    Cut,
}

/// How a request is answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `content-type`.
    pub content_type: &'static str,
    /// Wait this long before the status line.
    pub delay: Duration,
    /// The body.
    pub body: ReplyBody,
}

/// The body of a [`Reply`].
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    /// A body with a length.
    Whole(Vec<u8>),
    /// A chunked event stream.
    Stream(Vec<Step>),
}

impl Reply {
    /// A JSON body.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            delay: Duration::ZERO,
            body: ReplyBody::Whole(body.to_string().into_bytes()),
        }
    }

    /// An event stream (status 200).
    pub fn stream(steps: Vec<Step>) -> Self {
        Self {
            status: 200,
            content_type: "text/event-stream",
            delay: Duration::ZERO,
            body: ReplyBody::Stream(steps),
        }
    }

    /// The same reply after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What an API module gives the server.
pub struct Protocol<A> {
    /// Whether a request is a model call (takes a scripted answer).
    pub is_model_call: fn(&Recorded) -> bool,
    /// The reply to a request: `Some(answer)` for a model call, `None` for anything else.
    pub reply: fn(&Recorded, Option<A>) -> Reply,
}

type Responder<A> = Arc<dyn Fn(&Recorded) -> Option<A> + Send + Sync>;

struct Script<A> {
    responder: Option<Responder<A>>,
    queue: VecDeque<A>,
    default: A,
}

struct State<A> {
    script: Mutex<Script<A>>,
    log: Mutex<Vec<Recorded>>,
    received: watch::Sender<usize>,
    protocol: Protocol<A>,
}

impl<A: Clone> State<A> {
    fn record(&self, connection: usize, req: HttpRequest) -> Recorded {
        let mut log = lock(&self.log);
        let rec = Recorded::new(log.len() + 1, connection, req);
        log.push(rec.clone());
        let n = log.len();
        drop(log);
        self.received.send_replace(n);
        rec
    }

    fn choose(&self, rec: &Recorded) -> Option<A> {
        if !(self.protocol.is_model_call)(rec) {
            return None;
        }
        let responder = lock(&self.script).responder.clone();
        if let Some(answer) = responder.and_then(|f| f(rec)) {
            return Some(answer);
        }
        let mut script = lock(&self.script);
        Some(
            script
                .queue
                .pop_front()
                .unwrap_or_else(|| script.default.clone()),
        )
    }
}

/// A stand-in server on 127.0.0.1 and a free port; stops (and closes its connections) when
/// dropped.
pub struct Stand<A: Clone + Send + 'static> {
    port: u16,
    state: Arc<State<A>>,
    task: JoinHandle<()>,
}

impl<A: Clone + Send + 'static> Drop for Stand<A> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<A: Clone + Send + Sync + 'static> Stand<A> {
    /// Starts the server. Must run inside a tokio runtime.
    pub async fn start(protocol: Protocol<A>, default: A) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stand-in to 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let (received, _) = watch::channel(0);
        let state = Arc::new(State {
            script: Mutex::new(Script {
                responder: None,
                queue: VecDeque::new(),
                default,
            }),
            log: Mutex::new(Vec::new()),
            received,
            protocol,
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Self { port, state, task }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Queues an answer for the next model call no closure answers.
    pub fn push(&self, answer: A) {
        lock(&self.state.script).queue.push_back(answer);
    }

    /// The answer when the queue is empty.
    pub fn set_default(&self, answer: A) {
        lock(&self.state.script).default = answer;
    }

    /// A closure asked first for every model call; `None` lets the queue answer.
    pub fn respond_with(&self, f: impl Fn(&Recorded) -> Option<A> + Send + Sync + 'static) {
        lock(&self.state.script).responder = Some(Arc::new(f));
    }

    /// Answers still queued.
    pub fn queued(&self) -> usize {
        lock(&self.state.script).queue.len()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.log).clone()
    }

    /// The model calls received so far, in order.
    pub fn model_calls(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| (self.state.protocol.is_model_call)(r))
            .collect()
    }

    /// Waits until at least `n` requests were received (panics after `timeout`).
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let mut rx = self.state.received.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|&got| got >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "the stand-in got {} requests within {timeout:?}, expected at least {n}",
            lock(&self.state.log).len()
        );
        self.requests()
    }
}

async fn accept_loop<A: Clone + Send + Sync + 'static>(
    listener: TcpListener,
    state: Arc<State<A>>,
) {
    let mut connections = JoinSet::new();
    let mut next_connection = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    next_connection += 1;
                    connections.spawn(serve(stream, Arc::clone(&state), next_connection));
                }
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

async fn serve<A: Clone + Send + Sync + 'static>(
    stream: TcpStream,
    state: Arc<State<A>>,
    connection: usize,
) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let head = match read_head(&mut rd).await {
            Ok(Some(head)) => head,
            Ok(None) | Err(ParseError::Io(_)) => return,
            Err(e) => return super::refuse(&mut wr, &e).await,
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
            Err(e) => return super::refuse(&mut wr, &e).await,
        };
        let keep_alive = head.keep_alive();
        let rec = state.record(connection, HttpRequest { head, body });
        let answer = state.choose(&rec);
        let reply = (state.protocol.reply)(&rec, answer);
        let kept = write_reply(&mut wr, &reply, rec.n, keep_alive).await;
        if !(kept && keep_alive) {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

/// Writes `reply`; whether the connection can serve another request.
async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    reply: &Reply,
    n: usize,
    keep_alive: bool,
) -> bool {
    tokio::time::sleep(reply.delay).await;
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\nx-request-id: req_stand_{n}\r\nconnection: {connection}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
    );
    match &reply.body {
        ReplyBody::Whole(body) => {
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            let mut out = head.into_bytes();
            out.extend_from_slice(body);
            w.write_all(&out).await.is_ok() && w.flush().await.is_ok()
        }
        ReplyBody::Stream(steps) => {
            head.push_str("cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n");
            if w.write_all(head.as_bytes()).await.is_err() {
                return false;
            }
            for step in steps {
                match step {
                    Step::Data(data) => {
                        let chunk = format!("{:x}\r\n{data}\r\n", data.len());
                        if w.write_all(chunk.as_bytes()).await.is_err() || w.flush().await.is_err()
                        {
                            return false;
                        }
                    }
                    Step::Wait(d) => tokio::time::sleep(*d).await,
                    Step::Cut => return false,
                }
            }
            w.write_all(b"0\r\n\r\n").await.is_ok() && w.flush().await.is_ok()
        }
    }
}
