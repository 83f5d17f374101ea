//! Remembers which events were already written, so redeliveries produce nothing.
//!
//! Providers deliver at least once. An event id is *recorded* only after the broker acknowledged
//! its write ([`Claim::commit`]); if the write fails, the claim is released and the provider's retry
//! gets a fresh attempt. While a write is in flight, concurrent deliveries of the same id wait for
//! its outcome instead of producing a second copy.
//!
//! Memory is bounded: at most `max_entries` recorded ids, each kept for `window`; when full, the
//! oldest id is forgotten first (a late redelivery of it would then be produced again — the safe
//! direction for at-least-once delivery).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// `(provider, event_id)`: ids are only unique within one provider.
type Key = (&'static str, String);

enum Entry {
    /// Written and acknowledged at this instant.
    Recorded(Instant),
    /// A request is writing it now; the receiver resolves when that request finishes.
    InFlight(watch::Receiver<bool>),
}

struct Inner {
    entries: HashMap<Key, Entry>,
    /// Recorded keys in recording order (= expiry order, since the window is fixed).
    order: VecDeque<(Instant, Key)>,
}

/// The deduplication cache. Cheap to clone (shared state).
#[derive(Clone)]
pub struct DedupeCache {
    inner: Arc<Mutex<Inner>>,
    window: Duration,
    max_entries: usize,
}

/// The outcome of [`DedupeCache::claim`].
pub enum Verdict {
    /// Already written within the window: produce nothing.
    Duplicate,
    /// The caller owns the write of this id.
    Claimed(Claim),
}

/// Ownership of an in-flight write. Dropping it without [`Claim::commit`] releases the id.
pub struct Claim {
    cache: DedupeCache,
    key: Option<Key>,
    done: watch::Sender<bool>,
}

impl DedupeCache {
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            })),
            window,
            max_entries: max_entries.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent in a way that
        // matters (worst case: one id is forgotten), so a poisoned lock is simply reused.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides whether this delivery is a duplicate, waiting for an in-flight write of the same id.
    pub async fn claim(&self, provider: &'static str, event_id: &str) -> Verdict {
        let key: Key = (provider, event_id.to_string());
        loop {
            let mut waiter = {
                let mut inner = self.lock();
                self.expire(&mut inner, Instant::now());
                match inner.entries.get(&key) {
                    Some(Entry::Recorded(_)) => return Verdict::Duplicate,
                    Some(Entry::InFlight(rx)) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(false);
                        inner.entries.insert(key.clone(), Entry::InFlight(rx));
                        return Verdict::Claimed(Claim {
                            cache: self.clone(),
                            key: Some(key),
                            done: tx,
                        });
                    }
                }
            };
            // Resolves when the owner commits (true) or is dropped (channel closed); either way
            // the loop re-reads the entry.
            let _ = waiter.wait_for(|done| *done).await;
        }
    }

    /// Number of recorded ids.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((at, _)) = inner.order.front() {
            let expired = now.saturating_duration_since(*at) >= self.window;
            if !expired && inner.order.len() <= self.max_entries {
                break;
            }
            if let Some((at, key)) = inner.order.pop_front() {
                if matches!(inner.entries.get(&key), Some(Entry::Recorded(t)) if *t == at) {
                    inner.entries.remove(&key);
                }
            }
        }
    }
}

impl Claim {
    /// Records the id: the broker acknowledged the write.
    pub fn commit(mut self) {
        if let Some(key) = self.key.take() {
            let now = Instant::now();
            let mut inner = self.cache.lock();
            inner.entries.insert(key.clone(), Entry::Recorded(now));
            inner.order.push_back((now, key));
            self.cache.expire(&mut inner, now);
        }
        let _ = self.done.send(true);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut inner = self.cache.lock();
            if matches!(inner.entries.get(&key), Some(Entry::InFlight(_))) {
                inner.entries.remove(&key);
            }
        }
        // Dropping `done` closes the channel and wakes waiters.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(v: Verdict) -> Claim {
        match v {
            Verdict::Claimed(c) => c,
            Verdict::Duplicate => panic!("expected a claim"),
        }
    }

    #[tokio::test]
    async fn a_committed_id_is_a_duplicate() {
        let cache = DedupeCache::new(Duration::from_secs(60), 10);
        claimed(cache.claim("p", "a").await).commit();
        assert!(matches!(cache.claim("p", "a").await, Verdict::Duplicate));
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn ids_are_scoped_by_provider() {
        let cache = DedupeCache::new(Duration::from_secs(60), 10);
        claimed(cache.claim("p", "a").await).commit();
        assert!(matches!(cache.claim("q", "a").await, Verdict::Claimed(_)));
    }

    #[tokio::test]
    async fn a_failed_write_releases_the_id() {
        let cache = DedupeCache::new(Duration::from_secs(60), 10);
        drop(claimed(cache.claim("p", "a").await));
        assert!(matches!(cache.claim("p", "a").await, Verdict::Claimed(_)));
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn ids_expire_after_the_window() {
        let cache = DedupeCache::new(Duration::from_millis(20), 10);
        claimed(cache.claim("p", "a").await).commit();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(matches!(cache.claim("p", "a").await, Verdict::Claimed(_)));
    }

    #[tokio::test]
    async fn memory_is_bounded_by_forgetting_the_oldest() {
        let cache = DedupeCache::new(Duration::from_secs(60), 3);
        for id in ["a", "b", "c", "d"] {
            claimed(cache.claim("p", id).await).commit();
        }
        assert_eq!(cache.len(), 3);
        assert!(matches!(cache.claim("p", "d").await, Verdict::Duplicate));
        assert!(matches!(cache.claim("p", "a").await, Verdict::Claimed(_)));
    }

    #[tokio::test]
    async fn a_concurrent_duplicate_waits_for_the_first_write() {
        let cache = DedupeCache::new(Duration::from_secs(60), 10);
        let first = claimed(cache.claim("p", "a").await);
        let c2 = cache.clone();
        let second =
            tokio::spawn(async move { matches!(c2.claim("p", "a").await, Verdict::Duplicate) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !second.is_finished(),
            "the duplicate must wait while the write is in flight"
        );
        first.commit();
        assert!(second.await.expect("task"));
    }

    #[tokio::test]
    async fn a_concurrent_duplicate_takes_over_when_the_first_write_fails() {
        let cache = DedupeCache::new(Duration::from_secs(60), 10);
        let first = claimed(cache.claim("p", "a").await);
        let c2 = cache.clone();
        let second =
            tokio::spawn(async move { matches!(c2.claim("p", "a").await, Verdict::Claimed(_)) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(second.await.expect("task"));
    }
}
