//! The event bus: every step of a tell and of an agent, and the agents' own activity, published
//! by the router, the worker and the session layer, written to SQLite and broadcast live.
//!
//! Layer: below the router, above the store. It owns the writer thread, the live broadcast and
//! the per-tell bounds of stored activity; it holds no SQL (the store's `events` module does)
//! and knows nothing of processes.
//!
//! [`EventBus::publish`] never blocks and never fails its caller: the event goes into a bounded
//! channel drained by one writer thread, which inserts what it finds in one transaction, then
//! broadcasts each event with its durable id. Live subscribers get a bounded
//! `tokio::sync::broadcast` receiver; one that falls behind is told it lagged
//! (`RecvError::Lagged`) and reads the gap from the store ([`crate::store::SessionStore::events_after`]).

mod describe;
pub mod summary;

pub use describe::timeline;
mod writer;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{broadcast, watch};

use crate::store::SessionStore;
pub use crate::store::{Event, EventFilter, EventKind, NewEvent};

/// Events waiting for the writer at most, and their bytes at most (see [`EventKind::weight`]);
/// more are dropped (with a warning) rather than block an agent or grow without bound while
/// the database is stuck.
const QUEUE: usize = 65_536;
const QUEUE_BYTES: usize = 32 << 20;
/// Events a live subscriber may fall behind before it is told it lagged.
const LIVE_BUFFER: usize = 4096;

/// How much of one tell's activity is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Most activity events stored per tell.
    pub max_events_per_tell: u64,
    /// Most bytes of activity events stored per tell.
    pub max_bytes_per_tell: u64,
}

impl From<&crate::config::EventsSettings> for EventLimits {
    fn from(s: &crate::config::EventsSettings) -> Self {
        Self {
            max_events_per_tell: s.max_events_per_tell,
            max_bytes_per_tell: s.max_bytes_per_tell,
        }
    }
}

enum Msg {
    /// When it was published, the event, its weight.
    Event(i64, NewEvent, usize),
}

/// The bus. Owned by the [`crate::SessionManager`] (`manager.events()`).
pub struct EventBus {
    tx: Option<Sender<Msg>>,
    live: broadcast::Sender<Arc<Event>>,
    last_id: watch::Receiver<i64>,
    /// Messages handed to the writer so far.
    sent: AtomicU64,
    /// Messages the writer has finished (written or given up on).
    done: watch::Receiver<u64>,
    dropped: AtomicU64,
    /// Bytes waiting for the writer (the writer takes off what it has written).
    queued_bytes: Arc<AtomicUsize>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("last_id", &*self.last_id.borrow())
            .finish()
    }
}

impl EventBus {
    /// A bus writing to `store`, bounding each tell's stored activity by `limits`. Starts the
    /// writer thread (it ends when the bus is dropped, after writing what was published).
    pub fn new(store: SessionStore, limits: EventLimits) -> Self {
        // Unbounded in type, bounded by the count and the bytes checked in `publish`: a bounded std
        // channel allocates and writes every slot up front (65,536 × 240 B = 15.7 MB of RSS in
        // every process, used or not).
        let (tx, rx) = mpsc::channel();
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let (last_tx, last_id) = watch::channel(0);
        let (done_tx, done) = watch::channel(0);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let w = writer::Writer {
            queued_bytes: Arc::clone(&queued_bytes),
            store,
            limits,
            live: live.clone(),
            last_id: last_tx,
            done: done_tx,
            tells: Default::default(),
        };
        let writer = std::thread::Builder::new()
            .name("switchboard-events".into())
            .spawn(move || w.run(rx))
            .map_err(|e| tracing::error!(error = %e, "cannot start the event writer thread"))
            .ok();
        Self {
            tx: Some(tx),
            live,
            last_id,
            sent: AtomicU64::new(0),
            done,
            dropped: AtomicU64::new(0),
            queued_bytes,
            writer: Mutex::new(writer),
        }
    }

    /// Publishes an event: stored (within the tell's bound) and broadcast. Never blocks, never
    /// fails the caller; if the writer is far behind the event is dropped with a warning.
    pub fn publish(&self, e: NewEvent) {
        let at = crate::util::now_ms();
        let Some(tx) = self.tx.as_ref() else {
            return;
        };
        let weight = e.kind.weight();
        // Queued = handed to the writer and not finished yet.
        let queued = self
            .sent
            .load(Ordering::SeqCst)
            .saturating_sub(*self.done.borrow());
        let full = queued >= QUEUE as u64
            || self.queued_bytes.fetch_add(weight, Ordering::SeqCst) + weight > QUEUE_BYTES;
        if full {
            // (A count-full queue did not add the weight; undo only what was added.)
            if queued < QUEUE as u64 {
                self.queued_bytes.fetch_sub(weight, Ordering::SeqCst);
            }
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "event writer is behind: events dropped (the database may be stuck)"
                );
            }
            return;
        }
        match tx.send(Msg::Event(at, e, weight)) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                // The writer is gone (shutdown): nothing will take the bytes off.
                self.queued_bytes.fetch_sub(weight, Ordering::SeqCst);
            }
        }
    }

    /// A live receiver of every event published from now on, each with its id (0 when it was
    /// over its tell's bound and not stored). Bounded: on `RecvError::Lagged` read the gap from
    /// the store.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// The newest event id written by this process (0 before the first).
    pub fn last_id(&self) -> watch::Receiver<i64> {
        self.last_id.clone()
    }

    /// Events dropped because the writer was too far behind (since start).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Returns once every event published so far is written (and broadcast).
    pub async fn flush(&self) {
        let target = self.sent.load(Ordering::SeqCst);
        let mut done = self.done.clone();
        // An error means the writer is gone: nothing more will be written.
        let _ = done.wait_for(|d| *d >= target).await;
    }
}

impl Drop for EventBus {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has written the rest.
        self.tx.take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_bus(max_events: u64, max_bytes: u64) -> (EventBus, SessionStore) {
        let store = SessionStore::open_in_memory().expect("store");
        let bus = EventBus::new(
            store.clone(),
            EventLimits {
                max_events_per_tell: max_events,
                max_bytes_per_tell: max_bytes,
            },
        );
        (bus, store)
    }

    fn text(tell: &str, t: &str) -> NewEvent {
        NewEvent::pair("a", "b", EventKind::Text { text: t.into() }).tell(Some(tell))
    }

    /// A bus over a file database whose write lock another connection holds (the returned
    /// one, in an open `BEGIN EXCLUSIVE`): the writer waits, the queue fills.
    fn stuck_bus() -> (
        tempfile::TempDir,
        SessionStore,
        EventBus,
        rusqlite::Connection,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sb.db");
        let store = SessionStore::open(&path).expect("store");
        let bus = EventBus::new(
            store.clone(),
            EventLimits {
                max_events_per_tell: u64::MAX,
                max_bytes_per_tell: u64::MAX,
            },
        );
        let lock = rusqlite::Connection::open(&path).expect("second connection");
        lock.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        (dir, store, bus, lock)
    }

    #[tokio::test]
    async fn a_stuck_database_bounds_the_queue_by_bytes_not_only_by_count() {
        let (_dir, store, bus, lock) = stuck_bus();
        let big = "x".repeat(8000);
        let n = 6000u64; // about 50 MB of text, far under the queue's count bound
        for i in 0..n {
            bus.publish(text(&format!("t{}", i % 50), &big));
        }
        let dropped = bus.dropped();
        let kept = n - dropped;
        assert!(
            dropped > 0,
            "nothing dropped: the queue grew to {n} events of 8 KB"
        );
        assert!(
            kept * 8000 <= QUEUE_BYTES as u64,
            "{kept} events of 8 KB kept, over {QUEUE_BYTES} bytes"
        );
        lock.execute_batch("ROLLBACK").expect("unlock");
        bus.flush().await;
        let stored = store
            .events_after(0, &EventFilter::default(), 10_000)
            .expect("events")
            .len() as u64;
        assert_eq!(stored, kept, "every event that was not dropped is stored");
    }

    #[tokio::test]
    async fn a_stuck_database_bounds_the_queue_by_count_for_small_events() {
        let (_dir, store, bus, lock) = stuck_bus();
        // Small events, far under the byte bound: the count bound must stop them.
        let n = QUEUE as u64 + 5_000;
        for i in 0..n {
            bus.publish(text(&format!("t{}", i % 50), "x"));
        }
        let kept = n - bus.dropped();
        assert!(
            kept <= QUEUE as u64,
            "{kept} small events queued, over {QUEUE}"
        );
        assert!(
            kept >= QUEUE as u64 - 512,
            "only {kept} queued: dropped too early"
        );
        lock.execute_batch("ROLLBACK").expect("unlock");
        bus.flush().await;
        let stored = store
            .events_after(0, &EventFilter::default(), 100_000)
            .expect("events")
            .len() as u64;
        assert_eq!(stored, kept, "every event that was not dropped is stored");
    }

    #[tokio::test]
    async fn published_events_are_stored_and_broadcast_with_their_ids_in_order() {
        let (bus, store) = new_bus(100, 1 << 20);
        let mut rx = bus.subscribe();
        bus.publish(NewEvent::pair("a", "b", EventKind::TellDelivered).tell(Some("t")));
        bus.publish(text("t", "hello"));
        bus.flush().await;
        let stored = store.tell_events("t").expect("events");
        assert_eq!(stored.len(), 2);
        let first = rx.recv().await.expect("first");
        let second = rx.recv().await.expect("second");
        assert_eq!(*first, stored[0]);
        assert_eq!(*second, stored[1]);
        assert!(first.id < second.id);
        assert_eq!(*bus.last_id().borrow(), second.id);
    }

    #[tokio::test]
    async fn activity_over_the_bound_is_truncated_once_and_still_broadcast() {
        let (bus, store) = new_bus(3, 1 << 20);
        let mut rx = bus.subscribe();
        for i in 0..6 {
            bus.publish(text("t", &format!("line {i}")));
        }
        bus.publish(
            NewEvent::pair(
                "a",
                "b",
                EventKind::TellAnswered {
                    input_tokens: 1,
                    output_tokens: 2,
                    cost_usd: 0.0,
                    duration_ms: 3,
                },
            )
            .tell(Some("t")),
        );
        bus.flush().await;
        let stored = store.tell_events("t").expect("events");
        let types: Vec<&str> = stored.iter().map(|e| e.kind.type_name()).collect();
        assert_eq!(
            types,
            [
                "text",
                "text",
                "text",
                "activity_truncated",
                "tell_answered"
            ]
        );
        let mut live = Vec::new();
        while let Ok(e) = rx.try_recv() {
            live.push(e);
        }
        assert_eq!(live.len(), 8, "every event is broadcast, stored or not");
        assert_eq!(live.iter().filter(|e| e.id == 0).count(), 3);
        // Another tell is not affected; the byte bound counts too.
        let (bus2, store2) = new_bus(100, 60);
        for i in 0..4 {
            bus2.publish(text("u", &format!("line {i}")));
        }
        bus2.flush().await;
        let n = store2.tell_events("u").expect("events").len();
        assert!(n < 4, "byte bound applies ({n} stored)");
        drop(bus);
    }

    #[tokio::test]
    async fn the_bound_holds_for_a_tell_delivered_here_and_for_one_delivered_before() {
        let (bus, store) = new_bus(3, 1 << 20);
        // Delivered through this bus: its count starts at zero.
        bus.publish(NewEvent::pair("a", "b", EventKind::TellDelivered).tell(Some("t")));
        for i in 0..5 {
            bus.publish(text("t", &format!("line {i}")));
        }
        bus.flush().await;
        let types: Vec<&str> = store
            .tell_events("t")
            .expect("events")
            .iter()
            .map(|e| e.kind.type_name())
            .collect();
        assert_eq!(
            types,
            [
                "tell_delivered",
                "text",
                "text",
                "text",
                "activity_truncated"
            ]
        );
        drop(bus);
        // A tell whose activity another bus stored (another process, a restart): counted from
        // what is stored.
        let another_bus = || {
            EventBus::new(
                store.clone(),
                EventLimits {
                    max_events_per_tell: 3,
                    max_bytes_per_tell: 1 << 20,
                },
            )
        };
        let bus = another_bus();
        bus.publish(NewEvent::pair("a", "b", EventKind::TellDelivered).tell(Some("u")));
        bus.publish(text("u", "first"));
        bus.publish(text("u", "second"));
        bus.flush().await;
        drop(bus);
        let bus = another_bus();
        for i in 0..3 {
            bus.publish(text("u", &format!("more {i}")));
        }
        bus.flush().await;
        let texts = store
            .tell_events("u")
            .expect("events")
            .iter()
            .filter(|e| e.kind.type_name() == "text")
            .count();
        assert_eq!(texts, 3, "the stored activity counts against the bound");
    }

    #[tokio::test]
    async fn a_subscriber_that_never_reads_does_not_block_publishing() {
        let (bus, store) = new_bus(100_000, 1 << 30);
        let _idle = bus.subscribe();
        for i in 0..(LIVE_BUFFER * 2) {
            bus.publish(NewEvent::new(EventKind::AgentStatus {
                text: format!("{i}"),
            }));
        }
        bus.flush().await;
        assert_eq!(store.max_event_id().expect("max"), (LIVE_BUFFER * 2) as i64);
    }

    #[test]
    fn dropping_the_bus_writes_what_was_published() {
        let (bus, store) = new_bus(10, 1000);
        bus.publish(NewEvent::new(EventKind::CompactionBegin));
        drop(bus);
        assert_eq!(store.max_event_id().expect("max"), 1);
    }
}
