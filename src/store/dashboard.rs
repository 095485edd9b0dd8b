//! SQL for the dashboard's read views: tells counted per pair, totals since a time, tells per
//! hour, tell latencies and cost per team per day. Read-only; aggregation in SQL, shaping
//! (percentiles, filling empty hours) above, in the router's dashboard operations.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{SessionStore, StoreResult};

/// The tells of one pair, counted (messages only, not compactions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairCounts {
    /// The team that told.
    pub from_team: String,
    /// The team whose agent answered.
    pub to_team: String,
    /// Tells ever stored.
    pub tells: i64,
    /// Of which answered.
    pub answered: i64,
    /// Of which failed.
    pub failed: i64,
    /// Of which queued or being answered now.
    pub open: i64,
    /// Cost of the answers, US dollars.
    pub cost_usd: f64,
    /// When the last tell was stored (unix ms).
    pub last_at: i64,
}

/// Tells stored since a time, by outcome, with their tokens and cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TellTotals {
    /// Tells stored (messages only).
    pub tells: i64,
    /// Answered.
    pub answered: i64,
    /// Failed.
    pub failed: i64,
    /// Cancelled.
    pub cancelled: i64,
    /// Still open (queued or being answered).
    pub open: i64,
    /// Input tokens of their turns.
    pub input_tokens: i64,
    /// Output tokens of their turns.
    pub output_tokens: i64,
    /// Cost of their turns, US dollars.
    pub cost_usd: f64,
}

/// Tells stored in one hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HourCount {
    /// Start of the hour (unix ms).
    pub hour: i64,
    /// Tells stored in it.
    pub tells: i64,
    /// Of which answered.
    pub answered: i64,
    /// Of which failed or cancelled.
    pub failed: i64,
}

/// The cost of one team's answers on one day (UTC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamDayCost {
    /// The answering team.
    pub team: String,
    /// Start of the day (unix ms, UTC midnight).
    pub day: i64,
    /// Cost, US dollars.
    pub cost_usd: f64,
    /// Tells it answered that day.
    pub answered: i64,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

impl SessionStore {
    /// Every pair's tells, counted, by pair.
    pub fn pair_counts(&self) -> StoreResult<Vec<PairCounts>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT from_team, to_team, count(*), \
             coalesce(sum(state = 'answered'), 0), coalesce(sum(state = 'failed'), 0), \
             coalesce(sum(state IN ('queued', 'delivered')), 0), coalesce(sum(cost_usd), 0), \
             max(created_at) \
             FROM tells WHERE kind = 'tell' GROUP BY from_team, to_team ORDER BY from_team, to_team",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PairCounts {
                from_team: r.get(0)?,
                to_team: r.get(1)?,
                tells: r.get(2)?,
                answered: r.get(3)?,
                failed: r.get(4)?,
                open: r.get(5)?,
                cost_usd: r.get(6)?,
                last_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Tells (messages) stored at or after `since` (unix ms), totalled.
    pub fn tell_totals_since(&self, since: i64) -> StoreResult<TellTotals> {
        let conn = self.conn()?;
        let t = conn
            .prepare_cached(
                "SELECT count(*), coalesce(sum(state = 'answered'), 0), \
                 coalesce(sum(state = 'failed'), 0), coalesce(sum(state = 'cancelled'), 0), \
                 coalesce(sum(state IN ('queued', 'delivered')), 0), \
                 coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), \
                 coalesce(sum(cost_usd), 0) \
                 FROM tells WHERE kind = 'tell' AND created_at >= ?1",
            )?
            .query_row([since], |r| {
                Ok(TellTotals {
                    tells: r.get(0)?,
                    answered: r.get(1)?,
                    failed: r.get(2)?,
                    cancelled: r.get(3)?,
                    open: r.get(4)?,
                    input_tokens: r.get(5)?,
                    output_tokens: r.get(6)?,
                    cost_usd: r.get(7)?,
                })
            })?;
        Ok(t)
    }

    /// Tells (messages) stored at or after `since`, counted per hour; hours without tells are
    /// left out.
    pub fn tells_per_hour(&self, since: i64) -> StoreResult<Vec<HourCount>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT created_at / ?2 * ?2 AS h, count(*), coalesce(sum(state = 'answered'), 0), \
             coalesce(sum(state IN ('failed', 'cancelled')), 0) \
             FROM tells WHERE kind = 'tell' AND created_at >= ?1 GROUP BY h ORDER BY h",
        )?;
        let rows = stmt.query_map(params![since, HOUR_MS], |r| {
            Ok(HourCount {
                hour: r.get(0)?,
                tells: r.get(1)?,
                answered: r.get(2)?,
                failed: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How long each tell (message) answered at or after `since` took from stored to answered
    /// (ms), shortest first.
    pub fn answer_latencies_since(&self, since: i64) -> StoreResult<Vec<i64>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT answered_at - created_at AS ms FROM tells WHERE kind = 'tell' \
             AND state = 'answered' AND answered_at >= ?1 ORDER BY ms",
        )?;
        let rows = stmt.query_map([since], |r| r.get::<_, i64>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The cost of each team's answers per day (UTC), for tells ended at or after `since`.
    pub fn cost_per_team_day(&self, since: i64) -> StoreResult<Vec<TeamDayCost>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT to_team, answered_at / ?2 * ?2 AS d, coalesce(sum(cost_usd), 0), \
             coalesce(sum(state = 'answered'), 0) \
             FROM tells WHERE answered_at >= ?1 GROUP BY to_team, d ORDER BY d, to_team",
        )?;
        let rows = stmt.query_map(params![since, DAY_MS], |r| {
            Ok(TeamDayCost {
                team: r.get(0)?,
                day: r.get(1)?,
                cost_usd: r.get(2)?,
                answered: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewTell, TellKind, TellOutcome, TellState};

    fn tell(st: &SessionStore, id: &str, to: &str, at: i64) {
        st.insert_tell(
            &NewTell {
                tell_id: id,
                session_id: "00000000-0000-4000-8000-000000000000",
                from_team: "a",
                to_team: to,
                kind: TellKind::Tell,
                text: "hi",
                parent_tell_id: None,
            },
            at,
        )
        .expect("insert");
    }

    #[test]
    fn counts_per_pair_hour_and_day() {
        let st = SessionStore::open_in_memory().expect("open");
        let day = 20_000 * DAY_MS;
        tell(&st, "t1", "b", day + 10);
        tell(&st, "t2", "b", day + HOUR_MS + 10);
        tell(&st, "t3", "c", day + HOUR_MS + 20);
        let outcome = TellOutcome {
            answer: Some("ok".into()),
            cost_usd: Some(0.5),
            ..Default::default()
        };
        st.finish_tell("t1", TellState::Answered, &outcome, day + 1_010)
            .expect("finish");
        let pairs = st.pair_counts().expect("pairs");
        assert_eq!(pairs.len(), 2);
        assert_eq!(
            (pairs[0].tells, pairs[0].answered, pairs[0].open),
            (2, 1, 1)
        );
        assert_eq!(pairs[0].cost_usd, 0.5);
        let hours = st.tells_per_hour(day).expect("hours");
        assert_eq!(
            hours.iter().map(|h| (h.hour, h.tells)).collect::<Vec<_>>(),
            [(day, 1), (day + HOUR_MS, 2)]
        );
        assert_eq!(st.answer_latencies_since(0).expect("lat"), [1_000]);
        let cost = st.cost_per_team_day(0).expect("cost");
        assert_eq!(cost.len(), 1);
        assert_eq!((cost[0].team.as_str(), cost[0].day), ("b", day));
        let totals = st.tell_totals_since(day + HOUR_MS).expect("totals");
        assert_eq!((totals.tells, totals.open), (2, 2));
    }
}
