//! The session cache: a moka TTL cache keyed by pair. A hit costs no allocation (the key is
//! assembled on the stack). Misses load under a per-pair stripe lock, and writers invalidate
//! under the same lock, so a value loaded before a write can never be cached after that write's
//! invalidation: no read after a write returns the old value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;

use crate::store::Session;

use super::SessionResult;

const STRIPES: usize = 64;
/// Teams names are at most 100 bytes, so `from \0 to` fits.
const KEY_BUF: usize = 201;

pub(super) struct SessionCache {
    cache: Cache<Box<str>, Arc<Session>>,
    stripes: Vec<Mutex<()>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl SessionCache {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(super) fn get(&self, from: &str, to: &str) -> Option<Arc<Session>> {
        let found = with_key(from, to, |k| self.cache.get(k));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// (hits, misses) since start.
    pub(super) fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// On a miss: runs `load` under the pair's stripe lock and caches what it returns.
    pub(super) fn load(
        &self,
        from: &str,
        to: &str,
        load: impl FnOnce() -> SessionResult<Option<Session>>,
    ) -> SessionResult<Option<Arc<Session>>> {
        let _guard = self.lock(from, to);
        if let Some(hit) = self.get(from, to) {
            return Ok(Some(hit));
        }
        let Some(s) = load()? else {
            return Ok(None);
        };
        let s = Arc::new(s);
        self.cache.insert(key(from, to), Arc::clone(&s));
        Ok(Some(s))
    }

    pub(super) fn invalidate(&self, from: &str, to: &str) {
        let _guard = self.lock(from, to);
        with_key(from, to, |k| self.cache.invalidate(k));
    }

    /// Drops every entry (after the start-up reset, which may touch thousands of pairs). Holds
    /// every stripe, so no load that read the database before the reset caches its old value
    /// after it.
    pub(super) fn invalidate_all(&self) {
        let _guards: Vec<_> = self
            .stripes
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        self.cache.invalidate_all();
    }

    fn lock(&self, from: &str, to: &str) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (from, to).hash(&mut h);
        let i = (h.finish() as usize) % STRIPES;
        // A poisoned stripe only means another thread panicked while holding it; the guarded
        // data is (), so carry on.
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(from: &str, to: &str) -> Box<str> {
    let mut k = String::with_capacity(from.len() + 1 + to.len());
    k.push_str(from);
    k.push('\0');
    k.push_str(to);
    k.into_boxed_str()
}

/// Calls `f` with the key `from \0 to`, built on the stack when it fits.
fn with_key<R>(from: &str, to: &str, f: impl FnOnce(&str) -> R) -> R {
    let len = from.len() + 1 + to.len();
    if len > KEY_BUF {
        return f(&key(from, to));
    }
    let mut buf = [0u8; KEY_BUF];
    buf[..from.len()].copy_from_slice(from.as_bytes());
    buf[from.len() + 1..len].copy_from_slice(to.as_bytes());
    match std::str::from_utf8(&buf[..len]) {
        Ok(k) => f(k),
        // Cannot happen (two valid UTF-8 strings joined by NUL), but never panic on it.
        Err(_) => f(&key(from, to)),
    }
}
