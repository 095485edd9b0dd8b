//! The dashboard's read operations (overview, a pair's conversation, stats) and the
//! delete-a-pair action, with their request and response types. The server's JSON API
//! (`/api/overview`, `/api/pair`, `/api/stats`, `/api/delete`) and the CLI share these types;
//! nobody reads JSON keys by hand. Counting happens in SQL (`store/dashboard.rs`); this file
//! shapes the answers (percentiles, empty hours, live agents).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Router, RouterResult};
use crate::store::{
    HourCount, ListFilter, PairCounts, ProcessState, Session, TeamDayCost, Tell, TellTotals,
};
use crate::util::now_ms;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Most tells a pair view returns.
pub const MAX_PAIR_TELLS: u32 = 500;

/// `POST /api/overview`: no arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OverviewArgs {}

/// The whole switchboard at a glance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Overview {
    /// Every team of the teams file.
    pub teams: Vec<TeamInfo>,
    /// Every pair with a session or with tells.
    pub pairs: Vec<PairSummary>,
    /// Agents running now (process state other than `stopped`), by pair.
    pub live_agents: Vec<LiveAgentInfo>,
    /// Tells stored since UTC midnight today.
    pub today: TellTotals,
    /// Tells ever stored.
    pub all_time: TellTotals,
    /// Approvals waiting for a decision.
    pub pending_approvals: usize,
    /// The server's health.
    pub health: Health,
}

/// One team.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamInfo {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// The agent kind (`claude`, ...).
    pub agent: String,
}

/// One pair: its session and its tells, counted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairSummary {
    /// The team that tells.
    pub from_team: String,
    /// The team whose agent answers.
    pub to_team: String,
    /// The pair's session id, if it has a session.
    pub session_id: Option<String>,
    /// The session's status.
    pub status: Option<String>,
    /// What its agent is doing.
    pub process_state: Option<String>,
    /// Its tells, counted.
    pub counts: PairCounts,
}

/// One running agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveAgentInfo {
    /// The team whose agent it is.
    pub team: String,
    /// `FROM:TO`.
    pub pair: String,
    /// The session id.
    pub session_id: String,
    /// Its pid, when known.
    pub pid: Option<i64>,
    /// `spawning`, `idle`, `processing` or `terminating`.
    pub state: String,
    /// How long it runs (ms), when known.
    pub uptime_ms: Option<i64>,
    /// Its resident memory (KiB), when it can be read.
    pub memory_kb: Option<u64>,
    /// The tell it answers now.
    pub current_tell_id: Option<String>,
    /// Tells of the pair not answered yet.
    pub queue_length: usize,
    /// The Switchboard process that runs it.
    pub owner_pid: Option<i64>,
}

/// The server's health.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or `error` when the database file is gone.
    pub status: String,
    /// What is wrong, if anything.
    pub error: Option<String>,
    /// The database file.
    pub database: String,
    /// The server's pid.
    pub pid: u32,
    /// Agents this process runs.
    pub agents_here: usize,
    /// Tells answered, failed and cancelled since the server started.
    pub since_start: BTreeMap<String, u64>,
}

/// `POST /api/pair`: one pair's conversation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PairArgs {
    /// The team that tells.
    pub from: String,
    /// The team whose agent answers.
    pub to: String,
    /// The latest this many tells (default 100, at most 500).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One pair's conversation.
#[derive(Debug, Clone, Serialize)]
pub struct PairView {
    /// The team that tells.
    pub from_team: String,
    /// The team whose agent answers.
    pub to_team: String,
    /// The session (none before the first tell).
    pub session: Option<Session>,
    /// The tells, oldest first, with their full message and answer.
    pub tells: Vec<TellView>,
}

/// One tell with its times worked out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TellView {
    /// The tell, as stored.
    #[serde(flatten)]
    pub tell: TellRow,
    /// How long it waited for the agent (stored to delivered), ms.
    pub queue_wait_ms: Option<i64>,
    /// How long the turn took (delivered to ended), ms.
    pub turn_ms: Option<i64>,
}

/// A tell as the dashboard shows it (times as unix ms).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TellRow {
    /// Its id.
    pub tell_id: String,
    /// Its session.
    pub session_id: String,
    /// The team that told.
    pub from_team: String,
    /// The team whose agent answers.
    pub to_team: String,
    /// `tell` or `compact`.
    pub kind: String,
    /// The message.
    pub text: String,
    /// `queued`, `delivered`, `answered`, `failed` or `cancelled`.
    pub state: String,
    /// Stored (unix ms).
    pub created_at: i64,
    /// Delivered (unix ms).
    pub delivered_at: Option<i64>,
    /// Ended (unix ms).
    pub answered_at: Option<i64>,
    /// The answer.
    pub answer: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Input tokens.
    pub input_tokens: Option<i64>,
    /// Output tokens.
    pub output_tokens: Option<i64>,
    /// Cost, US dollars.
    pub cost_usd: Option<f64>,
    /// The turn's duration as the agent measured it.
    pub duration_ms: Option<i64>,
}

impl From<&Tell> for TellView {
    fn from(t: &Tell) -> Self {
        let ended = t.answered_at.filter(|_| t.state.is_final());
        TellView {
            queue_wait_ms: t.delivered_at.map(|d| d - t.created_at),
            turn_ms: t.delivered_at.zip(ended).map(|(d, e)| e - d),
            tell: TellRow {
                tell_id: t.tell_id.clone(),
                session_id: t.session_id.clone(),
                from_team: t.from_team.clone(),
                to_team: t.to_team.clone(),
                kind: t.kind.to_string(),
                text: t.text.clone(),
                state: t.state.to_string(),
                created_at: t.created_at,
                delivered_at: t.delivered_at,
                answered_at: t.answered_at,
                answer: t.answer.clone(),
                error: t.error.clone(),
                input_tokens: t.input_tokens,
                output_tokens: t.output_tokens,
                cost_usd: t.cost_usd,
                duration_ms: t.duration_ms,
            },
        }
    }
}

/// `POST /api/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {
    /// How many days back (default 7, at most 90).
    #[serde(default)]
    pub days: Option<u32>,
}

/// Charts' data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DashStats {
    /// Start of the window (unix ms).
    pub since: i64,
    /// Tells per hour of the last 24 hours, oldest first, every hour present.
    pub per_hour: Vec<HourCount>,
    /// Answer latency (stored to answered) over the window.
    pub latency: Latency,
    /// Cost per answering team per day over the window.
    pub cost_per_team_day: Vec<TeamDayCost>,
}

/// Latency percentiles (ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Answered tells counted.
    pub count: usize,
    /// Median.
    pub p50_ms: Option<i64>,
    /// 90th percentile.
    pub p90_ms: Option<i64>,
    /// 99th percentile.
    pub p99_ms: Option<i64>,
    /// Longest.
    pub max_ms: Option<i64>,
}

/// `POST /api/delete`: delete a pair's session (as `sessions delete`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// The team that tells.
    pub from: String,
    /// The team whose agent answers.
    pub to: String,
    /// Must be true: deleting forgets the conversation and its tells.
    pub confirm: bool,
    /// Also remove the agent's transcript.
    #[serde(default)]
    pub transcript: bool,
}

/// What a delete did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    /// The team that tells.
    pub from_team: String,
    /// The team whose agent answers.
    pub to_team: String,
    /// The deleted session's id (none when there was no session).
    pub deleted_session_id: Option<String>,
    /// Whether the agent's transcript was removed.
    pub transcript_removed: bool,
}

/// The nearest-rank percentile `p` (0-100) of `sorted` (ascending).
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1);
    sorted.get(rank as usize - 1).copied()
}

impl Router {
    /// The overview: teams, pairs, live agents, totals, pending approvals, health.
    pub fn overview(&self) -> RouterResult<Overview> {
        let m = self.manager();
        let config = m.config();
        let sessions = m.list(&ListFilter::default())?;
        let counts = m.store().pair_counts()?;
        let mut queues: BTreeMap<(String, String), usize> = BTreeMap::new();
        for t in m.store().all_open_tells()? {
            *queues.entry((t.from_team, t.to_team)).or_default() += 1;
        }
        let mut pairs: BTreeMap<(String, String), PairSummary> = BTreeMap::new();
        for c in counts {
            let key = (c.from_team.clone(), c.to_team.clone());
            pairs.insert(
                key,
                PairSummary {
                    from_team: c.from_team.clone(),
                    to_team: c.to_team.clone(),
                    session_id: None,
                    status: None,
                    process_state: None,
                    counts: c,
                },
            );
        }
        let now = now_ms();
        let mut live = Vec::new();
        for s in &sessions {
            let key = (s.from_team.clone(), s.to_team.clone());
            let p = pairs.entry(key.clone()).or_insert_with(|| PairSummary {
                from_team: s.from_team.clone(),
                to_team: s.to_team.clone(),
                session_id: None,
                status: None,
                process_state: None,
                counts: PairCounts {
                    from_team: s.from_team.clone(),
                    to_team: s.to_team.clone(),
                    ..Default::default()
                },
            });
            p.session_id = Some(s.session_id.clone());
            p.status = Some(s.status.to_string());
            p.process_state = Some(s.process_state.to_string());
            if s.process_state != ProcessState::Stopped {
                live.push(LiveAgentInfo {
                    team: s.to_team.clone(),
                    pair: s.pair(),
                    session_id: s.session_id.clone(),
                    pid: s.agent_pid,
                    state: s.process_state.to_string(),
                    uptime_ms: s.agent_started_at.map(|at| (now - at).max(0)),
                    memory_kb: s
                        .agent_pid
                        .and_then(|p| u32::try_from(p).ok())
                        .and_then(crate::util::process_rss_kb),
                    current_tell_id: s.current_tell_id.clone(),
                    queue_length: queues.get(&key).copied().unwrap_or(0),
                    owner_pid: s.owner_pid,
                });
            }
        }
        let day_start = now - now.rem_euclid(DAY_MS);
        let health = match m.store().check_file() {
            Ok(()) => (String::from("ok"), None),
            Err(e) => (String::from("error"), Some(e.to_string())),
        };
        let pending = super::approvals::ApprovalFilter {
            limit: Some(10_000),
            ..Default::default()
        };
        let pending_approvals = super::approvals::list_approvals(m, &pending)?.len();
        let c = self.counters();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        Ok(Overview {
            teams: config
                .teams
                .iter()
                .map(|(name, t)| TeamInfo {
                    name: name.clone(),
                    description: t.description.clone(),
                    agent: t.agent.clone(),
                })
                .collect(),
            pairs: pairs.into_values().collect(),
            live_agents: live,
            today: m.store().tell_totals_since(day_start)?,
            all_time: m.store().tell_totals_since(i64::MIN)?,
            pending_approvals,
            health: Health {
                status: health.0,
                error: health.1,
                database: m.store().path().to_string(),
                pid: std::process::id(),
                agents_here: self.live_agents().len(),
                since_start: BTreeMap::from([
                    ("answered".to_string(), load(&c.answered)),
                    ("failed".to_string(), load(&c.failed)),
                    ("cancelled".to_string(), load(&c.cancelled)),
                ]),
            },
        })
    }

    /// One pair's conversation: its session and its latest tells with full texts.
    pub fn pair_view(&self, args: &PairArgs) -> RouterResult<PairView> {
        let m = self.manager();
        m.check_team(&args.from)?;
        m.check_team(&args.to)?;
        let limit = args.limit.unwrap_or(100).clamp(1, MAX_PAIR_TELLS);
        let session = m.get(&args.from, &args.to)?.map(|s| (*s).clone());
        let tells = m.store().recent_tells(&args.from, &args.to, limit)?;
        Ok(PairView {
            from_team: args.from.clone(),
            to_team: args.to.clone(),
            session,
            tells: tells.iter().map(TellView::from).collect(),
        })
    }

    /// The charts' data: tells per hour (last 24 h), latency percentiles and cost per team per
    /// day (last `days` days).
    pub fn dash_stats(&self, args: &StatsArgs) -> RouterResult<DashStats> {
        let store = self.manager().store();
        let now = now_ms();
        let days = i64::from(args.days.unwrap_or(7).clamp(1, 90));
        let since = now - now.rem_euclid(DAY_MS) - (days - 1) * DAY_MS;
        let first_hour = now - now.rem_euclid(HOUR_MS) - 23 * HOUR_MS;
        let counted = store.tells_per_hour(first_hour)?;
        let per_hour = (0..24)
            .map(|i| {
                let hour = first_hour + i * HOUR_MS;
                counted
                    .iter()
                    .find(|h| h.hour == hour)
                    .cloned()
                    .unwrap_or(HourCount {
                        hour,
                        ..Default::default()
                    })
            })
            .collect();
        let lat = store.answer_latencies_since(since)?;
        Ok(DashStats {
            since,
            per_hour,
            latency: Latency {
                count: lat.len(),
                p50_ms: percentile(&lat, 50),
                p90_ms: percentile(&lat, 90),
                p99_ms: percentile(&lat, 99),
                max_ms: lat.last().copied(),
            },
            cost_per_team_day: store.cost_per_team_day(since)?,
        })
    }

    /// Deletes a pair's session as `team_delete` and `sessions delete` do: cancels the pair's
    /// open tells, stops its agent, then forgets the session and its tells.
    pub async fn delete_pair(&self, args: &DeleteArgs) -> RouterResult<Deleted> {
        let m = self.manager();
        m.check_team(&args.from)?;
        m.check_team(&args.to)?;
        let mut out = Deleted {
            from_team: args.from.clone(),
            to_team: args.to.clone(),
            deleted_session_id: None,
            transcript_removed: false,
        };
        if !args.confirm {
            return Err(super::RouterError::BadMessage(format!(
                "not deleted: confirm must be true to delete the session {} -> {} and its tells",
                args.from, args.to
            )));
        }
        if m.get(&args.from, &args.to)?.is_none() {
            return Ok(out);
        }
        self.cancel(&args.from, &args.to)?;
        self.sleep(&args.from, &args.to).await?;
        let Some(s) = m.get(&args.from, &args.to)? else {
            return Ok(out);
        };
        // A remote team's transcript is removed on its host.
        let (deleted, transcript) = m.delete_anywhere(&s, args.transcript).await?;
        out.deleted_session_id = Some(deleted.session_id);
        out.transcript_removed = transcript.is_some_and(|(_, existed)| existed);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 90), Some(90));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
    }
}
