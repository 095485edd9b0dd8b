//! Who may use the dashboard: the owner, who proves it with a one-time login code or with the
//! server's token, and gets a session cookie for the page.
//!
//! - `switchboard dashboard` asks the running server (over its Unix socket, or with the bearer
//!   token) for a login link: `POST /api/dashboard_login` makes a one-time code (random, valid
//!   for [`CODE_TTL`], good once) and answers the URL `…/dashboard/login?code=CODE`.
//! - `GET /dashboard/login?code=CODE` trades the code for the session cookie and sends the
//!   browser to the page; `POST /dashboard/login` with `{"token": "..."}` (the page's form)
//!   does the same with the server's token. The token never appears in a URL.
//! - The cookie (`sb_session`, HttpOnly, SameSite=Strict, [`SESSION_TTL`]) is
//!   `EXPIRY.NONCE.MAC`, signed with a key derived from the server's token, so it survives a
//!   restart of the server (same token) and ends when the token changes.
//! - CSRF: a request authenticated by the cookie alone that is not a GET must carry
//!   `X-Switchboard-CSRF` with the session's CSRF token (derived from the cookie's nonce; the
//!   page reads it from `GET /dashboard/session`); SameSite=Strict and the Origin check come
//!   first. The cookie is good for `/api/`, `/events`, `/status` and the page's own routes,
//!   never for `/mcp`, `/metrics` or for making login codes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::http::Body;
use crate::util::now_ms;

/// How long a login code is good for.
pub const CODE_TTL: Duration = Duration::from_secs(120);
/// How long a session cookie is good for.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "sb_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-switchboard-csrf";
/// The API operation that makes a login link.
pub const LOGIN_OP: &str = "dashboard_login";
/// Most login codes outstanding at once.
const MAX_CODES: usize = 64;

/// The dashboard's login state: the signing key and the outstanding one-time codes.
pub struct Auth {
    /// The server's token (what `POST /dashboard/login` compares against), if any.
    token: Option<String>,
    /// Signs session cookies.
    key: [u8; 32],
    /// code → expiry (unix ms).
    codes: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

/// The answer to `POST /api/dashboard_login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginLink {
    /// Open this in a browser: it logs in once.
    pub url: String,
    /// How long the link is good for, seconds.
    pub expires_in_secs: u64,
}

/// The answer to `GET /dashboard/session`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Send this in `X-Switchboard-CSRF` with every POST (none when the server needs no login).
    pub csrf: Option<String>,
    /// When the session ends (unix ms), if it does.
    pub expires_at: Option<i64>,
}

/// How a request stands with respect to the session cookie.
#[derive(Debug, PartialEq, Eq)]
pub enum CookieAuth {
    /// No valid cookie (none, expired, forged, or not good for this route).
    None,
    /// A valid cookie, and (for a POST) the right CSRF token.
    Ok,
    /// A valid cookie but a state-changing request without the right CSRF token.
    CsrfRefused(&'static str),
}

impl Auth {
    /// The login state of a server with `token` (none: the server needs no login, but codes
    /// still work, signed with a key of this run).
    pub fn new(token: Option<String>) -> Self {
        let secret = token.clone().unwrap_or_else(super::server_file::new_token);
        let key = hmac(secret.as_bytes(), b"switchboard dashboard session key v1");
        Self {
            token,
            key,
            codes: Mutex::new(HashMap::new()),
        }
    }

    /// A new one-time login code.
    pub fn new_code(&self) -> String {
        let now = now_ms();
        let code = super::server_file::new_token();
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|_, exp| *exp > now);
        if codes.len() >= MAX_CODES {
            // The oldest goes: a flood of requests cannot grow the map.
            if let Some(oldest) = codes
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(c, _)| c.clone())
            {
                codes.remove(&oldest);
            }
        }
        codes.insert(code.clone(), now + CODE_TTL.as_millis() as i64);
        code
    }

    /// Uses up `code`: whether it was outstanding and not expired.
    pub fn take_code(&self, code: &str) -> bool {
        let now = now_ms();
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.remove(code).is_some_and(|exp| exp > now)
    }

    /// A new session: the cookie's value.
    pub fn new_session(&self) -> String {
        let exp = now_ms() + SESSION_TTL.as_millis() as i64;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let mac = hex(&hmac(
            &self.key,
            format!("session|{exp}|{nonce}").as_bytes(),
        ));
        format!("{exp}.{nonce}.{mac}")
    }

    /// The nonce and expiry of a valid session cookie value.
    fn verify(&self, value: &str) -> Option<(String, i64)> {
        let mut parts = value.splitn(3, '.');
        let exp: i64 = parts.next()?.parse().ok()?;
        let nonce = parts.next()?;
        let mac = parts.next()?;
        let want = hex(&hmac(
            &self.key,
            format!("session|{exp}|{nonce}").as_bytes(),
        ));
        (same(mac.as_bytes(), want.as_bytes()) && exp > now_ms()).then(|| (nonce.to_string(), exp))
    }

    /// The CSRF token of the session with `nonce`.
    fn csrf_for(&self, nonce: &str) -> String {
        hex(&hmac(&self.key, format!("csrf|{nonce}").as_bytes()))[..32].to_string()
    }

    /// The session of a request's cookie: (CSRF token, expiry).
    pub fn session_of<B>(&self, req: &Request<B>) -> Option<(String, i64)> {
        let value = cookie(req, COOKIE)?;
        let (nonce, exp) = self.verify(&value)?;
        Some((self.csrf_for(&nonce), exp))
    }

    /// Whether `given` is the server's token.
    fn is_token(&self, given: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| same(given.trim().as_bytes(), t.as_bytes()))
    }

    /// Checks a request that did not carry the bearer token against the session cookie: the
    /// route must be one the cookie is good for, and a request that is not a GET must carry
    /// the session's CSRF token.
    pub fn check_cookie<B>(&self, req: &Request<B>) -> CookieAuth {
        let path = req.uri().path();
        let allowed = path.starts_with("/api/")
            || path.starts_with("/dashboard/")
            || path == "/events"
            || path == "/status";
        if !allowed || path == format!("/api/{LOGIN_OP}") {
            return CookieAuth::None;
        }
        let Some((csrf, _)) = self.session_of(req) else {
            return CookieAuth::None;
        };
        if req.method() == Method::GET || req.method() == Method::HEAD {
            return CookieAuth::Ok;
        }
        let given = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if given.is_empty() {
            CookieAuth::CsrfRefused("missing X-Switchboard-CSRF header (the page's CSRF token)")
        } else if !same(given.as_bytes(), csrf.as_bytes()) {
            CookieAuth::CsrfRefused("wrong X-Switchboard-CSRF token for this session")
        } else {
            CookieAuth::Ok
        }
    }
}

/// Whether a route is open to anyone who passed the Host/Origin check: the page and its
/// assets (they hold no data) and the login routes.
pub fn is_open<B>(req: &Request<B>) -> bool {
    let path = req.uri().path();
    match *req.method() {
        Method::GET | Method::HEAD => super::page::is_asset(path) || path == "/dashboard/login",
        Method::POST => path == "/dashboard/login" || path == "/dashboard/logout",
        _ => false,
    }
}

/// Serves the login routes; gives the request back when it is not one of them.
/// `trusted`: the request came over the Unix socket or with the bearer token (only then may it
/// make a login code). `base`: the server's URL (`http://HOST:PORT/mcp`).
pub(crate) async fn route(
    auth: &Auth,
    req: Request<Incoming>,
    trusted: bool,
    base: &str,
    body_timeout: Duration,
) -> Result<Response<Body>, Request<Incoming>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::POST, p) if p == format!("/api/{LOGIN_OP}") => {
            if !trusted {
                return Ok(plain(
                    StatusCode::FORBIDDEN,
                    "forbidden: a login link is made with the server's token or over its socket \
                     (switchboard dashboard)\n",
                ));
            }
            let root = base.strip_suffix(super::MCP_PATH).unwrap_or(base);
            let link = LoginLink {
                url: format!("{root}/dashboard/login?code={}", auth.new_code()),
                expires_in_secs: CODE_TTL.as_secs(),
            };
            Ok(json(StatusCode::OK, &link))
        }
        (Method::GET | Method::HEAD, "/dashboard/login") => {
            let code = req
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| kv.strip_prefix("code="))
                .unwrap_or_default()
                .to_string();
            if code.is_empty() || !auth.take_code(&code) {
                return Ok(plain(
                    StatusCode::UNAUTHORIZED,
                    "this login link is not valid: it was used already, it expired (links last \
                     2 minutes), or the server restarted. Run `switchboard dashboard` for a new \
                     one, or open / and give the server's token.\n",
                ));
            }
            let mut resp = plain(StatusCode::SEE_OTHER, "logged in; go to /\n");
            resp.headers_mut()
                .insert(header::LOCATION, header::HeaderValue::from_static("/"));
            // The used code stays out of any Referer.
            resp.headers_mut().insert(
                header::REFERRER_POLICY,
                header::HeaderValue::from_static("no-referrer"),
            );
            set_cookie(&mut resp, &auth.new_session(), SESSION_TTL.as_secs());
            Ok(resp)
        }
        (Method::POST, "/dashboard/login") => {
            #[derive(Deserialize)]
            struct TokenLogin {
                token: String,
            }
            let read = http_body_util::Limited::new(req.into_body(), 4096).collect();
            let body = match tokio::time::timeout(body_timeout, read).await {
                Ok(Ok(b)) => b.to_bytes(),
                _ => return Ok(plain(StatusCode::BAD_REQUEST, "bad request body\n")),
            };
            let Ok(login) = serde_json::from_slice::<TokenLogin>(&body) else {
                return Ok(plain(
                    StatusCode::BAD_REQUEST,
                    "send {\"token\": \"...\"} as JSON\n",
                ));
            };
            if !auth.is_token(&login.token) {
                return Ok(plain(
                    StatusCode::UNAUTHORIZED,
                    "wrong token: give the server's token (server.token beside the database, \
                     $SWITCHBOARD_TOKEN or [server] auth_token)\n",
                ));
            }
            let mut resp = json(StatusCode::OK, &serde_json::json!({"ok": true}));
            set_cookie(&mut resp, &auth.new_session(), SESSION_TTL.as_secs());
            Ok(resp)
        }
        (Method::POST, "/dashboard/logout") => {
            let mut resp = json(StatusCode::OK, &serde_json::json!({"ok": true}));
            set_cookie(&mut resp, "", 0);
            Ok(resp)
        }
        (Method::GET, "/dashboard/session") => {
            let info = match auth.session_of(&req) {
                Some((csrf, exp)) => SessionInfo {
                    csrf: Some(csrf),
                    expires_at: Some(exp),
                },
                None => SessionInfo {
                    csrf: None,
                    expires_at: None,
                },
            };
            Ok(json(StatusCode::OK, &info))
        }
        _ => Err(req),
    }
}

fn set_cookie(resp: &mut Response<Body>, value: &str, max_age: u64) {
    let cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
}

/// The value of cookie `name` of a request.
fn cookie<B>(req: &Request<B>, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_string(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn codes_are_single_use_and_cookies_are_signed() {
        let auth = Auth::new(Some("a-token-of-enough-length".into()));
        let code = auth.new_code();
        assert!(auth.take_code(&code));
        assert!(!auth.take_code(&code), "a code is good once");
        assert!(!auth.take_code("made-up"));
        let cookie = auth.new_session();
        assert!(auth.verify(&cookie).is_some());
        let forged = format!("{}0", &cookie[..cookie.len() - 1]);
        assert!(auth.verify(&forged).is_none() || forged == cookie);
        let other = Auth::new(Some("another-token-of-enough-length".into()));
        assert!(
            other.verify(&cookie).is_none(),
            "another token, another key"
        );
        let expired = {
            let exp = now_ms() - 1;
            let mac = hex(&hmac(&auth.key, format!("session|{exp}|n").as_bytes()));
            format!("{exp}.n.{mac}")
        };
        assert!(auth.verify(&expired).is_none());
    }

    #[test]
    fn csrf_is_needed_for_cookie_posts() {
        let auth = Auth::new(Some("a-token-of-enough-length".into()));
        let cookie = format!("{COOKIE}={}", auth.new_session());
        let get = Request::get("/events")
            .header(header::COOKIE, &cookie)
            .body(())
            .expect("request");
        assert_eq!(auth.check_cookie(&get), CookieAuth::Ok);
        let (csrf, _) = auth.session_of(&get).expect("session");
        let post = |csrf: Option<&str>, path: &str| {
            let mut b = Request::post(path).header(header::COOKIE, &cookie);
            if let Some(c) = csrf {
                b = b.header(CSRF_HEADER, c);
            }
            b.body(()).expect("request")
        };
        assert!(matches!(
            auth.check_cookie(&post(None, "/api/tell")),
            CookieAuth::CsrfRefused(_)
        ));
        assert!(matches!(
            auth.check_cookie(&post(Some("nope"), "/api/tell")),
            CookieAuth::CsrfRefused(_)
        ));
        assert_eq!(
            auth.check_cookie(&post(Some(&csrf), "/api/tell")),
            CookieAuth::Ok
        );
        assert_eq!(
            auth.check_cookie(&post(Some(&csrf), "/mcp")),
            CookieAuth::None
        );
        assert_eq!(
            auth.check_cookie(&post(Some(&csrf), "/api/dashboard_login")),
            CookieAuth::None
        );
    }
}
