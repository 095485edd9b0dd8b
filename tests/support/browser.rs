//! A real headless Chromium for the dashboard's tests, driven through chromedriver's W3C
//! WebDriver HTTP API with the tests' own HTTP client (no WebDriver crate). Debian's
//! `chromium` and `chromium-driver` (scripts/test.sh installs them). Each [`Browser`] has its
//! own chromedriver on a free port and a fresh profile folder; both go when it is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::poll_until;
use super::serve::{parse_reply, Reply};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    authority: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// Where a binary is: `$VAR`, else the first of `names` on the usual paths.
fn find(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    names
        .iter()
        .flat_map(|n| {
            ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"]
                .iter()
                .map(move |d| Path::new(d).join(n))
        })
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (window `width` x `height`).
    pub fn start(width: u32, height: u32) -> Self {
        let chromium = find("SWITCHBOARD_TEST_CHROMIUM", &["chromium", "chromium-browser"])
            .expect("chromium is not installed: run scripts/test.sh (it installs chromium and chromium-driver)");
        let chromedriver = find("SWITCHBOARD_TEST_CHROMEDRIVER", &["chromedriver"]).expect(
            "chromedriver is not installed: run scripts/test.sh (it installs chromium-driver)",
        );
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let authority = format!("127.0.0.1:{port}");
        let up = poll_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(&authority).is_ok()
                && call(&authority, "GET", "/status", None)["value"]["ready"] == json!(true)
        });
        assert!(up, "chromedriver did not get ready on {authority}");
        let profile = tempfile::Builder::new()
            .prefix("switchboard-chromium-")
            .tempdir()
            .expect("profile folder");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let v = call(&authority, "POST", "/session", Some(&caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Browser {
            driver,
            authority,
            session,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.try_cmd(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let v = call(
            &self.authority,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        );
        match v["value"]["error"].as_str() {
            Some(err) => Err(format!("{err}: {}", v["value"]["message"])),
            None => Ok(v["value"].clone()),
        }
    }

    /// Finds `css` and runs `action` on it; when the page re-rendered in between (a live
    /// update), finds it again (a few times).
    fn on_element(&self, css: &str, action: &str, body: &Value) {
        let mut last = String::new();
        for _ in 0..5 {
            let id = self.find(css);
            match self.try_cmd("POST", &format!("/element/{id}/{action}"), Some(body)) {
                Ok(_) => return,
                Err(e) if e.starts_with("stale element reference") => last = e,
                Err(e) => panic!("WebDriver {action} on {css}: {e}"),
            }
        }
        panic!("WebDriver {action} on {css}: {last}");
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its result.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// Waits (bounded) until `expr` (a JavaScript expression) is truthy; panics naming `what`
    /// with the page's text otherwise.
    pub fn wait_for(&self, what: &str, expr: &str) {
        let script = format!("try {{ return !!({expr}); }} catch (e) {{ return false; }}");
        let ok = poll_until(Duration::from_secs(30), || {
            let done = self.js(&script, json!([])) == json!(true);
            if !done {
                // Each check is a WebDriver round trip: a short pause keeps them cheap.
                std::thread::park_timeout(Duration::from_millis(40));
            }
            done
        });
        if !ok {
            let text = self.js("return document.body.innerText", json!([]));
            panic!("timed out waiting for {what} ({expr}); the page says:\n{text}");
        }
    }

    /// The first element matching `css` (panics if none).
    pub fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    /// Clicks the first element matching `css`.
    pub fn click(&self, css: &str) {
        self.on_element(css, "click", &json!({}));
    }

    /// Presses Enter on the first element matching `css` (the keyboard's way to use a control).
    pub fn press_enter(&self, css: &str) {
        self.on_element(css, "value", &json!({ "text": "\u{E007}" }));
    }

    /// Types `text` into the first element matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "clear", &json!({}));
        self.on_element(css, "value", &json!({ "text": text }));
    }

    /// The visible text of the first element matching `css` (read in one step: the page
    /// re-renders live, so an element found in one call may be gone in the next).
    pub fn text(&self, css: &str) -> String {
        let v = self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json!([css]),
        );
        v.as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    /// Resizes the window.
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(&json!({"width": width, "height": height})),
        );
    }

    /// Saves a screenshot of the page as `target/dashboard-screenshots/NAME.png` and returns
    /// its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(v.as_str().expect("a base64 screenshot"));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(
            &self.authority,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver call: the answer's JSON.
fn call(authority: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string).unwrap_or_default();
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("Content-Type", "application/json")]
    };
    let r = request(authority, method, path, headers, &body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| {
        panic!(
            "WebDriver {method} {path}: not JSON ({e}): {} {}",
            r.status, r.body
        )
    })
}

/// One HTTP/1.1 request, its answer read up to its `Content-Length` (chromedriver keeps the
/// connection open whatever `Connection: close` says, so reading to the end would hang).
fn request(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to chromedriver");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
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
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).expect("read the answer");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        if length.is_some_and(|len| raw.len() >= end + 4 + len) {
            break;
        }
    }
    parse_reply(&raw)
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
