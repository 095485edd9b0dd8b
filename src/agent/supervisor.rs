//! The pool of live agents: at most `max_processes` slots. A worker takes a slot before it
//! starts an agent and gives it back when the agent stops. When the pool is full, the least
//! recently used *idle* slot is asked to stop its agent; a busy agent is never stopped, so a
//! newcomer then waits for a free slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// The slots of live agents.
#[derive(Debug)]
pub struct Supervisor {
    max: usize,
    slots: Mutex<Slots>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct Slots {
    next_id: u64,
    held: HashMap<u64, SlotInfo>,
    /// Acquirers waiting for a slot; at most this many agents are asked to stop at once.
    waiting: usize,
}

#[derive(Debug)]
struct SlotInfo {
    pair: String,
    /// `Some(since)` while the agent is idle; `None` while it works.
    idle_since: Option<Instant>,
    evict: Arc<Notify>,
    asked: bool,
}

/// One live agent's place in the pool; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    sup: Arc<Supervisor>,
    evict: Arc<Notify>,
}

/// A live agent, as the pool sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveAgent {
    /// `FROM:TO`.
    pub pair: String,
    /// Whether it is idle.
    pub idle: bool,
}

impl Supervisor {
    /// A pool of at most `max` live agents (at least 1).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            slots: Mutex::new(Slots::default()),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for `pair`, asking the least recently used idle agent to stop when the pool
    /// is full, and waiting while every agent is busy. The slot starts busy.
    pub async fn acquire(self: &Arc<Self>, pair: &str) -> Slot {
        /// Counts this acquirer as waiting until it gets a slot or is dropped.
        struct Waiting<'a>(&'a Supervisor, bool);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.lock().waiting -= 1;
                }
            }
        }
        let mut wait_guard = Waiting(self, false);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.lock();
                if s.held.len() < self.max {
                    if wait_guard.1 {
                        s.waiting -= 1;
                        wait_guard.1 = false;
                    }
                    s.next_id += 1;
                    let id = s.next_id;
                    let evict = Arc::new(Notify::new());
                    s.held.insert(
                        id,
                        SlotInfo {
                            pair: pair.to_string(),
                            idle_since: None,
                            evict: Arc::clone(&evict),
                            asked: false,
                        },
                    );
                    return Slot {
                        id,
                        sup: Arc::clone(self),
                        evict,
                    };
                }
                if !wait_guard.1 {
                    wait_guard.1 = true;
                    s.waiting += 1;
                }
                // One agent asked to stop per waiting acquirer, not more.
                let asked = s.held.values().filter(|i| i.asked).count();
                let want = s.waiting;
                let lru = s
                    .held
                    .values_mut()
                    .filter(|i| !i.asked)
                    .filter_map(|i| i.idle_since.map(|t| (t, i)))
                    .min_by_key(|(t, _)| *t)
                    .filter(|_| asked < want);
                if let Some((_, victim)) = lru {
                    tracing::info!(pair = %victim.pair, for_pair = pair, "pool full: stopping the least recently used idle agent");
                    victim.asked = true;
                    victim.evict.notify_one();
                }
            }
            freed.await;
        }
    }

    /// The live agents.
    pub fn live(&self) -> Vec<LiveAgent> {
        let mut v: Vec<LiveAgent> = self
            .lock()
            .held
            .values()
            .map(|i| LiveAgent {
                pair: i.pair.clone(),
                idle: i.idle_since.is_some(),
            })
            .collect();
        v.sort_by(|a, b| a.pair.cmp(&b.pair));
        v
    }

    /// The most live agents at once.
    pub fn capacity(&self) -> usize {
        self.max
    }
}

impl Slot {
    /// Marks the agent idle (a candidate for eviction) or busy.
    pub fn set_idle(&self, idle: bool) {
        {
            let mut s = self.sup.lock();
            if let Some(i) = s.held.get_mut(&self.id) {
                i.idle_since = idle.then(Instant::now);
                if !idle {
                    i.asked = false;
                }
            }
        }
        if idle {
            // A newcomer waiting on a full pool may now evict this agent.
            self.sup.freed.notify_waiters();
        }
    }

    /// Resolves when the pool asks this agent to stop (it is the LRU idle one).
    pub async fn evicted(&self) {
        loop {
            self.evict.notified().await;
            // A request made before the agent got busy again is stale.
            let asked = self.sup.lock().held.get(&self.id).is_some_and(|i| i.asked);
            if asked {
                return;
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.sup.lock().held.remove(&self.id);
        self.sup.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_pool_evicts_the_least_recently_used_idle_agent() {
        let sup = Supervisor::new(2);
        let a = sup.acquire("a").await;
        let b = sup.acquire("b").await;
        b.set_idle(true);
        tokio::task::yield_now().await;
        a.set_idle(true); // a is idle more recently than b
        let sup2 = Arc::clone(&sup);
        let waiter = tokio::spawn(async move { sup2.acquire("c").await });
        // b (least recently used) is asked to stop; a is not.
        tokio::time::timeout(Duration::from_secs(5), b.evicted())
            .await
            .expect("b asked to stop");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), a.evicted())
                .await
                .is_err(),
            "a must not be asked"
        );
        drop(b);
        let c = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("c got a slot")
            .expect("join");
        let live: Vec<String> = sup.live().into_iter().map(|l| l.pair).collect();
        assert_eq!(live, ["a", "c"]);
        drop(c);
        drop(a);
        assert!(sup.live().is_empty());
    }

    #[tokio::test]
    async fn a_busy_agent_is_never_evicted_the_newcomer_waits() {
        let sup = Supervisor::new(1);
        let a = sup.acquire("a").await; // busy
        let sup2 = Arc::clone(&sup);
        let mut waiter = tokio::spawn(async move { sup2.acquire("b").await });
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut waiter)
            .await
            .is_err());
        assert!(tokio::time::timeout(Duration::from_millis(10), a.evicted())
            .await
            .is_err());
        a.set_idle(true);
        tokio::time::timeout(Duration::from_secs(5), a.evicted())
            .await
            .expect("asked once idle");
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("b")
            .expect("join");
        assert_eq!(
            sup.live(),
            vec![LiveAgent {
                pair: "b".into(),
                idle: false
            }]
        );
        drop(b);
    }
}
