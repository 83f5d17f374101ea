//! The in-process cache of written event ids: the `memory` backend, and the first level in front
//! of Redis.
//!
//! Providers deliver at least once. An event id is *recorded* only after the broker acknowledged
//! its write ([`Claim::commit`]); if the write fails, the claim is released and the provider's retry
//! gets a fresh attempt. While a write is in flight, concurrent deliveries of the same id wait for
//! its outcome instead of producing a second copy.
//!
//! Memory is bounded in bytes: at most `max_entries` recorded ids, each kept for `window`; when
//! full, the oldest id is forgotten first (a late redelivery of it would then be produced again —
//! the safe direction for at-least-once delivery). An id is stored as a 128-bit digest of
//! (provider, event id) made with a keyed hash whose key is random per process, so neither the
//! length of vendor ids nor a crafted collision matters, plus the time it was recorded. Both
//! structures — a fixed-capacity hash table ([`table`]) and the recording order — are sized for
//! `max_entries` when the cache is made, and each call expires at most a few old ids, so no
//! request ever pays for a resize, a rehash or a sweep of the whole cache.
//! Measured (`recorded_ids_cost_a_bounded_number_of_bytes`): 47 bytes per remembered id, so the
//! default 500,000 ids take about 22 MiB.
//!
//! Ids live in [`Namespace`]s: an event written to its topic and a delivery kept as a dead letter
//! are remembered apart, so a redelivered dead letter adds no second letter and never passes
//! for a written event.
//!
//! The *horizon* ([`MemoryCache::horizon`]) is how far back the cache remembers: the window, or,
//! once `max_entries` ids fill it, the age of the oldest id. A redelivery older than the horizon
//! is written again.

mod table;

use super::Namespace;
use crate::configuration::MAX_DEDUPE_WINDOW;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// 128 bits of a keyed hash of (provider, event id), as four words (so slots pack tightly).
type Digest = [u32; 4];

/// Milliseconds since the cache was made, wrapping every 49.7 days: ages are computed with
/// wrapping arithmetic, which is exact while the window is shorter than that (configuration
/// enforces it).
type Millis = u32;

/// The longest window: what configuration accepts, well within what [`Millis`] can measure.
const MAX_WINDOW: Duration = MAX_DEDUPE_WINDOW;
const _: () = assert!(MAX_WINDOW.as_millis() < Millis::MAX as u128);

/// Old ids expired per call, at most: twice what one call adds, so expiry keeps up.
const EXPIRE_PER_CALL: usize = 2;

/// Keyed 128-bit digests: two SipHash-1-3 instances with independent random keys.
struct Digester([RandomState; 2]);

impl Digester {
    fn new() -> Self {
        Self([RandomState::new(), RandomState::new()])
    }

    fn digest(&self, namespace: Namespace, provider: &str, event_id: &str) -> Digest {
        let [a, b] = self.0.each_ref().map(|state| {
            let mut h = state.build_hasher();
            h.write_u8(namespace.tag());
            h.write(provider.as_bytes());
            h.write_u8(0xff);
            h.write(event_id.as_bytes());
            h.finish()
        });
        [(a >> 32) as u32, a as u32, (b >> 32) as u32, b as u32]
    }
}

struct Inner {
    /// Recorded ids → when (milliseconds since `origin`).
    recorded: table::Table,
    /// Recorded ids in recording order (= expiry order, since the window is fixed).
    order: VecDeque<(Digest, Millis)>,
    /// Ids being written now, and the channel that tells deliveries waiting for such a write
    /// how it ended — made only once one waits (concurrent duplicates are rare).
    in_flight: HashMap<Digest, Option<watch::Sender<bool>>>,
}

/// The deduplication cache. Cheap to clone (shared state).
#[derive(Clone)]
pub(super) struct MemoryCache {
    inner: Arc<Mutex<Inner>>,
    digester: Arc<Digester>,
    origin: Instant,
    window_ms: Millis,
    max_entries: usize,
}

/// The outcome of [`MemoryCache::claim`].
pub(super) enum LocalVerdict {
    /// Already written within the window: produce nothing.
    Duplicate,
    /// The caller owns the write of this id.
    Claimed(LocalClaim),
}

/// Ownership of an in-flight write. Dropping it without [`Claim::commit`] releases the id.
pub(super) struct LocalClaim {
    cache: MemoryCache,
    digest: Option<Digest>,
}

impl MemoryCache {
    pub(super) fn new(window: Duration, max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                recorded: table::Table::with_capacity(max_entries),
                order: VecDeque::with_capacity(max_entries),
                in_flight: HashMap::new(),
            })),
            digester: Arc::new(Digester::new()),
            origin: Instant::now(),
            window_ms: Millis::try_from(window.min(MAX_WINDOW).as_millis()).unwrap_or(Millis::MAX),
            max_entries,
        }
    }

    fn now(&self) -> Millis {
        // Truncation is the wrap-around.
        self.origin.elapsed().as_millis() as Millis
    }

    /// Decides whether this delivery is a duplicate, waiting for an in-flight write of the same id.
    pub(super) async fn claim(
        &self,
        namespace: Namespace,
        provider: &str,
        event_id: &str,
    ) -> LocalVerdict {
        let digest = self.digester.digest(namespace, provider, event_id);
        loop {
            let mut waiter = {
                let now = self.now();
                let mut inner = self.inner.lock();
                self.expire(&mut inner, now);
                if self.holds(&inner, digest, now) {
                    return LocalVerdict::Duplicate;
                }
                match inner.in_flight.get_mut(&digest) {
                    Some(waiters) => waiters
                        .get_or_insert_with(|| watch::channel(false).0)
                        .subscribe(),
                    None => {
                        inner.in_flight.insert(digest, None);
                        return LocalVerdict::Claimed(LocalClaim {
                            cache: self.clone(),
                            digest: Some(digest),
                        });
                    }
                }
            };
            // Resolves when the owner commits (true) or is dropped (channel closed); either way
            // the loop re-reads the entry.
            let _ = waiter.wait_for(|done| *done).await;
        }
    }

    /// Whether the id is recorded within the window (a read: it claims nothing).
    pub(super) fn recorded(&self, namespace: Namespace, provider: &str, event_id: &str) -> bool {
        let digest = self.digester.digest(namespace, provider, event_id);
        let now = self.now();
        self.holds(&self.inner.lock(), digest, now)
    }

    /// Whether `digest` was recorded within the window, as of `now`.
    fn holds(&self, inner: &Inner, digest: Digest, now: Millis) -> bool {
        inner
            .recorded
            .get(digest)
            .is_some_and(|at| now.wrapping_sub(at) < self.window_ms)
    }

    /// Number of recorded ids.
    pub(super) fn len(&self) -> usize {
        self.inner.lock().recorded.len()
    }

    /// The configured window.
    pub(super) fn window(&self) -> Duration {
        Duration::from_millis(u64::from(self.window_ms))
    }

    /// How far back ids are remembered now: the window while the cache has room, else the age of
    /// the oldest id it holds (at most the window).
    pub(super) fn horizon(&self) -> Duration {
        let now = self.now();
        let inner = self.inner.lock();
        match inner.order.front() {
            Some(&(_, at)) if inner.order.len() >= self.max_entries => {
                Duration::from_millis(u64::from(now.wrapping_sub(at).min(self.window_ms)))
            }
            _ => self.window(),
        }
    }

    /// Forgets at most [`EXPIRE_PER_CALL`] ids that are past the window (or beyond
    /// `max_entries`), oldest first.
    fn expire(&self, inner: &mut Inner, now: Millis) {
        for _ in 0..EXPIRE_PER_CALL {
            let Some(&(digest, at)) = inner.order.front() else {
                return;
            };
            let expired = now.wrapping_sub(at) >= self.window_ms;
            if !expired && inner.order.len() <= self.max_entries {
                return;
            }
            inner.order.pop_front();
            // A later recording of the same id has its own, younger entry.
            if inner.recorded.get(digest) == Some(at) {
                inner.recorded.remove(digest);
            }
        }
    }
}

impl LocalClaim {
    /// Records the id: the broker acknowledged the write.
    pub(super) fn commit(mut self) {
        if let Some(digest) = self.digest.take() {
            let now = self.cache.now();
            let mut inner = self.cache.inner.lock();
            let waiters = inner.in_flight.remove(&digest).flatten();
            // Make room first, so neither structure grows beyond what it was sized for.
            while inner.order.len() >= self.cache.max_entries {
                if let Some((old, at)) = inner.order.pop_front() {
                    if inner.recorded.get(old) == Some(at) {
                        inner.recorded.remove(old);
                    }
                }
            }
            inner.recorded.insert(digest, now);
            inner.order.push_back((digest, now));
            self.cache.expire(&mut inner, now);
            drop(inner);
            if let Some(waiters) = waiters {
                let _ = waiters.send(true);
            }
        }
    }
}

impl Drop for LocalClaim {
    fn drop(&mut self) {
        if let Some(digest) = self.digest.take() {
            let waiters = self.cache.inner.lock().in_flight.remove(&digest);
            // Dropped here, outside the lock: closing the channel wakes the waiters, which
            // find the id free and claim it.
            drop(waiters);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "p"/"a" claimed, and a second claim of it started: the cache, the first claim, and the
    /// second's verdict to come.
    async fn claimed_twice() -> (
        MemoryCache,
        LocalClaim,
        impl std::future::Future<Output = LocalVerdict> + Send,
    ) {
        let cache = MemoryCache::new(Duration::from_secs(60), 10);
        let first = claimed(cache.claim(Namespace::Event, "p", "a").await);
        let c2 = cache.clone();
        let second = async move { c2.claim(Namespace::Event, "p", "a").await };
        (cache, first, second)
    }

    fn is_claimed(v: LocalVerdict) -> bool {
        matches!(v, LocalVerdict::Claimed(_))
    }

    fn claimed(v: LocalVerdict) -> LocalClaim {
        match v {
            LocalVerdict::Claimed(c) => c,
            LocalVerdict::Duplicate => panic!("expected a claim"),
        }
    }

    #[tokio::test]
    async fn a_committed_id_is_a_duplicate() {
        let cache = MemoryCache::new(Duration::from_secs(60), 10);
        claimed(cache.claim(Namespace::Event, "p", "a").await).commit();
        assert!(matches!(
            cache.claim(Namespace::Event, "p", "a").await,
            LocalVerdict::Duplicate
        ));
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn ids_are_scoped_by_provider() {
        let cache = MemoryCache::new(Duration::from_secs(60), 10);
        claimed(cache.claim(Namespace::Event, "p", "a").await).commit();
        assert!(is_claimed(cache.claim(Namespace::Event, "q", "a").await));
        // The provider/id boundary is part of the digest: "p"+"ab" is not "pa"+"b".
        claimed(cache.claim(Namespace::Event, "p", "ab").await).commit();
        assert!(is_claimed(cache.claim(Namespace::Event, "pa", "b").await));
    }

    #[tokio::test]
    async fn events_and_dead_letters_are_remembered_apart() {
        let cache = MemoryCache::new(Duration::from_secs(60), 10);
        claimed(cache.claim(Namespace::DeadLetter, "p", "a").await).commit();
        assert!(is_claimed(cache.claim(Namespace::Event, "p", "a").await));
        assert!(matches!(
            cache.claim(Namespace::DeadLetter, "p", "a").await,
            LocalVerdict::Duplicate
        ));
    }

    #[tokio::test]
    async fn the_horizon_is_the_window_until_the_cache_is_full_then_the_oldest_age() {
        let cache = MemoryCache::new(Duration::from_secs(3600), 3);
        claimed(cache.claim(Namespace::Event, "p", "a").await).commit();
        assert_eq!(cache.horizon(), Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(50)).await;
        for id in ["b", "c"] {
            claimed(cache.claim(Namespace::Event, "p", id).await).commit();
        }
        let full = cache.horizon();
        assert!(
            full >= Duration::from_millis(50) && full < Duration::from_secs(5),
            "{full:?}"
        );
        for id in ["d", "e"] {
            claimed(cache.claim(Namespace::Event, "p", id).await).commit();
        }
        assert!(cache.horizon() < full, "the oldest ids were forgotten");
    }

    #[tokio::test]
    async fn a_failed_write_releases_the_id() {
        let cache = MemoryCache::new(Duration::from_secs(60), 10);
        drop(claimed(cache.claim(Namespace::Event, "p", "a").await));
        assert!(is_claimed(cache.claim(Namespace::Event, "p", "a").await));
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test]
    async fn ids_expire_after_the_window() {
        let cache = MemoryCache::new(Duration::from_millis(20), 10);
        claimed(cache.claim(Namespace::Event, "p", "a").await).commit();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(is_claimed(cache.claim(Namespace::Event, "p", "a").await));
    }

    #[tokio::test]
    async fn memory_is_bounded_by_forgetting_the_oldest() {
        let cache = MemoryCache::new(Duration::from_secs(60), 3);
        for id in ["a", "b", "c", "d"] {
            claimed(cache.claim(Namespace::Event, "p", id).await).commit();
        }
        assert_eq!(cache.len(), 3);
        assert!(matches!(
            cache.claim(Namespace::Event, "p", "d").await,
            LocalVerdict::Duplicate
        ));
        assert!(is_claimed(cache.claim(Namespace::Event, "p", "a").await));
    }

    #[tokio::test]
    async fn a_concurrent_duplicate_waits_for_the_first_write() {
        let (_cache, first, second) = claimed_twice().await;
        let second = tokio::spawn(async move { !is_claimed(second.await) });
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
        let (_cache, first, second) = claimed_twice().await;
        let second = tokio::spawn(async move { is_claimed(second.await) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(second.await.expect("task"));
    }

    #[tokio::test]
    async fn the_structures_never_grow_beyond_their_first_size() {
        let cache = MemoryCache::new(Duration::from_secs(60), 1000);
        let capacity = |c: &MemoryCache| c.inner.lock().order.capacity();
        let before = capacity(&cache);
        for i in 0..5000 {
            claimed(cache.claim(Namespace::Event, "p", &i.to_string()).await).commit();
        }
        assert_eq!(cache.len(), 1000);
        assert_eq!(capacity(&cache), before, "no resize while running");
        assert_eq!(cache.inner.lock().recorded.len(), 1000);
    }

    #[test]
    fn recorded_ids_cost_a_bounded_number_of_bytes() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let max = 100_000;
        let before = crate::test_alloc::live_bytes();
        let cache = MemoryCache::new(Duration::from_secs(3600), max);
        runtime.block_on(async {
            for i in 0..2 * max {
                let id = format!("{:032x}", i);
                claimed(cache.claim(Namespace::Event, "livesession", &id).await).commit();
            }
        });
        assert_eq!(cache.len(), max);
        let per_id = (crate::test_alloc::live_bytes() - before) as f64 / max as f64;
        eprintln!("dedupe: {per_id:.1} bytes per remembered id");
        assert!(per_id < 50.0, "{per_id:.1} bytes per id");
    }

    #[tokio::test]
    async fn long_vendor_ids_cost_no_more_than_short_ones() {
        let cache = MemoryCache::new(Duration::from_secs(60), 10);
        let long = "x".repeat(100_000);
        claimed(cache.claim(Namespace::Event, "p", &long).await).commit();
        assert!(matches!(
            cache.claim(Namespace::Event, "p", &long).await,
            LocalVerdict::Duplicate
        ));
        let inner = cache.inner.lock();
        assert_eq!(
            std::mem::size_of_val(inner.order.front().expect("entry")),
            20
        );
    }
}
