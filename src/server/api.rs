//! `POST /api/<op>`: what the `switchboard` CLI asks of a running server, so that commands
//! acting on live agents (tell, compact, wake, sleep, reboot, cancel) use the server's agents
//! and leases instead of starting their own. JSON in, JSON out; errors carry the message and
//! the exit code the CLI should use. Same gates as every route (loopback Host, bearer token).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::api_types::{
    ApprovalsAnswer, ApprovalsRequest, ApproveRequest, DeleteArgs, ErrorAnswer, Op, OverviewArgs,
    PairArgs, PairRequest, SleepAnswer, StatsArgs, TellAnswer, TellIdRequest, TellRequest,
    WaitRequest, WakeAnswer,
};
use crate::router::{approvals, Router, RouterError, TellOptions, Wait};
use crate::store::{Tell, TellKind};
use crate::Error;

/// A refused or failed request: the HTTP status and the error answer.
pub(crate) type Refusal = (u16, ErrorAnswer);

/// A refusal of a bad request (exit code 2).
fn bad(msg: String) -> Refusal {
    (400, error_body(msg, 2, None))
}

fn error_body(error: String, exit_code: i32, retry_after_secs: Option<u64>) -> ErrorAnswer {
    ErrorAnswer {
        error,
        exit_code,
        retry_after_secs,
    }
}

/// The request of `op` from `body`: first JSON, then the operation's type.
fn request<T: DeserializeOwned>(op: Op, body: &[u8]) -> Result<T, Refusal> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("{op}: bad request body: {e}")))?;
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

/// A dashboard request from `body`: its errors are usage errors naming the operation.
fn dash_request<T: DeserializeOwned>(op: Op, body: &[u8]) -> Result<Result<T, Error>, Refusal> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("{op}: bad request body: {e}")))?;
    Ok(serde_json::from_value(v).map_err(|e| Error::Usage(format!("{op}: {e}"))))
}

/// An answer as JSON.
fn out<T: Serialize>(v: T) -> Result<Value, Error> {
    serde_json::to_value(v).map_err(|e| Error::Other(format!("cannot render the answer: {e}")))
}

/// Runs `op` with the JSON `body`; `Ok` is the answer, `Err` is (HTTP status, error JSON).
pub(crate) async fn handle(router: &Router, op: &str, body: &[u8]) -> Result<Value, Refusal> {
    let no_such = |op: &str| (404, error_body(format!("no such operation: {op}"), 1, None));
    let Some(op) = Op::from_name(op) else {
        return Err(no_such(op));
    };
    let result: Result<Value, Error> = match op {
        Op::Tell => tell(router, request(op, body)?).await,
        Op::Wait => {
            let a: WaitRequest = request(op, body)?;
            wait(router, &a.tell_id, a.timeout_ms, a.cancel_on_timeout)
                .await
                .and_then(out)
        }
        Op::CancelTell => {
            let a: TellIdRequest = request(op, body)?;
            match router.cancel_one(&a.tell_id).await {
                Ok((t, was_open)) => out(TellAnswer {
                    was_open: Some(was_open),
                    ..TellAnswer::of(t)
                }),
                Err(e) => Err(e.into()),
            }
        }
        Op::Retry => {
            let a: TellIdRequest = request(op, body)?;
            router
                .retry(&a.tell_id)
                .map_err(Error::from)
                .and_then(|t| out(TellAnswer::of(t)))
        }
        // The dashboard's views and its delete (types in router::dashboard).
        Op::Overview => match dash_request::<OverviewArgs>(op, body)? {
            Ok(_) => router.overview().map_err(Error::from).and_then(out),
            Err(e) => Err(e),
        },
        Op::Pair => match dash_request::<PairArgs>(op, body)? {
            Ok(a) => router.pair_view(&a).map_err(Error::from).and_then(out),
            Err(e) => Err(e),
        },
        Op::Stats => match dash_request::<StatsArgs>(op, body)? {
            Ok(a) => router.dash_stats(&a).map_err(Error::from).and_then(out),
            Err(e) => Err(e),
        },
        Op::Delete => match dash_request::<DeleteArgs>(op, body)? {
            Ok(a) => match router.delete_pair(&a).await {
                Ok(d) => out(d),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        },
        Op::Approvals => {
            let a: ApprovalsRequest = if body.iter().all(u8::is_ascii_whitespace) {
                ApprovalsRequest::default()
            } else {
                request(op, body)?
            };
            let filter = approvals::ApprovalFilter {
                all: a.all,
                team: a.team,
                tell_id: a.tell_id,
                caller: None,
                limit: a.limit,
            };
            approvals::list_approvals(router.manager(), &filter)
                .map_err(Error::from)
                .and_then(|approvals| out(ApprovalsAnswer { approvals }))
        }
        Op::Approve => {
            let a: ApproveRequest = request(op, body)?;
            let decision = approvals::Decision::from_words(&a.decision, a.always, a.reason)
                .map_err(|e| bad(format!("approve: {e}")))?;
            approvals::decide(
                router.manager(),
                &a.id,
                decision,
                approvals::Decider::Person,
            )
            .map_err(Error::from)
            .and_then(out)
        }
        Op::Compact | Op::Wake | Op::Sleep | Op::Reboot | Op::Cancel => {
            let p: PairRequest = request(op, body)?;
            pair_op(router, op, &p.from, &p.to).await
        }
        // Served by the login route before the API (see auth.rs).
        Op::DashboardLogin => return Err(no_such(op.as_str())),
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
        // The listener turns `retry_after_secs` into a Retry-After header.
        let retry_after = match &e {
            Error::Router(RouterError::Limited { retry_after, .. }) => {
                Some(retry_after.as_secs().max(1))
            }
            _ => None,
        };
        let body = error_body(e.to_string(), code, retry_after);
        (status, body)
    })
}

async fn tell(router: &Router, a: TellRequest) -> Result<Value, Error> {
    let options = TellOptions {
        idempotency_key: a.id.as_deref(),
        ..Default::default()
    };
    let t: Tell = router
        .submit_with(&a.from, &a.to, TellKind::Tell, &a.text, &options)
        .await?;
    if a.quick {
        return out(TellAnswer::of(t));
    }
    out(wait(router, &t.tell_id, a.timeout_ms, a.cancel_on_timeout).await?)
}

/// Waits for a stored tell; `timed_out` says whether the wait ran out first.
async fn wait(
    router: &Router,
    tell_id: &str,
    timeout_ms: Option<u64>,
    cancel_on_timeout: bool,
) -> Result<TellAnswer, Error> {
    let wait = timeout_ms.map_or(Wait::Forever, |ms| Wait::For(Duration::from_millis(ms)));
    let mut t = router.wait_for(tell_id, wait).await?;
    let timed_out = !t.state.is_final();
    if timed_out && cancel_on_timeout {
        router.cancel_tell(&t.tell_id)?;
        t = router
            .wait_for(&t.tell_id, Wait::For(Duration::from_secs(20)))
            .await?;
    }
    Ok(TellAnswer {
        timed_out: Some(timed_out),
        ..TellAnswer::of(t)
    })
}

async fn pair_op(router: &Router, op: Op, from: &str, to: &str) -> Result<Value, Error> {
    match op {
        Op::Compact => out(TellAnswer::of(
            router.compact(from, to, Wait::Forever).await?,
        )),
        Op::Wake => {
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
            out(WakeAnswer {
                from_team: from.into(),
                to_team: to.into(),
                pid,
                delivered: queued.len(),
            })
        }
        Op::Sleep => {
            let m = router.manager();
            m.check_team(from)?;
            m.check_team(to)?;
            let was_running = router.sleep(from, to).await?;
            out(SleepAnswer {
                from_team: from.into(),
                to_team: to.into(),
                was_running,
            })
        }
        Op::Reboot => out(router.reboot(from, to).await?),
        _ => {
            let report = router.cancel(from, to)?;
            if let Some(id) = &report.interrupted {
                router
                    .wait_for(id, Wait::For(Duration::from_secs(20)))
                    .await?;
            }
            out(report)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request with a field the operation does not know is refused (400, exit code 2) with
    /// a message naming the field; the same body without it is accepted.
    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let (status, answer) =
            request::<TellRequest>(Op::Tell, br#"{"from":"a","to":"b","text":"hi","colour":1}"#)
                .expect_err("refused");
        assert_eq!(status, 400);
        assert_eq!(answer.exit_code, 2);
        assert!(
            answer.error.contains("unknown field `colour`"),
            "{}",
            answer.error
        );
        let ok: TellRequest =
            request(Op::Tell, br#"{"from":"a","to":"b","text":"hi"}"#).expect("accepted");
        assert_eq!(ok.text, "hi");
        let (status, answer) = request::<WaitRequest>(Op::Wait, b"{").expect_err("not JSON");
        assert_eq!(status, 400);
        assert!(
            answer.error.starts_with("wait: bad request body:"),
            "{}",
            answer.error
        );
    }
}
