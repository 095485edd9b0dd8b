//! The dashboard's page: `assets/dashboard/` embedded in the binary (no build step, no Node),
//! served at `/` (`index.html`), `/dashboard/app.js` and `/dashboard/app.css` with a strict
//! Content-Security-Policy: scripts and styles only from this server, no inline script, no
//! eval, no frames, connections only back to this server. The page holds no data: it asks
//! the JSON API and `/events`, which need the login (see [`super::auth`]).

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::http::Body;

const INDEX: &str = include_str!("../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../../assets/dashboard/app.css");

/// The policy every page response carries.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Bytes of the embedded assets (what the page adds to the binary).
pub fn size() -> usize {
    INDEX.len() + APP_JS.len() + APP_CSS.len()
}

/// Whether `path` is one of the page's files.
pub fn is_asset(path: &str) -> bool {
    asset(path).is_some()
}

fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some((INDEX, "text/html; charset=utf-8")),
        "/dashboard/app.js" => Some((APP_JS, "text/javascript; charset=utf-8")),
        "/dashboard/app.css" => Some((APP_CSS, "text/css; charset=utf-8")),
        _ => None,
    }
}

/// The page's file for a GET of `req`, if it asks for one.
pub fn serve<B>(req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let (body, content_type) = asset(req.uri().path())?;
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    Some(resp)
}
