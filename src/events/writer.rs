//! The writer thread: drains the bus's channel, stores each batch in one transaction (counting
//! each tell's activity against its bound), then broadcasts every event with its id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::{EventLimits, Msg};
use crate::store::{Event, EventKind, EventRow, NewEvent, SessionStore, TellActivity};

/// Most events written in one transaction.
const BATCH: usize = 512;
/// Under a steady stream of events, at most one transaction this often (see `Writer::run`).
const GATHER: Duration = Duration::from_millis(5);
/// Tells whose counts are kept in memory at most (the store is asked again when one is evicted).
const TRACKED_TELLS: usize = 4096;
/// Attempts at a batch the database refuses for a reason that can pass.
const ATTEMPTS: u32 = 5;

/// Starts counting `tell` in `tells` (its activity so far from `known`) unless it is counted
/// already; past [`TRACKED_TELLS`] the counts start over.
fn track(
    tells: &mut HashMap<String, TellActivity>,
    tell: &str,
    known: impl FnOnce() -> TellActivity,
) {
    if !tells.contains_key(tell) {
        if tells.len() >= TRACKED_TELLS {
            tells.clear();
        }
        tells.insert(tell.to_string(), known());
    }
}

pub(super) struct Writer {
    pub(super) queued_bytes: Arc<AtomicUsize>,
    pub(super) store: SessionStore,
    pub(super) limits: EventLimits,
    pub(super) live: broadcast::Sender<Arc<Event>>,
    pub(super) last_id: watch::Sender<i64>,
    pub(super) done: watch::Sender<u64>,
    pub(super) tells: HashMap<String, TellActivity>,
}

/// One published event: stored (its row's index), or only broadcast.
enum Planned {
    Row(usize),
    Only(i64, Box<NewEvent>),
}

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        let mut last_write: Option<std::time::Instant> = None;
        while let Ok(first) = rx.recv() {
            // Events that keep coming (a tell publishes several within a millisecond, and many
            // pairs at once publish a steady stream) go in one transaction per GATHER: one
            // commit per event or two would cost more than the tells' own writes, and keep
            // their writers waiting behind the write gate. The thread sleeps rather than waits
            // on the channel meanwhile, so a publish wakes nothing. An event after a quiet
            // spell goes at once.
            if let Some(until) = last_write.map(|t| t + GATHER) {
                // Pacing, not waiting for a condition (a park can end early: park again).
                while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                    std::thread::park_timeout(left);
                }
            }
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            // A full batch leaves more behind it: the next one goes at once.
            last_write = (batch.len() < BATCH).then(std::time::Instant::now);
            let n = batch.len() as u64;
            let bytes: usize = batch.iter().map(|Msg::Event(_, _, w)| w).sum();
            self.write(batch);
            self.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
            self.done.send_modify(|d| *d += n);
        }
    }

    fn write(&mut self, batch: Vec<Msg>) {
        let mut rows: Vec<EventRow> = Vec::with_capacity(batch.len());
        let mut plan: Vec<Planned> = Vec::with_capacity(batch.len() + 1);
        for Msg::Event(at, event, _) in batch {
            let row = EventRow::new(at, event);
            self.note_delivered(&row.event);
            match self.admit(&row) {
                Admit::Store => {
                    plan.push(Planned::Row(rows.len()));
                    rows.push(row);
                }
                Admit::Truncate(marker) => {
                    plan.push(Planned::Row(rows.len()));
                    rows.push(EventRow::new(at, *marker));
                    plan.push(Planned::Only(at, Box::new(row.event)));
                }
                Admit::Drop => plan.push(Planned::Only(at, Box::new(row.event))),
            }
        }
        let ids = self.insert(&rows);
        // The rows are written: their events go out as they are (no copy).
        let mut stored: Vec<Option<EventRow>> = rows.into_iter().map(Some).collect();
        let mut newest = None;
        for p in plan {
            let (id, at, event) = match p {
                Planned::Row(i) => {
                    let Some(row) = stored.get_mut(i).and_then(Option::take) else {
                        continue;
                    };
                    (ids.get(i).copied().unwrap_or(0), row.at, row.event)
                }
                Planned::Only(at, event) => (0, at, *event),
            };
            if id > 0 {
                newest = Some(id);
            }
            if let (Some(tell), true) = (&event.tell_id, ends_tell(&event.kind)) {
                self.tells.remove(tell);
            }
            // No receiver is fine: nobody is watching.
            let _ = self.live.send(Arc::new(event.into_event(id, at)));
        }
        if let Some(id) = newest {
            self.last_id.send_replace(id);
        }
    }

    /// A tell is delivered once, by the process that then runs its turn and publishes its
    /// activity: when this bus sees it delivered, none of its activity is stored yet, and its
    /// count starts at zero without asking the store (a read of the `events` table per tell,
    /// on the thread that writes every event of the process).
    fn note_delivered(&mut self, e: &NewEvent) {
        let (EventKind::TellDelivered, Some(tell)) = (&e.kind, e.tell_id.as_deref()) else {
            return;
        };
        track(&mut self.tells, tell, TellActivity::default);
    }

    /// Whether the row is stored, given its tell's bound.
    fn admit(&mut self, row: &EventRow) -> Admit {
        let e = &row.event;
        let Some(tell) = e.tell_id.as_deref().filter(|_| e.kind.is_activity()) else {
            return Admit::Store;
        };
        track(&mut self.tells, tell, || {
            self.store.tell_activity(tell).unwrap_or_else(|err| {
                tracing::warn!(tell, error = %err, "cannot read a tell's stored activity");
                TellActivity::default()
            })
        });
        let Some(act) = self.tells.get_mut(tell) else {
            return Admit::Store;
        };
        if act.truncated {
            return Admit::Drop;
        }
        let bytes = row.data.len() as u64;
        if act.events + 1 > self.limits.max_events_per_tell
            || act.bytes + bytes > self.limits.max_bytes_per_tell
        {
            act.truncated = true;
            return Admit::Truncate(Box::new(NewEvent {
                kind: EventKind::ActivityTruncated {
                    events: act.events,
                    bytes: act.bytes,
                },
                ..e.clone()
            }));
        }
        act.events += 1;
        act.bytes += bytes;
        Admit::Store
    }

    /// Inserts the rows; their ids, or none when the database keeps refusing (logged: the
    /// events are still broadcast, with id 0).
    fn insert(&self, rows: &[EventRow]) -> Vec<i64> {
        if rows.is_empty() {
            return Vec::new();
        }
        let mut pause = Duration::from_millis(20);
        for attempt in 1..=ATTEMPTS {
            match self.store.insert_events(rows) {
                Ok(ids) => return ids,
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "cannot write events; trying again");
                    std::thread::park_timeout(pause);
                    pause *= 2;
                }
                Err(e) => {
                    tracing::error!(error = %e, events = rows.len(), "events not written");
                    break;
                }
            }
        }
        Vec::new()
    }
}

enum Admit {
    Store,
    /// Store this marker instead; the event itself is not stored.
    Truncate(Box<NewEvent>),
    Drop,
}

fn ends_tell(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::TellAnswered { .. }
            | EventKind::TellFailed { .. }
            | EventKind::TellCancelled { .. }
    )
}
