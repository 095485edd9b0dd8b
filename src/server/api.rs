//! `POST /api/<op>`: what the `switchboard` CLI asks of a running server, so that commands
//! acting on live agents (tell, compact, wake, sleep, reboot, cancel) use the server's agents
//! and leases instead of starting their own. JSON in, JSON out; errors carry the message and
//! the exit code the CLI should use. Same gates as every route (loopback Host, bearer token).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::router::{approvals, Router, RouterError, TellOptions, Wait};
use crate::store::{Tell, TellKind};
use crate::Error;

/// A pair of teams.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pair {
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TellArgs {
    from: String,
    to: String,
    text: String,
    /// Wait at most this long; absent = until answered.
    timeout_ms: Option<u64>,
    /// Return at once with the queued tell.
    #[serde(default, rename = "async")]
    quick: bool,
    /// When the wait runs out, cancel the tell (the CLI's `--timeout`).
    #[serde(default)]
    cancel_on_timeout: bool,
    /// The caller's idempotency key (`tell --id`): the same tell sent again with it is not a
    /// second tell.
    #[serde(default)]
    id: Option<String>,
}

/// Waiting for a tell already stored (the CLI stores first, then waits, so it knows the id
/// even when the server goes away mid-wait).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    tell_id: String,
    /// Wait at most this long; absent = until answered.
    timeout_ms: Option<u64>,
    /// When the wait runs out, cancel the tell.
    #[serde(default)]
    cancel_on_timeout: bool,
}

/// One tell by id.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TellId {
    tell_id: String,
}

/// `approvals`: which permission requests to list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsArgs {
    /// Decided ones too.
    #[serde(default)]
    all: bool,
    /// Only those of this team (either side).
    #[serde(default)]
    team: Option<String>,
    /// Only those of this tell.
    #[serde(default)]
    tell_id: Option<String>,
    /// At most this many.
    #[serde(default)]
    limit: Option<u32>,
}

/// `approve`: a person's decision on one request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveArgs {
    /// The request id (or a unique prefix).
    id: String,
    /// `allow` or `deny`.
    decision: String,
    /// With allow: also add a session rule.
    #[serde(default)]
    always: bool,
    /// With deny: what to tell the agent.
    #[serde(default)]
    reason: Option<String>,
}

/// Runs `op` with the JSON `body`; `Ok` is the answer, `Err` is (HTTP status, error JSON).
pub(crate) async fn handle(router: &Router, op: &str, body: &[u8]) -> Result<Value, (u16, Value)> {
    let bad = |msg: String| (400, json!({"error": msg, "exit_code": 2}));
    let parse = |what: &str| -> Result<Value, (u16, Value)> {
        serde_json::from_slice(body).map_err(|e| bad(format!("{what}: bad request body: {e}")))
    };
    let result: Result<Value, Error> = match op {
        "tell" => {
            let a: TellArgs =
                serde_json::from_value(parse("tell")?).map_err(|e| bad(e.to_string()))?;
            tell(router, a).await
        }
        "wait" => {
            let a: WaitArgs =
                serde_json::from_value(parse("wait")?).map_err(|e| bad(e.to_string()))?;
            wait(router, &a.tell_id, a.timeout_ms, a.cancel_on_timeout).await
        }
        "cancel_tell" => {
            let a: TellId =
                serde_json::from_value(parse("cancel_tell")?).map_err(|e| bad(e.to_string()))?;
            router
                .cancel_one(&a.tell_id)
                .await
                .map(|(t, was_open)| {
                    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
                    v["was_open"] = json!(was_open);
                    v
                })
                .map_err(Error::from)
        }
        "retry" => {
            let a: TellId =
                serde_json::from_value(parse("retry")?).map_err(|e| bad(e.to_string()))?;
            router
                .retry(&a.tell_id)
                .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
                .map_err(Error::from)
        }
        // The dashboard's views and its delete (types in router::dashboard).
        "overview" | "pair" | "stats" | "delete" => dashboard(router, op, &parse(op)?).await,
        "approvals" => {
            let a: ApprovalsArgs = if body.iter().all(u8::is_ascii_whitespace) {
                ApprovalsArgs::default()
            } else {
                serde_json::from_value(parse("approvals")?).map_err(|e| bad(e.to_string()))?
            };
            let filter = approvals::ApprovalFilter {
                all: a.all,
                team: a.team,
                tell_id: a.tell_id,
                caller: None,
                limit: a.limit,
            };
            approvals::list_approvals(router.manager(), &filter)
                .map(|list| json!({"approvals": list}))
                .map_err(Error::from)
        }
        "approve" => {
            let a: ApproveArgs =
                serde_json::from_value(parse("approve")?).map_err(|e| bad(e.to_string()))?;
            let decision = approvals::Decision::from_words(&a.decision, a.always, a.reason)
                .map_err(|e| bad(format!("approve: {e}")))?;
            approvals::decide(
                router.manager(),
                &a.id,
                decision,
                approvals::Decider::Person,
            )
            .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
            .map_err(Error::from)
        }
        "compact" | "wake" | "sleep" | "reboot" | "cancel" => {
            let p: Pair = serde_json::from_value(parse(op)?).map_err(|e| bad(e.to_string()))?;
            pair_op(router, op, &p.from, &p.to).await
        }
        other => {
            return Err((
                404,
                json!({"error": format!("no such operation: {other}"), "exit_code": 1}),
            ))
        }
    };
    result.map_err(|e| {
        let code = e.exit_code();
        let status = match (&e, code) {
            (_, 2) => 400,
            (Error::Router(RouterError::Session(crate::session::SessionError::Busy { .. })), _) => {
                409
            }
            (Error::NotFound(_), _)
            | (Error::Router(RouterError::ApprovalNotFound(_)), _)
            | (Error::Router(RouterError::TellNotFound(_)), _) => 404,
            (Error::Router(RouterError::Approval(_)), _) => 409,
            (Error::Router(RouterError::Limited { .. }), _) => 429,
            _ => 500,
        };
        let mut body = json!({"error": e.to_string(), "exit_code": code});
        if let Error::Router(RouterError::Limited { retry_after, .. }) = &e {
            // The listener turns this into a Retry-After header.
            body["retry_after_secs"] = json!(retry_after.as_secs().max(1));
        }
        (status, body)
    })
}

async fn tell(router: &Router, a: TellArgs) -> Result<Value, Error> {
    let options = TellOptions {
        idempotency_key: a.id.as_deref(),
        ..Default::default()
    };
    let t: Tell = router.submit_with(&a.from, &a.to, TellKind::Tell, &a.text, &options)?;
    if a.quick {
        return Ok(serde_json::to_value(t).unwrap_or(Value::Null));
    }
    wait(router, &t.tell_id, a.timeout_ms, a.cancel_on_timeout).await
}

/// Waits for a stored tell; `timed_out` says whether the wait ran out first.
async fn wait(
    router: &Router,
    tell_id: &str,
    timeout_ms: Option<u64>,
    cancel_on_timeout: bool,
) -> Result<Value, Error> {
    let wait = timeout_ms.map_or(Wait::Forever, |ms| Wait::For(Duration::from_millis(ms)));
    let mut t = router.wait_for(tell_id, wait).await?;
    let timed_out = !t.state.is_final();
    if timed_out && cancel_on_timeout {
        router.cancel_tell(&t.tell_id)?;
        t = router
            .wait_for(&t.tell_id, Wait::For(Duration::from_secs(20)))
            .await?;
    }
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    v["timed_out"] = json!(timed_out);
    Ok(v)
}

async fn pair_op(router: &Router, op: &str, from: &str, to: &str) -> Result<Value, Error> {
    let value = match op {
        "compact" => serde_json::to_value(router.compact(from, to, Wait::Forever).await?),
        "wake" => {
            let queued = {
                let m = router.manager();
                m.check_team(from)?;
                m.check_team(to)?;
                m.store().open_tells(from, to)?
            };
            let pid = router.wake(from, to).await?;
            for t in &queued {
                router.wait_for(&t.tell_id, Wait::Forever).await?;
            }
            Ok(json!({"from_team": from, "to_team": to, "pid": pid, "delivered": queued.len()}))
        }
        "sleep" => {
            let m = router.manager();
            m.check_team(from)?;
            m.check_team(to)?;
            let was_running = router.sleep(from, to).await?;
            Ok(json!({"from_team": from, "to_team": to, "was_running": was_running}))
        }
        "reboot" => serde_json::to_value(router.reboot(from, to).await?),
        _ => {
            let report = router.cancel(from, to)?;
            if let Some(id) = &report.interrupted {
                router
                    .wait_for(id, Wait::For(Duration::from_secs(20)))
                    .await?;
            }
            serde_json::to_value(report)
        }
    };
    value.map_err(|e| Error::Other(format!("cannot render the answer: {e}")))
}

/// The dashboard's operations: typed arguments in, typed answers out.
async fn dashboard(router: &Router, op: &str, body: &Value) -> Result<Value, Error> {
    use crate::router::dashboard::{DeleteArgs, OverviewArgs, PairArgs, StatsArgs};
    fn args<T: serde::de::DeserializeOwned>(op: &str, body: &Value) -> Result<T, Error> {
        serde_json::from_value(body.clone()).map_err(|e| Error::Usage(format!("{op}: {e}")))
    }
    fn out<T: serde::Serialize>(v: T) -> Result<Value, Error> {
        serde_json::to_value(v).map_err(|e| Error::Other(format!("cannot render the answer: {e}")))
    }
    match op {
        "overview" => {
            args::<OverviewArgs>(op, body)?;
            out(router.overview()?)
        }
        "pair" => out(router.pair_view(&args::<PairArgs>(op, body)?)?),
        "stats" => out(router.dash_stats(&args::<StatsArgs>(op, body)?)?),
        _ => out(router.delete_pair(&args::<DeleteArgs>(op, body)?).await?),
    }
}
