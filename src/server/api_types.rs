//! The typed protocol of `POST /api/<op>`: every operation's name, its request and its answer,
//! shared by the server (`api.rs` deserializes the requests into these types) and the
//! `switchboard` CLI (it serializes them and deserializes the answers), so nobody reads JSON
//! keys by hand. Requests refuse unknown fields; an error answer of any operation is
//! [`ErrorAnswer`].
//!
//! The dashboard's operations reuse the types of [`crate::router::dashboard`] (re-exported
//! here) and the login answer of [`crate::server::auth`].

use serde::{Deserialize, Serialize};

pub use crate::router::dashboard::{
    DashStats, DeleteArgs, Deleted, Overview, OverviewArgs, PairArgs, PairView, StatsArgs,
};
pub use crate::router::CancelReport;
pub use crate::server::auth::LoginLink;
pub use crate::store::{Approval, Session, Tell};

/// An operation of the API: the `<op>` of `POST /api/<op>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Send a tell and (unless `async`) wait for it: [`TellRequest`] -> [`TellAnswer`].
    Tell,
    /// Wait for a stored tell: [`WaitRequest`] -> [`TellAnswer`] with `timed_out`.
    Wait,
    /// Cancel one tell: [`TellIdRequest`] -> [`TellAnswer`] with `was_open`.
    CancelTell,
    /// Send a failed tell again: [`TellIdRequest`] -> [`TellAnswer`] (the new tell).
    Retry,
    /// Compact the pair's conversation: [`PairRequest`] -> [`TellAnswer`] (the compaction).
    Compact,
    /// Start the pair's agent and deliver its queue: [`PairRequest`] -> [`WakeAnswer`].
    Wake,
    /// Stop the pair's agent: [`PairRequest`] -> [`SleepAnswer`].
    Sleep,
    /// Start a new conversation: [`PairRequest`] -> [`Session`] (the new one).
    Reboot,
    /// Cancel the pair's queue and interrupt its running tell: [`PairRequest`] ->
    /// [`CancelReport`].
    Cancel,
    /// The dashboard's overview: [`OverviewArgs`] -> [`Overview`].
    Overview,
    /// One pair's page of the dashboard: [`PairArgs`] -> [`PairView`].
    Pair,
    /// The dashboard's statistics: [`StatsArgs`] -> [`DashStats`].
    Stats,
    /// Delete a pair's session: [`DeleteArgs`] -> [`Deleted`].
    Delete,
    /// Permission requests of agents: [`ApprovalsRequest`] (or an empty body) ->
    /// [`ApprovalsAnswer`].
    Approvals,
    /// A person's decision on a request: [`ApproveRequest`] -> [`Approval`].
    Approve,
    /// A one-time login link for the dashboard: [`LoginRequest`] -> [`LoginLink`] (served
    /// by [`crate::server::auth`]).
    DashboardLogin,
}

impl Op {
    /// Every operation.
    pub const ALL: &'static [Op] = &[
        Op::Tell,
        Op::Wait,
        Op::CancelTell,
        Op::Retry,
        Op::Compact,
        Op::Wake,
        Op::Sleep,
        Op::Reboot,
        Op::Cancel,
        Op::Overview,
        Op::Pair,
        Op::Stats,
        Op::Delete,
        Op::Approvals,
        Op::Approve,
        Op::DashboardLogin,
    ];

    /// Its name in the path (`/api/<name>`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Op::Tell => "tell",
            Op::Wait => "wait",
            Op::CancelTell => "cancel_tell",
            Op::Retry => "retry",
            Op::Compact => "compact",
            Op::Wake => "wake",
            Op::Sleep => "sleep",
            Op::Reboot => "reboot",
            Op::Cancel => "cancel",
            Op::Overview => "overview",
            Op::Pair => "pair",
            Op::Stats => "stats",
            Op::Delete => "delete",
            Op::Approvals => "approvals",
            Op::Approve => "approve",
            Op::DashboardLogin => "dashboard_login",
        }
    }

    /// The operation of a name, if there is one.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.iter().copied().find(|op| op.as_str() == name)
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `compact`, `wake`, `sleep`, `reboot`, `cancel`: a pair of teams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    /// The calling team.
    pub from: String,
    /// The team whose agent answers.
    pub to: String,
}

/// `tell`: send a tell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TellRequest {
    /// The calling team.
    pub from: String,
    /// The team whose agent answers.
    pub to: String,
    /// The message.
    pub text: String,
    /// Wait at most this long; absent = until answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Return at once with the queued tell.
    #[serde(default, rename = "async")]
    pub quick: bool,
    /// When the wait runs out, cancel the tell (the CLI's `--timeout`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_on_timeout: bool,
    /// The caller's idempotency key (`tell --id`): the same tell sent again with it is not a
    /// second tell.
    #[serde(default)]
    pub id: Option<String>,
}

/// `wait`: wait for a tell already stored (the CLI stores first, then waits, so it knows the
/// id even when the server goes away mid-wait).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitRequest {
    /// The tell.
    pub tell_id: String,
    /// Wait at most this long; absent = until answered.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// When the wait runs out, cancel the tell.
    #[serde(default)]
    pub cancel_on_timeout: bool,
}

/// `cancel_tell`, `retry`: one tell by id (or a unique prefix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TellIdRequest {
    /// The tell.
    pub tell_id: String,
}

/// `approvals`: which permission requests to list (an empty body lists the pending ones).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsRequest {
    /// Decided ones too.
    #[serde(default)]
    pub all: bool,
    /// Only those of this team (either side).
    #[serde(default)]
    pub team: Option<String>,
    /// Only those of this tell.
    #[serde(default)]
    pub tell_id: Option<String>,
    /// At most this many.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `approve`: a person's decision on one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The request id (or a unique prefix).
    pub id: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// With allow: also add a session rule.
    #[serde(default)]
    pub always: bool,
    /// With deny: what to tell the agent.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `dashboard_login`: no arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {}

/// A tell as the API answers it: the stored tell, and what the operation adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TellAnswer {
    /// The tell.
    #[serde(flatten)]
    pub tell: Tell,
    /// `wait` (and `tell` that waited): whether the wait ran out before the tell ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<bool>,
    /// `cancel_tell`: whether the tell was still open (queued or running) when cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was_open: Option<bool>,
}

impl TellAnswer {
    /// The tell alone.
    pub fn of(tell: Tell) -> Self {
        Self {
            tell,
            timed_out: None,
            was_open: None,
        }
    }
}

/// What `wake` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WakeAnswer {
    /// The calling team.
    pub from_team: String,
    /// The team whose agent was started.
    pub to_team: String,
    /// The agent's pid.
    pub pid: u32,
    /// Queued tells delivered (and answered) before the answer.
    pub delivered: usize,
}

/// What `sleep` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SleepAnswer {
    /// The calling team.
    pub from_team: String,
    /// The team whose agent was stopped.
    pub to_team: String,
    /// Whether an agent was running (it is stopped now; the session is kept).
    pub was_running: bool,
}

/// The answer of `approvals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalsAnswer {
    /// The requests.
    pub approvals: Vec<Approval>,
}

/// The answer of a failed operation (any HTTP status other than 2xx).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What went wrong.
    pub error: String,
    /// The exit code the command would have had in the caller's process.
    pub exit_code: i32,
    /// With HTTP 429: when to try again (also the `Retry-After` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use std::fmt::Debug;

    /// The request serializes, reads back equal, and a body with an unknown field is refused
    /// with a message naming the field.
    fn round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(req: T) {
        let json = serde_json::to_value(&req).expect("serializes");
        let back: T = serde_json::from_value(json.clone()).expect("reads back");
        assert_eq!(back, req, "{json}");
        let mut bad = json.clone();
        bad.as_object_mut()
            .expect("an object")
            .insert("bogus_field".into(), serde_json::json!(1));
        let err = serde_json::from_value::<T>(bad)
            .expect_err("an unknown field is refused")
            .to_string();
        assert!(err.contains("unknown field `bogus_field`"), "{err}");
    }

    #[test]
    fn every_request_round_trips_and_refuses_unknown_fields() {
        round_trips(PairRequest {
            from: "a".into(),
            to: "b".into(),
        });
        round_trips(TellRequest {
            from: "a".into(),
            to: "b".into(),
            text: "hi".into(),
            timeout_ms: Some(5),
            quick: true,
            cancel_on_timeout: true,
            id: Some("k".into()),
        });
        round_trips(WaitRequest {
            tell_id: "t".into(),
            timeout_ms: None,
            cancel_on_timeout: true,
        });
        round_trips(TellIdRequest {
            tell_id: "t".into(),
        });
        round_trips(ApprovalsRequest {
            all: true,
            team: Some("a".into()),
            tell_id: None,
            limit: Some(3),
        });
        round_trips(ApproveRequest {
            id: "ap-1".into(),
            decision: "deny".into(),
            always: false,
            reason: Some("no".into()),
        });
        round_trips(LoginRequest {});
        round_trips(OverviewArgs {});
        round_trips(PairArgs {
            from: "a".into(),
            to: "b".into(),
            limit: Some(5),
        });
        round_trips(StatsArgs { days: Some(3) });
        round_trips(DeleteArgs {
            from: "a".into(),
            to: "b".into(),
            confirm: true,
            transcript: false,
        });
    }

    #[test]
    fn the_tell_request_keeps_its_wire_names() {
        let v = serde_json::to_value(TellRequest {
            from: "a".into(),
            to: "b".into(),
            text: "hi".into(),
            timeout_ms: None,
            quick: true,
            cancel_on_timeout: false,
            id: None,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"from": "a", "to": "b", "text": "hi", "async": true, "id": null})
        );
    }

    #[test]
    fn op_names_are_unique_and_read_back() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.as_str()), Some(*op));
        }
        assert_eq!(Op::from_name("nope"), None);
        assert_eq!(Op::DashboardLogin.as_str(), crate::server::auth::LOGIN_OP);
    }

    #[test]
    fn a_tell_answer_reads_back_what_the_server_sends() {
        let tell = Tell {
            id: 0,
            tell_id: "t1".into(),
            session_id: "s1".into(),
            from_team: "a".into(),
            to_team: "b".into(),
            kind: crate::store::TellKind::Tell,
            text: "hi".into(),
            state: crate::store::TellState::Answered,
            created_at: 1_700_000_000_123,
            delivered_at: Some(1_700_000_000_456),
            answered_at: None,
            answer: Some("yes".into()),
            error: None,
            input_tokens: Some(1),
            output_tokens: None,
            cost_usd: Some(0.1),
            duration_ms: None,
            parent_tell_id: None,
            idempotency_key: None,
            retry_of: None,
        };
        let answer = TellAnswer {
            tell,
            timed_out: Some(false),
            was_open: None,
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["timed_out"], false);
        assert!(json.get("was_open").is_none());
        let back: TellAnswer = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, answer);
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
    }
}
