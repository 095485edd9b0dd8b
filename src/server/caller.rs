//! Who is calling a tool, and the tools' lenient argument extractor.
//!
//! The caller is never a tool argument. A stdio server acts as the team it was started
//! `--as`. Over HTTP, rmcp puts the request's `http::request::Parts` into the request
//! context's extensions; from them: `X-Switchboard-Agent: <token>` (the agents Switchboard
//! spawns; the router knows their tokens), else `?team=NAME` or `X-Switchboard-Team: NAME`.
//! An agent token always wins: a request carrying one is that agent whatever else it says
//! (the listener has already refused unknown tokens and anything but `/mcp` with one).

use std::sync::Arc;

use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::JsonObject;
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use serde::de::DeserializeOwned;

use super::{AGENT_HEADER, TEAM_HEADER};
use crate::router::{Caller, Router};

/// Tool arguments, parsed without failing the JSON-RPC request: a value of the wrong type or a
/// missing field becomes a tool error result the agent can read and correct, not a protocol
/// error (`Parameters<T>` of rmcp answers those with `-32602`).
pub struct Args<T>(pub Result<T, String>);

impl<T> Args<T> {
    /// The arguments, or the message saying what is wrong with them.
    pub fn get(self) -> Result<T, String> {
        self.0
    }
}

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Args<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, rmcp::ErrorData> {
        let arguments = context.arguments.take().unwrap_or_default();
        Ok(Args(
            serde_json::from_value(serde_json::Value::Object(arguments))
                .map_err(|e| format!("invalid arguments: {e}")),
        ))
    }
}

/// The input schema of a tool taking `T` (an empty object schema if `T`'s cannot be made,
/// which a unit test rules out).
pub fn schema<T: schemars::JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_input::<T>()
        .unwrap_or_else(|_| rmcp::handler::server::common::schema_for_empty_input())
}

/// The caller of a tool call: `fixed` (stdio), else from the HTTP request.
pub fn caller_of(
    router: &Router,
    fixed: Option<&Caller>,
    ctx: &RequestContext<RoleServer>,
) -> Result<Caller, String> {
    if let Some(c) = fixed {
        return Ok(c.clone());
    }
    let parts = ctx.extensions.get::<http::request::Parts>();
    let header = |name: &str| {
        parts
            .and_then(|p| p.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(token) = header(AGENT_HEADER) {
        return router.caller_from_agent_token(token).ok_or_else(|| {
            "unknown caller: this agent's token is not known to this server (was it \
             restarted? agents get a new token when they are started again)"
                .to_string()
        });
    }
    let team = parts
        .and_then(|p| p.uri.query())
        .and_then(|q| query_param(q, "team"))
        .or_else(|| header(TEAM_HEADER).map(str::to_string));
    match team {
        Some(team) => Ok(Caller::Team(team)),
        None => Err("unknown caller: connect with ?team=NAME (for example \
                     http://127.0.0.1:7717/mcp?team=frontend) or the X-Switchboard-Team header"
            .to_string()),
    }
}

/// The value of `key` in a URL query string, percent-decoded.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key)
            .then(|| percent_decode(v))
            .filter(|v| !v.is_empty())
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_and_decoded() {
        assert_eq!(
            query_param("team=frontend", "team").as_deref(),
            Some("frontend")
        );
        assert_eq!(
            query_param("a=1&team=me%40home", "team").as_deref(),
            Some("me@home")
        );
        assert_eq!(query_param("team=", "team"), None);
        assert_eq!(query_param("teams=x", "team"), None);
        assert_eq!(query_param("team=a%2", "team").as_deref(), Some("a%2"));
        assert_eq!(query_param("team=a%zz", "team").as_deref(), Some("a%zz"));
    }
}
