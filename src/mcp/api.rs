//! `POST /api/<op>`: what the `switchboard` CLI asks of a running server, so that commands
//! acting on live agents (tell, compact, wake, sleep, reboot, cancel) use the server's agents
//! and leases instead of starting their own. JSON in, JSON out; errors carry the message and
//! the exit code the CLI should use. Same gates as every route (loopback Host, bearer token).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::router::{Router, RouterError, Wait};
use crate::store::TellKind;
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
            (Error::NotFound(_), _) => 404,
            _ => 500,
        };
        (status, json!({"error": e.to_string(), "exit_code": code}))
    })
}

async fn tell(router: &Router, a: TellArgs) -> Result<Value, Error> {
    if a.quick {
        let t = router.submit(&a.from, &a.to, TellKind::Tell, &a.text, None)?;
        return Ok(serde_json::to_value(t).unwrap_or(Value::Null));
    }
    let wait = a
        .timeout_ms
        .map_or(Wait::Forever, |ms| Wait::For(Duration::from_millis(ms)));
    let mut t = router.tell(&a.from, &a.to, &a.text, wait).await?;
    let timed_out = !t.state.is_final();
    if timed_out && a.cancel_on_timeout {
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
